/* SPDX-License-Identifier: MIT */
/*
 * Running the policy: take a reading from the ledger, ask the policy
 * callback, then for each action log one line (the state and free memory,
 * the VM, the old and new value, the policy's reason), count it, and apply
 * it through the actuators. Also the tick thread that does this every
 * period.
 *
 * Locks: runner->lock serialises the decisions and their actions (one
 * rf_policy_run at a time) and guards the callback, actuators and counters;
 * the actuators run under it and take the mechanisms' own locks. A tick
 * holds ledger->gate for reading from the reading to the last action, so no
 * VM in the reading is freed under it (ledger.h). Order: gate, runner->lock,
 * vms_lock. A tick's snapshot takes vms_lock before runner->lock, not under
 * it; an embedder's actuator may take it under runner->lock (rf_host_stats),
 * so runner->lock is never taken with vms_lock held.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <ramfold/dedup.h>

#include "abi.h"
#include "internal.h"
#include "ledger.h"
#include "policy.h"

static const char *const action_names[RF_POLICY_NR_ACTIONS] = {"balloon", "resident-target",
							       "scan-rate"};

struct rf_policy_runner *rf_policy_runner_get(rf_engine *e)
{
	struct rf_ledger *l = rf_ledger_get(e);
	struct rf_policy_runner *r, *expected = NULL;

	if (!l)
		return NULL;
	r = __atomic_load_n(&l->policy, __ATOMIC_ACQUIRE);
	if (r)
		return r;
	r = rf_zalloc(e, sizeof(*r));
	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	pthread_mutex_init(&r->thread_lock, NULL);
	pthread_cond_init(&r->cond, NULL);
	rf_policy_default_init(&r->def, NULL);
	r->fn = rf_policy_default_decide;
	r->arg = &r->def;
	r->act = rf_policy_builtin_actuators;
	if (!__atomic_compare_exchange_n(&l->policy, &expected, r, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		pthread_cond_destroy(&r->cond);
		pthread_mutex_destroy(&r->thread_lock);
		pthread_mutex_destroy(&r->lock);
		rf_free(e, r);
		return expected;
	}
	return r;
}

void rf_policy_runner_free(rf_engine *e, struct rf_ledger *l)
{
	struct rf_policy_runner *r = l->policy;

	if (!r)
		return;
	rf_policy_stop(e);
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->thread_lock);
	pthread_mutex_destroy(&r->lock);
	rf_free(e, r);
	l->policy = NULL;
}

static int apply(struct rf_policy_runner *r, rf_engine *e, const struct rf_policy_action *a,
		 rf_vm *vm)
{
	switch (a->kind) {
	case RF_POLICY_SET_BALLOON:
		return r->act.set_balloon ? r->act.set_balloon(r->act.arg, vm, a->value) : -ENOSYS;
	case RF_POLICY_SET_SWAP:
		return r->act.set_swap ? r->act.set_swap(r->act.arg, vm, a->value) : -ENOSYS;
	case RF_POLICY_SET_SCAN_RATE:
		return r->act.set_scan_rate ? r->act.set_scan_rate(r->act.arg, e, a->value)
					    : -ENOSYS;
	default:
		return -EINVAL;
	}
}

static uint64_t old_value(const struct rf_policy_action *a, const struct rf_policy_vm *v,
			  const struct rf_policy_runner *r)
{
	switch (a->kind) {
	case RF_POLICY_SET_BALLOON:
		return v ? v->balloon_target_bytes : 0;
	case RF_POLICY_SET_SWAP:
		return v ? v->resident_target_bytes : UINT64_MAX;
	default:
		return r->applied_scan_rate;
	}
}

/*
 * A policy registered by a binary built against 0.2 (lib/abi_0_2.c) reads
 * the 0.2 layout: the reading and each VM without their leading size, the
 * rest at the same offsets less 8. The actions are unchanged.
 */
static int call_v02(struct rf_policy_runner *r, rf_engine *e, const struct rf_policy_reading *in,
		    unsigned int *n, enum rf_mem_state *st)
{
	const size_t off = sizeof(size_t), vsz = sizeof(struct rf_policy_vm) - off;
	struct rf_policy_reading in2 = *in;
	char *vms = rf_zalloc(e, (in->nr_vms ? in->nr_vms : 1) * vsz);
	int err;

	if (!vms)
		return -ENOMEM;
	for (unsigned int i = 0; i < in->nr_vms; i++)
		memcpy(vms + i * vsz, (const char *)&in->vms[i] + off, vsz);
	in2.vms = (const struct rf_policy_vm *)(void *)vms;
	err = r->fn(r->arg, (const struct rf_policy_reading *)(void *)((char *)&in2 + off), r->acts,
		    RF_POLICY_MAX_ACTIONS, n, st);
	rf_free(e, vms);
	return err;
}

