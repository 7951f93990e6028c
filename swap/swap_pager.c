/* SPDX-License-Identifier: MIT */
/*
 * The swap pager of one VM: swaps cold guest pages out to the store and
 * serves the guest's faults on them through the VM's userfaultfd. This file
 * holds its life cycle (created on the first swap call for the VM, stopped
 * with the VM, freed with the engine), the hooks through which the core
 * tells it about discards and unmaps, and its stats.
 *
 * The pager works on two threads that are not the same:
 *   - its own swapper thread (swapper.c), the target keeper: it measures the
 *     VM, moves a CLOCK hand over its pages and swaps the cold ones out
 *     (swap_out.c) until the VM is below its target; it also runs
 *     working-set sampling (swap_sample.c), when that is on;
 *   - the VM's userfaultfd fault thread (src/uffd.c, shared with dedup),
 *     which calls the pager's handlers (swap_in.c): swap-ins, zero fills of
 *     first touches, and remove events, read ahead into the swap cache
 *     (swap_cache.c).
 * Guest RAM is registered for missing faults where it needs to be
 * (swap_register.c). The store itself, shared by every VM's pager, is
 * swap_store.c; the engine's swap state and the public API, swap.c.
 * pager_internal.h has struct rf_pager and who may call what.
 *
 * Page states: the pager owns SWAPPED and COMPRESSED (the payload is the
 * store handle). It turns PRIVATE pages (and resident ZERO or FREE_REPORTED
 * ones, written since their discard) into SWAPPED, COMPRESSED or ZERO, and
 * back into PRIVATE on a swap-in; a discard of a swapped page (through the
 * page_release hook or a remove event) makes it ZERO and frees its slot.
 *
 * Lock order: regions_lock (read) > out_lock (one swap-out at a time: they
 * share the staging buffer) > page lock bits (address order, try-locked) >
 * the pager's lock > the store's mutex; cache_lock is a leaf. The swapper
 * holds page locks across the store write; the fault handlers never wait
 * for a page lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "compat_linux.h"
#include "pager_internal.h"

static pthread_mutex_t pager_create_lock = PTHREAD_MUTEX_INITIALIZER;

/* ---- accounting ------------------------------------------------------- */

void pager_account_add(struct rf_pager *p, uint32_t h, int sign)
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

/* Release the store handle of a locked SWAPPED/COMPRESSED page. */
void pager_drop_page(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint32_t h)
{
	if (handle_is_sample(h)) {
		pager_sample_dropped(p, h); /* staged: its bytes only leave the slot */
		return;
	}
	pager_cache_forget(p, r, idx);
	pager_account_add(p, h, -1);
	rf_swap_store_drop(p->store, h);
}

void pager_zero_discarded(struct rf_pager *p, struct rf_region *r, uint64_t idx, uint64_t v)
{
	pager_drop_page(p, r, idx, rf_pte_payload(v));
	rf_pte_unlock(p->vm, &r->pte[idx], v,
		      rf_pte_with_payload(rf_pte_with_state(v, RF_PAGE_ZERO), 0) &
			  ~(RF_PTE_F_DISCARD | RF_PTE_F_COLD | PTE_HOT_MASK));
}

/* ---- hooks from the core ---------------------------------------------- */

/* rf_vm_discard_as() on a swapped page (the balloon, free page reporting): the
 * page is already absent from guest RAM; free its slot. */
static int page_release(rf_vm *vm, struct rf_region *r, uint64_t idx, uint64_t pte, void *arg)
{
	struct rf_pager *p = vm->pager;

	(void)arg;
	if (p && pte_is_swapped(pte))
		pager_drop_page(p, r, idx, rf_pte_payload(pte));
	return 0;
}

/* A region goes away (regions_lock held for writing, so no swapper batch and
 * no fault handler is inside it): free its slots, forget its chunk map. */
