/* SPDX-License-Identifier: MIT */
/*
 * Discarding guest pages: the one path every discard the library makes of
 * guest RAM takes. rf_vm_discard_as() locks the pages itself (inflate, free
 * page reporting); rf_vm_discard_locked() serves a module that already holds
 * the page locks (dedup's zero runs, copy-mode swap-out, deflate). Both tell
 * the VM's fault thread, so that the REMOVE event the discard sends is never
 * taken for someone else's discard (uffd.h).
 *
 * The trap it exists for: madvise(MADV_DONTNEED) on a page that is mapped
 * from the dedup store (MAP_PRIVATE of a memfd) does not give a fresh zero
 * page, it brings back the store's content. So a page in a state another
 * module owns (MERGED, SWAPPED, COMPRESSED) is first handed back to that
 * module, which leaves a plain anonymous mapping and drops its references;
 * only then is the range discarded.
 *
 * Pages are locked in address order, which is the lock order for page bits
 * (two discarders never deadlock); at most one run is locked at a time.
 *
 * How a discard frees memory depends on the region's backing (vm.h):
 * private anonymous RAM is freed by madvise(MADV_DONTNEED); on shared memory
 * (memfd, shmem) that only unmaps the page and the file keeps it, so a hole
 * is punched instead (MADV_REMOVE), which also frees it for the other
 * process that maps the file (a vhost-user backend); hugetlbfs RAM can only
 * be freed in whole huge pages, so a discard there acts on the huge pages
 * the range covers whole, and the pages of a huge page it covers in part
 * are left as they were and counted as skipped.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "uffd.h"

/*
 * The library's own discards are announced to the VM's fault thread (a
 * REMOVE handler leaves their locked pages to them), made under the page
 * locks, and wait for their REMOVE event to be dispatched: uffd.h, REMOVE
 * events, and docs/design.md.
 */
struct rf_own rf_vm_own_begin(rf_vm *vm, void *addr, uint64_t len)
{
	struct rf_own o = {rf_uffd_of(vm), 0};

	if (o.u)
		o.slot = rf_uffd_own_add(o.u, (uintptr_t)addr, (uintptr_t)addr + len);
	return o;
}

void rf_vm_own_end(struct rf_own o)
{
	if (o.u)
		rf_uffd_own_del(o.u, o.slot);
}

/* Round [*@addr, *@addr + *@len) inward to whole pages of @r's kernel page
 * size (a no-op but on hugetlbfs); *@len may become 0. */
static void trim_to_kernel_pages(const struct rf_region *r, uintptr_t *addr, uint64_t *len)
{
	uint64_t pb = r->page_bytes;
	uintptr_t lo = (*addr + pb - 1) & ~(uintptr_t)(pb - 1);
	uintptr_t hi = (*addr + *len) & ~(uintptr_t)(pb - 1);

	*addr = lo;
	*len = hi > lo ? hi - lo : 0;
}

int rf_vm_discard_locked(rf_vm *vm, void *addr, uint64_t len)
{
	struct rf_region *r = __rf_vm_find_region_hva(vm, (uintptr_t)addr);
	int advice = r && r->shared ? MADV_REMOVE : MADV_DONTNEED;
	uintptr_t a = (uintptr_t)addr;
	struct rf_own o;
	int err = 0;

	if (r && r->backing == RF_BACKING_HUGETLB) {
		trim_to_kernel_pages(r, &a, &len);
		if (!len)
			return 0;
		addr = (void *)a;
	}
	o = rf_vm_own_begin(vm, addr, len);
	rf_debug_note(vm, addr, len, "discard");
	if (madvise(addr, len, advice) != 0)
		err = -errno;
	if (o.u)
		rf_uffd_sync(o.u);
	rf_vm_own_end(o);
	return err;
}

#define DISCARD_RUN 512

struct locked_page {
	uint64_t idx;
	uint64_t old;
};

static void flush_run(rf_vm *vm, struct rf_region *r, struct locked_page *run, unsigned int n,
		      enum rf_page_state to)
{
	unsigned int i = 0;

