/* SPDX-License-Identifier: MIT */
/* The guest's virtio-balloon driver (see balloon_drv.c), called from drivers.c. */
#ifndef GUEST_BALLOON_DRV_H
#define GUEST_BALLOON_DRV_H

#include "bootinfo.h"

void balloon_init(const struct rf_bootinfo *bi);
void balloon_poll(void);
/* (Re)install the driver's deflate-on-OOM hook in the memory manager. */
void balloon_set_oom_hook(void);

#endif
