/* SPDX-License-Identifier: MIT */
/*
 * Every hostile input issue 5 names, and those issue 14 found, one test each
 * (or a few per test when they are variants of one rule). Each asserts:
 *   - the device's answer: the buffer returned used with length 0 and the
 *     used index consistent, or DEVICE_NEEDS_RESET set;
 *   - the named counter went up by exactly the expected amount, and no other
 *     rejection counter moved (rf_balloon_rejected_total);
 *   - nothing was lost: every page of guest RAM below the rings still holds
 *     its pattern, and nothing is ballooned;
 *   - no byte outside guest RAM was touched: a PROT_NONE guard page sits
 *     right below guest RAM (a stray access faults and fails the run; above
 *     RAM the kernel places the region's own metadata, so no guard fits
 *     there), every buffer is translated through rf_vm_gpa_to_hva (so a
 *     range that runs off the region end is refused before any access), and
 *     the ASan run of this suite checks every host access the device makes
 *     to its own memory.
 * After each rejection the device keeps working (a valid request succeeds).
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rf_test.h"
#include "virtq_mock.h"

#define RAM (8ull << 20)
#define ALL (~0ull)

struct hfix {
	struct bdrv d;
	struct rf_balloon_counters c0;
};

static struct hfix F;

static struct rf_balloon_counters ctr(struct bdrv *d)
{
	struct rf_balloon_counters c = {.size = sizeof(c)};

	assert_int_equal(rf_balloon_counters(d->b, &c), 0);
	return c;
}

static void arm(struct hfix *f)
{
	bdrv_fill_all(&f->d);
	f->c0 = ctr(&f->d);
	f->d.log_count = 0;
}

static int setup(void **state)
{
	memset(&F, 0, sizeof(F));
	assert_int_equal(bdrv_setup(&F.d, RAM, ALL, NULL, true), 0);
	/* Best effort: under valgrind the address space is not ours to pick,
	 * and valgrind itself then checks every access. */
	if (!F.d.guard[0] && !getenv("RF_TEST_WRAP"))
		fail_msg("could not place the guard page below guest RAM");
	arm(&F);
	*state = &F;
	return 0;
}

static int teardown(void **state)
{
	bdrv_teardown(&((struct hfix *)*state)->d);
	return 0;
}

/* The counter moved by @n, nothing else was rejected, and a reason was logged. */
#define EXPECT_COUNTED(f, field, n)                                                                \
	do {                                                                                       \
		struct rf_balloon_counters c1_ = ctr(&(f)->d);                                     \
		assert_int_equal(c1_.field - (f)->c0.field, (n));                                  \
		assert_int_equal(                                                                  \
		    rf_balloon_rejected_total(&c1_) - rf_balloon_rejected_total(&(f)->c0), (n));   \
		assert_true((f)->d.log_count >= 1);                                                \
	} while (0)

static void expect_dropped(struct hfix *f, int q)
{
	struct vq_mock *m = &f->d.q[q];
	uint32_t id, len = 1;

	assert_int_equal(vq_mock_used_idx(m), m->avail_idx);
	while (vq_mock_get_used(m, &id, &len))
		assert_int_equal(len, 0);
	assert_int_equal(rf_balloon_get_status(f->d.b) & RF_VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
}

static void expect_needs_reset(struct hfix *f)
{
	assert_true(rf_balloon_get_status(f->d.b) & RF_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	assert_true(f->d.irqs >= 1); /* config interrupt told the driver */
}

static void expect_intact(struct hfix *f)
{
	struct rf_balloon_info info = {.size = sizeof(info)};

	assert_int_equal(bdrv_check_all(&f->d), 0);
	assert_int_equal(rf_balloon_info(f->d.b, &info), 0);
	assert_int_equal(info.ballooned_bytes, 0);
	assert_int_equal(info.reported_bytes, 0);
}

/* The device still works: a valid inflate of one page, then deflate it. */
static void expect_still_works(struct hfix *f)
{
	uint32_t pfn = 1500;

	bdrv_send_pfns(&f->d, f->d.inflate_q, &pfn, 1);
	assert_int_equal(rf_vm_page_state(f->d.vm, 1500ull << 12), RF_PAGE_BALLOONED);
	bdrv_send_pfns(&f->d, f->d.deflate_q, &pfn, 1);
	assert_int_equal(rf_vm_page_state(f->d.vm, 1500ull << 12), RF_PAGE_PRIVATE);
}

/* Reset the device and redo the handshake (after DEVICE_NEEDS_RESET). */
static void recover(struct hfix *f)
{
	assert_int_equal(bdrv_handshake(&f->d, ALL), 0);
	expect_still_works(f);
}

/* ---- PFNs ---------------------------------------------------------------------- */

static void test_pfn_beyond_ram(void **state)
{
	struct hfix *f = *state;
	uint32_t pfns[3] = {10, 11, (uint32_t)(RAM >> 12) + 5};

	bdrv_send_pfns(&f->d, f->d.inflate_q, pfns, 3);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, pfn_invalid, 1);
	assert_log_contains((&(struct rf_test_log){.count = 0}), ""); /* format only */
	assert_non_null(strstr(f->d.last_log, "beyond guest RAM"));
	expect_intact(f); /* pages 10 and 11 were not discarded */
	/* same for deflate */
	pfns[0] = (uint32_t)(RAM >> 12);
	bdrv_send_pfns(&f->d, f->d.deflate_q, pfns, 1);
	expect_dropped(f, f->d.deflate_q);
	EXPECT_COUNTED(f, pfn_invalid, 2);
	expect_still_works(f);
}

static void test_pfn_in_hole_and_above_2g(void **state)
{
	struct bdrv d;
	/* Second region at PFN 2^31 (gpa 8 TiB): a sign-extending device would
	 * compute a negative address for it. */
	const uint64_t gpa2 = 0x80000000ull << 12;
	uint32_t pfn;
	uint64_t *p2;
	struct rf_balloon_counters c0 = {.size = sizeof(c0)}, c1 = {.size = sizeof(c1)};

	(void)state;
	assert_int_equal(bdrv_setup2(&d, RAM, gpa2, 1 << 20, ALL, NULL, true), 0);
	bdrv_fill_all(&d);
	p2 = d.ram2;
	p2[0] = 0x1234;
	p2[512] = 0x5678;
	c0 = ctr(&d);
	/* in the hole between the regions */
	pfn = (uint32_t)((16ull << 20) >> 12);
	bdrv_send_pfns(&d, d.inflate_q, &pfn, 1);
	/* 2^32-1: beyond everything */
	pfn = 0xffffffffu;
	bdrv_send_pfns(&d, d.inflate_q, &pfn, 1);
	/* just past the second region */
	pfn = 0x80000000u + 256;
	bdrv_send_pfns(&d, d.inflate_q, &pfn, 1);
	c1 = ctr(&d);
	assert_int_equal(c1.pfn_invalid - c0.pfn_invalid, 3);
	assert_int_equal(rf_balloon_rejected_total(&c1) - rf_balloon_rejected_total(&c0), 3);
	assert_int_equal(vq_mock_used_idx(&d.q[d.inflate_q]), 3);
	assert_int_equal(bdrv_check_all(&d), 0);
	assert_int_equal(p2[0], 0x1234);
	/* PFN 2^31 itself is valid and lands on the right page */
	pfn = 0x80000000u;
	bdrv_send_pfns(&d, d.inflate_q, &pfn, 1);
	assert_int_equal(rf_vm_page_state(d.vm, gpa2), RF_PAGE_BALLOONED);
	assert_int_equal(p2[0], 0);
	assert_int_equal(p2[512], 0x5678); /* the next page is not */
	assert_int_equal(bdrv_check_all(&d), 0);
	bdrv_teardown(&d);
}

static void test_buffer_length_not_multiple_of_4(void **state)
{
	struct hfix *f = *state;
	uint8_t b[6] = {10, 0, 0, 0, 11, 0};

	vq_mock_add(&f->d.q[f->d.inflate_q], b, 6, false);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, buf_len_invalid, 1);
	expect_intact(f);
	expect_still_works(f);
}

