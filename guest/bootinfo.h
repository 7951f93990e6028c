/* SPDX-License-Identifier: MIT */
/*
 * The contract between the demo VMM and its freestanding guest: the
 * guest-physical memory map, the boot-info page the VMM fills before the
 * first instruction, and the debug device's registers. Included by both
 * sides (the guest is built freestanding, so only fixed-width types here).
 *
 * Guest-physical memory map (identity-mapped, user-accessible):
 *
 *   0x0000_0000  page 0: not mapped, so a NULL dereference faults
 *   0x0000_1000  boot-info page (struct rf_bootinfo), written by the VMM
 *   0x0000_2000  GDT and TSS
 *   0x0000_3000  page tables (PML4, PDPT, PT of the first 2 MiB, PDs)
 *   0x0008_0000  stack, 512 KiB, grows down from 0x10_0000
 *   0x0010_0000  the guest image (ELF, linked here)
 *   free_start   preload area (osimage files), then memory the guest manages
 *   ram_bytes    end of RAM
 *   0x10_0000_0000 (64 GiB) the MMIO window: slot 0 is the debug device,
 *                slots 1.. are virtio-mmio devices, one 4 KiB slot each
 *
 * Why MMIO and not port I/O for the debug device: on kvm_pvm an IN/OUT at
 * CPL 3 raises #GP whatever IOPL says (measured), while an access to a
 * guest-physical address without a memory slot exits to the VMM as
 * KVM_EXIT_MMIO on every KVM flavour.
 */
#ifndef RF_GUEST_BOOTINFO_H
#define RF_GUEST_BOOTINFO_H

#include <stdint.h>

#define RF_BOOTINFO_GPA	  0x1000ull
#define RF_GDT_GPA	  0x2000ull
#define RF_TSS_GPA	  0x2800ull
#define RF_PGTABLE_GPA	  0x3000ull
#define RF_STACK_TOP	  0x100000ull
#define RF_IMAGE_GPA	  0x100000ull
#define RF_MMIO_BASE	  0x1000000000ull /* 64 GiB: RAM must end below it */
#define RF_MMIO_SLOT_SIZE 0x1000ull
#define RF_MMIO_SLOTS	  64
#define RF_DEBUG_DEV_GPA  RF_MMIO_BASE
#define RF_MAX_RAM	  RF_MMIO_BASE

#define RF_BOOTINFO_MAGIC   0x4f4f42444c4f4652ull /* "RFOLDBOO" */
#define RF_BOOTINFO_VERSION 2

/* Debug device registers (64-bit accesses at RF_DEBUG_DEV_GPA + offset). */
#define RF_DBG_CONSOLE	    0x00 /* W: gpa of a NUL-terminated line (max 255 chars) */
#define RF_DBG_EXIT	    0x08 /* W: guest is done; the value is its exit status */
#define RF_DBG_TIME_NS	    0x10 /* R: host CLOCK_MONOTONIC in ns */
#define RF_DBG_SLEEP_US	    0x18 /* W: sleep this long (capped at 1 s; cut short on stop) */
#define RF_DBG_MAGIC	    0x20 /* R: RF_DBG_MAGIC_VALUE */
#define RF_DBG_STOP	    0x28 /* R: 1 when the VMM asks the guest to stop */
#define RF_DBG_MAGIC_VALUE  0x4742444f464652ull /* "RFFODBG" */
#define RF_CONSOLE_LINE_MAX 256

enum rf_workload {
	RF_WL_IDLE = 1,
	RF_WL_DUP,
	RF_WL_OSIMAGE,
	RF_WL_MEMCHECK,
	RF_WL_CHURN,
	RF_WL_HOTCOLD,
	RF_WL_CRASH,
	RF_WL_SELFTEST,
};

/* How the crash workload fails (tests of fault isolation). */
enum rf_crash_kind {
	RF_CRASH_PAGEFAULT = 1, /* write to page 0: #PF, no IDT, triple fault */
	RF_CRASH_BADMMIO,	/* write to an MMIO slot nobody registered */
	RF_CRASH_UD,		/* ud2 */
	RF_CRASH_EXIT,		/* exit status @arg through the debug device */
	RF_CRASH_BADCONSOLE,	/* console lines the VMM must refuse or clean, then exit 0 */
};

enum rf_device_kind {
	RF_DEV_VIRTIO_MMIO = 1,
};

struct rf_bootinfo_device {
	uint64_t base; /* guest-physical */
	uint64_t size;
	uint32_t kind;	    /* enum rf_device_kind */
	uint32_t device_id; /* virtio device id (5 = balloon), informational */
};

#define RF_BOOTINFO_MAX_DEVICES 16

/*
 * Workload parameters: the VMM validates them (see docs/vmm.md for which
 * workload reads which) and passes 0 for "not given", except where noted.
 */
struct rf_wl_params {
	uint64_t mib; /* memory the workload works on */
	uint64_t seed;
	uint64_t dup_pct;   /* dup: share of pages that are copies of a template */
	uint64_t zero_pct;  /* dup: share of all-zero pages; the rest is unique */
	uint64_t templates; /* dup: distinct duplicate contents */
	uint64_t rounds;    /* memcheck/hotcold/churn: 0 = forever */
	uint64_t hot_mib;   /* hotcold */
	uint64_t pause_ms;  /* churn: between waves; osimage: passes; idle: wake-ups */
	uint64_t crash;	    /* crash: enum rf_crash_kind */
	uint64_t arg;	    /* crash: exit status */
	uint64_t then_exit; /* 1: exit when the workload is done, 0: idle */
	uint64_t report_s;  /* idle: print the memory manager's figures every N s */
	uint64_t hot_ro;    /* hotcold: 1 = the hot set is only read, never written */
	uint64_t stream;    /* hotcold: cold pages read after each hot pass, in order */
	uint64_t reserved[2];
};

struct rf_bootinfo {
	uint64_t magic;
	uint32_t version;
	uint32_t size; /* sizeof(struct rf_bootinfo) */
	char name[32]; /* VM name, NUL-terminated */
	uint64_t ram_bytes;
	uint64_t free_start;	/* first byte the guest memory manager owns */
	uint64_t preload_gpa;	/* osimage files, page-aligned, in file order */
	uint64_t preload_bytes; /* page-rounded total */
	uint64_t preload_files;
	uint64_t preload_data_bytes; /* file bytes without the page padding */
	uint32_t workload;	     /* enum rf_workload */
	uint32_t nr_devices;
	struct rf_wl_params p;
	struct rf_bootinfo_device devices[RF_BOOTINFO_MAX_DEVICES];
	/*
	 * The one field the guest writes (the VMM zeroes it and reads it at any
	 * time, for query-vms): the bytes of memory its workload has worked
	 * through since READY, counted as it goes (memcheck: verified and
	 * rewritten; hotcold: hot set read and written; churn: written by its
	 * waves; osimage with pause=: read by its checksum passes; idle with
	 * pause=: a page per wake-up on time; dup leaves it 0), so that the
	 * host can sample the guest's own work rate.
	 * It only grows, and the guest stores it whole with one aligned 64-bit
	 * store: a reader sees an old value or a new one, never a mix.
	 */
	uint64_t work_bytes;
};

#endif
