/* SPDX-License-Identifier: MIT */
/* VM lifecycle, the vCPU loop and the debug device: the VMM's own plumbing,
 * not an extension interface (that is vmm.h). */
#ifndef VMM_VM_INTERNAL_H
#define VMM_VM_INTERNAL_H

#include "vmm.h"

/* vm.c */
int vm_setup(struct vmm *vmm, struct vmm_vm *vm); /* 0 or -1 (message printed) */
int vm_start(struct vmm_vm *vm);		  /* start the vCPU thread */
void vm_join(struct vmm_vm *vm);		  /* wait for the vCPU thread */
void vm_destroy(struct vmm_vm *vm);		  /* KVM fds, bus, RAM, log */
int vm_open_console(struct vmm_vm *vm);		  /* the per-VM log file */
void vm_remove_console(struct vmm_vm *vm);	  /* close and delete it (setup failed) */

/* vcpu.c */
void *vcpu_thread(void *arg);
void vcpu_signal_init(void);
/* End the VM with @state and a reason (vCPU thread). */
void vm_end(struct vmm_vm *vm, enum vmm_vm_state state, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* debug_dev.c */
int debug_dev_register(struct vmm_vm *vm);
/* Set by the debug device when the guest wrote RF_DBG_EXIT. */
bool debug_dev_exit_requested(struct vmm_vm *vm, uint64_t *status);
/* One console line from the guest or the VMM, to the log and maybe stdout. */
void console_line(struct vmm_vm *vm, const char *line);

#endif
