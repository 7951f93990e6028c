/* SPDX-License-Identifier: MIT */
/* VM lifecycle and the vCPU loop: the VMM's own plumbing, not an extension
 * interface (that is core/module.h). */
#ifndef VMM_VM_INTERNAL_H
#define VMM_VM_INTERNAL_H

#include "core/vmm.h"

/* vm.c */
int vm_setup(struct vmm *vmm, struct vmm_vm *vm); /* 0 or -1 (message printed) */
int vm_start(struct vmm_vm *vm);		  /* start the vCPU thread */
void vm_join(struct vmm_vm *vm);		  /* wait for the vCPU thread */
void vm_destroy(struct vmm_vm *vm);		  /* KVM fds, bus, RAM, log */

/* vcpu.c */
void *vcpu_thread(void *arg);
void vcpu_signal_init(void);
/* End the VM with @state and a reason (vCPU thread). */
void vm_end(struct vmm_vm *vm, enum vmm_vm_state state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
