/* SPDX-License-Identifier: MIT */
/*
 * Parsing a stats buffer: a packed array of {le16 tag; le64 value} entries
 * (10 bytes each). Pure: the device copies the guest's buffer out first.
 */
#ifndef RF_BALLOON_STATS_H
#define RF_BALLOON_STATS_H

#include <stddef.h>
#include <stdint.h>

#include <ramfold/balloon.h>

#define RF_BALLOON_STAT_ENTRY 10u
/* Bound on one stats buffer: far more than the 16 tags defined, so a newer
 * driver's extra tags fit, and small enough to copy on the stack. */
#define RF_BALLOON_STATS_MAX_BYTES 1000u

struct rf_stats_parse {
	uint64_t value[RF_BALLOON_NR_STATS]; /* RF_BALLOON_STAT_UNSET if absent */
	unsigned int duplicate;		     /* repeated known tags (first one kept) */
	unsigned int unknown;		     /* tags >= RF_BALLOON_NR_STATS, ignored */
	unsigned int first_bad_tag;
};

/* Parse @len bytes at @buf. -EINVAL (nothing parsed) if @len is 0, not a
 * whole number of entries, or above RF_BALLOON_STATS_MAX_BYTES. */
int rf_balloon_stats_parse(const uint8_t *buf, size_t len, struct rf_stats_parse *out);

#endif
