/* SPDX-License-Identifier: MIT */
/*
 * The default reclaim policy, pure: a reading in, actions out. No kernel, no
 * locks, no clock (the reading carries the time), so unit tests drive it
 * with made-up readings.
 *
 * 1. Free-memory state. free = capacity - measured use. Thresholds are
 *    fractions of capacity (ESX's defaults: 6%, 4%, 2%, 1%). Falling below a
 *    threshold enters the worse state at once; climbing out of a state needs
 *    free at its own threshold plus the hysteresis (soft not before the high
 *    threshold; one reading may climb several states), so a reading
 *    that hovers at a threshold does not flap between two states.
 *
 * 2. Who gives back how much. Outside the high state the host must get back
 *    goal = used - (capacity - high threshold - hysteresis / 2). What each
 *    VM keeps is found by water-filling:
 *    alloc[i] = clamp(lambda * weight[i], lo[i], hi[i]) with lo = the
 *    reservation (never reclaimed below), hi = the limit (never exceeded),
 *    both at most what the VM holds, and lambda set so the allocations add
 *    up to what the host can hold. The weight is ESX's shares-per-page ratio
 *    turned around:
 *    shares / (active + k * idle) with k = 1 / (1 - idle tax), where idle is
 *    the part of its memory the guest itself reports free (balloon stats).
 *    With equal shares, a guest that reports much free memory is allotted
 *    less, so it gives more back. A VM above its limit is reclaimed in every
 *    state, including high.
 *
 * 3. How. The balloon first: a VM's balloon target grows by its excess
 *    (what it holds above its allocation), counting inflation already asked
 *    for and not yet done, never past what the guest reports free less
 *    16 MiB, never leaving the guest less than max(reservation,
 *    min_guest_bytes). Swap only in the hard and low states or above a
 *    limit, and only for the excess the balloon has not removed after
 *    balloon_grace_ms (at once for a VM without a balloon): the VM's
 *    resident target becomes its allocation, and the balloon's pending
 *    inflation is cancelled (swap took it over). Without swap (has_swap 0)
 *    the balloon keeps working alone. In high, with room to spare beyond the
 *    hysteresis and no tick outside high for deflate_hold_ms, balloons are
 *    deflated a step at a time, in the reading's VM order until the room is
 *    used up, never past a VM's limit. The hold works the other way too: a
 *    guest that took pages back from its balloon on its own (deflate on
 *    OOM) has its target lowered to what it kept and is not inflated again
 *    for deflate_hold_ms.
 *
 * 4. Sharing is the cheapest: the dedup scan rate goes up the moment the
 *    host leaves high, and back down to the idle rate when it returns.
 *
 * 5. Proactive reclaim (cfg.proactive, off by default), as Meta's TMO does
 *    with PSI: memory that is cold is reclaimed before the host needs it,
 *    by asking how much the guest suffers rather than how much the host
 *    lacks. Each VM's stall is measured over windows of
 *    proactive_interval_ms: the growth of its fault stall (vCPU-ns, every
 *    wait in ramfold's fault handling) over the window's wall time times
 *    its vCPUs. In the high state, at the end of a window whose stall
 *    share stayed under stall_target_ppm, the VM's resident target (swap)
 *    goes down a small step: proactive_step_permille of what it holds (or
 *    of its target, if lower), scaled by how far under the target the
 *    stall was (half the headroom, half the step), at least 1 MiB, never
 *    below max(reservation, proactive_floor_bytes). As soon as a quarter
 *    window shows the stall above the target, or the guest's balloon stats
 *    report new allocation stalls, the target grows by proactive_grow_pct
 *    (at least 16 MiB) at once, up to "none" (or the limit), and no step
 *    down is taken for proactive_hold_ms: a growth is fast, a shrink slow,
 *    so the target settles just above the VM's working set. The guest's
 *    counter is hostile input: only its going up between two windows
 *    counts (a reset or a guest that stops sending it is no signal), and
 *    the worst a lying guest gets is to keep its own memory, as it would
 *    without this mode. Outside the high state the windows keep rolling
 *    but the pressure states (2, 3) decide alone: they only ever lower a
 *    target, and the proactive mode does not lift what they set until the
 *    stall asks for it; in high it replaces the lift of (3).
 *
 * rf_policy_default_decide() takes these steps in this order: enter_state
 * (1), decide_scan_rate (4), allot (2), then for each VM decide_balloon and
 * decide_swap (3) or decide_proactive (5). Actions come out in that order
 * too: the scan rate first, then each VM's balloon action before its swap
 * action.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include <ramfold/balloon.h>

#include "abi.h"
#include "internal.h"
#include "ledger.h"
#include "policy.h"

/* A reason longer than RF_POLICY_WHY_MAX is cut short on purpose: it is a
 * log phrase, and every number that matters comes first. */