static void region_unmap(rf_vm *vm, struct rf_region *r, void *arg)
{
	struct rf_pager *p = vm->pager;

	(void)arg;
	if (!p)
		return;
	for (uint64_t i = 0; i < r->npages; i++) {
		uint64_t v = rf_pte_peek(&r->pte[i]);

		if (pte_is_swapped(v))
			pager_drop_page(p, r, i, rf_pte_payload(v));
	}
	pthread_mutex_lock(&p->lock);
	pager_chunks_forget(p, r);
	pthread_mutex_unlock(&p->lock);
}

/*
 * Swapping discards guest pages and serves them again from missing faults:
 * on shared memory a discard leaves the page in the file (and the other
 * process that maps it, a vhost-user backend, reads it there), and
 * hugetlbfs pages cannot be swapped 4 KiB at a time. So a pager refuses
 * such a region (vm.h, enum rf_backing).
 */
static int refuse_backing(rf_vm *vm, const struct rf_region *r)
{
	if (rf_region_backing(r) == RF_BACKING_ANON)
		return 0;
	rf_log(vm->e, RF_LOG_ERR, "%s: swap: gpa 0x%llx: %s RAM cannot be swapped (%s)", vm->name,
	       (unsigned long long)r->gpa, rf_backing_describe(rf_region_backing(r)),
	       rf_region_backing(r) == RF_BACKING_SHMEM
		   ? "vhost-user shares it"
		   : "huge pages cannot be swapped 4 KiB at a time");
	return -EOPNOTSUPP;
}

static int region_admit(rf_vm *vm, const struct rf_region *r, void *arg)
{
	(void)arg;
	return vm->pager ? refuse_backing(vm, r) : 0;
}

/*
 * rf_vm_release_ram: bring the swapped pages of @r back in (every page of
 * @r is excluded, so none goes out again; regions lock held for reading).
 * Each is read once from this thread: the missing fault is served by the
 * fault thread's swap-in like any guest access (it only try-locks the
 * regions lock, which readers share), and the page is PRIVATE when the
 * read returns, since a swap-in publishes the page before it wakes the
 * reader.
 */
static int region_release(rf_vm *vm, struct rf_region *r, void *arg)
{
	struct rf_pager *p = vm->pager;

	(void)arg;
	if (!p)
		return 0;
	for (uint64_t i = 0; i < r->npages; i++) {
		if (!pte_is_swapped(rf_pte_peek(&r->pte[i])))
			continue;
		if (atomic_load(&p->stopped)) {
			rf_log(vm->e, RF_LOG_ERR,
			       "%s: swap: release: gpa 0x%llx is swapped out and the pager is "
			       "stopped (store I/O error): cannot read it back",
			       vm->name, (unsigned long long)(r->gpa + (i << RF_PAGE_SHIFT)));
			return -EIO;
		}
		(void)*(volatile uint8_t *)rf_region_page(r, i);
	}
	return 0;
}

static void pager_free(struct rf_pager *p);

/*
 * The VM goes. Stop the swapper, take our handlers off the uffd, free every
 * slot. The pager struct itself is kept until the engine goes: the uffd may
 * have other users (dedup), so its fault thread goes on and could be inside
 * one of our handlers right now, and uffd.c has no way to wait for that; a
 * late call finds p->dead and returns.
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
	rf_vm_regions_wrlock(vm);
	for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++)
		region_unmap(vm, r, NULL);
	vm->pager = NULL;
	rf_vm_regions_unlock(vm);
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

struct rf_swap_store *rf_swap_pager_store(struct rf_pager *p)
{
	return p->store;
}

/* ---- creation ---------------------------------------------------------- */

/* The staging buffer of swap-out: RF_SWAP_MAX_BATCH pages, on a userfaultfd
 * of its own in move mode (swap_out.c says why), plain memory in copy mode. */
