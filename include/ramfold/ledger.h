/* SPDX-License-Identifier: MIT */
/*
 * The overcommit ledger: what every VM was promised, what it is guaranteed,
 * what it may never exceed, and what it really costs the host right now.
 *
 * Host side: capacity (rf_engine_config.host_capacity_bytes), reserved (sum
 * of reservations), promised (sum of VM sizes), the overcommit ratio
 * promised / capacity, and the measured use (the sum of the VMs' host cost).
 *
 * Per VM, the promised bytes are split by where each page is right now
 * (these add up to promised_bytes):
 *
 *   private        own anonymous page, resident
 *   untouched      never touched (or dropped by the kernel): costs nothing
 *   shared         mapped from the dedup store (MERGED)
 *   zero           found all-zero and discarded
 *   ballooned      given back through the balloon
 *   free_reported  reported free by the guest and discarded
 *   swapped_file / swapped_compressed   paged out to the swap store
 *   drift          resident although the table says discarded (the guest
 *                  wrote a ZERO page, or broke a merge, since the library
 *                  acted; the owning module resyncs on its next pass)
 *   unmapped       promised but not mapped as guest RAM by the embedder
 *
 * and what that costs the host: private + drift + the VM's fair part of each
 * store page it maps (one page / the number of guest mappings of it, counted
 * from the kernel's PFNs) + the compressed tier's bytes for its pages + the
 * library's metadata for it.
 *
 * The state split comes from the page-state table's counters; residency and
 * sharers come from /proc/self/pagemap; the audit (rf_ledger_audit) checks
 * both against /proc/self/smaps (Rss, Pss of the guest-RAM mappings) and
 * smaps_rollup: they must agree within 2% plus a fixed slack for metadata.
 *
 * Admission control: rf_vm_new() and rf_vm_set_reservation() fail with
 * -ENOMEM (and a logged reason) when the reservations would exceed what the
 * host can guarantee, when an optional maximum overcommit ratio would be
 * exceeded, or while the host is in the LOW free-memory state.
 *
 * Who may call what concurrently: every call here may be made from any
 * thread, except rf_ledger_configure (embedder, before VMs are created or
 * while no other ledger call is in flight). The stats calls read pagemap
 * and smaps: O(guest pages), meant for ~1 Hz.
 */
#ifndef RAMFOLD_LEDGER_H
#define RAMFOLD_LEDGER_H

#include <stddef.h>
#include <stdint.h>

#include "engine.h"
#include "vm.h"

