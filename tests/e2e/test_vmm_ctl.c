/* SPDX-License-Identifier: MIT */
/*
 * The demo VMM's control socket with running guests: query-vms and
 * query-memory answer with what the library and the kernel measure, and
 * query-vms's work-bytes with what the guest counted of its own work; bad
 * requests (malformed JSON, unknown command, wrong argument types, an
 * oversized line) get an error reply on a connection that stays usable; the
 * client mode prints the reply and sets its exit status; quit ends the VMM.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rf_test.h"
#include "vmm_proc.h"

#define require_kvm() rf_require(access("/dev/kvm", R_OK | W_OK) == 0, "/dev/kvm not accessible")

static struct vmm_proc vp;
static bool started;

static int setup(void **state)
{
	const char *args[] = {"--vm", "name=d0,mem=128M,workload=dup,mib=64", "--vm",
			      "name=i0,mem=64M,workload=idle", NULL};

	(void)state;
	if (access("/dev/kvm", R_OK | W_OK))
		return 0;
	if (vmm_proc_start(&vp, args) || vmm_proc_wait_ready(&vp, "d0", 30000) ||
	    vmm_proc_wait_ready(&vp, "i0", 30000)) {
		print_message("VMM did not start:\n%s\n", vp.out ? vp.out : "");
		return -1;
	}
	started = true;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	if (started) {
		vmm_proc_stop(&vp);
		vmm_proc_free(&vp);
	}
	return 0;
}

static void ctl(const char *req, char *reply, size_t len)
{
	int rc = vmm_proc_ctl(&vp, req, reply, len, 5000);

	if (rc)
		fail_msg("control request %s: %s", req, strerror(-rc));
}

static void test_query_vms(void **state)
{
	char r[4096];

	(void)state;
	require_kvm();
	ctl("{\"execute\":\"query-vms\"}", r, sizeof(r));
	assert_int_equal(strncmp(r, "{\"return\":[", 11), 0);
	assert_non_null(strstr(r, "{\"name\":\"d0\",\"state\":\"ready\",\"workload\":\"dup\","
				  "\"mem-bytes\":134217728,\"ready-ms\":"));
	assert_non_null(strstr(r, "{\"name\":\"i0\",\"state\":\"ready\",\"workload\":\"idle\","
				  "\"mem-bytes\":67108864,"));
	/* The id is echoed, whatever JSON value it is. */
	ctl("{\"execute\":\"query-vms\",\"id\":{\"n\":[1,2]}}", r, sizeof(r));
	assert_non_null(strstr(r, ",\"id\":{\"n\":[1,2]}}"));
}

/* A byte count or counter from a reply (fails the test if it is missing). */
#define field(json, key) ((uint64_t)rf_test_json_num((json), (key)))

static void test_query_memory(void **state)
{
	struct vmm_smaps sm;
	char r[8192];
	uint64_t res;

	(void)state;
	require_kvm();
	ctl("{\"execute\":\"query-memory\",\"arguments\":{\"vm\":\"d0\"}}", r, sizeof(r));
	assert_int_equal(strncmp(r, "{\"return\":{\"name\":\"d0\",\"promised\":134217728,", 44), 0);
	res = field(r, "resident");
	/* The guest wrote 64 MiB of pages (zero pages included): all resident. */
	assert_in_range(res, 64ull << 20, 128ull << 20);
	assert_int_equal(field(r, "private"), 128ull << 20);
	assert_int_equal(field(r, "merged"), 0);
	/* The kernel agrees: the VMM holds at least that much. */
	assert_int_equal(vmm_smaps_rollup(vp.pid, &sm), 0);
	assert_true(sm.rss >= res);
	assert_true(sm.anon >= res);

	ctl("{\"execute\":\"query-memory\"}", r, sizeof(r));
	assert_non_null(strstr(r, "\"vms\":[{\"name\":\"d0\""));
	assert_non_null(strstr(r, "{\"name\":\"i0\""));
	assert_non_null(strstr(r, "\"host\":{\"vmm-rss\":"));
	assert_true(field(r, "vmm-rss") >= res);
}

static void expect_error(const char *req, const char *cls, const char *desc)
{
	char r[4096];

	ctl(req, r, sizeof(r));
	if (strncmp(r, "{\"error\":{\"class\":\"", 19) || !strstr(r, cls) || !strstr(r, desc))
		fail_msg("request %s: expected error %s \"%s\", got %s", req, cls, desc, r);
}

