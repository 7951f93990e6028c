/* SPDX-License-Identifier: MIT */
/*
 * The content index (ksm/index.c) alone: inserts and removals while reader
 * threads look keys up under RCU without any lock. A key that is never
 * removed is always found; a removed key is never found after its removal
 * returned; keys of another domain or node never match. And the Bloom
 * filter in front of it keeps every filed key when it grows.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "../../ksm/dedup_internal.h"
#include "dedup_util.h"
#include "rf_test.h"

#define STABLE_KEYS 4096
#define CHURN_KEYS  4096

struct shared {
	struct cds_lfht *ht;
	_Atomic bool stop;
	_Atomic uint64_t lookups, misses_stable, hits_removed;
	/* churn key c of round r is a node with idx r + 1; gone[c] = r + 1 once
	 * its removal returned */
	_Atomic uint32_t gone[CHURN_KEYS];
};

static struct index_key key_of(uint64_t h, uint32_t domain)
{
	struct index_key k = {h * 0x9e3779b97f4a7c15ull, domain, 0};

	return k;
}

static void *reader(void *arg)
{
	struct shared *s = arg;
	uint64_t i = 0;

	urcu_memb_register_thread();
	while (!atomic_load(&s->stop)) {
		struct index_key k = key_of(i % STABLE_KEYS, 1);
		struct index_node *st, *ca;
		uint64_t c = (i * 7) % CHURN_KEYS;
		uint32_t removed;

		urcu_memb_read_lock();
		index_lookup2(s->ht, &k, NULL, 0, &st, &ca);
		if (!st || st->hash != k.hash)
			atomic_fetch_add(&s->misses_stable, 1);
		/* Read "gone" before the lookup: a key removed before we
		 * looked must not be found. */
		removed = atomic_load(&s->gone[c]);
		k = key_of(1000000 + c, 1);
		index_lookup2(s->ht, &k, NULL, 0, &st, &ca);
		if (ca && ca->idx <= removed)
			atomic_fetch_add(&s->hits_removed, 1);
		urcu_memb_read_unlock();
		atomic_fetch_add(&s->lookups, 2);
		i++;
	}
	urcu_memb_unregister_thread();
	return NULL;
}

static struct index_node *node(rf_engine *e, enum index_kind kind, struct index_key k)
{
	struct index_node *n = index_node_new(e);

	assert_non_null(n);
	n->kind = kind;
	n->hash = k.hash;
	n->domain = k.domain;
	n->numa = k.numa;
	return n;
}

static void test_concurrent_readers(void **state)
{
	static struct shared s;
	struct index_node *churn[CHURN_KEYS];
	rf_engine *e = rf_test_engine(NULL);
	pthread_t t[3];

	(void)state;
	memset(&s, 0, sizeof(s));
	s.ht = index_new();
	assert_non_null(s.ht);
	urcu_memb_register_thread();
	urcu_memb_read_lock();
	for (uint64_t i = 0; i < STABLE_KEYS; i++)
		index_add(s.ht, node(e, NODE_STORE, key_of(i, 1)));
	urcu_memb_read_unlock();
	for (int i = 0; i < 3; i++)
		assert_int_equal(pthread_create(&t[i], NULL, reader, &s), 0);
	/* Churn: add every churn key as a CAND, then remove each one. */
	for (int round = 0; round < 20; round++) {
		for (uint64_t c = 0; c < CHURN_KEYS; c++) {
			churn[c] = node(e, NODE_CAND, key_of(1000000 + c, 1));
			churn[c]->idx = (uint32_t)round + 1;
			urcu_memb_read_lock();
			index_add(s.ht, churn[c]);
			urcu_memb_read_unlock();
		}
		for (uint64_t c = 0; c < CHURN_KEYS; c++) {
			urcu_memb_read_lock();
			assert_true(index_del(s.ht, churn[c]));
			assert_false(index_del(s.ht, churn[c])); /* only once */
			urcu_memb_read_unlock();
			atomic_store(&s.gone[c], (uint32_t)round + 1);
		}
	}
	atomic_store(&s.stop, true);
	for (int i = 0; i < 3; i++)
		pthread_join(t[i], NULL);
	printf("  %llu lookups: %llu stable keys missed, %llu removed keys found\n",
	       (unsigned long long)s.lookups, (unsigned long long)s.misses_stable,
	       (unsigned long long)s.hits_removed);
	assert_true(s.lookups > 10000);
	assert_int_equal(s.misses_stable, 0);
	assert_int_equal(s.hits_removed, 0);
	assert_int_equal(index_count(s.ht), STABLE_KEYS);
	urcu_memb_unregister_thread();
	index_destroy(s.ht);
	rf_engine_free(e);
}

