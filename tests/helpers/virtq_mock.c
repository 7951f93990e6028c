/* SPDX-License-Identifier: MIT */
#include <endian.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "virtq_mock.h"

void *vqm_hva(rf_vm *vm, uint64_t gpa, uint64_t len)
{
	void *p;

	return rf_vm_gpa_to_hva(vm, gpa, len, &p) ? NULL : p;
}

static void w16(struct vq_mock *m, uint64_t gpa, uint16_t v)
{
	uint16_t x = htole16(v);

	memcpy(vqm_hva(m->vm, gpa, 2), &x, 2);
}

static uint16_t r16(struct vq_mock *m, uint64_t gpa)
{
	uint16_t x;

	memcpy(&x, vqm_hva(m->vm, gpa, 2), 2);
	return le16toh(x);
}

uint64_t vq_mock_init(struct vq_mock *m, rf_vm *vm, uint64_t base, uint16_t size,
		      uint64_t buf_bytes)
{
	uint64_t end;

	memset(m, 0, sizeof(*m));
	m->vm = vm;
	m->size = size;
	m->desc = base;
	m->avail = (base + 16ull * size + 4095) & ~4095ull;
	m->used = (m->avail + 6 + 2ull * size + 4095) & ~4095ull;
	m->buf_lo = (m->used + 6 + 8ull * size + 4095) & ~4095ull;
	m->buf_hi = m->buf_lo + buf_bytes;
	m->buf_next = m->buf_lo;
	end = m->buf_hi;
	memset(vqm_hva(vm, base, end - base), 0, end - base);
	return end - base;
}

uint64_t vq_mock_alloc(struct vq_mock *m, uint64_t len)
{
	uint64_t a = m->buf_next;

	if (len > m->buf_hi - m->buf_lo)
		return 0;
	if (a + len > m->buf_hi)
		a = m->buf_lo; /* wrap: old buffers are done by then */
	m->buf_next = (a + len + 7) & ~7ull;
	return a;
}

void vq_mock_set_desc(struct vq_mock *m, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		      uint16_t next)
{
	uint8_t d[16];
	uint64_t a = htole64(addr);
	uint32_t l = htole32(len);
	uint16_t f = htole16(flags), n = htole16(next);

	memcpy(d, &a, 8);
	memcpy(d + 8, &l, 4);
	memcpy(d + 12, &f, 2);
	memcpy(d + 14, &n, 2);
	memcpy(vqm_hva(m->vm, m->desc + 16ull * (i % m->size), 16), d, 16);
}

void vq_mock_publish(struct vq_mock *m, uint16_t head)
{
	w16(m, m->avail + 4 + 2ull * (m->avail_idx % m->size), head);
	/* The driver's write barrier: the ring entry before the index. */
	atomic_thread_fence(memory_order_release);
	m->avail_idx++;
	w16(m, m->avail + 2, m->avail_idx);
}

void vq_mock_set_avail_idx(struct vq_mock *m, uint16_t idx)
{
	m->avail_idx = idx;
	w16(m, m->avail + 2, idx);
}

uint16_t vq_mock_add(struct vq_mock *m, const void *data, uint32_t len, bool device_writes)
{
	uint64_t a = vq_mock_alloc(m, len ? len : 1);
	uint16_t head = m->next_desc++ % m->size;

	if (data && len)
		memcpy(vqm_hva(m->vm, a, len), data, len);
	vq_mock_set_desc(m, head, a, len, device_writes ? VQM_DESC_F_WRITE : 0, 0);
	vq_mock_publish(m, head);
	return head;
}

uint16_t vq_mock_add_chain(struct vq_mock *m, const uint64_t *addr, const uint32_t *len,
			   unsigned int n, bool device_writes)
{
	uint16_t head = m->next_desc % m->size;

	for (unsigned int i = 0; i < n; i++) {
		uint16_t me = m->next_desc++ % m->size;
		uint16_t flags = device_writes ? VQM_DESC_F_WRITE : 0;

		if (i + 1 < n)
			flags |= VQM_DESC_F_NEXT;
		vq_mock_set_desc(m, me, addr[i], len[i], flags, (uint16_t)((me + 1) % m->size));
	}
	vq_mock_publish(m, head);
	return head;
}

uint16_t vq_mock_used_idx(struct vq_mock *m)
{
	return r16(m, m->used + 2);
}

int vq_mock_get_used(struct vq_mock *m, uint32_t *id, uint32_t *len)
{
	uint32_t e[2];

	if (vq_mock_used_idx(m) == m->used_seen)
		return 0;
	atomic_thread_fence(memory_order_acquire);
	memcpy(e, vqm_hva(m->vm, m->used + 4 + 8ull * (m->used_seen % m->size), 8), 8);
	m->used_seen++;
	if (id)
		*id = le32toh(e[0]);
	if (len)
		*len = le32toh(e[1]);
	return 1;
}

