/* SPDX-License-Identifier: MIT */
/*
 * Save and restore of the balloon device (issue 14): a mock driver
 * (tests/helpers/virtq_mock) inflates pages on a first VM, the device is
 * saved with an inflate buffer made available but not yet processed, the
 * guest's RAM is copied to a second VM as a migration would, the image is
 * restored into a new device there, and the inflate finishes on the restored
 * device. Corrupt and hostile images are refused with nothing changed.
 */
#include <endian.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rf_test.h"
#include "virtq_mock.h"
#include "internal.h"
#include "../../balloon/balloon_internal.h"

#define RAM (16ull << 20)
#define ALL (~0ull)

/* Image layout, as balloon_save.c writes it (version 1). */
#define H_VERSION 4
#define H_CRC	  12
#define H_NQ	  16
#define H_NSTATS  18
#define H_NCTR	  20
#define H_NRUNS	  24
#define HDR	  40
#define DEV	  72
#define QREC	  72
#define Q_DESC	  32
#define RUN	  16

struct pair {
	struct bdrv a, b;
	uint8_t *img;
	size_t len;
};

static struct rf_balloon_counters ctr(rf_balloon *b)
{
	struct rf_balloon_counters c = {.size = sizeof(c)};

	assert_int_equal(rf_balloon_counters(b, &c), 0);
	return c;
}

static uint32_t crc32_ref(const uint8_t *p, size_t n)
{
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (0xedb88320u & -(c & 1));
	}
	return ~c;
}

/* Fix the checksum after a test changed a field on purpose. */
static void reseal(uint8_t *img, size_t len)
{
	uint32_t v = 0;

	memcpy(img + H_CRC, &v, 4);
	v = htole32(crc32_ref(img, len));
	memcpy(img + H_CRC, &v, 4);
}

static uint16_t rd16(const uint8_t *p)
{
	uint16_t v;

	memcpy(&v, p, 2);
	return le16toh(v);
}

static size_t queue_off(const uint8_t *img, unsigned int q)
{
	return HDR + DEV + 8ull * rd16(img + H_NSTATS) + 16 + 8ull * rd16(img + H_NCTR) +
	       (size_t)QREC * q;
}

static void wr64(uint8_t *p, uint64_t v)
{
	v = htole64(v);
	memcpy(p, &v, 8);
}

/* The migration: a new VM with the same RAM and content, and a driver whose
 * rings are where the source's were. */
static void migrate_ram(struct pair *p)
{
	assert_int_equal(bdrv_setup(&p->b, RAM, ALL, NULL, false), 0);
	memcpy(p->b.ram, p->a.ram, RAM);
	p->b.features = p->a.features;
	p->b.nq = p->a.nq;
	p->b.inflate_q = p->a.inflate_q;
	p->b.deflate_q = p->a.deflate_q;
	p->b.stats_q = p->a.stats_q;
	p->b.report_q = p->a.report_q;
	for (unsigned int q = 0; q < p->a.nq; q++) {
		p->b.q[q] = p->a.q[q];
		p->b.q[q].vm = p->b.vm;
	}
}

/* Source: 32 pages inflated, a stats buffer held, a target set, and a second
 * inflate buffer made available, not yet processed; saved. */
