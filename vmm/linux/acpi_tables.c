/* SPDX-License-Identifier: MIT */
/*
 * ACPI tables for Linux guests; see acpi_tables.h. Layouts are those of the
 * ACPI specification 6.5: RSDP 5.2.5, table header 5.2.6, XSDT 5.2.8, FADT
 * 5.2.9 (revision 6, 276 bytes), MADT 5.2.12, DSDT 5.2.11.1.
 *
 * Layout in the buffer: RSDP (36 bytes, at offset 0, 16-byte aligned), then
 * XSDT, FADT, MADT and DSDT, each 8-byte aligned. Every table's checksum
 * makes its bytes sum to 0; the RSDP has two (first 20 bytes, all 36).
 */
#include "linux/acpi_tables.h"

#include "linux/acpi_aml.h"
#include "linux/le.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#define ACPI_OEM_ID	  "RAMFLD"
#define ACPI_OEM_TABLE_ID "RFVMM   "
#define ACPI_CREATOR_ID	  "RFLD"
#define ACPI_HDR_LEN	  36
#define FADT_LEN	  276

/* FADT field offsets (5.2.9, table 5.9). */
enum {
	FADT_DSDT = 40,
	FADT_IAPC_BOOT_ARCH = 109,
	FADT_FLAGS = 112,
	FADT_RESET_REG = 116,
	FADT_RESET_VALUE = 128,
	FADT_MINOR_VERSION = 131,
	FADT_X_DSDT = 140,
	FADT_SLEEP_CONTROL_REG = 244,
	FADT_SLEEP_STATUS_REG = 256,
	FADT_HYPERVISOR_VENDOR = 268,
};

/* FADT flags (table 5.10) and IA-PC boot architecture flags (table 5.11). */
#define FADT_F_PWR_BUTTON      (1u << 4) /* no fixed power button */
#define FADT_F_SLP_BUTTON      (1u << 5) /* no fixed sleep button */
#define FADT_F_RESET_REG_SUP   (1u << 10)
#define FADT_F_HW_REDUCED_ACPI (1u << 20)
#define IAPC_VGA_NOT_PRESENT   (1u << 2)
#define IAPC_CMOS_RTC_ABSENT   (1u << 5)
/* 8042 (bit 1) left clear: no keyboard controller, so Linux does not probe one. */

/* MADT structure types (table 5.21). */
enum {
	MADT_LOCAL_APIC = 0,
	MADT_IO_APIC = 1,
	MADT_INT_SRC_OVERRIDE = 2,
	MADT_LOCAL_APIC_NMI = 4,
};
#define MADT_PCAT_COMPAT 1u /* dual 8259 present (KVM's PIC): Linux masks it */

uint8_t acpi_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	for (size_t i = 0; i < len; i++)
		sum += p[i];
	return (uint8_t)-sum;
}

static void put_header(uint8_t *t, const char sig[4], uint32_t len, uint8_t rev)
{
	memcpy(t, sig, 4);
	put_le(t + 4, len, 4);
	t[8] = rev;
	t[9] = 0; /* checksum, filled last */
	memcpy(t + 10, ACPI_OEM_ID, 6);
	memcpy(t + 16, ACPI_OEM_TABLE_ID, 8);
	put_le(t + 24, 1, 4); /* OEM revision */
	memcpy(t + 28, ACPI_CREATOR_ID, 4);
	put_le(t + 32, 1, 4); /* creator revision */
}

static void seal(uint8_t *t, size_t len)
{
	t[9] = 0;
	t[9] = acpi_checksum(t, len);
}

/* Generic Address Structure (5.2.3.2) for a one-byte register in I/O space. */
static void put_gas_io8(uint8_t *p, uint16_t port)
{
	p[0] = 1; /* System I/O */
	p[1] = 8; /* bit width */
	p[2] = 0; /* bit offset */
	p[3] = 1; /* access size: byte */
	put_le(p + 4, port, 8);
}

static size_t align_up(size_t v, size_t a)
{
	return (v + a - 1) & ~(a - 1);
}

static int check_config(const struct acpi_config *cfg)
{
	if (cfg->ncpus < 1 || cfg->ncpus > ACPI_MAX_CPUS || cfg->ndevs > ACPI_MAX_MMIO_DEVS ||
	    (cfg->ndevs && !cfg->devs))
		return -EINVAL;
	for (unsigned i = 0; i < cfg->ndevs; i++) {
		const struct acpi_mmio_dev *d = &cfg->devs[i];

		if (!d->size || d->base + d->size < d->base || d->gsi >= ACPI_IOAPIC_PINS ||
		    d->gsi < 16)
			return -EINVAL;
		for (unsigned j = 0; j < i; j++) {
			const struct acpi_mmio_dev *e = &cfg->devs[j];

			if (d->gsi == e->gsi ||
			    (d->base < e->base + e->size && e->base < d->base + d->size))
				return -EINVAL;
		}
	}
	return 0;
}

