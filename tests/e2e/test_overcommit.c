/* SPDX-License-Identifier: MIT */
/*
 * The ledger and the policy in the demo VMM with real guests: query-host
 * against the kernel's smaps_rollup of the VMM, the audit, set-vm through
 * admission control (a refusal changes nothing), --max-overcommit refusing
 * to start, the Prometheus endpoint, the policy entering the low state
 * under a budget the guests exceed, a limit and a reservation honoured
 * under pressure; a short run of the overcommit experiment (skipped, with
 * the reason, when the demo VMM has no balloon); and the policy's proactive
 * mode shrinking an idle guest in the high state.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rf_test.h"
#include "vmm_proc.h"

#define MiB	      (1ull << 20)
#define require_kvm() rf_require(access("/dev/kvm", R_OK | W_OK) == 0, "/dev/kvm not accessible")

/* A byte count or counter from a reply (fails the test if it is missing). */
#define field(json, key) ((uint64_t)rf_test_json_num((json), (key)))

static void ctl(struct vmm_proc *p, const char *req, char *reply, size_t len)
{
	int rc = vmm_proc_ctl(p, req, reply, len, 10000);

	if (rc)
		fail_msg("control request %s: %s", req, strerror(-rc));
}

/* GET /metrics from 127.0.0.1:@port into @buf. */
static int http_get(int port, char *buf, size_t len)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	const char *req = "GET /metrics HTTP/1.0\r\n\r\n";
	size_t got = 0;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		if (fd >= 0)
			close(fd);
		return -errno;
	}
	for (;;) {
		ssize_t n = read(fd, buf + got, len - 1 - got);

		if (n <= 0 || got + (size_t)n >= len - 1) {
			if (n > 0)
				got += (size_t)n;
			break;
		}
		got += (size_t)n;
	}
	buf[got] = 0;
	close(fd);
	return 0;
}

