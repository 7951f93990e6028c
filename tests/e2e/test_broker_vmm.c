/* SPDX-License-Identifier: MIT */
/*
 * One domain across VMM processes (issue 16), with guests checking their
 * own memory: three ramfold-vmm processes, one memcheck guest each (same
 * seed: their image, page tables and stacks are twins across the
 * processes), sharing through a private ramfoldd. Checked:
 *   - pages are shared across the processes (query-dedup's
 *     broker-pages-sharing) while every guest reports only clean rounds;
 *   - kill -9 of one VMM: the other two go on with clean rounds;
 *   - kill -9 of the broker: both still run, clean, and stop cleanly.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker_proc.h"
#include "rf_test.h"
#include "vmm_proc.h"

#define require_kvm() rf_require(access("/dev/kvm", R_OK | W_OK) == 0, "/dev/kvm not accessible")

static char dir[48], sock[96];
static pid_t broker;

static long long query(struct vmm_proc *p, const char *key)
{
	char reply[4096];
	int err = -ETIMEDOUT;

	for (int i = 0; i < 2 && err; i++)
		err = vmm_proc_ctl(p, "{\"execute\":\"query-dedup\"}", reply, sizeof(reply), 30000);
	assert_int_equal(err, 0);
	return rf_test_json_num(reply, key);
}

/* Wait until @p's console has @n clean round summaries, up to @ms. */
static void wait_clean(struct vmm_proc *p, unsigned int n, int ms)
{
	for (int t = 0; vmm_proc_count(p, "bad_rounds=0") < n && t < ms; t += 500)
		rf_test_sleep_ms(500);
	if (vmm_proc_count(p, "bad_rounds=0") < n)
		fail_msg("fewer than %u clean rounds: %s", n, p->out);
	assert_int_equal(vmm_proc_count(p, "BAD"), 0);
}

static void test_memcheck_across_processes(void **state)
{
	struct vmm_proc p[3];
	unsigned int clean[3];

	(void)state;
	require_kvm();
	{
		const char *b = getenv("B");
		char bin[256];

		snprintf(bin, sizeof(bin), "%s/ramfoldd", b ? b : "build");
		broker = broker_proc_start(bin, sock, NULL);
		assert_true(broker > 0);
	}
	for (unsigned int i = 0; i < 3; i++) {
		char spec[128];
		const char *args[] = {"--dedup", "domains", "--dedup-broker", sock, "--vm",
				      spec,	 NULL};

		snprintf(spec, sizeof(spec),
			 "name=m%u,mem=128M,workload=memcheck,mib=48,seed=3,domain=mc", i);
		assert_int_equal(vmm_proc_start(&p[i], args), 0);
	}
	for (unsigned int i = 0; i < 3; i++) {
		char name[8];

		snprintf(name, sizeof(name), "m%u", i);
		if (vmm_proc_wait_ready(&p[i], name, 60000))
			fail_msg("%s not READY: %s", name, p[i].out);
	}
	/* At least 8 s of merging across the processes, and two clean
	 * rounds from each guest. */
	rf_test_sleep_ms(8000);
	for (unsigned int i = 0; i < 3; i++)
		wait_clean(&p[i], 2, 60000);
	for (unsigned int i = 0; i < 3; i++) {
		long long shared = query(&p[i], "broker-pages-sharing");

		printf(
		    "  m%u: %lld pages shared through the broker, %lld merged, clean rounds %u\n",
		    i, shared, query(&p[i], "pages-merged"), vmm_proc_count(&p[i], "bad_rounds=0"));
		assert_true(shared > 0);
		assert_int_equal(query(&p[i], "broker-domains"), 1);
	}

	/* kill -9 of one VMM while the others map the pages it shared. */
	kill(p[2].pid, SIGKILL);
	vmm_proc_wait_exit(&p[2], 10000);
	vmm_proc_free(&p[2]);
	for (unsigned int i = 0; i < 2; i++) {
		clean[i] = vmm_proc_count(&p[i], "bad_rounds=0");
		wait_clean(&p[i], clean[i] + 2, 60000);
	}

	/* kill -9 of the broker: the guests keep running on their merged
	 * pages, clean. */
	broker_proc_stop(&broker, SIGKILL, sock);
	for (unsigned int i = 0; i < 2; i++) {
		clean[i] = vmm_proc_count(&p[i], "bad_rounds=0");
		wait_clean(&p[i], clean[i] + 2, 60000);
		/* A client notices the broker gone at its next request: a
		 * REPORT at most a second apart, sent between passes, and a
		 * converged engine's passes are slow (its idle budget). */
		for (unsigned int ms = 0; query(&p[i], "broker-domains") != 0 && ms < 30000;
		     ms += 200)
			rf_test_sleep_ms(200);
		assert_int_equal(query(&p[i], "broker-domains"), 0);
	}
	for (unsigned int i = 0; i < 2; i++) {
		assert_int_equal(vmm_proc_stop(&p[i]), 0);
		assert_int_equal(vmm_proc_count(&p[i], "BAD"), 0);
		vmm_proc_free(&p[i]);
	}
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/rf-bvmm.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock, sizeof(sock), "%s/broker.sock", dir);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	broker_proc_stop(&broker, SIGKILL, sock);
	rmdir(dir);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_memcheck_across_processes),
	};

	return cmocka_run_group_tests_name("broker_vmm", tests, setup, teardown);
}
