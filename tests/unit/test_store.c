/* SPDX-License-Identifier: MIT */
/*
 * The canonical page store (ksm/store.c) alone: reference counts, the hole
 * punched when the last reference goes (measured from the memfd's blocks),
 * adjacent allocation for runs, and reuse of a page number only after its
 * index entry is gone and a grace period passed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../ksm/dedup_internal.h"
#include "rf_test.h"

static void test_refcount_and_punch(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	struct cds_lfht *ht = index_new();
	struct rf_store s;
	uint32_t first, again;
	uint64_t res0, res1;

	(void)state;
	assert_int_equal(store_init(&s, e, -1, 1024), 0);
	res0 = store_resident_bytes(&s);
	assert_int_equal(store_alloc(&s, 8, &first), 0);
	for (unsigned int i = 0; i < 8; i++)
		memset(store_addr(&s, first + i), 0x5a + i, RF_PAGE_SIZE);
	res1 = store_resident_bytes(&s);
	assert_true(res1 >= res0 + 8 * RF_PAGE_SIZE);
	assert_int_equal(atomic_load(&s.live), 8);

	/* Page 0 of the run: two sharers. */
	store_get(&s, first);
	store_get(&s, first);
	assert_true(store_get_unless_zero(&s, first));
	store_put(&s, first);
	store_put(&s, first);
	assert_int_equal(store_resident_bytes(&s), res1); /* one sharer left */
	store_put(&s, first);
	/* The last reference is gone: the page's memory is returned at once. */
	assert_int_equal(store_resident_bytes(&s), res1 - RF_PAGE_SIZE);
	assert_false(store_get_unless_zero(&s, first));
	assert_int_equal(atomic_load(&s.live), 7);
	for (unsigned int b = 0; b < RF_PAGE_SIZE; b += 512)
		assert_int_equal(store_addr(&s, first)[b], 0);
	/* The other pages kept their content. */
	assert_int_equal(store_addr(&s, first + 3)[100], 0x5a + 3);

	/* Not reused before the reap and a grace period... */
	assert_int_equal(store_alloc(&s, 1, &again), 0);
	assert_int_not_equal(again, first);
	store_unalloc(&s, again, 1);
	urcu_memb_register_thread();
	store_reap(&s, ht);
	urcu_memb_unregister_thread();
	urcu_memb_barrier();
	/* ...after which the number comes back (single pages reuse first). */
	assert_int_equal(store_alloc(&s, 1, &again), 0);
	assert_true(again == first || again == first + 8);
	store_unalloc(&s, again, 1);

	/* Runs are adjacent. */
	assert_int_equal(store_alloc(&s, 4, &again), 0);
	assert_true(again >= first + 8);
	store_unalloc(&s, again, 4);
	for (unsigned int i = 1; i < 8; i++) {
		store_get(&s, first + i);
		store_put(&s, first + i);
	}
	assert_int_equal(atomic_load(&s.live), 0);
	assert_int_equal(store_resident_bytes(&s), res0);
	urcu_memb_register_thread();
	store_reap(&s, ht);
	urcu_memb_unregister_thread();
	store_destroy(&s);
	index_destroy(ht);
	rf_engine_free(e);
}

static void test_full(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	struct rf_store s;
	uint32_t pg;

	(void)state;
	assert_int_equal(store_init(&s, e, -1, 16), 0);
	assert_int_equal(store_alloc(&s, 16, &pg), 0);
	assert_int_equal(store_alloc(&s, 1, &pg), -ENOSPC);
	assert_int_equal(store_alloc(&s, 0, &pg), -EINVAL);
	store_unalloc(&s, 0, 16);
	store_destroy(&s);

	/* Up to n: a run cut to what the bump allocator has left, then single
	 * freed pages, then -ENOSPC; exact runs never come from the free list. */
	assert_int_equal(store_init(&s, e, -1, 16), 0);
	assert_int_equal(store_alloc_upto(&s, 10, &pg), 10);
	assert_int_equal(pg, 0);
	assert_int_equal(store_alloc_upto(&s, 10, &pg), 6);
	assert_int_equal(pg, 10);
	assert_int_equal(store_alloc_upto(&s, 4, &pg), -ENOSPC);
	store_unalloc(&s, 3, 2);
	assert_int_equal(store_alloc(&s, 2, &pg), -ENOSPC);
	assert_int_equal(store_alloc_upto(&s, 4, &pg), 1);
	assert_true(pg == 3 || pg == 4);
	store_unalloc(&s, pg, 1);
	assert_int_equal(atomic_load(&s.live), 14);
	store_unalloc(&s, 0, 3);
	store_unalloc(&s, 5, 11);
	store_destroy(&s);
	rf_engine_free(e);
}