static void test_too_many_pfns(void **state)
{
	struct hfix *f = *state;
	uint32_t pfns[257];

	for (unsigned int i = 0; i < 257; i++)
		pfns[i] = 100 + i;
	bdrv_send_pfns(&f->d, f->d.inflate_q, pfns, 257);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, buf_too_many_pfns, 1);
	expect_intact(f);
	bdrv_send_pfns(&f->d, f->d.inflate_q, pfns, 256); /* 256 is what Linux sends */
	assert_int_equal(rf_vm_page_state(f->d.vm, 100ull << 12), RF_PAGE_BALLOONED);
}

static void test_inflate_more_than_guest_has(void **state)
{
	struct hfix *f = *state;
	uint32_t pfns[256], actual = 4096; /* twice the guest's pages */
	uint64_t below = bdrv_ring_base(&f->d) >> 12;
	struct rf_balloon_info info = {.size = sizeof(info)};
	struct rf_balloon_counters c1 = {.size = sizeof(c1)};

	/* every page below the rings, then all of them again plus more */
	for (uint64_t base = 0; base < below; base += 256) {
		for (unsigned int i = 0; i < 256; i++)
			pfns[i] = (uint32_t)(base + i);
		bdrv_send_pfns(&f->d, f->d.inflate_q, pfns, 256);
	}
	for (unsigned int i = 0; i < 256; i++)
		pfns[i] = (uint32_t)i;
	bdrv_send_pfns(&f->d, f->d.inflate_q, pfns, 256);
	pfns[0] = (uint32_t)(RAM >> 12) + 1;
	bdrv_send_pfns(&f->d, f->d.inflate_q, pfns, 1);
	rf_balloon_info(f->d.b, &info);
	assert_int_equal(info.ballooned_bytes, below << 12); /* never more than it has */
	c1 = ctr(&f->d);
	assert_int_equal(c1.inflate_already_ballooned - f->c0.inflate_already_ballooned, 256);
	assert_int_equal(c1.pfn_invalid - f->c0.pfn_invalid, 1);
	/* and a guest claiming a bigger balloon than its RAM is only believed in words */
	rf_balloon_mmio_write(f->d.b, 0x104, &actual, 4);
	c1 = ctr(&f->d);
	assert_int_equal(c1.actual_implausible - f->c0.actual_implausible, 1);
	rf_balloon_info(f->d.b, &info);
	assert_int_equal(info.actual_bytes, 4096ull << 12);
	assert_int_equal(info.ballooned_bytes, below << 12);
}

static void test_deflate_never_inflated(void **state)
{
	struct hfix *f = *state;
	uint32_t pfn = 20;

	bdrv_send_pfns(&f->d, f->d.deflate_q, &pfn, 1);
	expect_dropped(f, f->d.deflate_q);
	EXPECT_COUNTED(f, deflate_not_ballooned, 1);
	expect_intact(f); /* page 20 was not discarded */
	assert_int_equal(rf_vm_page_state(f->d.vm, 20ull << 12), RF_PAGE_PRIVATE);
}

static void test_same_pfn_inflated_twice(void **state)
{
	struct hfix *f = *state;
	uint32_t pfn = 30, two[2] = {31, 31};
	struct rf_balloon_info info = {.size = sizeof(info)};

	bdrv_send_pfns(&f->d, f->d.inflate_q, &pfn, 1);
	f->c0 = ctr(&f->d);
	bdrv_send_pfns(&f->d, f->d.inflate_q, &pfn, 1);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, inflate_already_ballooned, 1);
	bdrv_send_pfns(&f->d, f->d.inflate_q, two, 2); /* twice in one buffer */
	EXPECT_COUNTED(f, inflate_already_ballooned, 2);
	rf_balloon_info(f->d.b, &info);
	assert_int_equal(info.ballooned_bytes, 2 * 4096);
	assert_int_equal(ctr(&f->d).inflated_pages, 2);
}

/* ---- descriptors ----------------------------------------------------------------- */

static void test_wrong_direction(void **state)
{
	struct hfix *f = *state;
	uint32_t pfn = htole32(40);
	uint64_t a = 1024ull << 12;
	uint32_t l = 4096;

	vq_mock_add(&f->d.q[f->d.inflate_q], &pfn, 4, true); /* device-writable PFN list */
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, desc_wrong_direction, 1);
	/* a device-readable range on the reporting queue */
	vq_mock_add_chain(&f->d.q[f->d.report_q], &a, &l, 1, false);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.report_q);
	expect_dropped(f, f->d.report_q);
	EXPECT_COUNTED(f, desc_wrong_direction, 2);
	expect_intact(f);
	expect_still_works(f);
}

static void test_next_index_out_of_range(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m = &f->d.q[f->d.inflate_q];
	uint64_t a = vq_mock_alloc(m, 8);

	memcpy(vqm_hva(f->d.vm, a, 8), (uint32_t[]){50, 51}, 8);
	vq_mock_set_desc(m, 0, a, 4, VQM_DESC_F_NEXT, 300);
	vq_mock_publish(m, 0);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, desc_index_invalid, 1);
	expect_intact(f);
}

