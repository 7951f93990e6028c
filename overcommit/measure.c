/* SPDX-License-Identifier: MIT */
/*
 * Measuring the ledger. rf_ledger_snapshot() takes four steps: under the
 * engine's VM lock, one pass over every VM's page-state table and the
 * matching /proc/self/pagemap entries, with what its balloon and swap report
 * (measure_vms); then the host-wide count of sharers of each store page
 * (count_store_pages, charge_fair_parts); then each VM's breakdown by the
 * pure arithmetic of ledger.c (compute_breakdowns); then the host's totals
 * (sum_host). rf_host_stats() and rf_vm_breakdown() hand out its results,
 * and rf_ledger_audit() compares them with the kernel's.
 *
 * Fair part of a store page: a MERGED page that is present in a guest
 * mapping shows the store page's PFN in pagemap. Collecting the PFNs of all
 * VMs and counting how often each occurs gives the number of guest mappings
 * of every store page, so each mapping is charged 1/sharers of a page and
 * the charges of one store page add up to exactly one page. This is the
 * kernel's own count, not the dedup engine's belief. Without CAP_SYS_ADMIN
 * pagemap hides PFNs; each mapping is then charged a whole page (an upper
 * bound), and the audit's Pss check still holds.
 *
 * The audit reads /proc/self/smaps and attributes to a VM the Rss and Pss
 * of each mapping that lies inside its guest RAM: these are what the kernel
 * charges for the guest's memory, measured apart from the VMM's own.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "abi.h"
#include "../swap/swap_query.h"
#include "compat_linux.h"
#include "internal.h"
#include "ledger.h"
#include "policy.h"

#define WALK_CHUNK 4096

struct pfn_list {
	uint64_t *v;
	size_t n, cap;
};

static int pfn_push(rf_engine *e, struct pfn_list *l, uint64_t pfn)
{
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 1024;
		uint64_t *nv = rf_zalloc(e, cap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		if (l->n)
			memcpy(nv, l->v, l->n * sizeof(*nv));
		rf_free(e, l->v);
		l->v = nv;
		l->cap = cap;
	}
	l->v[l->n++] = pfn;
	return 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Occurrences of @key in sorted @v. */
static size_t count_sorted(const uint64_t *v, size_t n, uint64_t key)
{
	size_t lo = 0, hi = n, first;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid] < key)
			lo = mid + 1;
		else
			hi = mid;
	}
	first = lo;
	hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (v[mid] <= key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo - first;
}

/* Walk @vm's table and pagemap; PFNs of present store pages go to @pfns. */
static int walk_vm(rf_vm *vm, struct rf_ledger_walk *w, struct pfn_list *pfns, uint64_t *ents)
{
	rf_engine *e = vm->e;
	struct rf_region *r;
	int err = 0;

	memset(w, 0, sizeof(*w));
	rf_vm_regions_rdlock(vm);
	for (unsigned int i = 0; !err && (r = __rf_vm_region(vm, i)); i++) {
		for (uint64_t base = 0; base < r->npages && !err; base += WALK_CHUNK) {
			size_t n = r->npages - base < WALK_CHUNK ? r->npages - base : WALK_CHUNK;

			err = rf_pagemap_read(e, rf_region_page(r, base), n, ents);
			for (size_t k = 0; k < n && !err; k++) {
				enum rf_page_state s = rf_pte_state(rf_pte_peek(&r->pte[base + k]));
				uint64_t pm = rf_pagemap_own(r, ents[k]);

				w->pages[s]++;
				if (!rf_pagemap_resident(e, pm))
					continue;
				w->resident[s]++;
				if (!(pm & PM_FILE))
					w->anon[s]++;
				else if (s == RF_PAGE_MERGED)
					err = pfn_push(e, pfns,
						       e->feat.pagemap_pfn ? pm & PM_PFN_MASK : 0);
			}
		}
	}
	rf_vm_regions_unlock(vm);
	return err;
}

