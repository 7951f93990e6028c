/* SPDX-License-Identifier: MIT */
/*
 * The reclaim policy with fake readings and fake actuators: the free-memory
 * state machine and its hysteresis, the water-filling of allocations, the
 * idle memory tax, and a scripted pressure sequence on a simulated host in
 * which reservations and limits must hold, swap must wait for the balloon,
 * and the host must end up inside its capacity. Then the runner: one log
 * line and one count per action, failed actuators counted, a custom policy,
 * and the tick thread.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "ledger.h"
#include "policy.h"
#include "rf_test.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define MS  1000000ull

static void test_states_hysteresis(void **state)
{
	struct rf_policy_config c;
	const uint64_t cap = 10000 * MiB; /* 1 bp = 1 MiB */
	/* free (MiB) readings and the state each must give */
	const struct {
		uint64_t free;
		enum rf_mem_state want;
	} seq[] = {
	    {2000, RF_MEM_HIGH}, {500, RF_MEM_HIGH}, /* between soft (400) and high: stays */
	    {399, RF_MEM_SOFT},	 {450, RF_MEM_SOFT},  {599, RF_MEM_SOFT}, /* below high: stays */
	    {600, RF_MEM_HIGH},	 {399, RF_MEM_SOFT},  {150, RF_MEM_HARD},
	    {250, RF_MEM_HARD}, /* hard exit is 200 + 100 */
	    {299, RF_MEM_HARD},	 {300, RF_MEM_SOFT},  {90, RF_MEM_LOW},
	    {150, RF_MEM_LOW},			      /* low exit is 100 + 100 */
	    {200, RF_MEM_HARD},	 {5000, RF_MEM_HIGH}, /* all the way up at once */
	    {0, RF_MEM_LOW},	 {350, RF_MEM_SOFT},  /* low -> hard -> soft in one reading */
	};
	enum rf_mem_state s = RF_MEM_HIGH;

	(void)state;
	rf_policy_config_init(&c);
	for (size_t i = 0; i < sizeof(seq) / sizeof(seq[0]); i++) {
		s = rf_policy_next_state(&c, s, seq[i].free * MiB, cap);
		if (s != seq[i].want)
			fail_msg("reading %zu (free %llu MiB): state %s, want %s", i,
				 (unsigned long long)seq[i].free, rf_mem_state_name(s),
				 rf_mem_state_name(seq[i].want));
	}
	/* Bad thresholds are refused. */
	c.soft_bp = c.high_bp;
	assert_int_equal(rf_policy_config_check(&c), -EINVAL);
	rf_policy_config_init(&c);
	c.idle_tax_pct = 100;
	assert_int_equal(rf_policy_config_check(&c), -EINVAL);
}

static void test_share_waterfill(void **state)
{
	double w[3] = {1, 1, 2};
	uint64_t lo[3] = {0, 300, 0}, hi[3] = {1000, 1000, 1000}, alloc[3];

	(void)state;
	/* 1200 among weights 1:1:2 would be 300/300/600. */
	rf_policy_share(1200, 3, w, lo, hi, alloc);
	assert_true(alloc[0] >= 299 && alloc[0] <= 301);
	assert_true(alloc[1] >= 299 && alloc[1] <= 301);
	assert_true(alloc[2] >= 599 && alloc[2] <= 601);
	/* 800: VM 1's floor of 300 holds; the others share 500 as 1:2. */
	rf_policy_share(800, 3, w, lo, hi, alloc);
	assert_int_equal(alloc[1], 300);
	assert_true(alloc[0] >= 165 && alloc[0] <= 168);
	assert_true(alloc[2] >= 332 && alloc[2] <= 335);
	/* A cap: VM 2 at most 400; the rest goes to the others. */
	hi[2] = 400;
	rf_policy_share(1600, 3, w, lo, hi, alloc);
	assert_int_equal(alloc[2], 400);
	assert_true(alloc[0] + alloc[1] + alloc[2] >= 1599);
	/* Less than the floors: floors; more than the caps: caps. */
	rf_policy_share(100, 3, w, lo, hi, alloc);
	assert_int_equal(alloc[0] + alloc[1] + alloc[2], 300);
	rf_policy_share(5000, 3, w, lo, hi, alloc);
	assert_int_equal(alloc[0] + alloc[1] + alloc[2], 2400);
}

static void test_idle_tax_weight(void **state)
{
	double busy = rf_policy_weight(1000, 512 * MiB, 0, 75);
	double idle = rf_policy_weight(1000, 512 * MiB, 400 * MiB, 75);
	double unknown = rf_policy_weight(1000, 512 * MiB, UINT64_MAX, 75);
	double notax = rf_policy_weight(1000, 512 * MiB, 400 * MiB, 0);

	(void)state;
	assert_true(busy == 1000.0 && unknown == 1000.0 && notax == 1000.0);
	assert_true(idle < busy / 3); /* 78% idle at k = 4: 1000 / 3.34 */
	assert_true(rf_policy_weight(2000, 512 * MiB, 0, 75) == 2000.0);
}

