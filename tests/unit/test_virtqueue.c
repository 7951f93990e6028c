/* SPDX-License-Identifier: MIT */
/*
 * The split virtqueue on its own: real guest RAM of a rf_vm, rings written
 * by the mock driver, every validation rule checked with the error it must
 * give. Plus the pure helpers the device uses (PFN runs, stats parsing).
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "rf_test.h"
#include "virtq_mock.h"
#include "../../balloon/virtqueue.h"
#include "../../balloon/pfn_runs.h"
#include "../../balloon/balloon_stats.h"

#define RAM   (4ull << 20)
#define QBASE 0x200000ull

struct fix {
	rf_engine *e;
	rf_vm *vm;
	struct vq_mock m;
	struct rf_virtq q;
	struct rf_virtq_chain c;
};

static int setup(void **state)
{
	static struct fix f;

	memset(&f, 0, sizeof(f));
	f.e = rf_test_engine(NULL);
	f.vm = rf_test_vm(f.e, "vq0", RAM, NULL);
	vq_mock_init(&f.m, f.vm, QBASE, 16, 64 << 10);
	rf_virtq_enable(&f.q, f.vm, 16, f.m.desc, f.m.avail, f.m.used, false, false, true);
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fix *f = *state;

	rf_engine_free(f->e);
	return 0;
}

static void test_setup_checks(void **state)
{
	struct fix *f = *state;

	assert_int_equal(rf_virtq_check(f->vm, 16, 256, 0x1000, 0x2000, 0x3000), RF_VQ_SETUP_OK);
	assert_int_equal(rf_virtq_check(f->vm, 0, 256, 0x1000, 0x2000, 0x3000), RF_VQ_SETUP_SIZE);
	assert_int_equal(rf_virtq_check(f->vm, 24, 256, 0x1000, 0x2000, 0x3000), RF_VQ_SETUP_SIZE);
	assert_int_equal(rf_virtq_check(f->vm, 512, 256, 0x1000, 0x2000, 0x3000), RF_VQ_SETUP_SIZE);
	assert_int_equal(rf_virtq_check(f->vm, 16, 256, 0x1008, 0x2000, 0x3000), RF_VQ_SETUP_ALIGN);
	assert_int_equal(rf_virtq_check(f->vm, 16, 256, 0x1000, 0x2001, 0x3000), RF_VQ_SETUP_ALIGN);
	assert_int_equal(rf_virtq_check(f->vm, 16, 256, 0x1000, 0x2000, 0x3002), RF_VQ_SETUP_ALIGN);
	/* outside guest RAM, straddling its end, overflowing 64 bits */
	assert_int_equal(rf_virtq_check(f->vm, 16, 256, RAM, 0x2000, 0x3000), RF_VQ_SETUP_RANGE);
	assert_int_equal(rf_virtq_check(f->vm, 16, 256, 0x1000, 0x2000, RAM - 8),
			 RF_VQ_SETUP_RANGE);
	assert_int_equal(rf_virtq_check(f->vm, 16, 256, 0xfffffffffffffff0ull, 0x2000, 0x3000),
			 RF_VQ_SETUP_RANGE);
}

static void test_pop_push(void **state)
{
	struct fix *f = *state;
	uint64_t a[3] = {0x10000, 0x20000, 0x30000};
	uint32_t l[3] = {100, 200, 300}, id, len;
	uint16_t head;

	assert_int_equal(rf_virtq_pop(&f->q, &f->c), 0);
	head = vq_mock_add_chain(&f->m, a, l, 3, false);
	assert_int_equal(rf_virtq_pending(&f->q), 1);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.head, head);
	assert_int_equal(f->c.nseg, 3);
	assert_int_equal(f->c.total_len, 600);
	assert_int_equal(f->c.seg[1].gpa, 0x20000);
	assert_ptr_equal(f->c.seg[2].hva, vqm_hva(f->vm, 0x30000, 1));
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), 0);
	assert_int_equal(rf_virtq_push(&f->q, head, 42), 0);
	assert_int_equal(vq_mock_used_idx(&f->m), 1);
	assert_int_equal(vq_mock_get_used(&f->m, &id, &len), 1);
	assert_int_equal(id, head);
	assert_int_equal(len, 42);
}

