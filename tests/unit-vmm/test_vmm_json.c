/* SPDX-License-Identifier: MIT */
/*
 * The demo VMM's pure parts, without KVM: the JSON reader/writer of the
 * control socket (every client line is untrusted input), size and nice
 * parsing, the dedup scanners' nice (--dedup-nice), and the MMIO bus's
 * routing. The test links the VMM's objects it tests
 * (vmm/vmm.mk: they are not part of the library).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rf_test.h"

#include "core/json.h"
#include "core/util.h"
#include "devices/mmio_bus.h"

static struct json *parse_ok(const char *s)
{
	char err[128];
	struct json *j = json_parse(s, strlen(s), err, sizeof(err));

	if (!j)
		fail_msg("parse of %s failed: %s", s, err);
	return j;
}

static void parse_err(const char *s, const char *why)
{
	char err[128];
	struct json *j = json_parse(s, strlen(s), err, sizeof(err));

	if (j)
		fail_msg("parse of %s succeeded", s);
	if (!strstr(err, why))
		fail_msg("parse of %s: error \"%s\" lacks \"%s\"", s, err, why);
}

static void test_parse_values(void **state)
{
	struct json *j;
	uint64_t v;

	(void)state;
	j = parse_ok(" {\"execute\": \"query-vms\", \"arguments\": {\"vm\": \"a\", \"n\": 42, "
		     "\"neg\": -7, \"f\": 1.5e3, \"t\": true, \"no\": false, \"z\": null, "
		     "\"arr\": [1, [2], {}], \"big\": 18446744073709551615}} ");
	assert_int_equal(j->type, JSON_OBJECT);
	assert_int_equal(j->count, 2);
	assert_string_equal(json_get_str(j, "execute"), "query-vms");
	const struct json *a = json_get(j, "arguments");
	assert_non_null(a);
	assert_string_equal(json_get_str(a, "vm"), "a");
	assert_int_equal(json_get_u64(a, "n", &v), 0);
	assert_int_equal(v, 42);
	assert_int_equal(json_get_u64(a, "neg", &v), -EINVAL);
	assert_int_equal(json_get_u64(a, "f", &v), -EINVAL);
	assert_true(json_get(a, "f")->num == 1500.0);
	assert_int_equal(json_get_u64(a, "missing", &v), -ENOENT);
	assert_int_equal(json_get_u64(a, "vm", &v), -EINVAL);
	assert_true(json_get(a, "t")->boolean);
	assert_false(json_get(a, "no")->boolean);
	assert_int_equal(json_get(a, "z")->type, JSON_NULL);
	assert_int_equal(json_get(a, "arr")->count, 3);
	assert_int_equal(json_get_u64(a, "big", &v), 0);
	assert_true(v == UINT64_MAX);
	assert_null(json_get(json_get(a, "arr"), "x"));
	json_free(j);

	j = parse_ok("\"tab\\t quote\\\" slash\\/ e\\u00e9 smile\\ud83d\\ude00\"");
	assert_string_equal(j->str, "tab\t quote\" slash/ e\xc3\xa9 smile\xf0\x9f\x98\x80");
	json_free(j);
}

static void test_parse_errors(void **state)
{
	char deep[100];

	(void)state;
	parse_err("", "unexpected end of input");
	parse_err("{", "expected a member name");
	parse_err("{\"a\" 1}", "expected ':'");
	parse_err("{\"a\":1,}", "expected a member name");
	parse_err("[1 2]", "expected ',' or ']'");
	parse_err("\"abc", "unterminated string");
	parse_err("\"a\x01\"", "control character");
	parse_err("\"\\x\"", "bad escape");
	parse_err("\"\\u12zz\"", "bad \\u escape");
	parse_err("\"\\u12", "truncated \\u escape");
	parse_err("\"\\ud800\"", "lone surrogate");
	parse_err("\"\\ud800\\u0041\"", "bad surrogate pair");
	parse_err("\"\\u0000\"", "NUL in string");
	parse_err("01", "leading zero");
	parse_err("1.", "bad number");
	parse_err("-", "bad number");
	parse_err("1e", "bad number");
	parse_err("tru", "unexpected word");
	parse_err("{} x", "trailing characters");
	memset(deep, '[', sizeof(deep) - 1);
	deep[sizeof(deep) - 1] = 0;
	parse_err(deep, "nested deeper than 32");
	/* Embedded NUL: the length, not the NUL, ends the input. */
	{
		char err[64];

		assert_null(json_parse("{}\0{}", 5, err, sizeof(err)));
	}
}

