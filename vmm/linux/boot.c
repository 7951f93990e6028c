/* SPDX-License-Identifier: MIT */
/*
 * Linux x86-64 boot protocol, 64-bit entry; see boot.h. Offsets in the
 * image and in boot_params are those of Documentation/arch/x86/boot.rst and
 * zero-page.rst: the setup header lives at 0x1f1 in both, and boot_params is
 * the header plus the fields the loader fills around it.
 */
#include "linux/boot.h"
#include "linux/le.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

/* Setup header fields (absolute offsets in the image and in boot_params). */
enum {
	HDR_SETUP_SECTS = 0x1f1,
	HDR_SYSSIZE = 0x1f4,
	HDR_BOOT_FLAG = 0x1fe,
	HDR_JUMP = 0x200,
	HDR_HEADER = 0x202,
	HDR_VERSION = 0x206,
	HDR_TYPE_OF_LOADER = 0x210,
	HDR_LOADFLAGS = 0x211,
	HDR_RAMDISK_IMAGE = 0x218,
	HDR_RAMDISK_SIZE = 0x21c,
	HDR_HEAP_END_PTR = 0x224,
	HDR_CMD_LINE_PTR = 0x228,
	HDR_INITRD_ADDR_MAX = 0x22c,
	HDR_KERNEL_ALIGNMENT = 0x230,
	HDR_RELOCATABLE = 0x234,
	HDR_XLOADFLAGS = 0x236,
	HDR_CMDLINE_SIZE = 0x238,
	HDR_PREF_ADDRESS = 0x258,
	HDR_INIT_SIZE = 0x260,
	HDR_END_2_12 = 0x268, /* just past init_size/handover_offset: protocol 2.12 */
};

/* boot_params fields outside the setup header. */
enum {
	BP_ACPI_RSDP_ADDR = 0x070,
	BP_EXT_RAMDISK_IMAGE = 0x0c0,
	BP_EXT_RAMDISK_SIZE = 0x0c4,
	BP_EXT_CMD_LINE_PTR = 0x0c8,
	BP_E820_ENTRIES = 0x1e8,
	BP_E820_TABLE = 0x2d0,
	BP_E820_MAX = 128,
};

#define HDRS_MAGIC	      0x53726448u /* "HdrS" */
#define LOADED_HIGH	      0x01
#define CAN_USE_HEAP	      0x80
#define XLF_KERNEL_64	      0x01
#define XLF_CAN_LOAD_ABOVE_4G 0x02

#define PTE_P  (1ull << 0)
#define PTE_RW (1ull << 1)
#define PTE_PS (1ull << 7)

static int boot_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int boot_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return rc;
}