static void test_index_wraparound(void **state)
{
	struct fix *f = *state;

	/* Both sides near 2^16: indices wrap, the ring keeps working. */
	f->q.last_avail = 65533;
	f->q.used_idx = 65533;
	vq_mock_set_avail_idx(&f->m, 65533);
	f->m.used_seen = 65533;
	for (int i = 0; i < 6; i++)
		vq_mock_add(&f->m, "x", 1, false);
	assert_int_equal(f->m.avail_idx, 3);
	assert_int_equal(rf_virtq_pending(&f->q), 6);
	for (int i = 0; i < 6; i++) {
		assert_int_equal(rf_virtq_pop(&f->q, &f->c), 1);
		assert_int_equal(rf_virtq_push(&f->q, f->c.head, 0), 0);
	}
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), 0);
	assert_int_equal(vq_mock_used_idx(&f->m), 3);
}

static void test_avail_jump(void **state)
{
	struct fix *f = *state;

	vq_mock_set_avail_idx(&f->m, 17); /* 17 ahead of 0 on a 16-entry ring */
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_AVAIL_JUMP);
	assert_int_equal(rf_virtq_pending(&f->q), -1);
	vq_mock_set_avail_idx(&f->m, 16); /* exactly a full ring is legal */
	assert_int_equal(rf_virtq_pending(&f->q), 16);
}

static void test_head_out_of_range(void **state)
{
	struct fix *f = *state;

	vq_mock_publish(&f->m, 16);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_HEAD_INDEX);
	assert_true(-RF_VQ_E_HEAD_INDEX <= -RF_VQ_E_BROKEN_FIRST);
}

static void test_next_out_of_range(void **state)
{
	struct fix *f = *state;

	vq_mock_set_desc(&f->m, 3, 0x10000, 8, VQM_DESC_F_NEXT, 99);
	vq_mock_publish(&f->m, 3);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_DESC_INDEX);
	assert_int_equal(f->c.head, 3); /* consumed: the caller returns it used */
	assert_int_equal(f->q.last_avail, 1);
}

static void test_loop(void **state)
{
	struct fix *f = *state;

	vq_mock_set_desc(&f->m, 0, 0x10000, 8, VQM_DESC_F_NEXT, 1);
	vq_mock_set_desc(&f->m, 1, 0x10000, 8, VQM_DESC_F_NEXT, 0);
	vq_mock_publish(&f->m, 0);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_CHAIN_LEN);
	/* a self-loop too */
	vq_mock_set_desc(&f->m, 5, 0x10000, 8, VQM_DESC_F_NEXT, 5);
	vq_mock_publish(&f->m, 5);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_CHAIN_LEN);
}

static void test_direction_and_flags(void **state)
{
	struct fix *f = *state;

	vq_mock_add(&f->m, "x", 1, true); /* device-writable on a readable queue */
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_DIRECTION);
	vq_mock_set_desc(&f->m, 7, 0x10000, 8, 0x80, 0);
	vq_mock_publish(&f->m, 7);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_DESC_FLAGS);
	vq_mock_set_desc(&f->m, 7, 0x10000, 16, VQM_DESC_F_INDIRECT | VQM_DESC_F_NEXT, 1);
	vq_mock_publish(&f->m, 7);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_DESC_FLAGS);
}

static void test_bad_addresses(void **state)
{
	struct fix *f = *state;

	/* wraps past 2^64 */
	vq_mock_set_desc(&f->m, 1, 0xfffffffffffff000ull, 0x2000, 0, 0);
	vq_mock_publish(&f->m, 1);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_DESC_ADDR);
	/* runs off the end of the region */
	vq_mock_set_desc(&f->m, 1, RAM - 8, 16, 0, 0);
	vq_mock_publish(&f->m, 1);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_DESC_ADDR);
	/* entirely outside */
	vq_mock_set_desc(&f->m, 1, RAM + 4096, 4, 0, 0);
	vq_mock_publish(&f->m, 1);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_DESC_ADDR);
	/* the last byte of RAM is fine */
	vq_mock_set_desc(&f->m, 1, RAM - 1, 1, 0, 0);
	vq_mock_publish(&f->m, 1);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), 1);
}

