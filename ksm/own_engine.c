/* SPDX-License-Identifier: MIT */
/*
 * The dedup engine's public API: start/stop, attaching VMs (userfaultfd
 * registration, hooks into the core), the pager's write-protect handler and
 * the stats, which measure savings from the kernel (pagemap and the store's
 * fstat), not from counters.
 *
 * Sharing domains are numbers: a VM without a domain (or any VM in the
 * intra-VM and zero modes) gets a domain of its own, 0x80000000 | vm id;
 * named domains are interned to 1, 2, ... The domain is part of every index
 * key, so pages of two domains can never be found as twins.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <xxhash.h>

#include "compat_linux.h"
#include "dedup_internal.h"

static uint64_t xxh3_page(const void *page, size_t len)
{
	return XXH3_64bits(page, len);
}

uint64_t (*dedup_hash_fn)(const void *page, size_t len) = xxh3_page;

static __thread int rcu_online; /* this thread is registered with urcu-memb */

void dedup_rcu_thread_online(void)
{
	urcu_memb_register_thread();
	rcu_online = 1;
}

void dedup_rcu_thread_offline(void)
{
	rcu_online = 0;
	urcu_memb_unregister_thread();
}

bool dedup_rcu_enter(void)
{
	if (rcu_online)
		return false;
	dedup_rcu_thread_online();
	return true;
}

void dedup_rcu_leave(bool registered_here)
{
	if (registered_here)
		dedup_rcu_thread_offline();
}

static const char *const mode_names[] = {
    [RF_DEDUP_OFF] = "off",	    [RF_DEDUP_ZERO] = "zero", [RF_DEDUP_INTRA_VM] = "intra",
    [RF_DEDUP_DOMAINS] = "domains", [RF_DEDUP_KSM] = "ksm",
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
	cfg->mode = RF_DEDUP_INTRA_VM;
	cfg->fastest = true;
	cfg->idle_cpu_percent = 2;
	cfg->backoff_max = 12;
}

/* ---- per-region state --------------------------------------------------- */

static void dedup_region_free(struct dedup_region *dr)
{
	if (dr->hash)
		munmap(dr->hash, dr->hash_bytes);
	if (dr->pflags)
		munmap((void *)dr->pflags, dr->pflags_bytes);
	memset(dr, 0, sizeof(*dr));
}

struct dedup_region *dedup_region_of(struct rf_dedup_vm *dv, const struct rf_region *r, bool create)
{
	struct dedup_region *dr = NULL;
	int err;

