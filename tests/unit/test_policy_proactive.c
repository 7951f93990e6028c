/* SPDX-License-Identifier: MIT */
/*
 * The policy's proactive mode (stall-driven reclaim, policy.c step 5) with
 * scripted readings: a VM whose stall (vCPU-ns, as rf_swap_stats counts it)
 * and whose guest's allocation-stall counter the test writes each tick, on a
 * host in the high state unless a case says otherwise. The resident target
 * must shrink in small steps while the stall stays under the target, grow at
 * once when the stall rises or the guest reports allocation stalls, wait
 * after a growth, never go below the floor or the reservation, and leave the
 * pressure states to the default policy. Then the runner: the reading carries
 * the VM's stall and vCPUs from the library, and the counters count.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <ramfold/balloon.h>

#include "internal.h"
#include "ledger.h"
#include "policy.h"
#include "rf_test.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define MS  1000000ull

/* One VM as the policy sees it; the test plays the swap pager: the
 * resident bytes follow the target down at once, and come back up to
 * demand as far as the target lets them. */
struct pro_vm {
	uint64_t promised, reservation, limit;
	uint64_t demand;   /* what the guest would hold untouched by swap */
	uint64_t resident; /* what the target counts */
	uint64_t target;   /* UINT64_MAX = none */
	uint64_t stall_ns, alloc_stalls;
	uint32_t vcpus;
};

struct pro_sim {
	struct rf_policy_default p;
	struct pro_vm vm;
	uint64_t now, capacity, used_extra; /* used_extra: the rest of the host */
	struct rf_policy_action acts[16];
	unsigned int n;
	enum rf_mem_state st;
};

static void sim_init(struct pro_sim *s, unsigned int stall_ppm)
{
	struct rf_policy_config c;

	memset(s, 0, sizeof(*s));
	rf_policy_config_init(&c);
	c.proactive = true;
	c.stall_target_ppm = stall_ppm;
	assert_int_equal(rf_policy_config_check(&c), 0);
	rf_policy_default_init(&s->p, &c);
	s->capacity = 16 * GiB; /* the budget lifted: high throughout */
	s->vm.promised = 512 * MiB;
	s->vm.limit = UINT64_MAX;
	s->vm.demand = s->vm.resident = 400 * MiB;
	s->vm.target = UINT64_MAX;
	s->vm.alloc_stalls = RF_BALLOON_STAT_UNSET;
	s->vm.vcpus = 1;
	s->now = 1000 * MS;
}

/* One tick @dt_ms after the last, in which the VM stalled @stall_ms of
 * vCPU time. Returns the swap action's value, or 0 if none came. */
static uint64_t sim_tick(struct pro_sim *s, uint64_t dt_ms, uint64_t stall_ms)
{
	struct rf_policy_vm v = {.size = sizeof(v)};
	struct rf_policy_reading in = {.size = sizeof(in)};
	uint64_t swap = 0;

	s->now += dt_ms * MS;
	s->vm.stall_ns += stall_ms * MS;
	v.name = "vm0";
	v.promised_bytes = s->vm.promised;
	v.reservation_bytes = s->vm.reservation;
	v.limit_bytes = s->vm.limit;
	v.shares = RF_SHARES_DEFAULT;
	v.host_bytes = s->vm.resident;
	v.resident_target_bytes = s->vm.target;
	v.guest_free_bytes = UINT64_MAX;
	v.has_swap = 1;
	v.resident_bytes = s->vm.resident;
	v.stall_ns = s->vm.stall_ns;
	v.vcpus = s->vm.vcpus;
	v.guest_alloc_stalls = s->vm.alloc_stalls;
	in.now_ns = s->now;
	in.capacity_bytes = s->capacity;
	in.used_bytes = s->vm.resident + s->used_extra;
	in.nr_vms = 1;
	in.vms = &v;
	assert_int_equal(rf_policy_default_decide(&s->p, &in, s->acts, 16, &s->n, &s->st), 0);
	for (unsigned int i = 0; i < s->n; i++) {
		if (s->acts[i].kind != RF_POLICY_SET_SWAP)
			continue;
		assert_int_equal(s->acts[i].vm, 0);
		swap = s->acts[i].value;
		s->vm.target = swap;
	}
	/* The pager: down to the target at once, back up to demand below it. */
	s->vm.resident = s->vm.demand;
	if (s->vm.target != UINT64_MAX && s->vm.resident > s->vm.target)
		s->vm.resident = s->vm.target;
	return swap;
}