static uint64_t put_table(struct fix *f, unsigned int n, int loop_to, int nested_at)
{
	uint64_t t = vq_mock_alloc(&f->m, 16ull * n);

	for (unsigned int i = 0; i < n; i++) {
		uint8_t d[16] = {0};
		uint64_t a = 0x40000 + 64 * i;
		uint32_t l = 64;
		uint16_t fl = (i + 1 < n) ? VQM_DESC_F_NEXT : 0, nx = (uint16_t)(i + 1);

		if ((int)i == nested_at)
			fl |= VQM_DESC_F_INDIRECT;
		if (i + 1 == n && loop_to >= 0) {
			fl |= VQM_DESC_F_NEXT;
			nx = (uint16_t)loop_to;
		}
		memcpy(d, &a, 8);
		memcpy(d + 8, &l, 4);
		memcpy(d + 12, &fl, 2);
		memcpy(d + 14, &nx, 2);
		memcpy(vqm_hva(f->vm, t + 16ull * i, 16), d, 16);
	}
	return t;
}

static void test_indirect(void **state)
{
	struct fix *f = *state;
	uint64_t t;

	t = put_table(f, 3, -1, -1);
	vq_mock_set_desc(&f->m, 2, t, 48, VQM_DESC_F_INDIRECT, 0);
	vq_mock_publish(&f->m, 2);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(f->c.nseg, 3);
	assert_int_equal(f->c.total_len, 192);

	t = put_table(f, 3, 0, -1); /* loops back to entry 0 */
	vq_mock_set_desc(&f->m, 2, t, 48, VQM_DESC_F_INDIRECT, 0);
	vq_mock_publish(&f->m, 2);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_CHAIN_LEN);

	t = put_table(f, 3, -1, 1); /* indirect inside the table */
	vq_mock_set_desc(&f->m, 2, t, 48, VQM_DESC_F_INDIRECT, 0);
	vq_mock_publish(&f->m, 2);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_INDIRECT_NESTED);

	vq_mock_set_desc(&f->m, 2, t, 0, VQM_DESC_F_INDIRECT, 0);
	vq_mock_publish(&f->m, 2);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_INDIRECT_LEN);
	vq_mock_set_desc(&f->m, 2, t, 40, VQM_DESC_F_INDIRECT, 0);
	vq_mock_publish(&f->m, 2);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_INDIRECT_LEN);

	t = put_table(f, 17, -1, -1); /* a chain longer than the 16-entry queue */
	vq_mock_set_desc(&f->m, 2, t, 16 * 17, VQM_DESC_F_INDIRECT, 0);
	vq_mock_publish(&f->m, 2);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_CHAIN_LEN);

	f->q.indirect = false; /* feature not negotiated */
	t = put_table(f, 3, -1, -1);
	vq_mock_set_desc(&f->m, 2, t, 48, VQM_DESC_F_INDIRECT, 0);
	vq_mock_publish(&f->m, 2);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_INDIRECT_NOT_NEG);
}

/* A queue of @size entries next to the fixture's, for long chains. */
static void big_queue(struct fix *f, struct vq_mock *m, struct rf_virtq *q, uint16_t size)
{
	vq_mock_init(m, f->vm, 0x300000, size, 256 << 10);
	rf_virtq_enable(q, f->vm, size, m->desc, m->avail, m->used, false, false, true);
}

/* Descriptors [first, first + n) chained one to the next, 8 bytes each; the
 * last one ends the chain, or goes on to @loop_to if that is >= 0. */
static void put_chain(struct vq_mock *m, uint16_t first, unsigned int n, int loop_to)
{
	for (unsigned int i = 0; i < n; i++) {
		bool last = i + 1 == n;
		uint16_t next =
		    last ? (uint16_t)(loop_to >= 0 ? loop_to : 0) : (uint16_t)(first + i + 1);

		vq_mock_set_desc(m, (uint16_t)(first + i), 0x10000 + 8ull * i, 8,
				 (!last || loop_to >= 0) ? VQM_DESC_F_NEXT : 0, next);
	}
}

