/* SPDX-License-Identifier: MIT */
/*
 * Working-set sampling: which resident pages does the guest use?
 *
 * Nothing on this kernel tells the library that a resident page was read
 * (no idle-page tracking, no soft-dirty, and the VM's userfaultfd cannot be
 * WP_ASYNC: swapper.c says why). So, as ESX does, the pager takes pages out
 * of the guest's mapping and watches for the guest to fault them back. A
 * page taken out is *staged*: moved (UFFDIO_MOVE; copy mode: protected,
 * copied and discarded) into a slot of the sample area, a buffer beside the
 * swap-out staging buffer, and published SWAPPED with a handle that names
 * its slot (PAGER_H_SAMPLE | slot). Nothing is compressed or written: the
 * bytes sit in memory, and the guest's next touch, read or write, faults
 * to the pager, which maps the same bytes back with UFFDIO_COPY before the
 * access goes on (swap_in.c). Because a staged page is SWAPPED like any
 * other, every path that meets swapped pages handles it with no new code:
 * the dedup engine leaves it alone (it merges PRIVATE pages only), a
 * discard (balloon, free page reporting, an outside madvise) frees its slot
 * through pager_drop_page, an unmap likewise.
 *
 * Two kinds of staged pages, in the same slots:
 *   - the random sample (SAMPLE_EST): each period, sample_pages pages drawn
 *     uniformly from the VM's resident swappable pages. The share the guest
 *     touched within the period, smoothed over periods (a quarter of each
 *     new share), times the VM's resident bytes, is its active memory
 *     (rf_swap_stats.active_bytes, like ESX's "active");
 *   - the hand's probes (SAMPLE_PROBE): with sampling on, the CLOCK hand
 *     (swapper.c) no longer evicts a page because no fault cleared its cold
 *     mark (a page read every millisecond never faults): it stages it, and
 *     the page goes to the store only if the guest leaves it alone for a
 *     whole period. So a hot set that is only ever read stays resident.
 * A staged page the guest touched comes back marked hot (RF_PTE_F_HOT and
 * _HOT2, a count of 3), and the hand passes it over three times. A staged page the period ends on
 * untouched is settled here: a probe (or a sample page) goes straight to the store if the VM is
 * still above its target (it is out of the mapping already), else it is put back marked cold, first
 * in line when the hand comes.
 *
 * When the VM is over its throttle line (a guest waits for room), the hand
 * evicts cold pages without probing, as it did without sampling: probing
 * frees memory a period late, and the guest must not wait for that.
 *
 * Cost: a fault (tens of microseconds) for each staged page the guest
 * touches: sample_pages a period at most for the estimate, and one for
 * each hot page per revolution of the hand while the VM is above its
 * target. Memory: none, pages move (copy mode copies, then discards).
 *
 * Locking: sample_lock guards the slots and the period's counts; it is a
 * leaf, taken by the swapper (staging, settling), the fault thread (a touch)
 * and any discarder (a drop, with the page's lock held). A slot is handed
 * out only by the swapper, under out_lock; it is freed by whoever holds its
 * page's lock and turns the page into something else.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "compat_linux.h"
#include "pager_internal.h"
#include "swap_query.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static uint64_t next_rand(struct rf_pager *p)
{
	uint64_t x = p->rng;

	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	p->rng = x;
	return x;
}

int pager_sample_init(struct rf_pager *p)
{
	p->slots = rf_zalloc(p->e, sizeof(*p->slots) * PAGER_SAMPLE_SLOTS);
	if (!p->slots)
		return -ENOMEM;
	pthread_mutex_init(&p->sample_lock, NULL);
	p->share = -1;
	p->rng = now_ns() | 1;
	return 0;
}

void pager_sample_destroy(struct rf_pager *p)
{
	if (!p->slots)
		return;
	rf_free(p->e, p->slots);
	p->slots = NULL;
	pthread_mutex_destroy(&p->sample_lock);
}

bool pager_sample_on(struct rf_pager *p)
{
	bool on;

	pthread_mutex_lock(&p->lock);
	on = p->sample_period_ms != 0;
	pthread_mutex_unlock(&p->lock);
	return on;
}

uint8_t *pager_slot_page(const struct rf_pager *p, uint32_t slot)
{
	return p->sample_area + ((size_t)slot << RF_PAGE_SHIFT);
}

bool pager_slot_get(struct rf_pager *p, struct rf_region *r, uint64_t idx, enum sample_kind kind,
		    uint32_t *slot)
{
	bool got = false;

	pthread_mutex_lock(&p->sample_lock);
	for (unsigned int k = 0; k < PAGER_SAMPLE_SLOTS && p->slots_used < PAGER_SAMPLE_SLOTS;
	     k++) {
		unsigned int s = (p->slot_next + k) % PAGER_SAMPLE_SLOTS;

		if (p->slots[s].kind != SAMPLE_NONE)
			continue;
		p->slots[s] = (struct sample_slot){r, idx, now_ns(), (uint8_t)kind};
		p->slots_used++;
		p->probes_used += kind == SAMPLE_PROBE;
		p->slot_next = (s + 1) % PAGER_SAMPLE_SLOTS;
		*slot = s;
		got = true;
		break;
	}
	pthread_mutex_unlock(&p->sample_lock);
	return got;
}

/* Free @slot; sample_lock held. Its page is dropped by the caller. */
static void slot_free_locked(struct rf_pager *p, uint32_t slot)
{
	p->probes_used -= p->slots[slot].kind == SAMPLE_PROBE;
	p->slots[slot].kind = SAMPLE_NONE;
	p->slots_used--;
}

