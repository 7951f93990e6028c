/* SPDX-License-Identifier: MIT */
/*
 * The library's assembly: the modules every engine has, in the order the
 * core calls them (src/internal.h, struct rf_engine_module). This is the one
 * file that names the layers above the core; the core reaches them only
 * through this table, and no module reaches another through it.
 *
 * Order matters: rf_engine_free() stops and frees in reverse, so the ledger
 * (whose policy thread drives dedup) stops before dedup's scanners, and the
 * swap store, which every VM's swap pager holds, is freed after the VMs.
 */
#include "internal.h"

extern const struct rf_engine_module rf_swap_module;   /* swap/swap.c */
extern const struct rf_engine_module rf_dedup_module;  /* ksm/dedup.c */
extern const struct rf_engine_module rf_ledger_module; /* overcommit/ledger.c */

const struct rf_engine_module *const rf_engine_modules[] = {
    &rf_swap_module,
    &rf_dedup_module,
    &rf_ledger_module,
    NULL,
};