int linux_bzimage_parse(const uint8_t *img, size_t len, struct linux_bzimage *k, char *err,
			size_t errlen)
{
	uint64_t setup_bytes;

	memset(k, 0, sizeof(*k));
	if (len >= 4 && !memcmp(img,
				"\x7f"
				"ELF",
				4))
		return boot_fail(
		    err, errlen, -EINVAL,
		    "an ELF file (vmlinux?), not a bzImage: give the compressed kernel "
		    "(vmlinuz)");
	if (len < HDR_END_2_12)
		return boot_fail(err, errlen, -EINVAL, "too small for a bzImage (%zu bytes)", len);
	if (get_le(img + HDR_BOOT_FLAG, 2) != 0xaa55)
		return boot_fail(err, errlen, -EINVAL,
				 "not a bzImage: no boot flag 0xAA55 at 0x1fe");
	if (get_le(img + HDR_HEADER, 4) != HDRS_MAGIC)
		return boot_fail(err, errlen, -EINVAL,
				 "not a Linux kernel: no \"HdrS\" setup header at 0x202");
	k->version = (uint16_t)get_le(img + HDR_VERSION, 2);
	if (k->version < 0x020c)
		return boot_fail(err, errlen, -EINVAL,
				 "boot protocol %u.%02u is too old: the 64-bit entry needs 2.12 or "
				 "later",
				 k->version >> 8, k->version & 0xff);
	k->setup_sects = img[HDR_SETUP_SECTS] ? img[HDR_SETUP_SECTS] : 4;
	k->loadflags = img[HDR_LOADFLAGS];
	k->xloadflags = (uint16_t)get_le(img + HDR_XLOADFLAGS, 2);
	if (!(k->xloadflags & XLF_KERNEL_64))
		return boot_fail(err, errlen, -EINVAL,
				 "the kernel has no 64-bit entry point (a 32-bit kernel?)");
	if (!(k->loadflags & LOADED_HIGH))
		return boot_fail(err, errlen, -EINVAL,
				 "a zImage (loaded low) is not supported: give a bzImage");
	k->header_end = HDR_HEADER + img[HDR_JUMP + 1];
	if (k->header_end < HDR_END_2_12 || k->header_end > len)
		return boot_fail(err, errlen, -EINVAL,
				 "setup header ends at 0x%zx, outside the image", k->header_end);
	setup_bytes = ((uint64_t)k->setup_sects + 1) * 512;
	if (setup_bytes >= len)
		return boot_fail(
		    err, errlen, -EINVAL,
		    "setup (%llu bytes) is not followed by a kernel in the %zu-byte file",
		    (unsigned long long)setup_bytes, len);
	k->kernel_offset = setup_bytes;
	k->kernel_size = len - setup_bytes;
	if (get_le(img + HDR_SYSSIZE, 4) * 16 > k->kernel_size)
		return boot_fail(
		    err, errlen, -EINVAL,
		    "truncated: the header says %llu bytes of kernel, the file has %llu",
		    (unsigned long long)get_le(img + HDR_SYSSIZE, 4) * 16,
		    (unsigned long long)k->kernel_size);
	k->pref_address = get_le(img + HDR_PREF_ADDRESS, 8);
	k->init_size = (uint32_t)get_le(img + HDR_INIT_SIZE, 4);
	k->kernel_alignment = (uint32_t)get_le(img + HDR_KERNEL_ALIGNMENT, 4);
	k->cmdline_size = (uint32_t)get_le(img + HDR_CMDLINE_SIZE, 4);
	k->initrd_addr_max = (uint32_t)get_le(img + HDR_INITRD_ADDR_MAX, 4);
	k->relocatable = img[HDR_RELOCATABLE] != 0;
	if (k->init_size < k->kernel_size)
		k->init_size = (uint32_t)k->kernel_size;
	if (k->kernel_alignment & (k->kernel_alignment - 1))
		return boot_fail(err, errlen, -EINVAL,
				 "kernel_alignment 0x%x is not a power of two",
				 k->kernel_alignment);
	return 0;
}

static uint64_t align_up(uint64_t v, uint64_t a)
{
	return (v + a - 1) & ~(a - 1);
}

