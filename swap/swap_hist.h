/* SPDX-License-Identifier: MIT */
/*
 * A fault-latency histogram: log-linear buckets (8 per power of two, so any
 * percentile is within 12.5% of the truth), lock-free to record from the
 * VM's uffd fault thread (swap_in.c) while stats readers take snapshots.
 * Pure, no I/O.
 */
#ifndef RF_SWAP_HIST_H
#define RF_SWAP_HIST_H

#include <stdatomic.h>
#include <stdint.h>

#define RF_HIST_SUB	8
#define RF_HIST_BUCKETS (64 * RF_HIST_SUB)

struct rf_hist {
	_Atomic uint64_t count[RF_HIST_BUCKETS];
	_Atomic uint64_t total;
	_Atomic uint64_t max;
};

void rf_hist_record(struct rf_hist *h, uint64_t v);

/* Value at percentile @pct (0..100]: the upper bound of the bucket holding
 * it (capped at the maximum seen); 0 if nothing was recorded. */
uint64_t rf_hist_percentile(const struct rf_hist *h, double pct);

void rf_hist_reset(struct rf_hist *h);

#endif
