/* SPDX-License-Identifier: MIT */
/*
 * Merging, zero-discarding and unmerging guest pages: every mapping change
 * the dedup engine makes, always under the page locks of the pages changed.
 *
 * Merge of a run of adjacent guest pages B[0..n) onto adjacent store pages
 * S[0..n) (and, for a first-time duplicate, of the seed pages A[0..n) whose
 * content fills S). merge_run_flush() runs one function per step:
 *
 *   1. lock_run: trylock each page (a busy page ends the run there), check
 *      it is still PRIVATE and not excluded, and mark it RF_PTE_F_WP (uffd.h
 *      protocol);
 *   2. write_protect_run: write-protect the run with userfaultfd: from here
 *      a writer (vCPU or thread) waits in the kernel, so the bytes cannot
 *      change under us;
 *   3. compare_run: compare bytes (B with S, or B with A); the run ends at
 *      the first difference, whose cause is told apart: same hash
 *      recomputed = a 64-bit collision (the page is marked not to try
 *      again), else the page changed since it was hashed (a race, tried
 *      next pass);
 *   4. fill_store_pages: for a first-time duplicate, allocate adjacent store
 *      pages and copy A into them;
 *   5. map_run: check the VMA budget, then mmap(MAP_PRIVATE|MAP_FIXED) the
 *      store pages over the run (one mapping for the run), fault them in
 *      read-only (MADV_POPULATE_READ, which unlike MAP_POPULATE does not
 *      break the copy-on-write), and register the new VMA for write-protect
 *      again (a new VMA is unregistered; registering lets the kernel merge
 *      it with a neighbour mapping the adjacent store pages);
 *   6. unprotect_unmapped: a run that could not be mapped is un-protected,
 *      still locked;
 *   7. publish_run: publish MERGED (payload = store page) and unlock;
 *   8. wake_run: wake the waiting writers: they retry on the new mapping and
 *      get a private copy holding the merged bytes plus their write. The
 *      wake comes after F_WP is clear: the fault thread leaves a write-protect
 *      fault on a page marked F_WP to its holder (uffd.h), so a fault it
 *      left while we held the page is woken here.
 * Any failure before 5 lifts the protection (which wakes writers) and leaves
 * the page as it was. A page can be absent at step 3 only if someone outside
 * the library discarded it under us; reading it then gives zeros, or, with swap
 * attached, faults to the VM's fault thread, where the swap pager answers a
 * read of a page marked F_WP without its lock (with a write-protected zeroed
 * page: read_under_wp, swap/swap_in.c), so the comparison fails instead of
 * waiting for a lock we hold. The same answer serves a read of a zero run
 * between its discard and its publication.
 *
 * Zero runs (zero_run_flush) follow steps 1-3 against the zero page, then
 * discard the run (rf_vm_discard_locked: MADV_DONTNEED under the page locks),
 * publish ZERO, unlock and wake: a waiting writer then faults in a fresh
 * zeroed page and writes it. This is done here rather than through
 * rf_vm_discard_as() because the page locks must be held from the comparison to
 * the discard: between the two, another module (the balloon) must not change
 * the page. An all-zero huge page is one zero run of its 512 pages, discarded
 * whole or not at all (a partial discard would split it); one madvise over
 * the whole huge page frees it without a split.
 *
 * Unmerge (a guest wrote a merged page: the kernel gave it a private copy
 * inside the store VMA): write-protect it, copy it into a scratch anonymous
 * page, mremap the scratch page over it (atomic for any other thread), then
 * register and wake. The page is private anonymous again, as every other
 * module expects a PRIVATE page to be, and the store reference is dropped.
 *
 * Release (dedup_page_release, the core's page_release hook for MERGED
 * pages): another module discarding a merged page has it locked; a fresh
 * anonymous page is mapped over it and its store reference dropped, since
 * MADV_DONTNEED on the store mapping would bring the store's bytes back.
 *
 * Also here: the VMA budget (every run mapped costs up to two mappings of
 * the process's vm.max_map_count), counted by count_vmas.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "compat_linux.h"
#include "dedup_internal.h"

static const uint8_t zero_page[RF_PAGE_SIZE];

static inline void pte_mark_wp(rf_pte_t *p)
{
	/* Still locked: the fault thread reads F_WP without the lock (uffd.h).
	 * An OR, not a store: F_DISCARD may be set meanwhile (page_table.h). */
	atomic_fetch_or_explicit(p, RF_PTE_F_WP, memory_order_release);
}

