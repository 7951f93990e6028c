/* SPDX-License-Identifier: MIT */
/* The guest's virtio-mmio transport and split virtqueues (virtio_mmio_drv.h). */
#include "virtio_mmio_drv.h"
#include "hw.h"
#include "lib.h"
#include "mm.h"

#define R_MAGIC	       0x000
#define R_VERSION      0x004
#define R_DEVICE_ID    0x008
#define R_DEV_FEAT     0x010
#define R_DEV_FEAT_SEL 0x014
#define R_DRV_FEAT     0x020
#define R_DRV_FEAT_SEL 0x024
#define R_QUEUE_SEL    0x030
#define R_QUEUE_MAX    0x034
#define R_QUEUE_NUM    0x038
#define R_QUEUE_READY  0x044
#define R_NOTIFY       0x050
#define R_STATUS       0x070
#define R_DESC_LO      0x080
#define R_DESC_HI      0x084
#define R_AVAIL_LO     0x090
#define R_AVAIL_HI     0x094
#define R_USED_LO      0x0a0
#define R_USED_HI      0x0a4
#define R_CONFIG       0x100

#define S_ACK	      1
#define S_DRIVER      2
#define S_DRIVER_OK   4
#define S_FEATURES_OK 8
#define S_FAILED      128

#define DESC_F_NEXT  1
#define DESC_F_WRITE 2

static void w32(uint64_t base, uint32_t off, uint32_t v)
{
	mmio_write32(base + off, v);
}

static uint32_t r32(uint64_t base, uint32_t off)
{
	return mmio_read32(base + off);
}

uint32_t vmmio_status(uint64_t base)
{
	return r32(base, R_STATUS);
}

int vmmio_negotiate(uint64_t base, uint32_t id, uint64_t wanted, uint64_t *offered,
		    uint64_t *accepted)
{
	uint64_t dev;

	if (r32(base, R_MAGIC) != 0x74726976 || r32(base, R_VERSION) != 2 ||
	    r32(base, R_DEVICE_ID) != id)
		return -1;
	w32(base, R_STATUS, 0);
	w32(base, R_STATUS, S_ACK);
	w32(base, R_STATUS, S_ACK | S_DRIVER);
	w32(base, R_DEV_FEAT_SEL, 0);
	dev = r32(base, R_DEV_FEAT);
	w32(base, R_DEV_FEAT_SEL, 1);
	dev |= (uint64_t)r32(base, R_DEV_FEAT) << 32;
	*offered = dev;
	*accepted = dev & wanted;
	if (!(*accepted & VIRTIO_F_VERSION_1)) {
		w32(base, R_STATUS, S_ACK | S_DRIVER | S_FAILED);
		return -1;
	}
	w32(base, R_DRV_FEAT_SEL, 0);
	w32(base, R_DRV_FEAT, (uint32_t)*accepted);
	w32(base, R_DRV_FEAT_SEL, 1);
	w32(base, R_DRV_FEAT, (uint32_t)(*accepted >> 32));
	w32(base, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK);
	if (!(r32(base, R_STATUS) & S_FEATURES_OK)) {
		w32(base, R_STATUS, S_ACK | S_DRIVER | S_FAILED);
		return -1;
	}
	return 0;
}

int vmmio_queue_setup(uint64_t base, uint16_t index, struct gvq *q)
{
	uint32_t max;
	uint64_t mem;

	w32(base, R_QUEUE_SEL, index);
	max = r32(base, R_QUEUE_MAX);
	if (max == 0 || r32(base, R_QUEUE_READY))
		return -1;
	memset(q, 0, sizeof(*q));
	q->base = base;
	q->index = index;
	q->size = (uint16_t)(max < VQ_MAX ? max : VQ_MAX);
	/* One page each: 64 descriptors (1 KiB), avail (134 B), used (518 B). */
	mem = mm_alloc_contig(3);
	if (!mem)
		return -1;
	memset((void *)mem, 0, 3 * PAGE_SIZE);
	q->desc = (volatile uint8_t *)mem;
	q->avail = (volatile uint8_t *)(mem + PAGE_SIZE);
	q->used = (volatile uint8_t *)(mem + 2 * PAGE_SIZE);
	for (uint16_t i = 0; i < q->size; i++)
		q->next[i] = (uint16_t)(i + 1);
	q->num_free = q->size;
	w32(base, R_QUEUE_NUM, q->size);
	w32(base, R_DESC_LO, (uint32_t)mem);
	w32(base, R_DESC_HI, (uint32_t)(mem >> 32));
	w32(base, R_AVAIL_LO, (uint32_t)(mem + PAGE_SIZE));
	w32(base, R_AVAIL_HI, (uint32_t)((mem + PAGE_SIZE) >> 32));
	w32(base, R_USED_LO, (uint32_t)(mem + 2 * PAGE_SIZE));
	w32(base, R_USED_HI, (uint32_t)((mem + 2 * PAGE_SIZE) >> 32));
	w32(base, R_QUEUE_READY, 1);
	return r32(base, R_QUEUE_READY) == 1 ? 0 : -1;
}

