/* SPDX-License-Identifier: MIT */
/*
 * A minimal real-mode KVM guest over library-owned RAM, for tests that need a
 * real vCPU writing guest memory (and KVM's MMU notifiers following the
 * library's remaps) without the demo VMM: one memory slot at gpa 0, one vCPU
 * starting at cs:ip = 0:0x1000.
 */
#ifndef RF_KVM_MINI_H
#define RF_KVM_MINI_H

#include <stdint.h>

#include <linux/kvm.h>

struct rf_kvm_mini {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	int run_size;
};

/* Create the VM over [@ram, @ram+@size) and its vCPU (asserts on failure). */
void rf_kvm_mini_setup(struct rf_kvm_mini *k, void *ram, uint64_t size);
/* Back to real mode at 0:0x1000. */
void rf_kvm_mini_reset(struct rf_kvm_mini *k);
/* Run until the guest writes port @port; returns the byte written. Any exit
 * but port I/O fails the test. */
uint8_t rf_kvm_mini_run_to_port(struct rf_kvm_mini *k, uint16_t port);
void rf_kvm_mini_teardown(struct rf_kvm_mini *k);

/*
 * The writer guest the racing tests load at 0x1000. Round r writes the value
 * r & 3 into the 32-bit word at offset RF_KVM_WRITER_WORD_OFF of each of the
 * RF_KVM_WRITER_NPAGES pages from RF_KVM_WRITER_FIRST_PAGE, then writes the
 * low byte of r+1 to port 0x10 and starts the next round:
 *	xor  %ebx,%ebx
 * round:
 *	mov  %ebx,%eax ; and $3,%eax        value of this round
 *	mov  $0x1000,%cx ; mov $128,%dx     es = 0x1000: page 0x10000
 * inner:
 *	mov  %cx,%es ; mov %eax,%es:64      the write
 *	add  $0x100,%cx ; dec %dx ; jnz inner
 *	inc  %ebx ; mov %bl,%al ; out %al,$0x10 ; jmp round
 */
#define RF_KVM_WRITER_NPAGES	 128
#define RF_KVM_WRITER_FIRST_PAGE 0x10000u
#define RF_KVM_WRITER_WORD_OFF	 64
extern const uint8_t rf_kvm_writer_guest[38];

/*
 * With the writer stopped at its port write after round @round: count the
 * pages that do not hold the round's value in their word and their template
 * everywhere else (template of page i at @tpl + i * @tpl_stride; stride 0
 * for one template shared by all). Pages lost, stale or merged wrongly all
 * show up here.
 */
unsigned int rf_kvm_writer_bad_pages(const uint8_t *ram, const uint8_t *tpl, size_t tpl_stride,
				     unsigned int round);

#endif