#pragma GCC diagnostic ignored "-Wformat-truncation"

#define MIN_STEP	 (1ull << 20)  /* ignore excesses under 1 MiB: noise */
#define GUEST_FREE_FLOOR (16ull << 20) /* free memory a guest keeps despite the balloon */

RF_EXPORT void rf_policy_config_init(struct rf_policy_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->high_bp = 600;
	cfg->soft_bp = 400;
	cfg->hard_bp = 200;
	cfg->low_bp = 100;
	cfg->hysteresis_bp = 100;
	cfg->idle_tax_pct = 75;
	cfg->balloon_grace_ms = 2000;
	cfg->scan_rate_idle = 0; /* the dedup engine's own configuration */
	cfg->scan_rate_pressure = 200000;
	cfg->min_guest_bytes = 32ull << 20;
	cfg->deflate_step_bytes = 64ull << 20;
	cfg->swap = true;
	cfg->proactive = false;
	cfg->stall_target_ppm = 5000;
	cfg->proactive_interval_ms = 2000;
	cfg->proactive_step_permille = 20;
	cfg->proactive_grow_pct = 25;
	cfg->proactive_hold_ms = 10000;
	cfg->proactive_floor_bytes = 32ull << 20;
	cfg->deflate_hold_ms = 10000;
}
RF_VERSION_0_3(rf_policy_config_init);

int rf_policy_config_check(const struct rf_policy_config *cfg)
{
	if (!cfg ||
	    !(cfg->low_bp < cfg->hard_bp && cfg->hard_bp < cfg->soft_bp &&
	      cfg->soft_bp < cfg->high_bp) ||
	    cfg->high_bp + cfg->hysteresis_bp > 10000 || cfg->idle_tax_pct > 99 ||
	    cfg->deflate_hold_ms > 3600000)
		return -EINVAL;
	if (cfg->proactive &&
	    (cfg->stall_target_ppm == 0 || cfg->stall_target_ppm > 1000000 ||
	     cfg->proactive_interval_ms < 100 || cfg->proactive_interval_ms > 600000 ||
	     cfg->proactive_step_permille == 0 || cfg->proactive_step_permille > 500 ||
	     cfg->proactive_grow_pct == 0 || cfg->proactive_grow_pct > 1000 ||
	     cfg->proactive_hold_ms > 3600000))
		return -EINVAL;
	return 0;
}

void rf_policy_default_init(struct rf_policy_default *p, const struct rf_policy_config *cfg)
{
	memset(p, 0, sizeof(*p));
	if (cfg)
		p->cfg = *cfg;
	else
		rf_policy_config_init(&p->cfg);
	p->state = RF_MEM_HIGH;
}

static uint64_t bp_of(uint64_t capacity, unsigned int bp)
{
	return capacity / 10000 * bp + capacity % 10000 * bp / 10000;
}

/* Entry threshold of a state: free below it enters the state. */
static uint64_t enter_thr(const struct rf_policy_config *c, enum rf_mem_state s, uint64_t cap)
{
	static const unsigned int zero = 0;
	const unsigned int *bp = s == RF_MEM_SOFT   ? &c->soft_bp
				 : s == RF_MEM_HARD ? &c->hard_bp
				 : s == RF_MEM_LOW  ? &c->low_bp
						    : &zero;

	return bp_of(cap, *bp);
}

/* Exit threshold: free at or above it leaves @s for the next better state.
 * Soft is left only at the high threshold (ESX's band between soft and
 * high), the others at their entry threshold plus the hysteresis. */
static uint64_t exit_thr(const struct rf_policy_config *c, enum rf_mem_state s, uint64_t cap)
{
	unsigned int bp = (s == RF_MEM_SOFT   ? c->soft_bp
			   : s == RF_MEM_HARD ? c->hard_bp
					      : c->low_bp) +
			  c->hysteresis_bp;

	if (s == RF_MEM_SOFT && bp < c->high_bp)
		bp = c->high_bp;
	return bp_of(cap, bp);
}

enum rf_mem_state rf_policy_next_state(const struct rf_policy_config *c, enum rf_mem_state cur,
				       uint64_t free_bytes, uint64_t capacity)
{
	enum rf_mem_state raw = RF_MEM_HIGH;

	/* The worst state whose entry threshold the reading is below. */
	for (int s = RF_MEM_SOFT; s <= RF_MEM_LOW; s++)
		if (free_bytes < enter_thr(c, (enum rf_mem_state)s, capacity))
			raw = (enum rf_mem_state)s;
	if (raw >= cur)
		return raw; /* worse, or the same: at once */
	/* Better: climb one state at a time, each past its exit threshold. */
	while (cur > raw && free_bytes >= exit_thr(c, cur, capacity))
		cur = (enum rf_mem_state)(cur - 1);
	return cur;
}