static inline void pte_release(rf_vm *vm, rf_pte_t *p, uint64_t old)
{
	rf_pte_unlock(vm, p, old, old & ~RF_PTE_F_WP);
}

struct rf_store *dedup_store_of(struct rf_dedup *d, uint32_t payload, uint32_t *pg)
{
	unsigned int node = payload >> STORE_PG_BITS;

	*pg = payload & STORE_PG_MASK;
	if ((int)node >= atomic_load(&d->nslots))
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

/*
 * Every run mapped costs up to two mappings wherever it lands, whatever its
 * length: a run of one page saves 4 KiB for them, a run of 512 saves 2 MiB.
 * Duplicates scattered one page at a time (a guest's copies of a few
 * templates, at random addresses) would take the whole budget a page at a
 * time and leave nothing for the runs an OS image shared by several guests
 * brings (in the density search, a dup guest's 60,000 scattered copies took
 * all 58,977 mappings of the budget before a third OS-image guest came).
 * So single pages (runs shorter than VMA_RUN_PAGES: scattered copies are
 * almost never next to the copy of the next page of the same template) may
 * be held to a share, cfg.vma_single_pct, of what the budget leaves above
 * the mappings the process had at the start, and longer runs may use all of
 * it (and so may a single page that continues its neighbour's mapping:
 * budget_pages). The share is 100% by default: in a real guest most
 * duplicates are scattered (page cache at random guest addresses), and two
 * dup guests' twins need some 45,000 mappings (test_dup_twins); the
 * experiment's scenarios, whose OS-image guests are laid out alike, set 50.
 * Refusals are recounted at most once a second: counting /proc/self/maps
 * with 59,000 lines costs milliseconds, and the scanner asks again on every
 * pass.
 */
bool vma_budget_allows(struct rf_dedup *d, unsigned int need, unsigned int run_pages)
{
	bool short_run = run_pages < VMA_RUN_PAGES;
	uint64_t now, v = atomic_load(&d->vmas), limit = d->vma_budget;

	if (short_run && limit > d->vma_base && d->cfg.vma_single_pct &&
	    d->cfg.vma_single_pct < 100)
		limit = d->vma_base + (limit - d->vma_base) * d->cfg.vma_single_pct / 100;
	if (v + need <= limit)
		return true;
	/* The estimate only grows (the kernel merges adjacent mappings we
	 * count as new): recount from the kernel, one thread at a time and at
	 * most every second, before refusing. */
	pthread_mutex_lock(&d->vma_lock);
	v = atomic_load(&d->vmas);
	now = rf_now_ns();
	if (v + need > limit && now - d->vma_recount_ns > 1000000000ull) {
		v = count_vmas();
		atomic_store(&d->vmas, v);
		d->vma_recount_ns = now;
	}
	pthread_mutex_unlock(&d->vma_lock);
	if (v + need <= limit)
		return true;
	atomic_fetch_add(&d->vma_stops, 1);
	if (short_run && limit < d->vma_budget) {
		if (!atomic_exchange(&d->vma_short_logged, true))
			rf_log(d->e, RF_LOG_WARN,
			       "dedup: merging of single pages stopped at their share of the VMA "
			       "budget (%u%%): the process has %" PRIu64 " mappings, the budget is "
			       "%" PRIu64 " (vm.max_map_count %" PRIu64
			       "); the rest is kept for runs",
			       d->cfg.vma_single_pct, v, d->vma_budget, d->e->feat.max_map_count);
	} else if (!atomic_exchange(&d->vma_stop_logged, true)) {
		rf_log(d->e, RF_LOG_WARN,
		       "dedup: merging stopped: the process has %" PRIu64
		       " mappings and the VMA budget is %" PRIu64 " (vm.max_map_count %" PRIu64
		       "); pages stay private",
		       v, d->vma_budget, d->e->feat.max_map_count);
	}
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

	rf_debug_note(dv->vm, addr, len, "map store pages");
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
	/* After F_WP is clear (uffd.h): a fault the fault thread left to us while it
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
		/* F_UWP: merging would replace the page the embedder protects. */
		if (rf_pte_state(v) != RF_PAGE_PRIVATE ||
		    (v & (RF_PTE_EXCLUDED | RF_PTE_F_WP | RF_PTE_F_UWP))) {
			rf_pte_publish(p, v, v);
			break;
		}
		old[k] = v;
		pte_mark_wp(p);
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
			pf_or(dr, idx, PF_NOMERGE);
	} else {
		atomic_fetch_add(&d->races, 1);
		atomic_fetch_add(&dv->races, 1);
	}
}

