/* SPDX-License-Identifier: MIT */
/*
 * The swap pager's own view of itself: struct rf_pager and the functions its
 * files share. Private to swap/; the rest of the library sees the pager only
 * through swap_pager.h. swap_pager.c explains the pager as a whole.
 *
 * Who runs what, and on which thread:
 *
 *   file             functions                      thread
 *   swap_pager.c     rf_swap_pager_get (pager_new)  the caller of the first
 *                                                   swap call for the VM
 *                    vm_free_hook, region_unmap,    the caller of rf_vm_free,
 *                    page_release (core hooks)      rf_vm_unmap_ram,
 *                                                   rf_vm_discard_as
 *   swap_in.c        pager_on_missing, _on_remove   the VM's uffd fault thread
 *                                                   (src/uffd.c), which never
 *                                                   blocks on a page lock
 *   swap_cache.c     pager_cache_take, _prefetch    the uffd fault thread
 *                    pager_cache_forget             whoever drops a page's
 *                                                   store handle (any)
 *   swap_register.c  pager_ensure_registered        swap-out
 *                    pager_register_all             the swapper, the setter
 *                                                   of a target
 *   swap_out.c       pager_swap_out_walk,           the swapper, or a caller
 *                    rf_swap_pager_swap_out         of rf_swap_pager_swap_out
 *                                                   (tests, benchmarks); one
 *                                                   at a time (out_lock)
 *   swapper.c        pager_swapper_main             the pager's own swapper
 *                                                   thread (the target keeper)
 *   swap_sample.c    pager_sample_tick, settling    the swapper thread
 *                    pager_sample_touched           the uffd fault thread
 *                    pager_sample_dropped           whoever drops the page
 *                    rf_swap_pager_set_sampling     the caller of
 *                                                   rf_vm_set_swap_sampling
 *                    rf_swap_pager_set_target,      the caller of
 *                    _set_cap                       rf_vm_set_swap_target/cap
 *
 * Lock order: regions_lock (read) > out_lock > page lock bits (address
 * order, try-locked) > lock > the store's mutex; cache_lock is a leaf.
 */
#ifndef RF_SWAP_PAGER_INTERNAL_H
#define RF_SWAP_PAGER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/userfaultfd.h>

#include "swap_hist.h"
#include "swap_pager.h"
#include "uffd.h"

#define PAGER_CACHE_MAX	   64	/* swap cache entries (prefetched pages) */
#define PAGER_FILL_MAX	   256	/* pages a first write may fill ahead: 1 MiB */
#define PAGER_WINDOW	   512	/* pagemap entries read at once */
#define PAGER_SAMPLE_SLOTS 2048 /* pages staged at once by sampling: 8 MiB */

/*
 * A staged page's store handle: bit 30 set, bit 31 clear. File slots stay
 * below 2^30 (rf_engine_set_swap refuses larger files) and tier entries
 * have bit 31, so no store handle looks like one.
 */
#define PAGER_H_SAMPLE (1u << 30)

static inline bool handle_is_sample(uint32_t h)
{
	return h != UINT32_MAX && (h & ((1u << 31) | PAGER_H_SAMPLE)) == PAGER_H_SAMPLE;
}

/* Why a page is staged (swap_sample.c). */
enum sample_kind {
	SAMPLE_NONE = 0, /* swap-out proper (swap_out.c): to the store */
	SAMPLE_EST,	 /* the period's random sample: the active estimate */
	SAMPLE_PROBE,	 /* the hand's cold candidate: evicted if not touched */
};

struct sample_slot {
	struct rf_region *r;
	uint64_t idx;
	uint64_t t_ns; /* when it was staged */
	uint8_t kind;  /* enum sample_kind; SAMPLE_NONE: free */
};

/* Which 2 MiB chunks of one region are registered for missing faults. */
struct chunk_map {
	struct rf_region *r;
	uint64_t *bits; /* one bit per 2 MiB chunk: registered for missing faults */
	size_t words;
	bool all; /* every chunk tried (the VM has a target) */
};

/* One page read ahead into the swap cache. */
struct cache_ent {
	struct rf_region *r;
	uint64_t idx;
	uint32_t h; /* the handle the page had when read: still its handle while valid */
	bool valid;
};

struct rf_pager {
	rf_vm *vm;
	rf_engine *e;
	struct rf_swap_store *store;
	struct rf_uffd *u;
	uint32_t prefetch;