static void read_rollup(uint64_t *rss, uint64_t *pss)
{
	char line[256], key[64];
	unsigned long long kb;
	FILE *f = fopen("/proc/self/smaps_rollup", "re");

	*rss = *pss = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63[^:]: %llu kB", key, &kb) != 2)
			continue;
		if (strcmp(key, "Rss") == 0)
			*rss = (uint64_t)kb << 10;
		else if (strcmp(key, "Pss") == 0)
			*pss = (uint64_t)kb << 10;
	}
	fclose(f);
}

void rf_ledger_snap_free(rf_engine *e, struct rf_ledger_snap *s)
{
	rf_free(e, s->vms);
	s->vms = NULL;
	s->nr = 0;
}

/*
 * One VM's figures, engine->vms_lock held: the table's counters, a walk of
 * the table and pagemap (PFNs of present store pages go to @pfns), what its
 * balloon and swap report, and its contract.
 */
static int measure_vm(rf_vm *vm, struct rf_ledger_vm_snap *vs, struct pfn_list *pfns,
		      uint64_t *ents)
{
	struct rf_mech_reading m;
	int err;

	vs->vm = vm;
	snprintf(vs->name, sizeof(vs->name), "%s", vm->name);
	for (int st = 0; st < RF_PAGE_NSTATES; st++)
		vs->counters[st] = atomic_load(&vm->state_pages[st]);
	/* The promise and the mapped bytes together, under the regions lock
	 * (rf_vm_set_ram_bytes changes the promise under it and vms_lock), so
	 * unmapped_bytes is never computed from a promise below the regions. */
	rf_vm_regions_rdlock(vm);
	vs->mapped_bytes = vm->mapped_bytes;
	vs->bd.promised_bytes = vm->cfg.ram_bytes;
	rf_vm_regions_unlock(vm);
	err = walk_vm(vm, &vs->walk, pfns, ents);
	rf_mech_read(vm, &m);
	vs->has_balloon = m.has_balloon;
	vs->stall_ns = m.stall_ns;
	vs->stall_faults = m.stall_faults;
	vs->vcpus = vm->cfg.vcpus ? vm->cfg.vcpus : 1;
	vs->guest_alloc_stalls = m.guest_alloc_stalls;
	vs->bd.compressed_host_bytes = m.compressed_host_bytes;
	vs->bd.balloon_target_bytes = m.balloon_target_bytes;
	/* The target the VM's swap pager holds, however it was set (the
	 * embedder's rf_vm_set_swap_target, or the policy's actuator); else
	 * what the policy last asked of an actuator of its own. */
	vs->policy_target = m.resident_target_bytes;
	vs->bd.resident_target_bytes = rf_swap_vm_target(vm);
	if (vs->bd.resident_target_bytes == RF_SWAP_NO_TARGET)
		vs->bd.resident_target_bytes = m.resident_target_bytes;
	vs->bd.guest_free_bytes = m.guest_free_bytes;
	vs->bd.active_bytes = rf_swap_vm_active(vm);
	if (vm->ledger) {
		vs->bd.reservation_bytes = atomic_load(&vm->ledger->reservation);
		vs->bd.limit_bytes = atomic_load(&vm->ledger->limit);
		vs->bd.shares = atomic_load(&vm->ledger->shares);
	} else {
		vs->bd.limit_bytes = UINT64_MAX;
		vs->bd.shares = RF_SHARES_DEFAULT;
	}
	vs->bd.metadata_bytes = atomic_load(&vm->metadata_bytes);
	return err;
}

/*
 * Measure every VM of @e into @s (s->vms, s->nr), with one PFN list per VM
 * in *@lists (*@nr_lists entries, to free even on failure). Walks the
 * engine's VM list under vms_lock: the core has no VM iterator.
 */
static int measure_vms(rf_engine *e, struct rf_ledger_snap *s, uint64_t *ents,
		       struct pfn_list **lists, unsigned int *nr_lists)
{
	unsigned int n = 0, i = 0;
	int err = 0;

	pthread_mutex_lock(&e->vms_lock);
	for (rf_vm *vm = __rf_engine_vm_first(e); vm; vm = __rf_engine_vm_next(vm))
		n++;
	*nr_lists = n;
	s->vms = rf_zalloc(e, (n ? n : 1) * sizeof(*s->vms));
	*lists = rf_zalloc(e, (n ? n : 1) * sizeof(**lists));
	if (!s->vms || !*lists) {
		err = -ENOMEM;
		goto out;
	}
	for (rf_vm *vm = __rf_engine_vm_first(e); vm && !err; vm = __rf_engine_vm_next(vm), i++)
		err = measure_vm(vm, &s->vms[i], &(*lists)[i], ents);
	s->nr = i;
out:
	pthread_mutex_unlock(&e->vms_lock);
	return err;
}