static void test_writer(void **state)
{
	struct jbuf jb;

	(void)state;
	jb_init(&jb);
	assert_string_equal(jb_str(&jb), "");
	jb_obj_open(&jb);
	jb_kv_str(&jb, "s", "a\"b\\c\n\x01");
	jb_kv_u64(&jb, "u", UINT64_MAX);
	jb_kv_i64(&jb, "i", -5);
	jb_kv_bool(&jb, "b", true);
	jb_kv_double(&jb, "d", 0.25);
	jb_key(&jb, "arr");
	jb_arr_open(&jb);
	jb_u64(&jb, 1);
	jb_obj_open(&jb);
	jb_obj_close(&jb);
	jb_null(&jb);
	jb_raw(&jb, "[2]");
	jb_arr_close(&jb);
	jb_key(&jb, "empty");
	jb_arr_open(&jb);
	jb_arr_close(&jb);
	jb_obj_close(&jb);
	assert_string_equal(jb_str(&jb),
			    "{\"s\":\"a\\\"b\\\\c\\u000a\\u0001\",\"u\":18446744073709551615,"
			    "\"i\":-5,\"b\":true,\"d\":0.25,\"arr\":[1,{},null,[2]],\"empty\":[]}");
	/* What the writer writes, the reader reads back. */
	{
		struct json *j = parse_ok(jb_str(&jb));

		assert_string_equal(json_get_str(j, "s"), "a\"b\\c\n\x01");
		json_free(j);
	}
	jb_free(&jb);
}

static void test_sizes(void **state)
{
	struct json *j;
	uint64_t v;

	(void)state;
	assert_int_equal(parse_size("256M", &v), 0);
	assert_int_equal(v, 256ull << 20);
	assert_int_equal(parse_size("1GiB", &v), 0);
	assert_int_equal(v, 1ull << 30);
	assert_int_equal(parse_size("4k", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("123", &v), 0);
	assert_int_equal(v, 123);
	assert_int_equal(parse_size("", &v), -EINVAL);
	assert_int_equal(parse_size("M", &v), -EINVAL);
	assert_int_equal(parse_size("-1M", &v), -EINVAL);
	assert_int_equal(parse_size("12X", &v), -EINVAL);
	assert_int_equal(parse_size("12Mx", &v), -EINVAL);
	assert_int_equal(parse_size("99999999999999999999", &v), -EINVAL);
	assert_int_equal(parse_size("17179869184T", &v), -EINVAL);
	assert_int_equal(parse_u64("12a", &v), -EINVAL);
	j = parse_ok("{\"a\":\"256M\",\"b\":4096,\"c\":\"lots\",\"d\":-1}");
	assert_int_equal(json_get_size(j, "a", &v), 0);
	assert_int_equal(v, 256ull << 20);
	assert_int_equal(json_get_size(j, "b", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(json_get_size(j, "c", &v), -EINVAL);
	assert_int_equal(json_get_size(j, "d", &v), -EINVAL);
	assert_int_equal(json_get_size(j, "e", &v), -ENOENT);
	json_free(j);
}

static void test_nice(void **state)
{
	static const struct {
		const char *s;
		int v;
	} good[] = {{"5", 5}, {"-20", -20}, {"19", 19}, {"0", 0}, {"-1", -1}};
	static const char *const bad[] = {"20", "-21", "", "-", "+5", "5x", "--5", " 5"};
	int v;

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 99;
		assert_int_equal(parse_nice(good[i].s, &v), 0);
		assert_int_equal(v, good[i].v);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		v = 99;
		if (parse_nice(bad[i], &v) != -EINVAL || v != 99)
			fail_msg("parse_nice(\"%s\") took it (%d)", bad[i], v);
	}
}

/* In a thread of its own, as the engine's thread_start hook runs: the
 * nice that scan_thread_set_nice(@name, 7) leaves on the thread. */
static void *nice_after(void *name)
{
	int err = scan_thread_set_nice(name, 7);

	if (err)
		return (void *)(intptr_t)(1000 - err);
	errno = 0;
	return (void *)(intptr_t)getpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid));
}

