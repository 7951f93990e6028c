/* SPDX-License-Identifier: MIT */
/*
 * VMs and their guest RAM. Regions are kept in an array sorted by gpa, so a
 * guest address is found by binary search: O(log regions), and a range that
 * is not wholly inside one region is refused in that one place.
 */
#include <ctype.h>
#include <errno.h>
#include <numa.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "compat_linux.h"
#include "internal.h"

static void by_hva_insert(rf_vm *vm, struct rf_region *r);
static void by_hva_remove(rf_vm *vm, struct rf_region *r);

RF_EXPORT void rf_vm_config_init(struct rf_vm_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->numa_node = -1;
}

static bool valid_name(const char *name)
{
	size_t n;

	if (!name)
		return false;
	n = strlen(name);
	if (n == 0 || n >= RF_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isgraph((unsigned char)name[i]))
			return false;
	return true;
}

RF_EXPORT int rf_vm_new(rf_engine *e, const char *name, const struct rf_vm_config *cfg, rf_vm **out)
{
	rf_vm *vm, *it;
	int err;

	if (!e || !cfg || !out)
		return -EINVAL;
	*out = NULL;
	if (!valid_name(name)) {
		rf_log(e, RF_LOG_ERR, "ramfold: vm_new: name must be 1..%d printable characters",
		       RF_NAME_MAX - 1);
		return -EINVAL;
	}
	if (cfg->ram_bytes == 0 || (cfg->ram_bytes & (RF_PAGE_SIZE - 1))) {
		rf_log(e, RF_LOG_ERR,
		       "%s: vm_new: promised RAM %llu bytes is not a positive multiple of 4 KiB",
		       name, (unsigned long long)cfg->ram_bytes);
		return -EINVAL;
	}
	if (cfg->domain && !valid_name(cfg->domain)) {
		rf_log(e, RF_LOG_ERR,
		       "%s: vm_new: sharing domain must be 1..%d printable characters", name,
		       RF_NAME_MAX - 1);
		return -EINVAL;
	}
	if (cfg->numa_node < -1 || cfg->numa_node >= e->feat.numa_nodes) {
		rf_log(e, RF_LOG_ERR, "%s: vm_new: NUMA node %d not configured (%d nodes)", name,
		       cfg->numa_node, e->feat.numa_nodes);
		return -EINVAL;
	}
	vm = rf_zalloc(e, sizeof(*vm));
	if (!vm)
		return -ENOMEM;
	vm->e = e;
	snprintf(vm->name, sizeof(vm->name), "%s", name);
	if (cfg->domain)
		snprintf(vm->domain, sizeof(vm->domain), "%s", cfg->domain);
	vm->cfg = *cfg;
	vm->cfg.domain = cfg->domain ? vm->domain : NULL;
	pthread_rwlock_init(&vm->regions_lock, NULL);
	atomic_store(&vm->metadata_bytes, sizeof(*vm));

	pthread_mutex_lock(&e->vms_lock);
	for (it = e->vms; it; it = it->next) {
		if (strcmp(it->name, name) == 0) {
			pthread_mutex_unlock(&e->vms_lock);
			rf_log(e, RF_LOG_ERR, "%s: vm_new: a VM of that name exists", name);
			pthread_rwlock_destroy(&vm->regions_lock);
			rf_free(e, vm);
			return -EEXIST;
		}
	}
	err = 0;
	for (unsigned int i = 0; rf_engine_modules[i] && !err; i++)
		if (rf_engine_modules[i]->vm_admit)
			err = rf_engine_modules[i]->vm_admit(e, vm); /* the ledger's admission */
	if (err) {
		pthread_mutex_unlock(&e->vms_lock);
		pthread_rwlock_destroy(&vm->regions_lock);
		rf_free(e, vm);
		return err;
	}
	vm->id = e->next_vm_id++;
	vm->next = e->vms;
	e->vms = vm;
	pthread_mutex_unlock(&e->vms_lock);
	*out = vm;
	return 0;
}

int rf_vm_add_hooks(rf_vm *vm, const struct rf_vm_hooks *h)
{
	if (vm->nr_hooks >= RF_VM_MAX_HOOKS)
		return -ENOSPC;
	vm->hooks[vm->nr_hooks++] = *h;
	return 0;
}

bool rf_vm_hooks_registered(const rf_vm *vm, void (*vm_free)(rf_vm *, void *))
{
	for (unsigned int i = 0; i < vm->nr_hooks; i++)
		if (vm->hooks[i].vm_free == vm_free)
			return true;
	return false;
}

