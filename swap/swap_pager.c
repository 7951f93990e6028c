/* SPDX-License-Identifier: MIT */
/*
 * The swap pager of one VM: swaps cold guest pages out to the store and
 * serves the guest's faults on them through the VM's userfaultfd.
 *
 * Swap-out (the VM's swapper thread):
 *   1. lock a batch of victim pages (page lock bits, address order);
 *   2. make sure their 2 MiB chunk is registered for missing faults. A VM
 *      whose pager has no target yet is registered lazily (ranges without
 *      swapped pages never send faults to the pager, so first touches there
 *      cost what the kernel charges). Once it has a target, all of its RAM
 *      is registered, so that a first write, which allocates a page as
 *      surely as a swap-in does, waits for room the same way (below);
 *   3. UFFDIO_MOVE them out of guest RAM into a staging buffer. The move is
 *      atomic against guest writes: a write lands before it (and is in what
 *      we store) or after it (and faults, waiting on the page lock). A plain
 *      copy + MADV_DONTNEED would lose a write made between the two.
 *      Without UFFDIO_MOVE (before Linux 6.8) the pager runs in copy mode:
 *      it marks the victims RF_PTE_F_WP, write-protects them through the
 *      VM's userfaultfd (a writer now waits in the kernel, and uffd.c leaves
 *      its fault to us), copies them to the staging buffer, and discards
 *      only the pages the store took (MADV_DONTNEED) before waking the
 *      writers, who then fault as missing and are served like any other
 *      swap-in. A page the store refused is simply un-protected;
 *   4. all-zero pages become ZERO and are not stored; the rest go to the
 *      store in one call (compressed tier or file, one pwritev);
 *   5. publish SWAPPED/COMPRESSED with the store handle as payload and
 *      unlock. Pages the store refused (full, I/O error) are copied back
 *      into place before unlock: nothing is lost, and the swap-out stops
 *      with a stat.
 *   The staging buffer is registered on a private userfaultfd of its own
 *   (UFFDIO_MOVE wants its destination registered on the ioctl's context),
 *   one without UFFD_EVENT_REMOVE, so discarding it never waits on a reader.
 *   In copy mode it is plain anonymous memory.
 *
 * Swap-in (a missing fault, on the pager thread of uffd.c): the handler
 * only ever try-locks a page (uffd.h explains why it may not block), reads
 * the page back, verifies its checksum, maps it with UFFDIO_COPY, frees the
 * store handle, publishes PRIVATE and only then wakes the faulting thread
 * (so the table is right by the time the guest runs again). A read error or a
 * checksum mismatch is retried; if it persists the VM is stopped: its
 * faulting threads are left waiting, never woken onto zeros or a wrong
 * page, and rf_vm_swap_stats() reports it. When faults look sequential (this
 * page follows the last one served, or was itself read ahead), up to
 * prefetch_pages following pages that were swapped in the same batch (next
 * file slots) are read with one preadv into a small swap cache after the
 * faulting page is served; a later fault on one of them
 * is served from the cache (a prefetch hit). Pages are not mapped ahead:
 * that would make them resident again without any sign they are wanted.
 * A missing fault on any other page (never touched, zero, ballooned,
 * free-reported) is a read, answered with the kernel's zero page, or a write,
 * answered with a zeroed private page (one fault, not a zero page and then a
 * copy-on-write fault); a written ZERO or FREE_REPORTED page is PRIVATE
 * from then on.
 *
 * Events: UFFD_EVENT_REMOVE (someone discarded guest RAM with madvise)
 * turns swapped pages in the range into ZERO and frees their slots, so a
 * discarded page reads as zeros afterwards, never as stale swap content.
 * Pages locked when the event is handled are skipped and the event is not
 * retried: every discard the library makes (copy mode's own included) is
 * made under the page locks through rf_vm_discard_locked, which returns
 * only once the event is dispatched, so the event can never be taken for a
 * later discard of pages swapped out since. Discards done through
 * rf_vm_discard() reach us earlier, through the page_release hook, under
 * the page lock. While an event is pending the
 * kernel fails uffd ioctls with EAGAIN: the handler then returns -EAGAIN
 * and uffd.c retries it after reading the event. EEXIST from a copy or a
 * zero page means another fill won: success. ENOENT means the range is no
 * longer registered (remapped): wake the thread so it faults again on
 * whatever is mapped now.
 *
 * Victim choice: pages not touched recently go first. This kernel has no
 * soft-dirty and no idle-page tracking (both compiled out, checked), and
 * the dedup engine's write-protect must stay synchronous, so the VM's
 * userfaultfd cannot use asynchronous write-protect (WP_ASYNC is a property
 * of the whole descriptor, and a range belongs to one descriptor) for
 * PAGEMAP_SCAN's PAGE_IS_WRITTEN. What is left is sampling, as ESX does,
 * with the swap fault itself as the sample: a CLOCK hand walks the resident
 * pages; the first pass marks a page cold (RF_PTE_F_COLD), the next pass
 * swaps it out if it is still marked. Any fault through the pager (swap-in
 * or zero fill) clears the mark, so a page that came back because it was
 * wanted gets a whole revolution of the hand before it can go again. The
 * hand only moves while the VM is above its target, so a VM that fits
 * keeps everything. MERGED, BALLOONED, FREE_REPORTED and excluded pages are
 * never swapped; nor is a page the dedup engine has write-protected
 * (RF_PTE_F_WP) or locked. A ZERO page is swapped only if it is resident
 * (it was written since it was found zero).
 *
 * Holding the target: the swapper measures the VM (PAGEMAP_SCAN) every
 * 20 ms near its target, less often far below it, and when 256 pages have
 * come back since; it swaps out down to 1/64 below the target. Between
 * measures, swap-ins and first writes wait (the handler returns -EAGAIN,
 * uffd.c retries it a millisecond later) while the estimate is more than
 * 1/32 above the target, unless the swapper's last round found nothing it
 * could evict. Without first writes in that rule a guest filling fresh
 * memory ran 10% over its limit before the swapper caught up, measured.
 *
 * Lock order: regions_lock (read) > out_lock (one swap-out at a time: they
 * share the staging buffer) > page lock bits (address order, try-locked) >
 * the pager's lock > the store's mutex; cache_lock is a leaf. The swapper
 * holds page locks across the store write; the pager never waits for a
 * page lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "compat_linux.h"
#include "swap_hist.h"
#include "swap_pager.h"
#include "uffd.h"

#define CHUNK_SHIFT 21 /* lazy registration granule: 2 MiB */
#define CACHE_MAX   64 /* swap cache entries (prefetched pages) */
#define READ_TRIES  3  /* reads of a page before the VM is stopped */
#define TICK_NS	    (20 * 1000000ull)
#define FILL_MAX    256 /* pages a first write may fill ahead: 1 MiB */
#define WINDOW	    512 /* pagemap entries read at once */

