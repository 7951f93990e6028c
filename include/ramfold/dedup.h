/* SPDX-License-Identifier: MIT */
/*
 * Page-hash deduplication (transparent page sharing) of guest RAM.
 *
 * One dedup engine per rf_engine. The embedder starts it, attaches the VMs it
 * wants scanned, and reads the stats; the engine's scanner threads find pages
 * of identical content and keep one copy of each (a "store page"), discard
 * all-zero pages, and notice when a guest write breaks the sharing again.
 * Alternatively the same calls drive the kernel's own KSM (RF_DEDUP_KSM), so
 * the two can be compared on the same guests.
 *
 * No lost writes: a page is write-protected through userfaultfd while it is
 * compared and remapped; a vCPU or thread writing it meanwhile waits in the
 * kernel and then writes to whatever the page has become. A hash match alone
 * never merges: the bytes are compared first.
 *
 * Sharing domains: by default a page is merged only with pages of its own VM
 * (plus zero pages), because sharing across tenants leaks their memory
 * content through copy-on-write timing. In RF_DEDUP_DOMAINS mode, VMs given
 * the same rf_vm_config.domain share pages with each other.
 *
 * Who may call what concurrently:
 *
 *   call                          embedder   any thread
 *   rf_dedup_start / _stop        yes (alone on the engine; stop before rf_engine_free)
 *   rf_dedup_add_vm               yes (alone on that VM, before its vCPUs run or later)
 *   rf_dedup_stats / _vm_stats               yes
 *   rf_dedup_scan_now                        yes
 *
 * Every call returns 0 or a negative errno and logs the reason once.
 */
#ifndef RAMFOLD_DEDUP_H
#define RAMFOLD_DEDUP_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "vm.h"

