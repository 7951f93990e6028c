/* SPDX-License-Identifier: MIT */
/*
 * The swap pager's swap-out: cold guest pages out of guest RAM into the
 * store, a batch of up to RF_SWAP_MAX_BATCH pages at a time, by the swapper
 * thread (swapper.c) or a caller of rf_swap_pager_swap_out (tests,
 * benchmarks), one at a time under out_lock (they share the staging
 * buffer).
 *
 *   1. pick victims and lock them (pager_swap_out_walk): pages resident by
 *      pagemap and swappable by their state, page lock bits try-locked in
 *      address order; the victims stay locked until their batch is done;
 *   2. check_cap: the batch must fit under the VM's cap whole;
 *   3. register_victims: make sure their 2 MiB chunk is registered for
 *      missing faults (swap_register.c), so the guest's next touch faults
 *      to the pager;
 *   4. keep_resident: read pagemap again under the locks and let go of
 *      every victim that is no longer resident (another module discarded
 *      it meanwhile);
 *   5. move_victims: UFFDIO_MOVE them out of guest RAM into the staging
 *      buffer. The move is atomic against guest writes: a write lands
 *      before it (and is in what we store) or after it (and faults, waiting
 *      on the page lock). A plain copy + MADV_DONTNEED would lose a write
 *      made between the two. Without UFFDIO_MOVE (before Linux 6.8) the
 *      pager runs in copy mode, copy_victims instead: it marks the victims
 *      RF_PTE_F_WP, write-protects them through the VM's userfaultfd (a
 *      writer now waits in the kernel, and uffd.c leaves its fault to us),
 *      and copies them to the staging buffer through /proc/self/mem;
 *   6. store_victims: all-zero pages become ZERO and are not stored; the
 *      rest go to the store in one call (compressed tier or file, one
 *      pwritev). Pages the store refused (full, I/O error) are put back
 *      into place in move mode, un-protected in copy mode: nothing is
 *      lost, and the swap-out stops with a stat;
 *   7. copy mode only, discard_stored: discard the pages the store took or
 *      found zero (rf_vm_discard_locked, MADV_DONTNEED);
 *   8. publish_victims: publish SWAPPED/COMPRESSED with the store handle as
 *      payload (or ZERO) and unlock. In copy mode the writers are woken
 *      after that, fault as missing and are served like any other swap-in.
 *
 * Staging for working-set sampling (swap_sample.c) is the same batch with
 * another end: each victim gets a slot of the sample area (after step 4)
 * and moves (or is copied) there alone; step 6 keeps it there as it is,
 * SWAPPED with its slot's handle, with no store write and no cap; step 8
 * publishes it as such. A victim that stayed gives its slot back.
 *
 * The staging buffer is registered on a private userfaultfd of its own
 * (UFFDIO_MOVE wants its destination registered on the ioctl's context),
 * one without UFFD_EVENT_REMOVE, so discarding it never waits on a reader.
 * In copy mode it is plain anonymous memory. swap_pager.c sets it up.
 *
 * Swappable: PRIVATE pages, and ZERO or FREE_REPORTED ones that are
 * resident (written since they were discarded: PRIVATE again). MERGED,
 * BALLOONED and excluded pages are never swapped; nor is a page the dedup
 * engine has write-protected (RF_PTE_F_WP) or locked.
 *
 * Locking: regions_lock (read) > out_lock > page lock bits > the pager's
 * lock (registration) > the store's mutex. The victims' page locks are held
 * across the store write; the fault thread never waits for a page lock: a
 * fault on a victim is retried until the victim is unlocked (swap_in.c).
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "compat_linux.h"
#include "pager_internal.h"

struct victim {
	uint64_t idx;
	uint64_t v0;   /* the entry as locked: what rf_pte_unlock is told was there */
	uint64_t v;    /* what it becomes */
	uint32_t slot; /* staged (sampling): its slot in the sample area */
};

/* One batch: its victims go to the store (kind SAMPLE_NONE) or are staged
 * in sample slots (swap_sample.c), each in a slot of its own. */
struct batch {
	struct rf_region *r;
	struct victim *vs;
	unsigned int n;
	enum sample_kind kind;
};

/* End of the run of adjacent pages that starts at vs[@i] (vs ascending),
 * among the first @n; with @moved, only pages with moved[] >= 2 (stored
 * or zero) belong to it. Staged pages go one by one: their slots are not
 * adjacent. */
