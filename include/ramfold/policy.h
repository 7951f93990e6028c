/* SPDX-License-Identifier: MIT */
/*
 * The reclaim policy: keeps the host inside its capacity by choosing, in
 * order, the cheapest way to get memory back, as the ESX memory manager does:
 * sharing (raise the dedup scan rate), then the balloon, then swap.
 *
 * Each tick the engine takes a reading (the ledger's host and per-VM
 * numbers, the guests' balloon stats), hands it to the policy callback, logs
 * every action the callback returns in one line (why, how much, from whom),
 * counts it, and applies it through the actuators (balloon target, swap
 * target, dedup scan rate). The default policy:
 *
 *   free-memory states with hysteresis (free = capacity - measured use):
 *     high  nothing to do; deflate balloons slowly when there is room
 *     soft  entered when free < soft_bp: raise the dedup rate, inflate balloons
 *     hard  entered when free < hard_bp: also swap what the balloon did not get
 *     low   entered when free < low_bp: also refuse to create or grow VMs
 *   Worse states are entered at once. Soft is left for high only when free
 *   reaches high_bp (ESX's band between soft and high); hard and low are
 *   left when free exceeds their own threshold by hysteresis_bp. So a
 *   reading hovering at a threshold does not flap.
 *
 *   targets: each VM's allocation is its shares divided by its idle-taxed
 *   size (ESX's shares-per-page ratio, with the guest's own report of free
 *   memory as the idle part): with equal shares, a guest that reports much
 *   free memory gives more back than a busy one. Allocations never go below
 *   the reservation and never above the limit; a VM above its limit is
 *   reclaimed in any state.
 *
 *   swap: only the part of a VM's excess that the balloon has not got after
 *   balloon_grace_ms (or at once when the VM has no balloon), in the hard and
 *   low states or above the VM's limit, as a resident target.
 *
 *   proactive (off by default, rf_policy_config.proactive): in high, each
 *   VM's resident target shrinks a small step per window while its fault
 *   stall stays under a target share of its vCPU time, and grows back at
 *   once when the stall rises or the guest reports allocation stalls (as
 *   Meta's TMO does with PSI); see docs/overcommit.md.
 *
 *   A balloon device freed by the embedder (rf_balloon_free) while the tick
 *   thread runs is a race: stop the policy first (rf_policy_stop).
 *
 * Concurrency: rf_policy_set, rf_policy_set_actuators, rf_policy_configure,
 * rf_policy_start and rf_policy_stop are embedder calls, not concurrent with
 * each other; rf_policy_tick and rf_policy_counters may be called from any
 * thread (ticks are serialised). rf_policy_stop, if the thread runs, is done
 * by rf_engine_free too.
 */
#ifndef RAMFOLD_POLICY_H
#define RAMFOLD_POLICY_H

#include <stdbool.h>
#include <stdint.h>

#include "engine.h"
#include "ledger.h"
#include "vm.h"

