/* SPDX-License-Identifier: MIT */
/* The driver list: each driver's init and poll, in the order given here. */
#include "drivers.h"

void drivers_init(const struct rf_bootinfo *bi)
{
	(void)bi;
}

void drivers_poll(void)
{
}