/* The slot's memory back to the kernel: nobody reads it any more (the page
 * it held is mapped back, stored, or discarded). */
static void slot_clear(struct rf_pager *p, uint32_t slot)
{
	madvise(pager_slot_page(p, slot), RF_PAGE_SIZE, MADV_DONTNEED);
}

/*
 * The slot's page is cleared before the slot is free: once free, the
 * swapper may hand it out and move another page's bytes into it at once,
 * and a clear after that would discard them (the staged page would then be
 * read back as zeros in copy mode, or hang its reader on the staging
 * buffer's userfaultfd, which nobody serves, in move mode: seen once in
 * four runs of test_exact_bytes_with_dedup).
 */
void pager_slot_put(struct rf_pager *p, uint32_t slot)
{
	slot_clear(p, slot);
	pthread_mutex_lock(&p->sample_lock);
	slot_free_locked(p, slot);
	pthread_mutex_unlock(&p->sample_lock);
}

unsigned int pager_probes_pending(struct rf_pager *p)
{
	unsigned int n;

	pthread_mutex_lock(&p->sample_lock);
	n = p->probes_used;
	pthread_mutex_unlock(&p->sample_lock);
	return n;
}

unsigned int pager_slots_free(struct rf_pager *p)
{
	unsigned int n;

	pthread_mutex_lock(&p->sample_lock);
	n = PAGER_SAMPLE_SLOTS - p->slots_used;
	pthread_mutex_unlock(&p->sample_lock);
	return n;
}

void pager_sample_touched(struct rf_pager *p, uint32_t h)
{
	uint32_t slot = h & ~PAGER_H_SAMPLE;

	/* Its bytes are back in guest RAM; cleared before it is free
	 * (pager_slot_put says why). */
	slot_clear(p, slot);
	pthread_mutex_lock(&p->sample_lock);
	if (p->slots[slot].kind == SAMPLE_EST) {
		p->est_touched++;
		atomic_fetch_add(&p->sampled_touched, 1);
	} else {
		atomic_fetch_add(&p->probed_touched, 1);
	}
	slot_free_locked(p, slot);
	pthread_mutex_unlock(&p->sample_lock);
}

void pager_sample_dropped(struct rf_pager *p, uint32_t h)
{
	pager_slot_put(p, h & ~PAGER_H_SAMPLE);
}

