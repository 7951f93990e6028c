/* SPDX-License-Identifier: MIT */
/*
 * The audit and the measured stats: the table against the kernel's view, a
 * deliberately wrong table caught, and rf_vm_stats()' resident bytes against
 * the kernel's own smaps_rollup.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "rf_test.h"

#define MiB (1ull << 20)

static void test_clean_audit(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 8 * MiB, (void **)&ram);
	struct rf_audit_report rep = {.size = sizeof(rep)};

	(void)state;
	memset(ram, 3, MiB);
	assert_int_equal(rf_vm_discard_as(vm, 2 * MiB, 16, RF_PAGE_ZERO, NULL), 0);
	assert_int_equal(rf_vm_audit(vm, &rep, 0), 0);
	assert_int_equal(rep.pages_checked, 8 * MiB / 4096);
	assert_int_equal(rep.mismatches, 0);
	assert_int_equal(rep.drift, 0);
	assert_int_equal(rep.first_bad_gpa, UINT64_MAX);
	assert_int_equal(rf_vm_audit(vm, NULL, 0), -EINVAL);
	rf_engine_free(e);
}

/* The table claims a present page is swapped out, and an anonymous one merged. */
static void test_wrong_table_caught(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 8 * MiB, (void **)&ram);
	struct rf_audit_report rep = {.size = sizeof(rep)};

	(void)state;
	memset(ram, 3, MiB);
	rf_test_set_state(vm, 5 * 4096, RF_PAGE_SWAPPED);
	rf_test_set_state(vm, 9 * 4096, RF_PAGE_MERGED);
	assert_int_equal(rf_vm_audit(vm, &rep, 0), -EIO);
	assert_int_equal(rep.mismatches, 2);
	assert_int_equal(rep.discarded_present, 1);
	assert_int_equal(rep.merged_not_file, 1);
	assert_int_equal(rep.first_bad_gpa, 5 * 4096);
	assert_log_contains(&log, "vm0: audit: gpa 0x9000: merged, but the mapping is anonymous");
	/* Put right, the audit is clean again. */
	rf_test_set_state(vm, 5 * 4096, RF_PAGE_PRIVATE);
	rf_test_set_state(vm, 9 * 4096, RF_PAGE_PRIVATE);
	assert_int_equal(rf_vm_audit(vm, &rep, 0), 0);
	rf_engine_free(e);
}

/* A store page mapped over guest RAM while the table says private. */
static void test_store_page_behind_table(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 8 * MiB, (void **)&ram);
	struct rf_audit_report rep = {.size = sizeof(rep)};
	int fd = memfd_create("store", MFD_CLOEXEC);
	volatile uint8_t sink;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4096), 0);
	assert_int_equal(pwrite(fd, "x", 1, 0), 1);
	assert_true(mmap(ram + 3 * 4096, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd,
			 0) != MAP_FAILED);
	sink = ram[3 * 4096];
	(void)sink;
	assert_int_equal(rf_vm_audit(vm, &rep, 0), -EIO);
	assert_int_equal(rep.private_file, 1);
	assert_int_equal(rep.first_bad_gpa, 3 * 4096);
	/* Said merged, it is consistent; a guest write is then drift (CoW). */
	rf_test_set_state(vm, 3 * 4096, RF_PAGE_MERGED);
	assert_int_equal(rf_vm_audit(vm, &rep, 0), 0);
	ram[3 * 4096 + 1] = 'y';
	assert_int_equal(rf_vm_audit(vm, &rep, 0), 0);
	assert_int_equal(rep.drift, 1);
	close(fd);
	rf_engine_free(e);
}

