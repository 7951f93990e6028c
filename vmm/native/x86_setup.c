/* SPDX-License-Identifier: MIT */
/*
 * Long mode at CPL 3 from the first instruction.
 *
 * Page tables (at RF_PGTABLE_GPA): PML4[0] -> PDPT; PDPT[i] -> one page
 * directory per GiB of RAM, 2 MiB pages; the first 2 MiB go through a 4 KiB
 * page table instead, so page 0 can stay unmapped (a NULL dereference
 * faults). PDPT[64] -> a directory mapping the MMIO window at 64 GiB. Every
 * entry has U/S set: the guest never runs in ring 0.
 *
 * The CPUID table must be set: without it KVM reports a 36-bit physical
 * address width and the MMIO window at 64 GiB faults as a reserved-bit
 * page fault (measured on kvm_pvm).
 */
#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/vmm.h"
#include "native/x86_setup.h"

#define PTE_P	  (1ull << 0)
#define PTE_RW	  (1ull << 1)
#define PTE_US	  (1ull << 2)
#define PTE_PS	  (1ull << 7)
#define PTE_FLAGS (PTE_P | PTE_RW | PTE_US)

#define PML4_GPA   (RF_PGTABLE_GPA)
#define PDPT_GPA   (RF_PGTABLE_GPA + 0x1000)
#define PT0_GPA	   (RF_PGTABLE_GPA + 0x2000)
#define PDMMIO_GPA (RF_PGTABLE_GPA + 0x3000)
#define PD_GPA(i)  (RF_PGTABLE_GPA + 0x4000 + (uint64_t)(i)*0x1000)

/* Segment selectors: 0x08/0x10 kernel (unused), 0x18 user code, 0x20 user data, 0x28 TSS. */
#define SEL_UCODE (0x18 | 3)
#define SEL_UDATA (0x20 | 3)
#define SEL_TSS	  0x28

_Static_assert(RF_MAX_RAM / (1ull << 30) <= 64, "page directories must fit below the stack");
_Static_assert(PD_GPA(64) <= RF_STACK_TOP - 0x40000, "page tables overlap the stack");

void x86_build_tables(uint8_t *ram, uint64_t ram_bytes)
{
	uint64_t *pml4 = (uint64_t *)(ram + PML4_GPA), *pdpt = (uint64_t *)(ram + PDPT_GPA);
	uint64_t *pt0 = (uint64_t *)(ram + PT0_GPA), *pdm = (uint64_t *)(ram + PDMMIO_GPA);
	uint64_t *gdt = (uint64_t *)(ram + RF_GDT_GPA);
	uint64_t npd = (ram_bytes + (1ull << 30) - 1) >> 30, tss = RF_TSS_GPA;

	pml4[0] = PDPT_GPA | PTE_FLAGS;
	for (uint64_t i = 0; i < npd; i++) {
		uint64_t *pd = (uint64_t *)(ram + PD_GPA(i));

		pdpt[i] = PD_GPA(i) | PTE_FLAGS;
		for (uint64_t k = 0; k < 512; k++) {
			uint64_t gpa = (i << 30) + (k << 21);

			if (gpa < ram_bytes)
				pd[k] = gpa | PTE_FLAGS | PTE_PS;
		}
	}
	/* First 2 MiB in 4 KiB pages, page 0 left out. */
	((uint64_t *)(ram + PD_GPA(0)))[0] = PT0_GPA | PTE_FLAGS;
	for (uint64_t k = 1; k < 512; k++)
		pt0[k] = (k << 12) | PTE_FLAGS;
	pdpt[RF_MMIO_BASE >> 30] = PDMMIO_GPA | PTE_FLAGS;
	pdm[0] = RF_MMIO_BASE | PTE_FLAGS | PTE_PS;

	gdt[0] = 0;
	gdt[1] = 0x00af9b000000ffffull; /* kernel code, 64-bit */
	gdt[2] = 0x00cf93000000ffffull; /* kernel data */
	gdt[3] = 0x00affb000000ffffull; /* user code, 64-bit, DPL 3 */
	gdt[4] = 0x00cff3000000ffffull; /* user data, DPL 3 */
	/* 64-bit TSS descriptor (16 bytes), limit 0x67, type 0xb (busy). */
	gdt[5] = 0x67 | (tss & 0xffffff) << 16 | 0x8bull << 40 | (tss >> 24 & 0xff) << 56;
	gdt[6] = tss >> 32;
}

struct kvm_segment x86_flat_seg(uint16_t sel, uint8_t type, bool code, uint8_t dpl)
{
	return (struct kvm_segment){
	    .base = 0,
	    .limit = 0xffffffff,
	    .selector = sel,
	    .type = type,
	    .present = 1,
	    .dpl = dpl,
	    .db = code ? 0 : 1,
	    .s = 1,
	    .l = code ? 1 : 0,
	    .g = 1,
	};
}

int x86_setup_vcpu(struct vmm *vmm, struct vmm_vm *vm, uint64_t entry)
{
	struct kvm_sregs s;
	struct kvm_regs r;

	if (ioctl(vm->vcpufd, KVM_SET_CPUID2, vmm->cpuid)) {
		vmm_errorf("%s: KVM_SET_CPUID2: %s", vm->name, strerror(errno));
		return -1;
	}
	if (ioctl(vm->vcpufd, KVM_GET_SREGS, &s)) {
		vmm_errorf("%s: KVM_GET_SREGS: %s", vm->name, strerror(errno));
		return -1;
	}
	s.cr0 = 0x80000011 | (1u << 5) | (1u << 16); /* PG, ET, PE, NE, WP */
	s.cr3 = PML4_GPA;
	s.cr4 = 1u << 5;		 /* PAE */
	s.efer = (1u << 8) | (1u << 10); /* LME, LMA */
	s.gdt.base = RF_GDT_GPA;
	s.gdt.limit = 7 * 8 - 1;
	s.idt.base = 0;
	s.idt.limit = 0; /* no IDT: any exception is a triple fault */
	s.cs = x86_flat_seg(SEL_UCODE, 0xb, true, 3);
	s.ds = s.es = s.fs = s.gs = s.ss = x86_flat_seg(SEL_UDATA, 0x3, false, 3);
	s.tr = (struct kvm_segment){
	    .base = RF_TSS_GPA, .limit = 0x67, .selector = SEL_TSS, .type = 0xb, .present = 1};
	if (ioctl(vm->vcpufd, KVM_SET_SREGS, &s)) {
		vmm_errorf("%s: KVM_SET_SREGS: %s", vm->name, strerror(errno));
		return -1;
	}
	memset(&r, 0, sizeof(r));
	r.rip = entry;
	r.rsp = RF_STACK_TOP;
	r.rdi = RF_BOOTINFO_GPA;
	r.rflags = 0x2 | (3u << 12); /* IOPL 3: port I/O where the hypervisor honours it */
	if (ioctl(vm->vcpufd, KVM_SET_REGS, &r)) {
		vmm_errorf("%s: KVM_SET_REGS: %s", vm->name, strerror(errno));
		return -1;
	}
	return 0;
}

uint64_t x86_guest_rip(struct vmm_vm *vm)
{
	struct kvm_regs r;

	return ioctl(vm->vcpufd, KVM_GET_REGS, &r) ? 0 : r.rip;
}