#ifdef __cplusplus
extern "C" {
#endif

/* One VM in a reading. */
struct rf_policy_vm {
	/* sizeof(struct rf_policy_vm) as the library filled it. */
	size_t size;
	rf_vm *vm;
	const char *name;
	uint64_t promised_bytes;
	uint64_t reservation_bytes;
	uint64_t limit_bytes; /* UINT64_MAX = none */
	uint32_t shares;
	uint64_t host_bytes;	  /* measured cost (rf_vm_breakdown.host_bytes) */
	uint64_t ballooned_bytes; /* pages in the balloon now */
	uint64_t balloon_target_bytes;
	uint64_t swapped_bytes;		/* file + compressed */
	uint64_t resident_target_bytes; /* swap keeps it below this; UINT64_MAX = none */
	uint64_t guest_free_bytes;	/* guest's report; UINT64_MAX = unknown */
	int has_balloon;		/* a balloon device is attached and driven */
	int has_swap;			/* swap can be asked for (its actuator works) */
	/* 0.4, for the proactive mode (rf_policy_config.proactive): */
	/* What the resident target counts now: private, drift and the VM's part
	 * of the compressed tier (merged pages are not swap's, swap.h). */
	uint64_t resident_bytes;
	/* The time the VM's threads waited in its fault handling so far, in
	 * vCPU-nanoseconds (rf_swap_stats.stall_ns), and its vCPUs
	 * (rf_vm_config.vcpus, at least 1). */
	uint64_t stall_ns;
	uint32_t vcpus;
	/* The guest's own count of allocation stalls (balloon stats tag 11,
	 * RF_BALLOON_S_ALLOC_STALL, Linux 6.12+) as it last sent it: a
	 * counter, guest-written, so only trusted to go up;
	 * RF_BALLOON_STAT_UNSET (all ones) when the guest does not send it. */
	uint64_t guest_alloc_stalls;
};

struct rf_policy_reading {
	/* sizeof(struct rf_policy_reading) as the library filled it. */
	size_t size;
	uint64_t now_ns; /* CLOCK_MONOTONIC */
	uint64_t capacity_bytes;
	uint64_t used_bytes;
	unsigned int nr_vms;
	const struct rf_policy_vm *vms;
};

enum rf_policy_action_kind {
	RF_POLICY_SET_BALLOON = 0, /* value: balloon size in bytes */
	RF_POLICY_SET_SWAP,	   /* value: resident target, UINT64_MAX = none (swap.h) */
	RF_POLICY_SET_SCAN_RATE,   /* value: dedup pages per second (vm ignored) */
	RF_POLICY_NR_ACTIONS
};

#define RF_POLICY_WHY_MAX 200

struct rf_policy_action {
	enum rf_policy_action_kind kind;
	unsigned int vm; /* index into rf_policy_reading.vms */
	uint64_t value;
	char why[RF_POLICY_WHY_MAX]; /* one phrase: the reason and the numbers */
};

/*
 * A policy: fill up to @max actions into @acts and set *@n. Called from the
 * policy tick thread (or rf_policy_tick's caller), one call at a time.
 * *@state may be set to the free-memory state the policy decided on.
 * Returns 0 or -errno (the tick is then skipped and logged).
 */
typedef int (*rf_policy_fn)(void *arg, const struct rf_policy_reading *in,
			    struct rf_policy_action *acts, unsigned int max, unsigned int *n,
			    enum rf_mem_state *state);

/* Install @fn as the policy; NULL restores the default. */
int rf_policy_set(rf_engine *e, rf_policy_fn fn, void *arg);

struct rf_policy_config {
	/* sizeof(struct rf_policy_config), set by rf_policy_config_init: the library reads only
	 * what this size covers (docs/embedding.md, "ABI and versions"). */
	size_t size;
	/* Free-memory thresholds in hundredths of a percent of capacity. */
	unsigned int high_bp, soft_bp, hard_bp, low_bp; /* 600, 400, 200, 100 */
	unsigned int hysteresis_bp;			/* 100 */
	unsigned int idle_tax_pct;			/* 75 (ESX's default) */
	unsigned int balloon_grace_ms;			/* 2000 */
	uint64_t scan_rate_idle;     /* pages/s when idle: 0 = dedup's own config */
	uint64_t scan_rate_pressure; /* pages/s under pressure: 200000 */
	/* Balloons of a guest never leave it less than this (when above its
	 * reservation): 32 MiB. */
	uint64_t min_guest_bytes;
	/* In high with room to spare, deflate at most this per tick: 64 MiB. */
	uint64_t deflate_step_bytes;
	/* Ask swap for memory at all (default true). Off: the policy never
	 * sets a resident target; the balloon and sharing work alone. */
	bool swap;
	/*
	 * 0.4: stall-driven proactive reclaim (as Meta's TMO does with PSI),
	 * off by default. While the host is in the high state, each VM's
	 * resident target shrinks a small step every proactive_interval_ms
	 * for as long as the VM's fault stall (rf_swap_stats.stall_ns growth
	 * over wall time times its vCPUs) stays under stall_target_ppm; when
	 * the stall rises above it, or the guest's balloon stats report new
	 * allocation stalls, the target grows back by proactive_grow_pct at
	 * once, and shrinking waits proactive_hold_ms. Never below the VM's
	 * reservation nor proactive_floor_bytes. Outside the high state the
	 * pressure states above decide alone. Needs swap (the field above).
	 * (The floor comes first so that no 0.4 member sits in the padding a
	 * 0.3 caller's smaller struct ends with.)
	 */
	uint64_t proactive_floor_bytes; /* 32 MiB: never a resident target below this */
	bool proactive;
	unsigned int stall_target_ppm;	      /* 5000: 0.5% of the VM's vCPU time */
	unsigned int proactive_interval_ms;   /* 2000: the window a stall share is taken over */
	unsigned int proactive_step_permille; /* 20: a shrink step, of what the VM holds */
	unsigned int proactive_grow_pct;      /* 25: a growth step, of the target */
	unsigned int proactive_hold_ms;	      /* 10000: no shrinking this long after a growth */
	/*
	 * Balloons held steady, both ways: they deflate only once the host
	 * has stayed in the high state this long since it last left it, and a
	 * guest that takes pages back from its balloon on its own (deflate on
	 * OOM) has its target lowered to what it kept and is not inflated
	 * again for this long. A guest whose use swings around a threshold
	 * (allocating and freeing in waves) otherwise gets its balloon back
	 * the tick after each inflation, faults every page of it in again,
	 * and has it taken at the next (docs/overcommit.md, "The policy").
	 * 10000 ms; 0: deflate in the first high tick with room and inflate
	 * regardless, as 0.3 did. At most 3600000.
	 */
	unsigned int deflate_hold_ms;
};

void rf_policy_config_init(struct rf_policy_config *cfg);
/* Configure the default policy. -EINVAL unless low < hard < soft < high. */
int rf_policy_configure(rf_engine *e, const struct rf_policy_config *cfg);

/*
 * The mechanisms the policy drives. Each returns 0 or -errno; NULL members
 * mean "not available" (the action is counted as failed, logged once). The
 * defaults call ramfold's balloon, swap and dedup; a VMM with its own
 * balloon device installs its own.
 */
struct rf_policy_actuators {
	/* sizeof(struct rf_policy_actuators), set by the embedder (.size = sizeof acts; no _init):
	 * the library reads only what this size covers (docs/embedding.md, "ABI and versions"). */
	size_t size;
	int (*set_balloon)(void *arg, rf_vm *vm, uint64_t balloon_bytes);
	int (*set_swap)(void *arg, rf_vm *vm, uint64_t resident_bytes);
	int (*set_scan_rate)(void *arg, rf_engine *e, uint64_t pages_per_sec);
	void *arg;
};

/* Install actuators; NULL restores ramfold's own. */
int rf_policy_set_actuators(rf_engine *e, const struct rf_policy_actuators *acts);

/*
 * Start the tick thread (every @period_ms, 100..1000), or stop it (waits
 * for a tick in flight). start: -EALREADY if running, -EINVAL, -errno.
 */
int rf_policy_start(rf_engine *e, unsigned int period_ms);
void rf_policy_stop(rf_engine *e);

/* One tick now, from the caller's thread: reading, decision, actions. */
int rf_policy_tick(rf_engine *e);

struct rf_policy_counters {
	/* Set by the caller to sizeof(struct rf_policy_counters) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	uint64_t ticks;
	uint64_t transitions; /* state changes */
	uint64_t entered[4];  /* by enum rf_mem_state */
	uint64_t actions[RF_POLICY_NR_ACTIONS];
	uint64_t failed[RF_POLICY_NR_ACTIONS]; /* the actuator returned an error */
	uint64_t balloon_bytes_asked;	       /* sum of balloon increases */
	uint64_t swap_bytes_asked;	       /* sum of resident target decreases */
	enum rf_mem_state state;
	/* 0.4: resident targets the proactive mode lowered and raised. */
	uint64_t proactive_shrinks, proactive_grows;
};

int rf_policy_counters(rf_engine *e, struct rf_policy_counters *out);

#ifdef __cplusplus
}
#endif
#endif