int rf_policy_run(rf_engine *e, struct rf_policy_runner *r, struct rf_ledger *l,
		  const struct rf_policy_reading *in)
{
	enum rf_mem_state st;
	unsigned int n = 0;
	int err;

	pthread_mutex_lock(&r->lock);
	st = r->counters.state;
	err = r->fn_v02 ? call_v02(r, e, in, &n, &st)
			: r->fn(r->arg, in, r->acts, RF_POLICY_MAX_ACTIONS, &n, &st);
	r->counters.ticks++;
	if (err) {
		pthread_mutex_unlock(&r->lock);
		rf_log(e, RF_LOG_ERR, "ramfold: policy: the policy failed: %s", strerror(-err));
		return err;
	}
	if ((unsigned int)st > RF_MEM_LOW)
		st = RF_MEM_LOW;
	if (st != r->counters.state || r->counters.ticks == 1) {
		char fb[32];
		uint64_t free_b =
		    in->capacity_bytes > in->used_bytes ? in->capacity_bytes - in->used_bytes : 0;

		if (st != r->counters.state)
			r->counters.transitions++;
		r->counters.entered[st]++;
		rf_log(e, RF_LOG_INFO, "ramfold: policy: %s -> %s (free %s of %" PRIu64 " MiB)",
		       rf_mem_state_name(r->counters.state), rf_mem_state_name(st),
		       rf_ledger_fmt_bytes(free_b, fb, sizeof(fb)), in->capacity_bytes >> 20);
		r->counters.state = st;
	}
	if (l)
		atomic_store(&l->state, (int)st);
	/* Huge pages follow the state (dedup.h, rf_dedup_set_huge): kept whole
	 * while memory is plentiful, cold ones split and merged under pressure.
	 * Every tick, so that an engine started later follows too; -ENOENT
	 * without one, a refusal logged once by dedup. */
	rf_dedup_set_huge(e, st == RF_MEM_HIGH ? RF_DEDUP_HUGE_KEEP : RF_DEDUP_HUGE_SPLIT_COLD);
	for (unsigned int i = 0; i < n; i++) {
		const struct rf_policy_action *a = &r->acts[i];
		const struct rf_policy_vm *v = NULL;
		char ob[32], nb[32], who[40];
		uint64_t old;
		int aerr;

		if ((unsigned int)a->kind >= RF_POLICY_NR_ACTIONS ||
		    (a->kind != RF_POLICY_SET_SCAN_RATE && a->vm >= in->nr_vms)) {
			rf_log(e, RF_LOG_ERR, "ramfold: policy: action %u is malformed, dropped",
			       i);
			continue;
		}
		if (a->kind != RF_POLICY_SET_SCAN_RATE)
			v = &in->vms[a->vm];
		old = old_value(a, v, r);
		snprintf(who, sizeof(who), "%s", v ? v->name : "host");
		if (a->kind == RF_POLICY_SET_SCAN_RATE)
			rf_log(e, RF_LOG_INFO,
			       "ramfold: policy: %s: scan-rate %" PRIu64 " -> %" PRIu64
			       " pages/s: %s",
			       who, old, a->value, a->why);
		else
			rf_log(
			    e, RF_LOG_INFO, "ramfold: policy: %s: %s %s -> %s: %s", who,
			    action_names[a->kind],
			    old == UINT64_MAX ? "none" : rf_ledger_fmt_bytes(old, ob, sizeof(ob)),
			    a->value == UINT64_MAX ? "none"
						   : rf_ledger_fmt_bytes(a->value, nb, sizeof(nb)),
			    a->why);
		r->counters.actions[a->kind]++;
		if (a->kind == RF_POLICY_SET_BALLOON && a->value > old)
			r->counters.balloon_bytes_asked += a->value - old;
		/* A lower resident target asks swap for the difference. */
		if (a->kind == RF_POLICY_SET_SWAP && a->value < old)
			r->counters.swap_bytes_asked += old != UINT64_MAX ? old - a->value
							: v && v->host_bytes > a->value
							    ? v->host_bytes - a->value
							    : 0;
		aerr = apply(r, e, a, v ? v->vm : NULL);
		if (aerr) {
			r->counters.failed[a->kind]++;
			/* No swap here: readings say so from now on, so the
			 * policy leaves the work to the balloon. */
			if (a->kind == RF_POLICY_SET_SWAP && (aerr == -ENOSYS || aerr == -ENODEV))
				r->swap_missing = true;
			if (!r->failed_logged[a->kind]) {
				r->failed_logged[a->kind] = true;
				rf_log(e, RF_LOG_WARN,
				       "ramfold: policy: %s: cannot set %s: %s (logged once)", who,
				       action_names[a->kind], strerror(-aerr));
			}
			continue;
		}
		/* Remember what was asked, for the next reading and the metrics. */
		if (a->kind == RF_POLICY_SET_SCAN_RATE)
			r->applied_scan_rate = a->value;
		else if (v && v->vm && v->vm->ledger) {
			if (a->kind == RF_POLICY_SET_BALLOON)
				atomic_store(&v->vm->ledger->balloon_target, a->value);
			else
				atomic_store(&v->vm->ledger->resident_target, a->value);
		}
	}
	pthread_mutex_unlock(&r->lock);
	return 0;
}

