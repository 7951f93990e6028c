/* SPDX-License-Identifier: MIT */
/*
 * The scanner: threads that walk every page of every attached VM, pass
 * after pass, and find what can be merged.
 *
 * A pass is cut into units of 512 pages (2 MiB); the threads take units from
 * a shared cursor, so a pass spreads over all of them. For each unit the
 * kernel's pagemap is read first: pages that are not present (never touched,
 * discarded) or map the zero page cost nothing and are skipped unhashed.
 *
 * Each page's XXH3 hash is kept from the previous pass; a page whose hash
 * is unchanged is stable, one whose hash changed is volatile. Then:
 *   - an all-zero page is discarded, at first sight;
 *   - a page whose key has a store page in the content index is merged onto
 *     it, at first sight (as mm/ksm.c merges into its stable tree without
 *     waiting): both cost at most a page fault if the guest writes again;
 *   - every new content is counted in the seen map (struct rf_dedup says
 *     why) under its key; a key counted before gets its Bloom bit, as if a
 *     twin were filed;
 *   - a stable page is paired with another private page filed in the index
 *     (a CAND, mm/ksm.c's unstable tree): both are merged onto a new store
 *     page filled from it. With none, it is filed itself only if its key's
 *     Bloom bit is set (a twin was seen or filed): a pair seen in one pass
 *     is filed and merged in the next, and a unique page costs a bit;
 *   - a volatile page is only counted (it would be broken again at once:
 *     a guest's hot set often starts out as equal pages).
 * A one-hash Bloom filter in front of the index spares the lookup of a key
 * never filed. A page that failed a byte comparison with its hash unchanged
 * (a collision) is not tried again until its content changes, and a page
 * whose merges guests keep breaking is tried on ever fewer passes
 * (PF_BROKEN_MASK, backoff_max). Merges of adjacent pages onto adjacent store
 * pages are gathered into runs and done with one mapping each (merge.c).
 *
 * The same walk notices what guests did since: a MERGED page now mapped
 * anonymous was written (copy-on-write), so it is unmerged; a ZERO or
 * FREE_REPORTED page present again was written, so it is PRIVATE again.
 *
 * Budget: until a pass finds nothing new, a "fastest" engine runs
 * unthrottled; otherwise, after each unit, a thread sleeps long enough to
 * keep within its share of a core and within the pages-per-second limit.
 * The share is measured with the thread's CPU clock over its whole loop
 * (building units, reaping stores and pagemap reads count; time it spent
 * waiting at the barrier or napping between passes is credit). Once
 * converged, the threads share idle_cpu_percent of one core between them,
 * and passes start at most every 100 ms. A rate set with rf_dedup_set_rate
 * replaces all of these.
 *
 * "Nothing new": a pass's work is its merges, its zero pages discarded and
 * its pages hashed for the first time (a guest touching memory it never
 * had: a booting or loading guest). A page rewritten with fresh content is
 * not work, nor is filing it as a candidate; a twin found later is, as the
 * merge (in the pass after the pair was seen, which files and merges it).
 * A live guest does a little of that work on every pass (pages zeroed, a few twins), so the test is
 * relative, with hysteresis:
 *   - a pass converges when its work is at most max(CONV_FLOOR, hashed /
 *     CONV_RATIO) pages, with hashed the pages it hashed (merged, zero
 *     and absent pages are not hashed); 1/512 is 32 pages of 64 MiB hashed,
 *     a churn a fast pass rarely meets, and the floor keeps a small VM from
 *     flapping over a couple of zeroed pages;
 *   - once converged, the engine leaves the idle budget only when a pass's
 *     work so far exceeds max(LEAVE_FLOOR, hashed / LEAVE_RATIO). An idle
 *     pass lasts about 100 / idle_cpu_percent times longer than a fast one
 *     and collects as much more churn; one threshold for both ways made the
 *     engine alternate between a slow pass and an unthrottled one (5.8%
 *     of a core on an idle Linux guest in QEMU, for a 2% budget). A real burst
 *     (thousands of pages) clears the higher bar within a unit or two and
 *     the rest of the pass runs unthrottled.
 * A booting guest's passes are mostly first-time hashes and merges, far
 * above both bars, so convergence is as fast as before.
 *
 * Huge pages (rf_dedup_set_huge, the policy's memory state): merging a
 * page of a transparent huge page splits it, and the guest loses its 2 MiB
 * TLB entries for all 512 pages. In the default mode (SPLIT) the scanner
 * does not look: pages are pages, as for the kernel's KSM. Otherwise it asks
 * the kernel once per unit which of its pages a huge page maps
 * (PAGEMAP_SCAN, PAGE_IS_HUGE; pagemap entries do not say, and
 * /proc/kpageflags needs root), only for regions that may have huge pages
 * (RF_VM_THP or adopted). A huge page that is all zero is discarded whole
 * (one zero run, all or nothing: MADV_DONTNEED of the whole huge page frees
 * it unsplit). Any other is first observed: its pages are hashed and their
 * hashes kept, as every pass does, but none is merged or filed as a
 * candidate (a candidate is remapped with its twin), so ESX's trick holds:
 * when pressure comes, the hashes are ready. In KEEP it stays so. In
 * SPLIT_COLD it is cold if none of its pages changed since the previous
 * pass (the scanner's own stability test, not swap's cold marks, which
 * exist only with swap attached): then its pages are scanned as any, with
 * the hashes just taken, and the first merge splits it; a huge page with a
 * page written since stays whole for this pass. So a huge page is judged
 * over one pass's interval, and a converged engine's passes come at the
 * idle pace (their CPU times 100 / idle_cpu_percent, 0.3-0.7 s for 32 MiB):
 * a guest writing a page of each huge page that often would keep them all
 * hot, nothing would be merged, no work found, and the engine would stay
 * idle for good. A change out of KEEP (pressure) therefore leaves the idle
 * budget for the pass in progress and the next (d->huge_fast_until): the
 * next refreshes every hash at full speed and the one after judges over a
 * full-speed pass; what it merges keeps the engine busy as any work does.
 * A huge page that a unit boundary cuts (RAM not 2 MiB aligned) is judged
 * by the unit's part and never discarded whole.
 *
 * Threads: scan_threads of them (rf-scan/0..), started by the own engine's
 * start (own_engine.c) and joined by its quiesce. Thread 0 builds each pass's
 * units under d->lock; all meet at a barrier before and after the pass.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <xxhash.h>

#include "compat_linux.h"
#include "dedup_internal.h"

#define UNIT_PAGES  512
#define HUGE_PAGES  512 /* 4 KiB pages in a transparent huge page (x86-64 PMD) */
#define CONV_RATIO  512
#define CONV_FLOOR  4
#define LEAVE_RATIO 64
#define LEAVE_FLOOR 64
#define PURGE_NODES 4096 /* 256 KiB of index nodes */