static void forget_cand(struct rf_dedup *d, struct rf_dedup_vm *dv, struct dedup_region *dr,
			uint64_t idx, uint64_t hash)
{
	struct index_key k = {hash, dv->domain, d->cfg.cross_node ? 0 : (int16_t)dv->numa};

	if (!dr)
		return;
	if (pf_clear(dr, idx, PF_CAND) & PF_CAND)
		index_del_cand(d->ht, &k, dr, idx);
}

/* ---- merge runs: the steps of the protocol above ------------------------ */

/* One side of a merge run: the guest pages B being merged, or (a pair) the
 * seed pages A whose content fills the new store pages. */
struct run_side {
	struct rf_dedup_vm *dv;
	struct rf_region *r;
	struct dedup_region *dr;     /* may be NULL */
	uint64_t idx;		     /* first page of the run in @r */
	bool mapped;		     /* step 5 mapped the store pages over it */
	uint64_t old[MERGE_RUN_MAX]; /* the entries as step 1 locked them */
};

/* A run being flushed: its two sides and what the steps have left of it. */
struct run_flush {
	struct rf_dedup *d;
	struct merge_run *m;  /* pair, hashes[]; carry[] filled by step 4b */
	struct run_side b, a; /* a: only for a pair */
	unsigned int n;	      /* pages still in the run */
	struct rf_store *s;   /* the target: store pages [pg, pg + n) */
	uint32_t pg;
};

static void side_init(struct run_side *sd, struct rf_dedup_vm *dv, struct rf_region *r,
		      uint64_t idx)
{
	sd->dv = dv;
	sd->r = r;
	sd->dr = NULL;
	sd->idx = idx;
	sd->mapped = false;
}

static int side_writeprotect(const struct run_side *sd, unsigned int n, bool wp)
{
	return rf_uffd_writeprotect(sd->dv->uffd, rf_region_page(sd->r, sd->idx),
				    (uint64_t)n << RF_PAGE_SHIFT, wp, false);
}

/* Give up pages [from, n) of the run: B's protection is lifted, A's only if
 * @a_protected; they are unlocked as they were and their writers woken. */
static void abort_run_from(struct run_flush *f, unsigned int from, bool a_protected)
{
	struct run_side *b = &f->b, *a = &f->a;

	abort_pages(b->dv, b->r, b->idx + from, f->n - from, b->old + from, true);
	if (f->m->pair)
		abort_pages(a->dv, a->r, a->idx + from, f->n - from, a->old + from, a_protected);
	f->n = from;
}

/* 1. Lock B's pages and, for a pair, as many of A's; mark them F_WP. */
static void lock_run(struct run_flush *f)
{
	struct run_side *b = &f->b, *a = &f->a;
	unsigned int n = lock_private(b->r, b->idx, f->n, b->old), na;

	if (f->m->pair) {
		na = lock_private(a->r, a->idx, n, a->old);
		/* B's pages past A's last locked one are let go (not yet
		 * protected). */
		abort_pages(b->dv, b->r, b->idx + na, n - na, b->old + na, false);
		n = na;
	}
	f->n = n;
}

/* 2. Write-protect B's pages, then A's: their bytes can no longer change. */
static bool write_protect_run(struct run_flush *f)
{
	if (side_writeprotect(&f->b, f->n, true) != 0) {
		abort_run_from(f, 0, false);
		return false;
	}
	if (f->m->pair && side_writeprotect(&f->a, f->n, true) != 0) {
		abort_run_from(f, 0, true);
		return false;
	}
	return true;
}

/* 3. Compare B's bytes with the store pages (or with A's); the run ends at
 * the first difference, counted as a collision or a race. */
