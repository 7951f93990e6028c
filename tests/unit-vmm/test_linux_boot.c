/* SPDX-License-Identifier: MIT */
/*
 * The Linux boot protocol (vmm/linux/boot.c) on a synthetic bzImage whose
 * setup header is laid out as Documentation/arch/x86/boot.rst says: header
 * validation with its clear errors, memory layout, boot_params with the e820
 * map, page tables and GDT, and the CPUID filter.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>

#include "rf_test.h"

#include "linux/boot.h"
#include "linux/le.h"

#define IMG_LEN	 (64 * 1024)
#define SETUP_SZ (5 * 512) /* boot sector + 4 setup sectors */
#define MiB	 (1ull << 20)
#define PTE_PS	 (1ull << 7) /* a 2 MiB page */

static uint8_t img[IMG_LEN];

static void make_image(void)
{
	memset(img, 0, sizeof(img));
	img[0x1f1] = 4;					   /* setup_sects */
	put_le(img + 0x1f4, (IMG_LEN - SETUP_SZ) / 16, 4); /* syssize */
	put_le(img + 0x1fe, 0xaa55, 2);
	img[0x200] = 0xeb;
	img[0x201] = 0x6a; /* jump over the header: it ends at 0x26c */
	put_le(img + 0x202, 0x53726448, 4);
	put_le(img + 0x206, 0x020f, 2);
	img[0x211] = 0x01; /* LOADED_HIGH */
	put_le(img + 0x22c, 0x7fffffff, 4);
	put_le(img + 0x230, 0x200000, 4);
	img[0x234] = 1;
	put_le(img + 0x236, 0x3, 2); /* XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G */
	put_le(img + 0x238, 2047, 4);
	put_le(img + 0x258, 0x1000000, 8);
	put_le(img + 0x260, 0x2000000, 4);
	for (size_t i = SETUP_SZ; i < IMG_LEN; i++)
		img[i] = (uint8_t)(i * 7);
}

static void test_parse_valid(void **state)
{
	struct linux_bzimage k;
	char err[256] = "";

	(void)state;
	make_image();
	assert_int_equal(linux_bzimage_parse(img, IMG_LEN, &k, err, sizeof(err)), 0);
	assert_int_equal(k.version, 0x020f);
	assert_int_equal(k.setup_sects, 4);
	assert_int_equal(k.kernel_offset, SETUP_SZ);
	assert_int_equal(k.kernel_size, IMG_LEN - SETUP_SZ);
	assert_int_equal(k.pref_address, 0x1000000);
	assert_int_equal(k.init_size, 0x2000000);
	assert_int_equal(k.cmdline_size, 2047);
	assert_int_equal(k.header_end, 0x26c);
	assert_true(k.relocatable);

	/* setup_sects 0 means 4 (old kernels). */
	img[0x1f1] = 0;
	assert_int_equal(linux_bzimage_parse(img, IMG_LEN, &k, err, sizeof(err)), 0);
	assert_int_equal(k.kernel_offset, SETUP_SZ);
}

/* Each bad image: -EINVAL and a reason naming what is wrong. */
static void test_parse_errors(void **state)
{
	static const struct {
		size_t off;
		unsigned len;
		uint64_t val;
		const char *reason;
	} bad[] = {
	    {0x1fe, 2, 0x1234, "boot flag"},
	    {0x202, 4, 0x12345678, "HdrS"},
	    {0x206, 2, 0x020b, "too old"},
	    {0x236, 2, 0x0, "64-bit entry"},
	    {0x211, 1, 0x0, "zImage"},
	    {0x1f4, 4, IMG_LEN, "truncated"},
	    {0x1f1, 1, 200, "not followed by a kernel"},
	    {0x230, 4, 0x300000, "power of two"},
	    {0x201, 1, 0x10, "setup header ends"},
	};
	struct linux_bzimage k;
	char err[256];

	(void)state;
	for (unsigned i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		make_image();
		put_le(img + bad[i].off, bad[i].val, bad[i].len);
		err[0] = 0;
		assert_int_equal(linux_bzimage_parse(img, IMG_LEN, &k, err, sizeof(err)), -EINVAL);
		if (!strstr(err, bad[i].reason))
			fail_msg("case %u: \"%s\" does not say \"%s\"", i, err, bad[i].reason);
	}
	make_image();
	assert_int_equal(linux_bzimage_parse(img, 0x200, &k, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "too small"));
	memcpy(img,
	       "\x7f"
	       "ELF",
	       4);
	assert_int_equal(linux_bzimage_parse(img, IMG_LEN, &k, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "vmlinux"));
}