/*
 * Sharers of each store page, over all VMs: every VM's PFNs in one sorted
 * list (@all), in which each distinct PFN is one resident store page.
 */
static int count_store_pages(rf_engine *e, struct rf_ledger_snap *s, const struct pfn_list *lists,
			     struct pfn_list *all)
{
	int err = 0;

	for (unsigned int i = 0; i < s->nr && !err; i++)
		for (size_t k = 0; k < lists[i].n && !err; k++)
			err = pfn_push(e, all, lists[i].v[k]);
	if (err)
		return err;
	if (all->n)
		qsort(all->v, all->n, sizeof(*all->v), cmp_u64);
	for (size_t k = 0; k < all->n; k++)
		if ((k == 0 || all->v[k] != all->v[k - 1]) && all->v[k] != 0)
			s->host.store_pages_resident++;
	return 0;
}

/*
 * Charge each VM 1/sharers of a page for every store page it maps. A PFN
 * pagemap hid (0) counts as a store page of its own, charged whole.
 */
static void charge_fair_parts(struct rf_ledger_snap *s, const struct pfn_list *lists,
			      const struct pfn_list *all)
{
	for (unsigned int i = 0; i < s->nr; i++) {
		struct rf_ledger_vm_snap *vs = &s->vms[i];

		for (size_t k = 0; k < lists[i].n; k++) {
			size_t c = lists[i].v[k] ? count_sorted(all->v, all->n, lists[i].v[k]) : 1;

			vs->walk.shared_fair_milli += 1000 / (c ? c : 1);
			if (!lists[i].v[k])
				s->host.store_pages_resident++;
		}
	}
}

/* Each VM's breakdown, from its counters, its walk and its fair parts. */
static void compute_breakdowns(struct rf_ledger_snap *s)
{
	for (unsigned int i = 0; i < s->nr; i++) {
		struct rf_ledger_vm_snap *vs = &s->vms[i];

		rf_breakdown_compute(vs->counters, &vs->walk, vs->bd.promised_bytes,
				     vs->mapped_bytes, vs->bd.metadata_bytes,
				     vs->bd.compressed_host_bytes, &vs->bd);
	}
}

/* Host totals: the engine's figures, the VMs' breakdowns summed, and the
 * process's Rss and Pss. */
static void sum_host(rf_engine *e, struct rf_ledger *l, struct rf_ledger_snap *s)
{
	struct rf_host_stats *h = &s->host;

	h->capacity_bytes = rf_engine_capacity(e);
	h->nr_vms = s->nr;
	h->state = (enum rf_mem_state)atomic_load(&l->state);
	h->admissions_refused = atomic_load(&l->admissions_refused);
	for (unsigned int i = 0; i < s->nr; i++) {
		const struct rf_vm_breakdown *b = &s->vms[i].bd;

		h->reserved_bytes += b->reservation_bytes;
		h->promised_bytes += b->promised_bytes;
		h->used_bytes += b->host_bytes;
		h->private_bytes += b->private_bytes + b->drift_bytes;
		h->shared_fair_bytes += b->shared_fair_bytes;
		h->zero_bytes += b->zero_bytes;
		h->ballooned_bytes += b->ballooned_bytes;
		h->free_reported_bytes += b->free_reported_bytes;
		h->swapped_bytes += b->swapped_file_bytes + b->swapped_compressed_bytes;
		h->compressed_host_bytes += b->compressed_host_bytes;
		h->metadata_bytes += b->metadata_bytes;
		h->saved.dedup += b->saved.dedup;
		h->saved.zero += b->saved.zero;
		h->saved.balloon += b->saved.balloon;
		h->saved.free_report += b->saved.free_report;
		h->saved.swap += b->saved.swap;
	}
	h->overcommit_permille =
	    h->capacity_bytes ? h->promised_bytes * 1000 / h->capacity_bytes : 0;
	h->free_bytes = h->capacity_bytes > h->used_bytes ? h->capacity_bytes - h->used_bytes : 0;
	read_rollup(&h->process_rss_bytes, &h->process_pss_bytes);
}

