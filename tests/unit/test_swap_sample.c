/* SPDX-License-Identifier: MIT */
/*
 * Working-set sampling (swap/swap_sample.c), in process: the test's threads
 * play the vCPUs, touching guest RAM directly, so a staged page faults back
 * through the VM's userfaultfd exactly as a vCPU's access would.
 *
 *   - a hot set that is only read stays resident under a resident target,
 *     while the cold pages go; without sampling the same run evicts it;
 *   - pages staged while the guest reads and writes them, and while the
 *     dedup engine merges the same RAM, keep their exact bytes;
 *   - the active estimate of a guest that reads a known share of its RAM
 *     is within 8 points of that share.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "pager_internal.h"
#include "rf_test.h"
#include "swap_pager.h"

#define MiB (1ull << 20)
#define PG  RF_PAGE_SIZE

static uint8_t *ram;
static _Atomic bool stop_readers;
static uint64_t hot_pages;

/* Content of page @i at generation @gen: its own, never zero. */
static void fill(uint8_t *p, uint64_t i, uint64_t gen)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ (gen << 40);

	for (unsigned int k = 0; k < PG; k += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(p + k, &x, 8);
	}
}

static bool same(const uint8_t *p, uint64_t i, uint64_t gen)
{
	uint8_t want[PG];

	fill(want, i, gen);
	return memcmp(p, want, PG) == 0;
}

/* Reads one word of every page of the hot set, over and over: never a
 * write, so only sampling can tell these pages are used. */
static void *reader(void *arg)
{
	uint64_t sum = 0;

	(void)arg;
	while (!atomic_load_explicit(&stop_readers, memory_order_relaxed))
		for (uint64_t i = 0; i < hot_pages; i++)
			sum += *(volatile uint64_t *)(ram + i * PG + (i % 512) * 8);
	return (void *)(uintptr_t)(sum & 1);
}

static void start_readers(pthread_t *th, uint64_t hot)
{
	hot_pages = hot;
	atomic_store(&stop_readers, false);
	assert_int_equal(pthread_create(th, NULL, reader, NULL), 0);
}

static void stop_reader(pthread_t th)
{
	atomic_store(&stop_readers, true);
	pthread_join(th, NULL);
}

/*
 * 16 MiB, the first 4 MiB read all the time, held to 8 MiB resident. The
 * hand walks in address order, so without sampling the hot set, marked cold
 * on the first pass (a read never clears the mark), is the first thing it
 * evicts: swap-ins follow. With sampling every victim is staged first, the
 * hot ones come back at once, and only cold pages go: no swap-in at all.
 */
static uint64_t run_hot_read_only(bool sampling, uint64_t *hot_gone, uint64_t *cold_out)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_swap_engine(&log, false, 64 * MiB, 0);
	rf_vm *vm = rf_test_vm(e, "vm0", 16 * MiB, (void **)&ram);
	uint64_t n = 16 * MiB / PG, hot = 4 * MiB / PG, ins;
	struct rf_swap_stats st = {.size = sizeof(st)};
	pthread_t th;

	for (uint64_t i = 0; i < n; i++)
		fill(ram + i * PG, i, 1);
	if (sampling)
		assert_int_equal(rf_vm_set_swap_sampling(vm, 50, 128), 0);
	start_readers(&th, hot);
	assert_int_equal(rf_vm_set_swap_target(vm, 8 * MiB), 0);
	/* Until the target is met, and a few periods more. */
	for (int t = 0; t < 300; t++) {
		struct rf_vm_stats vs = {.size = sizeof(vs)};

		assert_int_equal(rf_vm_stats(vm, &vs), 0);
		if (t > 40 && vs.resident_bytes <= 8 * MiB + 2 * MiB)
			break;
		usleep(20000);
	}
	rf_test_sleep_ms(500);
	stop_reader(th);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	/* Staged pages (SWAPPED, in memory) go back: what is left swapped
	 * was evicted. */
	assert_int_equal(rf_vm_set_swap_target(vm, RF_SWAP_NO_TARGET), 0);
	if (sampling)
		assert_int_equal(rf_vm_set_swap_sampling(vm, 0, 0), 0);
	ins = st.swap_ins;
	*hot_gone = 0;
	*cold_out = 0;
	for (uint64_t i = 0; i < n; i++) {
		enum rf_page_state s = rf_vm_page_state(vm, i * PG);
		bool out = s == RF_PAGE_SWAPPED || s == RF_PAGE_COMPRESSED;

		if (i < hot)
			*hot_gone += out;
		else
			*cold_out += out;
	}
	print_message("sampling %s: swap-outs %llu, swap-ins %llu, hot pages out %llu, cold "
		      "pages out %llu, staged %llu (touched %llu), hot skips %llu\n",
		      sampling ? "on" : "off", (unsigned long long)st.swap_outs,
		      (unsigned long long)ins, (unsigned long long)*hot_gone,
		      (unsigned long long)*cold_out, (unsigned long long)st.probed,
		      (unsigned long long)st.probed_touched, (unsigned long long)st.hot_skips);
	/* Every page still holds its bytes. */
	for (uint64_t i = 0; i < n; i++)
		if (!same(ram + i * PG, i, 1))
			fail_msg("page %llu differs", (unsigned long long)i);
	assert_false(st.stopped);
	rf_engine_free(e);
	return ins;
}

