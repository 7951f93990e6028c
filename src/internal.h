/* SPDX-License-Identifier: MIT */
/*
 * Private core of libramfold: the engine, VMs and their guest-RAM regions, as
 * the layers above the core (ksm/, balloon/, swap/, overcommit/) see them.
 * Not installed. The layers and their rules: docs/design.md.
 *
 * Lock order (outer first): engine->vms_lock, vm->regions_lock (read side
 * for everyone but map/unmap/adopt/release), the swap pager's out_lock, page lock bits in
 * address order (page_table.h), module locks; leaves last. No module may take
 * engine->vms_lock while it holds a page lock. The rules that keep the fault
 * thread out of deadlocks with page-lock holders: uffd.h, docs/design.md.
 */
#ifndef RF_INTERNAL_H
#define RF_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <ramfold/engine.h>
#include <ramfold/version.h>
#include <ramfold/vm.h>

#include "log.h"
#include "page_table.h"

#define RF_EXPORT __attribute__((visibility("default")))

#define RF_MAX_REGIONS RF_VM_MAX_REGIONS
#define RF_NAME_MAX    32

struct rf_region {
	uint64_t gpa;
	uint64_t size;
	uint64_t npages;
	uint8_t *hva;
	rf_pte_t *pte; /* npages entries, mmap'ed: untouched = PRIVATE */
	size_t pte_bytes;
	/* What the kernel maps there, read from /proc/self/smaps when the
	 * region was adopted (rf_vm_map_ram's own RAM is always ANON): it
	 * decides which mechanisms may act on the region (vm.h) and how a
	 * discard frees memory (page_ops.c). Never changes. */
	enum rf_backing backing;
	bool shared;	     /* MAP_SHARED: a discard punches a hole (MADV_REMOVE) */
	bool adopted;	     /* the embedder's memory: never munmap'ed by the library */
	uint64_t page_bytes; /* the kernel's page size there: 4 KiB, or the huge page's */
	/* rf_vm_release_ram() is bringing the region back; set and read under
	 * the regions lock (write side to set). */
	bool releasing;
};

/* The backing of @r, for modules that must refuse or adapt to it. */
static inline enum rf_backing rf_region_backing(const struct rf_region *r)
{
	return r->backing;
}

/*
 * A module (dedup, balloon, swap pager, ledger) that keeps per-VM state registers
 * hooks so the core can tell it a region is going away or the VM is freed,
 * without the core knowing the module.
 */
struct rf_vm_hooks {
	/* Called with regions_lock held for writing, before the region is
	 * unmapped: drop every reference into it. */
	void (*region_unmap)(rf_vm *vm, struct rf_region *r, void *arg);
	/* Called once from rf_vm_free(), before any region is unmapped. */
	void (*vm_free)(rf_vm *vm, void *arg);
	/*
	 * States whose pages this module owns (bit (1 << state)): before such a
	 * page is discarded by another module, page_release is called with the
	 * page locked and must leave it an ordinary private anonymous mapping
	 * with no reference left in the module (the merger remaps a store page
	 * anonymous; the fault thread frees the swap slot). Returns 0 or -errno (the
	 * page is then skipped and stays as it was).
	 */
	unsigned int owns_states;
	int (*page_release)(rf_vm *vm, struct rf_region *r, uint64_t idx, uint64_t pte, void *arg);
	/*
	 * rf_vm_map_ram() and rf_vm_adopt_ram(), regions_lock held for
	 * writing, before @r is linked in (its hva and backing set): 0 if the
	 * module can live with @r's backing (rf_region_backing) and has done
	 * what a new region needs (the kernel-KSM backend marks it mergeable),
	 * else -errno (-EOPNOTSUPP for a backing) and one message naming the
	 * region; the call then fails and nothing changes.
	 */
	int (*region_admit)(rf_vm *vm, const struct rf_region *r, void *arg);
	/*
	 * rf_vm_release_ram(), regions_lock held for reading, every page of @r
	 * excluded (so no module starts a new transition there): bring each
	 * page of @r in a state this module owns back to a private anonymous
	 * page holding its content (unmerge, swap in). 0 or -errno; on an
	 * error the release fails and the region stays adopted, its pages
	 * intact whatever state they are left in.
	 */
	int (*region_release)(rf_vm *vm, struct rf_region *r, void *arg);
	void *arg;
};

#define RF_VM_MAX_HOOKS 8

