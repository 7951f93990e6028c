/* SPDX-License-Identifier: MIT */
/*
 * The ACPI tables of Linux guests (vmm/linux/acpi_tables.c): structure, pointers
 * and checksums as the ACPI specification 6.5 lays them out (RSDP 5.2.5,
 * headers 5.2.6, XSDT 5.2.8, FADT 5.2.9, MADT 5.2.12), the DSDT's devices, and
 * every bad configuration refused.
 */
#include <errno.h>
#include <string.h>

#include "rf_test.h"

#include "linux/acpi_aml.h"
#include "linux/acpi_tables.h"
#include "linux/le.h"

#define GPA 0xe0000u

static uint8_t tbl[16384];

static const struct acpi_mmio_dev two_devs[] = {
    {.base = 0xd0000000, .size = 0x200, .gsi = 16},
    {.base = 0xd0000200, .size = 0x200, .gsi = 17},
};

static uint8_t sum(const uint8_t *p, size_t n)
{
	uint8_t s = 0;

	while (n--)
		s += *p++;
	return s;
}

/* The table at guest address @gpa, checked: signature, length within @used, checksum. */
static const uint8_t *table_at(uint64_t gpa, size_t used, const char *sig)
{
	const uint8_t *t;
	uint32_t len;

	assert_true(gpa >= GPA && gpa + 36 <= GPA + used);
	t = tbl + (gpa - GPA);
	assert_memory_equal(t, sig, 4);
	len = (uint32_t)get_le(t + 4, 4);
	assert_true(len >= 36 && gpa + len <= GPA + used);
	assert_int_equal(sum(t, len), 0);
	assert_memory_equal(t + 10, "RAMFLD", 6);
	return t;
}

static size_t build(unsigned ncpus, const struct acpi_mmio_dev *devs, unsigned ndevs)
{
	struct acpi_config cfg = {.ncpus = ncpus, .devs = devs, .ndevs = ndevs};
	uint64_t rsdp = 0;
	size_t used = 0;

	memset(tbl, 0x5a, sizeof(tbl));
	assert_int_equal(acpi_tables_build(&cfg, GPA, tbl, sizeof(tbl), &used, &rsdp), 0);
	assert_int_equal(rsdp, GPA);
	return used;
}

static void test_rsdp_xsdt(void **state)
{
	size_t used = build(1, two_devs, 2);
	const uint8_t *xsdt;

	(void)state;
	assert_memory_equal(tbl, "RSD PTR ", 8);
	assert_int_equal(sum(tbl, 20), 0);
	assert_int_equal(sum(tbl, 36), 0);
	assert_int_equal(tbl[15], 2);		   /* revision: XSDT present */
	assert_int_equal(get_le(tbl + 16, 4), 0);  /* no RSDT */
	assert_int_equal(get_le(tbl + 20, 4), 36); /* length */
	xsdt = table_at(get_le(tbl + 24, 8), used, "XSDT");
	assert_int_equal(get_le(xsdt + 4, 4), 36 + 16); /* two entries */
	table_at(get_le(xsdt + 36, 8), used, "FACP");
	table_at(get_le(xsdt + 44, 8), used, "APIC");
	/* Every table 8-byte aligned (the XSDT entries are 64-bit). */
	assert_int_equal(get_le(tbl + 24, 8) % 8, 0);
	assert_int_equal(get_le(xsdt + 36, 8) % 8, 0);
}

static void test_fadt_hw_reduced(void **state)
{
	size_t used = build(1, two_devs, 2);
	const uint8_t *xsdt = tbl + (get_le(tbl + 24, 8) - GPA);
	const uint8_t *fadt = table_at(get_le(xsdt + 36, 8), used, "FACP");
	uint32_t flags = (uint32_t)get_le(fadt + 112, 4);
	const uint8_t *gas;

	(void)state;
	assert_int_equal(get_le(fadt + 4, 4), 276);
	assert_int_equal(fadt[8], 6);
	assert_true(flags & (1u << 20));		 /* HW_REDUCED_ACPI */
	assert_true(flags & (1u << 10));		 /* RESET_REG_SUP */
	assert_false(get_le(fadt + 109, 2) & (1u << 1)); /* no 8042 */
	/* DSDT through both the 32- and the 64-bit field. */
	assert_int_equal(get_le(fadt + 40, 4), get_le(fadt + 140, 8));
	table_at(get_le(fadt + 140, 8), used, "DSDT");
	/* Sleep control, sleep status and reset: byte registers in I/O space. */
	gas = fadt + 244;
	assert_int_equal(gas[0], 1);
	assert_int_equal(gas[1], 8);
	assert_int_equal(get_le(gas + 4, 8), ACPI_SLEEP_CTL_PORT);
	assert_int_equal(get_le(fadt + 256 + 4, 8), ACPI_SLEEP_STS_PORT);
	assert_int_equal(get_le(fadt + 116 + 4, 8), ACPI_RESET_PORT);
	assert_int_equal(fadt[128], ACPI_RESET_VALUE);
	/* No legacy PM blocks, no SCI. */
	assert_int_equal(get_le(fadt + 46, 2), 0);
	assert_int_equal(get_le(fadt + 56, 4), 0);
	assert_int_equal(get_le(fadt + 76, 4), 0);
}

