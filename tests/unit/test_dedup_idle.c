/* SPDX-License-Identifier: MIT */
/*
 * The dedup engine's idle budget on a live guest (in-process, no KVM).
 *
 * A live guest always changes a little memory: pages rewritten with fresh
 * content, pages zeroed. That churn must not keep the engine out of its
 * idle budget: once converged, the scanner threads together use at most
 * idle_cpu_percent of one core, measured by the kernel (each rf-scan/N
 * thread's CPU time from /proc/self/task/TID/schedstat), while the merges
 * already made stay (Pss saving from smaps_rollup). A real burst of new
 * duplicates still takes the engine out of the idle budget and is merged.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
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
#define NPAGES	 16384u /* 64 MiB */
#define COPIES	 8u
#define TPL	 1536u		/* 8 x 1536 = 12288 duplicate pages */
#define CHURN0	 (COPIES * TPL) /* 2048 pages the writer keeps changing */
#define CHURN_N	 2048u
#define BATCH0	 (CHURN0 + CHURN_N) /* 2048 unique pages, later a batch of duplicates */
#define BATCH_N	 2048u
#define IDLE_PCT 2u
#define TOL_PCT	 1.0

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* CPU time (ns) of this process's threads named rf-scan/N, from the kernel. */
static uint64_t scan_threads_cpu_ns(unsigned int *nthreads)
{
	DIR *dir = opendir("/proc/self/task");
	struct dirent *de;
	uint64_t sum = 0;

	assert_non_null(dir);
	*nthreads = 0;
	while ((de = readdir(dir))) {
		char path[300], comm[32] = "";
		unsigned long long run = 0;
		FILE *fp;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
		fp = fopen(path, "r");
		if (!fp)
			continue;
		if (!fgets(comm, sizeof(comm), fp))
			comm[0] = 0;
		fclose(fp);
		if (strncmp(comm, "rf-scan/", 8) != 0)
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/schedstat", de->d_name);
		fp = fopen(path, "r");
		assert_non_null(fp);
		assert_int_equal(fscanf(fp, "%llu", &run), 1);
		fclose(fp);
		sum += run;
		(*nthreads)++;
	}
	closedir(dir);
	return sum;
}

struct churn {
	uint8_t *ram;
	_Atomic bool stop;
	uint64_t rounds;
};

/* About 0.1% of the guest's pages every 100 ms: 12 rewritten with content
 * never seen before, 4 zeroed (as a guest frees and clears pages). */
static void *churn_main(void *arg)
{
	struct churn *c = arg;
	uint64_t seed = 5000000;
	unsigned int next = 0;

	while (!atomic_load(&c->stop)) {
		for (unsigned int i = 0; i < 16; i++) {
			uint8_t *p = c->ram + (size_t)(CHURN0 + next) * PG;

			next = (next + 97) % CHURN_N;
			if (i < 12)
				dedup_fill_page(p, seed++);
			else
				memset(p, 0, PG);
		}
		c->rounds++;
		usleep(100000);
	}
	return NULL;
}

