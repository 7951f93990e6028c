/* SPDX-License-Identifier: MIT */
/*
 * The dedup API (include/ramfold/dedup.h): modes and config, start/stop,
 * attaching VMs, the scan kick and rate, and the stats.
 *
 * Two backends do the work behind it, each a struct dedup_backend_ops
 * (dedup_internal.h): ramfold's own engine (own_engine.c, over the scanner,
 * the merger, the index and the store) for the zero, intra-VM and domains
 * modes, and the kernel's KSM (kernel_ksm.c) for RF_DEDUP_KSM; RF_DEDUP_OFF
 * attaches VMs and merges nothing. rf_dedup_start picks the backend from the
 * mode once; every call after goes through d->ops. What is common stays
 * here: the engine's VM list (d->lock), the kick that wakes the scanner, the
 * per-VM hooks into the core and the per-VM counters.
 *
 * Sharing domains are numbers: a VM without a domain (or any VM in the
 * intra-VM and zero modes) gets a domain of its own, 0x80000000 | vm id;
 * named domains are interned to 1, 2, ... The domain is part of every index
 * key, so pages of two domains can never be found as twins.
 */
#include <errno.h>
#include <sched.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "abi.h"
#include "dedup_internal.h"

static const char *const mode_names[] = {
    [RF_DEDUP_OFF] = "off",	    [RF_DEDUP_ZERO] = "zero", [RF_DEDUP_INTRA_VM] = "intra",
    [RF_DEDUP_DOMAINS] = "domains", [RF_DEDUP_KSM] = "ksm",
};

/* The backend of each mode. */
static const struct dedup_backend_ops *const mode_backends[] = {
    [RF_DEDUP_OFF] = &dedup_off_ops,	  [RF_DEDUP_ZERO] = &dedup_own_ops,
    [RF_DEDUP_INTRA_VM] = &dedup_own_ops, [RF_DEDUP_DOMAINS] = &dedup_own_ops,
    [RF_DEDUP_KSM] = &dedup_ksm_ops,
};

RF_EXPORT const char *rf_dedup_mode_name(enum rf_dedup_mode m)
{
	if ((unsigned int)m > RF_DEDUP_KSM)
		return "invalid";
	return mode_names[m];
}

RF_EXPORT int rf_dedup_mode_parse(const char *name, enum rf_dedup_mode *out)
{
	if (!name || !out)
		return -EINVAL;
	for (unsigned int m = 0; m <= RF_DEDUP_KSM; m++) {
		if (strcmp(name, mode_names[m]) == 0) {
			*out = (enum rf_dedup_mode)m;
			return 0;
		}
	}
	return -EINVAL;
}

RF_EXPORT void rf_dedup_config_init(struct rf_dedup_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->mode = RF_DEDUP_INTRA_VM;
	cfg->fastest = true;
	cfg->idle_cpu_percent = 2;
	cfg->backoff_max = 12;
	cfg->vma_single_pct = 100;
}
RF_VERSION_0_3(rf_dedup_config_init);

/* ---- attaching VMs ------------------------------------------------------ */

static void hook_region_unmap(rf_vm *vm, struct rf_region *r, void *arg)
{
	struct rf_dedup_vm *dv = vm->dedup;

	(void)arg;
	if (dv && dv->d->ops->region_unmap)
		dv->d->ops->region_unmap(dv, r);
}

/*
 * Merging remaps guest pages (a store page over a private one, and back):
 * on shared memory that would cut the page off from the other process that
 * maps the file, and hugetlbfs pages cannot be remapped 4 KiB at a time. So
 * dedup refuses a VM with such a region, and such a region in a VM it is
 * attached to (vm.h, enum rf_backing). Mode "off" merges nothing and
 * accepts anything.
 */