int rf_ledger_snapshot(rf_engine *e, struct rf_ledger_snap *s)
{
	struct rf_ledger *l = rf_ledger_get(e);
	struct pfn_list *lists = NULL, all = {0};
	uint64_t *ents;
	unsigned int n = 0;
	int err;

	memset(s, 0, sizeof(*s));
	if (!l)
		return -ENOMEM;
	ents = rf_zalloc(e, WALK_CHUNK * sizeof(*ents));
	if (!ents)
		return -ENOMEM;
	err = measure_vms(e, s, ents, &lists, &n);
	if (!err)
		err = count_store_pages(e, s, lists, &all);
	if (!err) {
		charge_fair_parts(s, lists, &all);
		compute_breakdowns(s);
		sum_host(e, l, s);
	}
	if (lists) {
		for (unsigned int i = 0; i < n; i++)
			rf_free(e, lists[i].v);
		rf_free(e, lists);
	}
	rf_free(e, all.v);
	rf_free(e, ents);
	if (err) {
		rf_log(e, RF_LOG_ERR, "ramfold: ledger: measuring the VMs failed: %s",
		       strerror(-err));
		rf_ledger_snap_free(e, s);
	}
	return err;
}

static int rf_host_stats_full(rf_engine *e, struct rf_host_stats *out)
{
	struct rf_ledger_snap s;
	int err;

	if (!e || !out)
		return -EINVAL;
	err = rf_ledger_snapshot(e, &s);
	if (err)
		return err;
	*out = s.host;
	rf_ledger_snap_free(e, &s);
	return 0;
}

RF_EXPORT int rf_host_stats(rf_engine *e, struct rf_host_stats *out)
{
	struct rf_host_stats full;

	RF_STRUCT_OUT(e, out, full, capacity_bytes, "rf_host_stats", rf_host_stats_full(e, &full));
}
RF_VERSION_0_3(rf_host_stats);

static int rf_vm_breakdown_full(rf_vm *vm, struct rf_vm_breakdown *out)
{
	struct rf_ledger_snap s;
	int err;

	if (!vm || !out)
		return -EINVAL;
	err = rf_ledger_snapshot(vm->e, &s);
	if (err)
		return err;
	err = -ENOENT;
	for (unsigned int i = 0; i < s.nr; i++) {
		if (s.vms[i].vm == vm) {
			*out = s.vms[i].bd;
			err = 0;
		}
	}
	rf_ledger_snap_free(vm->e, &s);
	return err;
}

RF_EXPORT int rf_vm_breakdown(rf_vm *vm, struct rf_vm_breakdown *out)
{
	struct rf_vm_breakdown full;

	RF_STRUCT_OUT(vm ? vm->e : NULL, out, full, promised_bytes, "rf_vm_breakdown",
		      rf_vm_breakdown_full(vm, &full));
}
RF_VERSION_0_3(rf_vm_breakdown);

/* ---- the audit ---- */

struct range {
	uintptr_t lo, hi;
	unsigned int vm;
};

