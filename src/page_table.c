/* SPDX-License-Identifier: MIT */
/*
 * The page-state table's entry lock and publication (rf_pte_trylock,
 * rf_pte_lock, rf_pte_unlock, which also moves the VM's per-state counters;
 * see page_table.h), the state names, and in debug builds the transition
 * ring and the check of every published transition against pagemap.
 */
#include <sched.h>

#include "internal.h"

#ifdef RF_DEBUG_TRANSITIONS
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "compat_linux.h"

/*
 * Debug builds (RF_DEBUG_TRANSITIONS: the ASan build of `make test`) check
 * every transition against the kernel's view of the page, under the page
 * lock, at the moment it is published; the first contradiction prints the
 * page's recent history from a ring of the last transitions of all pages
 * and aborts. Only rules that hold whatever the guest does are checked:
 * a guest may fault a discarded page back in at once, but no page the
 * table calls PRIVATE, ZERO, BALLOONED or FREE_REPORTED is ever a store
 * page, no SWAPPED or COMPRESSED page is present (its faults wait for the
 * lock), and a page just swapped in is present.
 */
#define HIST_SIZE 65536

struct hist_ent {
	const rf_pte_t *pte;
	uint64_t old, new, ns;
	void *caller;
	const char *note; /* rf_debug_note: an operation on the page, no transition */
	char thread[16];
};

static struct hist_ent hist[HIST_SIZE];
static _Atomic uint64_t hist_next;

/* The ring is touched once at load, so that it is resident from the start:
 * tests that measure the process's Pss before and after dedup would
 * otherwise count the ring filling up as memory the dedup engine costs. */
__attribute__((constructor)) static void hist_touch(void)
{
	for (size_t i = 0; i < sizeof(hist); i += 4096)
		((volatile char *)hist)[i] = 0;
}

static void hist_add(const rf_pte_t *p, uint64_t old, uint64_t new, void *caller, const char *note)
{
	struct hist_ent *h = &hist[atomic_fetch_add(&hist_next, 1) % HIST_SIZE];
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	h->pte = p;
	h->old = old;
	h->new = new;
	h->ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
	h->caller = caller;
	h->note = note;
	pthread_getname_np(pthread_self(), h->thread, sizeof(h->thread));
}

static struct rf_region *region_of_pte(rf_vm *vm, const rf_pte_t *p)
{
	for (unsigned int i = 0; i < vm->nr_regions; i++) {
		struct rf_region *r = vm->regions[i];

		if (p >= r->pte && p < r->pte + r->npages)
			return r;
	}
	return NULL;
}

/* Every entry of the ring for @p, oldest first, to stderr. */
static void print_history(const rf_pte_t *p)
{
	for (uint64_t end = atomic_load(&hist_next), k = end > HIST_SIZE ? end - HIST_SIZE : 0;
	     k < end; k++) {
		const struct hist_ent *h = &hist[k % HIST_SIZE];

		if (h->pte == p && h->note)
			fprintf(stderr, "  %" PRIu64 ".%09" PRIu64 " %-15s %s (state %s) from %p\n",
				(uint64_t)(h->ns / 1000000000ull),
				(uint64_t)(h->ns % 1000000000ull), h->thread, h->note,
				rf_page_state_name(rf_pte_state(h->old)), h->caller);
		else if (h->pte == p)
			fprintf(stderr,
				"  %" PRIu64 ".%09" PRIu64 " %-15s %s -> %s (flags 0x%" PRIx64
				" -> 0x%" PRIx64 ", payload %u -> %u) from %p\n",
				(uint64_t)(h->ns / 1000000000ull),
				(uint64_t)(h->ns % 1000000000ull), h->thread,
				rf_page_state_name(rf_pte_state(h->old)),
				rf_page_state_name(rf_pte_state(h->new)),
				(uint64_t)(h->old & RF_PTE_FLAGS_MASK),
				(uint64_t)(h->new &RF_PTE_FLAGS_MASK), rf_pte_payload(h->old),
				rf_pte_payload(h->new), h->caller);
	}
}

void rf_debug_note(rf_vm *vm, const void *addr, uint64_t len, const char *what)
{
	struct rf_region *r = __rf_vm_find_region_hva(vm, (uintptr_t)addr);

	if (!r)
		return;
	for (uint64_t a = (uintptr_t)addr; a < (uintptr_t)addr + len; a += RF_PAGE_SIZE) {
		rf_pte_t *p = &r->pte[(a - (uintptr_t)r->hva) >> RF_PAGE_SHIFT];
		uint64_t v = rf_pte_peek(p);

		hist_add(p, v, v, __builtin_return_address(0), what);
	}
}

void rf_debug_page_history(rf_vm *vm, uint64_t gpa)
{
	struct rf_region *r;

	rf_vm_regions_rdlock(vm);
	r = __rf_vm_find_region(vm, gpa);
	if (r) {
		fprintf(stderr, "ramfold: %s: gpa 0x%" PRIx64 ": history, oldest first:\n",
			vm->name, gpa);
		print_history(&r->pte[rf_region_index(r, gpa)]);
	}
	rf_vm_regions_unlock(vm);
}

