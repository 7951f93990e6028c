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

#include "abi.h"
#include "compat_linux.h"
#include "internal.h"
#include "uffd.h"

static void by_hva_insert(rf_vm *vm, struct rf_region *r);
static void by_hva_remove(rf_vm *vm, struct rf_region *r);
static void release_all_adopted(rf_vm *vm);
static void region_unlink_free(rf_vm *vm, unsigned int i);

RF_EXPORT void rf_vm_config_init(struct rf_vm_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->numa_node = -1;
}
RF_VERSION_0_3(rf_vm_config_init);

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

RF_EXPORT int rf_vm_new(rf_engine *e, const char *name, const struct rf_vm_config *user_cfg,
			rf_vm **out)
{
	struct rf_vm_config cfg_full;
	const struct rf_vm_config *cfg = user_cfg ? &cfg_full : NULL;
	rf_vm *vm, *it;
	int err;

	if (user_cfg) {
		int abi_err = 0;

		rf_vm_config_init(&cfg_full);
		abi_err =
		    rf_struct_in(e, &cfg_full, sizeof(cfg_full), user_cfg,
				 RF_STRUCT_MIN(struct rf_vm_config, ram_bytes), "rf_vm_config");
		if (abi_err)
			return abi_err;
	}

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
RF_VERSION_0_3(rf_vm_new);

/* 0 if @bytes covers what @vm has mapped, else -EBUSY, logged. Caller
 * holds the regions lock. */
static int promise_covers_mapped(rf_vm *vm, uint64_t bytes)
{
	if (bytes >= vm->mapped_bytes)
		return 0;
	rf_log(vm->e, RF_LOG_ERR,
	       "%s: set_ram_bytes: cannot promise 0x%llx bytes: 0x%llx are mapped in %u regions "
	       "(unmap or release some first)",
	       vm->name, (unsigned long long)bytes, (unsigned long long)vm->mapped_bytes,
	       vm->nr_regions);
	return -EBUSY;
}

RF_EXPORT int rf_vm_set_ram_bytes(rf_vm *vm, uint64_t bytes)
{
	rf_engine *e;
	uint64_t old;
	int err = 0;

	if (!vm)
		return -EINVAL;
	e = vm->e;
	if (bytes == 0 || (bytes & (RF_PAGE_SIZE - 1))) {
		rf_log(e, RF_LOG_ERR,
		       "%s: set_ram_bytes: promised RAM %llu bytes is not a positive multiple of "
		       "4 KiB",
		       vm->name, (unsigned long long)bytes);
		return -EINVAL;
	}
	/* vms_lock serialises this with every admission decision (rf_vm_new,
	 * the ledger's reservation changes), which sum the VMs' promises under
	 * it; the modules decide before the regions lock, which comes after
	 * their own locks. The promise cannot change between their decision
	 * and the store: every writer holds vms_lock. */
	pthread_mutex_lock(&e->vms_lock);
	old = vm->cfg.ram_bytes;
	/* Mapped RAM first: the fact no module can change. Checked again
	 * below, as a region may be added while the modules decide. */
	rf_vm_regions_rdlock(vm);
	err = promise_covers_mapped(vm, bytes);
	rf_vm_regions_unlock(vm);
	for (unsigned int i = 0; rf_engine_modules[i] && !err && bytes != old; i++)
		if (rf_engine_modules[i]->vm_resize)
			err = rf_engine_modules[i]->vm_resize(e, vm, bytes);
	if (err) {
		pthread_mutex_unlock(&e->vms_lock);
		return err;
	}
	rf_vm_regions_wrlock(vm);
	err = promise_covers_mapped(vm, bytes);
	if (!err)
		vm->cfg.ram_bytes = bytes;
	rf_vm_regions_unlock(vm);
	pthread_mutex_unlock(&e->vms_lock);
	if (!err && bytes != old)
		rf_log(e, RF_LOG_INFO, "%s: promised RAM 0x%llx -> 0x%llx bytes", vm->name,
		       (unsigned long long)old, (unsigned long long)bytes);
	return err;
}

RF_EXPORT uint64_t rf_vm_ram_bytes(const rf_vm *vm)
{
	uint64_t b;

	if (!vm)
		return 0;
	pthread_rwlock_rdlock((pthread_rwlock_t *)&vm->regions_lock);
	b = vm->cfg.ram_bytes;
	pthread_rwlock_unlock((pthread_rwlock_t *)&vm->regions_lock);
	return b;
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
	if (r->adopted) {
		/* The embedder keeps the memory: the library's userfaultfd lets go
		 * of it (and its write protection with it). */
		struct rf_uffd *u = rf_uffd_of(vm);

		if (u)
			rf_uffd_unregister(u, r->hva, r->size);
	} else {
		munmap(r->hva, r->size);
	}
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
	/* Adopted RAM stays the embedder's: bring it back intact while the
	 * modules that hold its pages are still attached. */
	release_all_adopted(vm);
	for (unsigned int i = 0; i < vm->nr_hooks; i++)
		if (vm->hooks[i].vm_free)
			vm->hooks[i].vm_free(vm, vm->hooks[i].arg);
	pthread_rwlock_wrlock(&vm->regions_lock);
	while (vm->nr_regions)
		region_unlink_free(vm, vm->nr_regions - 1);
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

/* gpa and size of a new region: non-zero, 4 KiB aligned, not wrapping. */
static int check_range(rf_vm *vm, const char *what, uint64_t gpa, uint64_t size)
{
	if (size == 0 || (gpa | size) & (RF_PAGE_SIZE - 1)) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: %s: gpa 0x%llx size 0x%llx: must be non-zero and 4 KiB aligned",
		       vm->name, what, (unsigned long long)gpa, (unsigned long long)size);
		return -EINVAL;
	}
	if (gpa + size < gpa) {
		rf_log(vm->e, RF_LOG_ERR, "%s: %s: gpa 0x%llx + size 0x%llx wraps around", vm->name,
		       what, (unsigned long long)gpa, (unsigned long long)size);
		return -EINVAL;
	}
	return 0;
}