static void test_idle_budget_under_churn(void **state)
{
	const char *why = NULL;
	struct rf_engine_config ec;
	struct rf_vm_config vc;
	struct rf_dedup_config dc;
	struct rf_dedup_stats st = {.size = sizeof(st)};
	struct dedup_mem before, after;
	struct churn ch = {0};
	pthread_t t;
	rf_engine *e;
	rf_vm *vm;
	uint8_t *ram;
	void *hva;
	uint64_t cpu0, cpu1, t0, t1, ideal, saved, sharing0, deadline;
	unsigned int nth0, nth1, unconv = 0;
	bool left_idle = false;
	double pct;

	(void)state;
	if (!dedup_supported(&why)) {
		printf("skipped: %s\n", why);
		skip();
	}
	rf_engine_config_init(&ec);
	ec.log = dedup_test_log;
	ec.scan_threads = 2;
	assert_int_equal(rf_engine_new(&ec, &e), 0);
	rf_vm_config_init(&vc);
	vc.ram_bytes = (uint64_t)NPAGES * PG;
	assert_int_equal(rf_vm_new(e, "vm0", &vc, &vm), 0);
	assert_int_equal(rf_vm_map_ram(vm, 0, (uint64_t)NPAGES * PG, &hva), 0);
	ram = hva;
	for (unsigned int c = 0; c < COPIES; c++)
		for (unsigned int i = 0; i < TPL; i++)
			dedup_fill_page(ram + (size_t)(c * TPL + i) * PG, 1 + i);
	for (unsigned int i = CHURN0; i < NPAGES; i++)
		dedup_fill_page(ram + (size_t)i * PG, 1000000 + i);
	assert_int_equal(dedup_mem_read(&before), 0);

	rf_dedup_config_init(&dc);
	dc.idle_cpu_percent = IDLE_PCT;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_true(dedup_wait_converged(e, 3, 20000));

	ch.ram = ram;
	assert_int_equal(pthread_create(&t, NULL, churn_main, &ch), 0);
	sleep(2); /* the churn's first pages go through a pass or two */

	cpu0 = scan_threads_cpu_ns(&nth0);
	t0 = now_ns();
	for (unsigned int i = 0; i < 300; i++) {
		assert_int_equal(rf_dedup_counters(e, &st), 0);
		unconv += !st.converged;
		usleep(10000);
	}
	cpu1 = scan_threads_cpu_ns(&nth1);
	t1 = now_ns();
	assert_int_equal(nth0, 2);
	assert_int_equal(nth1, 2);
	pct = 100.0 * (double)(cpu1 - cpu0) / (double)(t1 - t0);
	assert_int_equal(dedup_mem_read(&after), 0);
	assert_int_equal(rf_dedup_stats(e, &st), 0);
	ideal = (uint64_t)(COPIES - 1) * TPL * PG;
	saved = before.pss > after.pss ? before.pss - after.pss : 0;
	printf("  under churn (%llu rounds): rf-scan threads %.2f%% of a core over %.1f s "
	       "(idle budget %u%%), %llu passes, not converged in %u of 300 samples; saved %llu "
	       "KiB of %llu KiB\n",
	       (unsigned long long)ch.rounds, pct, (double)(t1 - t0) / 1e9, IDLE_PCT,
	       (unsigned long long)st.scan_passes, unconv, (unsigned long long)saved >> 10,
	       (unsigned long long)ideal >> 10);
	assert_true(pct <= IDLE_PCT + TOL_PCT);
	/* The churned pages that were zeroed only add to the saving. */
	assert_true(saved >= ideal * 9 / 10);
	assert_true(st.pages_sharing >= (uint64_t)COPIES * TPL);

	/* A burst: 4 copies of 512 new pages. The engine leaves the idle
	 * budget and merges them all. */
	sharing0 = st.pages_sharing;
	for (unsigned int c = 0; c < 4; c++)
		for (unsigned int i = 0; i < BATCH_N / 4; i++)
			dedup_fill_page(ram + (size_t)(BATCH0 + c * (BATCH_N / 4) + i) * PG,
					7000000 + i);
	t0 = now_ns();
	deadline = t0 + 10000000000ull;
	for (;;) {
		assert_int_equal(rf_dedup_counters(e, &st), 0);
		if (!st.converged)
			left_idle = true;
		if (st.pages_sharing >= sharing0 + BATCH_N || now_ns() > deadline)
			break;
		usleep(5000);
	}
	printf("  burst of %u duplicate pages: pages_sharing %llu -> %llu in %.2f s, left the "
	       "idle budget %d\n",
	       BATCH_N, (unsigned long long)sharing0, (unsigned long long)st.pages_sharing,
	       (double)(now_ns() - t0) / 1e9, left_idle);
	assert_true(left_idle);
	assert_true(st.pages_sharing >= sharing0 + BATCH_N);

	atomic_store(&ch.stop, true);
	pthread_join(t, NULL);
	for (unsigned int c = 0; c < COPIES; c++)
		for (unsigned int i = 0; i < TPL; i += 97) {
			static uint8_t want[PG];

			dedup_fill_page(want, 1 + i);
			assert_memory_equal(ram + (size_t)(c * TPL + i) * PG, want, PG);
		}
	rf_dedup_stop(e);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_idle_budget_under_churn),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
