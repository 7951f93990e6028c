/* SPDX-License-Identifier: MIT */
/*
 * ramfold-run end to end: a program that knows nothing of ramfold
 * (run_target.c) under ramfold-run, checked from outside (exit status, its
 * output, the log, the control socket, files left behind) and from inside
 * (its own Pss from smaps_rollup, its pages' content). RF_RUN_BIN and
 * RF_RUN_TARGET name the binaries (run/run.mk sets them).
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "rf_test.h"

static const char *run_bin, *target;
static char dir[64];
/* run(): the uid (and gid) the child takes before it execs; 0 = root's. */
static uid_t run_uid;
/* run(): a nice the child starts at, and then cannot go below (no
 * CAP_SYS_NICE, dropped from its bounding set); 0 = none. */
static int run_nice_floor;

/* Run argv with stdout and stderr into @out; returns the wait status. */
static int run(char *out, size_t len, char *const argv[])
{
	int p[2], st;
	size_t n = 0;
	ssize_t r;
	pid_t pid;

	assert_int_equal(pipe(p), 0);
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		dup2(p[1], 2);
		close(p[0]);
		if (run_uid && (setgroups(0, NULL) || setgid(run_uid) || setuid(run_uid)))
			_exit(126);
		if (run_nice_floor && (setpriority(PRIO_PROCESS, 0, run_nice_floor) ||
				       prctl(PR_CAPBSET_DROP, CAP_SYS_NICE)))
			_exit(126);
		execv(argv[0], argv);
		_exit(127);
	}
	close(p[1]);
	while (n + 1 < len && (r = read(p[0], out + n, len - n - 1)) > 0)
		n += (size_t)r;
	out[n] = 0;
	close(p[0]);
	waitpid(pid, &st, 0);
	return st;
}

static void expect_ok(const char *out, int st)
{
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("status %#x, output:\n%s", st, out);
}

static void test_dup_merges_and_discards(void **state)
{
	char out[8192];
	int st;

	(void)state;
	st = run(out, sizeof(out),
		 (char *const[]){(char *)run_bin, "--", (char *)target, "dup", "64", NULL});
	expect_ok(out, st);
	assert_non_null(strstr(out, "ok pss"));
	assert_non_null(strstr(out, "ok dontneed"));
	assert_non_null(strstr(out, "ok munmap"));
	assert_null(strstr(out, "FAIL"));
}

static void test_memory_merge_prctl(void **state)
{
	char out[8192];
	int st;

	(void)state;
	st = run(out, sizeof(out),
		 (char *const[]){(char *)run_bin, "--min-size", "16M", "--", (char *)target,
				 "merge-all", "32", NULL});
	expect_ok(out, st);
	assert_non_null(strstr(out, "ok munmap"));
}

static void test_shared_left_to_kernel(void **state)
{
	char out[8192], log[256], text[4096] = "";
	int st, fd;

	(void)state;
	snprintf(log, sizeof(log), "%s/shared.log", dir);
	st = run(out, sizeof(out),
		 (char *const[]){(char *)run_bin, "--log", log, "--", (char *)target, "shared", "8",
				 NULL});
	expect_ok(out, st);
	fd = open(log, O_RDONLY);
	assert_true(fd >= 0);
	assert_true(read(fd, text, sizeof(text) - 1) > 0);
	close(fd);
	assert_non_null(strstr(text, "left to the kernel's KSM"));
	assert_non_null(strstr(text, "MAP_SHARED"));
	unlink(log);
}

static void test_bad_option_exits_2(void **state)
{
	static const char *const bad[][2] = {
	    {"--dedup", "bogus"},
	    {"--swap-resident", "12x"},
	    {"--swap-dir", "/nonexistent"},
	    {"--metrics-port", "70000"},
	    {"--ctl", "/nonexistent/ctl"},
	    {"--bogus", "1"},
	    {"--metrics-port", "0"},
	    {"--metrics-port", "80x"},
	    {"--metrics-port", ""},
	    {"--metrics-file", "/nonexistent/m.prom"},
	    {"--dedup-paused", "-v"},	 /* paused with no --ctl: nothing could release it */
	    {"--broker", "/tmp/b.sock"}, /* the broker shares a domain: none given */
	    {"--broker-start", "/tmp/b.sock"},
	    {"--dedup-nice", "20"},
	    {"--dedup-nice", "five"},
	    {"--dedup-huge", "always"},
	    {"--dedup-huge", ""},
	};
	char out[4096], marker[128];

	(void)state;
	snprintf(marker, sizeof(marker), "%s/marker", dir);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		int st = run(out, sizeof(out),
			     (char *const[]){(char *)run_bin, (char *)bad[i][0], (char *)bad[i][1],
					     "--swap-resident", "64M", "--", (char *)target,
					     "marker", marker, NULL});

		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 2);
		assert_non_null(strstr(out, "ramfold-run: "));
		assert_null(strchr(strchr(out, '\n') + 1, '\n')); /* one line */
		assert_int_equal(access(marker, F_OK), -1);
	}
	/* And the same program does run when the options are right. */
	expect_ok(out, run(out, sizeof(out),
			   (char *const[]){(char *)run_bin, "--", (char *)target, "marker", marker,
					   NULL}));
	assert_int_equal(access(marker, F_OK), 0);
	unlink(marker);
}

