/* SPDX-License-Identifier: MIT */
/*
 * A guest's side of a split virtqueue, laid out inside the real guest RAM of
 * a rf_vm, so a device test writes a request the way a driver would and then
 * checks what the device did (as Firecracker's VirtQueue test helper does).
 * Also a tiny virtio-mmio driver that brings a rf_balloon to DRIVER_OK with
 * its queues placed at the top of guest RAM.
 *
 * Free of cmocka and of anything heavy: the benchmark and the fuzz target
 * link it too. Functions return 0 / a valid value, or -1 on misuse.
 */
#ifndef RF_VIRTQ_MOCK_H
#define RF_VIRTQ_MOCK_H

#include <stdbool.h>
#include <stdint.h>

#include <ramfold/ramfold.h>

#define VQM_DESC_F_NEXT	    1
#define VQM_DESC_F_WRITE    2
#define VQM_DESC_F_INDIRECT 4

struct vq_mock {
	rf_vm *vm;
	uint16_t size;
	uint64_t desc, avail, used; /* gpa of the three areas */
	uint64_t buf_lo, buf_hi;    /* bump area for buffers */
	uint64_t buf_next;
	uint16_t avail_idx; /* driver's shadow of avail->idx */
	uint16_t next_desc; /* next free descriptor (wraps) */
	uint16_t used_seen; /* used entries consumed by vq_mock_get_used */
};

/* Host address of guest-physical @gpa (NULL if not guest RAM). */
void *vqm_hva(rf_vm *vm, uint64_t gpa, uint64_t len);

/*
 * Lay out a queue of @size entries at @base (4 KiB aligned): descriptor
 * table, avail, used, then @buf_bytes of buffer space. Zeroes all of it.
 * Returns the bytes used from @base.
 */
uint64_t vq_mock_init(struct vq_mock *m, rf_vm *vm, uint64_t base, uint16_t size,
		      uint64_t buf_bytes);

/* Space for a buffer of @len bytes (8-byte aligned) in the buffer area. */
uint64_t vq_mock_alloc(struct vq_mock *m, uint64_t len);

/* Write descriptor @i raw: anything, valid or not. */
void vq_mock_set_desc(struct vq_mock *m, uint16_t i, uint64_t addr, uint32_t len, uint16_t flags,
		      uint16_t next);

/* Put @head in the avail ring and bump avail->idx (release order). */
void vq_mock_publish(struct vq_mock *m, uint16_t head);

/* Set avail->idx directly (to test index jumps). */
void vq_mock_set_avail_idx(struct vq_mock *m, uint16_t idx);

/*
 * The common case: copy @len bytes of @data into a new buffer, describe it
 * with one descriptor (device-writable if @device_writes), publish it.
 * Returns the head index.
 */
uint16_t vq_mock_add(struct vq_mock *m, const void *data, uint32_t len, bool device_writes);

/* A buffer made of @n segments, each its own descriptor, chained. */
uint16_t vq_mock_add_chain(struct vq_mock *m, const uint64_t *addr, const uint32_t *len,
			   unsigned int n, bool device_writes);

/* used->idx as the device left it. */
uint16_t vq_mock_used_idx(struct vq_mock *m);

/* Next used element not yet seen: 1 and the id and length set, or 0 if none. */
int vq_mock_get_used(struct vq_mock *m, uint32_t *id, uint32_t *len);

/* avail->flags / used_event (for interrupt suppression tests). */
void vq_mock_set_avail_flags(struct vq_mock *m, uint16_t flags);
void vq_mock_set_used_event(struct vq_mock *m, uint16_t ev);

/* ---- a minimal virtio-mmio balloon driver ---------------------------------- */

struct bdrv {
	rf_engine *e;
	rf_vm *vm;
	rf_balloon *b;
	uint8_t *ram; /* region at gpa 0 */
	void *ram2;   /* optional second region */
	uint64_t ram_bytes;
	uint64_t features; /* negotiated */
	unsigned int nq;
	struct vq_mock q[5];
	int inflate_q, deflate_q, stats_q, report_q;
	unsigned int irqs;
	uint64_t last_actual;
	void *guard[2]; /* PROT_NONE pages around guest RAM, if the addresses were free */
	char last_log[512];
	unsigned int log_count;
};

uint32_t bdrv_r32(struct bdrv *d, uint64_t off);
void bdrv_w32(struct bdrv *d, uint64_t off, uint32_t v);

/*
 * Engine, VM with @ram_bytes at gpa 0, balloon with @cfg (NULL: defaults),
 * and, if @driver_ok, the whole driver handshake over MMIO accepting
 * @features (masked by the offer) with the queues in the top 1 MiB of RAM.
 * Returns 0, or a negative step number on failure.
 */
int bdrv_setup(struct bdrv *d, uint64_t ram_bytes, uint64_t features,
	       const struct rf_balloon_config *cfg, bool driver_ok);

/* The same with a second RAM region [@gpa2, @gpa2+@bytes2) (a hole before
 * it), for PFNs in holes and above 2^31. */
int bdrv_setup2(struct bdrv *d, uint64_t ram_bytes, uint64_t gpa2, uint64_t bytes2,
		uint64_t features, const struct rf_balloon_config *cfg, bool driver_ok);

/* The handshake alone (on a device after bdrv_setup(..., false)). */
int bdrv_handshake(struct bdrv *d, uint64_t features);

void bdrv_teardown(struct bdrv *d);

/* Lowest gpa of the ring area: tests keep their pages below it. */
uint64_t bdrv_ring_base(const struct bdrv *d);

/* Put @n PFNs (little-endian u32) on queue @q and notify. Returns the head. */
uint16_t bdrv_send_pfns(struct bdrv *d, int q, const uint32_t *pfns, unsigned int n);

/* Fill page @pfn with a pattern derived from @seed / check it. */
void bdrv_fill_page(struct bdrv *d, uint64_t pfn, uint32_t seed);
bool bdrv_page_is(struct bdrv *d, uint64_t pfn, uint32_t seed);
bool bdrv_page_is_zero(struct bdrv *d, uint64_t pfn);

/* Fill every page below the ring area with its pattern; check them all.
 * Returns the number of pages that differ. */
void bdrv_fill_all(struct bdrv *d);
uint64_t bdrv_check_all(struct bdrv *d);

#endif