/* ---- settling a period's staged pages (swapper thread) ---------------- */

struct settle {
	struct rf_region *r;
	uint64_t idx, v;
	uint32_t slot;
};

/*
 * Put a staged page back where it was, unlocked and marked cold (the guest
 * left it alone for a period). We hold its lock, so no fault can fill it
 * meanwhile. Not while an outside discard is under way (pager_map_back,
 * swap_in.c): the page stays staged and is tried again next tick (the
 * REMOVE handler, once it runs, turns it into zeros instead); false, as
 * when it could not be mapped (no longer registered), or marked by such a
 * discard while we held it (settle_slots zeroes it next tick).
 */
static bool put_back_staged(struct rf_pager *p, const struct settle *s)
{
	int err = pager_map_back(p, s->r, s->idx, pager_slot_page(p, s->slot));
	uint64_t nv;

	if (err == -EAGAIN || err == -ECANCELED) { /* marked: the next tick zeroes it */
		rf_pte_unlock(p->vm, &s->r->pte[s->idx], s->v, s->v);
		return false;
	}
	if (err && err != -EEXIST) {
		rf_log_ratelimited(
		    p->e, &p->rl, RF_LOG_ERR,
		    "%s: swap: putting sampled gpa 0x%llx back: %s (kept staged)", p->vm->name,
		    (unsigned long long)(s->r->gpa + (s->idx << RF_PAGE_SHIFT)), strerror(-err));
		rf_pte_unlock(p->vm, &s->r->pte[s->idx], s->v, s->v);
		return false;
	}
	nv = rf_pte_with_payload(rf_pte_with_state(s->v, RF_PAGE_PRIVATE), 0);
	nv = (nv | RF_PTE_F_COLD) & ~PTE_HOT_MASK;
	rf_pte_unlock(p->vm, &s->r->pte[s->idx], s->v, nv);
	pager_slot_put(p, s->slot);
	return true;
}

/* One page less in memory (saturating: every measure resets it). */
static void shrank(struct rf_pager *p)
{
	uint64_t est = atomic_load(&p->resident_est);

	while (est >= RF_PAGE_SIZE &&
	       !atomic_compare_exchange_weak(&p->resident_est, &est, est - RF_PAGE_SIZE))
		;
}

/*
 * Evict @n locked staged pages that the guest left alone for a period:
 * they are out of the mapping already, so this is the store write of a
 * swap-out and its publication. An all-zero page becomes ZERO; a page the
 * store refuses is put back.
 */
static void evict_staged(struct rf_pager *p, struct settle *ss, unsigned int n)
{
	void *pages[RF_SWAP_MAX_BATCH];
	uint32_t handles[RF_SWAP_MAX_BATCH];
	unsigned int sidx[RF_SWAP_MAX_BATCH], ns = 0;

	for (unsigned int i = 0; i < n; i++) {
		uint8_t *pg = pager_slot_page(p, ss[i].slot);
		uint64_t nv;

		if (!pager_page_zero(pg)) {
			pages[ns] = pg;
			sidx[ns++] = i;
			continue;
		}
		nv = rf_pte_with_payload(rf_pte_with_state(ss[i].v, RF_PAGE_ZERO), 0);
		rf_pte_unlock(p->vm, &ss[i].r->pte[ss[i].idx], ss[i].v,
			      nv & ~(RF_PTE_F_COLD | PTE_HOT_MASK));
		pager_slot_put(p, ss[i].slot);
		atomic_fetch_add(&p->zero_outs, 1);
		shrank(p);
	}
	if (ns && rf_swap_store_put(p->store, pages, ns, true, handles) == -ENOSPC)
		atomic_fetch_add(&p->enospc, 1);
	for (unsigned int k = 0; k < ns; k++) {
		struct settle *s = &ss[sidx[k]];
		uint64_t nv;

		if (handles[k] == RF_SWAP_NONE) {
			put_back_staged(p, s);
			continue;
		}
		pager_account_add(p, handles[k], +1);
		nv = rf_pte_with_payload(s->v, handles[k]);
		nv = rf_pte_with_state(nv, rf_swap_handle_in_tier(handles[k]) ? RF_PAGE_COMPRESSED
									      : RF_PAGE_SWAPPED);
		rf_pte_unlock(p->vm, &s->r->pte[s->idx], s->v,
			      nv & ~(RF_PTE_F_COLD | PTE_HOT_MASK));
		pager_slot_put(p, s->slot);
		atomic_fetch_add(&p->swap_outs, 1);
		shrank(p);
	}
}