static int stage_open(struct rf_pager *p)
{
	struct uffdio_api api = {.api = UFFD_API, .features = UFFD_FEATURE_MOVE};
	struct uffdio_register reg;
	/* The sample area (swap_sample.c) follows the buffer, in the same
	 * mapping: pages are moved into it the same way. */
	size_t len = (size_t)(RF_SWAP_MAX_BATCH + PAGER_SAMPLE_SLOTS) << RF_PAGE_SHIFT;

	if (p->copy_mode) {
		p->stage =
		    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p->stage == MAP_FAILED) {
			p->stage = NULL;
			return -errno;
		}
		p->sample_area = p->stage + ((size_t)RF_SWAP_MAX_BATCH << RF_PAGE_SHIFT);
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
	p->sample_area = p->stage + ((size_t)RF_SWAP_MAX_BATCH << RF_PAGE_SHIFT);
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
		munmap(p->stage, (size_t)(RF_SWAP_MAX_BATCH + PAGER_SAMPLE_SLOTS) << RF_PAGE_SHIFT);
	pager_sample_destroy(p);
	if (p->bounce)
		munmap(p->bounce, RF_PAGE_SIZE);
	if (p->zeros)
		munmap(p->zeros, (size_t)PAGER_FILL_MAX << RF_PAGE_SHIFT);
	if (p->cache_buf)
		munmap(p->cache_buf, (size_t)PAGER_CACHE_MAX << RF_PAGE_SHIFT);
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
	    .region_admit = region_admit,
	    .region_release = region_release,
	};
	struct rf_swap *sw = rf_swap_of(e);
	struct rf_pager *p;
	int err;

	if (!sw)
		return -ENOMEM;
	err = rf_pagemap_need(e, vm->name); /* victims are chosen by it */
	if (err)
		return err;
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
	err = pager_sample_init(p);
	if (err)
		goto err_free;

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
	p->zeros = mmap(NULL, (size_t)PAGER_FILL_MAX << RF_PAGE_SHIFT, PROT_READ,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p->zeros == MAP_FAILED)
		p->zeros = NULL;
	p->cache_buf = mmap(NULL, (size_t)PAGER_CACHE_MAX << RF_PAGE_SHIFT, PROT_READ | PROT_WRITE,
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
	 * again by pager_ensure_registered as pages there are swapped (uffd.h). */
	rf_uffd_add_base_mode(p->u, UFFDIO_REGISTER_MODE_MISSING);
	err = rf_vm_add_hooks(vm, &h);
	if (err) {
		rf_uffd_put(vm);
		goto err_free;
	}
	rf_uffd_set_handler(p->u, RF_UFFD_FAULT_MISSING, pager_on_missing, p);
	rf_uffd_set_handler(p->u, RF_UFFD_EV_REMOVE, pager_on_remove, p);
	err = -pthread_create(&p->thread, NULL, pager_swapper_main, p);
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
	struct rf_region *r;
	int err = 0;

	pthread_mutex_lock(&pager_create_lock);
	if (!vm->pager) {
		/* RAM adopted from now on is checked by region_admit; the
		 * embedder does not adopt RAM into @vm during its first swap call. */
		rf_vm_regions_rdlock(vm);
		for (unsigned int i = 0; !err && (r = __rf_vm_region(vm, i)); i++)
			err = refuse_backing(vm, r);
		rf_vm_regions_unlock(vm);
	}
	if (!vm->pager && !err)
		err = pager_new(vm, &vm->pager);
	if (!err)
		*out = vm->pager;
	pthread_mutex_unlock(&pager_create_lock);
	return err;
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
	st->active_bytes = atomic_load(&p->active_bytes);
	st->sampled = atomic_load(&p->sampled);
	st->sampled_touched = atomic_load(&p->sampled_touched);
	st->probed = atomic_load(&p->probed);
	st->probed_touched = atomic_load(&p->probed_touched);
	st->hot_skips = atomic_load(&p->hot_skips);
	st->staged_bytes = (uint64_t)(PAGER_SAMPLE_SLOTS - pager_slots_free(p)) << RF_PAGE_SHIFT;
	/* I/O and checksum errors are the store's, shared by all VMs. */
	rf_swap_store_stats(p->store, &ss);
	st->io_errors = ss.io_errors;
	st->csum_errors = ss.csum_errors;
}