void vq_mock_set_avail_flags(struct vq_mock *m, uint16_t flags)
{
	w16(m, m->avail, flags);
}

void vq_mock_set_used_event(struct vq_mock *m, uint16_t ev)
{
	w16(m, m->avail + 4 + 2ull * m->size, ev);
}

/* ---- driver ------------------------------------------------------------------- */

uint32_t bdrv_r32(struct bdrv *d, uint64_t off)
{
	uint32_t v = 0;

	rf_balloon_mmio_read(d->b, off, &v, 4);
	return le32toh(v);
}

void bdrv_w32(struct bdrv *d, uint64_t off, uint32_t v)
{
	v = htole32(v);
	rf_balloon_mmio_write(d->b, off, &v, 4);
}

static void capture(void *arg, enum rf_log_level level, const char *msg)
{
	struct bdrv *d = arg;

	(void)level;
	snprintf(d->last_log, sizeof(d->last_log), "%s", msg);
	d->log_count++;
	if (getenv("VQM_LOG"))
		fprintf(stderr, "log: %s\n", msg);
}

static void on_irq(void *arg, unsigned int reason)
{
	(void)reason;
	((struct bdrv *)arg)->irqs++;
}

static void on_actual(void *arg, uint64_t bytes)
{
	((struct bdrv *)arg)->last_actual = bytes;
}

#define RING_AREA  (1ull << 20)
#define QUEUE_AREA (RING_AREA / 5 & ~4095ull)

uint64_t bdrv_ring_base(const struct bdrv *d)
{
	return d->ram_bytes - RING_AREA;
}

int bdrv_handshake(struct bdrv *d, uint64_t want)
{
	uint64_t offered;
	uint32_t st;

	bdrv_w32(d, 0x70, 0);
	if (bdrv_r32(d, 0x000) != 0x74726976 || bdrv_r32(d, 0x004) != 2 || bdrv_r32(d, 0x008) != 5)
		return -10;
	bdrv_w32(d, 0x70, 1);
	bdrv_w32(d, 0x70, 1 | 2);
	bdrv_w32(d, 0x14, 0);
	offered = bdrv_r32(d, 0x10);
	bdrv_w32(d, 0x14, 1);
	offered |= (uint64_t)bdrv_r32(d, 0x10) << 32;
	d->features = offered & want;
	bdrv_w32(d, 0x24, 0);
	bdrv_w32(d, 0x20, (uint32_t)d->features);
	bdrv_w32(d, 0x24, 1);
	bdrv_w32(d, 0x20, (uint32_t)(d->features >> 32));
	bdrv_w32(d, 0x70, 1 | 2 | 8);
	st = bdrv_r32(d, 0x70);
	if (!(st & 8))
		return -11;
	/* Queue order as Linux numbers them: only the ones that exist. */
	d->nq = 0;
	d->inflate_q = d->nq++;
	d->deflate_q = d->nq++;
	d->stats_q = (d->features & RF_BALLOON_F_STATS_VQ) ? (int)d->nq++ : -1;
	d->report_q = (d->features & RF_BALLOON_F_REPORTING) ? (int)d->nq++ : -1;
	for (unsigned int q = 0; q < d->nq; q++) {
		struct vq_mock *m = &d->q[q];
		uint32_t max;

		bdrv_w32(d, 0x30, q);
		max = bdrv_r32(d, 0x34);
		if (max == 0 || bdrv_r32(d, 0x44) != 0)
			return -12;
		vq_mock_init(m, d->vm, bdrv_ring_base(d) + q * QUEUE_AREA, max > 256 ? 256 : max,
			     QUEUE_AREA - 3 * 4096 - 16 * 256);
		bdrv_w32(d, 0x38, m->size);
		bdrv_w32(d, 0x80, (uint32_t)m->desc);
		bdrv_w32(d, 0x84, (uint32_t)(m->desc >> 32));
		bdrv_w32(d, 0x90, (uint32_t)m->avail);
		bdrv_w32(d, 0x94, (uint32_t)(m->avail >> 32));
		bdrv_w32(d, 0xa0, (uint32_t)m->used);
		bdrv_w32(d, 0xa4, (uint32_t)(m->used >> 32));
		bdrv_w32(d, 0x44, 1);
		if (bdrv_r32(d, 0x44) != 1)
			return -13;
	}
	bdrv_w32(d, 0x70, 1 | 2 | 8 | 4);
	if (bdrv_r32(d, 0x70) != (1 | 2 | 8 | 4))
		return -14;
	return 0;
}