static void compare_run(struct run_flush *f)
{
	const struct merge_run *m = f->m;
	struct run_side *b = &f->b, *a = &f->a;
	unsigned int k;

	RF_TEST_POINT("dedup.compare", rf_region_page(b->r, b->idx));
	if (m->self) {
		/* The pages seed the store themselves: what must hold is that
		 * they still have the hash the broker was asked about. */
		for (k = 0; k < f->n; k++)
			if (dedup_hash_fn(rf_region_page(b->r, b->idx + k), RF_PAGE_SIZE) !=
			    m->hashes[k]) {
				atomic_fetch_add(&f->d->races, 1);
				atomic_fetch_add(&b->dv->races, 1);
				break;
			}
		if (k < f->n)
			abort_run_from(f, k, true);
		return;
	}
	for (k = 0; k < f->n; k++) {
		const void *page = rf_region_page(b->r, b->idx + k);
		const void *ref = m->pair ? (const void *)rf_region_page(a->r, a->idx + k)
					  : (const void *)store_addr(f->s, f->pg + k);

		if (memcmp(page, ref, RF_PAGE_SIZE) != 0) {
			classify_mismatch(f->d, b->dv, b->dr, b->idx + k, page, m->hashes[k]);
			break;
		}
	}
	if (k < f->n)
		abort_run_from(f, k, true);
}

/* A page of a broker run that cannot be mapped with the run: carried to
 * the scanner, with its reference, to be merged as a store run. */
static void carry(struct run_flush *f, const struct run_side *sd, unsigned int k, uint32_t pg)
{
	struct merge_run *m = f->m;

	if (m->ncarry == sizeof(m->carry) / sizeof(m->carry[0])) {
		store_put(f->s, pg);
		return;
	}
	m->carry_store = f->s;
	m->carry[m->ncarry++] = (struct merge_carry){sd->dv, sd->r, sd->idx + k, m->hashes[k], pg};
}

/* 4b. The same in the broker's store of B's domain: the broker fills the
 * pages, INSERT by INSERT, and names them. The run keeps its leading pages
 * on adjacent store pages; the rest (the broker reuses page numbers, so
 * they are often not adjacent) are carried to the scanner, which merges them
 * as store runs right away: B's, and A's when A is in B's VM (another VM's
 * regions are not locked by this scanner). Each page comes with a reference
 * (publish_run drops the run's; a carried page's is its store run's). */
static bool fill_broker_pages(struct run_flush *f, struct rf_store *rs)
{
	const struct run_side *src = f->m->self ? &f->b : &f->a;
	const uint8_t *pages[RFB_INSERT_MAX];
	uint32_t pgs[RFB_INSERT_MAX];
	unsigned int done = 0, pos;
	bool cut = false;

	f->s = rs;
	for (pos = 0; pos < f->n; pos += RFB_INSERT_MAX) {
		unsigned int want = f->n - pos < RFB_INSERT_MAX ? f->n - pos : RFB_INSERT_MAX;

		for (unsigned int k = 0; k < want; k++)
			pages[k] = rf_region_page(src->r, src->idx + pos + k);
		if (broker_insert(f->d, rs, f->m->hashes + pos, pages, want, pgs) != 0)
			break;
		for (unsigned int i = 0; i < want; i++) {
			unsigned int k = pos + i;

			if (pgs[i] == UINT32_MAX) {
				cut = true;
				continue;
			}
			if (!cut && (k == 0 || pgs[i] == f->pg + k)) {
				if (k == 0)
					f->pg = pgs[i];
				done = k + 1;
				continue;
			}
			cut = true;
			if (f->m->pair && f->a.dv == f->b.dv) {
				store_get(rs, pgs[i]);
				carry(f, &f->a, k, pgs[i]);
			}
			carry(f, &f->b, k, pgs[i]);
		}
	}
	if (done < f->n)
		abort_run_from(f, done, true);
	return done > 0;
}

/* 4. A first-time duplicate: fill fresh adjacent store pages from the seeds
 * (on B's node), in the broker's store when B's domain is shared across
 * processes. */
