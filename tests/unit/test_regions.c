/* SPDX-License-Identifier: MIT */
/* VMs, guest-RAM regions and gpa<->hva translation: the edges and every bad input. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rf_test.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)

static void test_vm_new_bad_input(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	struct rf_vm_config vc;
	rf_vm *vm = (rf_vm *)0x1, *vm2;

	(void)state;
	rf_vm_config_init(&vc);
	vc.ram_bytes = 64 * MiB;
	assert_int_equal(rf_vm_new(NULL, "a", &vc, &vm), -EINVAL);
	assert_int_equal(rf_vm_new(e, "a", NULL, &vm), -EINVAL);
	assert_int_equal(rf_vm_new(e, "a", &vc, NULL), -EINVAL);
	assert_int_equal(rf_vm_new(e, NULL, &vc, &vm), -EINVAL);
	assert_int_equal(rf_vm_new(e, "", &vc, &vm), -EINVAL);
	assert_int_equal(rf_vm_new(e, "has space", &vc, &vm), -EINVAL);
	assert_int_equal(rf_vm_new(e, "a-name-that-is-far-too-long-for-ramfold", &vc, &vm),
			 -EINVAL);
	assert_log_contains(&log, "printable characters");
	vc.ram_bytes = 0;
	assert_int_equal(rf_vm_new(e, "a", &vc, &vm), -EINVAL);
	vc.ram_bytes = 4096 + 1;
	assert_int_equal(rf_vm_new(e, "a", &vc, &vm), -EINVAL);
	assert_log_contains(&log, "a: vm_new: promised RAM 4097 bytes");
	vc.ram_bytes = 64 * MiB;
	vc.numa_node = 4096;
	assert_int_equal(rf_vm_new(e, "a", &vc, &vm), -EINVAL);
	assert_log_contains(&log, "NUMA node 4096 not configured");
	vc.numa_node = -1;
	vc.domain = "bad domain";
	assert_int_equal(rf_vm_new(e, "a", &vc, &vm), -EINVAL);
	vc.domain = "tenant1";
	assert_int_equal(rf_vm_new(e, "a", &vc, &vm), 0);
	assert_int_equal(rf_vm_new(e, "a", &vc, &vm2), -EEXIST);
	assert_log_contains(&log, "a: vm_new: a VM of that name exists");
	assert_string_equal(rf_vm_name(vm), "a");
	assert_ptr_equal(rf_vm_engine(vm), e);
	rf_vm_free(vm);
	rf_vm_free(NULL);
	rf_engine_free(e);
}

static void test_map_bad_input(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	rf_vm *vm = rf_test_vm_unmapped(e, "vm0", 64 * MiB);
	void *hva = (void *)0x1;

	(void)state;
	assert_int_equal(rf_vm_map_ram(NULL, 0, MiB, &hva), -EINVAL);
	assert_int_equal(rf_vm_map_ram(vm, 0, MiB, NULL), -EINVAL);
	assert_int_equal(rf_vm_map_ram(vm, 0, 0, &hva), -EINVAL);
	assert_null(hva);
	assert_int_equal(rf_vm_map_ram(vm, 0x1001, MiB, &hva), -EINVAL);
	assert_log_contains(&log, "vm0: map_ram: gpa 0x1001");
	assert_log_contains(&log, "4 KiB aligned");
	assert_int_equal(rf_vm_map_ram(vm, 0, MiB + 1, &hva), -EINVAL);
	assert_int_equal(rf_vm_map_ram(vm, UINT64_MAX - 4095, 8192, &hva), -EINVAL);
	assert_log_contains(&log, "wraps around");
	/* Past the promised RAM, in one go or in pieces. */
	assert_int_equal(rf_vm_map_ram(vm, 0, 128 * MiB, &hva), -E2BIG);
	assert_log_contains(&log, "exceed the promised RAM");
	assert_int_equal(rf_vm_map_ram(vm, 0, 48 * MiB, &hva), 0);
	assert_int_equal(rf_vm_map_ram(vm, 4 * GiB, 32 * MiB, &hva), -E2BIG);
	assert_int_equal(rf_vm_nr_regions(vm), 1);
	rf_engine_free(e);
}

