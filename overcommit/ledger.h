/* SPDX-License-Identifier: MIT */
/*
 * The ledger's private side: per-VM and engine state and admission
 * (ledger.c), the pure arithmetic (admission, breakdown, the audit's
 * comparison, also ledger.c) that unit tests drive with made-up numbers, and
 * the measuring pass over pagemap and smaps (measure.c).
 *
 * Lock order (outer first): ledger->gate, the policy runner's lock
 * (policy_runner.c), engine->vms_lock, ledger->lock, vm->regions_lock; the
 * mechanisms' locks that rf_mech_read() takes (the balloon's) come after
 * vms_lock. Admission decisions are serialised by vms_lock.
 * The gate is held for reading by whoever uses rf_vm pointers across a
 * vms_lock release (the policy tick, from its reading until its actions are
 * applied; the audit, from its snapshot until it has read smaps) and for
 * writing by the ledger's vm_free hook, which is the first hook rf_vm_free()
 * runs: a VM cannot be torn down under a tick.
 */
#ifndef RF_LEDGER_PRIV_H
#define RF_LEDGER_PRIV_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ramfold/ledger.h>
#include <ramfold/policy.h>

struct rf_policy_runner;

/* Per VM (vm->ledger). Fields are atomics: set by the embedder, read by ticks. */
struct rf_ledger_vm {
	_Atomic uint64_t reservation;
	_Atomic uint64_t limit; /* UINT64_MAX = none */
	_Atomic uint32_t shares;
	_Atomic uint64_t guest_free; /* embedder-reported; UINT64_MAX = unknown */
	/* What the policy last asked for (for the breakdown and the metrics). */
	_Atomic uint64_t balloon_target;
	_Atomic uint64_t resident_target; /* UINT64_MAX = none */
};

/* Engine-wide (engine->ledger), allocated on first use. */
struct rf_ledger {
	pthread_rwlock_t gate;
	pthread_mutex_t lock; /* cfg */
	struct rf_ledger_config cfg;
	_Atomic int state; /* enum rf_mem_state, set by the policy */
	_Atomic uint64_t admissions_refused;
	struct rf_policy_runner *policy; /* policy_runner.c */
};

/* The engine's ledger, created on first use; NULL only if out of memory. */
struct rf_ledger *rf_ledger_get(rf_engine *e);

/*
 * The ledger as an engine module (lib/modules.c). Its vm_admit hook checks a
 * new VM's reservation and size against the VMs already there and attaches
 * vm->ledger and the ledger's VM hooks (-ENOMEM or -EINVAL, reason logged);
 * its vm_resize hook admits a new size the same way (a larger one against
 * the low state and the overcommit ratio; none below the reservation);
 * its stop hook stops the policy thread and frees the ledger.
 */
extern const struct rf_engine_module rf_ledger_module;

/* ---- pure arithmetic (ledger.c: no kernel, no locks) ---- */

/* One admission question. */
struct rf_admission {
	uint64_t capacity;
	uint64_t host_reserved;
	uint64_t reserved_others; /* reservations of the other VMs */
	uint64_t promised_others; /* sizes of the other VMs */
	uint64_t reservation;	  /* the VM's (new) reservation */
	uint64_t promised;	  /* the VM's size */
	unsigned int max_overcommit_permille;
	enum rf_mem_state state;
	bool creating; /* a new VM (else a reservation or size change) */
	bool growing;  /* creating, or the reservation goes up */
	/* The VM's size goes up (rf_vm_set_ram_bytes): the low state and the
	 * overcommit ratio are checked as for a new VM, the reservations not
	 * (they do not change). */
	bool promise_growing;
};

/* 0 if admitted, else -ENOMEM with the reason in @why. */
int rf_ledger_admit(const struct rf_admission *a, char *why, size_t len);