void rf_vm_hooks_forget_free(rf_vm *vm, void (*vm_free)(rf_vm *, void *))
{
	for (unsigned int i = 0; i < vm->nr_hooks; i++)
		if (vm->hooks[i].vm_free == vm_free)
			vm->hooks[i].vm_free = NULL;
}

const struct rf_vm_hooks *rf_vm_state_owner(const rf_vm *vm, enum rf_page_state s)
{
	for (unsigned int i = 0; i < vm->nr_hooks; i++)
		if (vm->hooks[i].owns_states & (1u << s))
			return &vm->hooks[i];
	return NULL;
}

static void region_free(rf_vm *vm, struct rf_region *r)
{
	uint64_t counts[RF_PAGE_NSTATES] = {0};

	for (unsigned int i = 0; i < vm->nr_hooks; i++)
		if (vm->hooks[i].region_unmap)
			vm->hooks[i].region_unmap(vm, r, vm->hooks[i].arg);
	for (uint64_t i = 0; i < r->npages; i++)
		counts[rf_pte_state(atomic_load(&r->pte[i]))]++;
	for (int s = 0; s < RF_PAGE_NSTATES; s++)
		atomic_fetch_sub(&vm->state_pages[s], counts[s]);
	munmap(r->hva, r->size);
	munmap(r->pte, r->pte_bytes);
	atomic_fetch_sub(&vm->metadata_bytes, r->pte_bytes + sizeof(*r));
	vm->mapped_bytes -= r->size;
	rf_free(vm->e, r);
}

RF_EXPORT void rf_vm_free(rf_vm *vm)
{
	rf_engine *e;
	rf_vm **pp;

	if (!vm)
		return;
	e = vm->e;
	for (unsigned int i = 0; i < vm->nr_hooks; i++)
		if (vm->hooks[i].vm_free)
			vm->hooks[i].vm_free(vm, vm->hooks[i].arg);
	pthread_rwlock_wrlock(&vm->regions_lock);
	while (vm->nr_regions) {
		struct rf_region *r = vm->regions[vm->nr_regions - 1];

		by_hva_remove(vm, r);
		vm->nr_regions--;
		region_free(vm, r);
	}
	pthread_rwlock_unlock(&vm->regions_lock);

	pthread_mutex_lock(&e->vms_lock);
	for (pp = &e->vms; *pp; pp = &(*pp)->next) {
		if (*pp == vm) {
			*pp = vm->next;
			break;
		}
	}
	pthread_mutex_unlock(&e->vms_lock);
	pthread_rwlock_destroy(&vm->regions_lock);
	rf_free(e, vm);
}

RF_EXPORT const char *rf_vm_name(const rf_vm *vm)
{
	return vm ? vm->name : NULL;
}

RF_EXPORT rf_engine *rf_vm_engine(const rf_vm *vm)
{
	return vm ? vm->e : NULL;
}

/* Where a region starts in the index @by_hva says: its host or its guest
 * address. */
static uint64_t region_key(const struct rf_region *r, bool by_hva)
{
	return by_hva ? (uint64_t)(uintptr_t)r->hva : r->gpa;
}

/* Index of the first region of @arr (vm->regions, sorted by gpa, or
 * vm->by_hva) whose start is greater than @key. */