static int cmp_range(const void *a, const void *b)
{
	const struct range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

struct smaps_extra {
	bool *grouped;	    /* per VM: shares a kernel mapping with another VM */
	uint64_t group_rss; /* Rss/Pss of such mappings */
	uint64_t group_pss;
	unsigned int outside; /* mappings reaching beyond guest RAM */
};

/*
 * Attribute one mapping [lo, hi) to a VM: it usually lies inside one region.
 * Adjacent regions of two VMs with equal flags may be merged by the kernel
 * into one mapping; its Rss cannot be split, so it counts for the group and
 * those VMs are compared with the kernel as a group (the host check).
 * Returns the VM index, -1 for a group mapping, -2 for none.
 */
static int attribute(const struct range *rg, unsigned int nrg, uintptr_t lo, uintptr_t hi,
		     struct smaps_extra *x)
{
	unsigned int i = 0, j;

	while (i < nrg && rg[i].hi <= lo)
		i++;
	if (i == nrg || rg[i].lo >= hi)
		return -2; /* not guest RAM */
	if (lo >= rg[i].lo && hi <= rg[i].hi)
		return (int)rg[i].vm;
	for (j = i; j + 1 < nrg && rg[j].hi < hi && rg[j + 1].lo == rg[j].hi; j++)
		;
	for (unsigned int k = i; k <= j; k++)
		x->grouped[rg[k].vm] = true;
	if (lo < rg[i].lo || hi > rg[j].hi) {
		x->outside++;
		return -2;
	}
	return -1;
}

/* Sum smaps Rss/Pss of mappings inside guest RAM into the snapshot's VMs. */
static int read_smaps(struct rf_ledger_snap *s, const struct range *rg, unsigned int nrg,
		      struct smaps_extra *x)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	int cur = -2;

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long lo, hi, kb;
		char key[64];
		uint64_t *rss, *pss;

		/* A mapping's header starts "lo-hi "; no field name parses so. */
		if (sscanf(line, "%llx-%llx ", &lo, &hi) == 2) {
			cur = attribute(rg, nrg, (uintptr_t)lo, (uintptr_t)hi, x);
			continue;
		}
		if (cur == -2 || sscanf(line, "%63[^:]: %llu kB", key, &kb) != 2)
			continue;
		rss = cur >= 0 ? &s->vms[cur].kernel_rss : &x->group_rss;
		pss = cur >= 0 ? &s->vms[cur].kernel_pss : &x->group_pss;
		if (strcmp(key, "Rss") == 0)
			*rss += (uint64_t)kb << 10;
		else if (strcmp(key, "Pss") == 0)
			*pss += (uint64_t)kb << 10;
	}
	fclose(f);
	return 0;
}

static void note_disagreement(rf_engine *e, struct rf_ledger_audit_report *rep, const char *why)
{
	rep->vms_disagreeing++;
	if (!rep->first_reason[0])
		snprintf(rep->first_reason, sizeof(rep->first_reason), "%s", why);
	rf_log(e, RF_LOG_WARN, "%s", why);
}