/* Same hash, other domain or node: never a match; CAND lookups skip the page itself. */
static void test_keys_apart(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	struct cds_lfht *ht = index_new();
	struct index_node *st, *ca, *self;
	struct index_key k = key_of(42, 7), other = k;
	struct dedup_region *r = (struct dedup_region *)0x1000;

	(void)state;
	urcu_memb_register_thread();
	urcu_memb_read_lock();
	self = node(e, NODE_CAND, k);
	self->dr = r;
	self->idx = 5;
	index_add(ht, self);
	index_lookup2(ht, &k, r, 5, &st, &ca);
	assert_null(st);
	assert_null(ca); /* only itself */
	index_lookup2(ht, &k, r, 6, &st, &ca);
	assert_ptr_equal(ca, self);
	other.domain = 8;
	index_lookup2(ht, &other, NULL, 0, &st, &ca);
	assert_null(ca);
	other = k;
	other.numa = 1;
	index_lookup2(ht, &other, NULL, 0, &st, &ca);
	assert_null(ca);
	/* The scanner removes a candidate knowing the low 24 bits of its
	 * hash only (the page's pinfo word keeps no more): a key whose high
	 * bits differ is another content for lookups, and the same place. */
	other = k;
	other.hash = pi_hash(pi_word(k.hash, PF_HASHED | PF_CAND));
	assert_true(k.hash >> 24 != 0);
	assert_int_equal(other.hash, k.hash & PI_HASH_MASK);
	assert_int_equal(index_key_hash(&other), index_key_hash(&k));
	index_lookup2(ht, &other, NULL, 0, &st, &ca);
	assert_null(ca);
	assert_false(index_del_cand(ht, &other, r, 6)); /* another page */
	other.hash ^= 1u << 23;				/* another content's kept bits */
	assert_false(index_del_cand(ht, &other, r, 5));
	other.hash ^= 1u << 23;
	assert_true(index_del_cand(ht, &other, r, 5));
	assert_false(index_del_cand(ht, &k, r, 5));
	urcu_memb_read_unlock();
	urcu_memb_unregister_thread();
	index_destroy(ht);
	rf_engine_free(e);
}

/*
 * A page's pinfo word: flags change by atomic or/and without touching the
 * kept hash bits; a reset drops the hash's claim (PF_HASHED) with them.
 */
static void test_pinfo_word(void **state)
{
	_Atomic uint32_t w[2] = {0, 0};
	struct dedup_region dr = {.pinfo = w};
	uint64_t h = 0x0123456789abcdefull;

	(void)state;
	atomic_store(&w[1], pi_word(h, PF_HASHED | PF_SEEN));
	assert_int_equal(pi_hash(atomic_load(&w[1])), h & PI_HASH_MASK);
	assert_int_equal(pf_or(&dr, 1, PF_CAND), PF_HASHED | PF_SEEN);
	assert_int_equal(pf_clear(&dr, 1, PF_SEEN), PF_HASHED | PF_SEEN | PF_CAND);
	assert_int_equal(pf_load(&dr, 1), PF_HASHED | PF_CAND);
	assert_int_equal(pi_hash(atomic_load(&w[1])), h & PI_HASH_MASK);
	/* the broken count saturates in the flags' high bits */
	pf_reset(&dr, 1, PF_HASHED | pf_broken_bump(PF_BROKEN_MASK));
	assert_int_equal(pf_load(&dr, 1), PF_BROKEN_MASK);
	assert_int_equal(pi_hash(atomic_load(&w[1])), 0);
	assert_int_equal(atomic_load(&w[0]), 0); /* its neighbour untouched */
}

/*
 * The Bloom filter grown (ksm/own_engine.c: bloom_fit): every key filed
 * before the grow, STORE or CAND, has its bit in the new filter, or its
 * twins would skip the lookup and be filed beside it instead of merged;
 * nothing else is set; sizes follow the pages, within the bounds, never
 * shrinking.
 */
