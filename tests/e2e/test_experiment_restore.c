/* SPDX-License-Identifier: MIT */
/*
 * The experiment leaves the host as it found it (issue 18): a runner killed
 * outright (SIGKILL) half-way through the kernel-stack run cannot clean up,
 * so its journal must let the restore path put back swap, zswap, KSM and
 * the memory cgroup: first `overcommit-run --restore`, then the next start
 * of the runner. Each kill comes only once the runner has changed all four
 * (so a runner that changed nothing fails too), and the teardown puts the
 * host back by hand if the restore path did not. The density search
 * (bench/density.c) killed outright during its kernel-stack trial: its
 * runner, told by PR_SET_PDEATHSIG, puts the host back on its own.
 */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rf_test.h"
#include "vmm_proc.h"

#define KSM   "/sys/kernel/mm/ksm/"
#define ZSWAP "/sys/module/zswap/parameters/"
#define CG1   "/sys/fs/cgroup/memory"
#define CG2   "/sys/fs/cgroup"

static const char *const knobs[] = {KSM "run", KSM "pages_to_scan", KSM "sleep_millisecs",
				    ZSWAP "enabled", ZSWAP "compressor"};
#define NKNOBS (sizeof(knobs) / sizeof(knobs[0]))

static struct {
	char out[512], runner[512], journal[600], scenario[600], density[512];
	char knob[NKNOBS][64]; /* the host's values before the test */
	char before[1 << 13];  /* the state as one string, to compare */
	pid_t runner_pid;
} t;

static void read_line(const char *path, char *buf, size_t cap)
{
	FILE *f = fopen(path, "re");

	buf[0] = 0;
	if (f) {
		if (!fgets(buf, (int)cap, f))
			buf[0] = 0;
		fclose(f);
	}
	buf[strcspn(buf, "\n")] = 0;
}

static const char *cgroup_root(void)
{
	char l[256];

	read_line(CG2 "/cgroup.subtree_control", l, sizeof(l));
	return strstr(l, "memory") ? CG2 : CG1;
}

/* Swap areas, the knobs, and the experiment's cgroups, as one string. */
static void host_state(char *out, size_t cap)
{
	char l[256];
	size_t n = 0;
	FILE *f = fopen("/proc/swaps", "re");
	DIR *d = opendir(cgroup_root());
	struct dirent *e;

	out[0] = 0;
	while (f && fgets(l, sizeof(l), f))
		n += (size_t)snprintf(out + n, cap - n, "swap %s", l);
	if (f)
		fclose(f);
	for (size_t i = 0; i < NKNOBS && n < cap; i++) {
		read_line(knobs[i], l, sizeof(l));
		n += (size_t)snprintf(out + n, cap - n, "%s=%s\n", knobs[i], l);
	}
	while (d && (e = readdir(d)) && n < cap)
		if (!strncmp(e->d_name, "ramfold-experiment", 18))
			n += (size_t)snprintf(out + n, cap - n, "cgroup %s\n", e->d_name);
	if (d)
		closedir(d);
}

static bool file_has(const char *path, const char *s)
{
	static char buf[1 << 14];
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return false;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	return strstr(buf, s) != NULL;
}