RF_EXPORT int rf_policy_tick(rf_engine *e)
{
	struct rf_ledger *l;
	struct rf_policy_runner *r;
	struct rf_ledger_snap s;
	struct rf_policy_reading in;
	struct rf_policy_vm *vms;
	int err;

	if (!e)
		return -EINVAL;
	l = rf_ledger_get(e);
	r = rf_policy_runner_get(e);
	if (!l || !r)
		return -ENOMEM;
	pthread_rwlock_rdlock(&l->gate);
	err = rf_ledger_snapshot(e, &s);
	if (err)
		goto out;
	vms = rf_zalloc(e, (s.nr ? s.nr : 1) * sizeof(*vms));
	if (!vms) {
		err = -ENOMEM;
		goto out_snap;
	}
	for (unsigned int i = 0; i < s.nr; i++) {
		const struct rf_vm_breakdown *b = &s.vms[i].bd;
		struct rf_policy_vm *v = &vms[i];

		v->size = sizeof(*v);
		v->vm = s.vms[i].vm;
		v->name = s.vms[i].name;
		v->promised_bytes = b->promised_bytes;
		v->reservation_bytes = b->reservation_bytes;
		v->limit_bytes = b->limit_bytes;
		v->shares = b->shares;
		v->host_bytes = b->host_bytes;
		v->ballooned_bytes = b->ballooned_bytes;
		v->balloon_target_bytes = b->balloon_target_bytes;
		v->swapped_bytes = b->swapped_file_bytes + b->swapped_compressed_bytes;
		v->resident_target_bytes = s.vms[i].policy_target;
		v->guest_free_bytes = b->guest_free_bytes;
		v->has_balloon = s.vms[i].has_balloon;
		v->has_swap = r->act.set_swap && !r->swap_missing; /* read unlocked: a hint */
		v->resident_bytes = b->private_bytes + b->drift_bytes + b->compressed_host_bytes;
		v->stall_ns = s.vms[i].stall_ns;
		v->vcpus = s.vms[i].vcpus;
		v->guest_alloc_stalls = s.vms[i].guest_alloc_stalls;
	}
	in.size = sizeof(in);
	in.now_ns = rf_now_ns();
	in.capacity_bytes = s.host.capacity_bytes;
	in.used_bytes = s.host.used_bytes;
	in.nr_vms = s.nr;
	in.vms = vms;
	err = rf_policy_run(e, r, l, &in);
	rf_free(e, vms);
out_snap:
	rf_ledger_snap_free(e, &s);
out:
	pthread_rwlock_unlock(&l->gate);
	return err;
}

static void *tick_thread(void *arg)
{
	rf_engine *e = arg;
	struct rf_policy_runner *r = e->ledger->policy;
	struct timespec ts;

	rf_thread_name(e, "policy", NULL);
	pthread_mutex_lock(&r->thread_lock);
	while (!r->stop) {
		pthread_mutex_unlock(&r->thread_lock);
		rf_policy_tick(e);
		pthread_mutex_lock(&r->thread_lock);
		if (r->stop)
			break;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		ts.tv_nsec += (long)(r->period_ms % 1000) * 1000000L;
		ts.tv_sec += r->period_ms / 1000 + ts.tv_nsec / 1000000000L;
		ts.tv_nsec %= 1000000000L;
		while (!r->stop && pthread_cond_timedwait(&r->cond, &r->thread_lock, &ts) == 0)
			;
	}
	pthread_mutex_unlock(&r->thread_lock);
	return NULL;
}

RF_EXPORT int rf_policy_start(rf_engine *e, unsigned int period_ms)
{
	struct rf_policy_runner *r;
	pthread_condattr_t ca;
	int err;

	if (!e)
		return -EINVAL;
	if (period_ms < 100 || period_ms > 1000) {
		rf_log(e, RF_LOG_ERR, "ramfold: policy: tick period %u ms outside 100..1000",
		       period_ms);
		return -EINVAL;
	}
	r = rf_policy_runner_get(e);
	if (!r)
		return -ENOMEM;
	if (r->running)
		return -EALREADY;
	/* The timed wait counts on CLOCK_MONOTONIC: wall-clock jumps do not
	 * stall or hurry the policy. */
	pthread_cond_destroy(&r->cond);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	r->stop = false;
	r->period_ms = period_ms;
	err = pthread_create(&r->thread, NULL, tick_thread, e);
	if (err) {
		rf_log(e, RF_LOG_ERR, "ramfold: policy: cannot start the tick thread: %s",
		       strerror(err));
		return -err;
	}
	r->running = true;
	return 0;
}