/* --broker-start: a private ramfoldd is started at the path, the program's
 * domain joins it, and it ends with the program. */
static void test_broker_start(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	char out[8192], sock[100];
	int st, fd;

	(void)state;
	snprintf(sock, sizeof(sock), "%s/broker.sock", dir);
	st = run(out, sizeof(out),
		 (char *const[]){(char *)run_bin, "-v", "--dedup", "domain=t", "--broker-start",
				 sock, "--", (char *)target, "dup", "64", NULL});
	expect_ok(out, st);
	assert_non_null(strstr(out, "ok pss"));
	if (!strstr(out, "domain \"t\" joined"))
		fail_msg("the domain did not join the broker:\n%s", out);
	/* The broker went with the program. */
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	for (int i = 0; i < 100 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0; i++) {
		close(fd);
		usleep(50000);
		fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	}
	assert_int_not_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	unlink(sock);
}

/* Without the privilege userfaultfd needs (not root, no CAP_SYS_PTRACE,
 * /dev/userfaultfd root's alone, vm.unprivileged_userfaultfd=0, as this
 * machine is set): one line naming what is missing, exit status 2, and the
 * program never ran. */
static void test_missing_privilege_exits_2(void **state)
{
	char out[4096], mdir[128], marker[160], buf[8] = "";
	struct stat st;
	FILE *f = fopen("/proc/sys/vm/unprivileged_userfaultfd", "r");
	int rc;

	(void)state;
	if (f) {
		(void)!fgets(buf, sizeof(buf), f);
		fclose(f);
	}
	if (geteuid() != 0 || buf[0] != '0' || stat("/dev/userfaultfd", &st) ||
	    (st.st_mode & 0006)) {
		skip(); /* an unprivileged user could get userfaultfd here */
		return;
	}
	snprintf(mdir, sizeof(mdir), "%s/open", dir);
	mkdir(mdir, 0777);
	chmod(mdir, 0777);
	chmod(dir, 0711); /* nobody reaches the marker's directory */
	snprintf(marker, sizeof(marker), "%s/marker", mdir);
	run_uid = 65534;
	rc = run(out, sizeof(out),
		 (char *const[]){(char *)run_bin, "--", (char *)target, "marker", marker, NULL});
	run_uid = 0;
	chmod(dir, 0700);
	assert_true(WIFEXITED(rc));
	if (WEXITSTATUS(rc) != 2)
		fail_msg("status %#x, output:\n%s", rc, out);
	assert_non_null(strstr(out, "ramfold-run: "));
	assert_non_null(strstr(out, "userfaultfd"));
	assert_null(strchr(strchr(out, '\n') + 1, '\n')); /* one line */
	assert_int_equal(access(marker, F_OK), -1);
	rmdir(mdir);
}

/* A control socket another process holds: the program still runs and its
 * RAM is still merged, the log says why once, and the other process's socket
 * is left alone, by the program and by ramfold-run's cleaner after it. */
static void test_socket_taken_steps_back(void **state)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	char out[8192], sock[100], logf[128], log[8192];
	int fd = socket(AF_UNIX, SOCK_STREAM, 0), c;
	size_t n;
	FILE *f;

	(void)state;
	snprintf(sock, sizeof(sock), "%s/taken.sock", dir);
	snprintf(logf, sizeof(logf), "%s/taken.log", dir);
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 4), 0);
	expect_ok(out, run(out, sizeof(out),
			   (char *const[]){(char *)run_bin, "--ctl", sock, "--log", logf, "--",
					   (char *)target, "dup", "32", NULL}));
	assert_non_null(strstr(out, "ok pss"));
	f = fopen(logf, "r");
	assert_non_null(f);
	n = fread(log, 1, sizeof(log) - 1, f);
	log[n] = 0;
	fclose(f);
	assert_non_null(strstr(log, "in use by another process"));
	assert_null(strstr(strstr(log, "in use by another process") + 1, "in use by another"));
	usleep(300000); /* the cleaner's moment after the program's end */
	assert_int_equal(access(sock, F_OK), 0);
	c = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_int_equal(connect(c, (struct sockaddr *)&a, sizeof(a)), 0);
	close(c);
	close(fd);
	unlink(sock);
	unlink(logf);
}

