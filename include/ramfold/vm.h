/* SPDX-License-Identifier: MIT */
/*
 * One guest: its promised RAM, its guest-physical regions (host memory the
 * library mapped, or memory the embedder mapped and handed over with
 * rf_vm_adopt_ram; either way the embedder hands it to KVM), and the state
 * of every 4 KiB page in them.
 *
 * Page states (one per page; the page-state table is the single source of
 * truth, and rf_vm_audit() checks it against what the kernel says):
 *
 *   PRIVATE        the guest's own anonymous page (resident or not yet touched)
 *   ZERO           found all-zero and discarded; reads as the kernel zero page
 *   MERGED         maps a canonical page of the dedup store, copy-on-write
 *   BALLOONED      given back by the guest through the balloon; discarded
 *   FREE_REPORTED  reported free by the guest; discarded, still the guest's
 *   SWAPPED        content in the swap file; discarded, faults in through the swap pager
 *   COMPRESSED     content in the compressed in-memory tier; likewise
 *
 * Who may call what concurrently:
 *
 *   call                      embedder  vCPU threads  library threads
 *   rf_vm_new / rf_vm_free    yes (alone on this VM)
 *   rf_vm_map_ram / unmap     yes (not while a vCPU runs in the region;
 *   rf_vm_adopt / release     vCPUs may run in other regions)
 *   rf_vm_set_ram_bytes       any thread (vCPUs keep running)
 *   rf_vm_gpa_to_hva & co.    any thread
 *   rf_vm_stats / rf_vm_audit any thread (they read /proc/self/pagemap)
 *   rf_vm_discard             any thread
 *
 * "The thread that owns @vm" (in this and the other headers) is whichever
 * thread the embedder uses for the VM's setup and teardown (rf_vm_new,
 * map/unmap, attaching modules, rf_vm_free): those calls must not run
 * concurrently with each other for one VM; any thread will do, one at a
 * time. Guest RAM is mapped in at most 32 regions per VM (-ENOSPC past
 * that). A KVM memslot over a region is removed before the region is
 * unmapped (rf_vm_unmap_ram), never after: see docs/embedding.md.
 *
 * Guest memory itself is written by vCPUs at any time; every library module
 * that changes a page's mapping does so under the page's lock bit.
 */
#ifndef RAMFOLD_VM_H
#define RAMFOLD_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "engine.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rf_vm rf_vm;

#define RF_PAGE_SIZE  4096u
#define RF_PAGE_SHIFT 12

enum rf_page_state {
	RF_PAGE_PRIVATE = 0,
	RF_PAGE_ZERO,
	RF_PAGE_MERGED,
	RF_PAGE_BALLOONED,
	RF_PAGE_FREE_REPORTED,
	RF_PAGE_SWAPPED,
	RF_PAGE_COMPRESSED,
	RF_PAGE_NSTATES
};

/* Short lower-case name of a state ("private", "merged", ...). */
const char *rf_page_state_name(enum rf_page_state s);

/* VM flags */
#define RF_VM_THP (1u << 0) /* allow transparent huge pages on guest RAM (off by default) */

struct rf_vm_config {
	/* sizeof(struct rf_vm_config), set by rf_vm_config_init: the library reads only what
	 * this size covers (docs/embedding.md, "ABI and versions"). */
	size_t size;
	/* RAM promised to the guest: the sum of its regions may not exceed it. */
	uint64_t ram_bytes;
	/* Sharing domain: VMs with the same non-NULL domain may share pages with
	 * each other. NULL: the VM shares only with itself (and zero pages). */
	const char *domain;
	/* NUMA node for guest RAM and its store pages; -1 for no binding. */
	int numa_node;
	unsigned int flags; /* RF_VM_* */
	/* The overcommit contract (ledger.h), checked by admission control:
	 * host memory guaranteed (page-aligned, <= ram_bytes; default 0), the
	 * most it may ever use (0 = no limit), weight under contention (0 =
	 * RF_SHARES_DEFAULT). */
	uint64_t reservation_bytes;
	uint64_t limit_bytes;
	uint32_t shares;
	/* 0.4: the guest's vCPUs (0 = 1): its fault stall is a share of their
	 * time (policy.h, the proactive mode). */
	uint32_t vcpus;
};

void rf_vm_config_init(struct rf_vm_config *cfg);