double rf_policy_weight(uint32_t shares, uint64_t promised, uint64_t guest_free,
			unsigned int idle_tax_pct)
{
	double idle = 0.0, k = 1.0 / (1.0 - idle_tax_pct / 100.0);

	if (guest_free != UINT64_MAX && promised)
		idle = guest_free >= promised ? 1.0 : (double)guest_free / (double)promised;
	return (double)(shares ? shares : RF_SHARES_DEFAULT) / ((1.0 - idle) + k * idle);
}

static uint64_t clamp_alloc(double lambda, double w, uint64_t lo, uint64_t hi)
{
	double v = lambda * w;

	if (v <= (double)lo)
		return lo;
	if (v >= (double)hi)
		return hi;
	return (uint64_t)v;
}

void rf_policy_share(uint64_t total, unsigned int n, const double *weight, const uint64_t *lo,
		     const uint64_t *hi, uint64_t *alloc)
{
	double a = 0.0, b = 1.0;
	uint64_t sum_lo = 0, sum_hi = 0;

	for (unsigned int i = 0; i < n; i++) {
		sum_lo += lo[i];
		sum_hi += hi[i] > lo[i] ? hi[i] : lo[i];
	}
	if (total <= sum_lo || total >= sum_hi) {
		for (unsigned int i = 0; i < n; i++)
			alloc[i] = total <= sum_lo ? lo[i] : (hi[i] > lo[i] ? hi[i] : lo[i]);
		return;
	}
	/* Find b with sum(alloc(b)) >= total, then bisect [a, b]. */
	for (;;) {
		uint64_t s = 0;

		for (unsigned int i = 0; i < n; i++)
			s += clamp_alloc(b, weight[i], lo[i], hi[i] > lo[i] ? hi[i] : lo[i]);
		if (s >= total || b > 1e30)
			break;
		b *= 2.0;
	}
	for (int it = 0; it < 200; it++) {
		double m = (a + b) / 2.0;
		uint64_t s = 0;

		for (unsigned int i = 0; i < n; i++)
			s += clamp_alloc(m, weight[i], lo[i], hi[i] > lo[i] ? hi[i] : lo[i]);
		if (s >= total)
			b = m;
		else
			a = m;
	}
	for (unsigned int i = 0; i < n; i++)
		alloc[i] = clamp_alloc(b, weight[i], lo[i], hi[i] > lo[i] ? hi[i] : lo[i]);
}

static struct rf_policy_vm_track *track_of(struct rf_policy_default *p, const char *name)
{
	struct rf_policy_vm_track *free_slot = NULL, *oldest = &p->track[0];

	for (unsigned int i = 0; i < RF_POLICY_MAX_TRACKED; i++) {
		struct rf_policy_vm_track *t = &p->track[i];

		if (t->name[0] && strcmp(t->name, name) == 0)
			return t;
		if (!t->name[0] && !free_slot)
			free_slot = t;
		if (t->seen_tick < oldest->seen_tick)
			oldest = t;
	}
	if (!free_slot)
		free_slot = oldest; /* a VM not seen for longest is gone */
	memset(free_slot, 0, sizeof(*free_slot));
	snprintf(free_slot->name, sizeof(free_slot->name), "%s", name);
	return free_slot;
}

/*
 * One tick of the default policy: the reading, where its actions go, and
 * what the steps below work out for the steps after them.
 */
struct tick {
	struct rf_policy_default *p;
	const struct rf_policy_config *c;
	const struct rf_policy_reading *in;
	struct rf_policy_action *acts;
	unsigned int max;
	unsigned int *n;
	enum rf_mem_state st;
	uint64_t free_b;		       /* capacity - measured use */
	uint64_t high_thr;		       /* the high state's threshold */
	char ctx[96];			       /* "state (free ...)": every reason starts so */
	uint64_t alloc[RF_POLICY_MAX_TRACKED]; /* what each VM may keep */
	uint64_t room; /* free beyond high + hysteresis, what deflating may hand back */
};

static struct rf_policy_action *add_action(struct tick *tk, enum rf_policy_action_kind kind,
					   unsigned int vm, uint64_t value)
{
	struct rf_policy_action *a;

	if (*tk->n >= tk->max)
		return NULL;
	a = &tk->acts[(*tk->n)++];
	memset(a, 0, sizeof(*a));
	a->kind = kind;
	a->vm = vm;
	a->value = value;
	return a;
}

#define PAGE_DOWN(x) ((x) & ~(uint64_t)(RF_PAGE_SIZE - 1))

static inline uint64_t ms_ns(unsigned int ms)
{
	return (uint64_t)ms * 1000000ull;
}