static void test_stall_share(void **state)
{
	(void)state;
	/* 10 ms of stall in 2 s of one vCPU: 0.5% = 5000 ppm. */
	assert_int_equal(rf_policy_stall_ppm(10 * MS, 2000 * MS, 1), 5000);
	/* Two vCPUs: half the share; 0 vCPUs counts as one. */
	assert_int_equal(rf_policy_stall_ppm(10 * MS, 2000 * MS, 2), 2500);
	assert_int_equal(rf_policy_stall_ppm(10 * MS, 2000 * MS, 0), 5000);
	assert_int_equal(rf_policy_stall_ppm(10 * MS, 0, 1), 0);
	/* No overflow on absurd inputs. */
	assert_true(rf_policy_stall_ppm(UINT64_MAX, 1, 1) > 0);
}

static void test_config_checked(void **state)
{
	struct rf_policy_config c;

	(void)state;
	rf_policy_config_init(&c);
	assert_false(c.proactive); /* off unless asked for */
	assert_int_equal(c.stall_target_ppm, 5000);
	c.proactive = true;
	assert_int_equal(rf_policy_config_check(&c), 0);
	c.stall_target_ppm = 0;
	assert_int_equal(rf_policy_config_check(&c), -EINVAL);
	rf_policy_config_init(&c);
	c.proactive = true;
	c.proactive_step_permille = 501;
	assert_int_equal(rf_policy_config_check(&c), -EINVAL);
	rf_policy_config_init(&c);
	c.proactive = true;
	c.proactive_interval_ms = 50;
	assert_int_equal(rf_policy_config_check(&c), -EINVAL);
	/* Off, the proactive fields are not looked at. */
	c.proactive = false;
	assert_int_equal(rf_policy_config_check(&c), 0);
}

/* Under the target the target shrinks, a step per 2 s window, each step
 * small (at most 2% of what the VM holds), down to the floor and no
 * further. */
static void test_shrinks_while_under_target(void **state)
{
	struct pro_sim s;
	uint64_t last = UINT64_MAX, steps = 0;

	(void)state;
	sim_init(&s, 5000);
	assert_int_equal(sim_tick(&s, 500, 0), 0); /* opens the first window */
	for (int t = 0; t < 2000; t++) {
		uint64_t held = s.vm.resident, v = sim_tick(&s, 500, 1); /* 0.2% stall */

		if (!v)
			continue;
		steps++;
		assert_true(v < last);
		assert_true(held - v <= held / 50 + MiB);
		assert_true(v >= 32 * MiB);
		last = v;
	}
	assert_int_equal(last, 32 * MiB); /* the floor, reached */
	assert_true(steps > 50);	  /* small steps */
	assert_int_equal(s.p.proactive_shrinks, steps);
	/* At the floor nothing more is asked. */
	for (int t = 0; t < 20; t++)
		assert_int_equal(sim_tick(&s, 500, 0), 0);
	/* One window = one step: 4 ticks of 500 ms, not one a tick. */
	sim_init(&s, 5000);
	sim_tick(&s, 500, 0);
	steps = 0;
	for (int t = 0; t < 40; t++)
		steps += sim_tick(&s, 500, 0) != 0;
	assert_int_equal(steps, 10);
}

/* A stall above the target grows the target at once (within a quarter
 * window), by at least a quarter, then no shrink for the hold time. */
static void test_grows_fast_on_stall(void **state)
{
	struct pro_sim s;
	uint64_t before, v;
	int t;

	(void)state;
	sim_init(&s, 5000);
	sim_tick(&s, 500, 0);
	for (t = 0; t < 100; t++)
		sim_tick(&s, 500, 0);
	before = s.vm.target;
	assert_true(before < 300 * MiB);
	/* 1% stall in one 500 ms tick: a quarter of the 2 s window is enough. */
	v = sim_tick(&s, 500, 5);
	assert_true(v >= before + before / 4 - 4096);
	assert_int_equal(s.p.proactive_grows, 1);
	/* Stall back to nothing: no step down for 10 s (the hold). */
	for (t = 0; t < 19; t++)
		assert_int_equal(sim_tick(&s, 500, 0), 0);
	for (t = 0, v = 0; t < 8 && !v; t++)
		v = sim_tick(&s, 500, 0);
	assert_true(v && v < s.vm.demand);
	/* Stall that stays high grows it all the way: no target. */
	for (t = 0; t < 40 && s.vm.target != UINT64_MAX; t++)
		sim_tick(&s, 500, 100);
	assert_int_equal(s.vm.target, UINT64_MAX);
	/* More vCPUs, same stall: a smaller share, so it is not a rise. */
	sim_init(&s, 5000);
	s.vm.vcpus = 4;
	sim_tick(&s, 500, 0);
	for (t = 0; t < 20; t++)
		sim_tick(&s, 500, 3); /* 0.6% of one vCPU, 0.15% of four */
	assert_int_equal(s.p.proactive_grows, 0);
	assert_true(s.p.proactive_shrinks > 0);
}