/* Issue 14: the spec allows a chain as long as the queue; one more is a loop. */
static void test_chain_as_long_as_the_queue(void **state)
{
	struct fix *f = *state;
	struct vq_mock m;
	struct rf_virtq q;
	uint64_t t;

	big_queue(f, &m, &q, 512);
	put_chain(&m, 0, 512, -1);
	vq_mock_publish(&m, 0);
	assert_int_equal(rf_virtq_pop(&q, &f->c), 1);
	assert_int_equal(f->c.nseg, 512);
	assert_int_equal(f->c.total_len, 512 * 8);
	assert_int_equal(f->c.seg[511].gpa, 0x10000 + 8 * 511);
	assert_int_equal(rf_virtq_push(&q, f->c.head, 0), 0);

	put_chain(&m, 0, 512, 0); /* every descriptor, then back to the first */
	vq_mock_publish(&m, 0);
	assert_int_equal(rf_virtq_pop(&q, &f->c), -RF_VQ_E_CHAIN_LEN);
	assert_int_equal(f->c.head, 0); /* consumed, to be returned used */
	assert_int_equal(rf_virtq_push(&q, f->c.head, 0), 0);

	/* An indirect table of 300 entries (its own bound) after one direct
	 * descriptor: 301 segments, within the queue. */
	t = put_table(f, 300, -1, -1);
	vq_mock_set_desc(&m, 0, 0x10000, 8, VQM_DESC_F_NEXT, 1);
	vq_mock_set_desc(&m, 1, t, 16 * 300, VQM_DESC_F_INDIRECT, 0);
	vq_mock_publish(&m, 0);
	assert_int_equal(rf_virtq_pop(&q, &f->c), 1);
	assert_int_equal(f->c.nseg, 301);
	assert_int_equal(rf_virtq_push(&q, f->c.head, 0), 0);

	/* 2 direct + 511 indirect: one more than the queue holds */
	t = put_table(f, 511, -1, -1);
	vq_mock_set_desc(&m, 0, 0x10000, 8, VQM_DESC_F_NEXT, 1);
	vq_mock_set_desc(&m, 1, 0x10000, 8, VQM_DESC_F_NEXT, 2);
	vq_mock_set_desc(&m, 2, t, 16 * 511, VQM_DESC_F_INDIRECT, 0);
	vq_mock_publish(&m, 0);
	assert_int_equal(rf_virtq_pop(&q, &f->c), -RF_VQ_E_CHAIN_LEN);
	assert_int_equal(rf_virtq_pending(&q), 0);
}

/* Issue 14: with EVENT_IDX, a dropped chain moves avail_event like a taken
 * one, or the driver would not notify for its next buffer. */
static void test_dropped_chain_moves_avail_event(void **state)
{
	struct fix *f = *state;
	uint16_t *avail_event = vqm_hva(f->vm, f->m.used + 4 + 8ull * f->m.size, 2);

	f->q.event_idx = true;
	vq_mock_add(&f->m, "x", 1, false);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), 1);
	assert_int_equal(le16toh(*avail_event), 1);
	vq_mock_set_desc(&f->m, 3, 0x10000, 8, VQM_DESC_F_NEXT, 99); /* next out of range */
	vq_mock_publish(&f->m, 3);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_DESC_INDEX);
	assert_int_equal(le16toh(*avail_event), 2);
	vq_mock_set_desc(&f->m, 4, 0x10000, 8, 0x80, 0); /* unknown flag */
	vq_mock_publish(&f->m, 4);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), -RF_VQ_E_DESC_FLAGS);
	assert_int_equal(le16toh(*avail_event), 3);
	assert_int_equal(f->q.last_avail, 3);
}

static void test_interrupt_suppression(void **state)
{
	struct fix *f = *state;

	vq_mock_add(&f->m, "x", 1, false);
	assert_int_equal(rf_virtq_pop(&f->q, &f->c), 1);
	rf_virtq_push(&f->q, f->c.head, 0);
	assert_true(rf_virtq_need_irq(&f->q));
	vq_mock_set_avail_flags(&f->m, RF_VRING_AVAIL_F_NO_INTERRUPT);
	assert_false(rf_virtq_need_irq(&f->q));

	/* event index: interrupt only when used idx passes used_event */
	f->q.event_idx = true;
	vq_mock_set_used_event(&f->m, 2);
	assert_true(rf_virtq_need_irq(&f->q)); /* first one always */
	for (int i = 0; i < 3; i++) {
		vq_mock_add(&f->m, "x", 1, false);
		assert_int_equal(rf_virtq_pop(&f->q, &f->c), 1);
		rf_virtq_push(&f->q, f->c.head, 0);
		/* used idx 2 (not past event 2), then 3 (passes), then 4 */
		if (i == 1)
			assert_true(rf_virtq_need_irq(&f->q));
		else
			assert_false(rf_virtq_need_irq(&f->q));
	}
}