/* ---- a simulated host ---- */

struct sim_vm {
	const char *name;
	uint64_t promised, reservation, limit;
	uint32_t shares;
	uint64_t demand; /* what the guest would hold without reclaim */
	uint64_t guest_free;
	int has_balloon;
	uint64_t balloon_rate; /* per tick the guest's driver inflates */
	uint64_t ballooned, balloon_target, swapped;
	uint64_t resident_target; /* UINT64_MAX = none */
	uint64_t swap_asked_at_tick;
};

struct sim {
	struct sim_vm vm[8];
	unsigned int n;
	uint64_t capacity, now, tick;
};

static uint64_t sim_cost(const struct sim_vm *v)
{
	uint64_t away = v->ballooned + v->swapped;

	return v->demand > away ? v->demand - away : 0;
}

static void sim_reading(struct sim *s, struct rf_policy_vm *pv, struct rf_policy_reading *in)
{
	in->now_ns = s->now;
	in->capacity_bytes = s->capacity;
	in->used_bytes = 0;
	in->nr_vms = s->n;
	in->vms = pv;
	for (unsigned int i = 0; i < s->n; i++) {
		struct sim_vm *v = &s->vm[i];

		memset(&pv[i], 0, sizeof(pv[i]));
		pv[i].name = v->name;
		pv[i].promised_bytes = v->promised;
		pv[i].reservation_bytes = v->reservation;
		pv[i].limit_bytes = v->limit;
		pv[i].shares = v->shares;
		pv[i].host_bytes = sim_cost(v);
		pv[i].ballooned_bytes = v->ballooned;
		pv[i].balloon_target_bytes = v->balloon_target;
		pv[i].swapped_bytes = v->swapped;
		pv[i].resident_target_bytes = v->resident_target;
		/* What the guest reports free shrinks as its balloon grows. */
		pv[i].guest_free_bytes = v->guest_free == UINT64_MAX ? UINT64_MAX
					 : v->guest_free > v->ballooned
					     ? v->guest_free - v->ballooned
					     : 0;
		pv[i].has_balloon = v->has_balloon;
		pv[i].has_swap = 1;
		in->used_bytes += pv[i].host_bytes;
	}
}

/* Apply actions as the mechanisms would; the balloon moves at its rate
 * each tick, swap completes within the tick. */
static void sim_apply(struct sim *s, const struct rf_policy_action *a, unsigned int n)
{
	for (unsigned int i = 0; i < n; i++) {
		struct sim_vm *v = &s->vm[a[i].vm];

		if (a[i].kind == RF_POLICY_SET_BALLOON) {
			assert_true(v->has_balloon);
			v->balloon_target = a[i].value;
		} else if (a[i].kind == RF_POLICY_SET_SWAP) {
			v->resident_target = a[i].value;
			v->swap_asked_at_tick = s->tick;
		}
	}
	for (unsigned int i = 0; i < s->n; i++) {
		struct sim_vm *v = &s->vm[i];

		if (v->ballooned < v->balloon_target) {
			uint64_t step = v->balloon_target - v->ballooned;

			v->ballooned += step < v->balloon_rate ? step : v->balloon_rate;
		} else {
			v->ballooned = v->balloon_target; /* deflate at once */
		}
		/* Swap-out to the resident target within the tick; swapped
		 * pages come back as the guest touches them, 8 MiB a tick,
		 * as far as the target allows. */
		if (v->resident_target != UINT64_MAX && sim_cost(v) > v->resident_target) {
			v->swapped += sim_cost(v) - v->resident_target;
		} else if (v->swapped) {
			uint64_t back = v->swapped < 8 * MiB ? v->swapped : 8 * MiB;

			if (v->resident_target != UINT64_MAX &&
			    back > v->resident_target - sim_cost(v))
				back = v->resident_target - sim_cost(v);
			v->swapped -= back;
		}
	}
}

static unsigned int sim_step(struct sim *s, struct rf_policy_default *p,
			     struct rf_policy_action *acts, enum rf_mem_state *st)
{
	struct rf_policy_vm pv[8];
	struct rf_policy_reading in;
	unsigned int n = 0;

	sim_reading(s, pv, &in);
	assert_int_equal(rf_policy_default_decide(p, &in, acts, 64, &n, st), 0);
	sim_apply(s, acts, n);
	s->tick++;
	s->now += 500 * MS;
	return n;
}

static uint64_t sim_used(const struct sim *s)
{
	uint64_t u = 0;

	for (unsigned int i = 0; i < s->n; i++)
		u += sim_cost(&s->vm[i]);
	return u;
}

/*
 * Four VMs on 1 GiB: "res" has a 256 MiB reservation, "capped" a 128 MiB
 * limit, "idle" reports most of its memory free, "nob" has no balloon, and
 * "slow"'s balloon creeps. Demand rises in three waves. Throughout: no VM is
 * reclaimed below its reservation; after a short settling, the capped VM
 * stays at its limit, the host inside capacity; swap is asked for only in
 * hard/low or above a limit, and for ballooned VMs only after the grace.
 */