static void test_read_only_hot_set_stays(void **state)
{
	uint64_t hot_gone, cold_out, ins, ins_off;

	(void)state;
	/* The control: today's hand evicts the hot set (else this test could
	 * not fail). */
	ins_off = run_hot_read_only(false, &hot_gone, &cold_out);
	assert_true(ins_off > 0);
	ins = run_hot_read_only(true, &hot_gone, &cold_out);
	/* No hot page went out before the cold ones (a swap-in is a hot page
	 * read back: nothing else is touched), and the target was met from the
	 * cold pages. On a quiet machine not one hot page goes (0 swap-ins in
	 * every run); on a loaded one the swapper falls behind, a reader
	 * waits for room, and the hand then evicts without probing, hot pages
	 * too (269 swap-ins against 1536 without sampling, at load 5): a
	 * quarter of the control's at most, and none out at the end. */
	assert_true(ins * 4 <= ins_off);
	assert_int_equal(hot_gone, 0);
	assert_true(cold_out >= (8 - 2) * MiB / PG);
}

/* ---- exact bytes, with the guest and the dedup engine at the same RAM -- */

#define NPAGES	4096 /* 16 MiB */
#define NDUPS	1024 /* pages 0..NDUPS-1 are copies of each other in pairs */
#define NWORKER 2

static uint64_t gen[NPAGES]; /* page i is written by worker i % NWORKER only */
static _Atomic uint64_t ops, bad;
static _Atomic bool stop_workers;

/* Pages below NDUPS come in pairs of equal content (2k, 2k+1) until
 * written, so the dedup engine merges them while they are sampled. */
static uint64_t content_of(uint64_t i)
{
	return i < NDUPS && gen[i] == 1 ? i / 2 : i + 100000;
}

static void *worker(void *arg)
{
	unsigned int t = (unsigned int)(uintptr_t)arg, seed = 77 + t;

	while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
		uint64_t i = (uint64_t)(rand_r(&seed) % (NPAGES / NWORKER)) * NWORKER + t;

		/* The pairs are written rarely, so they stay merged a while. */
		if (rand_r(&seed) % (i < NDUPS ? 512 : 8) == 0) {
			gen[i]++;
			fill(ram + i * PG, content_of(i), gen[i]);
		} else if (!same(ram + i * PG, content_of(i), gen[i])) {
			if (atomic_fetch_add(&bad, 1) < 5)
				fprintf(stderr, "page %llu: not generation %llu\n",
					(unsigned long long)i, (unsigned long long)gen[i]);
		}
		atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed);
	}
	return NULL;
}

