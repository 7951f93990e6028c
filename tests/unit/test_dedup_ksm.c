/* SPDX-License-Identifier: MIT */
/*
 * The kernel-KSM backend (RF_DEDUP_KSM): the same calls make the kernel's
 * KSM merge guest RAM; the stats come from sysfs and the saving shows in
 * the process's Pss. After stop, KSM is off (run=0), nothing is left
 * shared, and the settings the backend changed are back.
 */
#include <stdbool.h>
#include <inttypes.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ramfold/ramfold.h>

#include "dedup_util.h"
#include "rf_test.h"

#define PG 4096u

static long ksm_read(const char *name)
{
	char path[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/kernel/mm/ksm/%s", name);
	f = fopen(path, "re");
	if (!f)
		return -1;
	if (fscanf(f, "%ld", &v) != 1)
		v = -1;
	fclose(f);
	return v;
}

/* An engine on a host with kernel KSM, or the test is skipped. */
static rf_engine *ksm_engine(void)
{
	rf_engine *e = rf_test_engine(NULL);
	struct rf_features f = {.size = sizeof(f)};

	rf_engine_features(e, &f);
	if (!f.ksm || ksm_read("run") < 0) {
		rf_engine_free(e);
		rf_require(false, "kernel KSM not available at /sys/kernel/mm/ksm");
	}
	return e;
}

static void test_ksm_backend(void **state)
{
	const unsigned int copies = 4, tpl = 512;
	struct rf_dedup_config dc;
	struct rf_dedup_stats st = {.size = sizeof(st)};
	struct dedup_mem before, after;
	long pts0, sleep0;
	uint64_t ideal;
	uint8_t *ram;
	rf_engine *e;
	rf_vm *vm;
	int t;

	(void)state;
	e = ksm_engine();
	pts0 = ksm_read("pages_to_scan");
	sleep0 = ksm_read("sleep_millisecs");
	vm = rf_test_vm(e, "ksm0", 16u << 20, (void **)&ram);
	for (unsigned int c = 0; c < copies; c++)
		for (unsigned int i = 0; i < tpl; i++)
			dedup_fill_page(ram + (size_t)(c * tpl + i) * PG, 900 + i);
	ideal = (uint64_t)(copies - 1) * tpl * PG;
	assert_int_equal(dedup_mem_read(&before), 0);

	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_KSM;
	dc.ksm_pages_to_scan = 10000;
	dc.ksm_sleep_ms = 0;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_int_equal(ksm_read("run"), 1);
	for (t = 0; t < 30000; t += 100) {
		assert_int_equal(rf_dedup_stats(e, &st), 0);
		if (st.pages_sharing >= (uint64_t)(copies - 1) * tpl * 9 / 10)
			break;
		usleep(100000);
	}
	/* Pss follows the merges; on a loaded machine (or under ASan, whose
	 * allocator grows meanwhile) give it time, up to 30 s more. */
	for (int w = 0; w < 300; w++) {
		assert_int_equal(dedup_mem_read(&after), 0);
		if (before.pss > after.pss && before.pss - after.pss >= ideal * 8 / 10)
			break;
		usleep(100000);
	}
	printf("  ksm: %llu sharing, %llu shared (host-wide) after %d ms; Pss %llu -> %llu KiB "
	       "(ideal saving %llu KiB); ksmd %.2f s CPU\n",
	       (unsigned long long)st.pages_sharing, (unsigned long long)st.store_pages, t,
	       (unsigned long long)before.pss >> 10, (unsigned long long)after.pss >> 10,
	       (unsigned long long)ideal >> 10, (double)st.cpu_ns / 1e9);
	assert_true(st.pages_sharing >= (uint64_t)(copies - 1) * tpl * 9 / 10);
	assert_true(before.pss > after.pss && before.pss - after.pss >= ideal * 8 / 10);
	for (unsigned int c = 0; c < copies; c++) {
		static uint8_t want[PG];

		for (unsigned int i = 0; i < tpl; i += 37) {
			dedup_fill_page(want, 900 + i);
			assert_memory_equal(ram + (size_t)(c * tpl + i) * PG, want, PG);
		}
	}
	rf_dedup_stop(e);
	assert_int_equal(ksm_read("run"), 0);
	assert_int_equal(ksm_read("pages_shared"), 0);
	assert_int_equal(ksm_read("pages_to_scan"), pts0);
	assert_int_equal(ksm_read("sleep_millisecs"), sleep0);
	rf_engine_free(e);
}

/* Does the VMA holding @addr carry VM_MERGEABLE ("mg" in smaps VmFlags)? */
static bool mergeable(const void *addr)
{
	uintptr_t a = (uintptr_t)addr, lo = 0, hi = 0;
	char line[512];
	bool in = false, mg = false;
	FILE *f = fopen("/proc/self/smaps", "re");

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2 && strchr(line, ' ')) {
			in = a >= lo && a < hi;
			continue;
		}
		if (in && strncmp(line, "VmFlags:", 8) == 0) {
			mg = strstr(line, " mg") != NULL;
			break;
		}
	}
	fclose(f);
	return mg;
}

/* RAM mapped into a VM after it was attached to the kernel-KSM backend is
 * marked mergeable too (before, only the regions there at rf_dedup_add_vm
 * were, and later RAM was never merged). */
static void test_ksm_marks_later_ram(void **state)
{
	struct rf_dedup_config dc;
	uint8_t *ram, *more;
	rf_engine *e;
	rf_vm *vm;

	(void)state;
	e = ksm_engine();
	vm = rf_test_vm_unmapped(e, "ksm1", 12u << 20);
	assert_int_equal(rf_vm_map_ram(vm, 0, 8u << 20, (void **)&ram), 0);
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_KSM;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_true(mergeable(ram));
	assert_int_equal(rf_vm_map_ram(vm, 64u << 20, 4u << 20, (void **)&more), 0);
	assert_true(mergeable(more));
	rf_engine_free(e);
	assert_int_equal(ksm_read("run"), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_ksm_backend),
	    cmocka_unit_test(test_ksm_marks_later_ram),
	};

	return cmocka_run_group_tests_name("dedup_ksm", tests, NULL, NULL);
}
