/* SPDX-License-Identifier: MIT */
/*
 * The debug device at MMIO slot 0 (debug.c): the native guest's console,
 * exit, time and sleep. The core adds it to every VM before the modules'
 * devices.
 */
#ifndef VMM_DEVICES_DEBUG_H
#define VMM_DEVICES_DEBUG_H

#include <stdbool.h>
#include <stdint.h>

struct vmm_vm;

/* Put the device on the VM's bus at slot 0. 0 or -1 (message printed). */
int debug_dev_register(struct vmm_vm *vm);
/* Set by the debug device when the guest wrote RF_DBG_EXIT. */
bool debug_dev_exit_requested(struct vmm_vm *vm, uint64_t *status);

#endif
