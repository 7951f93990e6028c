/* SPDX-License-Identifier: MIT */
/*
 * Private structures of page dedup (ksm/). Not installed.
 *
 * The files, from the API down:
 *
 *   dedup.c       the public API (include/ramfold/dedup.h): modes, start/stop,
 *                 attaching VMs (the core's per-VM hooks), kick, rate, stats;
 *                 picks the backend once, at rf_dedup_start
 *   own_engine.c  ramfold's own engine as a backend: its start/stop, per-VM
 *                 attach/detach (userfaultfd, per-region state), measured
 *                 stats; also the content hash and the RCU registration
 *   kernel_ksm.c  the kernel's KSM as a backend (RF_DEDUP_KSM), through sysfs
 *   scanner.c     the own engine's scanner threads: passes over all VMs,
 *                 stable-page logic, budget
 *   merge.c       the own engine's page-mapping changes: merge runs, zero
 *                 runs, unmerge, release (for rf_vm_discard_as), always under
 *                 the page locks
 *   index.c       content index: liburcu cds_lfht keyed by (hash, domain,
 *                 node), read under RCU by every scanner thread
 *   store.c       canonical pages in a memfd per NUMA node; refcounts; hole
 *                 punch
 *
 * Backends: struct dedup_backend_ops below. dedup.c keeps what every mode
 * shares (struct rf_dedup's VM list, kick and counters, struct rf_dedup_vm)
 * and calls the backend of d->cfg.mode for the rest: dedup_own_ops (zero,
 * intra-VM and domains), dedup_off_ops (off) or dedup_ksm_ops (ksm).
 *
 * Threads: the scanner threads (rf-scan/0..N-1, own engine only) and the
 * embedder's threads calling the API or a core hook (region_unmap, vm_free,
 * page_release). Write-protect faults are the VM's fault thread's (src/uffd.c):
 * dedup installs no handler, and wakes the writers the fault thread left to it.
 *
 * Lock order (outer first): d->lock (VM list) -> vm->regions_lock (read) ->
 * rcu_read_lock -> page lock bits (always taken with trylock by the merger, so
 * their order among themselves does not matter) -> store->lock.
 * A scanner that needs another VM's regions lock while inside an RCU
 * read-side section takes it with tryrdlock: the region_unmap hook holds the
 * write lock while it waits for a grace period.
 */
#ifndef RF_DEDUP_INTERNAL_H
#define RF_DEDUP_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <urcu/urcu-memb.h>
#include <urcu/rculfhash.h>

#include <ramfold/dedup.h>

#include "broker_proto.h"
#include "internal.h"
#include "uffd.h"

/*
 * The content hash (XXH3-64; own_engine.c). A pointer so unit tests can
 * force collisions; set it only while no engine is started.
 */
extern uint64_t (*dedup_hash_fn)(const void *page, size_t len);
/* XXH3-64 inlined with its AVX2 path (hash_avx2.c), the same value as
 * libxxhash's; usable only where dedup_hash_avx2_usable() says so. */
uint64_t dedup_hash_avx2(const void *page, size_t len);
bool dedup_hash_avx2_usable(void);
/* XXH3-64 through libxxhash: dedup_hash_fn unless the CPU has AVX2
 * (own_engine.c: pick_hash). */
uint64_t dedup_hash_default(const void *page, size_t len);

/* ---- store.c ---------------------------------------------------------- */

/* A store page number and its node fit the 32-bit pte payload. */
#define STORE_PG_BITS	28
#define STORE_PG_MASK	((1u << STORE_PG_BITS) - 1)
#define STORE_MAX_NODES 16

/*
 * A store page's word (struct store_page): its reference count in the low
 * 30 bits, STORE_REF_HELD, and STORE_REF_DYING.
 *
 * The count is the guest pages mapping a store page plus transient holders;
 * it stops at STORE_REF_COUNT (store_get_unless_zero refuses a full page:
 * its twins make another). The last store_put turns it into STORE_REF_DYING
 * in one step (never 0
 * first), so that nobody can take a dying page between the drop and the
 * queueing: STORE_REF_DYING stays until store_reap's grace period has
 * passed, and only then is the page free (ref 0) for reuse.
 */