static bool above_limit(const struct rf_policy_vm *v)
{
	return v->host_bytes > v->limit_bytes;
}

/* 1. The free-memory state after this reading, and the phrase that opens
 * every reason given this tick. */
static void enter_state(struct tick *tk)
{
	uint64_t cap = tk->in->capacity_bytes, used = tk->in->used_bytes;
	char fb[32], tb[32];

	tk->free_b = cap > used ? cap - used : 0;
	tk->high_thr = bp_of(cap, tk->c->high_bp);
	tk->st = rf_policy_next_state(tk->c, tk->p->state, tk->free_b, cap);
	tk->p->state = tk->st;
	if (tk->st != RF_MEM_HIGH)
		tk->p->pressure_ns = tk->in->now_ns ? tk->in->now_ns : 1;
	snprintf(tk->ctx, sizeof(tk->ctx), "%s (free %s %s high %s)", rf_mem_state_name(tk->st),
		 rf_ledger_fmt_bytes(tk->free_b, fb, sizeof(fb)),
		 tk->free_b < tk->high_thr ? "<" : ">=",
		 rf_ledger_fmt_bytes(tk->high_thr, tb, sizeof(tb)));
}

/* 4. Sharing first: it costs the guests nothing. The pressure rate outside
 * high, the idle rate in it; asked for only when it changes. */
static void decide_scan_rate(struct tick *tk)
{
	struct rf_policy_default *p = tk->p;
	uint64_t want = tk->st == RF_MEM_HIGH ? tk->c->scan_rate_idle : tk->c->scan_rate_pressure;
	struct rf_policy_action *a;

	if (p->scan_rate_set && want == p->scan_rate)
		return;
	a = add_action(tk, RF_POLICY_SET_SCAN_RATE, 0, want);
	if (a) {
		snprintf(a->why, sizeof(a->why), "%s: dedup at the %s rate", tk->ctx,
			 tk->st == RF_MEM_HIGH ? "idle" : "pressure");
		p->scan_rate_set = true;
		p->scan_rate = want;
	}
}

/* Mark every VM of the reading as seen this tick: a VM's track slot is
 * reused for a new VM once it has been gone longest. */
static void note_vms_seen(struct tick *tk)
{
	for (unsigned int i = 0; i < tk->in->nr_vms; i++)
		track_of(tk->p, tk->in->vms[i].name)->seen_tick = tk->p->tick;
}

/* 2. What each VM may keep: its whole cost (up to its limit) in high, else
 * a water-filled share of what the host can hold. */
static void allot(struct tick *tk)
{
	const struct rf_policy_config *c = tk->c;
	unsigned int nv = tk->in->nr_vms;
	uint64_t cap = tk->in->capacity_bytes, used = tk->in->used_bytes;
	uint64_t lo[RF_POLICY_MAX_TRACKED], hi[RF_POLICY_MAX_TRACKED];
	double w[RF_POLICY_MAX_TRACKED];
	uint64_t goal = 0, sum_cost = 0, total, aim;

	for (unsigned int i = 0; i < nv; i++) {
		const struct rf_policy_vm *v = &tk->in->vms[i];

		lo[i] = v->host_bytes < v->reservation_bytes ? v->host_bytes : v->reservation_bytes;
		hi[i] = v->host_bytes < v->limit_bytes ? v->host_bytes : v->limit_bytes;
		if (hi[i] < lo[i])
			hi[i] = lo[i];
		w[i] = rf_policy_weight(v->shares, v->promised_bytes, v->guest_free_bytes,
					c->idle_tax_pct);
		sum_cost += v->host_bytes;
	}
	/* Aim half the hysteresis above the high threshold: landing exactly on
	 * it would leave rounding on the wrong side, and the deflate room
	 * starts a whole hysteresis above, so the two do not chase each other. */
	aim = tk->high_thr + bp_of(cap, c->hysteresis_bp) / 2;
	if (tk->st != RF_MEM_HIGH && used > cap - aim)
		goal = used - (cap - aim);
	total = sum_cost > goal ? sum_cost - goal : 0;
	if (goal)
		rf_policy_share(total, nv, w, lo, hi, tk->alloc);
	else
		memcpy(tk->alloc, hi, nv * sizeof(*tk->alloc));
}

/* Free memory beyond the high threshold plus the hysteresis: what the
 * balloons may hand back this tick. */
static uint64_t room_to_spare(const struct tick *tk)
{
	uint64_t margin = tk->high_thr + bp_of(tk->in->capacity_bytes, tk->c->hysteresis_bp);

	return tk->free_b > margin ? tk->free_b - margin : 0;
}

/* What VM @i holds above its allocation (none under MIN_STEP, unless it is
 * above its limit), and since when it has (@t->excess_since_ns). */