/* A guest writes a page after the library discarded it: drift, fixed on request. */
static void test_drift_and_fix(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 8 * MiB, (void **)&ram);
	struct rf_audit_report rep = {.size = sizeof(rep)};

	(void)state;
	memset(ram, 3, 16 * 4096);
	assert_int_equal(rf_vm_discard_as(vm, 0, 16, RF_PAGE_ZERO, NULL), 0);
	assert_int_equal(rf_vm_discard_as(vm, MiB, 4, RF_PAGE_FREE_REPORTED, NULL), 0);
	ram[2 * 4096] = 1;
	ram[MiB] = 1;
	assert_int_equal(rf_vm_audit(vm, &rep, 0), 0);
	assert_int_equal(rep.drift, 2);
	assert_int_equal(rf_vm_page_state(vm, 2 * 4096), RF_PAGE_ZERO);
	assert_int_equal(rf_vm_audit(vm, &rep, RF_AUDIT_FIX), 0);
	assert_int_equal(rf_vm_page_state(vm, 2 * 4096), RF_PAGE_PRIVATE);
	assert_int_equal(rf_vm_page_state(vm, MiB), RF_PAGE_PRIVATE);
	assert_int_equal(rf_vm_page_state(vm, 3 * 4096), RF_PAGE_ZERO);
	assert_int_equal(rf_vm_audit(vm, &rep, 0), 0);
	assert_int_equal(rep.drift, 0);
	rf_engine_free(e);
}

/*
 * The VM's resident bytes, measured through pagemap, match the kernel's RSS
 * accounting: touch a known number of pages and compare with smaps_rollup.
 * Pages only read map the shared zero page, which neither counts.
 */
static void test_resident_matches_smaps_rollup(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	const uint64_t touched = 5000, read_only = 3000;
	struct rf_vm_stats st = {.size = sizeof(st)};
	volatile uint8_t sink = 0;
	uint64_t rss0, rss1, anon0, anon1;
	uint8_t *ram;
	rf_vm *vm;

	(void)state;
	vm = rf_test_vm(e, "vm0", 64 * MiB, (void **)&ram);
	assert_int_equal(rf_vm_stats(vm, &st), 0);
	assert_int_equal(st.resident_bytes, 0);
	rss0 = rf_test_smaps_rollup("Rss");
	anon0 = rf_test_smaps_rollup("Anonymous");
	for (uint64_t i = 0; i < touched; i++)
		ram[i * 4096] = (uint8_t)i | 1;
	for (uint64_t i = 0; i < read_only; i++)
		sink += ram[(touched + i) * 4096];
	rss1 = rf_test_smaps_rollup("Rss");
	anon1 = rf_test_smaps_rollup("Anonymous");
	assert_int_equal(rf_vm_stats(vm, &st), 0);
	assert_int_equal(st.resident_bytes, touched * 4096);
	assert_int_equal(st.resident_anon_bytes, touched * 4096);
	assert_int_equal(st.resident_file_bytes, 0);
	assert_int_equal(st.mapped_bytes, 64 * MiB);
	assert_int_equal(st.promised_bytes, 64 * MiB);
	assert_true(st.metadata_bytes > 0);
	/* The process's other memory moves a little (stack, libc): allow 1%. */
	if (rss1 - rss0 < touched * 4096 * 99 / 100 || rss1 - rss0 > touched * 4096 * 101 / 100)
		fail_msg("smaps_rollup Rss grew by %llu, stats say %llu",
			 (unsigned long long)(rss1 - rss0), (unsigned long long)st.resident_bytes);
	if (anon1 - anon0 < touched * 4096 * 99 / 100)
		fail_msg("smaps_rollup Anonymous grew by %llu only",
			 (unsigned long long)(anon1 - anon0));
	/* Discarding half of it drops both by the same amount. */
	assert_int_equal(rf_vm_discard_as(vm, 0, touched / 2, RF_PAGE_ZERO, NULL), 0);
	assert_int_equal(rf_vm_stats(vm, &st), 0);
	assert_int_equal(st.resident_bytes, (touched - touched / 2) * 4096);
	{
		/* The allocator (ASan's quarantine, say) may grow meanwhile: 5%. */
		uint64_t drop = rss1 - rf_test_smaps_rollup("Rss");

		if (drop < touched / 2 * 4096 * 95 / 100)
			fail_msg("smaps_rollup Rss dropped by %llu after discarding %llu bytes",
				 (unsigned long long)drop,
				 (unsigned long long)(touched / 2 * 4096));
	}
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_clean_audit),
	    cmocka_unit_test(test_wrong_table_caught),
	    cmocka_unit_test(test_store_page_behind_table),
	    cmocka_unit_test(test_drift_and_fix),
	    cmocka_unit_test(test_resident_matches_smaps_rollup),
	};

	return cmocka_run_group_tests_name("audit", tests, NULL, NULL);
}
