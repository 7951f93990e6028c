/* SPDX-License-Identifier: MIT */
/*
 * The swap pager's fault side: the handlers it installs on the VM's
 * userfaultfd, run by that userfaultfd's fault thread (src/uffd.c), not by
 * the pager's own swapper thread.
 *
 * Swap-in (a missing fault on a SWAPPED or COMPRESSED page): the handler
 * only ever try-locks a page (uffd.h explains why it may not block), reads
 * the page back (from the swap cache, swap_cache.c, or the store), verifies
 * its checksum, maps it with UFFDIO_COPY, frees the store handle, publishes
 * PRIVATE and only then wakes the faulting thread (so the table is right by
 * the time the guest runs again). A read error or a checksum mismatch is
 * retried; if it persists the VM is stopped: its faulting threads are left
 * waiting, never woken onto zeros or a wrong page, and rf_vm_swap_stats()
 * reports it. When faults look sequential (this page follows the last one
 * served, or was itself read ahead), the pages that follow it in the store
 * are read into the swap cache after the faulting page is served.
 *
 * A missing fault on any other page (never touched, zero, ballooned,
 * free-reported) is a read, answered with the kernel's zero page, or a
 * write, answered with a zeroed private page (one fault, not a zero page
 * and then a copy-on-write fault); a written ZERO or FREE_REPORTED page is
 * PRIVATE from then on. First writes in address order fill ahead
 * (fill_around). Any fault through the pager clears the page's CLOCK mark
 * (RF_PTE_F_COLD, swapper.c).
 *
 * Backpressure: a swap-in or a first write makes the VM a page bigger, so
 * while the swapper's estimate of the VM (resident_est, plus what faults
 * added since) is above the throttle line it waits: the handler returns
 * -EAGAIN and uffd.c retries it a millisecond later, unless the swapper's
 * last round found nothing it could evict. Every 256 pages added wake the
 * swapper early.
 *
 * Events: UFFD_EVENT_REMOVE (someone discarded guest RAM with madvise)
 * turns swapped pages in the range into ZERO and frees their slots, so a
 * discarded page reads as zeros afterwards, never as stale swap content.
 * Pages locked by one of the library's own discards are left to it (it
 * makes every discard, copy mode's own included, under the page locks
 * through rf_vm_discard_locked, which returns only once the event is
 * dispatched); other locks are waited for; the event is never retried for
 * a lock, so it can never be taken for a later discard of pages swapped
 * out since. Resident pages are marked so that nothing moves their bytes
 * out before the kernel's zap (pager_on_remove says why). Discards done through
 * rf_vm_discard_as() reach the pager earlier, through the page_release hook
 * (swap_pager.c), under the page lock. While an event is pending the
 * kernel fails uffd ioctls with EAGAIN: the handler then returns -EAGAIN
 * and uffd.c retries it after reading the event. EEXIST from a copy or a
 * zero page means another fill won: success. ENOENT means the range is no
 * longer registered (remapped): wake the thread so it faults again on
 * whatever is mapped now.
 */
#include <errno.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>

#include "pager_internal.h"

#define READ_TRIES 3 /* reads of a page before the VM is stopped */

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ioctl result as -errno. */
static int uffd_call(int fd, unsigned long req, void *arg)
{
	return ioctl(fd, req, arg) == 0 ? 0 : -errno;
}

int pager_map_copy(struct rf_pager *p, uint64_t page, const void *src, bool wake)
{
	struct uffdio_copy c = {.dst = page,
				.src = (uintptr_t)src,
				.len = RF_PAGE_SIZE,
				.mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE};

	rf_debug_note(p->vm, (void *)(uintptr_t)page, RF_PAGE_SIZE,
		      src == p->zeros ? "fill with zeros" : "fill with content");
	return uffd_call(rf_uffd_fd(p->u), UFFDIO_COPY, &c);
}

/*
 * Bytes go back into the mapping only when no outside discard can be under
 * way for them: from the fault thread's read of a REMOVE on, the kernel may
 * zap the range at any moment and no longer fails the copy with EAGAIN, so
 * a copy landing after the zap would outlive the discard; and a page the
 * REMOVE handler marked while its bytes were out has lost them.
 */