static void test_head_index_out_of_range(void **state)
{
	struct hfix *f = *state;

	vq_mock_publish(&f->d.q[f->d.inflate_q], 256); /* queue has 256 entries: 0..255 */
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_needs_reset(f);
	EXPECT_COUNTED(f, desc_index_invalid, 1);
	assert_int_equal(vq_mock_used_idx(&f->d.q[f->d.inflate_q]), 0);
	/* while it needs a reset, queues are not processed (counted) */
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	assert_int_equal(ctr(&f->d).notify_needs_reset - f->c0.notify_needs_reset, 1);
	expect_intact(f);
	recover(f);
}

static void test_chain_loops_or_too_long(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m = &f->d.q[f->d.inflate_q];
	uint64_t a = vq_mock_alloc(m, 4), t;

	memcpy(vqm_hva(f->d.vm, a, 4), (uint32_t[]){60}, 4);
	vq_mock_set_desc(m, 0, a, 4, VQM_DESC_F_NEXT, 1);
	vq_mock_set_desc(m, 1, a, 4, VQM_DESC_F_NEXT, 0);
	vq_mock_publish(m, 0);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, desc_chain_too_long, 1);
	/* longer than the queue: an indirect table of 257 entries */
	t = vq_mock_alloc(m, 16 * 257);
	for (uint16_t i = 0; i < 257; i++) {
		uint8_t d[16] = {0};
		uint32_t l = 4;
		uint16_t fl = i < 256 ? VQM_DESC_F_NEXT : 0, nx = (uint16_t)(i + 1);

		memcpy(d, &a, 8);
		memcpy(d + 8, &l, 4);
		memcpy(d + 12, &fl, 2);
		memcpy(d + 14, &nx, 2);
		memcpy(vqm_hva(f->d.vm, t + 16ull * i, 16), d, 16);
	}
	vq_mock_set_desc(m, 2, t, 16 * 257, VQM_DESC_F_INDIRECT, 0);
	vq_mock_publish(m, 2);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, desc_chain_too_long, 2);
	expect_intact(f);
	expect_still_works(f);
}

static void put_indirect(struct hfix *f, struct vq_mock *m, uint16_t head, uint32_t table_len,
			 bool nested)
{
	uint64_t a = vq_mock_alloc(m, 4), t = vq_mock_alloc(m, 32);
	uint8_t d[16] = {0};
	uint32_t l = 4;
	uint16_t fl = nested ? VQM_DESC_F_INDIRECT : 0;

	memcpy(vqm_hva(f->d.vm, a, 4), (uint32_t[]){70}, 4);
	memcpy(d, &a, 8);
	memcpy(d + 8, &l, 4);
	memcpy(d + 12, &fl, 2);
	memcpy(vqm_hva(f->d.vm, t, 16), d, 16);
	vq_mock_set_desc(m, head, t, table_len, VQM_DESC_F_INDIRECT, 0);
	vq_mock_publish(m, head);
}

/* Issue 14: with EVENT_IDX, a dropped chain moves avail_event past it, so
 * the driver's next buffer gets its notify and is processed at once. */
static void test_dropped_chain_moves_avail_event(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m = &f->d.q[f->d.inflate_q];
	uint16_t *avail_event = vqm_hva(f->d.vm, m->used + 4 + 8ull * m->size, 2);
	uint32_t pfn = 1500;

	assert_true(f->d.features & RF_VIRTIO_F_EVENT_IDX);
	vq_mock_set_desc(m, 0, vq_mock_alloc(m, 4), 4, VQM_DESC_F_NEXT, m->size); /* bad next */
	vq_mock_publish(m, 0);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, desc_index_invalid, 1);
	assert_int_equal(le16toh(*avail_event), m->avail_idx);
	expect_intact(f);
	/* the next buffer: a conforming driver notifies (avail_idx passed
	 * avail_event) and it is taken right away */
	bdrv_send_pfns(&f->d, f->d.inflate_q, &pfn, 1);
	assert_int_equal(le16toh(*avail_event), m->avail_idx);
	assert_int_equal(rf_vm_page_state(f->d.vm, 1500ull << 12), RF_PAGE_BALLOONED);
}

static void test_indirect_rules(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m = &f->d.q[f->d.inflate_q];

	put_indirect(f, m, 0, 16, true); /* indirect inside indirect */
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, indirect_nested, 1);
	put_indirect(f, m, 1, 0, false);  /* length 0 */
	put_indirect(f, m, 2, 24, false); /* not a multiple of 16 */
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_dropped(f, f->d.inflate_q);
	assert_int_equal(ctr(&f->d).indirect_len_invalid - f->c0.indirect_len_invalid, 2);
	expect_intact(f);
	put_indirect(f, m, 3, 16, false); /* a valid one is accepted */
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	assert_int_equal(rf_vm_page_state(f->d.vm, 70ull << 12), RF_PAGE_BALLOONED);
}

static void test_indirect_not_negotiated(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m;

	assert_int_equal(bdrv_handshake(&f->d, ALL & ~RF_VIRTIO_F_INDIRECT_DESC), 0);
	arm(f);
	m = &f->d.q[f->d.inflate_q];
	put_indirect(f, m, 0, 16, false);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, indirect_not_negotiated, 1);
	expect_intact(f);
}

static void test_unknown_desc_flags(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m = &f->d.q[f->d.inflate_q];
	uint64_t a = vq_mock_alloc(m, 4);

	memcpy(vqm_hva(f->d.vm, a, 4), (uint32_t[]){80}, 4);
	vq_mock_set_desc(m, 0, a, 4, 0x8000, 0);
	vq_mock_publish(m, 0);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, desc_flags_invalid, 1);
	expect_intact(f);
}

static void test_buffer_address_wraps_or_runs_off(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m = &f->d.q[f->d.inflate_q];

	vq_mock_set_desc(m, 0, 0xfffffffffffff000ull, 0x2000, 0, 0); /* wraps 2^64 */
	vq_mock_publish(m, 0);
	vq_mock_set_desc(m, 1, RAM - 2, 4, 0, 0); /* runs off the end of the region */
	vq_mock_publish(m, 1);
	vq_mock_set_desc(m, 2, RAM, 4, 0, 0); /* just outside */
	vq_mock_publish(m, 2);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_dropped(f, f->d.inflate_q);
	EXPECT_COUNTED(f, desc_addr_invalid, 3);
	expect_intact(f);
	expect_still_works(f);
}

static void test_avail_index_jump(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m = &f->d.q[f->d.inflate_q];

	vq_mock_set_avail_idx(m, (uint16_t)(m->size + 1));
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.inflate_q);
	expect_needs_reset(f);
	EXPECT_COUNTED(f, avail_idx_jump, 1);
	assert_int_equal(vq_mock_used_idx(m), 0);
	expect_intact(f);
	recover(f);
}

