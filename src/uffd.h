/* SPDX-License-Identifier: MIT */
/*
 * The per-VM userfaultfd and its fault thread.
 *
 * One userfaultfd per VM, opened on first use by whichever module needs it
 * (dedup for write-protect, swap for missing faults), and one fault thread
 * that reads it. The thread is an event loop: each message is dispatched by
 * kind (write-protect fault, missing fault, minor fault, remove, unmap,
 * remap, fork event) to the handler a module installed for that kind; a kind
 * nobody handles gets a safe default (a write-protect fault is resolved by
 * un-protecting the page, a missing fault by mapping a zero page; events are
 * counted).
 *
 * Rules that keep the fault thread from deadlocking with the vCPUs and the
 * modules:
 *   - A handler never blocks on a page lock (rf_pte_lock): the thread that
 *     holds one may itself be waiting in the kernel for this fault thread to
 *     read an event (madvise(MADV_DONTNEED) on a registered range waits until
 *     UFFD_EVENT_REMOVE is read). Handlers use rf_pte_trylock or read the entry
 *     without the lock, and rely on the protocol below.
 *   - Write-protect protocol (RF_PTE_F_WP): a module that write-protects a
 *     page sets RF_PTE_F_WP under the page lock first; before clearing it, it
 *     removes the protection (rf_uffd_writeprotect(.., false, ..)) or replaces
 *     the mapping, and *after* clearing it (publishing the entry) it calls
 *     rf_uffd_wake on the page. So the fault thread may drop a write-protect
 *     fault on a page whose F_WP is set: the holder's last wake comes after the
 *     flag is gone, whenever the fault arrived (the swap pager's missing-fault
 *     handler on this thread may map a write-protected page while the flag is
 *     set: swap/swap_in.c, read_under_wp). A fault on a page without F_WP is
 *     resolved by the fault thread itself. Modules wake threads and lift
 *     protections only through rf_uffd_wake and rf_uffd_writeprotect: the
 *     fault stall (fault_stall.h) ends the waits of faults left to a holder
 *     there, and a raw UFFDIO_WAKE would leave them running.
 *   - REMOVE events (a discard of guest RAM): the library's own discards
 *     are announced (rf_vm_own_begin) before their first page is locked,
 *     made under the page locks, and wait until their event is dispatched
 *     (rf_vm_discard_locked, rf_uffd_sync). A handler leaves a locked page
 *     inside an announced discard to it, and may wait (yielding, never
 *     blocking) for the lock of any other page whose state it must change:
 *     the holders of such pages (an audit looking again) wait for nothing.
 *     A handler never asks for a retry over a page lock: a retried event
 *     could land after the page was swapped out again and wipe it.
 *   - ioctls that fail with EAGAIN (the kernel has an event pending that this
 *     fault thread has not read yet) are retried by the helpers below; on the
 *     fault thread itself they return -EAGAIN, and the handler asks to be
 *     retried after the next read. Messages are dispatched in the order they
 *     were read: a handler never reads and dispatches others itself.
 *
 * Registration: UFFDIO_REGISTER replaces a VMA's mode rather than adding to
 * it, so the VM keeps a base mode that every module's registration is ORed
 * with: dedup adds WP (and registers all guest RAM), swap adds MISSING when
 * its swap pager starts (and registers 2 MiB chunks lazily, as it swaps there).
 * Both must be in the base: a module that registers again after a remap
 * would otherwise drop the other's mode there, and a page swapped out of a
 * range without MISSING would read back as zeros. A mmap(MAP_FIXED) or
 * mremap over a registered range leaves an unregistered VMA: the module
 * that remaps registers the new range again.
 *
 * The embedder's share (rf_vm_set_fault_handler, docs/userfaultfd.md): the
 * pages of guest RAM that were PRIVATE when the embedder installed its
 * fault handler are "foreign" until they are filled or discarded, and a
 * missing fault on one goes to that handler instead of being answered with
 * zeros. Missing-fault handlers ask first (rf_uffd_foreign_fault) and carry
 * on only if the fault is not the embedder's; fills that nobody faulted for
 * (the swap pager's fill-ahead) skip foreign pages (rf_uffd_foreign_page).
 * A REMOVE event makes the pages it covers ordinary (a discarded page reads
 * as zeros) before any module's REMOVE handler runs. A page stays foreign
 * only while it is absent, so no module that acts on present pages (merge,
 * swap-out, whose victims pagemap says are present) meets one.
 * The embedder's write protections (rf_vm_write_protect) are marked
 * RF_PTE_F_UWP: a write-protect fault on such a page (without F_WP) goes to
 * its handler, then the protection is lifted; merge, swap-out and zero
 * discard skip such pages, and a discard clears the bit. Minor faults go
 * to the handler too (only the embedder registers MINOR mode).
 *
 * Concurrency: rf_uffd_get may be called by any module's setup path (it is
 * serialised by the VM's uffd lock); the ioctl helpers from any thread;
 * rf_uffd_put only from rf_vm_free's hooks, once.
 */
