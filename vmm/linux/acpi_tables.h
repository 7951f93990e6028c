/* SPDX-License-Identifier: MIT */
/*
 * The ACPI tables a Linux guest of the demo VMM finds its devices through:
 * RSDP -> XSDT -> FADT (hardware-reduced, with a sleep control register for
 * poweroff and a reset register for reboot) -> DSDT, and the MADT (local
 * APICs, the IOAPIC, the ISA timer override). The DSDT holds COM1 (the
 * 8250 on 0x3f8, IRQ 4) and one LNRO0005
 * device per virtio-mmio window, with its memory range and interrupt: Debian's
 * kernel lacks CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES, so ACPI is how its
 * virtio_mmio driver learns of them (as on QEMU's microvm machine).
 *
 * Everything is built into one caller-provided buffer that the caller copies
 * to guest-physical @gpa (16-byte aligned, below 4 GiB since the RSDP may be
 * found by the BIOS-area scan and FADT's 32-bit DSDT field is filled too).
 */
#ifndef RF_VMM_ACPI_TABLES_H
#define RF_VMM_ACPI_TABLES_H

#include <stddef.h>
#include <stdint.h>

struct acpi_mmio_dev {
	uint64_t base; /* guest-physical */
	uint32_t size;
	uint32_t gsi; /* IOAPIC input, below ACPI_IOAPIC_PINS */
};

#define ACPI_MAX_CPUS	   64
#define ACPI_MAX_MMIO_DEVS 32
#define ACPI_IOAPIC_PINS   24 /* KVM's in-kernel IOAPIC */
#define ACPI_IOAPIC_ADDR   0xfec00000u
#define ACPI_LAPIC_ADDR	   0xfee00000u
/* The 8250 UART the DSDT describes (COM1). */
#define ACPI_COM1_PORT 0x3f8
#define ACPI_COM1_IRQ  4
/* The I/O ports of the FADT's sleep and reset registers (one byte each). */
#define ACPI_SLEEP_CTL_PORT 0x604
#define ACPI_SLEEP_STS_PORT 0x605
#define ACPI_RESET_PORT	    0x606
#define ACPI_RESET_VALUE    0x0f
/* What the guest writes to the sleep control port to power off: SLP_TYP 5, SLP_EN. */
#define ACPI_SLEEP_S5_VALUE ((5 << 2) | (1 << 5))

struct acpi_config {
	unsigned ncpus; /* 1..ACPI_MAX_CPUS, APIC IDs 0..ncpus-1 */
	const struct acpi_mmio_dev *devs;
	unsigned ndevs; /* 0..ACPI_MAX_MMIO_DEVS */
};

/*
 * Builds the tables for guest-physical address @gpa into @buf (@cap bytes).
 * On success returns 0, sets *@used to the bytes written and *@rsdp_gpa to
 * the RSDP's address (== @gpa). -EINVAL for a bad configuration (no CPU, too
 * many, a device window above 4 GiB or overlapping another, a GSI out of
 * range or shared), -ENOSPC when @cap is too small, -ENOMEM.
 */
int acpi_tables_build(const struct acpi_config *cfg, uint64_t gpa, uint8_t *buf, size_t cap,
		      size_t *used, uint64_t *rsdp_gpa);

/* The byte that makes @len bytes at @p sum to 0 (mod 256) when stored in them. */
uint8_t acpi_checksum(const uint8_t *p, size_t len);

#endif