/* ---- queue setup and the transport --------------------------------------------- */

/* Reset and negotiate, stopping before queue setup. */
static void to_features_ok(struct hfix *f)
{
	bdrv_w32(&f->d, 0x70, 0);
	bdrv_w32(&f->d, 0x70, 3);
	bdrv_w32(&f->d, 0x24, 1);
	bdrv_w32(&f->d, 0x20, 1); /* VERSION_1 */
	bdrv_w32(&f->d, 0x70, 3 | 8);
	assert_int_equal(bdrv_r32(&f->d, 0x70), 3 | 8);
	arm(f);
}

static void try_queue(struct hfix *f, uint32_t num, uint64_t desc, uint64_t avail, uint64_t used)
{
	bdrv_w32(&f->d, 0x30, 0);
	bdrv_w32(&f->d, 0x38, num);
	bdrv_w32(&f->d, 0x80, (uint32_t)desc);
	bdrv_w32(&f->d, 0x84, (uint32_t)(desc >> 32));
	bdrv_w32(&f->d, 0x90, (uint32_t)avail);
	bdrv_w32(&f->d, 0x94, (uint32_t)(avail >> 32));
	bdrv_w32(&f->d, 0xa0, (uint32_t)used);
	bdrv_w32(&f->d, 0xa4, (uint32_t)(used >> 32));
	bdrv_w32(&f->d, 0x44, 1);
}