/*
 * DSDT body:
 *   Scope (\_SB) { Device (VR00) { Name (_HID, "LNRO0005") Name (_UID, 0)
 *       Name (_CRS, ResourceTemplate () { Memory32Fixed (ReadWrite, base, size)
 *           (a QWordMemory descriptor instead for a window above 4 GiB)
 *           Interrupt (ResourceConsumer, Edge, ActiveHigh, Exclusive) { gsi } }) } ... }
 *   Name (\_S5, Package () { 5, 0 })
 * Edge-triggered: an irqfd delivers a pulse, and the driver reads and
 * acknowledges the interrupt status on every interrupt, so none is lost.
 */
static int build_dsdt_aml(const struct acpi_config *cfg, struct aml_buf *out)
{
	struct aml_buf sb, s5;
	int err;

	aml_buf_init(&sb);
	for (unsigned i = 0; i < cfg->ndevs; i++) {
		const struct acpi_mmio_dev *d = &cfg->devs[i];
		struct aml_buf dev, crs;
		char name[5];

		aml_buf_init(&dev);
		aml_buf_init(&crs);
		snprintf(name, sizeof(name), "VR%02X", i & 0xff);
		aml_name_string(&dev, "_HID", "LNRO0005");
		aml_name_integer(&dev, "_UID", i);
		if (d->base + d->size <= 1ull << 32)
			aml_res_memory32_fixed(&crs, (uint32_t)d->base, d->size, 1);
		else
			aml_res_qword_memory(&crs, d->base, d->size, 1);
		aml_res_interrupt(&crs, AML_IRQ_CONSUMER | AML_IRQ_EDGE, d->gsi);
		aml_res_end(&crs);
		{
			struct aml_buf buf;

			aml_buf_init(&buf);
			aml_buffer(&buf, crs.data, crs.len);
			if (crs.err && !buf.err)
				buf.err = crs.err;
			aml_name(&dev, "_CRS", &buf);
			aml_buf_free(&buf);
		}
		aml_device_wrap(&sb, name, &dev);
		aml_buf_free(&crs);
		aml_buf_free(&dev);
	}
	/*
	 * COM1 (the UART on 0x3f8), so that the 8250 driver gets IRQ 4: with
	 * hardware-reduced ACPI, Linux sets up no legacy IRQs of its own, only
	 * those a device's _CRS names.
	 *   Device (COM1) { Name (_HID, EisaId ("PNP0501")) Name (_UID, 0)
	 *       Name (_CRS, ResourceTemplate () { IO (Decode16, 0x3F8, 0x3F8, 1, 8)
	 *           IRQNoFlags () { 4 } }) }
	 */
	{
		struct aml_buf dev, hid, crs, buf;

		aml_buf_init(&dev);
		aml_buf_init(&hid);
		aml_buf_init(&crs);
		aml_buf_init(&buf);
		aml_eisaid(&hid, "PNP0501");
		aml_name(&dev, "_HID", &hid);
		aml_name_integer(&dev, "_UID", 0);
		aml_res_io(&crs, ACPI_COM1_PORT, 8);
		aml_res_irq_noflags(&crs, ACPI_COM1_IRQ);
		aml_res_end(&crs);
		aml_buffer(&buf, crs.data, crs.len);
		if (crs.err && !buf.err)
			buf.err = crs.err;
		aml_name(&dev, "_CRS", &buf);
		aml_device_wrap(&sb, "COM1", &dev);
		aml_buf_free(&buf);
		aml_buf_free(&crs);
		aml_buf_free(&hid);
		aml_buf_free(&dev);
	}
	aml_scope_wrap(out, "\\_SB_", &sb);
	aml_buf_init(&s5);
	aml_integer(&s5, 5);
	aml_integer(&s5, 0);
	{
		struct aml_buf pkg;

		aml_buf_init(&pkg);
		aml_package_wrap(&pkg, 2, &s5);
		aml_name(out, "\\_S5_", &pkg);
		aml_buf_free(&pkg);
	}
	err = out->err;
	aml_buf_free(&s5);
	aml_buf_free(&sb);
	return err;
}

