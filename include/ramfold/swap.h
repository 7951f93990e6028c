/* SPDX-License-Identifier: MIT */
/*
 * Swap-backed paging: when the balloon is not enough, the library pages cold
 * guest memory out itself. Cold pages go to a swap store (a compressed
 * in-memory tier in front of a swap file), their guest range is discarded,
 * and a guest touch is served by the VM's fault thread through userfaultfd:
 * the faulting page first, then a few neighbours that were swapped together.
 * Every page is checked against a checksum kept with its slot before it is
 * mapped; a page that cannot be read back correctly is never answered with
 * zeros or a wrong page: the VM is stopped instead (its vCPUs stay blocked
 * on the fault) with a clear error, and other VMs keep running.
 *
 * The store is one per engine. Its file is created unlinked (O_TMPFILE, or
 * unlinked at once), so nothing is left behind when the process dies.
 *
 * Who may call what concurrently:
 *
 *   call                         embedder  policy thread  any thread
 *   rf_engine_set_swap           yes, before any VM swaps
 *   rf_vm_set_swap_target/_cap   yes       yes
 *   rf_vm_set_swap_sampling      yes       yes            (not the VM's fault
 *                                                         handler: off waits)
 *   rf_vm_swap_stats & co.                                yes
 */
#ifndef RAMFOLD_SWAP_H
#define RAMFOLD_SWAP_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "vm.h"

