/* SPDX-License-Identifier: MIT */
/*
 * Workloads: each sets up its memory, prints READY once it is in its steady
 * state, and prints one "RESULT <workload> key=value..." line when done (or
 * none if it runs forever). Parameters come from the boot-info page; 0 means
 * "default" and the defaults are applied in main.c.
 */
#ifndef GUEST_WORKLOADS_H
#define GUEST_WORKLOADS_H

#include "bootinfo.h"

/* Each returns the guest's exit status (0 = success). */
int wl_idle(const struct rf_bootinfo *bi);
int wl_dup(const struct rf_bootinfo *bi);
int wl_osimage(const struct rf_bootinfo *bi);
int wl_memcheck(const struct rf_bootinfo *bi);
int wl_churn(const struct rf_bootinfo *bi);
int wl_hotcold(const struct rf_bootinfo *bi);
int wl_crash(const struct rf_bootinfo *bi);
int wl_selftest(const struct rf_bootinfo *bi);

/* Print the READY marker (once). */
void wl_ready(void);

/* Add @bytes of work done to the boot-info page's work_bytes, where the
 * host samples the guest's work rate (memory-bound workloads, after READY). */
void wl_count_work(uint64_t bytes);

/* Sleep @ms in 10 ms slices, polling the drivers in between. */
void wl_pause_ms(uint64_t ms);

#endif