	pthread_mutex_lock(&dv->regs_lock);
	for (unsigned int i = 0; i < dv->nregs; i++)
		if (dv->regs[i].r == r)
			dr = &dv->regs[i];
	if (dr || !create || dv->nregs == RF_MAX_REGIONS)
		goto out;
	dr = &dv->regs[dv->nregs];
	dr->hash_bytes =
	    (r->npages * sizeof(uint64_t) + RF_PAGE_SIZE - 1) & ~(size_t)(RF_PAGE_SIZE - 1);
	dr->pflags_bytes = (r->npages + RF_PAGE_SIZE - 1) & ~(size_t)(RF_PAGE_SIZE - 1);
	dr->hash = mmap(NULL, dr->hash_bytes, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	dr->pflags = mmap(NULL, dr->pflags_bytes, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (dr->hash == MAP_FAILED || dr->pflags == MAP_FAILED) {
		if (dr->hash == MAP_FAILED)
			dr->hash = NULL;
		if (dr->pflags == MAP_FAILED)
			dr->pflags = NULL;
		dedup_region_free(dr);
		dr = NULL;
		goto out;
	}
	/* Write-protect mode on the whole region: costs nothing until a page
	 * is protected, and is needed before any page can be. */
	err = rf_uffd_register(dv->uffd, r->hva, r->size, UFFDIO_REGISTER_MODE_WP);
	if (err) {
		rf_log(dv->vm->e, RF_LOG_ERR,
		       "%s: dedup: registering gpa 0x%" PRIx64 " (+0x%" PRIx64
		       ") with userfaultfd: %s",
		       dv->vm->name, r->gpa, r->size, strerror(-err));
		dedup_region_free(dr);
		dr = NULL;
		goto out;
	}
	dr->r = (struct rf_region *)r;
	dv->nregs++;
	atomic_fetch_add(&dv->vm->metadata_bytes, dr->hash_bytes + dr->pflags_bytes);
out:
	pthread_mutex_unlock(&dv->regs_lock);
	return dr;
}

/* ---- hooks from the core ------------------------------------------------ */

/* Drop the store references of the MERGED pages of @r (about to go away). */
static void drop_region_refs(struct rf_dedup *d, struct rf_region *r)
{
	for (uint64_t i = 0; i < r->npages; i++) {
		uint64_t v = rf_pte_peek(&r->pte[i]);
		struct rf_store *s;
		uint32_t pg;

		if (rf_pte_state(v) != RF_PAGE_MERGED)
			continue;
		s = dedup_store_of(d, rf_pte_payload(v), &pg);
		if (s)
			store_put(s, pg);
	}
}

static void hook_region_unmap(rf_vm *vm, struct rf_region *r, void *arg)
{
	struct rf_dedup_vm *dv = vm->dedup;
	struct dedup_region *dr;
	bool reg;

	(void)arg;
	if (!dv || !dv->d->ht)
		return;
	dr = dedup_region_of(dv, r, false);
	if (!dr)
		return;
	reg = dedup_rcu_enter();
	index_del_cands_of(dv->d->ht, vm, r);
	dedup_rcu_leave(reg);
	/* Scanners that found one of those entries are inside a read-side
	 * section; none can be inside this region (we hold its write lock). */
	urcu_memb_synchronize_rcu();
	drop_region_refs(dv->d, r);
	pthread_mutex_lock(&dv->regs_lock);
	dedup_region_free(dr);
	*dr = dv->regs[--dv->nregs];
	memset(&dv->regs[dv->nregs], 0, sizeof(dv->regs[0]));
	pthread_mutex_unlock(&dv->regs_lock);
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
	struct rf_region *r;
	struct rf_dedup *d;
	bool reg;

	if (!dv)
		return;
	d = dv->d;
	dv_unlink(d, dv);
	if (d->ht) {
		reg = dedup_rcu_enter();
		index_del_cands_of(d->ht, vm, NULL);
		dedup_rcu_leave(reg);
		urcu_memb_synchronize_rcu();
		rf_vm_regions_rdlock(vm);
		for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++) {
			if (!unmerge) {
				drop_region_refs(d, r);
				continue;
			}
			/* Every page is visited until none is MERGED: a run
			 * unmerges a prefix of itself (a page whose state
			 * changed under its lock ends it), and what is left is
			 * found again from the next page. A discard that holds
			 * a merged page (and calls dedup_page_release with this
			 * dv) is waited for by the unmerge's page lock, so none
			 * is left running when dv is freed below. */
			for (uint64_t p = 0; p < r->npages; p++) {
				unsigned int n = 0;
				int err;

				while (p + n < r->npages && n < MERGE_RUN_MAX &&
				       rf_pte_state(rf_pte_peek(&r->pte[p + n])) == RF_PAGE_MERGED)
					n++;
				if (!n)
					continue;
				err = unmerge_page(d, dv, r, p, n, false);
				if (err == 0 || err == -EAGAIN)
					continue;
				/* Left merged (logged): release its pages so no
				 * MERGED page outlives the store. */
				for (unsigned int k = 0; k < n; k++) {
					rf_pte_t *pte = &r->pte[p + k];
					uint64_t old = rf_pte_lock(pte), nv = old;

					if (rf_pte_state(old) == RF_PAGE_MERGED &&
					    dedup_page_release(vm, r, p + k, old, NULL) == 0)
						nv = rf_pte_with_payload(
						    rf_pte_with_state(old, RF_PAGE_PRIVATE), 0);
					rf_pte_unlock(vm, pte, old, nv);
				}
			}
		}
		rf_vm_regions_unlock(vm);
		if (dv->uffd)
			rf_uffd_put(vm);
	} else if (dv->ksm_marked) {
		rf_vm_regions_rdlock(vm);
		for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++)
			madvise(r->hva, r->size, MADV_UNMERGEABLE);
		rf_vm_regions_unlock(vm);
	}
	for (unsigned int i = 0; i < dv->nregs; i++) {
		atomic_fetch_sub(&vm->metadata_bytes,
				 dv->regs[i].hash_bytes + dv->regs[i].pflags_bytes);
		dedup_region_free(&dv->regs[i]);
	}
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
	};
	struct rf_dedup_vm *dv;
	struct rf_region *r;
	struct rf_dedup *d;
	int err;

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
	if (d->cfg.mode == RF_DEDUP_KSM) {
		err = ksm_backend_add_vm(d, dv);
		if (err)
			goto err_free;
	} else if (d->cfg.mode != RF_DEDUP_OFF) {
		err = rf_uffd_get(vm, &dv->uffd);
		if (err)
			goto err_free;
		dv->store_wp = rf_uffd_features(dv->uffd) & UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
		if (!dv->store_wp) {
			rf_log(vm->e, RF_LOG_ERR,
			       "%s: dedup: userfaultfd cannot write-protect shmem mappings on this "
			       "kernel (UFFD_FEATURE_WP_HUGETLBFS_SHMEM): merged pages could not "
			       "be unmerged safely",
			       vm->name);
			rf_uffd_put(vm);
			err = -ENODEV;
			goto err_free;
		}
		/* Write-protect faults need no handler of ours: uffd.c leaves a
		 * page marked RF_PTE_F_WP to us (merge.c wakes its writers) and
		 * lifts any other protection. */
		rf_uffd_add_base_mode(dv->uffd, UFFDIO_REGISTER_MODE_WP);
		vm->dedup = dv;
		rf_vm_regions_rdlock(vm);
		for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++)
			dedup_region_of(dv, r, true);
		rf_vm_regions_unlock(vm);
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