int pager_map_back(struct rf_pager *p, struct rf_region *r, uint64_t idx, const void *src)
{
	if (atomic_load(&r->pte[idx]) & RF_PTE_F_DISCARD)
		return -ECANCELED;
	if (rf_uffd_remove_pending(p->u))
		return -EAGAIN;
	return pager_map_copy(p, (uintptr_t)rf_region_page(r, idx), src, true);
}

static int map_zero(struct rf_pager *p, uint64_t page)
{
	struct uffdio_zeropage z = {.range = {page, RF_PAGE_SIZE},
				    .mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE};

	rf_debug_note(p->vm, (void *)(uintptr_t)page, RF_PAGE_SIZE, "map the zero page");
	return uffd_call(rf_uffd_fd(p->u), UFFDIO_ZEROPAGE, &z);
}

/*
 * Finish a fill: 0 and EEXIST (another fill won) are success; ENOENT or
 * EINVAL (the range is no longer registered: remapped) need a wake so the
 * thread faults again on what is there now. EAGAIN is the caller's.
 */
static void fill_done(struct rf_pager *p, uint64_t page, int err)
{
	if (err == -ENOENT || err == -EINVAL || err == -EEXIST)
		rf_uffd_wake(p->u, (void *)page, RF_PAGE_SIZE);
}

/* Read page (r, idx) with handle @h into @dst, from the cache if it is
 * there. Returns 0 or the store's last error after READ_TRIES attempts. */
static int read_back(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint32_t h, void *dst,
		     bool *hit)
{
	int err = -EIO;

	*hit = pager_cache_take(p, r, idx, h, dst);
	if (*hit)
		return 0;
	for (int t = 0; t < READ_TRIES && err; t++)
		err = rf_swap_store_get(p->store, h, dst);
	return err;
}

void pager_stop_vm(struct rf_pager *p, uint64_t gpa, uint32_t h, int err)
{
	if (!atomic_exchange(&p->stopped, true))
		rf_log(p->e, RF_LOG_ERR,
		       "%s: swap: page at gpa 0x%llx cannot be read back from the %s (%s after %d "
		       "tries): VM stopped, its faulting vCPUs stay blocked",
		       p->vm->name, (unsigned long long)gpa,
		       rf_swap_handle_in_tier(h) ? "compressed tier" : "swap file",
		       err == -EBADMSG ? "checksum mismatch" : strerror(-err), READ_TRIES);
}

/* The VM has @n pages more in memory. Every 256 of them, wake the swapper
 * rather than let the VM run over its target until the next tick.
 * Signalling never blocks. */
static void grew(struct rf_pager *p, uint64_t n)
{
	uint64_t old = atomic_fetch_add(&p->grown, n);

	atomic_fetch_add(&p->resident_est, n << RF_PAGE_SHIFT);
	if (old >> 8 != (old + n) >> 8)
		pthread_cond_signal(&p->cond);
}

/*
 * First writes in a row (this one lands where the last run filled ended):
 * fill the next pages too, with zeroed private pages, in a window that
 * doubles with each such fault up to PAGER_FILL_MAX pages, as read-ahead does. A
 * guest that writes fresh memory in order (booting, zeroing, memcheck's
 * first pass) then costs one round trip per window instead of one per page;
 * a random writer gets one page a fault. Only PRIVATE pages we can lock
 * are filled: never one that is swapped, zero, merged, ballooned or
 * reported, and the fill stops at the first page already present
 * (UFFDIO_COPY says EEXIST). The window never takes the VM over its line.
 * Fault thread only, regions_lock held, page @idx locked and just filled.
 */