#define STORE_REF_DYING (1u << 31)
/* A broker store's page: the broker counts a hold of ours on it. Set with
 * the first reference (take), cleared when the hold is given back
 * (broker_release), under the connection's lock; it outlives the count's
 * DYING, which keeps it. Never set for the engine's own stores. */
#define STORE_REF_HELD	(1u << 30)
#define STORE_REF_COUNT (STORE_REF_HELD - 1)

/* 4 bytes: a broker store has one for each of its pages that we map, in
 * every process of the domain. */
struct store_page {
	_Atomic uint32_t ref;
};

struct broker_conn;

struct rf_store {
	rf_engine *e;
	int node;		  /* NUMA node, -1 = none */
	int fd;			  /* memfd */
	uint8_t *win;		  /* MAP_SHARED window over the whole memfd */
	uint64_t cap;		  /* pages */
	struct store_page *pages; /* cap entries, mmap'ed */
	/* The engine's own stores: each page's STORE entry in the index, or
	 * NULL (cap entries, mmap'ed). NULL for a broker's store, whose pages
	 * are never in our index. */
	struct index_node **nodes;
	pthread_mutex_t lock; /* next, free list, zombies */
	uint64_t next;	      /* bump allocator */
	uint32_t *free_pgs;   /* cap entries, mmap'ed */
	uint64_t nfree;
	uint32_t *zombies; /* ref hit 0: index entry still to remove */
	uint64_t nzombies;
	_Atomic uint64_t live; /* allocated and not yet released (ref > 0, or being filled) */
	_Atomic uint64_t punched;
	/* A domain's store owned by the broker (broker_client.c): fd is the
	 * read-only memfd it sent, win a read-only view; pages are filled,
	 * allocated and punched by the broker only. NULL for the engine's
	 * own stores. Set before the store is published, never changed. */
	struct broker_conn *remote;
	_Atomic uint64_t refs; /* broker store: references held (our guest pages) */
	_Atomic bool full_logged;
};

int store_init(struct rf_store *s, rf_engine *e, int node, uint64_t cap_pages);
/* A broker's store: @fd (taken over) is its read-only memfd of @cap_pages. */
int store_init_remote(struct rf_store *s, rf_engine *e, int fd, uint64_t cap_pages,
		      struct broker_conn *bc);
void store_destroy(struct rf_store *s);
/* @n consecutive fresh pages; their refs start at 0. -ENOSPC when full. */
int store_alloc(struct rf_store *s, unsigned int n, uint32_t *first);
/* Up to @n consecutive fresh pages: as many adjacent ones as are left, or
 * a single freed one; their count, or -ENOSPC when full. */
int store_alloc_upto(struct rf_store *s, unsigned int n, uint32_t *first);
/* A merge found @s full: log it, once per store. */
void store_full(struct rf_store *s);
/* Give back pages from store_alloc that were never mapped. */
void store_unalloc(struct rf_store *s, uint32_t first, unsigned int n);
static inline uint8_t *store_addr(const struct rf_store *s, uint32_t pg)
{
	return s->win + ((uint64_t)pg << RF_PAGE_SHIFT);
}
static inline uint64_t store_off(uint32_t pg)
{
	return (uint64_t)pg << RF_PAGE_SHIFT;
}
/* Take a reference unless the page is already dying or free. */
bool store_get_unless_zero(struct rf_store *s, uint32_t pg);
void store_get(struct rf_store *s, uint32_t pg);
/* Drop a reference; the last one punches the page out of the memfd at once
 * and queues it for index removal and reuse (store_reap). Any thread. */
void store_put(struct rf_store *s, uint32_t pg);
/* Scanner thread (RCU-registered): remove dead pages from the index and
 * recycle their numbers after a grace period. */
void store_reap(struct rf_store *s, struct cds_lfht *ht);
/* Bytes of the memfd resident in memory (fstat). */
uint64_t store_resident_bytes(const struct rf_store *s);

/* ---- broker_client.c ---------------------------------------------------- */

/* rf_dedup_start: the broker's socket from @path, RAMFOLD_BROKER or the
 * system broker's (if it exists); none outside RF_DEDUP_DOMAINS. */