static void test_scripted_pressure(void **state)
{
	struct rf_policy_config c;
	struct rf_policy_default p;
	struct rf_policy_action acts[64];
	struct sim s = {.capacity = GiB};
	enum rf_mem_state st = RF_MEM_HIGH;
	bool saw_soft = false, saw_hard = false, idle_gave_more = false;

	(void)state;
	rf_policy_config_init(&c);
	rf_policy_default_init(&p, &c);
	s.vm[0] = (struct sim_vm){.name = "res",
				  .promised = 512 * MiB,
				  .reservation = 256 * MiB,
				  .limit = UINT64_MAX,
				  .shares = 1000,
				  .guest_free = UINT64_MAX,
				  .resident_target = UINT64_MAX,
				  .has_balloon = 1,
				  .balloon_rate = 64 * MiB};
	s.vm[1] = (struct sim_vm){.name = "capped",
				  .promised = 512 * MiB,
				  .limit = 128 * MiB,
				  .shares = 1000,
				  .guest_free = UINT64_MAX,
				  .resident_target = UINT64_MAX,
				  .has_balloon = 1,
				  .balloon_rate = 64 * MiB};
	s.vm[2] = (struct sim_vm){.name = "idle",
				  .promised = 512 * MiB,
				  .limit = UINT64_MAX,
				  .shares = 1000,
				  .guest_free = 400 * MiB,
				  .resident_target = UINT64_MAX,
				  .has_balloon = 1,
				  .balloon_rate = 64 * MiB};
	s.vm[3] = (struct sim_vm){.name = "busy",
				  .promised = 512 * MiB,
				  .limit = UINT64_MAX,
				  .shares = 1000,
				  .guest_free = 0,
				  .resident_target = UINT64_MAX,
				  .has_balloon = 1,
				  .balloon_rate = 64 * MiB};
	s.vm[4] = (struct sim_vm){.name = "nob",
				  .promised = 256 * MiB,
				  .limit = UINT64_MAX,
				  .shares = 1000,
				  .guest_free = UINT64_MAX,
				  .resident_target = UINT64_MAX,
				  .has_balloon = 0};
	s.vm[5] = (struct sim_vm){.name = "slow",
				  .promised = 256 * MiB,
				  .limit = UINT64_MAX,
				  .shares = 1000,
				  .guest_free = UINT64_MAX,
				  .resident_target = UINT64_MAX,
				  .has_balloon = 1,
				  .balloon_rate = 2 * MiB};
	s.n = 6;

	for (unsigned int t = 0; t < 120; t++) {
		unsigned int n;

		/* Waves of demand: everyone grows at ticks 0, 20 and 40. */
		if (t == 0 || t == 20 || t == 40)
			for (unsigned int i = 0; i < s.n; i++)
				s.vm[i].demand += s.vm[i].promised / 4 + (i == 1 ? 64 * MiB : 0);
		n = sim_step(&s, &p, acts, &st);
		if (getenv("SIM_TRACE")) {
			printf("t=%u %s used=%llu:", t, rf_mem_state_name(st),
			       (unsigned long long)(sim_used(&s) >> 20));
			for (unsigned int i = 0; i < s.n; i++)
				printf(" %s[c%llu b%llu/%llu s%llu]", s.vm[i].name,
				       (unsigned long long)(sim_cost(&s.vm[i]) >> 20),
				       (unsigned long long)(s.vm[i].ballooned >> 20),
				       (unsigned long long)(s.vm[i].balloon_target >> 20),
				       (unsigned long long)(s.vm[i].swapped >> 20));
			printf("\n");
		}
		saw_soft |= st == RF_MEM_SOFT;
		saw_hard |= st >= RF_MEM_HARD;
		for (unsigned int k = 0; k < n; k++) {
			struct sim_vm *v = &s.vm[acts[k].vm];

			if (acts[k].kind == RF_POLICY_SET_SCAN_RATE)
				continue;
			assert_true(acts[k].why[0] != '\0');
			if (acts[k].kind == RF_POLICY_SET_SWAP && acts[k].value != UINT64_MAX &&
			    v->limit == UINT64_MAX)
				assert_true(st >= RF_MEM_HARD); /* swap only in hard/low */
			/* Never more balloon than the guest reports free, less 16 MiB. */
			if (acts[k].kind == RF_POLICY_SET_BALLOON && v->guest_free != UINT64_MAX)
				assert_true(acts[k].value <= v->guest_free);
		}
		for (unsigned int i = 0; i < s.n; i++) {
			struct sim_vm *v = &s.vm[i];
			uint64_t cost = sim_cost(v);

			/* The reservation holds: never reclaimed below it. */
			if (v->demand >= v->reservation)
				assert_true(cost + 1 * MiB >= v->reservation);
		}
		if (s.vm[2].ballooned > s.vm[3].ballooned + 64 * MiB)
			idle_gave_more = true;
		/* Settled after each wave: the limit and the capacity hold. */
		if (t % 20 >= 12) {
			assert_true(sim_cost(&s.vm[1]) <= 128 * MiB + MiB);
			assert_true(sim_used(&s) <= s.capacity);
		}
	}
	assert_true(saw_soft);
	assert_true(saw_hard);
	assert_true(idle_gave_more);
	/* The VM without a balloon could only be swapped. */
	assert_true(s.vm[4].swapped > 0);
	assert_int_equal(s.vm[4].ballooned, 0);
	/* The slow balloon's VM was not swapped: the host left hard before
	 * the grace ran out, and in soft only the balloon works. */
	assert_int_equal(s.vm[5].swapped, 0);
	/* The reserved VM kept its reservation. */
	assert_true(sim_cost(&s.vm[0]) >= 256 * MiB);

	/* Pressure goes away: balloons deflate, resident targets are lifted. */
	for (unsigned int i = 0; i < s.n; i++)
		s.vm[i].demand /= 4;
	for (unsigned int t = 0; t < 40; t++)
		sim_step(&s, &p, acts, &st);
	assert_int_equal(st, RF_MEM_HIGH);
	assert_true(s.vm[2].balloon_target < s.vm[2].promised / 2);
	for (unsigned int i = 0; i < s.n; i++)
		assert_int_equal(s.vm[i].resident_target, UINT64_MAX);
	assert_true(sim_cost(&s.vm[1]) <= 128 * MiB + MiB);
}

