/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueue, device side. See virtqueue.h for the rules; this file
 * keeps the memory-ordering reasons next to the loads and stores they order.
 */
#include <endian.h>
#include <errno.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "virtqueue.h"

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

_Static_assert(sizeof(struct vring_desc) == 16, "virtq descriptor is 16 bytes");

#define DESC_KNOWN_FLAGS (RF_VRING_DESC_F_NEXT | RF_VRING_DESC_F_WRITE | RF_VRING_DESC_F_INDIRECT)

static const char *const err_names[RF_VQ_E_NR] = {
    [RF_VQ_OK] = "ok",
    [RF_VQ_E_DESC_INDEX] = "descriptor index out of range",
    [RF_VQ_E_CHAIN_LEN] = "descriptor chain loops or is too long",
    [RF_VQ_E_DESC_FLAGS] = "invalid descriptor flags",
    [RF_VQ_E_DESC_ADDR] = "buffer not inside guest RAM",
    [RF_VQ_E_DIRECTION] = "buffer direction wrong for this queue",
    [RF_VQ_E_INDIRECT_NOT_NEG] = "indirect descriptor not negotiated",
    [RF_VQ_E_INDIRECT_NESTED] = "indirect descriptor inside an indirect table",
    [RF_VQ_E_INDIRECT_LEN] = "indirect table length invalid",
    [RF_VQ_E_AVAIL_JUMP] = "avail index jumped beyond the queue size",
    [RF_VQ_E_HEAD_INDEX] = "avail ring entry out of range",
    [RF_VQ_E_RING_GONE] = "ring no longer inside guest RAM",
};

const char *rf_virtq_err_name(int err)
{
	if (err < 0)
		err = -err;
	if (err >= RF_VQ_E_NR)
		return "unknown";
	return err_names[err];
}

static uint64_t avail_bytes(unsigned int size)
{
	return 6 + 2ull * size; /* flags, idx, ring[size], used_event */
}

static uint64_t used_bytes(unsigned int size)
{
	return 6 + 8ull * size; /* flags, idx, ring[size], avail_event */
}

enum rf_virtq_setup_err rf_virtq_check(const rf_vm *vm, unsigned int size, unsigned int max_size,
				       uint64_t desc, uint64_t avail, uint64_t used)
{
	void *hva;

	if (size == 0 || (size & (size - 1)) || size > max_size || size > RF_VIRTQ_MAX_SIZE)
		return RF_VQ_SETUP_SIZE;
	if ((desc & 15) || (avail & 1) || (used & 3))
		return RF_VQ_SETUP_ALIGN;
	/* The accessor refuses ranges that wrap past 2^64 or leave a region. */
	if (rf_vm_gpa_to_hva(vm, desc, 16ull * size, &hva) ||
	    rf_vm_gpa_to_hva(vm, avail, avail_bytes(size), &hva) ||
	    rf_vm_gpa_to_hva(vm, used, used_bytes(size), &hva))
		return RF_VQ_SETUP_RANGE;
	return RF_VQ_SETUP_OK;
}

void rf_virtq_reset(struct rf_virtq *q)
{
	memset(q, 0, sizeof(*q));
}

void rf_virtq_enable(struct rf_virtq *q, const rf_vm *vm, unsigned int size, uint64_t desc,
		     uint64_t avail, uint64_t used, bool device_writes, bool event_idx,
		     bool indirect)
{
	rf_virtq_reset(q);
	q->vm = vm;
	q->size = (uint16_t)size;
	q->desc_gpa = desc;
	q->avail_gpa = avail;
	q->used_gpa = used;
	q->device_writes = device_writes;
	q->event_idx = event_idx;
	q->indirect = indirect;
}

/*
 * Ring areas are translated on every access rather than cached: the regions
 * lock is never held across calls, so a cached pointer could outlive an
 * unmap. The lookup is a binary search over at most 32 regions.
 */
static void *ring_ptr(const struct rf_virtq *q, uint64_t gpa, uint64_t len)
{
	void *hva;

	if (rf_vm_gpa_to_hva(q->vm, gpa, len, &hva))
		return NULL;
	return hva;
}

/* 16-bit fields of the rings are naturally aligned (checked at setup), so
 * these are single atomic accesses to memory the guest writes concurrently. */
static int load16(const struct rf_virtq *q, uint64_t gpa, uint16_t *v)
{
	_Atomic uint16_t *p = ring_ptr(q, gpa, 2);

	if (!p)
		return -1;
	*v = le16toh(atomic_load_explicit(p, memory_order_relaxed));
	return 0;
}

static int store16(const struct rf_virtq *q, uint64_t gpa, uint16_t v)
{
	_Atomic uint16_t *p = ring_ptr(q, gpa, 2);

	if (!p)
		return -1;
	atomic_store_explicit(p, htole16(v), memory_order_relaxed);
	return 0;
}

