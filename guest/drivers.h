/* SPDX-License-Identifier: MIT */
/*
 * The guest's device drivers, behind two calls the rest of the guest makes:
 * drivers_init() once after the memory manager is up (drivers find their
 * devices in the boot-info page), and drivers_poll() often: there are no
 * interrupts, so a driver does its work (refill a stats buffer, process a
 * balloon target change, report free pages) when polled. Workloads call
 * drivers_poll() at least every few milliseconds of work, and the idle loop
 * between sleeps. To add a driver, call its init and poll from drivers.c.
 */
#ifndef GUEST_DRIVERS_H
#define GUEST_DRIVERS_H

#include "bootinfo.h"

void drivers_init(const struct rf_bootinfo *bi);
void drivers_poll(void);

#endif