#ifdef __cplusplus
extern "C" {
#endif

struct rf_swap_config {
	/* sizeof(struct rf_swap_config), set by rf_swap_config_init: the library reads only what
	 * this size covers (docs/embedding.md, "ABI and versions"). */
	size_t size;
	/* Directory of the swap file; NULL: $RAMFOLD_SWAP_DIR, else /var/tmp.
	 * A tmpfs directory works but saves no memory (a warning is logged). */
	const char *dir;
	/* Size limit of the swap file in bytes (multiple of 4 KiB, > 0). */
	uint64_t file_limit_bytes;
	/* Memory the compressed tier may use, in compressed bytes; 0 turns the
	 * tier off (every page goes to the file). */
	uint64_t tier_limit_bytes;
	/* A page enters the compressed tier only if lz4 shrinks it to at most
	 * this many bytes (64..4096); others go straight to the file. */
	uint32_t compress_max_bytes;
	/* Neighbours (swapped out in the same batch) brought in after a
	 * faulting page, 0..64. */
	uint32_t prefetch_pages;
	/* Write the swap file with O_DIRECT (falls back with a warning if the
	 * filesystem refuses it). */
	bool direct_io;
};

/* Defaults: 64 GiB file limit, 512 MiB tier, 2048-byte threshold, 8
 * prefetched neighbours, buffered I/O. */
void rf_swap_config_init(struct rf_swap_config *cfg);

/*
 * Configure the engine's swap store (it is created when a VM first swaps).
 * Returns 0, -EINVAL (a field out of range), -EBUSY (a VM already swaps).
 * Without this call the defaults apply.
 */
int rf_engine_set_swap(rf_engine *e, const struct rf_swap_config *cfg);

/* No resident limit: rf_vm_set_swap_target(vm, RF_SWAP_NO_TARGET). */
static const uint64_t RF_SWAP_NO_TARGET = 0xffffffffffffffffull;

/*
 * What the policy calls: keep at most @resident_bytes of @vm's memory
 * resident (guest RAM present in host memory, plus the VM's share of the
 * compressed tier); the VM's swap pager swaps out its least recently touched pages
 * until it fits, and keeps it there as the guest touches swapped pages.
 * Merged pages (mapped from the dedup engine's store) do not count: swap
 * cannot evict them, and the ledger charges them at their fair part
 * (rf_vm_breakdown().shared_fair_bytes), so a VM under a target costs the
 * host the target plus that part plus its metadata. A target that cannot be
 * met (what is left is excluded, in use, or the store or cap is full) is
 * logged once, with the VM's name and why, until the VM is within a target
 * again. rf_vm_breakdown().resident_target_bytes shows the target.
 * RF_SWAP_NO_TARGET stops swapping out (swapped pages come back as touched).
 * The first call starts the VM's swap pager. A target registers all of the VM's
 * RAM with userfaultfd (without one, only ranges that hold swapped pages):
 * first writes then come to the swap pager too and wait, like swap-ins, while
 * the VM is over its target, so a guest writing fresh memory cannot outrun
 * the swapper. First writes in address order are filled ahead (up to
 * 1 MiB a fault), so fresh memory costs about what the kernel charges.
 * Returns 0, -EINVAL, -ENODEV (userfaultfd or its write-protect mode
 * missing, logged), -EPERM (the process may not have a userfaultfd that
 * takes kernel-mode faults, or may not read /proc/self/pagemap; the
 * message names what it lacks). Pages leave guest RAM with UFFDIO_MOVE (Linux 6.8+),
 * else by write-protect, copy and discard (copy_mode in the stats).
 */
int rf_vm_set_swap_target(rf_vm *vm, uint64_t resident_bytes);

/*
 * Working-set sampling for @vm (0.4): every @period_ms, stage @sample_pages
 * of its resident pages drawn at random (moved out of the guest's mapping,
 * kept in memory as they are) and count the ones the guest touches again
 * within the period: rf_swap_stats.active_bytes is the estimate. With a
 * resident target, the swapper also stops evicting a page only because no
 * fault cleared its cold mark: it stages it first, and evicts it only if
 * the guest does not touch it within a period, so pages that are only read
 * stay resident (docs/swap.md). @period_ms 0 turns sampling off: the
 * staged pages are put back before it returns (not from the VM's fault
 * thread: the embedder's fault handler must not call it). @sample_pages is at most 1024. Starts the
 * VM's swap pager. 0 or -errno (-EINVAL: no VM, or a period over 60 s).
 */
int rf_vm_set_swap_sampling(rf_vm *vm, uint32_t period_ms, uint32_t sample_pages);

/* Hard cap on @vm's swapped bytes (file + tier, uncompressed); swap-out stops
 * there with a stat. RF_SWAP_NO_TARGET (the default) means none. */
int rf_vm_set_swap_cap(rf_vm *vm, uint64_t max_swapped_bytes);

struct rf_swap_stats {
	/* Set by the caller to sizeof(struct rf_swap_stats) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	uint64_t file_bytes;		/* guest bytes held in the swap file */
	uint64_t tier_bytes;		/* guest bytes held in the compressed tier */
	uint64_t tier_compressed_bytes; /* memory they use there */
	double compression_ratio;	/* tier_bytes / tier_compressed_bytes, 0 if empty */
	uint64_t swap_outs;		/* pages written to the store */
	uint64_t zero_outs;		/* pages found all-zero at swap-out: not written */
	uint64_t swap_ins;		/* pages read back on a guest fault */
	uint64_t zero_fills;		/* pages filled with zeros: first writes, reads of
					 * discarded or never-written pages */
	uint64_t prefetched;		/* neighbours brought in ahead of a fault */
	uint64_t prefetch_hits;		/* of those, touched before swapped out again */
	uint64_t enospc;		/* swap-outs refused: store or cap full */
	uint64_t io_errors;		/* read or write errors of the swap file */
	uint64_t csum_errors;		/* pages whose checksum did not match */
	uint64_t faults;		/* faults timed below */
	uint64_t fault_p50_ns, fault_p99_ns, fault_max_ns;
	bool stopped;	/* the VM was stopped: a page could not be read back */
	bool copy_mode; /* swaps out by write-protect + copy (no UFFDIO_MOVE) */
	/* 0.4: the time threads (vCPUs, the VMM's) waited in the VM's fault
	 * handling, in nanoseconds, summed over faults: two vCPUs waiting at
	 * once count twice (vCPU-seconds, like PSI "some" summed over vCPUs).
	 * Every fault on the VM's userfaultfd counts, whoever answers it:
	 * swap-ins, first touches answered with zeros, writes that wait for a
	 * merge, a zero discard or a copy-mode swap-out, the embedder's
	 * handler. A wait runs from when the fault thread reads the fault to
	 * when the faulting thread is released (the time before the read is
	 * not seen: a lower bound). Filled whether or not the VM swaps.
	 * Divide its growth by wall time times the VM's vCPUs for a share. */
	uint64_t stall_ns;
	uint64_t stall_faults; /* faults whose wait stall_ns holds */
	/* 0.4, working-set sampling (rf_vm_set_swap_sampling): the VM's
	 * active memory, estimated as the share of a random sample of its
	 * resident pages the guest touched (read or wrote) within a period,
	 * smoothed over periods, times its resident bytes; 0 while sampling is
	 * off or before its first period. */
	uint64_t active_bytes;
	uint64_t sampled;	  /* pages staged for the estimate */
	uint64_t sampled_touched; /* of those, touched within their period */
	uint64_t probed;	  /* cold candidates staged by the hand before eviction */
	uint64_t probed_touched;  /* of those, touched: kept (hot) */
	uint64_t hot_skips;	  /* pages the hand passed over because they were hot */
	uint64_t staged_bytes;	  /* held by sampling right now: SWAPPED, yet in memory */
};

/* Swap stats of one VM (zeros if it never swapped, but for the stall).
 * Older callers' smaller size gets the members it knows. */
int rf_vm_swap_stats(rf_vm *vm, struct rf_swap_stats *st);

/* Swap stats of the whole engine: the store's contents and every VM's
 * counters (stall_ns and stall_faults summed over the VMs). */
int rf_engine_swap_stats(rf_engine *e, struct rf_swap_stats *st);

#ifdef __cplusplus
}
#endif
#endif
