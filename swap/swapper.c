/* SPDX-License-Identifier: MIT */
/*
 * The swap pager's swapper thread: the target keeper. One per VM that has a
 * pager, started with it (swap_pager.c); it is the pager's own thread, not
 * the VM's userfaultfd fault thread (src/uffd.c) that runs swap_in.c.
 *
 * Holding the target: the swapper measures the VM (PAGEMAP_SCAN where the
 * kernel has it, else pagemap read page by page) every 20 ms near its
 * target, less often far below it, and when 256 pages have come back
 * since; it swaps out down to 1/64 (at least 1 MiB) below the target.
 * Merged pages (the dedup store's, file pages to pagemap) are left out of
 * the measure: swap cannot evict them, and the ledger charges them at their
 * fair part. A round above the target that finds nothing to swap out is
 * reported once per episode (report_unreachable). Its
 * measure is the estimate the fault side holds swap-ins and first writes
 * to (swap_in.c): they wait while it is more than 1/32 (at least 4 MiB)
 * above the target, unless the swapper's last round found nothing it could
 * evict. Without first writes in that rule a guest filling fresh memory ran
 * 10% over its limit before the swapper caught up, measured.
 *
 * Victim choice: pages not touched recently go first. This kernel has no
 * soft-dirty and no idle-page tracking (both compiled out, checked), and
 * the dedup engine's write-protect must stay synchronous, so the VM's
 * userfaultfd cannot use asynchronous write-protect (WP_ASYNC is a property
 * of the whole descriptor, and a range belongs to one descriptor) for
 * PAGEMAP_SCAN's PAGE_IS_WRITTEN. What is left is sampling, as ESX does,
 * with the swap fault itself as the sample: a CLOCK hand (hand_gpa) walks
 * the resident pages, 4096 at a time (pager_swap_out_walk, swap_out.c);
 * the first pass marks a page cold (RF_PTE_F_COLD), the next pass swaps it
 * out if it is still marked. Any fault through the pager (swap-in or zero
 * fill) clears the mark, so a page that came back because it was wanted
 * gets a whole revolution of the hand before it can go again. The hand
 * only moves while the VM is above its target, so a VM that fits keeps
 * everything.
 *
 * That alone never sees a page that is only read: it stays marked, and
 * goes. With working-set sampling on (rf_vm_set_swap_sampling,
 * swap_sample.c), the fault is made to happen: the hand stages a marked
 * page (moves it out of the guest's mapping, keeps it in memory) instead
 * of evicting it, and it goes to the store only if the guest leaves it
 * alone for a sampling period; a page the guest touched comes back marked
 * hot (RF_PTE_F_HOT, _HOT2), and the hand passes over it three times. Probing frees
 * memory a period late, so when a guest had to wait for room since the
 * last round (the throttle below), the hand evicts marked pages at once,
 * as without sampling. Staged pages count as resident (they are in
 * memory), and probes already staged are not asked for again.
 *
 * Locking: a round takes regions_lock (read), then out_lock (the hand and
 * the staging buffer are the swap-out's); target and stop are read under
 * the pager's lock, which the thread sleeps on (cond).
 */
#include <stdio.h>
#include <sys/ioctl.h>
#include <time.h>

#include "compat_linux.h"
#include "pager_internal.h"
#include "swap_query.h"

#define TICK_NS (20 * 1000000ull)

/*
 * Present pages of @r other than the zero page, by PAGEMAP_SCAN: the kernel
 * walks the page tables and returns ranges, about 20x cheaper than reading
 * one pagemap entry per page. Anonymous pages are returned, file pages (the
 * dedup store's, mapped over merged guest pages) added to *@file. -1 if the
 * ioctl fails.
 */
static int64_t resident_scan(struct rf_pager *p, struct rf_region *r, uint64_t *file)
{
	struct page_region regs[256];
	uint64_t start = (uintptr_t)r->hva, end = start + r->size;
	int64_t pages = 0;

	while (start < end) {
		struct pm_scan_arg arg = {
		    .size = sizeof(arg),
		    .start = start,
		    .end = end,
		    .vec = (uintptr_t)regs,
		    .vec_len = 256,
		    .category_mask = PAGE_IS_PRESENT | PAGE_IS_PFNZERO,
		    .category_inverted = PAGE_IS_PFNZERO,
		    .return_mask = PAGE_IS_PRESENT | PAGE_IS_FILE,
		};
		int n = ioctl(p->e->pagemap_fd, PAGEMAP_SCAN, &arg);

		if (n < 0)
			return -1;
		for (int i = 0; i < n; i++) {
			uint64_t k = (regs[i].end - regs[i].start) >> RF_PAGE_SHIFT;

			if (regs[i].categories & PAGE_IS_FILE)
				*file += k;
			else
				pages += (int64_t)k;
		}
		if (arg.walk_end <= start)
			return -1;
		start = arg.walk_end;
	}
	return pages;
}