int broker_config(struct rf_dedup *d, const char *path);
/* Scanner thread 0 between passes, after the reap: connect (again) for
 * every (domain, node) of the VMs, send queued PUTs, report. */
void broker_tick(struct rf_dedup *d);
/* own_stop, every VM detached: close the connections. */
void broker_close_all(struct rf_dedup *d);
/* The broker store of @dv's domain, if connected; else NULL. */
struct rf_store *broker_store_for(struct rf_dedup *d, const struct rf_dedup_vm *dv);
/* One LOOKUP of @n hashes (rcu_read_lock held): each HIT entry comes with a
 * reference on its page taken; a HIT not usable here is turned into a MISS.
 * -errno if the broker could not be asked. */
int broker_lookup(struct rf_dedup *d, struct rf_store *s, const uint64_t *hash, unsigned int n,
		  struct rfb_lookup_ent *ent);
/* INSERT @n pages (content stable, under write-protect): @pg[i] is the
 * store page now holding page i's bytes, a reference taken on it, or
 * UINT32_MAX. 0, or -errno if the broker could not be asked (no page
 * granted). rcu_read_lock held. */
int broker_insert(struct rf_dedup *d, struct rf_store *s, const uint64_t *hash,
		  const uint8_t *const *pages, unsigned int n, uint32_t *pg);
/* store_reap of a broker store: these pages are no longer ours. */
void broker_release(struct broker_conn *bc, struct rf_store *s, const uint32_t *pgs, uint64_t n);
/* Connections up. */
unsigned int broker_connected(struct rf_dedup *d);

/* ---- index.c ---------------------------------------------------------- */

enum index_kind { NODE_STORE = 1, NODE_CAND = 2 };

struct dedup_region;

struct index_node {
	struct cds_lfht_node lfht;
	uint64_t hash;
	uint32_t domain;
	int16_t numa;
	uint8_t kind;
	/* One node per distinct stable page is most of the engine's metadata:
	 * the two kinds share their space, and a node fills jemalloc's 64-byte
	 * size class exactly (the next is 80). No engine pointer: the node is
	 * freed with rf_arena_free, which finds the arena from the pointer; no
	 * VM pointer: a CAND's region state knows its VM (dr->dv). */
	union {
		struct { /* NODE_STORE */
			struct rf_store *store;
			uint32_t pg;
		};
		struct { /* NODE_CAND: a private page stable over a pass, not yet merged */
			struct dedup_region *dr;
			uint32_t idx;
		};
	};
	struct rcu_head rcu;
};

_Static_assert(sizeof(struct index_node) == 64, "index_node outgrew jemalloc's 64-byte class");

struct index_key {
	uint64_t hash;
	uint32_t domain;
	int16_t numa;
};

struct cds_lfht *index_new(void);
void index_destroy(struct cds_lfht *ht);
uint64_t index_key_hash(const struct index_key *k);
/* Call under rcu_read_lock. First node of @kind matching @k (and, for CAND,
 * not the page @self_idx of @self_dr), or NULL. */
struct index_node *index_lookup(struct cds_lfht *ht, const struct index_key *k,
				enum index_kind kind, const struct dedup_region *self_dr,
				uint64_t self_idx);
/* Call under rcu_read_lock. The first STORE and the first other-page CAND
 * node of @k, in one walk; either may be NULL. */
void index_lookup2(struct cds_lfht *ht, const struct index_key *k,
		   const struct dedup_region *self_dr, uint64_t self_idx, struct index_node **store,
		   struct index_node **cand);
/* Call under rcu_read_lock. */
void index_add(struct cds_lfht *ht, struct index_node *n);
/* Call under rcu_read_lock. Removes @n; true if this call removed it (and
 * scheduled its free after a grace period). */
bool index_del(struct cds_lfht *ht, struct index_node *n);
/* Remove the CAND node for page @idx of @dr filed under @k (of whose hash the
 * low 32 bits are enough). rcu_read_lock held. */
bool index_del_cand(struct cds_lfht *ht, const struct index_key *k, const struct dedup_region *dr,
		    uint64_t idx);
/* Remove every CAND node of @dv (and of @dr only, if not NULL). Any
 * registered thread or not: takes rcu_read_lock itself. */