static int nice_of_thread_named(const char *name)
{
	pthread_t t;
	void *ret;

	assert_int_equal(pthread_create(&t, NULL, nice_after, (void *)name), 0);
	assert_int_equal(pthread_join(t, &ret), 0);
	return (int)(intptr_t)ret;
}

static void test_scan_thread_nice(void **state)
{
	int own = getpriority(PRIO_PROCESS, 0);

	(void)state;
	rf_require(own <= 7, "running above nice 7: going down to 7 needs CAP_SYS_NICE");
	/* Only a scanner is set; the process's other threads keep its nice. */
	assert_int_equal(nice_of_thread_named("rf-scan/0"), 7);
	assert_int_equal(nice_of_thread_named("rf-scan/12"), 7);
	assert_int_equal(nice_of_thread_named("rf-fault/vm0"), own);
	assert_int_equal(nice_of_thread_named("rf-rcu"), own);
	assert_int_equal(getpriority(PRIO_PROCESS, 0), own);
}

struct fake_dev {
	uint64_t last_off, last_val;
	unsigned int reads, writes, destroyed;
};

static int fd_read(void *o, uint64_t off, void *data, unsigned len)
{
	struct fake_dev *d = o;
	uint64_t v = 0x1122334455667788ull + off;

	d->reads++;
	memcpy(data, &v, len);
	return 0;
}

static int fd_write(void *o, uint64_t off, const void *data, unsigned len)
{
	struct fake_dev *d = o;

	d->writes++;
	d->last_off = off;
	d->last_val = 0;
	memcpy(&d->last_val, data, len);
	return off == 0x100 ? -EIO : 0;
}

static void fd_destroy(void *o)
{
	((struct fake_dev *)o)->destroyed++;
}

static const struct mmio_ops fake_ops = {fd_read, fd_write, fd_destroy};

static void test_mmio_bus(void **state)
{
	struct mmio_bus *bus = mmio_bus_new();
	struct fake_dev a = {0}, b = {0};
	uint64_t v = 0xdeadbeef;
	uint32_t w = 0x55;

	(void)state;
	assert_non_null(bus);
	assert_int_equal(mmio_bus_register(bus, 0x1000, 0x1000, &fake_ops, &a, "a"), 0);
	assert_int_equal(mmio_bus_register(bus, 0x3000, 0x200, &fake_ops, &b, "b"), 0);
	assert_int_equal(mmio_bus_register(bus, 0x1fff, 2, &fake_ops, &b, "x"), -EEXIST);
	assert_int_equal(mmio_bus_register(bus, 0x500, 0xb01, &fake_ops, &b, "x"), -EEXIST);
	assert_int_equal(mmio_bus_register(bus, 0x9000, 0, &fake_ops, &b, "x"), -EINVAL);
	assert_int_equal(mmio_bus_register(bus, UINT64_MAX - 10, 100, &fake_ops, &b, "x"), -EINVAL);

	assert_int_equal(mmio_bus_access(bus, 0x1008, &v, 8, false), 0);
	assert_true(v == 0x1122334455667788ull + 8);
	assert_int_equal(mmio_bus_access(bus, 0x3010, &w, 4, true), 0);
	assert_int_equal(b.last_off, 0x10);
	assert_int_equal(b.last_val, 0x55);
	assert_int_equal(mmio_bus_access(bus, 0x1100, &w, 4, true), -EIO);
	/* Outside every window, or straddling a window's end. */
	v = 77;
	assert_int_equal(mmio_bus_access(bus, 0x2000, &v, 8, false), -ENOENT);
	assert_int_equal(v, 0);
	assert_int_equal(mmio_bus_access(bus, 0x31fc, &v, 8, false), -ENOENT);
	assert_int_equal(mmio_bus_access(bus, 0x1000, &v, 3, false), -EINVAL);
	assert_string_equal(mmio_bus_window_name(bus, 0x31ff), "b");
	assert_null(mmio_bus_window_name(bus, 0x3200));
	assert_int_equal(a.reads, 1);
	mmio_bus_free(bus);
	assert_int_equal(a.destroyed, 1);
	assert_int_equal(b.destroyed, 1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_values),     cmocka_unit_test(test_parse_errors),
	    cmocka_unit_test(test_writer),	     cmocka_unit_test(test_sizes),
	    cmocka_unit_test(test_mmio_bus),	     cmocka_unit_test(test_nice),
	    cmocka_unit_test(test_scan_thread_nice),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
