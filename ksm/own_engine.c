/* SPDX-License-Identifier: MIT */
/*
 * ramfold's own dedup engine as a backend (dedup_own_ops, and
 * dedup_off_ops for RF_DEDUP_OFF): what the API in dedup.c asks of it.
 *
 *   start/stop  the content index, the Bloom filter, one store per NUMA node
 *               and the scanner threads (scanner.c); quiesce joins the
 *               threads before the VMs are detached
 *   add_vm      the VM's userfaultfd with write-protect in its base mode, and
 *               per-region state (a hash and a flags byte per page) for every
 *               region, each registered for write-protect; regions mapped
 *               later are picked up by the scanner (dedup_region_of)
 *   remove_vm   drops the VM's candidates, then unmerges its MERGED pages
 *               (rf_dedup_stop) or drops their store references (the VM is
 *               being freed), and frees the per-region state
 *   stats       the engine's counters, and saved_bytes measured from the
 *               kernel (pagemap, and fstat of the store's memfd), not counted
 *
 * Write-protect faults need no handler of ours: uffd.c leaves a page marked
 * RF_PTE_F_WP to the module holding it (merge.c wakes its writers) and lifts
 * any other protection. Also here: the content hash and the RCU
 * registration of the threads that use the index.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "compat_linux.h"
#include "dedup_internal.h"

uint64_t dedup_hash_default(const void *page, size_t len)
{
	return XXH3_64bits(page, len);
}

uint64_t (*dedup_hash_fn)(const void *page, size_t len) = dedup_hash_default;

/* The AVX2 hash where the CPU has it (the same values: hash_avx2.c), chosen
 * once when the library is loaded, before any engine can start. */
__attribute__((constructor)) static void pick_hash(void)
{
	if (dedup_hash_avx2_usable())
		dedup_hash_fn = dedup_hash_avx2;
}

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

/* ---- per-region state --------------------------------------------------- */

static void dedup_region_free(struct dedup_region *dr)
{
	if (dr->pinfo)
		munmap((void *)dr->pinfo, dr->pinfo_bytes);
	rf_free(dr->dv->vm->e, dr);
}

struct dedup_region *dedup_region_of(struct rf_dedup_vm *dv, const struct rf_region *r, bool create)
{
	struct dedup_region *dr = NULL;
	int err;

