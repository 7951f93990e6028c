/* SPDX-License-Identifier: MIT */
/*
 * The overcommit ledger: each VM's contract (reservation, limit, shares),
 * admission control, and the pure arithmetic that turns the page-state
 * table's counters and a pagemap walk into a breakdown and an audit verdict.
 *
 * Admission control answers one question: can the host still guarantee every
 * reservation, and stay within the configured overcommit ratio, if this VM
 * is created, or its reservation or its size (rf_vm_set_ram_bytes) grows?
 * Reservations are guarantees, so their sum may not exceed capacity minus
 * what the host keeps for itself. VM sizes
 * are promises, not guarantees: they may exceed capacity (that is the point
 * of overcommit) up to the optional ratio. While the policy says the host is
 * in the LOW free-memory state, nothing new is admitted at all.
 *
 * Shrinking is always allowed: lowering a reservation or a size can only
 * make room (a size may not go below the reservation, though).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "abi.h"
#include "internal.h"
#include "ledger.h"
#include "policy.h"

#define MiB (1024.0 * 1024.0)

RF_EXPORT const char *rf_mem_state_name(enum rf_mem_state s)
{
	static const char *const names[] = {"high", "soft", "hard", "low"};

	return (unsigned int)s < 4 ? names[s] : "?";
}

const char *rf_ledger_fmt_bytes(uint64_t b, char *buf, size_t len)
{
	if (b >= (1ull << 30))
		snprintf(buf, len, "%.2f GiB", (double)b / (1024.0 * MiB));
	else if (b >= (1ull << 20))
		snprintf(buf, len, "%.1f MiB", (double)b / MiB);
	else
		snprintf(buf, len, "%" PRIu64 " KiB", b >> 10);
	return buf;
}

/* ---- pure arithmetic ---- */

int rf_ledger_admit(const struct rf_admission *a, char *why, size_t len)
{
	uint64_t guaranteed, reserved, promised;
	char b1[32], b2[32], b3[32];

	why[0] = '\0';
	if (!a->growing && !a->promise_growing)
		return 0;
	if (a->state == RF_MEM_LOW) {
		snprintf(why, len, "host is in the low free-memory state: no VM may be %s",
			 a->creating ? "created" : "grown");
		return -ENOMEM;
	}
	guaranteed = a->capacity > a->host_reserved ? a->capacity - a->host_reserved : 0;
	reserved = a->reserved_others + a->reservation;
	if (a->growing && (reserved < a->reserved_others || reserved > guaranteed)) {
		snprintf(why, len,
			 "reservation %s cannot be covered: %s already reserved of %s the host can "
			 "guarantee",
			 rf_ledger_fmt_bytes(a->reservation, b1, sizeof(b1)),
			 rf_ledger_fmt_bytes(a->reserved_others, b2, sizeof(b2)),
			 rf_ledger_fmt_bytes(guaranteed, b3, sizeof(b3)));
		return -ENOMEM;
	}
	if ((a->creating || a->promise_growing) && a->max_overcommit_permille) {
		promised = a->promised_others + a->promised;
		/* promised / capacity > max / 1000, without overflow for sane sizes */
		if (promised < a->promised_others ||
		    (double)promised * 1000.0 >
			(double)a->capacity * (double)a->max_overcommit_permille) {
			snprintf(why, len,
				 "%s %s would promise %.2fx the host's %s (maximum overcommit "
				 "%.2fx)",
				 rf_ledger_fmt_bytes(a->promised, b1, sizeof(b1)),
				 a->creating ? "more" : "for this VM",
				 (double)promised / (double)a->capacity,
				 rf_ledger_fmt_bytes(a->capacity, b2, sizeof(b2)),
				 a->max_overcommit_permille / 1000.0);
			return -ENOMEM;
		}
	}
	return 0;
}

static uint64_t min_u64(uint64_t a, uint64_t b)
{
	return a < b ? a : b;
}