static void test_bad_requests_get_errors(void **state)
{
	(void)state;
	require_kvm();
	expect_error("{\"execute\":", "GenericError", "malformed JSON: unexpected end of input");
	expect_error("not json at all", "GenericError", "malformed JSON");
	expect_error("{\"execute\":\"query-vms\"} trailing", "GenericError", "trailing characters");
	expect_error("[1,2,3]", "GenericError", "must be a JSON object");
	expect_error("{\"arguments\":{}}", "GenericError", "missing \\\"execute\\\"");
	expect_error("{\"execute\":\"no-such-command\",\"id\":3}", "CommandNotFound",
		     "unknown command \\\"no-such-command\\\"");
	expect_error("{\"execute\":\"query-memory\",\"arguments\":[1]}", "GenericError",
		     "\\\"arguments\\\" must be an object");
	expect_error("{\"execute\":\"query-memory\",\"arguments\":{\"vm\":\"nope\"}}",
		     "GenericError", "no VM named \\\"nope\\\"");
	expect_error("{\"execute\":\"query-memory\",\"arguments\":{\"vm\":7}}", "GenericError",
		     "missing argument \\\"vm\\\"");
	expect_error("{\"execute\":\"x\",\"s\":\"\\ud800\"}", "GenericError", "lone surrogate");
	{
		/* Nested too deep for the parser's bound. */
		char deep[200];

		memset(deep, '[', sizeof(deep) - 1);
		deep[sizeof(deep) - 1] = 0;
		expect_error(deep, "GenericError", "nested deeper than");
	}
}

/* Several requests on one connection, bad ones in between: each gets its
 * reply in order, and an oversized line is refused without closing. */
static void test_connection_survives_bad_input(void **state)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	size_t big = 70000, got = 0;
	char *line, r[16384];
	int fd, nl = 0;

	(void)state;
	require_kvm();
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", vp.ctl_path);
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	line = malloc(big + 1);
	assert_non_null(line);
	memset(line, 'x', big);
	line[big] = '\n';
	assert_int_equal(write(fd, "{oops\n", 6), 6);
	assert_int_equal(write(fd, line, big + 1), (ssize_t)big + 1);
	assert_int_equal(write(fd, "\n{\"execute\":\"query-vms\"}\n", 26), 26);
	free(line);
	while (nl < 3 && got < sizeof(r) - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		assert_int_equal(poll(&p, 1, 5000), 1);
		n = read(fd, r + got, sizeof(r) - 1 - got);
		assert_true(n > 0);
		for (ssize_t i = 0; i < n; i++)
			nl += r[got + (size_t)i] == '\n';
		got += (size_t)n;
	}
	r[got] = 0;
	close(fd);
	assert_non_null(strstr(r, "malformed JSON"));
	assert_non_null(strstr(r, "request longer than 65536 bytes"));
	assert_non_null(strstr(r, "{\"return\":[{\"name\":\"d0\""));
	assert_true(strstr(r, "malformed") < strstr(r, "longer") &&
		    strstr(r, "longer") < strstr(r, "\"return\""));
}

static int run_client(const char *const *args, char *out, size_t len)
{
	const char *argv[16];
	int pipefd[2], n = 0, st;
	size_t got = 0;
	ssize_t r;
	pid_t pid;

	argv[n++] = vmm_bin_path();
	argv[n++] = "ctl";
	argv[n++] = vp.ctl_path;
	for (int i = 0; args[i]; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		dup2(pipefd[1], 1);
		dup2(pipefd[1], 2);
		execv(argv[0], (char *const *)argv);
		_exit(127);
	}
	close(pipefd[1]);
	while (got + 1 < len && (r = read(pipefd[0], out + got, len - 1 - got)) > 0)
		got += (size_t)r;
	out[got] = 0;
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &st, 0), pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

static void test_client_mode(void **state)
{
	const char *q[] = {"query-memory", "vm=i0", NULL};
	const char *j[] = {"query-memory", "{\"vm\":\"d0\"}", NULL};
	const char *bad[] = {"no-such", NULL};
	const char *badarg[] = {"query-memory", "novalue", NULL};
	char out[8192];

	(void)state;
	require_kvm();
	assert_int_equal(run_client(q, out, sizeof(out)), 0);
	assert_int_equal(strncmp(out, "{\"return\":{\"name\":\"i0\"", 22), 0);
	assert_int_equal(run_client(j, out, sizeof(out)), 0);
	assert_int_equal(strncmp(out, "{\"return\":{\"name\":\"d0\"", 22), 0);
	assert_int_equal(run_client(bad, out, sizeof(out)), 1);
	assert_non_null(strstr(out, "CommandNotFound"));
	assert_int_equal(run_client(badarg, out, sizeof(out)), 2);
	assert_non_null(strstr(out, "ramfold-vmm: ctl: argument \"novalue\" is not key=value"));
}

