/* SPDX-License-Identifier: MIT */
#include <sched.h>

#include "internal.h"

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

	if (so != sn) {
		atomic_fetch_sub_explicit(&vm->state_pages[so], 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&vm->state_pages[sn], 1, memory_order_relaxed);
	}
	atomic_store_explicit(p, new & ~RF_PTE_LOCKED, memory_order_release);
}