void rf_breakdown_compute(const uint64_t counters[RF_PAGE_NSTATES], const struct rf_ledger_walk *w,
			  uint64_t promised, uint64_t mapped, uint64_t metadata,
			  uint64_t compressed_host, struct rf_vm_breakdown *out)
{
	uint64_t drift[RF_PAGE_NSTATES] = {0}, in_state[RF_PAGE_NSTATES], drift_total = 0;
	const uint64_t P = RF_PAGE_SIZE;

	/*
	 * The counters say how many pages are in each state; the walk says
	 * which of them are resident. A page resident in a state that is
	 * supposed to cost nothing (zero, ballooned, reported, swapped) or an
	 * anonymous page in a MERGED entry (a copy-on-write break) is drift:
	 * it costs a page and is moved out of its category, so the categories
	 * still add up to the promised size.
	 */
	for (int s = 0; s < RF_PAGE_NSTATES; s++) {
		uint64_t d = 0;

		if (s == RF_PAGE_MERGED)
			d = w->anon[s];
		else if (s != RF_PAGE_PRIVATE)
			d = w->resident[s];
		drift[s] = min_u64(d, counters[s]);
		in_state[s] = counters[s] - drift[s];
		drift_total += drift[s];
	}
	out->promised_bytes = promised;
	out->private_bytes = min_u64(w->anon[RF_PAGE_PRIVATE], counters[RF_PAGE_PRIVATE]) * P;
	out->untouched_bytes = counters[RF_PAGE_PRIVATE] * P - out->private_bytes;
	out->shared_bytes = in_state[RF_PAGE_MERGED] * P;
	out->zero_bytes = in_state[RF_PAGE_ZERO] * P;
	out->ballooned_bytes = in_state[RF_PAGE_BALLOONED] * P;
	out->free_reported_bytes = in_state[RF_PAGE_FREE_REPORTED] * P;
	out->swapped_file_bytes = in_state[RF_PAGE_SWAPPED] * P;
	out->swapped_compressed_bytes = in_state[RF_PAGE_COMPRESSED] * P;
	out->drift_bytes = drift_total * P;
	out->unmapped_bytes = promised > mapped ? promised - mapped : 0;

	out->shared_resident_bytes =
	    min_u64(w->resident[RF_PAGE_MERGED] -
			min_u64(w->anon[RF_PAGE_MERGED], w->resident[RF_PAGE_MERGED]),
		    in_state[RF_PAGE_MERGED]) *
	    P;
	out->shared_fair_bytes = w->shared_fair_milli * P / 1000;
	if (out->shared_fair_bytes > out->shared_resident_bytes)
		out->shared_fair_bytes = out->shared_resident_bytes;
	out->compressed_host_bytes = compressed_host;
	out->metadata_bytes = metadata;
	out->host_bytes = out->private_bytes + out->drift_bytes + out->shared_fair_bytes +
			  compressed_host + metadata;

	out->saved.dedup = out->shared_bytes - out->shared_fair_bytes;
	out->saved.zero = out->zero_bytes;
	out->saved.balloon = out->ballooned_bytes;
	out->saved.free_report = out->free_reported_bytes;
	out->saved.swap = out->swapped_file_bytes + out->swapped_compressed_bytes;
	out->saved.swap = out->saved.swap > compressed_host ? out->saved.swap - compressed_host : 0;
}

static uint64_t absdiff(uint64_t a, uint64_t b)
{
	return a > b ? a - b : b - a;
}

