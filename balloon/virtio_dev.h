/* SPDX-License-Identifier: MIT */
/*
 * A virtio 1.x device as its transport sees it: feature negotiation, the
 * status state machine, queue setup, config-space bounds, notifications and
 * the interrupt status. A device type (balloon.c here) fills in an ops table
 * and never sees a transport register; a transport (virtio_mmio.c, or an
 * embedder's own through the public calls) never sees device semantics.
 *
 * The status machine (spec 3.1.1), as enforced here:
 *   0 -> ACKNOWLEDGE -> DRIVER -> (driver features) -> FEATURES_OK
 *     -> (queue setup) -> DRIVER_OK
 * The driver may only add bits; writing 0 resets. FEATURES_OK is refused
 * (the bit does not stick, as the spec asks the driver to check) if the
 * driver features are not a subset of the offer or lack VERSION_1; the
 * features are checked before DRIVER_OK is, so a write that sets both is
 * refused both (the device never goes live on features it refused). Driver
 * features written after FEATURES_OK are ignored. Queues are not processed
 * before DRIVER_OK or while DEVICE_NEEDS_RESET is set; a queue the driver
 * stops (rf_virtio_queue_disable) is not touched until it is enabled again.
 *
 * Every rejected input is reported to the device through ops->reject(),
 * which counts and logs it: the generic layer has no opinion on names.
 *
 * Callers hold the device's lock; nothing here is thread-safe by itself.
 */
#ifndef RF_VIRTIO_DEV_H
#define RF_VIRTIO_DEV_H

#include <stdbool.h>
#include <stdint.h>

#include "virtqueue.h"

#define RF_VIRTIO_MAX_QUEUES 8

/*
 * The generic layer's own names for the spec's constants, so that it needs
 * no device's header. A device's public header may publish the same values
 * under its own names (<ramfold/balloon.h>: RF_VIRTIO_STATUS_*,
 * RF_VIRTIO_F_*, RF_BALLOON_IRQ_*); balloon.c asserts that they are equal.
 */
/* Device status bits (spec 2.1; Linux: VIRTIO_CONFIG_S_*). */
#define VIRTIO_STATUS_ACKNOWLEDGE	 1u
#define VIRTIO_STATUS_DRIVER		 2u
#define VIRTIO_STATUS_DRIVER_OK		 4u
#define VIRTIO_STATUS_FEATURES_OK	 8u
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 64u
#define VIRTIO_STATUS_FAILED		 128u
/* Device-independent feature bits this layer acts on, as masks (spec 6). */
#define VIRTIO_FEATURE_INDIRECT_DESC (1ull << 28)
#define VIRTIO_FEATURE_EVENT_IDX     (1ull << 29)
#define VIRTIO_FEATURE_VERSION_1     (1ull << 32)
/* Interrupt (ISR) status bits: a used buffer, a configuration change. */
#define VIRTIO_ISR_VRING  1u
#define VIRTIO_ISR_CONFIG 2u

enum rf_virtio_reject {
	RF_RJ_MMIO_ACCESS,
	RF_RJ_STATUS,
	RF_RJ_FEATURES_UNSUPPORTED,
	RF_RJ_FEATURES_LATE,
	RF_RJ_CONFIG_RANGE,
	RF_RJ_CONFIG_READONLY,
	RF_RJ_QUEUE_SETUP,
	RF_RJ_QUEUE_SIZE,
	RF_RJ_RING_ADDR,
	RF_RJ_NOTIFY_INVALID,
	RF_RJ_NOTIFY_EARLY,
	RF_RJ_NOTIFY_NEEDS_RESET,
	/* virtqueue errors: RF_RJ_VQ + RF_VQ_E_* */
	RF_RJ_VQ,
	RF_RJ_NR = RF_RJ_VQ + RF_VQ_E_NR
};

struct rf_virtio_dev;

struct rf_virtio_dev_ops {
	uint32_t device_id;
	uint32_t config_size;
	/* Queues that exist for @features. */
	unsigned int (*num_queues)(struct rf_virtio_dev *d, uint64_t features);
	/* Whether queue @q carries device-writable buffers. */
	bool (*queue_device_writes)(struct rf_virtio_dev *d, unsigned int q);
	/* Config access, already checked to lie inside config_size. A write
	 * returns -EPERM if it touches a read-only field (nothing written). */
	void (*config_read)(struct rf_virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len);
	int (*config_write)(struct rf_virtio_dev *d, uint32_t off, const uint8_t *data,
			    uint32_t len);
	/* FEATURES_OK accepted: d->driver_features are final. */
	void (*features_ok)(struct rf_virtio_dev *d);
	/* Process queue @q (DRIVER_OK set, queue enabled, not NEEDS_RESET). */
	void (*queue_notify)(struct rf_virtio_dev *d, unsigned int q);
	/* DRIVER_OK was just set. */
	void (*driver_ok)(struct rf_virtio_dev *d);
	/* Queue @q was stopped (virtio-mmio QueueReady 0): drop anything
	 * held from it; its rings are the driver's again. May be NULL. */
	void (*queue_stopped)(struct rf_virtio_dev *d, unsigned int q);
	/* The driver reset the device (status 0). */
	void (*reset)(struct rf_virtio_dev *d);
	/* Count and log one rejected input. */
	void (*reject)(struct rf_virtio_dev *d, enum rf_virtio_reject kind, const char *detail);
	/* Interrupt status gained @reason, for queue @queue (VIRTIO_ISR_VRING:
	 * the queue that got a used buffer) or -1 (VIRTIO_ISR_CONFIG): a
	 * transport with one vector per queue (virtio-pci MSI-X) needs which. */
	void (*irq)(struct rf_virtio_dev *d, unsigned int reason, int queue);
};

