/* SPDX-License-Identifier: MIT */
/*
 * ramfoldd's candidate cache (ramfoldd/cand.c) on its own: what a second
 * client is told, what growth keeps, how far made-up hashes can grow it,
 * and what a slot's end and reuse mean.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cand.h"

#define TTL 60000u

static struct cand_slots *slots_new(void)
{
	struct cand_slots *s = calloc(1, sizeof(*s));

	assert_non_null(s);
	return s;
}

static uint64_t key(uint64_t i)
{
	return i * 0x9e3779b97f4a7c15ull + 12345;
}

/* Pairs across two clients, asked the way scanners ask (all of one
 * client's pages, then all of the other's), while the cache grows from
 * nothing: almost every pair is told TWIN, and the cache costs 4 bytes an
 * entry (5.2 a key here; the 8-byte entries before cost 10.5, the exact
 * table before them 16 at half load). A pair neither told TWIN nor pushed
 * out is one whose first ask met an entry of its own client alike in the
 * bits that entry kept (about 6 in 10,000 here: cand.c). */
static void test_pairs_found_while_growing(void **state)
{
	struct cand_slots *s = slots_new();
	struct cand_cache cc;
	uint16_t a = cand_slot_get(s), b = cand_slot_get(s);
	const uint64_t n = 100000;
	uint64_t twins = 0;

	(void)state;
	cand_init(&cc, 42, 1u << 22);
	for (uint64_t i = 0; i < n; i++)
		assert_false(cand_ask(&cc, s, key(i), a, 5000, TTL));
	for (uint64_t i = 0; i < n; i++)
		twins += cand_ask(&cc, s, key(i), b, 5000, TTL);
	print_message("    %llu of %llu pairs TWIN, %llu evicted, %zu bytes (%.1f a key)\n",
		      (unsigned long long)twins, (unsigned long long)n,
		      (unsigned long long)cc.evicted, cand_bytes(&cc),
		      (double)cand_bytes(&cc) / (double)n);
	assert_true(twins + cc.evicted >= n - n / 1000);
	assert_true(twins >= n * 98 / 100);
	assert_true(cand_bytes(&cc) <= n * 6);
	/* The first asker asking again is not its own twin. */
	assert_false(cand_ask(&cc, s, key(n - 1), a, 5000, TTL));
	assert_true(cand_ask(&cc, s, key(n - 1), b, 5000, TTL));
	cand_fini(&cc);
	free(s);
}

/* A candidate filed when the table was at its smallest is still found
 * after the table doubled nine times under it (its entry moved each time,
 * with a bit of its fingerprint fewer), by another client only. Those not
 * found were pushed out of full buckets by the flood, as many as the
 * 8-byte entries lost (6 of 100 there, 8 here; a move that lost entries
 * would find next to none). */
static void test_twin_found_after_doublings(void **state)
{
	struct cand_slots *s = slots_new();
	struct cand_cache cc;
	uint16_t a = cand_slot_get(s), b = cand_slot_get(s), c = cand_slot_get(s);
	uint64_t found = 0;

	(void)state;
	cand_init(&cc, 3, 1u << 22);
	for (uint64_t i = 0; i < 100; i++)
		assert_false(cand_ask(&cc, s, key(i), a, 2000, TTL));
	assert_int_equal(cand_bytes(&cc), 4096);
	for (uint64_t i = 1000; i < 1000 + 400000; i++)
		cand_ask(&cc, s, key(i), c, 2000, TTL);
	assert_int_equal(cand_bytes(&cc), 4096 << 9);
	for (uint64_t i = 0; i < 100; i++) {
		bool twin = cand_ask(&cc, s, key(i), b, 3000, TTL);

		/* a is told TWIN only if its candidate was lost (b's now). */
		assert_int_equal(cand_ask(&cc, s, key(i), a, 3000, TTL), !twin);
		found += twin;
	}
	print_message("    %llu of 100 found, %llu evicted\n", (unsigned long long)found,
		      (unsigned long long)cc.evicted);
	assert_true(found >= 90);
	cand_fini(&cc);
	free(s);
}

/* One client flooding made-up hashes: the cache stops at its cap, and a
 * pair asked about afterwards is still found. */
static void test_made_up_hashes_bounded(void **state)
{
	struct cand_slots *s = slots_new();
	struct cand_cache cc;
	uint16_t bad = cand_slot_get(s), a = cand_slot_get(s), b = cand_slot_get(s);

	(void)state;
	cand_init(&cc, 7, 4096);
	for (uint64_t i = 0; i < 1000000; i++)
		cand_ask(&cc, s, key(i) ^ 0xdead, bad, 1000, TTL);
	assert_true(cc.count <= 4096);
	assert_int_equal(cand_bytes(&cc), 4096 * 4);
	assert_false(cand_ask(&cc, s, 77, a, 1000, TTL));
	assert_true(cand_ask(&cc, s, 77, b, 1000, TTL));
	cand_fini(&cc);
	free(s);
}

/* The TTL, a refresh, a client's leaving, and slot 0 (no slot left). */
static void test_ttl_leave_and_no_slot(void **state)
{
	struct cand_slots *s = slots_new();
	struct cand_cache cc;
	uint16_t x = cand_slot_get(s), y = cand_slot_get(s), z;
	uint64_t t = 1000;

	(void)state;
	cand_init(&cc, 1, 4096);
	assert_false(cand_ask(&cc, s, 5, x, t, TTL));
	assert_true(cand_ask(&cc, s, 5, y, t, TTL));
	/* Not asked about again for the TTL (to the stamp's second): gone. */
	t += TTL + 1024;
	assert_false(cand_ask(&cc, s, 5, y, t, TTL));
	assert_true(cand_ask(&cc, s, 5, x, t, TTL));
	/* Asked again within it: kept. */
	t += TTL / 2;
	assert_false(cand_ask(&cc, s, 5, y, t, TTL));
	t += TTL / 2;
	assert_true(cand_ask(&cc, s, 5, x, t, TTL));
	/* Its client gone: dead at once, the next asker takes it. */
	cand_slot_put(s, y);
	z = cand_slot_get(s);
	assert_int_not_equal(z, y); /* round robin: not reused soon */
	assert_false(cand_ask(&cc, s, 5, z, t, TTL));
	assert_true(cand_ask(&cc, s, 5, x, t, TTL));
	/* A client without a slot files nothing but is told of twins. */
	assert_true(cand_ask(&cc, s, 5, 0, t, TTL));
	assert_false(cand_ask(&cc, s, 6, 0, t, TTL));
	assert_false(cand_ask(&cc, s, 6, x, t, TTL));
	cand_fini(&cc);
	free(s);
}

/* Slots run out at CAND_SLOTS - 1 and come back when freed. */
static void test_slots_run_out(void **state)
{
	struct cand_slots *s = slots_new();

	(void)state;
	for (uint32_t i = 1; i < CAND_SLOTS; i++)
		assert_int_not_equal(cand_slot_get(s), 0);
	assert_int_equal(cand_slot_get(s), 0);
	cand_slot_put(s, 200);
	assert_int_equal(cand_slot_get(s), 200);
	free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pairs_found_while_growing),
	    cmocka_unit_test(test_twin_found_after_doublings),
	    cmocka_unit_test(test_made_up_hashes_bounded),
	    cmocka_unit_test(test_ttl_leave_and_no_slot),
	    cmocka_unit_test(test_slots_run_out),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
