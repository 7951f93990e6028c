/* SPDX-License-Identifier: MIT */
/*
 * Racing: threads read and write guest pages while the swapper pages them
 * out (to hold a resident target) and a second thread forces swap-outs of
 * random ranges. After at least 10^6 operations every page must hold the
 * last value written to it: no write lost, no stale page, no zero page
 * where data was.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "rf_test.h"
#include "swap_pager.h"

#define MiB	 (1ull << 20)
#define PG	 RF_PAGE_SIZE
#define NPAGES	 4096 /* 16 MiB */
#define NTHREADS 4
#define MIN_OPS	 1000000 /* in total */
#define MIN_INS	 100000	 /* swap-ins: the operations must really race the pager */
/* Copy mode (no UFFDIO_MOVE) discards each run of victims with madvise,
 * which waits for the fault thread to read the event: about 10x fewer
 * operations per second here, so the same 60 s carry fewer of them. */
#define MIN_OPS_COPY 250000

static uint8_t *ram;
static uint64_t last[NPAGES]; /* last value written; page i is written by thread i % NTHREADS */
static _Atomic int failures;
static _Atomic bool stop_forcing, stop_workers;
static _Atomic uint64_t ops;

/* A page holds its value at three offsets, and its own index. */
static void write_page(uint64_t i, uint64_t val)
{
	volatile uint64_t *w = (volatile uint64_t *)(ram + i * PG);

	w[0] = val;
	w[1] = i;
	w[256] = val;
	w[511] = ~val;
}

static bool page_ok(uint64_t i, uint64_t val)
{
	volatile uint64_t *w = (volatile uint64_t *)(ram + i * PG);

	if (val == 0) /* never written: must read as zeros */
		return w[0] == 0 && w[1] == 0 && w[256] == 0 && w[511] == 0;
	return w[0] == val && w[1] == i && w[256] == val && w[511] == ~val;
}

static void *worker(void *arg)
{
	unsigned int t = (unsigned int)(uintptr_t)arg, seed = 1234 + t;

	while (!atomic_load_explicit(&stop_workers, memory_order_relaxed)) {
		uint64_t i = (uint64_t)(rand_r(&seed) % (NPAGES / NTHREADS)) * NTHREADS + t;

		if (rand_r(&seed) % 2) {
			write_page(i, ++last[i]);
		} else if (!page_ok(i, last[i])) {
			if (atomic_fetch_add(&failures, 1) < 5)
				fprintf(stderr, "page %llu: expected %llu, found %llu\n",
					(unsigned long long)i, (unsigned long long)last[i],
					(unsigned long long)*(volatile uint64_t *)(ram + i * PG));
		}
		atomic_fetch_add_explicit(&ops, 1, memory_order_relaxed);
	}
	return NULL;
}

static void *forcer(void *arg)
{
	struct rf_pager *p = arg;
	unsigned int seed = 99;

	while (!atomic_load(&stop_forcing)) {
		uint64_t first = (uint64_t)(rand_r(&seed) % (NPAGES - 64)), done;

		rf_swap_pager_swap_out(p, first * PG, 64, &done);
		usleep(200);
	}
	return NULL;
}

static void test_race_no_lost_writes(void **state)
{
	struct rf_test_log log;
	/* A small tier: both tiers see traffic. */
	rf_engine *e = rf_test_swap_engine(&log, false, 0, 2 * MiB);
	struct rf_swap_stats st = {.size = sizeof(st)};
	struct rf_pager *p;
	pthread_t th[NTHREADS], fo;
	uint64_t min_ops;
	rf_vm *vm;

	(void)state;
	vm = rf_test_vm(e, "vm0", NPAGES * PG, (void **)&ram);
	assert_int_equal(rf_vm_set_swap_target(vm, 10 * MiB), 0);
	assert_int_equal(rf_swap_pager_get(vm, &p), 0);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	min_ops = st.copy_mode ? MIN_OPS_COPY : MIN_OPS;
	assert_int_equal(pthread_create(&fo, NULL, forcer, p), 0);
	for (uintptr_t t = 0; t < NTHREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, worker, (void *)t), 0);
	/* Run until both bars are passed (60 s at most: the assertions below
	 * then say which one was not). */
	for (int ms = 0; ms < 60000; ms += 10) {
		assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
		if (atomic_load(&ops) >= min_ops && st.swap_ins >= MIN_INS)
			break;
		usleep(10000);
	}
	atomic_store(&stop_workers, true);
	for (int t = 0; t < NTHREADS; t++)
		pthread_join(th[t], NULL);
	atomic_store(&stop_forcing, true);
	pthread_join(fo, NULL);

	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	print_message(
	    "%s mode, %llu ops: swap-outs %llu (zero %llu), swap-ins %llu, zero fills %llu, "
	    "prefetch hits %llu, fault p50 %llu ns p99 %llu ns\n",
	    st.copy_mode ? "copy" : "move", (unsigned long long)atomic_load(&ops),
	    (unsigned long long)st.swap_outs, (unsigned long long)st.zero_outs,
	    (unsigned long long)st.swap_ins, (unsigned long long)st.zero_fills,
	    (unsigned long long)st.prefetch_hits, (unsigned long long)st.fault_p50_ns,
	    (unsigned long long)st.fault_p99_ns);
	if (log.count)
		print_message("log (%u messages), last: %s\n", log.count, log.last);
	assert_int_equal(atomic_load(&failures), 0);
	assert_true(atomic_load(&ops) >= min_ops);
	assert_true(st.swap_ins >= MIN_INS);
	assert_false(st.stopped);
	/* Stop swapping, then check every page once more. */
	assert_int_equal(rf_vm_set_swap_target(vm, RF_SWAP_NO_TARGET), 0);
	for (uint64_t i = 0; i < NPAGES; i++)
		if (!page_ok(i, last[i]))
			fail_msg("page %llu lost its last write %llu", (unsigned long long)i,
				 (unsigned long long)last[i]);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_race_no_lost_writes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