/* Room for [@gpa, @gpa + @size): within the promised RAM and the region
 * limit, overlapping no region. *@pos = where it goes in vm->regions.
 * Caller holds regions_lock for writing. */
static int region_room(rf_vm *vm, const char *what, uint64_t gpa, uint64_t size, unsigned int *pos)
{
	unsigned int i;

	if (vm->mapped_bytes + size > vm->cfg.ram_bytes) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: %s: 0x%llx bytes at gpa 0x%llx would exceed the promised RAM "
		       "(0x%llx of 0x%llx mapped)",
		       vm->name, what, (unsigned long long)size, (unsigned long long)gpa,
		       (unsigned long long)vm->mapped_bytes, (unsigned long long)vm->cfg.ram_bytes);
		return -E2BIG;
	}
	if (vm->nr_regions == RF_MAX_REGIONS) {
		rf_log(vm->e, RF_LOG_ERR, "%s: %s: %d regions already mapped (RF_VM_MAX_REGIONS)",
		       vm->name, what, RF_MAX_REGIONS);
		return -ENOSPC;
	}
	i = upper_bound(vm, vm->regions, false, gpa);
	if ((i > 0 && vm->regions[i - 1]->gpa + vm->regions[i - 1]->size > gpa) ||
	    (i < vm->nr_regions && vm->regions[i]->gpa < gpa + size)) {
		rf_log(vm->e, RF_LOG_ERR, "%s: %s: [0x%llx, 0x%llx) overlaps a mapped region",
		       vm->name, what, (unsigned long long)gpa, (unsigned long long)(gpa + size));
		return -EEXIST;
	}
	*pos = i;
	return 0;
}