	bool copy_mode;	 /* no UFFDIO_MOVE: write-protect, copy, discard */
	int mem_fd;	 /* copy mode: /proc/self/mem, to read guest RAM without faulting */
	int stage_fd;	 /* private userfaultfd of the staging buffer (move mode) */
	uint8_t *stage;	 /* RF_SWAP_MAX_BATCH pages, under out_lock */
	uint8_t *bounce; /* one page, uffd fault thread only */
	uint8_t *zeros;	 /* PAGER_FILL_MAX pages never written: the source of fills */

	pthread_t thread;	  /* the swapper (swapper.c) */
	pthread_mutex_t lock;	  /* target, cap (swap-out reads it without), stop, chunk maps */
	pthread_mutex_t out_lock; /* one swap-out at a time: the staging buffer, the hand */
	pthread_cond_t cond;	  /* wakes the swapper */
	bool stop, thread_started;
	uint64_t target, cap;
	struct chunk_map chunks[RF_MAX_REGIONS];
	uint64_t hand_gpa; /* the CLOCK hand */

	/* Working-set sampling (swap_sample.c). The slots and the counters of
	 * the period are under sample_lock (a leaf); the settings under lock. */
	pthread_mutex_t sample_lock;
	struct sample_slot *slots; /* PAGER_SAMPLE_SLOTS */
	uint8_t *sample_area;	   /* their pages: after the staging buffer */
	unsigned int slot_next, slots_used, probes_used;
	uint32_t sample_period_ms, sample_pages; /* 0: off */
	uint64_t period_start_ns, rng;
	uint64_t est_touched, est_untouched; /* this period's random sample */
	double share;			     /* smoothed share touched; < 0: none yet */
	uint64_t throttled_seen;	     /* p->throttled at the swapper's last round */
	_Atomic uint64_t active_bytes;	     /* the estimate */
	_Atomic uint64_t sampled, sampled_touched, probed, probed_touched, hot_skips;

	pthread_mutex_t cache_lock;
	struct cache_ent cache[PAGER_CACHE_MAX];
	uint8_t *cache_buf; /* PAGER_CACHE_MAX pages */
	unsigned int cache_next;
	struct rf_region *last_r; /* the last page served (uffd fault thread only) */
	uint64_t last_idx;
	struct rf_region *fill_r; /* the last first-write run filled (uffd fault thread) */
	uint64_t fill_end, fill_win;

	_Atomic uint64_t file_pages, tier_pages, tier_mem;
	_Atomic uint64_t swap_outs, zero_outs, swap_ins, zero_fills, prefetched, prefetch_hits;
	_Atomic uint64_t enospc;
	/* Backpressure: the swapper's last measure of the VM's resident bytes,
	 * plus what faults added since; above the throttle line, swap-ins and
	 * first writes wait (retried by uffd.c every millisecond) for the swapper to make
	 * room, unless its last round could not evict anything. */
	_Atomic uint64_t resident_est, throttle_line;
	_Atomic bool swapper_stuck;
	/* Above the target with nothing left to swap out, said in the log
	 * (swapper.c): cleared once within the target or by a new target. */
	_Atomic bool target_unmet;
	_Atomic uint64_t targets_unmet; /* such episodes, for the tests */
	_Atomic uint64_t throttled;
	_Atomic uint64_t grown; /* pages added by faults: swap-ins, first writes */
	_Atomic bool stopped;
	_Atomic bool dead; /* its VM is gone; kept until the engine goes */
	struct rf_pager *next_dead;
	struct rf_hist lat;
	struct rf_ratelimit rl;
};

/* RF_PTE_F_HOT and _HOT2: how many more passes of the hand skip a page the
 * guest touched while it was staged (0-3; swap_sample.c). */
#define PTE_HOT_MASK (RF_PTE_F_HOT | RF_PTE_F_HOT2)

static inline unsigned int pte_hot_laps(uint64_t v)
{
	return (v & RF_PTE_F_HOT ? 1u : 0u) + (v & RF_PTE_F_HOT2 ? 2u : 0u);
}

static inline uint64_t pte_with_hot_laps(uint64_t v, unsigned int laps)
{
	return (v & ~PTE_HOT_MASK) | (laps & 1 ? RF_PTE_F_HOT : 0) | (laps & 2 ? RF_PTE_F_HOT2 : 0);
}

/* Is page-table entry @v a page in the store (SWAPPED or COMPRESSED)? */
static inline bool pte_is_swapped(uint64_t v)
{
	enum rf_page_state s = rf_pte_state(v);

	return s == RF_PAGE_SWAPPED || s == RF_PAGE_COMPRESSED;
}

/* swap_pager.c: count (@sign +1) or uncount (-1) a page stored under @h. */
void pager_account_add(struct rf_pager *p, uint32_t h, int sign);
/* swap_pager.c: release the store handle @h of locked swapped page (r, idx). */
void pager_drop_page(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint32_t h);
/* swap_pager.c: the swapped page (r, idx), locked as @v, lost its bytes to a
 * discard (swap_in.c, pager_on_remove): its handle released, published ZERO
 * with none of the swapper's marks, unlocked. */