#ifndef RF_UFFD_H
#define RF_UFFD_H

#include <stdbool.h>
#include <stdint.h>
#include <linux/userfaultfd.h>

#include "internal.h"

enum rf_uffd_kind {
	RF_UFFD_FAULT_WP = 0,
	RF_UFFD_FAULT_MISSING,
	RF_UFFD_FAULT_MINOR,
	RF_UFFD_EV_REMOVE,
	RF_UFFD_EV_UNMAP,
	RF_UFFD_EV_REMAP,
	RF_UFFD_EV_FORK,
	RF_UFFD_NKINDS
};

struct rf_uffd;

/*
 * A handler runs on the fault thread. It returns 0 when it dealt with the
 * message, or -EAGAIN to have it retried after the next poll round (at most
 * a millisecond later; for a page whose lock is busy, say).
 */
typedef int (*rf_uffd_handler)(struct rf_uffd *u, const struct uffd_msg *msg, void *arg);

struct rf_uffd_stats {
	uint64_t msgs[RF_UFFD_NKINDS];
	uint64_t retried; /* handler asked for a retry */
	uint64_t eagain;  /* ioctls retried on EAGAIN */
	uint64_t cpu_ns;  /* fault thread CPU time */
	/* The embedder's fault handler: pages it filled, pages it asked to be
	 * zeros, calls that failed (the faulting thread left blocked). */
	uint64_t foreign_fills, foreign_zero, foreign_errors;
	/* Write-protect faults it saved (protection then lifted), minor faults
	 * it answered. */
	uint64_t foreign_wp, foreign_minor;
};

/*
 * The VM's userfaultfd, opened and its fault thread started on first call with
 * every feature the kernel has of: write-protect (anonymous and shmem),
 * UFFD_EVENT_REMOVE, missing faults on shmem. Returns 0 and *@out, or
 * -ENODEV (no userfaultfd or no write-protect), -ENOMEM, -errno.
 */
int rf_uffd_get(rf_vm *vm, struct rf_uffd **out);

/* Drop a reference taken by rf_uffd_get; the last one stops the fault thread and
 * closes the descriptor (each module calls it from its vm_free hook). */
void rf_uffd_put(rf_vm *vm);

/* Install @fn for @kind (NULL: back to the default). Any thread. */
void rf_uffd_set_handler(struct rf_uffd *u, enum rf_uffd_kind kind, rf_uffd_handler fn, void *arg);

/* Base registration mode ORed into every rf_uffd_register (UFFDIO_REGISTER_MODE_*). */
void rf_uffd_add_base_mode(struct rf_uffd *u, uint64_t mode);

/* Features the descriptor was opened with (UFFD_FEATURE_*). */
uint64_t rf_uffd_features(const struct rf_uffd *u);
int rf_uffd_fd(const struct rf_uffd *u);
rf_vm *rf_uffd_vm(const struct rf_uffd *u);

/* Register [@addr, @addr+@len) with @mode | base mode. 0 or -errno. */
int rf_uffd_register(struct rf_uffd *u, void *addr, uint64_t len, uint64_t mode);
int rf_uffd_unregister(struct rf_uffd *u, void *addr, uint64_t len);

/*
 * Write-protect (@wp) or un-protect a range, which may span several VMAs
 * (also before Linux 6.5, whose ioctl takes one). Un-protecting wakes the
 * writers waiting on it unless @dontwake (the kernel refuses @dontwake with
 * @wp: -EINVAL). -ENOENT if the range is not all registered for
 * write-protect; a protect that fails leaves none of the range protected.
 */