static bool fill_store_pages(struct run_flush *f)
{
	struct rf_dedup *d = f->d;
	int numa = f->b.dv->numa;
	struct rf_store *rs = broker_store_for(d, f->b.dv);
	int got;

	if (rs)
		return fill_broker_pages(f, rs);
	if (f->m->self) { /* the broker went away since it answered */
		abort_run_from(f, 0, true);
		return false;
	}
	f->s = &d->stores[numa < d->nstores && numa >= 0 ? numa : 0];
	/* A store nearly full gives what it has left: the run is cut to it
	 * (the rest is tried again on a later pass). A full one: the pages
	 * stay private, the kernel's as any other, and it is said once. */
	got = store_alloc_upto(f->s, f->n, &f->pg);
	if (got < 0) {
		store_full(f->s);
		abort_run_from(f, 0, true);
		return false;
	}
	if ((unsigned int)got < f->n)
		abort_run_from(f, (unsigned int)got, true);
	/* One call allocates and maps the run's store pages: the copy below
	 * would otherwise take a page fault per page, which cost more than
	 * the copy (4% of the scanner's CPU in bench-dedup). If it fails the
	 * copy faults them in as before. */
	madvise(store_addr(f->s, f->pg), (size_t)f->n << RF_PAGE_SHIFT, MADV_POPULATE_WRITE);
	for (unsigned int k = 0; k < f->n; k++)
		memcpy(store_addr(f->s, f->pg + k), rf_region_page(f->a.r, f->a.idx + k),
		       RF_PAGE_SIZE);
	return true;
}

/* Is page @idx of @r merged onto page @pg of store @s? */
static bool maps_store_page(struct rf_dedup *d, const struct rf_region *r, uint64_t idx,
			    const struct rf_store *s, uint32_t pg)
{
	uint64_t v = rf_pte_peek(&r->pte[idx]);
	uint32_t got;

	return rf_pte_state(v) == RF_PAGE_MERGED &&
	       dedup_store_of(d, rf_pte_payload(v), &got) == s && got == pg;
}

/*
 * The run's length as the VMA budget weighs it (vma_budget_allows): a short
 * run that continues a neighbour merged onto the store pages next to its own
 * costs no new mapping (the kernel joins the two), so it counts as long; that
 * is the piece of a long run that two scanner threads or two passes cut.
 * Scattered copies of a template have merged neighbours too, but onto other
 * store pages. A pair run's store pages are known only once filled (@pg
 * UINT32_MAX before): it is weighed by its length alone until then.
 */
static unsigned int budget_pages(struct rf_dedup *d, const struct rf_region *r, uint64_t idx,
				 unsigned int n, const struct rf_store *s, uint32_t pg)
{
	/* With no share set (the default) a single page is not held back:
	 * nothing to look at on the merge path. */
	if (n >= VMA_RUN_PAGES || !d->cfg.vma_single_pct || d->cfg.vma_single_pct >= 100)
		return VMA_RUN_PAGES;
	if (pg != UINT32_MAX &&
	    ((idx > 0 && pg > 0 && maps_store_page(d, r, idx - 1, s, pg - 1)) ||
	     (idx + n < r->npages && maps_store_page(d, r, idx + n, s, pg + n))))
		return VMA_RUN_PAGES;
	return n;
}

/* 5. Map the store pages over B (and A), if the VMA budget allows. */
static void map_run(struct run_flush *f)
{
	struct run_side *b = &f->b, *a = &f->a;

	if (!vma_budget_allows(f->d, f->m->pair ? 4 : 2,
			       budget_pages(f->d, b->r, b->idx, f->n, f->s, f->pg)))
		return;
	b->mapped = map_store_run(f->d, b->dv, b->r, b->idx, f->n, f->s, f->pg) == 0;
	if (f->m->pair)
		a->mapped = map_store_run(f->d, a->dv, a->r, a->idx, f->n, f->s, f->pg) == 0;
}

/* 6. A side left in place is un-protected while still ours (after the
 * unlock another module may protect it for itself). */
static void unprotect_unmapped(struct run_flush *f)
{
	if (!f->b.mapped)
		side_writeprotect(&f->b, f->n, false);
	if (f->m->pair && !f->a.mapped)
		side_writeprotect(&f->a, f->n, false);
}

/* File store page @pg under @hash in the index (and the Bloom filter), so
 * that its later twins find it. A page of our own store is new here and
 * has one publisher. A broker's page is not filed: the broker's index
 * finds it for every process of the domain (our twins of it ask, as stable
 * pages with no twin here do), where a node here would cost each process
 * 64 bytes for every page of the domain it maps. */
