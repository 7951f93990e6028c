/* SPDX-License-Identifier: MIT */
/* The device list: add a device by adding its setup function here. */
#include <stddef.h>

#include "devices.h"

static const vmm_device_setup_fn device_setup[] = {
    balloon_dev_setup, /* vmm/balloon_dev.c */
    NULL,
};

int vmm_devices_setup(struct vmm_vm *vm)
{
	for (size_t i = 0; i < sizeof(device_setup) / sizeof(device_setup[0]); i++)
		if (device_setup[i] && device_setup[i](vm))
			return -1;
	return 0;
}
