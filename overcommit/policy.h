/* SPDX-License-Identifier: MIT */
/*
 * The policy's private side: the default policy's pure state machine and
 * target arithmetic (policy.c), the runner that takes a reading, logs,
 * counts and applies actions and owns the tick thread (policy_runner.c), and
 * the mechanisms' side (actuators.c): how the ledger and the policy read a
 * VM's balloon and swap, and the one table of actuators through which the
 * policy drives the balloon, swap and dedup.
 */
#ifndef RF_POLICY_PRIV_H
#define RF_POLICY_PRIV_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <ramfold/policy.h>

struct rf_ledger;

/* ---- the default policy: pure (policy.c) ---- */

#define RF_POLICY_MAX_TRACKED 64

struct rf_policy_vm_track {
	char name[32];
	uint64_t excess_since_ns; /* 1 + when it went above its target; 0: not */
	uint64_t seen_tick;
	/* The proactive mode's stall window: 1 + when it opened (0: not yet),
	 * the VM's stall and the guest's allocation stalls then, and until
	 * when shrinking waits after a growth. */
	uint64_t pro_since_ns;
	uint64_t pro_stall_ns;
	uint64_t pro_alloc_stalls;
	uint64_t pro_hold_until_ns;
	/* With deflate_hold_ms: what the guest's balloon held at the last
	 * tick, and until when the VM is not inflated again after the guest
	 * took pages back on OOM. */
	bool bal_seen;
	uint64_t bal_last;
	uint64_t oom_until_ns;
};

struct rf_policy_default {
	struct rf_policy_config cfg;
	enum rf_mem_state state;
	bool scan_rate_set;
	uint64_t scan_rate;
	uint64_t tick;
	struct rf_policy_vm_track track[RF_POLICY_MAX_TRACKED];
	uint64_t proactive_shrinks, proactive_grows; /* rf_policy_counters */
	/* The reading time of the last tick outside the high state (0: none
	 * yet): balloons deflate only deflate_hold_ms after it. */
	uint64_t pressure_ns;
};

void rf_policy_default_init(struct rf_policy_default *p, const struct rf_policy_config *cfg);

/* -EINVAL unless the thresholds are ordered and within 100%. */
int rf_policy_config_check(const struct rf_policy_config *cfg);

/*
 * The free-memory state after a reading of @free_bytes out of @capacity,
 * coming from @cur: worse states are entered at once; a state is left for
 * the next better one only once free reaches its own threshold plus the
 * hysteresis (soft not before the high threshold), possibly several in one
 * reading.
 */
enum rf_mem_state rf_policy_next_state(const struct rf_policy_config *cfg, enum rf_mem_state cur,
				       uint64_t free_bytes, uint64_t capacity);

/*
 * Share @total bytes among @n VMs: alloc[i] = clamp(lambda * weight[i],
 * lo[i], hi[i]) with lambda chosen so the allocations add up to @total (or
 * as close as the bounds allow). Water-filling by bisection on lambda.
 */
void rf_policy_share(uint64_t total, unsigned int n, const double *weight, const uint64_t *lo,
		     const uint64_t *hi, uint64_t *alloc);

/* The idle-taxed weight of a VM: shares / (active + k * idle) per byte. */
double rf_policy_weight(uint32_t shares, uint64_t promised, uint64_t guest_free,
			unsigned int idle_tax_pct);

/*
 * The share of @vcpus vCPUs' time over @wall_ns that @stall_ns of stall
 * (vCPU-nanoseconds) is, in parts per million (1e6 = every vCPU waited all
 * the time; more is possible, as the VMM's own threads count too). @vcpus
 * 0 counts as 1; @wall_ns 0 gives 0.
 */
uint64_t rf_policy_stall_ppm(uint64_t stall_ns, uint64_t wall_ns, uint32_t vcpus);

/* The default rf_policy_fn; @arg is a struct rf_policy_default. */
int rf_policy_default_decide(void *arg, const struct rf_policy_reading *in,
			     struct rf_policy_action *acts, unsigned int max, unsigned int *n,
			     enum rf_mem_state *state);

/* ---- the runner (policy_runner.c) ---- */

#define RF_POLICY_MAX_ACTIONS 256

/* rf_policy_set, for a policy that reads the 0.2 layout when @v02. */
int rf_policy_set_abi(rf_engine *e, rf_policy_fn fn, void *arg, bool v02);

struct rf_policy_runner {
	pthread_mutex_t lock; /* one tick at a time; fn, actuators, counters */
	rf_policy_fn fn;
	void *arg;
	bool fn_v02; /* @fn reads the 0.2 layout (lib/abi_0_2.c) */
	struct rf_policy_default def;
	struct rf_policy_actuators act;
	struct rf_policy_counters counters;
	bool failed_logged[RF_POLICY_NR_ACTIONS];
	uint64_t applied_scan_rate; /* the last rate an actuator accepted */
	bool swap_missing;	    /* the swap actuator said -ENOSYS/-ENODEV */
	struct rf_policy_action acts[RF_POLICY_MAX_ACTIONS];

	pthread_t thread;
	bool running;
	pthread_mutex_t thread_lock;
	pthread_cond_t cond;
	bool stop;
	unsigned int period_ms;
};

/*
 * Decide on @in with the runner's policy, log each action in one line,
 * count it and apply it. The caller keeps the rf_vm pointers in @in alive.
 * Sets the ledger's state (admission control reads it) when @l is given.
 */
int rf_policy_run(rf_engine *e, struct rf_policy_runner *r, struct rf_ledger *l,
		  const struct rf_policy_reading *in);

/* The engine's runner, created on first use (NULL if out of memory). */
struct rf_policy_runner *rf_policy_runner_get(rf_engine *e);
void rf_policy_runner_free(rf_engine *e, struct rf_ledger *l);

/* ---- mechanisms (actuators.c) ---- */

struct rf_mech_reading {
	int has_balloon;
	uint64_t balloon_target_bytes;
	uint64_t guest_free_bytes; /* UINT64_MAX = unknown */
	uint64_t resident_target_bytes;
	uint64_t compressed_host_bytes;
	/* The VM's fault stall so far (rf_swap_stats.stall_ns, stall_faults). */
	uint64_t stall_ns, stall_faults;
	/* The guest's allocation stalls (balloon stats), RF_BALLOON_STAT_UNSET
	 * when it sends none or the balloon is not driven. */
	uint64_t guest_alloc_stalls;
};

/* Read what the balloon and swap of @vm report (engine->vms_lock held). */
void rf_mech_read(rf_vm *vm, struct rf_mech_reading *out);

/* ramfold's own actuators. */
extern const struct rf_policy_actuators rf_policy_builtin_actuators;

#endif
