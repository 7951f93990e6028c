/* SPDX-License-Identifier: MIT */
/*
 * rf_vm_discard, the embedder's discard (issue 14): whatever state a page
 * is in, afterwards it reads as zeros and costs nothing; ballooned and
 * excluded pages are left alone; a range that is not all guest RAM is
 * refused whole.
 */
#include <errno.h>
#include <string.h>

#include "dedup_util.h"
#include "internal.h"
#include "rf_test.h"
#include "swap_pager.h"

#define PG  4096ull
#define NPG 64

/* Pages 0-7 private, 8-15 merged (two templates, 4 copies each), 16-23
 * swapped out, 24-31 zero, 32 ballooned, 33 excluded; one discard over
 * 0-35 leaves every one of 0-31 and 34-35 zero and costing nothing. */
static void test_discard_every_state(void **state)
{
	struct rf_test_log log = {0};
	rf_engine *e = rf_test_swap_engine(&log, false, 0, 0);
	struct rf_dedup_stats ds = {.size = sizeof(ds)};
	struct rf_swap_stats ss = {.size = sizeof(ss)};
	uint64_t skipped = 0;
	uint8_t *ram, keep[PG];
	rf_vm *vm = rf_test_vm(e, "vm0", NPG * PG, (void **)&ram);

	(void)state;
	rf_test_every_state(e, vm, ram, NPG);
	memcpy(keep, ram + 33 * PG, PG);

	assert_int_equal(rf_vm_discard(vm, 0, 36 * PG, &skipped), 0);
	assert_int_equal(skipped, 2);
	for (unsigned int i = 0; i < 36; i++) {
		if (i == 32 || i == 33)
			continue;
		assert_int_not_equal(rf_vm_page_state(vm, i * PG), RF_PAGE_MERGED);
		assert_int_not_equal(rf_vm_page_state(vm, i * PG), RF_PAGE_SWAPPED);
		assert_int_not_equal(rf_vm_page_state(vm, i * PG), RF_PAGE_COMPRESSED);
		if (!rf_test_all_zero(ram + i * PG, PG))
			fail_msg("page %u does not read as zeros after the discard", i);
	}
	assert_int_equal(rf_vm_page_state(vm, 32 * PG), RF_PAGE_BALLOONED);
	assert_memory_equal(ram + 33 * PG, keep, PG);
	/* costs nothing: no share of a store page, no swap slot */
	assert_int_equal(rf_dedup_stats(e, &ds), 0);
	assert_int_equal(ds.pages_sharing, 0);
	assert_int_equal(rf_vm_swap_stats(vm, &ss), 0);
	assert_int_equal(ss.file_bytes + ss.tier_bytes, 0);
	/* the rest is untouched */
	for (unsigned int i = 36; i < NPG; i++) {
		uint8_t want[PG];

		dedup_fill_page(want, rf_test_every_state_seed(i));
		assert_memory_equal(ram + i * PG, want, PG);
	}
	rf_engine_free(e);
}

static void test_discard_bad_ranges(void **state)
{
	struct rf_test_log log = {0};
	rf_engine *e = rf_test_engine(&log);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", NPG * PG, (void **)&ram);

	(void)state;
	memset(ram, 0x5a, NPG * PG);
	assert_int_equal(rf_vm_discard(vm, 100, PG, NULL), -EINVAL);
	assert_int_equal(rf_vm_discard(vm, 0, 100, NULL), -EINVAL);
	assert_int_equal(rf_vm_discard(vm, 0, 0, NULL), -EINVAL);
	assert_int_equal(rf_vm_discard(vm, UINT64_MAX & ~(PG - 1), 2 * PG, NULL), -EINVAL);
	assert_int_equal(rf_vm_discard(NULL, 0, PG, NULL), -EINVAL);
	/* Ends past guest RAM: refused whole, nothing discarded. */
	assert_int_equal(rf_vm_discard(vm, (NPG - 2) * PG, 4 * PG, NULL), -EFAULT);
	assert_log_contains(&log, "is not guest RAM, nothing discarded");
	assert_int_equal(ram[(NPG - 1) * PG], 0x5a);
	assert_int_equal(ram[(NPG - 2) * PG], 0x5a);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_discard_every_state),
	    cmocka_unit_test(test_discard_bad_ranges),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
