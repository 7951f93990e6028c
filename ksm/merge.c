/* SPDX-License-Identifier: MIT */
/*
 * Merging, zero-discarding and unmerging guest pages: every mapping change
 * the dedup engine makes, always under the page locks of the pages changed.
 *
 * Merge of a run of adjacent guest pages B[0..n) onto adjacent store pages
 * S[0..n) (and, for a first-time duplicate, of the seed pages A[0..n) whose
 * content fills S):
 *
 *   1. trylock each page (a busy page ends the run there), check it is still
 *      PRIVATE and not excluded, and mark it RF_PTE_F_WP (uffd.h protocol);
 *   2. write-protect the run with userfaultfd: from here a writer (vCPU or
 *      thread) waits in the kernel, so the bytes cannot change under us;
 *   3. compare bytes (B with S, or B with A); the run ends at the first
 *      difference, whose cause is told apart: same hash recomputed = a
 *      64-bit collision (the page is marked not to try again), else the
 *      page changed since it was hashed (a race, tried next pass);
 *   4. for a first-time duplicate, allocate adjacent store pages and copy;
 *   5. check the VMA budget, then mmap(MAP_PRIVATE|MAP_FIXED) the store pages
 *      over the run (one mapping for the run), fault them in read-only
 *      (MADV_POPULATE_READ, which unlike MAP_POPULATE does not break the
 *      copy-on-write), and register the new VMA for write-protect again
 *      (a new VMA is unregistered; registering lets the kernel merge it with
 *      a neighbour mapping the adjacent store pages);
 *   6. (a run that could not be mapped is un-protected, still locked);
 *   7. publish MERGED (payload = store page) and unlock;
 *   8. wake the waiting writers: they retry on the new mapping and get a
 *      private copy holding the merged bytes plus their write. The wake
 *      comes after F_WP is clear: the pager leaves a write-protect fault on
 *      a page marked F_WP to its holder (uffd.h), so a fault it left while
 *      we held the page is woken here.
 * Any failure before 5 lifts the protection (which wakes writers) and leaves
 * the page as it was. A page can be absent at step 3 only if someone outside
 * the library discarded it under us; reading it then faults to the VM's
 * pager, which answers a read of a page marked F_WP without its lock (with
 * a write-protected zeroed page: swap_pager.c, read_under_wp), so the
 * comparison fails instead of waiting for a lock we hold. The same answer
 * serves a read of a zero run between its discard and its publication.
 *
 * Zero runs follow steps 1-3 against the zero page, then MADV_DONTNEED and
 * wake: a waiting writer then faults in a fresh zeroed page and writes it.
 * This is done here rather than through rf_vm_discard() because the page
 * locks must be held from the comparison to the discard: between the two,
 * another module (the balloon) must not change the page.
 *
 * Unmerge (a guest wrote a merged page: the kernel gave it a private copy
 * inside the store VMA): write-protect it, copy it into a scratch anonymous
 * page, mremap the scratch page over it (atomic for any other thread), then
 * register and wake. The page is private anonymous again, as every other
 * module expects a PRIVATE page to be, and the store reference is dropped.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "compat_linux.h"
#include "dedup_internal.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

static const uint8_t zero_page[RF_PAGE_SIZE];

static inline void pte_mark_wp(rf_pte_t *p, uint64_t v)
{
	/* Still locked: the pager reads F_WP without the lock (uffd.h). */
	atomic_store_explicit(p, v | RF_PTE_F_WP | RF_PTE_LOCKED, memory_order_release);
}

static inline void pte_release(rf_vm *vm, rf_pte_t *p, uint64_t old)
{
	rf_pte_unlock(vm, p, old, old & ~RF_PTE_F_WP);
}

struct rf_store *dedup_store_of(struct rf_dedup *d, uint32_t payload, uint32_t *pg)
{
	unsigned int node = payload >> STORE_PG_BITS;

	*pg = payload & STORE_PG_MASK;
	if ((int)node >= d->nstores)
		return NULL;
	return &d->stores[node];
}

static uint32_t store_payload(struct rf_dedup *d, struct rf_store *s, uint32_t pg)
{
	return ((uint32_t)(s - d->stores) << STORE_PG_BITS) | pg;
}