	/* Split into address-contiguous runs: one madvise for each. */
	while (i < n) {
		unsigned int j = i + 1;

		while (j < n && run[j].idx == run[j - 1].idx + 1)
			j++;
		int err = rf_vm_discard_locked(vm, rf_region_page(r, run[i].idx),
					       (uint64_t)(j - i) << RF_PAGE_SHIFT);

		if (err)
			rf_log(vm->e, RF_LOG_ERR, "%s: discard: madvise(%s) at gpa 0x%llx: %s",
			       vm->name, r->shared ? "REMOVE" : "DONTNEED",
			       (unsigned long long)(r->gpa + (run[i].idx << RF_PAGE_SHIFT)),
			       strerror(-err));
		i = j;
	}
	for (i = 0; i < n; i++) {
		uint64_t nv = rf_pte_with_state(run[i].old, to);

		/* A discarded page loses the embedder's protection too (vm.h). */
		nv &= ~(RF_PTE_F_VOLATILE | RF_PTE_F_NOMERGE | RF_PTE_F_COLD | RF_PTE_F_UWP);
		rf_pte_unlock(vm, &r->pte[run[i].idx], run[i].old, rf_pte_with_payload(nv, 0));
	}
}

/*
 * discard_as on hugetlbfs: huge page by huge page, each with all its pages
 * locked (ascending, as always). A huge page with an excluded page, or a
 * page another module owns (none can: dedup and swap refuse hugetlbfs), is
 * left whole; the pages of partly covered huge pages too. Counted in
 * *@skipped.
 */
static void discard_huge(rf_vm *vm, struct rf_region *r, uint64_t first, uint64_t npages,
			 enum rf_page_state to, bool keep_ballooned, uint64_t *skipped)
{
	uint64_t hp = r->page_bytes >> RF_PAGE_SHIFT;
	uint64_t lo = (first + hp - 1) / hp * hp, hi = (first + npages) / hp * hp;

	if (hi <= lo) {
		*skipped += npages;
		return;
	}
	*skipped += (lo - first) + (first + npages - hi);
	for (uint64_t h = lo; h < hi; h += hp) {
		bool whole = true;
		int err = 0;

		for (uint64_t k = h; k < h + hp; k++) {
			uint64_t v = rf_pte_lock(&r->pte[k]);

			if ((v & RF_PTE_EXCLUDED) || rf_vm_state_owner(vm, rf_pte_state(v)))
				whole = false;
		}
		if (whole) {
			err = rf_vm_discard_locked(vm, rf_region_page(r, h), hp << RF_PAGE_SHIFT);
			if (err)
				rf_log(
				    vm->e, RF_LOG_ERR,
				    "%s: discard: madvise(%s) of the huge page at gpa 0x%llx: %s",
				    vm->name, r->shared ? "REMOVE" : "DONTNEED",
				    (unsigned long long)(r->gpa + (h << RF_PAGE_SHIFT)),
				    strerror(-err));
		}
		for (uint64_t k = h; k < h + hp; k++) {
			uint64_t old = rf_pte_peek(&r->pte[k]), nv = old;

			if (!whole || err ||
			    (keep_ballooned && rf_pte_state(old) == RF_PAGE_BALLOONED))
				(*skipped)++;
			else
				nv =
				    rf_pte_with_payload(rf_pte_with_state(old, to) &
							    ~(RF_PTE_F_VOLATILE | RF_PTE_F_NOMERGE |
							      RF_PTE_F_COLD | RF_PTE_F_UWP),
							0);
			rf_pte_unlock(vm, &r->pte[k], old, nv);
		}
	}
}

/* rf_vm_discard_as; @keep_ballooned leaves BALLOONED pages to the balloon
 * (the embedder's discard), counted in *@skipped like excluded ones. */