static unsigned int run_end(const struct batch *b, unsigned int i, unsigned int n,
			    const unsigned int *moved)
{
	const struct victim *vs = b->vs;
	unsigned int j = i + 1;

	while (!b->kind && j < n && vs[j].idx == vs[j - 1].idx + 1 && (!moved || moved[j] >= 2))
		j++;
	return j;
}

/* Where victim @i goes out of guest RAM: its place in the staging buffer,
 * or its sample slot. */
static uint8_t *victim_dst(const struct rf_pager *p, const struct batch *b, unsigned int i)
{
	if (b->kind)
		return pager_slot_page(p, b->vs[i].slot);
	return p->stage + ((size_t)i << RF_PAGE_SHIFT);
}

/* Yields a put-back waits, at most, for a REMOVE event read and not yet
 * handled (about 100 ms): the handler never waits for our lock, so only a
 * map or unmap holding the regions lock for writing keeps it that long. */
#define PUT_BACK_WAIT 100000

/* Put a page's content back where it was (the store refused it). We hold
 * the page lock, so no fill can race us. While an outside discard is under
 * way we wait (pager_map_back, swap_in.c: the content is only in the
 * staging buffer, so it must go back now), past PUT_BACK_WAIT only for the
 * kernel's own EAGAIN; a page such a discard marked meanwhile lost its
 * bytes with it: not put back, it stays absent and reads as zeros. */
static int put_back(struct rf_pager *p, struct rf_region *r, uint64_t idx, const void *src)
{
	unsigned int waited = 0;
	int err;

	while ((err = pager_map_back(p, r, idx, src)) == -EAGAIN && waited++ < PUT_BACK_WAIT)
		sched_yield();
	while (err == -EAGAIN &&
	       (err = pager_map_copy(p, (uintptr_t)rf_region_page(r, idx), src, true)) == -EAGAIN)
		sched_yield();
	if (err == -EEXIST || err == -ECANCELED)
		err = 0;
	if (err)
		rf_log(p->e, RF_LOG_ERR, "%s: swap: putting gpa 0x%llx back: %s", p->vm->name,
		       (unsigned long long)(r->gpa + (idx << RF_PAGE_SHIFT)), strerror(-err));
	return err;
}

/* Copy mode: lift the protection of @npg pages from @idx (which wakes their
 * writers). They stay resident and PRIVATE. */
static void unprotect(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint64_t npg)
{
	int err =
	    rf_uffd_writeprotect(p->u, rf_region_page(r, idx), npg << RF_PAGE_SHIFT, false, false);

	if (err) {
		/* Not registered any more (remapped by another module, which
		 * left an unprotected mapping): nobody is left waiting on ours. */
		rf_uffd_wake(p->u, rf_region_page(r, idx), npg << RF_PAGE_SHIFT);
	}
}

/*
 * Copy a run of @npg guest pages from @addr to @dst without faulting on any
 * of them: through /proc/self/mem, whose reads the kernel makes without
 * waiting for userfaultfd (an absent page in a registered range fails the
 * read instead of sending a missing fault). A plain memcpy of a page that
 * has gone absent would fault to the VM's uffd fault thread, which can
 * never take the page lock we hold: every thread touching the VM would
 * hang. Sets ok[k] for each page copied; returns how many were.
 */
static unsigned int read_run(struct rf_pager *p, uint8_t *addr, unsigned int npg, uint8_t *dst,
			     bool *ok)
{
	unsigned int k = 0, copied = 0;

	while (k < npg) {
		size_t want = (size_t)(npg - k) << RF_PAGE_SHIFT;
		ssize_t n = pread(p->mem_fd, dst + ((size_t)k << RF_PAGE_SHIFT), want,
				  (off_t)(uintptr_t)(addr + ((size_t)k << RF_PAGE_SHIFT)));
		unsigned int got;

		if (n < 0 && errno == EINTR)
			continue;
		got = n > 0 ? (unsigned int)((size_t)n >> RF_PAGE_SHIFT) : 0;
		for (unsigned int i = 0; i < got; i++)
			ok[k + i] = true;
		copied += got;
		/* The page at k + got is absent (or the read failed there):
		 * leave it, go on after it. */
		k += got + ((size_t)got << RF_PAGE_SHIFT == want ? 0 : 1);
	}
	return copied;
}

/* Step 2, the hard cap: room for the whole batch of @n pages, or nothing.
 * 0, or -ENOSPC (counted). */