static uint64_t track_excess(struct tick *tk, unsigned int i, struct rf_policy_vm_track *t)
{
	const struct rf_policy_vm *v = &tk->in->vms[i];
	uint64_t excess = v->host_bytes - tk->alloc[i]; /* alloc <= host_bytes */

	if (excess < MIN_STEP && !(above_limit(v) && excess))
		excess = 0;
	if (!excess)
		t->excess_since_ns = 0;
	else if (!t->excess_since_ns)
		t->excess_since_ns = tk->in->now_ns + 1; /* +1: 0 means "none" */
	return excess;
}

/* "holds X, allotted Y (shares N)": the VM's part of a reason. */
static void describe_vm(const struct tick *tk, unsigned int i, char *buf, size_t len)
{
	const struct rf_policy_vm *v = &tk->in->vms[i];
	char b1[32], b2[32];

	snprintf(buf, len, "holds %s, allotted %s (shares %u%s)",
		 rf_ledger_fmt_bytes(v->host_bytes, b1, sizeof(b1)),
		 rf_ledger_fmt_bytes(tk->alloc[i], b2, sizeof(b2)), v->shares,
		 above_limit(v) ? ", above its limit" : "");
}

/* Balloon: grow by the excess not already asked for. */
static void inflate_balloon(struct tick *tk, unsigned int i, uint64_t excess)
{
	const struct rf_policy_vm *v = &tk->in->vms[i];
	uint64_t floor_guest = v->reservation_bytes > tk->c->min_guest_bytes
				   ? v->reservation_bytes
				   : tk->c->min_guest_bytes;
	uint64_t max_balloon =
	    PAGE_DOWN(v->promised_bytes > floor_guest ? v->promised_bytes - floor_guest : 0);
	uint64_t want = PAGE_DOWN(v->ballooned_bytes + excess);
	struct rf_policy_action *a;
	char why_vm[96], gf[48] = "", b3[32];

	if (want > max_balloon)
		want = max_balloon;
	/* No more than the guest says it has free (less a floor): beyond that
	 * the guest would deflate on OOM and the two would fight. */
	if (v->guest_free_bytes != UINT64_MAX) {
		uint64_t give = v->guest_free_bytes > GUEST_FREE_FLOOR
				    ? v->guest_free_bytes - GUEST_FREE_FLOOR
				    : 0;

		if (want > PAGE_DOWN(v->ballooned_bytes + give))
			want = PAGE_DOWN(v->ballooned_bytes + give);
	}
	if (want <= v->balloon_target_bytes)
		return;
	a = add_action(tk, RF_POLICY_SET_BALLOON, i, want);
	if (!a)
		return;
	describe_vm(tk, i, why_vm, sizeof(why_vm));
	if (v->guest_free_bytes != UINT64_MAX)
		snprintf(gf, sizeof(gf), ", guest reports %s free",
			 rf_ledger_fmt_bytes(v->guest_free_bytes, b3, sizeof(b3)));
	snprintf(a->why, sizeof(a->why), "%s: %s%s", tk->ctx, why_vm, gf);
}

/* Deflate a step, within the room and the limit. */
static void deflate_balloon(struct tick *tk, unsigned int i)
{
	const struct rf_policy_vm *v = &tk->in->vms[i];
	uint64_t step = tk->c->deflate_step_bytes;
	uint64_t head = v->limit_bytes > v->host_bytes ? v->limit_bytes - v->host_bytes : 0;
	struct rf_policy_action *a;
	char b3[32];

	if (step > v->balloon_target_bytes)
		step = v->balloon_target_bytes;
	if (step > tk->room)
		step = tk->room;
	if (step > head)
		step = head;
	step = PAGE_DOWN(step);
	if (!step)
		return;
	a = add_action(tk, RF_POLICY_SET_BALLOON, i, v->balloon_target_bytes - step);
	if (a) {
		snprintf(a->why, sizeof(a->why), "%s: room to spare, %s back to the guest", tk->ctx,
			 rf_ledger_fmt_bytes(step, b3, sizeof(b3)));
		tk->room -= step;
	}
}

/* Pressure was seen less than deflate_hold_ms ago: balloons stay as they
 * are. A guest that allocates and frees in waves takes the host in and out
 * of soft; deflating at once would hand it back pages it faults in anew
 * (through the VM's fault handling, tens of microseconds a page under
 * nested or PVM KVM) before the next wave has them ballooned again. */
static bool deflate_held(const struct tick *tk)
{
	const struct rf_policy_default *p = tk->p;

	return p->pressure_ns && tk->in->now_ns - p->pressure_ns < ms_ns(tk->c->deflate_hold_ms);
}