static void test_children_run_without_ramfold(void **state)
{
	char out[4096];
	int st;

	(void)state;
	setenv("LD_PRELOAD", "", 1);
	st = run(out, sizeof(out),
		 (char *const[]){(char *)run_bin, "--", (char *)target, "spawn", NULL});
	unsetenv("LD_PRELOAD");
	expect_ok(out, st);
	assert_non_null(strstr(out, "child LD_PRELOAD=(none) RAMFOLD_RUN_PID=(none) mapped=0"));
}

/* Run the target in @mode (32 MiB) with @extra options and -v, its log in a
 * file read back into @log. */
static void run_mode(const char *mode, const char *extra, char *out, size_t outlen, char *log,
		     size_t loglen)
{
	char path[256];
	int st, fd;
	ssize_t n;

	snprintf(path, sizeof(path), "%s/%s.log", dir, mode);
	st = run(out, outlen,
		 extra ? (char *const[]){(char *)run_bin, "-v", "--log", path, "--swap-resident",
					 (char *)extra, "--", (char *)target, (char *)mode, "32",
					 NULL}
		       : (char *const[]){(char *)run_bin, "-v", "--log", path, "--", (char *)target,
					 (char *)mode, "32", NULL});
	fd = open(path, O_RDONLY);
	assert_true(fd >= 0);
	n = read(fd, log, loglen - 1);
	log[n > 0 ? n : 0] = 0;
	close(fd);
	unlink(path);
	if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
		fail_msg("status %#x, output:\n%s\nlog:\n%s", st, out, log);
	assert_null(strstr(out, "FAIL"));
}

static void test_mremap(void **state)
{
	char out[8192], log[16384];

	(void)state;
	run_mode("mremap", NULL, out, sizeof(out), log, sizeof(log));
	assert_non_null(strstr(out, "ok mremap shrink"));
	assert_non_null(strstr(out, "ok mremap grow moved"));
	assert_non_null(strstr(log, "released (mremap)"));
	/* The growing move of a merged range (several VMAs). */
	assert_non_null(strstr(log, "VMAs to 0x"));
}

static void test_mmap_fixed_over_adopted(void **state)
{
	char out[8192], log[16384];

	(void)state;
	run_mode("fixed", NULL, out, sizeof(out), log, sizeof(log));
	assert_non_null(strstr(out, "ok fixed merged"));
	assert_non_null(strstr(log, "released (mmap(MAP_FIXED))"));
}

static void test_program_userfaultfd(void **state)
{
	char out[8192], log[16384];

	(void)state;
	run_mode("uffd", "8M", out, sizeof(out), log, sizeof(log));
	assert_non_null(strstr(out, "ok uffd faults"));
	assert_non_null(strstr(out, "ok uffd kept"));
	assert_non_null(strstr(log, "released to the kernel: registered with the program's own "
				    "userfaultfd"));
	assert_non_null(strstr(log, "left to the kernel's KSM: registered earlier"));
}

static void test_vfio_map_dma(void **state)
{
	char out[8192], log[16384];

	(void)state;
	run_mode("vfio", NULL, out, sizeof(out), log, sizeof(log));
	assert_non_null(strstr(out, "ok vfio ioctl=-1 errno=ENOTTY"));
	assert_non_null(strstr(log, "released to the kernel: mapped for device DMA "
				    "(VFIO_IOMMU_MAP_DMA)"));
}

/* ---- a serving program: control socket, SIGTERM, SIGKILL ---------------- */

struct served {
	pid_t pid;
	int out;
	char sock[128], swapdir[128];
};