/*
 * Settle every probe older than @period_ns (all of them if 0), and with
 * @new_period every page of the random sample (all taken in an earlier
 * period: by the period, not by age, so that the untouched ones of a
 * sample are counted in the same fold as its touched ones): the guest did
 * not touch it within its period. Evicted while the VM is above @target
 * less the swapper's slack, put back otherwise. A page whose lock is held
 * right now is settled next tick. Called with regions_lock held for
 * reading and out_lock held.
 */
static void settle_slots(struct rf_pager *p, uint64_t period_ns, uint64_t target, bool new_period)
{
	struct settle ev[RF_SWAP_MAX_BATCH];
	uint64_t now = now_ns(), slack = target / 64 > (1u << 20) ? target / 64 : (1u << 20);
	unsigned int nev = 0;

	for (uint32_t s = 0; s < PAGER_SAMPLE_SLOTS; s++) {
		struct sample_slot sl;
		struct settle st;
		uint64_t v;

		pthread_mutex_lock(&p->sample_lock);
		sl = p->slots[s];
		pthread_mutex_unlock(&p->sample_lock);
		if (sl.kind == SAMPLE_NONE ||
		    (sl.kind == SAMPLE_EST ? period_ns && !new_period : now - sl.t_ns < period_ns))
			continue;
		/* Only this thread hands slots out: if the page still names
		 * this slot under its lock, the slot is still this page's. */
		if (!rf_pte_trylock(&sl.r->pte[sl.idx], &v))
			continue;
		if (!pte_is_swapped(v) || rf_pte_payload(v) != (PAGER_H_SAMPLE | s)) {
			rf_pte_unlock(p->vm, &sl.r->pte[sl.idx], v, v);
			continue;
		}
		if (v & RF_PTE_F_DISCARD) {
			/* Staged while an outside discard was under way: its
			 * bytes were discarded (swap_in.c, pager_on_remove). */
			pager_zero_discarded(p, sl.r, sl.idx, v);
			continue;
		}
		if (sl.kind == SAMPLE_EST) {
			pthread_mutex_lock(&p->sample_lock);
			p->est_untouched++;
			pthread_mutex_unlock(&p->sample_lock);
		}
		st = (struct settle){sl.r, sl.idx, v, s};
		if (target != RF_SWAP_NO_TARGET && period_ns &&
		    atomic_load(&p->resident_est) + slack > target + (uint64_t)nev * RF_PAGE_SIZE) {
			ev[nev++] = st;
			if (nev == RF_SWAP_MAX_BATCH) {
				evict_staged(p, ev, nev);
				nev = 0;
			}
			continue;
		}
		put_back_staged(p, &st);
	}
	if (nev)
		evict_staged(p, ev, nev);
}

/* Fold the period's random sample into the estimate. */
static void fold_estimate(struct rf_pager *p)
{
	uint64_t merged, res, tier = atomic_load(&p->tier_mem), t, u;
	double share;

	pthread_mutex_lock(&p->sample_lock);
	t = p->est_touched;
	u = p->est_untouched;
	p->est_touched = p->est_untouched = 0;
	pthread_mutex_unlock(&p->sample_lock);
	if (t + u == 0)
		return;
	share = (double)t / (double)(t + u);
	p->share = p->share < 0 ? share : p->share + (share - p->share) / 4;
	/* Guest pages in memory, staged ones included: what was sampled. */
	res = pager_measure_resident(p, &merged);
	res = res > tier ? res - tier : 0;
	atomic_store(&p->active_bytes, (uint64_t)(p->share * (double)res));
}