/*
 * With a hold, the guest's side of it: a guest whose balloon fell below both
 * what it held at the last tick and the target took pages back on its own
 * (deflate on OOM, or a reset): it needs them. Inflating it again at the
 * next tick would have it deflate again, page by page, each time it
 * allocates; so its target comes down to what it kept and it is not
 * inflated for deflate_hold_ms (its excess waits; outside high, swap takes
 * it after the grace as for any VM the balloon does not serve).
 */
static bool note_guest_deflate(struct tick *tk, unsigned int i, struct rf_policy_vm_track *t)
{
	const struct rf_policy_vm *v = &tk->in->vms[i];
	uint64_t below =
	    t->bal_last < v->balloon_target_bytes ? t->bal_last : v->balloon_target_bytes;
	struct rf_policy_action *a;
	char b1[32], b2[32];

	if (!tk->c->deflate_hold_ms || !v->has_balloon || !t->bal_seen ||
	    v->ballooned_bytes + RF_PAGE_SIZE > below)
		return false;
	t->oom_until_ns = tk->in->now_ns + ms_ns(tk->c->deflate_hold_ms);
	a = add_action(tk, RF_POLICY_SET_BALLOON, i, PAGE_DOWN(v->ballooned_bytes));
	if (a)
		snprintf(a->why, sizeof(a->why),
			 "%s: the guest took back %s (deflate on OOM): target down to the %s it "
			 "kept, no inflation for %u ms",
			 tk->ctx,
			 rf_ledger_fmt_bytes(t->bal_last - v->ballooned_bytes, b1, sizeof(b1)),
			 rf_ledger_fmt_bytes(v->ballooned_bytes, b2, sizeof(b2)),
			 tk->c->deflate_hold_ms);
	return true;
}

/* 3a. The balloon: inflated by a VM's excess (unless the guest took pages
 * back on OOM within deflate_hold_ms); in high, with room to spare and no
 * pressure for deflate_hold_ms, deflated a step. */
static void decide_balloon(struct tick *tk, unsigned int i, const struct rf_policy_vm_track *t,
			   uint64_t excess)
{
	const struct rf_policy_vm *v = &tk->in->vms[i];

	if (!v->has_balloon)
		return;
	if (excess && tk->in->now_ns >= t->oom_until_ns)
		inflate_balloon(tk, i, excess);
	else if (tk->st == RF_MEM_HIGH && v->balloon_target_bytes && tk->room && !deflate_held(tk))
		deflate_balloon(tk, i);
}

/* Swap: what the balloon did not get in time. The resident target becomes
 * the allocation. */
static void swap_down(struct tick *tk, unsigned int i)
{
	const struct rf_policy_vm *v = &tk->in->vms[i];
	uint64_t want = PAGE_DOWN(tk->alloc[i]); /* what it may keep resident */
	struct rf_policy_action *a;
	char why_vm[96];

	if (want >= v->resident_target_bytes)
		return;
	a = add_action(tk, RF_POLICY_SET_SWAP, i, want);
	if (a) {
		describe_vm(tk, i, why_vm, sizeof(why_vm));
		snprintf(a->why, sizeof(a->why), "%s: %s, %s", tk->ctx, why_vm,
			 v->has_balloon ? "balloon too slow" : "no balloon");
	}
	/* Swap takes over what the balloon has not got yet: left pending, it
	 * would be reclaimed twice. */
	if (v->has_balloon && v->balloon_target_bytes > PAGE_DOWN(v->ballooned_bytes)) {
		a = add_action(tk, RF_POLICY_SET_BALLOON, i, PAGE_DOWN(v->ballooned_bytes));
		if (a)
			snprintf(a->why, sizeof(a->why), "%s: swap takes over the rest", tk->ctx);
	}
}

/* Pressure gone: lift the target, but never above the limit, or the VM
 * would be swapped down to it again. */
static void lift_swap_target(struct tick *tk, unsigned int i)
{
	const struct rf_policy_vm *v = &tk->in->vms[i];
	uint64_t want =
	    v->limit_bytes >= v->promised_bytes ? UINT64_MAX : PAGE_DOWN(v->limit_bytes);
	struct rf_policy_action *a;

	if (want <= v->resident_target_bytes)
		return;
	a = add_action(tk, RF_POLICY_SET_SWAP, i, want);
	if (a)
		snprintf(a->why, sizeof(a->why), "%s: pressure gone, %s", tk->ctx,
			 want == UINT64_MAX ? "no resident target" : "back to its limit");
}

/* The balloon has had balloon_grace_ms to remove the excess that @t has
 * seen since excess_since_ns. */
static bool balloon_grace_over(const struct tick *tk, const struct rf_policy_vm_track *t)
{
	return tk->in->now_ns + 1 - t->excess_since_ns >= ms_ns(tk->c->balloon_grace_ms);
}