	pthread_mutex_lock(&dv->regs_lock);
	for (unsigned int i = 0; i < dv->nregs; i++)
		if (dv->regs[i]->r == r)
			dr = dv->regs[i];
	if (dr || !create || dv->nregs == RF_MAX_REGIONS)
		goto out;
	dr = rf_zalloc(dv->vm->e, sizeof(*dr));
	if (!dr)
		goto out;
	dr->dv = dv;
	dr->pinfo_bytes =
	    (r->npages * sizeof(*dr->pinfo) + RF_PAGE_SIZE - 1) & ~(size_t)(RF_PAGE_SIZE - 1);
	dr->pinfo = mmap(NULL, dr->pinfo_bytes, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (dr->pinfo == MAP_FAILED) {
		dr->pinfo = NULL;
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
	dv->regs[dv->nregs++] = dr;
	atomic_fetch_add(&dv->vm->metadata_bytes, dr->pinfo_bytes);
out:
	pthread_mutex_unlock(&dv->regs_lock);
	return dr;
}

/* ---- attaching and detaching VMs ---------------------------------------- */

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

/* The region_unmap hook (regions lock held for writing): forget @r. */
static void own_region_unmap(struct rf_dedup_vm *dv, struct rf_region *r)
{
	struct dedup_region *dr;
	bool reg;

	dr = dedup_region_of(dv, r, false);
	if (!dr)
		return;
	reg = dedup_rcu_enter();
	index_del_cands_of(dv->d->ht, dv, dr);
	dedup_rcu_leave(reg);
	/* Scanners that found one of those entries are inside a read-side
	 * section; none can be inside this region (we hold its write lock). */
	urcu_memb_synchronize_rcu();
	drop_region_refs(dv->d, r);
	pthread_mutex_lock(&dv->regs_lock);
	for (unsigned int i = 0; i < dv->nregs; i++)
		if (dv->regs[i] == dr)
			dv->regs[i] = dv->regs[--dv->nregs];
	dv->regs[dv->nregs] = NULL;
	pthread_mutex_unlock(&dv->regs_lock);
	atomic_fetch_sub(&dv->vm->metadata_bytes, dr->pinfo_bytes);
	dedup_region_free(dr);
}

/* Bring the MERGED pages of @r back to private (rf_dedup_stop). */
static void unmerge_region(struct rf_dedup *d, struct rf_dedup_vm *dv, struct rf_region *r)
{
	rf_vm *vm = dv->vm;

	/* Every page is visited until none is MERGED: a run unmerges a
	 * prefix of itself (a page whose state changed under its lock ends
	 * it), and what is left is found again from the next page. A discard
	 * that holds a merged page (and calls dedup_page_release with this
	 * dv) is waited for by the unmerge's page lock, so none is left
	 * running when dv is freed. */
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
		/* Left merged (logged): release its pages so no MERGED page
		 * outlives the store. */
		for (unsigned int k = 0; k < n; k++) {
			rf_pte_t *pte = &r->pte[p + k];
			uint64_t old = rf_pte_lock(pte), nv = old;

			if (rf_pte_state(old) == RF_PAGE_MERGED &&
			    dedup_page_release(vm, r, p + k, old, NULL) == 0)
				nv =
				    rf_pte_with_payload(rf_pte_with_state(old, RF_PAGE_PRIVATE), 0);
			rf_pte_unlock(vm, pte, old, nv);
		}
	}
}

static void own_remove_vm(struct rf_dedup *d, struct rf_dedup_vm *dv, bool unmerge)
{
	rf_vm *vm = dv->vm;
	struct rf_region *r;
	bool reg;

	reg = dedup_rcu_enter();
	index_del_cands_of(d->ht, dv, NULL);
	dedup_rcu_leave(reg);
	urcu_memb_synchronize_rcu();
	rf_vm_regions_rdlock(vm);
	for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++) {
		if (unmerge)
			unmerge_region(d, dv, r);
		else
			drop_region_refs(d, r);
	}
	rf_vm_regions_unlock(vm);
	if (dv->uffd)
		rf_uffd_put(vm);
	for (unsigned int i = 0; i < dv->nregs; i++) {
		atomic_fetch_sub(&vm->metadata_bytes, dv->regs[i]->pinfo_bytes);
		dedup_region_free(dv->regs[i]);
		dv->regs[i] = NULL;
	}
	dv->nregs = 0;
}

static int own_add_vm(struct rf_dedup *d, struct rf_dedup_vm *dv)
{
	rf_vm *vm = dv->vm;
	struct rf_region *r;
	int err;

	(void)d;
	err = rf_pagemap_need(vm->e, vm->name); /* the scanner reads it */
	if (err)
		return err;
	err = rf_uffd_get(vm, &dv->uffd);
	if (err)
		return err;
	dv->store_wp = rf_uffd_features(dv->uffd) & UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	if (!dv->store_wp) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: dedup: userfaultfd cannot write-protect shmem mappings on this "
		       "kernel (UFFD_FEATURE_WP_HUGETLBFS_SHMEM): merged pages could not "
		       "be unmerged safely",
		       vm->name);
		rf_uffd_put(vm);
		return -ENODEV;
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
	return 0;
}

/* ---- start / stop ------------------------------------------------------- */

/*
 * RCU callbacks (index nodes freed, store pages recycled) run on a worker
 * the library owns, "rf-rcu", instead of liburcu's default worker, which
 * is created on first use and lives as long as the process: one worker
 * while any engine's own backend runs, joined when the last one stops, so
 * no library thread outlives rf_engine_free.
 */
static pthread_mutex_t rcu_worker_lock = PTHREAD_MUTEX_INITIALIZER;
static struct call_rcu_data *rcu_worker;
static unsigned int rcu_worker_users;

/* The embedder's thread_start hook, run on the worker itself through a
 * callback queued on it: liburcu starts the thread, so this is the first
 * thing the library has it do. The hook is copied, not the engine: the
 * worker is shared by the engines whose dedup runs, and the one that
 * started it (whose hook it gets) may be freed first. */
struct rcu_hook {
	struct rcu_head head;
	void (*fn)(void *arg, const char *name);
	void *arg;
};

static void rcu_hook_run(struct rcu_head *head)
{
	struct rcu_hook *h = caa_container_of(head, struct rcu_hook, head);

	h->fn(h->arg, "rf-rcu");
	free(h);
}