void index_del_cands_of(struct cds_lfht *ht, const struct rf_dedup_vm *dv,
			const struct dedup_region *dr);
struct index_node *index_node_new(rf_engine *e);
/* A node never added to the index. */
void index_node_free(rf_engine *e, struct index_node *n);
uint64_t index_count(struct cds_lfht *ht);
/* Index nodes freed in this process so far (a grace period after removal). */
uint64_t index_nodes_freed(void);

/* ---- per-VM and engine state -------------------------------------------- */

/* The scanner's flags of a page: the low byte of its pinfo word
 * (struct dedup_region). */
#define PF_HASHED  (1u << 0) /* pinfo holds the hash from the previous pass */
#define PF_CAND	   (1u << 1) /* a CAND node for this page is in the index */
#define PF_NOMERGE (1u << 2) /* failed to merge with this hash: skip until it changes */
/* Its present content had its first stable pass (it was counted in the
 * seen map, struct rf_dedup: seen, at first sight); filed as a CAND only if
 * its key's Bloom bit is set. */
#define PF_SEEN (1u << 3)
/* Bits 4-7: how often a guest write broke this page's merge (or rewrote it
 * after a zero discard), saturating at 15. A page broken k times is only
 * merged again on one pass in 2^min(k,backoff_max): pages that a guest
 * rewrites with the same bytes (a stack, a polling loop's counters) would
 * otherwise be merged and broken forever. */
#define PF_BROKEN_SHIFT 4
#define PF_BROKEN_MAX	15u
#define PF_BROKEN_MASK	(PF_BROKEN_MAX << PF_BROKEN_SHIFT)

static inline uint8_t pf_broken_bump(uint8_t pf)
{
	unsigned int k = (pf & PF_BROKEN_MASK) >> PF_BROKEN_SHIFT;

	return (uint8_t)((k < PF_BROKEN_MAX ? k + 1 : PF_BROKEN_MAX) << PF_BROKEN_SHIFT);
}

struct rf_dedup_vm;

/*
 * Allocated on its own (dv->regs[] holds pointers), so its address is
 * stable while the region is attached: CAND nodes name it. Freed only after
 * its CAND nodes are removed and a grace period has passed.
 */
struct dedup_region {
	struct rf_region *r;
	struct rf_dedup_vm *dv;
	/*
	 * One word per page, mmap'ed: bits 0-7 the scanner's flags (PF_*),
	 * bits 8-31 the low 24 bits of the page's content hash at its last
	 * pass (valid with PF_HASHED). 24 bits tell a page unchanged (a false
	 * match, 1 in 2^24, can only cost a byte comparison: merges compare
	 * the bytes) and find its CAND node (index_key_hash uses these bits
	 * only). Four bytes a page with content, which each process pays for
	 * all of its guests' pages: flags and hash in separate arrays cost 5.
	 * Flags change by atomic or/and on the word, which keeps the hash;
	 * a store of a whole word (pi_word) sets both.
	 */
	_Atomic uint32_t *pinfo;
	size_t pinfo_bytes;
};

#define PI_HASH_SHIFT 8
#define PI_HASH_MASK  0xffffffu /* the hash bits a page keeps (index_key_hash) */

static inline uint32_t pi_word(uint64_t hash, uint8_t pf)
{
	return ((uint32_t)hash & PI_HASH_MASK) << PI_HASH_SHIFT | pf;
}

/* The page's kept hash bits (as the low bits of an index_key's hash). */
static inline uint32_t pi_hash(uint32_t w)
{
	return w >> PI_HASH_SHIFT;
}

static inline uint8_t pf_load(const struct dedup_region *dr, uint64_t idx)
{
	return (uint8_t)atomic_load_explicit(&dr->pinfo[idx], memory_order_relaxed);
}

/* Set / clear flags; returns the flags before. The hash bits stay. */
static inline uint8_t pf_or(const struct dedup_region *dr, uint64_t idx, uint8_t f)
{
	return (uint8_t)atomic_fetch_or(&dr->pinfo[idx], f);
}

static inline uint8_t pf_clear(const struct dedup_region *dr, uint64_t idx, uint8_t f)
{
	return (uint8_t)atomic_fetch_and(&dr->pinfo[idx], ~(uint32_t)f);
}