/*
 * Regions per VM: rf_vm_map_ram and rf_vm_adopt_ram fail with -ENOSPC when a
 * VM has this many. A VMM with more memory slots than that (DIMM hotplug in
 * small blocks) maps or adopts larger blocks.
 */
enum { RF_VM_MAX_REGIONS = 32 };

/*
 * Create a VM named @name (1..31 printable characters, unique in the engine).
 * Returns 0 and sets *@out, or -EINVAL (bad name or config, ram_bytes 0 or
 * not page-aligned, numa_node not configured), -EEXIST (name in use), -ENOMEM
 * (out of memory, or refused by admission control: the reservation cannot be
 * covered, or the maximum overcommit ratio would be exceeded; see ledger.h).
 * Pairs with rf_vm_free().
 */
int rf_vm_new(rf_engine *e, const char *name, const struct rf_vm_config *cfg, rf_vm **out);

/* Free a VM; regions still mapped are unmapped first. NULL is accepted. */
void rf_vm_free(rf_vm *vm);

const char *rf_vm_name(const rf_vm *vm);
rf_engine *rf_vm_engine(const rf_vm *vm);

/*
 * Change the RAM promised to the VM (rf_vm_config.ram_bytes) to @bytes, for
 * memory hotplug: grow it before mapping or adopting a new region that would
 * not fit (-E2BIG), shrink it after unmapping or releasing one. From any
 * thread, while vCPUs run; every figure that reports the promise (rf_vm_stats,
 * rf_vm_breakdown, rf_host_stats, the metrics, the policy) sees the new
 * value from the next reading on.
 *
 * A larger promise goes through admission control as rf_vm_new's does
 * (ledger.h: refused in the low free-memory state or past the maximum
 * overcommit ratio); a smaller one must still cover the mapped regions and
 * the VM's reservation, which does not follow: lower it first.
 * Returns 0 (also when @bytes is the current promise), -EINVAL (NULL, @bytes
 * 0 or not page-aligned, or below the reservation), -EBUSY (below the bytes
 * mapped in regions), -ENOMEM (refused by admission control). Every refusal
 * is logged with the VM and the sizes; on any error nothing changes.
 */
int rf_vm_set_ram_bytes(rf_vm *vm, uint64_t bytes);

/* The RAM promised to the VM now (rf_vm_config.ram_bytes, as changed by
 * rf_vm_set_ram_bytes); 0 for NULL. Any thread. */
uint64_t rf_vm_ram_bytes(const rf_vm *vm);

/*
 * Map @size bytes of guest RAM at guest-physical address @gpa, owned by the
 * library, and return its host address in *@hva for KVM_SET_USER_MEMORY_REGION.
 * The memory is MAP_PRIVATE|MAP_ANONYMOUS|MAP_NORESERVE, reads as zero, has
 * transparent huge pages off unless RF_VM_THP, and is bound to the VM's node.
 * Errors: -EINVAL (NULL, size 0, gpa or size not 4 KiB aligned, gpa+size
 * wraps), -EEXIST (overlaps a mapped region), -E2BIG (regions would exceed
 * the promised RAM), -ENOSPC (too many regions), -ENOMEM.
 */
int rf_vm_map_ram(rf_vm *vm, uint64_t gpa, uint64_t size, void **hva);

/*
 * Unmap the region that starts at @gpa. -ENOENT if none starts there,
 * -EINVAL if it was adopted (give it back with rf_vm_release_ram: the
 * library never unmaps the embedder's memory). Remove the KVM memslot first.
 */
int rf_vm_unmap_ram(rf_vm *vm, uint64_t gpa);

/*
 * What backs a region, as the kernel maps it (read from /proc/self/smaps
 * when the region is adopted, never taken from the caller). It decides
 * which mechanisms may act on the region:
 *
 *   backing   dedup  swap  balloon, free page reporting  ledger, audit
 *   ANON      yes    yes   yes                            yes
 *   SHMEM     no     no    yes (holes punched)            yes
 *   HUGETLB   no     no    yes, in whole huge pages       yes
 *
 * The rule where a mechanism cannot work on a backing: it refuses, it never
 * skips silently. rf_dedup_add_vm (any mode but "off") and the VM's first
 * swap call (rf_vm_set_swap_target, rf_vm_set_swap_cap) fail with
 * -EOPNOTSUPP and one message naming the region and its backing while the
 * VM has such a region, and rf_vm_adopt_ram fails the same way for such a
 * region while dedup or swap is attached to the VM. A VM that needs dedup
 * or swap on part of its RAM keeps that part private anonymous.
 */