static void test_overlap(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	rf_vm *vm = rf_test_vm_unmapped(e, "vm0", 256 * MiB);
	void *hva;
	/* Existing: [16M, 32M). Each of these overlaps it. */
	static const uint64_t bad[][2] = {
	    {16 * MiB, 16 * MiB}, /* same */
	    {8 * MiB, 12 * MiB},  /* tail overlaps front */
	    {24 * MiB, 16 * MiB}, /* head overlaps back */
	    {0, 64 * MiB},	  /* contains */
	    {20 * MiB, 4096},	  /* inside */
	    {32 * MiB - 4096, 8192},
	};

	(void)state;
	assert_int_equal(rf_vm_map_ram(vm, 16 * MiB, 16 * MiB, &hva), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(rf_vm_map_ram(vm, bad[i][0], bad[i][1], &hva), -EEXIST);
		assert_log_contains(&log, "overlaps a mapped region");
	}
	/* Touching but not overlapping, on both sides, is fine. */
	assert_int_equal(rf_vm_map_ram(vm, 8 * MiB, 8 * MiB, &hva), 0);
	assert_int_equal(rf_vm_map_ram(vm, 32 * MiB, 8 * MiB, &hva), 0);
	assert_int_equal(rf_vm_nr_regions(vm), 3);
	rf_engine_free(e);
}

static void test_translation_edges(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	rf_vm *vm = rf_test_vm_unmapped(e, "vm0", 64 * MiB);
	uint8_t *lo, *hi;
	void *p;
	uint64_t gpa;

	(void)state;
	assert_int_equal(rf_vm_map_ram(vm, 0, 32 * MiB, (void **)&lo), 0);
	assert_int_equal(rf_vm_map_ram(vm, 4 * GiB, 32 * MiB, (void **)&hi), 0);

	assert_int_equal(rf_vm_gpa_to_hva(vm, 0, 1, &p), 0);
	assert_ptr_equal(p, lo);
	assert_int_equal(rf_vm_gpa_to_hva(vm, 32 * MiB - 1, 1, &p), 0);
	assert_ptr_equal(p, lo + 32 * MiB - 1);
	assert_int_equal(rf_vm_gpa_to_hva(vm, 32 * MiB - 4, 4, &p), 0);
	/* One byte past the end, a range crossing it, the hole, past the top. */
	assert_int_equal(rf_vm_gpa_to_hva(vm, 32 * MiB, 1, &p), -EFAULT);
	assert_int_equal(rf_vm_gpa_to_hva(vm, 32 * MiB - 4, 5, &p), -EFAULT);
	assert_int_equal(rf_vm_gpa_to_hva(vm, 2 * GiB, 1, &p), -EFAULT);
	assert_int_equal(rf_vm_gpa_to_hva(vm, 4 * GiB - 1, 2, &p), -EFAULT);
	assert_int_equal(rf_vm_gpa_to_hva(vm, 4 * GiB + 32 * MiB, 1, &p), -EFAULT);
	/* Lengths that would overflow 64 bits. */
	assert_int_equal(rf_vm_gpa_to_hva(vm, 4 * GiB, UINT64_MAX, &p), -EFAULT);
	assert_int_equal(rf_vm_gpa_to_hva(vm, UINT64_MAX, 2, &p), -EFAULT);
	assert_int_equal(rf_vm_gpa_to_hva(vm, 0, 32 * MiB + 1, &p), -EFAULT);
	/* Length 0 is checked as one byte. */
	assert_int_equal(rf_vm_gpa_to_hva(vm, 4 * GiB + 5, 0, &p), 0);
	assert_ptr_equal(p, hi + 5);
	assert_int_equal(rf_vm_gpa_to_hva(vm, 32 * MiB, 0, &p), -EFAULT);

	assert_int_equal(rf_vm_hva_to_gpa(vm, hi + 4097, &gpa), 0);
	assert_int_equal(gpa, 4 * GiB + 4097);
	/* Just past the low region: not guest RAM, unless the high region
	 * happens to be mapped right there. */
	if (lo + 32 * MiB == hi) {
		assert_int_equal(rf_vm_hva_to_gpa(vm, lo + 32 * MiB, &gpa), 0);
		assert_int_equal(gpa, 4 * GiB);
	} else {
		assert_int_equal(rf_vm_hva_to_gpa(vm, lo + 32 * MiB, &gpa), -EFAULT);
	}
	assert_int_equal(rf_vm_hva_to_gpa(vm, &gpa, &gpa), -EFAULT);
	rf_engine_free(e);
}