struct chunk_map {
	struct rf_region *r;
	uint64_t *bits; /* one bit per 2 MiB chunk: registered for missing faults */
	size_t words;
	bool all; /* every chunk tried (the VM has a target) */
};

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
	uint8_t *stage;	 /* RF_SWAP_MAX_BATCH pages, swapper only */
	uint8_t *bounce; /* one page, pager thread only */
	uint8_t *zeros;	 /* FILL_MAX pages never written: the source of fills */

	pthread_t thread;
	pthread_mutex_t lock;	  /* target, cap, stop, chunk maps, hand */
	pthread_mutex_t out_lock; /* one swap-out at a time: the staging buffer */
	pthread_cond_t cond;
	bool stop, thread_started;
	uint64_t target, cap;
	struct chunk_map chunks[RF_MAX_REGIONS];
	uint64_t hand_gpa;

	pthread_mutex_t cache_lock;
	struct cache_ent cache[CACHE_MAX];
	uint8_t *cache_buf; /* CACHE_MAX pages */
	unsigned int cache_next;
	struct rf_region *last_r; /* the last page served (pager thread only) */
	uint64_t last_idx;
	struct rf_region *fill_r; /* the last first-write run filled (pager thread) */
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
	_Atomic uint64_t throttled;
	_Atomic uint64_t grown; /* pages added by faults: swap-ins, first writes */
	_Atomic bool stopped;
	_Atomic bool dead; /* its VM is gone; kept until the engine goes */
	struct rf_pager *next_dead;
	struct rf_hist lat;
	struct rf_ratelimit rl;
};

static pthread_mutex_t pager_create_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- accounting ------------------------------------------------------- */

static void account_add(struct rf_pager *p, uint32_t h, int sign)
{
	if (rf_swap_handle_in_tier(h)) {
		uint64_t m = rf_swap_store_mem_bytes(p->store, h);

		if (sign > 0) {
			atomic_fetch_add(&p->tier_pages, 1);
			atomic_fetch_add(&p->tier_mem, m);
		} else {
			atomic_fetch_sub(&p->tier_pages, 1);
			atomic_fetch_sub(&p->tier_mem, m);
		}
	} else if (sign > 0) {
		atomic_fetch_add(&p->file_pages, 1);
	} else {
		atomic_fetch_sub(&p->file_pages, 1);
	}
}

/* Forget a cached copy of page (r, idx). */
static void cache_forget(struct rf_pager *p, struct rf_region *r, uint64_t idx)
{
	pthread_mutex_lock(&p->cache_lock);
	for (unsigned int i = 0; i < CACHE_MAX; i++)
		if (p->cache[i].valid && p->cache[i].r == r && p->cache[i].idx == idx)
			p->cache[i].valid = false;
	pthread_mutex_unlock(&p->cache_lock);
}

/* Release the store handle of a locked SWAPPED/COMPRESSED page. */
static void drop_page(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint32_t h)
{
	cache_forget(p, r, idx);
	account_add(p, h, -1);
	rf_swap_store_drop(p->store, h);
}

static bool is_swapped(uint64_t v)
{
	enum rf_page_state s = rf_pte_state(v);

	return s == RF_PAGE_SWAPPED || s == RF_PAGE_COMPRESSED;
}

/* ---- hooks from the core ---------------------------------------------- */

/* rf_vm_discard() on a swapped page (the balloon, free page reporting): the
 * page is already absent from guest RAM; free its slot. */
static int page_release(rf_vm *vm, struct rf_region *r, uint64_t idx, uint64_t pte, void *arg)
{
	struct rf_pager *p = vm->pager;

	(void)arg;
	if (p && is_swapped(pte))
		drop_page(p, r, idx, rf_pte_payload(pte));
	return 0;
}

static void region_forget(struct rf_pager *p, struct rf_region *r)
{
	for (unsigned int i = 0; i < RF_MAX_REGIONS; i++) {
		if (p->chunks[i].r != r)
			continue;
		rf_free(p->e, p->chunks[i].bits);
		memset(&p->chunks[i], 0, sizeof(p->chunks[i]));
	}
}

/* A region goes away (regions_lock held for writing, so no swapper batch and
 * no fault handler is inside it): free its slots. */
static void region_unmap(rf_vm *vm, struct rf_region *r, void *arg)
{
	struct rf_pager *p = vm->pager;

	(void)arg;
	if (!p)
		return;
	for (uint64_t i = 0; i < r->npages; i++) {
		uint64_t v = rf_pte_peek(&r->pte[i]);

		if (is_swapped(v))
			drop_page(p, r, i, rf_pte_payload(v));
	}
	pthread_mutex_lock(&p->lock);
	region_forget(p, r);
	pthread_mutex_unlock(&p->lock);
}

static void pager_free(struct rf_pager *p);

/*
 * The VM goes. Stop the swapper, take our handlers off the uffd, free every
 * slot. The pager struct itself is kept until the engine goes: the uffd may
 * have other users (dedup) whose pager thread could be inside one of our
 * handlers right now, and uffd.c has no way to wait for that; a late call
 * finds p->dead and returns.
 */
static void vm_free_hook(rf_vm *vm, void *arg)
{
	struct rf_pager *p = vm->pager;
	struct rf_swap *sw = vm->e->swap;
	struct rf_region *r;

	(void)arg;
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = true;
	pthread_cond_signal(&p->cond);
	pthread_mutex_unlock(&p->lock);
	if (p->thread_started)
		pthread_join(p->thread, NULL);
	atomic_store(&p->dead, true);
	rf_uffd_set_handler(p->u, RF_UFFD_FAULT_MISSING, NULL, NULL);
	rf_uffd_set_handler(p->u, RF_UFFD_EV_REMOVE, NULL, NULL);
	rf_uffd_put(vm);
	pthread_rwlock_wrlock(&vm->regions_lock);
	for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++)
		region_unmap(vm, r, NULL);
	vm->pager = NULL;
	pthread_rwlock_unlock(&vm->regions_lock);
	rf_swap_store_release(vm->e);
	p->store = NULL;
	pthread_mutex_lock(&sw->lock);
	p->next_dead = sw->dead;
	sw->dead = p;
	pthread_mutex_unlock(&sw->lock);
}