static void *guard_at(void *addr)
{
	void *p =
	    mmap(addr, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	if (p == MAP_FAILED)
		return NULL;
	if (p != addr) { /* an old kernel ignoring the flag: not a guard */
		munmap(p, 4096);
		return NULL;
	}
	return p;
}

int bdrv_setup(struct bdrv *d, uint64_t ram_bytes, uint64_t features,
	       const struct rf_balloon_config *cfg, bool driver_ok)
{
	return bdrv_setup2(d, ram_bytes, 0, 0, features, cfg, driver_ok);
}

int bdrv_setup2(struct bdrv *d, uint64_t ram_bytes, uint64_t gpa2, uint64_t bytes2,
		uint64_t features, const struct rf_balloon_config *cfg, bool driver_ok)
{
	struct rf_engine_config ec;
	struct rf_vm_config vc;
	struct rf_balloon_ops ops = {
	    .size = sizeof(ops), .irq = on_irq, .actual_changed = on_actual};
	void *hva;

	memset(d, 0, sizeof(*d));
	rf_engine_config_init(&ec);
	ec.log = capture;
	ec.log_arg = d;
	ec.log_level = RF_LOG_DEBUG;
	if (rf_engine_new(&ec, &d->e))
		return -1;
	rf_vm_config_init(&vc);
	vc.ram_bytes = ram_bytes + bytes2;
	if (rf_vm_new(d->e, "vm0", &vc, &d->vm) || rf_vm_map_ram(d->vm, 0, ram_bytes, &hva))
		return -2;
	if (bytes2 && rf_vm_map_ram(d->vm, gpa2, bytes2, &d->ram2))
		return -4;
	d->ram = hva;
	d->ram_bytes = ram_bytes;
	/* Guard pages: a device access one byte outside guest RAM faults. */
	d->guard[0] = guard_at(d->ram - 4096);
	d->guard[1] = guard_at(d->ram + ram_bytes);
	ops.arg = d;
	if (rf_balloon_new(d->vm, &ops, cfg, &d->b))
		return -3;
	if (driver_ok)
		return bdrv_handshake(d, features);
	return 0;
}

void bdrv_teardown(struct bdrv *d)
{
	rf_balloon_free(d->b);
	rf_engine_free(d->e);
	for (int i = 0; i < 2; i++)
		if (d->guard[i])
			munmap(d->guard[i], 4096);
	memset(d, 0, sizeof(*d));
}

uint16_t bdrv_send_pfns(struct bdrv *d, int q, const uint32_t *pfns, unsigned int n)
{
	uint32_t le[4096];
	uint16_t head;

	for (unsigned int i = 0; i < n && i < 4096; i++)
		le[i] = htole32(pfns[i]);
	head = vq_mock_add(&d->q[q], le, n * 4, false);
	rf_balloon_queue_notify(d->b, (unsigned int)q);
	return head;
}

static uint64_t pattern(uint64_t pfn, uint32_t seed, unsigned int i)
{
	return (pfn * 0x9e3779b97f4a7c15ull) ^ ((uint64_t)seed << 32) ^ i ^ 0x5555aaaa5555aaaaull;
}

void bdrv_fill_page(struct bdrv *d, uint64_t pfn, uint32_t seed)
{
	uint64_t *p = vqm_hva(d->vm, pfn << 12, 4096);

	for (unsigned int i = 0; i < 512; i++)
		p[i] = pattern(pfn, seed, i);
}

bool bdrv_page_is(struct bdrv *d, uint64_t pfn, uint32_t seed)
{
	const uint64_t *p = vqm_hva(d->vm, pfn << 12, 4096);

	for (unsigned int i = 0; i < 512; i++)
		if (p[i] != pattern(pfn, seed, i))
			return false;
	return true;
}

bool bdrv_page_is_zero(struct bdrv *d, uint64_t pfn)
{
	const uint64_t *p = vqm_hva(d->vm, pfn << 12, 4096);

	for (unsigned int i = 0; i < 512; i++)
		if (p[i])
			return false;
	return true;
}

void bdrv_fill_all(struct bdrv *d)
{
	for (uint64_t pfn = 0; pfn < bdrv_ring_base(d) >> 12; pfn++)
		bdrv_fill_page(d, pfn, 1);
}

uint64_t bdrv_check_all(struct bdrv *d)
{
	uint64_t bad = 0;

	for (uint64_t pfn = 0; pfn < bdrv_ring_base(d) >> 12; pfn++)
		bad += !bdrv_page_is(d, pfn, 1);
	return bad;
}
