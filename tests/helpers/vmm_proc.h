/* SPDX-License-Identifier: MIT */
/*
 * Running the demo VMM (build/ramfold-vmm) from a test: start it with
 * arguments, wait for a console line or a VM's READY with a timeout, talk to
 * its control socket, read what the kernel says it occupies, stop it.
 *
 *   struct vmm_proc p;
 *   const char *args[] = {"--vm", "name=a,mem=256M,workload=dup", NULL};
 *   assert_int_equal(vmm_proc_start(&p, args), 0);
 *   assert_int_equal(vmm_proc_wait_ready(&p, "a", 20000), 0);
 *   vmm_proc_ctl(&p, "{\"execute\":\"query-memory\"}", reply, sizeof(reply), 5000);
 *   vmm_smaps_rollup(p.pid, &sm);
 *   assert_int_equal(vmm_proc_stop(&p), 0);
 *
 * vmm_proc_start() adds --console --no-table --ctl DIR/ctl.sock --log-dir DIR
 * with DIR a fresh scratch directory (removed by vmm_proc_stop), and waits
 * until the control socket answers. The VMM dies with the test process
 * (PR_SET_PDEATHSIG), so a failed assertion leaves nothing running.
 * Binaries are found under $B (default "build"), as make runs the tests.
 */
#ifndef VMM_PROC_H
#define VMM_PROC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct vmm_proc {
	pid_t pid;
	int out_fd; /* stdout and stderr of the VMM, non-blocking */
	char *out;  /* everything read so far, NUL-terminated */
	size_t out_len, out_cap;
	char dir[64]; /* scratch directory ("" for vmm_proc_spawn) */
	char ctl_path[96];
	bool exited;
	int status; /* exit code, or 128 + signal */
};

const char *vmm_bin_path(void);	  /* $B/ramfold-vmm */
const char *vmm_guest_path(void); /* $B/guest/ramfold-guest */

/* Start with the test arguments above plus @args (NULL-terminated) and wait
 * for the control socket (10 s). 0, or -errno (then the VMM is reaped and
 * its output is in p->out). */
int vmm_proc_start(struct vmm_proc *p, const char *const *args);
/* Start with exactly @args (no added options, no scratch directory). */
int vmm_proc_spawn(struct vmm_proc *p, const char *const *args);

/* Wait until the output contains @needle: 0, -ETIMEDOUT, or -ESRCH if the
 * VMM exited without printing it. */
int vmm_proc_wait_output(struct vmm_proc *p, const char *needle, int timeout_ms);
/* Wait for "VM: READY". */
int vmm_proc_wait_ready(struct vmm_proc *p, const char *vm, int timeout_ms);
/* Count the occurrences of @needle in the output so far (after pumping it). */
unsigned int vmm_proc_count(struct vmm_proc *p, const char *needle);

/* Sum of the numbers that follow @key on the output lines containing
 * @line, from output offset @from (already read: vmm_proc_count pumps). */
int64_t vmm_proc_sum_after(const struct vmm_proc *p, size_t from, const char *line,
			   const char *key);

/* One request line (without newline) on a fresh connection; the reply line
 * (without newline) in @reply. 0 or -errno. */
int vmm_proc_ctl(struct vmm_proc *p, const char *request, char *reply, size_t len, int timeout_ms);

/* Wait for the VMM to exit: its exit status (or 128 + signal), or -ETIMEDOUT. */
int vmm_proc_wait_exit(struct vmm_proc *p, int timeout_ms);
/* "quit" through the socket, then SIGTERM, then SIGKILL; reap; remove the
 * scratch directory. Returns the exit status. */
int vmm_proc_stop(struct vmm_proc *p);
/* Free the buffers (after vmm_proc_stop/vmm_proc_wait_exit). */
void vmm_proc_free(struct vmm_proc *p);

/* The console log of @vm (DIR/VM.log) into @buf. Bytes read or -errno. */
ssize_t vmm_proc_console_log(struct vmm_proc *p, const char *vm, char *buf, size_t len);

struct vmm_smaps {
	uint64_t rss, pss, anon; /* bytes */
};
/* /proc/PID/smaps_rollup: 0 or -errno. */
int vmm_smaps_rollup(pid_t pid, struct vmm_smaps *s);

/* Call @fn(@pid, TID, @arg) for each thread of @pid whose name (comm)
 * starts with @prefix ("rf-"), until it returns false. */
void vmm_threads_named(pid_t pid, const char *prefix, bool (*fn)(pid_t pid, int tid, void *arg),
		       void *arg);

/* Find "key=<number>" in @line (e.g. a RESULT line): 0 or -ENOENT. */
int vmm_line_u64(const char *line, const char *key, uint64_t *out);
/* The first output line containing @needle (copied into @buf): 0 or -ENOENT. */
int vmm_proc_find_line(struct vmm_proc *p, const char *needle, char *buf, size_t len);

#endif
