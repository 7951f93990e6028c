/* SPDX-License-Identifier: MIT */
/*
 * Per-VM devices. devices.c holds the list of device setup functions, called
 * in order for every VM after its RAM is mapped and loaded and before its
 * vCPU runs; so slot numbers (and so the guest-physical addresses the guest
 * sees) are the same for every VM and every run. A setup function creates
 * its device and calls vmm_vm_add_mmio_device() (vmm.h); the device is torn
 * down through its mmio_ops.destroy when the VM is freed.
 */
#ifndef VMM_DEVICES_H
#define VMM_DEVICES_H

struct vmm_vm;

/* Returns 0, or non-zero after printing one clear line (vmm_errorf). */
typedef int (*vmm_device_setup_fn)(struct vmm_vm *vm);

int vmm_devices_setup(struct vmm_vm *vm);

int balloon_dev_setup(struct vmm_vm *vm); /* vmm/balloon_dev.c */

#endif