int rf_ledger_compare(const struct rf_ledger_check *c, char *why, size_t len)
{
	uint64_t tol_pages =
	    rf_ledger_tolerance(c->mapped_bytes, c->pct, c->slack_bytes) >> RF_PAGE_SHIFT;
	uint64_t tol;
	char b1[32], b2[32], b3[32];

	why[0] = '\0';
	/* The counters move with every transition; a walk recounts them. */
	for (int s = 0; s < RF_PAGE_NSTATES; s++) {
		if (absdiff(c->counters[s], c->walked[s]) > tol_pages) {
			snprintf(why, len,
				 "%s: ledger: the counters say %" PRIu64 " %s pages, the table "
				 "holds %" PRIu64,
				 c->name, c->counters[s], rf_page_state_name(s), c->walked[s]);
			return -EIO;
		}
	}
	/* Pages the table says are gone (ballooned, swapped) are not resident. */
	tol = rf_ledger_tolerance(c->mapped_bytes, c->pct, c->slack_bytes);
	if (c->forbidden_resident_bytes > tol) {
		snprintf(why, len,
			 "%s: ledger: %s resident in pages the table says are ballooned or "
			 "swapped out (tolerance %s)",
			 c->name, rf_ledger_fmt_bytes(c->forbidden_resident_bytes, b1, sizeof(b1)),
			 rf_ledger_fmt_bytes(tol, b2, sizeof(b2)));
		return -EIO;
	}
	if (c->skip_kernel)
		return 0;
	tol = rf_ledger_tolerance(c->ledger_resident_bytes > c->kernel_rss_bytes
				      ? c->ledger_resident_bytes
				      : c->kernel_rss_bytes,
				  c->pct, c->slack_bytes);
	if (absdiff(c->ledger_resident_bytes, c->kernel_rss_bytes) > tol) {
		snprintf(why, len,
			 "%s: ledger: %s resident by the ledger, %s by the kernel (smaps Rss), "
			 "tolerance %s",
			 c->name, rf_ledger_fmt_bytes(c->ledger_resident_bytes, b1, sizeof(b1)),
			 rf_ledger_fmt_bytes(c->kernel_rss_bytes, b2, sizeof(b2)),
			 rf_ledger_fmt_bytes(tol, b3, sizeof(b3)));
		return -EIO;
	}
	/* Pss divides a store page among all its mappings, the store's own
	 * included, so it can only be at or below the ledger's fair cost. */
	tol = rf_ledger_tolerance(c->ledger_fair_bytes, c->pct, c->slack_bytes);
	if (c->kernel_pss_bytes > c->ledger_fair_bytes + tol) {
		snprintf(why, len,
			 "%s: ledger: fair cost %s, but the kernel charges %s (smaps Pss), "
			 "tolerance %s",
			 c->name, rf_ledger_fmt_bytes(c->ledger_fair_bytes, b1, sizeof(b1)),
			 rf_ledger_fmt_bytes(c->kernel_pss_bytes, b2, sizeof(b2)),
			 rf_ledger_fmt_bytes(tol, b3, sizeof(b3)));
		return -EIO;
	}
	return 0;
}

/* ---- engine and VM state ---- */

RF_EXPORT void rf_ledger_config_init(struct rf_ledger_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->audit_pct = 2;
	cfg->audit_slack_bytes = 1u << 20;
}
RF_VERSION_0_3(rf_ledger_config_init);

struct rf_ledger *rf_ledger_get(rf_engine *e)
{
	struct rf_ledger *l = __atomic_load_n(&e->ledger, __ATOMIC_ACQUIRE), *expected = NULL;