/* 3b. Swap: only in hard and low or above a limit, and only once the
 * balloon had its chance (at once without one); lifted when pressure is
 * gone. */
static void decide_swap(struct tick *tk, unsigned int i, const struct rf_policy_vm_track *t,
			uint64_t excess)
{
	const struct rf_policy_vm *v = &tk->in->vms[i];

	if (excess && v->has_swap && tk->c->swap && (tk->st >= RF_MEM_HARD || above_limit(v)) &&
	    (!v->has_balloon || balloon_grace_over(tk, t)))
		swap_down(tk, i);
	else if (!excess && tk->st == RF_MEM_HIGH && tk->room &&
		 v->resident_target_bytes != UINT64_MAX && !tk->c->proactive)
		lift_swap_target(tk, i); /* the proactive mode lifts on stall instead */
}

/* ---- 5. proactive reclaim ---- */

#define PRO_GROW_MIN (16ull << 20) /* a growth step is at least this */

uint64_t rf_policy_stall_ppm(uint64_t stall_ns, uint64_t wall_ns, uint32_t vcpus)
{
	double ppm;

	if (!wall_ns)
		return 0;
	ppm = (double)stall_ns * 1e6 / ((double)wall_ns * (double)(vcpus ? vcpus : 1));
	return ppm >= 1e12 ? (uint64_t)1e12 : (uint64_t)ppm;
}

/* What a stall window of @t shows now: the stall share in ppm and whether
 * the guest reported new allocation stalls. */
struct pro_window {
	uint64_t wall_ns, ppm;
	bool alloc_stalled;
};

static void pro_open(const struct rf_policy_vm *v, struct rf_policy_vm_track *t, uint64_t now)
{
	t->pro_since_ns = now + 1; /* +1: 0 means "not yet" */
	t->pro_stall_ns = v->stall_ns;
	t->pro_alloc_stalls = v->guest_alloc_stalls;
}

/* Read the window; true when it is to be judged now (a whole window, or a
 * quarter of one that already shows the stall rising), and then opens the
 * next one. */
static bool pro_window_read(const struct tick *tk, const struct rf_policy_vm *v,
			    struct rf_policy_vm_track *t, struct pro_window *w)
{
	uint64_t now = tk->in->now_ns, win = ms_ns(tk->c->proactive_interval_ms);
	uint64_t stall;

	if (!t->pro_since_ns || now + 1 < t->pro_since_ns) {
		pro_open(v, t, now);
		return false;
	}
	w->wall_ns = now + 1 - t->pro_since_ns;
	if (w->wall_ns < win / 4)
		return false;
	/* Ours, monotonic; a VM re-created under the same name starts over. */
	stall = v->stall_ns >= t->pro_stall_ns ? v->stall_ns - t->pro_stall_ns : 0;
	w->ppm = rf_policy_stall_ppm(stall, w->wall_ns, v->vcpus);
	/* The guest's: only a rise between two reports it sent counts. */
	w->alloc_stalled = v->guest_alloc_stalls != RF_BALLOON_STAT_UNSET &&
			   t->pro_alloc_stalls != RF_BALLOON_STAT_UNSET &&
			   v->guest_alloc_stalls > t->pro_alloc_stalls;
	if (w->wall_ns < win && !w->alloc_stalled && w->ppm <= tk->c->stall_target_ppm)
		return false;
	pro_open(v, t, now);
	return true;
}

/* "stall 0.12% < 0.50% over 2.0 s": the window's part of a reason. */
static void describe_stall(const struct tick *tk, const struct pro_window *w, char *buf, size_t len)
{
	snprintf(
	    buf, len, "stall %.2f%% %s %.2f%% of vCPU time over %.1f s%s", (double)w->ppm / 1e4,
	    w->ppm > tk->c->stall_target_ppm ? ">" : "<=", (double)tk->c->stall_target_ppm / 1e4,
	    (double)w->wall_ns / 1e9, w->alloc_stalled ? ", guest reports allocation stalls" : "");
}

/* The stall rose: give memory back at once, and hold off shrinking. */
static void pro_grow(struct tick *tk, unsigned int i, struct rf_policy_vm_track *t,
		     const struct pro_window *w)
{
	const struct rf_policy_vm *v = &tk->in->vms[i];
	uint64_t cur = v->resident_target_bytes, grow, want;
	struct rf_policy_action *a;
	char sw[128], b1[32];

	t->pro_hold_until_ns = tk->in->now_ns + ms_ns(tk->c->proactive_hold_ms);
	if (cur == UINT64_MAX)
		return; /* nothing held back */
	grow = cur / 100 * tk->c->proactive_grow_pct;
	if (grow < PRO_GROW_MIN)
		grow = PRO_GROW_MIN;
	want = PAGE_DOWN(cur + grow);
	if (v->limit_bytes < v->promised_bytes) {
		if (want > PAGE_DOWN(v->limit_bytes))
			want = PAGE_DOWN(v->limit_bytes);
	} else if (want >= v->promised_bytes) {
		want = UINT64_MAX; /* all of it: no target */
	}
	if (want <= cur)
		return;
	a = add_action(tk, RF_POLICY_SET_SWAP, i, want);
	if (!a)
		return;
	tk->p->proactive_grows++;
	describe_stall(tk, w, sw, sizeof(sw));
	snprintf(a->why, sizeof(a->why), "%s: proactive: %s, holds %s: grow", tk->ctx, sw,
		 rf_ledger_fmt_bytes(v->resident_bytes, b1, sizeof(b1)));
}