static void file_store_page(struct rf_dedup *d, const struct rf_dedup_vm *dv, struct rf_store *s,
			    uint32_t pg, uint64_t hash)
{
	struct index_node *node;
	struct index_key k;

	if (s->remote)
		return;
	node = index_node_new(d->e);
	if (!node)
		return;
	node->kind = NODE_STORE;
	node->hash = hash;
	node->domain = dv->domain;
	node->numa = d->cfg.cross_node ? 0 : (int16_t)dv->numa;
	node->store = s;
	node->pg = pg;
	s->nodes[pg] = node;
	index_add(d->ht, node);
	k = (struct index_key){node->hash, node->domain, node->numa};
	bloom_set(d, &k);
}

/* Unlock page @k of side @sd: MERGED onto store page @payload if the store
 * pages were mapped over it, else as it was. */
static void publish_page(struct rf_dedup *d, struct run_side *sd, unsigned int k, uint64_t hash,
			 uint32_t payload)
{
	rf_pte_t *pte = &sd->r->pte[sd->idx + k];
	uint64_t old = sd->old[k];

	if (!sd->mapped) {
		pte_release(sd->dv->vm, pte, old);
		return;
	}
	forget_cand(d, sd->dv, sd->dr, sd->idx + k, hash);
	rf_pte_unlock(sd->dv->vm, pte, old,
		      rf_pte_with_payload(rf_pte_with_state(old, RF_PAGE_MERGED), payload));
	atomic_fetch_add(&sd->dv->merged, 1);
}

/* 7. Publish MERGED and unlock. A new store page's references (one per
 * side mapping it) are taken and its index entry filed before the pages are
 * unlocked: a page's store_put (which needs its lock) must find them. */
static void publish_run(struct run_flush *f)
{
	const struct merge_run *m = f->m;
	struct run_side *b = &f->b, *a = &f->a;
	struct rf_dedup *d = f->d;
	uint64_t merged = (uint64_t)f->n * ((b->mapped ? 1 : 0) + (a->mapped ? 1 : 0));

	for (unsigned int k = 0; k < f->n; k++) {
		uint32_t pg = f->pg + k, payload = store_payload(d, f->s, pg);

		if (m->pair || m->self) {
			if (a->mapped)
				store_get(f->s, pg);
			if (b->mapped)
				store_get(f->s, pg);
			if (a->mapped || b->mapped)
				file_store_page(d, b->dv, f->s, pg, m->hashes[k]);
			else if (!f->s->remote)
				store_unalloc(f->s, pg, 1);
			if (f->s->remote)
				store_put(f->s, pg); /* the insert's reference */
			if (m->pair)
				publish_page(d, a, k, m->hashes[k], payload);
		} else if (!b->mapped) {
			store_put(f->s, pg); /* the lookup's reference */
		}
		publish_page(d, b, k, m->hashes[k], payload);
	}
	atomic_fetch_add(&d->merged, merged);
	atomic_fetch_add(&d->pass_merges, merged);
}

/* 8. Wake the writers, now that F_WP is clear (uffd.h): on the new mapping
 * they get a private copy of the merged bytes. */
static void wake_run(struct run_flush *f)
{
	uint64_t len = (uint64_t)f->n << RF_PAGE_SHIFT;

	rf_uffd_wake(f->b.dv->uffd, rf_region_page(f->b.r, f->b.idx), len);
	if (f->m->pair)
		rf_uffd_wake(f->a.dv->uffd, rf_region_page(f->a.r, f->a.idx), len);
}

