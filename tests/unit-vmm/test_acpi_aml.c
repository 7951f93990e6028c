/* SPDX-License-Identifier: MIT */
/*
 * The AML encoder (vmm/linux/acpi_aml.c) against the byte encodings of the ACPI
 * specification 6.5, section 20.2 (AML grammar) and 6.4.3 (resource
 * descriptors). Every expected byte string below was derived by hand from
 * the grammar, not by running the encoder.
 */
#include <errno.h>
#include <string.h>

#include "rf_test.h"

#include "linux/acpi_aml.h"

#define assert_aml(b, ...)                                                                         \
	do {                                                                                       \
		static const uint8_t exp_[] = {__VA_ARGS__};                                       \
		assert_int_equal((b)->err, 0);                                                     \
		assert_int_equal((b)->len, sizeof(exp_));                                          \
		assert_memory_equal((b)->data, exp_, sizeof(exp_));                                \
	} while (0)

static void check_pkglength(size_t body, int n, const uint8_t *exp)
{
	uint8_t out[4] = {0};

	assert_int_equal(aml_pkglength(body, out), n);
	assert_memory_equal(out, exp, (size_t)n);
}

/* 20.2.4: the lead byte's bits 7-6 count the bytes that follow; the length counts itself. */
static void test_pkglength(void **state)
{
	uint8_t out[4];

	(void)state;
	check_pkglength(0, 1, (const uint8_t[]){0x01});
	check_pkglength(62, 1, (const uint8_t[]){0x3f});
	/* 63 + 1 = 64 does not fit 6 bits: two bytes, total 65 = 0x041. */
	check_pkglength(63, 2, (const uint8_t[]){0x41, 0x04});
	check_pkglength(0xffd, 2, (const uint8_t[]){0x4f, 0xff});
	/* 0xffe + 2 = 0x1000 does not fit 12 bits: three bytes, total 0x1001. */
	check_pkglength(0xffe, 3, (const uint8_t[]){0x81, 0x00, 0x01});
	check_pkglength(0xffffc, 3, (const uint8_t[]){0x8f, 0xff, 0xff});
	check_pkglength(0xffffd, 4, (const uint8_t[]){0xc1, 0x00, 0x00, 0x01});
	check_pkglength(0x0ffffffb, 4, (const uint8_t[]){0xcf, 0xff, 0xff, 0xff});
	assert_int_equal(aml_pkglength(0x0ffffffc, out), -EINVAL);
	assert_int_equal(aml_pkglength(SIZE_MAX, out), -EINVAL);
}

/* 20.2.3: ZeroOp, OneOp, OnesOp, then Byte/Word/DWord/QWordPrefix, little-endian. */
static void test_integer_shortest(void **state)
{
	static const struct {
		uint64_t v;
		uint8_t len, bytes[9];
	} cases[] = {
	    {0, 1, {0x00}},
	    {1, 1, {0x01}},
	    {2, 2, {0x0a, 0x02}},
	    {0xff, 2, {0x0a, 0xff}},
	    {0x100, 3, {0x0b, 0x00, 0x01}},
	    {0xffff, 3, {0x0b, 0xff, 0xff}},
	    {0x10000, 5, {0x0c, 0x00, 0x00, 0x01, 0x00}},
	    {0xd0000000, 5, {0x0c, 0x00, 0x00, 0x00, 0xd0}},
	    {0xffffffff, 5, {0x0c, 0xff, 0xff, 0xff, 0xff}},
	    {0x100000000ull, 9, {0x0e, 0, 0, 0, 0, 1, 0, 0, 0}},
	    {0xfffffffffffffffeull, 9, {0x0e, 0xfe, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}},
	    {UINT64_MAX, 1, {0xff}},
	};

	(void)state;
	for (unsigned i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct aml_buf b;

		aml_buf_init(&b);
		aml_integer(&b, cases[i].v);
		assert_int_equal(b.err, 0);
		assert_int_equal(b.len, cases[i].len);
		assert_memory_equal(b.data, cases[i].bytes, cases[i].len);
		aml_buf_free(&b);
	}
}