static int refuse_backing(rf_vm *vm, const struct rf_region *r, enum rf_dedup_mode mode)
{
	if (mode == RF_DEDUP_OFF || rf_region_backing(r) == RF_BACKING_ANON)
		return 0;
	rf_log(vm->e, RF_LOG_ERR, "%s: dedup: gpa 0x%" PRIx64 ": %s RAM cannot be merged (%s)",
	       vm->name, r->gpa, rf_backing_describe(rf_region_backing(r)),
	       rf_region_backing(r) == RF_BACKING_SHMEM
		   ? "merging remaps pages, which another process such as a vhost-user "
		     "backend shares"
		   : "huge pages cannot be remapped 4 KiB at a time");
	return -EOPNOTSUPP;
}

static int hook_region_admit(rf_vm *vm, const struct rf_region *r, void *arg)
{
	struct rf_dedup_vm *dv = vm->dedup;

	int err;

	(void)arg;
	if (!dv)
		return 0;
	err = refuse_backing(vm, r, dv->d->cfg.mode);
	if (!err && dv->d->ops->region_admit)
		err = dv->d->ops->region_admit(dv, r);
	return err;
}

/*
 * rf_vm_release_ram: every page of @r excluded, regions lock held (read).
 * Our engine copies merged pages back to private anonymous ones, as
 * rf_dedup_stop does; the kernel's KSM unmerges its own with
 * MADV_UNMERGEABLE (its merged pages are PRIVATE in the table).
 */
static int hook_region_release(rf_vm *vm, struct rf_region *r, void *arg)
{
	struct rf_dedup_vm *dv = vm->dedup;
	int err = 0;

	(void)arg;
	if (!dv)
		return 0;
	if (dv->d->cfg.mode == RF_DEDUP_KSM) {
		if (madvise(r->hva, r->size, MADV_UNMERGEABLE) != 0) {
			err = -errno;
			rf_log(vm->e, RF_LOG_ERR,
			       "%s: dedup: release: madvise(MADV_UNMERGEABLE) at gpa 0x%" PRIx64
			       ": %s",
			       vm->name, r->gpa, strerror(errno));
		}
		return err;
	}
	for (uint64_t p = 0; p < r->npages && !err; p++) {
		unsigned int n = 0;

		while (p + n < r->npages && n < MERGE_RUN_MAX &&
		       rf_pte_state(rf_pte_peek(&r->pte[p + n])) == RF_PAGE_MERGED)
			n++;
		if (!n)
			continue;
		err = unmerge_page(dv->d, dv, r, p, n, false);
		if (err == -EAGAIN)
			err = 0; /* no longer merged */
		/* A run unmerges a prefix of itself: look at the rest again. */
		p--;
	}
	return err;
}

static void dv_unlink(struct rf_dedup *d, struct rf_dedup_vm *dv)
{
	pthread_mutex_lock(&d->lock);
	atomic_store(&dv->dead, true);
	for (struct rf_dedup_vm **pp = &d->vms; *pp; pp = &(*pp)->next) {
		if (*pp == dv) {
			*pp = dv->next;
			break;
		}
	}
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	/* Units of this VM already handed out finish (or are skipped). */
	while (atomic_load(&dv->refs) > 0)
		usleep(200);
}

/* Detach @vm; with @unmerge, bring merged pages back to private first. */
static void dv_detach(rf_vm *vm, bool unmerge)
{
	struct rf_dedup_vm *dv = vm->dedup;
	struct rf_dedup *d;

	if (!dv)
		return;
	d = dv->d;
	dv_unlink(d, dv);
	if (d->ops->remove_vm)
		d->ops->remove_vm(d, dv, unmerge);
	vm->dedup = NULL;
	pthread_mutex_destroy(&dv->regs_lock);
	rf_free(vm->e, dv);
}

static void hook_vm_free(rf_vm *vm, void *arg)
{
	(void)arg;
	dv_detach(vm, false);
}

static uint32_t domain_id(struct rf_dedup *d, rf_vm *vm)
{
	uint32_t id = 0x80000000u | vm->id;

	if (d->cfg.mode != RF_DEDUP_DOMAINS || !vm->domain[0])
		return id;
	pthread_mutex_lock(&d->lock);
	for (unsigned int i = 0; i < d->ndomains; i++)
		if (strcmp(d->domain_names[i], vm->domain) == 0)
			id = i + 1;
	if (id & 0x80000000u && d->ndomains < 256) {
		snprintf(d->domain_names[d->ndomains], RF_NAME_MAX, "%s", vm->domain);
		id = ++d->ndomains;
	}
	pthread_mutex_unlock(&d->lock);
	return id;
}