void rf_swap_pager_free_dead(struct rf_swap *sw)
{
	while (sw->dead) {
		struct rf_pager *p = sw->dead;

		sw->dead = p->next_dead;
		pager_free(p);
	}
}

/* ---- fault handling (pager thread) ------------------------------------ */

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

static int map_copy(struct rf_pager *p, uint64_t page, const void *src, bool wake)
{
	struct uffdio_copy c = {.dst = page,
				.src = (uintptr_t)src,
				.len = RF_PAGE_SIZE,
				.mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE};

	return uffd_call(rf_uffd_fd(p->u), UFFDIO_COPY, &c);
}

static int map_zero(struct rf_pager *p, uint64_t page)
{
	struct uffdio_zeropage z = {.range = {page, RF_PAGE_SIZE},
				    .mode = UFFDIO_ZEROPAGE_MODE_DONTWAKE};

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

	*hit = false;
	pthread_mutex_lock(&p->cache_lock);
	for (unsigned int i = 0; i < CACHE_MAX; i++) {
		struct cache_ent *c = &p->cache[i];

		if (c->valid && c->r == r && c->idx == idx && c->h == h) {
			memcpy(dst, p->cache_buf + ((size_t)i << RF_PAGE_SHIFT), RF_PAGE_SIZE);
			c->valid = false;
			*hit = true;
			break;
		}
	}
	pthread_mutex_unlock(&p->cache_lock);
	if (*hit)
		return 0;
	for (int t = 0; t < READ_TRIES && err; t++)
		err = rf_swap_store_get(p->store, h, dst);
	return err;
}

/*
 * Read up to p->prefetch pages after @idx that went out in the same batch
 * as it (the next file slots) into the swap cache, with one read. Called
 * only when the faults look sequential: on random access every page read
 * ahead would be wasted work on the pager thread, in front of the next
 * fault.
 */
static void prefetch_after(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint32_t h)
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
		for (unsigned int i = 0; i < CACHE_MAX; i++)
			if (p->cache[i].valid && p->cache[i].r == r && p->cache[i].idx == idx + d)
				dup = true;
		pthread_mutex_unlock(&p->cache_lock);
		if (dup || rf_pte_state(v) != RF_PAGE_SWAPPED || rf_pte_payload(v) != h + d) {
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
		p->cache_next = (p->cache_next + 1) % CACHE_MAX;
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

static void stop_vm(struct rf_pager *p, uint64_t gpa, uint32_t h, int err)
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
 * doubles with each such fault up to FILL_MAX pages, as read-ahead does. A
 * guest that writes fresh memory in order (booting, zeroing, memcheck's
 * first pass) then costs one round trip per window instead of one per page;
 * a random writer gets one page a fault. Only PRIVATE pages we can lock
 * are filled: never one that is swapped, zero, merged, ballooned or
 * reported, and the fill stops at the first page already present
 * (UFFDIO_COPY says EEXIST). The window never takes the VM over its line.
 * Pager thread only, regions_lock held, page @idx locked and just filled.
 */
static void fill_around(struct rf_pager *p, struct rf_region *r, uint64_t idx)
{
	uint64_t vals[FILL_MAX], est = atomic_load(&p->resident_est);
	uint64_t line = atomic_load(&p->throttle_line), room, n = 0, done;
	struct uffdio_copy c;

	if (r == p->fill_r && idx == p->fill_end)
		p->fill_win = p->fill_win * 2 < FILL_MAX ? p->fill_win * 2 : FILL_MAX;
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
		if (rf_pte_state(v) != RF_PAGE_PRIVATE || (v & RF_PTE_F_WP)) {
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

	if (write || !(v & RF_PTE_F_WP) || (v & RF_PTE_F_OUT) || is_swapped(v) ||
	    rf_pte_state(v) == RF_PAGE_MERGED)
		return -EAGAIN;
	err = uffd_call(rf_uffd_fd(p->u), UFFDIO_COPY, &c);
	if (err == -EAGAIN)
		return -EAGAIN;
	/* Mapped (or already there: EEXIST), or no longer registered. */
	rf_uffd_wake(p->u, (void *)page, RF_PAGE_SIZE);
	return 0;
}

static int on_missing(struct rf_uffd *u, const struct uffd_msg *m, void *arg)
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
	if (pthread_rwlock_tryrdlock(&vm->regions_lock) != 0)
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
	nv = v & ~RF_PTE_F_COLD; /* touched: a whole revolution before it may go */
	/* A swap-in or a first write makes the VM a page bigger: it waits
	 * while the VM is over its line. A read of a never-written page does
	 * not (the zero page is shared, and not the VM's). */
	if ((is_swapped(v) || write) &&
	    atomic_load(&p->resident_est) > atomic_load(&p->throttle_line) &&
	    !atomic_load(&p->swapper_stuck)) {
		rf_pte_unlock(vm, pte, v, v);
		rf_vm_regions_unlock(vm);
		atomic_fetch_add(&p->throttled, 1);
		pthread_cond_signal(&p->cond);
		return -EAGAIN;
	}
	if (!is_swapped(v)) {
		err = write ? map_copy(p, page, p->zeros, false) : map_zero(p, page);
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
		stop_vm(p, gpa, rf_pte_payload(v), err);
		return 0;
	}
	/* Map it without waking the thread: the table says PRIVATE first. */
	err = map_copy(p, page, p->bounce, false);
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
	drop_page(p, r, idx, rf_pte_payload(v));
	nv = rf_pte_with_payload(rf_pte_with_state(nv, RF_PAGE_PRIVATE), 0);
	atomic_fetch_add(&p->swap_ins, 1);
	grew(p, 1);
	if (hit)
		atomic_fetch_add(&p->prefetch_hits, 1);
	rf_pte_unlock(vm, pte, v, nv);
	rf_uffd_wake(p->u, (void *)page, RF_PAGE_SIZE);
	rf_hist_record(&p->lat, now_ns() - t0);
	/* Sequential (this page follows the last one served, or was read
	 * ahead): read ahead. Pager thread only: no lock on the stream state. */
	if (hit || (r == p->last_r && idx == p->last_idx + 1))
		prefetch_after(p, r, idx, rf_pte_payload(v));
	p->last_r = r;
	p->last_idx = idx;
	rf_vm_regions_unlock(vm);
	return 0;
}

/*
 * A discard of guest RAM (madvise(MADV_DONTNEED) or similar): swapped pages
 * in the range become ZERO and their slots are freed, so a discarded page
 * reads as zeros afterwards, never as stale swap content. A locked swapped
 * page inside a discard the library is making itself belongs to that
 * discard (rf_vm_discard releases it through page_release); any other
 * locked page is waited for, without blocking: its holder (an audit
 * looking again, a test) never waits for the pager. The event is never
 * retried for a page lock: a retry could run after the page had been
 * written and swapped out again, and wipe it.
 */
static int on_remove(struct rf_uffd *u, const struct uffd_msg *m, void *arg)
{
	struct rf_pager *p = arg;
	rf_vm *vm = p->vm;
	uint64_t start = m->arg.remove.start, end = m->arg.remove.end;
	struct rf_region *r;

	(void)u;
	if (atomic_load(&p->dead))
		return 0;
	/* Only map/unmap hold it for writing, and never while a discarder of
	 * ours (a reader) is inside: a retry here is for outside discards. */
	if (pthread_rwlock_tryrdlock(&vm->regions_lock) != 0)
		return -EAGAIN;
	for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++) {
		uint64_t a = (uintptr_t)r->hva, b = a + r->size;
		uint64_t lo = start > a ? start : a, hi = end < b ? end : b;

		for (uint64_t pg = lo; pg < hi; pg += RF_PAGE_SIZE) {
			uint64_t idx = (pg - a) >> RF_PAGE_SHIFT, v;
			rf_pte_t *pte = &r->pte[idx];
			bool got;

			if (!is_swapped(rf_pte_peek(pte)))
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
			if (is_swapped(v)) {
				drop_page(p, r, idx, rf_pte_payload(v));
				rf_pte_unlock(
				    vm, pte, v,
				    rf_pte_with_payload(rf_pte_with_state(v, RF_PAGE_ZERO), 0));
			} else {
				rf_pte_unlock(vm, pte, v, v);
			}
		}
	}
	rf_vm_regions_unlock(vm);
	return 0;
}