	if (l)
		return l;
	l = rf_zalloc(e, sizeof(*l));
	if (!l)
		return NULL;
	pthread_rwlock_init(&l->gate, NULL);
	pthread_mutex_init(&l->lock, NULL);
	rf_ledger_config_init(&l->cfg);
	if (!__atomic_compare_exchange_n(&e->ledger, &expected, l, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		pthread_rwlock_destroy(&l->gate);
		pthread_mutex_destroy(&l->lock);
		rf_free(e, l);
		return expected;
	}
	return l;
}

RF_EXPORT int rf_ledger_configure(rf_engine *e, const struct rf_ledger_config *user)
{
	struct rf_ledger_config full, *cfg = &full;
	struct rf_ledger *l;
	int err;

	if (!e || !user)
		return -EINVAL;
	rf_ledger_config_init(&full);
	err = rf_struct_in(e, &full, sizeof(full), user,
			   RF_STRUCT_MIN(struct rf_ledger_config, host_reserved_bytes),
			   "rf_ledger_config");
	if (err)
		return err;
	if (cfg->audit_pct > 50)
		return -EINVAL;
	l = rf_ledger_get(e);
	if (!l)
		return -ENOMEM;
	pthread_mutex_lock(&l->lock);
	l->cfg = *cfg;
	pthread_mutex_unlock(&l->lock);
	return 0;
}
RF_VERSION_0_3(rf_ledger_configure);

/* The first hook rf_vm_free() runs: wait out any tick using @vm, then detach. */
static void ledger_vm_free(rf_vm *vm, void *arg)
{
	struct rf_ledger *l = arg;
	struct rf_ledger_vm *lv;

	pthread_rwlock_wrlock(&l->gate);
	pthread_mutex_lock(&vm->e->vms_lock);
	lv = vm->ledger;
	vm->ledger = NULL;
	pthread_mutex_unlock(&vm->e->vms_lock);
	pthread_rwlock_unlock(&l->gate);
	if (lv) {
		atomic_fetch_sub(&vm->metadata_bytes, sizeof(*lv));
		rf_free(vm->e, lv);
	}
}

/*
 * Called by rf_engine_free() before it frees the VMs: stop the policy, then
 * detach the ledger from every VM (its hook would otherwise run after the
 * ledger is gone) and free it.
 */
static void ledger_engine_free(rf_engine *e)
{
	struct rf_ledger *l = e->ledger;

	if (!l)
		return;
	rf_policy_runner_free(e, l);
	pthread_mutex_lock(&e->vms_lock);
	for (rf_vm *vm = __rf_engine_vm_first(e); vm; vm = __rf_engine_vm_next(vm)) {
		rf_vm_hooks_forget_free(vm, ledger_vm_free);
		if (vm->ledger) {
			atomic_fetch_sub(&vm->metadata_bytes, sizeof(*vm->ledger));
			rf_free(e, vm->ledger);
			vm->ledger = NULL;
		}
	}
	pthread_mutex_unlock(&e->vms_lock);
	pthread_rwlock_destroy(&l->gate);
	pthread_mutex_destroy(&l->lock);
	rf_free(e, l);
	e->ledger = NULL;
}

/* Sums over the VMs linked into @e, except @skip. Caller holds vms_lock. */
static void __sum_others(rf_engine *e, const rf_vm *skip, uint64_t *reserved, uint64_t *promised)
{
	*reserved = *promised = 0;
	for (rf_vm *it = __rf_engine_vm_first(e); it; it = __rf_engine_vm_next(it)) {
		if (it == skip)
			continue;
		*promised += it->cfg.ram_bytes;
		if (it->ledger)
			*reserved += atomic_load(&it->ledger->reservation);
	}
}

static void fill_admission(struct rf_ledger *l, rf_engine *e, struct rf_admission *a)
{
	memset(a, 0, sizeof(*a));
	a->capacity = rf_engine_capacity(e);
	pthread_mutex_lock(&l->lock);
	a->host_reserved = l->cfg.host_reserved_bytes;
	a->max_overcommit_permille = l->cfg.max_overcommit_permille;
	pthread_mutex_unlock(&l->lock);
	a->state = (enum rf_mem_state)atomic_load(&l->state);
}

static int check_contract(rf_engine *e, const char *name, uint64_t promised, uint64_t reservation,
			  uint64_t limit, uint32_t shares)
{
	if (reservation & (RF_PAGE_SIZE - 1) || reservation > promised) {
		rf_log(e, RF_LOG_ERR,
		       "%s: ledger: reservation %" PRIu64 " bytes must be page-aligned and at most "
		       "the promised %" PRIu64,
		       name, reservation, promised);
		return -EINVAL;
	}
	if (limit && limit != UINT64_MAX && limit < reservation) {
		rf_log(e, RF_LOG_ERR,
		       "%s: ledger: limit %" PRIu64 " bytes is below the reservation %" PRIu64,
		       name, limit, reservation);
		return -EINVAL;
	}
	if (shares > RF_SHARES_MAX) {
		rf_log(e, RF_LOG_ERR, "%s: ledger: shares %u out of range 1..%u", name, shares,
		       RF_SHARES_MAX);
		return -EINVAL;
	}
	return 0;
}

static int ledger_admit_vm(rf_engine *e, rf_vm *vm)
{
	struct rf_ledger *l = rf_ledger_get(e);
	struct rf_vm_hooks h = {.vm_free = ledger_vm_free};
	struct rf_ledger_vm *lv;
	struct rf_admission a;
	char why[256];
	int err;

	if (!l)
		return -ENOMEM;
	err = check_contract(e, vm->name, vm->cfg.ram_bytes, vm->cfg.reservation_bytes,
			     vm->cfg.limit_bytes, vm->cfg.shares);
	if (err)
		return err;
	fill_admission(l, e, &a);
	__sum_others(e, vm, &a.reserved_others, &a.promised_others);
	a.reservation = vm->cfg.reservation_bytes;
	a.promised = vm->cfg.ram_bytes;
	a.creating = a.growing = true;
	err = rf_ledger_admit(&a, why, sizeof(why));
	if (err) {
		atomic_fetch_add(&l->admissions_refused, 1);
		rf_log(e, RF_LOG_ERR, "%s: vm_new: refused: %s", vm->name, why);
		return err;
	}
	lv = rf_zalloc(e, sizeof(*lv));
	if (!lv)
		return -ENOMEM;
	atomic_store(&lv->reservation, vm->cfg.reservation_bytes);
	atomic_store(&lv->limit, vm->cfg.limit_bytes ? vm->cfg.limit_bytes : UINT64_MAX);
	atomic_store(&lv->shares, vm->cfg.shares ? vm->cfg.shares : RF_SHARES_DEFAULT);
	atomic_store(&lv->guest_free, UINT64_MAX);
	atomic_store(&lv->resident_target, UINT64_MAX);
	h.arg = l;
	err = rf_vm_add_hooks(vm, &h);
	if (err) {
		rf_free(e, lv);
		return err;
	}
	atomic_fetch_add(&vm->metadata_bytes, sizeof(*lv));
	vm->ledger = lv;
	return 0;
}

RF_EXPORT int rf_vm_set_reservation(rf_vm *vm, uint64_t bytes)
{
	struct rf_ledger *l;
	struct rf_admission a;
	char why[256];
	uint64_t old;
	int err;

	if (!vm || !vm->ledger)
		return -EINVAL;
	l = rf_ledger_get(vm->e);
	if (!l)
		return -ENOMEM;
	/* vms_lock serialises admission decisions (rf_vm_new holds it too):
	 * two VMs growing at once cannot both take the last free bytes. It
	 * also holds the VM's size still (rf_vm_set_ram_bytes). */
	pthread_mutex_lock(&vm->e->vms_lock);
	err = check_contract(vm->e, vm->name, vm->cfg.ram_bytes, bytes, 0, 0);
	if (err) {
		pthread_mutex_unlock(&vm->e->vms_lock);
		return err;
	}
	old = atomic_load(&vm->ledger->reservation);
	if (bytes > atomic_load(&vm->ledger->limit)) {
		pthread_mutex_unlock(&vm->e->vms_lock);
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: ledger: reservation %" PRIu64 " bytes is above the limit %" PRIu64,
		       vm->name, bytes, atomic_load(&vm->ledger->limit));
		return -EINVAL;
	}
	fill_admission(l, vm->e, &a);
	__sum_others(vm->e, vm, &a.reserved_others, &a.promised_others);
	a.reservation = bytes;
	a.promised = vm->cfg.ram_bytes;
	a.growing = bytes > old;
	err = rf_ledger_admit(&a, why, sizeof(why));
	if (!err)
		atomic_store(&vm->ledger->reservation, bytes);
	pthread_mutex_unlock(&vm->e->vms_lock);
	if (err) {
		atomic_fetch_add(&l->admissions_refused, 1);
		rf_log(vm->e, RF_LOG_ERR, "%s: set_reservation: refused: %s", vm->name, why);
	}
	return err;
}