/*
 * The last reference goes straight to DYING (never 0 first): between that
 * drop and the reap's grace period nobody may take the page, neither a
 * lookup (store_get_unless_zero) nor a broker grant, which takes only a
 * page at 0. Only the recycling after the grace period makes it 0 again.
 * A release more than the references is refused (logged), not wrapped.
 */
static void test_dying_until_recycled(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	struct cds_lfht *ht = index_new();
	struct rf_store s;
	uint32_t pg;

	(void)state;
	assert_int_equal(store_init(&s, e, -1, 64), 0);
	assert_int_equal(store_alloc(&s, 1, &pg), 0);
	assert_int_equal(atomic_load(&s.pages[pg].ref), 0);
	store_get(&s, pg);
	store_get(&s, pg);
	store_put(&s, pg);
	assert_int_equal(atomic_load(&s.pages[pg].ref), 1);
	store_put(&s, pg);
	assert_int_equal(atomic_load(&s.pages[pg].ref), STORE_REF_DYING);
	assert_false(store_get_unless_zero(&s, pg));
	/* Once too often: refused, the state stays DYING. */
	store_put(&s, pg);
	assert_int_equal(atomic_load(&s.pages[pg].ref), STORE_REF_DYING);
	assert_int_equal(atomic_load(&s.live), 0);
	urcu_memb_register_thread();
	store_reap(&s, ht);
	urcu_memb_unregister_thread();
	urcu_memb_barrier();
	/* Recycled: free, and reused by the next single-page allocation. */
	assert_int_equal(atomic_load(&s.pages[pg].ref), 0);
	assert_int_equal(store_alloc(&s, 1, &pg), 0);
	assert_int_equal(atomic_load(&s.pages[pg].ref), 0);
	store_unalloc(&s, pg, 1);
	store_destroy(&s);
	index_destroy(ht);
	rf_engine_free(e);
}

/*
 * One 32-bit word a page: the count stops short of the flag bits (a full
 * page is refused, as a dying one), and a broker page's HELD bit stays
 * through DYING for the reap, which gives the hold back.
 */
static void test_ref_word(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	struct rf_store s;
	uint32_t pg;

	(void)state;
	assert_int_equal(sizeof(struct store_page), 4);
	assert_int_equal(store_init(&s, e, -1, 64), 0);
	assert_int_equal(store_alloc(&s, 1, &pg), 0);
	atomic_store(&s.pages[pg].ref, STORE_REF_COUNT - 1);
	assert_true(store_get_unless_zero(&s, pg));
	assert_int_equal(atomic_load(&s.pages[pg].ref), STORE_REF_COUNT);
	assert_false(store_get_unless_zero(&s, pg)); /* full: never into HELD */
	assert_int_equal(atomic_load(&s.pages[pg].ref), STORE_REF_COUNT);
	/* As a broker grant leaves it: one reference, the hold ours. */
	atomic_store(&s.pages[pg].ref, 1 | STORE_REF_HELD);
	assert_true(store_get_unless_zero(&s, pg));
	assert_int_equal(atomic_load(&s.pages[pg].ref), 2 | STORE_REF_HELD);
	store_put(&s, pg);
	store_put(&s, pg);
	assert_int_equal(atomic_load(&s.pages[pg].ref), STORE_REF_DYING | STORE_REF_HELD);
	assert_false(store_get_unless_zero(&s, pg));
	store_put(&s, pg); /* once too often: refused */
	assert_int_equal(atomic_load(&s.pages[pg].ref), STORE_REF_DYING | STORE_REF_HELD);
	atomic_store(&s.pages[pg].ref, 0);
	store_destroy(&s);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_refcount_and_punch),
	    cmocka_unit_test(test_full),
	    cmocka_unit_test(test_dying_until_recycled),
	    cmocka_unit_test(test_ref_word),
	};

	return cmocka_run_group_tests_name("dedup_store", tests, NULL, NULL);
}
