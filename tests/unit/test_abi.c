/* SPDX-License-Identifier: MIT */
/*
 * Sized structs (docs/embedding.md, "ABI and versions"), as a caller built
 * against an older or a newer header meets them: a smaller input keeps the
 * library's defaults for what it lacks, a larger one is taken if the bytes
 * the library does not know are zero and refused with -E2BIG if not, a size
 * below the first member (0, never initialised) is -EINVAL naming the
 * struct; an output is filled up to the caller's size and never past it.
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "rf_test.h"

#define RAM (4u << 20)

/* A caller whose header has 4 more members after rf_vm_config. */
struct vm_config_newer {
	struct rf_vm_config c;
	uint64_t later[4];
};

static void test_input_larger(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	struct vm_config_newer n;
	rf_vm *vm = NULL;

	(void)state;
	memset(&n, 0, sizeof(n));
	rf_vm_config_init(&n.c);
	n.c.size = sizeof(n);
	n.c.ram_bytes = RAM;
	/* Unknown members unset: taken. */
	assert_int_equal(rf_vm_new(e, "vm0", &n.c, &vm), 0);
	assert_non_null(vm);
	/* One set: this library cannot do what it asks. */
	n.later[2] = 1;
	log.count = 0;
	assert_int_equal(rf_vm_new(e, "vm1", &n.c, &vm), -E2BIG);
	assert_true(log.count >= 1);
	assert_non_null(strstr(log.last, "rf_vm_config"));
	assert_non_null(strstr(log.last, "newer header"));
	/* Nothing was created: the name is free. */
	n.later[2] = 0;
	assert_int_equal(rf_vm_new(e, "vm1", &n.c, &vm), 0);
	rf_engine_free(e);
}

static void test_input_smaller(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	struct rf_vm_config c;
	struct rf_vm_breakdown bd = {.size = sizeof(bd)};
	struct rf_dedup_config dc;
	rf_vm *vm = NULL;

	(void)state;
	/* A header that had ram_bytes and domain only: the rest, garbage in
	 * the caller's memory, is not read; the defaults stand (numa_node -1
	 * would be -EINVAL as 0x7f7f7f7f). */
	memset(&c, 0x7f, sizeof(c));
	c.size = offsetof(struct rf_vm_config, numa_node);
	c.ram_bytes = RAM;
	c.domain = NULL;
	assert_int_equal(rf_vm_new(e, "vm0", &c, &vm), 0);
	assert_int_equal(rf_vm_breakdown(vm, &bd), 0);
	assert_int_equal(bd.reservation_bytes, 0);
	assert_int_equal(bd.shares, RF_SHARES_DEFAULT);
	/* Below the first member: refused, naming the struct. */
	c.size = 0;
	log.count = 0;
	assert_int_equal(rf_vm_new(e, "vm1", &c, &vm), -EINVAL);
	assert_non_null(strstr(log.last, "struct rf_vm_config: size 0"));
	c.size = offsetof(struct rf_vm_config, ram_bytes) + 4;
	assert_int_equal(rf_vm_new(e, "vm1", &c, &vm), -EINVAL);
	/* Garbage far above any struct's size. */
	c.size = 0x7f7f7f7f7f7f7f7full;
	assert_int_equal(rf_vm_new(e, "vm1", &c, &vm), -E2BIG);
	assert_non_null(strstr(log.last, "uninitialised"));
	/* Another input, another struct named. */
	rf_dedup_config_init(&dc);
	dc.size = 3;
	assert_int_equal(rf_dedup_start(e, &dc), -EINVAL);
	assert_non_null(strstr(log.last, "rf_dedup_config"));
	rf_engine_free(e);
}

static void test_engine_config_sizes(void **state)
{
	struct rf_engine_config c;
	rf_engine *e = NULL;

	(void)state;
	rf_engine_config_init(&c);
	assert_int_equal(c.size, sizeof(c));
	c.size = 0;
	assert_int_equal(rf_engine_new(&c, &e), -EINVAL);
	assert_null(e);
	/* Up to hide_features (a 0.2-sized config in the 0.3 layout): the
	 * thread_start set behind it is not read. */
	rf_engine_config_init(&c);
	c.size = offsetof(struct rf_engine_config, thread_start);
	c.thread_start = (void (*)(void *, const char *))1;
	assert_int_equal(rf_engine_new(&c, &e), 0);
	rf_engine_free(e);
	c.size = 0;
	assert_int_equal(rf_engine_config_hide(&c, "uffd-move"), -EINVAL);
}

/* An output with a canary behind the caller's size. */
struct stats_older {
	struct rf_vm_stats st;
	uint64_t canary[4];
};

/* @buf (@total bytes) all 0xa5 but for its leading size, @size: the
 * caller's struct and what lies behind it. */