static int check_cap(struct rf_pager *p, unsigned int n)
{
	uint64_t cap = p->cap, swapped;

	swapped = (atomic_load(&p->file_pages) + atomic_load(&p->tier_pages)) << RF_PAGE_SHIFT;
	if (cap != RF_SWAP_NO_TARGET && swapped + ((uint64_t)n << RF_PAGE_SHIFT) > cap) {
		atomic_fetch_add(&p->enospc, 1);
		return -ENOSPC;
	}
	return 0;
}

/*
 * Step 3, registration before the move, so the guest's next touch faults
 * to the pager. A chunk that cannot be registered whole (another module
 * mapped something there the kernel refuses to register) falls back to the
 * page alone; a page that cannot be registered stays in memory (unlocked
 * here). Returns the victims kept.
 */
static unsigned int register_victims(struct rf_pager *p, struct rf_region *r, struct victim *vs,
				     unsigned int n)
{
	unsigned int kept = 0;

	pthread_mutex_lock(&p->lock);
	for (unsigned int i = 0; i < n; i++) {
		if (pager_ensure_registered(p, r, vs[i].idx) != 0 &&
		    rf_uffd_register(p->u, rf_region_page(r, vs[i].idx), RF_PAGE_SIZE,
				     pager_reg_mode(p)) != 0) {
			rf_pte_unlock(p->vm, &r->pte[vs[i].idx], vs[i].v0, vs[i].v0);
			continue;
		}
		vs[kept++] = vs[i];
	}
	pthread_mutex_unlock(&p->lock);
	return kept;
}

/*
 * Step 4: the victims were chosen from a pagemap reading taken before
 * their locks. Since then another module may have discarded one (the dedup
 * engine found it zero, the balloon took it): its state then says so, but
 * it may also be a page that is absent now with a state we would still
 * swap. Read pagemap again under the locks (no library thread changes a
 * page we hold) and let go of every victim that is not resident. A resident ZERO or FREE_REPORTED
 * page was written by the guest since: it is PRIVATE again (published when
 * it is unlocked, swapped or not). Returns the victims kept.
 */
static unsigned int keep_resident(struct rf_pager *p, struct rf_region *r, struct victim *vs,
				  unsigned int n)
{
	uint64_t ents[PAGER_WINDOW], first;
	unsigned int kept = 0;

	if (n == 0)
		return 0;
	first = vs[0].idx;
	if (vs[n - 1].idx - first >= PAGER_WINDOW ||
	    rf_pagemap_read(p->e, rf_region_page(r, first), vs[n - 1].idx - first + 1, ents) != 0)
		memset(ents, 0, sizeof(ents)); /* unknown: keep none */
	for (unsigned int i = 0; i < n; i++) {
		uint64_t ent = vs[i].idx - first < PAGER_WINDOW ? ents[vs[i].idx - first] : 0;

		if (!rf_pagemap_resident(p->e, ent) || (ent & PM_FILE)) {
			rf_pte_unlock(p->vm, &r->pte[vs[i].idx], vs[i].v0, vs[i].v0);
			continue;
		}
		vs[i].v = rf_pte_with_state(vs[i].v, RF_PAGE_PRIVATE);
		vs[kept++] = vs[i];
	}
	return kept;
}

/*
 * Move mode, after step 5, when a move fell short: which victims moved is
 * read from the page tables, not taken from UFFDIO_MOVE's count, which can
 * be short:
 * Linux 6.18 was seen failing a one-page move with EEXIST after it had
 * moved the page (its retry found the staging slot it had just filled).
 * A page counted as staying is published PRIVATE and its content dropped
 * with the staging buffer: the guest then reads zeros. So a victim moved
 * when its page has left guest RAM and is in its staging slot, and stayed
 * when it is still in guest RAM, whatever the count says. Neither can
 * change under us: we hold the victims' locks, and a fault on a page that
 * left waits for them. A page found in neither place is reported (it
 * cannot happen while we hold its lock) and published as staying.
 */