static void serve_with(struct served *s, const char *tag, const char *extra)
{
	char line[256];
	int p[2];
	size_t n = 0;

	snprintf(s->sock, sizeof(s->sock), "%s/%s.sock", dir, tag);
	snprintf(s->swapdir, sizeof(s->swapdir), "%s/swap-%s", dir, tag);
	mkdir(s->swapdir, 0700);
	assert_int_equal(pipe(p), 0);
	s->pid = fork();
	if (s->pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		if (extra)
			execl(run_bin, run_bin, extra, "--ctl", s->sock, "--swap-resident", "1G",
			      "--swap-dir", s->swapdir, "--", target, "serve", "32", (char *)NULL);
		else
			execl(run_bin, run_bin, "--ctl", s->sock, "--swap-resident", "1G",
			      "--swap-dir", s->swapdir, "--", target, "serve", "32", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	s->out = p[0];
	while (n + 1 < sizeof(line) && read(s->out, line + n, 1) == 1 && line[n] != '\n')
		n++;
	line[n] = 0;
	assert_string_equal(line, "ready");
}

static void serve(struct served *s, const char *tag)
{
	serve_with(s, tag, NULL);
}

static void ask(const char *sock, const char *req, char *reply, size_t len)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	size_t n = 0;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", sock);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
	while (n + 1 < len && read(fd, reply + n, 1) == 1 && reply[n] != '\n')
		n++;
	reply[n] = 0;
	close(fd);
}

static int swap_files(const char *d)
{
	char cmd[256], buf[16] = "";
	FILE *f;

	snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", d);
	f = popen(cmd, "r");
	assert_non_null(fgets(buf, sizeof(buf), f));
	pclose(f);
	return atoi(buf);
}

static void test_ctl_and_sigterm(void **state)
{
	struct served s;
	char r[16384];
	int st;

	(void)state;
	serve(&s, "term");
	ask(s.sock, "{\"execute\":\"query-memory\",\"id\":7}\n", r, sizeof(r));
	assert_non_null(strstr(r, "\"return\":{\"name\":\"run_target\""));
	assert_non_null(strstr(r, "\"adopted\":33554432"));
	/* The VM is promised what was adopted, no more (rf_vm_set_ram_bytes). */
	assert_non_null(strstr(r, "\"promised\":33554432"));
	assert_non_null(strstr(r, "\"pss\":"));
	assert_non_null(strstr(r, "\"breakdown\":{"));
	assert_non_null(strstr(r, "\"id\":7"));
	ask(s.sock, "{\"execute\":\"query-dedup\"}\n", r, sizeof(r));
	assert_non_null(strstr(r, "\"mode\":\"intra\""));
	assert_non_null(strstr(r, "\"huge-mode\":\"split\"")); /* the default */
	ask(s.sock, "{\"execute\":\"set-swap\",\"arguments\":{\"resident\":\"4M\"}}\n", r,
	    sizeof(r));
	assert_non_null(strstr(r, "\"return\":{\"vm\":\"run_target\",\"enabled\":true"));
	/* query-swap gives ramfold-vmm's figures (wire_swap_stats): the
	 * fault stall and the working-set sampling too. */
	ask(s.sock, "{\"execute\":\"query-swap\"}\n", r, sizeof(r));
	assert_non_null(strstr(r, "\"stall-ns\":"));
	assert_non_null(strstr(r, "\"fault-p99-ns\":"));
	assert_non_null(strstr(r, "\"active-bytes\":"));
	assert_non_null(strstr(r, "\"swap-out\":\""));
	ask(s.sock, "{\"execute\":\"set-swap\",\"arguments\":{\"resident\":\"lots\"}}\n", r,
	    sizeof(r));
	assert_non_null(strstr(r, "\"error\":{\"class\":\"GenericError\""));
	ask(s.sock, "{\"execute\":\"bogus\"}\n", r, sizeof(r));
	assert_non_null(strstr(r, "CommandNotFound"));
	/* The swap file exists only unlinked. */
	assert_int_equal(swap_files(s.swapdir), 0);

	kill(s.pid, SIGTERM);
	assert_int_equal(waitpid(s.pid, &st, 0), s.pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	assert_int_equal(access(s.sock, F_OK), -1);
	assert_int_equal(swap_files(s.swapdir), 0);
	close(s.out);
	rmdir(s.swapdir);
}

/* The wrapped process's Pss as query-memory reports it (smaps_rollup). */
static double served_pss(const char *sock)
{
	char r[16384];
	const char *p;

	ask(sock, "{\"execute\":\"query-memory\"}\n", r, sizeof(r));
	p = strstr(r, "\"process\":{");
	assert_non_null(p);
	p = strstr(p, "\"pss\":");
	assert_non_null(p);
	return atof(p + 6);
}

/* The served program of the running test (0: none). A failed assertion
 * leaves it running: the test's teardown ends it. */
static pid_t served_pid;

static int kill_served(void **state)
{
	(void)state;
	if (served_pid > 0 && !kill(served_pid, SIGKILL))
		waitpid(served_pid, NULL, 0);
	served_pid = 0;
	return 0;
}

/* SIGTERM to the served program, which must exit with status 0, and its
 * swap directory removed. */
static void stop_served(struct served *s)
{
	int st;

	kill(s->pid, SIGTERM);
	assert_int_equal(waitpid(s->pid, &st, 0), s->pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	served_pid = 0;
	close(s->out);
	rmdir(s->swapdir);
}

/* --dedup-paused: 32 MiB of duplicate pages stay unmerged (Pss stays) until
 * set-dedup releases the scanner, then merge; bad arguments are refused with
 * a clear error and leave it paused. Without the pause the same RAM merges
 * within a second (test_ctl_and_sigterm's target). */

static void test_dedup_paused_and_set_dedup(void **state)
{
	struct served s;
	char r[16384];
	double before, pss;
	int i;

	(void)state;
	serve_with(&s, "paused", "--dedup-paused");
	served_pid = s.pid;
	before = served_pss(s.sock);
	assert_true(before > 30.0 * 1048576);
	static const char *const bad[][2] = {
	    {"{\"execute\":\"set-dedup\"}\n", "give run=true and/or rate"},
	    {"{\"execute\":\"set-dedup\",\"arguments\":{\"run\":false}}\n", "run must be true"},
	    {"{\"execute\":\"set-dedup\",\"arguments\":{\"run\":1}}\n", "run must be true"},
	    {"{\"execute\":\"set-dedup\",\"arguments\":{\"rate\":\"fast\"}}\n",
	     "rate must be a whole number"},
	    {"{\"execute\":\"set-dedup\",\"arguments\":{\"rate\":-5}}\n",
	     "rate must be a whole number"},
	};
	for (i = 0; i < (int)(sizeof(bad) / sizeof(bad[0])); i++) {
		ask(s.sock, bad[i][0], r, sizeof(r));
		if (!strstr(r, "\"error\":{\"class\":\"GenericError\"") || !strstr(r, bad[i][1]))
			fail_msg("%s -> %s", bad[i][0], r);
	}
	/* Paused for 3 s, the bad commands included: nothing merged. */
	sleep(3);
	pss = served_pss(s.sock);
	if (pss < before - 1048576)
		fail_msg("Pss %.0f while paused, %.0f at start: merged", pss, before);
	ask(s.sock, "{\"execute\":\"query-dedup\"}\n", r, sizeof(r));
	assert_non_null(strstr(r, "\"pages-merged\":0,"));
	assert_non_null(strstr(r, "\"paused\":true"));

	ask(s.sock, "{\"execute\":\"set-dedup\",\"arguments\":{\"run\":true},\"id\":3}\n", r,
	    sizeof(r));
	assert_non_null(strstr(r, "\"return\":{\"run\":true,\"rate\":0}"));
	for (i = 0; i < 100 && (pss = served_pss(s.sock)) > before - 16.0 * 1048576; i++)
		usleep(100000);
	if (pss > before - 16.0 * 1048576)
		fail_msg("Pss %.0f after release, %.0f before: not merged", pss, before);
	ask(s.sock, "{\"execute\":\"query-dedup\"}\n", r, sizeof(r));
	assert_non_null(strstr(r, "\"paused\":false"));
	/* A rate once running, and back to the budgets. */
	ask(s.sock, "{\"execute\":\"set-dedup\",\"arguments\":{\"rate\":1000}}\n", r, sizeof(r));
	assert_non_null(strstr(r, "\"return\":{\"run\":true,\"rate\":1000}"));
	ask(s.sock, "{\"execute\":\"set-dedup\",\"arguments\":{\"rate\":0}}\n", r, sizeof(r));
	assert_non_null(strstr(r, "\"rate\":0}"));

	stop_served(&s);
}

/*
 * --dedup-nice: the program's scanner thread runs at that nice and its
 * other threads at the program's; a nice the program may not take (below
 * its own without CAP_SYS_NICE) is one line and status 2 before it runs,
 * found by the trial engine's scanner.
 */
static void test_dedup_nice(void **state)
{
	int own = getpriority(PRIO_PROCESS, 0), st;
	char out[4096], marker[128];
	struct served s;

	(void)state;
	rf_require(own <= 7, "running above nice 7: going down to 7 needs CAP_SYS_NICE");
	serve_with(&s, "nice", "--dedup-nice=7");
	served_pid = s.pid;
	/* One scanner per CPU (the engine's default): each at 7. */
	assert_true(rf_test_threads_at_nice(s.pid, "rf-scan/", 7) >= 1);
	assert_true(rf_test_threads_at_nice(s.pid, "rf-fault/", own) >= 1);
	assert_true(rf_test_threads_at_nice(s.pid, "run_target", own) >= 1);
	kill(s.pid, SIGTERM);
	assert_int_equal(waitpid(s.pid, &st, 0), s.pid);
	served_pid = 0;
	close(s.out);
	rmdir(s.swapdir);

	rf_require(geteuid() == 0, "dropping CAP_SYS_NICE for the refusal needs root");
	snprintf(marker, sizeof(marker), "%s/nice-marker", dir);
	run_nice_floor = 10;
	st = run(out, sizeof(out),
		 (char *const[]){(char *)run_bin, "--dedup-nice", "5", "--", (char *)target,
				 "marker", marker, NULL});
	run_nice_floor = 0;
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) != 2 || !strstr(out, "ramfold-run: --dedup-nice 5: ") ||
	    !strstr(out, "CAP_SYS_NICE"))
		fail_msg("status %#x, output:\n%s", st, out);
	assert_null(strchr(strchr(out, '\n') + 1, '\n')); /* one line */
	assert_int_equal(access(marker, F_OK), -1);
	/* Above its own nice it may go. */
	run_nice_floor = 10;
	st = run(out, sizeof(out),
		 (char *const[]){(char *)run_bin, "--dedup-nice", "12", "--", (char *)target,
				 "marker", marker, NULL});
	run_nice_floor = 0;
	expect_ok(out, st);
	assert_int_equal(access(marker, F_OK), 0);
	unlink(marker);
}

/* query-dedup's huge-mode is @mode (else the test fails with the answer). */
static void expect_huge_mode(const char *sock, const char *mode)
{
	char r[16384], want[64];

	ask(sock, "{\"execute\":\"query-dedup\"}\n", r, sizeof(r));
	snprintf(want, sizeof(want), "\"huge-mode\":\"%s\"", mode);
	if (!strstr(r, want))
		fail_msg("query-dedup: no %s in %s", want, r);
}

/*
 * --dedup-huge: a bad mode is one line naming the option and the accepted
 * modes, status 2, and the program never runs; a good one reaches the
 * program's engine (query-dedup's huge-mode), and set-dedup's "huge"
 * changes it, alone or with a rate; a bad "huge" is an error naming it
 * that changes nothing (not even a rate given with it), and the socket
 * serves on.
 */
static void test_dedup_huge(void **state)
{
	static const char *const bad[][2] = {
	    {"{\"execute\":\"set-dedup\",\"arguments\":{\"huge\":\"never\"}}\n",
	     "set-dedup: huge \\\"never\\\": expected split, keep or split-cold"},
	    {"{\"execute\":\"set-dedup\",\"arguments\":{\"huge\":1}}\n",
	     "set-dedup: huge must be a string: split, keep or split-cold"},
	    {"{\"execute\":\"set-dedup\",\"arguments\":{\"huge\":\"keep\",\"rate\":-1}}\n",
	     "rate must be a whole number"},
	    {"{\"execute\":\"set-dedup\",\"arguments\":{\"huge\":\"split\",\"run\":false}}\n",
	     "run must be true"},
	};
	char out[4096], marker[128], r[16384];
	struct served s;
	int st;

	(void)state;
	snprintf(marker, sizeof(marker), "%s/huge-marker", dir);
	st = run(out, sizeof(out),
		 (char *const[]){(char *)run_bin, "--dedup-huge", "sometimes", "--", (char *)target,
				 "marker", marker, NULL});
	assert_true(WIFEXITED(st));
	if (WEXITSTATUS(st) != 2 ||
	    strcmp(out, "ramfold-run: --dedup-huge sometimes: expected split, keep or "
			"split-cold\n"))
		fail_msg("status %#x, output:\n%s", st, out);
	assert_int_equal(access(marker, F_OK), -1);
	/* A mode the library cannot do here (no PAGEMAP_SCAN) is refused the
	 * same way, with its reason: nothing more to test on such a kernel. */
	st = run(out, sizeof(out),
		 (char *const[]){(char *)run_bin, "--dedup-huge", "keep", "--", (char *)target,
				 "marker", marker, NULL});
	if (WIFEXITED(st) && WEXITSTATUS(st) == 2) {
		assert_non_null(strstr(out, "ramfold-run: --dedup-huge keep: refused here ("));
		assert_int_equal(access(marker, F_OK), -1);
		rf_require(false,
			   "huge pages cannot be kept whole here (PAGEMAP_SCAN, Linux 6.7+)");
	}
	expect_ok(out, st);
	assert_int_equal(access(marker, F_OK), 0);
	unlink(marker);

	serve_with(&s, "huge", "--dedup-huge=keep");
	served_pid = s.pid;
	expect_huge_mode(s.sock, "keep");
	ask(s.sock, "{\"execute\":\"set-dedup\",\"arguments\":{\"huge\":\"split-cold\"}}\n", r,
	    sizeof(r));
	assert_non_null(strstr(r, "\"return\":{\"huge\":\"split-cold\"}"));
	expect_huge_mode(s.sock, "split-cold");
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		ask(s.sock, bad[i][0], r, sizeof(r));
		if (!strstr(r, "\"error\":{\"class\":\"GenericError\"") || !strstr(r, bad[i][1]))
			fail_msg("%s -> %s", bad[i][0], r);
		expect_huge_mode(s.sock, "split-cold");
	}
	ask(s.sock,
	    "{\"execute\":\"set-dedup\",\"arguments\":{\"huge\":\"split\",\"rate\":1000}}\n", r,
	    sizeof(r));
	assert_non_null(strstr(r, "\"return\":{\"run\":true,\"rate\":1000,\"huge\":\"split\"}"));
	expect_huge_mode(s.sock, "split");
	ask(s.sock, "{\"execute\":\"help\"}\n", r, sizeof(r));
	assert_non_null(strstr(r, "huge=split|keep|split-cold"));

	stop_served(&s);
}

