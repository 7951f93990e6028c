/* SPDX-License-Identifier: MIT */
/* The per-VM MMIO bus: a short array of windows, searched linearly (a VM has
 * a handful of devices; a binary search would not be measurably faster). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "devices/mmio_bus.h"

struct mmio_window {
	uint64_t base, size;
	const struct mmio_ops *ops;
	void *opaque;
	char name[32];
};

struct mmio_bus {
	struct mmio_window w[MMIO_BUS_MAX_WINDOWS];
	unsigned n;
};

struct mmio_bus *mmio_bus_new(void)
{
	return calloc(1, sizeof(struct mmio_bus));
}

void mmio_bus_free(struct mmio_bus *bus)
{
	if (!bus)
		return;
	for (unsigned i = 0; i < bus->n; i++)
		if (bus->w[i].ops->destroy)
			bus->w[i].ops->destroy(bus->w[i].opaque);
	free(bus);
}

int mmio_bus_register(struct mmio_bus *bus, uint64_t base, uint64_t size,
		      const struct mmio_ops *ops, void *opaque, const char *name)
{
	struct mmio_window *w;

	if (!bus || !ops || !size || base + size < base)
		return -EINVAL;
	for (unsigned i = 0; i < bus->n; i++)
		if (base < bus->w[i].base + bus->w[i].size && bus->w[i].base < base + size)
			return -EEXIST;
	if (bus->n == MMIO_BUS_MAX_WINDOWS)
		return -ENOSPC;
	w = &bus->w[bus->n++];
	w->base = base;
	w->size = size;
	w->ops = ops;
	w->opaque = opaque;
	snprintf(w->name, sizeof(w->name), "%s", name ? name : "device");
	return 0;
}

static struct mmio_window *find(const struct mmio_bus *bus, uint64_t addr, unsigned len)
{
	for (unsigned i = 0; i < bus->n; i++) {
		const struct mmio_window *w = &bus->w[i];

		if (addr >= w->base && addr - w->base < w->size &&
		    len <= w->size - (addr - w->base))
			return (struct mmio_window *)w;
	}
	return NULL;
}

int mmio_bus_access(struct mmio_bus *bus, uint64_t addr, void *data, unsigned len, bool write)
{
	struct mmio_window *w;

	if (len != 1 && len != 2 && len != 4 && len != 8)
		return -EINVAL;
	w = find(bus, addr, len);
	if (!w) {
		if (!write)
			memset(data, 0, len);
		return -ENOENT;
	}
	if (write)
		return w->ops->write ? w->ops->write(w->opaque, addr - w->base, data, len) : 0;
	if (!w->ops->read) {
		memset(data, 0, len);
		return 0;
	}
	return w->ops->read(w->opaque, addr - w->base, data, len);
}

const char *mmio_bus_window_name(const struct mmio_bus *bus, uint64_t addr)
{
	struct mmio_window *w = find(bus, addr, 1);

	return w ? w->name : NULL;
}