static unsigned int upper_bound(const rf_vm *vm, struct rf_region *const *arr, bool by_hva,
				uint64_t key)
{
	unsigned int lo = 0, hi = vm->nr_regions;

	while (lo < hi) {
		unsigned int mid = lo + (hi - lo) / 2;

		if (region_key(arr[mid], by_hva) <= key)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* The region of @arr that holds @key, or NULL. */
static struct rf_region *find_in(const rf_vm *vm, struct rf_region *const *arr, bool by_hva,
				 uint64_t key)
{
	unsigned int i = upper_bound(vm, arr, by_hva, key);

	if (i == 0 || key - region_key(arr[i - 1], by_hva) >= arr[i - 1]->size)
		return NULL;
	return arr[i - 1];
}

struct rf_region *__rf_vm_find_region(const rf_vm *vm, uint64_t gpa)
{
	return find_in(vm, vm->regions, false, gpa);
}

struct rf_region *__rf_vm_find_region_hva(const rf_vm *vm, uintptr_t hva)
{
	return find_in(vm, vm->by_hva, true, hva);
}

static void by_hva_insert(rf_vm *vm, struct rf_region *r)
{
	unsigned int pos = upper_bound(vm, vm->by_hva, true, (uintptr_t)r->hva);

	memmove(&vm->by_hva[pos + 1], &vm->by_hva[pos],
		(vm->nr_regions - pos) * sizeof(vm->by_hva[0]));
	vm->by_hva[pos] = r;
}

static void by_hva_remove(rf_vm *vm, struct rf_region *r)
{
	unsigned int i = upper_bound(vm, vm->by_hva, true, (uintptr_t)r->hva) - 1;

	memmove(&vm->by_hva[i], &vm->by_hva[i + 1],
		(vm->nr_regions - i - 1) * sizeof(vm->by_hva[0]));
}

static int apply_numa_and_thp(rf_vm *vm, void *hva, uint64_t size)
{
	int adv = (vm->cfg.flags & RF_VM_THP) ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;

	/* THP off by default: a huge page cannot be partly merged, ballooned
	 * or swapped without splitting it, and splits cost more than they save. */
	if (vm->e->feat.thp && madvise(hva, size, adv) != 0)
		rf_log(vm->e, RF_LOG_WARN, "%s: map_ram: madvise(%s): %s", vm->name,
		       adv == MADV_HUGEPAGE ? "MADV_HUGEPAGE" : "MADV_NOHUGEPAGE", strerror(errno));
	if (vm->cfg.numa_node >= 0 && vm->e->feat.numa_nodes > 1)
		numa_tonode_memory(hva, size, vm->cfg.numa_node);
	return 0;
}

RF_EXPORT int rf_vm_map_ram(rf_vm *vm, uint64_t gpa, uint64_t size, void **hva)
{
	struct rf_region *r;
	unsigned int pos;
	void *mem;
	int err;

	if (!vm || !hva)
		return -EINVAL;
	*hva = NULL;
	if (size == 0 || (gpa | size) & (RF_PAGE_SIZE - 1)) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: map_ram: gpa 0x%llx size 0x%llx: must be non-zero and 4 KiB aligned",
		       vm->name, (unsigned long long)gpa, (unsigned long long)size);
		return -EINVAL;
	}
	if (gpa + size < gpa) {
		rf_log(vm->e, RF_LOG_ERR, "%s: map_ram: gpa 0x%llx + size 0x%llx wraps around",
		       vm->name, (unsigned long long)gpa, (unsigned long long)size);
		return -EINVAL;
	}
	pthread_rwlock_wrlock(&vm->regions_lock);
	if (vm->mapped_bytes + size > vm->cfg.ram_bytes) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: map_ram: 0x%llx bytes at gpa 0x%llx would exceed the promised RAM "
		       "(0x%llx of 0x%llx mapped)",
		       vm->name, (unsigned long long)size, (unsigned long long)gpa,
		       (unsigned long long)vm->mapped_bytes, (unsigned long long)vm->cfg.ram_bytes);
		err = -E2BIG;
		goto out_unlock;
	}
	if (vm->nr_regions == RF_MAX_REGIONS) {
		rf_log(vm->e, RF_LOG_ERR, "%s: map_ram: %d regions already mapped", vm->name,
		       RF_MAX_REGIONS);
		err = -ENOSPC;
		goto out_unlock;
	}
	pos = upper_bound(vm, vm->regions, false, gpa);
	if ((pos > 0 && vm->regions[pos - 1]->gpa + vm->regions[pos - 1]->size > gpa) ||
	    (pos < vm->nr_regions && vm->regions[pos]->gpa < gpa + size)) {
		rf_log(vm->e, RF_LOG_ERR, "%s: map_ram: [0x%llx, 0x%llx) overlaps a mapped region",
		       vm->name, (unsigned long long)gpa, (unsigned long long)(gpa + size));
		err = -EEXIST;
		goto out_unlock;
	}
	r = rf_zalloc(vm->e, sizeof(*r));
	if (!r) {
		err = -ENOMEM;
		goto out_unlock;
	}
	r->gpa = gpa;
	r->size = size;
	r->npages = size >> RF_PAGE_SHIFT;
	/* The table is mmap'ed: untouched entries read 0 = PRIVATE, unlocked,
	 * and cost nothing until written. */
	r->pte_bytes =
	    (r->npages * sizeof(rf_pte_t) + RF_PAGE_SIZE - 1) & ~(size_t)(RF_PAGE_SIZE - 1);
	r->pte = mmap(NULL, r->pte_bytes, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->pte == MAP_FAILED) {
		err = -errno;
		goto out_free;
	}
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	if (mem == MAP_FAILED) {
		err = -errno;
		rf_log(vm->e, RF_LOG_ERR, "%s: map_ram: mmap of 0x%llx bytes: %s", vm->name,
		       (unsigned long long)size, strerror(errno));
		goto out_pte;
	}
	r->hva = mem;
	apply_numa_and_thp(vm, mem, size);
	by_hva_insert(vm, r); /* before nr_regions grows: it counts the old entries */
	memmove(&vm->regions[pos + 1], &vm->regions[pos],
		(vm->nr_regions - pos) * sizeof(vm->regions[0]));
	vm->regions[pos] = r;
	vm->nr_regions++;
	vm->mapped_bytes += size;
	atomic_fetch_add(&vm->state_pages[RF_PAGE_PRIVATE], r->npages);
	atomic_fetch_add(&vm->metadata_bytes, r->pte_bytes + sizeof(*r));
	pthread_rwlock_unlock(&vm->regions_lock);
	*hva = mem;
	return 0;