/* The stall stayed under the target: take a small step, the smaller the
 * closer the stall came to the target. */
static void pro_shrink(struct tick *tk, unsigned int i, const struct pro_window *w)
{
	const struct rf_policy_vm *v = &tk->in->vms[i];
	const struct rf_policy_config *c = tk->c;
	uint64_t cur = v->resident_target_bytes;
	uint64_t base = v->resident_bytes < cur ? v->resident_bytes : cur;
	uint64_t floor = v->reservation_bytes > c->proactive_floor_bytes ? v->reservation_bytes
									 : c->proactive_floor_bytes;
	uint64_t step, want;
	struct rf_policy_action *a;
	char sw[128], b1[32], b2[32];

	/* Nothing above the floor: no target at all, which would start the
	 * VM's swap pager and send its first touches through it for nothing. */
	if (base <= floor)
		return;
	/* step = base * permille * (1 - ppm / target), in that order so no
	 * product overflows (base < 2^50, permille <= 500, ppm <= target). */
	step = base / 1000 * c->proactive_step_permille;
	step = (uint64_t)((double)step * (double)(c->stall_target_ppm - w->ppm) /
			  (double)c->stall_target_ppm);
	if (step < MIN_STEP)
		step = MIN_STEP;
	want = PAGE_DOWN(floor);
	if (base > floor + step)
		want = PAGE_DOWN(base - step);
	if (want >= cur)
		return;
	a = add_action(tk, RF_POLICY_SET_SWAP, i, want);
	if (!a)
		return;
	tk->p->proactive_shrinks++;
	describe_stall(tk, w, sw, sizeof(sw));
	snprintf(a->why, sizeof(a->why), "%s: proactive: %s, holds %s: shrink by %s", tk->ctx, sw,
		 rf_ledger_fmt_bytes(v->resident_bytes, b1, sizeof(b1)),
		 rf_ledger_fmt_bytes(cur == UINT64_MAX ? base - want : cur - want, b2, sizeof(b2)));
}

/* 5. The proactive mode for VM @i: its windows roll in every state; only
 * in high, and with no excess the steps above must remove, does it act. */
static void decide_proactive(struct tick *tk, unsigned int i, struct rf_policy_vm_track *t,
			     uint64_t excess)
{
	const struct rf_policy_vm *v = &tk->in->vms[i];
	struct pro_window w;

	if (!pro_window_read(tk, v, t, &w))
		return;
	if (tk->st != RF_MEM_HIGH || excess || !v->has_swap)
		return;
	if (w.ppm > tk->c->stall_target_ppm || w.alloc_stalled)
		pro_grow(tk, i, t, &w);
	else if (tk->in->now_ns >= t->pro_hold_until_ns)
		pro_shrink(tk, i, &w);
}

int rf_policy_default_decide(void *arg, const struct rf_policy_reading *in,
			     struct rf_policy_action *acts, unsigned int max, unsigned int *n,
			     enum rf_mem_state *state_out)
{
	struct rf_policy_default *p = arg;
	struct tick tk = {.p = p, .c = &p->cfg, .in = in, .acts = acts, .max = max, .n = n};

	*n = 0;
	if (in->nr_vms > RF_POLICY_MAX_TRACKED)
		return -E2BIG;
	p->tick++;
	enter_state(&tk);
	*state_out = tk.st;
	decide_scan_rate(&tk);
	note_vms_seen(&tk);
	allot(&tk);
	tk.room = room_to_spare(&tk);
	for (unsigned int i = 0; i < in->nr_vms; i++) {
		struct rf_policy_vm_track *t = track_of(p, in->vms[i].name);
		uint64_t excess = track_excess(&tk, i, t);

		if (!note_guest_deflate(&tk, i, t))
			decide_balloon(&tk, i, t, excess);
		if (p->cfg.proactive && p->cfg.swap)
			decide_proactive(&tk, i, t, excess);
		decide_swap(&tk, i, t, excess);
		t->bal_seen = true;
		t->bal_last = in->vms[i].ballooned_bytes;
	}
	return 0;
}
