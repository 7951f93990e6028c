/* SPDX-License-Identifier: MIT */
/*
 * virtio-mmio transport, version 2 (virtio 1.x, spec 4.2.2): decodes the
 * register window into calls on a struct rf_virtio_dev. Registers are 32 bits
 * wide and must be accessed as such, aligned; the device-specific config
 * space at 0x100 takes 1-, 2-, 4- and 8-byte accesses. Anything else reads
 * as zero, is ignored on write, and is reported as RF_RJ_MMIO_ACCESS.
 */
#ifndef RF_VIRTIO_MMIO_H
#define RF_VIRTIO_MMIO_H

#include <stdint.h>

#include "virtio_dev.h"

#define RF_VIRTIO_MMIO_MAGIC   0x74726976u /* "virt" */
#define RF_VIRTIO_MMIO_VERSION 2u
#define RF_VIRTIO_MMIO_VENDOR  0x554d4551u /* the value QEMU uses; drivers ignore it */

#define RF_VMMIO_MAGIC		   0x000
#define RF_VMMIO_VERSION	   0x004
#define RF_VMMIO_DEVICE_ID	   0x008
#define RF_VMMIO_VENDOR_ID	   0x00c
#define RF_VMMIO_DEVICE_FEATURES   0x010
#define RF_VMMIO_DEVICE_FEAT_SEL   0x014
#define RF_VMMIO_DRIVER_FEATURES   0x020
#define RF_VMMIO_DRIVER_FEAT_SEL   0x024
#define RF_VMMIO_QUEUE_SEL	   0x030
#define RF_VMMIO_QUEUE_NUM_MAX	   0x034
#define RF_VMMIO_QUEUE_NUM	   0x038
#define RF_VMMIO_QUEUE_READY	   0x044
#define RF_VMMIO_QUEUE_NOTIFY	   0x050
#define RF_VMMIO_INTERRUPT_STATUS  0x060
#define RF_VMMIO_INTERRUPT_ACK	   0x064
#define RF_VMMIO_STATUS		   0x070
#define RF_VMMIO_QUEUE_DESC_LOW	   0x080
#define RF_VMMIO_QUEUE_DESC_HIGH   0x084
#define RF_VMMIO_QUEUE_AVAIL_LOW   0x090
#define RF_VMMIO_QUEUE_AVAIL_HIGH  0x094
#define RF_VMMIO_QUEUE_USED_LOW	   0x0a0
#define RF_VMMIO_QUEUE_USED_HIGH   0x0a4
#define RF_VMMIO_SHM_SEL	   0x0ac
#define RF_VMMIO_SHM_LEN_LOW	   0x0b0
#define RF_VMMIO_SHM_LEN_HIGH	   0x0b4
#define RF_VMMIO_SHM_BASE_LOW	   0x0b8
#define RF_VMMIO_SHM_BASE_HIGH	   0x0bc
#define RF_VMMIO_CONFIG_GENERATION 0x0fc
#define RF_VMMIO_CONFIG		   0x100

void rf_virtio_mmio_read(struct rf_virtio_dev *d, uint64_t off, void *data, unsigned int len);
void rf_virtio_mmio_write(struct rf_virtio_dev *d, uint64_t off, const void *data,
			  unsigned int len);

#endif
