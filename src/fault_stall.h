/* SPDX-License-Identifier: MIT */
/*
 * Fault stall: how long threads (vCPUs, the VMM's own) waited in a VM's
 * fault handling, summed over faults, so that two vCPUs waiting at once
 * count twice (vCPU-seconds, like the sum of PSI "some" over vCPUs). Kept in
 * the VM (rf_vm.stall_ns, stall_faults: it outlives the VM's userfaultfd)
 * and reported by rf_vm_swap_stats().
 *
 * A wait starts when the fault thread reads the fault message (the kernel
 * stamps none: the time a message sat unread while the fault thread worked
 * on others is not seen, so the figure is a lower bound) and ends when the
 * faulting thread is released:
 *   - for a fault the fault thread answers (UFFDIO_COPY, ZEROPAGE, a wake,
 *     lifting a protection; after any number of -EAGAIN retries), when its
 *     handler returns: one clock read after it, one add;
 *   - for a write-protect fault on a page a module holds (RF_PTE_F_WP, the
 *     fault left to the holder: uffd.h), when the holder lifts the
 *     protection or wakes the page. Such a fault is "parked" in a small
 *     table of the VM's descriptor, and every wake and un-protect through
 *     uffd.c closes the parked faults in its range.
 *
 * Parking races the holder's wake: the holder clears F_WP, then wakes. So
 * the fault thread parks first, then looks at F_WP again; if it is clear,
 * the holder's wake may have come before the park, and the fault thread
 * takes its entry back (rf_stall_unpark) and ends the wait itself. Whoever
 * removes an entry ends its wait, under the table's lock, so a wait is
 * counted once. A fault that finds the table full is ended when its handler
 * returns (counted, shorter than it was).
 *
 * Who calls what: rf_stall_end and rf_stall_park/_unpark on the fault
 * thread; rf_stall_woken from any thread that wakes or un-protects (the
 * fault thread included); the counters are read by anyone.
 */
#ifndef RF_FAULT_STALL_H
#define RF_FAULT_STALL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "internal.h"

/* Writers blocked on protected pages of one VM at once: one per vCPU or
 * VMM thread at most, so a few dozen is plenty. */
#define RF_STALL_PARKED_MAX 64

struct rf_stall_parked {
	pthread_mutex_t lock;
	_Atomic unsigned int n; /* entries in use: a wake skips the lock at 0 */
	struct {
		uint64_t page; /* 0: free */
		uint64_t t0;
	} e[RF_STALL_PARKED_MAX];
};

/* CLOCK_MONOTONIC in nanoseconds (the vDSO: no system call). */
uint64_t rf_stall_now(void);

/* A fault read at @t0 released at @now: add its wait to @vm's counters. */
void rf_stall_end(rf_vm *vm, uint64_t t0, uint64_t now);

void rf_stall_parked_init(struct rf_stall_parked *pk);
void rf_stall_parked_destroy(struct rf_stall_parked *pk);

/* Park a write-protect fault on @page read at @t0: its wait ends at the
 * next rf_stall_woken over @page. Returns the slot, or -1 when the table is
 * full (the caller ends the wait itself). */
int rf_stall_park(struct rf_stall_parked *pk, uint64_t page, uint64_t t0);

/* Take parked entry @slot (@page, @t0) back if no wake has taken it yet:
 * true if taken (the caller ends the wait). */
bool rf_stall_unpark(struct rf_stall_parked *pk, int slot, uint64_t page, uint64_t t0);

/* [@addr, @addr + @len) was woken or un-protected: end the waits parked
 * there, on @vm. One atomic load when nothing is parked. */
void rf_stall_woken(rf_vm *vm, struct rf_stall_parked *pk, uint64_t addr, uint64_t len);

#endif
