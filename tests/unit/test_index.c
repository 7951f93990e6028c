/* SPDX-License-Identifier: MIT */
/*
 * The content index (ksm/index.c) alone: inserts and removals while reader
 * threads look keys up under RCU without any lock. A key that is never
 * removed is always found; a removed key is never found after its removal
 * returned; keys of another domain or node never match.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "../../ksm/dedup_internal.h"
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
	assert_true(index_del_cand(ht, &k, r, 5));
	assert_false(index_del_cand(ht, &k, r, 5));
	urcu_memb_read_unlock();
	urcu_memb_unregister_thread();
	index_destroy(ht);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_concurrent_readers),
	    cmocka_unit_test(test_keys_apart),
	};

	return cmocka_run_group_tests_name("dedup_index", tests, NULL, NULL);
}