static void test_ledger_in_vmm(void **state)
{
	static char r[1 << 16];
	struct vmm_proc p;
	struct vmm_smaps sm;
	char port[16];
	int portn = 20000 + getpid() % 20000;
	const char *args[] = {"--host-budget",
			      "320M",
			      "--metrics-port",
			      port,
			      "--vm",
			      "name=a,mem=256M,workload=dup,mib=96,reservation=128M",
			      "--vm",
			      "name=b,mem=128M,workload=memcheck,mib=48,limit=100M,shares=2000",
			      NULL};
	uint64_t used, pss;

	(void)state;
	require_kvm();
	snprintf(port, sizeof(port), "%d", portn);
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_ready(&p, "a", 30000), 0);
	assert_int_equal(vmm_proc_wait_ready(&p, "b", 30000), 0);

	/* The host: the contract, and use as the kernel measures it. */
	ctl(&p, "{\"execute\":\"query-host\"}", r, sizeof(r));
	assert_int_equal(field(r, "capacity"), 320 * MiB);
	assert_int_equal(field(r, "promised"), 384 * MiB);
	assert_int_equal(field(r, "reserved"), 128 * MiB);
	assert_non_null(strstr(r, "\"state\":\"high\""));
	used = field(r, "used");
	assert_int_equal(vmm_smaps_rollup(p.pid, &sm), 0);
	pss = sm.pss;
	/* Guests wrote 96 + 48 MiB; the VMM itself holds a few MiB more. */
	assert_in_range(used, 144 * MiB, 150 * MiB);
	assert_true(pss >= used - 2 * MiB && pss <= used + 48 * MiB);

	/* The audit agrees with smaps. */
	ctl(&p, "{\"execute\":\"ledger-audit\"}", r, sizeof(r));
	assert_non_null(strstr(r, "\"agree\":true"));
	assert_int_equal(field(r, "vms-checked"), 2);

	/* A VM's breakdown: the keys given on the command line. */
	ctl(&p, "{\"execute\":\"query-breakdown\",\"arguments\":{\"vm\":\"b\"}}", r, sizeof(r));
	assert_int_equal(field(r, "limit"), 100 * MiB);
	assert_int_equal(field(r, "shares"), 2000);
	assert_in_range(field(r, "private"), 48 * MiB, 52 * MiB);

	/* Admission: 256 MiB for a fits the 320 MiB budget; 100 MiB more for b
	 * does not, and the refused request changes nothing (not its limit or
	 * shares either); 64 MiB does. */
	ctl(&p, "{\"execute\":\"set-vm\",\"arguments\":{\"vm\":\"a\",\"reservation\":\"256M\"}}", r,
	    sizeof(r));
	assert_non_null(strstr(r, "\"reservation\":268435456"));
	ctl(&p,
	    "{\"execute\":\"set-vm\",\"arguments\":{\"vm\":\"b\",\"reservation\":\"100M\","
	    "\"limit\":\"120M\",\"shares\":500}}",
	    r, sizeof(r));
	assert_non_null(strstr(r, "\"error\""));
	assert_non_null(strstr(r, "cannot be covered: 256.0 MiB already reserved of 320.0 MiB"));
	ctl(&p, "{\"execute\":\"query-breakdown\",\"arguments\":{\"vm\":\"b\"}}", r, sizeof(r));
	assert_int_equal(field(r, "reservation"), 0);
	assert_int_equal(field(r, "limit"), 100 * MiB);
	assert_int_equal(field(r, "shares"), 2000);
	ctl(&p, "{\"execute\":\"set-vm\",\"arguments\":{\"vm\":\"b\",\"reservation\":\"64M\"}}", r,
	    sizeof(r));
	assert_non_null(strstr(r, "\"reservation\":67108864"));
	ctl(&p, "{\"execute\":\"query-host\"}", r, sizeof(r));
	assert_int_equal(field(r, "reserved"), 320 * MiB);
	assert_int_equal(field(r, "admissions-refused"), 1);
	ctl(&p,
	    "{\"execute\":\"set-vm\",\"arguments\":{\"vm\":\"a\",\"reservation\":\"128M\","
	    "\"limit\":\"100M\"}}",
	    r, sizeof(r));
	assert_non_null(strstr(r, "limit below the reservation"));
	ctl(&p, "{\"execute\":\"set-vm\",\"arguments\":{\"vm\":\"a\",\"shares\":0}}", r, sizeof(r));
	assert_non_null(strstr(r, "out of range"));
	ctl(&p, "{\"execute\":\"set-vm\",\"arguments\":{\"vm\":\"a\"}}", r, sizeof(r));
	assert_non_null(strstr(r, "nothing to set"));

	/* Prometheus. */
	assert_int_equal(http_get(portn, r, sizeof(r)), 0);
	assert_non_null(strstr(r, "HTTP/1.0 200 OK"));
	assert_non_null(strstr(r, "\nramfold_vm_bytes{vm=\"a\",category=\"private\"} "));
	assert_non_null(
	    strstr(r, "\nramfold_vm_bytes{vm=\"b\",category=\"reservation\"} 67108864"));
	assert_non_null(strstr(r, "\nramfold_host_capacity_bytes 335544320"));
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

/* Guests that write more than the budget: the policy goes to low and says so. */
static void test_policy_under_pressure(void **state)
{
	static char r[1 << 16];
	struct vmm_proc p;
	const char *args[] = {"--host-budget",
			      "96M",
			      "--policy",
			      "100",
			      "--vm",
			      "name=a,mem=128M,workload=dup,mib=112,dup=0,zero=0",
			      NULL};
	uint64_t ticks;

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_ready(&p, "a", 30000), 0);
	/* The policy starts at the VMM's first tick; give it up to 5 s. */
	for (int i = 0; i < 50; i++) {
		ctl(&p, "{\"execute\":\"query-host\"}", r, sizeof(r));
		if (strstr(r, "\"state\":\"low\"") && field(r, "ticks") >= 3)
			break;
		usleep(100 * 1000);
	}
	assert_non_null(strstr(r, "\"state\":\"low\""));
	ticks = field(r, "ticks");
	assert_true(ticks >= 3);
	assert_true(field(r, "transitions") >= 1);
	/* Admission refuses growth while low. */
	ctl(&p, "{\"execute\":\"set-vm\",\"arguments\":{\"vm\":\"a\",\"reservation\":\"4M\"}}", r,
	    sizeof(r));
	assert_non_null(strstr(r, "low free-memory state"));
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