/* Put the host back by hand: the restore path failed, or never ran. */
static void restore_by_hand(void)
{
	char path[1200], state[1 << 13];
	DIR *d;
	struct dirent *e;

	if (t.runner_pid > 0) {
		kill(t.runner_pid, SIGKILL);
		waitpid(t.runner_pid, NULL, 0);
		t.runner_pid = 0;
	}
	snprintf(path, sizeof(path), "%s --out %s --restore >/dev/null 2>&1", t.runner, t.out);
	if (system(path)) {
		/* ignored: the checks below do the rest */
	}
	host_state(state, sizeof(state));
	if (!strcmp(state, t.before))
		return;
	snprintf(path, sizeof(path), "%s/kernel-stack.swap", t.out);
	swapoff(path);
	unlink(path);
	if ((d = opendir(cgroup_root()))) {
		while ((e = readdir(d)))
			if (!strncmp(e->d_name, "ramfold-experiment", 18) &&
			    !strstr(t.before, e->d_name)) {
				snprintf(path, sizeof(path), "%s/%s", cgroup_root(), e->d_name);
				rmdir(path);
			}
		closedir(d);
	}
	for (size_t i = NKNOBS; i-- > 0;) {
		FILE *f;

		if (i == 0 && (f = fopen(knobs[i], "we"))) { /* unmerge first */
			fputs("2", f);
			fclose(f);
		}
		if ((f = fopen(knobs[i], "we"))) {
			fputs(t.knob[i], f);
			fclose(f);
		}
	}
	print_message("restored the host by hand after a failure\n");
}

static int setup(void **state)
{
	const char *b = getenv("B") ? getenv("B") : "build";
	FILE *f;

	(void)state;
	for (size_t i = 0; i < NKNOBS; i++)
		read_line(knobs[i], t.knob[i], sizeof(t.knob[i]));
	host_state(t.before, sizeof(t.before));
	snprintf(t.runner, sizeof(t.runner), "%s/bench/overcommit-run", b);
	snprintf(t.density, sizeof(t.density), "%s/bench/density-run", b);
	snprintf(t.out, sizeof(t.out), "%s/experiment-restore-e2e", b);
	snprintf(t.journal, sizeof(t.journal), "%s/host.journal", t.out);
	snprintf(t.scenario, sizeof(t.scenario), "%s/scenario.txt", t.out);
	mkdir(t.out, 0755);
	f = fopen(t.scenario, "we");
	if (!f)
		return -1;
	/* The runner's first start may find a journal of an earlier failed run:
	 * it restores from it, as the test then expects. */
	fprintf(f, "budget 96M\nduration 40\nsettle 10\n"
		   "run kernel-stack --policy off +kernel\n"
		   "run ramfold --policy 250\n"
		   "vm name=check0,mem=128M,workload=memcheck,mib=80\n"
		   "vm name=idle0,mem=128M,workload=idle,mib=8,pause=100\n");
	fclose(f);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	restore_by_hand();
	return 0;
}

/* The pid of the runner density-run (t.runner_pid) started; 0 if none yet. */
static int density_runner(void)
{
	char path[64], l[256];

	snprintf(path, sizeof(path), "/proc/%d/task/%d/children", (int)t.runner_pid,
		 (int)t.runner_pid);
	read_line(path, l, sizeof(l));
	return atoi(l);
}

/* Start the runner (@density: the density search over it, its kernel stack
 * only), wait until the runner has changed all four, kill what was started
 * (SIGKILL). */