/*
 * rf_vm_set_ram_bytes(), vms_lock held: admit @bytes as @vm's size. Never
 * below its reservation (a guarantee larger than the promise means
 * nothing; the embedder lowers the reservation first). Larger goes through
 * admission as a new VM's size does; smaller is always admitted.
 */
static int ledger_resize_vm(rf_engine *e, rf_vm *vm, uint64_t bytes)
{
	struct rf_ledger *l = e->ledger;
	struct rf_ledger_vm *lv = vm->ledger;
	struct rf_admission a;
	char why[256], b1[32], b2[32];
	int err;

	if (!l || !lv)
		return 0; /* the ledger is gone (engine teardown): nothing to keep */
	if (bytes < atomic_load(&lv->reservation)) {
		rf_log(e, RF_LOG_ERR,
		       "%s: set_ram_bytes: %s is below the reservation %s (lower it first: "
		       "rf_vm_set_reservation)",
		       vm->name, rf_ledger_fmt_bytes(bytes, b1, sizeof(b1)),
		       rf_ledger_fmt_bytes(atomic_load(&lv->reservation), b2, sizeof(b2)));
		return -EINVAL;
	}
	fill_admission(l, e, &a);
	__sum_others(e, vm, &a.reserved_others, &a.promised_others);
	a.reservation = atomic_load(&lv->reservation);
	a.promised = bytes;
	a.promise_growing = bytes > vm->cfg.ram_bytes;
	err = rf_ledger_admit(&a, why, sizeof(why));
	if (err) {
		atomic_fetch_add(&l->admissions_refused, 1);
		rf_log(e, RF_LOG_ERR, "%s: set_ram_bytes: %s refused: %s", vm->name,
		       rf_ledger_fmt_bytes(bytes, b1, sizeof(b1)), why);
	}
	return err;
}

