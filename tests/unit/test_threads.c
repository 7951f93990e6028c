/* SPDX-License-Identifier: MIT */
/*
 * Every thread the library starts names itself (issue 14): rf-fault/VM,
 * rf-swap/VM, rf-scan/N, rf-policy; and none of them is left once the
 * engine is freed.
 */
#include <dirent.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "dedup_util.h"
#include "rf_test.h"

/* How many of the process's threads are named @name. */
static unsigned int threads_named(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	unsigned int n = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		char path[300], comm[32] = "";
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
		n += strcmp(comm, name) == 0;
	}
	closedir(d);
	return n;
}

static void test_threads_named_and_gone(void **state)
{
	static const char *const names[] = {"rf-fault/vm0", "rf-swap/vm0", "rf-scan/0",
					    "rf-policy"};
	struct rf_dedup_config dc;
	rf_engine *e = rf_test_swap_engine(NULL, false, 0, 0);
	void *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 << 20, &ram);

	(void)state;
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_INTRA_VM;
	dc.scan_threads = 1;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_int_equal(rf_vm_set_swap_target(vm, 2 << 20), 0);
	assert_int_equal(rf_policy_start(e, 200), 0);
	/* Each names itself as it starts. */
	for (unsigned int ms = 0; ms < 2000; ms += 10) {
		bool all = true;

		for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			all = all && threads_named(names[i]) == 1;
		if (all)
			break;
		rf_test_sleep_ms(10);
	}
	for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (threads_named(names[i]) != 1)
			fail_msg("no thread named %s", names[i]);
	rf_engine_free(e);
	for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (threads_named(names[i]) != 0)
			fail_msg("%s outlived rf_engine_free", names[i]);
}

static unsigned int nr_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	unsigned int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Pages merged and unmerged (store pages recycled through RCU callbacks,
 * the content index resized), then the engine freed: the process has the
 * threads it had before, liburcu's workers included. */
static void test_no_thread_outlives_the_engine(void **state)
{
	unsigned int before = nr_threads();
	struct rf_dedup_config dc;
	rf_engine *e = rf_test_engine(NULL);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 32 << 20, (void **)&ram);

	(void)state;
	for (unsigned int i = 0; i < 8192; i++)
		dedup_fill_page(ram + (uint64_t)i * 4096, i % 512);
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_INTRA_VM;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_true(dedup_wait_converged(e, 3, 30000));
	for (unsigned int i = 0; i < 8192; i += 2)
		ram[(uint64_t)i * 4096] ^= 1; /* break half of them */
	assert_true(dedup_wait_converged(e, 3, 30000));
	rf_engine_free(e);
	if (nr_threads() != before)
		fail_msg("%u threads before the engine, %u after rf_engine_free", before,
			 nr_threads());
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_threads_named_and_gone),
	    cmocka_unit_test(test_no_thread_outlives_the_engine),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