out_pte:
	munmap(r->pte, r->pte_bytes);
out_free:
	rf_free(vm->e, r);
out_unlock:
	pthread_rwlock_unlock(&vm->regions_lock);
	return err;
}

RF_EXPORT int rf_vm_unmap_ram(rf_vm *vm, uint64_t gpa)
{
	unsigned int i;

	if (!vm)
		return -EINVAL;
	pthread_rwlock_wrlock(&vm->regions_lock);
	for (i = 0; i < vm->nr_regions; i++)
		if (vm->regions[i]->gpa == gpa)
			break;
	if (i == vm->nr_regions) {
		pthread_rwlock_unlock(&vm->regions_lock);
		rf_log(vm->e, RF_LOG_ERR, "%s: unmap_ram: no region starts at gpa 0x%llx", vm->name,
		       (unsigned long long)gpa);
		return -ENOENT;
	}
	by_hva_remove(vm, vm->regions[i]);
	region_free(vm, vm->regions[i]);
	memmove(&vm->regions[i], &vm->regions[i + 1],
		(vm->nr_regions - i - 1) * sizeof(vm->regions[0]));
	vm->nr_regions--;
	pthread_rwlock_unlock(&vm->regions_lock);
	return 0;
}

RF_EXPORT int rf_vm_gpa_to_hva(const rf_vm *vm, uint64_t gpa, uint64_t len, void **hva)
{
	struct rf_region *r;
	int err = -EFAULT;

	if (!vm || !hva)
		return -EINVAL;
	if (len == 0)
		len = 1;
	if (gpa + len < gpa)
		return -EFAULT;
	pthread_rwlock_rdlock((pthread_rwlock_t *)&vm->regions_lock);
	r = __rf_vm_find_region(vm, gpa);
	/* Both ends inside the same region: written so it cannot overflow. */
	if (r && len <= r->size - (gpa - r->gpa)) {
		*hva = r->hva + (gpa - r->gpa);
		err = 0;
	}
	pthread_rwlock_unlock((pthread_rwlock_t *)&vm->regions_lock);
	return err;
}

RF_EXPORT int rf_vm_hva_to_gpa(const rf_vm *vm, const void *hva, uint64_t *gpa)
{
	uintptr_t a = (uintptr_t)hva;
	struct rf_region *r;
	int err = -EFAULT;

	if (!vm || !gpa)
		return -EINVAL;
	pthread_rwlock_rdlock((pthread_rwlock_t *)&vm->regions_lock);
	r = __rf_vm_find_region_hva(vm, a);
	if (r) {
		*gpa = r->gpa + (a - (uintptr_t)r->hva);
		err = 0;
	}
	pthread_rwlock_unlock((pthread_rwlock_t *)&vm->regions_lock);
	return err;
}

RF_EXPORT unsigned int rf_vm_nr_regions(const rf_vm *vm)
{
	return vm ? vm->nr_regions : 0;
}

