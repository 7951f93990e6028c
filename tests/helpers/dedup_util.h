/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the dedup tests and benchmarks: what the kernel says about this
 * process's memory (smaps_rollup), deterministic page contents, and waiting
 * for the dedup engine to converge.
 */
#ifndef RF_TEST_DEDUP_UTIL_H
#define RF_TEST_DEDUP_UTIL_H

#include <stdbool.h>
#include <stdint.h>

#include <ramfold/ramfold.h>

struct dedup_mem {
	uint64_t rss, pss, anon, shmem; /* bytes, from /proc/self/smaps_rollup */
};

/* Read /proc/self/smaps_rollup. 0 or -errno. */
int dedup_mem_read(struct dedup_mem *m);

/* Fill a page with content determined by @seed (never all zero). */
void dedup_fill_page(void *page, uint64_t seed);

/*
 * Wait until the engine reports converged (or @timeout_ms passes) after at
 * least @min_passes passes. Returns true if converged.
 */
bool dedup_wait_converged(rf_engine *e, unsigned int min_passes, unsigned int timeout_ms);

/* True if the kernel offers what the dedup engine needs (uffd WP on shmem). */
bool dedup_supported(const char **why);

/* Quiet logger for tests: prints warnings/errors to stderr with a prefix. */
void dedup_test_log(void *arg, enum rf_log_level level, const char *msg);

#endif