uint64_t count_vmas(void)
{
	char buf[65536];
	uint64_t n = 0;
	FILE *f = fopen("/proc/self/maps", "re");
	size_t got;

	if (!f)
		return 0;
	while ((got = fread(buf, 1, sizeof(buf), f)) > 0)
		for (size_t i = 0; i < got; i++)
			n += buf[i] == '\n';
	fclose(f);
	return n;
}

bool vma_budget_allows(struct rf_dedup *d, unsigned int need)
{
	uint64_t now, v = atomic_load(&d->vmas);

	if (v + need <= d->vma_budget)
		return true;
	/* The estimate only grows (the kernel merges adjacent mappings we
	 * count as new): recount from the kernel, one thread at a time and at
	 * most every 50 ms, before refusing. */
	pthread_mutex_lock(&d->vma_lock);
	v = atomic_load(&d->vmas);
	now = rf_now_ns();
	if (v + need > d->vma_budget && now - d->vma_recount_ns > 50000000ull) {
		v = count_vmas();
		atomic_store(&d->vmas, v);
		d->vma_recount_ns = now;
	}
	pthread_mutex_unlock(&d->vma_lock);
	if (v + need <= d->vma_budget)
		return true;
	atomic_fetch_add(&d->vma_stops, 1);
	if (!atomic_exchange(&d->vma_stop_logged, true))
		rf_log(d->e, RF_LOG_WARN,
		       "dedup: merging stopped: the process has %" PRIu64
		       " mappings and the VMA budget is %" PRIu64 " (vm.max_map_count %" PRIu64
		       "); pages stay private",
		       v, d->vma_budget, d->e->feat.max_map_count);
	return false;
}

/* Map store pages [pg, pg+n) over guest pages [idx, idx+n) of @r. */
static int map_store_run(struct rf_dedup *d, struct rf_dedup_vm *dv, struct rf_region *r,
			 uint64_t idx, unsigned int n, struct rf_store *s, uint32_t pg)
{
	static struct rf_ratelimit rl = RF_RATELIMIT_INIT(5);
	void *addr = rf_region_page(r, idx);
	size_t len = (size_t)n << RF_PAGE_SHIFT;
	void *q;
	int err;

	q = mmap(addr, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, s->fd,
		 (off_t)store_off(pg));
	if (q == MAP_FAILED) {
		err = -errno;
		rf_log_ratelimited(d->e, &rl, RF_LOG_WARN,
				   "%s: dedup: mapping %u store pages at gpa 0x%" PRIx64 ": %s",
				   dv->vm->name, n, r->gpa + (idx << RF_PAGE_SHIFT),
				   strerror(-err));
		if (err == -ENOMEM)
			atomic_fetch_add(&d->vma_stops, 1);
		return err;
	}
	atomic_fetch_add(&d->vmas, 2);
	/* Read faults: the ptes map the store's pages, so pagemap (and the
	 * audit) see file pages, and a later write is a plain CoW. */
	madvise(addr, len, MADV_POPULATE_READ);
	err = rf_uffd_register(dv->uffd, addr, len, UFFDIO_REGISTER_MODE_WP);
	if (err)
		rf_log_ratelimited(d->e, &rl, RF_LOG_WARN,
				   "%s: dedup: registering merged pages at gpa 0x%" PRIx64
				   " for write-protect: %s",
				   dv->vm->name, r->gpa + (idx << RF_PAGE_SHIFT), strerror(-err));
	return 0;
}

/* Lift the protection of [idx, idx+n) (waking writers) and unlock with @old. */
static void abort_pages(struct rf_dedup_vm *dv, struct rf_region *r, uint64_t idx, unsigned int n,
			const uint64_t *old, bool protected)
{
	if (n == 0)
		return;
	if (protected)
		rf_uffd_writeprotect(dv->uffd, rf_region_page(r, idx), (uint64_t)n << RF_PAGE_SHIFT,
				     false, false);
	for (unsigned int i = 0; i < n; i++)
		pte_release(dv->vm, &r->pte[idx + i], old[i]);
	/* After F_WP is clear (uffd.h): a fault the pager left to us while it
	 * was set is woken here. */
	rf_uffd_wake(dv->uffd, rf_region_page(r, idx), (uint64_t)n << RF_PAGE_SHIFT);
}

/* Is @r still one of @vm's regions? Regions lock held. */
static bool region_alive(rf_vm *vm, const struct rf_region *r)
{
	const struct rf_region *q;

	for (unsigned int i = 0; (q = __rf_vm_region(vm, i)); i++)
		if (q == r)
			return true;
	return false;
}