RF_EXPORT int rf_dedup_add_vm(rf_vm *vm)
{
	struct rf_vm_hooks h = {
	    .region_unmap = hook_region_unmap,
	    .vm_free = hook_vm_free,
	    .owns_states = 1u << RF_PAGE_MERGED,
	    .page_release = dedup_page_release,
	    .region_admit = hook_region_admit,
	    .region_release = hook_region_release,
	};
	struct rf_dedup_vm *dv;
	struct rf_dedup *d;
	struct rf_region *r;
	int err = 0;

	if (!vm)
		return -EINVAL;
	d = vm->e->dedup;
	if (!d) {
		rf_log(vm->e, RF_LOG_ERR, "%s: dedup: add_vm: the dedup engine is not started",
		       vm->name);
		return -ENOENT;
	}
	if (vm->dedup)
		return -EALREADY;
	/* Checked again by hook_region_admit for RAM adopted from now on; the
	 * embedder does not adopt RAM into @vm while it attaches it. */
	rf_vm_regions_rdlock(vm);
	for (unsigned int i = 0; !err && (r = __rf_vm_region(vm, i)); i++)
		err = refuse_backing(vm, r, d->cfg.mode);
	rf_vm_regions_unlock(vm);
	if (err)
		return err;
	dv = rf_zalloc(vm->e, sizeof(*dv));
	if (!dv)
		return -ENOMEM;
	dv->d = d;
	dv->vm = vm;
	dv->domain = domain_id(d, vm);
	dv->numa = vm->cfg.numa_node >= 0 && vm->cfg.numa_node < d->nstores ? vm->cfg.numa_node : 0;
	pthread_mutex_init(&dv->regs_lock, NULL);
	if (!rf_vm_hooks_registered(vm, hook_vm_free)) {
		err = rf_vm_add_hooks(vm, &h);
		if (err) {
			rf_log(vm->e, RF_LOG_ERR, "%s: dedup: no free hook slot", vm->name);
			goto err_free;
		}
	}
	if (d->ops->add_vm) {
		err = d->ops->add_vm(d, dv);
		if (err)
			goto err_free;
	}
	vm->dedup = dv;
	pthread_mutex_lock(&d->lock);
	dv->next = d->vms;
	d->vms = dv;
	d->kick = true;
	atomic_store(&d->converged, false);
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	return 0;

err_free:
	vm->dedup = NULL;
	pthread_mutex_destroy(&dv->regs_lock);
	rf_free(vm->e, dv);
	return err;
}

/* ---- start / stop ------------------------------------------------------- */

/* scan_threads 0: one scanner per CPU this process may run on (its
 * affinity, as a cpuset or taskset leaves it), up to RF_SCAN_THREADS_AUTO_MAX.
 * Until a pass finds nothing new a "fastest" engine uses them all; once
 * converged they share idle_cpu_percent of one core. */
static unsigned int auto_threads(void)
{
	cpu_set_t set;
	int n;

	if (sched_getaffinity(0, sizeof(set), &set) != 0)
		return 1;
	n = CPU_COUNT(&set);
	return n < 1			      ? 1
	       : n > RF_SCAN_THREADS_AUTO_MAX ? RF_SCAN_THREADS_AUTO_MAX
					      : (unsigned int)n;
}