static void test_ring_addresses(void **state)
{
	struct hfix *f = *state;
	static const uint64_t bad[][3] = {
	    {0x100008, 0x101000, 0x102000},		 /* desc not 16-aligned */
	    {0x100000, 0x101001, 0x102000},		 /* avail odd */
	    {0x100000, 0x101000, 0x102002},		 /* used not 4-aligned */
	    {RAM, 0x101000, 0x102000},			 /* outside guest RAM */
	    {0x100000, 0x101000, RAM - 0x100},		 /* runs off the end */
	    {0xfffffffffffff000ull, 0x101000, 0x102000}, /* overflows 64 bits */
	};

	for (unsigned int i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		to_features_ok(f);
		try_queue(f, 64, bad[i][0], bad[i][1], bad[i][2]);
		assert_int_equal(bdrv_r32(&f->d, 0x44), 0); /* not enabled */
		assert_true(bdrv_r32(&f->d, 0x70) & RF_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
		EXPECT_COUNTED(f, ring_addr_invalid, 1);
		expect_intact(f);
	}
	recover(f);
}

static void test_queue_size(void **state)
{
	struct hfix *f = *state;
	static const uint32_t bad[] = {0, 100, 512, 0xffffffffu};

	for (unsigned int i = 0; i < 4; i++) {
		to_features_ok(f);
		try_queue(f, bad[i], 0x100000, 0x101000, 0x102000);
		assert_int_equal(bdrv_r32(&f->d, 0x44), 0);
		assert_true(bdrv_r32(&f->d, 0x70) & RF_VIRTIO_STATUS_DEVICE_NEEDS_RESET);
		EXPECT_COUNTED(f, queue_size_invalid, 1);
	}
	recover(f);
}

static void test_queue_used_before_driver_ok(void **state)
{
	struct hfix *f = *state;
	struct vq_mock m;
	uint32_t pfn = htole32(90);

	to_features_ok(f);
	vq_mock_init(&m, f->d.vm, bdrv_ring_base(&f->d), 64, 16 << 10);
	try_queue(f, 64, m.desc, m.avail, m.used);
	assert_int_equal(bdrv_r32(&f->d, 0x44), 1);
	vq_mock_add(&m, &pfn, 4, false);
	bdrv_w32(&f->d, 0x50, 0);
	EXPECT_COUNTED(f, notify_before_driver_ok, 1);
	assert_int_equal(vq_mock_used_idx(&m), 0); /* nothing consumed */
	expect_intact(f);
	/* DRIVER_OK: the deferred buffer is processed then, not lost */
	bdrv_w32(&f->d, 0x70, 3 | 8 | 4);
	assert_int_equal(vq_mock_used_idx(&m), 1);
	assert_int_equal(rf_vm_page_state(f->d.vm, 90ull << 12), RF_PAGE_BALLOONED);
}

static void test_features_after_features_ok(void **state)
{
	struct hfix *f = *state;
	struct rf_balloon_info info = {.size = sizeof(info)};

	rf_balloon_info(f->d.b, &info);
	bdrv_w32(&f->d, 0x24, 0);
	bdrv_w32(&f->d, 0x20, 0);
	EXPECT_COUNTED(f, features_after_features_ok, 1);
	assert_int_equal(rf_balloon_set_driver_features(f->d.b, RF_VIRTIO_F_VERSION_1), -EBUSY);
	{
		struct rf_balloon_info now = {.size = sizeof(now)};

		rf_balloon_info(f->d.b, &now);
		assert_true(now.features_negotiated == info.features_negotiated);
	}
	expect_still_works(f);
}

static void test_features_unsupported(void **state)
{
	struct hfix *f = *state;

	/* FREE_PAGE_HINT is not offered; legacy (no VERSION_1) is not supported */
	static const uint64_t bad[] = {RF_VIRTIO_F_VERSION_1 | RF_BALLOON_F_FREE_PAGE_HINT,
				       RF_BALLOON_F_STATS_VQ, RF_VIRTIO_F_VERSION_1 | (1ull << 40)};

	for (unsigned int i = 0; i < 3; i++) {
		bdrv_w32(&f->d, 0x70, 0);
		bdrv_w32(&f->d, 0x70, 3);
		arm(f);
		bdrv_w32(&f->d, 0x24, 0);
		bdrv_w32(&f->d, 0x20, (uint32_t)bad[i]);
		bdrv_w32(&f->d, 0x24, 1);
		bdrv_w32(&f->d, 0x20, (uint32_t)(bad[i] >> 32));
		bdrv_w32(&f->d, 0x70, 3 | 8);
		assert_int_equal(bdrv_r32(&f->d, 0x70) & 8, 0); /* FEATURES_OK refused */
		EXPECT_COUNTED(f, features_unsupported, 1);
	}
	recover(f);
}

/* Issue 14: features 32 bits at a time through the own-transport calls. */
static void test_feature_halves_hostile(void **state)
{
	struct hfix *f = *state;
	struct rf_balloon_info info = {.size = sizeof(info)}, now = {.size = sizeof(now)};

	/* after FEATURES_OK: refused, counted, the negotiated set unchanged */
	rf_balloon_info(f->d.b, &info);
	assert_int_equal(rf_balloon_set_driver_features_half(f->d.b, 0, 0), -EBUSY);
	EXPECT_COUNTED(f, features_after_features_ok, 1);
	assert_int_equal(rf_balloon_set_driver_features_half(f->d.b, 1, 0), -EBUSY);
	EXPECT_COUNTED(f, features_after_features_ok, 2);
	assert_int_equal(rf_balloon_set_driver_features_half(f->d.b, 2, 1), -EBUSY);
	EXPECT_COUNTED(f, features_after_features_ok, 3);
	rf_balloon_info(f->d.b, &now);
	assert_true(now.features_negotiated == info.features_negotiated);
	expect_still_works(f);

	/* bits above 63 were never offered: refused, and so is FEATURES_OK */
	assert_int_equal(rf_balloon_set_status(f->d.b, 0), 0);
	assert_int_equal(rf_balloon_set_status(f->d.b, 1 | 2), 0);
	arm(f);
	assert_int_equal(
	    rf_balloon_set_driver_features_half(f->d.b, 0, (uint32_t)RF_BALLOON_F_STATS_VQ), 0);
	assert_int_equal(rf_balloon_set_driver_features_half(f->d.b, 1, 1), 0);
	assert_int_equal(rf_balloon_set_driver_features_half(f->d.b, 2, 0), 0); /* nothing asked */
	assert_int_equal(rf_balloon_device_features_half(f->d.b, 2), 0);
	assert_int_equal(rf_balloon_device_features_half(f->d.b, 0xffffffffu), 0);
	{
		struct rf_balloon_counters c = ctr(&f->d);

		assert_int_equal(rf_balloon_rejected_total(&c), rf_balloon_rejected_total(&f->c0));
	}
	assert_int_equal(rf_balloon_set_driver_features_half(f->d.b, 7, 0x10), -EINVAL);
	EXPECT_COUNTED(f, features_unsupported, 1);
	assert_non_null(strstr(f->d.last_log, "above bit 63"));
	assert_int_equal(rf_balloon_set_status(f->d.b, 1 | 2 | 8), -EINVAL);
	assert_int_equal(rf_balloon_get_status(f->d.b), 1 | 2);
	EXPECT_COUNTED(f, features_unsupported, 2);
	/* the same over virtio-mmio (DriverFeaturesSel 2) */
	bdrv_w32(&f->d, 0x70, 0);
	bdrv_w32(&f->d, 0x70, 1 | 2);
	bdrv_w32(&f->d, 0x24, 0);
	bdrv_w32(&f->d, 0x20, 0);
	bdrv_w32(&f->d, 0x24, 1);
	bdrv_w32(&f->d, 0x20, 1);
	bdrv_w32(&f->d, 0x24, 2);
	bdrv_w32(&f->d, 0x20, 4);
	bdrv_w32(&f->d, 0x70, 1 | 2 | 8);
	assert_int_equal(bdrv_r32(&f->d, 0x70), 1 | 2);
	EXPECT_COUNTED(f, features_unsupported, 4);
	/* a half not offered is stored unchecked, refused at FEATURES_OK */
	assert_int_equal(rf_balloon_set_status(f->d.b, 0), 0);
	assert_int_equal(rf_balloon_set_status(f->d.b, 1 | 2), 0);
	assert_int_equal(rf_balloon_set_driver_features_half(f->d.b, 0, 1u << 3), 0);
	assert_int_equal(rf_balloon_set_driver_features_half(f->d.b, 1, 1), 0);
	EXPECT_COUNTED(f, features_unsupported, 4);
	assert_int_equal(rf_balloon_set_status(f->d.b, 1 | 2 | 8), -EINVAL);
	EXPECT_COUNTED(f, features_unsupported, 5);
	rf_balloon_info(f->d.b, &now);
	assert_int_equal(now.features_negotiated, 0);
	assert_int_equal(rf_balloon_set_driver_features_half(NULL, 0, 0), -EINVAL);
	assert_int_equal(rf_balloon_device_features_half(NULL, 0), 0);
	expect_intact(f);
	recover(f);
}

/* Issue 14: stopping or asking about a queue that does not exist. */
static void test_queue_disable_missing(void **state)
{
	struct hfix *f = *state;

	assert_int_equal(rf_balloon_queue_enabled(f->d.b, f->d.nq), -EINVAL);
	assert_int_equal(rf_balloon_queue_enabled(f->d.b, 1000), -EINVAL);
	assert_int_equal(rf_balloon_queue_disable(f->d.b, f->d.nq), -EINVAL);
	EXPECT_COUNTED(f, queue_setup_invalid, 1);
	assert_non_null(strstr(f->d.last_log, "does not exist"));
	assert_int_equal(rf_balloon_queue_disable(NULL, 0), -EINVAL);
	for (unsigned int q = 0; q < f->d.nq; q++)
		assert_int_equal(rf_balloon_queue_enabled(f->d.b, q), 1);
	expect_intact(f);
	expect_still_works(f);
}

static void test_status_transitions(void **state)
{
	struct hfix *f = *state;

	bdrv_w32(&f->d, 0x70, 1); /* clears DRIVER, FEATURES_OK, DRIVER_OK */
	EXPECT_COUNTED(f, status_invalid, 1);
	assert_int_equal(bdrv_r32(&f->d, 0x70), 15);
	bdrv_w32(&f->d, 0x70, 0);
	bdrv_w32(&f->d, 0x70, 1 | 2 | 4); /* DRIVER_OK without FEATURES_OK */
	EXPECT_COUNTED(f, status_invalid, 2);
	assert_int_equal(bdrv_r32(&f->d, 0x70), 0);
	recover(f);
}

/* Issue 14: FEATURES_OK and DRIVER_OK in one write, with a feature the
 * device never offered: neither bit sticks (0x0f read back as 0x03, not
 * 0x07), over MMIO and through rf_balloon_set_status alike. */
static void test_driver_ok_with_refused_features(void **state)
{
	struct hfix *f = *state;
	const uint64_t bad = RF_VIRTIO_F_VERSION_1 | RF_BALLOON_F_FREE_PAGE_HINT;
	struct rf_balloon_info info = {.size = sizeof(info)};

	bdrv_w32(&f->d, 0x70, 0);
	bdrv_w32(&f->d, 0x70, 1 | 2);
	arm(f);
	bdrv_w32(&f->d, 0x24, 0);
	bdrv_w32(&f->d, 0x20, (uint32_t)bad);
	bdrv_w32(&f->d, 0x24, 1);
	bdrv_w32(&f->d, 0x20, (uint32_t)(bad >> 32));
	bdrv_w32(&f->d, 0x70, 0x0f);
	assert_int_equal(bdrv_r32(&f->d, 0x70), 1 | 2);
	assert_int_equal(ctr(&f->d).features_unsupported - f->c0.features_unsupported, 1);
	assert_int_equal(ctr(&f->d).status_invalid - f->c0.status_invalid, 1);
	assert_non_null(strstr(f->d.last_log, "DRIVER_OK refused"));
	rf_balloon_info(f->d.b, &info);
	assert_int_equal(info.features_negotiated, 0);
	/* the device is not live: a notify is refused, nothing is touched */
	bdrv_w32(&f->d, 0x50, 0);
	expect_intact(f);

	/* the same through the own-transport calls */
	assert_int_equal(rf_balloon_set_status(f->d.b, 0), 0);
	assert_int_equal(rf_balloon_set_status(f->d.b, 1 | 2), 0);
	assert_int_equal(rf_balloon_set_driver_features(f->d.b, bad), -EINVAL);
	assert_int_equal(rf_balloon_set_status(f->d.b, 0x0f), -EINVAL);
	assert_int_equal(rf_balloon_get_status(f->d.b), 1 | 2);
	rf_balloon_info(f->d.b, &info);
	assert_int_equal(info.features_negotiated, 0);
	expect_intact(f);
	recover(f);
}

static void test_mmio_access(void **state)
{
	struct hfix *f = *state;
	uint16_t v16 = 0xffff;
	uint32_t v = 0xffffffff;

	rf_balloon_mmio_read(f->d.b, 0x70, &v16, 2); /* register read with 2 bytes */
	assert_int_equal(v16, 0);
	rf_balloon_mmio_read(f->d.b, 0x72, &v, 4); /* unaligned */
	assert_int_equal(v, 0);
	bdrv_w32(&f->d, 0x000, 0); /* write to MagicValue */
	v = 0xffffffff;
	rf_balloon_mmio_read(f->d.b, RF_BALLOON_MMIO_SIZE, &v, 4); /* beyond the window */
	assert_int_equal(v, 0);
	rf_balloon_mmio_read(f->d.b, 0x50, &v, 4); /* QueueNotify is write-only */
	EXPECT_COUNTED(f, mmio_access_invalid, 5);
	assert_int_equal(bdrv_r32(&f->d, 0x000), 0x74726976);
	/* queue registers of a live queue, notify of a missing queue */
	bdrv_w32(&f->d, 0x30, 0);
	bdrv_w32(&f->d, 0x80, 0x1000);
	assert_int_equal(ctr(&f->d).queue_setup_invalid - f->c0.queue_setup_invalid, 1);
	bdrv_w32(&f->d, 0x50, 7);
	assert_int_equal(ctr(&f->d).notify_invalid - f->c0.notify_invalid, 1);
	expect_still_works(f);
}

/* Issue 14: an invalid access reads as 0, all of it, however long. */
static void test_mmio_read_longer_than_8(void **state)
{
	struct hfix *f = *state;
	uint8_t buf[16], zero[16] = {0};

	memset(buf, 0xa5, sizeof(buf));
	rf_balloon_mmio_read(f->d.b, 0x70, buf, 16); /* a register */
	assert_memory_equal(buf, zero, 16);
	memset(buf, 0xa5, sizeof(buf));
	rf_balloon_mmio_read(f->d.b, 0x100, buf, 16); /* the config space */
	assert_memory_equal(buf, zero, 16);
	memset(buf, 0xa5, sizeof(buf));
	rf_balloon_mmio_read(f->d.b, RF_BALLOON_MMIO_SIZE, buf, 16); /* beyond the window */
	assert_memory_equal(buf, zero, 16);
	EXPECT_COUNTED(f, mmio_access_invalid, 3);
	assert_int_equal(bdrv_r32(&f->d, 0x70), 15);
	expect_intact(f);
	expect_still_works(f);
}

/* Issue 14: QueueReady 0 stops a live queue (read back 0); the device no
 * longer touches its rings until the driver enables it again. */
static void test_queue_ready_zero_stops_the_queue(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m = &f->d.q[f->d.inflate_q];
	uint32_t pfn = htole32(1600);

	bdrv_w32(&f->d, 0x30, (uint32_t)f->d.inflate_q);
	bdrv_w32(&f->d, 0x44, 0);
	assert_int_equal(bdrv_r32(&f->d, 0x44), 0);
	assert_int_equal(rf_balloon_get_status(f->d.b) & RF_VIRTIO_STATUS_DEVICE_NEEDS_RESET, 0);
	/* a buffer on the stopped queue: the notify is refused, the ring and
	 * the page are left alone */
	vq_mock_add(m, &pfn, 4, false);
	bdrv_w32(&f->d, 0x50, (uint32_t)f->d.inflate_q);
	assert_int_equal(ctr(&f->d).notify_invalid - f->c0.notify_invalid, 1);
	assert_int_equal(vq_mock_used_idx(m), 0);
	assert_int_equal(rf_vm_page_state(f->d.vm, 1600ull << 12), RF_PAGE_PRIVATE);
	rf_balloon_tick(f->d.b, NULL);
	assert_int_equal(vq_mock_used_idx(m), 0);
	/* the driver may now set the queue up again (a fresh ring) */
	vq_mock_init(m, f->d.vm, m->desc, m->size, m->buf_hi - m->buf_lo);
	bdrv_w32(&f->d, 0x44, 1);
	assert_int_equal(bdrv_r32(&f->d, 0x44), 1);
	expect_intact(f);
	expect_still_works(f);
	assert_int_equal(bdrv_r32(&f->d, 0x70), 15);
}

/* ---- config space ------------------------------------------------------------------ */

static void test_config_out_of_range(void **state)
{
	struct hfix *f = *state;
	uint32_t v = 0xffffffff;
	uint64_t v64 = 7;

	rf_balloon_mmio_read(f->d.b, 0x100 + 16, &v, 4); /* right past the end */
	assert_int_equal(v, 0);
	v = 0xffffffff;
	rf_balloon_mmio_read(f->d.b, 0x100 + 14, &v, 4); /* straddles the end */
	assert_int_equal(v, 0);
	rf_balloon_mmio_read(f->d.b, 0x1fc, &v, 4); /* last word of the window */
	assert_int_equal(rf_balloon_config_read(f->d.b, UINT64_MAX - 1, &v, 4), -EINVAL);
	assert_int_equal(rf_balloon_config_write(f->d.b, UINT64_MAX - 3, &v, 4), -EINVAL);
	rf_balloon_mmio_write(f->d.b, 0x100 + 16, &v64, 8);
	EXPECT_COUNTED(f, config_out_of_range, 6);
	assert_int_equal(bdrv_r32(&f->d, 0x100), 0);
	assert_int_equal(bdrv_r32(&f->d, 0x104), 0);
}

static void test_config_readonly_fields(void **state)
{
	struct hfix *f = *state;
	uint32_t v = 999;
	struct rf_balloon_info info = {.size = sizeof(info)};

	rf_balloon_mmio_write(f->d.b, 0x100, &v, 4);	 /* num_pages */
	rf_balloon_mmio_write(f->d.b, 0x100 + 8, &v, 4); /* free_page_hint_cmd_id */
	rf_balloon_mmio_write(f->d.b, 0x100 + 6, &v, 4); /* half actual, half cmd id */
	EXPECT_COUNTED(f, config_write_readonly, 3);
	rf_balloon_info(f->d.b, &info);
	assert_int_equal(info.target_bytes, 0);
	assert_int_equal(info.actual_bytes, 0);
	/* poison_val is writable only with PAGE_POISON negotiated */
	assert_int_equal(bdrv_handshake(&f->d, ALL & ~RF_BALLOON_F_PAGE_POISON), 0);
	arm(f);
	rf_balloon_mmio_write(f->d.b, 0x100 + 12, &v, 4);
	EXPECT_COUNTED(f, config_write_readonly, 1);
	rf_balloon_info(f->d.b, &info);
	assert_int_equal(info.poison_val, 0);
}

static void test_target_larger_than_ram(void **state)
{
	struct hfix *f = *state;
	struct rf_balloon_info info = {.size = sizeof(info)};

	assert_int_equal(rf_balloon_set_target(f->d.b, 1 << 20), 0);
	assert_int_equal(rf_balloon_set_target(f->d.b, RAM + 1), -EINVAL);
	assert_int_equal(rf_balloon_set_target(f->d.b, UINT64_MAX), -EINVAL);
	assert_non_null(strstr(f->d.last_log, "larger than the guest's RAM"));
	rf_balloon_info(f->d.b, &info);
	assert_int_equal(info.target_bytes, 1 << 20);
	assert_int_equal(bdrv_r32(&f->d, 0x100), 256);
}

/* ---- stats --------------------------------------------------------------------------- */

static void put_stat(uint8_t *b, unsigned int i, uint16_t tag, uint64_t v)
{
	memcpy(b + 10 * i, &tag, 2);
	memcpy(b + 10 * i + 2, &v, 8);
}

static void send_stats(struct hfix *f, const void *buf, uint32_t len)
{
	vq_mock_add(&f->d.q[f->d.stats_q], buf, len, false);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.stats_q);
}

