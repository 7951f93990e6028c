/* SPDX-License-Identifier: MIT */
/*
 * Dedup end to end: the demo VMM with its freestanding guests, --dedup on.
 * Savings are the fall of the VMM's Pss (smaps_rollup) between a run with
 * --dedup off and the same run with dedup converged, compared with the
 * ideal computed from the content the guests hold:
 *
 *  - two osimage guests on the same files (one domain): the test reads the
 *    files itself, as the VMM preloads them, and counts distinct and zero
 *    pages; saved >= 90% of 2 * pages - distinct non-zero pages;
 *  - two dup guests with the same seed (one domain): from their RESULT
 *    counts, saved >= 90% of dup_a + dup_b - templates + zero_a + zero_b;
 *  - two memcheck guests in one domain, merged while they run (their image,
 *    page tables and stacks are twins): only clean rounds; query-dedup
 *    counters=true gives the counters without the measured figures;
 *  - the same dup guests in two domains never share a store page (each
 *    domain holds its own copy of every template).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "dedup_util.h"
#include "rf_test.h"
#include "vmm_proc.h"

#define MiB	      (1ull << 20)
#define PG	      4096ull
#define require_kvm() rf_require(access("/dev/kvm", R_OK | W_OK) == 0, "/dev/kvm not accessible")

/* query-dedup walks pagemap in the VMM's main thread: on a loaded machine
 * an answer may take seconds, so a slow answer is waited for, twice. */
static void query_dedup(struct vmm_proc *p, char *reply, size_t len)
{
	int err = -ETIMEDOUT;

	for (int i = 0; i < 2 && err; i++)
		err = vmm_proc_ctl(p, "{\"execute\":\"query-dedup\"}", reply, len, 30000);
	assert_int_equal(err, 0);
	if (!strstr(reply, "\"return\""))
		fail_msg("query-dedup: %s", reply);
}

/* Wait until the engine says converged after at least 3 passes. */
static void wait_converged(struct vmm_proc *p, char *reply, size_t len, int timeout_ms)
{
	int64_t p0;

	/* Called once the guests have written what is to be merged: passes
	 * that ended before (boot, an idle engine "converged" on nothing) say
	 * nothing of it, and the one in progress may have started before. */
	query_dedup(p, reply, len);
	p0 = rf_test_json_num(reply, "scan-passes");
	for (int t = 0; t < timeout_ms; t += 200) {
		query_dedup(p, reply, len);
		if (strstr(reply, "\"converged\":true") &&
		    rf_test_json_num(reply, "scan-passes") >= (p0 > 1 ? p0 : 1) + 2)
			return;
		rf_test_sleep_ms(200);
	}
	fail_msg("dedup did not converge in %d ms: %s", timeout_ms, reply);
}

/* Start the VMM with @vms (NULL-terminated --vm specs) and @mode, wait for READY. */
static void start(struct vmm_proc *p, const char *mode, const char *const *vms)
{
	const char *args[32];
	unsigned int n = 0;

	args[n++] = "--dedup";
	args[n++] = mode;
	for (unsigned int i = 0; vms[i]; i++) {
		args[n++] = "--vm";
		args[n++] = vms[i];
	}
	args[n] = NULL;
	assert_int_equal(vmm_proc_start(p, args), 0);
	for (unsigned int i = 0; vms[i]; i++) {
		char name[16];

		sscanf(vms[i], "name=%15[^,]", name);
		if (vmm_proc_wait_ready(p, name, 60000))
			fail_msg("%s not READY: %s", name, p->out);
	}
}

/* Pss of the VMM once its guests are READY and settled, dedup off. */
static uint64_t baseline_pss(const char *const *vms)
{
	struct vmm_proc p;
	struct vmm_smaps sm;

	start(&p, "off", vms);
	rf_test_sleep_ms(1500);
	assert_int_equal(vmm_smaps_rollup(p.pid, &sm), 0);
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
	return sm.pss;
}

/* The saving once dedup has converged: the fall of the VMM's Pss (now
 * @pss) from @base, its Pss with dedup off. */
static uint64_t converged_saving(struct vmm_proc *p, char *reply, size_t len, uint64_t base,
				 uint64_t *pss)
{
	struct vmm_smaps sm;

	wait_converged(p, reply, len, 60000);
	assert_int_equal(vmm_smaps_rollup(p->pid, &sm), 0);
	*pss = sm.pss;
	return base > sm.pss ? base - sm.pss : 0;
}