int acpi_tables_build(const struct acpi_config *cfg, uint64_t gpa, uint8_t *buf, size_t cap,
		      size_t *used, uint64_t *rsdp_gpa)
{
	size_t xsdt_off, fadt_off, madt_off, dsdt_off, madt_len, xsdt_len, dsdt_len, end;
	struct aml_buf aml;
	uint8_t *t;
	int err;

	if (!cfg || !buf || !used || !rsdp_gpa || (gpa & 15))
		return -EINVAL;
	err = check_config(cfg);
	if (err)
		return err;
	aml_buf_init(&aml);
	err = build_dsdt_aml(cfg, &aml);
	if (err) {
		aml_buf_free(&aml);
		return err;
	}

	xsdt_len = ACPI_HDR_LEN + 2 * 8;
	madt_len = ACPI_HDR_LEN + 8 + 8 * cfg->ncpus + 12 + 10 + 6;
	dsdt_len = ACPI_HDR_LEN + aml.len;
	xsdt_off = align_up(36, 8);
	fadt_off = align_up(xsdt_off + xsdt_len, 8);
	madt_off = align_up(fadt_off + FADT_LEN, 8);
	dsdt_off = align_up(madt_off + madt_len, 8);
	end = dsdt_off + dsdt_len;
	if (end > cap || gpa + end > 1ull << 32) {
		aml_buf_free(&aml);
		return -ENOSPC;
	}
	memset(buf, 0, end);

	/* DSDT */
	t = buf + dsdt_off;
	put_header(t, "DSDT", (uint32_t)dsdt_len, 2);
	memcpy(t + ACPI_HDR_LEN, aml.data, aml.len);
	seal(t, dsdt_len);
	aml_buf_free(&aml);

	/* MADT: local APIC address and flags, then the interrupt controller structures. */
	t = buf + madt_off;
	put_header(t, "APIC", (uint32_t)madt_len, 5);
	put_le(t + 36, ACPI_LAPIC_ADDR, 4);
	put_le(t + 40, MADT_PCAT_COMPAT, 4);
	{
		uint8_t *e = t + 44;

		for (unsigned i = 0; i < cfg->ncpus; i++, e += 8) {
			e[0] = MADT_LOCAL_APIC;
			e[1] = 8;
			e[2] = (uint8_t)i;   /* ACPI processor UID */
			e[3] = (uint8_t)i;   /* APIC ID */
			put_le(e + 4, 1, 4); /* enabled */
		}
		e[0] = MADT_IO_APIC;
		e[1] = 12;
		e[2] = 0; /* IOAPIC ID */
		put_le(e + 4, ACPI_IOAPIC_ADDR, 4);
		put_le(e + 8, 0, 4); /* GSI base */
		e += 12;
		/* The PIT's IRQ 0 arrives on IOAPIC pin 2 in KVM, as on a PC. */
		e[0] = MADT_INT_SRC_OVERRIDE;
		e[1] = 10;
		e[2] = 0; /* ISA */
		e[3] = 0; /* source IRQ */
		put_le(e + 4, 2, 4);
		put_le(e + 8, 0, 2); /* conforms to the bus: edge, active high */
		e += 10;
		/* LINT1 of every processor is NMI. */
		e[0] = MADT_LOCAL_APIC_NMI;
		e[1] = 6;
		e[2] = 0xff; /* all processors */
		put_le(e + 3, 0, 2);
		e[5] = 1; /* LINT1 */
	}
	seal(t, madt_len);

	/* FADT: hardware-reduced, sleep/reset registers on I/O ports, DSDT pointers. */
	t = buf + fadt_off;
	put_header(t, "FACP", FADT_LEN, 6);
	put_le(t + FADT_DSDT, gpa + dsdt_off, 4);
	put_le(t + FADT_IAPC_BOOT_ARCH, IAPC_VGA_NOT_PRESENT | IAPC_CMOS_RTC_ABSENT, 2);
	put_le(t + FADT_FLAGS,
	       FADT_F_HW_REDUCED_ACPI | FADT_F_RESET_REG_SUP | FADT_F_PWR_BUTTON |
		   FADT_F_SLP_BUTTON,
	       4);
	put_gas_io8(t + FADT_RESET_REG, ACPI_RESET_PORT);
	t[FADT_RESET_VALUE] = ACPI_RESET_VALUE;
	t[FADT_MINOR_VERSION] = 5;
	put_le(t + FADT_X_DSDT, gpa + dsdt_off, 8);
	put_gas_io8(t + FADT_SLEEP_CONTROL_REG, ACPI_SLEEP_CTL_PORT);
	put_gas_io8(t + FADT_SLEEP_STATUS_REG, ACPI_SLEEP_STS_PORT);
	memcpy(t + FADT_HYPERVISOR_VENDOR, "RAMFOLD ", 8);
	seal(t, FADT_LEN);

	/* XSDT: the FADT and the MADT. */
	t = buf + xsdt_off;
	put_header(t, "XSDT", (uint32_t)xsdt_len, 1);
	put_le(t + 36, gpa + fadt_off, 8);
	put_le(t + 44, gpa + madt_off, 8);
	seal(t, xsdt_len);

	/* RSDP (revision 2): checksum over the first 20 bytes, extended over all 36. */
	t = buf;
	memcpy(t, "RSD PTR ", 8);
	memcpy(t + 9, ACPI_OEM_ID, 6);
	t[15] = 2;
	put_le(t + 16, 0, 4); /* no RSDT */
	put_le(t + 20, 36, 4);
	put_le(t + 24, gpa + xsdt_off, 8);
	t[8] = acpi_checksum(t, 20);
	t[32] = acpi_checksum(t, 36);

	*used = end;
	*rsdp_gpa = gpa;
	return 0;
}