/*
 * Resident bytes of the VM as a target counts them: guest pages present
 * (not the zero page, not the dedup store's pages mapped over merged guest
 * pages), pages staged by sampling (out of the mapping, still in memory),
 * plus the VM's compressed-tier memory. The merged pages left out go to
 * *@merged. Takes regions_lock for reading.
 */
uint64_t pager_measure_resident(struct rf_pager *p, uint64_t *merged)
{
	rf_vm *vm = p->vm;
	uint64_t ents[PAGER_WINDOW], pages = 0, file = 0;
	struct rf_region *r;

	rf_vm_regions_rdlock(vm);
	for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++) {
		uint64_t f = 0;
		int64_t n = p->e->feat.pagemap_scan ? resident_scan(p, r, &f) : -1;

		if (n >= 0) {
			pages += (uint64_t)n;
			file += f;
			continue;
		}
		for (uint64_t base = 0; base < r->npages; base += PAGER_WINDOW) {
			size_t cnt =
			    r->npages - base < PAGER_WINDOW ? r->npages - base : PAGER_WINDOW;

			if (rf_pagemap_read(p->e, rf_region_page(r, base), cnt, ents) != 0)
				break;
			for (size_t k = 0; k < cnt; k++) {
				if (!rf_pagemap_resident(p->e, ents[k]))
					continue;
				if (ents[k] & PM_FILE)
					file++;
				else
					pages++;
			}
		}
	}
	rf_vm_regions_unlock(vm);
	*merged = file << RF_PAGE_SHIFT;
	pages += PAGER_SAMPLE_SLOTS - pager_slots_free(p);
	return (pages << RF_PAGE_SHIFT) + atomic_load(&p->tier_mem);
}

/* The gpa of the first region above @gpa; past the last, the first region's
 * (0 if there is none). Caller holds regions_lock. */
static uint64_t next_region_gpa(const rf_vm *vm, uint64_t gpa)
{
	struct rf_region *r, *first = __rf_vm_region(vm, 0);
	unsigned int i = 0;

	while ((r = __rf_vm_region(vm, i)) && r->gpa <= gpa)
		i++;
	return r ? r->gpa : (first ? first->gpa : 0);
}

/*
 * A round found nothing to swap out while the VM is above its target: the
 * target cannot be met as things are. Said once per episode, which ends
 * when a measure finds the VM within its target or a target is set.
 */
static void report_unreachable(struct rf_pager *p, uint64_t target, uint64_t res, uint64_t merged,
			       bool refused)
{
	char note[96] = "";
	bool said;

	/* Under the lock that orders targets: a round begun under an older
	 * target ends after a new one is set, and says nothing of it. */
	pthread_mutex_lock(&p->lock);
	said = p->target != target || atomic_exchange(&p->target_unmet, true);
	pthread_mutex_unlock(&p->lock);
	if (said)
		return;
	atomic_fetch_add(&p->targets_unmet, 1);
	if (merged)
		snprintf(note, sizeof(note), "; %.1f MiB of merged pages are not counted",
			 (double)merged / (1 << 20));
	rf_log(p->e, RF_LOG_WARN,
	       "%s: swap: resident target %.1f MiB not reachable: %.1f MiB resident and no "
	       "page left that can be swapped out (%s)%s",
	       p->vm->name, (double)target / (1 << 20), (double)res / (1 << 20),
	       refused ? "the swap store or the VM's swap cap is full"
		       : "the rest is excluded from swap or in use by another module",
	       note);
}

/*
 * One round of the swapper: bring the VM below its target. Returns how long
 * to wait before the next round: the farther below its target the VM is,
 * the longer (measuring costs the guest CPU time too).
 */
