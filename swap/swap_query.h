/* SPDX-License-Identifier: MIT */
/*
 * What the layer above swap (the ledger, overcommit/measure.c) asks of it
 * that the public API does not answer: the resident target a VM's swap
 * pager holds, however it was set (rf_vm_set_swap_target by the embedder or
 * the policy's actuator), so that the breakdown shows it. Private to the
 * library: nothing here is exported.
 */
#ifndef RF_SWAP_QUERY_H
#define RF_SWAP_QUERY_H

#include <stdint.h>

#include <ramfold/swap.h>

#include "internal.h"

/* swapper.c: @vm's resident target; RF_SWAP_NO_TARGET if it has none or
 * its swap pager never started. Takes the pager's lock. */
uint64_t rf_swap_vm_target(rf_vm *vm);

/* swap_sample.c: @vm's active-memory estimate in bytes (0 if sampling is
 * off or its swap pager never started). Lock-free. */
uint64_t rf_swap_vm_active(rf_vm *vm);

#endif