/* A port nobody listens on now. */
static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	close(fd);
	return ntohs(a.sin_port);
}

/* The value of the first sample line starting with @name in @text, which
 * must be a number; -1 if there is none. */
static double sample(const char *text, const char *name)
{
	const char *l = text;
	char *end;

	while ((l = strstr(l, name))) {
		if (l == text || l[-1] == '\n') {
			const char *v = strchr(l, ' ');
			double d;

			assert_non_null(v);
			d = strtod(v + 1, &end);
			if (end == v + 1 || (*end != '\n' && *end != ' '))
				fail_msg("%s: not a number: %.40s", name, v + 1);
			return d;
		}
		l++;
	}
	return -1;
}

static void check_metrics(const char *text)
{
	assert_true(sample(text, "ramfold_run_adopted_bytes{vm=\"run_target\"}") == 33554432);
	assert_true(sample(text, "ramfold_run_process_bytes{vm=\"run_target\",kind=\"pss\"}") > 0);
	/* The VM's own figures, from the library. */
	assert_true(sample(text, "ramfold_vm_bytes{vm=\"run_target\",category=\"private\"}") >= 0);
	assert_true(sample(text, "ramfold_vm_bytes{vm=\"run_target\",category=\"promised\"}") > 0);
	assert_true(sample(text, "ramfold_host_saved_bytes") >= 0);
	assert_non_null(strstr(text, "# TYPE "));
}