static void moved_by_pagemap(struct rf_pager *p, const struct batch *b, unsigned int n,
			     unsigned int *moved)
{
	uint64_t src[PAGER_WINDOW], stage[RF_SWAP_MAX_BATCH], first, have = PM_PRESENT | PM_SWAP;
	const struct victim *vs = b->vs;
	struct rf_region *r = b->r;
	unsigned int miscounted = 0;
	bool unread = false;

	if (n == 0)
		return;
	first = vs[0].idx;
	for (unsigned int k = 0; k < n && b->kind; k++)
		unread |= rf_pagemap_read(p->e, victim_dst(p, b, k), 1, &stage[k]) != 0;
	/* keep_resident kept only victims inside one window of pagemap. */
	if (unread || vs[n - 1].idx - first >= PAGER_WINDOW ||
	    rf_pagemap_read(p->e, rf_region_page(r, first), vs[n - 1].idx - first + 1, src) != 0 ||
	    (!b->kind && rf_pagemap_read(p->e, p->stage, n, stage) != 0)) {
		rf_log_ratelimited(
		    p->e, &p->rl, RF_LOG_WARN,
		    "%s: swap: pagemap unreadable after a move: trusting the kernel's "
		    "count for %u pages",
		    p->vm->name, n);
		return;
	}
	for (unsigned int k = 0; k < n; k++) {
		bool gone = !(src[vs[k].idx - first] & have), staged = stage[k] & have;
		unsigned int m = gone && staged;

		if (gone && !staged)
			rf_log(p->e, RF_LOG_ERR,
			       "%s: swap: gpa 0x%" PRIx64 " left guest RAM but is not in the "
			       "staging buffer",
			       p->vm->name, r->gpa + (vs[k].idx << RF_PAGE_SHIFT));
		if (m != (moved[k] != 0))
			miscounted++;
		moved[k] = m;
	}
	if (miscounted)
		rf_log_ratelimited(
		    p->e, &p->rl, RF_LOG_WARN,
		    "%s: swap: UFFDIO_MOVE miscounted %u of %u pages; the page tables "
		    "were followed",
		    p->vm->name, miscounted, n);
}

/*
 * Move mode, step 5: move each run of adjacent victims out of guest RAM
 * into the staging buffer in one UFFDIO_MOVE. A partial move stops at a
 * page that cannot move (pinned, shared by kernel KSM, not present): that
 * page stays where it is and the rest of the run is tried again. When a
 * move fell short, what moved is read back from the page tables
 * (moved_by_pagemap); a move that took its whole run needs no check.
 */
static void move_victims(struct rf_pager *p, const struct batch *b, unsigned int n,
			 unsigned int *moved)
{
	const struct victim *vs = b->vs;
	struct rf_region *r = b->r;
	bool short_move = false;

	for (unsigned int i = 0; i < n;) {
		unsigned int j = run_end(b, i, n, NULL), npg;
		struct uffdio_move mv;

		mv = (struct uffdio_move){
		    .dst = (uintptr_t)victim_dst(p, b, i),
		    .src = (uintptr_t)rf_region_page(r, vs[i].idx),
		    .len = (uint64_t)(j - i) << RF_PAGE_SHIFT,
		};
		rf_debug_note(p->vm, (void *)(uintptr_t)mv.src, mv.len, "move out");
		if (ioctl(p->stage_fd, UFFDIO_MOVE, &mv) == 0)
			mv.move = (int64_t)mv.len;
		/* Tests make the kernel's count wrong here. */
		RF_TEST_POINT("swap.moved", &mv);
		if (mv.move < 0)
			mv.move = 0;
		npg = (unsigned int)((uint64_t)mv.move >> RF_PAGE_SHIFT);
		for (unsigned int k = i; k < i + npg; k++)
			moved[k] = 1;
		short_move |= i + npg != j;
		i = i + npg == j ? j : i + npg + 1;
	}
	if (short_move)
		moved_by_pagemap(p, b, n, moved);
}

/*
 * Copy mode, step 5: mark each locked victim RF_PTE_F_WP (so uffd.c leaves
 * a writer's fault to us), write-protect each run of adjacent victims, and
 * copy them to the staging buffer; moved[i] = 1 for a page copied. A run
 * that cannot be protected stays where it is, and so does a page that
 * could not be read (it went absent under us: only a discard from outside
 * the library can do that to a page we hold); its protection is lifted.
 */