static void test_madt(void **state)
{
	size_t used = build(3, two_devs, 2);
	const uint8_t *xsdt = tbl + (get_le(tbl + 24, 8) - GPA);
	const uint8_t *madt = table_at(get_le(xsdt + 44, 8), used, "APIC");
	uint32_t len = (uint32_t)get_le(madt + 4, 4);
	unsigned lapics = 0, ioapics = 0, isos = 0;

	(void)state;
	assert_int_equal(get_le(madt + 36, 4), 0xfee00000u);
	assert_int_equal(get_le(madt + 40, 4), 1); /* PCAT_COMPAT */
	for (uint32_t off = 44; off < len;) {
		const uint8_t *e = madt + off;

		assert_true(e[1] >= 2 && off + e[1] <= len);
		switch (e[0]) {
		case 0:
			assert_int_equal(e[1], 8);
			assert_int_equal(e[3], lapics); /* APIC IDs 0..n-1 */
			assert_int_equal(get_le(e + 4, 4), 1);
			lapics++;
			break;
		case 1:
			assert_int_equal(e[1], 12);
			assert_int_equal(get_le(e + 4, 4), 0xfec00000u);
			assert_int_equal(get_le(e + 8, 4), 0);
			ioapics++;
			break;
		case 2:
			assert_int_equal(e[3], 0);
			assert_int_equal(get_le(e + 4, 4), 2);
			isos++;
			break;
		}
		off += e[1];
	}
	assert_int_equal(lapics, 3);
	assert_int_equal(ioapics, 1);
	assert_int_equal(isos, 1);
}

static const uint8_t *find(const uint8_t *hay, size_t n, const void *needle, size_t m)
{
	for (size_t i = 0; i + m <= n; i++)
		if (!memcmp(hay + i, needle, m))
			return hay + i;
	return NULL;
}

/* The DSDT: \_SB scope whose PkgLength spans the devices, one LNRO0005 per window. */
static void test_dsdt_devices(void **state)
{
	size_t used = build(1, two_devs, 2);
	const uint8_t *xsdt = tbl + (get_le(tbl + 24, 8) - GPA);
	const uint8_t *fadt = tbl + (get_le(xsdt + 36, 8) - GPA);
	const uint8_t *dsdt = table_at(get_le(fadt + 140, 8), used, "DSDT");
	uint32_t len = (uint32_t)get_le(dsdt + 4, 4);
	const uint8_t *aml = dsdt + 36, *p;
	size_t scope_len;
	static const uint8_t hid[] = {0x08, '_', 'H', 'I', 'D', 0x0d, 'L', 'N',
				      'R',  'O', '0', '0', '0', '5',  0};
	static const uint8_t mem1[] = {0x86, 0x09, 0x00, 0x01, 0x00, 0x02,
				       0x00, 0xd0, 0x00, 0x02, 0x00, 0x00};
	static const uint8_t irq1[] = {0x89, 0x06, 0x00, 0x03, 0x01, 0x11, 0x00, 0x00, 0x00};
	static const uint8_t s5[] = {0x08, '_', 'S', '5', '_', 0x12, 0x05, 0x02, 0x0a, 0x05, 0x00};

	(void)state;
	assert_int_equal(aml[0], 0x10);	  /* ScopeOp */
	assert_int_equal(aml[1] >> 6, 1); /* two-byte PkgLength */
	scope_len = (aml[1] & 0x0f) | ((size_t)aml[2] << 4);
	assert_memory_equal(aml + 3, "\\_SB_", 5);
	/* The scope and then Name (\_S5, ...) fill the table exactly. */
	assert_int_equal(36 + 1 + scope_len + 1 + sizeof(s5), len);
	assert_memory_equal(aml + 1 + scope_len, "\x08\\", 2);
	assert_memory_equal(aml + 1 + scope_len + 2, s5 + 1, sizeof(s5) - 1);

	p = find(aml, len - 36, "\x5b\x82", 2);
	assert_non_null(p);
	assert_memory_equal(p + 3, "VR00", 4);
	assert_non_null(find(p, len - 36 - (p - aml), hid, sizeof(hid)));
	p = find(p + 2, len - 36 - (p + 2 - aml), "\x5b\x82", 2);
	assert_non_null(p);
	assert_memory_equal(p + 3, "VR01", 4);
	assert_non_null(find(p, len - 36 - (p - aml), hid, sizeof(hid)));
	assert_non_null(find(p, len - 36 - (p - aml), mem1, sizeof(mem1)));
	assert_non_null(find(p, len - 36 - (p - aml), irq1, sizeof(irq1)));
	/* COM1 with its port range and ISA IRQ 4, so the 8250 gets an interrupt. */
	{
		static const uint8_t com1[] = {'C', 'O', 'M',  '1',  0x08, '_',	 'H',
					       'I', 'D', 0x0c, 0x41, 0xd0, 0x05, 0x01};
		static const uint8_t res[] = {0x47, 0x01, 0xf8, 0x03, 0xf8, 0x03, 0x01,
					      0x08, 0x22, 0x10, 0x00, 0x79, 0x00};

		assert_non_null(find(aml, len - 36, com1, sizeof(com1)));
		assert_non_null(find(aml, len - 36, res, sizeof(res)));
	}
	/* Each device's PkgLength ends where the next begins. */
	{
		const uint8_t *d0 = find(aml, len - 36, "\x5b\x82", 2);
		size_t d0len = d0[2] < 0x40 ? d0[2] : ((d0[2] & 0x0f) | ((size_t)d0[3] << 4));

		assert_ptr_equal(d0 + 2 + d0len, p);
	}
}

