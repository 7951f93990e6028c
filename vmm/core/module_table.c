/* SPDX-License-Identifier: MIT */
/*
 * The module table: every module of the demo VMM, in the order the core
 * calls their hooks (core/module.h). Add a module by adding its line here.
 *
 * Order matters, and it is the same for every hook except vm_teardown:
 *  - stop: the ledger first, so the policy thread and the metrics server
 *    are gone before dedup, the balloon and swap stop what they drive;
 *  - start: the ledger configures admission control before any VM exists,
 *    and registers its control commands first (after dedup's query-dedup,
 *    which dedup registers in engine_config);
 *  - vm_devices: the balloon is the only device, in slot 1;
 *  - --help lists options and --vm keys in this order.
 */
#include <stddef.h>

#include "core/module.h"

extern const struct vmm_module ledger_module;	 /* modules/ledger.c */
extern const struct vmm_module balloon_module;	 /* devices/balloon.c */
extern const struct vmm_module debug_ctl_module; /* ctl/debug_ctl.c */
extern const struct vmm_module dedup_module;	 /* modules/dedup.c */
extern const struct vmm_module linux_module;	 /* linux/linux.c */
extern const struct vmm_module swap_module;	 /* modules/swap.c */

const struct vmm_module *const vmm_modules[] = {
    &ledger_module, &balloon_module, &debug_ctl_module, &dedup_module, &linux_module, &swap_module,
    NULL,
};
