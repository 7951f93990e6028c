/* SPDX-License-Identifier: MIT */
/*
 * The balloon's transport entry points: the public calls a VMM makes when
 * the guest touches the device, either through the virtio-mmio register
 * window (rf_balloon_mmio_read/write, decoded by virtio_mmio.c) or through
 * its own transport (virtio-pci, vhost-user: features, status, queue setup,
 * config space, notify, interrupt status; virtio_dev.c).
 *
 * Each call checks its arguments, takes b->lock and makes one call into the
 * generic virtio layer, which calls back into the device through its ops
 * table (balloon.c) with the lock held; so every transport applies the same
 * checks and bumps the same counters. The host-side calls (target, info,
 * stats, tick) are the device's own and live in balloon.c.
 *
 * The offered features and the largest queue size are fixed at
 * rf_balloon_new() and read without the lock.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "balloon_internal.h"
#include "virtio_mmio.h"

/* Evaluate @expr with b->lock held; its value. */
#define LOCKED(b, expr)                                                                            \
	({                                                                                         \
		pthread_mutex_lock(&(b)->lock);                                                    \
		__typeof__(expr) _r = (expr);                                                      \
		pthread_mutex_unlock(&(b)->lock);                                                  \
		_r;                                                                                \
	})

/* ---- virtio-mmio ----------------------------------------------------------------- */

RF_EXPORT int rf_balloon_mmio_read(rf_balloon *b, uint64_t offset, void *data, unsigned int len)
{
	if (!b || !data || len == 0)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	if (offset >= RF_BALLOON_MMIO_SIZE) {
		memset(data, 0, len);
		b->dev.ops->reject(&b->dev, RF_RJ_MMIO_ACCESS,
				   "mmio read beyond the register window");
	} else {
		rf_virtio_mmio_read(&b->dev, offset, data, len);
	}
	pthread_mutex_unlock(&b->lock);
	return 0;
}

RF_EXPORT int rf_balloon_mmio_write(rf_balloon *b, uint64_t offset, const void *data,
				    unsigned int len)
{
	if (!b || !data || len == 0)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	if (offset >= RF_BALLOON_MMIO_SIZE)
		b->dev.ops->reject(&b->dev, RF_RJ_MMIO_ACCESS,
				   "mmio write beyond the register window");
	else
		rf_virtio_mmio_write(&b->dev, offset, data, len);
	pthread_mutex_unlock(&b->lock);
	return 0;
}

/* ---- own transport (and the notify an ioeventfd delivers) ---------------------- */

RF_EXPORT int rf_balloon_queue_notify(rf_balloon *b, unsigned int queue)
{
	if (!b)
		return -EINVAL;
	LOCKED(b, rf_virtio_notify(&b->dev, queue));
	return 0;
}

RF_EXPORT uint32_t rf_balloon_interrupt_status(rf_balloon *b)
{
	return b ? LOCKED(b, b->dev.isr) : 0;
}

RF_EXPORT void rf_balloon_interrupt_ack(rf_balloon *b, uint32_t bits)
{
	if (!b)
		return;
	pthread_mutex_lock(&b->lock);
	b->dev.isr &= ~bits;
	pthread_mutex_unlock(&b->lock);
}

RF_EXPORT uint64_t rf_balloon_device_features(rf_balloon *b)
{
	return b ? b->dev.host_features : 0;
}

RF_EXPORT int rf_balloon_set_driver_features(rf_balloon *b, uint64_t features)
{
	return b ? LOCKED(b, rf_virtio_set_driver_features(&b->dev, features)) : -EINVAL;
}

RF_EXPORT uint8_t rf_balloon_get_status(rf_balloon *b)
{
	return b ? LOCKED(b, b->dev.status) : 0;
}

RF_EXPORT int rf_balloon_set_status(rf_balloon *b, uint8_t status)
{
	return b ? LOCKED(b, rf_virtio_set_status(&b->dev, status)) : -EINVAL;
}

RF_EXPORT unsigned int rf_balloon_num_queues(rf_balloon *b)
{
	return b ? LOCKED(b, rf_virtio_num_queues(&b->dev)) : 0;
}

RF_EXPORT unsigned int rf_balloon_queue_size_max(rf_balloon *b)
{
	return b ? b->dev.queue_size_max : 0;
}

RF_EXPORT int rf_balloon_queue_setup(rf_balloon *b, unsigned int queue, unsigned int size,
				     uint64_t desc, uint64_t avail, uint64_t used)
{
	return b ? LOCKED(b, rf_virtio_queue_enable(&b->dev, queue, size, desc, avail, used))
		 : -EINVAL;
}

RF_EXPORT int rf_balloon_config_read(rf_balloon *b, uint64_t offset, void *data, unsigned int len)
{
	if (!b || !data || len == 0 || len > 8)
		return -EINVAL;
	return LOCKED(b, rf_virtio_config_read(&b->dev, offset, data, len));
}

RF_EXPORT int rf_balloon_config_write(rf_balloon *b, uint64_t offset, const void *data,
				      unsigned int len)
{
	if (!b || !data || len == 0 || len > 8)
		return -EINVAL;
	return LOCKED(b, rf_virtio_config_write(&b->dev, offset, data, len));
}

RF_EXPORT uint32_t rf_balloon_config_generation(rf_balloon *b)
{
	return b ? LOCKED(b, b->dev.config_generation) : 0;
}

RF_EXPORT int rf_balloon_set_queue_interrupt(rf_balloon *b, void (*fn)(void *arg, int queue),
					     void *arg)
{
	if (!b)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	b->queue_irq = fn;
	b->queue_irq_arg = arg;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

RF_EXPORT uint32_t rf_balloon_device_features_half(rf_balloon *b, unsigned int sel)
{
	return b ? rf_virtio_device_features_half(&b->dev, sel) : 0;
}

RF_EXPORT int rf_balloon_set_driver_features_half(rf_balloon *b, unsigned int sel, uint32_t bits)
{
	return b ? LOCKED(b, rf_virtio_set_driver_features_half(&b->dev, sel, bits)) : -EINVAL;
}

/* Does queue @q exist for the features as they stand? Lock held. */
static bool queue_exists(struct rf_balloon *b, unsigned int q)
{
	return q < rf_virtio_num_queues(&b->dev);
}

RF_EXPORT int rf_balloon_queue_enabled(rf_balloon *b, unsigned int queue)
{
	int r;

	if (!b)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	r = queue_exists(b, queue) ? b->dev.vq[queue].size != 0 : -EINVAL;
	pthread_mutex_unlock(&b->lock);
	return r;
}

RF_EXPORT int rf_balloon_queue_disable(rf_balloon *b, unsigned int queue)
{
	int r = 0;

	if (!b)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	if (!queue_exists(b, queue)) {
		char msg[64];

		snprintf(msg, sizeof(msg), "queue %u disabled, but it does not exist", queue);
		b->dev.ops->reject(&b->dev, RF_RJ_QUEUE_SETUP, msg);
		r = -EINVAL;
	} else {
		rf_virtio_queue_disable(&b->dev, queue);
	}
	pthread_mutex_unlock(&b->lock);
	return r;
}
