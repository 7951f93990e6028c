/* SPDX-License-Identifier: MIT */
/*
 * The balloon end to end: the demo VMM (build/ramfold-vmm) with its
 * freestanding guest, whose virtio-balloon driver talks to the library's
 * device over virtio-mmio. Savings are what the kernel measures for the VMM
 * process (smaps_rollup), not what the device believes.
 *
 *  - negotiation is logged; a 512 MiB guest gives a 256 MiB balloon within
 *    10 s, its memory manager shrinks by as much, the VMM's RSS drops by at
 *    least 90% of it; back to 0 the same way;
 *  - after a deflate, memcheck over 400 MiB runs clean (deflated pages are
 *    fresh zero pages the guest can use);
 *  - free page reporting: a 300 MiB churn shows up as an RSS drop of at
 *    least 80% of it within 10 s;
 *  - deflate-on-OOM: with the balloon at 256 MiB, memcheck over 400 MiB
 *    takes pages back and finishes clean; the device's actual follows;
 *  - stats arrive at the configured interval and match the guest's memory
 *    manager.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rf_test.h"
#include "vmm_proc.h"

#define MiB	      (1ull << 20)
#define require_kvm() rf_require(access("/dev/kvm", R_OK | W_OK) == 0, "/dev/kvm not accessible")

#define query_balloon(p, vm, reply, len)                                                           \
	rf_test_vm_query((p), "query-balloon", (vm), (reply), (len))

static void set_balloon(struct vmm_proc *p, const char *vm, const char *what, const char *size)
{
	char req[160], reply[512];

	snprintf(req, sizeof(req),
		 "{\"execute\":\"set-balloon\",\"arguments\":{\"vm\":\"%s\",\"%s\":\"%s\"}}", vm,
		 what, size);
	assert_int_equal(vmm_proc_ctl(p, req, reply, sizeof(reply), 5000), 0);
	if (!strstr(reply, "\"return\""))
		fail_msg("set-balloon: %s", reply);
}

/* Wait until the guest's actual equals @bytes: ms taken, or fail after @ms. */
static uint64_t wait_actual(struct vmm_proc *p, const char *vm, uint64_t bytes, unsigned int ms)
{
	uint64_t t0 = rf_test_now_ms();
	char reply[4096];

	for (;;) {
		query_balloon(p, vm, reply, sizeof(reply));
		if ((uint64_t)rf_test_json_num(reply, "actual") == bytes)
			return rf_test_now_ms() - t0;
		if (rf_test_now_ms() - t0 > ms)
			fail_msg("%s: actual did not reach %llu within %u ms: %s", vm,
				 (unsigned long long)bytes, ms, reply);
		rf_test_sleep_ms(50);
	}
}

/* Wait for a stats update newer than @after; returns the reply's updates. */
static int64_t wait_stats(struct vmm_proc *p, const char *vm, int64_t after, char *reply,
			  size_t len)
{
	uint64_t t0 = rf_test_now_ms();

	for (;;) {
		int64_t u;

		query_balloon(p, vm, reply, len);
		u = rf_test_json_num(reply, "stats-updates");
		if (u > after)
			return u;
		if (rf_test_now_ms() - t0 > 10000)
			fail_msg("%s: no stats update after %lld: %s", vm, (long long)after, reply);
		rf_test_sleep_ms(20);
	}
}

static uint64_t rss(struct vmm_proc *p)
{
	struct vmm_smaps sm;

	assert_int_equal(vmm_smaps_rollup(p->pid, &sm), 0);
	return sm.rss;
}