/* 20.2.2: NameSeg padding, RootChar, ParentPrefix, DualNamePrefix, MultiNamePrefix. */
static void test_namestring(void **state)
{
	struct aml_buf b;

	(void)state;
	aml_buf_init(&b);
	aml_namestring(&b, "_HID");
	assert_aml(&b, '_', 'H', 'I', 'D');
	aml_buf_free(&b);

	aml_namestring(&b, "\\_SB");
	assert_aml(&b, 0x5c, '_', 'S', 'B', '_');
	aml_buf_free(&b);

	aml_namestring(&b, "\\_SB.VR0");
	assert_aml(&b, 0x5c, 0x2e, '_', 'S', 'B', '_', 'V', 'R', '0', '_');
	aml_buf_free(&b);

	aml_namestring(&b, "A.B2.C_D");
	assert_aml(&b, 0x2f, 3, 'A', '_', '_', '_', 'B', '2', '_', '_', 'C', '_', 'D', '_');
	aml_buf_free(&b);

	aml_namestring(&b, "^^PCI0");
	assert_aml(&b, 0x5e, 0x5e, 'P', 'C', 'I', '0');
	aml_buf_free(&b);

	aml_namestring(&b, "\\");
	assert_aml(&b, 0x5c, 0x00);
	aml_buf_free(&b);
}

static void test_bad_names_rejected(void **state)
{
	static const char *const bad[] = {"1ABC", "ABCDE", "a", "A..B", "A.", ".A", "A-B", "\\^A"};

	(void)state;
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct aml_buf b;

		aml_buf_init(&b);
		aml_namestring(&b, bad[i]);
		if (b.err != -EINVAL)
			fail_msg("name '%s' accepted", bad[i]);
		/* Sticky: later calls add nothing. */
		aml_integer(&b, 5);
		assert_int_equal(b.err, -EINVAL);
		aml_buf_free(&b);
	}
}

/* Name (_HID, "LNRO0005"): NameOp NameSeg StringPrefix ASCII NUL. */
static void test_name_string(void **state)
{
	struct aml_buf b;

	(void)state;
	aml_buf_init(&b);
	aml_name_string(&b, "_HID", "LNRO0005");
	assert_aml(&b, 0x08, '_', 'H', 'I', 'D', 0x0d, 'L', 'N', 'R', 'O', '0', '0', '0', '5', 0);
	aml_buf_free(&b);

	aml_string(&b, "caf\xc3\xa9");
	assert_int_equal(b.err, -EINVAL);
	aml_buf_free(&b);
}

/* Buffer: BufferOp PkgLength BufferSize(integer) bytes. */
static void test_buffer(void **state)
{
	static const uint8_t three[] = {1, 2, 3};
	uint8_t big[300];
	struct aml_buf b;

	(void)state;
	aml_buf_init(&b);
	aml_buffer(&b, three, 3);
	assert_aml(&b, 0x11, 0x06, 0x0a, 0x03, 1, 2, 3);
	aml_buf_free(&b);

	/* 300 bytes: BufferSize 0x0b 0x2c 0x01, body 303, total 305 = 0x131 in two bytes. */
	memset(big, 0xab, sizeof(big));
	aml_buffer(&b, big, sizeof(big));
	assert_int_equal(b.err, 0);
	assert_int_equal(b.len, 1 + 2 + 3 + 300);
	assert_memory_equal(b.data, ((const uint8_t[]){0x11, 0x41, 0x13, 0x0b, 0x2c, 0x01}), 6);
	aml_buf_free(&b);
}

/* Package (2) { 5, 0 }: PackageOp PkgLength NumElements elements. */
static void test_package(void **state)
{
	struct aml_buf b, el;

	(void)state;
	aml_buf_init(&b);
	aml_buf_init(&el);
	aml_integer(&el, 5);
	aml_integer(&el, 0);
	aml_package_wrap(&b, 2, &el);
	assert_aml(&b, 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00);
	aml_package_wrap(&b, 256, &el);
	assert_int_equal(b.err, -EINVAL);
	aml_buf_free(&b);
	aml_buf_free(&el);
}