static void copy_victims(struct rf_pager *p, const struct batch *b, unsigned int n,
			 unsigned int *moved)
{
	const struct victim *vs = b->vs;
	struct rf_region *r = b->r;

	/* ORs, not stores: F_DISCARD may be set meanwhile (page_table.h). */
	for (unsigned int i = 0; i < n; i++)
		atomic_fetch_or_explicit(&r->pte[vs[i].idx], RF_PTE_F_WP, memory_order_release);
	RF_TEST_POINT("swap.copy", p->vm);
	for (unsigned int i = 0; i < n;) {
		unsigned int j = run_end(b, i, n, NULL);
		bool ok[RF_SWAP_MAX_BATCH] = {false};

		if (rf_uffd_writeprotect(p->u, rf_region_page(r, vs[i].idx),
					 (uint64_t)(j - i) << RF_PAGE_SHIFT, true, false) == 0) {
			read_run(p, rf_region_page(r, vs[i].idx), j - i, victim_dst(p, b, i), ok);
			for (unsigned int k = i; k < j; k++) {
				if (ok[k - i])
					moved[k] = 1;
				else
					unprotect(p, r, vs[k].idx, 1);
			}
		}
		i = j;
	}
}

/* The store refused victim @i, whose content is at @page in the staging
 * buffer: it stays. Copy mode lifts its protection (it never left); move
 * mode puts it back, and stops the VM if even that fails. */
static void keep_refused(struct rf_pager *p, struct rf_region *r, const struct victim *vs,
			 unsigned int i, const void *page)
{
	if (p->copy_mode)
		unprotect(p, r, vs[i].idx, 1);
	else if (put_back(p, r, vs[i].idx, page) != 0)
		pager_stop_vm(p, r->gpa + (vs[i].idx << RF_PAGE_SHIFT), RF_SWAP_NONE, -EIO);
}

/*
 * Step 6: of the victims that left (moved = 1), the all-zero ones become
 * ZERO and are not stored (moved = 2); the rest go to the store in one
 * call. A page stored gets its handle and SWAPPED or COMPRESSED in vs[].v
 * (moved = 3); a page the store refused (full, I/O error) is kept
 * (moved = 0). Returns 0 or the store's error.
 */
static int store_victims(struct rf_pager *p, struct rf_region *r, struct victim *vs, unsigned int n,
			 unsigned int *moved)
{
	void *pages[RF_SWAP_MAX_BATCH];
	uint32_t handles[RF_SWAP_MAX_BATCH];
	unsigned int sidx[RF_SWAP_MAX_BATCH], ns = 0;
	int err = 0;

	for (unsigned int i = 0; i < n; i++) {
		if (!moved[i])
			continue;
		pages[ns] = p->stage + ((size_t)i << RF_PAGE_SHIFT);
		if (pager_page_zero(pages[ns])) {
			moved[i] = 2;
			continue;
		}
		sidx[ns++] = i;
	}
	if (ns) {
		bool tier_ok = true;

		err = rf_swap_store_put(p->store, pages, ns, tier_ok, handles);
		if (err == -ENOSPC)
			atomic_fetch_add(&p->enospc, 1);
	}
	for (unsigned int k = 0; k < ns; k++) {
		unsigned int i = sidx[k];

		if (handles[k] == RF_SWAP_NONE) {
			keep_refused(p, r, vs, i, pages[k]);
			moved[i] = 0;
			continue;
		}
		pager_account_add(p, handles[k], +1);
		moved[i] = 3;
		vs[i].v = rf_pte_with_payload(vs[i].v, handles[k]);
		vs[i].v = rf_pte_with_state(vs[i].v, rf_swap_handle_in_tier(handles[k])
							 ? RF_PAGE_COMPRESSED
							 : RF_PAGE_SWAPPED);
	}
	return err;
}

/*
 * Step 6 of a staged batch (sampling): every victim that left is kept in
 * its slot as it is, zero or not (moved = 3), SWAPPED with its slot's
 * handle, so that every path that meets a swapped page (the fault, a
 * discard, an unmap) meets it too. Nothing is compressed or written.
 */
static void stage_victims(const struct batch *b, unsigned int n, unsigned int *moved)
{
	for (unsigned int i = 0; i < n; i++) {
		if (!moved[i])
			continue;
		moved[i] = 3;
		b->vs[i].v = rf_pte_with_payload(b->vs[i].v, PAGER_H_SAMPLE | b->vs[i].slot);
		b->vs[i].v = rf_pte_with_state(b->vs[i].v, RF_PAGE_SWAPPED);
	}
}

/*
 * Copy mode, step 7, after the store: discard every run of adjacent pages
 * that is stored or zero (moved >= 2). If madvise fails part way, pagemap tells
 * which pages are still there: those stay PRIVATE (their store copy is
 * dropped and their protection lifted), the others are gone and go on to be
 * published as swapped. Nothing is lost either way.
 */