static void test_inflate_and_deflate_512m(void **state)
{
	const char *args[] = {
	    "--vm", "name=a,mem=512M,workload=churn,mib=496,rounds=1,balloon-report=off", NULL};
	struct vmm_proc p;
	char reply[4096], line[512];
	uint64_t rss0, rss1, took, free0, free1;

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_output(&p, "RESULT churn", 60000), 0);
	/* the driver logged what it negotiated */
	assert_int_equal(vmm_proc_find_line(&p, "balloon: features offered", line, sizeof(line)),
			 0);
	print_message("%s\n", line);
	assert_non_null(strstr(line, "VERSION_1 MUST_TELL_HOST STATS_VQ DEFLATE_ON_OOM"));
	/* stats sent after the churn wave ended */
	query_balloon(&p, "a", reply, sizeof(reply));
	wait_stats(&p, "a", rf_test_json_num(reply, "stats-updates"), reply, sizeof(reply));
	free0 = (uint64_t)rf_test_json_num(reply, "stat-free-memory");
	rss0 = rss(&p);

	set_balloon(&p, "a", "balloon", "256M");
	took = wait_actual(&p, "a", 256 * MiB, 10000);
	rss1 = rss(&p);
	query_balloon(&p, "a", reply, sizeof(reply));
	assert_int_equal(rf_test_json_num(reply, "ballooned"), 256 * MiB); /* the table agrees */
	assert_int_equal(rf_test_json_num(reply, "guest-size"), 256 * MiB);
	/* The guest fills a stats buffer before its inflate work in the same
	 * poll: take the first one sent after actual was reached. */
	wait_stats(&p, "a", rf_test_json_num(reply, "stats-updates"), reply, sizeof(reply));
	free1 = (uint64_t)rf_test_json_num(reply, "stat-free-memory");
	print_message(
	    "inflate 256 MiB: actual after %llu ms; VMM RSS %llu -> %llu MiB (-%llu MiB); "
	    "guest free %llu -> %llu MiB\n",
	    (unsigned long long)took, (unsigned long long)(rss0 / MiB),
	    (unsigned long long)(rss1 / MiB), (unsigned long long)((rss0 - rss1) / MiB),
	    (unsigned long long)(free0 / MiB), (unsigned long long)(free1 / MiB));
	assert_true(rss0 - rss1 >= 256 * MiB * 9 / 10);
	assert_int_equal(free0 - free1, 256 * MiB);

	set_balloon(&p, "a", "guest-size", "512M"); /* the same as balloon=0 */
	took = wait_actual(&p, "a", 0, 10000);
	query_balloon(&p, "a", reply, sizeof(reply));
	assert_int_equal(rf_test_json_num(reply, "ballooned"), 0);
	assert_int_equal(rf_test_json_num(reply, "rejected"), 0);
	print_message("deflate to 0: actual after %llu ms\n", (unsigned long long)took);
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