int linux_boot_layout(const struct linux_bzimage *k, uint64_t ram_bytes, uint64_t initrd_size,
		      size_t cmdline_len, struct linux_layout *lo, char *err, size_t errlen)
{
	uint64_t kend, top,
	    max_cmd =
		k->cmdline_size < LINUX_CMDLINE_MAX - 1 ? k->cmdline_size : LINUX_CMDLINE_MAX - 1;

	memset(lo, 0, sizeof(*lo));
	if (ram_bytes < LINUX_MIN_RAM || ram_bytes > LINUX_MAX_RAM || ram_bytes % (2ull << 20))
		return boot_fail(
		    err, errlen, -EINVAL,
		    "RAM of %llu MiB: a Linux guest needs a multiple of 2 MiB from %llu "
		    "MiB to %llu MiB",
		    (unsigned long long)(ram_bytes >> 20),
		    (unsigned long long)(LINUX_MIN_RAM >> 20),
		    (unsigned long long)(LINUX_MAX_RAM >> 20));
	if (cmdline_len > max_cmd)
		return boot_fail(err, errlen, -E2BIG,
				 "command line of %zu bytes; this kernel accepts %llu", cmdline_len,
				 (unsigned long long)max_cmd);
	/*
	 * The preferred address when it is at least 1 MiB; a relocatable
	 * kernel elsewhere would do, but Debian's is built for 16 MiB and
	 * decompresses in place there.
	 */
	lo->kernel_gpa = k->pref_address >= (1ull << 20) ? k->pref_address : (1ull << 20);
	if (k->kernel_alignment)
		lo->kernel_gpa = align_up(lo->kernel_gpa, k->kernel_alignment);
	kend = lo->kernel_gpa + k->init_size;
	top = ram_bytes;
	if (k->initrd_addr_max && top > (uint64_t)k->initrd_addr_max + 1)
		top = (uint64_t)k->initrd_addr_max + 1;
	if (kend > ram_bytes)
		return boot_fail(
		    err, errlen, -ENOMEM,
		    "RAM of %llu MiB is too small for the kernel (%llu MiB from %llu MiB)",
		    (unsigned long long)(ram_bytes >> 20), (unsigned long long)(k->init_size >> 20),
		    (unsigned long long)(lo->kernel_gpa >> 20));
	if (initrd_size) {
		if (initrd_size > top)
			return boot_fail(err, errlen, -ENOMEM,
					 "the initramfs (%llu MiB) does not fit",
					 (unsigned long long)(initrd_size >> 20));
		lo->initrd_gpa = (top - initrd_size) & ~0xfffull;
		/* Leave the kernel room to decompress and RAM to unpack into. */
		if (lo->initrd_gpa < kend + (16ull << 20))
			return boot_fail(
			    err, errlen, -ENOMEM,
			    "RAM of %llu MiB is too small for the kernel (%llu MiB) and "
			    "the initramfs (%llu MiB)",
			    (unsigned long long)(ram_bytes >> 20),
			    (unsigned long long)(k->init_size >> 20),
			    (unsigned long long)(initrd_size >> 20));
	}
	lo->ram_bytes = ram_bytes;
	lo->initrd_size = initrd_size;
	lo->cmdline_gpa = LINUX_CMDLINE_GPA;
	lo->cmdline_len = cmdline_len;
	return 0;
}

unsigned linux_boot_e820(const struct linux_layout *lo, struct linux_e820 *out, unsigned max)
{
	const struct linux_e820 map[] = {
	    {0, 0x9f000, E820_RAM},
	    /* EBDA, VGA hole, option ROMs, BIOS area: ACPI tables live here. */
	    {0x9f000, 0x100000 - 0x9f000, E820_RESERVED},
	    {0x100000, lo->ram_bytes - 0x100000, E820_RAM},
	};
	unsigned n = sizeof(map) / sizeof(map[0]);

	for (unsigned i = 0; i < n && i < max; i++)
		out[i] = map[i];
	return n;
}

/* Identity map of 0-4 GiB with 2 MiB pages: enough for the kernel's own startup. */
static void build_page_tables(uint8_t *ram)
{
	uint64_t *pml4 = (uint64_t *)(ram + LINUX_PGTABLE_GPA);
	uint64_t *pdpt = (uint64_t *)(ram + LINUX_PGTABLE_GPA + 0x1000);

	memset(pml4, 0, 6 * 0x1000);
	pml4[0] = (LINUX_PGTABLE_GPA + 0x1000) | PTE_P | PTE_RW;
	for (uint64_t g = 0; g < 4; g++) {
		uint64_t pd_gpa = LINUX_PGTABLE_GPA + 0x2000 + g * 0x1000;
		uint64_t *pd = (uint64_t *)(ram + pd_gpa);

		pdpt[g] = pd_gpa | PTE_P | PTE_RW;
		for (uint64_t i = 0; i < 512; i++)
			pd[i] = ((g << 30) + (i << 21)) | PTE_P | PTE_RW | PTE_PS;
	}
}