RF_EXPORT int rf_dedup_start(rf_engine *e, const struct rf_dedup_config *user_cfg)
{
	struct rf_dedup_config cfg_full;
	const struct rf_dedup_config *cfg = user_cfg ? &cfg_full : NULL;
	struct rf_dedup *d;
	int err;

	if (user_cfg) {
		int abi_err = 0;

		rf_dedup_config_init(&cfg_full);
		abi_err =
		    rf_struct_in(e, &cfg_full, sizeof(cfg_full), user_cfg,
				 RF_STRUCT_MIN(struct rf_dedup_config, mode), "rf_dedup_config");
		if (abi_err)
			return abi_err;
	}

	if (!e || !cfg)
		return -EINVAL;
	if ((unsigned int)cfg->mode > RF_DEDUP_KSM || cfg->scan_threads > 64 ||
	    cfg->cpu_percent > 100 || cfg->idle_cpu_percent > 100 || cfg->backoff_max > 30 ||
	    (unsigned int)cfg->huge > RF_DEDUP_HUGE_SPLIT_COLD || cfg->vma_single_pct > 100) {
		rf_log(e, RF_LOG_ERR,
		       "dedup: start: bad config (mode %d, %u threads, cpu %u%%, idle cpu %u%%, "
		       "vma_single_pct %u (0..100))",
		       cfg->mode, cfg->scan_threads, cfg->cpu_percent, cfg->idle_cpu_percent,
		       cfg->vma_single_pct);
		return -EINVAL;
	}
	if (e->dedup)
		return -EALREADY;
	d = rf_zalloc(e, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->e = e;
	d->ops = mode_backends[cfg->mode];
	d->cfg = *cfg;
	if (!d->cfg.scan_threads)
		d->cfg.scan_threads = e->cfg.scan_threads ? e->cfg.scan_threads : auto_threads();
	if (!d->cfg.idle_cpu_percent)
		d->cfg.idle_cpu_percent = 2;
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->vma_lock, NULL);
	pthread_cond_init(&d->wake, NULL);
	e->dedup = d;
	if (d->ops->start) {
		err = d->ops->start(d);
		if (err)
			goto err_free;
	}
	/* Before any VM is attached, so that no pass sees another mode; one
	 * the engine cannot keep is refused here as at run time (logged),
	 * and huge pages are then merged as any. */
	if (cfg->huge != RF_DEDUP_HUGE_SPLIT)
		rf_dedup_set_huge(e, cfg->huge);
	return 0;

err_free:
	e->dedup = NULL;
	pthread_cond_destroy(&d->wake);
	pthread_mutex_destroy(&d->vma_lock);
	pthread_mutex_destroy(&d->lock);
	rf_free(e, d);
	return err;
}
RF_VERSION_0_3(rf_dedup_start);

RF_EXPORT void rf_dedup_stop(rf_engine *e)
{
	struct rf_dedup *d;

	if (!e || !e->dedup)
		return;
	d = e->dedup;
	if (d->ops->quiesce)
		d->ops->quiesce(d);
	while (d->vms)
		dv_detach(d->vms->vm, true);
	if (d->ops->stop)
		d->ops->stop(d);
	pthread_cond_destroy(&d->wake);
	pthread_mutex_destroy(&d->vma_lock);
	pthread_mutex_destroy(&d->lock);
	e->dedup = NULL;
	rf_free(e, d);
}