static int rcu_worker_get(rf_engine *e)
{
	int err = 0;

	pthread_mutex_lock(&rcu_worker_lock);
	if (!rcu_worker) {
		rcu_worker = urcu_memb_create_call_rcu_data(0, -1);
		if (rcu_worker) {
			struct rcu_hook *h = e->cfg.thread_start ? malloc(sizeof(*h)) : NULL;

			pthread_setname_np(urcu_memb_get_call_rcu_thread(rcu_worker), "rf-rcu");
			if (h) {
				h->fn = e->cfg.thread_start;
				h->arg = e->cfg.thread_arg;
				dedup_call_rcu(&h->head, rcu_hook_run);
				/* Run before the worker does the engine's work. */
				urcu_memb_barrier();
			} else if (e->cfg.thread_start) {
				rf_log(e, RF_LOG_ERR,
				       "dedup: start: out of memory for the RCU "
				       "worker's thread_start");
				urcu_memb_call_rcu_data_free(rcu_worker);
				rcu_worker = NULL;
			}
		}
		if (!rcu_worker)
			rf_log(e, RF_LOG_ERR, "dedup: start: cannot start the RCU worker");
	}
	if (rcu_worker)
		rcu_worker_users++;
	else
		err = -ENOMEM;
	pthread_mutex_unlock(&rcu_worker_lock);
	return err;
}

static void rcu_worker_put(void)
{
	pthread_mutex_lock(&rcu_worker_lock);
	if (--rcu_worker_users == 0) {
		/* Every callback queued so far has run: none moves to liburcu's
		 * default worker, which would start it. */
		urcu_memb_barrier();
		urcu_memb_call_rcu_data_free(rcu_worker);
		rcu_worker = NULL;
	}
	pthread_mutex_unlock(&rcu_worker_lock);
}

void dedup_call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *))
{
	struct call_rcu_data *old = urcu_memb_get_thread_call_rcu_data();

	/* A running engine holds a reference: the worker is there. */
	urcu_memb_set_thread_call_rcu_data(rcu_worker);
	urcu_memb_call_rcu(head, fn);
	urcu_memb_set_thread_call_rcu_data(old);
}