struct scan_ctx {
	struct rf_dedup *d;
	unsigned int id;
	struct merge_run run;
	/* pending zero run */
	struct rf_dedup_vm *zdv;
	struct rf_region *zr;
	uint64_t zidx;
	unsigned int zn;
	uint64_t ents[UNIT_PAGES];
	/* This unit's questions to the broker (broker_client.c): stable
	 * pages with no store page in our index. */
	struct rf_store *rstore; /* the unit's VM's broker store, or NULL */
	bool eager;		 /* not converged: filed candidates ask on every pass */
	unsigned int rq_n;
	uint64_t rq_base; /* the unit's first page in its region */
	uint32_t rq_idx[UNIT_PAGES];
	uint64_t rq_hash[UNIT_PAGES];
	struct rfb_lookup_ent rq_ent[UNIT_PAGES];
	/* This unit's work besides merges: pages hashed for the first time,
	 * and (while not converged) twins of seen pages filed. */
	uint64_t new_work;
	uint64_t hashed; /* pages hashed, this unit */
	uint64_t gen;	 /* pass number */
	/* Throttle: the thread's CPU clock and the wall clock when it last
	 * slept (or was last let go without sleeping). */
	uint64_t cpu_mark, wall_mark;
	/* The unit's huge pages (huge_ranges), as pages [lo, hi) of the unit,
	 * one entry per huge page (whole: all of it is in the unit); and
	 * what observing one found: the hashes, and whether a page changed. */
	unsigned int nhuge;
	struct huge_range {
		uint32_t lo, hi;
		bool whole;
	} huge[4];
	uint64_t hbuf[UNIT_PAGES];
	bool hot;
	uint64_t kept; /* pages left unmerged in huge pages, this unit */
};

/* How scan_page treats a page (scanner.c's header, "Huge pages"). */
enum scan_how {
	SCAN_ACT,	 /* any page: hashed, then merged, discarded or filed */
	SCAN_OBSERVE,	 /* in a huge page kept whole: hashed and its hash kept, never acted on */
	SCAN_ACT_HASHED, /* in a cold huge page, observed a moment ago: acted on with that hash */
};

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void flush_zero(struct scan_ctx *c)
{
	if (c->zn)
		zero_run_flush(c->d, c->zdv, c->zr, c->zidx, c->zn, false);
	c->zn = 0;
}

static void add_store(struct scan_ctx *c, struct rf_dedup_vm *dv, struct rf_region *r, uint64_t idx,
		      struct rf_store *s, uint32_t pg, uint64_t h);

/* Flush the pending run, then merge what it carried (merge.c: carry):
 * broker store pages filled for it that it could not map with the run. */
static void flush_run(struct scan_ctx *c)
{
	struct merge_run *m = &c->run;

	merge_run_flush(c->d, m);
	while (m->ncarry) {
		struct merge_carry cr[64];
		unsigned int n = m->ncarry < 64 ? m->ncarry : 64;
		struct rf_store *s = m->carry_store;

		m->ncarry -= n;
		memcpy(cr, m->carry + m->ncarry, n * sizeof(cr[0]));
		for (unsigned int i = 0; i < n; i++)
			add_store(c, cr[i].dv, cr[i].r, cr[i].idx, s, cr[i].pg, cr[i].hash);
	}
	/* The caller starts a run of its own kind: none may be left pending
	 * (a store run carries nothing, so this ends here). */
	if (m->n)
		merge_run_flush(c->d, m);
}

static void flush_runs(struct scan_ctx *c)
{
	if (c->run.n)
		flush_run(c);
	flush_zero(c);
}

static void add_zero(struct scan_ctx *c, struct rf_dedup_vm *dv, struct rf_region *r, uint64_t idx)
{
	if (c->zn &&
	    (c->zdv != dv || c->zr != r || c->zidx + c->zn != idx || c->zn == MERGE_RUN_MAX))
		flush_zero(c);
	if (c->zn == 0) {
		c->zdv = dv;
		c->zr = r;
		c->zidx = idx;
	}
	c->zn++;
}

static void add_store(struct scan_ctx *c, struct rf_dedup_vm *dv, struct rf_region *r, uint64_t idx,
		      struct rf_store *s, uint32_t pg, uint64_t h)
{
	struct merge_run *m = &c->run;