int rf_uffd_writeprotect(struct rf_uffd *u, void *addr, uint64_t len, bool wp, bool dontwake);

/* Wake threads waiting on faults in the range (whatever its VMA is now). */
int rf_uffd_wake(struct rf_uffd *u, void *addr, uint64_t len);

void rf_uffd_stats(struct rf_uffd *u, struct rf_uffd_stats *st);

/*
 * Wait until the fault thread has dispatched every message it has read so
 * far. A thread that discarded guest RAM under its page locks calls it
 * before unlocking (rf_vm_discard_locked does), so that no REMOVE handler
 * can see the event after the pages have a new state: an event handled
 * late would be taken for a discard of whatever the page holds by then.
 * Returns at once on the fault thread, or when the descriptor has no REMOVE
 * events. Any other thread; 0 or -errno.
 */
int rf_uffd_sync(struct rf_uffd *u);

/*
 * A new userfaultfd (O_CLOEXEC | O_NONBLOCK, UFFDIO_API not yet called)
 * that handles kernel-mode faults: from userfaultfd(2), else from
 * /dev/userfaultfd. Never a user-mode-only one. 0, or -EPERM with one
 * message naming what the process lacks, or another -errno. @who names the
 * object in messages.
 */
int rf_uffd_open_kernel(rf_engine *e, const char *who, int *out);
/* A new userfaultfd from /dev/userfaultfd (USERFAULTFD_IOC_NEW), O_CLOEXEC |
 * O_NONBLOCK, taking kernel-mode faults; or -errno (opening or the ioctl). */
int rf_uffd_from_device(void);

/* The VM's descriptor, or NULL if no module has registered guest RAM. */
struct rf_uffd *rf_uffd_of(rf_vm *vm);

/* Announce a discard of [@lo, @hi) (page_ops.c, rf_vm_own_begin): returns
 * its slot for rf_uffd_own_del. Waits while every slot is taken. */
unsigned int rf_uffd_own_add(struct rf_uffd *u, uintptr_t lo, uintptr_t hi);
void rf_uffd_own_del(struct rf_uffd *u, unsigned int slot);

/* Is @addr inside a discard the library is making right now (between the
 * announcement before its madvise and the dispatch of its event)? */
bool rf_uffd_own_discard(struct rf_uffd *u, uint64_t addr);

/*
 * Has the fault thread read a UFFD_EVENT_REMOVE that its handler has not
 * yet finished with? The discarder's madvise goes on from the read, so its
 * zap may come at any time, and the kernel no longer fails UFFDIO_COPY or
 * UFFDIO_MOVE with EAGAIN: a module putting bytes back into guest RAM
 * (swap_sample.c) waits until this is false, or they could land after the
 * zap and outlive the discard.
 */
bool rf_uffd_remove_pending(struct rf_uffd *u);

/* Fault thread only, from a handler: is a REMOVE event read before the
 * message being handled still waiting for its retry? (A fault that maps
 * bytes back then waits for it: the retries run in reading order.) */
bool rf_uffd_remove_ahead(const struct rf_uffd *u);

/*
 * A missing fault @m, before the handler that received it answers it: if
 * the page is the embedder's (foreign, above), call the embedder's handler
 * with the page locked. Returns 1 when the fault is not the embedder's, or
 * it asked for zeros (the page is no longer foreign): the caller answers it
 * as it would have; 0 when it was answered here (the faulting thread woken)
 * or left unanswered for good (the handler failed: logged, counted); -EAGAIN
 * to be retried (a busy lock, or the handler's UFFDIO_COPY met a pending
 * event). Fault thread only; takes the regions lock and the page's lock
 * (try), so the caller holds neither.
 */
int rf_uffd_foreign_fault(struct rf_uffd *u, const struct uffd_msg *m);

/* Is page @idx of @r still the embedder's to fill? Caller holds the regions
 * lock (a fill-ahead holds the page's lock too, so the answer holds). */
bool rf_uffd_foreign_page(struct rf_uffd *u, const struct rf_region *r, uint64_t idx);

/* True when called on @u's fault thread. */
bool rf_uffd_on_fault_thread(const struct rf_uffd *u);

#endif