#ifdef __cplusplus
extern "C" {
#endif

#define RF_SHARES_DEFAULT 1000u
#define RF_SHARES_MAX	  1000000u

struct rf_ledger_config {
	/* sizeof(struct rf_ledger_config), set by rf_ledger_config_init: the library reads only
	 * what this size covers (docs/embedding.md, "ABI and versions"). */
	size_t size;
	/* Host memory kept back from reservations (VMM, kernel): reservations
	 * may add up to capacity - this. Default 0. */
	uint64_t host_reserved_bytes;
	/* Maximum promised / capacity, in thousandths (3000 = 3x); 0 = none. */
	unsigned int max_overcommit_permille;
	/* Audit tolerance: kernel and ledger agree within @audit_pct percent of
	 * the larger plus @audit_slack_bytes plus the VM's metadata. Default 2
	 * and 1 MiB. */
	unsigned int audit_pct;
	uint64_t audit_slack_bytes;
};

/* Defaults: nothing reserved for the host, no ratio limit, 2% + 1 MiB. */
void rf_ledger_config_init(struct rf_ledger_config *cfg);

/* Apply @cfg to @e. -EINVAL on NULL or audit_pct > 50. Takes effect for
 * the next admission decision; VMs already admitted stay. */
int rf_ledger_configure(rf_engine *e, const struct rf_ledger_config *cfg);

/* Saved bytes by mechanism (what the guest's pages would cost without it). */
struct rf_saved {
	uint64_t dedup;	      /* shared pages minus their fair cost */
	uint64_t zero;	      /* ZERO pages */
	uint64_t balloon;     /* BALLOONED pages */
	uint64_t free_report; /* FREE_REPORTED pages */
	uint64_t swap;	      /* swapped pages minus the compressed tier's bytes */
};

struct rf_vm_breakdown {
	/* Set by the caller to sizeof(struct rf_vm_breakdown) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	/* The contract. */
	uint64_t promised_bytes;
	uint64_t reservation_bytes; /* guaranteed: never reclaimed below */
	uint64_t limit_bytes;	    /* never exceeded; UINT64_MAX = none */
	uint32_t shares;	    /* weight under contention */
	/* Where the promised bytes are (they add up to promised_bytes). */
	uint64_t private_bytes;
	uint64_t untouched_bytes;
	uint64_t shared_bytes;
	uint64_t zero_bytes;
	uint64_t ballooned_bytes;
	uint64_t free_reported_bytes;
	uint64_t swapped_file_bytes;
	uint64_t swapped_compressed_bytes;
	uint64_t drift_bytes;
	uint64_t unmapped_bytes;
	/* What it costs the host. */
	uint64_t shared_resident_bytes; /* shared pages present in the guest mapping */
	uint64_t shared_fair_bytes;	/* its fair part of those store pages */
	uint64_t compressed_host_bytes; /* compressed tier memory for its pages */
	uint64_t metadata_bytes;
	uint64_t host_bytes; /* private + drift + shared_fair + compressed_host + metadata */
	struct rf_saved saved;
	/* The mechanisms' view, when they are attached (else 0). */
	uint64_t balloon_target_bytes;
	uint64_t resident_target_bytes; /* swap's resident target; UINT64_MAX = none */
	uint64_t guest_free_bytes;	/* from the guest's balloon stats; UINT64_MAX = unknown */
	/* 0.4: the VM's active memory as working-set sampling estimates it
	 * (rf_vm_set_swap_sampling; rf_swap_stats.active_bytes); 0 while
	 * sampling is off. Like ESX's "active": the memory the guest touched
	 * within a sampling period, read or written. */
	uint64_t active_bytes;
};

/*
 * Fill @out with @vm's breakdown. Reads pagemap over all VMs of the engine
 * (the fair part of a store page depends on every VM that maps it).
 * Returns 0, -EINVAL, -ENOMEM or the error of reading pagemap.
 */
int rf_vm_breakdown(rf_vm *vm, struct rf_vm_breakdown *out);

/* The free-memory state of the policy (policy.h); HIGH when it does not run. */
enum rf_mem_state {
	RF_MEM_HIGH = 0, /* nothing to do */
	RF_MEM_SOFT,	 /* raise the dedup rate, inflate balloons */
	RF_MEM_HARD,	 /* also swap */
	RF_MEM_LOW,	 /* also refuse to create or grow VMs */
};

/* "high", "soft", "hard", "low". */
const char *rf_mem_state_name(enum rf_mem_state s);

struct rf_host_stats {
	/* Set by the caller to sizeof(struct rf_host_stats) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	uint64_t capacity_bytes;
	uint64_t reserved_bytes; /* sum of reservations */
	uint64_t promised_bytes; /* sum of VM sizes */
	/* promised / capacity in thousandths (3000 = 3x overcommitted) */
	uint64_t overcommit_permille;
	uint64_t used_bytes; /* measured: sum of the VMs' host_bytes */
	uint64_t free_bytes; /* capacity - used, 0 if over */
	unsigned int nr_vms;
	enum rf_mem_state state;
	/* Totals over the VMs. */
	uint64_t private_bytes, shared_fair_bytes, zero_bytes, ballooned_bytes;
	uint64_t free_reported_bytes, swapped_bytes, compressed_host_bytes, metadata_bytes;
	uint64_t store_pages_resident; /* distinct store pages mapped by guests */
	struct rf_saved saved;
	/* The kernel's view of the whole process (smaps_rollup). */
	uint64_t process_rss_bytes;
	uint64_t process_pss_bytes;
	/* Admission control. */
	uint64_t admissions_refused;
};

/* Fill @out. Same cost as rf_vm_breakdown. */
int rf_host_stats(rf_engine *e, struct rf_host_stats *out);

/*
 * Reservation (bytes, page-aligned, <= promised), limit (bytes, >= the
 * reservation; 0 = none) and shares (1..RF_SHARES_MAX; 0 = default) of a VM.
 * rf_vm_set_reservation() runs admission control: -ENOMEM (reason logged)
 * if the host cannot guarantee the new reservation. -EINVAL on bad values.
 * Initial values come from rf_vm_config (reservation_bytes, limit_bytes,
 * shares) and are checked by rf_vm_new() the same way.
 */
int rf_vm_set_reservation(rf_vm *vm, uint64_t bytes);
int rf_vm_set_limit(rf_vm *vm, uint64_t bytes);
int rf_vm_set_shares(rf_vm *vm, uint32_t shares);

/* Tell the ledger what the guest reports as free (its balloon stats), for
 * embedders whose balloon is not ramfold's; UINT64_MAX = unknown. */
int rf_vm_set_guest_free(rf_vm *vm, uint64_t bytes);

struct rf_ledger_audit_report {
	/* Set by the caller to sizeof(struct rf_ledger_audit_report) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	unsigned int vms_checked;
	unsigned int vms_disagreeing;
	/* Host totals compared. */
	uint64_t ledger_resident_bytes; /* private + drift + shared present (per mapping) */
	uint64_t kernel_rss_bytes;	/* smaps Rss over guest-RAM mappings */
	uint64_t ledger_fair_bytes;	/* private + drift + shared fair */
	uint64_t kernel_pss_bytes;	/* smaps Pss over guest-RAM mappings */
	uint64_t process_rss_bytes;	/* smaps_rollup Rss */
	uint64_t metadata_bytes;	/* the VMs' metadata (part of the slack) */
	/* The kernel may merge adjacent guest RAM of two VMs into one mapping
	 * whose Rss cannot be split: such VMs are compared as a group. */
	unsigned int vms_grouped;
	unsigned int vmas_outside; /* mappings reaching beyond guest RAM */
	char first_reason[256];	   /* the first disagreement, "" if none */
};

/*
 * Check the ledger against the kernel for every VM: the state counters
 * against a walk of the table, the table's belief (what may be resident)
 * against pagemap, and the ledger's resident and fair bytes against the
 * Rss and Pss that /proc/self/smaps reports for the guest-RAM mappings; and
 * the guests' resident total against smaps_rollup. Returns 0 if all agree
 * within the tolerance, -EIO if not (each disagreement logged, naming the
 * VM and the numbers), or another -errno.
 */
int rf_ledger_audit(rf_engine *e, struct rf_ledger_audit_report *rep);

/*
 * Prometheus text exposition (format 0.0.4) of the host stats and every
 * VM's breakdown: one gauge per category with a vm="name" label, e.g.
 *   ramfold_vm_bytes{vm="vm0",category="private"} 123456
 * Writes at most @len bytes with a NUL into @buf; returns the length the
 * full text needs (without NUL; larger than @len - 1 means truncated) or
 * -errno.
 */
long rf_metrics_format(rf_engine *e, char *buf, size_t len);

/* The same text written to @path atomically (temporary file + rename). */
int rf_metrics_write_file(rf_engine *e, const char *path);

#ifdef __cplusplus
}
#endif
#endif