static int setup(void **state)
{
	static struct pair P;
	struct pair *p = &P;
	uint32_t pfns[32], le[10];
	uint8_t stats[20] = {0};
	uint32_t actual = htole32(40);
	size_t needed = 0;

	memset(p, 0, sizeof(*p));
	assert_int_equal(bdrv_setup(&p->a, RAM, ALL, NULL, true), 0);
	for (uint64_t pfn = 100; pfn < 200; pfn++)
		bdrv_fill_page(&p->a, pfn, 3);
	for (unsigned int i = 0; i < 32; i++)
		pfns[i] = 100 + i;
	bdrv_send_pfns(&p->a, p->a.inflate_q, pfns, 32);
	stats[0] = RF_BALLOON_S_MEMFREE;
	stats[2] = 0x42;
	stats[10] = RF_BALLOON_S_MEMTOT;
	stats[12] = 0x99;
	vq_mock_add(&p->a.q[p->a.stats_q], stats, sizeof(stats), false);
	rf_balloon_queue_notify(p->a.b, (unsigned int)p->a.stats_q);
	assert_int_equal(rf_balloon_set_target(p->a.b, 64 << 12), 0);
	assert_int_equal(rf_balloon_mmio_write(p->a.b, 0x104, &actual, 4), 0);
	for (unsigned int i = 0; i < 10; i++)
		le[i] = htole32(140 + i);
	vq_mock_add(&p->a.q[p->a.inflate_q], le, sizeof(le), false); /* no notify yet */

	assert_int_equal(rf_balloon_save(p->a.b, NULL, 0, &needed), -ENOSPC);
	assert_true(needed > HDR + DEV);
	p->len = needed;
	p->img = malloc(p->len);
	assert_int_equal(rf_balloon_save(p->a.b, p->img, p->len - 1, &needed), -ENOSPC);
	assert_int_equal(needed, p->len);
	assert_int_equal(rf_balloon_save(p->a.b, p->img, p->len, &needed), 0);
	assert_int_equal(rf_balloon_save(NULL, p->img, p->len, &needed), -EINVAL);
	assert_int_equal(rf_balloon_save(p->a.b, NULL, 8, &needed), -EINVAL);
	migrate_ram(p);
	*state = p;
	return 0;
}

static int teardown(void **state)
{
	struct pair *p = *state;

	free(p->img);
	bdrv_teardown(&p->a);
	bdrv_teardown(&p->b);
	return 0;
}

static void test_restore_and_finish_inflate(void **state)
{
	struct pair *p = *state;
	struct rf_balloon_info ia = {.size = sizeof(ia)}, ib = {.size = sizeof(ib)};
	struct rf_balloon_stats sa = {.size = sizeof(sa)}, sb = {.size = sizeof(sb)};
	struct rf_balloon_counters ca = ctr(p->a.b), cb;
	struct vq_mock *iq = &p->b.q[p->b.inflate_q];
	uint32_t id, len, pfn = 100;
	struct timespec ts = {0, 5 * 1000000};

	assert_int_equal(rf_balloon_restore(p->b.b, p->img, p->len), 0);
	rf_balloon_info(p->a.b, &ia);
	rf_balloon_info(p->b.b, &ib);
	assert_int_equal(ib.status, 15);
	assert_true(ib.features_negotiated == ia.features_negotiated);
	assert_int_equal(ib.target_bytes, 64 << 12);
	assert_int_equal(ib.actual_bytes, 40 << 12);
	assert_int_equal(ib.ballooned_bytes, 32 << 12);
	assert_int_equal(rf_balloon_num_queues(p->b.b), p->a.nq);
	for (unsigned int q = 0; q < p->a.nq; q++)
		assert_int_equal(rf_balloon_queue_enabled(p->b.b, q), 1);
	/* the counters carry: the device's life goes on */
	cb = ctr(p->b.b);
	assert_int_equal(cb.inflate_buffers, 1);
	assert_int_equal(cb.inflated_pages, 32);
	assert_int_equal(cb.stats_buffers, 1);
	assert_memory_equal(&cb, &ca, sizeof(ca));
	rf_balloon_stats(p->a.b, &sa);
	rf_balloon_stats(p->b.b, &sb);
	assert_memory_equal(sb.value, sa.value, sizeof(sa.value));
	assert_int_equal(sb.updates, 1);
	assert_int_equal(sb.value[RF_BALLOON_S_MEMFREE], 0x42);
	assert_int_equal(rf_balloon_config_generation(p->b.b),
			 rf_balloon_config_generation(p->a.b));
	for (uint64_t pfn2 = 100; pfn2 < 132; pfn2++)
		assert_int_equal(rf_vm_page_state(p->b.vm, pfn2 << 12), RF_PAGE_BALLOONED);
	for (uint64_t pfn2 = 132; pfn2 < 200; pfn2++) {
		assert_int_equal(rf_vm_page_state(p->b.vm, pfn2 << 12), RF_PAGE_PRIVATE);
		assert_true(bdrv_page_is(&p->b, pfn2, 3));
	}
	/* the pending inflate finishes on the restored device */
	assert_int_equal(vq_mock_used_idx(iq), 1);
	assert_int_equal(rf_balloon_tick(p->b.b, NULL), 0);
	assert_int_equal(vq_mock_used_idx(iq), 2);
	assert_int_equal(vq_mock_get_used(iq, &id, &len), 1);
	assert_int_equal(vq_mock_get_used(iq, &id, &len), 1);
	assert_int_equal(id, iq->next_desc - 1);
	for (uint64_t pfn2 = 140; pfn2 < 150; pfn2++) {
		assert_int_equal(rf_vm_page_state(p->b.vm, pfn2 << 12), RF_PAGE_BALLOONED);
		assert_true(bdrv_page_is_zero(&p->b, pfn2));
	}
	assert_true(bdrv_page_is(&p->b, 150, 3));
	cb = ctr(p->b.b);
	assert_int_equal(cb.inflate_buffers, 2);
	assert_int_equal(cb.inflated_pages, 42);
	assert_int_equal(rf_balloon_rejected_total(&cb), rf_balloon_rejected_total(&ca));
	/* the held stats buffer goes back to the guest from the restored device */
	assert_int_equal(rf_balloon_set_stats_interval(p->b.b, 1), 0);
	nanosleep(&ts, NULL);
	rf_balloon_tick(p->b.b, NULL);
	assert_int_equal(vq_mock_used_idx(&p->b.q[p->b.stats_q]), 1);
	assert_int_equal(vq_mock_get_used(&p->b.q[p->b.stats_q], &id, &len), 1);
	assert_int_equal(id, 0);
	/* and the restored device keeps working: deflate, then a guest reset */
	bdrv_send_pfns(&p->b, p->b.deflate_q, &pfn, 1);
	assert_int_equal(rf_vm_page_state(p->b.vm, 100ull << 12), RF_PAGE_PRIVATE);
	assert_int_equal(rf_balloon_set_status(p->b.b, 0), 0);
	rf_balloon_info(p->b.b, &ib);
	assert_int_equal(ib.ballooned_bytes, 0);
	/* a restore needs a new device */
	assert_int_equal(bdrv_handshake(&p->b, ALL), 0);
	assert_int_equal(rf_balloon_restore(p->b.b, p->img, p->len), -EBUSY);
	assert_int_equal(rf_balloon_restore(NULL, p->img, p->len), -EINVAL);
	/* the source is unchanged by its save */
	assert_int_equal(vq_mock_used_idx(&p->a.q[p->a.inflate_q]), 1);
	assert_int_equal(rf_vm_page_state(p->a.vm, 140ull << 12), RF_PAGE_PRIVATE);
}