static void discard_stored(struct rf_pager *p, const struct batch *b, unsigned int n,
			   unsigned int *moved)
{
	const struct victim *vs = b->vs;
	struct rf_region *r = b->r;

	for (unsigned int i = 0; i < n;) {
		uint64_t ents[RF_SWAP_MAX_BATCH];
		unsigned int j;
		int err;

		if (moved[i] < 2) {
			i++;
			continue;
		}
		j = run_end(b, i, n, moved);
		/* From the discard until publication the content is only in
		 * the store: faults wait, even reads of a protected page. */
		for (unsigned int k = i; k < j; k++)
			atomic_fetch_or_explicit(&r->pte[vs[k].idx], RF_PTE_F_WP | RF_PTE_F_OUT,
						 memory_order_release);
		err = rf_vm_discard_locked(p->vm, rf_region_page(r, vs[i].idx),
					   (uint64_t)(j - i) << RF_PAGE_SHIFT);
		RF_TEST_POINT("swap.discarded", rf_region_page(r, vs[i].idx));
		if (err) {
			rf_log_ratelimited(
			    p->e, &p->rl, RF_LOG_ERR,
			    "%s: swap: discarding gpa 0x%llx (+%u pages) after "
			    "copy-out: %s (pages still present stay in memory)",
			    p->vm->name,
			    (unsigned long long)(r->gpa + (vs[i].idx << RF_PAGE_SHIFT)), j - i,
			    strerror(-err));
			if (rf_pagemap_read(p->e, rf_region_page(r, vs[i].idx), j - i, ents) != 0)
				memset(ents, 0, sizeof(ents)); /* unknown: the store copies stay */
			for (unsigned int k = i; k < j; k++) {
				if (!(ents[k - i] & PM_PRESENT))
					continue;
				/* (A staged page's slot is given back at publish.) */
				if (moved[k] == 3 && !b->kind)
					pager_drop_page(p, r, vs[k].idx, rf_pte_payload(vs[k].v));
				moved[k] = 0;
				unprotect(p, r, vs[k].idx, 1);
			}
		}
		i = j;
	}
}

/*
 * Step 8: publish every victim and unlock it: ZERO for a zero page,
 * SWAPPED/COMPRESSED with its handle for a stored one, unchanged for the
 * others; none stays marked cold or write-protected. *@out counts the
 * pages that left guest RAM.
 */
static void publish_victims(struct rf_pager *p, const struct batch *b, unsigned int n,
			    const unsigned int *moved, uint64_t *out)
{
	const struct victim *vs = b->vs;

	for (unsigned int i = 0; i < n; i++) {
		rf_pte_t *pte = &b->r->pte[vs[i].idx];
		uint64_t nv = vs[i].v;

		if (b->kind) {
			/* Staged: still in memory, in its slot (counted there
			 * by the measure). A victim that stayed gives its slot
			 * back. */
			if (moved[i] == 3) {
				atomic_fetch_add(b->kind == SAMPLE_EST ? &p->sampled : &p->probed,
						 1);
				(*out)++;
			} else {
				pager_slot_put(p, vs[i].slot);
			}
		} else if (moved[i] >= 2) {
			uint64_t est = atomic_load(&p->resident_est);

			/* One page less in memory (saturating: the estimate is
			 * reset by every measure). */
			while (est >= RF_PAGE_SIZE &&
			       !atomic_compare_exchange_weak(&p->resident_est, &est,
							     est - RF_PAGE_SIZE))
				;
		}
		if (b->kind) {
			/* (Its new state is in vs[].v already.) */
		} else if (moved[i] == 2) {
			nv = rf_pte_with_payload(rf_pte_with_state(nv, RF_PAGE_ZERO), 0);
			atomic_fetch_add(&p->zero_outs, 1);
			(*out)++;
		} else if (moved[i] == 3) {
			atomic_fetch_add(&p->swap_outs, 1);
			(*out)++;
		}
		nv &= ~(RF_PTE_F_COLD | RF_PTE_F_WP | PTE_HOT_MASK);
		rf_pte_unlock(p->vm, pte, vs[i].v0, nv);
	}
}