/* Lock up to @n pages from @idx that are PRIVATE and not excluded. */
static unsigned int lock_private(struct rf_region *r, uint64_t idx, unsigned int n, uint64_t *old)
{
	unsigned int k;

	for (k = 0; k < n; k++) {
		rf_pte_t *p = &r->pte[idx + k];
		uint64_t v;

		if (!rf_pte_trylock(p, &v))
			break;
		if (rf_pte_state(v) != RF_PAGE_PRIVATE || (v & (RF_PTE_EXCLUDED | RF_PTE_F_WP))) {
			atomic_store_explicit(p, v, memory_order_release);
			break;
		}
		old[k] = v;
		pte_mark_wp(p, v);
	}
	return k;
}

static void classify_mismatch(struct rf_dedup *d, struct rf_dedup_vm *dv, struct dedup_region *dr,
			      uint64_t idx, const void *page, uint64_t hash)
{
	if (dedup_hash_fn(page, RF_PAGE_SIZE) == hash) {
		/* Same hash, different bytes: a collision. Never try this
		 * page again until its content changes. */
		atomic_fetch_add(&d->collisions, 1);
		if (dr)
			atomic_fetch_or(&dr->pflags[idx], PF_NOMERGE);
	} else {
		atomic_fetch_add(&d->races, 1);
		atomic_fetch_add(&dv->races, 1);
	}
}

static void forget_cand(struct rf_dedup *d, struct rf_dedup_vm *dv, struct rf_region *r,
			struct dedup_region *dr, uint64_t idx, uint64_t hash)
{
	struct index_key k = {hash, dv->domain, d->cfg.cross_node ? 0 : (int16_t)dv->numa};

	if (!dr)
		return;
	if (atomic_fetch_and(&dr->pflags[idx], (uint8_t)~PF_CAND) & PF_CAND)
		index_del_cand(d->ht, &k, r, idx);
}