/* Replace the flags with @pf, which must not claim a hash (no PF_HASHED). */
static inline void pf_reset(const struct dedup_region *dr, uint64_t idx, uint8_t pf)
{
	atomic_store(&dr->pinfo[idx], pi_word(0, pf & (uint8_t)~PF_HASHED));
}

struct rf_dedup;

struct rf_dedup_vm {
	struct rf_dedup *d;
	rf_vm *vm;
	struct rf_uffd *uffd;
	uint32_t domain;
	int numa;		   /* store node for this VM's pages */
	bool store_wp;		   /* store mappings can be write-protected */
	pthread_mutex_t regs_lock; /* regs[] membership */
	struct dedup_region *regs[RF_MAX_REGIONS];
	unsigned int nregs;
	_Atomic int refs; /* scan units in flight */
	_Atomic bool dead;
	struct rf_dedup_vm *next; /* d->vms, under d->lock */

	_Atomic uint64_t scanned, merged, unmerged, volatile_skipped, races;
	/* KSM backend: regions marked MADV_MERGEABLE. */
	bool ksm_marked;
};

struct scan_unit {
	struct rf_dedup_vm *dv;
	uint64_t gpa;
	uint64_t npages;
};

struct rf_dedup {
	rf_engine *e;
	const struct dedup_backend_ops *ops; /* the mode's backend */
	struct rf_dedup_config cfg;

	/* The own engine's index and stores: its own, one per node, in
	 * stores[0, nstores); then broker stores (broker_client.c), each
	 * published by raising nslots, never removed before stop. */
	struct cds_lfht *ht;
	struct rf_store stores[STORE_MAX_NODES];
	int nstores;
	_Atomic int nslots;
	char broker_path[108]; /* empty: no broker */
	struct broker_conn *_Atomic bconns;
	uint64_t zero_hash;

	pthread_mutex_t lock; /* vms, units, wake */
	pthread_cond_t wake;
	struct rf_dedup_vm *vms;
	bool kick;
	int go; /* scanner threads: 0 wait, 1 run, -1 abort start */
	_Atomic bool stop;
	bool pass_stop;		  /* thread 0's reading of stop for this pass (barrier-ordered) */
	uint32_t domain_ids[256]; /* interned domain names, index = id - 1 */
	char domain_names[256][RF_NAME_MAX];
	unsigned int ndomains;

	unsigned int nthreads;
	pthread_t threads[64];
	pthread_barrier_t barrier;
	struct scan_unit *units;
	unsigned int nunits, units_cap;
	_Atomic unsigned int next_unit;
	/* This pass's work (merges + zero discards + first-time hashes) and
	 * pages hashed: whether it found anything new (scanner.c). */
	_Atomic uint64_t pass_merges;
	_Atomic uint64_t pass_hashed;
	_Atomic bool converged;
	uint64_t purge_mark;	   /* index_nodes_freed() at the last purge (thread 0) */
	_Atomic uint64_t rate_pps; /* rf_dedup_set_rate; 0 = the config's budgets */
	_Atomic uint64_t gen;

	/* A one-hash Bloom filter over the keys ever filed in the index: a
	 * page whose key's bit is clear has no twin filed, so the scanner
	 * files it without a lookup (most pages of a pass are unique). Bits
	 * are never cleared: a stale bit only costs a lookup. Sized to the
	 * pages hashed, and replaced by a bigger one only between passes
	 * (bloom_fit). */
	_Atomic uint64_t *bloom;
	/*
	 * The seen map, beside the filter and as big: the key's two bits
	 * (seen_set) of every content a page had at first sight. Most pages
	 * of a guest are unique, and filing each as a CAND would cost an
	 * index node (64 bytes) a page for as long as it stays unique. So a
	 * page only sets its key's bits here, and a page that finds both set
	 * (a twin was seen) sets the key's Bloom bit too: on their first
	 * stable pass, pages file themselves only if the filter has their
	 * bit, and pair with the first of them filed. A unique page costs two
	 * bits instead of a node (a node still, when other keys' pages set
	 * both of its bits: about 1 time in 20 at 8 bits a key, where one bit
	 * a key was 1 in 8 and cost each QEMU of bench-qemu 200 KiB of
	 * nodes). Never cleared: a stale bit costs a node, never a merge.
	 * Rebuilt from the pages' hashes (PF_HASHED) when the filter grows, a
	 * key met twice setting its Bloom bit again: a lost bit would leave
	 * both pages of a pair unfiled; and refilled the same way once a
	 * quarter of its bits are set (keys counted above an eighth of the
	 * bits), so that the bits of pages long since rewritten (a live
	 * guest's churn) do not fill it up.
	 */
	_Atomic uint64_t *seen;
	_Atomic uint64_t seen_count; /* keys counted in the seen map, about */
	uint64_t seen_live;	     /* seen_count after the last refill (thread 0) */
	uint64_t bloom_bits;	     /* power of two, for both maps */
	bool bloom_guessed;	     /* sized from resident pages, not hashed ones (bloom_fit) */
	uint64_t bloom_failed_bits;  /* the size whose mmap last failed (logged) */