static const char *contradiction(rf_vm *vm, uint64_t old, uint64_t new, uint64_t pm)
{
	enum rf_page_state so = rf_pte_state(old), sn = rf_pte_state(new);
	bool present = pm & PM_PRESENT, file = present && (pm & PM_FILE);

	switch (sn) {
	case RF_PAGE_PRIVATE:
		if (file)
			return "private, but a store page is mapped";
		if ((so == RF_PAGE_SWAPPED || so == RF_PAGE_COMPRESSED) && !present)
			return "swapped in, but no page is present";
		return NULL;
	case RF_PAGE_ZERO:
	case RF_PAGE_BALLOONED:
	case RF_PAGE_FREE_REPORTED:
		return file ? "discarded, but a store page is mapped" : NULL;
	case RF_PAGE_SWAPPED:
	case RF_PAGE_COMPRESSED:
		return present ? "swapped out, but a page is present" : NULL;
	case RF_PAGE_MERGED:
		/* A file page, or the private copy a writer made of one, or
		 * nothing yet (the store page is faulted in on next use). */
		return present && !file && !rf_pagemap_resident(vm->e, pm)
			   ? "merged, but the zero page is mapped"
			   : NULL;
	default:
		return "invalid state";
	}
}

static void check_transition(rf_vm *vm, rf_pte_t *p, uint64_t old, uint64_t new, void *caller)
{
	struct rf_region *r;
	const char *why;
	uint64_t pm, idx;

	hist_add(p, old, new, caller, NULL);
	r = region_of_pte(vm, p);
	if (!r)
		return;
	idx = (uint64_t)(p - r->pte);
	if (rf_pagemap_read(vm->e, rf_region_page(r, idx), 1, &pm) != 0)
		return;
	why = contradiction(vm, old, new, pm);
	if (!why)
		return;
	fprintf(stderr,
		"ramfold: %s: gpa 0x%" PRIx64 ": transition %s -> %s contradicts the kernel: %s "
		"(pagemap 0x%" PRIx64 ")\nhistory of the page, oldest first:\n",
		vm->name, r->gpa + (idx << RF_PAGE_SHIFT), rf_page_state_name(rf_pte_state(old)),
		rf_page_state_name(rf_pte_state(new)), why, pm);
	print_history(p);
	abort();
}
#else
void rf_debug_page_history(rf_vm *vm, uint64_t gpa)
{
	(void)vm;
	(void)gpa;
}
#endif

static const char *const state_names[RF_PAGE_NSTATES] = {
    [RF_PAGE_PRIVATE] = "private",
    [RF_PAGE_ZERO] = "zero",
    [RF_PAGE_MERGED] = "merged",
    [RF_PAGE_BALLOONED] = "ballooned",
    [RF_PAGE_FREE_REPORTED] = "free-reported",
    [RF_PAGE_SWAPPED] = "swapped",
    [RF_PAGE_COMPRESSED] = "compressed",
};

RF_EXPORT const char *rf_page_state_name(enum rf_page_state s)
{
	if ((unsigned int)s >= RF_PAGE_NSTATES)
		return "invalid";
	return state_names[s];
}

bool rf_pte_trylock(rf_pte_t *p, uint64_t *v)
{
	uint64_t cur = atomic_load_explicit(p, memory_order_relaxed);

	if (cur & RF_PTE_LOCKED)
		return false;
	/* Acquire: the mapping changes the previous holder made before its
	 * release store are visible to us. */
	if (!atomic_compare_exchange_strong_explicit(p, &cur, cur | RF_PTE_LOCKED,
						     memory_order_acquire, memory_order_relaxed))
		return false;
	*v = cur;
	return true;
}

uint64_t rf_pte_lock(rf_pte_t *p)
{
	unsigned int spins = 0;
	uint64_t v;

	while (!rf_pte_trylock(p, &v)) {
		/* A holder may be waiting on the kernel (mmap, UFFDIO_COPY): do
		 * not burn a core spinning on it for long. */
		if (++spins > 64)
			sched_yield();
		else
			__builtin_ia32_pause();
	}
	return v;
}

void rf_pte_unlock(rf_vm *vm, rf_pte_t *p, uint64_t old, uint64_t new)
{
	enum rf_page_state so = rf_pte_state(old), sn = rf_pte_state(new);

#ifdef RF_DEBUG_TRANSITIONS
	if (so != sn)
		check_transition(vm, p, old, new, __builtin_return_address(0));
#endif
	if (so != sn) {
		atomic_fetch_sub_explicit(&vm->state_pages[so], 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&vm->state_pages[sn], 1, memory_order_relaxed);
	}
	rf_pte_publish(p, old, new);
}

void rf_pte_publish(rf_pte_t *p, uint64_t old, uint64_t new)
{
	/* RF_PTE_F_DISCARD may have been set under the holder's lock
	 * (rf_pte_mark_discard): the holder's new value keeps it then. A
	 * holder that found it set at lock time may clear it. */
	uint64_t cur = atomic_load_explicit(p, memory_order_relaxed), fin;

	do
		fin = (new & ~RF_PTE_LOCKED) | (cur & ~old & RF_PTE_F_DISCARD);
	while (!atomic_compare_exchange_weak_explicit(p, &cur, fin, memory_order_release,
						      memory_order_relaxed));
}

uint64_t rf_pte_mark_discard(rf_pte_t *p)
{
	return atomic_fetch_or_explicit(p, RF_PTE_F_DISCARD, memory_order_seq_cst);
}