/*
 * Two VMs whose balloons creep while the host is in hard: nothing is swapped
 * during the grace; then exactly what the balloons have not got yet.
 */
static void test_swap_after_grace(void **state)
{
	struct rf_policy_config c;
	struct rf_policy_default p;
	struct rf_policy_action acts[64];
	struct sim s = {.capacity = GiB};
	enum rf_mem_state st = RF_MEM_HIGH;
	unsigned int first_swap_tick = 0;

	(void)state;
	rf_policy_config_init(&c);
	rf_policy_default_init(&p, &c);
	for (unsigned int i = 0; i < 2; i++)
		s.vm[i] = (struct sim_vm){.name = i ? "b" : "a",
					  .promised = 768 * MiB,
					  .limit = UINT64_MAX,
					  .shares = 1000,
					  .guest_free = UINT64_MAX,
					  .resident_target = UINT64_MAX,
					  .has_balloon = 1,
					  .balloon_rate = 4 * MiB,
					  .demand = 540 * MiB};
	s.n = 2;
	for (unsigned int t = 0; t < 30; t++) {
		uint64_t swapped_before = s.vm[0].swapped + s.vm[1].swapped;

		sim_step(&s, &p, acts, &st);
		if (getenv("SIM_TRACE"))
			printf("t=%u %s used=%llu a[b%llu/%llu s%llu] b[b%llu s%llu]\n", t,
			       rf_mem_state_name(st), (unsigned long long)(sim_used(&s) >> 20),
			       (unsigned long long)(s.vm[0].ballooned >> 20),
			       (unsigned long long)(s.vm[0].balloon_target >> 20),
			       (unsigned long long)(s.vm[0].swapped >> 20),
			       (unsigned long long)(s.vm[1].ballooned >> 20),
			       (unsigned long long)(s.vm[1].swapped >> 20));
		if (!first_swap_tick && s.vm[0].swapped + s.vm[1].swapped > swapped_before)
			first_swap_tick = t;
	}
	/* 2 s grace at 500 ms per tick: the fifth tick is the first allowed. */
	assert_int_equal(first_swap_tick, 4);
	/* Each VM gave 16 MiB by balloon in those ticks; swap took the rest of
	 * the way to the high threshold and no further. */
	assert_true(s.vm[0].ballooned >= 16 * MiB);
	assert_true(s.vm[0].swapped > 0 && s.vm[1].swapped > 0);
	/* Aimed at free = high (6%) + half the hysteresis (0.5%). */
	assert_true(sim_used(&s) <= GiB - GiB / 1000 * 64);
	assert_true(sim_used(&s) >= GiB - GiB / 1000 * 66);
	assert_int_equal(st, RF_MEM_HIGH);
}

/* The balloon action among @n actions, or NULL. */
static const struct rf_policy_action *balloon_action(const struct rf_policy_action *a,
						     unsigned int n)
{
	for (unsigned int i = 0; i < n; i++)
		if (a[i].kind == RF_POLICY_SET_BALLOON)
			return &a[i];
	return NULL;
}

/* One churning guest (512 MiB, 300 MiB of it reported free) on a 1 GiB
 * host, the default policy with a balloon hold of @hold_ms. */
struct wave {
	struct rf_policy_default p;
	struct rf_policy_vm v;
	struct rf_policy_reading in;
	struct rf_policy_action acts[16];
	unsigned int n;
	enum rf_mem_state st;
};