	uint64_t vma_budget;
	/* The process's mappings when the engine started: what the budget's
	 * halves are counted from (merge.c, vma_budget_allows). */
	uint64_t vma_base;
	/* The VMA budget's estimate of the process's mappings: 2 more per
	 * remap, none fewer when the kernel merges neighbours, so it only
	 * grows until vma_budget_allows recounts /proc/self/maps. Not a stat. */
	_Atomic uint64_t vmas;
	pthread_mutex_t vma_lock; /* recounts */
	uint64_t vma_recount_ns;  /* under vma_lock */
	_Atomic uint64_t vma_stops;
	_Atomic bool vma_stop_logged, vma_short_logged;
	_Atomic uint64_t ram_vmas; /* rf_dedup_stats.vmas at its last count (dedup.c) */

	_Atomic uint64_t scanned, merged, zeroed, unmerged, volatile_skipped, races, collisions;
	_Atomic uint64_t passes;
	/* Huge pages (scanner.c, "Huge pages"): the mode (enum rf_dedup_huge),
	 * set at any time by rf_dedup_set_huge and read once per unit; its
	 * counters; and whether the missing PAGEMAP_SCAN was logged. A change
	 * out of KEEP sets huge_fast_until: passes up to that one (gen) end
	 * off the idle budget, so that the next one judges which huge pages
	 * are cold over a full-speed pass (scanner.c). */
	_Atomic int huge_mode;
	_Atomic uint64_t huge_kept, huge_zero, huge_opened;
	_Atomic uint64_t huge_fast_until;
	_Atomic bool huge_nosupport_logged;
	_Atomic uint64_t cpu_ns_exited; /* CPU of threads that have ended */
	_Atomic uint64_t thread_cpu_ns[64];

	/* RF_DEDUP_KSM */
	struct {
		bool saved;
		char run[32], pages_to_scan[32], sleep_ms[32];
		int ksmd_pid;
		uint64_t ksmd_cpu0_ns;
		uint64_t full_scans0;
	} ksm;
};

/*
 * RCU registration of the calling thread (own_engine.c). Scanner threads stay
 * registered; embedder threads running a hook register for the duration of the
 * hook (dedup_rcu_enter returns whether it did, dedup_rcu_leave undoes only
 * that).
 */
bool dedup_rcu_enter(void);
/* call_rcu on the library's own RCU worker (own_engine.c), never liburcu's
 * default one, which would outlive the engine. */
void dedup_call_rcu(struct rcu_head *head, void (*fn)(struct rcu_head *));
void dedup_rcu_leave(bool registered_here);
void dedup_rcu_thread_online(void);
void dedup_rcu_thread_offline(void);

static inline uint64_t bloom_bit(const struct rf_dedup *d, const struct index_key *k)
{
	return (index_key_hash(k) >> 7) & (d->bloom_bits - 1);
}

static inline bool bloom_test(const struct rf_dedup *d, const struct index_key *k)
{
	uint64_t b = bloom_bit(d, k);

	return atomic_load_explicit(&d->bloom[b >> 6], memory_order_relaxed) & (1ull << (b & 63));
}

/* Set @k's bit (a full barrier); returns whether it was set already. Call it
 * after index_add, so a thread that sees the bit also finds the node. */