void merge_run_flush(struct rf_dedup *d, struct merge_run *m)
{
	struct rf_dedup_vm *dv = m->dv, *adv = m->adv;
	uint64_t oldb[MERGE_RUN_MAX], olda[MERGE_RUN_MAX];
	struct rf_region *r = m->r, *ar = m->ar;
	struct dedup_region *dr, *adr = NULL;
	unsigned int n = m->n, n0 = m->n, nb, na = 0, k;
	bool other_vm = false, okb = false, oka = false;
	struct rf_store *s = m->store;
	uint32_t pg = m->pg;

	m->n = 0;
	if (n == 0)
		return;
	dr = dedup_region_of(dv, r, false);
	if (m->pair) {
		if (adv->vm != dv->vm) {
			/* tryrdlock: see the lock order in dedup_internal.h. */
			if (pthread_rwlock_tryrdlock(&adv->vm->regions_lock) != 0)
				return;
			other_vm = true;
		}
		if (atomic_load(&adv->dead) || !region_alive(adv->vm, ar))
			goto out_unlock_vm;
		adr = dedup_region_of(adv, ar, false);
	}

	/* 1. lock */
	nb = lock_private(r, m->idx, n, oldb);
	if (m->pair) {
		na = lock_private(ar, m->aidx, nb, olda);
		if (na < nb) {
			for (k = na; k < nb; k++)
				pte_release(dv->vm, &r->pte[m->idx + k], oldb[k]);
			rf_uffd_wake(dv->uffd, rf_region_page(r, m->idx + na),
				     (uint64_t)(nb - na) << RF_PAGE_SHIFT);
			nb = na;
		}
	}
	n = nb;
	if (n == 0)
		goto out_refs;

	/* 2. write-protect */
	if (rf_uffd_writeprotect(dv->uffd, rf_region_page(r, m->idx), (uint64_t)n << RF_PAGE_SHIFT,
				 true, false) != 0) {
		abort_pages(dv, r, m->idx, n, oldb, true);
		if (m->pair)
			abort_pages(adv, ar, m->aidx, n, olda, false);
		n = 0;
		goto out_refs;
	}
	if (m->pair && rf_uffd_writeprotect(adv->uffd, rf_region_page(ar, m->aidx),
					    (uint64_t)n << RF_PAGE_SHIFT, true, false) != 0) {
		abort_pages(dv, r, m->idx, n, oldb, true);
		abort_pages(adv, ar, m->aidx, n, olda, true);
		n = 0;
		goto out_refs;
	}

	/* 3. compare bytes */
	RF_TEST_POINT("dedup.compare", rf_region_page(r, m->idx));
	for (k = 0; k < n; k++) {
		const void *b = rf_region_page(r, m->idx + k);
		const void *ref = m->pair ? (const void *)rf_region_page(ar, m->aidx + k)
					  : (const void *)store_addr(s, pg + k);

		if (memcmp(b, ref, RF_PAGE_SIZE) != 0) {
			classify_mismatch(d, dv, dr, m->idx + k, b, m->hashes[k]);
			break;
		}
	}
	if (k < n) {
		abort_pages(dv, r, m->idx + k, n - k, oldb + k, true);
		if (m->pair)
			abort_pages(adv, ar, m->aidx + k, n - k, olda + k, true);
		n = k;
	}
	if (n == 0)
		goto out_refs;

	/* 4. first-time duplicates: fill fresh store pages from the seeds */
	if (m->pair) {
		s = &d->stores[dv->numa < d->nstores && dv->numa >= 0 ? dv->numa : 0];
		if (store_alloc(s, n, &pg) != 0) {
			abort_pages(dv, r, m->idx, n, oldb, true);
			abort_pages(adv, ar, m->aidx, n, olda, true);
			n = 0;
			goto out_refs;
		}
		for (k = 0; k < n; k++)
			memcpy(store_addr(s, pg + k), rf_region_page(ar, m->aidx + k),
			       RF_PAGE_SIZE);
	}

	/* 5. map, if the VMA budget allows */
	if (vma_budget_allows(d, m->pair ? 4 : 2)) {
		okb = map_store_run(d, dv, r, m->idx, n, s, pg) == 0;
		if (m->pair)
			oka = map_store_run(d, adv, ar, m->aidx, n, s, pg) == 0;
	}

	/* 6. a run left in place is un-protected while still ours (after the
	 * unlock another module may protect it for itself) */
	if (!okb)
		rf_uffd_writeprotect(dv->uffd, rf_region_page(r, m->idx),
				     (uint64_t)n << RF_PAGE_SHIFT, false, false);
	if (m->pair && !oka)
		rf_uffd_writeprotect(adv->uffd, rf_region_page(ar, m->aidx),
				     (uint64_t)n << RF_PAGE_SHIFT, false, false);

	/* 7. publish. Store entries go into the index before the pages are
	 * unlocked: a page's store_put (which needs its lock) must find them. */
	for (k = 0; k < n; k++) {
		uint32_t payload = store_payload(d, s, pg + k);

		if (m->pair) {
			if (oka)
				store_get(s, pg + k);
			if (okb)
				store_get(s, pg + k);
			if (oka || okb) {
				struct index_node *node = index_node_new(d->e);

				if (node) {
					node->kind = NODE_STORE;
					node->hash = m->hashes[k];
					node->domain = dv->domain;
					node->numa = d->cfg.cross_node ? 0 : (int16_t)dv->numa;
					node->store = s;
					node->pg = pg + k;
					s->pages[pg + k].node = node;
					index_add(d->ht, node);
					{
						struct index_key bk = {node->hash, node->domain,
								       node->numa};

						bloom_set(d, &bk);
					}
				}
			} else {
				store_unalloc(s, pg + k, 1);
			}
			if (oka) {
				forget_cand(d, adv, ar, adr, m->aidx + k, m->hashes[k]);
				rf_pte_unlock(
				    adv->vm, &ar->pte[m->aidx + k], olda[k],
				    rf_pte_with_payload(rf_pte_with_state(olda[k], RF_PAGE_MERGED),
							payload));
				atomic_fetch_add(&adv->merged, 1);
			} else {
				pte_release(adv->vm, &ar->pte[m->aidx + k], olda[k]);
			}
		} else if (!okb) {
			store_put(s, pg + k); /* the lookup's reference */
		}
		if (okb) {
			forget_cand(d, dv, r, dr, m->idx + k, m->hashes[k]);
			rf_pte_unlock(dv->vm, &r->pte[m->idx + k], oldb[k],
				      rf_pte_with_payload(
					  rf_pte_with_state(oldb[k], RF_PAGE_MERGED), payload));
			atomic_fetch_add(&dv->merged, 1);
		} else {
			pte_release(dv->vm, &r->pte[m->idx + k], oldb[k]);
		}
	}
	atomic_fetch_add(&d->merged, (uint64_t)n * ((okb ? 1 : 0) + (oka ? 1 : 0)));
	atomic_fetch_add(&d->pass_merges, (uint64_t)n * ((okb ? 1 : 0) + (oka ? 1 : 0)));
	/* 8. wake the writers, now that F_WP is clear (uffd.h): on the new
	 * mapping they get a private copy of the merged bytes. */
	rf_uffd_wake(dv->uffd, rf_region_page(r, m->idx), (uint64_t)n << RF_PAGE_SHIFT);
	if (m->pair)
		rf_uffd_wake(adv->uffd, rf_region_page(ar, m->aidx), (uint64_t)n << RF_PAGE_SHIFT);

out_refs:
	/* A store run holds one lookup reference per page; drop the unused. */
	if (!m->pair)
		for (k = n; k < n0; k++)
			store_put(m->store, m->pg + k);
out_unlock_vm:
	if (other_vm)
		rf_vm_regions_unlock(adv->vm);
}