enum rf_backing {
	RF_BACKING_ANON = 0, /* MAP_PRIVATE|MAP_ANONYMOUS, with or without THP */
	RF_BACKING_SHMEM,    /* MAP_SHARED memfd, /dev/shm file or shared anonymous (vhost-user) */
	RF_BACKING_HUGETLB,  /* hugetlbfs, MAP_SHARED or MAP_PRIVATE (MAP_HUGETLB) */
};

/* Short name of a backing ("anon", "shmem", "hugetlb"; "invalid"). */
const char *rf_backing_name(enum rf_backing b);

/*
 * Adopt [@hva, @hva + @size), memory the embedder mapped itself (readable
 * and writable, one backing throughout: see enum rf_backing), as guest RAM
 * at @gpa. The library takes it as it is: it keeps the content, never
 * munmaps it and does not change its THP or NUMA policy. @flags must be 0.
 * A private anonymous region may have pages remapped at the same address
 * while it is adopted (dedup maps store pages there and copies them back),
 * so per-page settings the embedder made (madvise, mbind, mlock) may not
 * survive on pages that were merged. A raw madvise(MADV_DONTNEED) or hole
 * punch on adopted RAM is the embedder's bug: discard with rf_vm_discard.
 * Reads /proc/self/smaps (its cost grows with the process's mappings).
 * Regions may be adopted and released while vCPUs run in other regions.
 * Errors: -EINVAL (NULL, @flags not 0, size 0, gpa, hva or size not 4 KiB
 * aligned, or not aligned to the huge page size on hugetlbfs; wraps), -EFAULT
 * (part of the range is not mapped, or not readable and writable),
 * -EOPNOTSUPP (a backing the library cannot use: a private file mapping, a
 * shared mapping of a disk file, several backings in the range; or dedup or
 * swap is attached and cannot work on this backing), -EEXIST (overlaps a
 * region, by gpa or by hva), -E2BIG (over the promised RAM), -ENOSPC
 * (RF_VM_MAX_REGIONS), -ENOMEM. Every error is logged with the cause.
 * Pairs with rf_vm_release_ram.
 */
int rf_vm_adopt_ram(rf_vm *vm, uint64_t gpa, void *hva, uint64_t size, unsigned int flags);

/*
 * Give back the adopted region that starts at @gpa, every page private and
 * intact: merged pages are copied back to private anonymous pages, swapped
 * ones are read back, and the library's userfaultfd lets go of the range.
 * Discarded pages (zero, ballooned, reported) read as zeros. Afterwards the
 * embedder may keep using the memory or munmap it. Remove the KVM memslot
 * first (no vCPU may run in the region). Blocks while pages are read back.
 * Errors: -EINVAL (NULL, or the region was mapped by rf_vm_map_ram), -ENOENT
 * (no region starts at @gpa), -EBUSY (being released by another thread),
 * -EIO or another -errno if a page could not be brought back: the region
 * then stays adopted, nothing lost, and the call may be repeated.
 * rf_vm_free releases the VM's adopted regions the same way.
 */
int rf_vm_release_ram(rf_vm *vm, uint64_t gpa);

/* The backing (enum rf_backing) of the region holding @gpa, or -EFAULT. */
int rf_vm_backing(const rf_vm *vm, uint64_t gpa);

/*
 * The checked accessor for guest addresses: *@hva = host address of
 * [@gpa, @gpa+@len) if the whole range lies inside one region, else -EFAULT.
 * @len 0 is checked as 1. O(log regions).
 */
int rf_vm_gpa_to_hva(const rf_vm *vm, uint64_t gpa, uint64_t len, void **hva);

/* Inverse of rf_vm_gpa_to_hva for one byte: -EFAULT if @hva is not guest RAM. */
int rf_vm_hva_to_gpa(const rf_vm *vm, const void *hva, uint64_t *gpa);