/* A VM's work-bytes in query-vms: the field after its name. */
static uint64_t work_bytes(struct vmm_proc *p, const char *vm)
{
	char r[4096], pat[48];
	const char *o;
	int rc = vmm_proc_ctl(p, "{\"execute\":\"query-vms\"}", r, sizeof(r), 5000);

	if (rc)
		fail_msg("query-vms: %s", strerror(-rc));
	snprintf(pat, sizeof(pat), "{\"name\":\"%s\"", vm);
	o = strstr(r, pat);
	if (!o)
		fail_msg("no VM %s in %s", vm, r);
	return (uint64_t)rf_test_json_num(o, "work-bytes");
}

/*
 * work-bytes is the guest's own count of its work, which a bench samples
 * for the guest's throughput: memcheck counts exactly the bytes of its
 * rounds, hotcold whole passes over its hot set while it runs, and the
 * other workloads nothing.
 */
static void test_work_bytes(void **state)
{
	const char *args[] = {"--vm", "name=mc,mem=64M,workload=memcheck,mib=16,rounds=3", "--vm",
			      "name=hc,mem=64M,workload=hotcold,mib=8,hot=8", NULL};
	struct vmm_proc p;
	uint64_t a, b;

	(void)state;
	require_kvm();
	assert_int_equal(work_bytes(&vp, "d0"), 0);
	assert_int_equal(work_bytes(&vp, "i0"), 0);
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_output(&p, "RESULT memcheck", 30000), 0);
	assert_int_equal(work_bytes(&p, "mc"), 3 * (16ull << 20));
	assert_int_equal(vmm_proc_wait_ready(&p, "hc", 30000), 0);
	a = work_bytes(&p, "hc");
	usleep(300000);
	b = work_bytes(&p, "hc");
	assert_true(b > a);
	assert_int_equal(b % (8ull << 20), 0);
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

/*
 * churn, osimage and idle count theirs too: churn exactly the bytes of its
 * waves after the first, osimage (pause=) what its later checksum passes
 * read, idle (pause=) a page per wake-up on time, at most one per period.
 */
static void test_work_bytes_other_workloads(void **state)
{
	const char *args[] = {"--vm", "name=ch,mem=64M,workload=churn,mib=8,rounds=3,pause=50",
			      "--vm", "name=os,mem=64M,workload=osimage,mib=8,pause=100",
			      "--vm", "name=id,mem=64M,workload=idle,mib=4,pause=50",
			      NULL};
	struct vmm_proc p;
	uint64_t os, id0, id;
	struct timespec t0, t1;
	double s;

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_output(&p, "RESULT churn", 30000), 0);
	assert_int_equal(work_bytes(&p, "ch"), 2 * (8ull << 20));
	assert_int_equal(vmm_proc_wait_ready(&p, "os", 30000), 0);
	assert_int_equal(vmm_proc_wait_ready(&p, "id", 30000), 0);
	/* idle's count is bounded by the time it ran, which only this test's
	 * own clock knows: READY may have been a while ago on a busy host. */
	clock_gettime(CLOCK_MONOTONIC, &t0);
	id0 = work_bytes(&p, "id");
	usleep(1000000);
	os = work_bytes(&p, "os");
	id = work_bytes(&p, "id");
	clock_gettime(CLOCK_MONOTONIC, &t1);
	s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
	assert_true(os > 0);
	assert_true(id > 0);
	assert_int_equal(id % 4096, 0);
	/* A wake-up every 50 ms, at most a page each: 20 a second, and one
	 * for each end of the interval. */
	assert_true((id - id0) / 4096 <= (uint64_t)(s / 0.05) + 2);
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

/* Last: quit stops the VMM with status 0 and removes the socket. */
static void test_quit(void **state)
{
	char r[256];

	(void)state;
	require_kvm();
	ctl("{\"execute\":\"quit\"}", r, sizeof(r));
	assert_string_equal(r, "{\"return\":{}}");
	assert_int_equal(vmm_proc_wait_exit(&vp, 10000), 0);
	assert_int_equal(access(vp.ctl_path, F_OK), -1);
	assert_non_null(strstr(vp.out, "d0: stopped by the VMM"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_query_vms),
	    cmocka_unit_test(test_query_memory),
	    cmocka_unit_test(test_bad_requests_get_errors),
	    cmocka_unit_test(test_connection_survives_bad_input),
	    cmocka_unit_test(test_client_mode),
	    cmocka_unit_test(test_work_bytes),
	    cmocka_unit_test(test_work_bytes_other_workloads),
	    cmocka_unit_test(test_quit),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