RF_EXPORT int rf_vm_set_limit(rf_vm *vm, uint64_t bytes)
{
	uint64_t limit;

	if (!vm || !vm->ledger)
		return -EINVAL;
	limit = bytes ? bytes : UINT64_MAX;
	if (limit < atomic_load(&vm->ledger->reservation)) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: ledger: limit %" PRIu64 " bytes is below the reservation %" PRIu64,
		       vm->name, bytes, atomic_load(&vm->ledger->reservation));
		return -EINVAL;
	}
	atomic_store(&vm->ledger->limit, limit);
	return 0;
}

RF_EXPORT int rf_vm_set_shares(rf_vm *vm, uint32_t shares)
{
	if (!vm || !vm->ledger)
		return -EINVAL;
	if (shares > RF_SHARES_MAX) {
		rf_log(vm->e, RF_LOG_ERR, "%s: ledger: shares %u out of range 1..%u", vm->name,
		       shares, RF_SHARES_MAX);
		return -EINVAL;
	}
	atomic_store(&vm->ledger->shares, shares ? shares : RF_SHARES_DEFAULT);
	return 0;
}

RF_EXPORT int rf_vm_set_guest_free(rf_vm *vm, uint64_t bytes)
{
	if (!vm || !vm->ledger)
		return -EINVAL;
	atomic_store(&vm->ledger->guest_free, bytes);
	return 0;
}

/* Stopped first (its policy drives dedup); admits every VM. */
const struct rf_engine_module rf_ledger_module = {
    .name = "ledger",
    .vm_admit = ledger_admit_vm,
    .vm_resize = ledger_resize_vm,
    .stop = ledger_engine_free,
};