uint64_t linux_boot_load(uint8_t *ram, const struct linux_layout *lo, const uint8_t *img,
			 const struct linux_bzimage *k, const uint8_t *initrd, const char *cmdline,
			 uint64_t rsdp_gpa)
{
	uint8_t *bp = ram + LINUX_BOOT_PARAMS_GPA;
	uint64_t *gdt = (uint64_t *)(ram + LINUX_GDT_GPA);
	struct linux_e820 e820[8];
	unsigned n;

	memcpy(ram + lo->kernel_gpa, img + k->kernel_offset, k->kernel_size);
	if (lo->initrd_size)
		memcpy(ram + lo->initrd_gpa, initrd, lo->initrd_size);
	memcpy(ram + lo->cmdline_gpa, cmdline, lo->cmdline_len);
	ram[lo->cmdline_gpa + lo->cmdline_len] = 0;

	memset(bp, 0, 0x1000);
	memcpy(bp + HDR_SETUP_SECTS, img + HDR_SETUP_SECTS, k->header_end - HDR_SETUP_SECTS);
	bp[HDR_TYPE_OF_LOADER] = 0xff; /* undefined loader */
	bp[HDR_LOADFLAGS] = (uint8_t)((k->loadflags | LOADED_HIGH) & ~CAN_USE_HEAP);
	put_le(bp + HDR_HEAP_END_PTR, 0, 2);
	put_le(bp + HDR_CMD_LINE_PTR, lo->cmdline_gpa, 4);
	put_le(bp + BP_EXT_CMD_LINE_PTR, lo->cmdline_gpa >> 32, 4);
	put_le(bp + HDR_RAMDISK_IMAGE, lo->initrd_gpa, 4);
	put_le(bp + BP_EXT_RAMDISK_IMAGE, lo->initrd_gpa >> 32, 4);
	put_le(bp + HDR_RAMDISK_SIZE, lo->initrd_size, 4);
	put_le(bp + BP_EXT_RAMDISK_SIZE, lo->initrd_size >> 32, 4);
	put_le(bp + BP_ACPI_RSDP_ADDR, rsdp_gpa, 8);
	n = linux_boot_e820(lo, e820, 8);
	bp[BP_E820_ENTRIES] = (uint8_t)n;
	for (unsigned i = 0; i < n; i++) {
		uint8_t *e = bp + BP_E820_TABLE + 20 * i;

		put_le(e, e820[i].addr, 8);
		put_le(e + 8, e820[i].size, 8);
		put_le(e + 16, e820[i].type, 4);
	}

	build_page_tables(ram);
	gdt[0] = 0;
	gdt[1] = 0;
	gdt[LINUX_BOOT_CS / 8] = 0x00af9b000000ffffull; /* code: 64-bit, present, DPL 0 */
	gdt[LINUX_BOOT_DS / 8] = 0x00cf93000000ffffull; /* data: flat 4 GiB, writable */
	return lo->kernel_gpa + 0x200;
}

/* CPUID bits (leaf.register bit). */
#define C1_ECX_XSAVE	   (1u << 26)
#define C1_ECX_OSXSAVE	   (1u << 27)
#define C1_ECX_AVX	   (1u << 28)
#define C1_ECX_FMA	   (1u << 12)
#define C1_ECX_F16C	   (1u << 29)
#define C1_ECX_HYPERVISOR  (1u << 31)
#define C7_EBX_AVX2	   (1u << 5)
#define C7_EBX_AVX512_MASK 0xd0030000u /* AVX512F, DQ, IFMA, CD, BW, VL */

unsigned linux_cpuid_filter(struct kvm_cpuid_entry2 *e, unsigned n, unsigned apic_id, bool no_xsave)
{
	unsigned out = 0;

	for (unsigned i = 0; i < n; i++) {
		struct kvm_cpuid_entry2 c = e[i];

		switch (c.function) {
		case 1:
			c.ebx = (c.ebx & 0x00ffffffu) | (apic_id << 24);
			/* KVM leaves this to the VMM; without it the guest misses kvmclock. */
			c.ecx |= C1_ECX_HYPERVISOR;
			if (no_xsave)
				c.ecx &= ~(C1_ECX_XSAVE | C1_ECX_OSXSAVE | C1_ECX_AVX | C1_ECX_FMA |
					   C1_ECX_F16C);
			break;
		case 7:
			if (no_xsave && c.index == 0) {
				c.ebx &= ~(C7_EBX_AVX2 | C7_EBX_AVX512_MASK);
				c.ecx = 0; /* AVX-512 extensions and friends */
				c.edx = 0;
			}
			break;
		case 0xb:
		case 0x1f:
			c.edx = apic_id;
			break;
		case 0xd:
			if (no_xsave)
				continue; /* the XSAVE leaves go with XSAVE */
			break;
		}
		e[out++] = c;
	}
	return out;
}