/* A tick at @ms with the guest costing @used_mib: its balloon action, or NULL. */
static const struct rf_policy_action *wave_tick(struct wave *w, uint64_t ms, uint64_t used_mib)
{
	w->in.now_ns = ms * MS;
	w->in.used_bytes = w->v.host_bytes = used_mib * MiB;
	assert_int_equal(rf_policy_default_decide(&w->p, &w->in, w->acts, 16, &w->n, &w->st), 0);
	return balloon_action(w->acts, w->n);
}

/* Set up @w and take the host into soft at 1 s: the balloon grows, and the
 * guest gives all of it (its target and what it holds). */
static void wave_start(struct wave *w, unsigned int hold_ms)
{
	struct rf_policy_config c;
	const struct rf_policy_action *b;

	memset(w, 0, sizeof(*w));
	rf_policy_config_init(&c);
	assert_int_equal(c.deflate_hold_ms, 10000);
	c.deflate_hold_ms = hold_ms;
	rf_policy_default_init(&w->p, &c);
	w->v = (struct rf_policy_vm){.name = "churn0",
				     .promised_bytes = 512 * MiB,
				     .limit_bytes = UINT64_MAX,
				     .shares = 1000,
				     .guest_free_bytes = 300 * MiB,
				     .resident_target_bytes = UINT64_MAX,
				     .has_balloon = 1,
				     .has_swap = 1};
	w->in = (struct rf_policy_reading){.capacity_bytes = GiB, .nr_vms = 1, .vms = &w->v};
	b = wave_tick(w, 1000, 1000);
	assert_int_equal(w->st, RF_MEM_SOFT);
	assert_non_null(b);
	assert_true(b->value > 0);
	w->v.balloon_target_bytes = w->v.ballooned_bytes = b->value;
}

/*
 * A guest that allocates and frees in waves takes the host into soft and
 * back: its balloon is inflated, then kept while pressure was seen less
 * than deflate_hold_ms ago (every high tick with room would otherwise hand
 * it back, to be faulted in anew and ballooned again), and deflated a step
 * once the host has stayed in high that long (10 s by default). With the
 * hold at 0 it deflates in the first high tick; a hold above an hour is
 * refused.
 */
static void test_deflate_hold(void **state)
{
	struct rf_policy_config c;
	const struct rf_policy_action *b;
	struct wave w;

	(void)state;
	/* Without a hold: the first high tick with room deflates. */
	wave_start(&w, 0);
	b = wave_tick(&w, 1500, 500);
	assert_int_equal(w.st, RF_MEM_HIGH);
	assert_non_null(b);
	assert_true(b->value < w.v.balloon_target_bytes);
	/* With one: kept up to the end of the hold, then a step back. */
	wave_start(&w, 10000);
	assert_null(wave_tick(&w, 1500, 500));
	assert_int_equal(w.st, RF_MEM_HIGH);
	b = wave_tick(&w, 1000 + 10000, 500);
	assert_non_null(b);
	assert_true(b->value < w.v.balloon_target_bytes);
	assert_non_null(strstr(b->why, "room to spare"));
	/* Just inside the hold (1 ns before its end): still kept. */
	wave_start(&w, 10000);
	w.in.now_ns = (1000 + 10000) * MS - 1;
	w.in.used_bytes = w.v.host_bytes = 500 * MiB;
	assert_int_equal(rf_policy_default_decide(&w.p, &w.in, w.acts, 16, &w.n, &w.st), 0);
	assert_null(balloon_action(w.acts, w.n));

	rf_policy_config_init(&c);
	c.deflate_hold_ms = 3600001;
	assert_int_equal(rf_policy_config_check(&c), -EINVAL);
	c.deflate_hold_ms = 3600000;
	assert_int_equal(rf_policy_config_check(&c), 0);
}

/*
 * With a hold, a guest that takes pages back on OOM is believed: its target
 * comes down to what it kept and it is not inflated again for the hold
 * (else each allocation of its next wave would deflate the balloon a page
 * at a time, and the next tick would inflate it again). A balloon the host
 * deflated is not taken for that; without a hold nothing changes.
 */