static uint64_t enforce_target(struct rf_pager *p, uint64_t target)
{
	rf_vm *vm = p->vm;
	uint64_t res, want, done = 0, slack, merged, refused = atomic_load(&p->enospc), pending;
	uint64_t throttled, grown;
	unsigned int laps = 0;
	bool probe;

	/* Regions added since the target was set. */
	rf_vm_regions_rdlock(vm);
	pager_register_all(p);
	rf_vm_regions_unlock(vm);
	/* Faults go on while the measure walks the VM, and a page added behind
	 * the walk is not in it: the estimate keeps every page the fault side
	 * added meanwhile (one added ahead of the walk counts twice, until the
	 * next measure). Storing the measure alone dropped them: a guest
	 * writing fresh memory grew 72 MiB during one 82 ms measure (copy
	 * mode, a busy host) and then ran 15 MiB over its line. */
	grown = atomic_load(&p->grown);
	res = pager_measure_resident(p, &merged);
	atomic_store(&p->resident_est, res + ((atomic_load(&p->grown) - grown) << RF_PAGE_SHIFT));
	if (res <= target) {
		atomic_store(&p->swapper_stuck, false);
		atomic_store(&p->target_unmet, false);
		if (res < target / 2)
			return 10 * TICK_NS;
		return res < target - target / 8 ? 4 * TICK_NS : TICK_NS;
	}
	/* Go a little below the target so the next round has work in batches,
	 * not page by page. */
	slack = target / 64 > (1u << 20) ? target / 64 : (1u << 20);
	want = (res - target + slack) >> RF_PAGE_SHIFT;
	/* Probe cold pages before evicting them (swap_sample.c), unless a
	 * guest waited for room since the last round: then evict them as they
	 * are, a period sooner. Probes staged already leave at their period's
	 * end: not asked for twice. */
	throttled = atomic_load(&p->throttled);
	probe = pager_sample_on(p) && throttled == p->throttled_seen;
	p->throttled_seen = throttled;
	pending = probe ? pager_probes_pending(p) : 0;
	want = want > pending ? want - pending : 0;
	rf_vm_regions_rdlock(vm);
	pthread_mutex_lock(&p->out_lock);
	while (done < want && laps < 3 * rf_vm_nr_regions(vm) + 3) {
		struct rf_region *r = __rf_vm_find_region(vm, p->hand_gpa);
		uint64_t idx, n;
		int err;

		if (!r) {
			/* Past the end of a region: on to the next one, or wrap. */
			p->hand_gpa = next_region_gpa(vm, p->hand_gpa);
			laps++;
			if (!__rf_vm_region(vm, 0))
				break;
			continue;
		}
		idx = rf_region_index(r, p->hand_gpa);
		n = r->npages - idx < 4096 ? r->npages - idx : 4096;
		err = pager_swap_out_walk(p, r, idx, n, true, probe, want, &done);
		p->hand_gpa = r->gpa + ((idx + n) << RF_PAGE_SHIFT);
		if (err)
			break; /* full or broken: counted; try again next tick */
	}
	pthread_mutex_unlock(&p->out_lock);
	rf_vm_regions_unlock(vm);
	/* Nothing left to evict (all excluded, in use, or the store is full):
	 * never hold swap-ins back then, or the guest would wait forever. */
	atomic_store(&p->swapper_stuck, done == 0 && pending == 0);
	if (done == 0 && pending == 0)
		report_unreachable(p, target, res, merged, atomic_load(&p->enospc) != refused);
	return TICK_NS;
}

/* The swapper thread: a round of enforce_target each tick while the VM has a
 * target (and is not stopped), until vm_free_hook sets stop. Woken early by
 * a new target and by faults (every 256 pages, swap_in.c). */
void *pager_swapper_main(void *arg)
{
	struct rf_pager *p = arg;

	rf_thread_name(p->vm->e, "swap", p->vm->name);
	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		struct timespec ts;
		uint64_t target = p->target, wait = TICK_NS;

		pthread_mutex_unlock(&p->lock);
		if (target != RF_SWAP_NO_TARGET && !atomic_load(&p->stopped))
			wait = enforce_target(p, target);
		/* Working-set sampling rides on the same ticks. */
		if (pager_sample_on(p) || pager_slots_free(p) != PAGER_SAMPLE_SLOTS) {
			pager_sample_tick(p, target);
			wait = wait < TICK_NS ? wait : TICK_NS;
		}
		pthread_mutex_lock(&p->lock);
		if (p->stop)
			break;
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_sec += (time_t)(wait / 1000000000ull);
		ts.tv_nsec += (long)(wait % 1000000000ull);
		if (ts.tv_nsec >= 1000000000L) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000L;
		}
		pthread_cond_timedwait(&p->cond, &p->lock, &ts);
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

/* The target line is drawn after registration: from then on a first write
 * waits for room like a swap-in. */
void rf_swap_pager_set_target(struct rf_pager *p, uint64_t resident_bytes)
{
	uint64_t margin = resident_bytes / 32 > (4u << 20) ? resident_bytes / 32 : (4u << 20);

	/* Before the line is drawn: from here a first write waits for room. */
	if (resident_bytes != RF_SWAP_NO_TARGET) {
		rf_vm_regions_rdlock(p->vm);
		pager_register_all(p);
		rf_vm_regions_unlock(p->vm);
	}
	pthread_mutex_lock(&p->lock);
	p->target = resident_bytes;
	atomic_store(&p->target_unmet, false); /* a new episode */
	atomic_store(&p->throttle_line, resident_bytes == RF_SWAP_NO_TARGET
					    ? RF_SWAP_NO_TARGET
					    : resident_bytes + margin);
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
}

void rf_swap_pager_set_cap(struct rf_pager *p, uint64_t max_swapped_bytes)
{
	pthread_mutex_lock(&p->lock);
	p->cap = max_swapped_bytes;
	pthread_mutex_unlock(&p->lock);
}

uint64_t rf_swap_vm_target(rf_vm *vm)
{
	/* vm->pager is set once and freed only by rf_vm_free. */
	struct rf_pager *p = vm->pager;
	uint64_t t;

	if (!p)
		return RF_SWAP_NO_TARGET;
	pthread_mutex_lock(&p->lock);
	t = p->target;
	pthread_mutex_unlock(&p->lock);
	return t;
}
