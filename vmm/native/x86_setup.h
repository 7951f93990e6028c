/* SPDX-License-Identifier: MIT */
/*
 * 64-bit CPU setup for the freestanding guest: identity page tables with the
 * user bit set, a GDT with user code/data segments and a TSS, and the vCPU
 * registers for starting directly in long mode at CPL 3 (see
 * guest/bootinfo.h for the memory map). A Linux boot path would add its own
 * setup next to this one (ring 0, its own page tables), not change it.
 */
#ifndef VMM_X86_SETUP_H
#define VMM_X86_SETUP_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

struct vmm;
struct vmm_vm;

/* Bytes below the guest image used by tables, boot-info and stack. */
#define X86_LOW_BYTES RF_IMAGE_GPA

/* Write the page tables, GDT and TSS into guest RAM. RAM must be a multiple
 * of 2 MiB and below RF_MAX_RAM. */
void x86_build_tables(uint8_t *ram, uint64_t ram_bytes);

/* CPUID, special and general registers of the VM's vCPU: rip = @entry,
 * rsp = RF_STACK_TOP, rdi = boot-info. 0 or -1 (message printed). */
int x86_setup_vcpu(struct vmm *vmm, struct vmm_vm *vm, uint64_t entry);

/* A flat 4 GiB long-mode segment at privilege @dpl: 64-bit code (@code) or
 * data, for the freestanding guest (CPL 3) and the Linux entry (CPL 0). */
struct kvm_segment x86_flat_seg(uint16_t sel, uint8_t type, bool code, uint8_t dpl);

/* Guest rip, for fault messages (0 if it cannot be read). */
uint64_t x86_guest_rip(struct vmm_vm *vm);

#endif