/* The guest's allocation-stall counter: a rise grows the target; a counter
 * that goes down (reset, or a lie) or is not sent is no signal. */
static void test_grows_on_guest_alloc_stall(void **state)
{
	struct pro_sim s;
	uint64_t before;
	int t;

	(void)state;
	sim_init(&s, 5000);
	s.vm.alloc_stalls = 7;
	sim_tick(&s, 500, 0);
	for (t = 0; t < 40; t++)
		sim_tick(&s, 500, 0);
	before = s.vm.target;
	assert_true(before != UINT64_MAX);
	s.vm.alloc_stalls = 9;
	assert_true(sim_tick(&s, 500, 0) > before);
	assert_int_equal(s.p.proactive_grows, 1);
	assert_true(strstr(s.acts[s.n - 1].why, "allocation stalls") != NULL);
	/* Down to 0 (a reset, or a hostile guest), then absent: nothing. */
	s.vm.alloc_stalls = 0;
	for (t = 0; t < 40; t++)
		sim_tick(&s, 500, 0);
	s.vm.alloc_stalls = RF_BALLOON_STAT_UNSET;
	for (t = 0; t < 40; t++)
		sim_tick(&s, 500, 0);
	assert_int_equal(s.p.proactive_grows, 1);
	/* A counter stuck at its largest value does not count as rising. */
	s.vm.alloc_stalls = RF_BALLOON_STAT_UNSET - 1;
	sim_tick(&s, 500, 0);
	for (t = 0; t < 40; t++)
		sim_tick(&s, 500, 0);
	assert_int_equal(s.p.proactive_grows, 1);
}

/* Never below the reservation (when above the floor), nor above the limit
 * when growing. */
static void test_floor_and_limit(void **state)
{
	struct pro_sim s;
	int t;

	(void)state;
	sim_init(&s, 5000);
	s.vm.reservation = 128 * MiB;
	s.vm.limit = 450 * MiB;
	sim_tick(&s, 500, 0);
	for (t = 0; t < 1000; t++) {
		sim_tick(&s, 500, 0);
		assert_true(s.vm.target == UINT64_MAX || s.vm.target >= 128 * MiB);
	}
	assert_int_equal(s.vm.target, 128 * MiB);
	for (t = 0; t < 40; t++) {
		sim_tick(&s, 500, 100);
		assert_true(s.vm.target <= 450 * MiB);
	}
	assert_int_equal(s.vm.target, 450 * MiB);
	/* A VM that holds less than the floor is given no target at all. */
	sim_init(&s, 5000);
	s.vm.demand = s.vm.resident = 20 * MiB;
	for (t = 0; t < 100; t++)
		assert_int_equal(sim_tick(&s, 500, 0), 0);
	assert_int_equal(s.vm.target, UINT64_MAX);
}

/* Outside high the pressure states decide: no proactive growth however
 * high the stall, and what they lower is not lifted back on return to
 * high unless the stall asks for it. */
static void test_leaves_pressure_to_default(void **state)
{
	struct pro_sim s;
	uint64_t hard_target;
	int t;

	(void)state;
	sim_init(&s, 5000);
	s.capacity = 1 * GiB;
	sim_tick(&s, 500, 0);
	for (t = 0; t < 10; t++)
		sim_tick(&s, 500, 0);
	/* The rest of the host fills up: hard state. */
	s.used_extra = 1 * GiB - s.vm.resident - 10 * MiB;
	for (t = 0; t < 20; t++) {
		uint64_t before = s.vm.target;

		sim_tick(&s, 500, 100); /* 20% stall */
		assert_true(s.st != RF_MEM_HIGH);
		/* Only ever lowered under pressure. */
		assert_true(s.vm.target <= before);
		s.used_extra = 1 * GiB - s.vm.resident - 10 * MiB;
	}
	assert_int_equal(s.p.proactive_grows, 0);
	hard_target = s.vm.target;
	assert_true(hard_target < 300 * MiB);
	/* Pressure gone, stall gone: the target is not lifted (the default's
	 * lift on room), it goes on shrinking from there. */
	s.used_extra = 0;
	for (t = 0; t < 8; t++) {
		sim_tick(&s, 500, 0);
		assert_int_equal(s.st, RF_MEM_HIGH);
		assert_true(s.vm.target <= hard_target);
	}
	/* Then the stall rises: grown back. */
	sim_tick(&s, 500, 50);
	assert_true(s.vm.target > hard_target);
	assert_int_equal(s.p.proactive_grows, 1);
	/* Without the mode, the default lifts it on room at once. */
	s.p.cfg.proactive = false;
	s.vm.target = 100 * MiB;
	sim_tick(&s, 500, 0);
	assert_int_equal(s.vm.target, UINT64_MAX);
}

