/* SPDX-License-Identifier: MIT */
/* virtio-mmio version 2 register decoding; see virtio_mmio.h. */
#include <endian.h>
#include <stdio.h>
#include <string.h>

#include "virtio_mmio.h"

static void bad_access(struct rf_virtio_dev *d, const char *what, uint64_t off, unsigned int len)
{
	char msg[120];

	/* snprintf via the device's reject hook keeps one log format. */
	memset(msg, 0, sizeof(msg));
	snprintf(msg, sizeof(msg), "mmio %s of %u bytes at offset 0x%llx", what, len,
		 (unsigned long long)off);
	d->ops->reject(d, RF_RJ_MMIO_ACCESS, msg);
}

/* The queue the selector names, if it exists. */
static struct rf_virtio_queue_cfg *selected(struct rf_virtio_dev *d, bool for_write)
{
	unsigned int q = d->queue_sel;

	if (q >= rf_virtio_num_queues(d))
		return NULL;
	if (for_write && d->vq[q].size)
		return NULL; /* live queue: its layout may not change */
	return &d->qcfg[q];
}

static uint32_t reg_read(struct rf_virtio_dev *d, uint64_t off)
{
	unsigned int q = d->queue_sel;
	bool exists = q < rf_virtio_num_queues(d);

	switch (off) {
	case RF_VMMIO_MAGIC:
		return RF_VIRTIO_MMIO_MAGIC;
	case RF_VMMIO_VERSION:
		return RF_VIRTIO_MMIO_VERSION;
	case RF_VMMIO_DEVICE_ID:
		return d->ops->device_id;
	case RF_VMMIO_VENDOR_ID:
		return RF_VIRTIO_MMIO_VENDOR;
	case RF_VMMIO_DEVICE_FEATURES:
		return rf_virtio_device_features_half(d, d->dev_features_sel);
	case RF_VMMIO_QUEUE_NUM_MAX:
		/* 0 tells the driver the queue does not exist. */
		return exists ? d->queue_size_max : 0;
	case RF_VMMIO_QUEUE_READY:
		return exists && d->vq[q].size ? 1 : 0;
	case RF_VMMIO_INTERRUPT_STATUS:
		return d->isr;
	case RF_VMMIO_STATUS:
		return d->status;
	case RF_VMMIO_SHM_LEN_LOW:
	case RF_VMMIO_SHM_LEN_HIGH:
		return 0xffffffffu; /* no shared memory regions */
	case RF_VMMIO_CONFIG_GENERATION:
		return d->config_generation;
	/* Readable in practice (Linux reads QueueNum back on some paths): */
	case RF_VMMIO_QUEUE_NUM:
		return exists ? d->qcfg[q].num : 0;
	case RF_VMMIO_DEVICE_FEAT_SEL:
		return d->dev_features_sel;
	case RF_VMMIO_DRIVER_FEAT_SEL:
		return d->drv_features_sel;
	case RF_VMMIO_QUEUE_SEL:
		return d->queue_sel;
	default:
		bad_access(d, "read of a write-only or unknown register", off, 4);
		return 0;
	}
}

static void set_low(uint64_t *v, uint32_t x)
{
	*v = (*v & 0xffffffff00000000ull) | x;
}

static void set_high(uint64_t *v, uint32_t x)
{
	*v = (*v & 0xffffffffull) | ((uint64_t)x << 32);
}