/* A region of @size bytes at @gpa with its page-state table, not linked in. */
static int region_alloc(rf_vm *vm, uint64_t gpa, uint64_t size, struct rf_region **out)
{
	struct rf_region *r = rf_zalloc(vm->e, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->gpa = gpa;
	r->size = size;
	r->npages = size >> RF_PAGE_SHIFT;
	r->backing = RF_BACKING_ANON;
	r->page_bytes = RF_PAGE_SIZE;
	/* The table is mmap'ed: untouched entries read 0 = PRIVATE, unlocked,
	 * and cost nothing until written. */
	r->pte_bytes =
	    (r->npages * sizeof(rf_pte_t) + RF_PAGE_SIZE - 1) & ~(size_t)(RF_PAGE_SIZE - 1);
	r->pte = mmap(NULL, r->pte_bytes, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (r->pte == MAP_FAILED) {
		int err = -errno;

		rf_free(vm->e, r);
		return err;
	}
	*out = r;
	return 0;
}

/* Link @r in at @pos (from region_room). Caller holds regions_lock for writing. */
static void region_link(rf_vm *vm, struct rf_region *r, unsigned int pos)
{
	by_hva_insert(vm, r); /* before nr_regions grows: it counts the old entries */
	memmove(&vm->regions[pos + 1], &vm->regions[pos],
		(vm->nr_regions - pos) * sizeof(vm->regions[0]));
	vm->regions[pos] = r;
	vm->nr_regions++;
	vm->mapped_bytes += r->size;
	atomic_fetch_add(&vm->state_pages[RF_PAGE_PRIVATE], r->npages);
	atomic_fetch_add(&vm->metadata_bytes, r->pte_bytes + sizeof(*r));
}

/* Unlink the region at vm->regions[@i] and free it (the hooks first). Caller
 * holds regions_lock for writing. */
static void region_unlink_free(rf_vm *vm, unsigned int i)
{
	struct rf_region *r = vm->regions[i];

	by_hva_remove(vm, r);
	memmove(&vm->regions[i], &vm->regions[i + 1],
		(vm->nr_regions - i - 1) * sizeof(vm->regions[0]));
	vm->nr_regions--;
	region_free(vm, r);
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
	err = check_range(vm, "map_ram", gpa, size);
	if (err)
		return err;
	pthread_rwlock_wrlock(&vm->regions_lock);
	err = region_room(vm, "map_ram", gpa, size, &pos);
	if (err)
		goto out_unlock;
	err = region_alloc(vm, gpa, size, &r);
	if (err)
		goto out_unlock;
	mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		   -1, 0);
	if (mem == MAP_FAILED) {
		err = -errno;
		rf_log(vm->e, RF_LOG_ERR, "%s: map_ram: mmap of 0x%llx bytes: %s", vm->name,
		       (unsigned long long)size, strerror(errno));
		goto out_free;
	}
	r->hva = mem;
	apply_numa_and_thp(vm, mem, size);
	for (unsigned int i = 0; i < vm->nr_hooks && !err; i++)
		if (vm->hooks[i].region_admit)
			err = vm->hooks[i].region_admit(vm, r, vm->hooks[i].arg);
	if (err) {
		munmap(mem, size);
		goto out_free;
	}
	region_link(vm, r, pos);
	pthread_rwlock_unlock(&vm->regions_lock);
	*hva = mem;
	return 0;

out_free:
	munmap(r->pte, r->pte_bytes);
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
	if (vm->regions[i]->adopted) {
		pthread_rwlock_unlock(&vm->regions_lock);
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: unmap_ram: gpa 0x%llx was adopted: the embedder's memory is given "
		       "back with rf_vm_release_ram, never unmapped by the library",
		       vm->name, (unsigned long long)gpa);
		return -EINVAL;
	}
	region_unlink_free(vm, i);
	pthread_rwlock_unlock(&vm->regions_lock);
	return 0;
}

/* ---- adopted RAM ---------------------------------------------------------- */

static const char *const backing_names[] = {
    [RF_BACKING_ANON] = "anon",
    [RF_BACKING_SHMEM] = "shmem",
    [RF_BACKING_HUGETLB] = "hugetlb",
};

