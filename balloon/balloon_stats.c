/* SPDX-License-Identifier: MIT */
/* Parsing a balloon stats buffer: see balloon_stats.h. */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "balloon_stats.h"
#include "internal.h"

/* The names QEMU's guest-stats property uses (and libvirt reads). */
static const char *const stat_names[RF_BALLOON_NR_STATS] = {
    [RF_BALLOON_S_SWAP_IN] = "stat-swap-in",
    [RF_BALLOON_S_SWAP_OUT] = "stat-swap-out",
    [RF_BALLOON_S_MAJFLT] = "stat-major-faults",
    [RF_BALLOON_S_MINFLT] = "stat-minor-faults",
    [RF_BALLOON_S_MEMFREE] = "stat-free-memory",
    [RF_BALLOON_S_MEMTOT] = "stat-total-memory",
    [RF_BALLOON_S_AVAIL] = "stat-available-memory",
    [RF_BALLOON_S_CACHES] = "stat-disk-caches",
    [RF_BALLOON_S_HTLB_PGALLOC] = "stat-htlb-pgalloc",
    [RF_BALLOON_S_HTLB_PGFAIL] = "stat-htlb-pgfail",
    [RF_BALLOON_S_OOM_KILL] = "stat-oom-kills",
    [RF_BALLOON_S_ALLOC_STALL] = "stat-alloc-stalls",
    [RF_BALLOON_S_ASYNC_SCAN] = "stat-async-scans",
    [RF_BALLOON_S_DIRECT_SCAN] = "stat-direct-scans",
    [RF_BALLOON_S_ASYNC_RECLAIM] = "stat-async-reclaims",
    [RF_BALLOON_S_DIRECT_RECLAIM] = "stat-direct-reclaims",
};

RF_EXPORT const char *rf_balloon_stat_name(unsigned int tag)
{
	return tag < RF_BALLOON_NR_STATS ? stat_names[tag] : NULL;
}

int rf_balloon_stats_parse(const uint8_t *buf, size_t len, struct rf_stats_parse *out)
{
	uint32_t seen = 0;

	memset(out, 0, sizeof(*out));
	for (unsigned int i = 0; i < RF_BALLOON_NR_STATS; i++)
		out->value[i] = RF_BALLOON_STAT_UNSET;
	if (len == 0 || len % RF_BALLOON_STAT_ENTRY || len > RF_BALLOON_STATS_MAX_BYTES)
		return -EINVAL;
	for (size_t off = 0; off < len; off += RF_BALLOON_STAT_ENTRY) {
		uint16_t tag;
		uint64_t val;

		memcpy(&tag, buf + off, 2);
		memcpy(&val, buf + off + 2, 8);
		tag = le16toh(tag);
		val = le64toh(val);
		if (tag >= RF_BALLOON_NR_STATS) {
			if (!out->unknown++)
				out->first_bad_tag = tag;
			continue;
		}
		if (seen & (1u << tag)) {
			if (!out->duplicate++ && !out->unknown)
				out->first_bad_tag = tag;
			continue;
		}
		seen |= 1u << tag;
		out->value[tag] = val;
	}
	return 0;
}
