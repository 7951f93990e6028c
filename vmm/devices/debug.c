/* SPDX-License-Identifier: MIT */
/*
 * The debug device at MMIO slot 0 (registers in guest/bootinfo.h): console
 * lines (one VM exit per line: the guest passes the address of a whole
 * line), exit, host time, sleep and the stop flag. Everything the guest
 * passes is checked: the line must lie in guest RAM (through the library's
 * checked accessor) and is cut at RF_CONSOLE_LINE_MAX; non-printable bytes
 * become '?'.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/util.h"
#include "core/vmm.h"
#include "devices/console.h"
#include "devices/debug.h"

struct debug_dev {
	struct vmm_vm *vm;
	bool exit_requested;
	uint64_t exit_status;
};

static uint64_t get_u64(const void *data, unsigned len)
{
	uint64_t v = 0;

	memcpy(&v, data, len);
	return v;
}

static void read_line(struct vmm_vm *vm, uint64_t gpa)
{
	char line[RF_CONSOLE_LINE_MAX];
	uint64_t len = RF_CONSOLE_LINE_MAX - 1;
	const char *src;
	void *hva;
	size_t i;

	if (gpa >= vm->mem_bytes) {
		console_line(vm, "(console: line address outside guest RAM)");
		return;
	}
	if (len > vm->mem_bytes - gpa)
		len = vm->mem_bytes - gpa;
	if (rf_vm_gpa_to_hva(vm->rf, gpa, len, &hva)) {
		console_line(vm, "(console: line address outside guest RAM)");
		return;
	}
	src = hva;
	for (i = 0; i < len && src[i]; i++)
		line[i] = (src[i] >= 0x20 && src[i] < 0x7f) ? src[i] : '?';
	line[i] = 0;
	console_line(vm, line);
}

static int dbg_write(void *opaque, uint64_t off, const void *data, unsigned len)
{
	struct debug_dev *d = opaque;
	uint64_t v = get_u64(data, len);

	switch (off) {
	case RF_DBG_CONSOLE:
		read_line(d->vm, v);
		break;
	case RF_DBG_EXIT:
		d->exit_requested = true;
		d->exit_status = v;
		break;
	case RF_DBG_SLEEP_US: {
		struct timespec ts;

		if (v > 1000000)
			v = 1000000;
		ts.tv_sec = (time_t)(v / 1000000);
		ts.tv_nsec = (long)(v % 1000000) * 1000;
		/* A stop request interrupts the sleep with SIGUSR1 (EINTR). */
		if (!atomic_load(&d->vm->stop))
			nanosleep(&ts, NULL);
		break;
	}
	default:
		break; /* writes to other offsets are ignored */
	}
	return 0;
}

static int dbg_read(void *opaque, uint64_t off, void *data, unsigned len)
{
	struct debug_dev *d = opaque;
	uint64_t v = 0;

	switch (off) {
	case RF_DBG_TIME_NS:
		v = now_ns();
		break;
	case RF_DBG_MAGIC:
		v = RF_DBG_MAGIC_VALUE;
		break;
	case RF_DBG_STOP:
		v = atomic_load(&d->vm->stop);
		break;
	}
	memcpy(data, &v, len);
	return 0;
}

static void dbg_destroy(void *opaque)
{
	free(opaque);
}

static const struct mmio_ops debug_ops = {
    .read = dbg_read,
    .write = dbg_write,
    .destroy = dbg_destroy,
};

static struct debug_dev *dev_of(struct vmm_vm *vm)
{
	return vm->debug;
}

int debug_dev_register(struct vmm_vm *vm)
{
	struct debug_dev *d = calloc(1, sizeof(*d));
	int rc;

	if (!d) {
		vmm_errorf("%s: out of memory", vm->name);
		return -1;
	}
	d->vm = vm;
	rc =
	    mmio_bus_register(vm->bus, RF_DEBUG_DEV_GPA, RF_MMIO_SLOT_SIZE, &debug_ops, d, "debug");
	if (rc) {
		free(d);
		vmm_errorf("%s: debug device: %s", vm->name, strerror(-rc));
		return -1;
	}
	vm->debug = d;
	return 0;
}

bool debug_dev_exit_requested(struct vmm_vm *vm, uint64_t *status)
{
	struct debug_dev *d = dev_of(vm);

	if (!d || !d->exit_requested)
		return false;
	*status = d->exit_status;
	return true;
}