struct rf_virtio_queue_cfg {
	uint32_t num;
	uint64_t desc, avail, used;
};

struct rf_virtio_dev {
	const struct rf_virtio_dev_ops *ops;
	const rf_vm *vm;
	uint64_t host_features;
	uint64_t driver_features;
	uint8_t status;
	/* The driver asked for feature bits above 63 (none is offered):
	 * FEATURES_OK is refused until a reset. */
	bool driver_features_beyond;
	uint32_t isr;
	uint32_t config_generation;
	unsigned int queue_size_max;
	/* virtio-mmio selector registers */
	uint32_t dev_features_sel, drv_features_sel, queue_sel;
	/* queue registers as written, before QueueReady */
	struct rf_virtio_queue_cfg qcfg[RF_VIRTIO_MAX_QUEUES];
	struct rf_virtq vq[RF_VIRTIO_MAX_QUEUES];
};

void rf_virtio_dev_init(struct rf_virtio_dev *d, const struct rf_virtio_dev_ops *ops,
			const rf_vm *vm, uint64_t host_features, unsigned int queue_size_max);

/* Back to the state after init (status 0, queues off, interrupt clear). */
void rf_virtio_reset(struct rf_virtio_dev *d);

unsigned int rf_virtio_num_queues(struct rf_virtio_dev *d);
bool rf_virtio_negotiated(const struct rf_virtio_dev *d, uint64_t feature);

int rf_virtio_set_driver_features(struct rf_virtio_dev *d, uint64_t features);
/* The offered features' 32-bit half @sel (0 for @sel > 1: none offered). */
uint32_t rf_virtio_device_features_half(const struct rf_virtio_dev *d, unsigned int sel);
/* One 32-bit half of them (@sel 0: bits 0..31, 1: bits 32..63), as a
 * transport's driver_feature_select delivers them: stored unchecked until
 * FEATURES_OK, as a 64-bit write is; -EBUSY after FEATURES_OK. Bits above 63
 * (@sel > 1) are never offered: non-zero ones are refused (-EINVAL) and
 * make FEATURES_OK fail until a reset; zero ones are accepted. */
int rf_virtio_set_driver_features_half(struct rf_virtio_dev *d, unsigned int sel, uint32_t bits);
int rf_virtio_set_status(struct rf_virtio_dev *d, uint8_t status);

/* Check and enable queue @q. */
int rf_virtio_queue_enable(struct rf_virtio_dev *d, unsigned int q, unsigned int size,
			   uint64_t desc, uint64_t avail, uint64_t used);

/* Stop queue @q (the driver wrote QueueReady 0): the device forgets its
 * rings and never touches them again until the queue is enabled anew.
 * Nothing happens for a queue that is not enabled. */
void rf_virtio_queue_disable(struct rf_virtio_dev *d, unsigned int q);

/* Config space access with bounds checks (offsets that overflow included);
 * an out-of-range read yields zeros. */
int rf_virtio_config_read(struct rf_virtio_dev *d, uint64_t off, void *data, unsigned int len);
int rf_virtio_config_write(struct rf_virtio_dev *d, uint64_t off, const void *data,
			   unsigned int len);

/* The device changed its config: bump the generation, raise the interrupt. */
void rf_virtio_config_changed(struct rf_virtio_dev *d);

int rf_virtio_notify(struct rf_virtio_dev *d, unsigned int q);

/* Set @reason in the interrupt status for @queue (-1: config change). */
void rf_virtio_raise(struct rf_virtio_dev *d, unsigned int reason, int queue);

/* Something the driver did makes the device unusable until reset. */
void rf_virtio_needs_reset(struct rf_virtio_dev *d);

/*
 * Handle a rf_virtq_pop() error on queue @q: report it, return a dropped
 * chain used with length 0, or set NEEDS_RESET for a broken ring. Returns
 * true if the caller may keep popping.
 */
bool rf_virtio_vq_error(struct rf_virtio_dev *d, unsigned int q, int err, uint16_t head);

/* After a batch of pushes on queue @q: interrupt if the driver wants one. */
void rf_virtio_vq_done(struct rf_virtio_dev *d, unsigned int q, unsigned int pushed);

#endif