#ifdef __cplusplus
extern "C" {
#endif

enum rf_dedup_mode {
	RF_DEDUP_OFF = 0,  /* nothing scanned */
	RF_DEDUP_ZERO,	   /* only all-zero pages are discarded */
	RF_DEDUP_INTRA_VM, /* zero pages, and merges within each VM (default) */
	RF_DEDUP_DOMAINS,  /* as INTRA_VM, and across VMs of the same domain */
	RF_DEDUP_KSM,	   /* the kernel's KSM does the work (MADV_MERGEABLE) */
};

/* Short name of a mode ("off", "zero", "intra", "domains", "ksm"). */
const char *rf_dedup_mode_name(enum rf_dedup_mode m);
/* Parse a mode name as printed by rf_dedup_mode_name(): 0 or -EINVAL. */
int rf_dedup_mode_parse(const char *name, enum rf_dedup_mode *out);

/*
 * What the scanner does with the 4 KiB pages of a transparent huge page
 * (RF_VM_THP, or adopted RAM that the kernel backs with THP). Merging or
 * discarding one of them splits the huge page: the guest loses its 2 MiB
 * TLB entries for all 512. As ESX does, a host with memory to spare keeps
 * huge pages whole, and splits only cold ones under pressure:
 *
 *   RF_DEDUP_HUGE_SPLIT       a huge page's pages are merged like any other
 *                             (the kernel's KSM does the same). The default:
 *                             what an engine does with no policy telling it
 *                             the host's memory state.
 *   RF_DEDUP_HUGE_KEEP        huge pages stay whole; their pages are still
 *                             hashed (so that they merge at once when the
 *                             mode changes), never merged nor offered as a
 *                             twin. An all-zero huge page is discarded whole.
 *   RF_DEDUP_HUGE_SPLIT_COLD  a huge page none of whose pages changed since
 *                             the previous pass (cold, as the scanner's hashes
 *                             tell) is merged page by page, and so split;
 *                             a huge page with a page written since is kept.
 *
 * The policy runner (policy.h) sets KEEP while the host is in the high
 * state and SPLIT_COLD in the others, at every tick. Going back to KEEP
 * splits nothing more; pages already merged stay merged.
 */
enum rf_dedup_huge {
	RF_DEDUP_HUGE_SPLIT = 0,
	RF_DEDUP_HUGE_KEEP,
	RF_DEDUP_HUGE_SPLIT_COLD,
};

/* "split", "keep", "split-cold". */
const char *rf_dedup_huge_name(enum rf_dedup_huge m);

/*
 * Set how huge pages are treated from the next 2 MiB the scanner looks at
 * (the change is logged once). Any thread. -ENOENT if not started, -EINVAL
 * for an unknown mode, -EOPNOTSUPP with the KSM backend or without
 * PAGEMAP_SCAN (Linux 6.7+; logged once), which is how a page is known to
 * be part of a huge page: huge pages are then merged as RF_DEDUP_HUGE_SPLIT.
 */
int rf_dedup_set_huge(rf_engine *e, enum rf_dedup_huge mode);

struct rf_dedup_config {
	/* sizeof(struct rf_dedup_config), set by rf_dedup_config_init: the library reads only what
	 * this size covers (docs/embedding.md, "ABI and versions"). */
	size_t size;
	enum rf_dedup_mode mode;
	/* Scanner threads; 0 = rf_engine_config.scan_threads. */
	unsigned int scan_threads;
	/* Budget while not converged: at most this many pages hashed per
	 * second over all threads (0 = no page limit) and at most this share
	 * of one core per thread, in percent (0 or 100 = no limit). */
	uint64_t pages_per_sec;
	unsigned int cpu_percent;
	/* Ignore both limits until a pass finds nothing new (docs/dedup.md,
	 * "Budget": next to nothing compared with the pages it hashed). */
	bool fastest;
	/* Share of one core, in percent, the engine's scanner threads may use
	 * together once converged, measured with their CPU clocks over all
	 * they do. It stays converged through a live guest's small churn and
	 * leaves this budget for a burst of new work. 0 = default (2). */
	unsigned int idle_cpu_percent;
	/* Most VMAs (mappings) the process may have before merging stops with
	 * a logged reason and a stat; 0 = vm.max_map_count minus a reserve of
	 * 10%. Every run of merged pages costs up to two mappings. */
	uint64_t vma_budget;
	/* A page whose merge guest writes broke k times (counted up to 15) is
	 * merged again on one pass in 2^min(k, backoff_max): pages rewritten
	 * with the same bytes (a stack) are not merged and broken forever.
	 * 0 = no back-off; rf_dedup_config_init sets 12. At most 30 (above
	 * 15, the same as 15). */
	unsigned int backoff_max;
	/* Allow merges between pages of different NUMA nodes (off by default). */
	bool cross_node;
	/* RF_DEDUP_KSM only: pages_to_scan and sleep_millisecs written to the
	 * kernel when ksm_pages_to_scan is not 0 (else the kernel's values
	 * stay). Restored, and run=0, on stop. */
	unsigned int ksm_pages_to_scan;
	unsigned int ksm_sleep_ms;
	/* RF_DEDUP_DOMAINS: the socket of the host broker (ramfoldd,
	 * docs/broker.md) through which VMs of the same domain share pages
	 * with other processes. NULL = the RAMFOLD_BROKER environment
	 * variable, else /run/ramfold/broker.sock if it exists, else sharing
	 * stays within this process. Copied at start. (0.4) */
	const char *broker;
	/* How huge pages are treated from the first pass (rf_dedup_set_huge
	 * changes it later): an embedder that runs the policy starts in
	 * RF_DEDUP_HUGE_KEEP, so that no pass before its first tick splits a
	 * huge page. Default RF_DEDUP_HUGE_SPLIT. (0.4) */
	enum rf_dedup_huge huge;
	/* Share of the VMA budget, above the mappings the process has at start,
	 * that merges of single pages may use, 1..100; runs may use all of it.
	 * Single pages cost two mappings for 4 KiB, a run two for up to 2 MiB:
	 * below 100, scattered duplicates leave room for runs that come later
	 * (guests sharing an OS image laid out alike). Default 100, as 0.3;
	 * 0 = default. (0.4) */
	unsigned int vma_single_pct;
};

/* Defaults: RF_DEDUP_INTRA_VM, engine's threads, fastest until converged. */
void rf_dedup_config_init(struct rf_dedup_config *cfg);

/*
 * Start the dedup engine of @e. Errors: -EINVAL (bad config), -EALREADY
 * (already started), -ENODEV (RF_DEDUP_KSM without kernel KSM; other modes
 * without userfaultfd write-protect), -ENOMEM. Pairs with rf_dedup_stop();
 * rf_engine_free() calls it if the embedder has not.
 */
int rf_dedup_start(rf_engine *e, const struct rf_dedup_config *cfg);

/*
 * Stop scanning, join the threads, restore every merged page of every
 * attached VM to a private page (content kept) and free the store. With the
 * KSM backend: unmerge (run=2), restore the kernel's settings and run=0.
 * Attached VMs stay usable. NULL engine or not started: no-op.
 */
void rf_dedup_stop(rf_engine *e);

/*
 * Let the engine scan @vm (all of its regions, present and future). Call it
 * from the thread that owns @vm. Errors: -ENOENT (engine not started),
 * -EALREADY, -ENODEV (userfaultfd write-protect missing), -EPERM (no
 * kernel-mode userfaultfd or no /proc/self/pagemap for this process, the
 * message names which), -ENOMEM.
 */
int rf_dedup_add_vm(rf_vm *vm);

/* Wake the scanner for a pass now (after loading content, say). */
int rf_dedup_scan_now(rf_engine *e);

/*
 * Set the scan rate at run time (what an overcommit policy turns): the
 * scanner hashes at most @pages_per_sec pages per second over all threads,
 * converged or not, instead of its configured budgets; 0 goes back to the
 * configuration. Any thread. -ENOENT if not started, -EOPNOTSUPP with the
 * KSM backend (set ksm_pages_to_scan at start instead).
 */
int rf_dedup_set_rate(rf_engine *e, uint64_t pages_per_sec);

struct rf_dedup_vm_stats {
	/* Set by the caller to sizeof(struct rf_dedup_vm_stats) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	uint64_t pages_scanned;	   /* pages hashed, all passes */
	uint64_t pages_merged;	   /* merges done, all passes */
	uint64_t pages_sharing;	   /* MERGED now (page-state table) */
	uint64_t pages_zero;	   /* ZERO now (page-state table) */
	uint64_t pages_unmerged;   /* merges broken by guest writes */
	uint64_t volatile_skipped; /* changed since the previous pass: not merged */
	uint64_t merge_races;	   /* content changed between hash and compare */
	uint64_t saved_bytes;	   /* measured: see rf_dedup_stats */
};

struct rf_dedup_stats {
	/* Set by the caller to sizeof(struct rf_dedup_stats) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	enum rf_dedup_mode mode;
	uint64_t pages_scanned;
	uint64_t pages_merged;
	uint64_t pages_sharing; /* guest pages mapping a store page (or KSM pages_sharing) */
	uint64_t pages_zero;
	uint64_t pages_unmerged;
	uint64_t volatile_skipped;
	uint64_t merge_races;
	uint64_t hash_collisions;  /* equal hash, different bytes */
	uint64_t store_pages;	   /* canonical pages held (or KSM pages_shared) */
	uint64_t scan_passes;	   /* complete passes over all VMs (or KSM full_scans) */
	uint64_t vma_budget_stops; /* merges refused because of the VMA budget */
	/* Mappings of the attached VMs' guest RAM: the lines of
	 * /proc/self/maps that overlap it, counted by rf_dedup_stats
	 * (rf_dedup_counters repeats the last count). */
	uint64_t vmas;
	uint64_t cpu_ns; /* CPU time of the scanner and fault threads (or ksmd) */
	bool converged;	 /* on the idle budget: passes find next to nothing new */
	/*
	 * Measured from the kernel: guest pages mapped from the store
	 * (pagemap) minus the store's resident pages (fstat of its memfd),
	 * plus ZERO pages that are not resident (pagemap). With the KSM
	 * backend: ksm_process_profit of /proc/self/ksm_stat (merged pages
	 * minus KSM's metadata), and pages_sharing is ksm_merging_pages.
	 */
	uint64_t saved_bytes;
	/* Across processes (0.4): connections to the broker that are up, and
	 * our guest pages mapping pages of the broker's stores. */
	uint32_t broker_domains;
	uint64_t broker_pages_sharing;
	/* Huge pages (rf_dedup_set_huge, 0.4): the mode now; 4 KiB pages
	 * left unmerged because their huge page was kept whole (each pass
	 * counts them again); all-zero huge pages discarded whole; huge pages
	 * found cold under pressure and opened to merges (the kernel splits
	 * them when the first subpage is merged). */
	enum rf_dedup_huge huge_mode;
	uint64_t huge_kept_pages;
	uint64_t huge_zero_freed;
	uint64_t huge_opened;
};

/* Engine-wide stats. Reads pagemap: meant for ~1 Hz. -ENOENT if not started. */
int rf_dedup_stats(rf_engine *e, struct rf_dedup_stats *st);
/* The same without the measured part (saved_bytes is 0): counters only,
 * cheap enough to poll often. */
int rf_dedup_counters(rf_engine *e, struct rf_dedup_stats *st);
/* Stats of one VM. -ENOENT if @vm is not attached. */
int rf_dedup_vm_stats(rf_vm *vm, struct rf_dedup_vm_stats *st);

#ifdef __cplusplus
}
#endif
#endif