static void test_guest_oom_deflate(void **state)
{
	const struct rf_policy_action *b;
	struct wave w;
	uint64_t x;

	(void)state;
	/* Without a hold: inflated again by its excess, as before. */
	wave_start(&w, 0);
	wave_tick(&w, 1500, 1000);
	x = w.v.ballooned_bytes;
	w.v.ballooned_bytes = x - 8 * MiB;
	b = wave_tick(&w, 2000, 1000);
	assert_non_null(b);
	assert_true(b->value > x - 8 * MiB);
	assert_null(strstr(b->why, "deflate on OOM"));

	/* With one: a tick sees the guest hold its balloon, then it takes
	 * 8 MiB back on OOM, still in soft. */
	wave_start(&w, 10000);
	wave_tick(&w, 1500, 1000);
	x = w.v.ballooned_bytes;
	w.v.ballooned_bytes = x - 8 * MiB;
	b = wave_tick(&w, 2000, 1000);
	assert_int_equal(w.st, RF_MEM_SOFT);
	assert_non_null(b);
	assert_int_equal(b->value, x - 8 * MiB);
	assert_non_null(strstr(b->why, "took back 8.0 MiB (deflate on OOM)"));
	w.v.balloon_target_bytes = w.v.ballooned_bytes;
	/* Within the hold: not inflated again, though in soft. */
	w.in.now_ns = (2000 + 10000) * MS - 1;
	assert_int_equal(rf_policy_default_decide(&w.p, &w.in, w.acts, 16, &w.n, &w.st), 0);
	assert_int_equal(w.st, RF_MEM_SOFT);
	assert_null(balloon_action(w.acts, w.n));
	/* The hold over: inflated by its excess again. */
	b = wave_tick(&w, 2000 + 10000, 1000);
	assert_non_null(b);
	assert_true(b->value > w.v.balloon_target_bytes);
	/* A balloon the host deflates is not the guest's OOM: high, room,
	 * the hold over since the last soft tick; the target goes down a
	 * step and the guest follows it. */
	w.v.balloon_target_bytes = w.v.ballooned_bytes = b->value;
	b = wave_tick(&w, 30000, 500);
	assert_int_equal(w.st, RF_MEM_HIGH);
	assert_non_null(b);
	assert_true(b->value < w.v.balloon_target_bytes);
	w.v.balloon_target_bytes = b->value;
	w.v.ballooned_bytes = b->value + 4 * MiB; /* on its way down */
	wave_tick(&w, 30500, 500);
	for (unsigned int k = 0; k < w.n; k++)
		assert_null(strstr(w.acts[k].why, "deflate on OOM"));
}

/* The limit is enforced in the high state too, and the scan rate follows the state. */
static void test_limit_in_high_and_scan_rate(void **state)
{
	struct rf_policy_default p;
	struct rf_policy_action acts[16];
	struct rf_policy_vm v = {.name = "vm0",
				 .promised_bytes = 512 * MiB,
				 .limit_bytes = 200 * MiB,
				 .shares = 1000,
				 .host_bytes = 300 * MiB,
				 .guest_free_bytes = UINT64_MAX,
				 .resident_target_bytes = UINT64_MAX,
				 .has_balloon = 1,
				 .has_swap = 1};
	struct rf_policy_reading in = {.now_ns = 1,
				       .capacity_bytes = 8 * GiB,
				       .used_bytes = 300 * MiB,
				       .nr_vms = 1,
				       .vms = &v};
	enum rf_mem_state st;
	unsigned int n;

	(void)state;
	rf_policy_default_init(&p, NULL);
	assert_int_equal(rf_policy_default_decide(&p, &in, acts, 16, &n, &st), 0);
	assert_int_equal(st, RF_MEM_HIGH);
	assert_int_equal(n, 2);
	assert_int_equal(acts[0].kind, RF_POLICY_SET_SCAN_RATE);
	assert_int_equal(acts[0].value, 0);
	assert_int_equal(acts[1].kind, RF_POLICY_SET_BALLOON);
	assert_int_equal(acts[1].value, 100 * MiB);
	assert_non_null(strstr(acts[1].why, "above its limit"));
	/* Still above after the grace: swap, even in high. */
	v.balloon_target_bytes = 100 * MiB;
	v.ballooned_bytes = 10 * MiB;
	v.host_bytes = 290 * MiB;
	in.now_ns = 1 + 2500 * MS;
	assert_int_equal(rf_policy_default_decide(&p, &in, acts, 16, &n, &st), 0);
	assert_int_equal(n, 2);
	assert_int_equal(acts[0].kind, RF_POLICY_SET_SWAP);
	assert_int_equal(acts[0].value, 200 * MiB); /* resident target: the limit */
	assert_non_null(strstr(acts[0].why, "balloon too slow"));
	/* The balloon's pending 90 MiB is cancelled: swap took it over. */
	assert_int_equal(acts[1].kind, RF_POLICY_SET_BALLOON);
	assert_int_equal(acts[1].value, 10 * MiB);
	assert_non_null(strstr(acts[1].why, "swap takes over the rest"));
	/* At its limit, pressure gone: the target stays at the limit, or the
	 * VM would be swapped down to it again and again. */
	v.resident_target_bytes = 200 * MiB;
	v.balloon_target_bytes = 10 * MiB;
	v.host_bytes = 200 * MiB;
	assert_int_equal(rf_policy_default_decide(&p, &in, acts, 16, &n, &st), 0);
	assert_int_equal(n, 0);
	/* The limit raised past the promised size: the target is lifted. */
	v.limit_bytes = UINT64_MAX;
	assert_int_equal(rf_policy_default_decide(&p, &in, acts, 16, &n, &st), 0);
	assert_int_equal(n, 2); /* the target lifted, and the balloon deflated */
	assert_int_equal(acts[0].kind, RF_POLICY_SET_BALLOON);
	assert_int_equal(acts[0].value, 0);
	assert_int_equal(acts[1].kind, RF_POLICY_SET_SWAP);
	assert_true(acts[1].value == UINT64_MAX);
	assert_non_null(strstr(acts[1].why, "pressure gone, no resident target"));
	v.limit_bytes = 200 * MiB;
	v.resident_target_bytes = UINT64_MAX;
	/* Without swap (none attached, or turned off in the config), the
	 * balloon works alone: no resident target, no cancel. */
	for (int off = 0; off < 2; off++) {
		struct rf_policy_default q;
		struct rf_policy_config qc;
		struct rf_policy_vm w = v;

		rf_policy_config_init(&qc);
		qc.swap = off ? false : true;
		rf_policy_default_init(&q, &qc);
		w.has_swap = off;
		w.host_bytes = 300 * MiB;
		w.ballooned_bytes = 10 * MiB;
		w.balloon_target_bytes = 100 * MiB;
		in.vms = &w;
		in.now_ns = 1;
		assert_int_equal(rf_policy_default_decide(&q, &in, acts, 16, &n, &st), 0);
		in.now_ns = 1 + 5000 * MS;
		assert_int_equal(rf_policy_default_decide(&q, &in, acts, 16, &n, &st), 0);
		for (unsigned int i = 0; i < n; i++) {
			assert_int_not_equal(acts[i].kind, RF_POLICY_SET_SWAP);
			if (acts[i].kind == RF_POLICY_SET_BALLOON)
				assert_true(acts[i].value >= 100 * MiB);
		}
		in.vms = &v;
	}
	/* Pressure: the scan rate goes up once. */
	in.capacity_bytes = 300 * MiB;
	v.limit_bytes = UINT64_MAX;
	assert_int_equal(rf_policy_default_decide(&p, &in, acts, 16, &n, &st), 0);
	assert_int_equal(st, RF_MEM_LOW);
	assert_int_equal(acts[0].kind, RF_POLICY_SET_SCAN_RATE);
	assert_int_equal(acts[0].value, 200000);
	assert_int_equal(rf_policy_default_decide(&p, &in, acts, 16, &n, &st), 0);
	for (unsigned int i = 0; i < n; i++)
		assert_int_not_equal(acts[i].kind, RF_POLICY_SET_SCAN_RATE);
	/* The balloon never leaves the guest less than its floor. */
	for (unsigned int i = 0; i < n; i++)
		if (acts[i].kind == RF_POLICY_SET_BALLOON)
			assert_true(acts[i].value <= 512 * MiB - 32 * MiB);
}