/* A refused image changed nothing; then the good one restores. */
static void expect_refused(struct pair *p, const uint8_t *img, size_t len, const char *why)
{
	struct rf_balloon_counters c = {.size = sizeof(c)}, zero = {.size = sizeof(zero)};

	p->b.log_count = 0;
	assert_int_equal(rf_balloon_restore(p->b.b, img, len), -EINVAL);
	assert_true(p->b.log_count >= 1);
	if (!strstr(p->b.last_log, why))
		fail_msg("log \"%s\" does not say \"%s\"", p->b.last_log, why);
	assert_non_null(strstr(p->b.last_log, "vm0: balloon: restore"));
	assert_int_equal(rf_balloon_get_status(p->b.b), 0);
	for (unsigned int q = 0; q < 3; q++)
		assert_int_equal(rf_balloon_queue_enabled(p->b.b, q), 0);
	for (uint64_t pfn = 100; pfn < 200; pfn++)
		assert_int_equal(rf_vm_page_state(p->b.vm, pfn << 12), RF_PAGE_PRIVATE);
	memset(&zero, 0, sizeof(zero));
	zero.size = sizeof(zero);
	c = ctr(p->b.b);
	assert_memory_equal(&c, &zero, sizeof(c));
}

/* The good image with the u64 at @off set to @v, checksum made valid again:
 * refused for @why all the same. */
static void refuse_u64(struct pair *p, uint8_t *img, size_t off, uint64_t v, const char *why)
{
	memcpy(img, p->img, p->len);
	wr64(img + off, v);
	reseal(img, p->len);
	expect_refused(p, img, p->len, why);
}

