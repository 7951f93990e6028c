/* SPDX-License-Identifier: MIT */
/*
 * The guest's side of virtio-mmio (version 2) and of a split virtqueue, for
 * polling drivers: no interrupts, so after a notify a driver looks at the
 * used ring itself. Queues live in memory from the guest memory manager;
 * guest-physical equals virtual here (identity mapping), so a pointer is its
 * own gpa. x86 keeps stores in order, so a compiler barrier between writing
 * a ring entry and publishing the index is the whole write barrier.
 */
#ifndef GUEST_VIRTIO_MMIO_DRV_H
#define GUEST_VIRTIO_MMIO_DRV_H

#include <stdbool.h>
#include <stdint.h>

#define VIRTIO_F_VERSION_1 (1ull << 32)
#define VQ_MAX		   64

struct gvq {
	uint64_t base; /* device registers */
	uint16_t index, size;
	volatile uint8_t *desc, *avail, *used;
	uint16_t avail_idx, last_used;
	uint16_t free_head, num_free;
	uint16_t next[VQ_MAX];
};

/*
 * Reset the device at @base, check it is virtio-mmio version 2 with device
 * id @id, and negotiate: the features accepted are @wanted & offered, with
 * VERSION_1 required. Leaves the status at FEATURES_OK. Returns 0 and sets the
 * offered and accepted masks, or -1 (FAILED written to the status).
 */
int vmmio_negotiate(uint64_t base, uint32_t id, uint64_t wanted, uint64_t *offered,
		    uint64_t *accepted);

/* Set up queue @index with at most VQ_MAX entries. 0 or -1. */
int vmmio_queue_setup(uint64_t base, uint16_t index, struct gvq *q);

void vmmio_driver_ok(uint64_t base);

uint32_t vmmio_config_read32(uint64_t base, uint32_t off);
void vmmio_config_write32(uint64_t base, uint32_t off, uint32_t v);
uint32_t vmmio_status(uint64_t base);

/* Make a chain of @n buffers available (device-writable if @writable).
 * Returns the head index, or -1 when there are not enough descriptors. */
int gvq_add(struct gvq *q, const uint64_t *addr, const uint32_t *len, unsigned int n,
	    bool writable);

void gvq_kick(struct gvq *q);

/* A chain the device has returned: its head (and *@len), or -1 if none yet.
 * Its descriptors are free again. */
int gvq_get_used(struct gvq *q, uint32_t *len);

/* Add, kick and wait (polling, up to @timeout_ms) for that chain to come
 * back. Returns 0, or -1 on timeout or no descriptors. */
int gvq_send_wait(struct gvq *q, const uint64_t *addr, const uint32_t *len, unsigned int n,
		  bool writable, uint64_t timeout_ms);

#endif
