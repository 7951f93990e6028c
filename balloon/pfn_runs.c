/* SPDX-License-Identifier: MIT */
/* PFN lists to runs of consecutive pages: see pfn_runs.h. */
#include <stdlib.h>

#include "pfn_runs.h"

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

	return (x > y) - (x < y);
}

size_t rf_pfn_runs(uint32_t *pfns, size_t n, struct rf_pfn_run *runs, size_t *dups)
{
	size_t nruns = 0, d = 0;

	/* Sorting costs a few microseconds for 256 PFNs and turns a driver's
	 * arbitrary order into the fewest runs (and address-ordered page
	 * locking, the lock order page_ops.c relies on). */
	qsort(pfns, n, sizeof(*pfns), cmp_u32);
	for (size_t i = 0; i < n; i++) {
		uint64_t p = pfns[i];

		if (i > 0 && pfns[i] == pfns[i - 1]) {
			d++;
			continue;
		}
		if (nruns && runs[nruns - 1].pfn + runs[nruns - 1].npages == p) {
			runs[nruns - 1].npages++;
			continue;
		}
		runs[nruns].pfn = p;
		runs[nruns].npages = 1;
		nruns++;
	}
	if (dups)
		*dups = d;
	return nruns;
}

static int cmp_run(const void *a, const void *b)
{
	uint64_t x = ((const struct rf_pfn_run *)a)->pfn, y = ((const struct rf_pfn_run *)b)->pfn;

	return (x > y) - (x < y);
}

size_t rf_pfn_runs_union(struct rf_pfn_run *runs, size_t n, uint64_t *overlap)
{
	size_t out = 0;
	uint64_t o = 0;

	qsort(runs, n, sizeof(*runs), cmp_run);
	for (size_t i = 0; i < n; i++) {
		struct rf_pfn_run *last = out ? &runs[out - 1] : NULL;
		uint64_t end = runs[i].pfn + runs[i].npages;

		if (last && runs[i].pfn < last->pfn + last->npages) {
			uint64_t last_end = last->pfn + last->npages;

			o += (end < last_end ? end : last_end) - runs[i].pfn;
			if (end > last_end)
				last->npages = end - last->pfn;
			continue;
		}
		runs[out++] = runs[i];
	}
	if (overlap)
		*overlap = o;
	return out;
}