struct rf_vm {
	rf_engine *e;
	char name[RF_NAME_MAX];
	char domain[RF_NAME_MAX]; /* "" = private to this VM */
	/* cfg.ram_bytes, the promise, changes (rf_vm_set_ram_bytes) with both
	 * engine->vms_lock and regions_lock (write) held: read it under either. */
	struct rf_vm_config cfg;
	unsigned int id; /* engine-unique, never reused */

	pthread_rwlock_t regions_lock;
	struct rf_region *regions[RF_MAX_REGIONS]; /* sorted by gpa */
	struct rf_region *by_hva[RF_MAX_REGIONS];  /* the same, sorted by hva */
	unsigned int nr_regions;
	uint64_t mapped_bytes;

	_Atomic uint64_t state_pages[RF_PAGE_NSTATES];
	_Atomic uint64_t metadata_bytes;

	struct rf_vm_hooks hooks[RF_VM_MAX_HOOKS];
	unsigned int nr_hooks;

	/* Per-VM module state; each owned by the module named. */
	struct rf_dedup_vm *dedup;   /* ksm/ */
	struct rf_balloon *balloon;  /* balloon/ */
	struct rf_pager *pager;	     /* swap/ */
	struct rf_ledger_vm *ledger; /* overcommit/ */
	/* The VM's userfaultfd and fault thread, shared by the modules that
	 * need it (src/uffd.c: rf_uffd_get/rf_uffd_put). */
	struct rf_uffd *uffd;
	/* Time threads waited in the fault handling of this VM, summed over
	 * faults, and the faults it covers (src/fault_stall.h). Kept here,
	 * not in the userfaultfd, so that they survive it. */
	_Atomic uint64_t stall_ns, stall_faults;

	rf_vm *next; /* engine->vms, under engine->vms_lock */
};

/* Whether the kernel may back @r with transparent huge pages: RAM the
 * library maps with RF_VM_THP, or the embedder's anonymous or shared RAM
 * (its THP settings are its own). Not hugetlbfs, whose pages never split. */
static inline bool rf_region_may_be_thp(const rf_vm *vm, const struct rf_region *r)
{
	if (r->backing == RF_BACKING_HUGETLB)
		return false;
	return r->adopted || (vm->cfg.flags & RF_VM_THP);
}

struct rf_engine {
	struct rf_engine_config cfg;
	char dev_kvm_path[256];
	char ksm_sysfs_dir[256];
	struct rf_features feat;
	uint64_t zero_pfn;  /* PFN of the kernel zero page, 0 if unknown */
	int pagemap_fd;	    /* /proc/self/pagemap, O_RDONLY; pread is thread-safe */
	int pagemap_errno;  /* why it could not be opened, if pagemap_fd < 0 */
	unsigned int arena; /* jemalloc arena for metadata, this struct included */

	pthread_mutex_t vms_lock;
	rf_vm *vms;
	unsigned int next_vm_id;

	/* Engine-wide module state. */
	struct rf_dedup *dedup;	  /* ksm/ */
	struct rf_swap *swap;	  /* swap/ */
	struct rf_ledger *ledger; /* overcommit/ */

	pthread_mutex_t err_lock;
	char last_error[512];
};

/* arena.c: metadata allocations in the library's own jemalloc arena. */
int rf_arena_new(unsigned int *idx);
void rf_arena_delete(unsigned int idx);
void *rf_arena_alloc_engine(unsigned int idx, size_t size);
void *rf_zalloc(rf_engine *e, size_t size);
void rf_free(rf_engine *e, void *p);
/* rf_free without the engine: the arena is the pointer's own (for metadata
 * that is freed where the engine is not at hand, as an RCU callback). */
void rf_arena_free(void *p);
/* Give the engine's freed metadata pages back to the kernel now, rather than
 * when the allocator's decay gets to them. Costs a walk of the arena's
 * unused extents (a madvise each); call it after freeing many objects, not
 * on a hot path. */
void rf_arena_purge(rf_engine *e);
char *rf_strdup(rf_engine *e, const char *s);

/*
 * Engine modules: the layers above the core (dedup, swap, the ledger) that
 * keep engine-wide state. The core includes none of their headers and knows
 * them only through this table, as it knows a VM's modules only through
 * struct rf_vm_hooks. Every hook is optional.
 */