void merge_run_flush(struct rf_dedup *d, struct merge_run *m)
{
	struct run_flush f;
	unsigned int n0 = m->n;
	bool other_vm = false;

	m->n = 0;
	if (n0 == 0)
		return;
	f.d = d;
	f.m = m;
	f.n = n0;
	f.s = m->store;
	f.pg = m->pg;
	side_init(&f.b, m->dv, m->r, m->idx);
	side_init(&f.a, m->adv, m->ar, m->aidx);
	f.b.dr = dedup_region_of(f.b.dv, f.b.r, false);
	if (m->pair) {
		if (f.a.dv->vm != f.b.dv->vm) {
			/* tryrdlock: see the lock order in dedup_internal.h. */
			if (rf_vm_regions_tryrdlock(f.a.dv->vm) != 0)
				return;
			other_vm = true;
		}
		if (atomic_load(&f.a.dv->dead) || !region_alive(f.a.dv->vm, f.a.r))
			goto out_unlock_vm;
		f.a.dr = dedup_region_of(f.a.dv, f.a.r, false);
	}

	/* Asked first as well, so that a run the budget refuses costs no
	 * write-protect, comparison or copy (map_run asks again for what is
	 * left of the run). */
	if (!vma_budget_allows(d, m->pair ? 4 : 2,
			       budget_pages(d, m->r, m->idx, n0, m->store,
					    m->pair || m->self ? UINT32_MAX : m->pg))) {
		f.n = 0;
		goto out_refs;
	}
	lock_run(&f);
	if (f.n == 0 || !write_protect_run(&f))
		goto out_refs;
	compare_run(&f);
	if (f.n == 0 || ((m->pair || m->self) && !fill_store_pages(&f)))
		goto out_refs;
	map_run(&f);
	unprotect_unmapped(&f);
	publish_run(&f);
	wake_run(&f);

out_refs:
	/* A store run holds one lookup reference per page; drop the unused. */
	if (!m->pair && !m->self)
		for (unsigned int k = f.n; k < n0; k++)
			store_put(m->store, m->pg + k);
out_unlock_vm:
	if (other_vm)
		rf_vm_regions_unlock(f.a.dv->vm);
}

bool zero_run_flush(struct rf_dedup *d, struct rf_dedup_vm *dv, struct rf_region *r, uint64_t idx,
		    unsigned int n, bool whole)
{
	struct dedup_region *dr = dedup_region_of(dv, r, false);
	uint64_t old[MERGE_RUN_MAX];
	void *addr = rf_region_page(r, idx);
	unsigned int k, want = n;
	int err;

	n = lock_private(r, idx, n, old);
	/* A huge page discarded in part would be split: all or nothing. */
	if (whole && n < want) {
		for (k = 0; k < n; k++)
			pte_release(dv->vm, &r->pte[idx + k], old[k]);
		return false;
	}
	if (n == 0)
		return false;
	if (rf_uffd_writeprotect(dv->uffd, addr, (uint64_t)n << RF_PAGE_SHIFT, true, false) != 0) {
		abort_pages(dv, r, idx, n, old, false);
		return false;
	}
	for (k = 0; k < n; k++)
		if (memcmp(rf_region_page(r, idx + k), zero_page, RF_PAGE_SIZE) != 0)
			break;
	if (k < n) {
		atomic_fetch_add(&d->races, 1);
		atomic_fetch_add(&dv->races, 1);
		if (whole)
			k = 0;
		abort_pages(dv, r, idx + k, n - k, old + k, true);
		n = k;
	}
	if (n == 0)
		return false;
	err = rf_vm_discard_locked(dv->vm, addr, (uint64_t)n << RF_PAGE_SHIFT);
	if (err) {
		rf_log(d->e, RF_LOG_ERR, "%s: dedup: madvise(DONTNEED) at gpa 0x%" PRIx64 ": %s",
		       dv->vm->name, r->gpa + (idx << RF_PAGE_SHIFT), strerror(-err));
		abort_pages(dv, r, idx, n, old, true);
		return false;
	}
	RF_TEST_POINT("dedup.zero-discarded", addr);
	for (k = 0; k < n; k++) {
		uint64_t v = old[k] & ~(RF_PTE_F_VOLATILE | RF_PTE_F_NOMERGE);

		forget_cand(d, dv, dr, idx + k, dr ? pi_hash(atomic_load(&dr->pinfo[idx + k])) : 0);
		if (dr)
			pf_reset(dr, idx + k, pf_load(dr, idx + k) & PF_BROKEN_MASK);
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
	return true;
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
			rf_pte_publish(p, v, v);
			break;
		}
		old[k] = v;
		pte_mark_wp(p);
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
	rf_debug_note(dv->vm, addr, len, "unmerge: private copy");
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
			pf_reset(dr, idx + k,
				 count_as_write ? pf_broken_bump(pf_load(dr, idx + k)) : 0);
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
	rf_debug_note(vm, addr, RF_PAGE_SIZE, "release: anonymous");
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
		pf_reset(dr, idx, 0);
	return 0;
}