#define AVAIL_FLAGS(q)	    ((q)->avail_gpa)
#define AVAIL_IDX(q)	    ((q)->avail_gpa + 2)
#define AVAIL_RING(q, i)    ((q)->avail_gpa + 4 + 2ull * (i))
#define AVAIL_USED_EVENT(q) ((q)->avail_gpa + 4 + 2ull * (q)->size)
#define USED_IDX(q)	    ((q)->used_gpa + 2)
#define USED_RING(q, i)	    ((q)->used_gpa + 4 + 8ull * (i))
#define USED_AVAIL_EVENT(q) ((q)->used_gpa + 4 + 8ull * (q)->size)

static int fail(struct rf_virtq *q, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(struct rf_virtq *q, int err, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(q->why, sizeof(q->why), fmt, ap);
	va_end(ap);
	return -err;
}

/* Read the avail index and check it against what was consumed. */
static int read_avail_idx(struct rf_virtq *q, uint16_t *idx)
{
	if (load16(q, AVAIL_IDX(q), idx))
		return fail(q, RF_VQ_E_RING_GONE, "avail ring at gpa 0x%llx left guest RAM",
			    (unsigned long long)q->avail_gpa);
	/* Unsigned 16-bit difference: wrap-around is legal, running more than
	 * a ring's worth ahead is not. */
	if ((uint16_t)(*idx - q->last_avail) > q->size)
		return fail(q, RF_VQ_E_AVAIL_JUMP, "avail idx %u, consumed %u, queue size %u", *idx,
			    q->last_avail, q->size);
	return 0;
}

int rf_virtq_pending(struct rf_virtq *q)
{
	uint16_t idx;

	if (!q->size || read_avail_idx(q, &idx))
		return -1;
	return (uint16_t)(idx - q->last_avail);
}

static int read_desc(struct rf_virtq *q, uint64_t table, uint16_t i, struct vring_desc *d)
{
	const void *p = ring_ptr(q, table + 16ull * i, 16);

	if (!p)
		return -1;
	/* One copy; only the copy is checked and used (no double fetch). */
	memcpy(d, p, sizeof(*d));
	d->addr = le64toh(d->addr);
	d->len = le32toh(d->len);
	d->flags = le16toh(d->flags);
	d->next = le16toh(d->next);
	return 0;
}

static int add_seg(struct rf_virtq *q, struct rf_virtq_chain *c, const struct vring_desc *d)
{
	void *hva;

	if (d->flags & ~DESC_KNOWN_FLAGS)
		return fail(q, RF_VQ_E_DESC_FLAGS, "descriptor flags 0x%x", d->flags);
	if (!!(d->flags & RF_VRING_DESC_F_WRITE) != q->device_writes)
		return fail(q, RF_VQ_E_DIRECTION, "descriptor is device-%s, queue needs device-%s",
			    (d->flags & RF_VRING_DESC_F_WRITE) ? "writable" : "readable",
			    q->device_writes ? "writable" : "readable");
	if (rf_vm_gpa_to_hva(q->vm, d->addr, d->len, &hva))
		return fail(q, RF_VQ_E_DESC_ADDR, "buffer gpa 0x%llx len 0x%x not inside guest RAM",
			    (unsigned long long)d->addr, d->len);
	/* The spec's bound: no chain, indirect entries included, is longer
	 * than the queue size (which rf_virtq_check keeps <= MAX_SEGS). */
	if (c->nseg >= q->size || c->nseg >= RF_VIRTQ_MAX_SEGS)
		return fail(q, RF_VQ_E_CHAIN_LEN, "chain longer than the queue size %u", q->size);
	c->seg[c->nseg].gpa = d->addr;
	c->seg[c->nseg].len = d->len;
	c->seg[c->nseg].hva = hva;
	c->nseg++;
	c->total_len += d->len;
	return 0;
}

/* Walk an indirect table: its entries are numbered from 0 within the table. */
static int walk_indirect(struct rf_virtq *q, struct rf_virtq_chain *c, const struct vring_desc *ind)
{
	uint64_t n = ind->len / 16;
	void *hva;
	uint16_t i = 0;

	if (!q->indirect)
		return fail(q, RF_VQ_E_INDIRECT_NOT_NEG,
			    "indirect descriptor, feature not negotiated");
	if (ind->flags & RF_VRING_DESC_F_NEXT)
		return fail(q, RF_VQ_E_DESC_FLAGS, "descriptor has both INDIRECT and NEXT");
	if (ind->len == 0 || (ind->len % 16))
		return fail(q, RF_VQ_E_INDIRECT_LEN, "indirect table length %u", ind->len);
	if (rf_vm_gpa_to_hva(q->vm, ind->addr, ind->len, &hva))
		return fail(q, RF_VQ_E_DESC_ADDR,
			    "indirect table gpa 0x%llx len 0x%x not inside guest RAM",
			    (unsigned long long)ind->addr, ind->len);
	/* At most n steps: one more means a loop inside the table. The chain
	 * as a whole stays within the queue size (add_seg). */
	for (uint64_t steps = 0;; steps++) {
		struct vring_desc d;
		int err;

		if (steps == n)
			return fail(q, RF_VQ_E_CHAIN_LEN, "indirect chain loops");
		if (read_desc(q, ind->addr, i, &d))
			return fail(q, RF_VQ_E_DESC_ADDR, "indirect table left guest RAM");
		if (d.flags & RF_VRING_DESC_F_INDIRECT)
			return fail(q, RF_VQ_E_INDIRECT_NESTED,
				    "indirect descriptor %u inside an indirect table", i);
		err = add_seg(q, c, &d);
		if (err)
			return err;
		if (!(d.flags & RF_VRING_DESC_F_NEXT))
			return 0;
		if (d.next >= n)
			return fail(q, RF_VQ_E_DESC_INDEX,
				    "indirect next %u, table has %llu entries", d.next,
				    (unsigned long long)n);
		i = d.next;
	}
}

/* Walk the chain from @head into *@c: 0, or -RF_VQ_E_* to drop it. */
static int walk_chain(struct rf_virtq *q, struct rf_virtq_chain *c, uint16_t head)
{
	uint16_t i = head;
	int err;

	/* A chain visits at most `size` descriptors; one more is a loop. */
	for (unsigned int steps = 0;; steps++) {
		struct vring_desc d;

		if (steps == q->size)
			return fail(q, RF_VQ_E_CHAIN_LEN,
				    "chain from head %u loops or exceeds queue size %u", head,
				    q->size);
		if (read_desc(q, q->desc_gpa, i, &d))
			return fail(q, RF_VQ_E_RING_GONE, "descriptor table left guest RAM");
		if (d.flags & RF_VRING_DESC_F_INDIRECT) {
			/* The spec allows an indirect descriptor only as the
			 * last of a chain, so it ends the walk here. */
			return walk_indirect(q, c, &d);
		}
		err = add_seg(q, c, &d);
		if (err)
			return err;
		if (!(d.flags & RF_VRING_DESC_F_NEXT))
			return 0;
		if (d.next >= q->size)
			return fail(q, RF_VQ_E_DESC_INDEX, "next index %u, queue size %u", d.next,
				    q->size);
		i = d.next;
	}
}

int rf_virtq_pop(struct rf_virtq *q, struct rf_virtq_chain *c)
{
	uint16_t avail_idx, head;
	int err;

	c->nseg = 0;
	c->total_len = 0;
	c->head = 0;
	if (!q->size)
		return 0;
	err = read_avail_idx(q, &avail_idx);
	if (err)
		return err;
	if (avail_idx == q->last_avail)
		return 0;
	/* Acquire: the ring entry and the descriptors it names were written
	 * by the driver before it published avail->idx (its write barrier);
	 * read them only after the index. */
	atomic_thread_fence(memory_order_acquire);
	if (load16(q, AVAIL_RING(q, q->last_avail & (q->size - 1)), &head))
		return fail(q, RF_VQ_E_RING_GONE, "avail ring left guest RAM");
	if (head >= q->size)
		return fail(q, RF_VQ_E_HEAD_INDEX, "avail ring entry %u, queue size %u", head,
			    q->size);
	q->last_avail++;
	c->head = head;
	err = walk_chain(q, c, head);
	if (q->event_idx) {
		/* Tell the driver which avail index we want a notify for next:
		 * any new buffer. A dropped chain was consumed as much as a
		 * valid one: without this, a driver that follows avail_event
		 * would skip its next kick and that buffer would wait. */
		store16(q, USED_AVAIL_EVENT(q), q->last_avail);
	}
	return err ? err : 1;
}

int rf_virtq_push(struct rf_virtq *q, uint16_t head, uint32_t len)
{
	uint16_t slot = q->used_idx & (q->size - 1);
	uint32_t *elem = ring_ptr(q, USED_RING(q, slot), 8);

	if (!elem)
		return fail(q, RF_VQ_E_RING_GONE, "used ring left guest RAM");
	elem[0] = htole32(head);
	elem[1] = htole32(len);
	/* Release: the element (and any buffer contents written for it) must
	 * be visible before the driver sees the new used->idx. */
	atomic_thread_fence(memory_order_release);
	q->used_idx++;
	if (store16(q, USED_IDX(q), q->used_idx))
		return fail(q, RF_VQ_E_RING_GONE, "used ring left guest RAM");
	return 0;
}

/* vring_need_event() of the spec: did new_idx pass event since old? */
static bool need_event(uint16_t event, uint16_t new_idx, uint16_t old)
{
	return (uint16_t)(new_idx - event - 1) < (uint16_t)(new_idx - old);
}

bool rf_virtq_need_irq(struct rf_virtq *q)
{
	uint16_t flags, event, old = q->signalled_used;
	bool valid = q->signalled_valid;

	if (!q->size)
		return false;
	/* Full barrier: the used->idx store above must be visible before we
	 * read the driver's suppression fields, or both sides could decide
	 * the other will act and an interrupt would be lost. */
	atomic_thread_fence(memory_order_seq_cst);
	if (!q->event_idx) {
		if (load16(q, AVAIL_FLAGS(q), &flags))
			return false;
		return !(flags & RF_VRING_AVAIL_F_NO_INTERRUPT);
	}
	q->signalled_used = q->used_idx;
	q->signalled_valid = true;
	if (load16(q, AVAIL_USED_EVENT(q), &event))
		return false;
	return !valid || need_event(event, q->used_idx, old);
}