/* Number of guest RAM regions, and the @i-th by ascending gpa. */
unsigned int rf_vm_nr_regions(const rf_vm *vm);
int rf_vm_region(const rf_vm *vm, unsigned int i, uint64_t *gpa, uint64_t *size, void **hva);

/* State of the page holding @gpa: a value of enum rf_page_state, or -EFAULT. */
int rf_vm_page_state(const rf_vm *vm, uint64_t gpa);

/*
 * Discard [@gpa, @gpa + @len) of guest RAM (page-aligned, possibly across
 * regions): whatever state a page is in (private, merged, swapped,
 * compressed, zero, free-reported), afterwards it reads as zeros and costs
 * nothing: a merged page drops its share of the store page, a swapped one
 * its slot. This is the embedder's discard (its own balloon, a device that
 * frees memory, a guest reset): a raw madvise(MADV_DONTNEED) on guest RAM
 * is a bug, because on a merged page it brings back the store page's
 * content instead of zeros, and on a swapped page it leaves a stale slot
 * the next fault would read. Pages the balloon holds stay the balloon's
 * (they are discarded already) and excluded pages (rf_vm_exclude_range)
 * are left alone; *@skipped (may be NULL) counts both. Any thread. 0,
 * -EINVAL (unaligned, empty, or wrapping), -EFAULT (part of the range is
 * not guest RAM: nothing is discarded).
 */
int rf_vm_discard(rf_vm *vm, uint64_t gpa, uint64_t len, uint64_t *skipped);

/*
 * Exclude [@gpa, @gpa+@len) from merging, swapping and ballooning (memory
 * pinned for device DMA must never be remapped under the device), or include
 * it again. Pages already merged or swapped are not brought back by this call.
 */
int rf_vm_exclude_range(rf_vm *vm, uint64_t gpa, uint64_t len, bool exclude);

struct rf_vm_stats {
	/* Set by the caller to sizeof(struct rf_vm_stats) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	uint64_t promised_bytes;	       /* rf_vm_config.ram_bytes */
	uint64_t mapped_bytes;		       /* sum of region sizes */
	uint64_t state_bytes[RF_PAGE_NSTATES]; /* from the page-state table */
	/* Measured from /proc/self/pagemap over the VM's regions: */
	uint64_t resident_bytes;      /* present pages, not the zero page */
	uint64_t resident_anon_bytes; /* of which the guest's own (private anonymous, or
				       * the VMM's shared or hugetlbfs RAM) */
	uint64_t resident_file_bytes; /* of which mapped from the store */
	uint64_t metadata_bytes;      /* library metadata for this VM */
};

/* Fill @st. Reads pagemap: O(pages) and meant for ~1 Hz, not a hot path. */
int rf_vm_stats(rf_vm *vm, struct rf_vm_stats *st);

/* rf_vm_audit flags */
#define RF_AUDIT_FIX (1u << 0) /* resync what the guest changed behind the table */

struct rf_audit_report {
	/* Set by the caller to sizeof(struct rf_audit_report) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	uint64_t pages_checked;
	/* Contradictions: the table says something the kernel proves false. */
	uint64_t mismatches;
	uint64_t merged_not_file;   /* MERGED, but mapped anonymous (not from the store) */
	uint64_t discarded_present; /* SWAPPED/COMPRESSED, but a page is present */
	uint64_t private_file;	    /* PRIVATE/ZERO/..., but mapped from the store */
	/* Drift: the guest acted after the library (a write to a ZERO or
	 * BALLOONED page, a copy-on-write break of a MERGED page). Expected, and
	 * fixed with RF_AUDIT_FIX. */
	uint64_t drift;
	uint64_t first_bad_gpa; /* of the first mismatch, or UINT64_MAX */
};

/*
 * Compare the page-state table with /proc/self/pagemap. Returns 0 if there is
 * no mismatch, -EIO if there is (each logged, rate-limited), or another
 * negative errno if pagemap cannot be read.
 */
int rf_vm_audit(rf_vm *vm, struct rf_audit_report *rep, unsigned int flags);