static int rf_ledger_audit_full(rf_engine *e, struct rf_ledger_audit_report *rep)
{
	struct rf_ledger *l;
	struct rf_ledger_snap s;
	struct range *rg = NULL;
	unsigned int nrg = 0;
	struct rf_ledger_config cfg;
	struct smaps_extra x = {0};
	int err;

	if (!e || !rep)
		return -EINVAL;
	memset(rep, 0, sizeof(*rep));
	l = rf_ledger_get(e);
	if (!l)
		return -ENOMEM;
	pthread_mutex_lock(&l->lock);
	cfg = l->cfg;
	pthread_mutex_unlock(&l->lock);
	/* The gate keeps the VMs alive between the snapshot and smaps. */
	pthread_rwlock_rdlock(&l->gate);
	err = rf_ledger_snapshot(e, &s);
	if (err)
		goto out_gate;
	rg = rf_zalloc(e, (s.nr ? s.nr : 1) * RF_MAX_REGIONS * sizeof(*rg));
	x.grouped = rf_zalloc(e, (s.nr ? s.nr : 1) * sizeof(*x.grouped));
	if (!rg || !x.grouped) {
		err = -ENOMEM;
		goto out_snap;
	}
	for (unsigned int i = 0; i < s.nr; i++) {
		rf_vm *vm = s.vms[i].vm;
		struct rf_region *r;

		rf_vm_regions_rdlock(vm);
		for (unsigned int k = 0; (r = __rf_vm_region(vm, k)); k++) {
			rg[nrg].lo = (uintptr_t)r->hva;
			rg[nrg].hi = rg[nrg].lo + r->size;
			rg[nrg++].vm = i;
		}
		rf_vm_regions_unlock(vm);
	}
	qsort(rg, nrg, sizeof(*rg), cmp_range);
	err = read_smaps(&s, rg, nrg, &x);
	if (err) {
		rf_log(e, RF_LOG_ERR, "ramfold: ledger audit: reading /proc/self/smaps: %s",
		       strerror(-err));
		goto out_snap;
	}
	rep->process_rss_bytes = s.host.process_rss_bytes;
	rep->vmas_outside = x.outside;
	for (unsigned int i = 0; i < s.nr; i++) {
		struct rf_ledger_vm_snap *vs = &s.vms[i];
		const struct rf_vm_breakdown *b = &vs->bd;
		struct rf_ledger_check c = {.name = vs->name};
		char why[256];

		memcpy(c.counters, vs->counters, sizeof(c.counters));
		memcpy(c.walked, vs->walk.pages, sizeof(c.walked));
		c.mapped_bytes = vs->mapped_bytes;
		c.forbidden_resident_bytes =
		    (vs->walk.resident[RF_PAGE_BALLOONED] + vs->walk.resident[RF_PAGE_SWAPPED] +
		     vs->walk.resident[RF_PAGE_COMPRESSED])
		    << RF_PAGE_SHIFT;
		c.ledger_resident_bytes =
		    b->private_bytes + b->drift_bytes + b->shared_resident_bytes;
		c.ledger_fair_bytes = b->private_bytes + b->drift_bytes + b->shared_fair_bytes;
		c.kernel_rss_bytes = vs->kernel_rss;
		c.kernel_pss_bytes = vs->kernel_pss;
		c.skip_kernel = x.grouped[i];
		c.slack_bytes = cfg.audit_slack_bytes + b->metadata_bytes;
		c.pct = cfg.audit_pct;
		rep->vms_checked++;
		rep->vms_grouped += x.grouped[i];
		rep->ledger_resident_bytes += c.ledger_resident_bytes;
		rep->ledger_fair_bytes += c.ledger_fair_bytes;
		rep->kernel_rss_bytes += c.kernel_rss_bytes;
		rep->kernel_pss_bytes += c.kernel_pss_bytes;
		rep->metadata_bytes += b->metadata_bytes;
		if (rf_ledger_compare(&c, why, sizeof(why)) != 0)
			note_disagreement(e, rep, why);
	}
	rep->kernel_rss_bytes += x.group_rss;
	rep->kernel_pss_bytes += x.group_pss;
	/* All guests together, when the kernel saw all their mappings. */
	if (!x.outside) {
		struct rf_ledger_check c = {.name = "ramfold: all guests"};
		char why[256];

		c.ledger_resident_bytes = rep->ledger_resident_bytes;
		c.ledger_fair_bytes = rep->ledger_fair_bytes;
		c.kernel_rss_bytes = rep->kernel_rss_bytes;
		c.kernel_pss_bytes = rep->kernel_pss_bytes;
		c.slack_bytes = cfg.audit_slack_bytes + rep->metadata_bytes;
		c.pct = cfg.audit_pct;
		if (rf_ledger_compare(&c, why, sizeof(why)) != 0)
			note_disagreement(e, rep, why);
	}
	/* The whole process holds at least the guests' resident pages. */
	if (rep->kernel_rss_bytes >
	    rep->process_rss_bytes +
		rf_ledger_tolerance(rep->process_rss_bytes, cfg.audit_pct, cfg.audit_slack_bytes)) {
		char b1[32], b2[32], why[256];

		snprintf(why, sizeof(why),
			 "ramfold: ledger: guest mappings hold %s, more than the process's %s "
			 "(smaps_rollup Rss)",
			 rf_ledger_fmt_bytes(rep->kernel_rss_bytes, b1, sizeof(b1)),
			 rf_ledger_fmt_bytes(rep->process_rss_bytes, b2, sizeof(b2)));
		note_disagreement(e, rep, why);
	}
	err = rep->vms_disagreeing ? -EIO : 0;
out_snap:
	rf_free(e, x.grouped);
	rf_free(e, rg);
	rf_ledger_snap_free(e, &s);
out_gate:
	pthread_rwlock_unlock(&l->gate);
	return err;
}

RF_EXPORT int rf_ledger_audit(rf_engine *e, struct rf_ledger_audit_report *rep)
{
	struct rf_ledger_audit_report full;

	RF_STRUCT_OUT(e, rep, full, vms_checked, "rf_ledger_audit_report",
		      rf_ledger_audit_full(e, &full));
}
RF_VERSION_0_3(rf_ledger_audit);