static void test_osimage_twins(void **state)
{
	const char *vms[] = {"name=os0,mem=192M,workload=osimage,mib=96,domain=img",
			     "name=os1,mem=192M,workload=osimage,mib=96,domain=img", NULL};
	struct osimage_pages op;
	uint64_t ideal, base, pss, saved;
	struct vmm_proc p;
	char reply[4096];

	(void)state;
	require_kvm();
	assert_int_equal(dedup_osimage_pages("/usr/lib/x86_64-linux-gnu", "*.so*", 96 * MiB, &op),
			 0);
	ideal = (2 * op.total - op.distinct) * PG;
	base = baseline_pss(vms);
	start(&p, "domains", vms);
	saved = converged_saving(&p, reply, sizeof(reply), base, &pss);
	printf("  osimage: %llu pages per guest (%llu zero, %llu distinct): ideal %llu MiB, Pss "
	       "%llu -> %llu MiB, saved %llu MiB (%.0f%%)\n",
	       (unsigned long long)op.total, (unsigned long long)op.zero,
	       (unsigned long long)op.distinct, (unsigned long long)(ideal / MiB),
	       (unsigned long long)(base / MiB), (unsigned long long)(pss / MiB),
	       (unsigned long long)(saved / MiB), 100.0 * (double)saved / (double)ideal);
	assert_true(saved >= ideal / 10 * 9);
	/* The guests still read their files right. Each prints its RESULT
	 * just after READY, which may reach us after convergence (it did once
	 * in six runs at load 4, 100 ms late). */
	assert_int_equal(vmm_proc_wait_output(&p, "os0: RESULT osimage", 10000), 0);
	assert_int_equal(vmm_proc_wait_output(&p, "os1: RESULT osimage", 10000), 0);
	assert_int_equal(vmm_proc_count(&p, "RESULT osimage"), 2);
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

static void dup_counts(struct vmm_proc *p, const char *vm, uint64_t *dup, uint64_t *zero)
{
	char needle[64], line[512];

	snprintf(needle, sizeof(needle), "%s: RESULT dup", vm);
	if (vmm_proc_wait_output(p, needle, 30000) ||
	    vmm_proc_find_line(p, needle, line, sizeof(line)))
		fail_msg("%s: no RESULT dup line: %s", vm, p->out);
	assert_int_equal(vmm_line_u64(line, "dup", dup), 0);
	assert_int_equal(vmm_line_u64(line, "zero", zero), 0);
}

static void test_dup_twins(void **state)
{
	const char *vms[] = {
	    "name=d0,mem=192M,workload=dup,mib=128,dup=60,zero=20,templates=16,seed=5,domain=t",
	    "name=d1,mem=192M,workload=dup,mib=128,dup=60,zero=20,templates=16,seed=5,domain=t",
	    NULL};
	uint64_t d0, z0, d1, z1, ideal, base, pss, saved;
	struct vmm_proc p;
	char reply[4096];

	(void)state;
	require_kvm();
	base = baseline_pss(vms);
	start(&p, "domains", vms);
	dup_counts(&p, "d0", &d0, &z0);
	dup_counts(&p, "d1", &d1, &z1);
	ideal = (d0 + d1 - 16 + z0 + z1) * PG;
	saved = converged_saving(&p, reply, sizeof(reply), base, &pss);
	printf("  dup: dup %llu+%llu zero %llu+%llu: ideal %llu MiB, Pss %llu -> %llu MiB, saved "
	       "%llu MiB (%.0f%%), store pages %lld\n",
	       (unsigned long long)d0, (unsigned long long)d1, (unsigned long long)z0,
	       (unsigned long long)z1, (unsigned long long)(ideal / MiB),
	       (unsigned long long)(base / MiB), (unsigned long long)(pss / MiB),
	       (unsigned long long)(saved / MiB), 100.0 * (double)saved / (double)ideal,
	       (long long)rf_test_json_num(reply, "store-pages"));
	assert_true(saved >= ideal / 10 * 9);
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

/* Same content, two domains: each domain keeps its own copy of every
 * template (a shared copy would leave 16 store pages for the 16 templates);
 * in one domain the twins of the other VM are merged too. */
static void test_domains_apart(void **state)
{
	const char *vms[] = {
	    "name=r0,mem=128M,workload=dup,mib=64,dup=60,zero=20,templates=16,seed=5,domain=red",
	    "name=b0,mem=128M,workload=dup,mib=64,dup=60,zero=20,templates=16,seed=5,domain=blue",
	    NULL};
	uint64_t d, z, stores;
	struct vmm_proc p;
	char reply[4096];

	(void)state;
	require_kvm();
	start(&p, "domains", vms);
	dup_counts(&p, "r0", &d, &z);
	dup_counts(&p, "b0", &d, &z);
	wait_converged(&p, reply, sizeof(reply), 60000);
	stores = (uint64_t)rf_test_json_num(reply, "store-pages");
	printf("  two domains: %llu store pages, %lld pages sharing, %lld zero\n",
	       (unsigned long long)stores, (long long)rf_test_json_num(reply, "pages-sharing"),
	       (long long)rf_test_json_num(reply, "pages-zero"));
	assert_true(stores >= 2 * 16);
	assert_true(rf_test_json_num(reply, "pages-zero") >= (int64_t)(2 * z * 9 / 10));
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

/* query-dedup counters=true: the counters (which only grow: at least
 * @merged pages merged), nothing measured. */
static void check_counters_only(struct vmm_proc *p, int64_t merged)
{
	char c[1024];

	assert_int_equal(
	    vmm_proc_ctl(p, "{\"execute\":\"query-dedup\",\"arguments\":{\"counters\":true}}", c,
			 sizeof(c), 10000),
	    0);
	assert_true(rf_test_json_num(c, "pages-merged") >= merged);
	assert_true(rf_test_json_num(c, "scan-passes") > 0);
	assert_null(strstr(c, "saved-bytes"));
	assert_null(strstr(c, "\"vms\""));
}

static void test_memcheck_while_merged(void **state)
{
	const char *vms[] = {"name=m0,mem=128M,workload=memcheck,mib=48,seed=3,domain=mc",
			     "name=m1,mem=128M,workload=memcheck,mib=48,seed=3,domain=mc", NULL};
	struct vmm_proc p;
	char reply[4096];

	(void)state;
	require_kvm();
	start(&p, "domains", vms);
	/* At least 8 s of merging, and until both guests have reported two
	 * rounds (a loaded machine makes them slower), up to 60 s. */
	rf_test_sleep_ms(8000);
	for (unsigned int ms = 0; vmm_proc_count(&p, "bad_rounds=0") < 4 && ms < 52000; ms += 500)
		rf_test_sleep_ms(500);
	query_dedup(&p, reply, sizeof(reply));
	printf("  memcheck: merged %lld, sharing %lld, unmerged %lld; clean summaries %u\n",
	       (long long)rf_test_json_num(reply, "pages-merged"),
	       (long long)rf_test_json_num(reply, "pages-sharing"),
	       (long long)rf_test_json_num(reply, "pages-unmerged"),
	       vmm_proc_count(&p, "bad_rounds=0"));
	assert_true(rf_test_json_num(reply, "pages-merged") > 0);
	check_counters_only(&p, rf_test_json_num(reply, "pages-merged"));
	/* Both guests verified rounds, and none was bad. */
	assert_true(vmm_proc_count(&p, "bad_rounds=0") >= 4);
	assert_int_equal(vmm_proc_stop(&p), 0);
	assert_int_equal(vmm_proc_count(&p, "BAD"), 0);
	vmm_proc_free(&p);
}

/* Bad dedup (and balloon, policy) arguments: one clear line, exit status
 * 2, nothing started. */
static void test_bad_args(void **state)
{
	static const struct {
		const char *args[8];
		const char *msg;
	} cases[] = {
	    {{"--dedup", "bogus", "--vm", "name=a,mem=64M,workload=idle", NULL},
	     "--dedup bogus: expected off, zero, intra, domains or ksm"},
	    {{"--dedup", "intra", "--vm", "name=a,mem=64M,workload=idle,dedup=maybe", NULL},
	     "dedup=maybe: expected on or off"},
	    {{"--dedup", "domains", "--vm",
	      "name=a,mem=64M,workload=idle,domain=0123456789012345678901234567890123", NULL},
	     "expected 1 to 31 characters"},
	    {{"--dedup-threads", "65", "--vm", "name=a,mem=64M,workload=idle", NULL},
	     "--dedup-threads 65: expected an integer from 0 to 64"},
	    {{"--dedup-ksm", "fast", "--vm", "name=a,mem=64M,workload=idle", NULL},
	     "expected PAGES/MS"},
	    {{"--dedup-nice", "20", "--vm", "name=a,mem=64M,workload=idle", NULL},
	     "--dedup-nice 20: expected a nice value from -20 to 19"},
	    {{"--dedup-nice", "five", "--vm", "name=a,mem=64M,workload=idle", NULL},
	     "--dedup-nice five: expected a nice value from -20 to 19"},
	    {{"--dedup-vma-single", "0", "--vm", "name=a,mem=64M,workload=idle", NULL},
	     "--dedup-vma-single 0: expected a share of the VMA budget, 1..100 (percent)"},
	    {{"--dedup-vma-single", "101", "--vm", "name=a,mem=64M,workload=idle", NULL},
	     "--dedup-vma-single 101: expected a share of the VMA budget, 1..100 (percent)"},
	    /* the balloon's window for reports a guest takes back */
	    {{"--vm", "name=a,mem=64M,workload=idle,balloon-report-reuse=200000", NULL},
	     "a: balloon-report-reuse=200000: expected a window in ms, 0..120000"},
	    {{"--vm", "name=a,mem=64M,workload=idle,balloon-report-reuse=lots", NULL},
	     "a: balloon-report-reuse=lots: expected a window in ms, 0..120000"},
	    /* the policy's hold before balloons deflate */
	    {{"--policy-deflate-hold", "3600001", "--vm", "name=a,mem=64M,workload=idle", NULL},
	     "--policy-deflate-hold 3600001: expected milliseconds, 0 to 3600000"},
	    {{"--policy-deflate-hold", "-5", "--vm", "name=a,mem=64M,workload=idle", NULL},
	     "--policy-deflate-hold -5: expected milliseconds, 0 to 3600000"},
	};

	(void)state;
	require_kvm();
	for (unsigned int i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *args[12];
		struct vmm_proc p;
		unsigned int n = 0;

		args[n++] = "--guest";
		args[n++] = vmm_guest_path();
		for (unsigned int k = 0; cases[i].args[k]; k++)
			args[n++] = cases[i].args[k];
		args[n] = NULL;
		assert_int_equal(vmm_proc_spawn(&p, args), 0);
		assert_int_equal(vmm_proc_wait_exit(&p, 20000), 2);
		if (!strstr(p.out, cases[i].msg))
			fail_msg("case %u: no \"%s\" in: %s", i, cases[i].msg, p.out);
		vmm_proc_free(&p);
	}
}

/* --dedup-nice 7: every scanner thread runs at nice 7 (a peer bench gives
 * them ksmd's nice this way); the VM's fault thread keeps the VMM's. */
static void test_scanner_nice(void **state)
{
	const char *args[] = {"--dedup",
			      "intra",
			      "--dedup-threads",
			      "2",
			      "--dedup-nice",
			      "7",
			      "--vm",
			      "name=a,mem=64M,workload=dup,mib=16",
			      NULL};
	struct vmm_proc p;

	(void)state;
	require_kvm();
	rf_require(getpriority(PRIO_PROCESS, 0) <= 7,
		   "running above nice 7: going down to 7 needs CAP_SYS_NICE");
	assert_int_equal(vmm_proc_start(&p, args), 0);
	if (vmm_proc_wait_ready(&p, "a", 60000))
		fail_msg("a not READY: %s", p.out);
	assert_int_equal(rf_test_threads_at_nice(p.pid, "rf-scan/", 7), 2);
	assert_int_equal(rf_test_threads_at_nice(p.pid, "rf-fault/", getpriority(PRIO_PROCESS, 0)),
			 1);
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_args),	  cmocka_unit_test(test_scanner_nice),
	    cmocka_unit_test(test_osimage_twins), cmocka_unit_test(test_dup_twins),
	    cmocka_unit_test(test_domains_apart), cmocka_unit_test(test_memcheck_while_merged),
	};

	return cmocka_run_group_tests_name("dedup_vmm", tests, NULL, NULL);
}