/*
 * The embedder's share of the VM's userfaultfd (docs/userfaultfd.md).
 *
 * A range of guest RAM can be registered with one userfaultfd only, and the
 * library has one per VM (dedup and swap share it), so a VMM that loads
 * guest memory lazily (a snapshot restore, a postcopy migration) cannot
 * register its own: UFFDIO_REGISTER says EBUSY. Instead it asks for the
 * library's descriptor (rf_vm_uffd_fd) or hands in its own before the
 * library opens one (rf_vm_adopt_uffd), and installs a fault handler: the
 * library's fault thread then calls it for every missing fault on a page
 * the library does not own, so restore, dedup and swap run on the same VM.
 *
 * Which faults reach the handler: a missing fault on a page whose state is
 * PRIVATE and that nothing has filled or discarded since the handler was
 * installed (a page of the snapshot not loaded yet). Never a page the
 * library owns (merged, swapped, compressed, zero, ballooned, reported),
 * never a page that was present once and discarded since (it reads as
 * zeros, as any discarded page does), never a page that was filled, by the
 * handler or with zeros when the handler asked for them. Also (flags
 * below): the first write to a page the embedder protected with
 * rf_vm_write_protect (RF_VM_FAULT_WP), and minor faults (RF_VM_FAULT_MINOR).
 */

/* rf_vm_fault_fn flags */
enum rf_vm_fault_flags {
	RF_VM_FAULT_WRITE = 1u << 0, /* the faulting access was a write */
	/*
	 * A write to a page the embedder protected with rf_vm_write_protect
	 * (always with RF_VM_FAULT_WRITE). The page is present and holds its
	 * current content (for a merged page, the shared content): the
	 * handler saves or records it and returns 0, and the library then
	 * lifts the protection (as rf_vm_write_protect(.., false) would) and
	 * lets the write through. It may lift it itself first with
	 * UFFDIO_WRITEPROTECT on rf_vm_uffd_fd, but must not call
	 * rf_vm_write_protect from the handler (the page's lock is held).
	 * -EAGAIN: called again a millisecond later, the writer waits; any
	 * other error: logged, counted, and the writer stays blocked until
	 * the embedder lifts the protection from another thread.
	 */
	RF_VM_FAULT_WP = 1u << 1,
	/*
	 * A minor fault, on a range the embedder registered itself in
	 * UFFDIO_REGISTER_MODE_MINOR (shmem or hugetlbfs RAM: the page is in
	 * the page cache, not mapped). The handler maps it with
	 * UFFDIO_CONTINUE on rf_vm_uffd_fd and returns 0 (the library wakes
	 * the faulting thread); -EAGAIN as above; another error leaves the
	 * thread blocked (logged). Called without a page lock. Without a
	 * handler the thread is only woken, and faults again.
	 */
	RF_VM_FAULT_MINOR = 1u << 2,
};

/* rf_vm_fault_fn return value: fill the page with zeros (a snapshot hole). */
enum rf_vm_fault_result {
	RF_VM_FAULT_ZERO = 1,
};

/* The @gpa of a fault outside guest RAM (a range the embedder registered
 * itself on a descriptor it handed in). */
static const uint64_t RF_VM_GPA_NONE = 0xffffffffffffffffull;

/*
 * Called on the VM's fault thread (rf-fault/VM) for a missing fault on the
 * page at @gpa, mapped at @hva (both page-aligned). The page's lock is held:
 * nothing else changes the page meanwhile. A fault on a range outside guest
 * RAM that the embedder registered itself comes with @gpa RF_VM_GPA_NONE
 * (RF_VM_FAULT_ZERO then maps the zero page there). The handler fills exactly that
 * 4 KiB page with UFFDIO_COPY on rf_vm_uffd_fd(@vm) (waking or not: the
 * library wakes the faulting thread in any case) and returns 0; or returns
 * RF_VM_FAULT_ZERO for the library to fill zeros; or -EAGAIN to be called
 * again a millisecond later (its UFFDIO_COPY said EAGAIN: an event is
 * pending that the fault thread must read first; or its data is not there
 * yet). Any other negative errno means the page cannot be loaded: it is
 * logged, counted, and the faulting thread stays blocked (it never runs on
 * with zeros instead of its memory).
 *
 * It must not block for long (every fault of the VM waits behind it: read
 * a snapshot file, not the network without a deadline), must not fill other
 * pages (they may be swapped or merged), and must not call into the library
 * except rf_vm_uffd_fd, rf_vm_gpa_to_hva, rf_vm_hva_to_gpa, rf_vm_name.
 */
typedef int (*rf_vm_fault_fn)(rf_vm *vm, uint64_t gpa, void *hva, unsigned int flags, void *arg);