struct rf_engine_module {
	const char *name;
	/* rf_vm_new(), vms_lock held, before @vm is linked in: 0 admits it,
	 * -errno refuses it (the module logs why). Table order. */
	int (*vm_admit)(rf_engine *e, rf_vm *vm);
	/* rf_vm_set_ram_bytes(), vms_lock held (not the regions lock), before
	 * @vm's promise changes from vm->cfg.ram_bytes to @bytes: 0 accepts,
	 * -errno refuses (the module logs why, and nothing changes). Table
	 * order; a module without the hook accepts. */
	int (*vm_resize)(rf_engine *e, rf_vm *vm, uint64_t bytes);
	/* rf_engine_free(), before any VM is freed: stop the threads that act
	 * on VMs. Reverse table order. */
	void (*stop)(rf_engine *e);
	/* rf_engine_free(), after every VM is freed: free engine-wide state.
	 * Reverse table order. */
	void (*free)(rf_engine *e);
};

/* lib/modules.c: the modules every engine has, NULL-terminated. */
extern const struct rf_engine_module *const rf_engine_modules[];

/* thread.c: name the calling library thread "rf-@kind/@who" (@who may be
 * NULL): rf-fault/VM, rf-swap/VM, rf-scan/N, rf-policy; then run @e's
 * thread_start hook (rf_engine_config) in it with that name. First thing
 * in every thread the library starts. */
void rf_thread_name(rf_engine *e, const char *kind, const char *who);

/* features.c */
int rf_features_detect(rf_engine *e);

/* vm.c: "private anonymous", "memfd/shmem MAP_SHARED", "hugetlbfs" (for messages). */
const char *rf_backing_describe(enum rf_backing b);

/* vm.c: register module hooks on @vm. -ENOSPC if all slots are taken. */
int rf_vm_add_hooks(rf_vm *vm, const struct rf_vm_hooks *h);
/* True if the hook set whose vm_free is @vm_free is registered on @vm. */
bool rf_vm_hooks_registered(const rf_vm *vm, void (*vm_free)(rf_vm *, void *));
/* A module freed before @vm: its vm_free (@vm_free) is no longer called.
 * Caller holds engine->vms_lock (rf_vm_free() reads the hooks under it). */
void rf_vm_hooks_forget_free(rf_vm *vm, void (*vm_free)(rf_vm *, void *));
/* The hook set that owns pages in state @s (rf_vm_hooks.owns_states), or
 * NULL: page_ops.c asks it to release such a page before a discard. */
const struct rf_vm_hooks *rf_vm_state_owner(const rf_vm *vm, enum rf_page_state s);

/*
 * vm.c: region lookup. The caller holds vm->regions_lock (read or write):
 * the "__" prefix says so, as in liburcu.
 */
struct rf_region *__rf_vm_find_region(const rf_vm *vm, uint64_t gpa);
/* The region whose host mapping holds @hva, or NULL. */
struct rf_region *__rf_vm_find_region_hva(const rf_vm *vm, uintptr_t hva);

/*
 * The @i-th region of @vm in gpa order, or NULL past the last: walk them as
 *	for (i = 0; (r = __rf_vm_region(vm, i)); i++)
 * Caller holds vm->regions_lock.
 */
static inline struct rf_region *__rf_vm_region(const rf_vm *vm, unsigned int i)
{
	return i < vm->nr_regions ? vm->regions[i] : NULL;
}

/*
 * The engine's VMs, newest first: walk them as
 *	for (vm = __rf_engine_vm_first(e); vm; vm = __rf_engine_vm_next(vm))
 * Caller holds engine->vms_lock.
 */
static inline rf_vm *__rf_engine_vm_first(const rf_engine *e)
{
	return e->vms;
}

static inline rf_vm *__rf_engine_vm_next(const rf_vm *vm)
{
	return vm->next;
}

static inline void rf_vm_regions_rdlock(rf_vm *vm)
{
	pthread_rwlock_rdlock(&vm->regions_lock);
}

/* 0, or nonzero if a writer holds or waits for it (the fault thread and a
 * cross-VM merge, which may not wait). */
static inline int rf_vm_regions_tryrdlock(rf_vm *vm)
{
	return pthread_rwlock_tryrdlock(&vm->regions_lock);
}

/* Map/unmap and adopt/release of guest RAM, and a module dropping its per-VM state. */
static inline void rf_vm_regions_wrlock(rf_vm *vm)
{
	pthread_rwlock_wrlock(&vm->regions_lock);
}

static inline void rf_vm_regions_unlock(rf_vm *vm)
{
	pthread_rwlock_unlock(&vm->regions_lock);
}

/* Page index of @gpa inside region @r (gpa must lie in it). */
static inline uint64_t rf_region_index(const struct rf_region *r, uint64_t gpa)
{
	return (gpa - r->gpa) >> RF_PAGE_SHIFT;
}