/* ---- the runner, through the engine ---- */

struct fake_act {
	unsigned int balloon, swap, rate;
	uint64_t last_balloon, last_rate;
	int fail_swap;
};

static int fa_balloon(void *arg, rf_vm *vm, uint64_t bytes)
{
	struct fake_act *f = arg;

	assert_non_null(vm);
	f->balloon++;
	f->last_balloon = bytes;
	return 0;
}

static int fa_swap(void *arg, rf_vm *vm, uint64_t bytes)
{
	struct fake_act *f = arg;

	(void)vm;
	(void)bytes;
	f->swap++;
	return f->fail_swap ? -ENOSPC : 0;
}

static int fa_rate(void *arg, rf_engine *e, uint64_t pps)
{
	struct fake_act *f = arg;

	assert_non_null(e);
	f->rate++;
	f->last_rate = pps;
	return 0;
}

static enum rf_mem_state my_state = RF_MEM_SOFT;

/* A policy that asks to balloon the first VM by 1 MiB and swap 2 MiB. */
static int my_policy(void *arg, const struct rf_policy_reading *in, struct rf_policy_action *acts,
		     unsigned int max, unsigned int *n, enum rf_mem_state *st)
{
	unsigned int *calls = arg;

	(*calls)++;
	assert_true(max >= 3);
	assert_int_equal(in->nr_vms, 1);
	memset(acts, 0, 3 * sizeof(*acts));
	acts[0].kind = RF_POLICY_SET_BALLOON;
	acts[0].value = MiB;
	snprintf(acts[0].why, sizeof(acts[0].why), "because I say so");
	acts[1].kind = RF_POLICY_SET_SWAP;
	acts[1].value = 2 * MiB;
	snprintf(acts[1].why, sizeof(acts[1].why), "swap it");
	acts[2].kind = RF_POLICY_SET_SWAP;
	acts[2].vm = 7; /* no such VM: dropped */
	*n = 3;
	*st = my_state;
	return 0;
}

