/* SPDX-License-Identifier: MIT */
/* The page-state table: transitions, counters, the lock bit, exclusions, discard. */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "rf_test.h"

#define MiB (1ull << 20)

static rf_pte_t *pte_of(rf_vm *vm, uint64_t gpa)
{
	struct rf_region *r = __rf_vm_find_region(vm, gpa);

	assert_non_null(r);
	return &r->pte[rf_region_index(r, gpa)];
}

static void test_state_names(void **state)
{
	(void)state;
	assert_string_equal(rf_page_state_name(RF_PAGE_PRIVATE), "private");
	assert_string_equal(rf_page_state_name(RF_PAGE_FREE_REPORTED), "free-reported");
	assert_string_equal(rf_page_state_name(RF_PAGE_COMPRESSED), "compressed");
	assert_string_equal(rf_page_state_name(RF_PAGE_NSTATES), "invalid");
}

static void test_transitions_and_counters(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	rf_vm *vm = rf_test_vm(e, "vm0", 16 * MiB, NULL);
	struct rf_vm_stats st = {.size = sizeof(st)};
	rf_pte_t *p;
	uint64_t v;

	(void)state;
	assert_int_equal(rf_vm_stats(vm, &st), 0);
	assert_int_equal(st.state_bytes[RF_PAGE_PRIVATE], 16 * MiB);
	for (int s = 1; s < RF_PAGE_NSTATES; s++)
		assert_int_equal(st.state_bytes[s], 0);

	rf_test_set_state(vm, 0, RF_PAGE_ZERO);
	rf_test_set_state(vm, 4096, RF_PAGE_BALLOONED);
	rf_test_set_state(vm, 8192, RF_PAGE_BALLOONED);
	rf_test_set_state(vm, 8192, RF_PAGE_SWAPPED);
	assert_int_equal(rf_vm_page_state(vm, 0), RF_PAGE_ZERO);
	assert_int_equal(rf_vm_page_state(vm, 4096 + 17), RF_PAGE_BALLOONED);
	assert_int_equal(rf_vm_page_state(vm, 8192), RF_PAGE_SWAPPED);
	assert_int_equal(rf_vm_page_state(vm, 16 * MiB), -EFAULT);
	assert_int_equal(rf_vm_stats(vm, &st), 0);
	assert_int_equal(st.state_bytes[RF_PAGE_PRIVATE], 16 * MiB - 3 * 4096);
	assert_int_equal(st.state_bytes[RF_PAGE_ZERO], 4096);
	assert_int_equal(st.state_bytes[RF_PAGE_BALLOONED], 4096);
	assert_int_equal(st.state_bytes[RF_PAGE_SWAPPED], 4096);

	/* Payload and flags survive a state change; the lock bit never leaks. */
	p = pte_of(vm, 12288);
	v = rf_pte_lock(p);
	assert_false(v & RF_PTE_LOCKED);
	assert_true(atomic_load(p) & RF_PTE_LOCKED);
	assert_false(rf_pte_trylock(p, &v));
	rf_pte_unlock(vm, p, v, rf_pte_with_payload(rf_pte_with_state(v, RF_PAGE_MERGED), 77));
	v = rf_pte_peek(p);
	assert_int_equal(rf_pte_state(v), RF_PAGE_MERGED);
	assert_int_equal(rf_pte_payload(v), 77);
	assert_true(rf_pte_trylock(p, &v));
	rf_pte_unlock(vm, p, v, rf_pte_with_state(v, RF_PAGE_PRIVATE));
	assert_int_equal(rf_pte_payload(rf_pte_peek(p)), 77);
	rf_engine_free(e);
}

struct lock_arg {
	rf_vm *vm;
	rf_pte_t *p;
	int n;
};

/* Threads increment the payload under the lock: no increment may be lost. */
static void *lock_worker(void *arg)
{
	struct lock_arg *a = arg;

	for (int i = 0; i < a->n; i++) {
		uint64_t v = rf_pte_lock(a->p);

		rf_pte_unlock(a->vm, a->p, v, rf_pte_with_payload(v, rf_pte_payload(v) + 1));
	}
	return NULL;
}

static void test_lock_mutual_exclusion(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	rf_vm *vm = rf_test_vm(e, "vm0", MiB, NULL);
	struct lock_arg a = {vm, pte_of(vm, 0), 200000};
	pthread_t t[4];

	(void)state;
	for (int i = 0; i < 4; i++)
		pthread_create(&t[i], NULL, lock_worker, &a);
	for (int i = 0; i < 4; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(rf_pte_payload(rf_pte_peek(a.p)), 4 * 200000);
	rf_engine_free(e);
}

static void test_exclude_range(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, NULL);

	(void)state;
	assert_int_equal(rf_vm_exclude_range(vm, 8192, 3 * 4096, true), 0);
	assert_false(rf_pte_peek(pte_of(vm, 4096)) & RF_PTE_EXCLUDED);
	assert_true(rf_pte_peek(pte_of(vm, 8192)) & RF_PTE_EXCLUDED);
	assert_true(rf_pte_peek(pte_of(vm, 16384)) & RF_PTE_EXCLUDED);
	assert_false(rf_pte_peek(pte_of(vm, 20480)) & RF_PTE_EXCLUDED);
	/* A range running off guest RAM changes nothing at all. */
	assert_int_equal(rf_vm_exclude_range(vm, 4 * MiB - 4096, 8192, true), -EFAULT);
	assert_log_contains(&log, "vm0: exclude_range: gpa 0x400000 is not guest RAM");
	assert_false(rf_pte_peek(pte_of(vm, 4 * MiB - 4096)) & RF_PTE_EXCLUDED);
	assert_int_equal(rf_vm_exclude_range(vm, 0, 0, true), -EINVAL);
	assert_int_equal(rf_vm_exclude_range(vm, 8192, 4096, false), 0);
	assert_false(rf_pte_peek(pte_of(vm, 8192)) & RF_PTE_EXCLUDED);
	rf_engine_free(e);
}