static void test_bloom_grow(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	struct rf_dedup *d = calloc(1, sizeof(*d));
	enum { KEYS = 3000 };
	uint64_t set = 0;

	(void)state;
	assert_non_null(d);
	d->e = e;
	d->ht = index_new();
	assert_non_null(d->ht);
	urcu_memb_register_thread();
	assert_int_equal(bloom_fit(d, 0), 0);
	assert_int_equal(d->bloom_bits, BLOOM_MIN_BITS);
	urcu_memb_read_lock();
	for (unsigned int i = 0; i < KEYS; i++) {
		struct index_key k = key_of(i, 1 + i % 3);

		index_add(d->ht, node(e, i % 2 ? NODE_STORE : NODE_CAND, k));
		bloom_set(d, &k);
	}
	urcu_memb_read_unlock();
	/* 2^16 bits for up to 8192 pages; 8193 need 2^17. */
	assert_int_equal(bloom_fit(d, 8192), 0);
	assert_int_equal(d->bloom_bits, BLOOM_MIN_BITS);
	assert_int_equal(bloom_fit(d, 8193), 0);
	assert_int_equal(d->bloom_bits, BLOOM_MIN_BITS << 1);
	assert_int_equal(bloom_fit(d, 1u << 20), 0);
	assert_int_equal(d->bloom_bits, 1ull << 23);
	for (unsigned int i = 0; i < KEYS; i++) {
		struct index_key k = key_of(i, 1 + i % 3);

		assert_true(bloom_test(d, &k));
	}
	for (uint64_t w = 0; w < d->bloom_bits / 64; w++)
		set += (uint64_t)__builtin_popcountll(atomic_load(&d->bloom[w]));
	assert_true(set <= KEYS);
	assert_true(set > KEYS * 9 / 10);      /* 3000 keys in 2^23 bits: few share one */
	assert_int_equal(bloom_fit(d, 16), 0); /* never shrinks */
	assert_int_equal(d->bloom_bits, 1ull << 23);
	assert_int_equal(bloom_fit(d, 1ull << 40), 0);
	assert_int_equal(d->bloom_bits, BLOOM_MAX_BITS);
	for (unsigned int i = 0; i < KEYS; i++) {
		struct index_key k = key_of(i, 1 + i % 3);

		assert_true(bloom_test(d, &k));
	}
	urcu_memb_unregister_thread();
	munmap((void *)d->bloom, d->bloom_bits / 8);
	index_destroy(d->ht);
	free(d);
	rf_engine_free(e);
}

/*
 * Freed index nodes' pages go back to the kernel at rf_arena_purge, not 10 s
 * of allocator decay later: 4 MiB of nodes freed leave the process's Rss
 * only when purged. The sanitizer build's nodes come from libc, whose free
 * decides for itself (rf_arena_purge does nothing there).
 */
static void test_freed_nodes_purged(void **state)
{
	enum { N = 65536 }; /* 4 MiB of 64-byte nodes */
	rf_engine *e;
	struct index_node **v;
	struct dedup_mem m0, m1, m2;

	(void)state;
#ifdef RF_ARENA_LIBC
	skip();
#endif
	e = rf_test_engine(NULL);
	v = calloc(N, sizeof(*v));
	assert_non_null(v);
	for (unsigned int i = 0; i < N; i++) {
		v[i] = index_node_new(e);
		assert_non_null(v[i]);
		v[i]->hash = i + 1; /* resident, whatever the zeroing did */
	}
	assert_int_equal(dedup_mem_read(&m0), 0);
	for (unsigned int i = 0; i < N; i++)
		rf_arena_free(v[i]);
	assert_int_equal(dedup_mem_read(&m1), 0);
	rf_arena_purge(e);
	assert_int_equal(dedup_mem_read(&m2), 0);
	printf("  rss: %llu KiB with the nodes, %llu freed, %llu purged\n",
	       (unsigned long long)m0.rss >> 10, (unsigned long long)m1.rss >> 10,
	       (unsigned long long)m2.rss >> 10);
	assert_true(m1.rss >= m2.rss + (3u << 20));
	free(v);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_concurrent_readers), cmocka_unit_test(test_keys_apart),
	    cmocka_unit_test(test_pinfo_word),	       cmocka_unit_test(test_bloom_grow),
	    cmocka_unit_test(test_freed_nodes_purged),
	};

	return cmocka_run_group_tests_name("dedup_index", tests, NULL, NULL);
}
