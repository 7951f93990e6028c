/* SPDX-License-Identifier: MIT */
/* The driver list: each driver's init and poll, in the order given here. */
#include "balloon_drv.h"
#include "drivers.h"

void drivers_init(const struct rf_bootinfo *bi)
{
	balloon_init(bi);
}

void drivers_poll(void)
{
	balloon_poll();
}