RF_EXPORT void rf_policy_stop(rf_engine *e)
{
	struct rf_policy_runner *r;

	if (!e || !e->ledger || !(r = e->ledger->policy) || !r->running)
		return;
	pthread_mutex_lock(&r->thread_lock);
	r->stop = true;
	pthread_cond_signal(&r->cond);
	pthread_mutex_unlock(&r->thread_lock);
	pthread_join(r->thread, NULL);
	r->running = false;
}

/* Lock the engine's runner (runner_unlock): how the settings below change
 * it between two ticks. -EINVAL without an engine, -ENOMEM if the runner
 * cannot be created. */
static int runner_lock(rf_engine *e, struct rf_policy_runner **r)
{
	if (!e)
		return -EINVAL;
	*r = rf_policy_runner_get(e);
	if (!*r)
		return -ENOMEM;
	pthread_mutex_lock(&(*r)->lock);
	return 0;
}

static void runner_unlock(struct rf_policy_runner *r)
{
	pthread_mutex_unlock(&r->lock);
}

int rf_policy_set_abi(rf_engine *e, rf_policy_fn fn, void *arg, bool v02)
{
	struct rf_policy_runner *r;
	int err = runner_lock(e, &r);

	if (err)
		return err;
	r->fn = fn ? fn : rf_policy_default_decide;
	r->arg = fn ? arg : &r->def;
	r->fn_v02 = fn && v02;
	runner_unlock(r);
	return 0;
}

RF_EXPORT int rf_policy_set(rf_engine *e, rf_policy_fn fn, void *arg)
{
	return rf_policy_set_abi(e, fn, arg, false);
}
RF_VERSION_0_3(rf_policy_set);

RF_EXPORT int rf_policy_configure(rf_engine *e, const struct rf_policy_config *user)
{
	struct rf_policy_config full, *cfg = user ? &full : NULL;
	struct rf_policy_runner *r;
	int err;

	if (e && user) {
		rf_policy_config_init(&full);
		err = rf_struct_in(e, &full, sizeof(full), user,
				   RF_STRUCT_MIN(struct rf_policy_config, high_bp),
				   "rf_policy_config");
		if (err)
			return err;
	}
	if (!e || rf_policy_config_check(cfg)) {
		if (e)
			rf_log(e, RF_LOG_ERR,
			       "ramfold: policy: thresholds must be low < hard < soft < high "
			       "<= 100%%, the idle tax below 100%%, deflate_hold_ms at most "
			       "3600000 and the proactive settings within their ranges");
		return -EINVAL;
	}
	err = runner_lock(e, &r);
	if (err)
		return err;
	r->def.cfg = *cfg;
	r->def.scan_rate_set = false;
	runner_unlock(r);
	return 0;
}
RF_VERSION_0_3(rf_policy_configure);

RF_EXPORT int rf_policy_set_actuators(rf_engine *e, const struct rf_policy_actuators *user)
{
	struct rf_policy_actuators full = {0}, *acts = user ? &full : NULL;
	struct rf_policy_runner *r;
	int err;

	if (e && user) {
		err = rf_struct_in(e, &full, sizeof(full), user,
				   RF_STRUCT_MIN(struct rf_policy_actuators, set_balloon),
				   "rf_policy_actuators");
		if (err)
			return err;
	}
	err = runner_lock(e, &r);
	if (err)
		return err;
	r->act = acts ? *acts : rf_policy_builtin_actuators;
	r->swap_missing = false;
	memset(r->failed_logged, 0, sizeof(r->failed_logged));
	runner_unlock(r);
	return 0;
}
RF_VERSION_0_3(rf_policy_set_actuators);

static int rf_policy_counters_full(rf_engine *e, struct rf_policy_counters *out)
{
	struct rf_policy_runner *r;
	int err;

	if (!out)
		return -EINVAL;
	err = runner_lock(e, &r);
	if (err)
		return err;
	*out = r->counters;
	out->proactive_shrinks = r->def.proactive_shrinks;
	out->proactive_grows = r->def.proactive_grows;
	runner_unlock(r);
	return 0;
}

RF_EXPORT int rf_policy_counters(rf_engine *e, struct rf_policy_counters *out)
{
	struct rf_policy_counters full;

	RF_STRUCT_OUT(e, out, full, ticks, "rf_policy_counters", rf_policy_counters_full(e, &full));
}
RF_VERSION_0_3(rf_policy_counters);