	if (m->n && (m->pair || m->self || m->dv != dv || m->r != r || m->idx + m->n != idx ||
		     m->store != s || m->pg + m->n != pg || m->n == MERGE_RUN_MAX))
		flush_run(c);
	if (m->n == 0) {
		m->dv = dv;
		m->r = r;
		m->idx = idx;
		m->store = s;
		m->pg = pg;
		m->pair = false;
		m->self = false;
	}
	m->hashes[m->n++] = h;
}

static void add_pair(struct scan_ctx *c, struct rf_dedup_vm *dv, struct rf_region *r, uint64_t idx,
		     const struct index_node *cand, uint64_t h)
{
	struct merge_run *m = &c->run;
	/* Alive for this read-side section: a region's state is freed only a
	 * grace period after its CAND nodes are removed. */
	struct rf_dedup_vm *adv = cand->dr->dv;
	struct rf_region *ar = cand->dr->r;

	if (m->n && (!m->pair || m->dv != dv || m->r != r || m->idx + m->n != idx || m->ar != ar ||
		     m->aidx + m->n != cand->idx || m->n == MERGE_RUN_MAX))
		flush_run(c);
	if (m->n == 0) {
		m->dv = dv;
		m->r = r;
		m->idx = idx;
		m->pair = true;
		m->self = false;
		m->adv = adv;
		m->ar = ar;
		m->aidx = cand->idx;
		m->store = NULL;
	}
	m->hashes[m->n++] = h;
}

/* A page another process waits for (a TWIN): it seeds a broker store page
 * itself, and is merged onto it. */
static void add_self(struct scan_ctx *c, struct rf_dedup_vm *dv, struct rf_region *r, uint64_t idx,
		     uint64_t h)
{
	struct merge_run *m = &c->run;

	if (m->n &&
	    (!m->self || m->dv != dv || m->r != r || m->idx + m->n != idx || m->n == MERGE_RUN_MAX))
		flush_run(c);
	if (m->n == 0) {
		m->dv = dv;
		m->r = r;
		m->idx = idx;
		m->pair = false;
		m->self = true;
		m->store = NULL;
		m->adv = NULL;
	}
	m->hashes[m->n++] = h;
}

