/* SPDX-License-Identifier: MIT */
/* The transport-independent virtio device state machine; see virtio_dev.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "virtio_dev.h"

void rf_virtio_dev_init(struct rf_virtio_dev *d, const struct rf_virtio_dev_ops *ops,
			const rf_vm *vm, uint64_t host_features, unsigned int queue_size_max)
{
	memset(d, 0, sizeof(*d));
	d->ops = ops;
	d->vm = vm;
	d->host_features = host_features;
	d->queue_size_max = queue_size_max;
}

void rf_virtio_reset(struct rf_virtio_dev *d)
{
	d->driver_features = 0;
	d->driver_features_beyond = false;
	d->status = 0;
	d->isr = 0;
	d->dev_features_sel = d->drv_features_sel = d->queue_sel = 0;
	memset(d->qcfg, 0, sizeof(d->qcfg));
	for (unsigned int i = 0; i < RF_VIRTIO_MAX_QUEUES; i++)
		rf_virtq_reset(&d->vq[i]);
	if (d->ops->reset)
		d->ops->reset(d);
}

static void reject(struct rf_virtio_dev *d, enum rf_virtio_reject kind, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void reject(struct rf_virtio_dev *d, enum rf_virtio_reject kind, const char *fmt, ...)
{
	char msg[200];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	d->ops->reject(d, kind, msg);
}

bool rf_virtio_negotiated(const struct rf_virtio_dev *d, uint64_t feature)
{
	return (d->status & VIRTIO_STATUS_FEATURES_OK) && (d->driver_features & feature);
}

unsigned int rf_virtio_num_queues(struct rf_virtio_dev *d)
{
	uint64_t f =
	    (d->status & VIRTIO_STATUS_FEATURES_OK) ? d->driver_features : d->host_features;
	unsigned int n = d->ops->num_queues(d, f);

	return n < RF_VIRTIO_MAX_QUEUES ? n : RF_VIRTIO_MAX_QUEUES;
}

int rf_virtio_set_driver_features(struct rf_virtio_dev *d, uint64_t features)
{
	if (d->status & VIRTIO_STATUS_FEATURES_OK) {
		reject(d, RF_RJ_FEATURES_LATE,
		       "driver features 0x%llx written after FEATURES_OK, ignored",
		       (unsigned long long)features);
		return -EBUSY;
	}
	d->driver_features = features;
	if ((features & ~d->host_features) || !(features & VIRTIO_FEATURE_VERSION_1))
		return -EINVAL; /* reported when the driver asks for FEATURES_OK */
	return 0;
}

uint32_t rf_virtio_device_features_half(const struct rf_virtio_dev *d, unsigned int sel)
{
	return sel > 1 ? 0 : (uint32_t)(d->host_features >> (32 * sel));
}

int rf_virtio_set_driver_features_half(struct rf_virtio_dev *d, unsigned int sel, uint32_t bits)
{
	uint64_t f = d->driver_features;
	int err;

	if (sel > 1) {
		if (!bits)
			return 0; /* the spec's "bits beyond are 0": nothing asked */
		if (d->status & VIRTIO_STATUS_FEATURES_OK) {
			reject(d, RF_RJ_FEATURES_LATE,
			       "driver features select %u: 0x%x written after FEATURES_OK, ignored",
			       sel, bits);
			return -EBUSY;
		}
		d->driver_features_beyond = true;
		reject(d, RF_RJ_FEATURES_UNSUPPORTED,
		       "driver features select %u: bits 0x%x above bit 63 were never offered; "
		       "FEATURES_OK will be refused",
		       sel, bits);
		return -EINVAL;
	}
	if (sel == 0)
		f = (f & 0xffffffff00000000ull) | bits;
	else
		f = (f & 0xffffffffull) | ((uint64_t)bits << 32);
	err = rf_virtio_set_driver_features(d, f);
	/* A half alone is not checked: the other half may still come. */
	return err == -EBUSY ? err : 0;
}

/* May FEATURES_OK be accepted for the driver features? Reports why not. */
static bool features_acceptable(struct rf_virtio_dev *d)
{
	uint64_t bad = d->driver_features & ~d->host_features;

	if (d->driver_features_beyond) {
		reject(d, RF_RJ_FEATURES_UNSUPPORTED,
		       "FEATURES_OK refused: the driver asked for feature bits above 63");
		return false;
	}
	if (!bad && (d->driver_features & VIRTIO_FEATURE_VERSION_1))
		return true;
	reject(d, RF_RJ_FEATURES_UNSUPPORTED,
	       "FEATURES_OK refused: driver features 0x%llx (not offered 0x%llx%s)",
	       (unsigned long long)d->driver_features, (unsigned long long)bad,
	       (d->driver_features & VIRTIO_FEATURE_VERSION_1) ? "" : ", no VERSION_1");
	return false;
}

