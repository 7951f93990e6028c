/* SPDX-License-Identifier: MIT */
/*
 * Huge pages and dedup (in-process, no KVM): what rf_dedup_set_huge and the
 * policy's memory state do to a VM whose RAM is backed by transparent huge
 * pages (RF_VM_THP), measured by the kernel (AnonHugePages of the region in
 * /proc/self/smaps, Pss in smaps_rollup, pagemap).
 *
 *   - in the high state (the policy's tick sets "keep"), huge pages full of
 *     duplicate 4 KiB pages stay whole and nothing is merged, while an
 *     all-zero huge page is discarded whole;
 *   - in the low state ("split-cold"), cold huge pages are split and their
 *     pages merged (Pss falls), while a writer thread rewrites pages of them
 *     (as a vCPU would) during the split and the merges;
 *   - back in high, huge pages still whole stay whole (nothing forces a
 *     split), and every page holds what was last written to it;
 *   - without a policy (the default, as under ramfold-run with stock QEMU),
 *     the same pages are merged at once, splitting their huge pages;
 *   - an engine started in keep (rf_dedup_config.huge) keeps them from the
 *     first pass, and rf_dedup_set_huge opens them by hand.
 *
 * Skips (with the reason) where THP is off, PAGEMAP_SCAN is missing, or the
 * kernel gave no huge pages (fragmented memory).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ramfold/ramfold.h>

#include "dedup_util.h"

#define PG	 4096u
#define HP	 (2u << 20)
#define HPAGES	 (HP / PG)
#define NHUGE	 16u
#define NDUP	 12u /* huge pages 0..11: 64 distinct contents, repeated */
#define ZERO_HP	 12u /* huge page 12: all zero */
#define DISTINCT 64u /* huge pages 13..15: unique */
#define NPAGES	 (NHUGE * HPAGES)

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* AnonHugePages (bytes) of the mappings inside [lo, hi), from smaps. */
static uint64_t anon_huge_bytes(const void *lo, const void *hi)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in = false;
	uint64_t sum = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long a, b, kb;

		if (sscanf(line, "%lx-%lx ", &a, &b) == 2 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			in = a >= (uintptr_t)lo && b <= (uintptr_t)hi;
			continue;
		}
		if (in && sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
			sum += (uint64_t)kb << 10;
	}
	fclose(f);
	return sum;
}

static bool thp_enabled(const char **why)
{
	char buf[128] = "";
	FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");

	if (!f || !fgets(buf, sizeof(buf), f)) {
		if (f)
			fclose(f);
		*why = "no transparent huge pages in this kernel";
		return false;
	}
	fclose(f);
	if (strstr(buf, "[never]")) {
		*why = "transparent huge pages are off (enabled = never)";
		return false;
	}
	return true;
}

/* The policy under test: no actions, the state the test wants. */
static int state_policy(void *arg, const struct rf_policy_reading *in,
			struct rf_policy_action *acts, unsigned int max, unsigned int *n,
			enum rf_mem_state *state)
{
	(void)in;
	(void)acts;
	(void)max;
	*n = 0;
	*state = *(enum rf_mem_state *)arg;
	return 0;
}

struct fixture {
	rf_engine *e;
	rf_vm *vm;
	uint8_t *ram;
	uint64_t seed[NPAGES]; /* what each page holds: 0 = all zero */
	enum rf_mem_state state;
};

static void fill(struct fixture *f, unsigned int i, uint64_t seed)
{
	f->seed[i] = seed;
	if (seed)
		dedup_fill_page(f->ram + (size_t)i * PG, seed);
	else
		memset(f->ram + (size_t)i * PG, 0, PG);
}

static void check_bytes(const struct fixture *f)
{
	static uint8_t want[PG];

	for (unsigned int i = 0; i < NPAGES; i++) {
		if (f->seed[i])
			dedup_fill_page(want, f->seed[i]);
		else
			memset(want, 0, PG);
		if (memcmp(f->ram + (size_t)i * PG, want, PG) != 0)
			fail_msg("page %u does not hold what was written (seed %" PRIu64 ")", i,
				 f->seed[i]);
	}
}