static bool page_is_zero(const void *p)
{
	const uint64_t *w = p;

	for (unsigned int i = 0; i < RF_PAGE_SIZE / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}

/*
 * A ZERO or FREE_REPORTED page found resident again was written by the
 * guest since it was discarded: it is the guest's own memory again, and
 * PRIVATE, so that it is merged, swapped and charged like any other. The
 * pagemap reading that found it was taken without the lock; it is read
 * again under it (the balloon may have discarded the page again since).
 */
static void written_to_private(struct rf_dedup_vm *dv, struct rf_region *r, struct dedup_region *dr,
			       uint64_t idx)
{
	rf_pte_t *p = &r->pte[idx];
	enum rf_page_state s;
	uint64_t v, ent;

	if (!rf_pte_trylock(p, &v))
		return;
	s = rf_pte_state(v);
	if ((s == RF_PAGE_ZERO || s == RF_PAGE_FREE_REPORTED) &&
	    rf_pagemap_read(dv->vm->e, rf_region_page(r, idx), 1, &ent) == 0 &&
	    rf_pagemap_resident(dv->vm->e, ent) && !(ent & PM_FILE)) {
		pf_reset(dr, idx, pf_broken_bump(pf_load(dr, idx)));
		v = rf_pte_with_state(v, RF_PAGE_PRIVATE);
	}
	rf_pte_unlock(dv->vm, p, rf_pte_with_state(v, s), v);
}

/* Ask the broker about page @idx (hash @h) at the end of the unit. */
static void queue_ask(struct scan_ctx *c, uint64_t idx, uint64_t h)
{
	c->rq_idx[c->rq_n] = (uint32_t)(idx - c->rq_base);
	c->rq_hash[c->rq_n++] = h;
}

static void scan_page(struct scan_ctx *c, struct rf_dedup_vm *dv, struct rf_region *r,
		      struct dedup_region *dr, uint64_t idx, uint64_t ent, enum scan_how how)
{
	struct rf_dedup *d = c->d;
	uint64_t v = rf_pte_peek(&r->pte[idx]), h;
	uint32_t pw = atomic_load_explicit(&dr->pinfo[idx], memory_order_relaxed);
	uint8_t pf = (uint8_t)pw;
	struct index_key key = {0, dv->domain, d->cfg.cross_node ? 0 : (int16_t)dv->numa};
	bool present = ent & PM_PRESENT, file = ent & PM_FILE;
	struct index_node *n, *sn, *cn;
	bool stable;
	void *page;

	/* The observation just now did what follows for pages that are not
	 * private and resident (none are, in a huge page mapped whole). */
	if (how == SCAN_ACT_HASHED && rf_pte_state(v) != RF_PAGE_PRIVATE)
		return;
	if (rf_pte_state(v) == RF_PAGE_MERGED) {
		/* Written: the kernel made a private copy. The unit's pagemap
		 * may predate the merge (another thread's pair took this page
		 * as its seed while this unit was being scanned): read it
		 * again, or a merge just made is undone and counted as a
		 * guest's write. */
		if (present && !file &&
		    rf_pagemap_read(d->e, rf_region_page(r, idx), 1, &ent) == 0 &&
		    (ent & PM_PRESENT) && !(ent & PM_FILE))
			unmerge_page(d, dv, r, idx, 1, true);
		return;
	}
	if (rf_pte_state(v) == RF_PAGE_ZERO || rf_pte_state(v) == RF_PAGE_FREE_REPORTED) {
		if (rf_pagemap_resident(d->e, ent) && !file)
			written_to_private(dv, r, dr, idx);
		return;
	}
	if (rf_pte_state(v) != RF_PAGE_PRIVATE || (v & RF_PTE_EXCLUDED) || !present || file ||
	    !rf_pagemap_resident(d->e, ent)) {
		if (pf & PF_CAND) {
			key.hash = pi_hash(pw);
			if (pf_clear(dr, idx, PF_CAND) & PF_CAND)
				index_del_cand(d->ht, &key, dr, idx);
		}
		return;
	}
	page = rf_region_page(r, idx);
	/* A zero page is found before it is hashed: hashing a page costs
	 * more than finding that it is not zero, which its first words
	 * almost always tell. Not a filed page (its node goes when its hash
	 * changes, below) nor one a guest keeps rewriting (the backoff
	 * below applies to zero pages too). */
	if (how == SCAN_ACT && !(pf & (PF_CAND | PF_BROKEN_MASK)) && page_is_zero(page)) {
		atomic_fetch_add_explicit(&dv->scanned, 1, memory_order_relaxed);
		add_zero(c, dv, r, idx);
		return;
	}
	if (how == SCAN_ACT_HASHED) {
		h = c->hbuf[idx - c->rq_base];
	} else {
		h = dedup_hash_fn(page, RF_PAGE_SIZE);
		atomic_fetch_add_explicit(&dv->scanned, 1, memory_order_relaxed);
		c->hashed++;
	}
	key.hash = h;
	stable = (pf & PF_HASHED) && pi_hash(pw) == ((uint32_t)h & PI_HASH_MASK);
	if (!stable) {
		if (pf & PF_HASHED)
			atomic_fetch_add_explicit(&dv->volatile_skipped, 1, memory_order_relaxed);
		else if (!(pf & PF_BROKEN_MASK))
			c->new_work++; /* never seen; a rewritten page is only churn */
		if (pf & PF_CAND) {
			struct index_key old = key;

			old.hash = pi_hash(pw);
			if (pf_clear(dr, idx, PF_CAND) & PF_CAND)
				index_del_cand(d->ht, &old, dr, idx);
		}
		pf = PF_HASHED | (pf & PF_BROKEN_MASK);
		atomic_store_explicit(&dr->pinfo[idx], pi_word(h, pf), memory_order_relaxed);
	}
	if (how == SCAN_OBSERVE) {
		/* Kept whole: no merge, and no twin's merge either (a filed
		 * candidate is remapped with its twin), so it is not filed.
		 * Its first sight is counted as any page's, so that it and
		 * its twins pair as soon as the huge page is opened. */
		c->hbuf[idx - c->rq_base] = h;
		if (!stable) {
			c->hot = true;
			if (seen_set(d, &key))
				bloom_set(d, &key);
			else
				atomic_fetch_add_explicit(&d->seen_count, 1, memory_order_relaxed);
		} else if ((pf & PF_CAND) && (pf_clear(dr, idx, PF_CAND) & PF_CAND)) {
			index_del_cand(d->ht, &key, dr, idx);
		}
		return;
	}
	if ((pf & PF_BROKEN_MASK) && d->cfg.backoff_max) {
		unsigned int k = (pf & PF_BROKEN_MASK) >> PF_BROKEN_SHIFT;
		uint64_t mask = (1ull << (k < d->cfg.backoff_max ? k : d->cfg.backoff_max)) - 1;

		if (((c->gen + idx) & mask) != 0) {
			atomic_fetch_add_explicit(&dv->volatile_skipped, 1, memory_order_relaxed);
			return;
		}
	}
	/*
	 * Zero pages go at first sight, and so does a page equal to a store
	 * page (as KSM merges into its stable tree without waiting): both
	 * cost at most a page fault if the guest writes again. Only pairing
	 * two private pages into a new store page waits for stability.
	 */
	if (h == d->zero_hash && page_is_zero(page)) {
		add_zero(c, dv, r, idx);
		return;
	}
	if (d->cfg.mode == RF_DEDUP_ZERO || (pf & PF_NOMERGE))
		return;
	/* A filed candidate is found by its twin's lookup; it looks itself up
	 * only now and then, for the rare store page made in parallel. Across
	 * processes its twin cannot find it here: until the engine converges
	 * it asks the broker on every pass (the other processes make their
	 * store pages while they scan, as this one does), then one in 8. */
	if (stable && (pf & PF_CAND) && ((c->gen + idx) & 7) != 0) {
		if (c->rstore && c->eager)
			queue_ask(c, idx, h);
		return;
	}
	if (bloom_test(d, &key))
		index_lookup2(d->ht, &key, dr, idx, &sn, &cn);
	else
		sn = cn = NULL;
	if (sn && store_get_unless_zero(sn->store, sn->pg)) {
		add_store(c, dv, r, idx, sn->store, sn->pg, h);
		return;
	}
	if (!stable) {
		/* This content's first sight: its key is counted in the seen
		 * map now, and a key counted before (a twin, here or in
		 * another VM of the domain) gets its Bloom bit, so that both
		 * pages, stable on their next pass, file and pair then. */
		if (!seen_set(d, &key)) {
			atomic_fetch_add_explicit(&d->seen_count, 1, memory_order_relaxed);
			return;
		}
		bloom_set(d, &key);
		/* It waits a pass, stable, to be filed or paired, as mm/ksm.c's
		 * pages do. Pairing pages at first sight while the engine
		 * converged (tried) merged a guest's hot set, whose pages
		 * start out equal, and its writes then stalled on the
		 * copies for seconds (bench-guest-cost: hotcold at 1-5% of
		 * its throughput). */
		return;
	}
	if (cn) {
		add_pair(c, dv, r, idx, cn, h);
		return;
	}
	/* No twin here: ask the broker (at the end of the unit) whether
	 * another process has one: when first seen, then as a filed
	 * candidate does (every pass until converged, then one in 8), so that
	 * a candidate of ours stays fresh at the broker and a twin filed
	 * there since is found within a few passes. */
	if (c->rstore && (!(pf & (PF_SEEN | PF_CAND)) || c->eager || ((c->gen + idx) & 7) == 0))
		queue_ask(c, idx, h);
	if (!(pf & PF_CAND)) {
		/* A stable page with no twin filed is filed itself only if
		 * the filter has its key's bit: a twin was counted in the
		 * seen map (above, at first sight) or filed. Otherwise it
		 * stays counted, not filed: most pages of a guest are unique.
		 * PF_SEEN marks its first stable pass. */
		if (!(pf & PF_SEEN))
			pf_or(dr, idx, PF_SEEN);
		if (!bloom_test(d, &key))
			return;
		/* Not work (a page a guest keeps rewriting with contents
		 * it had before finds its own old bits): the pair's merge
		 * is, and comes in this pass or the next, a pass that the
		 * fresh hashes of the pair's pages made work already. */
		n = index_node_new(d->e);
		if (!n)
			return;
		n->kind = NODE_CAND;
		n->hash = h;
		n->domain = key.domain;
		n->numa = key.numa;
		n->dr = dr;
		n->idx = idx;
		pf_or(dr, idx, PF_CAND);
		index_add(d->ht, n);
		/* Not work by itself (a live guest's rewritten pages all end
		 * here): its twin's merge will be. */
		/* A twin filed by another thread at the same moment: each
		 * thread adds, then sets the key's bit (a full barrier); the
		 * second to set it sees the bit set and finds the other. */
		if (bloom_set(d, &key) && d->nthreads > 1) {
			index_lookup2(d->ht, &key, dr, idx, &sn, &cn);
			if (cn)
				add_pair(c, dv, r, idx, cn, h);
		}
	}
}

/* The unit's one LOOKUP: hits are merged onto the broker's pages, twins
 * seed new ones. Pages were hashed a moment ago; the merge compares bytes
 * (or hashes again) under write-protect, as always. */
static void ask_broker(struct scan_ctx *c, struct rf_dedup_vm *dv, struct rf_region *r)
{
	struct rf_store *s = c->rstore;

	if (broker_lookup(c->d, s, c->rq_hash, c->rq_n, c->rq_ent) != 0)
		return;
	for (unsigned int i = 0; i < c->rq_n; i++) {
		uint64_t idx = c->rq_base + c->rq_idx[i];

		if (c->rq_ent[i].status == RFB_HIT)
			add_store(c, dv, r, idx, s, c->rq_ent[i].pg, c->rq_hash[i]);
		else if (c->rq_ent[i].status == RFB_TWIN)
			add_self(c, dv, r, idx, c->rq_hash[i]);
	}
	flush_runs(c);
}

/*
 * The huge pages of the unit's @npages pages from @idx0 of @r: one
 * PAGEMAP_SCAN for the unit (not a question per page), pages mapped by a
 * huge page other than the huge zero page. A range the ioctl returns is cut
 * at huge page boundaries (adjacent huge pages come back as one range).
 * None if the ioctl fails: the unit is then scanned as 4 KiB pages.
 */
static void huge_ranges(struct scan_ctx *c, struct rf_region *r, uint64_t idx0, uint64_t npages)
{
	const uintptr_t hb = (uintptr_t)HUGE_PAGES << RF_PAGE_SHIFT;
	uintptr_t start = (uintptr_t)rf_region_page(r, idx0);
	struct page_region reg[4];
	struct pm_scan_arg arg = {
	    .size = sizeof(arg),
	    .start = start,
	    .end = start + (npages << RF_PAGE_SHIFT),
	    .vec = (uintptr_t)reg,
	    .vec_len = 4,
	    .category_mask = PAGE_IS_HUGE | PAGE_IS_PFNZERO,
	    .category_inverted = PAGE_IS_PFNZERO,
	    .return_mask = PAGE_IS_HUGE,
	};
	int n = ioctl(c->d->e->pagemap_fd, PAGEMAP_SCAN, &arg);

	c->nhuge = 0;
	for (int i = 0; i < n; i++)
		for (uintptr_t a = reg[i].start; a < reg[i].end;) {
			uintptr_t next = (a + hb) & ~(hb - 1);

			if (next > reg[i].end)
				next = reg[i].end;
			if (c->nhuge == sizeof(c->huge) / sizeof(c->huge[0]))
				return;
			c->huge[c->nhuge++] = (struct huge_range){
			    (uint32_t)((a - start) >> RF_PAGE_SHIFT),
			    (uint32_t)((next - start) >> RF_PAGE_SHIFT),
			    !(a & (hb - 1)) && next - a == hb,
			};
			a = next;
		}
}

/* Every page of huge page @h is private, resident and all zero (the first
 * words of a page in use almost always say it is not). */
static bool huge_is_zero(struct scan_ctx *c, struct rf_region *r, const struct huge_range *h)
{
	for (uint32_t k = h->lo; k < h->hi; k++) {
		uint64_t idx = c->rq_base + k, v = rf_pte_peek(&r->pte[idx]), ent = c->ents[k];

		if (rf_pte_state(v) != RF_PAGE_PRIVATE || (v & RF_PTE_EXCLUDED) ||
		    !rf_pagemap_resident(c->d->e, ent) || (ent & PM_FILE) ||
		    !page_is_zero(rf_region_page(r, idx)))
			return false;
	}
	return true;
}

/*
 * Huge page @h of the unit, in mode @mode (KEEP or SPLIT_COLD): discarded
 * whole if all zero; else observed, page by page, and kept whole unless
 * the mode opens cold huge pages and none of its pages changed since the
 * previous pass. Then its pages are scanned as any (with the hashes just
 * taken), and the first merge or discard splits it.
 */
static void scan_huge(struct scan_ctx *c, struct rf_dedup_vm *dv, struct rf_region *r,
		      struct dedup_region *dr, const struct huge_range *h, enum rf_dedup_huge mode)
{
	struct rf_dedup *d = c->d;

	if (h->whole && huge_is_zero(c, r, h)) {
		flush_runs(c);
		if (zero_run_flush(d, dv, r, c->rq_base + h->lo, h->hi - h->lo, true)) {
			atomic_fetch_add_explicit(&dv->scanned, h->hi - h->lo,
						  memory_order_relaxed);
			atomic_fetch_add(&d->huge_zero, 1);
			return;
		}
	}
	c->hot = false;
	for (uint32_t k = h->lo; k < h->hi; k++)
		scan_page(c, dv, r, dr, c->rq_base + k, c->ents[k], SCAN_OBSERVE);
	if (mode != RF_DEDUP_HUGE_SPLIT_COLD || c->hot) {
		c->kept += h->hi - h->lo;
		return;
	}
	atomic_fetch_add(&d->huge_opened, 1);
	for (uint32_t k = h->lo; k < h->hi; k++)
		scan_page(c, dv, r, dr, c->rq_base + k, c->ents[k], SCAN_ACT_HASHED);
}

static void scan_unit(struct scan_ctx *c, const struct scan_unit *u)
{
	struct rf_dedup_vm *dv = u->dv;
	struct dedup_region *dr;
	struct rf_region *r;
	uint64_t idx0, work, hashed;
	enum rf_dedup_huge mode;
	unsigned int hn = 0;

	if (atomic_load(&dv->dead))
		return;
	rf_vm_regions_rdlock(dv->vm);
	r = __rf_vm_find_region(dv->vm, u->gpa);
	if (!r || rf_region_index(r, u->gpa) + u->npages > r->npages)
		goto out;
	dr = dedup_region_of(dv, r, true);
	if (!dr)
		goto out;
	idx0 = rf_region_index(r, u->gpa);
	if (rf_pagemap_read(c->d->e, rf_region_page(r, idx0), u->npages, c->ents) != 0)
		goto out;
	c->new_work = 0;
	c->hashed = 0;
	c->rstore = broker_store_for(c->d, dv);
	c->eager = !atomic_load(&c->d->converged);
	c->rq_n = 0;
	c->rq_base = idx0;
	c->kept = 0;
	c->nhuge = 0;
	/* Read once per unit: a mode set meanwhile applies from the next. */
	mode = (enum rf_dedup_huge)atomic_load_explicit(&c->d->huge_mode, memory_order_relaxed);
	if (mode != RF_DEDUP_HUGE_SPLIT && rf_region_may_be_thp(dv->vm, r))
		huge_ranges(c, r, idx0, u->npages);
	urcu_memb_read_lock();
	for (uint64_t k = 0; k < u->npages;) {
		if (hn < c->nhuge && k == c->huge[hn].lo) {
			scan_huge(c, dv, r, dr, &c->huge[hn], mode);
			k = c->huge[hn++].hi;
			continue;
		}
		scan_page(c, dv, r, dr, idx0 + k, c->ents[k], SCAN_ACT);
		k++;
	}
	flush_runs(c);
	if (c->kept)
		atomic_fetch_add_explicit(&c->d->huge_kept, c->kept, memory_order_relaxed);
	if (c->rq_n)
		ask_broker(c, dv, r);
	urcu_memb_read_unlock();
	work = atomic_fetch_add(&c->d->pass_merges, c->new_work) + c->new_work;
	hashed = atomic_fetch_add(&c->d->pass_hashed, c->hashed) + c->hashed;
	/* Guests are changing memory in earnest: leave the idle budget now
	 * rather than at the end of a slow pass. */
	if (work > LEAVE_FLOOR && work > hashed / LEAVE_RATIO)
		atomic_store(&c->d->converged, false);
out:
	rf_vm_regions_unlock(dv->vm);
}

/* Sleep until @ns passed or the engine is kicked or stopped. */
static void nap(struct rf_dedup *d, uint64_t ns)
{
	struct timespec ts;

	if (ns == 0)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	ns += (uint64_t)ts.tv_nsec;
	ts.tv_sec += (time_t)(ns / 1000000000ull);
	ts.tv_nsec = (long)(ns % 1000000000ull);
	pthread_mutex_lock(&d->lock);
	if (!atomic_load(&d->stop) && !d->kick)
		pthread_cond_timedwait(&d->wake, &d->lock, &ts);
	pthread_mutex_unlock(&d->lock);
}

/*
 * After a unit: sleep as the budget wants. The CPU share is kept over the
 * whole loop: the CPU used since the last call (this unit, and whatever
 * came between: building units, reaping stores, the barrier) against the
 * wall time since then, naps between passes included.
 */
static void throttle(struct scan_ctx *c, uint64_t unit_wall_ns, uint64_t pages)
{
	struct rf_dedup *d = c->d;
	bool conv = atomic_load(&d->converged);
	unsigned int pct = conv ? d->cfg.idle_cpu_percent : d->cfg.cpu_percent;
	uint64_t sleep = 0, rate = atomic_load(&d->rate_pps);
	uint64_t cpu = thread_cpu_ns(), wall = rf_now_ns();
	uint64_t dcpu = cpu - c->cpu_mark, dwall = wall - c->wall_mark;

	if (rate) {
		/* A rate set at run time replaces every other budget. */
		uint64_t want = pages * 1000000000ull / (rate / d->nthreads + 1);

		if (want > unit_wall_ns)
			sleep = want - unit_wall_ns;
	} else if (!conv && d->cfg.fastest) {
		sleep = 0;
	} else {
		if (pct > 0 && pct < 100) {
			/* idle_cpu_percent is the engine's, shared by its
			 * threads; cpu_percent is each thread's. */
			uint64_t need = dcpu * 100 * (conv ? d->nthreads : 1) / pct;

			if (need > dwall)
				sleep = need - dwall;
		}
		if (d->cfg.pages_per_sec && !conv) {
			uint64_t want =
			    pages * 1000000000ull / (d->cfg.pages_per_sec / d->nthreads + 1);

			if (want > unit_wall_ns && want - unit_wall_ns > sleep)
				sleep = want - unit_wall_ns;
		}
	}
	atomic_store(&d->thread_cpu_ns[c->id], cpu);
	nap(d, sleep);
	/* The nap's own CPU goes into the next interval; its wall time paid
	 * this one's debt and is not credited again. */
	c->cpu_mark = cpu;
	c->wall_mark = rf_now_ns();
}

/*
 * Pages of the attached VMs' RAM that are resident now (pagemap, as the
 * scanner reads it: no system call beyond those the library makes), for
 * the Bloom filter's first size: before a pass has hashed anything, the maps
 * would run a whole first pass at their smallest, and over-full maps send
 * nearly every page of that pass to an index lookup. An over-estimate
 * (zero-filled pages count; bloom_fit replaces maps sized from it once the
 * first count of pages hashed is known) only makes the maps bigger for a
 * pass.
 */
static uint64_t resident_pages(struct rf_dedup *d)
{
	uint64_t ents[UNIT_PAGES];
	uint64_t n = 0;

	pthread_mutex_lock(&d->lock);
	for (struct rf_dedup_vm *dv = d->vms; dv; dv = dv->next) {
		struct rf_region *r;

		if (atomic_load(&dv->dead))
			continue;
		rf_vm_regions_rdlock(dv->vm);
		for (unsigned int i = 0; (r = __rf_vm_region(dv->vm, i)); i++) {
			for (uint64_t p = 0; p < r->npages; p += UNIT_PAGES) {
				uint64_t k =
				    r->npages - p < UNIT_PAGES ? r->npages - p : UNIT_PAGES;

				if (rf_pagemap_read(d->e, rf_region_page(r, p), k, ents) != 0)
					break;
				for (uint64_t j = 0; j < k; j++)
					n += rf_pagemap_resident(d->e, ents[j]);
			}
		}
		rf_vm_regions_unlock(dv->vm);
	}
	pthread_mutex_unlock(&d->lock);
	return n;
}

static void build_units(struct rf_dedup *d)
{
	unsigned int n = 0;

	pthread_mutex_lock(&d->lock);
	for (struct rf_dedup_vm *dv = d->vms; dv; dv = dv->next) {
		if (atomic_load(&dv->dead))
			continue;
		struct rf_region *r;

		rf_vm_regions_rdlock(dv->vm);
		for (unsigned int i = 0; (r = __rf_vm_region(dv->vm, i)); i++) {
			for (uint64_t p = 0; p < r->npages; p += UNIT_PAGES) {
				if (n == d->units_cap) {
					unsigned int cap = d->units_cap ? 2 * d->units_cap : 1024;
					struct scan_unit *nu = rf_zalloc(d->e, cap * sizeof(*nu));

					if (!nu)
						break;
					if (d->units)
						memcpy(nu, d->units, n * sizeof(*nu));
					rf_free(d->e, d->units);
					d->units = nu;
					d->units_cap = cap;
				}
				d->units[n].dv = dv;
				d->units[n].gpa = r->gpa + (p << RF_PAGE_SHIFT);
				d->units[n].npages =
				    r->npages - p < UNIT_PAGES ? r->npages - p : UNIT_PAGES;
				atomic_fetch_add(&dv->refs, 1);
				n++;
			}
		}
		rf_vm_regions_unlock(dv->vm);
	}
	d->nunits = n;
	atomic_store(&d->next_unit, 0);
	d->kick = false;
	pthread_mutex_unlock(&d->lock);
}

/*
 * Thread 0, after a pass: give freed index nodes' pages back to the kernel.
 * Merging frees most candidates at once, and the allocator would keep their
 * pages dirty until its decay ran, which only allocations move on (a
 * converged engine makes few). After a pass that freed at least PURGE_NODES
 * nodes, and on the pass that converges if any were freed since the last
 * purge. Nodes are freed a grace period after their removal: those still
 * pending count for the next pass.
 */
static void purge_freed(struct rf_dedup *d, bool converging)
{
	uint64_t freed = index_nodes_freed();

	if (freed - d->purge_mark >= PURGE_NODES || (converging && freed != d->purge_mark)) {
		rf_arena_purge(d->e);
		d->purge_mark = freed;
	}
}

struct thread_arg {
	struct rf_dedup *d;
	unsigned int id;
};

static void *scanner_main(void *arg)
{
	struct thread_arg *ta = arg;
	struct rf_dedup *d = ta->d;
	unsigned int id = ta->id;
	struct scan_ctx *c;
	bool stop;

	rf_free(d->e, ta);
	{
		char n[12];

		snprintf(n, sizeof(n), "%u", id);
		rf_thread_name(d->e, "scan", n);
	}
	pthread_mutex_lock(&d->lock);
	while (d->go == 0)
		pthread_cond_wait(&d->wake, &d->lock);
	pthread_mutex_unlock(&d->lock);
	if (d->go < 0)
		return NULL;
	c = rf_zalloc(d->e, sizeof(*c));
	if (c) {
		c->d = d;
		c->id = id;
		c->cpu_mark = thread_cpu_ns();
		c->wall_mark = rf_now_ns();
	}
	dedup_rcu_thread_online();
	for (;;) {
		if (id == 0) {
			/* Between passes: once converged, start at most every
			 * 100 ms (the per-unit throttle keeps the CPU share). */
			if (atomic_load(&d->converged) && !atomic_load(&d->rate_pps) &&
			    d->cfg.idle_cpu_percent < 100)
				nap(d, 100000000ull);
			broker_tick(d);
			atomic_fetch_add(&d->gen, 1);
			atomic_store(&d->pass_merges, 0);
			uint64_t hashed = atomic_exchange(&d->pass_hashed, 0);

			bool guess = hashed == 0 && d->bloom_bits == BLOOM_MIN_BITS;

			if (guess)
				hashed = resident_pages(d);
			build_units(d);
			/* The other threads wait at the barrier: the one
			 * time the Bloom filter may be replaced, sized to
			 * the pages the pass before hashed. A failure keeps
			 * the old one (logged), tried again next pass. */
			bloom_fit(d, hashed);
			if (guess && d->bloom_bits > BLOOM_MIN_BITS)
				d->bloom_guessed = true;
			/* One decision for all threads: each reading d->stop
			 * itself could leave one waiting at the barrier of a
			 * pass the others have left. */
			d->pass_stop = atomic_load(&d->stop);
		}
		pthread_barrier_wait(&d->barrier);
		stop = d->pass_stop;
		if (c)
			c->gen = atomic_load(&d->gen);
		for (;;) {
			unsigned int u = atomic_fetch_add(&d->next_unit, 1);
			uint64_t t0;

			if (u >= d->nunits)
				break;
			if (c && !stop && !atomic_load(&d->stop)) {
				t0 = rf_now_ns();
				scan_unit(c, &d->units[u]);
				throttle(c, rf_now_ns() - t0, d->units[u].npages);
			}
			atomic_fetch_sub(&d->units[u].dv->refs, 1);
		}
		pthread_barrier_wait(&d->barrier);
		if (stop)
			break;
		if (id == 0) {
			for (int i = 0; i < atomic_load(&d->nslots); i++)
				store_reap(&d->stores[i], d->ht);
			atomic_fetch_add(&d->passes, 1);
			uint64_t work = atomic_load(&d->pass_merges);
			uint64_t hashed = atomic_load(&d->pass_hashed);
			bool was = atomic_load(&d->converged);

			/* Converged, or still converged: see "Nothing new"
			 * above. Still converged means no unit of this pass
			 * found work above the higher bar (scan_unit). Not
			 * after a change out of KEEP until the pass that
			 * judges the huge pages (rf_dedup_set_huge). */
			if (atomic_load(&d->gen) <= atomic_load(&d->huge_fast_until))
				atomic_store(&d->converged, false);
			else if (!was)
				atomic_store(&d->converged,
					     work <= CONV_FLOOR || work <= hashed / CONV_RATIO);
			purge_freed(d, !was && atomic_load(&d->converged));
		}
	}
	dedup_rcu_thread_offline();
	rf_free(d->e, c);
	return NULL;
}

int scanner_start(struct rf_dedup *d)
{
	unsigned int i;
	int err = 0;

	d->nthreads = d->cfg.scan_threads;
	d->go = 0;
	err = pthread_barrier_init(&d->barrier, NULL, d->nthreads);
	if (err)
		return -err;
	for (i = 0; i < d->nthreads; i++) {
		struct thread_arg *ta = rf_zalloc(d->e, sizeof(*ta));

		if (!ta) {
			err = ENOMEM;
			break;
		}
		ta->d = d;
		ta->id = i;
		err = pthread_create(&d->threads[i], NULL, scanner_main, ta);
		if (err) {
			rf_free(d->e, ta);
			break;
		}
	}
	/* Threads wait for the go: the barrier counts all of them, so either
	 * all run or none does. */
	pthread_mutex_lock(&d->lock);
	d->go = i == d->nthreads ? 1 : -1;
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	if (i < d->nthreads) {
		rf_log(d->e, RF_LOG_ERR, "dedup: starting scanner thread %u: %s", i, strerror(err));
		for (unsigned int k = 0; k < i; k++)
			pthread_join(d->threads[k], NULL);
		pthread_barrier_destroy(&d->barrier);
		d->nthreads = 0;
		return -err;
	}
	return 0;
}

void scanner_stop(struct rf_dedup *d)
{
	pthread_mutex_lock(&d->lock);
	atomic_store(&d->stop, true);
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	for (unsigned int i = 0; i < d->nthreads; i++)
		pthread_join(d->threads[i], NULL);
	d->nthreads = 0;
	pthread_barrier_destroy(&d->barrier);
}

uint64_t scanner_cpu_ns(struct rf_dedup *d)
{
	uint64_t sum = atomic_load(&d->cpu_ns_exited);

	for (unsigned int i = 0; i < 64; i++)
		sum += atomic_load(&d->thread_cpu_ns[i]);
	return sum;
}