static void test_layout(void **state)
{
	struct linux_bzimage k;
	struct linux_layout lo;
	char err[256];

	(void)state;
	make_image();
	assert_int_equal(linux_bzimage_parse(img, IMG_LEN, &k, err, sizeof(err)), 0);
	assert_int_equal(linux_boot_layout(&k, 256 * MiB, 6 * MiB, 100, &lo, err, sizeof(err)), 0);
	assert_int_equal(lo.kernel_gpa, 0x1000000);
	assert_int_equal(lo.initrd_gpa, 250 * MiB);
	assert_int_equal(lo.initrd_gpa % 4096, 0);
	assert_int_equal(lo.cmdline_gpa, LINUX_CMDLINE_GPA);
	/* An initramfs of odd size ends at the top of RAM, page-aligned start. */
	assert_int_equal(linux_boot_layout(&k, 256 * MiB, 5000, 0, &lo, err, sizeof(err)), 0);
	assert_int_equal(lo.initrd_gpa, 256 * MiB - 8192);

	assert_int_equal(linux_boot_layout(&k, 32 * MiB, 0, 0, &lo, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "RAM of 32 MiB"));
	assert_int_equal(linux_boot_layout(&k, 255 * MiB, 0, 0, &lo, err, sizeof(err)), -EINVAL);
	assert_int_equal(linux_boot_layout(&k, 4096 * MiB, 0, 0, &lo, err, sizeof(err)), -EINVAL);
	assert_int_equal(linux_boot_layout(&k, 256 * MiB, 0, 2048, &lo, err, sizeof(err)), -E2BIG);
	assert_non_null(strstr(err, "accepts 2047"));
	assert_int_equal(linux_boot_layout(&k, 64 * MiB, 40 * MiB, 0, &lo, err, sizeof(err)),
			 -ENOMEM);
	assert_non_null(strstr(err, "initramfs"));
	put_le(img + 0x260, 0x8000000, 4); /* init_size 128 MiB */
	assert_int_equal(linux_bzimage_parse(img, IMG_LEN, &k, err, sizeof(err)), 0);
	assert_int_equal(linux_boot_layout(&k, 128 * MiB, 0, 0, &lo, err, sizeof(err)), -ENOMEM);
	assert_non_null(strstr(err, "too small for the kernel"));
}