static inline bool bloom_set(struct rf_dedup *d, const struct index_key *k)
{
	uint64_t b = bloom_bit(d, k);

	return atomic_fetch_or(&d->bloom[b >> 6], 1ull << (b & 63)) & (1ull << (b & 63));
}

/* Set @k's bit in the seen map; whether another page had set it already. */
/* Count @k in the seen map: set its two bits (the Bloom filter's, and one
 * from the key hash's high bits, independent of it up to BLOOM_MAX_BITS).
 * Whether both were set already: the key, or two others, was counted. */
static inline bool seen_set(struct rf_dedup *d, const struct index_key *k)
{
	uint64_t h = index_key_hash(k);
	uint64_t b1 = (h >> 7) & (d->bloom_bits - 1), b2 = (h >> 33) & (d->bloom_bits - 1);
	bool was1 = atomic_fetch_or(&d->seen[b1 >> 6], 1ull << (b1 & 63)) & (1ull << (b1 & 63));
	bool was2 = atomic_fetch_or(&d->seen[b2 >> 6], 1ull << (b2 & 63)) & (1ull << (b2 & 63));

	return was1 && was2;
}

/* ---- merge.c ---------------------------------------------------------- */

/* A run of adjacent guest pages (B) to map onto adjacent store pages; for a
 * first-time duplicate also the adjacent pages (A) whose content seeds them. */
struct merge_run {
	struct rf_dedup_vm *dv;
	struct rf_region *r;
	uint64_t idx;
	unsigned int n;
	/* target: existing store pages (refs held, one per page)... */
	struct rf_store *store;
	uint32_t pg;
	bool pair;
	/* ...or, if self, the pages themselves seed new broker store pages
	 * (a TWIN answer: another process waits for this content) */
	bool self;
	/* ...or, if pair, the seed pages, allocated at flush time */
	struct rf_dedup_vm *adv;
	struct rf_region *ar;
	uint64_t aidx;
	uint64_t hashes[512];
	/* Pages a flush filled in a broker store but could not map with the
	 * run (the broker's pages were not adjacent): each holds a reference
	 * on its page, and the scanner merges them as store runs right after
	 * the flush (scanner.c: flush_run). */
	unsigned int ncarry;
	struct rf_store *carry_store;
	struct merge_carry {
		struct rf_dedup_vm *dv;
		struct rf_region *r;
		uint64_t idx, hash;
		uint32_t pg;
	} carry[2 * 512];
};
#define MERGE_RUN_MAX 512

/* Flush a run: the merge protocol's steps 1-8 (merge.c). Called with the B
 * VM's regions lock held for reading and rcu_read_lock held. */
void merge_run_flush(struct rf_dedup *d, struct merge_run *m);
/* Discard a run of all-zero pages (verified under write-protect). With
 * @whole (an all-zero huge page, discarded without splitting it), either
 * every page of the run is discarded or none is; true if any was. */
bool zero_run_flush(struct rf_dedup *d, struct rf_dedup_vm *dv, struct rf_region *r, uint64_t idx,
		    unsigned int n, bool whole);
/* Bring up to @n MERGED pages from @idx back to private anonymous mappings
 * with their content: a guest write broke their copy-on-write
 * (@count_as_write: the scanner, page locks tried, the write counted) or
 * the VM is detached (rf_dedup_stop, page locks waited for). The run ends at
 * the first page not MERGED; -EAGAIN if that is the first, -errno if left
 * merged (logged). Regions lock held (read). */
int unmerge_page(struct rf_dedup *d, struct rf_dedup_vm *dv, struct rf_region *r, uint64_t idx,
		 unsigned int n, bool count_as_write);
/* rf_vm_hooks.page_release for MERGED pages. */
int dedup_page_release(rf_vm *vm, struct rf_region *r, uint64_t idx, uint64_t pte, void *arg);
/* The store of a MERGED entry's payload, and its page in *@pg; NULL if the
 * payload names no store. */