/*
 * Install @fn (NULL: remove it) with @arg. Opens the VM's userfaultfd if no
 * module has (as rf_vm_uffd_fd does) and registers all guest RAM for
 * missing faults. Every page of the regions mapped now whose state is
 * PRIVATE becomes the handler's, until it is filled or discarded; regions
 * mapped later are not the handler's unless it is installed again (calling
 * again also replaces @fn and @arg). Install it before the guest runs: a
 * page the guest had and that was discarded behind the library's back would
 * otherwise be the handler's again. Removing it returns once the fault thread
 * is no longer inside @fn; pages still the handler's then fault in as zeros.
 * Not from the handler itself (-EDEADLK). 0, -EINVAL (@vm NULL), -EDEADLK,
 * -EOPNOTSUPP (the kernel's userfaultfd has no UFFD_EVENT_REMOVE, without
 * which a discarded page would be taken for one still to restore), -EPERM,
 * -ENODEV (no userfaultfd with kernel-mode faults), -errno.
 */
int rf_vm_set_fault_handler(rf_vm *vm, rf_vm_fault_fn fn, void *arg);

/*
 * The VM's userfaultfd, opened (and its fault thread started) if no module
 * has opened it yet, with guest RAM registered for missing faults. For the
 * handler's UFFDIO_COPY: the descriptor stays the library's (never read
 * it, never close it); it is valid until rf_vm_free. Returns it, or -errno
 * as rf_vm_set_fault_handler.
 */
int rf_vm_uffd_fd(rf_vm *vm);

/*
 * Hand in the embedder's own userfaultfd (@fd: from userfaultfd(2) or
 * /dev/userfaultfd, without UFFD_USER_MODE_ONLY, UFFDIO_API not yet
 * called: the library negotiates the features it needs) before dedup or
 * swap start on @vm. The library duplicates it (the embedder may close
 * @fd, or keep it for UFFDIO_COPY), makes it non-blocking, reads it with its
 * fault thread and uses it as rf_vm_uffd_fd's: the embedder never reads it.
 * Ranges the embedder registered with it before stay registered. 0,
 * -EINVAL (not a userfaultfd, or UFFDIO_API already called on it), -EBUSY
 * (the VM has its userfaultfd already), -ENODEV (no write-protect support),
 * -errno.
 */
int rf_vm_adopt_uffd(rf_vm *vm, int fd);

/*
 * Write-protect (@protect) [@gpa, @gpa + @len) for the embedder, or lift
 * that protection, through the VM's userfaultfd: the way to do what
 * UFFDIO_WRITEPROTECT does on rf_vm_uffd_fd (a background snapshot), so
 * that the library knows which protections are the embedder's. The first
 * write to a protected page calls the fault handler with RF_VM_FAULT_WP
 * (rf_vm_set_fault_handler must have been called: else -EINVAL).
 *
 * What a protection does to the page's state, one rule each:
 *   - absent pages are made present first by reading them (a page never
 *     touched maps the zero page, a swapped or compressed page is swapped
 *     in, a page still the handler's to restore is filled by it): the
 *     kernel cannot write-protect a page that is not there;
 *   - a merged page stays merged: the handler sees the shared content,
 *     and the write then breaks the sharing as any write does;
 *   - a protected page is never merged, swapped out or discarded as zero
 *     by the library until the protection is lifted;
 *   - a discard (rf_vm_discard, the balloon, free page reporting) lifts
 *     it: the page reads as zeros afterwards, and the embedder's snapshot
 *     of a page it is told was discarded is zeros.
 * Lifting wakes writers waiting on the range. A protection that UFFDIO_
 * WRITEPROTECT set directly on the descriptor is not the embedder's to the
 * library: the fault thread lifts it on the first write (unreported).
 *
 * The range lies in one region. Any thread but the fault thread; blocks
 * on page locks and on the reads above. 0, -EINVAL (NULL @vm, @len 0,
 * unaligned, wrapping, not inside one region, no fault handler: nothing
 * changed), -EDEADLK (from the fault handler), -errno from the kernel.
 */
int rf_vm_write_protect(rf_vm *vm, uint64_t gpa, uint64_t len, bool protect);

#ifdef __cplusplus
}
#endif
#endif
