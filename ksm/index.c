/* SPDX-License-Identifier: MIT */
/*
 * The content index: a liburcu lock-free hash table (cds_lfht) from page
 * content to where that content lives. Scanner threads look pages up under
 * rcu_read_lock without any lock, in parallel with inserts and removals.
 *
 * A key is (64-bit XXH3 of the page, sharing domain, NUMA node): pages of
 * different domains or nodes never meet in the index, so they can never be
 * merged. The table keeps duplicates (several nodes may share a key): a
 * STORE node names a canonical store page; a CAND node names a private guest
 * page that was unchanged over one pass and is waiting for a twin (the
 * "unstable" side, as in mm/ksm.c). Two pages whose 64-bit hashes collide
 * are told apart by memcmp in the merger, never here.
 *
 * Nodes are freed with call_rcu after removal, so a reader that found a node
 * may use its fields until it leaves its read-side section.
 */
#include <string.h>

#include "dedup_internal.h"
#include "mix.h"

static int key_match(struct cds_lfht_node *node, const void *key)
{
	const struct index_node *n = caa_container_of(node, struct index_node, lfht);
	const struct index_key *k = key;

	return n->hash == k->hash && n->domain == k->domain && n->numa == k->numa;
}

/*
 * The key's place in the table (and its bits in the Bloom filter and the
 * seen map) from the low 24 bits of the content hash only: the scanner
 * keeps 3 bytes of each page's hash (struct dedup_region: pinfo), and must
 * find a candidate it filed from them (index_del_cand). 2^24 places are
 * plenty for the table's chains; the filter's largest sizes (2^25 and 2^26
 * bits, past 4 and 8 million pages hashed) reach fewer of their bits than
 * they have, which costs lookups, never a twin. The nodes keep the whole
 * hash, which lookups compare. A full 64-bit mix (the filter's two bits take
 * their own bits of it), with the domain and node folded in first so that
 * equal pages of two domains land apart.
 */
uint64_t index_key_hash(const struct index_key *k)
{
	return mix64(((uint32_t)k->hash & PI_HASH_MASK) ^
		     (((uint64_t)k->domain << 16 | (uint16_t)k->numa) * 0x9e3779b97f4a7c15ull));
}

/* A candidate's key from its page's kept hash bits (index_key_hash). */
static int key_match_low(struct cds_lfht_node *node, const void *key)
{
	const struct index_node *n = caa_container_of(node, struct index_node, lfht);
	const struct index_key *k = key;

	return (((uint32_t)n->hash ^ (uint32_t)k->hash) & PI_HASH_MASK) == 0 &&
	       n->domain == k->domain && n->numa == k->numa;
}

struct cds_lfht *index_new(void)
{
	/* 32k buckets to start (256 KiB): growing by auto-resize alone lags
	 * behind a first pass that files ~10^5 pages, and long chains made
	 * lookups cost more than hashing. */
	return cds_lfht_new_flavor(1u << 15, 1u << 15, 0,
				   CDS_LFHT_AUTO_RESIZE | CDS_LFHT_ACCOUNTING, &urcu_memb_flavor,
				   NULL);
}

/* Nodes freed so far, by every engine of the process (the callback has no
 * engine at hand): the scanner purges its arena after a pass that freed
 * many. Another engine's frees can only cost an extra purge. */
static _Atomic uint64_t nodes_freed;

static void node_free_cb(struct rcu_head *head)
{
	struct index_node *n = caa_container_of(head, struct index_node, rcu);

	rf_arena_free(n);
	atomic_fetch_add_explicit(&nodes_freed, 1, memory_order_relaxed);
}

uint64_t index_nodes_freed(void)
{
	return atomic_load_explicit(&nodes_freed, memory_order_relaxed);
}

struct index_node *index_node_new(rf_engine *e)
{
	return rf_zalloc(e, sizeof(struct index_node));
}

void index_node_free(rf_engine *e, struct index_node *n)
{
	rf_free(e, n);
}

void index_destroy(struct cds_lfht *ht)
{
	struct cds_lfht_iter it;
	struct index_node *n;

	if (!ht)
		return;
	urcu_memb_read_lock();
	cds_lfht_for_each_entry (ht, &it, n, lfht)
		index_del(ht, n);
	urcu_memb_read_unlock();
	urcu_memb_barrier(); /* run pending frees */
	cds_lfht_destroy(ht, NULL);
}

struct index_node *index_lookup(struct cds_lfht *ht, const struct index_key *k,
				enum index_kind kind, const struct dedup_region *self_dr,
				uint64_t self_idx)
{
	struct cds_lfht_iter it;
	struct index_node *n;

	cds_lfht_for_each_entry_duplicate (ht, index_key_hash(k), key_match, k, &it, n, lfht) {
		if (n->kind != kind)
			continue;
		if (kind == NODE_CAND && n->dr == self_dr && n->idx == self_idx)
			continue;
		return n;
	}
	return NULL;
}

void index_lookup2(struct cds_lfht *ht, const struct index_key *k,
		   const struct dedup_region *self_dr, uint64_t self_idx, struct index_node **store,
		   struct index_node **cand)
{
	struct cds_lfht_iter it;
	struct index_node *n;

	/* One walk of the key's chain for both kinds: the chain is cold in
	 * cache, and this is the scanner's hottest path after hashing. */
	*store = *cand = NULL;
	cds_lfht_for_each_entry_duplicate (ht, index_key_hash(k), key_match, k, &it, n, lfht) {
		if (n->kind == NODE_STORE) {
			if (!*store)
				*store = n;
		} else if (!*cand && !(n->dr == self_dr && n->idx == self_idx)) {
			*cand = n;
		}
		if (*store && *cand)
			return;
	}
}

void index_add(struct cds_lfht *ht, struct index_node *n)
{
	struct index_key k = {n->hash, n->domain, n->numa};

	cds_lfht_add(ht, index_key_hash(&k), &n->lfht);
}

bool index_del(struct cds_lfht *ht, struct index_node *n)
{
	if (cds_lfht_del(ht, &n->lfht) != 0)
		return false;
	dedup_call_rcu(&n->rcu, node_free_cb);
	return true;
}

bool index_del_cand(struct cds_lfht *ht, const struct index_key *k, const struct dedup_region *dr,
		    uint64_t idx)
{
	struct cds_lfht_iter it;
	struct index_node *n;

	cds_lfht_for_each_entry_duplicate (ht, index_key_hash(k), key_match_low, k, &it, n, lfht) {
		if (n->kind == NODE_CAND && n->dr == dr && n->idx == idx)
			return index_del(ht, n);
	}
	return false;
}

void index_del_cands_of(struct cds_lfht *ht, const struct rf_dedup_vm *dv,
			const struct dedup_region *dr)
{
	struct cds_lfht_iter it;
	struct index_node *n;

	urcu_memb_read_lock();
	cds_lfht_for_each_entry (ht, &it, n, lfht) {
		/* n->dr is alive: it is freed only after its CAND nodes are
		 * removed and a grace period has passed. */
		if (n->kind == NODE_CAND && (dr ? n->dr == dr : n->dr->dv == dv))
			index_del(ht, n);
	}
	urcu_memb_read_unlock();
}

uint64_t index_count(struct cds_lfht *ht)
{
	long before, after;
	unsigned long count;

	urcu_memb_read_lock();
	cds_lfht_count_nodes(ht, &before, &count, &after);
	urcu_memb_read_unlock();
	return count;
}