RF_EXPORT int rf_dedup_start(rf_engine *e, const struct rf_dedup_config *cfg)
{
	static const uint8_t zero[RF_PAGE_SIZE];
	struct rf_dedup *d;
	uint64_t cap;
	int err;

	if (!e || !cfg)
		return -EINVAL;
	if ((unsigned int)cfg->mode > RF_DEDUP_KSM || cfg->scan_threads > 64 ||
	    cfg->cpu_percent > 100 || cfg->idle_cpu_percent > 100 || cfg->backoff_max > 30) {
		rf_log(e, RF_LOG_ERR,
		       "dedup: start: bad config (mode %d, %u threads, cpu %u%%, idle cpu %u%%)",
		       cfg->mode, cfg->scan_threads, cfg->cpu_percent, cfg->idle_cpu_percent);
		return -EINVAL;
	}
	if (e->dedup)
		return -EALREADY;
	if (cfg->mode == RF_DEDUP_KSM && !e->feat.ksm) {
		rf_log(e, RF_LOG_ERR, "dedup: start: kernel KSM not found at %s", e->ksm_sysfs_dir);
		return -ENODEV;
	}
	if (cfg->mode != RF_DEDUP_KSM && cfg->mode != RF_DEDUP_OFF && !e->feat.uffd_wp) {
		rf_log(e, RF_LOG_ERR,
		       "dedup: start: userfaultfd write-protect is missing; merging without it "
		       "could lose guest writes");
		return -ENODEV;
	}
	d = rf_zalloc(e, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->e = e;
	d->cfg = *cfg;
	if (!d->cfg.scan_threads)
		d->cfg.scan_threads = e->cfg.scan_threads ? e->cfg.scan_threads : 1;
	if (!d->cfg.idle_cpu_percent)
		d->cfg.idle_cpu_percent = 2;
	d->vma_budget = cfg->vma_budget ? cfg->vma_budget : e->feat.max_map_count * 9 / 10;
	d->zero_hash = dedup_hash_fn(zero, sizeof(zero));
	pthread_mutex_init(&d->lock, NULL);
	pthread_mutex_init(&d->vma_lock, NULL);
	pthread_cond_init(&d->wake, NULL);
	e->dedup = d;
	if (cfg->mode == RF_DEDUP_OFF)
		return 0;
	if (cfg->mode == RF_DEDUP_KSM) {
		err = ksm_backend_start(d);
		if (err)
			goto err_free;
		return 0;
	}
	d->ht = index_new();
	/* 2^22 bits (512 KiB, touched as used): a few % false positives at
	 * 10^5 distinct pages. */
	d->bloom_bits = 1ull << 22;
	d->bloom = mmap(NULL, d->bloom_bits / 8, PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (!d->ht || d->bloom == MAP_FAILED) {
		d->bloom = NULL;
		err = -ENOMEM;
		goto err_stores;
	}
	cap = e->cfg.host_capacity_bytes >> RF_PAGE_SHIFT;
	if (cap < 65536)
		cap = 65536;
	if (cap > STORE_PG_MASK)
		cap = STORE_PG_MASK;
	d->nstores = e->feat.numa_nodes < STORE_MAX_NODES ? e->feat.numa_nodes : STORE_MAX_NODES;
	for (int i = 0; i < d->nstores; i++) {
		err = store_init(&d->stores[i], e, d->nstores > 1 ? i : -1, cap);
		if (err) {
			d->nstores = i;
			goto err_stores;
		}
	}
	d->vmas = count_vmas();
	err = scanner_start(d);
	if (err)
		goto err_stores;
	return 0;

err_stores:
	for (int i = 0; i < d->nstores; i++)
		store_destroy(&d->stores[i]);
	index_destroy(d->ht);
	if (d->bloom)
		munmap((void *)d->bloom, d->bloom_bits / 8);
err_free:
	e->dedup = NULL;
	pthread_cond_destroy(&d->wake);
	pthread_mutex_destroy(&d->vma_lock);
	pthread_mutex_destroy(&d->lock);
	rf_free(e, d);
	return err;
}

RF_EXPORT void rf_dedup_stop(rf_engine *e)
{
	struct rf_dedup *d;

	if (!e || !e->dedup)
		return;
	d = e->dedup;
	if (d->cfg.mode != RF_DEDUP_KSM && d->cfg.mode != RF_DEDUP_OFF)
		scanner_stop(d);
	while (d->vms)
		dv_detach(d->vms->vm, true);
	if (d->cfg.mode == RF_DEDUP_KSM)
		ksm_backend_stop(d);
	if (d->ht) {
		bool reg = dedup_rcu_enter();

		for (int i = 0; i < d->nstores; i++)
			store_reap(&d->stores[i], d->ht);
		dedup_rcu_leave(reg);
		index_destroy(d->ht);
	}
	for (int i = 0; i < d->nstores; i++)
		store_destroy(&d->stores[i]);
	if (d->bloom)
		munmap((void *)d->bloom, d->bloom_bits / 8);
	rf_free(e, d->units);
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

	if (!e || !e->dedup)
		return -ENOENT;
	d = e->dedup;
	if (d->cfg.mode == RF_DEDUP_KSM)
		return -EOPNOTSUPP;
	atomic_store(&d->rate_pps, pages_per_sec);
	pthread_mutex_lock(&d->lock);
	d->kick = true;
	pthread_cond_broadcast(&d->wake);
	pthread_mutex_unlock(&d->lock);
	return 0;
}

/* ---- stats -------------------------------------------------------------- */

#define STATS_CHUNK 4096

/* Measured per VM: pages mapped from the store, and ZERO pages not resident. */
static int measure_vm(struct rf_dedup_vm *dv, uint64_t *file_pages, uint64_t *zero_gone,
		      uint64_t *shared_frac_bytes)
{
	rf_vm *vm = dv->vm;
	uint64_t *ents = rf_zalloc(vm->e, STATS_CHUNK * sizeof(*ents));
	struct rf_region *r;
	int err = 0;

	if (!ents)
		return -ENOMEM;
	rf_vm_regions_rdlock(vm);
	for (unsigned int i = 0; !err && (r = __rf_vm_region(vm, i)); i++) {
		for (uint64_t base = 0; base < r->npages && !err; base += STATS_CHUNK) {
			size_t n = r->npages - base < STATS_CHUNK ? r->npages - base : STATS_CHUNK;

			err = rf_pagemap_read(vm->e, rf_region_page(r, base), n, ents);
			for (size_t k = 0; k < n && !err; k++) {
				uint64_t v = rf_pte_peek(&r->pte[base + k]);
				enum rf_page_state s = rf_pte_state(v);

				if ((ents[k] & PM_PRESENT) && (ents[k] & PM_FILE) &&
				    s == RF_PAGE_MERGED) {
					struct rf_store *st;
					uint32_t pg, ref;

					(*file_pages)++;
					st = dedup_store_of(dv->d, rf_pte_payload(v), &pg);
					ref = st ? atomic_load(&st->pages[pg].ref) : 0;
					if (ref > 1)
						*shared_frac_bytes +=
						    RF_PAGE_SIZE - RF_PAGE_SIZE / ref;
				} else if (s == RF_PAGE_ZERO &&
					   !rf_pagemap_resident(vm->e, ents[k])) {
					(*zero_gone)++;
				}
			}
		}
	}
	rf_vm_regions_unlock(vm);
	rf_free(vm->e, ents);
	return err;
}

RF_EXPORT int rf_dedup_vm_stats(rf_vm *vm, struct rf_dedup_vm_stats *st)
{
	struct rf_dedup_vm *dv;
	uint64_t file = 0, zero = 0, frac = 0;
	int err;

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
	if (dv->d->cfg.mode == RF_DEDUP_KSM)
		return 0;
	err = measure_vm(dv, &file, &zero, &frac);
	st->saved_bytes = frac + (zero << RF_PAGE_SHIFT);
	return err;
}

static int stats_fill(rf_engine *e, struct rf_dedup_stats *st, bool measure);

RF_EXPORT int rf_dedup_stats(rf_engine *e, struct rf_dedup_stats *st)
{
	return stats_fill(e, st, true);
}

RF_EXPORT int rf_dedup_counters(rf_engine *e, struct rf_dedup_stats *st)
{
	return stats_fill(e, st, false);
}

static int stats_fill(rf_engine *e, struct rf_dedup_stats *st, bool measure)
{
	struct rf_dedup *d;
	uint64_t file = 0, zero = 0, frac = 0, store_res = 0;
	int err = 0;

	if (!e || !st)
		return -EINVAL;
	d = e->dedup;
	if (!d)
		return -ENOENT;
	memset(st, 0, sizeof(*st));
	st->mode = d->cfg.mode;
	if (d->cfg.mode == RF_DEDUP_KSM)
		return ksm_backend_stats(d, st);
	pthread_mutex_lock(&d->lock);
	for (struct rf_dedup_vm *dv = d->vms; dv; dv = dv->next) {
		st->pages_scanned += atomic_load(&dv->scanned);
		st->volatile_skipped += atomic_load(&dv->volatile_skipped);
		st->pages_sharing += atomic_load(&dv->vm->state_pages[RF_PAGE_MERGED]);
		st->pages_zero += atomic_load(&dv->vm->state_pages[RF_PAGE_ZERO]);
		if (!err && measure)
			err = measure_vm(dv, &file, &zero, &frac);
		if (dv->uffd) {
			struct rf_uffd_stats us;

			rf_uffd_stats(dv->uffd, &us);
			st->cpu_ns += us.cpu_ns;
		}
	}
	pthread_mutex_unlock(&d->lock);
	for (int i = 0; i < d->nstores; i++) {
		if (measure)
			store_res += store_resident_bytes(&d->stores[i]);
		st->store_pages += atomic_load(&d->stores[i].live);
	}
	st->pages_merged = atomic_load(&d->merged);
	st->pages_unmerged = atomic_load(&d->unmerged);
	st->merge_races = atomic_load(&d->races);
	st->hash_collisions = atomic_load(&d->collisions);
	st->scan_passes = atomic_load(&d->passes);
	st->vma_budget_stops = atomic_load(&d->vma_stops);
	st->vmas = atomic_load(&d->vmas);
	st->cpu_ns += scanner_cpu_ns(d);
	st->converged = atomic_load(&d->converged);
	file <<= RF_PAGE_SHIFT;
	st->saved_bytes = (file > store_res ? file - store_res : 0) + (zero << RF_PAGE_SHIFT);
	return err;
}

/* Scanner threads stop before any VM is freed. */
const struct rf_engine_module rf_dedup_module = {
    .name = "dedup",
    .stop = rf_dedup_stop,
};