void zero_run_flush(struct rf_dedup *d, struct rf_dedup_vm *dv, struct rf_region *r, uint64_t idx,
		    unsigned int n)
{
	struct dedup_region *dr = dedup_region_of(dv, r, false);
	uint64_t old[MERGE_RUN_MAX];
	void *addr = rf_region_page(r, idx);
	unsigned int k;
	int err;

	n = lock_private(r, idx, n, old);
	if (n == 0)
		return;
	if (rf_uffd_writeprotect(dv->uffd, addr, (uint64_t)n << RF_PAGE_SHIFT, true, false) != 0) {
		abort_pages(dv, r, idx, n, old, false);
		return;
	}
	for (k = 0; k < n; k++)
		if (memcmp(rf_region_page(r, idx + k), zero_page, RF_PAGE_SIZE) != 0)
			break;
	if (k < n) {
		atomic_fetch_add(&d->races, 1);
		atomic_fetch_add(&dv->races, 1);
		abort_pages(dv, r, idx + k, n - k, old + k, true);
		n = k;
	}
	if (n == 0)
		return;
	err = rf_vm_discard_locked(dv->vm, addr, (uint64_t)n << RF_PAGE_SHIFT);
	if (err) {
		rf_log(d->e, RF_LOG_ERR, "%s: dedup: madvise(DONTNEED) at gpa 0x%" PRIx64 ": %s",
		       dv->vm->name, r->gpa + (idx << RF_PAGE_SHIFT), strerror(-err));
		abort_pages(dv, r, idx, n, old, true);
		return;
	}
	RF_TEST_POINT("dedup.zero-discarded", addr);
	for (k = 0; k < n; k++) {
		uint64_t v = old[k] & ~(RF_PTE_F_VOLATILE | RF_PTE_F_NOMERGE);

		forget_cand(d, dv, r, dr, idx + k, dr ? dr->hash[idx + k] : 0);
		if (dr)
			atomic_store(&dr->pflags[idx + k],
				     atomic_load(&dr->pflags[idx + k]) & PF_BROKEN_MASK);
		rf_pte_unlock(dv->vm, &r->pte[idx + k], old[k],
			      rf_pte_with_payload(rf_pte_with_state(v, RF_PAGE_ZERO), 0));
	}
	/* The ptes are gone, and their write-protection with them: a waiting
	 * writer retries on a fresh zeroed page. Woken after F_WP is clear
	 * (uffd.h). */
	rf_uffd_wake(dv->uffd, addr, (uint64_t)n << RF_PAGE_SHIFT);
	RF_TEST_POINT("dedup.zero-published", addr);
	atomic_fetch_add(&d->zeroed, n);
	atomic_fetch_add(&d->pass_merges, n);
}