/*
 * Limits and reservations with real guests: two guests write 128 MiB of
 * unique pages each on a 192 MiB budget. "b" has a 48 MiB limit, "a" a
 * 112 MiB reservation: the policy (balloon, then swap) must bring b down to
 * its limit and leave a at or above its reservation, both guests alive.
 */
static void test_limits_and_reservations(void **state)
{
	static char r[1 << 16];
	struct vmm_proc p;
	const char *args[] = {"--host-budget",
			      "192M",
			      "--policy",
			      "100",
			      "--policy-free",
			      "6",
			      "--vm",
			      "name=a,mem=160M,workload=dup,mib=128,dup=0,zero=0,reservation=112M",
			      "--vm",
			      "name=b,mem=160M,workload=dup,mib=128,dup=0,zero=0,limit=48M",
			      NULL};
	uint64_t ha = 0, hb = 0;

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_ready(&p, "a", 30000), 0);
	assert_int_equal(vmm_proc_wait_ready(&p, "b", 30000), 0);
	/* Up to 20 s for the policy to get there. */
	for (int i = 0; i < 40; i++) {
		usleep(500 * 1000);
		ctl(&p, "{\"execute\":\"query-breakdown\",\"arguments\":{\"vm\":\"b\"}}", r,
		    sizeof(r));
		hb = field(r, "host");
		ctl(&p, "{\"execute\":\"query-breakdown\",\"arguments\":{\"vm\":\"a\"}}", r,
		    sizeof(r));
		ha = field(r, "host");
		/* The reservation holds at every reading. */
		if (ha < 112 * MiB)
			fail_msg("a holds %llu MiB, below its 112 MiB reservation",
				 (unsigned long long)(ha >> 20));
		if (hb <= 48 * MiB + 2 * MiB)
			break;
	}
	if (hb > 50 * MiB)
		fail_msg("b still holds %llu MiB, above its 48 MiB limit",
			 (unsigned long long)(hb >> 20));
	ctl(&p, "{\"execute\":\"query-vms\"}", r, sizeof(r));
	assert_null(strstr(r, "\"state\":\"faulted\""));
	ctl(&p, "{\"execute\":\"query-host\"}", r, sizeof(r));
	assert_true(field(r, "swap-actions") >= 1);
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

static void test_max_overcommit_refuses(void **state)
{
	struct vmm_proc p;
	const char *args[] = {"--host-budget",
			      "256M",
			      "--max-overcommit",
			      "2",
			      "--vm",
			      "name=a,mem=256M,workload=idle",
			      "--vm",
			      "name=b,mem=512M,workload=idle",
			      NULL};
	int rc;

	(void)state;
	require_kvm();
	rc = vmm_proc_start(&p, args);
	if (rc == 0)
		rc = vmm_proc_wait_exit(&p, 20000);
	else
		rc = p.status;
	assert_int_not_equal(rc, 0);
	assert_non_null(strstr(p.out, "maximum overcommit 2.00x"));
	vmm_proc_stop(&p);
	vmm_proc_free(&p);
}

/*
 * The short experiment: four guests 2.4x overcommitted; the policy must keep
 * the VMM's Pss under the budget after 25 s with every guest alive and
 * memcheck clean (the runner's exit status says so).
 */
static void test_short_experiment(void **state)
{
	char cmd[1024], help[1 << 14];
	const char *b = getenv("B") ? getenv("B") : "build";
	FILE *f;
	size_t n;
	int rc;

	(void)state;
	require_kvm();
	snprintf(cmd, sizeof(cmd), "%s --help 2>&1", vmm_bin_path());
	f = popen(cmd, "r");
	assert_non_null(f);
	n = fread(help, 1, sizeof(help) - 1, f);
	help[n] = 0;
	pclose(f);
	rf_require(strstr(help, "balloon") && strstr(help, "dedup"),
		   "the demo VMM has no dedup option yet: the balloon alone takes only "
		   "guest-free memory, and the short scenario's working set is the budget");
	snprintf(cmd, sizeof(cmd),
		 "%s/bench/overcommit-run --vmm %s --out %s/experiment-e2e "
		 "scenarios/overcommit-short.txt",
		 b, vmm_bin_path(), b);
	rc = system(cmd);
	assert_true(WIFEXITED(rc));
	assert_int_equal(WEXITSTATUS(rc), 0);
}

