/* SPDX-License-Identifier: MIT */
/*
 * Entry point. The VMM starts the vCPU here in 64-bit mode at CPL 3 with
 * %rsp = RF_STACK_TOP and %rdi = the boot-info page; guest_main() never
 * returns, the ud2 after it only makes a bug visible as a fault.
 */
	.section .text.start, "ax"
	.globl _start
_start:
	andq	$-16, %rsp
	xorl	%ebp, %ebp
	call	guest_main
	ud2
	.section .note.GNU-stack, "", @progbits