static void fill_around(struct rf_pager *p, struct rf_region *r, uint64_t idx)
{
	uint64_t vals[PAGER_FILL_MAX], est = atomic_load(&p->resident_est);
	uint64_t line = atomic_load(&p->throttle_line), room, n = 0, done;
	struct uffdio_copy c;

	if (r == p->fill_r && idx == p->fill_end)
		p->fill_win = p->fill_win * 2 < PAGER_FILL_MAX ? p->fill_win * 2 : PAGER_FILL_MAX;
	else
		p->fill_win = 1;
	p->fill_r = r;
	p->fill_end = idx + 1;
	room = line > est ? (line - est) >> RF_PAGE_SHIFT : 0;
	while (n + 1 < p->fill_win && n < room && idx + 1 + n < r->npages) {
		rf_pte_t *pte = &r->pte[idx + 1 + n];
		uint64_t v;

		if (!rf_pte_trylock(pte, &v))
			break;
		if (rf_pte_state(v) != RF_PAGE_PRIVATE || (v & RF_PTE_F_WP) ||
		    rf_uffd_foreign_page(p->u, r, idx + 1 + n)) {
			/* (A page the embedder has still to restore is its.) */
			rf_pte_unlock(p->vm, pte, v, v);
			break;
		}
		vals[n++] = v;
	}
	if (!n)
		return;
	c = (struct uffdio_copy){.dst = (uintptr_t)rf_region_page(r, idx + 1),
				 .src = (uintptr_t)p->zeros,
				 .len = n << RF_PAGE_SHIFT};
	/* Partial (a page present, or an event pending) is fine: c.copy says
	 * how much was filled; the rest is left to its own fault. */
	rf_debug_note(p->vm, (void *)(uintptr_t)c.dst, c.len, "fill ahead with zeros");
	(void)uffd_call(rf_uffd_fd(p->u), UFFDIO_COPY, &c);
	done = c.copy > 0 ? (uint64_t)c.copy >> RF_PAGE_SHIFT : 0;
	for (uint64_t k = 0; k < n; k++)
		rf_pte_unlock(p->vm, &r->pte[idx + 1 + k], vals[k],
			      k < done ? vals[k] & ~RF_PTE_F_COLD : vals[k]);
	p->fill_end += done;
	atomic_fetch_add(&p->zero_fills, done);
	grew(p, done);
}

/*
 * A read of an absent page that a module holds write-protected (F_WP: the
 * dedup engine comparing it or discarding it as zero, copy mode copying
 * it). Such a page is absent because the dedup engine has discarded it as
 * zero and not yet published it, or because someone outside the library
 * discarded it under the holder: either way it reads as zeros; and the
 * holder itself may be the reader, which would wait forever for a lock it
 * holds. A writer of the page mapped here faults on its protection, and
 * the holder wakes it after clearing F_WP (uffd.h). Not so a page copy mode has
 * discarded itself after storing it (RF_PTE_F_OUT, until it is published
 * swapped): its content is in the store, and its readers wait. So the read is answered without
 * the lock, with a zeroed page mapped write-protected (UFFDIO_COPY_MODE_WP,
 * not the zero page: a write to that would go through without waiting for
 * the holder). Writers and everything else wait: -EAGAIN, retried.
 */
static int read_under_wp(struct rf_pager *p, uint64_t page, uint64_t v, bool write)
{
	struct uffdio_copy c = {.dst = page,
				.src = (uintptr_t)p->zeros,
				.len = RF_PAGE_SIZE,
				.mode = UFFDIO_COPY_MODE_WP};
	int err;

	if (write || !(v & RF_PTE_F_WP) || (v & RF_PTE_F_OUT) || pte_is_swapped(v) ||
	    rf_pte_state(v) == RF_PAGE_MERGED)
		return -EAGAIN;
	rf_debug_note(p->vm, (void *)(uintptr_t)page, RF_PAGE_SIZE, "read under WP: zeroed");
	err = uffd_call(rf_uffd_fd(p->u), UFFDIO_COPY, &c);
	if (err == -EAGAIN)
		return -EAGAIN;
	/* Mapped (or already there: EEXIST), or no longer registered. */
	rf_uffd_wake(p->u, (void *)page, RF_PAGE_SIZE);
	return 0;
}

/*
 * A touch of a staged page (swap_sample.c): the guest wants it within its
 * period, so it is hot. Its bytes are in its slot: map them back, publish
 * PRIVATE marked hot, then wake the thread, so a write lands on the page's
 * own bytes. Never held back by the throttle line: the page was counted in
 * memory while staged, and it makes the VM no bigger. Page locked; unlocks
 * it. 0, or -EAGAIN to be retried.
 */
