/* SPDX-License-Identifier: MIT */
/* Engine configuration, feature detection and its failure paths. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <urcu/urcu-memb.h>

#include "rf_test.h"

static void capture(void *arg, enum rf_log_level level, const char *msg)
{
	(void)level;
	snprintf(((struct rf_test_log *)arg)->last, sizeof(((struct rf_test_log *)arg)->last), "%s",
		 msg);
}

static int new_with(struct rf_engine_config *cfg, struct rf_test_log *log, rf_engine **e)
{
	memset(log, 0, sizeof(*log));
	cfg->log = capture;
	cfg->log_arg = log;
	return rf_engine_new(cfg, e);
}

static void test_defaults(void **state)
{
	struct rf_engine_config cfg;
	rf_engine *e;

	(void)state;
	rf_engine_config_init(&cfg);
	assert_int_equal(cfg.scan_threads, 0); /* one per allowed CPU (test_dedup) */
	assert_true(cfg.host_capacity_bytes > 0);
	assert_true(cfg.host_capacity_bytes <= rf_test_meminfo("MemTotal"));
	assert_int_equal(rf_engine_new(&cfg, &e), 0);
	assert_int_equal(rf_engine_capacity(e), cfg.host_capacity_bytes);
	assert_string_equal(rf_version(), RF_VERSION_STRING);
	rf_engine_free(e);
	rf_engine_free(NULL);
}

static void test_null_args(void **state)
{
	struct rf_engine_config cfg;
	rf_engine *e = (rf_engine *)0x1;

	(void)state;
	rf_engine_config_init(&cfg);
	assert_int_equal(rf_engine_new(NULL, &e), -EINVAL);
	assert_int_equal(rf_engine_new(&cfg, NULL), -EINVAL);
}

static void test_bad_config(void **state)
{
	struct rf_engine_config cfg;
	struct rf_test_log log;
	rf_engine *e = (rf_engine *)0x1;

	(void)state;
	rf_engine_config_init(&cfg);
	cfg.host_capacity_bytes = 0;
	assert_int_equal(new_with(&cfg, &log, &e), -EINVAL);
	assert_null(e);
	assert_log_contains(&log, "host capacity is 0");

	rf_engine_config_init(&cfg);
	cfg.scan_threads = 65;
	assert_int_equal(new_with(&cfg, &log, &e), -EINVAL);
	assert_log_contains(&log, "65 scanner threads");
}

static void test_missing_kvm(void **state)
{
	struct rf_engine_config cfg;
	struct rf_test_log log;
	rf_engine *e = (rf_engine *)0x1;

	(void)state;
	rf_engine_config_init(&cfg);
	cfg.flags = RF_ENGINE_REQUIRE_KVM;
	cfg.dev_kvm_path = "/nonexistent/kvm";
	assert_int_equal(new_with(&cfg, &log, &e), -ENODEV);
	assert_null(e);
	assert_log_contains(&log, "feature missing: KVM");
	assert_log_contains(&log, "/nonexistent/kvm");
}

static void test_missing_ksm(void **state)
{
	struct rf_engine_config cfg;
	struct rf_test_log log;
	rf_engine *e = (rf_engine *)0x1;

	(void)state;
	rf_engine_config_init(&cfg);
	cfg.flags = RF_ENGINE_REQUIRE_KSM;
	cfg.ksm_sysfs_dir = "/nonexistent/ksm";
	assert_int_equal(new_with(&cfg, &log, &e), -ENODEV);
	assert_log_contains(&log, "feature missing: kernel KSM");
}

/* Hiding features by name: unknown names and bits are refused, known ones
 * read as missing afterwards whatever the kernel has. */
static void test_hide_features(void **state)
{
	struct rf_engine_config cfg;
	struct rf_features f = {.size = sizeof(f)};
	struct rf_test_log log;
	rf_engine *e = (rf_engine *)0x1;

	(void)state;
	rf_engine_config_init(&cfg);
	assert_int_equal(rf_engine_config_hide(&cfg, "uffd-move,soft-dirty"), -EINVAL);
	assert_int_equal(rf_engine_config_hide(&cfg, "uffd-moves"), -EINVAL);
	assert_int_equal(rf_engine_config_hide(&cfg, NULL), -EINVAL);
	assert_int_equal(rf_engine_config_hide(NULL, "uffd-move"), -EINVAL);
	assert_int_equal(cfg.hide_features, 0); /* nothing half-applied */
	cfg.hide_features = 1u << 30;
	assert_int_equal(new_with(&cfg, &log, &e), -EINVAL);
	assert_null(e);
	assert_log_contains(&log, "unknown hide_features bits 0x40000000");

	rf_engine_config_init(&cfg);
	assert_int_equal(rf_engine_config_hide(&cfg, ""), 0);
	assert_int_equal(rf_engine_config_hide(&cfg, "uffd-move,pagemap-scan"), 0);
	assert_int_equal(cfg.hide_features, RF_HIDE_UFFD_MOVE | RF_HIDE_PAGEMAP_SCAN);
	assert_int_equal(new_with(&cfg, &log, &e), 0);
	assert_int_equal(rf_engine_features(e, &f), 0);
	assert_false(f.uffd_move);
	assert_false(f.pagemap_scan);
	assert_int_equal(f.uffd_features & (1ull << 16), 0); /* UFFD_FEATURE_MOVE */
	rf_engine_free(e);
}