static void poison(void *buf, size_t total, size_t size)
{
	memset(buf, 0xa5, total);
	memcpy(buf, &size, sizeof(size));
}

/* Nothing in @buf from @small to @total was written: still 0xa5. */
static void assert_untouched_past(const void *buf, size_t small, size_t total)
{
	for (size_t i = small; i < total; i++)
		if (((const unsigned char *)buf)[i] != 0xa5)
			fail_msg("byte %zu written, past the caller's %zu", i, small);
}

static void test_output_sizes(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	struct stats_older o;
	void *hva;
	rf_vm *vm = rf_test_vm(e, "vm0", RAM, &hva);
	size_t small = offsetof(struct rf_vm_stats, state_bytes);

	(void)state;
	/* An older, shorter struct: filled up to its size, nothing after. */
	poison(&o, sizeof(o), small);
	assert_int_equal(rf_vm_stats(vm, &o.st), 0);
	assert_int_equal(o.st.size, small);
	assert_int_equal(o.st.promised_bytes, RAM);
	assert_int_equal(o.st.mapped_bytes, RAM);
	assert_untouched_past(&o, small, sizeof(o));
	/* A newer, longer one: what the library knows, and size says how much. */
	poison(&o, sizeof(o), sizeof(o));
	assert_int_equal(rf_vm_stats(vm, &o.st), 0);
	assert_int_equal(o.st.size, sizeof(struct rf_vm_stats));
	assert_int_equal(o.st.metadata_bytes > 0, 1);
	assert_int_equal(o.canary[0], 0xa5a5a5a5a5a5a5a5ull);
	/* Too small, or never set. */
	o.st.size = sizeof(size_t);
	log.count = 0;
	assert_int_equal(rf_vm_stats(vm, &o.st), -EINVAL);
	assert_non_null(strstr(log.last, "rf_vm_stats"));
	rf_engine_free(e);
}

/* rf_swap_stats grew in 0.4 (stall_ns, stall_faults): a caller built
 * before it passes the size up to copy_mode and gets just that; a current
 * caller gets the stall too (0: this VM never faulted). */
struct swap_stats_older {
	struct rf_swap_stats st;
	uint64_t canary[4];
};

static void test_swap_stats_before_stall(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	void *hva;
	rf_vm *vm = rf_test_vm(e, "vm0", RAM, &hva);
	struct swap_stats_older o;
	size_t old = offsetof(struct rf_swap_stats, stall_ns);

	(void)state;
	poison(&o, sizeof(o), old);
	assert_int_equal(rf_vm_swap_stats(vm, &o.st), 0);
	assert_int_equal(o.st.size, old);
	assert_int_equal(o.st.swap_ins, 0);
	assert_int_equal(o.st.stopped, false);
	assert_untouched_past(&o, old, sizeof(o));
	poison(&o, sizeof(o), old);
	assert_int_equal(rf_engine_swap_stats(e, &o.st), 0);
	assert_int_equal(o.st.size, old);
	assert_untouched_past(&o, old, sizeof(o));
	poison(&o, sizeof(o), sizeof(o.st));
	assert_int_equal(rf_vm_swap_stats(vm, &o.st), 0);
	assert_int_equal(o.st.size, sizeof(o.st));
	assert_int_equal(o.st.stall_ns, 0);
	assert_int_equal(o.st.stall_faults, 0);
	assert_untouched_past(&o, sizeof(o.st), sizeof(o));
	rf_engine_free(e);
}

/* An ops table from an older header (only irq): arg keeps its default. */
static void test_ops_smaller(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	void *hva;
	rf_vm *vm = rf_test_vm(e, "vm0", RAM, &hva);
	struct rf_balloon_ops ops;
	rf_balloon *b = NULL;

	(void)state;
	memset(&ops, 0xff, sizeof(ops));
	ops.size = 0;
	assert_int_equal(rf_balloon_new(vm, &ops, NULL, &b), -EINVAL);
	assert_non_null(strstr(log.last, "rf_balloon_ops"));
	/* irq only; the garbage behind it (actual_changed, stats_updated)
	 * would crash if called. */
	ops.size = offsetof(struct rf_balloon_ops, actual_changed);
	ops.irq = NULL;
	assert_int_equal(rf_balloon_new(vm, &ops, NULL, &b), 0);
	assert_int_equal(rf_balloon_set_target(b, 1u << 20), 0);
	rf_balloon_free(b);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_input_larger),
	    cmocka_unit_test(test_input_smaller),
	    cmocka_unit_test(test_engine_config_sizes),
	    cmocka_unit_test(test_output_sizes),
	    cmocka_unit_test(test_ops_smaller),
	    cmocka_unit_test(test_swap_stats_before_stall),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