static void test_stats_bad_lengths(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m = &f->d.q[f->d.stats_q];
	uint8_t buf[2000] = {0};
	struct rf_balloon_stats st = {.size = sizeof(st)};

	for (unsigned int i = 0; i < 3; i++)
		put_stat(buf, i, (uint16_t)i, 5);
	send_stats(f, buf, 21); /* odd */
	expect_dropped(f, f->d.stats_q);
	EXPECT_COUNTED(f, stats_len_invalid, 1);
	send_stats(f, buf, 25); /* truncated last entry */
	expect_dropped(f, f->d.stats_q);
	EXPECT_COUNTED(f, stats_len_invalid, 2);
	send_stats(f, buf, 2000); /* 200 entries: more than any driver sends */
	expect_dropped(f, f->d.stats_q);
	EXPECT_COUNTED(f, stats_len_invalid, 3);
	/* 2^32-1 bytes: not inside this guest's RAM at all */
	vq_mock_set_desc(m, 9, 0x1000, 0xffffffffu, 0, 0);
	vq_mock_publish(m, 9);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.stats_q);
	expect_dropped(f, f->d.stats_q);
	assert_int_equal(ctr(&f->d).desc_addr_invalid - f->c0.desc_addr_invalid, 1);
	rf_balloon_stats(f->d.b, &st);
	assert_int_equal(st.updates, 0);
	expect_intact(f);
}

