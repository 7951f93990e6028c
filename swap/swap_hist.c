/* SPDX-License-Identifier: MIT */
/* Log-linear latency histogram: see swap_hist.h. */
#include "swap_hist.h"

/* Bucket of @v: values below RF_HIST_SUB have their own bucket; above, the
 * power of two picks a group of RF_HIST_SUB buckets and the next three bits
 * pick one inside it. */
static unsigned int bucket_of(uint64_t v)
{
	unsigned int msb, shift;

	if (v < RF_HIST_SUB)
		return (unsigned int)v;
	msb = 63u - (unsigned int)__builtin_clzll(v); /* >= 3 */
	shift = msb - 3;
	return (msb - 2) * RF_HIST_SUB + (unsigned int)((v >> shift) & (RF_HIST_SUB - 1));
}

/* Largest value that falls in bucket @b. */
static uint64_t bucket_upper(unsigned int b)
{
	unsigned int group = b / RF_HIST_SUB, sub = b % RF_HIST_SUB, msb, shift;

	if (group == 0)
		return b;
	msb = group + 2;
	shift = msb - 3;
	if (msb >= 63 && sub == RF_HIST_SUB - 1)
		return UINT64_MAX;
	return (((uint64_t)(RF_HIST_SUB + sub + 1)) << shift) - 1;
}

void rf_hist_record(struct rf_hist *h, uint64_t v)
{
	uint64_t m = atomic_load_explicit(&h->max, memory_order_relaxed);

	atomic_fetch_add_explicit(&h->count[bucket_of(v)], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&h->total, 1, memory_order_relaxed);
	while (v > m && !atomic_compare_exchange_weak_explicit(&h->max, &m, v, memory_order_relaxed,
							       memory_order_relaxed))
		;
}

uint64_t rf_hist_percentile(const struct rf_hist *h, double pct)
{
	uint64_t total = 0, seen = 0, want, max;

	for (unsigned int b = 0; b < RF_HIST_BUCKETS; b++)
		total += atomic_load_explicit(&h->count[b], memory_order_relaxed);
	if (total == 0)
		return 0;
	max = atomic_load_explicit(&h->max, memory_order_relaxed);
	want = (uint64_t)((double)total * pct / 100.0 + 0.5);
	if (want == 0)
		want = 1;
	for (unsigned int b = 0; b < RF_HIST_BUCKETS; b++) {
		seen += atomic_load_explicit(&h->count[b], memory_order_relaxed);
		if (seen >= want) {
			uint64_t u = bucket_upper(b);

			return u < max ? u : max;
		}
	}
	return max;
}

void rf_hist_reset(struct rf_hist *h)
{
	for (unsigned int b = 0; b < RF_HIST_BUCKETS; b++)
		atomic_store_explicit(&h->count[b], 0, memory_order_relaxed);
	atomic_store_explicit(&h->total, 0, memory_order_relaxed);
	atomic_store_explicit(&h->max, 0, memory_order_relaxed);
}