static void test_memcheck_after_deflate(void **state)
{
	/* Ballooned at boot, without deflate-on-OOM: memcheck's allocation waits
	 * for the host, which deflates; the deflated pages then carry memcheck's
	 * pattern through clean rounds. */
	const char *args[] = {"--vm",
			      "name=m,mem=512M,workload=memcheck,mib=400,rounds=3,balloon=256M,"
			      "balloon-oom=off",
			      NULL};
	struct vmm_proc p;
	char line[512];

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	wait_actual(&p, "m", 256 * MiB, 10000);
	assert_int_equal(vmm_proc_count(&p, "RESULT memcheck"), 0); /* it waits */
	set_balloon(&p, "m", "balloon", "0");
	wait_actual(&p, "m", 0, 10000);
	assert_int_equal(vmm_proc_wait_output(&p, "RESULT memcheck", 120000), 0);
	assert_int_equal(vmm_proc_find_line(&p, "RESULT memcheck", line, sizeof(line)), 0);
	print_message("%s\n", line);
	assert_non_null(strstr(line, "bad_rounds=0"));
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

static void test_free_page_reporting(void **state)
{
	const char *args[] = {
	    "--vm", "name=r,mem=512M,workload=churn,mib=300,rounds=1,balloon-report=on", NULL};
	struct vmm_proc p;
	char reply[4096];
	uint64_t peak = 0, low = UINT64_MAX, t_peak = 0, t_drop = 0, t0;

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	/* The churn wave touches 300 MiB then frees it: sample RSS throughout,
	 * and require a drop of 80% of 300 MiB within 10 s of the peak. */
	t0 = rf_test_now_ms();
	while (rf_test_now_ms() - t0 < 60000) {
		uint64_t r = rss(&p), t = rf_test_now_ms();

		if (r > peak) {
			peak = r;
			t_peak = t;
			low = r;
		}
		if (r < low)
			low = r;
		if (peak && peak - low >= 300 * MiB * 8 / 10) {
			t_drop = t;
			break;
		}
		if (t_peak && t - t_peak > 10000 && vmm_proc_count(&p, "RESULT churn"))
			break;
		rf_test_sleep_ms(50);
	}
	print_message("reporting: VMM RSS peak %llu MiB, low %llu MiB, drop %llu MiB %llu ms after "
		      "the peak\n",
		      (unsigned long long)(peak / MiB), (unsigned long long)(low / MiB),
		      (unsigned long long)((peak - low) / MiB),
		      (unsigned long long)(t_drop ? t_drop - t_peak : 0));
	assert_true(t_drop != 0);
	assert_true(t_drop - t_peak <= 10000);
	query_balloon(&p, "r", reply, sizeof(reply));
	assert_true(rf_test_json_num(reply, "free-reported") >= (int64_t)(300 * MiB * 8 / 10));
	assert_int_equal(rf_test_json_num(reply, "rejected"), 0);
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

/* The churn guest's wave times, as it prints them, into @ms (at most @max). */
static unsigned int wave_times(struct vmm_proc *p, const char *vm, uint64_t *ms, unsigned int max)
{
	char needle[64], line[512];
	unsigned int n = 0;

	for (unsigned int w = 2; w <= max + 1 && n < max; w++) {
		const char *t;

		snprintf(needle, sizeof(needle), "%s: churn: wave %u: ", vm, w);
		if (vmm_proc_find_line(p, needle, line, sizeof(line)) ||
		    !(t = strstr(line, " in ")))
			break;
		ms[n++] = strtoull(t + 4, NULL, 10);
	}
	return n;
}

/*
 * A guest that frees and reallocates the same memory every wave: with the
 * default window its reports are kept after the first waves (counted, logged
 * once) and only probes are discarded; with balloon-report-reuse=0 every
 * report is discarded as before. Wave times are printed, not asserted
 * (speed is shown by benchmarks).
 */
static void test_reporting_keeps_what_the_guest_reuses(void **state)
{
	const char *args[] = {
	    "--verbose",
	    "--vm",
	    "name=k,mem=256M,workload=churn,mib=96,rounds=8,pause=1500,balloon-report=on",
	    "--vm",
	    "name=d,mem=256M,workload=churn,mib=96,rounds=8,pause=1500,balloon-report=on,"
	    "balloon-report-reuse=0",
	    NULL};
	struct vmm_proc p;
	char reply[4096];
	uint64_t wk[7], wd[7];
	unsigned int nk, nd;
	int64_t kept, reported;

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_output(&p, "k: RESULT churn", 120000), 0);
	assert_int_equal(vmm_proc_wait_output(&p, "d: RESULT churn", 120000), 0);
	nk = wave_times(&p, "k", wk, 7);
	nd = wave_times(&p, "d", wd, 7);
	assert_int_equal(nk, 7);
	assert_int_equal(nd, 7);
	print_message("reuse: wave ms, reports kept:");
	for (unsigned int i = 0; i < nk; i++)
		print_message(" %llu", (unsigned long long)wk[i]);
	print_message("; every report discarded:");
	for (unsigned int i = 0; i < nd; i++)
		print_message(" %llu", (unsigned long long)wd[i]);
	print_message("\n");

	query_balloon(&p, "k", reply, sizeof(reply));
	kept = rf_test_json_num(reply, "report-kept-pages");
	reported = rf_test_json_num(reply, "reported-pages");
	print_message("reuse: k: reported (discarded) %lld pages, reused %lld, kept %lld\n",
		      (long long)reported,
		      (long long)rf_test_json_num(reply, "report-reused-pages"), (long long)kept);
	/* 8 waves of 96 MiB reported: the first discarded, most of the rest kept */
	assert_true(rf_test_json_num(reply, "report-reused-pages") > 0);
	assert_true(kept >= (int64_t)(4 * 96 * MiB / 4096));
	assert_true(kept > reported);
	assert_int_equal(rf_test_json_num(reply, "rejected"), 0);
	assert_int_equal(vmm_proc_count(&p, "k: balloon: free page reporting: reports kept"), 1);
	assert_int_equal(vmm_proc_count(&p, "k: balloon: free page reporting: reports discarded"),
			 0);
	query_balloon(&p, "d", reply, sizeof(reply));
	assert_int_equal(rf_test_json_num(reply, "report-kept-pages"), 0);
	assert_int_equal(rf_test_json_num(reply, "report-reused-pages"), 0);
	assert_true(rf_test_json_num(reply, "reported-pages") >= (int64_t)(6 * 96 * MiB / 4096));
	assert_int_equal(vmm_proc_count(&p, "d: balloon: free page reporting"), 0);
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

static void test_deflate_on_oom(void **state)
{
	const char *args[] = {
	    "--vm", "name=o,mem=512M,workload=memcheck,mib=400,rounds=3,balloon=256M", NULL};
	struct vmm_proc p;
	char line[512], reply[4096];
	int64_t actual, ballooned;

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_output(&p, "RESULT memcheck", 120000), 0);
	assert_int_equal(vmm_proc_find_line(&p, "RESULT memcheck", line, sizeof(line)), 0);
	assert_non_null(strstr(line, "bad_rounds=0"));
	assert_true(vmm_proc_count(&p, "balloon: deflate-on-oom: gave back") >= 1);
	query_balloon(&p, "o", reply, sizeof(reply));
	actual = rf_test_json_num(reply, "actual");
	ballooned = rf_test_json_num(reply, "ballooned");
	print_message("deflate-on-oom: %s; actual %lld MiB, table %lld MiB, target %lld MiB\n",
		      line, (long long)(actual / (int64_t)MiB),
		      (long long)(ballooned / (int64_t)MiB),
		      (long long)(rf_test_json_num(reply, "balloon-target") / (int64_t)MiB));
	assert_true(actual < (int64_t)(256 * MiB)); /* the balloon gave memory back */
	assert_int_equal(actual, ballooned);	    /* and the device followed */
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

static void test_stats_interval_and_totals(void **state)
{
	const char *args[] = {"--vm", "name=s,mem=128M,workload=idle,balloon-stats=200", NULL};
	struct vmm_proc p;
	char reply[4096], line[512];
	int64_t u0, u, last_ns, prev_ns, gap, free_guest;
	uint64_t mib_free;

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_ready(&p, "s", 20000), 0);
	u0 = wait_stats(&p, "s", 0, reply, sizeof(reply));
	prev_ns = rf_test_json_num(reply, "last-update-ns");
	assert_int_equal(rf_test_json_num(reply, "stats-interval"), 200);
	/* consecutive updates about 200 ms apart */
	for (int i = 0; i < 5; i++) {
		u = wait_stats(&p, "s", u0, reply, sizeof(reply));
		last_ns = rf_test_json_num(reply, "last-update-ns");
		gap = (last_ns - prev_ns) / (int64_t)(u - u0) / 1000000;
		assert_true(gap >= 180 && gap <= 400);
		prev_ns = last_ns;
		u0 = u;
	}
	print_message("stats: last gap %lld ms at a 200 ms interval\n", (long long)gap);
	assert_true(rf_test_json_num(reply, "last-update") > 1600000000);
	/* totals match the guest's memory manager, as its own log line says */
	set_balloon(&p, "s", "balloon", "32M");
	wait_actual(&p, "s", 32 * MiB, 10000);
	assert_int_equal(vmm_proc_wait_output(&p, "balloon: actual 8192 pages", 5000), 0);
	assert_int_equal(vmm_proc_find_line(&p, "balloon: actual 8192 pages", line, sizeof(line)),
			 0);
	assert_int_equal(vmm_line_u64(strstr(line, "free"), "free", &mib_free), -ENOENT);
	assert_non_null(strstr(line, "memory manager free "));
	mib_free = strtoull(strstr(line, "memory manager free ") + 20, NULL, 10);
	u = wait_stats(&p, "s", rf_test_json_num(reply, "stats-updates"), reply, sizeof(reply));
	u = wait_stats(&p, "s", u, reply, sizeof(reply));
	free_guest = rf_test_json_num(reply, "stat-free-memory");
	print_message("guest says %llu MiB free; stats say %lld MiB (total %lld MiB)\n",
		      (unsigned long long)mib_free, (long long)(free_guest / (int64_t)MiB),
		      (long long)(rf_test_json_num(reply, "stat-total-memory") / (int64_t)MiB));
	assert_int_equal((uint64_t)free_guest / MiB, mib_free);
	assert_true(rf_test_json_num(reply, "stat-total-memory") <= (int64_t)(128 * MiB));
	assert_true(rf_test_json_num(reply, "stat-total-memory") >= (int64_t)(120 * MiB));
	assert_int_equal(rf_test_json_num(reply, "stat-htlb-pgalloc"), -1); /* not sent: unset */
	/* polling off: no more updates */
	{
		char req[] = "{\"execute\":\"set-balloon\",\"arguments\":{\"vm\":\"s\",\"stats-"
			     "interval\":0}}";

		assert_int_equal(vmm_proc_ctl(&p, req, reply, sizeof(reply), 5000), 0);
		rf_test_sleep_ms(400);
		query_balloon(&p, "s", reply, sizeof(reply));
		u = rf_test_json_num(reply, "stats-updates");
		rf_test_sleep_ms(800);
		query_balloon(&p, "s", reply, sizeof(reply));
		assert_int_equal(rf_test_json_num(reply, "stats-updates"), u);
	}
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

static void test_control_errors(void **state)
{
	const char *args[] = {"--vm", "name=c,mem=64M,workload=idle", NULL};
	struct vmm_proc p;
	char reply[1024];

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_ready(&p, "c", 20000), 0);
	assert_int_equal(
	    vmm_proc_ctl(
		&p, "{\"execute\":\"set-balloon\",\"arguments\":{\"vm\":\"c\",\"balloon\":\"1G\"}}",
		reply, sizeof(reply), 5000),
	    0);
	assert_non_null(strstr(reply, "larger than"));
	assert_int_equal(vmm_proc_ctl(&p,
				      "{\"execute\":\"set-balloon\",\"arguments\":{\"vm\":\"c\","
				      "\"balloon\":\"1M\",\"guest-size\":\"1M\"}}",
				      reply, sizeof(reply), 5000),
			 0);
	assert_non_null(strstr(reply, "exactly one"));
	assert_int_equal(
	    vmm_proc_ctl(
		&p,
		"{\"execute\":\"set-balloon\",\"arguments\":{\"vm\":\"c\",\"guest-size\":\"48M\"}}",
		reply, sizeof(reply), 5000),
	    0);
	assert_non_null(strstr(reply, "\"balloon-target\":16777216"));
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_inflate_and_deflate_512m),
	    cmocka_unit_test(test_memcheck_after_deflate),
	    cmocka_unit_test(test_free_page_reporting),
	    cmocka_unit_test(test_reporting_keeps_what_the_guest_reuses),
	    cmocka_unit_test(test_deflate_on_oom),
	    cmocka_unit_test(test_stats_interval_and_totals),
	    cmocka_unit_test(test_control_errors),
	};

	return cmocka_run_group_tests_name("balloon_vmm", tests, NULL, NULL);
}