static int sample_in(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint64_t v, uint64_t nv)
{
	uint64_t page = (uintptr_t)rf_region_page(r, idx);
	uint32_t h = rf_pte_payload(v);
	int err = pager_map_copy(p, page, pager_slot_page(p, h & ~PAGER_H_SAMPLE), false);

	if (err == -EAGAIN) {
		rf_pte_unlock(p->vm, &r->pte[idx], v, v);
		return -EAGAIN;
	}
	if (err && err != -EEXIST) {
		/* Not registered any more: the bytes stay in the slot, and the
		 * thread faults again on what is mapped now. */
		rf_pte_unlock(p->vm, &r->pte[idx], v, v);
		fill_done(p, page, err);
		return 0;
	}
	pager_sample_touched(p, h);
	nv = pte_with_hot_laps(rf_pte_with_payload(rf_pte_with_state(nv, RF_PAGE_PRIVATE), 0), 3);
	rf_pte_unlock(p->vm, &r->pte[idx], v, nv);
	rf_uffd_wake(p->u, (void *)page, RF_PAGE_SIZE);
	return 0;
}

/*
 * A missing fault: a swap-in, or the first touch of a page that is not
 * there (never touched, zero, ballooned, free-reported). 0 when answered
 * (or left unanswered for good: a stopped VM), -EAGAIN to be retried.
 */