/* boot_params, e820, page tables and GDT as the 64-bit entry expects them. */
static void test_load(void **state)
{
	struct linux_bzimage k;
	struct linux_layout lo;
	uint8_t *ram = calloc(1, 128 * MiB), *bp;
	uint8_t initrd[10000];
	const uint64_t *pml4, *pdpt, *pd;
	const char *cmd = "console=ttyS0 rf.wl=idle";
	char err[256];
	uint64_t entry;

	(void)state;
	assert_non_null(ram);
	make_image();
	memset(initrd, 0x5c, sizeof(initrd));
	assert_int_equal(linux_bzimage_parse(img, IMG_LEN, &k, err, sizeof(err)), 0);
	assert_int_equal(
	    linux_boot_layout(&k, 128 * MiB, sizeof(initrd), strlen(cmd), &lo, err, sizeof(err)),
	    0);
	entry = linux_boot_load(ram, &lo, img, &k, initrd, cmd, 0xe0000);
	assert_int_equal(entry, 0x1000200);
	assert_memory_equal(ram + 0x1000000, img + SETUP_SZ, IMG_LEN - SETUP_SZ);
	assert_memory_equal(ram + lo.initrd_gpa, initrd, sizeof(initrd));
	assert_string_equal((char *)ram + LINUX_CMDLINE_GPA, cmd);

	bp = ram + LINUX_BOOT_PARAMS_GPA;
	assert_memory_equal(bp + 0x1f1, img + 0x1f1, 0x210 - 0x1f1); /* header copied */
	assert_int_equal(get_le(bp + 0x202, 4), 0x53726448);
	assert_int_equal(bp[0x210], 0xff); /* type_of_loader */
	assert_true(bp[0x211] & 0x01);	   /* LOADED_HIGH */
	assert_int_equal(get_le(bp + 0x228, 4), LINUX_CMDLINE_GPA);
	assert_int_equal(get_le(bp + 0x218, 4), lo.initrd_gpa);
	assert_int_equal(get_le(bp + 0x21c, 4), sizeof(initrd));
	assert_int_equal(get_le(bp + 0x070, 8), 0xe0000);
	assert_int_equal(bp[0x1e8], 3);
	/* e820: low RAM, the reserved BIOS area (ACPI tables), RAM from 1 MiB to the end. */
	assert_int_equal(get_le(bp + 0x2d0, 8), 0);
	assert_int_equal(get_le(bp + 0x2d0 + 16, 4), E820_RAM);
	assert_int_equal(get_le(bp + 0x2d0 + 20, 8), 0x9f000);
	assert_int_equal(get_le(bp + 0x2d0 + 20 + 8, 8), 0x100000 - 0x9f000);
	assert_int_equal(get_le(bp + 0x2d0 + 20 + 16, 4), E820_RESERVED);
	assert_int_equal(get_le(bp + 0x2d0 + 40, 8), 0x100000);
	assert_int_equal(get_le(bp + 0x2d0 + 48, 8), 127 * MiB);
	assert_true(LINUX_ACPI_GPA >= 0x9f000 && LINUX_ACPI_GPA + LINUX_ACPI_MAX <= 0x100000);

	/* Identity map of 0-4 GiB in 2 MiB pages. */
	pml4 = (const uint64_t *)(ram + LINUX_PGTABLE_GPA);
	assert_int_equal(pml4[0] & ~0xfffull, LINUX_PGTABLE_GPA + 0x1000);
	assert_true(pml4[0] & 1);
	pdpt = (const uint64_t *)(ram + (pml4[0] & ~0xfffull));
	for (unsigned g = 0; g < 4; g++) {
		pd = (const uint64_t *)(ram + (pdpt[g] & ~0xfffull));
		assert_int_equal(pd[0] & ~0xfffull, (uint64_t)g << 30);
		assert_int_equal(pd[511] & ~0xfffull, ((uint64_t)g << 30) + (511ull << 21));
		assert_true(pd[7] & PTE_PS);
	}
	/* The page tables, boot_params and cmdline do not overlap. */
	assert_true(LINUX_BOOT_PARAMS_GPA + 0x1000 <= LINUX_PGTABLE_GPA);
	assert_true(LINUX_PGTABLE_GPA + 6 * 0x1000 <= LINUX_CMDLINE_GPA);
	/* GDT: __BOOT_CS 64-bit code, __BOOT_DS data. */
	assert_int_equal(((uint64_t *)(ram + LINUX_GDT_GPA))[2], 0x00af9b000000ffffull);
	assert_int_equal(((uint64_t *)(ram + LINUX_GDT_GPA))[3], 0x00cf93000000ffffull);
	free(ram);
}

static void test_cpuid_filter(void **state)
{
	struct kvm_cpuid_entry2 e[] = {
	    {.function = 0, .eax = 0xd},
	    {.function = 1, .ebx = 0x12345678, .ecx = (1u << 26) | (1u << 27) | (1u << 28) | 1},
	    {.function = 7, .index = 0, .ebx = (1u << 5) | (1u << 16) | 1, .ecx = 0xff},
	    {.function = 0xb, .index = 0, .edx = 7},
	    {.function = 0xd, .index = 0, .eax = 7},
	    {.function = 0xd, .index = 1, .eax = 1},
	    {.function = 0x40000000, .ebx = 0x4b4d564b},
	};
	struct kvm_cpuid_entry2 f[7];
	unsigned n;

	(void)state;
	memcpy(f, e, sizeof(e));
	n = linux_cpuid_filter(f, 7, 0, true);
	assert_int_equal(n, 5); /* both 0xd leaves gone */
	assert_int_equal(f[1].function, 1);
	assert_int_equal(f[1].ebx, 0x00345678); /* APIC ID 0 */
	assert_int_equal(f[1].ecx & ((1u << 26) | (1u << 27) | (1u << 28)), 0);
	assert_true(f[1].ecx & 1);	    /* SSE3 untouched */
	assert_true(f[1].ecx & (1u << 31)); /* hypervisor */
	assert_int_equal(f[2].ebx, 1);	    /* AVX2, AVX512F gone, FSGSBASE kept */
	assert_int_equal(f[3].edx, 0);
	assert_int_equal(f[4].function, 0x40000000);

	memcpy(f, e, sizeof(e));
	n = linux_cpuid_filter(f, 7, 3, false);
	assert_int_equal(n, 7);
	assert_int_equal(f[1].ebx >> 24, 3);
	assert_true(f[1].ecx & (1u << 26)); /* XSAVE kept */
	assert_int_equal(f[3].edx, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse_valid),	 cmocka_unit_test(test_parse_errors),
	    cmocka_unit_test(test_layout),	 cmocka_unit_test(test_load),
	    cmocka_unit_test(test_cpuid_filter),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