/* A window above 4 GiB is described with a QWord Address Space Descriptor. */
static void test_dsdt_high_window(void **state)
{
	static const struct acpi_mmio_dev high = {
	    .base = 0x1000001000ull, .size = 0x1000, .gsi = 16};
	size_t used = build(1, &high, 1);
	const uint8_t *xsdt = tbl + (get_le(tbl + 24, 8) - GPA);
	const uint8_t *fadt = tbl + (get_le(xsdt + 36, 8) - GPA);
	const uint8_t *dsdt = table_at(get_le(fadt + 140, 8), used, "DSDT");
	static const uint8_t qw[] = {0x8a, 0x2b, 0x00, 0x00, 0x0d, 0x01, 0,    0,    0, 0, 0,
				     0,	   0,	 0,    0x00, 0x10, 0x00, 0x00, 0x10, 0, 0, 0};

	(void)state;
	assert_non_null(find(dsdt, get_le(dsdt + 4, 4), qw, sizeof(qw)));
	assert_null(find(dsdt, get_le(dsdt + 4, 4), "\x86\x09", 2));
}

static void test_no_devices(void **state)
{
	size_t used = build(1, NULL, 0);

	(void)state;
	assert_true(used > 36 + 52 + 276);
}

static void test_bad_configs(void **state)
{
	static const struct {
		unsigned ncpus;
		struct acpi_mmio_dev d[2];
		unsigned ndevs;
	} bad[] = {
	    {0, {{0}}, 0},
	    {ACPI_MAX_CPUS + 1, {{0}}, 0},
	    {1, {{.base = 0xd0000000, .size = 0, .gsi = 16}}, 1},
	    {1, {{.base = UINT64_MAX - 0xff, .size = 0x200, .gsi = 16}}, 1},
	    {1, {{.base = 0xd0000000, .size = 0x200, .gsi = 4}}, 1},
	    {1, {{.base = 0xd0000000, .size = 0x200, .gsi = 24}}, 1},
	    {1, {{0xd0000000, 0x200, 16}, {0xd0000100, 0x200, 17}}, 2},
	    {1, {{0xd0000000, 0x200, 16}, {0xd0000200, 0x200, 16}}, 2},
	};
	uint64_t rsdp = 0;
	size_t used = 0;

	(void)state;
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct acpi_config cfg = {
		    .ncpus = bad[i].ncpus, .devs = bad[i].d, .ndevs = bad[i].ndevs};

		memset(tbl, 0x5a, sizeof(tbl));
		if (acpi_tables_build(&cfg, GPA, tbl, sizeof(tbl), &used, &rsdp) != -EINVAL)
			fail_msg("bad config %u accepted", i);
		assert_int_equal(tbl[0], 0x5a); /* nothing written */
	}
	{
		struct acpi_config cfg = {.ncpus = 1, .devs = two_devs, .ndevs = 2};

		assert_int_equal(acpi_tables_build(&cfg, GPA + 8, tbl, sizeof(tbl), &used, &rsdp),
				 -EINVAL);
		assert_int_equal(acpi_tables_build(&cfg, GPA, tbl, 200, &used, &rsdp), -ENOSPC);
		assert_int_equal(tbl[0], 0x5a);
		assert_int_equal(
		    acpi_tables_build(&cfg, 0xfffffe00u, tbl, sizeof(tbl), &used, &rsdp), -ENOSPC);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_rsdp_xsdt),
	    cmocka_unit_test(test_fadt_hw_reduced),
	    cmocka_unit_test(test_madt),
	    cmocka_unit_test(test_dsdt_devices),
	    cmocka_unit_test(test_no_devices),
	    cmocka_unit_test(test_bad_configs),
	    cmocka_unit_test(test_dsdt_high_window),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