/* Many regions in random order: lookups agree with a linear reference. */
static void test_translation_many_regions(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	rf_vm *vm = rf_test_vm_unmapped(e, "vm0", 32 * 2 * MiB);
	uint64_t gpas[32];
	void *hvas[32];

	(void)state;
	for (int i = 0; i < 32; i++)
		gpas[i] = (uint64_t)((i * 7) % 32) * 16 * MiB; /* every 16 MiB, shuffled */
	for (int i = 0; i < 32; i++)
		assert_int_equal(rf_vm_map_ram(vm, gpas[i], 2 * MiB, &hvas[i]), 0);
	{
		void *none;

		assert_int_equal(rf_vm_map_ram(vm, 600 * MiB, 4096, &none), -E2BIG);
		assert_null(none);
	}
	srand(7);
	for (int n = 0; n < 20000; n++) {
		uint64_t gpa = (uint64_t)rand() % (32 * 16 * MiB);
		int want = -1;
		void *p;

		for (int i = 0; i < 32; i++)
			if (gpa >= gpas[i] && gpa < gpas[i] + 2 * MiB)
				want = i;
		if (want < 0) {
			assert_int_equal(rf_vm_gpa_to_hva(vm, gpa, 1, &p), -EFAULT);
		} else {
			uint64_t back;

			assert_int_equal(rf_vm_gpa_to_hva(vm, gpa, 1, &p), 0);
			assert_ptr_equal(p, (uint8_t *)hvas[want] + (gpa - gpas[want]));
			assert_int_equal(rf_vm_hva_to_gpa(vm, p, &back), 0);
			assert_int_equal(back, gpa);
		}
	}
	for (unsigned int i = 1; i < rf_vm_nr_regions(vm); i++) {
		uint64_t a, b;

		assert_int_equal(rf_vm_region(vm, i - 1, &a, NULL, NULL), 0);
		assert_int_equal(rf_vm_region(vm, i, &b, NULL, NULL), 0);
		assert_true(a < b);
	}
	assert_int_equal(rf_vm_region(vm, 32, NULL, NULL, NULL), -ENOENT);
	/* Unmapping every other region keeps both indexes right. */
	for (int i = 0; i < 32; i += 2)
		assert_int_equal(rf_vm_unmap_ram(vm, gpas[i]), 0);
	for (int i = 0; i < 32; i++) {
		uint64_t back;
		void *p;

		assert_int_equal(rf_vm_hva_to_gpa(vm, (uint8_t *)hvas[i] + 4096, &back),
				 i % 2 ? 0 : -EFAULT);
		assert_int_equal(rf_vm_gpa_to_hva(vm, gpas[i] + 4096, 1, &p), i % 2 ? 0 : -EFAULT);
		if (i % 2)
			assert_int_equal(back, gpas[i] + 4096);
	}
	rf_engine_free(e);
}

static void test_too_many_regions(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	rf_vm *vm = rf_test_vm_unmapped(e, "vm0", GiB);
	void *hva;
	int i;

	(void)state;
	for (i = 0; i < 32; i++)
		assert_int_equal(rf_vm_map_ram(vm, (uint64_t)i * MiB, 4096, &hva), 0);
	assert_int_equal(rf_vm_map_ram(vm, 100 * MiB, 4096, &hva), -ENOSPC);
	assert_log_contains(&log, "regions already mapped");
	rf_engine_free(e);
}