/*
 * The policy's proactive mode with a real guest: an idle guest (64 MiB of
 * cold pages, one read every 100 ms) on a budget far above what it uses, so
 * the host stays in the high state. With --policy-proactive 0.5 its resident
 * target must come down below what it held, the kernel must see the VMM's
 * Rss go down with it, and the guest must keep running. set-policy is
 * checked whole: a bad value changes nothing.
 */
static void test_proactive_shrinks_idle_guest(void **state)
{
	static char r[1 << 16];
	struct vmm_proc p;
	struct vmm_smaps before, after;
	const char *args[] = {"--host-budget",
			      "4G",
			      "--policy",
			      "200",
			      "--policy-proactive",
			      "0.5",
			      "--vm",
			      "name=idle0,mem=256M,workload=idle,mib=64,pause=100",
			      NULL};
	uint64_t target = UINT64_MAX, held;

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_ready(&p, "idle0", 30000), 0);
	ctl(&p, "{\"execute\":\"query-breakdown\",\"arguments\":{\"vm\":\"idle0\"}}", r, sizeof(r));
	held = field(r, "private");
	assert_true(held >= 60 * MiB);
	assert_int_equal(vmm_smaps_rollup(p.pid, &before), 0);

	/* A bad value is refused and changes nothing. */
	ctl(&p, "{\"execute\":\"set-policy\",\"arguments\":{\"stall-target\":\"0\"}}", r,
	    sizeof(r));
	assert_non_null(strstr(r, "stall-target"));
	ctl(&p, "{\"execute\":\"set-policy\",\"arguments\":{\"proactive\":\"maybe\"}}", r,
	    sizeof(r));
	assert_non_null(strstr(r, "expected on or off"));
	ctl(&p, "{\"execute\":\"query-host\"}", r, sizeof(r));
	assert_non_null(strstr(r, "\"proactive\":true"));
	assert_non_null(strstr(r, "\"stall-target-pct\":0.5"));

	/* 2% a 2 s window: at least 8 MiB below within 20 s. */
	for (int i = 0; i < 40; i++) {
		sleep(1);
		ctl(&p, "{\"execute\":\"query-breakdown\",\"arguments\":{\"vm\":\"idle0\"}}", r,
		    sizeof(r));
		if (strstr(r, "\"resident-target\":"))
			target = field(r, "resident-target");
		if (target <= held - 8 * MiB && field(r, "private") <= held - 8 * MiB)
			break;
	}
	assert_true(target <= held - 8 * MiB);
	assert_true(field(r, "private") <= held - 8 * MiB);
	assert_int_equal(vmm_smaps_rollup(p.pid, &after), 0);
	assert_true(after.rss + 6 * MiB <= before.rss);
	ctl(&p, "{\"execute\":\"query-host\"}", r, sizeof(r));
	assert_true(field(r, "proactive-shrinks") >= 3);
	assert_non_null(strstr(r, "\"state\":\"high\""));

	/* Off at run time: no more steps. */
	ctl(&p, "{\"execute\":\"set-policy\",\"arguments\":{\"proactive\":\"off\"}}", r, sizeof(r));
	assert_non_null(strstr(r, "\"proactive\":false"));
	ctl(&p, "{\"execute\":\"query-vms\"}", r, sizeof(r));
	assert_null(strstr(r, "faulted"));
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ledger_in_vmm),
	    cmocka_unit_test(test_policy_under_pressure),
	    cmocka_unit_test(test_limits_and_reservations),
	    cmocka_unit_test(test_max_overcommit_refuses),
	    cmocka_unit_test(test_short_experiment),
	    cmocka_unit_test(test_proactive_shrinks_idle_guest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
