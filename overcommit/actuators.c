/* SPDX-License-Identifier: MIT */
/*
 * The one place where the accounting layer meets the mechanisms: how the
 * ledger's snapshot (measure.c) reads a VM's balloon and swap, and how the
 * policy drives the balloon, swap and dedup (ramfold's own actuators). Every
 * other file of overcommit/ works on readings and actions only.
 *
 * Until a mechanism is attached to a VM, its reading falls back to what the
 * ledger remembers (the last target the policy set, the guest's free memory
 * an embedder reported with rf_vm_set_guest_free) and its actuator answers
 * -ENOSYS, which the runner counts and logs once.
 *
 * Wired: the balloon (balloon/, rf_balloon_set_target, rf_balloon_info,
 * rf_balloon_stats); dedup (ksm/, rf_dedup_set_rate and rf_dedup_scan_now);
 * swap (swap/, rf_vm_set_swap_target as a resident target, rf_vm_swap_stats
 * for the compressed tier's bytes).
 */
#include <errno.h>

#include <ramfold/balloon.h>
#include <ramfold/dedup.h>
#include <ramfold/swap.h>

#include "internal.h"
#include "ledger.h"
#include "policy.h"

void rf_mech_read(rf_vm *vm, struct rf_mech_reading *out)
{
	struct rf_ledger_vm *lv = vm->ledger;
	struct rf_balloon_info bi = {.size = sizeof(bi)};
	struct rf_balloon_stats bs = {.size = sizeof(bs)};
	struct rf_swap_stats ss = {.size = sizeof(ss)};

	out->has_balloon = 0;
	out->balloon_target_bytes = lv ? atomic_load(&lv->balloon_target) : 0;
	out->guest_free_bytes = lv ? atomic_load(&lv->guest_free) : UINT64_MAX;
	out->resident_target_bytes = lv ? atomic_load(&lv->resident_target) : UINT64_MAX;
	out->compressed_host_bytes = 0;
	out->stall_ns = out->stall_faults = 0;
	out->guest_alloc_stalls = RF_BALLOON_STAT_UNSET;

	/* The swap store's compressed tier holds this VM's pages in host
	 * memory: that is part of what the VM costs. So do the pages
	 * working-set sampling holds out of the guest's mapping (SWAPPED in
	 * the table, whole pages in the pager's memory). */
	if (rf_vm_swap_stats(vm, &ss) == 0) {
		out->compressed_host_bytes = ss.tier_compressed_bytes + ss.staged_bytes;
		out->stall_ns = ss.stall_ns;
		out->stall_faults = ss.stall_faults;
	}

	/* ramfold's balloon (balloon/): driven once the guest's driver is up.
	 * The guest's free memory is its own report: it only weighs the idle
	 * tax, never decides what memory is touched. */
	if (vm->balloon && rf_balloon_info(vm->balloon, &bi) == 0 &&
	    (bi.status & RF_VIRTIO_STATUS_DRIVER_OK) &&
	    !(bi.status & (RF_VIRTIO_STATUS_FAILED | RF_VIRTIO_STATUS_DEVICE_NEEDS_RESET))) {
		out->has_balloon = 1;
		out->balloon_target_bytes = bi.target_bytes;
		if (rf_balloon_stats(vm->balloon, &bs) == 0 && bs.last_update_ns &&
		    bs.value[RF_BALLOON_S_MEMFREE] != RF_BALLOON_STAT_UNSET)
			out->guest_free_bytes = bs.value[RF_BALLOON_S_MEMFREE];
		/* A guest-written counter: passed on as sent; the policy only
		 * acts on it going up (policy.c, proactive mode). */
		if (bs.last_update_ns)
			out->guest_alloc_stalls = bs.value[RF_BALLOON_S_ALLOC_STALL];
	}
}

static int builtin_set_balloon(void *arg, rf_vm *vm, uint64_t bytes)
{
	(void)arg;
	if (!vm->balloon)
		return -ENOSYS; /* no balloon device on this VM */
	return rf_balloon_set_target(vm->balloon, bytes);
}

/* The policy's "no resident target" (UINT64_MAX) is swap's
 * RF_SWAP_NO_TARGET, a typed constant of all ones (swap.h): not a constant
 * expression in C, so checked by tests/abi/check-bindgen.sh, not here. */
static int builtin_set_swap(void *arg, rf_vm *vm, uint64_t resident_bytes)
{
	(void)arg;
	return rf_vm_set_swap_target(vm, resident_bytes);
}

/*
 * The dedup engine's run-time rate (ksm/, rf_dedup_set_rate): 0 hands it
 * back to its own configuration (fast until converged, then an idle CPU
 * budget); a rate under pressure also wakes the scanner for a pass now.
 * -ENOENT (counted by the runner) when dedup is not started, -EOPNOTSUPP
 * with its KSM backend.
 */
static int builtin_set_scan_rate(void *arg, rf_engine *e, uint64_t pps)
{
	int rc;

	(void)arg;
	rc = rf_dedup_set_rate(e, pps);
	if (rc == 0 && pps)
		rc = rf_dedup_scan_now(e);
	return rc;
}

const struct rf_policy_actuators rf_policy_builtin_actuators = {
    .set_balloon = builtin_set_balloon,
    .set_swap = builtin_set_swap,
    .set_scan_rate = builtin_set_scan_rate,
};
