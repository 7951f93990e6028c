/* SPDX-License-Identifier: MIT */
/*
 * The swap layer's interface between its parts: the engine's swap state
 * (config and the store, created on first use; swap.c) and the per-VM swap
 * pager that swaps pages out and serves their faults on the VM's
 * userfaultfd (swap_pager.c and the files pager_internal.h lists). swap.c,
 * the public API, calls the pager through it; so do the tests and the swap
 * benchmark. No other layer includes it: the core knows swap only as an
 * engine module (rf_swap_module, lib/modules.c) and the e->swap and
 * vm->pager slots it keeps for it.
 */
#ifndef RF_SWAP_PAGER_H
#define RF_SWAP_PAGER_H

#include "internal.h"
#include "swap_store.h"

struct rf_swap {
	struct rf_swap_config cfg;
	char dir[256];
	pthread_mutex_t lock;
	struct rf_swap_store *store; /* under lock; created by the first pager */
	unsigned int users;	     /* pagers using the store */
	struct rf_pager *dead;	     /* pagers of freed VMs, freed with the engine */
};

/* swap.c: the engine's swap state, created with defaults if needed. */
struct rf_swap *rf_swap_of(rf_engine *e);
/* The store, created on first call. 0 or -errno. */
int rf_swap_store_acquire(rf_engine *e, struct rf_swap_store **out);
void rf_swap_store_release(rf_engine *e);

/* swap_pager.c: the VM's pager, started on first call (0 or -errno). */
int rf_swap_pager_get(rf_vm *vm, struct rf_pager **out);
/* swapper.c: the resident target (RF_SWAP_NO_TARGET: none) and the cap on
 * swapped bytes, as rf_vm_set_swap_target and rf_vm_set_swap_cap. */
void rf_swap_pager_set_target(struct rf_pager *p, uint64_t resident_bytes);
void rf_swap_pager_set_cap(struct rf_pager *p, uint64_t max_swapped_bytes);
/* swap_sample.c: working-set sampling, as rf_vm_set_swap_sampling. */
void rf_swap_pager_set_sampling(struct rf_pager *p, uint32_t period_ms, uint32_t pages);
/* swap_pager.c: the VM's counters into *@st (all but compression_ratio). */
void rf_swap_pager_stats(struct rf_pager *p, struct rf_swap_stats *st);
/* swap_pager.c: free the pagers of freed VMs (engine teardown, no VM left). */
void rf_swap_pager_free_dead(struct rf_swap *sw);

/*
 * swap_out.c: swap out the pages of [@gpa, @gpa + @npages pages) that can be
 * (resident, PRIVATE, not excluded), now, whatever their age: for tests and
 * benchmarks. *@done (may be NULL) gets the number of pages swapped out or
 * found zero. Returns 0 or the first error that stopped it (-ENOSPC: store or
 * cap full, -EIO; the pages not swapped are untouched).
 */
int rf_swap_pager_swap_out(struct rf_pager *p, uint64_t gpa, uint64_t npages, uint64_t *done);

/* swap_pager.c: the store the pager uses (tests inject faults into it). */
struct rf_swap_store *rf_swap_pager_store(struct rf_pager *p);

#endif
