/* SPDX-License-Identifier: MIT */
/*
 * Every mechanism on the same guest RAM at once, with the freestanding guest
 * writing it from a real vCPU (issue 12): memcheck in a VM that the dedup
 * engine merges (in a sharing domain with a dup guest), the swapper holds to
 * a resident target, the balloon inflates and deflates while the guest
 * reports its free pages, and the policy runs; the audit of both VMs is
 * taken again and again while all of it runs. memcheck must stay clean,
 * every audit must find no mismatch, and every mechanism must have acted.
 * Once with swap-out by UFFDIO_MOVE, once in copy mode (the path of Linux
 * before 6.8), which hung with dedup on the same VM before the fix.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rf_test.h"
#include "vmm_proc.h"

#define MiB	    (1ull << 20)
#define RUN_MS	    20000
#define MIN_ROUNDS  3
#define require_kvm rf_require(access("/dev/kvm", R_OK | W_OK) == 0, "/dev/kvm not accessible")

/* A stall: every thread's stack of the VMM (gdb, when there is one), then
 * the failure. */
static void stalled(struct vmm_proc *p, const char *what, int err)
{
	char cmd[160];

	fprintf(stderr, "%s: no answer (%s); the VMM's threads:\n", what, strerror(-err));
	snprintf(cmd, sizeof(cmd),
		 "command -v gdb >/dev/null && gdb -p %d -batch -ex 'thread apply all bt' 2>&1 | "
		 "grep -E '^(Thread|#)' >&2",
		 (int)p->pid);
	if (system(cmd) != 0)
		fprintf(stderr, "(no stacks: gdb missing or failed)\n");
	fail_msg("%s: the VMM stopped answering", what);
}

static void ask(struct vmm_proc *p, const char *req, char *reply, size_t len)
{
	int err = vmm_proc_ctl(p, req, reply, len, 15000);

	if (err)
		stalled(p, req, err);
	if (!strstr(reply, "\"return\""))
		fail_msg("%s: %s", req, reply);
}

static void set_balloon(struct vmm_proc *p, const char *vm, const char *size)
{
	char req[200], reply[512];

	snprintf(req, sizeof(req),
		 "{\"execute\":\"set-balloon\",\"arguments\":{\"vm\":\"%s\",\"balloon\":\"%s\"}}",
		 vm, size);
	ask(p, req, reply, sizeof(reply));
}

static unsigned int audit_vm(struct vmm_proc *p, const char *vm)
{
	char req[160], reply[1024];

	snprintf(req, sizeof(req), "{\"execute\":\"audit\",\"arguments\":{\"vm\":\"%s\"}}", vm);
	ask(p, req, reply, sizeof(reply));
	if (rf_test_json_num(reply, "mismatches") != 0)
		fail_msg("audit of %s while everything runs: %s", vm, reply);
	return 1;
}

static void run_combined(const char *hide)
{
	char swapdir[] = "/var/tmp/rf-comb-e2e-XXXXXX", reply[4096], line[512];
	const char *sizes[] = {"24M", "0", "40M", "8M"};
	unsigned int audits = 0, step = 0;
	struct vmm_proc p;
	uint64_t t0;
	const char *args[16];
	unsigned int n = 0;

	require_kvm;
	assert_non_null(mkdtemp(swapdir));
	args[n++] = "--swap-dir";
	args[n++] = swapdir;
	args[n++] = "--dedup";
	args[n++] = "domains";
	args[n++] = "--policy";
	args[n++] = "250";
	if (hide[0]) {
		args[n++] = "--hide-features";
		args[n++] = hide;
	}
	args[n++] = "--vm";
	args[n++] = "name=mc,mem=256M,workload=memcheck,mib=96,rounds=0,domain=d,"
		    "swap-resident=80M,balloon-report=on,balloon-oom=off";
	args[n++] = "--vm";
	args[n++] = "name=dup,mem=128M,workload=dup,domain=d";
	args[n] = NULL;
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_ready(&p, "mc", 60000), 0);
	assert_int_equal(vmm_proc_wait_ready(&p, "dup", 60000), 0);
	t0 = rf_test_now_ms();
	while (rf_test_now_ms() - t0 < RUN_MS ||
	       vmm_proc_count(&p, "mc: memcheck: rounds=") < MIN_ROUNDS) {
		if (rf_test_now_ms() - t0 > 6 * RUN_MS)
			break;
		audits += audit_vm(&p, "mc");
		audits += audit_vm(&p, "dup");
		set_balloon(&p, "mc", sizes[step++ % 4]);
		rf_test_sleep_ms(700);
	}
	set_balloon(&p, "mc", "0");
	rf_test_vm_query(&p, "query-swap", "mc", reply, sizeof(reply));
	print_message("%s: %u audits clean; swap: %.300s\n", hide[0] ? "copy mode" : "move mode",
		      audits, reply);
	assert_true(rf_test_json_num(reply, "swap-outs") > 1000);
	assert_true(rf_test_json_num(reply, "swap-ins") > 100);
	assert_int_equal(rf_test_json_num(reply, "csum-errors"), 0);
	assert_non_null(strstr(reply, "\"stopped\":false"));
	assert_non_null(strstr(reply, hide[0] ? "\"swap-out\":\"copy\"" : "\"swap-out\":\"move\""));
	rf_test_vm_query(&p, "query-dedup", "mc", reply, sizeof(reply));
	print_message("  dedup mc: %.300s\n", reply);
	assert_true(
	    rf_test_json_num(reply, "pages-merged") + rf_test_json_num(reply, "pages-zero") > 0);
	rf_test_vm_query(&p, "query-balloon", "mc", reply, sizeof(reply));
	print_message("  balloon mc: %.400s\n", reply);
	assert_true(rf_test_json_num(reply, "inflated-pages") > 0);
	assert_true(rf_test_json_num(reply, "deflated-pages") > 0);
	assert_true(rf_test_json_num(reply, "reported-pages") > 0);
	if (vmm_proc_find_line(&p, "BAD", line, sizeof(line)) == 0)
		fail_msg("memcheck found a bad round: %s", line);
	assert_true(vmm_proc_count(&p, "mc: memcheck: rounds=") >= MIN_ROUNDS);
	assert_int_equal(vmm_proc_find_line(&p, "mc: memcheck: rounds=", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "bad_rounds=0"));
	assert_int_equal(vmm_proc_count(&p, "guest fault"), 0);
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
	rmdir(swapdir);
}

static void test_combined_move_mode(void **state)
{
	(void)state;
	run_combined("");
}

static void test_combined_copy_mode(void **state)
{
	(void)state;
	run_combined("uffd-move,pagemap-scan");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_combined_move_mode),
	    cmocka_unit_test(test_combined_copy_mode),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
