/* SPDX-License-Identifier: MIT */
/*
 * Helpers for the dedup tests and benchmarks: what the kernel says about this
 * process's memory (smaps_rollup), deterministic page contents, waiting for
 * the dedup engine to converge, and the ideal saving of osimage guests.
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

/*
 * After convergence, wait (kicking passes, up to @timeout_ms) until the
 * engine's pages_sharing reaches @want. Converged allows a few pages of
 * work a pass: with two scanner threads a pair that lost a race merges a
 * pass after the flag. Returns the last pages_sharing read.
 */
uint64_t dedup_wait_sharing(rf_engine *e, uint64_t want, unsigned int timeout_ms);

/*
 * What the demo VMM's osimage preload puts in a guest: the files of @dir
 * matching @glob (regular files, by name), each from a page boundary, up to
 * @limit bytes. From that the ideal saving of N guests on the same files is
 * (N * total - distinct) pages: every zero page, and every copy but one of
 * each distinct non-zero page.
 */
struct osimage_pages {
	uint64_t total;	   /* pages filled */
	uint64_t zero;	   /* of which all zero */
	uint64_t distinct; /* distinct contents among the non-zero ones */
};

/* Read the files as the preload does. 0 or -errno. */
int dedup_osimage_pages(const char *dir, const char *glob, uint64_t limit,
			struct osimage_pages *out);

/* True if the kernel offers what the dedup engine needs (uffd WP on shmem). */
bool dedup_supported(const char **why);

/* Quiet logger for tests: prints warnings/errors to stderr with a prefix. */
void dedup_test_log(void *arg, enum rf_log_level level, const char *msg);

#endif
