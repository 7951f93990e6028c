/* SPDX-License-Identifier: MIT */
/*
 * The Linux x86-64 boot protocol (Documentation/arch/x86/boot.rst), 64-bit
 * entry: parse and validate a bzImage's setup header, place the kernel, the
 * initramfs and the command line in guest RAM, fill boot_params (the "zero
 * page") with an e820 map and the ACPI RSDP address, build identity page
 * tables and a GDT, and filter the CPUID table the guest will see.
 *
 * Pure functions over a RAM buffer: no KVM, no I/O (linux.c does
 * that), so all of it is unit-tested.
 *
 * Guest-physical layout (RAM from 0, at least LINUX_MIN_RAM):
 *   0x0000_0500  GDT: null, null, __BOOT_CS (0x10, 64-bit), __BOOT_DS (0x18)
 *   0x0000_7000  boot_params (4 KiB)
 *   0x0000_9000  page tables: PML4, PDPT, 4 PDs: 0-4 GiB identity, 2 MiB pages
 *   0x0002_0000  kernel command line (up to the kernel's cmdline_size)
 *   0x0009_f000  (e820 reserved up to 1 MiB: EBDA, VGA hole, BIOS area)
 *   0x000e_0000  ACPI tables (RSDP first, where the BIOS-area scan finds it)
 *   pref_address the kernel (16 MiB for Debian's), then its init_size
 *   top of RAM   the initramfs, page-aligned, below initrd_addr_max
 */
#ifndef RF_VMM_LINUX_BOOT_H
#define RF_VMM_LINUX_BOOT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LINUX_GDT_GPA	      0x500ull
#define LINUX_BOOT_PARAMS_GPA 0x7000ull
#define LINUX_PGTABLE_GPA     0x9000ull
#define LINUX_CMDLINE_GPA     0x20000ull
#define LINUX_CMDLINE_MAX     0x10000u
#define LINUX_ACPI_GPA	      0xe0000ull
#define LINUX_ACPI_MAX	      0x20000u
#define LINUX_BOOT_CS	      0x10
#define LINUX_BOOT_DS	      0x18
#define LINUX_MIN_RAM	      (64ull << 20)
/* The in-kernel IOAPIC and LAPICs sit just below 4 GiB: RAM must end before. */
#define LINUX_MAX_RAM (3ull << 30)

/* What the setup header says (offsets are the boot protocol's). */
struct linux_bzimage {
	uint16_t version;    /* boot protocol, e.g. 0x020f */
	uint8_t setup_sects; /* 512-byte sectors of real-mode setup after the boot sector */
	uint8_t loadflags;
	uint16_t xloadflags;
	uint64_t kernel_offset; /* file offset of the protected-mode kernel */
	uint64_t kernel_size;	/* its bytes in the file */
	uint64_t pref_address;
	uint32_t init_size; /* memory the kernel needs from its load address */
	uint32_t kernel_alignment;
	uint32_t cmdline_size; /* longest command line, without the NUL */
	uint32_t initrd_addr_max;
	bool relocatable;
	size_t header_end; /* file offset just past the setup header */
};

/*
 * Parse @img (@len bytes). 0, or -EINVAL with a one-line reason in @err:
 * not a bzImage (too small, no boot flag, no "HdrS"), an ELF vmlinux given
 * instead of the bzImage, a protocol older than 2.12 (no 64-bit entry flag),
 * no 64-bit entry point, not loadable high, sizes beyond the file.
 */
int linux_bzimage_parse(const uint8_t *img, size_t len, struct linux_bzimage *k, char *err,
			size_t errlen);

struct linux_layout {
	uint64_t ram_bytes;
	uint64_t kernel_gpa;
	uint64_t initrd_gpa, initrd_size;
	uint64_t cmdline_gpa;
	size_t cmdline_len; /* without the NUL */
};

/*
 * Where the kernel and initramfs go in @ram_bytes of RAM. 0, or -EINVAL /
 * -E2BIG / -ENOMEM with the reason in @err: RAM below LINUX_MIN_RAM, above
 * LINUX_MAX_RAM or not a multiple of 2 MiB; a command line longer than the
 * kernel accepts; kernel and initramfs that do not fit.
 */
int linux_boot_layout(const struct linux_bzimage *k, uint64_t ram_bytes, uint64_t initrd_size,
		      size_t cmdline_len, struct linux_layout *lo, char *err, size_t errlen);

/*
 * Write everything into @ram (the guest's RAM at gpa 0, lo->ram_bytes long):
 * kernel, initramfs, command line, boot_params (setup header copied from the
 * image, loader fields set, e820 map, RSDP address), page tables and GDT.
 * The ACPI tables themselves are the caller's (acpi_tables_build at
 * LINUX_ACPI_GPA). Returns the 64-bit entry point's gpa.
 */
uint64_t linux_boot_load(uint8_t *ram, const struct linux_layout *lo, const uint8_t *img,
			 const struct linux_bzimage *k, const uint8_t *initrd, const char *cmdline,
			 uint64_t rsdp_gpa);

/* e820 entry types */
#define E820_RAM      1
#define E820_RESERVED 2

struct linux_e820 {
	uint64_t addr, size;
	uint32_t type;
};

/* The e820 map linux_boot_load writes (for tests and messages); returns the count. */
unsigned linux_boot_e820(const struct linux_layout *lo, struct linux_e820 *out, unsigned max);

/*
 * CPUID for a Linux guest, from KVM_GET_SUPPORTED_CPUID's entries (as in
 * struct kvm_cpuid_entry2, passed as a raw array to keep KVM headers out):
 * sets the APIC ID and the hypervisor bit (the guest then finds KVM's
 * leaves at 0x40000000 and uses kvmclock), and when @no_xsave removes XSAVE (and what needs it:
 * AVX, AVX2, AVX-512, the 0xD leaves) so the guest uses FXSAVE. Under a
 * hypervisor that emulates SVM without trapping XSETBV (QEMU TCG), a guest
 * promised XSAVE finds its XCR0 inconsistent.
 */
struct kvm_cpuid_entry2;
unsigned linux_cpuid_filter(struct kvm_cpuid_entry2 *e, unsigned n, unsigned apic_id,
			    bool no_xsave);

#endif