/* Stage @want pages drawn uniformly from the VM's resident swappable pages
 * (drawn over all of its pages, and tried again where the draw is not
 * one). regions_lock (read) and out_lock held. */
static void take_sample(struct rf_pager *p, uint32_t want)
{
	rf_vm *vm = p->vm;
	uint64_t total = 0, got = 0;
	struct rf_region *r;

	for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++)
		total += r->npages;
	if (!total)
		return;
	for (uint64_t tries = 0; got < want && tries < 8ull * want; tries++) {
		uint64_t x = next_rand(p) % total;

		if (pager_slots_free(p) == 0)
			break;
		for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++) {
			if (x < r->npages)
				break;
			x -= r->npages;
		}
		if (r)
			got += (uint64_t)pager_stage_one(p, r, x);
	}
}

void pager_sample_tick(struct rf_pager *p, uint64_t target)
{
	uint32_t period_ms, want;
	uint64_t now = now_ns(), period_ns;
	bool new_period;

	pthread_mutex_lock(&p->lock);
	period_ms = p->sample_period_ms;
	want = p->sample_pages;
	pthread_mutex_unlock(&p->lock);
	if (!period_ms && pager_slots_free(p) == PAGER_SAMPLE_SLOTS)
		return;
	period_ns = (uint64_t)period_ms * 1000000ull;
	new_period = period_ms && now - p->period_start_ns >= period_ns;
	if (!new_period && pager_slots_free(p) == PAGER_SAMPLE_SLOTS)
		return; /* nothing staged, nothing to take yet */
	rf_vm_regions_rdlock(p->vm);
	pthread_mutex_lock(&p->out_lock);
	/* Sampling off: every staged page goes back now. */
	settle_slots(p, period_ns, period_ms ? target : RF_SWAP_NO_TARGET, new_period);
	if (new_period) {
		p->period_start_ns = now;
		pthread_mutex_unlock(&p->out_lock);
		rf_vm_regions_unlock(p->vm);
		fold_estimate(p);
		rf_vm_regions_rdlock(p->vm);
		pthread_mutex_lock(&p->out_lock);
		if (!atomic_load(&p->stopped))
			take_sample(p, want);
	}
	pthread_mutex_unlock(&p->out_lock);
	rf_vm_regions_unlock(p->vm);
}

uint64_t rf_swap_vm_active(rf_vm *vm)
{
	/* vm->pager is set once and freed only by rf_vm_free. */
	struct rf_pager *p = vm->pager;

	return p ? atomic_load(&p->active_bytes) : 0;
}

void rf_swap_pager_set_sampling(struct rf_pager *p, uint32_t period_ms, uint32_t pages)
{
	/* From a sampling target on, every page of the VM faults to the pager
	 * once staged: registration is made as pages are staged. */
	pthread_mutex_lock(&p->lock);
	p->sample_period_ms = period_ms;
	p->sample_pages = pages > PAGER_SAMPLE_SLOTS / 2 ? PAGER_SAMPLE_SLOTS / 2 : pages;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (period_ms)
		return;
	atomic_store(&p->active_bytes, 0);
	/* Off: every staged page goes back before this returns (a page whose
	 * lock someone holds right now is tried again, for a second at most;
	 * the swapper's next tick takes any left). */
	for (int t = 0; t < 1000 && pager_slots_free(p) != PAGER_SAMPLE_SLOTS; t++) {
		struct timespec ts = {0, 1000000};

		rf_vm_regions_rdlock(p->vm);
		pthread_mutex_lock(&p->out_lock);
		settle_slots(p, 0, RF_SWAP_NO_TARGET, true);
		pthread_mutex_unlock(&p->out_lock);
		rf_vm_regions_unlock(p->vm);
		if (pager_slots_free(p) != PAGER_SAMPLE_SLOTS)
			nanosleep(&ts, NULL);
	}
}