RF_EXPORT const char *rf_backing_name(enum rf_backing b)
{
	return (unsigned int)b <= RF_BACKING_HUGETLB ? backing_names[b] : "invalid";
}

const char *rf_backing_describe(enum rf_backing b)
{
	switch (b) {
	case RF_BACKING_ANON:
		return "private anonymous";
	case RF_BACKING_SHMEM:
		return "memfd MAP_SHARED";
	case RF_BACKING_HUGETLB:
		return "hugetlbfs";
	}
	return "unknown";
}

/* One VMA as /proc/self/smaps shows it. */
struct smaps_vma {
	uintptr_t start, end;
	char perms[8];
	unsigned int major;
	unsigned long long ino;
	char path[256];
	uint64_t kernel_page_bytes; /* KernelPageSize */
};

struct backing_info {
	enum rf_backing backing;
	bool shared;
	uint64_t page_bytes;
};

/*
 * Classify one VMA: 0 and *@bi, or -EFAULT (not readable and writable) or
 * -EOPNOTSUPP (a backing the library cannot use), logged. Shared memory is
 * recognised by the kernel's own names for it: a memfd ("/memfd:NAME
 * (deleted)"), a file in /dev/shm, shared anonymous memory ("/dev/zero
 * (deleted)"), all on an anonymous device (major 0: tmpfs, shmem).
 */
static int classify_vma(rf_vm *vm, const struct smaps_vma *v, struct backing_info *bi)
{
	bool shared = v->perms[3] == 's';

	if (v->perms[0] != 'r' || v->perms[1] != 'w') {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: adopt_ram: hva 0x%lx: mapped %s, guest RAM must be readable and "
		       "writable",
		       vm->name, (unsigned long)v->start, v->perms);
		return -EFAULT;
	}
	bi->shared = shared;
	bi->page_bytes = RF_PAGE_SIZE;
	if (v->kernel_page_bytes > RF_PAGE_SIZE) {
		bi->backing = RF_BACKING_HUGETLB;
		bi->page_bytes = v->kernel_page_bytes;
		return 0;
	}
	if (!shared && v->ino == 0) {
		bi->backing = RF_BACKING_ANON;
		return 0;
	}
	if (shared && v->major == 0 &&
	    (strncmp(v->path, "/memfd:", 7) == 0 || strncmp(v->path, "/dev/shm/", 9) == 0 ||
	     strstr(v->path, "(deleted)"))) {
		bi->backing = RF_BACKING_SHMEM;
		return 0;
	}
	rf_log(vm->e, RF_LOG_ERR,
	       "%s: adopt_ram: hva 0x%lx: a %s mapping of \"%s\" is not RAM the library can "
	       "use (private anonymous, memfd/shmem MAP_SHARED or hugetlbfs)",
	       vm->name, (unsigned long)v->start, shared ? "shared" : "private copy-on-write",
	       v->path);
	return -EOPNOTSUPP;
}

/*
 * The backing of [@lo, @hi), from the kernel's view of it: every VMA over
 * it, which must leave no hole and agree. Reading stops at the first VMA
 * past @hi, so the kernel does not measure the rest of the process.
 */
