/* SPDX-License-Identifier: MIT */
/*
 * The swap pager's swap cache: pages read ahead of their faults.
 *
 * When faults look sequential (swap_in.c decides), the fault thread reads the
 * pages that follow the one it has just served, if they went out in the
 * same batch (the next file slots), with one preadv into a small cache of
 * PAGER_CACHE_MAX pages. A later fault on one of them is served from here
 * (a prefetch hit) instead of the store. Pages are never mapped ahead: that
 * would make them resident again without any sign they are wanted.
 *
 * An entry names its page (region, index) and the store handle the page had
 * when it was read: a hit needs both to match, so an entry left over from an
 * earlier swap-out of the same page is never served. A page whose handle is
 * dropped (swap-in, discard, unmap) is forgotten here too.
 *
 * Locking: cache_lock (a leaf) guards the entries. Only the uffd fault
 * thread fills the cache; the buffer of an entry that is not valid belongs
 * to it, so it reads into the buffer without the lock.
 */
#include <string.h>

#include "pager_internal.h"

/* Forget a cached copy of page (r, idx). Any thread. */
void pager_cache_forget(struct rf_pager *p, struct rf_region *r, uint64_t idx)
{
	pthread_mutex_lock(&p->cache_lock);
	for (unsigned int i = 0; i < PAGER_CACHE_MAX; i++)
		if (p->cache[i].valid && p->cache[i].r == r && p->cache[i].idx == idx)
			p->cache[i].valid = false;
	pthread_mutex_unlock(&p->cache_lock);
}

/* Copy the cached page (r, idx) read under handle @h into @dst and drop its
 * entry. True on a hit. */
bool pager_cache_take(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint32_t h, void *dst)
{
	bool hit = false;

	pthread_mutex_lock(&p->cache_lock);
	for (unsigned int i = 0; i < PAGER_CACHE_MAX; i++) {
		struct cache_ent *c = &p->cache[i];

		if (c->valid && c->r == r && c->idx == idx && c->h == h) {
			memcpy(dst, p->cache_buf + ((size_t)i << RF_PAGE_SHIFT), RF_PAGE_SIZE);
			c->valid = false;
			hit = true;
			break;
		}
	}
	pthread_mutex_unlock(&p->cache_lock);
	return hit;
}

/*
 * Read up to p->prefetch pages after @idx that went out in the same batch
 * as it (the next file slots) into the swap cache, with one read. Called
 * only when the faults look sequential: on random access every page read
 * ahead would be wasted work on the fault thread, in front of the next
 * fault. Each page is try-locked for the read; the first one that is busy,
 * already cached or not the next slot of the run ends it. uffd fault thread
 * only, regions_lock held.
 */
void pager_cache_prefetch(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint32_t h)
{
	uint64_t vals[RF_SWAP_MAX_BATCH];
	void *bufs[RF_SWAP_MAX_BATCH];
	unsigned int slots[RF_SWAP_MAX_BATCH];
	int res[RF_SWAP_MAX_BATCH];
	uint32_t n = 0;

	if (rf_swap_handle_in_tier(h))
		return; /* decompressing ahead saves nothing */
	for (uint32_t d = 1; d <= p->prefetch && idx + d < r->npages; d++) {
		rf_pte_t *pte = &r->pte[idx + d];
		bool dup = false;
		uint64_t v;

		if (!rf_pte_trylock(pte, &v))
			break;
		pthread_mutex_lock(&p->cache_lock);
		for (unsigned int i = 0; i < PAGER_CACHE_MAX; i++)
			if (p->cache[i].valid && p->cache[i].r == r && p->cache[i].idx == idx + d)
				dup = true;
		pthread_mutex_unlock(&p->cache_lock);
		/* (A staged page's handle is no file slot: swap_sample.c.) */
		if (dup || rf_pte_state(v) != RF_PAGE_SWAPPED || rf_pte_payload(v) != h + d ||
		    handle_is_sample(rf_pte_payload(v))) {
			rf_pte_unlock(p->vm, pte, v, v);
			break;
		}
		vals[n++] = v;
	}
	if (!n)
		return;
	/* The buffer of an invalid entry is ours until it is made valid: only
	 * this thread fills the cache. */
	pthread_mutex_lock(&p->cache_lock);
	for (uint32_t k = 0; k < n; k++) {
		slots[k] = p->cache_next;
		p->cache_next = (p->cache_next + 1) % PAGER_CACHE_MAX;
		p->cache[slots[k]].valid = false;
		bufs[k] = p->cache_buf + ((size_t)slots[k] << RF_PAGE_SHIFT);
	}
	pthread_mutex_unlock(&p->cache_lock);
	rf_swap_store_get_run(p->store, h + 1, n, bufs, res);
	pthread_mutex_lock(&p->cache_lock);
	for (uint32_t k = 0; k < n; k++)
		if (res[k] == 0)
			p->cache[slots[k]] = (struct cache_ent){r, idx + 1 + k, h + 1 + k, true};
	pthread_mutex_unlock(&p->cache_lock);
	for (uint32_t k = 0; k < n; k++) {
		if (res[k] == 0)
			atomic_fetch_add(&p->prefetched, 1);
		rf_pte_unlock(p->vm, &r->pte[idx + 1 + k], vals[k], vals[k]);
	}
}