RF_EXPORT int rf_vm_region(const rf_vm *vm, unsigned int i, uint64_t *gpa, uint64_t *size,
			   void **hva)
{
	int err = -ENOENT;

	if (!vm)
		return -EINVAL;
	pthread_rwlock_rdlock((pthread_rwlock_t *)&vm->regions_lock);
	if (i < vm->nr_regions) {
		if (gpa)
			*gpa = vm->regions[i]->gpa;
		if (size)
			*size = vm->regions[i]->size;
		if (hva)
			*hva = vm->regions[i]->hva;
		err = 0;
	}
	pthread_rwlock_unlock((pthread_rwlock_t *)&vm->regions_lock);
	return err;
}

RF_EXPORT int rf_vm_page_state(const rf_vm *vm, uint64_t gpa)
{
	struct rf_region *r;
	int s = -EFAULT;

	if (!vm)
		return -EINVAL;
	pthread_rwlock_rdlock((pthread_rwlock_t *)&vm->regions_lock);
	r = __rf_vm_find_region(vm, gpa);
	if (r)
		s = (int)rf_pte_state(rf_pte_peek(&r->pte[rf_region_index(r, gpa)]));
	pthread_rwlock_unlock((pthread_rwlock_t *)&vm->regions_lock);
	return s;
}

RF_EXPORT int rf_vm_exclude_range(rf_vm *vm, uint64_t gpa, uint64_t len, bool exclude)
{
	uint64_t end;

	if (!vm || len == 0 || gpa + len < gpa)
		return -EINVAL;
	end = gpa + len;
	rf_vm_regions_rdlock(vm);
	/* Check the whole range first, so a bad range changes nothing. */
	for (uint64_t a = gpa & ~(uint64_t)(RF_PAGE_SIZE - 1); a < end; a += RF_PAGE_SIZE) {
		struct rf_region *r = __rf_vm_find_region(vm, a);

		if (!r) {
			rf_vm_regions_unlock(vm);
			rf_log(vm->e, RF_LOG_ERR, "%s: exclude_range: gpa 0x%llx is not guest RAM",
			       vm->name, (unsigned long long)a);
			return -EFAULT;
		}
	}
	for (uint64_t a = gpa & ~(uint64_t)(RF_PAGE_SIZE - 1); a < end; a += RF_PAGE_SIZE) {
		struct rf_region *r = __rf_vm_find_region(vm, a);
		rf_pte_t *p = &r->pte[rf_region_index(r, a)];
		uint64_t v = rf_pte_lock(p);

		rf_pte_unlock(vm, p, v, exclude ? v | RF_PTE_EXCLUDED : v & ~RF_PTE_EXCLUDED);
	}
	rf_vm_regions_unlock(vm);
	return 0;
}

#define STATS_CHUNK 4096

RF_EXPORT int rf_vm_stats(rf_vm *vm, struct rf_vm_stats *st)
{
	uint64_t *ents;
	int err = 0;

	if (!vm || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	ents = rf_zalloc(vm->e, STATS_CHUNK * sizeof(*ents));
	if (!ents)
		return -ENOMEM;
	st->promised_bytes = vm->cfg.ram_bytes;
	rf_vm_regions_rdlock(vm);
	st->mapped_bytes = vm->mapped_bytes;
	for (int s = 0; s < RF_PAGE_NSTATES; s++)
		st->state_bytes[s] = atomic_load(&vm->state_pages[s]) << RF_PAGE_SHIFT;
	for (unsigned int i = 0; i < vm->nr_regions && !err; i++) {
		struct rf_region *r = vm->regions[i];

		for (uint64_t idx = 0; idx < r->npages; idx += STATS_CHUNK) {
			size_t n = r->npages - idx < STATS_CHUNK ? r->npages - idx : STATS_CHUNK;

			err = rf_pagemap_read(vm->e, rf_region_page(r, idx), n, ents);
			if (err)
				break;
			for (size_t k = 0; k < n; k++) {
				if (!rf_pagemap_resident(vm->e, ents[k]))
					continue;
				st->resident_bytes += RF_PAGE_SIZE;
				if (ents[k] & PM_FILE)
					st->resident_file_bytes += RF_PAGE_SIZE;
				else
					st->resident_anon_bytes += RF_PAGE_SIZE;
			}
		}
	}
	rf_vm_regions_unlock(vm);
	st->metadata_bytes = atomic_load(&vm->metadata_bytes);
	rf_free(vm->e, ents);
	if (err)
		rf_log(vm->e, RF_LOG_ERR, "%s: stats: reading /proc/self/pagemap: %s", vm->name,
		       strerror(-err));
	return err;
}