/* Set up: a THP VM of NHUGE huge pages, filled; NULL (skipped) if the
 * kernel cannot give them. */
static int setup(void **state)
{
	const char *why = NULL;
	struct rf_engine_config ec;
	struct rf_vm_config vc;
	struct rf_features feat;
	struct fixture *f;
	void *hva;

	if (!dedup_supported(&why) || !thp_enabled(&why)) {
		printf("skipped: %s\n", why);
		*state = NULL;
		return 0;
	}
	f = calloc(1, sizeof(*f));
	assert_non_null(f);
	rf_engine_config_init(&ec);
	ec.log = dedup_test_log;
	ec.scan_threads = 2;
	assert_int_equal(rf_engine_new(&ec, &f->e), 0);
	feat.size = sizeof(feat);
	assert_int_equal(rf_engine_features(f->e, &feat), 0);
	rf_vm_config_init(&vc);
	vc.ram_bytes = (uint64_t)NPAGES * PG;
	vc.flags = RF_VM_THP;
	assert_int_equal(rf_vm_new(f->e, "vm0", &vc, &f->vm), 0);
	assert_int_equal(rf_vm_map_ram(f->vm, 0, (uint64_t)NPAGES * PG, &hva), 0);
	f->ram = hva;
	if (!feat.pagemap_scan || ((uintptr_t)hva & (HP - 1))) {
		printf("skipped: %s\n", !feat.pagemap_scan ? "no PAGEMAP_SCAN (Linux 6.7+)"
							   : "guest RAM not 2 MiB aligned");
		rf_engine_free(f->e);
		free(f);
		*state = NULL;
		return 0;
	}
	for (unsigned int h = 0; h < NHUGE; h++)
		for (unsigned int k = 0; k < HPAGES; k++) {
			unsigned int i = h * HPAGES + k;

			fill(f, i, h < NDUP ? 1 + (i % DISTINCT) : h == ZERO_HP ? 0 : 1000000 + i);
		}
	if (anon_huge_bytes(f->ram, f->ram + (size_t)NPAGES * PG) < (uint64_t)NHUGE * HP) {
		printf("skipped: the kernel gave %" PRIu64 " of %u huge pages (memory "
		       "fragmented?)\n",
		       anon_huge_bytes(f->ram, f->ram + (size_t)NPAGES * PG) / HP, NHUGE);
		rf_engine_free(f->e);
		free(f);
		*state = NULL;
		return 0;
	}
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	if (f) {
		rf_dedup_stop(f->e);
		rf_engine_free(f->e);
		free(f);
	}
	return 0;
}

static void start_dedup_huge(struct fixture *f, enum rf_dedup_huge huge)
{
	struct rf_dedup_config dc;

	rf_dedup_config_init(&dc);
	dc.huge = huge;
	assert_int_equal(rf_dedup_start(f->e, &dc), 0);
}

static void start_dedup(struct fixture *f)
{
	start_dedup_huge(f, RF_DEDUP_HUGE_SPLIT);
}

static uint64_t region_huge(const struct fixture *f)
{
	return anon_huge_bytes(f->ram, f->ram + (size_t)NPAGES * PG);
}

static void tick(struct fixture *f, enum rf_mem_state s)
{
	f->state = s;
	assert_int_equal(rf_policy_tick(f->e), 0);
}

/* A vCPU's writes: pages of the duplicate huge pages rewritten, mostly
 * with the bytes they hold (a merged page gets its private copy back),
 * one in four with new bytes. The fixture's seed[] follows. */
struct writer {
	struct fixture *f;
	_Atomic bool stop;
	unsigned int writes;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t x = 88172645463325252ull;

	while (!atomic_load(&w->stop)) {
		unsigned int i;

		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		i = (unsigned int)(x % (NDUP * HPAGES));
		fill(w->f, i, (w->writes & 3) == 3 ? 2000000 + w->writes : w->f->seed[i]);
		w->writes++;
		usleep(2000);
	}
	return NULL;
}

