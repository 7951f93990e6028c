/* SPDX-License-Identifier: MIT */
/*
 * The per-VM MMIO bus: guest-physical windows that are not RAM, each routed
 * to a device's read/write handlers. A KVM_EXIT_MMIO is looked up here; an
 * access that hits no window ends the VM ("unknown MMIO address").
 *
 * Windows live in the MMIO window above RAM (RF_MMIO_BASE, see
 * guest/bootinfo.h), one 4 KiB slot per device: slot 0 is the debug device,
 * slots 1.. are handed out by vmm_vm_add_mmio_device() (core/vmm.h), which also
 * lists the device in the guest's boot-info page.
 *
 * Threads: windows are registered during VM setup, before the vCPU runs, and
 * never removed while it runs; handlers are called on the VM's vCPU thread
 * only. A handler that shares state with other threads (the control socket,
 * a library callback) locks it itself.
 */
#ifndef VMM_MMIO_BUS_H
#define VMM_MMIO_BUS_H

#include <stdbool.h>
#include <stdint.h>

struct mmio_bus;

struct mmio_ops {
	/*
	 * @offset is relative to the window's base, @len is 1, 2, 4 or 8 and
	 * @offset + @len lies inside the window. A read fills @data (little
	 * endian, @len bytes). Return 0, or a negative errno to end the VM
	 * (only for a broken device, never for a bad guest access: a device
	 * answers those as its spec says, e.g. reads as 0, writes ignored).
	 */
	int (*read)(void *opaque, uint64_t offset, void *data, unsigned len);
	int (*write)(void *opaque, uint64_t offset, const void *data, unsigned len);
	/* Called when the bus is freed (VM teardown). May be NULL. */
	void (*destroy)(void *opaque);
};

#define MMIO_BUS_MAX_WINDOWS 64

struct mmio_bus *mmio_bus_new(void);
/* Calls every window's destroy(); NULL is accepted. */
void mmio_bus_free(struct mmio_bus *bus);

/* Route [@base, @base+@size) to @ops. -EINVAL (size 0 or wraps), -EEXIST
 * (overlap), -ENOSPC (full). @name is copied (for messages). */
int mmio_bus_register(struct mmio_bus *bus, uint64_t base, uint64_t size,
		      const struct mmio_ops *ops, void *opaque, const char *name);

/*
 * Dispatch one access. Returns 0, -ENOENT when no window covers
 * [@addr, @addr+@len), -EINVAL for a length other than 1/2/4/8, or the
 * handler's error. On -ENOENT a read's @data is zeroed.
 */
int mmio_bus_access(struct mmio_bus *bus, uint64_t addr, void *data, unsigned len, bool write);

/* Name of the window covering @addr, or NULL. */
const char *mmio_bus_window_name(const struct mmio_bus *bus, uint64_t addr);

#endif