static int read_backing(rf_vm *vm, uintptr_t lo, uintptr_t hi, struct backing_info *out)
{
	struct smaps_vma cur = {0};
	bool have = false, first = true;
	uintptr_t covered = lo;
	char line[512];
	int err = 0;
	FILE *f = fopen("/proc/self/smaps", "re");

	if (!f) {
		err = -errno;
		rf_log(vm->e, RF_LOG_ERR, "%s: adopt_ram: opening /proc/self/smaps: %s", vm->name,
		       strerror(errno));
		return err;
	}
	for (;;) {
		char *got = fgets(line, sizeof(line), f);
		unsigned long long s = 0, e = 0, off, ino = 0, kb;
		unsigned int maj = 0, min;
		char perms[8];
		int n = 0;
		bool header = got && sscanf(line, "%llx-%llx %7s %llx %x:%x %llu %n", &s, &e, perms,
					    &off, &maj, &min, &ino, &n) == 7;

		if (got && !header) {
			if (have && sscanf(line, "KernelPageSize: %llu kB", &kb) == 1)
				cur.kernel_page_bytes = kb << 10;
			continue;
		}
		if (have) { /* the previous VMA is complete */
			struct backing_info bi;

			if (cur.start > covered)
				break; /* a hole: reported below */
			err = classify_vma(vm, &cur, &bi);
			if (err)
				goto out;
			if (!first && (bi.backing != out->backing || bi.shared != out->shared ||
				       bi.page_bytes != out->page_bytes)) {
				rf_log(
				    vm->e, RF_LOG_ERR,
				    "%s: adopt_ram: hva 0x%lx: %s%s, but 0x%lx is %s%s: one "
				    "region has one backing",
				    vm->name, (unsigned long)lo, rf_backing_describe(out->backing),
				    out->shared ? " (shared)" : "", (unsigned long)cur.start,
				    rf_backing_describe(bi.backing), bi.shared ? " (shared)" : "");
				err = -EOPNOTSUPP;
				goto out;
			}
			*out = bi;
			first = false;
			covered = cur.end;
			have = false;
		}
		if (!got || covered >= hi || s >= hi)
			break;
		if (e <= lo)
			continue;
		memset(&cur, 0, sizeof(cur));
		cur.start = (uintptr_t)s;
		cur.end = (uintptr_t)e;
		snprintf(cur.perms, sizeof(cur.perms), "%s", perms);
		cur.major = maj;
		cur.ino = ino;
		snprintf(cur.path, sizeof(cur.path), "%s", line + n);
		cur.path[strcspn(cur.path, "\n")] = '\0';
		have = true;
	}
	if (covered < hi) {
		rf_log(vm->e, RF_LOG_ERR, "%s: adopt_ram: hva 0x%lx (of 0x%lx+0x%lx) is not mapped",
		       vm->name, (unsigned long)covered, (unsigned long)lo,
		       (unsigned long)(hi - lo));
		err = -EFAULT;
	}
out:
	fclose(f);
	return err;
}

RF_EXPORT int rf_vm_adopt_ram(rf_vm *vm, uint64_t gpa, void *hva, uint64_t size, unsigned int flags)
{
	uintptr_t a = (uintptr_t)hva;
	struct backing_info bi;
	struct rf_region *r;
	unsigned int pos;
	int err;

	if (!vm || !hva)
		return -EINVAL;
	if (flags) {
		rf_log(vm->e, RF_LOG_ERR, "%s: adopt_ram: gpa 0x%llx: unknown flags 0x%x", vm->name,
		       (unsigned long long)gpa, flags);
		return -EINVAL;
	}
	err = check_range(vm, "adopt_ram", gpa, size);
	if (err)
		return err;
	if ((a & (RF_PAGE_SIZE - 1)) || a + size < a) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: adopt_ram: gpa 0x%llx: hva %p + 0x%llx is not 4 KiB aligned or wraps",
		       vm->name, (unsigned long long)gpa, hva, (unsigned long long)size);
		return -EINVAL;
	}
	err = read_backing(vm, a, a + size, &bi);
	if (err)
		return err;
	if ((a | size) & (bi.page_bytes - 1)) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: adopt_ram: gpa 0x%llx: hva %p + 0x%llx is %s with %llu KiB pages: "
		       "must be aligned to them",
		       vm->name, (unsigned long long)gpa, hva, (unsigned long long)size,
		       rf_backing_describe(bi.backing), (unsigned long long)(bi.page_bytes >> 10));
		return -EINVAL;
	}
	pthread_rwlock_wrlock(&vm->regions_lock);
	err = region_room(vm, "adopt_ram", gpa, size, &pos);
	if (err)
		goto out_unlock;
	/* Two regions over the same host memory would make hva lookups
	 * ambiguous and let two page states describe one page. */
	for (unsigned int i = 0; i < vm->nr_regions; i++) {
		struct rf_region *o = vm->regions[i];

		if ((uintptr_t)o->hva < a + size && a < (uintptr_t)o->hva + o->size) {
			rf_log(vm->e, RF_LOG_ERR,
			       "%s: adopt_ram: hva %p + 0x%llx overlaps the region at gpa 0x%llx",
			       vm->name, hva, (unsigned long long)size, (unsigned long long)o->gpa);
			err = -EEXIST;
			goto out_unlock;
		}
	}
	err = region_alloc(vm, gpa, size, &r);
	if (err)
		goto out_unlock;
	r->hva = hva;
	r->adopted = true;
	r->backing = bi.backing;
	r->shared = bi.shared;
	r->page_bytes = bi.page_bytes;
	for (unsigned int i = 0; i < vm->nr_hooks && !err; i++)
		if (vm->hooks[i].region_admit)
			err = vm->hooks[i].region_admit(vm, r, vm->hooks[i].arg);
	if (err) {
		munmap(r->pte, r->pte_bytes);
		rf_free(vm->e, r);
		goto out_unlock;
	}
	region_link(vm, r, pos);
