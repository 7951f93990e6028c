/* SPDX-License-Identifier: MIT */
/*
 * From a guest's list of page frame numbers to runs of consecutive pages,
 * and from a guest's possibly overlapping page ranges to disjoint ones: pure
 * logic (no guest memory, no locks), unit-tested on its own. The device
 * then discards each run with one call, so a buffer of 256 adjacent PFNs
 * costs one madvise instead of 256, and a page reported twice in one
 * buffer is discarded and counted once.
 */
#ifndef RF_BALLOON_PFN_RUNS_H
#define RF_BALLOON_PFN_RUNS_H

#include <stddef.h>
#include <stdint.h>

struct rf_pfn_run {
	uint64_t pfn;	 /* first page frame (64-bit: no sign extension of 2^31+) */
	uint64_t npages; /* >= 1 */
};

/*
 * Sort @pfns in place, drop repeated PFNs (their number goes to *@dups), and
 * write the remaining ones as maximal runs of consecutive PFNs into @runs,
 * which has room for @n entries. Returns the number of runs.
 */
size_t rf_pfn_runs(uint32_t *pfns, size_t n, struct rf_pfn_run *runs, size_t *dups);

/*
 * Sort the @n runs in @runs by first page and merge those that overlap
 * (share at least one page) into one, in place, so that every page is in
 * one run at most; the pages that were in more than one run go to
 * *@overlap (may be NULL). Runs that only touch stay apart: each one keeps
 * lying inside the region it came from. Returns the number of runs left.
 */
size_t rf_pfn_runs_union(struct rf_pfn_run *runs, size_t n, uint64_t *overlap);

#endif
