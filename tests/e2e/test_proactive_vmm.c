/* SPDX-License-Identifier: MIT */
/*
 * The policy's proactive mode in the demo VMM, with a real guest: an idle
 * guest (64 MiB of cold pages, one read every 100 ms) on a budget far above
 * what it uses, so the host stays in the high state. With
 * --policy-proactive 0.5 the guest's resident target must come down below
 * what it held, by the mode's steps, the kernel must see the VMM's Rss go
 * down with it, and the guest must keep running. set-policy is checked
 * whole: a bad value changes nothing.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rf_test.h"
#include "vmm_proc.h"

#define MiB	      (1ull << 20)
#define require_kvm() rf_require(access("/dev/kvm", R_OK | W_OK) == 0, "/dev/kvm not accessible")
#define field(json, key) ((uint64_t)rf_test_json_num((json), (key)))

static void ctl(struct vmm_proc *p, const char *req, char *reply, size_t len)
{
	int rc = vmm_proc_ctl(p, req, reply, len, 10000);

	if (rc)
		fail_msg("control request %s: %s", req, strerror(-rc));
}

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
	    cmocka_unit_test(test_proactive_shrinks_idle_guest),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
