/* SPDX-License-Identifier: MIT */
/*
 * Prometheus exposition: one gauge per breakdown category per VM with a vm
 * label, values equal to the breakdown, each VM's fault stall as a counter
 * in seconds, names escaped, a short buffer reporting the length it needs,
 * and the file written atomically.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "rf_test.h"

#define MiB (1ull << 20)

/* The value of the sample line starting with @key (not a HELP line). */
static uint64_t metric(const char *text, const char *key)
{
	char k[256];
	const char *p;

	snprintf(k, sizeof(k), "\n%s", key);
	p = strstr(text, k);
	if (!p)
		fail_msg("metric %s missing", key);
	return strtoull(p + strlen(k), NULL, 10);
}

static void test_format(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 8 * MiB, (void **)&ram);
	struct rf_vm_breakdown b = {.size = sizeof(b)};
	char *buf = malloc(1 << 16), small[64];
	long n, need;

	(void)state;
	rf_test_vm(e, "we\"ird\\", 4 * MiB, NULL);
	memset(ram, 1, 3 * MiB);
	/* As if vm0's threads had waited 1.5 s over 7 faults (fault_stall.h). */
	atomic_store(&vm->stall_ns, 1500000000ull);
	atomic_store(&vm->stall_faults, 7);
	need = rf_metrics_format(e, buf, 1 << 16);
	assert_true(need > 0 && need < (1 << 16));
	assert_int_equal(strlen(buf), (size_t)need);
	assert_int_equal(rf_vm_breakdown(vm, &b), 0);
	assert_int_equal(metric(buf, "ramfold_vm_bytes{vm=\"vm0\",category=\"private\"} "),
			 b.private_bytes);
	assert_int_equal(b.private_bytes, 3 * MiB);
	assert_int_equal(metric(buf, "ramfold_vm_bytes{vm=\"vm0\",category=\"untouched\"} "),
			 5 * MiB);
	assert_int_equal(metric(buf, "ramfold_vm_bytes{vm=\"vm0\",category=\"promised\"} "),
			 8 * MiB);
	assert_int_equal(metric(buf, "ramfold_vm_bytes{vm=\"vm0\",category=\"ballooned\"} "), 0);
	assert_int_equal(metric(buf, "ramfold_vm_bytes{vm=\"vm0\",category=\"metadata\"} "),
			 b.metadata_bytes);
	assert_int_equal(metric(buf, "ramfold_host_promised_bytes "), 12 * MiB);
	assert_int_equal(metric(buf, "ramfold_host_saved_bytes{mechanism=\"balloon\"} "), 0);
	assert_non_null(strstr(buf, "# TYPE ramfold_vm_bytes gauge\n"));
	assert_non_null(strstr(buf, "# TYPE ramfold_vm_fault_stall_seconds_total counter\n"));
	assert_non_null(
	    strstr(buf, "\nramfold_vm_fault_stall_seconds_total{vm=\"vm0\"} 1.500000000\n"));
	assert_non_null(strstr(
	    buf, "\nramfold_vm_fault_stall_seconds_total{vm=\"we\\\"ird\\\\\"} 0.000000000\n"));
	assert_int_equal(metric(buf, "ramfold_vm_fault_stall_faults_total{vm=\"vm0\"} "), 7);
	/* The odd name, escaped. */
	assert_int_equal(
	    metric(buf, "ramfold_vm_bytes{vm=\"we\\\"ird\\\\\",category=\"promised\"} "), 4 * MiB);
	/* Too small a buffer: cut, terminated, and the length needed returned. */
	n = rf_metrics_format(e, small, sizeof(small));
	assert_true(n >= need - 64 && n <= need + 64); /* figures may move a little */
	assert_int_equal(strlen(small), sizeof(small) - 1);
	assert_true(rf_metrics_format(e, NULL, 0) > 0);
	assert_int_equal(rf_metrics_format(e, NULL, 10), -EINVAL);
	assert_int_equal(rf_metrics_format(NULL, buf, 10), -EINVAL);
	free(buf);
	rf_engine_free(e);
}

static void test_write_file(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	char dir[] = "/tmp/rf-metrics-XXXXXX", path[128], line[256];
	FILE *f;
	bool found = false;

	(void)state;
	rf_test_vm(e, "vm0", 4 * MiB, NULL);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/ramfold.prom", dir);
	assert_int_equal(rf_metrics_write_file(e, path), 0);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		found |=
		    strcmp(line, "ramfold_vm_bytes{vm=\"vm0\",category=\"promised\"} 4194304\n") ==
		    0;
	fclose(f);
	assert_true(found);
	unlink(path);
	/* An unwritable place: the error, logged, and no temporary left. */
	snprintf(path, sizeof(path), "%s/no/such/dir/x.prom", dir);
	assert_int_equal(rf_metrics_write_file(e, path), -ENOENT);
	assert_log_contains(&log, "metrics: writing");
	assert_int_equal(rmdir(dir), 0);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_format),
	    cmocka_unit_test(test_write_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