int rf_virtio_set_status(struct rf_virtio_dev *d, uint8_t status)
{
	uint8_t old = d->status & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	uint8_t added;

	if (status == 0) {
		rf_virtio_reset(d);
		return 0;
	}
	/* NEEDS_RESET is the device's bit: a driver writing it back is
	 * harmless, and it stays as the device set it. */
	status &= ~VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	if ((old & status) != old) {
		reject(d, RF_RJ_STATUS, "status 0x%x clears bits of 0x%x without a reset", status,
		       old);
		return -EINVAL;
	}
	added = status & ~old;
	if ((added & VIRTIO_STATUS_DRIVER_OK) && !(status & VIRTIO_STATUS_FEATURES_OK)) {
		reject(d, RF_RJ_STATUS, "DRIVER_OK without FEATURES_OK (status 0x%x)", status);
		return -EINVAL;
	}
	/* The features are checked before DRIVER_OK is accepted: a write that
	 * sets both (0x0f) with features the device refuses gets neither bit,
	 * as the device may not go live on features it never accepted. */
	if ((added & VIRTIO_STATUS_FEATURES_OK) && !features_acceptable(d)) {
		status &= ~(VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
		if (added & VIRTIO_STATUS_DRIVER_OK)
			reject(d, RF_RJ_STATUS,
			       "DRIVER_OK refused with FEATURES_OK (status 0x%x written)",
			       status | VIRTIO_STATUS_FEATURES_OK | VIRTIO_STATUS_DRIVER_OK);
		d->status = status | (d->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
		return -EINVAL;
	}
	d->status = status | (d->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	if ((added & VIRTIO_STATUS_FEATURES_OK) && d->ops->features_ok)
		d->ops->features_ok(d);
	if ((added & VIRTIO_STATUS_DRIVER_OK) && d->ops->driver_ok)
		d->ops->driver_ok(d);
	return 0;
}

int rf_virtio_queue_enable(struct rf_virtio_dev *d, unsigned int q, unsigned int size,
			   uint64_t desc, uint64_t avail, uint64_t used)
{
	enum rf_virtq_setup_err err;

	if (q >= rf_virtio_num_queues(d)) {
		reject(d, RF_RJ_QUEUE_SETUP, "queue %u does not exist", q);
		return -ENOENT;
	}
	if (d->vq[q].size) {
		reject(d, RF_RJ_QUEUE_SETUP, "queue %u enabled twice", q);
		return -EBUSY;
	}
	if (!(d->status & VIRTIO_STATUS_FEATURES_OK)) {
		reject(d, RF_RJ_QUEUE_SETUP, "queue %u enabled before FEATURES_OK", q);
		return -EINVAL;
	}
	err = rf_virtq_check(d->vm, size, d->queue_size_max, desc, avail, used);
	if (err == RF_VQ_SETUP_SIZE) {
		reject(d, RF_RJ_QUEUE_SIZE, "queue %u size %u (must be a power of two 1..%u)", q,
		       size, d->queue_size_max);
	} else if (err) {
		reject(d, RF_RJ_RING_ADDR,
		       "queue %u rings desc 0x%llx avail 0x%llx used 0x%llx (size %u) %s", q,
		       (unsigned long long)desc, (unsigned long long)avail,
		       (unsigned long long)used, size,
		       err == RF_VQ_SETUP_ALIGN ? "misaligned" : "not inside guest RAM");
	}
	if (err) {
		rf_virtio_needs_reset(d);
		return -EINVAL;
	}
	rf_virtq_enable(&d->vq[q], d->vm, size, desc, avail, used,
			d->ops->queue_device_writes(d, q),
			rf_virtio_negotiated(d, VIRTIO_FEATURE_EVENT_IDX),
			rf_virtio_negotiated(d, VIRTIO_FEATURE_INDIRECT_DESC));
	return 0;
}

void rf_virtio_queue_disable(struct rf_virtio_dev *d, unsigned int q)
{
	if (q >= RF_VIRTIO_MAX_QUEUES || !d->vq[q].size)
		return;
	/* Forgotten before the device is told, so nothing it does in the
	 * callback can touch the rings again. The layout registers keep what
	 * the driver wrote (qcfg), as a transport reads them back. */
	rf_virtq_reset(&d->vq[q]);
	if (d->ops->queue_stopped)
		d->ops->queue_stopped(d, q);
}

/* [off, off+len) inside the config space, written so it cannot overflow. */
static bool config_range_ok(const struct rf_virtio_dev *d, uint64_t off, unsigned int len)
{
	return len > 0 && len <= 8 && off <= d->ops->config_size &&
	       len <= d->ops->config_size - off;
}

int rf_virtio_config_read(struct rf_virtio_dev *d, uint64_t off, void *data, unsigned int len)
{
	if (!config_range_ok(d, off, len)) {
		reject(d, RF_RJ_CONFIG_RANGE, "config read of %u bytes at offset 0x%llx (size %u)",
		       len, (unsigned long long)off, d->ops->config_size);
		memset(data, 0, len);
		return -EINVAL;
	}
	d->ops->config_read(d, (uint32_t)off, data, len);
	return 0;
}

int rf_virtio_config_write(struct rf_virtio_dev *d, uint64_t off, const void *data,
			   unsigned int len)
{
	if (!config_range_ok(d, off, len)) {
		reject(d, RF_RJ_CONFIG_RANGE, "config write of %u bytes at offset 0x%llx (size %u)",
		       len, (unsigned long long)off, d->ops->config_size);
		return -EINVAL;
	}
	if (d->ops->config_write(d, (uint32_t)off, data, len) == -EPERM) {
		reject(d, RF_RJ_CONFIG_READONLY,
		       "config write of %u bytes at offset 0x%llx: read-only field", len,
		       (unsigned long long)off);
		return -EPERM;
	}
	return 0;
}

void rf_virtio_raise(struct rf_virtio_dev *d, unsigned int reason, int queue)
{
	d->isr |= reason;
	if (d->ops->irq)
		d->ops->irq(d, reason, queue);
}

void rf_virtio_config_changed(struct rf_virtio_dev *d)
{
	d->config_generation++;
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		rf_virtio_raise(d, VIRTIO_ISR_CONFIG, -1);
}

void rf_virtio_needs_reset(struct rf_virtio_dev *d)
{
	if (d->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
		return;
	d->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	/* The spec asks for a configuration change notification when the
	 * device sets DEVICE_NEEDS_RESET after DRIVER_OK. */
	if (d->status & VIRTIO_STATUS_DRIVER_OK)
		rf_virtio_raise(d, VIRTIO_ISR_CONFIG, -1);
}

int rf_virtio_notify(struct rf_virtio_dev *d, unsigned int q)
{
	if (q >= rf_virtio_num_queues(d) || !d->vq[q].size) {
		reject(d, RF_RJ_NOTIFY_INVALID, "notify of queue %u, which is not enabled", q);
		return -ENOENT;
	}
	if (!(d->status & VIRTIO_STATUS_DRIVER_OK)) {
		reject(d, RF_RJ_NOTIFY_EARLY,
		       "queue %u notified before DRIVER_OK, deferred until DRIVER_OK", q);
		return -EAGAIN;
	}
	if (d->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET) {
		reject(d, RF_RJ_NOTIFY_NEEDS_RESET, "queue %u used while the device needs a reset",
		       q);
		return -EIO;
	}
	d->ops->queue_notify(d, q);
	return 0;
}

bool rf_virtio_vq_error(struct rf_virtio_dev *d, unsigned int q, int err, uint16_t head)
{
	struct rf_virtq *vq = &d->vq[q];
	int e = -err;

	if (e >= RF_VQ_E_BROKEN_FIRST) {
		reject(d, (enum rf_virtio_reject)(RF_RJ_VQ + e), "queue %u: %s; device needs reset",
		       q, vq->why);
		rf_virtio_needs_reset(d);
		return false;
	}
	reject(d, (enum rf_virtio_reject)(RF_RJ_VQ + e), "queue %u: %s, buffer %u dropped", q,
	       vq->why, head);
	if (rf_virtq_push(vq, head, 0)) {
		reject(d, RF_RJ_VQ + RF_VQ_E_RING_GONE, "queue %u: %s; device needs reset", q,
		       vq->why);
		rf_virtio_needs_reset(d);
		return false;
	}
	return true;
}

void rf_virtio_vq_done(struct rf_virtio_dev *d, unsigned int q, unsigned int pushed)
{
	if (pushed && rf_virtq_need_irq(&d->vq[q]))
		rf_virtio_raise(d, VIRTIO_ISR_VRING, (int)q);
}