static void test_stats_duplicate_and_unknown_tags(void **state)
{
	struct hfix *f = *state;
	uint8_t buf[50];
	struct rf_balloon_stats st = {.size = sizeof(st)};
	struct rf_balloon_counters c1 = {.size = sizeof(c1)};

	put_stat(buf, 0, RF_BALLOON_S_MEMFREE, 100);
	put_stat(buf, 1, RF_BALLOON_S_MEMFREE, 200);
	put_stat(buf, 2, 16, 1);
	put_stat(buf, 3, 0xffff, 1);
	put_stat(buf, 4, RF_BALLOON_S_MEMTOT, 300);
	send_stats(f, buf, 50);
	c1 = ctr(&f->d);
	assert_int_equal(c1.stats_tag_duplicate - f->c0.stats_tag_duplicate, 1);
	assert_int_equal(c1.stats_tag_unknown - f->c0.stats_tag_unknown, 2);
	rf_balloon_stats(f->d.b, &st);
	assert_int_equal(st.value[RF_BALLOON_S_MEMFREE], 100);
	assert_int_equal(st.value[RF_BALLOON_S_MEMTOT], 300);
	assert_int_equal(st.updates, 1);
}

static void test_stats_second_buffer(void **state)
{
	struct hfix *f = *state;
	uint8_t buf[10];
	struct rf_balloon_stats st = {.size = sizeof(st)};
	uint32_t id, len;
	uint16_t second;

	put_stat(buf, 0, RF_BALLOON_S_AVAIL, 1);
	send_stats(f, buf, 10); /* held */
	put_stat(buf, 0, RF_BALLOON_S_AVAIL, 2);
	vq_mock_add(&f->d.q[f->d.stats_q], buf, 10, false);
	second = (uint16_t)((f->d.q[f->d.stats_q].next_desc - 1) % f->d.q[f->d.stats_q].size);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.stats_q);
	EXPECT_COUNTED(f, stats_second_buffer, 1);
	assert_int_equal(vq_mock_used_idx(&f->d.q[f->d.stats_q]), 1);
	assert_int_equal(vq_mock_get_used(&f->d.q[f->d.stats_q], &id, &len), 1);
	assert_int_equal(id, second); /* the new one came back, untouched */
	rf_balloon_stats(f->d.b, &st);
	assert_int_equal(st.value[RF_BALLOON_S_AVAIL], 1);
}

/* A stats buffer held from a queue that is stopped is the driver's again:
 * it is never returned into the queue's next ring. */