static void test_runner(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	rf_vm *vm = rf_test_vm(e, "vm0", 16 * MiB, NULL);
	struct fake_act f = {0};
	struct rf_policy_actuators acts = {sizeof(acts), fa_balloon, fa_swap, fa_rate, &f};
	struct rf_policy_counters pc = {.size = sizeof(pc)};
	struct rf_vm_breakdown b = {.size = sizeof(b)};
	unsigned int calls = 0;

	(void)state;
	(void)vm;
	assert_int_equal(rf_policy_set_actuators(e, &acts), 0);
	/* Default policy on an idle host: one action, the idle scan rate. */
	assert_int_equal(rf_policy_tick(e), 0);
	assert_int_equal(f.rate, 1);
	assert_int_equal(f.last_rate, 0);
	assert_log_contains(&log, "ramfold: policy: host: scan-rate 0 -> 0 pages/s: high");

	/* A custom policy: each action logged in one line and counted. */
	f.fail_swap = 1;
	assert_int_equal(rf_policy_set(e, my_policy, &calls), 0);
	assert_int_equal(rf_policy_tick(e), 0);
	assert_int_equal(calls, 1);
	assert_int_equal(f.balloon, 1);
	assert_int_equal(f.last_balloon, MiB);
	assert_int_equal(f.swap, 1);
	assert_int_equal(rf_policy_counters(e, &pc), 0);
	assert_int_equal(pc.ticks, 2);
	assert_int_equal(pc.state, RF_MEM_SOFT);
	assert_int_equal(pc.transitions, 1);
	assert_int_equal(pc.actions[RF_POLICY_SET_BALLOON], 1);
	assert_int_equal(pc.actions[RF_POLICY_SET_SWAP], 1);
	assert_int_equal(pc.failed[RF_POLICY_SET_SWAP], 1);
	assert_int_equal(pc.balloon_bytes_asked, MiB);
	assert_log_contains(&log, "ramfold: policy: action 2 is malformed, dropped");
	/* The balloon target asked for is remembered by the ledger. */
	assert_int_equal(rf_vm_breakdown(vm, &b), 0);
	assert_int_equal(b.balloon_target_bytes, MiB);
	assert_int_equal(b.resident_target_bytes, UINT64_MAX); /* that one failed */

	/* LOW refuses new VMs: admission reads the policy's state. */
	{
		rf_vm *x = NULL;
		struct rf_vm_config vc;

		rf_vm_config_init(&vc);
		vc.ram_bytes = MiB;
		assert_int_equal(rf_vm_new(e, "x", &vc, &x), 0);
		rf_vm_free(x);
		my_state = RF_MEM_LOW;
		assert_int_equal(rf_policy_tick(e), 0);
		assert_int_equal(rf_vm_new(e, "x", &vc, &x), -ENOMEM);
		assert_null(x);
		assert_log_contains(&log,
				    "x: vm_new: refused: host is in the low free-memory state");
	}
	/* Back to the default. */
	assert_int_equal(rf_policy_set(e, NULL, NULL), 0);
	assert_int_equal(rf_policy_tick(e), 0);
	assert_int_equal(calls, 2);
	assert_int_equal(rf_policy_counters(e, &pc), 0);
	assert_int_equal(pc.state, RF_MEM_HIGH);
	assert_int_equal(pc.transitions, 3);
	rf_engine_free(e);
}

static void test_tick_thread(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	struct fake_act f = {0};
	struct rf_policy_actuators acts = {sizeof(acts), fa_balloon, fa_swap, fa_rate, &f};
	struct rf_policy_counters pc = {.size = sizeof(pc)};
	struct rf_policy_config c;

	(void)state;
	rf_test_vm(e, "vm0", 8 * MiB, NULL);
	assert_int_equal(rf_policy_set_actuators(e, &acts), 0);
	assert_int_equal(rf_policy_start(e, 50), -EINVAL);
	assert_log_contains(&log, "tick period 50 ms outside 100..1000");
	assert_int_equal(rf_policy_start(e, 2000), -EINVAL);
	rf_policy_config_init(&c);
	c.low_bp = c.hard_bp;
	assert_int_equal(rf_policy_configure(e, &c), -EINVAL);
	rf_policy_config_init(&c);
	c.deflate_hold_ms = 3600001;
	assert_int_equal(rf_policy_configure(e, &c), -EINVAL);
	assert_log_contains(&log, "deflate_hold_ms at most 3600000");
	rf_policy_config_init(&c);
	assert_int_equal(rf_policy_configure(e, &c), 0);
	assert_int_equal(rf_policy_start(e, 100), 0);
	assert_int_equal(rf_policy_start(e, 100), -EALREADY);
	usleep(450 * 1000);
	rf_policy_stop(e);
	assert_int_equal(rf_policy_counters(e, &pc), 0);
	assert_true(pc.ticks >= 3 && pc.ticks <= 6);
	rf_policy_stop(e); /* twice is fine */
	/* Left running: rf_engine_free stops it. */
	assert_int_equal(rf_policy_start(e, 100), 0);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_states_hysteresis),
	    cmocka_unit_test(test_share_waterfill),
	    cmocka_unit_test(test_idle_tax_weight),
	    cmocka_unit_test(test_scripted_pressure),
	    cmocka_unit_test(test_swap_after_grace),
	    cmocka_unit_test(test_deflate_hold),
	    cmocka_unit_test(test_guest_oom_deflate),
	    cmocka_unit_test(test_limit_in_high_and_scan_rate),
	    cmocka_unit_test(test_runner),
	    cmocka_unit_test(test_tick_thread),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