static void exact_bytes(bool with_target)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_swap_engine(&log, false, 64 * MiB, 4 * MiB);
	struct rf_dedup_config dc;
	struct rf_dedup_vm_stats ds = {.size = sizeof(ds)};
	struct rf_swap_stats st = {.size = sizeof(st)};
	pthread_t th[NWORKER];
	rf_vm *vm = rf_test_vm(e, "vm0", NPAGES * PG, (void **)&ram);

	atomic_store(&ops, 0);
	atomic_store(&bad, 0);
	atomic_store(&stop_workers, false);
	for (uint64_t i = 0; i < NPAGES; i++) {
		gen[i] = 1;
		fill(ram + i * PG, content_of(i), 1);
	}
	/* A short period and a big sample: many pages staged at any time. */
	assert_int_equal(rf_vm_set_swap_sampling(vm, 20, 1024), 0);
	if (with_target)
		assert_int_equal(rf_vm_set_swap_target(vm, 10 * MiB), 0);
	rf_dedup_config_init(&dc);
	dc.fastest = true;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	for (uintptr_t t = 0; t < NWORKER; t++)
		assert_int_equal(pthread_create(&th[t], NULL, worker, (void *)t), 0);
	rf_test_sleep_ms(4000);
	atomic_store(&stop_workers, true);
	for (int t = 0; t < NWORKER; t++)
		pthread_join(th[t], NULL);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_int_equal(rf_dedup_vm_stats(vm, &ds), 0);
	print_message("%s, %s mode: %llu ops, sampled %llu (touched %llu), probed %llu "
		      "(touched %llu), swap-outs %llu, swap-ins %llu, merges %llu, unmerged by "
		      "writes %llu\n",
		      with_target ? "target 10 MiB" : "no target", st.copy_mode ? "copy" : "move",
		      (unsigned long long)atomic_load(&ops), (unsigned long long)st.sampled,
		      (unsigned long long)st.sampled_touched, (unsigned long long)st.probed,
		      (unsigned long long)st.probed_touched, (unsigned long long)st.swap_outs,
		      (unsigned long long)st.swap_ins, (unsigned long long)ds.pages_merged,
		      (unsigned long long)ds.pages_unmerged);
	if (log.count)
		print_message("log (%u messages), last: %s\n", log.count, log.last);
	assert_int_equal(atomic_load(&bad), 0);
	/* The sampling really raced the guest. */
	assert_true(st.sampled > 500);
	assert_true(st.sampled_touched > 50);
	/* And so did the dedup engine, merging and unmerging pages. */
	assert_true(ds.pages_merged > 100);
	assert_false(st.stopped);
	/* Sampling off puts every staged page back; then read all once more. */
	assert_int_equal(rf_vm_set_swap_sampling(vm, 0, 0), 0);
	assert_int_equal(rf_vm_set_swap_target(vm, RF_SWAP_NO_TARGET), 0);
	rf_dedup_stop(e);
	for (uint64_t i = 0; i < NPAGES; i++)
		if (!same(ram + i * PG, content_of(i), gen[i]))
			fail_msg("page %llu lost generation %llu", (unsigned long long)i,
				 (unsigned long long)gen[i]);
	rf_engine_free(e);
}

static void test_exact_bytes_with_dedup(void **state)
{
	(void)state;
	exact_bytes(false);
	exact_bytes(true);
}

/* ---- discards of staged pages ------------------------------------------- */

/*
 * Staged pages discarded by the balloon (rf_vm_discard_as, the page_release
 * hook) and behind the library's back (madvise: the remove event) read as
 * zeros afterwards and give their slots back, through the paths that free
 * swap slots; the others keep their bytes, and nothing reaches the store.
 */