static void test_keep_then_split_cold(void **state)
{
	struct fixture *f = *state;
	struct rf_dedup_stats st = {.size = sizeof(st)};
	struct dedup_mem m0, m1;
	struct writer w = {0};
	pthread_t t;
	uint64_t huge0, huge1, huge2, t0, saved, ideal;
	uint8_t *zero_hp;

	if (!f)
		skip();
	zero_hp = f->ram + (size_t)ZERO_HP * HP;
	start_dedup(f);
	f->state = RF_MEM_HIGH;
	assert_int_equal(rf_policy_set(f->e, state_policy, &f->state), 0);
	tick(f, RF_MEM_HIGH); /* before the VM is attached: no pass sees "split" */
	assert_int_equal(rf_dedup_add_vm(f->vm), 0);
	assert_true(dedup_wait_converged(f->e, 3, 20000));

	/* High: every huge page whole but the zero one, discarded whole. */
	assert_int_equal(rf_dedup_stats(f->e, &st), 0);
	huge0 = region_huge(f);
	printf("  high: mode %s, AnonHugePages %" PRIu64 " MiB of the region, zero huge pages "
	       "freed %" PRIu64 ", pages kept %" PRIu64 ", sharing %" PRIu64 "\n",
	       rf_dedup_huge_name(st.huge_mode), huge0 >> 20, st.huge_zero_freed,
	       st.huge_kept_pages, st.pages_sharing);
	assert_int_equal(st.huge_mode, RF_DEDUP_HUGE_KEEP);
	assert_int_equal(huge0, (uint64_t)(NHUGE - 1) * HP);
	assert_int_equal(st.huge_zero_freed, 1);
	assert_int_equal(st.pages_sharing, 0);
	assert_true(st.huge_kept_pages >= (uint64_t)(NHUGE - 1) * HPAGES);
	{
		uint64_t ent;
		int fd = open("/proc/self/pagemap", O_RDONLY);

		assert_true(fd >= 0);
		assert_int_equal(pread(fd, &ent, 8, (off_t)((uintptr_t)zero_hp / PG * 8)), 8);
		close(fd);
		assert_false(ent >> 63); /* not present */
	}
	check_bytes(f);

	/* Low, with a vCPU writing: cold huge pages split and merged. */
	assert_int_equal(dedup_mem_read(&m0), 0);
	w.f = f;
	assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
	usleep(200000);
	tick(f, RF_MEM_LOW);
	t0 = now_ms();
	ideal = (uint64_t)(NDUP * HPAGES - DISTINCT) * PG;
	/* The writer goes on for a second at least: through the splits, the
	 * merges and the unmerges its writes cause. */
	do {
		usleep(100000);
		assert_int_equal(dedup_mem_read(&m1), 0);
		saved = m0.pss > m1.pss ? m0.pss - m1.pss : 0;
	} while ((saved < ideal * 8 / 10 || now_ms() - t0 < 1000) && now_ms() - t0 < 20000);
	atomic_store(&w.stop, true);
	pthread_join(t, NULL);
	assert_int_equal(rf_dedup_stats(f->e, &st), 0);
	huge1 = region_huge(f);
	printf("  low: Pss fell by %" PRIu64 " KiB (ideal %" PRIu64 " KiB) in %.1f s, "
	       "AnonHugePages %" PRIu64 " MiB, huge pages opened %" PRIu64 ", sharing %" PRIu64
	       ", %u writes meanwhile (%" PRIu64 " merges broken)\n",
	       saved >> 10, ideal >> 10, (double)(now_ms() - t0) / 1e3, huge1 >> 20, st.huge_opened,
	       st.pages_sharing, w.writes, st.pages_unmerged);
	assert_int_equal(st.huge_mode, RF_DEDUP_HUGE_SPLIT_COLD);
	assert_true(saved >= ideal * 8 / 10);
	assert_true(huge1 < huge0);
	assert_true(st.huge_opened >= NDUP);
	check_bytes(f);

	/* High again: what is whole stays whole (the unique huge pages were
	 * cold and opened, but none of their pages had a twin). */
	tick(f, RF_MEM_HIGH);
	rf_dedup_scan_now(f->e);
	assert_true(dedup_wait_converged(f->e, 2, 20000));
	huge2 = region_huge(f);
	printf("  high again: AnonHugePages %" PRIu64 " MiB\n", huge2 >> 20);
	assert_true(huge2 >= (uint64_t)(NHUGE - NDUP - 1) * HP);
	assert_true(huge2 >= huge1 - HP); /* a huge page the writer made hot may have split */
	check_bytes(f);
	assert_int_equal(rf_policy_set(f->e, NULL, NULL), 0);
}