static bool is_mapped(void *p)
{
	unsigned char v;

	return mincore((void *)((uintptr_t)p & ~4095ul), 4096, &v) == 0;
}

static void test_unmap_and_free(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	rf_vm *vm = rf_test_vm_unmapped(e, "vm0", 64 * MiB);
	struct rf_vm_stats st = {.size = sizeof(st)};
	uint8_t *a, *b;

	(void)state;
	assert_int_equal(rf_vm_map_ram(vm, 0, 16 * MiB, (void **)&a), 0);
	assert_int_equal(rf_vm_map_ram(vm, 32 * MiB, 16 * MiB, (void **)&b), 0);
	memset(a, 0x5a, 8192);
	assert_int_equal(rf_vm_unmap_ram(vm, 4096), -ENOENT);
	assert_log_contains(&log, "no region starts at gpa 0x1000");
	assert_int_equal(rf_vm_unmap_ram(vm, 0), 0);
	assert_false(is_mapped(a));
	assert_int_equal(rf_vm_stats(vm, &st), 0);
	assert_int_equal(st.mapped_bytes, 16 * MiB);
	assert_int_equal(st.state_bytes[RF_PAGE_PRIVATE], 16 * MiB);
	/* The promised RAM freed by the unmap can be mapped again. */
	assert_int_equal(rf_vm_map_ram(vm, 64 * MiB, 48 * MiB, (void **)&a), 0);
	assert_true(is_mapped(b));
	/* Freeing a VM with mapped RAM unmaps it. */
	rf_vm_free(vm);
	assert_false(is_mapped(a));
	assert_false(is_mapped(b));
	rf_engine_free(e);
}

/* "nh" (no huge pages) in the region's VmFlags unless RF_VM_THP asked for "hg". */
static bool vma_has_flag(void *addr, const char *flag)
{
	char line[512];
	bool in = false, found = false;
	FILE *f = fopen("/proc/self/smaps", "re");
	unsigned long lo, hi, a = (unsigned long)(uintptr_t)addr;

	while (f && fgets(line, sizeof(line), f)) {
		if (isxdigit((unsigned char)line[0]) && sscanf(line, "%lx-%lx ", &lo, &hi) == 2)
			in = a >= lo && a < hi;
		if (in && strncmp(line, "VmFlags:", 8) == 0 && strstr(line, flag))
			found = true;
	}
	if (f)
		fclose(f);
	return found;
}

static void test_thp_default_off(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	struct rf_features f = {.size = sizeof(f)};
	struct rf_vm_config vc;
	rf_vm *vm;
	void *hva;

	(void)state;
	rf_engine_features(e, &f);
	rf_require(f.thp, "transparent huge pages not available");
	vm = rf_test_vm_unmapped(e, "vm0", 64 * MiB);
	assert_int_equal(rf_vm_map_ram(vm, 0, 64 * MiB, &hva), 0);
	assert_true(vma_has_flag(hva, " nh"));
	rf_vm_config_init(&vc);
	vc.ram_bytes = 64 * MiB;
	vc.flags = RF_VM_THP;
	assert_int_equal(rf_vm_new(e, "vm1", &vc, &vm), 0);
	assert_int_equal(rf_vm_map_ram(vm, 0, 64 * MiB, &hva), 0);
	assert_true(vma_has_flag(hva, " hg"));
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vm_new_bad_input),
	    cmocka_unit_test(test_map_bad_input),
	    cmocka_unit_test(test_overlap),
	    cmocka_unit_test(test_translation_edges),
	    cmocka_unit_test(test_translation_many_regions),
	    cmocka_unit_test(test_too_many_regions),
	    cmocka_unit_test(test_unmap_and_free),
	    cmocka_unit_test(test_thp_default_off),
	};

	return cmocka_run_group_tests_name("regions", tests, NULL, NULL);
}