static bool page_resident(rf_engine *e, void *p)
{
	uint64_t ent;

	assert_int_equal(rf_pagemap_read(e, p, 1, &ent), 0);
	return rf_pagemap_resident(e, ent);
}

struct fake_owner {
	int released;
	int fail;
};

static int fake_release(rf_vm *vm, struct rf_region *r, uint64_t idx, uint64_t pte, void *arg)
{
	struct fake_owner *o = arg;

	(void)vm;
	(void)r;
	(void)idx;
	assert_true(atomic_load(&r->pte[idx]) & RF_PTE_LOCKED); /* called under the lock */
	assert_int_equal(rf_pte_state(pte), RF_PAGE_MERGED);
	if (o->fail)
		return -EBUSY;
	o->released++;
	return 0;
}

static void test_discard(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	struct fake_owner owner = {0, 0};
	struct rf_vm_hooks h = {
	    .owns_states = 1u << RF_PAGE_MERGED, .page_release = fake_release, .arg = &owner};
	struct rf_vm_stats st = {.size = sizeof(st)};
	uint64_t skipped;

	(void)state;
	assert_int_equal(rf_vm_add_hooks(vm, &h), 0);
	memset(ram, 0xab, 64 * 4096);
	rf_vm_exclude_range(vm, 10 * 4096, 4096, true);
	rf_test_set_state(vm, 11 * 4096, RF_PAGE_MERGED);

	assert_int_equal(rf_vm_discard_as(vm, 8 * 4096, 8, RF_PAGE_BALLOONED, &skipped), 0);
	assert_int_equal(skipped, 1); /* the excluded page */
	assert_int_equal(owner.released, 1);
	for (int i = 8; i < 16; i++) {
		if (i == 10) {
			assert_int_equal(ram[i * 4096], 0xab); /* excluded: content survived */
			assert_int_equal(rf_vm_page_state(vm, i * 4096), RF_PAGE_PRIVATE);
			continue;
		}
		assert_false(page_resident(e, ram + i * 4096));
		assert_int_equal(rf_vm_page_state(vm, i * 4096), RF_PAGE_BALLOONED);
		assert_int_equal(ram[i * 4096 + 100], 0);
	}
	assert_int_equal(ram[7 * 4096], 0xab);
	assert_int_equal(ram[16 * 4096], 0xab);
	assert_int_equal(rf_vm_stats(vm, &st), 0);
	assert_int_equal(st.state_bytes[RF_PAGE_BALLOONED], 7 * 4096);

	/* An owner that cannot release its page keeps it, content and state. */
	owner.fail = 1;
	rf_test_set_state(vm, 20 * 4096, RF_PAGE_MERGED);
	assert_int_equal(rf_vm_discard_as(vm, 20 * 4096, 2, RF_PAGE_ZERO, &skipped), 0);
	assert_int_equal(skipped, 1);
	assert_int_equal(ram[20 * 4096], 0xab);
	assert_int_equal(rf_vm_page_state(vm, 20 * 4096), RF_PAGE_MERGED);
	assert_int_equal(rf_vm_page_state(vm, 21 * 4096), RF_PAGE_ZERO);

	/* Bad ranges and targets. */
	assert_int_equal(rf_vm_discard_as(vm, 4 * MiB - 4096, 2, RF_PAGE_ZERO, NULL), -EFAULT);
	assert_int_equal(ram[4 * MiB - 4096], 0); /* untouched page, still there */
	assert_int_equal(rf_vm_discard_as(vm, 4096, 1, RF_PAGE_MERGED, NULL), -EINVAL);
	assert_int_equal(rf_vm_discard_as(vm, 4097, 1, RF_PAGE_ZERO, NULL), -EINVAL);
	assert_int_equal(rf_vm_discard_as(vm, 4096, 0, RF_PAGE_ZERO, NULL), -EINVAL);
	assert_int_equal(ram[4096], 0xab);
	rf_engine_free(e);
}

/* More than one run's worth of pages (the discard batches 512 at a time). */
static void test_discard_large(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 8 * MiB, (void **)&ram);
	struct rf_vm_stats st = {.size = sizeof(st)};

	(void)state;
	memset(ram, 1, 8 * MiB);
	assert_int_equal(rf_vm_discard_as(vm, MiB, 1500, RF_PAGE_FREE_REPORTED, NULL), 0);
	assert_int_equal(rf_vm_stats(vm, &st), 0);
	assert_int_equal(st.state_bytes[RF_PAGE_FREE_REPORTED], 1500 * 4096ull);
	assert_int_equal(st.resident_bytes, 8 * MiB - 1500 * 4096ull);
	assert_int_equal(ram[MiB - 1], 1);
	assert_int_equal(ram[MiB + 1500 * 4096], 1);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_state_names),
	    cmocka_unit_test(test_transitions_and_counters),
	    cmocka_unit_test(test_lock_mutual_exclusion),
	    cmocka_unit_test(test_exclude_range),
	    cmocka_unit_test(test_discard),
	    cmocka_unit_test(test_discard_large),
	};

	return cmocka_run_group_tests_name("page_table", tests, NULL, NULL);
}