/* ---- swap-out (swapper thread, or a caller of rf_swap_pager_swap_out) -- */

/* Missing faults; write-protect too in copy mode. */
static uint64_t reg_mode(const struct rf_pager *p)
{
	return UFFDIO_REGISTER_MODE_MISSING | (p->copy_mode ? UFFDIO_REGISTER_MODE_WP : 0);
}

/* The chunk map of @r, made on first use. Called with p->lock held. */
static struct chunk_map *chunk_map_of(struct rf_pager *p, struct rf_region *r)
{
	for (unsigned int i = 0; i < RF_MAX_REGIONS; i++)
		if (p->chunks[i].r == r)
			return &p->chunks[i];
	for (unsigned int i = 0; i < RF_MAX_REGIONS; i++) {
		if (p->chunks[i].r)
			continue;
		p->chunks[i].words = ((r->size >> CHUNK_SHIFT) + 1 + 63) / 64;
		p->chunks[i].bits = rf_zalloc(p->e, p->chunks[i].words * sizeof(uint64_t));
		if (!p->chunks[i].bits)
			return NULL;
		p->chunks[i].r = r;
		return &p->chunks[i];
	}
	return NULL;
}

static bool chunk_done(const struct chunk_map *cm, uint64_t c)
{
	return cm->bits[c / 64] & (1ull << (c % 64));
}

/* Register chunk @c of @cm's region. Called with p->lock held. */
static int register_chunk(struct rf_pager *p, struct chunk_map *cm, uint64_t c)
{
	struct rf_region *r = cm->r;
	uint64_t lo = c << CHUNK_SHIFT, hi = lo + (1ull << CHUNK_SHIFT);
	int err;

	if (chunk_done(cm, c))
		return 0;
	if (hi > r->size)
		hi = r->size;
	err = rf_uffd_register(p->u, r->hva + lo, hi - lo, reg_mode(p));
	if (!err)
		cm->bits[c / 64] |= 1ull << (c % 64);
	return err;
}

/* Register the 2 MiB chunk around page @idx of @r for missing faults.
 * Called with p->lock held. */
static int ensure_registered(struct rf_pager *p, struct rf_region *r, uint64_t idx)
{
	struct chunk_map *cm = chunk_map_of(p, r);
	uint64_t c = (idx << RF_PAGE_SHIFT) >> CHUNK_SHIFT;
	int err;

	if (!cm)
		return -ENOMEM;
	err = register_chunk(p, cm, c);
	if (err)
		rf_log_ratelimited(p->e, &p->rl, RF_LOG_WARN,
				   "%s: swap: registering gpa 0x%llx+2M for missing faults: %s",
				   p->vm->name, (unsigned long long)(r->gpa + (c << CHUNK_SHIFT)),
				   strerror(-err));
	return err;
}

/*
 * The VM has a target: register all of its RAM for missing faults, so that
 * first writes come to the pager and wait for room like swap-ins. One ioctl
 * per region where the kernel takes it whole (and keeps one VMA); else chunk
 * by chunk, and a chunk it refuses (another module mapped something there
 * that cannot be registered) stays lazy. Each region is tried once.
 * Called with regions_lock held for reading; takes p->lock.
 */
static void register_all(struct rf_pager *p)
{
	rf_vm *vm = p->vm;
	struct rf_region *r;

	pthread_mutex_lock(&p->lock);
	for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++) {
		struct chunk_map *cm = chunk_map_of(p, r);
		uint64_t nchunks = (r->size + (1ull << CHUNK_SHIFT) - 1) >> CHUNK_SHIFT,
			 refused = 0;
		int err = 0;

		if (!cm || cm->all)
			continue;
		cm->all = true;
		if (rf_uffd_register(p->u, r->hva, r->size, reg_mode(p)) == 0) {
			for (uint64_t c = 0; c < nchunks; c++)
				cm->bits[c / 64] |= 1ull << (c % 64);
			continue;
		}
		for (uint64_t c = 0; c < nchunks; c++) {
			int ce = register_chunk(p, cm, c);

			if (ce) {
				refused++;
				err = ce;
			}
		}
		if (refused)
			rf_log(p->e, RF_LOG_WARN,
			       "%s: swap: %llu of %llu chunks at gpa 0x%llx cannot be registered "
			       "(%s): first writes there are not held to the target",
			       vm->name, (unsigned long long)refused, (unsigned long long)nchunks,
			       (unsigned long long)r->gpa, strerror(-err));
	}
	pthread_mutex_unlock(&p->lock);
}