static int discard_as(rf_vm *vm, uint64_t gpa, uint64_t npages, enum rf_page_state to,
		      bool keep_ballooned, uint64_t *skipped)
{
	struct locked_page run[DISCARD_RUN];
	struct rf_region *r;
	struct rf_own own;
	unsigned int n = 0;
	uint64_t first, ignored;

	if (!skipped)
		skipped = &ignored;
	*skipped = 0;
	if (to != RF_PAGE_ZERO && to != RF_PAGE_BALLOONED && to != RF_PAGE_FREE_REPORTED)
		return -EINVAL;
	if (npages == 0 || (gpa & (RF_PAGE_SIZE - 1)))
		return -EINVAL;
	rf_vm_regions_rdlock(vm);
	r = __rf_vm_find_region(vm, gpa);
	if (!r || npages > r->npages - rf_region_index(r, gpa)) {
		rf_vm_regions_unlock(vm);
		return -EFAULT;
	}
	first = rf_region_index(r, gpa);
	if (r->backing == RF_BACKING_HUGETLB) {
		own = rf_vm_own_begin(vm, rf_region_page(r, first), npages << RF_PAGE_SHIFT);
		discard_huge(vm, r, first, npages, to, keep_ballooned, skipped);
		rf_vm_own_end(own);
		rf_vm_regions_unlock(vm);
		return 0;
	}
	/* Announced before the first page is locked: a REMOVE handler must not
	 * wait for a page of ours (see rf_vm_own_begin). */
	own = rf_vm_own_begin(vm, rf_region_page(r, first), npages << RF_PAGE_SHIFT);
	for (uint64_t idx = first; idx < first + npages; idx++) {
		uint64_t v = rf_pte_lock(&r->pte[idx]);
		enum rf_page_state s = rf_pte_state(v);
		const struct rf_vm_hooks *h;

		if ((v & RF_PTE_EXCLUDED) || (keep_ballooned && s == RF_PAGE_BALLOONED)) {
			rf_pte_unlock(vm, &r->pte[idx], v, v);
			(*skipped)++;
			continue;
		}
		h = rf_vm_state_owner(vm, s);
		if (h && h->page_release && h->page_release(vm, r, idx, v, h->arg) != 0) {
			rf_pte_unlock(vm, &r->pte[idx], v, v);
			(*skipped)++;
			continue;
		}
		run[n].idx = idx;
		run[n].old = v;
		if (++n == DISCARD_RUN) {
			flush_run(vm, r, run, n, to);
			n = 0;
		}
	}
	if (n)
		flush_run(vm, r, run, n, to);
	rf_vm_own_end(own);
	rf_vm_regions_unlock(vm);
	return 0;
}

int rf_vm_discard_as(rf_vm *vm, uint64_t gpa, uint64_t npages, enum rf_page_state to,
		     uint64_t *skipped)
{
	return discard_as(vm, gpa, npages, to, false, skipped);
}

RF_EXPORT int rf_vm_discard(rf_vm *vm, uint64_t gpa, uint64_t len, uint64_t *skipped)
{
	uint64_t end = gpa + len, at, n = 0;
	int err = 0;

	if (skipped)
		*skipped = 0;
	if (!vm || len == 0 || ((gpa | len) & (RF_PAGE_SIZE - 1)) || end < gpa)
		return -EINVAL;
	/* The whole range is guest RAM, or nothing is done. */
	rf_vm_regions_rdlock(vm);
	for (at = gpa; at < end;) {
		struct rf_region *r = __rf_vm_find_region(vm, at);

		if (!r)
			break;
		at = r->gpa + r->size;
	}
	rf_vm_regions_unlock(vm);
	if (at < end) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: discard: gpa 0x%" PRIx64 "+0x%" PRIx64 ": 0x%" PRIx64
		       " is not guest RAM, nothing discarded",
		       vm->name, gpa, len, at);
		return -EFAULT;
	}
	for (at = gpa; at < end && !err;) {
		uint64_t part, s = 0;
		struct rf_region *r;

		rf_vm_regions_rdlock(vm);
		r = __rf_vm_find_region(vm, at);
		part = r ? r->gpa + r->size - at : 0;
		rf_vm_regions_unlock(vm);
		if (!r)
			return -EFAULT; /* unmapped under us */
		if (part > end - at)
			part = end - at;
		err = discard_as(vm, at, part >> RF_PAGE_SHIFT, RF_PAGE_ZERO, true, &s);
		n += s;
		at += part;
	}
	if (skipped)
		*skipped = n;
	return err;
}
