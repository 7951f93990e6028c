/* SPDX-License-Identifier: MIT */
/*
 * A split virtqueue (virtio 1.x, 2.7) as the device sees it, with every
 * field the guest controls validated.
 *
 * The guest owns three areas in its RAM: the descriptor table (16 bytes per
 * entry), the driver area ("avail": flags, idx, ring[size], used_event) and
 * the device area ("used": flags, idx, ring[size] of {id, len}, avail_event).
 * The device reads avail->idx, then the ring entries before it, walks each
 * descriptor chain, and publishes each finished chain in the used ring.
 *
 * Rules kept here (and why):
 *  - Every guest address is translated through rf_vm_gpa_to_hva(), the one
 *    checked accessor, for the full length at once: a range that wraps, runs
 *    off the end of a region or falls in a hole is refused there.
 *  - Each descriptor is copied out of guest memory once and only the copy is
 *    checked and used: the guest may rewrite its ring concurrently (a double
 *    fetch would let it change a descriptor between check and use).
 *  - A chain is at most the queue size long, the entries of an indirect
 *    table it ends with included, as the spec bounds it (a loop is caught by
 *    the same count; a loop inside an indirect table by the table's own
 *    number of entries). An indirect table may not contain another indirect
 *    descriptor and is only accepted with VIRTIO_F_INDIRECT_DESC.
 *  - A chain that is dropped is consumed like a valid one: last_avail moves
 *    past it and, with VIRTIO_F_EVENT_IDX, avail_event with it, so the
 *    driver's next notification is not suppressed.
 *  - Index arithmetic is modulo 2^16, as the spec defines it: avail->idx may
 *    run at most `size` ahead of what the device consumed, else the ring is
 *    corrupt and the queue is broken (the device sets DEVICE_NEEDS_RESET).
 *
 * Errors: rf_virtq_pop() returns a negative RF_VQ_E_* code. For errors in a
 * chain whose head index is valid, the chain is consumed and the caller
 * returns it used with length 0 ("dropped"); for errors that make the ring
 * itself untrustworthy (RF_VQ_E_BROKEN_FIRST and after), the queue stops.
 *
 * Not thread-safe: the device serialises all calls on a queue.
 */
#ifndef RF_VIRTQUEUE_H
#define RF_VIRTQUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include <ramfold/vm.h>

#define RF_VIRTQ_MAX_SIZE 1024u
/* Room for the longest chain: the largest queue size. */
#define RF_VIRTQ_MAX_SEGS RF_VIRTQ_MAX_SIZE

/* Descriptor flags */
#define RF_VRING_DESC_F_NEXT	 1u
#define RF_VRING_DESC_F_WRITE	 2u
#define RF_VRING_DESC_F_INDIRECT 4u
/* avail->flags */
#define RF_VRING_AVAIL_F_NO_INTERRUPT 1u

enum rf_virtq_err {
	RF_VQ_OK = 0,
	/* chain dropped (head valid): return it used, length 0 */
	RF_VQ_E_DESC_INDEX = 1,	  /* a next index >= queue size (or table size) */
	RF_VQ_E_CHAIN_LEN,	  /* loop, or longer than the queue size */
	RF_VQ_E_DESC_FLAGS,	  /* unknown bits, INDIRECT with NEXT */
	RF_VQ_E_DESC_ADDR,	  /* not inside guest RAM */
	RF_VQ_E_DIRECTION,	  /* WRITE flag wrong for this queue */
	RF_VQ_E_INDIRECT_NOT_NEG, /* INDIRECT without the feature */
	RF_VQ_E_INDIRECT_NESTED,  /* INDIRECT inside an indirect table */
	RF_VQ_E_INDIRECT_LEN,	  /* table length 0 or not a multiple of 16 */
	/* queue broken: the device must set DEVICE_NEEDS_RESET */
	RF_VQ_E_BROKEN_FIRST,
	RF_VQ_E_AVAIL_JUMP = RF_VQ_E_BROKEN_FIRST, /* avail idx ran more than size ahead */
	RF_VQ_E_HEAD_INDEX,			   /* avail ring entry >= queue size */
	RF_VQ_E_RING_GONE,			   /* ring no longer inside guest RAM */
	RF_VQ_E_NR
};

/* Short name of an error, for logs. */
const char *rf_virtq_err_name(int err);

/* What a setup check found wrong. */
enum rf_virtq_setup_err {
	RF_VQ_SETUP_OK = 0,
	RF_VQ_SETUP_SIZE,  /* 0, not a power of two, above the maximum */
	RF_VQ_SETUP_ALIGN, /* desc not 16-, avail not 2-, used not 4-byte aligned */
	RF_VQ_SETUP_RANGE, /* an area not inside guest RAM or wrapping */
};

struct rf_virtq_seg {
	uint64_t gpa;
	uint32_t len;
	void *hva; /* checked host address of [gpa, gpa+len) */
};

struct rf_virtq_chain {
	uint16_t head;
	unsigned int nseg;
	uint64_t total_len; /* sum of seg lengths */
	struct rf_virtq_seg seg[RF_VIRTQ_MAX_SEGS];
};

struct rf_virtq {
	const rf_vm *vm;
	uint16_t size; /* 0: not enabled */
	uint64_t desc_gpa, avail_gpa, used_gpa;
	bool device_writes;	 /* chains must be device-writable (else device-readable) */
	bool event_idx;		 /* VIRTIO_F_EVENT_IDX negotiated */
	bool indirect;		 /* VIRTIO_F_INDIRECT_DESC negotiated */
	uint16_t last_avail;	 /* next avail entry to consume */
	uint16_t used_idx;	 /* used->idx as the device last published it */
	uint16_t signalled_used; /* used idx at the last interrupt (event_idx) */
	bool signalled_valid;
	char why[160]; /* detail of the last error, for the device's log line */
};

/* Check a ring layout without changing anything (pure apart from the
 * accessor). @max_size is the device's QueueNumMax. */
enum rf_virtq_setup_err rf_virtq_check(const rf_vm *vm, unsigned int size, unsigned int max_size,
				       uint64_t desc, uint64_t avail, uint64_t used);

/* Enable @q on a layout that passed rf_virtq_check(). */
void rf_virtq_enable(struct rf_virtq *q, const rf_vm *vm, unsigned int size, uint64_t desc,
		     uint64_t avail, uint64_t used, bool device_writes, bool event_idx,
		     bool indirect);

/* Forget everything (device reset). */
void rf_virtq_reset(struct rf_virtq *q);

/*
 * Take the next available chain into *@c. Returns 1 (a valid chain), 0 (the
 * ring is empty), or -RF_VQ_E_* (see above; for a dropped chain c->head is
 * set and the caller must rf_virtq_push(q, c->head, 0)).
 */
int rf_virtq_pop(struct rf_virtq *q, struct rf_virtq_chain *c);

/* Publish chain @head as used with @len bytes written. Returns 0 or
 * -RF_VQ_E_RING_GONE. */
int rf_virtq_push(struct rf_virtq *q, uint16_t head, uint32_t len);

/* After pushes: does the driver want an interrupt (avail flags or
 * used_event)? Updates the event-index bookkeeping. */
bool rf_virtq_need_irq(struct rf_virtq *q);

/* Number of chains the driver made available and the device has not taken
 * yet, or -1 if the ring cannot be read or is corrupt. */
int rf_virtq_pending(struct rf_virtq *q);

#endif