static bool all_zero(const void *page)
{
	const uint64_t *w = page;

	for (size_t i = 0; i < RF_PAGE_SIZE / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}

struct victim {
	uint64_t idx;
	uint64_t v0; /* the entry as locked: what rf_pte_unlock is told was there */
	uint64_t v;  /* what it becomes */
};

/* End of the run of adjacent pages that starts at vs[@i] (vs ascending),
 * among the first @n; with @moved, only pages with moved[] >= 2 (stored
 * or zero) belong to it. */
static unsigned int run_end(const struct victim *vs, unsigned int i, unsigned int n,
			    const unsigned int *moved)
{
	unsigned int j = i + 1;

	while (j < n && vs[j].idx == vs[j - 1].idx + 1 && (!moved || moved[j] >= 2))
		j++;
	return j;
}

/* Put a page's content back where it was (the store refused it). We hold
 * the page lock, so no fill can race us; EAGAIN means an event is pending
 * for the pager to read, which it will. */
static int put_back(struct rf_pager *p, struct rf_region *r, uint64_t idx, const void *src)
{
	uint64_t page = (uintptr_t)rf_region_page(r, idx);
	int err;

	while ((err = map_copy(p, page, src, true)) == -EAGAIN)
		sched_yield();
	if (err == -EEXIST)
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
 * has gone absent would fault to the pager thread, which can never take
 * the page lock we hold: every thread touching the VM would hang. Sets
 * ok[k] for each page copied; returns how many were.
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

/*
 * Copy mode, step 3: mark each locked victim RF_PTE_F_WP (so uffd.c leaves
 * a writer's fault to us), write-protect each run of adjacent victims, and
 * copy them to the staging buffer; moved[i] = 1 for a page copied. A run
 * that cannot be protected stays where it is, and so does a page that
 * could not be read (it went absent under us: only a discard from outside
 * the library can do that to a page we hold); its protection is lifted.
 */
static void copy_victims(struct rf_pager *p, struct rf_region *r, struct victim *vs, unsigned int n,
			 unsigned int *moved)
{
	for (unsigned int i = 0; i < n; i++)
		atomic_store_explicit(&r->pte[vs[i].idx], vs[i].v0 | RF_PTE_F_WP | RF_PTE_LOCKED,
				      memory_order_release);
	RF_TEST_POINT("swap.copy", p->vm);
	for (unsigned int i = 0; i < n;) {
		unsigned int j = run_end(vs, i, n, NULL);
		bool ok[RF_SWAP_MAX_BATCH] = {false};

		if (rf_uffd_writeprotect(p->u, rf_region_page(r, vs[i].idx),
					 (uint64_t)(j - i) << RF_PAGE_SHIFT, true, false) == 0) {
			read_run(p, rf_region_page(r, vs[i].idx), j - i,
				 p->stage + ((size_t)i << RF_PAGE_SHIFT), ok);
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

/*
 * The victims were chosen from a pagemap reading taken before their locks.
 * Since then another module may have discarded one (the dedup engine found
 * it zero, the balloon took it): its state then says so, but it may also be
 * a page that is absent now with a state we would still swap. Read pagemap
 * again under the locks (no library thread changes a page we hold) and let
 * go of every victim that is not resident. A resident ZERO or FREE_REPORTED
 * page was written by the guest since: it is PRIVATE again (published when
 * it is unlocked, swapped or not). Returns the victims kept.
 */
static unsigned int keep_resident(struct rf_pager *p, struct rf_region *r, struct victim *vs,
				  unsigned int n)
{
	uint64_t ents[WINDOW], first;
	unsigned int kept = 0;

	if (n == 0)
		return 0;
	first = vs[0].idx;
	if (vs[n - 1].idx - first >= WINDOW ||
	    rf_pagemap_read(p->e, rf_region_page(r, first), vs[n - 1].idx - first + 1, ents) != 0)
		memset(ents, 0, sizeof(ents)); /* unknown: keep none */
	for (unsigned int i = 0; i < n; i++) {
		uint64_t ent = vs[i].idx - first < WINDOW ? ents[vs[i].idx - first] : 0;

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
 * Copy mode, after the store: discard every run of adjacent pages that is
 * stored or zero (moved >= 2). If madvise fails part way, pagemap tells
 * which pages are still there: those stay PRIVATE (their store copy is
 * dropped and their protection lifted), the others are gone and go on to be
 * published as swapped. Nothing is lost either way.
 */
static void discard_stored(struct rf_pager *p, struct rf_region *r, const struct victim *vs,
			   unsigned int n, unsigned int *moved)
{
	for (unsigned int i = 0; i < n;) {
		uint64_t ents[RF_SWAP_MAX_BATCH];
		unsigned int j;
		int err;

		if (moved[i] < 2) {
			i++;
			continue;
		}
		j = run_end(vs, i, n, moved);
		/* From the discard until publication the content is only in
		 * the store: faults wait, even reads of a protected page. */
		for (unsigned int k = i; k < j; k++)
			atomic_store_explicit(&r->pte[vs[k].idx],
					      vs[k].v0 | RF_PTE_F_WP | RF_PTE_F_OUT | RF_PTE_LOCKED,
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
				if (moved[k] == 3)
					drop_page(p, r, vs[k].idx, rf_pte_payload(vs[k].v));
				moved[k] = 0;
				unprotect(p, r, vs[k].idx, 1);
			}
		}
		i = j;
	}
}

/*
 * Swap out @n locked victims of @r (ascending, n <= RF_SWAP_MAX_BATCH) and
 * unlock them all. Returns 0 or the store's error; *@out counts pages that
 * left guest RAM (stored or zero).
 */
static int swap_out_batch(struct rf_pager *p, struct rf_region *r, struct victim *vs,
			  unsigned int n, uint64_t *out)
{
	void *pages[RF_SWAP_MAX_BATCH];
	uint32_t handles[RF_SWAP_MAX_BATCH];
	unsigned int sidx[RF_SWAP_MAX_BATCH], ns = 0, moved[RF_SWAP_MAX_BATCH] = {0};
	uint64_t cap = p->cap, swapped;
	unsigned int kept = 0;
	int err = 0;

	/* The hard cap: room for this whole batch, or nothing. */
	swapped = (atomic_load(&p->file_pages) + atomic_load(&p->tier_pages)) << RF_PAGE_SHIFT;
	if (cap != RF_SWAP_NO_TARGET && swapped + ((uint64_t)n << RF_PAGE_SHIFT) > cap) {
		atomic_fetch_add(&p->enospc, 1);
		err = -ENOSPC;
		goto unlock_all;
	}
	/* Registration before the move, so the guest's next touch faults to
	 * the pager. A chunk that cannot be registered whole (another module
	 * mapped something there the kernel refuses to register) falls back to
	 * the page alone; a page that cannot be registered stays in memory. */
	pthread_mutex_lock(&p->lock);
	for (unsigned int i = 0; i < n; i++) {
		if (ensure_registered(p, r, vs[i].idx) != 0 &&
		    rf_uffd_register(p->u, rf_region_page(r, vs[i].idx), RF_PAGE_SIZE,
				     reg_mode(p)) != 0) {
			rf_pte_unlock(p->vm, &r->pte[vs[i].idx], vs[i].v0, vs[i].v0);
			continue;
		}
		vs[kept++] = vs[i];
	}
	pthread_mutex_unlock(&p->lock);
	n = keep_resident(p, r, vs, kept);
	RF_TEST_POINT("swap.victims-locked", p->vm);

	if (p->copy_mode) {
		copy_victims(p, r, vs, n, moved);
		goto store;
	}
	/* Move each run of adjacent victims in one ioctl. */
	for (unsigned int i = 0; i < n;) {
		unsigned int j = run_end(vs, i, n, NULL), npg;
		struct uffdio_move mv;

		mv = (struct uffdio_move){
		    .dst = (uintptr_t)p->stage + ((uint64_t)i << RF_PAGE_SHIFT),
		    .src = (uintptr_t)rf_region_page(r, vs[i].idx),
		    .len = (uint64_t)(j - i) << RF_PAGE_SHIFT,
		};
		if (ioctl(p->stage_fd, UFFDIO_MOVE, &mv) == 0)
			mv.move = (int64_t)mv.len;
		else if (mv.move < 0)
			mv.move = 0;
		/* A partial move stops at a page that cannot move (pinned, shared
		 * by kernel KSM, not present): that page stays where it is and
		 * the rest of the run is tried again. */
		npg = (unsigned int)((uint64_t)mv.move >> RF_PAGE_SHIFT);
		for (unsigned int k = i; k < i + npg; k++)
			moved[k] = 1;
		i = i + npg == j ? j : i + npg + 1;
	}
store:
	for (unsigned int i = 0; i < n; i++) {
		if (!moved[i])
			continue;
		pages[ns] = p->stage + ((size_t)i << RF_PAGE_SHIFT);
		if (all_zero(pages[ns])) {
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
			if (p->copy_mode)
				unprotect(p, r, vs[i].idx, 1);
			else if (put_back(p, r, vs[i].idx, pages[k]) != 0)
				stop_vm(p, r->gpa + (vs[i].idx << RF_PAGE_SHIFT), RF_SWAP_NONE,
					-EIO);
			moved[i] = 0;
			continue;
		}
		account_add(p, handles[k], +1);
		moved[i] = 3;
		vs[i].v = rf_pte_with_payload(vs[i].v, handles[k]);
		vs[i].v = rf_pte_with_state(vs[i].v, rf_swap_handle_in_tier(handles[k])
							 ? RF_PAGE_COMPRESSED
							 : RF_PAGE_SWAPPED);
	}
	if (p->copy_mode)
		discard_stored(p, r, vs, n, moved);
unlock_all:
	for (unsigned int i = 0; i < n; i++) {
		rf_pte_t *pte = &r->pte[vs[i].idx];
		uint64_t nv = vs[i].v;

		if (moved[i] >= 2) {
			uint64_t est = atomic_load(&p->resident_est);

			/* One page less in memory (saturating: the estimate is
			 * reset by every measure). */
			while (est >= RF_PAGE_SIZE &&
			       !atomic_compare_exchange_weak(&p->resident_est, &est,
							     est - RF_PAGE_SIZE))
				;
		}
		if (moved[i] == 2) {
			nv = rf_pte_with_payload(rf_pte_with_state(nv, RF_PAGE_ZERO), 0);
			atomic_fetch_add(&p->zero_outs, 1);
			(*out)++;
		} else if (moved[i] == 3) {
			atomic_fetch_add(&p->swap_outs, 1);
			(*out)++;
		}
		nv &= ~(RF_PTE_F_COLD | RF_PTE_F_WP);
		rf_pte_unlock(p->vm, pte, vs[i].v0, nv);
	}
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

	return (s == RF_PAGE_PRIVATE || s == RF_PAGE_ZERO || s == RF_PAGE_FREE_REPORTED) &&
	       !(v & (RF_PTE_EXCLUDED | RF_PTE_F_WP));
}

/*
 * Walk [@first, @first + @npages) of @r; swap out pages that are resident
 * and swappable, and (if @clock) still marked cold, marking the others.
 * Stops after @want pages left. Returns 0 or the first store error.
 * Called with regions_lock held for reading.
 */
static int walk(struct rf_pager *p, struct rf_region *r, uint64_t first, uint64_t npages,
		bool clock, uint64_t want, uint64_t *done)
{
	uint64_t ents[WINDOW];
	struct victim vs[RF_SWAP_MAX_BATCH];
	unsigned int n = 0;
	int err = 0;

	for (uint64_t base = first; base < first + npages && *done < want && !err; base += WINDOW) {
		size_t cnt = first + npages - base < WINDOW ? first + npages - base : WINDOW;

		if (rf_pagemap_read(p->e, rf_region_page(r, base), cnt, ents) != 0)
			return -EIO;
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
				err = swap_out_batch(p, r, vs, n, done);
				n = 0;
				if (err)
					break;
			}
		}
		if (n && !err) {
			err = swap_out_batch(p, r, vs, n, done);
			n = 0;
		}
	}
	if (n) {
		uint64_t ignored = 0;

		swap_out_batch(p, r, vs, n, &ignored);
	}
	return err;
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
	err = walk(p, r, rf_region_index(r, gpa), npages, false, UINT64_MAX, &d);
	pthread_mutex_unlock(&p->out_lock);
	rf_vm_regions_unlock(vm);
	if (done)
		*done = d;
	return err;
}

struct rf_swap_store *rf_swap_pager_store(struct rf_pager *p)
{
	return p->store;
}

/*
 * Present pages of @r other than the zero page, by PAGEMAP_SCAN: the kernel
 * walks the page tables and returns ranges, about 20x cheaper than reading
 * one pagemap entry per page. -1 if the ioctl fails.
 */
static int64_t resident_scan(struct rf_pager *p, struct rf_region *r)
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
		    .return_mask = PAGE_IS_PRESENT,
		};
		int n = ioctl(p->e->pagemap_fd, PAGEMAP_SCAN, &arg);

		if (n < 0)
			return -1;
		for (int i = 0; i < n; i++)
			pages += (int64_t)((regs[i].end - regs[i].start) >> RF_PAGE_SHIFT);
		if (arg.walk_end <= start)
			return -1;
		start = arg.walk_end;
	}
	return pages;
}

uint64_t rf_swap_pager_resident(struct rf_pager *p)
{
	rf_vm *vm = p->vm;
	uint64_t ents[WINDOW], pages = 0;
	struct rf_region *r;

	rf_vm_regions_rdlock(vm);
	for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++) {
		int64_t n = p->e->feat.pagemap_scan ? resident_scan(p, r) : -1;

		if (n >= 0) {
			pages += (uint64_t)n;
			continue;
		}
		for (uint64_t base = 0; base < r->npages; base += WINDOW) {
			size_t cnt = r->npages - base < WINDOW ? r->npages - base : WINDOW;

			if (rf_pagemap_read(p->e, rf_region_page(r, base), cnt, ents) != 0)
				break;
			for (size_t k = 0; k < cnt; k++)
				pages += rf_pagemap_resident(p->e, ents[k]);
		}
	}
	rf_vm_regions_unlock(vm);
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
 * One round of the swapper: bring the VM below its target. Returns how long
 * to wait before the next round: the farther below its target the VM is,
 * the longer (measuring costs the guest CPU time too).
 */
static uint64_t enforce_target(struct rf_pager *p, uint64_t target)
{
	rf_vm *vm = p->vm;
	uint64_t res, want, done = 0, slack;
	unsigned int laps = 0;

	/* Regions added since the target was set. */
	rf_vm_regions_rdlock(vm);
	register_all(p);
	rf_vm_regions_unlock(vm);
	res = rf_swap_pager_resident(p);
	atomic_store(&p->resident_est, res);
	if (res <= target) {
		atomic_store(&p->swapper_stuck, false);
		if (res < target / 2)
			return 10 * TICK_NS;
		return res < target - target / 8 ? 4 * TICK_NS : TICK_NS;
	}
	/* Go a little below the target so the next round has work in batches,
	 * not page by page. */
	slack = target / 64 > (1u << 20) ? target / 64 : (1u << 20);
	want = (res - target + slack) >> RF_PAGE_SHIFT;
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
		err = walk(p, r, idx, n, true, want, &done);
		p->hand_gpa = r->gpa + ((idx + n) << RF_PAGE_SHIFT);
		if (err)
			break; /* full or broken: counted; try again next tick */
	}
	pthread_mutex_unlock(&p->out_lock);
	rf_vm_regions_unlock(vm);
	/* Nothing left to evict (all excluded, merged, or the store is full):
	 * never hold swap-ins back then, or the guest would wait forever. */
	atomic_store(&p->swapper_stuck, done == 0);
	return TICK_NS;
}