/*
 * Swap out @n locked victims of @r (ascending, n <= RF_SWAP_MAX_BATCH) and
 * unlock them all: steps 2 to 8 above. moved[i] says how far victim i got:
 * 0 stays in guest RAM, 1 is in the staging buffer (moved there, or copied
 * in copy mode), 2 is all zero, 3 is stored. Returns 0 or the store's
 * error; *@out counts pages that left guest RAM (stored or zero).
 */
/* A staged batch: a slot for each victim, in order; a victim without one
 * (all taken) is let go. Returns the victims kept. */
static unsigned int take_slots(struct rf_pager *p, const struct batch *b, unsigned int n)
{
	unsigned int kept = 0;

	for (unsigned int i = 0; i < n; i++) {
		if (!pager_slot_get(p, b->r, b->vs[i].idx, b->kind, &b->vs[i].slot)) {
			rf_pte_unlock(p->vm, &b->r->pte[b->vs[i].idx], b->vs[i].v0, b->vs[i].v0);
			continue;
		}
		b->vs[kept++] = b->vs[i];
	}
	return kept;
}

static int swap_out_batch(struct rf_pager *p, struct batch *b, uint64_t *out)
{
	unsigned int moved[RF_SWAP_MAX_BATCH] = {0};
	struct rf_region *r = b->r;
	struct victim *vs = b->vs;
	unsigned int n = b->n;
	int err = 0;

	/* Staged pages stay in memory: the cap on swapped bytes is not theirs. */
	if (!b->kind)
		err = check_cap(p, n);
	if (err)
		goto publish;
	n = register_victims(p, r, vs, n);
	n = keep_resident(p, r, vs, n);
	if (b->kind)
		n = take_slots(p, b, n);
	RF_TEST_POINT("swap.victims-locked", p->vm);
	if (p->copy_mode)
		copy_victims(p, b, n, moved);
	else
		move_victims(p, b, n, moved);
	if (b->kind)
		stage_victims(b, n, moved);
	else
		err = store_victims(p, r, vs, n, moved);
	if (p->copy_mode)
		discard_stored(p, b, n, moved);
publish:
	publish_victims(p, b, n, moved, out);
	/* Copy mode: writers that waited on the protection retry now, and
	 * fault as missing on the pages that left. */
	if (p->copy_mode && n)
		rf_uffd_wake(p->u, rf_region_page(r, vs[0].idx),
			     (vs[n - 1].idx - vs[0].idx + 1) << RF_PAGE_SHIFT);
	/* The staging buffer holds only copies now (or pages put back). */
	madvise(p->stage, (size_t)RF_SWAP_MAX_BATCH << RF_PAGE_SHIFT, MADV_DONTNEED);
	if (err && err != -ENOSPC)
		rf_log_ratelimited(p->e, &p->rl, RF_LOG_ERR, "%s: swap-out stopped: %s",
				   p->vm->name, strerror(-err));
	return err;
}

/* Can page @v be swapped out at all? (The caller has seen it resident: a
 * ZERO or FREE_REPORTED page that is resident was written since it was
 * discarded, and keep_resident makes it PRIVATE.) */
static bool swappable(uint64_t v)
{
	enum rf_page_state s = rf_pte_state(v);

	/* F_DISCARD: an outside discard may still zap it; bytes moved out now
	 * would outlive the discard (pager_on_remove). */
	return (s == RF_PAGE_PRIVATE || s == RF_PAGE_ZERO || s == RF_PAGE_FREE_REPORTED) &&
	       !(v & (RF_PTE_EXCLUDED | RF_PTE_F_WP | RF_PTE_F_UWP | RF_PTE_F_DISCARD));
}

/*
 * Step 1: walk [@first, @first + @npages) of @r, pick the pages that are
 * resident and swappable, and (if @clock) still marked cold, marking the
 * others, and lock them as victims; swap them out a batch at a time.
 * With @clock, a page that sampling found touched (pte_hot_laps) is
 * skipped for three passes: it is marked cold on the fourth, and tested
 * again before it can go. (With one pass, the hot set of the read-only
 * hotcold bench was tested every third revolution, a fault per hot page
 * each time.) With @probe too, the victims are staged
 * as probes (swap_sample.c) rather than swapped out: they go to the store
 * only if the guest leaves them alone for a period. Stops after @want
 * pages left. Returns 0 or the first store error. Called with
 * regions_lock held for reading and out_lock held.
 */