out_unlock:
	pthread_rwlock_unlock(&vm->regions_lock);
	return err;
}

/*
 * Bring every page of @r (adopted, marked releasing by the caller) back to
 * private, then unlink it. Its pages are excluded first, under their locks:
 * from then on no module starts a transition there (a merge, a swap-out, an
 * inflate), and one already under way finished before its page's lock was
 * ours. Then each module brings back the pages it owns. On an error the
 * embedder's own exclusions are put back and the region stays adopted.
 * Called without the regions lock.
 */
static int release_region(rf_vm *vm, struct rf_region *r)
{
	size_t words = (r->npages + 63) / 64;
	uint64_t *excluded = rf_zalloc(vm->e, words * sizeof(uint64_t));
	int err = 0;

	if (!excluded)
		err = -ENOMEM;
	rf_vm_regions_rdlock(vm);
	for (uint64_t i = 0; i < r->npages && !err; i++) {
		uint64_t v = rf_pte_lock(&r->pte[i]);

		if (v & RF_PTE_EXCLUDED)
			excluded[i / 64] |= 1ull << (i % 64);
		rf_pte_unlock(vm, &r->pte[i], v, v | RF_PTE_EXCLUDED);
	}
	for (unsigned int h = 0; h < vm->nr_hooks && !err; h++)
		if (vm->hooks[h].region_release)
			err = vm->hooks[h].region_release(vm, r, vm->hooks[h].arg);
	for (uint64_t i = 0; i < r->npages && !err; i++) {
		enum rf_page_state s = rf_pte_state(rf_pte_peek(&r->pte[i]));

		if (rf_vm_state_owner(vm, s)) {
			rf_log(vm->e, RF_LOG_ERR,
			       "%s: release_ram: gpa 0x%llx is still %s: region kept adopted",
			       vm->name, (unsigned long long)(r->gpa + (i << RF_PAGE_SHIFT)),
			       rf_page_state_name(s));
			err = -EIO;
		}
	}
	if (err && excluded) {
		for (uint64_t i = 0; i < r->npages; i++) {
			uint64_t v = rf_pte_lock(&r->pte[i]);
			bool ex = excluded[i / 64] & (1ull << (i % 64));

			rf_pte_unlock(vm, &r->pte[i], v,
				      ex ? v | RF_PTE_EXCLUDED : v & ~RF_PTE_EXCLUDED);
		}
	}
	rf_vm_regions_unlock(vm);
	rf_free(vm->e, excluded);

	rf_vm_regions_wrlock(vm);
	if (err) {
		r->releasing = false;
	} else {
		for (unsigned int i = 0; i < vm->nr_regions; i++) {
			if (vm->regions[i] == r) {
				region_unlink_free(vm, i);
				break;
			}
		}
	}
	rf_vm_regions_unlock(vm);
	return err;
}