RF_EXPORT int rf_dedup_scan_now(rf_engine *e)
{
	struct rf_dedup *d;

	if (!e || !e->dedup)
		return -ENOENT;
	d = e->dedup;
	pthread_mutex_lock(&d->lock);
	d->kick = true;
	atomic_store(&d->converged, false);
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

RF_EXPORT int rf_dedup_set_rate(rf_engine *e, uint64_t pages_per_sec)
{
	struct rf_dedup *d;
	int err;

	if (!e || !e->dedup)
		return -ENOENT;
	d = e->dedup;
	err = d->ops->set_rate(d, pages_per_sec);
	if (err)
		return err;
	pthread_mutex_lock(&d->lock);
	d->kick = true;
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

static const char *const huge_names[] = {
    [RF_DEDUP_HUGE_SPLIT] = "split",
    [RF_DEDUP_HUGE_KEEP] = "keep",
    [RF_DEDUP_HUGE_SPLIT_COLD] = "split-cold",
};

RF_EXPORT const char *rf_dedup_huge_name(enum rf_dedup_huge m)
{
	if ((unsigned int)m > RF_DEDUP_HUGE_SPLIT_COLD)
		return "invalid";
	return huge_names[m];
}

/*
 * The mode is one atomic the scanner reads once per unit (scanner.c,
 * "Huge pages"): the policy tick calls this every tick, so only a change is
 * logged, and a refusal once.
 */
RF_EXPORT int rf_dedup_set_huge(rf_engine *e, enum rf_dedup_huge mode)
{
	struct rf_dedup *d;
	int old;

	if (!e || !e->dedup)
		return -ENOENT;
	d = e->dedup;
	if ((unsigned int)mode > RF_DEDUP_HUGE_SPLIT_COLD)
		return -EINVAL;
	if (mode != RF_DEDUP_HUGE_SPLIT && (d->ops == &dedup_ksm_ops || !e->feat.pagemap_scan)) {
		if (!atomic_exchange(&d->huge_nosupport_logged, true))
			rf_log(e, RF_LOG_WARN,
			       "dedup: huge pages: cannot keep them whole: %s; their pages are "
			       "merged as any",
			       d->ops == &dedup_ksm_ops
				   ? "the kernel's KSM splits them"
				   : "no PAGEMAP_SCAN (Linux 6.7+) to find them");
		return -EOPNOTSUPP;
	}
	old = atomic_exchange(&d->huge_mode, (int)mode);
	if (old == (int)mode)
		return 0;
	rf_log(e, RF_LOG_INFO, "dedup: huge pages: %s -> %s",
	       rf_dedup_huge_name((enum rf_dedup_huge)old), rf_dedup_huge_name(mode));
	if (old == RF_DEDUP_HUGE_KEEP) {
		/* Pressure: the kept huge pages are judged now, over a
		 * full-speed pass rather than the idle pace's (scanner.c,
		 * "Huge pages"): the pass in progress and the next end off
		 * the idle budget, and the one after judges. */
		pthread_mutex_lock(&d->lock);
		atomic_store(&d->huge_fast_until, atomic_load(&d->gen) + 1);
		d->kick = true;
		atomic_store(&d->converged, false);
		pthread_cond_broadcast(&d->wake);
		pthread_mutex_unlock(&d->lock);
	}
	return 0;
}

/* ---- stats -------------------------------------------------------------- */

static int rf_dedup_vm_stats_full(rf_vm *vm, struct rf_dedup_vm_stats *st)
{
	struct rf_dedup_vm *dv;

	if (!vm || !st)
		return -EINVAL;
	dv = vm->dedup;
	if (!dv)
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	st->pages_scanned = atomic_load(&dv->scanned);
	st->pages_merged = atomic_load(&dv->merged);
	st->pages_unmerged = atomic_load(&dv->unmerged);
	st->volatile_skipped = atomic_load(&dv->volatile_skipped);
	st->merge_races = atomic_load(&dv->races);
	st->pages_sharing = atomic_load(&vm->state_pages[RF_PAGE_MERGED]);
	st->pages_zero = atomic_load(&vm->state_pages[RF_PAGE_ZERO]);
	if (!dv->d->ops->vm_stats)
		return 0;
	return dv->d->ops->vm_stats(dv, st);
}

RF_EXPORT int rf_dedup_vm_stats(rf_vm *vm, struct rf_dedup_vm_stats *st)
{
	struct rf_dedup_vm_stats full;

	RF_STRUCT_OUT(vm ? vm->e : NULL, st, full, pages_scanned, "rf_dedup_vm_stats",
		      rf_dedup_vm_stats_full(vm, &full));
}
RF_VERSION_0_3(rf_dedup_vm_stats);

struct ram_range {
	uintptr_t lo, hi;
};

static int cmp_range(const void *a, const void *b)
{
	const struct ram_range *x = a, *y = b;

	return x->lo < y->lo ? -1 : x->lo > y->lo;
}

/* The guest RAM of every attached VM into @rg (at most @max ranges), sorted
 * by address. d->lock held. Returns the number of ranges. */
static size_t collect_ram(struct rf_dedup *d, struct ram_range *rg, size_t max)
{
	struct rf_region *r;
	size_t n = 0;

	for (struct rf_dedup_vm *dv = d->vms; dv; dv = dv->next) {
		rf_vm_regions_rdlock(dv->vm);
		for (unsigned int i = 0; n < max && (r = __rf_vm_region(dv->vm, i)); i++)
			rg[n++] =
			    (struct ram_range){(uintptr_t)r->hva, (uintptr_t)r->hva + r->size};
		rf_vm_regions_unlock(dv->vm);
	}
	qsort(rg, n, sizeof(*rg), cmp_range);
	return n;
}

/*
 * The lines of /proc/self/maps that overlap one of the @n sorted ranges
 * @rg: guest RAM's mappings as the kernel has them, after it merged
 * neighbours that match again (a run unmerged next to private memory, say).
 * Both lists are in address order, so one walk over each. -errno if the
 * file cannot be read.
 */
static int64_t count_ram_mappings(const struct ram_range *rg, size_t n)
{
	char line[256];
	bool line_start = true;
	int64_t inside = 0;
	size_t i = 0;
	FILE *f = fopen("/proc/self/maps", "re");

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		bool first = line_start;
		uintptr_t lo, hi;

		/* A long path comes in several pieces: only a line's first
		 * piece holds its range. */
		line_start = strchr(line, '\n') != NULL;
		if (!first || sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) != 2)
			continue;
		while (i < n && rg[i].hi <= lo)
			i++;
		if (i < n && rg[i].lo < hi)
			inside++;
	}
	fclose(f);
	return inside;
}