int pager_on_missing(struct rf_uffd *u, const struct uffd_msg *m, void *arg)
{
	struct rf_pager *p = arg;
	rf_vm *vm = p->vm;
	uint64_t page = m->arg.pagefault.address & ~(uint64_t)(RF_PAGE_SIZE - 1);
	uint64_t t0 = now_ns(), gpa, v, nv, idx;
	bool write = m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE;
	struct rf_region *r;
	rf_pte_t *pte;
	bool hit;
	int err;

	(void)u;
	if (atomic_load(&p->dead))
		return 0;
	if (atomic_load(&p->stopped))
		return 0; /* a stopped VM's faults are never answered */
	/* A page the embedder restores lazily (rf_vm_set_fault_handler) is
	 * its to fill; 1: not such a page, answer it here. */
	err = rf_uffd_foreign_fault(p->u, m);
	if (err != 1)
		return err;
	if (rf_vm_regions_tryrdlock(vm) != 0)
		return -EAGAIN;
	r = __rf_vm_find_region_hva(vm, page);
	if (!r) {
		/* Not guest RAM (any more): let the thread retry its access. */
		rf_vm_regions_unlock(vm);
		rf_uffd_wake(p->u, (void *)page, RF_PAGE_SIZE);
		return 0;
	}
	idx = (page - (uintptr_t)r->hva) >> RF_PAGE_SHIFT;
	gpa = r->gpa + (idx << RF_PAGE_SHIFT);
	pte = &r->pte[idx];
	if (!rf_pte_trylock(pte, &v)) {
		err = read_under_wp(p, page, rf_pte_peek(pte), write);
		rf_vm_regions_unlock(vm);
		return err; /* being swapped out or discarded right now */
	}
	/* Touched: a whole revolution before it may go. Missing: an outside
	 * discard that marked it is done with it (pager_on_remove). */
	nv = v & ~(RF_PTE_F_COLD | RF_PTE_F_DISCARD);
	/* Swapped while an outside discard was under way (pager_on_remove):
	 * its bytes were discarded, ZERO now, and the retry answers it as
	 * such. Or a REMOVE read before this fault and not yet handled (its
	 * handler asked for a retry) may cover the page: it goes first, or the
	 * bytes mapped here would outlive its zap (retries run in reading
	 * order). */
	if (pte_is_swapped(v) && ((v & RF_PTE_F_DISCARD) || rf_uffd_remove_ahead(p->u))) {
		if (v & RF_PTE_F_DISCARD)
			pager_zero_discarded(p, r, idx, v);
		else
			rf_pte_unlock(vm, pte, v, v);
		rf_vm_regions_unlock(vm);
		return -EAGAIN;
	}
	if (pte_is_swapped(v) && handle_is_sample(rf_pte_payload(v))) {
		err = sample_in(p, r, idx, v, nv);
		rf_vm_regions_unlock(vm);
		return err;
	}
	/* A swap-in or a first write makes the VM a page bigger: it waits
	 * while the VM is over its line. A read of a never-written page does
	 * not (the zero page is shared, and not the VM's). */
	if ((pte_is_swapped(v) || write) &&
	    atomic_load(&p->resident_est) > atomic_load(&p->throttle_line) &&
	    !atomic_load(&p->swapper_stuck)) {
		rf_pte_unlock(vm, pte, v, v);
		rf_vm_regions_unlock(vm);
		atomic_fetch_add(&p->throttled, 1);
		pthread_cond_signal(&p->cond);
		return -EAGAIN;
	}
	if (!pte_is_swapped(v)) {
		err = write ? pager_map_copy(p, page, p->zeros, false) : map_zero(p, page);
		if (err == -EAGAIN) {
			rf_pte_unlock(vm, pte, v, v);
			rf_vm_regions_unlock(vm);
			return -EAGAIN;
		}
		if (!err) {
			atomic_fetch_add(&p->zero_fills, 1);
			if (write)
				grew(p, 1);
			if (write && rf_pte_state(v) == RF_PAGE_PRIVATE)
				fill_around(p, r, idx);
			/* A discarded page the guest writes is its own memory
			 * again: merged, swapped and charged like any other.
			 * (A ballooned one stays the balloon's until deflated.) */
			if (write && (rf_pte_state(v) == RF_PAGE_ZERO ||
				      rf_pte_state(v) == RF_PAGE_FREE_REPORTED))
				nv = rf_pte_with_state(nv, RF_PAGE_PRIVATE);
		}
		rf_pte_unlock(vm, pte, v, nv);
		rf_vm_regions_unlock(vm);
		/* Wake in every case: filled, filled by a racing fill (EEXIST),
		 * or no longer registered (ENOENT, EINVAL: fault again). */
		rf_uffd_wake(p->u, (void *)page, RF_PAGE_SIZE);
		return 0;
	}
	err = read_back(p, r, idx, rf_pte_payload(v), p->bounce, &hit);
	if (err) {
		rf_pte_unlock(vm, pte, v, v);
		rf_vm_regions_unlock(vm);
		pager_stop_vm(p, gpa, rf_pte_payload(v), err);
		return 0;
	}
	/* Map it without waking the thread: the table says PRIVATE first. */
	err = pager_map_copy(p, page, p->bounce, false);
	if (err == -EAGAIN) {
		/* The page stays swapped; a cache hit is lost, not the page. */
		rf_pte_unlock(vm, pte, v, v);
		rf_vm_regions_unlock(vm);
		return -EAGAIN;
	}
	if (err && err != -EEXIST) {
		/* Not registered any more (remapped): the content stays in the
		 * store and the thread faults again on the new mapping. */
		rf_pte_unlock(vm, pte, v, v);
		rf_vm_regions_unlock(vm);
		fill_done(p, page, err);
		return 0;
	}
	if (err == -EEXIST)
		rf_log_ratelimited(p->e, &p->rl, RF_LOG_WARN,
				   "%s: swap: gpa 0x%llx was mapped while swapped out", vm->name,
				   (unsigned long long)gpa);
	pager_drop_page(p, r, idx, rf_pte_payload(v));
	nv = rf_pte_with_payload(rf_pte_with_state(nv, RF_PAGE_PRIVATE), 0);
	atomic_fetch_add(&p->swap_ins, 1);
	grew(p, 1);
	if (hit)
		atomic_fetch_add(&p->prefetch_hits, 1);
	rf_pte_unlock(vm, pte, v, nv);
	rf_uffd_wake(p->u, (void *)page, RF_PAGE_SIZE);
	rf_hist_record(&p->lat, now_ns() - t0);
	/* Sequential (this page follows the last one served, or was read
	 * ahead): read ahead. Fault thread only: no lock on the stream state. */
	if (hit || (r == p->last_r && idx == p->last_idx + 1))
		pager_cache_prefetch(p, r, idx, rf_pte_payload(v));
	p->last_r = r;
	p->last_idx = idx;
	rf_vm_regions_unlock(vm);
	return 0;
}