void pager_zero_discarded(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint64_t v);

/* swap_in.c: the handlers installed on the VM's userfaultfd. */
int pager_on_missing(struct rf_uffd *u, const struct uffd_msg *m, void *arg);
int pager_on_remove(struct rf_uffd *u, const struct uffd_msg *m, void *arg);
/* swap_in.c: UFFDIO_COPY one page from @src to guest address @page, waking
 * its faulting threads if @wake. 0 or -errno (-EEXIST: a page is there). */
int pager_map_copy(struct rf_pager *p, uint64_t page, const void *src, bool wake);
/* swap_in.c: put bytes the swapper took out of locked page (r, idx) back,
 * from a thread other than the fault thread: -ECANCELED if an outside
 * discard marked the page meanwhile (its bytes are gone: it stays absent
 * and reads zeros), -EAGAIN while a REMOVE is read and not yet handled or
 * unread, else pager_map_copy's result (waking its faulting threads). */
int pager_map_back(struct rf_pager *p, struct rf_region *r, uint64_t idx, const void *src);
/* swap_in.c: stop the VM, whose page at @gpa (handle @h) is lost (@err);
 * logs once. Its faults are never answered from then on. */
void pager_stop_vm(struct rf_pager *p, uint64_t gpa, uint32_t h, int err);

/* swap_cache.c: the swap cache (pages read ahead of their faults). */
void pager_cache_forget(struct rf_pager *p, struct rf_region *r, uint64_t idx);
bool pager_cache_take(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint32_t h, void *dst);
void pager_cache_prefetch(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint32_t h);

/* swap_register.c: registration of guest RAM for missing faults. */
uint64_t pager_reg_mode(const struct rf_pager *p);
int pager_ensure_registered(struct rf_pager *p, struct rf_region *r, uint64_t idx);
void pager_register_all(struct rf_pager *p);
void pager_chunks_forget(struct rf_pager *p, struct rf_region *r);

/* swap_out.c: swap out the pages of a range of @r, for the swapper. With
 * @clock, the walk is the hand's: see swapper.c; with @probe too, its cold
 * pages are staged as probes (swap_sample.c) instead of swapped out. */
int pager_swap_out_walk(struct rf_pager *p, struct rf_region *r, uint64_t first, uint64_t npages,
			bool clock, bool probe, uint64_t want, uint64_t *done);
/* swap_out.c: stage page @idx of @r for sampling (kind SAMPLE_EST), if it
 * is resident and swappable and can be locked now. 1 staged, 0 not. */
int pager_stage_one(struct rf_pager *p, struct rf_region *r, uint64_t idx);

/* swapper.c: the VM's resident bytes as a target counts them (merged
 * pages to *@merged). Takes regions_lock for reading. */
uint64_t pager_measure_resident(struct rf_pager *p, uint64_t *merged);

/* swap_sample.c: working-set sampling. */
int pager_sample_init(struct rf_pager *p);
void pager_sample_destroy(struct rf_pager *p);
bool pager_sample_on(struct rf_pager *p);
/* A free slot for page (r, idx), reserved: false if none. */
bool pager_slot_get(struct rf_pager *p, struct rf_region *r, uint64_t idx, enum sample_kind kind,
		    uint32_t *slot);
/* Give a reserved slot back (its page never arrived, or left again). */
void pager_slot_put(struct rf_pager *p, uint32_t slot);
uint8_t *pager_slot_page(const struct rf_pager *p, uint32_t slot);
unsigned int pager_probes_pending(struct rf_pager *p);
unsigned int pager_slots_free(struct rf_pager *p);
/* Fault thread: the guest touched staged page @h, now mapped back. */
void pager_sample_touched(struct rf_pager *p, uint32_t h);
/* A staged page was discarded (page lock held): forget it. */
void pager_sample_dropped(struct rf_pager *p, uint32_t h);
/* Swapper thread, each tick, no lock held: settle the slots whose period
 * is over, take the next random sample when it is time. */
void pager_sample_tick(struct rf_pager *p, uint64_t target);

/* swapper.c: the swapper thread's body (arg: the pager). */
void *pager_swapper_main(void *arg);

/* Whether a page about to be stored is all zero (it becomes ZERO, not a
 * store slot): swap-out and the settling of staged samples both ask. */
static inline bool pager_page_zero(const void *page)
{
	const uint64_t *w = page;

	for (size_t i = 0; i < RF_PAGE_SIZE / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}

#endif