static void test_corrupt_images_refused(void **state)
{
	struct pair *p = *state;
	uint8_t *img = malloc(p->len + 16);
	const uint64_t ram_pages = RAM >> 12;
	size_t qo = queue_off(p->img, 0), runs = p->len - 16 * rd16(p->img + H_NRUNS);

	assert_int_equal(rd16(p->img + H_NRUNS), 1);
	assert_int_equal(rd16(p->img + H_NQ), p->a.nq);

	memcpy(img, p->img, p->len);
	expect_refused(p, img, p->len - 1, "truncated");
	expect_refused(p, img, 20, "truncated");
	expect_refused(p, img, 0, "truncated");
	memcpy(img + p->len, "padding", 8);
	expect_refused(p, img, p->len + 8, "padded");

	img[HDR + 30] ^= 1; /* a body byte: num_pages */
	expect_refused(p, img, p->len, "checksum");
	memcpy(img, p->img, p->len);
	img[H_CRC] ^= 0x80;
	expect_refused(p, img, p->len, "checksum");

	memcpy(img, p->img, p->len);
	img[H_VERSION] = 2;
	reseal(img, p->len);
	expect_refused(p, img, p->len, "version");
	memcpy(img, p->img, p->len);
	img[0] = 'X';
	reseal(img, p->len);
	expect_refused(p, img, p->len, "magic");

	/* queue 0's descriptor table outside guest RAM, or wrapping */
	refuse_u64(p, img, qo + Q_DESC, RAM + 4096, "not inside guest RAM");
	refuse_u64(p, img, qo + Q_DESC, UINT64_MAX - 4095, "not inside guest RAM");

	/* ballooned PFNs outside guest RAM, running off its end, overflowing */
	refuse_u64(p, img, runs, ram_pages + 5, "not inside one region");
	refuse_u64(p, img, runs, ram_pages - 4, "not inside one region");
	refuse_u64(p, img, runs, UINT64_MAX, "out of order");
	refuse_u64(p, img, runs + 8, 0, "empty");

	/* a count that does not match the length */
	memcpy(img, p->img, p->len);
	img[H_NRUNS] = 2;
	reseal(img, p->len);
	expect_refused(p, img, p->len, "counts make");

	/* a status the device cannot reach, features not offered */
	memcpy(img, p->img, p->len);
	img[HDR + 16] = RF_VIRTIO_STATUS_DRIVER_OK | 3;
	reseal(img, p->len);
	expect_refused(p, img, p->len, "status");
	memcpy(img, p->img, p->len);
	img[HDR + 8] |= RF_BALLOON_F_FREE_PAGE_HINT;
	reseal(img, p->len);
	expect_refused(p, img, p->len, "not offered here");

	/* a target beyond guest RAM */
	refuse_u64(p, img, HDR + 28, ram_pages + 1, "target");

	/* the held stats buffer's head beyond its queue */
	memcpy(img, p->img, p->len);
	img[HDR + 41] = 0x10; /* stats_head 0x1000 */
	reseal(img, p->len);
	expect_refused(p, img, p->len, "held stats buffer");

	/* indices: more buffers taken than the queue holds */
	memcpy(img, p->img, p->len);
	img[qo + 56] = 0; /* last_avail 0x0300 - used_idx 1 */
	img[qo + 57] = 3;
	reseal(img, p->len);
	expect_refused(p, img, p->len, "took");

	/* after every refusal, the untouched image restores */
	assert_int_equal(rf_balloon_restore(p->b.b, p->img, p->len), 0);
	assert_int_equal(rf_vm_page_state(p->b.vm, 100ull << 12), RF_PAGE_BALLOONED);
	free(img);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/*
 * Issue 14: a save costs what is ballooned, not the size of guest RAM. A VM
 * of 16 MiB + 64 GiB with 10 MiB ballooned in 11 runs (one in the low
 * region, one across a 2 MiB chunk boundary, the others spread over the
 * 64 GiB): the image holds the device and those 11 runs, and the save looks
 * at the page states of their chunks only (it read all 16.8M entries
 * before). Restored into a second VM of the same layout, every page is
 * where it was. A page ballooned behind the map's back (no mark) is still
 * saved: the save then reads all of guest RAM, as the reset does.
 */
static void test_save_cost_follows_the_balloon(void **state)
{
	const uint64_t hi = 4ull << 30, hi_bytes = 64ull << 30, hi_pfn = hi >> 12;
	const uint64_t chunks = 21; /* the runs' 2 MiB chunks, at most */
	struct bdrv a, b;
	uint32_t pfns[256];
	uint64_t starts[11], fixed, scanned;
	size_t needed = 0, len;
	uint8_t *img;
	double t0, t1;

	(void)state;
	assert_int_equal(bdrv_setup2(&a, RAM, hi, hi_bytes, ALL, NULL, true), 0);
	starts[0] = 1000;		/* low region: pages 1000-1255 */
	starts[1] = hi_pfn + 512 - 100; /* across the first chunk boundary */
	for (unsigned int i = 2; i < 11; i++)
		starts[i] = hi_pfn + i * 1000003ull;
	for (unsigned int r = 0; r < 11; r++) {
		unsigned int n = r ? 256 : 1; /* 10 runs of 256 = 10 MiB, one page low */

		for (unsigned int i = 0; i < n; i++)
			pfns[i] = (uint32_t)(starts[r] + i);
		bdrv_send_pfns(&a, a.inflate_q, pfns, n);
	}
	assert_int_equal(atomic_load(&a.vm->state_pages[RF_PAGE_BALLOONED]), 10 * 256 + 1);

	scanned = a.b->save_pages_scanned;
	t0 = now_ms();
	assert_int_equal(rf_balloon_save(a.b, NULL, 0, &needed), -ENOSPC);
	t1 = now_ms();
	scanned = a.b->save_pages_scanned - scanned;
	print_message("save of 10 MiB ballooned in 64 GiB: %zu bytes, %.3f ms, %llu page "
		      "states read\n",
		      needed, t1 - t0, (unsigned long long)scanned);
	fixed = needed - 11 * RUN;
	assert_true(fixed < 1024); /* the device state: no per-page or per-GiB part */
	assert_true(scanned <= 2 * chunks * 512); /* counted, then written */
	len = needed;
	img = malloc(len);
	assert_int_equal(rf_balloon_save(a.b, img, len, &needed), 0);
	assert_int_equal(img[H_NRUNS], 11);

	assert_int_equal(bdrv_setup2(&b, RAM, hi, hi_bytes, ALL, NULL, false), 0);
	assert_int_equal(rf_balloon_restore(b.b, img, len), 0);
	assert_int_equal(atomic_load(&b.vm->state_pages[RF_PAGE_BALLOONED]), 10 * 256 + 1);
	assert_int_equal(rf_vm_page_state(b.vm, 1000ull << 12), RF_PAGE_BALLOONED);
	for (unsigned int r = 1; r < 11; r++) {
		assert_int_equal(rf_vm_page_state(b.vm, (starts[r] - 1) << 12), RF_PAGE_PRIVATE);
		assert_int_equal(rf_vm_page_state(b.vm, starts[r] << 12), RF_PAGE_BALLOONED);
		assert_int_equal(rf_vm_page_state(b.vm, (starts[r] + 255) << 12),
				 RF_PAGE_BALLOONED);
		assert_int_equal(rf_vm_page_state(b.vm, (starts[r] + 256) << 12), RF_PAGE_PRIVATE);
	}
	bdrv_teardown(&b);

	/* A BALLOONED page no inflate marked: found by the whole walk. */
	rf_test_set_state(a.vm, (hi_pfn + 15000000ull) << 12, RF_PAGE_BALLOONED);
	scanned = a.b->save_pages_scanned;
	assert_int_equal(rf_balloon_save(a.b, NULL, 0, &needed), -ENOSPC);
	assert_int_equal(needed, len + RUN);
	assert_true(a.b->save_pages_scanned - scanned > hi_bytes >> 12);
	rf_test_set_state(a.vm, (hi_pfn + 15000000ull) << 12, RF_PAGE_PRIVATE);
	free(img);
	bdrv_teardown(&a);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_restore_and_finish_inflate, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_corrupt_images_refused, setup, teardown),
	    cmocka_unit_test(test_save_cost_follows_the_balloon),
	};

	return cmocka_run_group_tests_name("balloon_save", tests, NULL, NULL);
}