static void test_queue_ready_zero_drops_held_stats(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m = &f->d.q[f->d.stats_q];
	uint8_t buf[10];

	put_stat(buf, 0, RF_BALLOON_S_AVAIL, 1);
	rf_balloon_set_stats_interval(f->d.b, 1);
	vq_mock_add(m, buf, 10, false);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.stats_q); /* held */
	assert_int_equal(vq_mock_used_idx(m), 0);
	bdrv_w32(&f->d, 0x30, (uint32_t)f->d.stats_q);
	bdrv_w32(&f->d, 0x44, 0);
	vq_mock_init(m, f->d.vm, m->desc, m->size, m->buf_hi - m->buf_lo);
	bdrv_w32(&f->d, 0x44, 1);
	usleep(2000);
	rf_balloon_tick(f->d.b, NULL);
	assert_int_equal(vq_mock_used_idx(m), 0); /* nothing pushed into the new ring */
	/* and a new buffer is taken (not "a second buffer") */
	put_stat(buf, 0, RF_BALLOON_S_AVAIL, 2);
	vq_mock_add(m, buf, 10, false);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.stats_q);
	assert_int_equal(ctr(&f->d).stats_second_buffer, f->c0.stats_second_buffer);
	usleep(2000);
	rf_balloon_tick(f->d.b, NULL);
	assert_int_equal(vq_mock_used_idx(m), 1);
	expect_intact(f);
}

/* ---- free page reporting ------------------------------------------------------------- */

static void test_report_ranges(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m = &f->d.q[f->d.report_q];
	uint64_t a[2] = {1ull << 20, (2ull << 20) + 100};
	uint32_t l[2] = {1 << 20, 4096};

	vq_mock_add_chain(m, a, l, 2, true); /* second range not page aligned */
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.report_q);
	expect_dropped(f, f->d.report_q);
	EXPECT_COUNTED(f, report_range_invalid, 1);
	expect_intact(f); /* the valid first range was not discarded either */
	a[1] = 2ull << 20;
	l[1] = 100;
	vq_mock_add_chain(m, a, l, 2, true);
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.report_q);
	EXPECT_COUNTED(f, report_range_invalid, 2);
	expect_intact(f);
}

/* Issue 14: ranges of one report that overlap count each page once. */
static void test_report_overlapping_ranges(void **state)
{
	struct hfix *f = *state;
	struct vq_mock *m = &f->d.q[f->d.report_q];
	uint64_t a[3] = {100ull << 12, 102ull << 12, 100ull << 12};
	uint32_t l[3] = {4 << 12, 4 << 12, 1 << 12};
	struct rf_balloon_counters c1 = {.size = sizeof(c1)};
	struct rf_balloon_info info = {.size = sizeof(info)};

	vq_mock_add_chain(m, a, l, 3, true); /* pages 100-103, 102-105, 100 */
	rf_balloon_queue_notify(f->d.b, (unsigned int)f->d.report_q);
	assert_int_equal(vq_mock_used_idx(m), 1);
	c1 = ctr(&f->d);
	assert_int_equal(c1.report_buffers - f->c0.report_buffers, 1);
	assert_int_equal(c1.reported_pages - f->c0.reported_pages, 6);
	assert_int_equal(rf_balloon_rejected_total(&c1), rf_balloon_rejected_total(&f->c0));
	rf_balloon_info(f->d.b, &info);
	assert_int_equal(info.reported_bytes, 6 << 12);
	for (uint64_t p = 99; p < 107; p++) {
		bool in = p >= 100 && p < 106;

		assert_int_equal(rf_vm_page_state(f->d.vm, p << 12),
				 in ? RF_PAGE_FREE_REPORTED : RF_PAGE_PRIVATE);
		if (in)
			assert_true(bdrv_page_is_zero(&f->d, p));
	}
	assert_int_equal(bdrv_check_all(&f->d), 6); /* those six, nothing else */
}

static void test_report_too_long(void **state)
{
	struct bdrv d;
	struct rf_balloon_config cfg;
	uint64_t a = 0;
	uint32_t l = 2 << 20;

	(void)state;
	rf_balloon_config_init(&cfg);
	cfg.max_report_bytes = 1 << 20;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, &cfg, true), 0);
	bdrv_fill_all(&d);
	vq_mock_add_chain(&d.q[d.report_q], &a, &l, 1, true);
	rf_balloon_queue_notify(d.b, (unsigned int)d.report_q);
	assert_int_equal(vq_mock_used_idx(&d.q[d.report_q]), 1);
	{
		struct rf_balloon_counters c = {.size = sizeof(c)};

		rf_balloon_counters(d.b, &c);
		assert_int_equal(c.report_too_long, 1);
		assert_int_equal(rf_balloon_rejected_total(&c), 1);
	}
	assert_int_equal(bdrv_check_all(&d), 0);
	bdrv_teardown(&d);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
	const struct CMUnitTest tests[] = {
	    T(test_pfn_beyond_ram),
	    cmocka_unit_test(test_pfn_in_hole_and_above_2g),
	    T(test_buffer_length_not_multiple_of_4),
	    T(test_too_many_pfns),
	    T(test_inflate_more_than_guest_has),
	    T(test_deflate_never_inflated),
	    T(test_same_pfn_inflated_twice),
	    T(test_wrong_direction),
	    T(test_next_index_out_of_range),
	    T(test_head_index_out_of_range),
	    T(test_chain_loops_or_too_long),
	    T(test_dropped_chain_moves_avail_event),
	    T(test_indirect_rules),
	    T(test_indirect_not_negotiated),
	    T(test_unknown_desc_flags),
	    T(test_buffer_address_wraps_or_runs_off),
	    T(test_avail_index_jump),
	    T(test_ring_addresses),
	    T(test_queue_size),
	    T(test_queue_used_before_driver_ok),
	    T(test_features_after_features_ok),
	    T(test_features_unsupported),
	    T(test_feature_halves_hostile),
	    T(test_queue_disable_missing),
	    T(test_status_transitions),
	    T(test_driver_ok_with_refused_features),
	    T(test_mmio_access),
	    T(test_mmio_read_longer_than_8),
	    T(test_queue_ready_zero_stops_the_queue),
	    T(test_config_out_of_range),
	    T(test_config_readonly_fields),
	    T(test_target_larger_than_ram),
	    T(test_stats_bad_lengths),
	    T(test_stats_duplicate_and_unknown_tags),
	    T(test_stats_second_buffer),
	    T(test_queue_ready_zero_drops_held_stats),
	    T(test_report_ranges),
	    T(test_report_overlapping_ranges),
	    cmocka_unit_test(test_report_too_long),
	};

	return cmocka_run_group_tests_name("balloon_hostile", tests, NULL, NULL);
}