static void start_and_kill(bool density)
{
	char cg[700], swapfile[600], procs[720];
	int i;

	t.runner_pid = fork();
	assert_true(t.runner_pid >= 0);
	if (t.runner_pid == 0) {
		char log[600];

		snprintf(log, sizeof(log), "%s/runner.log", t.out);
		if (!freopen(log, "w", stdout) || !freopen(log, "a", stderr))
			_exit(127);
		if (density)
			execl(t.density, t.density, "--vmm", vmm_bin_path(), "--runner", t.runner,
			      "--out", t.out, "--stacks", "kernel", "--start", "1", "--max", "1",
			      "--settle", "10", "--measure", "20", "--quiet-wait", "0", t.scenario,
			      (char *)NULL);
		else
			execl(t.runner, t.runner, "--vmm", vmm_bin_path(), "--out", t.out,
			      t.scenario, (char *)NULL);
		_exit(127);
	}
	snprintf(swapfile, sizeof(swapfile), "%s/kernel-stack.swap", t.out);
	for (i = 0; i < 900; i++) {
		char run[16], procs_line[32];

		/* The cgroup is named after the runner: a child of density-run's. */
		snprintf(cg, sizeof(cg), "%s/ramfold-experiment-%d", cgroup_root(),
			 density ? density_runner() : (int)t.runner_pid);
		snprintf(procs, sizeof(procs), "%s/cgroup.procs", cg);
		read_line(KSM "run", run, sizeof(run));
		read_line(procs, procs_line, sizeof(procs_line));
		if (file_has("/proc/swaps", swapfile) && !strcmp(run, "1") && *procs_line &&
		    file_has(t.journal, "cgroup ") && file_has(t.journal, "zswap_enabled "))
			break;
		assert_int_equal(waitpid(t.runner_pid, NULL, WNOHANG), 0);
		usleep(100000);
	}
	assert_true(i < 900); /* the run set up the kernel's stack within 90 s */
	sleep(3);	      /* half-way: the guests run in the cgroup */
	kill(t.runner_pid, SIGKILL);
	waitpid(t.runner_pid, NULL, 0);
	t.runner_pid = 0;
	if (!density) /* else the runner is putting the host back already */
		assert_true(file_has(t.journal, "swap_file "));
}

static void assert_host_as_before(void)
{
	char now[1 << 13];

	/* A runner restoring on its own (SIGTERM) takes a moment. */
	for (int i = 0; i < 300 && (host_state(now, sizeof(now)), strcmp(now, t.before)); i++)
		usleep(100000);
	if (strcmp(now, t.before))
		fail_msg("the host was not put back:\n--- before\n%s--- after\n%s", t.before, now);
	assert_int_equal(access(t.journal, F_OK), -1);
}

static void test_restore_after_sigkill(void **state)
{
	char cmd[1300];
	int rc;

	(void)state;
	rf_require(geteuid() == 0, "root needed (swap, zswap, KSM, cgroups)");
	rf_require(access("/dev/kvm", R_OK | W_OK) == 0, "/dev/kvm not accessible");
	rf_require(!access(KSM "run", W_OK) && !access(ZSWAP "enabled", W_OK),
		   "no KSM or zswap in this kernel");
	rf_require(!access(CG1 "/memory.limit_in_bytes", W_OK) || !strcmp(cgroup_root(), CG2),
		   "no memory cgroup controller");
	rf_require(!system("command -v mkswap >/dev/null || test -x /sbin/mkswap"), "no mkswap");

	/* The restore target's path: overcommit-run --restore. */
	start_and_kill(false);
	snprintf(cmd, sizeof(cmd), "%s --out %s --restore", t.runner, t.out);
	rc = system(cmd);
	assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 0);
	assert_host_as_before();

	/* The next start's path: it restores before it reads its scenario (one
	 * that does not exist here, so it stops right after). */
	start_and_kill(false);
	snprintf(cmd, sizeof(cmd), "%s --vmm %s --out %s /nonexistent-scenario 2>/dev/null",
		 t.runner, vmm_bin_path(), t.out);
	rc = system(cmd);
	assert_true(WIFEXITED(rc) && WEXITSTATUS(rc) == 2);
	assert_host_as_before();
}

/* density-run killed outright in its kernel-stack trial: the runner it
 * started gets SIGTERM (PR_SET_PDEATHSIG) and puts the host back itself,
 * with no --restore. */
static void test_density_killed(void **state)
{
	(void)state;
	rf_require(geteuid() == 0, "root needed (swap, zswap, KSM, cgroups)");
	rf_require(access("/dev/kvm", R_OK | W_OK) == 0, "/dev/kvm not accessible");
	rf_require(!access(KSM "run", W_OK) && !access(ZSWAP "enabled", W_OK),
		   "no KSM or zswap in this kernel");
	rf_require(!access(t.density, X_OK), "no density-run (make all)");
	start_and_kill(true);
	assert_host_as_before();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_restore_after_sigkill, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_density_killed, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