int pager_swap_out_walk(struct rf_pager *p, struct rf_region *r, uint64_t first, uint64_t npages,
			bool clock, bool probe, uint64_t want, uint64_t *done)
{
	uint64_t ents[PAGER_WINDOW];
	struct victim vs[RF_SWAP_MAX_BATCH];
	struct batch b = {.r = r, .vs = vs, .kind = probe ? SAMPLE_PROBE : SAMPLE_NONE};
	unsigned int n = 0;
	int err = 0;

	for (uint64_t base = first; base < first + npages && *done < want && !err;
	     base += PAGER_WINDOW) {
		size_t cnt =
		    first + npages - base < PAGER_WINDOW ? first + npages - base : PAGER_WINDOW;

		if (rf_pagemap_read(p->e, rf_region_page(r, base), cnt, ents) != 0)
			return -EIO;
		if (probe && pager_slots_free(p) == 0)
			break; /* every slot holds a probe: wait for them to settle */
		for (size_t k = 0; k < cnt && *done + n < want; k++) {
			uint64_t idx = base + k, v;
			rf_pte_t *pte = &r->pte[idx];

			if (!rf_pagemap_resident(p->e, ents[k]) || !swappable(rf_pte_peek(pte)))
				continue;
			RF_TEST_POINT("swap.victim-picked", pte);
			if (!rf_pte_trylock(pte, &v))
				continue;
			if (!swappable(v)) {
				rf_pte_unlock(p->vm, pte, v, v);
				continue;
			}
			if (clock && pte_hot_laps(v)) {
				atomic_fetch_add(&p->hot_skips, 1);
				rf_pte_unlock(p->vm, pte, v,
					      pte_with_hot_laps(v, pte_hot_laps(v) - 1) &
						  ~RF_PTE_F_COLD);
				continue;
			}
			if (clock && !(v & RF_PTE_F_COLD)) {
				rf_pte_unlock(p->vm, pte, v, v | RF_PTE_F_COLD);
				continue;
			}
			/* Victims stay locked until their batch is done. Batches
			 * never span windows' locks out of address order. */
			vs[n].idx = idx;
			vs[n].v0 = v;
			vs[n].v = v;
			if (++n == RF_SWAP_MAX_BATCH) {
				b.n = n;
				err = swap_out_batch(p, &b, done);
				n = 0;
				if (err)
					break;
			}
		}
		if (n && !err) {
			b.n = n;
			err = swap_out_batch(p, &b, done);
			n = 0;
		}
	}
	if (n) {
		uint64_t ignored = 0;

		b.n = n;
		swap_out_batch(p, &b, &ignored);
	}
	return err;
}

int pager_stage_one(struct rf_pager *p, struct rf_region *r, uint64_t idx)
{
	struct victim vs[1];
	struct batch b = {.r = r, .vs = vs, .n = 1, .kind = SAMPLE_EST};
	uint64_t ent, v, out = 0;
	rf_pte_t *pte = &r->pte[idx];

	if (rf_pagemap_read(p->e, rf_region_page(r, idx), 1, &ent) != 0 ||
	    !rf_pagemap_resident(p->e, ent) || (ent & PM_FILE) || !swappable(rf_pte_peek(pte)))
		return 0;
	if (!rf_pte_trylock(pte, &v))
		return 0;
	if (!swappable(v)) {
		rf_pte_unlock(p->vm, pte, v, v);
		return 0;
	}
	vs[0] = (struct victim){.idx = idx, .v0 = v, .v = v};
	swap_out_batch(p, &b, &out);
	return out ? 1 : 0;
}

int rf_swap_pager_swap_out(struct rf_pager *p, uint64_t gpa, uint64_t npages, uint64_t *done)
{
	rf_vm *vm = p->vm;
	struct rf_region *r;
	uint64_t d = 0;
	int err;

	if (done)
		*done = 0;
	if (atomic_load(&p->stopped))
		return -EIO;
	rf_vm_regions_rdlock(vm);
	r = __rf_vm_find_region(vm, gpa);
	if (!r || (gpa & (RF_PAGE_SIZE - 1)) || npages > r->npages - rf_region_index(r, gpa)) {
		rf_vm_regions_unlock(vm);
		return -EFAULT;
	}
	pthread_mutex_lock(&p->out_lock);
	err = pager_swap_out_walk(p, r, rf_region_index(r, gpa), npages, false, false, UINT64_MAX,
				  &d);
	pthread_mutex_unlock(&p->out_lock);
	rf_vm_regions_unlock(vm);
	if (done)
		*done = d;
	return err;
}
