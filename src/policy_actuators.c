/* SPDX-License-Identifier: MIT */
/*
 * The one place where the policy meets the mechanisms: how it reads a VM's
 * balloon and swap, and how it drives them. Every other policy file works
 * on readings and actions only.
 *
 * Until a mechanism is attached to a VM, its reading falls back to what the
 * ledger remembers (the last target the policy set, the guest's free memory
 * an embedder reported with rf_vm_set_guest_free) and its actuator answers
 * -ENOSYS, which the runner counts and logs once.
 */
#include <errno.h>

#include "internal.h"
#include "ledger.h"
#include "policy.h"

void rf_mech_read(rf_vm *vm, struct rf_mech_reading *out)
{
	struct rf_ledger_vm *lv = vm->ledger;

	out->has_balloon = 0;
	out->balloon_target_bytes = lv ? atomic_load(&lv->balloon_target) : 0;
	out->guest_free_bytes = lv ? atomic_load(&lv->guest_free) : UINT64_MAX;
	out->swap_target_bytes = lv ? atomic_load(&lv->swap_target) : 0;
	out->compressed_host_bytes = 0;
}

static int builtin_set_balloon(void *arg, rf_vm *vm, uint64_t bytes)
{
	(void)arg;
	(void)vm;
	(void)bytes;
	return -ENOSYS; /* the balloon device (issue 5) is not attached */
}

static int builtin_set_swap(void *arg, rf_vm *vm, uint64_t bytes)
{
	(void)arg;
	(void)vm;
	(void)bytes;
	return -ENOSYS; /* the pager (issue 6) is not attached */
}

static int builtin_set_scan_rate(void *arg, rf_engine *e, uint64_t pps)
{
	(void)arg;
	(void)e;
	(void)pps;
	return -ENOSYS; /* the dedup engine (issue 4) is not attached */
}

const struct rf_policy_actuators rf_policy_builtin_actuators = {
    .set_balloon = builtin_set_balloon,
    .set_swap = builtin_set_swap,
    .set_scan_rate = builtin_set_scan_rate,
};