static void test_metrics_file_and_port(void **state)
{
	char file[128], text[1 << 16], sock[128];
	int port = free_port(), p[2], st, fd;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	char portstr[16], line[64];
	size_t n = 0;
	ssize_t r;
	pid_t pid;
	struct stat sb1, sb2;

	(void)state;
	snprintf(file, sizeof(file), "%s/m.prom", dir);
	snprintf(sock, sizeof(sock), "%s/m.sock", dir);
	snprintf(portstr, sizeof(portstr), "%d", port);
	assert_int_equal(pipe(p), 0);
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 1);
		close(p[0]);
		execl(run_bin, run_bin, "--metrics-file", file, "--metrics-port", portstr, "--",
		      target, "serve", "32", (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	while (n + 1 < sizeof(line) && read(p[0], line + n, 1) == 1 && line[n] != '\n')
		n++;
	line[n] = 0;
	assert_string_equal(line, "ready");

	/* The file: written within a second or two, then rewritten. */
	for (int i = 0; i < 50 && stat(file, &sb1); i++)
		usleep(100000);
	sleep(2);
	assert_int_equal(stat(file, &sb1), 0);
	fd = open(file, O_RDONLY);
	assert_true(fd >= 0);
	r = read(fd, text, sizeof(text) - 1);
	close(fd);
	assert_true(r > 0);
	text[r] = 0;
	check_metrics(text);
	sleep(2);
	assert_int_equal(stat(file, &sb2), 0);
	assert_true(sb2.st_ino != sb1.st_ino || sb2.st_mtim.tv_nsec != sb1.st_mtim.tv_nsec ||
		    sb2.st_mtim.tv_sec != sb1.st_mtim.tv_sec);

	/* The port: GET /metrics, the same text; anything else 404. */
	fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_port = htons((uint16_t)port);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_true(write(fd, "GET /metrics HTTP/1.0\r\n\r\n", 25) == 25);
	n = 0;
	while (n + 1 < sizeof(text) && (r = read(fd, text + n, sizeof(text) - 1 - n)) > 0)
		n += (size_t)r;
	text[n] = 0;
	close(fd);
	assert_true(!strncmp(text, "HTTP/1.0 200 OK\r\n", 17));
	assert_non_null(strstr(text, "\r\n\r\n"));
	check_metrics(strstr(text, "\r\n\r\n") + 4);
	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_true(write(fd, "GET /nope HTTP/1.0\r\n\r\n", 22) == 22);
	r = read(fd, text, sizeof(text) - 1);
	text[r > 0 ? r : 0] = 0;
	close(fd);
	assert_true(!strncmp(text, "HTTP/1.0 404", 12));

	kill(pid, SIGTERM);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
	close(p[0]);
	assert_int_equal(access(file, F_OK), -1); /* removed at exit */
}

/* Whether @path is gone within 2 s (the cleaner acts once the program's end
 * closes its pipe, a moment after waitpid returns). */
static bool gone_soon(const char *path)
{
	for (int i = 0; i < 200; i++) {
		if (access(path, F_OK))
			return true;
		usleep(10000);
	}
	return false;
}

static void test_sigkill_leaves_nothing(void **state)
{
	struct served s;
	char r[16384];
	int st;

	(void)state;
	serve(&s, "kill");
	kill(s.pid, SIGKILL);
	waitpid(s.pid, &st, 0);
	close(s.out);
	assert_int_equal(swap_files(s.swapdir), 0);
	/* ramfold-run's cleaner removes what the killed program could not. */
	assert_true(gone_soon(s.sock));
	/* A stale socket (the cleaner killed too) is unlinked by the next run. */
	assert_int_equal(mknod(s.sock, S_IFSOCK | 0600, 0), 0);
	serve(&s, "kill");
	ask(s.sock, "{\"execute\":\"query-dedup\"}\n", r, sizeof(r));
	assert_non_null(strstr(r, "\"return\""));
	kill(s.pid, SIGTERM);
	waitpid(s.pid, &st, 0);
	close(s.out);
	assert_int_equal(access(s.sock, F_OK), -1);
	rmdir(s.swapdir);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_option_exits_2),
	    cmocka_unit_test(test_broker_start),
	    cmocka_unit_test(test_missing_privilege_exits_2),
	    cmocka_unit_test(test_socket_taken_steps_back),
	    cmocka_unit_test(test_dup_merges_and_discards),
	    cmocka_unit_test(test_memory_merge_prctl),
	    cmocka_unit_test(test_shared_left_to_kernel),
	    cmocka_unit_test(test_children_run_without_ramfold),
	    cmocka_unit_test(test_mremap),
	    cmocka_unit_test(test_mmap_fixed_over_adopted),
	    cmocka_unit_test(test_program_userfaultfd),
	    cmocka_unit_test(test_vfio_map_dma),
	    cmocka_unit_test(test_metrics_file_and_port),
	    cmocka_unit_test(test_ctl_and_sigterm),
	    cmocka_unit_test_teardown(test_dedup_paused_and_set_dedup, kill_served),
	    cmocka_unit_test_teardown(test_dedup_nice, kill_served),
	    cmocka_unit_test_teardown(test_dedup_huge, kill_served),
	    cmocka_unit_test(test_sigkill_leaves_nothing),
	};
	int ret;

	run_bin = getenv("RF_RUN_BIN");
	target = getenv("RF_RUN_TARGET");
	if (!run_bin || !target) {
		fprintf(stderr,
			"test_run: set RF_RUN_BIN and RF_RUN_TARGET (make run-test does)\n");
		return 1;
	}
	snprintf(dir, sizeof(dir), "/tmp/rf-run-test.XXXXXX");
	if (!mkdtemp(dir))
		return 1;
	signal(SIGPIPE, SIG_IGN);
	ret = cmocka_run_group_tests(tests, NULL, NULL);
	rmdir(dir);
	return ret;
}