/*
 * A discard of guest RAM (madvise(MADV_DONTNEED) or similar) from outside
 * the library: afterwards the pages read as zeros, never as bytes they had
 * before it.
 *
 * Swapped pages in the range become ZERO and their slots are freed. A
 * locked swapped page inside a discard the library is making itself
 * belongs to that discard (rf_vm_discard_as releases it through
 * page_release); any other locked swapped page is waited for, without
 * blocking: its holder (a swap-in on this thread is impossible, so a
 * sample settling, an audit, a test) never waits for the fault thread. The
 * event is never retried for a page lock: a retry could run after the page
 * had been written and swapped out again, and wipe it.
 *
 * Resident pages are the kernel's to zap, but only after this event was
 * read; from the read on the kernel no longer fails UFFDIO_MOVE or
 * UFFDIO_COPY with EAGAIN, so until the zap a swap-out or a sample stage
 * could still move a page's bytes out of the mapping, where the zap would
 * not find them. Each such page is marked RF_PTE_F_DISCARD, without its
 * lock (rf_pte_mark_discard): a holder may be in the middle of that very
 * move, and may need this thread to answer a fault of its own meanwhile (a
 * copy-mode swap-out reading the page). The mark means "these bytes were
 * discarded": no mover takes a marked page (swappable(), swap_out.c); a
 * marked page that is nevertheless swapped (the move was under way) reads
 * as zeros when it is next touched or settled (pager_on_missing,
 * swap_sample.c); a missing fault on a resident-state page clears it (the
 * zap is done). The other way, bytes put back into the mapping, is held
 * off while the event is read and not yet handled (rf_uffd_remove_pending).
 */
int pager_on_remove(struct rf_uffd *u, const struct uffd_msg *m, void *arg)
{
	struct rf_pager *p = arg;
	rf_vm *vm = p->vm;
	uint64_t start = m->arg.remove.start, end = m->arg.remove.end;
	struct rf_region *r;

	(void)u;
	if (atomic_load(&p->dead))
		return 0;
	/* The library's own discard: every page of it is locked by the
	 * discarder, which releases it through page_release and makes no
	 * move before this event is dispatched. */
	if (end > start && rf_uffd_own_discard(p->u, start) &&
	    rf_uffd_own_discard(p->u, end - RF_PAGE_SIZE))
		return 0;
	/* Only map/unmap hold it for writing, and never while a discarder of
	 * ours (a reader) is inside: a retry here is for outside discards. */
	if (rf_vm_regions_tryrdlock(vm) != 0)
		return -EAGAIN;
	for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++) {
		uint64_t a = (uintptr_t)r->hva, b = a + r->size;
		uint64_t lo = start > a ? start : a, hi = end < b ? end : b;

		for (uint64_t pg = lo; pg < hi; pg += RF_PAGE_SIZE) {
			uint64_t idx = (pg - a) >> RF_PAGE_SHIFT, v = rf_pte_peek(&r->pte[idx]);
			rf_pte_t *pte = &r->pte[idx];
			enum rf_page_state s = rf_pte_state(v);
			bool got;

			/* Only these states have bytes a mover could take. */
			if (!pte_is_swapped(v) && s != RF_PAGE_PRIVATE && s != RF_PAGE_ZERO &&
			    s != RF_PAGE_FREE_REPORTED)
				continue;
			/* Marked first, then looked at: a holder either
			 * published before the mark (we see it swapped) or
			 * keeps the mark with what it publishes. */
			v = rf_pte_mark_discard(pte);
			if (!pte_is_swapped(v))
				continue;
			for (;;) {
				if ((got = rf_pte_trylock(pte, &v)))
					break;
				if (rf_uffd_own_discard(p->u, pg))
					break; /* the discard's: it releases the page */
				sched_yield();
			}
			if (!got)
				continue;
			if (pte_is_swapped(v))
				pager_zero_discarded(p, r, idx, v);
			else
				rf_pte_unlock(vm, pte, v, v); /* put back meanwhile: marked */
		}
	}
	rf_vm_regions_unlock(vm);
	return 0;
}