int unmerge_page(struct rf_dedup *d, struct rf_dedup_vm *dv, struct rf_region *r, uint64_t idx,
		 unsigned int n, bool count_as_write)
{
	static struct rf_ratelimit rl = RF_RATELIMIT_INIT(5);
	struct dedup_region *dr = dedup_region_of(dv, r, false);
	uint64_t old[MERGE_RUN_MAX];
	void *addr = rf_region_page(r, idx), *scratch, *q;
	size_t len;
	unsigned int k;
	int err;

	if (n > MERGE_RUN_MAX)
		n = MERGE_RUN_MAX;
	for (k = 0; k < n; k++) {
		rf_pte_t *p = &r->pte[idx + k];
		uint64_t v;

		if (count_as_write) {
			if (!rf_pte_trylock(p, &v))
				break;
		} else {
			v = rf_pte_lock(p);
		}
		if (rf_pte_state(v) != RF_PAGE_MERGED) {
			atomic_store_explicit(p, v, memory_order_release);
			break;
		}
		old[k] = v;
		pte_mark_wp(p, v);
	}
	n = k;
	if (n == 0)
		return -EAGAIN;
	len = (size_t)n << RF_PAGE_SHIFT;
	err = rf_uffd_writeprotect(dv->uffd, addr, len, true, false);
	if (err)
		goto err_unlock;
	scratch = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (scratch == MAP_FAILED) {
		err = -errno;
		goto err_unprotect;
	}
	memcpy(scratch, addr, len);
	/* Atomic for every other thread: before it, the old (protected)
	 * mapping; after it, the private copy. */
	q = mremap(scratch, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, addr);
	if (q == MAP_FAILED) {
		err = -errno;
		munmap(scratch, len);
		goto err_unprotect;
	}
	atomic_fetch_add(&d->vmas, 2);
	err = rf_uffd_register(dv->uffd, addr, len, UFFDIO_REGISTER_MODE_WP);
	if (err)
		rf_log_ratelimited(d->e, &rl, RF_LOG_WARN,
				   "%s: dedup: re-registering gpa 0x%" PRIx64 " after unmerge: %s",
				   dv->vm->name, r->gpa + (idx << RF_PAGE_SHIFT), strerror(-err));
	for (k = 0; k < n; k++) {
		uint32_t pg;
		struct rf_store *s = dedup_store_of(d, rf_pte_payload(old[k]), &pg);

		if (s)
			store_put(s, pg);
		if (dr)
			atomic_store(
			    &dr->pflags[idx + k],
			    count_as_write ? pf_broken_bump(atomic_load(&dr->pflags[idx + k])) : 0);
		rf_pte_unlock(dv->vm, &r->pte[idx + k], old[k],
			      rf_pte_with_payload(
				  rf_pte_with_state(old[k] & ~RF_PTE_F_WP, RF_PAGE_PRIVATE), 0));
	}
	/* Writers retry on the private copy; woken after F_WP is clear. */
	rf_uffd_wake(dv->uffd, addr, len);
	if (count_as_write) {
		atomic_fetch_add(&d->unmerged, n);
		atomic_fetch_add(&dv->unmerged, n);
	}
	return 0;

err_unprotect:
	rf_uffd_writeprotect(dv->uffd, addr, len, false, false);
err_unlock:
	rf_log_ratelimited(d->e, &rl, RF_LOG_WARN,
			   "%s: dedup: unmerging %u pages at gpa 0x%" PRIx64 ": %s (left merged)",
			   dv->vm->name, n, r->gpa + (idx << RF_PAGE_SHIFT), strerror(-err));
	for (k = 0; k < n; k++)
		pte_release(dv->vm, &r->pte[idx + k], old[k]);
	rf_uffd_wake(dv->uffd, addr, len);
	return err;
}

int dedup_page_release(rf_vm *vm, struct rf_region *r, uint64_t idx, uint64_t pte, void *arg)
{
	struct rf_dedup_vm *dv = vm->dedup;
	struct dedup_region *dr;
	void *addr = rf_region_page(r, idx), *q;
	struct rf_store *s;
	uint32_t pg;

	(void)arg;
	if (!dv)
		return -ENOENT;
	/* The caller discards the page: its content is not needed, only a
	 * plain anonymous mapping (which MADV_DONTNEED turns into zeros). */
	q = mmap(addr, RF_PAGE_SIZE, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED | MAP_NORESERVE, -1, 0);
	if (q == MAP_FAILED) {
		rf_log(vm->e, RF_LOG_WARN, "%s: dedup: releasing merged gpa 0x%" PRIx64 ": %s",
		       vm->name, r->gpa + (idx << RF_PAGE_SHIFT), strerror(errno));
		return -errno;
	}
	rf_uffd_register(dv->uffd, addr, RF_PAGE_SIZE, UFFDIO_REGISTER_MODE_WP);
	s = dedup_store_of(dv->d, rf_pte_payload(pte), &pg);
	if (s)
		store_put(s, pg);
	dr = dedup_region_of(dv, r, false);
	if (dr)
		atomic_store(&dr->pflags[idx], 0);
	return 0;
}