static void *swapper_main(void *arg)
{
	struct rf_pager *p = arg;

	pthread_mutex_lock(&p->lock);
	while (!p->stop) {
		struct timespec ts;
		uint64_t target = p->target, wait = TICK_NS;

		pthread_mutex_unlock(&p->lock);
		if (target != RF_SWAP_NO_TARGET && !atomic_load(&p->stopped))
			wait = enforce_target(p, target);
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

/* ---- creation ---------------------------------------------------------- */

static int stage_open(struct rf_pager *p)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_MOVE};
	struct uffdio_register reg;
	size_t len = (size_t)RF_SWAP_MAX_BATCH << RF_PAGE_SHIFT;

	if (p->copy_mode) {
		p->stage =
		    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p->stage == MAP_FAILED) {
			p->stage = NULL;
			return -errno;
		}
		return 0;
	}
	p->stage_fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);
	if (p->stage_fd < 0)
		return -errno;
	if (ioctl(p->stage_fd, UFFDIO_API, &api) != 0)
		return -errno;
	p->stage = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p->stage == MAP_FAILED) {
		p->stage = NULL;
		return -errno;
	}
	/* Nobody touches the staging buffer but us, and only after a move has
	 * filled it, so missing faults never arrive on this descriptor. */
	reg = (struct uffdio_register){.range = {(uintptr_t)p->stage, len},
				       .mode = UFFDIO_REGISTER_MODE_MISSING};
	if (ioctl(p->stage_fd, UFFDIO_REGISTER, &reg) != 0)
		return -errno;
	return 0;
}