struct rf_store *dedup_store_of(struct rf_dedup *d, uint32_t payload, uint32_t *pg);
/* Whether @vmas_needed more mappings, for a run of @run_pages pages, fit the
 * VMA budget: single pages (runs shorter than VMA_RUN_PAGES) only their share
 * of it, cfg.vma_single_pct (recounting the process's mappings before
 * refusing; each refusal counted, the first of each kind logged). */
#define VMA_RUN_PAGES 2
bool vma_budget_allows(struct rf_dedup *d, unsigned int vmas_needed, unsigned int run_pages);
/* The process's mappings, from /proc/self/maps. */
uint64_t count_vmas(void);

/* ---- own_engine.c ----------------------------------------------------- */

#define BLOOM_MIN_BITS (1ull << 16)
#define BLOOM_MAX_BITS (1ull << 26)

/* Grow the Bloom filter to fit @pages of guest RAM (own_engine.c says
 * when it may be called). 0, or -ENOMEM (logged) with the old one kept. */
int bloom_fit(struct rf_dedup *d, uint64_t pages);

/* The per-region state of @r, set up (and @r registered for write-protect)
 * if @create and it has none yet; NULL if none (or setting up failed). */
struct dedup_region *dedup_region_of(struct rf_dedup_vm *dv, const struct rf_region *r,
				     bool create);

/* ---- scanner.c -------------------------------------------------------- */

int scanner_start(struct rf_dedup *d);
void scanner_stop(struct rf_dedup *d);
uint64_t scanner_cpu_ns(struct rf_dedup *d);

/* ---- backends --------------------------------------------------------- */

/*
 * What the API (dedup.c) asks of a backend. rf_dedup_start picks one from
 * the mode and keeps it in d->ops; optional members may be NULL (nothing to
 * do). Called from the embedder's threads, as the API and hooks are.
 */
struct dedup_backend_ops {
	const char *name;
	/* rf_dedup_start, once the common state is set (e->dedup = d):
	 * check the host, set up, start merging. On failure, logs why and
	 * undoes what it did. Optional. */
	int (*start)(struct rf_dedup *d);
	/* rf_dedup_stop, before the VMs are detached: stop every thread that
	 * acts on them. Optional. */
	void (*quiesce)(struct rf_dedup *d);
	/* rf_dedup_stop, after the last VM is detached: give back what start
	 * took. Optional. */
	void (*stop)(struct rf_dedup *d);
	/* rf_dedup_add_vm, hooks registered, before @dv is linked into
	 * d->vms: attach dv->vm. -errno refuses it. Optional. */
	int (*add_vm)(struct rf_dedup *d, struct rf_dedup_vm *dv);
	/* A region joins an attached VM (the region_admit hook: mapped or
	 * adopted RAM), regions lock held for writing, @r not yet linked.
	 * -errno refuses the region. Optional. */
	int (*region_admit)(struct rf_dedup_vm *dv, const struct rf_region *r);
	/* Detaching (rf_dedup_stop with @unmerge, the vm_free hook without),
	 * after @dv is unlinked and no scan unit of it runs: with @unmerge,
	 * bring its merged pages back to private first; free its backend
	 * state. Optional. */
	void (*remove_vm)(struct rf_dedup *d, struct rf_dedup_vm *dv, bool unmerge);
	/* The region_unmap hook, regions lock held for writing: drop every
	 * reference into @r. Optional. */
	void (*region_unmap)(struct rf_dedup_vm *dv, struct rf_region *r);
	/* rf_dedup_set_rate, before the kick: 0, or -errno returned as is. */
	int (*set_rate)(struct rf_dedup *d, uint64_t pages_per_sec);
	/* rf_dedup_stats (@measure) and rf_dedup_counters (not): fill @st,
	 * zeroed with its mode set. */
	int (*stats)(struct rf_dedup *d, struct rf_dedup_stats *st, bool measure);
	/* rf_dedup_vm_stats, the counters filled: what the backend measures
	 * (saved_bytes). Optional. */
	int (*vm_stats)(struct rf_dedup_vm *dv, struct rf_dedup_vm_stats *st);
};

extern const struct dedup_backend_ops dedup_own_ops; /* own_engine.c */
extern const struct dedup_backend_ops dedup_off_ops; /* own_engine.c */
extern const struct dedup_backend_ops dedup_ksm_ops; /* kernel_ksm.c */

#endif