/* Device (VR00) { Name (_UID, 0) } and Method (_STA, 0) { Return (0x0F) }. */
static void test_device_and_method(void **state)
{
	struct aml_buf b, body, ret;

	(void)state;
	aml_buf_init(&b);
	aml_buf_init(&body);
	aml_name_integer(&body, "_UID", 0);
	aml_device_wrap(&b, "VR00", &body);
	assert_aml(&b, 0x5b, 0x82, 0x0b, 'V', 'R', '0', '0', 0x08, '_', 'U', 'I', 'D', 0x00);
	aml_buf_free(&b);
	aml_buf_free(&body);

	aml_buf_init(&ret);
	aml_integer(&ret, 0x0f);
	aml_return(&body, &ret);
	aml_method_wrap(&b, "_STA", 0, 0, &body);
	assert_aml(&b, 0x14, 0x09, '_', 'S', 'T', 'A', 0x00, 0xa4, 0x0a, 0x0f);
	aml_buf_free(&b);
	aml_method_wrap(&b, "_DSM", 4, 1, &body);
	assert_int_equal(b.data[6], 0x0c); /* ArgCount 4 | SerializeFlag */
	aml_buf_free(&b);
	aml_method_wrap(&b, "_DSM", 8, 0, &body);
	assert_int_equal(b.err, -EINVAL);
	aml_buf_free(&b);
	aml_buf_free(&body);
	aml_buf_free(&ret);
}

/* Scope (\_SB) { ... } with a body long enough to need a two-byte PkgLength. */
static void test_scope_two_byte_pkglength(void **state)
{
	struct aml_buf b, body;
	size_t total;

	(void)state;
	aml_buf_init(&b);
	aml_buf_init(&body);
	for (int i = 0; i < 20; i++)
		aml_name_integer(&body, "_UID", 0x1234); /* 8 bytes each */
	assert_int_equal(body.len, 160);
	aml_scope_wrap(&b, "\\_SB", &body);
	assert_int_equal(b.err, 0);
	/* ScopeOp, PkgLength(2), NameString(5), body(160): PkgLength = 167 = 0xa7. */
	assert_int_equal(b.len, 1 + 2 + 5 + 160);
	assert_int_equal(b.data[0], 0x10);
	assert_int_equal(b.data[1], 0x47);
	assert_int_equal(b.data[2], 0x0a);
	total = (b.data[1] & 0x0f) | ((size_t)b.data[2] << 4);
	assert_int_equal(total, b.len - 1);
	aml_buf_free(&b);
	aml_buf_free(&body);
}

/* 6.4.3.4 and 6.4.3.6: Memory32Fixed, Extended Interrupt, End Tag. */
static void test_resources(void **state)
{
	struct aml_buf b;

	(void)state;
	aml_buf_init(&b);
	aml_res_memory32_fixed(&b, 0xd0000000, 0x200, 1);
	aml_res_interrupt(&b, AML_IRQ_CONSUMER | AML_IRQ_EDGE, 16);
	aml_res_end(&b);
	assert_aml(&b, 0x86, 0x09, 0x00, 0x01, 0x00, 0x00, 0x00, 0xd0, 0x00, 0x02, 0x00, 0x00, 0x89,
		   0x06, 0x00, 0x03, 0x01, 0x10, 0x00, 0x00, 0x00, 0x79, 0x00);
	aml_buf_free(&b);

	aml_res_memory32_fixed(&b, 0x1000, 0x10, 0);
	aml_res_interrupt(&b, AML_IRQ_CONSUMER | AML_IRQ_ACTIVE_LOW | AML_IRQ_SHARED, 0x1234567);
	assert_aml(&b, 0x86, 0x09, 0x00, 0x00, 0x00, 0x10, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x89,
		   0x06, 0x00, 0x0d, 0x01, 0x67, 0x45, 0x23, 0x01);
	aml_buf_free(&b);
}

