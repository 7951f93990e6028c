/* SPDX-License-Identifier: MIT */
/*
 * The balloon device's private state, shared by the files that make
 * the device (not by the generic virtio layer, which knows none of this):
 *
 *   balloon.c            the device: its virtio ops table (config space,
 *                        features, queue roles, queue processing, the stats
 *                        queue, reset), lifecycle and the host-side API
 *   balloon_pages.c      what a request does to guest pages: inflate,
 *                        deflate, free page reporting, and the return of
 *                        every ballooned page on a guest reset
 *   balloon_map.c        which 2 MiB chunks of guest RAM may hold ballooned
 *                        pages, so that a reset visits only those
 *   report_reuse.c       whether the guest takes back what it reports
 *                        free: its reports kept, not discarded, while it does
 *   balloon_transport.c  the public calls a transport makes (virtio-mmio
 *                        window, own-transport calls): lock, one call into
 *                        virtio_dev / virtio_mmio, unlock
 *   balloon_save.c       save and restore of the device state (snapshots,
 *                        migration): a versioned, checksummed image
 *
 * Everything here is used with b->lock held (the callers say otherwise where
 * they do not need it). Lock order: b->lock, then the VM's regions lock, then
 * page locks in address order (internal.h).
 */
#ifndef RF_BALLOON_INTERNAL_H
#define RF_BALLOON_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ramfold/balloon.h>

#include "internal.h"
#include "pfn_runs.h"
#include "virtio_dev.h"

/* balloon_map.c: what the device keeps per 2 MiB chunk of one region: which
 * chunks may hold ballooned pages, and (report_reuse.c) when a report last
 * discarded each. Either array may be NULL; both NULL: slot unused. */
#define BALLOON_CHUNK_PAGES 512u /* 2 MiB */
struct balloon_map_region {
	uint64_t gpa, npages; /* the region the arrays describe */
	uint64_t *bits;	      /* one bit per chunk */
	uint8_t *stamp;	      /* per chunk: 0 never, else the second % 255 + 1 */
};

/* What a queue carries; its index follows the negotiated features. */
enum queue_role {
	ROLE_NONE,
	ROLE_INFLATE,
	ROLE_DEFLATE,
	ROLE_STATS,
	ROLE_FREE_PAGE,
	ROLE_REPORTING
};

/* report_reuse.c: whether the guest takes back what it reports. */
struct report_reuse {
	uint64_t rechecked, reused; /* pages, halved past EVIDENCE_MAX */
	unsigned int kept_run;	    /* reports since the last probe, while keeping */
	bool keeping;
	uint64_t *pm; /* pagemap scratch: one chunk */
};

struct rf_balloon {
	struct rf_virtio_dev dev; /* first: the ops get it back by a cast */
	rf_vm *vm;
	rf_engine *e;
	pthread_mutex_t lock;
	struct rf_balloon_ops ops;
	/* rf_balloon_set_queue_interrupt(): called instead of ops.irq. */
	void (*queue_irq)(void *arg, int queue);
	void *queue_irq_arg;
	struct rf_balloon_config cfg;
	enum queue_role role[RF_VIRTIO_MAX_QUEUES];

	uint32_t num_pages;
	uint32_t actual;
	uint32_t poison_val;
	uint64_t actual_changed_ns;

	bool stats_held; /* the guest's stats buffer is with the device */
	uint16_t stats_head;
	uint64_t stats_since_ns;
	struct rf_balloon_stats stats;

	/* Chunks of guest RAM that may hold BALLOONED pages (balloon_map.c),
	 * and the page states resets and saves looked at (their cost, for
	 * tests). */
	struct balloon_map_region map[RF_MAX_REGIONS];
	uint64_t reset_pages_scanned, save_pages_scanned;

	struct rf_balloon_counters ctr;
	struct rf_ratelimit rl;

	/* Scratch for one request, sized by the config: off the stack. */
	struct rf_virtq_chain chain;
	uint32_t *pfns;
	struct rf_pfn_run *runs;
	struct rf_pfn_run *sub;
	struct rf_pfn_run report[RF_VIRTQ_MAX_SEGS]; /* one report's ranges */
	struct report_reuse reuse;
};

/* Count one rejected guest input in b->ctr.@field and log it (rate-limited). */
#define BAD(b, field, ...)                                                                         \
	do {                                                                                       \
		(b)->ctr.field++;                                                                  \
		rf_log_ratelimited((b)->e, &(b)->rl, RF_LOG_WARN, __VA_ARGS__);                    \
	} while (0)

/* balloon.c: which queue index carries what, for the features @f. */
void balloon_assign_roles(struct rf_balloon *b, uint64_t f);

/*
 * balloon_pages.c: one buffer of the chain in b->chain, popped from the
 * queue of that role; the caller returns it used afterwards. A buffer that
 * fails a check is counted and left alone as a whole.
 */
void balloon_inflate_buffer(struct rf_balloon *b);
void balloon_deflate_buffer(struct rf_balloon *b);
void balloon_report_buffer(struct rf_balloon *b);
/*
 * report_reuse.c. Before a report's @n ranges (@pages pages, each range
 * inside one region) are discarded: count the ones the guest took back since
 * an earlier report discarded them; true means keep this report (discard
 * nothing). After they were discarded, report_reuse_stamp() notes when.
 * b->lock held.
 */
bool report_reuse_judge(struct rf_balloon *b, const struct rf_pfn_run *runs, size_t n,
			uint64_t pages);
void report_reuse_stamp(struct rf_balloon *b, const struct rf_pfn_run *runs, size_t n);
void report_reuse_free(struct rf_balloon *b);
/* After a guest reset: every BALLOONED page of the VM becomes PRIVATE. */
void balloon_unballoon_all(struct rf_balloon *b);

/*
 * balloon_map.c. Mark the chunks of the @n runs (each inside one region)
 * as holding ballooned pages; call @fn on every marked chunk, as the page
 * range [first, end) of its region, regions in gpa order and chunks
 * ascending; forget every mark (after a reset);
 * free the bitmaps. The __ calls need the regions lock.
 */
void __balloon_map_mark(struct rf_balloon *b, const struct rf_pfn_run *runs, size_t n);
/* The slot of region @r (NULL if none); if @make, one is made (its arrays
 * NULL) when it has none. Regions lock held. */
struct balloon_map_region *__balloon_map_slot(struct rf_balloon *b, const struct rf_region *r,
					      bool make);
typedef void balloon_chunk_fn(struct rf_balloon *b, struct rf_region *r, uint64_t first,
			      uint64_t end, void *arg);
void __balloon_map_walk(struct rf_balloon *b, balloon_chunk_fn *fn, void *arg);
void balloon_map_clear(struct rf_balloon *b);
void balloon_map_free(struct rf_balloon *b);

#endif