/* On a machine with everything, requiring everything works and the features
 * say so; where a feature is missing the test is skipped with its name. */
static void test_features_present(void **state)
{
	struct rf_engine_config cfg;
	struct rf_features f = {.size = sizeof(f)};
	struct rf_test_log log;
	rf_engine *e;
	int err;

	(void)state;
	rf_engine_config_init(&cfg);
	cfg.flags = RF_ENGINE_REQUIRE_KVM | RF_ENGINE_REQUIRE_UFFD | RF_ENGINE_REQUIRE_UFFD_WP |
		    RF_ENGINE_REQUIRE_KSM;
	err = new_with(&cfg, &log, &e);
	rf_require(err != -ENODEV, log.last);
	assert_int_equal(err, 0);
	assert_int_equal(rf_engine_features(e, &f), 0);
	assert_true(f.kvm && f.uffd && f.uffd_wp && f.ksm);
	assert_true(f.numa_nodes >= 1);
	assert_true(f.max_map_count > 0);
	assert_true(strlen(f.kernel_release) > 0);
	assert_int_equal(rf_engine_features(e, NULL), -EINVAL);
	rf_engine_free(e);
}

static void test_last_error(void **state)
{
	struct rf_vm_config vc;
	char buf[512];
	rf_engine *e = rf_test_engine(NULL);
	rf_vm *vm;

	(void)state;
	assert_int_equal(rf_engine_last_error(e, buf, sizeof(buf)), 0);
	rf_vm_config_init(&vc);
	vc.ram_bytes = 4097;
	assert_int_equal(rf_vm_new(e, "vmx", &vc, &vm), -EINVAL);
	assert_true(rf_engine_last_error(e, buf, sizeof(buf)) > 0);
	assert_non_null(strstr(buf, "vmx"));
	assert_non_null(strstr(buf, "4 KiB"));
	rf_engine_free(e);
}

static int thread_count(void)
{
	char line[128];
	int n = -1;
	FILE *f = fopen("/proc/self/status", "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "Threads: %d", &n) == 1)
			break;
	if (f)
		fclose(f);
	return n;
}

/* An embedder that frees the engine while dedup still scans and holds merged
 * pages: the engine stops dedup first, so no library thread outlives it. */
static void test_free_with_dedup_running(void **state)
{
	int threads_before;
	struct rf_dedup_config dc;
	struct rf_dedup_stats ds = {.size = sizeof(ds)};
	struct rf_features f = {.size = sizeof(f)};
	rf_engine *e = rf_test_engine(NULL);
	uint8_t *ram;
	rf_vm *vm;
	int err;

	(void)state;
	rf_engine_features(e, &f);
	if (!f.uffd_wp) {
		rf_engine_free(e);
		rf_require(false, "userfaultfd write-protect not available");
	}
	/* liburcu's process-wide call_rcu worker outlives any engine by design
	 * (the index frees nodes through it): create it before the baseline. */
	urcu_memb_get_default_call_rcu_data();
	threads_before = thread_count();
	vm = rf_test_vm(e, "vm0", 32 << 20, (void **)&ram);
	for (int i = 0; i < 4096; i++)
		memset(ram + (size_t)i * 4096, 1 + i % 8, 4096);
	rf_dedup_config_init(&dc);
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	for (int i = 0; i < 200; i++) {
		err = rf_dedup_counters(e, &ds);
		assert_int_equal(err, 0);
		if (ds.pages_merged > 1000)
			break;
		usleep(20000);
	}
	assert_true(ds.pages_merged > 1000);
	assert_true(thread_count() > threads_before);
	rf_engine_free(e); /* no rf_dedup_stop(): must not hang, leak or crash */
	assert_int_equal(thread_count(), threads_before);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_defaults),	  cmocka_unit_test(test_null_args),
	    cmocka_unit_test(test_bad_config),	  cmocka_unit_test(test_missing_kvm),
	    cmocka_unit_test(test_missing_ksm),	  cmocka_unit_test(test_features_present),
	    cmocka_unit_test(test_last_error),	  cmocka_unit_test(test_free_with_dedup_running),
	    cmocka_unit_test(test_hide_features),
	};

	return cmocka_run_group_tests_name("engine", tests, NULL, NULL);
}