static void test_pfn_runs(void **state)
{
	uint32_t p[] = {9, 3, 4, 5, 0x80000000u, 3, 10, 0xffffffffu, 0x7fffffffu};
	struct rf_pfn_run r[9];
	size_t dups, n;

	(void)state;
	n = rf_pfn_runs(p, 9, r, &dups);
	assert_int_equal(dups, 1);
	assert_int_equal(n, 4);
	assert_int_equal(r[0].pfn, 3);
	assert_int_equal(r[0].npages, 3);
	assert_int_equal(r[1].pfn, 9);
	assert_int_equal(r[1].npages, 2);
	/* 2^31 and above stay positive 64-bit PFNs, not merged with 2^31-1 */
	assert_int_equal(r[2].pfn, 0x7fffffffull);
	assert_int_equal(r[2].npages, 2); /* 0x7fffffff, 0x80000000 adjacent */
	assert_int_equal(r[3].pfn, 0xffffffffull);
	assert_true((r[3].pfn << 12) == 0xffffffff000ull);
}

static void put_stat(uint8_t *b, unsigned int i, uint16_t tag, uint64_t v)
{
	memcpy(b + 10 * i, &tag, 2);
	memcpy(b + 10 * i + 2, &v, 8);
}

/* Overlapping ranges merge (each page once); ranges that only touch stay
 * apart (each in its own region). */
static void test_pfn_runs_union(void **state)
{
	struct rf_pfn_run r[] = {{106, 2}, {100, 4}, {102, 4}, {200, 1}, {101, 1}, {108, 2}};
	uint64_t overlap;
	size_t n;

	(void)state;
	n = rf_pfn_runs_union(r, 6, &overlap);
	assert_int_equal(n, 4);
	assert_int_equal(overlap, 2 + 1); /* 102, 103; 101 */
	assert_int_equal(r[0].pfn, 100);
	assert_int_equal(r[0].npages, 6);
	assert_int_equal(r[1].pfn, 106);
	assert_int_equal(r[1].npages, 2);
	assert_int_equal(r[2].pfn, 108);
	assert_int_equal(r[3].pfn, 200);
	assert_int_equal(rf_pfn_runs_union(r, 0, NULL), 0);
}

static void test_stats_parse(void **state)
{
	uint8_t b[100];
	struct rf_stats_parse sp;

	(void)state;
	put_stat(b, 0, RF_BALLOON_S_MEMFREE, 1000);
	put_stat(b, 1, 99, 5);
	put_stat(b, 2, RF_BALLOON_S_MEMFREE, 2000);
	put_stat(b, 3, RF_BALLOON_S_DIRECT_RECLAIM, 7);
	assert_int_equal(rf_balloon_stats_parse(b, 40, &sp), 0);
	assert_int_equal(sp.value[RF_BALLOON_S_MEMFREE], 1000);
	assert_int_equal(sp.value[RF_BALLOON_S_DIRECT_RECLAIM], 7);
	assert_true(sp.value[RF_BALLOON_S_SWAP_IN] == RF_BALLOON_STAT_UNSET);
	assert_int_equal(sp.duplicate, 1);
	assert_int_equal(sp.unknown, 1);
	assert_int_equal(rf_balloon_stats_parse(b, 39, &sp), -EINVAL);
	assert_int_equal(rf_balloon_stats_parse(b, 0, &sp), -EINVAL);
	assert_string_equal(rf_balloon_stat_name(RF_BALLOON_S_AVAIL), "stat-available-memory");
	assert_string_equal(rf_balloon_stat_name(RF_BALLOON_S_OOM_KILL), "stat-oom-kills");
	assert_null(rf_balloon_stat_name(16));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_setup_checks, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_pop_push, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_index_wraparound, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_avail_jump, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_head_out_of_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_next_out_of_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_loop, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_direction_and_flags, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_bad_addresses, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_indirect, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_chain_as_long_as_the_queue, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_dropped_chain_moves_avail_event, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_interrupt_suppression, setup, teardown),
	    cmocka_unit_test(test_pfn_runs),
	    cmocka_unit_test(test_pfn_runs_union),
	    cmocka_unit_test(test_stats_parse),
	};

	return cmocka_run_group_tests_name("virtqueue", tests, NULL, NULL);
}