RF_EXPORT int rf_vm_release_ram(rf_vm *vm, uint64_t gpa)
{
	struct rf_region *r = NULL;
	int err = 0;

	if (!vm)
		return -EINVAL;
	rf_vm_regions_wrlock(vm);
	for (unsigned int i = 0; i < vm->nr_regions; i++)
		if (vm->regions[i]->gpa == gpa)
			r = vm->regions[i];
	if (!r) {
		rf_log(vm->e, RF_LOG_ERR, "%s: release_ram: no region starts at gpa 0x%llx",
		       vm->name, (unsigned long long)gpa);
		err = -ENOENT;
	} else if (!r->adopted) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: release_ram: gpa 0x%llx was mapped by the library (rf_vm_map_ram): "
		       "unmap it with rf_vm_unmap_ram",
		       vm->name, (unsigned long long)gpa);
		err = -EINVAL;
	} else if (r->releasing) {
		rf_log(vm->e, RF_LOG_ERR, "%s: release_ram: gpa 0x%llx is being released already",
		       vm->name, (unsigned long long)gpa);
		err = -EBUSY;
	} else {
		r->releasing = true;
	}
	rf_vm_regions_unlock(vm);
	if (err)
		return err;
	return release_region(vm, r);
}

/* rf_vm_free: give every adopted region back intact (the VM is the caller's
 * alone now, so the list cannot change under us). One that cannot be is
 * logged and then freed like any region: its pages may not be intact. */
static void release_all_adopted(rf_vm *vm)
{
	struct rf_region *todo[RF_MAX_REGIONS];
	unsigned int n = 0;

	rf_vm_regions_wrlock(vm);
	for (unsigned int i = 0; i < vm->nr_regions; i++) {
		if (vm->regions[i]->adopted && !vm->regions[i]->releasing) {
			vm->regions[i]->releasing = true;
			todo[n++] = vm->regions[i];
		}
	}
	rf_vm_regions_unlock(vm);
	for (unsigned int i = 0; i < n; i++) {
		uint64_t gpa = todo[i]->gpa;
		int err = release_region(vm, todo[i]);

		if (err)
			rf_log(vm->e, RF_LOG_ERR,
			       "%s: vm_free: adopted RAM at gpa 0x%llx could not be given back "
			       "intact (%s): pages still merged or swapped are lost",
			       vm->name, (unsigned long long)gpa, strerror(-err));
	}
}

RF_EXPORT int rf_vm_backing(const rf_vm *vm, uint64_t gpa)
{
	struct rf_region *r;
	int b = -EFAULT;

	if (!vm)
		return -EINVAL;
	pthread_rwlock_rdlock((pthread_rwlock_t *)&vm->regions_lock);
	r = __rf_vm_find_region(vm, gpa);
	if (r)
		b = (int)r->backing;
	pthread_rwlock_unlock((pthread_rwlock_t *)&vm->regions_lock);
	return b;
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

static int rf_vm_stats_full(rf_vm *vm, struct rf_vm_stats *st)
{
	uint64_t *ents;
	int err = 0;

	if (!vm || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	ents = rf_zalloc(vm->e, STATS_CHUNK * sizeof(*ents));
	if (!ents)
		return -ENOMEM;
	rf_vm_regions_rdlock(vm);
	/* Under the lock, so promised_bytes >= mapped_bytes even while the
	 * promise changes (rf_vm_set_ram_bytes). */
	st->promised_bytes = vm->cfg.ram_bytes;
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
				if (rf_pagemap_own(r, ents[k]) & PM_FILE)
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

RF_EXPORT int rf_vm_stats(rf_vm *vm, struct rf_vm_stats *st)
{
	struct rf_vm_stats full;

	RF_STRUCT_OUT(vm ? vm->e : NULL, st, full, promised_bytes, "rf_vm_stats",
		      rf_vm_stats_full(vm, &full));
}
RF_VERSION_0_3(rf_vm_stats);
