/* SPDX-License-Identifier: MIT */
/*
 * Linux guests (--kernel): see linux.c. What devices need from it.
 */
#ifndef VMM_LINUX_GUEST_H
#define VMM_LINUX_GUEST_H

#include <stdint.h>

struct vmm_vm;

/*
 * Raise the interrupt of the virtio-mmio device whose window starts at
 * @mmio_base (an edge on its IOAPIC pin, through its irqfd). Any thread.
 * 0 (also for a native guest, which polls and has no interrupts), -ENOENT
 * for an unknown window, or -errno of the eventfd write.
 */
int linux_guest_irq(struct vmm_vm *vm, uint64_t mmio_base);

#endif