static void test_discard_while_staged(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 64 * MiB, 0);
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	struct rf_swap_stats st = {.size = sizeof(st)};
	uint64_t n = 4 * MiB / PG, staged_low = 0, skipped;

	(void)state;
	for (uint64_t i = 0; i < n; i++)
		fill(ram + i * PG, i, 5);
	/* A long period: what is staged stays staged while we discard. */
	assert_int_equal(rf_vm_set_swap_sampling(vm, 5000, 1024), 0);
	for (int t = 0; t < 200; t++) {
		assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
		if (st.sampled >= 500)
			break;
		rf_test_sleep_ms(10);
	}
	assert_true(st.sampled >= 500);
	for (uint64_t i = 0; i < n / 2; i++)
		staged_low += rf_vm_page_state(vm, i * PG) == RF_PAGE_SWAPPED;
	assert_true(staged_low > 100);
	/* The balloon takes the first quarter; madvise drops the second. */
	assert_int_equal(rf_vm_discard_as(vm, 0, n / 4, RF_PAGE_BALLOONED, &skipped), 0);
	assert_int_equal(madvise(ram + n / 4 * PG, n / 4 * PG, MADV_DONTNEED), 0);
	for (uint64_t i = 0; i < n / 2; i++)
		for (unsigned int k = 0; k < PG; k += 256)
			if (ram[i * PG + k])
				fail_msg("page %llu not zero after discard", (unsigned long long)i);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	print_message("%llu of the discarded pages were staged; %llu KiB staged after\n",
		      (unsigned long long)staged_low, (unsigned long long)st.staged_bytes >> 10);
	/* Their slots are free: what is staged now is in the upper half. */
	assert_true(st.staged_bytes <= (n / 2) * PG);
	for (uint64_t i = n / 2; i < n; i++)
		if (!same(ram + i * PG, i, 5))
			fail_msg("page %llu differs", (unsigned long long)i);
	assert_int_equal(rf_vm_set_swap_sampling(vm, 0, 0), 0);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_int_equal(st.staged_bytes, 0);
	assert_int_equal(st.file_bytes + st.tier_bytes, 0);
	assert_int_equal(rf_vm_page_state(vm, 0), RF_PAGE_BALLOONED);
	rf_engine_free(e);
}

/* ---- the active estimate ------------------------------------------------ */

/* 32 MiB written, a reader on the first @pct percent: the estimate after 40
 * periods of 50 ms (counted by the pages sampled) is within 8 points of @pct percent of the
 * resident memory (the sample is 256 pages a period: its standard error on one period is 3 points
 * at most, and the smoothing averages about 7). */
static void active_within(unsigned int pct)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 64 * MiB, 0);
	rf_vm *vm = rf_test_vm(e, "vm0", 32 * MiB, (void **)&ram);
	uint64_t n = 32 * MiB / PG;
	struct rf_swap_stats st = {.size = sizeof(st)};
	double got;
	pthread_t th;

	for (uint64_t i = 0; i < n; i++)
		fill(ram + i * PG, i, 3);
	start_readers(&th, n * pct / 100);
	assert_int_equal(rf_vm_set_swap_sampling(vm, 50, 256), 0);
	/* 40 periods: 2 s, or longer on a busy host, whose swapper thread
	 * runs late (the estimate is per period, not per second). */
	for (unsigned int ms = 0; ms < 20000; ms += 100) {
		rf_test_sleep_ms(100);
		assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
		if (st.sampled >= 40 * 256)
			break;
	}
	stop_reader(th);
	got = 100.0 * (double)st.active_bytes / (double)(32 * MiB);
	print_message("%u%% of RAM read: active %.1f MiB (%.1f%%), sampled %llu, touched %llu\n",
		      pct, (double)st.active_bytes / MiB, got, (unsigned long long)st.sampled,
		      (unsigned long long)st.sampled_touched);
	assert_true(st.sampled >= 20 * 256);
	assert_true(got > pct - 8.0 && got < pct + 8.0);
	/* No target: sampling never evicts. */
	assert_int_equal(st.swap_outs, 0);
	for (uint64_t i = 0; i < n; i++)
		if (!same(ram + i * PG, i, 3))
			fail_msg("page %llu differs", (unsigned long long)i);
	rf_engine_free(e);
}

static void test_active_estimate(void **state)
{
	(void)state;
	active_within(25);
	active_within(60);
	active_within(0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_read_only_hot_set_stays),
	    cmocka_unit_test(test_exact_bytes_with_dedup),
	    cmocka_unit_test(test_discard_while_staged),
	    cmocka_unit_test(test_active_estimate),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