/* 6.4.3.5.1: a window above 4 GiB (the demo VMM's MMIO slots sit at 64 GiB). */
static void test_qword_memory(void **state)
{
	struct aml_buf b;

	(void)state;
	aml_buf_init(&b);
	aml_res_qword_memory(&b, 0x1000001000ull, 0x200, 1);
	assert_aml(&b, 0x8a, 0x2b, 0x00, 0x00, 0x0d, 0x01,
		   /* granularity */ 0, 0, 0, 0, 0, 0, 0, 0,
		   /* minimum */ 0x00, 0x10, 0x00, 0x00, 0x10, 0, 0, 0,
		   /* maximum */ 0xff, 0x11, 0x00, 0x00, 0x10, 0, 0, 0,
		   /* translation */ 0, 0, 0, 0, 0, 0, 0, 0,
		   /* length */ 0x00, 0x02, 0, 0, 0, 0, 0, 0);
	aml_buf_free(&b);
	aml_res_qword_memory(&b, UINT64_MAX - 0xff, 0x200, 1);
	assert_int_equal(b.err, -EINVAL);
	aml_buf_free(&b);
	aml_res_qword_memory(&b, 0x1000, 0, 1);
	assert_int_equal(b.err, -EINVAL);
	aml_buf_free(&b);
}

/* EISAID: compressed letters and digits, bytes swapped (6.1.5). */
static void test_eisaid(void **state)
{
	static const char *const bad[] = {"PNP050", "pnp0501", "PNP05G1", "PNP05011", "P1P0501"};
	struct aml_buf b;

	(void)state;
	aml_buf_init(&b);
	aml_eisaid(&b, "PNP0501");
	assert_aml(&b, 0x0c, 0x41, 0xd0, 0x05, 0x01);
	aml_buf_free(&b);
	aml_eisaid(&b, "PNP0A03");
	assert_aml(&b, 0x0c, 0x41, 0xd0, 0x0a, 0x03);
	aml_buf_free(&b);
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		aml_eisaid(&b, bad[i]);
		if (b.err != -EINVAL)
			fail_msg("EISA ID '%s' accepted", bad[i]);
		aml_buf_free(&b);
	}
}

/* 6.4.2.5 and 6.4.2.1: the COM1 resources, IO (Decode16, 0x3F8, 0x3F8, 1, 8) IRQNoFlags {4}. */
static void test_small_resources(void **state)
{
	struct aml_buf b;

	(void)state;
	aml_buf_init(&b);
	aml_res_io(&b, 0x3f8, 8);
	aml_res_irq_noflags(&b, 4);
	assert_aml(&b, 0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01, 0x08, 0x22, 0x10, 0x00);
	aml_res_irq_noflags(&b, 16);
	assert_int_equal(b.err, -EINVAL);
	aml_buf_free(&b);
}

/* A child's error reaches the parent, and nothing is appended after it. */
static void test_error_propagates(void **state)
{
	struct aml_buf b, child;
	size_t len;

	(void)state;
	aml_buf_init(&b);
	aml_buf_init(&child);
	aml_integer(&b, 7);
	aml_namestring(&child, "TOOLONG");
	aml_device_wrap(&b, "DEV0", &child);
	assert_int_equal(b.err, -EINVAL);
	len = b.len;
	aml_integer(&b, 9);
	aml_bytes(&b, "xyz", 3);
	assert_int_equal(b.len, len);
	assert_int_equal(b.err, -EINVAL);
	aml_buf_free(&b);
	aml_buf_free(&child);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pkglength),
	    cmocka_unit_test(test_integer_shortest),
	    cmocka_unit_test(test_namestring),
	    cmocka_unit_test(test_bad_names_rejected),
	    cmocka_unit_test(test_name_string),
	    cmocka_unit_test(test_buffer),
	    cmocka_unit_test(test_package),
	    cmocka_unit_test(test_device_and_method),
	    cmocka_unit_test(test_scope_two_byte_pkglength),
	    cmocka_unit_test(test_resources),
	    cmocka_unit_test(test_qword_memory),
	    cmocka_unit_test(test_eisaid),
	    cmocka_unit_test(test_small_resources),
	    cmocka_unit_test(test_error_propagates),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