/* rf_dedup_stats.vmas: counted now, kept for rf_dedup_counters. Takes
 * d->lock, then each VM's regions lock. */
static void measure_ram_vmas(struct rf_dedup *d)
{
	struct ram_range *rg;
	size_t max = 0, n;
	int64_t v;

	pthread_mutex_lock(&d->lock);
	for (struct rf_dedup_vm *dv = d->vms; dv; dv = dv->next)
		max += RF_MAX_REGIONS;
	rg = rf_zalloc(d->e, (max ? max : 1) * sizeof(*rg));
	n = rg ? collect_ram(d, rg, max) : 0;
	pthread_mutex_unlock(&d->lock);
	if (!rg)
		return;
	v = count_ram_mappings(rg, n);
	if (v >= 0)
		atomic_store(&d->ram_vmas, (uint64_t)v);
	rf_free(d->e, rg);
}

static int stats_fill(rf_engine *e, struct rf_dedup_stats *st, bool measure)
{
	struct rf_dedup *d;
	int err;

	if (!e || !st)
		return -EINVAL;
	d = e->dedup;
	if (!d)
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	st->mode = d->cfg.mode;
	err = d->ops->stats(d, st, measure);
	if (measure)
		measure_ram_vmas(d);
	st->vmas = atomic_load(&d->ram_vmas);
	st->huge_mode = (enum rf_dedup_huge)atomic_load(&d->huge_mode);
	st->huge_kept_pages = atomic_load(&d->huge_kept);
	st->huge_zero_freed = atomic_load(&d->huge_zero);
	st->huge_opened = atomic_load(&d->huge_opened);
	return err;
}

static int rf_dedup_stats_full(rf_engine *e, struct rf_dedup_stats *st)
{
	return stats_fill(e, st, true);
}

RF_EXPORT int rf_dedup_stats(rf_engine *e, struct rf_dedup_stats *st)
{
	struct rf_dedup_stats full;

	RF_STRUCT_OUT(e, st, full, mode, "rf_dedup_stats", rf_dedup_stats_full(e, &full));
}
RF_VERSION_0_3(rf_dedup_stats);

static int rf_dedup_counters_full(rf_engine *e, struct rf_dedup_stats *st)
{
	return stats_fill(e, st, false);
}

RF_EXPORT int rf_dedup_counters(rf_engine *e, struct rf_dedup_stats *st)
{
	struct rf_dedup_stats full;

	RF_STRUCT_OUT(e, st, full, mode, "rf_dedup_stats", rf_dedup_counters_full(e, &full));
}
RF_VERSION_0_3(rf_dedup_counters);

/* Scanner threads stop before any VM is freed. */
const struct rf_engine_module rf_dedup_module = {
    .name = "dedup",
    .stop = rf_dedup_stop,
};