void vmmio_driver_ok(uint64_t base)
{
	w32(base, R_STATUS, S_ACK | S_DRIVER | S_FEATURES_OK | S_DRIVER_OK);
}

uint32_t vmmio_config_read32(uint64_t base, uint32_t off)
{
	return r32(base, R_CONFIG + off);
}

void vmmio_config_write32(uint64_t base, uint32_t off, uint32_t v)
{
	w32(base, R_CONFIG + off, v);
}

int gvq_add(struct gvq *q, const uint64_t *addr, const uint32_t *len, unsigned int n, bool writable)
{
	uint16_t head, i, prev = 0;

	if (n == 0 || n > q->num_free)
		return -1;
	head = i = q->free_head;
	for (unsigned int k = 0; k < n; k++) {
		volatile uint8_t *d = q->desc + 16u * i;
		uint16_t flags = writable ? DESC_F_WRITE : 0;

		if (k + 1 < n)
			flags |= DESC_F_NEXT;
		*(volatile uint64_t *)d = addr[k];
		*(volatile uint32_t *)(d + 8) = len[k];
		*(volatile uint16_t *)(d + 12) = flags;
		*(volatile uint16_t *)(d + 14) = q->next[i];
		prev = i;
		i = q->next[i];
	}
	(void)prev;
	q->free_head = i;
	q->num_free = (uint16_t)(q->num_free - n);
	*(volatile uint16_t *)(q->avail + 4 + 2u * (q->avail_idx % q->size)) = head;
	barrier(); /* the ring entry before the index the device reads */
	q->avail_idx++;
	*(volatile uint16_t *)(q->avail + 2) = q->avail_idx;
	return head;
}

void gvq_kick(struct gvq *q)
{
	barrier();
	w32(q->base, R_NOTIFY, q->index);
}

int gvq_get_used(struct gvq *q, uint32_t *len)
{
	uint16_t idx = *(volatile uint16_t *)(q->used + 2), head, i;
	uint32_t id;

	if (idx == q->last_used)
		return -1;
	barrier(); /* the index before the element it covers */
	id = *(volatile uint32_t *)(q->used + 4 + 8u * (q->last_used % q->size));
	if (len)
		*len = *(volatile uint32_t *)(q->used + 8 + 8u * (q->last_used % q->size));
	q->last_used++;
	if (id >= q->size)
		return -1;
	/* Put the chain back on the free list. */
	head = i = (uint16_t)id;
	for (;;) {
		uint16_t flags = *(volatile uint16_t *)(q->desc + 16u * i + 12);

		q->num_free++;
		if (!(flags & DESC_F_NEXT))
			break;
		i = *(volatile uint16_t *)(q->desc + 16u * i + 14);
	}
	q->next[i] = q->free_head;
	q->free_head = head;
	return head;
}

int gvq_send_wait(struct gvq *q, const uint64_t *addr, const uint32_t *len, unsigned int n,
		  bool writable, uint64_t timeout_ms)
{
	uint64_t end = time_ns() + timeout_ms * 1000000ull;
	int head = gvq_add(q, addr, len, n, writable);

	if (head < 0)
		return -1;
	gvq_kick(q);
	for (;;) {
		int h = gvq_get_used(q, NULL);

		if (h == head)
			return 0;
		if (h < 0 && time_ns() > end)
			return -1;
		if (h < 0)
			sleep_us(100);
	}
}