static inline void *rf_region_page(const struct rf_region *r, uint64_t idx)
{
	return r->hva + (idx << RF_PAGE_SHIFT);
}

/*
 * page_ops.c: discard @npages pages from @gpa (all inside one region) and
 * give them state @to (ZERO, BALLOONED or FREE_REPORTED). Pages in a state
 * another module owns are released through its hook first; excluded pages
 * and pages whose release failed are left alone and counted in *@skipped.
 * Adjacent pages are discarded with one madvise(MADV_DONTNEED). Takes the
 * regions lock for reading. Returns 0, -EFAULT (range not in one region) or
 * -EINVAL.
 */
int rf_vm_discard_as(rf_vm *vm, uint64_t gpa, uint64_t npages, enum rf_page_state to,
		     uint64_t *skipped);

/*
 * page_ops.c: madvise(MADV_DONTNEED) [@addr, @addr + @len) of guest RAM whose
 * pages the caller holds locked, for a transition to a discarded state. It
 * returns once the VM's fault thread has dispatched the UFFD_EVENT_REMOVE the
 * discard sent (rf_uffd_sync), so the event is handled while the pages are
 * still locked, and handlers leave locked pages to their holder. Every
 * discard the library makes of guest RAM goes through here. 0 or -errno
 * from madvise.
 */
int rf_vm_discard_locked(rf_vm *vm, void *addr, uint64_t len);

/*
 * page_ops.c: announce that the library is discarding [@addr, @addr + @len)
 * of @vm's RAM, until after it has unlocked the last page. A REMOVE handler
 * leaves a locked page inside such a range to the discard (it may not wait
 * for it: the discarder may be waiting for a lock whose holder waits for the
 * fault thread). rf_vm_discard_as() announces before it locks the first page;
 * a caller of rf_vm_discard_locked(), which already holds its pages, is
 * announced there, before its madvise: a handler that is waiting (yielding)
 * for one of those locks looks at the announcements again on every try, so
 * it lets go before the madvise waits for the fault thread. Any thread.
 */
struct rf_own {
	struct rf_uffd *u;
	unsigned int slot;
};
struct rf_own rf_vm_own_begin(rf_vm *vm, void *addr, uint64_t len);
void rf_vm_own_end(struct rf_own o);

/*
 * Test points: a test that must force an interleaving sets rf_test_point;
 * the library calls it at the named places (one load and a predictable
 * branch when unset). Never set outside tests.
 */
extern void (*rf_test_point)(const char *where, void *arg);
#define RF_TEST_POINT(where, arg)                                                                  \
	do {                                                                                       \
		if (__builtin_expect(rf_test_point != NULL, 0))                                    \
			rf_test_point(where, arg);                                                 \
	} while (0)

/*
 * Debug builds (RF_DEBUG_TRANSITIONS, page_table.c): note an operation on
 * the pages of [@addr, @addr + @len) that changes what they hold without a
 * transition (a discard, a fill), in the ring of recent transitions; and
 * print the ring's entries for the page at @gpa (tests, on a lost write;
 * a no-op in other builds). Caller of rf_debug_note holds the regions lock.
 */
#ifdef RF_DEBUG_TRANSITIONS
void rf_debug_note(rf_vm *vm, const void *addr, uint64_t len, const char *what);
#else
static inline void rf_debug_note(rf_vm *vm, const void *addr, uint64_t len, const char *what)
{
	(void)vm;
	(void)addr;
	(void)len;
	(void)what;
}
#endif
void rf_debug_page_history(rf_vm *vm, uint64_t gpa);

/* pagemap.c: 0 if /proc/self/pagemap is open; else -EPERM and one message
 * saying why (@who names the mechanism that needs it). */
int rf_pagemap_need(rf_engine *e, const char *who);
/*
 * pagemap.c: a pagemap entry of a page of @r as the library reads it.
 * PM_FILE means "mapped from the dedup store" on private anonymous RAM; on
 * the VMM's shared or hugetlbfs RAM every page is a file page and the
 * guest's own (dedup is refused there), so the bit is cleared. The audit,
 * the stats and the ledger all read entries through it.
 */
uint64_t rf_pagemap_own(const struct rf_region *r, uint64_t ent);
/* pagemap.c: read @npages pagemap entries for the host range at @addr. */
int rf_pagemap_read(rf_engine *e, const void *addr, size_t npages, uint64_t *out);
/* True if a pagemap entry is a resident page other than the kernel zero page. */
bool rf_pagemap_resident(const rf_engine *e, uint64_t ent);

#endif