static void test_no_policy_splits(void **state)
{
	struct fixture *f = *state;
	struct rf_dedup_stats st = {.size = sizeof(st)};
	struct dedup_mem m0, m1;
	uint64_t huge0, huge1, saved, ideal = (uint64_t)(NDUP * HPAGES - DISTINCT) * PG;

	if (!f)
		skip();
	huge0 = region_huge(f);
	assert_int_equal(dedup_mem_read(&m0), 0);
	start_dedup(f);
	assert_int_equal(rf_dedup_add_vm(f->vm), 0);
	assert_true(dedup_wait_converged(f->e, 3, 20000));
	dedup_wait_sharing(f->e, NDUP * HPAGES, 10000);
	assert_int_equal(dedup_mem_read(&m1), 0);
	assert_int_equal(rf_dedup_stats(f->e, &st), 0);
	huge1 = region_huge(f);
	saved = m0.pss > m1.pss ? m0.pss - m1.pss : 0;
	printf("  no policy: mode %s, Pss fell by %" PRIu64 " KiB (ideal %" PRIu64
	       " KiB + the zero huge page), AnonHugePages %" PRIu64 " -> %" PRIu64 " MiB\n",
	       rf_dedup_huge_name(st.huge_mode), saved >> 10, ideal >> 10, huge0 >> 20,
	       huge1 >> 20);
	assert_int_equal(st.huge_mode, RF_DEDUP_HUGE_SPLIT);
	assert_int_equal(st.huge_kept_pages, 0);
	assert_true(saved >= ideal * 9 / 10);
	assert_true(huge1 <= (uint64_t)(NHUGE - NDUP - 1) * HP);
	check_bytes(f);
}

/* An embedder running its own policy starts in keep (rf_dedup_config.huge):
 * no tick needed; and the setter's errors. */
static void test_config_keep(void **state)
{
	struct fixture *f = *state;
	struct rf_dedup_stats st = {.size = sizeof(st)};

	if (!f)
		skip();
	assert_int_equal(rf_dedup_set_huge(f->e, RF_DEDUP_HUGE_KEEP), -ENOENT);
	start_dedup_huge(f, RF_DEDUP_HUGE_KEEP);
	assert_int_equal(rf_dedup_set_huge(f->e, (enum rf_dedup_huge)7), -EINVAL);
	assert_int_equal(rf_dedup_add_vm(f->vm), 0);
	assert_true(dedup_wait_converged(f->e, 3, 20000));
	assert_int_equal(rf_dedup_stats(f->e, &st), 0);
	assert_int_equal(st.huge_mode, RF_DEDUP_HUGE_KEEP);
	assert_int_equal(region_huge(f), (uint64_t)(NHUGE - 1) * HP);
	assert_int_equal(st.pages_sharing, 0);
	/* The embedder's own pressure: split-cold by hand. */
	assert_int_equal(rf_dedup_set_huge(f->e, RF_DEDUP_HUGE_SPLIT_COLD), 0);
	assert_true(dedup_wait_sharing(f->e, NDUP * HPAGES / 2, 20000) >= NDUP * HPAGES / 2);
	check_bytes(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_keep_then_split_cold, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_no_policy_splits, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_config_keep, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