static void reg_write(struct rf_virtio_dev *d, uint64_t off, uint32_t v)
{
	struct rf_virtio_queue_cfg *qc;

	switch (off) {
	case RF_VMMIO_DEVICE_FEAT_SEL:
		d->dev_features_sel = v;
		return;
	case RF_VMMIO_DRIVER_FEAT_SEL:
		d->drv_features_sel = v;
		return;
	case RF_VMMIO_DRIVER_FEATURES:
		rf_virtio_set_driver_features_half(d, d->drv_features_sel, v);
		return;
	case RF_VMMIO_QUEUE_SEL:
		d->queue_sel = v;
		return;
	case RF_VMMIO_QUEUE_NOTIFY:
		rf_virtio_notify(d, v);
		return;
	case RF_VMMIO_INTERRUPT_ACK:
		d->isr &= ~v;
		return;
	case RF_VMMIO_STATUS:
		rf_virtio_set_status(d, (uint8_t)v);
		return;
	case RF_VMMIO_SHM_SEL:
		return;
	case RF_VMMIO_QUEUE_READY:
		if (d->queue_sel >= rf_virtio_num_queues(d)) {
			d->ops->reject(d, RF_RJ_QUEUE_SETUP,
				       "QueueReady of a queue that does not exist");
			return;
		}
		if (v == 0) {
			/* The driver stops using the queue (and reads
			 * QueueReady back to see that the device did). */
			rf_virtio_queue_disable(d, d->queue_sel);
			return;
		}
		if (d->vq[d->queue_sel].size)
			return; /* already enabled: no change */
		qc = &d->qcfg[d->queue_sel];
		rf_virtio_queue_enable(d, d->queue_sel, qc->num, qc->desc, qc->avail, qc->used);
		return;
	case RF_VMMIO_QUEUE_NUM:
	case RF_VMMIO_QUEUE_DESC_LOW:
	case RF_VMMIO_QUEUE_DESC_HIGH:
	case RF_VMMIO_QUEUE_AVAIL_LOW:
	case RF_VMMIO_QUEUE_AVAIL_HIGH:
	case RF_VMMIO_QUEUE_USED_LOW:
	case RF_VMMIO_QUEUE_USED_HIGH:
		qc = selected(d, true);
		if (!qc) {
			d->ops->reject(d, RF_RJ_QUEUE_SETUP,
				       "queue register write for a missing or live queue, ignored");
			return;
		}
		if (off == RF_VMMIO_QUEUE_NUM)
			qc->num = v;
		else if (off == RF_VMMIO_QUEUE_DESC_LOW)
			set_low(&qc->desc, v);
		else if (off == RF_VMMIO_QUEUE_DESC_HIGH)
			set_high(&qc->desc, v);
		else if (off == RF_VMMIO_QUEUE_AVAIL_LOW)
			set_low(&qc->avail, v);
		else if (off == RF_VMMIO_QUEUE_AVAIL_HIGH)
			set_high(&qc->avail, v);
		else if (off == RF_VMMIO_QUEUE_USED_LOW)
			set_low(&qc->used, v);
		else
			set_high(&qc->used, v);
		return;
	default:
		bad_access(d, "write of a read-only or unknown register", off, 4);
		return;
	}
}

void rf_virtio_mmio_read(struct rf_virtio_dev *d, uint64_t off, void *data, unsigned int len)
{
	uint32_t v;

	/* Whatever happens below, the caller's whole buffer is defined: an
	 * invalid access reads as 0, however long it is. */
	memset(data, 0, len);
	if (len > 8) {
		bad_access(d, "read", off, len);
		return;
	}
	if (off >= RF_VMMIO_CONFIG) {
		rf_virtio_config_read(d, off - RF_VMMIO_CONFIG, data, len);
		return;
	}
	if (len != 4 || (off & 3)) {
		bad_access(d, "read", off, len);
		return;
	}
	v = htole32(reg_read(d, off));
	memcpy(data, &v, 4);
}

void rf_virtio_mmio_write(struct rf_virtio_dev *d, uint64_t off, const void *data, unsigned int len)
{
	uint32_t v;

	if (len > 8) {
		bad_access(d, "write", off, len);
		return;
	}
	if (off >= RF_VMMIO_CONFIG) {
		rf_virtio_config_write(d, off - RF_VMMIO_CONFIG, data, len);
		return;
	}
	if (len != 4 || (off & 3)) {
		bad_access(d, "write", off, len);
		return;
	}
	memcpy(&v, data, 4);
	reg_write(d, off, le32toh(v));
}