static int own_start(struct rf_dedup *d)
{
	static const uint8_t zero[RF_PAGE_SIZE];
	rf_engine *e = d->e;
	uint64_t cap;
	int err;

	if (!e->feat.uffd_wp) {
		rf_log(e, RF_LOG_ERR,
		       "dedup: start: userfaultfd write-protect is missing; merging without it "
		       "could lose guest writes");
		return -ENODEV;
	}
	err = rcu_worker_get(e);
	if (err)
		return err;
	d->vma_budget = d->cfg.vma_budget ? d->cfg.vma_budget : e->feat.max_map_count * 9 / 10;
	d->zero_hash = dedup_hash_fn(zero, sizeof(zero));
	d->ht = index_new();
	/* The Bloom filter starts at its smallest; the scanner sizes it to
	 * the pages it hashes (bloom_fit). */
	if (!d->ht || bloom_fit(d, 0) != 0) {
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
	atomic_store(&d->nslots, d->nstores);
	err = broker_config(d, d->cfg.broker);
	if (err)
		goto err_stores;
	d->vmas = count_vmas();
	d->vma_base = d->vmas;
	d->purge_mark = index_nodes_freed();
	err = scanner_start(d);
	if (err)
		goto err_stores;
	return 0;

err_stores:
	for (int i = 0; i < d->nstores; i++)
		store_destroy(&d->stores[i]);
	index_destroy(d->ht);
	if (d->bloom)
		munmap((void *)d->bloom, d->bloom_bits / 4);
	rcu_worker_put();
	return err;
}

/*
 * The seen map's bits again, from every page hashed (PF_HASHED): each
 * page's hash of its last pass is kept beside its flags. A key met twice
 * gets its Bloom bit, as at first sight (scan_page): a pair of pages hashed
 * but not yet filed would otherwise lose the bit that files them. A stale
 * hash (the page changed or was merged since) sets a bit no page needs,
 * which costs a node at most.
 */
static void seen_refill(struct rf_dedup *d)
{
	atomic_store(&d->seen_count, 0);
	pthread_mutex_lock(&d->lock);
	for (struct rf_dedup_vm *dv = d->vms; dv; dv = dv->next) {
		struct index_key k = {0, dv->domain, d->cfg.cross_node ? 0 : (int16_t)dv->numa};

		pthread_mutex_lock(&dv->regs_lock);
		for (unsigned int i = 0; i < dv->nregs; i++) {
			struct dedup_region *dr = dv->regs[i];

			for (uint64_t p = 0; p < dr->r->npages; p++) {
				uint32_t w =
				    atomic_load_explicit(&dr->pinfo[p], memory_order_relaxed);

				if (!(w & PF_HASHED))
					continue;
				k.hash = pi_hash(w);
				if (seen_set(d, &k))
					bloom_set(d, &k);
				else
					atomic_fetch_add(&d->seen_count, 1);
			}
		}
		pthread_mutex_unlock(&dv->regs_lock);
	}
	pthread_mutex_unlock(&d->lock);
	d->seen_live = atomic_load(&d->seen_count);
}

/*
 * Size the Bloom filter (and the seen map, as big) to @pages, the pages the
 * last pass hashed: about 8 bits a page (a page files at most one key, so at
 * most 1 bit in 8 is set and a key never filed meets a set bit at most 1
 * time in 8), a power of two within [2^16, 2^26], never shrunk. Sized to the
 * pages with content rather than to guest RAM: the maps are touched all
 * over (a few thousand keys set a bit in every 4 KiB of them), so their
 * whole size is memory the process pays, and a freshly booted guest has
 * content in a third of its RAM or less. Before any pass hashed a page,
 * the scanner gives the VMs' resident pages instead (an over-estimate:
 * under QEMU, huge pages' zero-filled pages count), and maps at least twice
 * too big for the first count of pages hashed are then replaced, once, by
 * the smaller ones (bloom_guessed). A
 * VM attached later may run its first pass on maps too small, over-full:
 * nothing is filed on a first sight, and the bigger maps that follow it
 * are rebuilt exactly (below), so the false bits go with the old maps;
 * what such a pass pays is more index lookups. Or, at the same size, refill a seen map a
 * quarter full (more keys counted than an eighth of its bits, two bits a
 * key; struct rf_dedup says why) if that halves it at least: with
 * more than 2^26 / 8 pages, the live bits alone may fill a quarter, and
 * refilling on every pass would buy nothing. A bigger one is filled from
 * the index before it replaces the old: a key filed but missing from the
 * filter would never be looked up, and its twins would be filed beside it
 * instead of merged.
 *
 * Called by own_start, and by scanner thread 0 between passes, while the
 * other scanner threads wait at the barrier: only scanner threads read the
 * filter or add to the index (the embedder's threads only remove nodes,
 * which leaves at most a stale bit).
 */
int bloom_fit(struct rf_dedup *d, uint64_t pages)
{
	uint64_t bits = BLOOM_MIN_BITS, old_bits = d->bloom_bits;
	_Atomic uint64_t *nb, *old = d->bloom;
	struct cds_lfht_iter it;
	struct index_node *n;

	while (bits < 8 * pages && bits < BLOOM_MAX_BITS)
		bits <<= 1;
	if (old && bits <= old_bits && !(d->bloom_guessed && pages && 2 * bits <= old_bits)) {
		uint64_t n = atomic_load(&d->seen_count);

		if (n > old_bits / 8 && n > 2 * d->seen_live) {
			memset((void *)d->seen, 0, old_bits / 8);
			seen_refill(d);
		}
		if (pages)
			d->bloom_guessed = false;
		return 0;
	}
	/* Past here: bigger maps, or (once) smaller ones than the resident
	 * guess gave, rebuilt the same way. */
	d->bloom_guessed = false;
	/* Both maps in one mapping: the filter, then the seen map. */
	nb = mmap(NULL, bits / 4, PROT_READ | PROT_WRITE,
		  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (nb == MAP_FAILED) {
		if (bits == d->bloom_failed_bits)
			return -ENOMEM; /* logged on the first try */
		d->bloom_failed_bits = bits;
		rf_log(d->e, old ? RF_LOG_WARN : RF_LOG_ERR,
		       "dedup: Bloom filter and seen map of %" PRIu64 " KiB: mmap: %s%s",
		       bits / 4096, strerror(errno), old ? " (the smaller one stays)" : "");
		return -ENOMEM;
	}
	d->bloom = nb;
	d->seen = nb + bits / 64;
	d->bloom_bits = bits;
	if (!old)
		return 0;
	urcu_memb_read_lock();
	cds_lfht_for_each_entry (d->ht, &it, n, lfht) {
		struct index_key k = {n->hash, n->domain, n->numa};
		uint64_t b = bloom_bit(d, &k);

		atomic_fetch_or_explicit(&nb[b >> 6], 1ull << (b & 63), memory_order_relaxed);
	}
	urcu_memb_read_unlock();
	seen_refill(d);
	munmap((void *)old, old_bits / 4);
	return 0;
}

/* The scanner threads stop before the VMs are detached. */
static void own_quiesce(struct rf_dedup *d)
{
	scanner_stop(d);
}

/* Every VM is detached: no store page is mapped any more. */
static void own_stop(struct rf_dedup *d)
{
	bool reg = dedup_rcu_enter();
	int nslots = atomic_load(&d->nslots);

	for (int i = 0; i < nslots; i++)
		store_reap(&d->stores[i], d->ht);
	dedup_rcu_leave(reg);
	index_destroy(d->ht);
	/* After the last reap's grace period (store_destroy waits for it):
	 * its recycling reads the broker stores' pages. */
	for (int i = 0; i < nslots; i++)
		store_destroy(&d->stores[i]);
	broker_close_all(d);
	munmap((void *)d->bloom, d->bloom_bits / 4);
	rf_free(d->e, d->units);
	rcu_worker_put();
}

/* A rate set at run time replaces the config's budgets (scanner.c: throttle). */
static int own_set_rate(struct rf_dedup *d, uint64_t pages_per_sec)
{
	atomic_store(&d->rate_pps, pages_per_sec);
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
					ref = st ? atomic_load(&st->pages[pg].ref) & STORE_REF_COUNT
						 : 0;
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

static int own_vm_stats(struct rf_dedup_vm *dv, struct rf_dedup_vm_stats *st)
{
	uint64_t file = 0, zero = 0, frac = 0;
	int err;

	err = measure_vm(dv, &file, &zero, &frac);
	st->saved_bytes = frac + (zero << RF_PAGE_SHIFT);
	return err;
}

static int own_stats(struct rf_dedup *d, struct rf_dedup_stats *st, bool measure)
{
	uint64_t file = 0, zero = 0, frac = 0, store_res = 0;
	int err = 0;

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
	for (int i = 0; i < atomic_load(&d->nslots); i++) {
		if (measure)
			store_res += store_resident_bytes(&d->stores[i]);
		st->store_pages += atomic_load(&d->stores[i].live);
		if (d->stores[i].remote)
			st->broker_pages_sharing += atomic_load(&d->stores[i].refs);
	}
	st->broker_domains = broker_connected(d);
	st->pages_merged = atomic_load(&d->merged);
	st->pages_unmerged = atomic_load(&d->unmerged);
	st->merge_races = atomic_load(&d->races);
	st->hash_collisions = atomic_load(&d->collisions);
	st->scan_passes = atomic_load(&d->passes);
	st->vma_budget_stops = atomic_load(&d->vma_stops);
	st->cpu_ns += scanner_cpu_ns(d);
	st->converged = atomic_load(&d->converged);
	file <<= RF_PAGE_SHIFT;
	st->saved_bytes = (file > store_res ? file - store_res : 0) + (zero << RF_PAGE_SHIFT);
	return err;
}

const struct dedup_backend_ops dedup_own_ops = {
    .name = "own",
    .start = own_start,
    .quiesce = own_quiesce,
    .stop = own_stop,
    .add_vm = own_add_vm,
    .remove_vm = own_remove_vm,
    .region_unmap = own_region_unmap,
    .set_rate = own_set_rate,
    .stats = own_stats,
    .vm_stats = own_vm_stats,
};

/* RF_DEDUP_OFF: VMs are attached (hooks, counters) and nothing is merged;
 * the stats are measured as the own engine's, so pages other modules left
 * ZERO still count as saved. */
const struct dedup_backend_ops dedup_off_ops = {
    .name = "off",
    .set_rate = own_set_rate,
    .stats = own_stats,
    .vm_stats = own_vm_stats,
};