/* What one walk over a VM's table and pagemap found, in pages. */
struct rf_ledger_walk {
	uint64_t pages[RF_PAGE_NSTATES];    /* entries in each state */
	uint64_t resident[RF_PAGE_NSTATES]; /* of which resident (anon or file) */
	uint64_t anon[RF_PAGE_NSTATES];	    /* of which resident anonymous */
	uint64_t shared_fair_milli;	    /* sum of 1000/sharers over present store pages */
};

/*
 * Fill @out's state split, cost and savings from the table's counters (in
 * pages), a walk, and the figures other modules provide. The contract fields
 * (reservation, limit, shares) are left as they are.
 */
void rf_breakdown_compute(const uint64_t counters[RF_PAGE_NSTATES], const struct rf_ledger_walk *w,
			  uint64_t promised, uint64_t mapped, uint64_t metadata,
			  uint64_t compressed_host, struct rf_vm_breakdown *out);

/* The audit's question for one VM. */
struct rf_ledger_check {
	const char *name;
	uint64_t counters[RF_PAGE_NSTATES]; /* pages, from vm->state_pages */
	uint64_t walked[RF_PAGE_NSTATES];   /* pages, counted by a walk */
	uint64_t mapped_bytes;
	uint64_t forbidden_resident_bytes; /* resident in BALLOONED/SWAPPED/COMPRESSED */
	uint64_t ledger_resident_bytes;	   /* private + drift + shared present */
	uint64_t ledger_fair_bytes;	   /* private + drift + shared fair */
	uint64_t kernel_rss_bytes;	   /* smaps Rss over the VM's mappings */
	uint64_t kernel_pss_bytes;
	bool skip_kernel;     /* its mappings are merged with another VM's: no Rss/Pss */
	uint64_t slack_bytes; /* fixed slack + the VM's metadata */
	unsigned int pct;
};

/* 0 if the ledger and the kernel agree, else -EIO with the first reason in @why. */
int rf_ledger_compare(const struct rf_ledger_check *c, char *why, size_t len);

/* Tolerance: @pct percent of @x plus @slack. */
static inline uint64_t rf_ledger_tolerance(uint64_t x, unsigned int pct, uint64_t slack)
{
	return x / 100 * pct + (x % 100) * pct / 100 + slack;
}

/* ---- measuring (measure.c) ---- */

struct rf_ledger_vm_snap {
	rf_vm *vm;
	char name[32];
	struct rf_vm_breakdown bd;
	struct rf_ledger_walk walk;
	uint64_t counters[RF_PAGE_NSTATES];
	uint64_t mapped_bytes;
	int has_balloon;
	/* The resident target the policy itself set (UINT64_MAX: none). The
	 * breakdown shows the pager's, however it was set; the policy acts on
	 * its own only, never lifting or moving the embedder's. */
	uint64_t policy_target;
	uint64_t swapped_target;
	uint64_t stall_ns, stall_faults; /* the VM's fault stall (rf_swap_stats) */
	uint32_t vcpus;			 /* rf_vm_config.vcpus, at least 1 */
	uint64_t guest_alloc_stalls;	 /* the guest's report, or RF_BALLOON_STAT_UNSET */
	uint64_t kernel_rss, kernel_pss; /* filled by the audit only */
};

struct rf_ledger_snap {
	unsigned int nr;
	struct rf_ledger_vm_snap *vms; /* rf_zalloc'ed, nr entries */
	struct rf_host_stats host;
};

/*
 * Measure every VM of @e: the caller holds the gate for reading if it will
 * use the rf_vm pointers after this returns. Free with rf_ledger_snap_free.
 */
int rf_ledger_snapshot(rf_engine *e, struct rf_ledger_snap *s);
void rf_ledger_snap_free(rf_engine *e, struct rf_ledger_snap *s);

/* ledger.c: human-readable byte count ("1.5 GiB") into @buf; returns @buf. */
const char *rf_ledger_fmt_bytes(uint64_t b, char *buf, size_t len);

#endif