/* The runner hands the policy the library's own numbers: the VM's vCPUs
 * from its config, its stall, what the target counts; the counters count
 * the mode's actions. */
static uint64_t seen_vcpus, seen_resident;

static int spy_policy(void *arg, const struct rf_policy_reading *in, struct rf_policy_action *acts,
		      unsigned int max, unsigned int *n, enum rf_mem_state *st)
{
	int rc = rf_policy_default_decide(arg, in, acts, max, n, st);

	seen_vcpus = in->vms[0].vcpus;
	seen_resident = in->vms[0].resident_bytes;
	assert_int_equal(in->vms[0].guest_alloc_stalls, RF_BALLOON_STAT_UNSET);
	return rc;
}

static int nop_swap(void *arg, rf_vm *vm, uint64_t b)
{
	(void)vm;
	*(uint64_t *)arg = b;
	return 0;
}

static void test_runner_reading(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	struct rf_vm_config vc;
	rf_vm *vm = NULL;
	uint64_t asked = 0;
	struct rf_policy_actuators acts = {
	    .size = sizeof(acts), .set_swap = nop_swap, .arg = &asked};
	struct rf_policy_config c;
	struct rf_policy_counters pc = {.size = sizeof(pc)};
	struct rf_policy_default def;
	void *ram;

	(void)state;
	rf_vm_config_init(&vc);
	vc.ram_bytes = 64 * MiB;
	vc.vcpus = 3;
	assert_int_equal(rf_vm_new(e, "vm0", &vc, &vm), 0);
	assert_int_equal(rf_vm_map_ram(vm, 0, 64 * MiB, &ram), 0);
	memset(ram, 0x5a, 48 * MiB);
	rf_policy_config_init(&c);
	c.proactive = true;
	c.proactive_interval_ms = 100;
	c.proactive_hold_ms = 0;
	assert_int_equal(rf_policy_configure(e, &c), 0);
	assert_int_equal(rf_policy_set_actuators(e, &acts), 0);
	rf_policy_default_init(&def, &c);
	assert_int_equal(rf_policy_set(e, spy_policy, &def), 0);
	assert_int_equal(rf_policy_tick(e), 0);
	assert_int_equal(seen_vcpus, 3);
	assert_true(seen_resident >= 47 * MiB && seen_resident <= 49 * MiB);
	usleep(150 * 1000);
	assert_int_equal(rf_policy_tick(e), 0);
	/* No stall (nothing faults): one step down from what it holds. */
	assert_true(asked > 40 * MiB && asked < seen_resident);
	assert_log_contains(&log, "proactive: stall 0.00% <= 0.50% of vCPU time");
	/* The default policy's counters show in rf_policy_counters. */
	assert_int_equal(rf_policy_set(e, NULL, NULL), 0);
	assert_int_equal(rf_policy_counters(e, &pc), 0);
	assert_int_equal(pc.size, sizeof(pc));
	rf_engine_free(e);
}

/* A caller built before the mode passes a smaller config: whatever lies
 * past its size is not read, so the mode stays off. */
static void test_older_config_leaves_it_off(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	struct rf_policy_config c;
	struct rf_policy_runner *r;

	(void)state;
	rf_policy_config_init(&c);
	c.proactive = true;
	c.stall_target_ppm = 0; /* would be refused, were it read */
	c.size = offsetof(struct rf_policy_config, proactive_floor_bytes);
	assert_int_equal(rf_policy_configure(e, &c), 0);
	r = rf_policy_runner_get(e);
	assert_non_null(r);
	assert_false(r->def.cfg.proactive);
	assert_int_equal(r->def.cfg.stall_target_ppm, 5000);
	c.size = sizeof(c);
	assert_int_equal(rf_policy_configure(e, &c), -EINVAL);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stall_share),
	    cmocka_unit_test(test_config_checked),
	    cmocka_unit_test(test_shrinks_while_under_target),
	    cmocka_unit_test(test_grows_fast_on_stall),
	    cmocka_unit_test(test_grows_on_guest_alloc_stall),
	    cmocka_unit_test(test_floor_and_limit),
	    cmocka_unit_test(test_leaves_pressure_to_default),
	    cmocka_unit_test(test_runner_reading),
	    cmocka_unit_test(test_older_config_leaves_it_off),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