static void pager_free(struct rf_pager *p)
{
	if (p->stage_fd >= 0)
		close(p->stage_fd);
	if (p->mem_fd >= 0)
		close(p->mem_fd);
	if (p->stage)
		munmap(p->stage, (size_t)RF_SWAP_MAX_BATCH << RF_PAGE_SHIFT);
	if (p->bounce)
		munmap(p->bounce, RF_PAGE_SIZE);
	if (p->zeros)
		munmap(p->zeros, (size_t)FILL_MAX << RF_PAGE_SHIFT);
	if (p->cache_buf)
		munmap(p->cache_buf, (size_t)CACHE_MAX << RF_PAGE_SHIFT);
	for (unsigned int i = 0; i < RF_MAX_REGIONS; i++)
		rf_free(p->e, p->chunks[i].bits);
	if (p->store)
		rf_swap_store_release(p->e);
	pthread_mutex_destroy(&p->lock);
	pthread_mutex_destroy(&p->out_lock);
	pthread_mutex_destroy(&p->cache_lock);
	pthread_cond_destroy(&p->cond);
	rf_free(p->e, p);
}

static int pager_new(rf_vm *vm, struct rf_pager **out)
{
	rf_engine *e = vm->e;
	struct rf_vm_hooks h = {
	    .region_unmap = region_unmap,
	    .vm_free = vm_free_hook,
	    .owns_states = (1u << RF_PAGE_SWAPPED) | (1u << RF_PAGE_COMPRESSED),
	    .page_release = page_release,
	};
	struct rf_swap *sw = rf_swap_of(e);
	struct rf_pager *p;
	int err;

	if (!sw)
		return -ENOMEM;
	if (!e->feat.uffd || !e->feat.uffd_wp) {
		rf_log(e, RF_LOG_ERR,
		       "%s: swap: needs userfaultfd with write-protect (Linux 5.7+)%s", vm->name,
		       e->feat.uffd ? "" : "; userfaultfd is not available");
		return -ENODEV;
	}
	p = rf_zalloc(e, sizeof(*p));
	if (!p)
		return -ENOMEM;
	p->copy_mode = !e->feat.uffd_move;
	if (p->copy_mode)
		rf_log(e, RF_LOG_INFO,
		       "%s: swap: no UFFDIO_MOVE (Linux %s; 6.8+ has it, or it is hidden): "
		       "swapping out by write-protect, copy and discard",
		       vm->name, e->feat.kernel_release);
	p->vm = vm;
	p->e = e;
	p->stage_fd = -1;
	p->mem_fd = -1;
	p->target = RF_SWAP_NO_TARGET;
	p->cap = RF_SWAP_NO_TARGET;
	p->throttle_line = RF_SWAP_NO_TARGET;
	p->rl = (struct rf_ratelimit)RF_RATELIMIT_INIT(5);
	pthread_mutex_init(&p->lock, NULL);
	pthread_mutex_init(&p->out_lock, NULL);
	pthread_mutex_init(&p->cache_lock, NULL);
	pthread_cond_init(&p->cond, NULL);
	pthread_mutex_lock(&sw->lock);
	p->prefetch = sw->cfg.prefetch_pages;
	pthread_mutex_unlock(&sw->lock);

	if (p->copy_mode) {
		p->mem_fd = open("/proc/self/mem", O_RDONLY | O_CLOEXEC);
		if (p->mem_fd < 0) {
			err = -errno;
			rf_log(e, RF_LOG_ERR,
			       "%s: swap: copy mode reads guest RAM through /proc/self/mem, which "
			       "cannot be opened: %s",
			       vm->name, strerror(errno));
			goto err_free;
		}
	}
	err = stage_open(p);
	if (err) {
		rf_log(e, RF_LOG_ERR, "%s: swap: staging userfaultfd: %s", vm->name,
		       strerror(-err));
		goto err_free;
	}
	p->bounce =
	    mmap(NULL, RF_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	/* Read only, never written: reads see the kernel's zero page, and it
	 * costs no memory. */
	p->zeros = mmap(NULL, (size_t)FILL_MAX << RF_PAGE_SHIFT, PROT_READ,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p->zeros == MAP_FAILED)
		p->zeros = NULL;
	p->cache_buf = mmap(NULL, (size_t)CACHE_MAX << RF_PAGE_SHIFT, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p->bounce == MAP_FAILED || p->cache_buf == MAP_FAILED || !p->zeros) {
		p->bounce = p->bounce == MAP_FAILED ? NULL : p->bounce;
		p->cache_buf = p->cache_buf == MAP_FAILED ? NULL : p->cache_buf;
		err = -ENOMEM;
		goto err_free;
	}
	err = rf_swap_store_acquire(e, &p->store);
	if (err)
		goto err_free;
	err = rf_uffd_get(vm, &p->u);
	if (err)
		goto err_free;
	/* From here every registration of guest RAM (dedup's, after it remaps
	 * a page) keeps missing faults; chunks registered before are done
	 * again by ensure_registered as pages there are swapped (uffd.h). */
	rf_uffd_add_base_mode(p->u, UFFDIO_REGISTER_MODE_MISSING);
	err = rf_vm_add_hooks(vm, &h);
	if (err) {
		rf_uffd_put(vm);
		goto err_free;
	}
	rf_uffd_set_handler(p->u, RF_UFFD_FAULT_MISSING, on_missing, p);
	rf_uffd_set_handler(p->u, RF_UFFD_EV_REMOVE, on_remove, p);
	err = -pthread_create(&p->thread, NULL, swapper_main, p);
	if (err) {
		/* The hooks stay registered but find vm->pager NULL. */
		rf_uffd_set_handler(p->u, RF_UFFD_FAULT_MISSING, NULL, NULL);
		rf_uffd_set_handler(p->u, RF_UFFD_EV_REMOVE, NULL, NULL);
		rf_uffd_put(vm);
		goto err_free;
	}
	p->thread_started = true;
	*out = p;
	return 0;

err_free:
	pager_free(p);
	return err;
}

int rf_swap_pager_get(rf_vm *vm, struct rf_pager **out)
{
	int err = 0;

	pthread_mutex_lock(&pager_create_lock);
	if (!vm->pager)
		err = pager_new(vm, &vm->pager);
	if (!err)
		*out = vm->pager;
	pthread_mutex_unlock(&pager_create_lock);
	return err;
}

void rf_swap_pager_set_target(struct rf_pager *p, uint64_t resident_bytes)
{
	uint64_t margin = resident_bytes / 32 > (4u << 20) ? resident_bytes / 32 : (4u << 20);

	/* Before the line is drawn: from here a first write waits for room. */
	if (resident_bytes != RF_SWAP_NO_TARGET) {
		rf_vm_regions_rdlock(p->vm);
		register_all(p);
		rf_vm_regions_unlock(p->vm);
	}
	pthread_mutex_lock(&p->lock);
	p->target = resident_bytes;
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

void rf_swap_pager_stats(struct rf_pager *p, struct rf_swap_stats *st)
{
	struct rf_swap_store_stats ss;

	st->file_bytes = atomic_load(&p->file_pages) << RF_PAGE_SHIFT;
	st->tier_bytes = atomic_load(&p->tier_pages) << RF_PAGE_SHIFT;
	st->tier_compressed_bytes = atomic_load(&p->tier_mem);
	st->swap_outs = atomic_load(&p->swap_outs);
	st->zero_outs = atomic_load(&p->zero_outs);
	st->swap_ins = atomic_load(&p->swap_ins);
	st->zero_fills = atomic_load(&p->zero_fills);
	st->prefetched = atomic_load(&p->prefetched);
	st->prefetch_hits = atomic_load(&p->prefetch_hits);
	st->enospc = atomic_load(&p->enospc);
	st->faults = atomic_load(&p->lat.total);
	st->fault_p50_ns = rf_hist_percentile(&p->lat, 50);
	st->fault_p99_ns = rf_hist_percentile(&p->lat, 99);
	st->fault_max_ns = atomic_load(&p->lat.max);
	st->stopped = atomic_load(&p->stopped);
	st->copy_mode = p->copy_mode;
	/* I/O and checksum errors are the store's, shared by all VMs. */
	rf_swap_store_stats(p->store, &ss);
	st->io_errors = ss.io_errors;
	st->csum_errors = ss.csum_errors;
}
