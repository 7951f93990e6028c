/* SPDX-License-Identifier: MIT */
/*
 * The balloon device doing its job: a mock driver (tests/helpers/virtq_mock)
 * negotiates over virtio-mmio, puts requests in real guest RAM, and each test
 * checks what happened to the pages: state table, content, and what the
 * kernel says is resident.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "rf_test.h"
#include "virtq_mock.h"
#include "dedup_util.h"
#include "internal.h"
#include "../../balloon/balloon_internal.h"

#define RAM (16ull << 20)
#define ALL (~0ull)

static void drain_used(struct vq_mock *m)
{
	while (vq_mock_get_used(m, NULL, NULL))
		;
}

static uint64_t resident(struct bdrv *d)
{
	struct rf_vm_stats st = {.size = sizeof(st)};

	assert_int_equal(rf_vm_stats(d->vm, &st), 0);
	return st.resident_bytes;
}

static struct rf_balloon_counters ctr(struct bdrv *d)
{
	struct rf_balloon_counters c = {.size = sizeof(c)};

	assert_int_equal(rf_balloon_counters(d->b, &c), 0);
	return c;
}

static void test_handshake_and_registers(void **state)
{
	struct bdrv d;
	struct rf_balloon_info info = {.size = sizeof(info)};
	uint8_t cfg8 = 0xff;

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	assert_true(d.features == RF_BALLOON_FEATURES_DEFAULT);
	assert_int_equal(d.nq, 4);
	assert_int_equal(rf_balloon_num_queues(d.b), 4);
	bdrv_w32(&d, 0x30, 4); /* a fifth queue does not exist */
	assert_int_equal(bdrv_r32(&d, 0x34), 0);
	assert_int_equal(bdrv_r32(&d, 0x0c), 0x554d4551);
	assert_int_equal(bdrv_r32(&d, 0xb0), 0xffffffff); /* no shared memory */
	assert_int_equal(rf_balloon_info(d.b, &info), 0);
	assert_true(info.features_negotiated == RF_BALLOON_FEATURES_DEFAULT);
	assert_int_equal(info.guest_ram_bytes, RAM);
	assert_int_equal(info.status, 15);
	/* config: 1-byte read works */
	assert_int_equal(rf_balloon_mmio_read(d.b, 0x100, &cfg8, 1), 0);
	assert_int_equal(cfg8, 0);
	assert_int_equal(rf_balloon_rejected_total(&(struct rf_balloon_counters){0}), 0);
	{
		struct rf_balloon_counters c = ctr(&d);

		assert_int_equal(rf_balloon_rejected_total(&c), 0);
	}
	assert_string_equal(rf_balloon_stat_name(0), "stat-swap-in");
	bdrv_teardown(&d);
}

static void test_queue_layout_follows_features(void **state)
{
	struct bdrv d;

	(void)state;
	/* Without STATS_VQ the reporting queue is number 2, as Linux numbers it. */
	assert_int_equal(bdrv_setup(&d, RAM, ALL & ~RF_BALLOON_F_STATS_VQ, NULL, true), 0);
	assert_int_equal(d.nq, 3);
	assert_int_equal(d.report_q, 2);
	bdrv_fill_page(&d, 600, 1);
	{
		uint64_t a = 600ull << 12;
		uint32_t l = 4096;

		vq_mock_add_chain(&d.q[2], &a, &l, 1, true);
	}
	rf_balloon_queue_notify(d.b, 2);
	assert_int_equal(rf_vm_page_state(d.vm, 600ull << 12), RF_PAGE_FREE_REPORTED);
	bdrv_teardown(&d);
}

static void test_inflate_discards(void **state)
{
	struct bdrv d;
	uint32_t pfns[256];
	struct rf_balloon_info info = {.size = sizeof(info)};
	struct rf_balloon_counters c = {.size = sizeof(c)};
	uint64_t before, after;
	uint32_t id, len;

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	for (unsigned int i = 0; i < 256; i++) {
		/* mixed order, two runs */
		pfns[i] = (i % 2) ? 1000 + i / 2 : 2000 + i / 2;
		bdrv_fill_page(&d, pfns[i], 7);
	}
	bdrv_fill_page(&d, 999, 7);
	before = resident(&d);
	bdrv_send_pfns(&d, d.inflate_q, pfns, 256);
	assert_int_equal(vq_mock_get_used(&d.q[d.inflate_q], &id, &len), 1);
	assert_int_equal(vq_mock_used_idx(&d.q[d.inflate_q]), 1);
	for (unsigned int i = 0; i < 256; i++) {
		assert_int_equal(rf_vm_page_state(d.vm, (uint64_t)pfns[i] << 12),
				 RF_PAGE_BALLOONED);
	}
	after = resident(&d);
	assert_true(before - after >= 256 * 4096ull);
	assert_true(bdrv_page_is(&d, 999, 7)); /* the neighbour is untouched */
	for (unsigned int i = 0; i < 256; i++)
		assert_true(bdrv_page_is_zero(&d, pfns[i]));
	c = ctr(&d);
	assert_int_equal(c.inflated_pages, 256);
	assert_int_equal(c.inflate_buffers, 1);
	assert_int_equal(rf_balloon_rejected_total(&c), 0);
	rf_balloon_info(d.b, &info);
	assert_int_equal(info.ballooned_bytes, 256 * 4096ull);
	assert_true(d.irqs >= 1);
	bdrv_teardown(&d);
}

static unsigned int releases;

static int fake_release(rf_vm *vm, struct rf_region *r, uint64_t idx, uint64_t pte, void *arg)
{
	(void)vm, (void)r, (void)idx, (void)pte, (void)arg;
	releases++;
	return 0;
}

static void test_inflate_merged_page_goes_through_owner(void **state)
{
	struct bdrv d;
	struct rf_vm_hooks h = {.owns_states = 1u << RF_PAGE_MERGED, .page_release = fake_release};
	uint32_t pfn = 300;

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	assert_int_equal(rf_vm_add_hooks(d.vm, &h), 0);
	rf_test_set_state(d.vm, 300ull << 12, RF_PAGE_MERGED);
	releases = 0;
	bdrv_send_pfns(&d, d.inflate_q, &pfn, 1);
	assert_int_equal(releases, 1); /* the owner dropped its reference first */
	assert_int_equal(rf_vm_page_state(d.vm, 300ull << 12), RF_PAGE_BALLOONED);
	bdrv_teardown(&d);
}

/*
 * The trap rf_vm_discard_as exists for, with the real dedup engine: a merged page
 * maps a store page, and MADV_DONTNEED on it would bring the store's content
 * back. Inflated, it must read as zero; its twins keep their content.
 */
static void test_inflate_really_merged_pages(void **state)
{
	struct bdrv d;
	struct rf_dedup_config dc;
	const char *why = NULL;
	uint32_t pfns[32];
	uint64_t merged = 0;

	(void)state;
	rf_require(dedup_supported(&why), why ? why : "dedup not supported");
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	rf_dedup_config_init(&dc);
	assert_int_equal(rf_dedup_start(d.e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(d.vm), 0);
	for (uint64_t p = 100; p < 164; p++)
		dedup_fill_page(d.ram + (p << 12), 42);
	rf_dedup_scan_now(d.e);
	for (int i = 0; i < 200 && merged < 63; i++) {
		merged = 0;
		for (uint64_t p = 100; p < 164; p++)
			merged += rf_vm_page_state(d.vm, p << 12) == RF_PAGE_MERGED;
		if (merged < 63) {
			struct timespec ts = {0, 20 * 1000000};

			nanosleep(&ts, NULL);
		}
	}
	rf_require(merged >= 32, "the dedup engine did not merge the test pages in 4 s");
	for (unsigned int i = 0; i < 32; i++)
		pfns[i] = 100 + i;
	bdrv_send_pfns(&d, d.inflate_q, pfns, 32);
	for (uint64_t p = 100; p < 132; p++) {
		assert_int_equal(rf_vm_page_state(d.vm, p << 12), RF_PAGE_BALLOONED);
		assert_true(bdrv_page_is_zero(&d, p)); /* not the store's content */
	}
	for (uint64_t p = 132; p < 164; p++) {
		uint8_t ref[4096];

		dedup_fill_page(ref, 42);
		assert_memory_equal(d.ram + (p << 12), ref, 4096);
	}
	rf_dedup_stop(d.e);
	bdrv_teardown(&d);
}

static void test_deflate_returns_zero_pages(void **state)
{
	struct bdrv d;
	uint32_t pfns[64];
	struct rf_balloon_counters c = {.size = sizeof(c)};

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	for (unsigned int i = 0; i < 64; i++) {
		pfns[i] = 500 + i;
		bdrv_fill_page(&d, pfns[i], 3);
	}
	bdrv_send_pfns(&d, d.inflate_q, pfns, 64);
	/* A guest that breaks the protocol writes to a ballooned page... */
	bdrv_fill_page(&d, 510, 9);
	bdrv_send_pfns(&d, d.deflate_q, pfns, 64);
	assert_int_equal(vq_mock_used_idx(&d.q[d.deflate_q]), 1);
	for (unsigned int i = 0; i < 64; i++) {
		assert_int_equal(rf_vm_page_state(d.vm, (uint64_t)pfns[i] << 12), RF_PAGE_PRIVATE);
		/* ...and still gets a fresh zero page back. */
		assert_true(bdrv_page_is_zero(&d, pfns[i]));
	}
	bdrv_fill_page(&d, 520, 4); /* usable again */
	assert_true(bdrv_page_is(&d, 520, 4));
	c = ctr(&d);
	assert_int_equal(c.deflated_pages, 64);
	assert_int_equal(c.inflated_pages, 64);
	assert_int_equal(rf_balloon_rejected_total(&c), 0);
	bdrv_teardown(&d);
}

static void test_excluded_pages_stay(void **state)
{
	struct bdrv d;
	uint32_t pfns[2] = {700, 701};

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	bdrv_fill_page(&d, 700, 2);
	bdrv_fill_page(&d, 701, 2);
	assert_int_equal(rf_vm_exclude_range(d.vm, 700ull << 12, 4096, true), 0);
	bdrv_send_pfns(&d, d.inflate_q, pfns, 2);
	assert_true(bdrv_page_is(&d, 700, 2));
	assert_int_equal(rf_vm_page_state(d.vm, 701ull << 12), RF_PAGE_BALLOONED);
	assert_int_equal(ctr(&d).excluded_pages, 1);
	bdrv_teardown(&d);
}

static void report(struct bdrv *d, uint64_t gpa, uint32_t len)
{
	vq_mock_add_chain(&d->q[d->report_q], &gpa, &len, 1, true);
	rf_balloon_queue_notify(d->b, (unsigned int)d->report_q);
}

static void test_free_page_reporting(void **state)
{
	struct bdrv d;
	uint64_t before, after;
	uint32_t pfn = 1024 + 5;
	struct rf_balloon_info info = {.size = sizeof(info)};

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	for (uint64_t p = 1024; p < 1024 + 1024; p++)
		bdrv_fill_page(&d, p, 5);
	bdrv_send_pfns(&d, d.inflate_q, &pfn, 1); /* one page already ballooned */
	before = resident(&d);
	report(&d, 4ull << 20, 2u << 20);
	report(&d, 6ull << 20, 2u << 20);
	assert_int_equal(vq_mock_used_idx(&d.q[d.report_q]), 2);
	after = resident(&d);
	assert_true(before - after >= (4ull << 20) - 4096);
	assert_int_equal(rf_vm_page_state(d.vm, 4ull << 20), RF_PAGE_FREE_REPORTED);
	/* the ballooned page stays the host's */
	assert_int_equal(rf_vm_page_state(d.vm, (uint64_t)pfn << 12), RF_PAGE_BALLOONED);
	assert_true(bdrv_page_is_zero(&d, 1024));
	rf_balloon_info(d.b, &info);
	assert_int_equal(info.reported_bytes, (4ull << 20) - 4096);
	assert_int_equal(ctr(&d).reported_pages, 1023);
	/* deflating a reported page is not a deflate: it was never ballooned */
	bdrv_send_pfns(&d, d.deflate_q, (uint32_t[]){1024}, 1);
	assert_int_equal(rf_vm_page_state(d.vm, 4ull << 20), RF_PAGE_FREE_REPORTED);
	assert_int_equal(ctr(&d).deflate_not_ballooned, 1);
	bdrv_teardown(&d);
}

static void test_reporting_with_poison_keeps_pages(void **state)
{
	struct bdrv d;
	uint32_t poison = 0xaa;

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	assert_true(d.features & RF_BALLOON_F_PAGE_POISON);
	assert_int_equal(rf_balloon_mmio_write(d.b, 0x100 + 12, &poison, 4), 0);
	for (uint64_t p = 1024; p < 1024 + 512; p++)
		bdrv_fill_page(&d, p, 6);
	report(&d, 4ull << 20, 2u << 20);
	assert_int_equal(vq_mock_used_idx(&d.q[d.report_q]), 1);
	for (uint64_t p = 1024; p < 1024 + 512; p++)
		assert_true(bdrv_page_is(&d, p, 6));
	assert_int_equal(ctr(&d).report_poison_kept, 512);
	/* poison value 0: zero pages are what the guest expects, so discard */
	poison = 0;
	rf_balloon_mmio_write(d.b, 0x100 + 12, &poison, 4);
	report(&d, 4ull << 20, 2u << 20);
	assert_true(bdrv_page_is_zero(&d, 1024));
	bdrv_teardown(&d);
}

/* Pages [pfn, pfn + n) all hold @seed's content, or all read as zero. */
static bool pages_are(struct bdrv *d, uint64_t pfn, uint64_t n, uint32_t seed)
{
	for (uint64_t p = pfn; p < pfn + n; p++)
		if (seed ? !bdrv_page_is(d, p, seed) : !bdrv_page_is_zero(d, p))
			return false;
	return true;
}

/*
 * A guest that takes reported memory back within the window gets its reports
 * kept (nothing discarded, every page's content as the guest left it), one in
 * 16 still discarded as a probe; when it stops taking memory back the device
 * discards again. Each turn is logged once.
 */
static void test_report_reuse_keeps_churn(void **state)
{
	struct bdrv d;
	struct rf_balloon_counters c;
	unsigned int kept;

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	/* wave 1: written, freed, reported: discarded */
	for (uint64_t p = 1024; p < 2048; p++)
		bdrv_fill_page(&d, p, 7);
	report(&d, 4ull << 20, 2u << 20);
	report(&d, 6ull << 20, 2u << 20);
	assert_true(pages_are(&d, 1024, 1024, 0));
	c = ctr(&d);
	assert_int_equal(c.reported_pages, 1024);
	assert_int_equal(c.report_kept_pages, 0);
	/* wave 2: the same pages taken back and written, reported again: kept */
	for (uint64_t p = 1024; p < 2048; p++)
		bdrv_fill_page(&d, p, 8);
	report(&d, 4ull << 20, 2u << 20);
	assert_non_null(strstr(d.last_log, "vm0: balloon: free page reporting: reports kept"));
	report(&d, 6ull << 20, 2u << 20);
	assert_int_equal(vq_mock_used_idx(&d.q[d.report_q]), 4);
	assert_true(pages_are(&d, 1024, 1024, 8));
	c = ctr(&d);
	assert_int_equal(c.reported_pages, 1024);
	assert_int_equal(c.report_reused_pages, 1024);
	assert_int_equal(c.report_kept_pages, 1024);
	assert_int_equal(rf_vm_page_state(d.vm, 4ull << 20), RF_PAGE_PRIVATE);
	/* kept reports tell nothing (the pages are resident either way); every
	 * 16th is discarded all the same */
	for (kept = 2; kept < 15; kept++) {
		report(&d, 4ull << 20, 2u << 20);
		assert_true(pages_are(&d, 1024, 512, 8));
	}
	assert_int_equal(ctr(&d).report_kept_pages, 15 * 512);
	assert_int_equal(ctr(&d).report_reused_pages, 1024);
	report(&d, 4ull << 20, 2u << 20); /* the probe */
	assert_true(pages_are(&d, 1024, 512, 0));
	assert_true(pages_are(&d, 1536, 512, 8));
	assert_int_equal(ctr(&d).reported_pages, 1536);
	/* the guest no longer takes it back: reported again, still free; at
	 * under half reused the device discards again */
	report(&d, 4ull << 20, 2u << 20);
	report(&d, 4ull << 20, 2u << 20);
	assert_int_equal(ctr(&d).report_kept_pages, 17 * 512);
	report(&d, 4ull << 20, 2u << 20);
	assert_non_null(strstr(d.last_log, "reports discarded again (1024 of 2560 pages"));
	report(&d, 6ull << 20, 2u << 20);
	assert_true(pages_are(&d, 1536, 512, 0));
	c = ctr(&d);
	assert_int_equal(c.report_kept_pages, 17 * 512);
	assert_int_equal(rf_balloon_rejected_total(&c), 0);
	bdrv_teardown(&d);
}

/* report_reuse_ms = 0: every report is discarded, as in 0.3; a window past
 * the maximum is refused, naming the field. */
static void test_report_reuse_off_and_bad_window(void **state)
{
	struct rf_balloon_config cfg;
	struct bdrv d;
	rf_balloon *b2;

	(void)state;
	rf_balloon_config_init(&cfg);
	assert_int_equal(cfg.report_reuse_ms, 10000);
	cfg.report_reuse_ms = 0;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, &cfg, true), 0);
	for (int wave = 1; wave <= 3; wave++) {
		for (uint64_t p = 1024; p < 1536; p++)
			bdrv_fill_page(&d, p, (uint32_t)wave);
		report(&d, 4ull << 20, 2u << 20);
		assert_true(pages_are(&d, 1024, 512, 0));
	}
	assert_int_equal(ctr(&d).reported_pages, 3 * 512);
	assert_int_equal(ctr(&d).report_reused_pages, 0);
	assert_int_equal(ctr(&d).report_kept_pages, 0);
	rf_balloon_free(d.b);
	cfg.report_reuse_ms = RF_BALLOON_REPORT_REUSE_MAX_MS + 1;
	assert_int_equal(rf_balloon_new(d.vm, NULL, &cfg, &b2), -EINVAL);
	assert_non_null(strstr(d.last_log, "report_reuse_ms 120001 (0..120000)"));
	d.b = NULL;
	bdrv_teardown(&d);
}

static void put_stat(uint8_t *b, unsigned int i, uint16_t tag, uint64_t v)
{
	memcpy(b + 10 * i, &tag, 2);
	memcpy(b + 10 * i + 2, &v, 8);
}

static void test_stats_polling(void **state)
{
	struct bdrv d;
	struct rf_balloon_stats st = {.size = sizeof(st)};
	struct rf_balloon_config cfg;
	uint8_t buf[160];
	unsigned int next;
	struct timespec ts = {0, 80 * 1000000};

	(void)state;
	rf_balloon_config_init(&cfg);
	cfg.stats_interval_ms = 50;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, &cfg, true), 0);
	for (unsigned int t = 0; t < 16; t++)
		put_stat(buf, t, (uint16_t)t, 1000 + t);
	vq_mock_add(&d.q[d.stats_q], buf, 160, false);
	rf_balloon_queue_notify(d.b, (unsigned int)d.stats_q);
	/* held by the device until the interval passes */
	assert_int_equal(vq_mock_used_idx(&d.q[d.stats_q]), 0);
	assert_int_equal(rf_balloon_stats(d.b, &st), 0);
	assert_int_equal(st.updates, 1);
	assert_int_equal(st.value[RF_BALLOON_S_MEMFREE], 1004);
	assert_int_equal(st.value[RF_BALLOON_S_DIRECT_RECLAIM], 1015);
	assert_true(st.last_update > 1600000000);
	rf_balloon_tick(d.b, &next);
	assert_int_equal(vq_mock_used_idx(&d.q[d.stats_q]), 0);
	assert_true(next > 0 && next <= 50);
	nanosleep(&ts, NULL);
	rf_balloon_tick(d.b, &next);
	assert_int_equal(vq_mock_used_idx(&d.q[d.stats_q]), 1);
	assert_int_equal(next, UINT32_MAX);
	/* the guest refills with fewer tags: absent ones become unset */
	put_stat(buf, 0, RF_BALLOON_S_AVAIL, 77);
	vq_mock_add(&d.q[d.stats_q], buf, 10, false);
	rf_balloon_queue_notify(d.b, (unsigned int)d.stats_q);
	rf_balloon_stats(d.b, &st);
	assert_int_equal(st.updates, 2);
	assert_int_equal(st.value[RF_BALLOON_S_AVAIL], 77);
	assert_true(st.value[RF_BALLOON_S_MEMFREE] == RF_BALLOON_STAT_UNSET);
	/* interval off: never returned */
	rf_balloon_set_stats_interval(d.b, 0);
	nanosleep(&ts, NULL);
	rf_balloon_tick(d.b, &next);
	assert_int_equal(vq_mock_used_idx(&d.q[d.stats_q]), 1);
	bdrv_teardown(&d);
}

static void test_target_and_actual(void **state)
{
	struct bdrv d;
	struct rf_balloon_info info = {.size = sizeof(info)};
	uint32_t v, gen;
	unsigned int irqs;

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	gen = bdrv_r32(&d, 0xfc);
	irqs = d.irqs;
	assert_int_equal(rf_balloon_set_target(d.b, 4ull << 20), 0);
	assert_int_equal(bdrv_r32(&d, 0x100), 1024); /* num_pages */
	assert_int_equal(bdrv_r32(&d, 0xfc), gen + 1);
	assert_int_equal(d.irqs, irqs + 1);
	assert_true(bdrv_r32(&d, 0x60) & RF_BALLOON_IRQ_CONFIG);
	bdrv_w32(&d, 0x64, RF_BALLOON_IRQ_CONFIG);
	assert_int_equal(bdrv_r32(&d, 0x60) & RF_BALLOON_IRQ_CONFIG, 0);
	assert_int_equal(rf_balloon_set_target(d.b, RAM + 4096), -EINVAL);
	assert_int_equal(rf_balloon_set_target(d.b, RAM), 0);
	/* the guest reports its balloon */
	v = 512;
	rf_balloon_mmio_write(d.b, 0x104, &v, 4);
	assert_int_equal(d.last_actual, 512 * 4096ull);
	rf_balloon_info(d.b, &info);
	assert_int_equal(info.actual_bytes, 512 * 4096ull);
	assert_int_equal(info.target_bytes, RAM);
	assert_int_equal(info.ballooned_bytes, 0); /* its word, not the table's */
	assert_true(info.actual_changed_ns > 0);
	bdrv_teardown(&d);
}

static void test_reset_unballoons(void **state)
{
	struct bdrv d;
	uint32_t pfns[4] = {40, 41, 42, 43};
	struct rf_balloon_info info = {.size = sizeof(info)};

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	uint64_t resets;

	bdrv_send_pfns(&d, d.inflate_q, pfns, 4);
	rf_balloon_info(d.b, &info);
	assert_int_equal(info.ballooned_bytes, 4 * 4096);
	resets = ctr(&d).resets;
	bdrv_w32(&d, 0x70, 0); /* guest reboot */
	rf_balloon_info(d.b, &info);
	assert_int_equal(info.ballooned_bytes, 0);
	assert_int_equal(info.status, 0);
	assert_int_equal(rf_vm_page_state(d.vm, 40ull << 12), RF_PAGE_PRIVATE);
	assert_int_equal(ctr(&d).resets, resets + 1);
	/* and it can be brought up again */
	assert_int_equal(bdrv_handshake(&d, ALL), 0);
	bdrv_send_pfns(&d, d.inflate_q, pfns, 4);
	assert_int_equal(rf_vm_page_state(d.vm, 40ull << 12), RF_PAGE_BALLOONED);
	bdrv_teardown(&d);
}

/*
 * Issue 14: a reset costs what is in the balloon, not the size of the guest
 * (it walked every page of guest RAM under the device lock: 17 ms per reset
 * write at 64 GiB). Guest RAM of 1 GiB + 16 MiB in two regions; a few pages
 * ballooned in each; the reset looks at the page states of their 2 MiB
 * chunks only, and every ballooned page comes back PRIVATE, keeping what
 * the guest wrote to it while it was in the balloon.
 */
static void test_reset_cost_follows_the_balloon(void **state)
{
	const uint64_t hi = 8ull << 30, hi_bytes = 1ull << 30;
	uint32_t pfns[5] = {40, 41, 42, 3000, (uint32_t)((hi >> 12) + 70000)};
	struct rf_balloon *b;
	struct rf_balloon_info info = {.size = sizeof(info)};
	struct bdrv d;
	uint64_t scanned, ram_pages = (RAM + hi_bytes) >> 12;

	(void)state;
	assert_int_equal(bdrv_setup2(&d, RAM, hi, hi_bytes, ALL, NULL, true), 0);
	b = d.b;
	bdrv_send_pfns(&d, d.inflate_q, pfns, 5);
	rf_balloon_info(d.b, &info);
	assert_int_equal(info.ballooned_bytes, 5 * 4096);
	memset(d.ram + 41 * 4096, 0x5a, 4096); /* the guest writes a ballooned page */
	scanned = b->reset_pages_scanned;
	bdrv_w32(&d, 0x70, 0);
	scanned = b->reset_pages_scanned - scanned;
	/* three chunks: pages 40-42, page 3000, the one in the high region */
	assert_true(scanned <= 3 * 512);
	assert_true(scanned < ram_pages / 100);
	rf_balloon_info(d.b, &info);
	assert_int_equal(info.ballooned_bytes, 0);
	for (unsigned int i = 0; i < 5; i++)
		assert_int_equal(rf_vm_page_state(d.vm, (uint64_t)pfns[i] << 12), RF_PAGE_PRIVATE);
	assert_int_equal(d.ram[41 * 4096 + 7], 0x5a);

	/* Again after a deflate and a second inflate: the marks of the first
	 * round are gone, only the new chunk is looked at. */
	assert_int_equal(bdrv_handshake(&d, ALL), 0);
	bdrv_send_pfns(&d, d.inflate_q, (uint32_t[]){1000}, 1);
	scanned = b->reset_pages_scanned;
	bdrv_w32(&d, 0x70, 0);
	assert_true(b->reset_pages_scanned - scanned <= 512);
	assert_int_equal(rf_vm_page_state(d.vm, 1000ull << 12), RF_PAGE_PRIVATE);

	/* A page ballooned by another path than this device's inflate (none
	 * does today; tests and a future public discard may): the reset
	 * still finds it, by walking all of guest RAM as before. */
	assert_int_equal(bdrv_handshake(&d, ALL), 0);
	rf_test_set_state(d.vm, 2000ull << 12, RF_PAGE_BALLOONED);
	bdrv_w32(&d, 0x70, 0);
	assert_int_equal(rf_vm_page_state(d.vm, 2000ull << 12), RF_PAGE_PRIVATE);
	rf_balloon_info(d.b, &info);
	assert_int_equal(info.ballooned_bytes, 0);
	bdrv_teardown(&d);
}

static void test_own_transport(void **state)
{
	struct bdrv d;
	struct vq_mock m;
	uint32_t pfn = htole32(77);
	uint64_t f;

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, 0, NULL, false), 0);
	f = rf_balloon_device_features(d.b);
	assert_true(f & RF_VIRTIO_F_VERSION_1);
	assert_false(f & RF_BALLOON_F_FREE_PAGE_HINT);
	assert_int_equal(rf_balloon_set_status(d.b, 1 | 2), 0);
	assert_int_equal(rf_balloon_set_driver_features(d.b, RF_VIRTIO_F_VERSION_1), 0);
	assert_int_equal(rf_balloon_set_status(d.b, 1 | 2 | 8), 0);
	assert_int_equal(rf_balloon_get_status(d.b), 1 | 2 | 8);
	assert_int_equal(rf_balloon_num_queues(d.b), 2);
	vq_mock_init(&m, d.vm, 8ull << 20, 64, 64 << 10);
	assert_int_equal(rf_balloon_queue_setup(d.b, 0, 64, m.desc, m.avail, m.used), 0);
	assert_int_equal(rf_balloon_queue_setup(d.b, 0, 64, m.desc, m.avail, m.used), -EBUSY);
	assert_int_equal(rf_balloon_queue_setup(d.b, 2, 64, m.desc, m.avail, m.used), -ENOENT);
	assert_int_equal(rf_balloon_set_status(d.b, 1 | 2 | 8 | 4), 0);
	bdrv_fill_page(&d, 77, 1);
	vq_mock_add(&m, &pfn, 4, false);
	assert_int_equal(rf_balloon_queue_notify(d.b, 0), 0);
	assert_int_equal(vq_mock_used_idx(&m), 1);
	assert_int_equal(rf_vm_page_state(d.vm, 77ull << 12), RF_PAGE_BALLOONED);
	assert_true(rf_balloon_interrupt_status(d.b) & RF_BALLOON_IRQ_VRING);
	rf_balloon_interrupt_ack(d.b, RF_BALLOON_IRQ_VRING);
	assert_int_equal(rf_balloon_interrupt_status(d.b), 0);
	bdrv_teardown(&d);
}

/* Issue 14: a virtio-pci embedder picks the MSI-X vector by queue. */
struct qirq_log {
	int queue[16];
	unsigned int n;
};

static void on_queue_irq(void *arg, int queue)
{
	struct qirq_log *l = arg;

	if (l->n < 16)
		l->queue[l->n] = queue;
	l->n++;
}

static void test_queue_interrupt(void **state)
{
	struct bdrv d;
	struct qirq_log l = {0};
	uint32_t pfn = 500;
	unsigned int old_irqs;

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	assert_int_equal(rf_balloon_set_queue_interrupt(NULL, on_queue_irq, &l), -EINVAL);
	assert_int_equal(rf_balloon_set_queue_interrupt(d.b, on_queue_irq, &l), 0);
	old_irqs = d.irqs;
	bdrv_send_pfns(&d, d.inflate_q, &pfn, 1);
	bdrv_send_pfns(&d, d.deflate_q, &pfn, 1);
	assert_int_equal(l.n, 2);
	assert_int_equal(l.queue[0], d.inflate_q);
	assert_int_equal(l.queue[1], d.deflate_q);
	assert_int_equal(rf_balloon_set_target(d.b, 1 << 20), 0);
	assert_int_equal(l.n, 3);
	assert_int_equal(l.queue[2], -1);
	/* instead of the old callback, not as well; the status is kept */
	assert_int_equal(d.irqs, old_irqs);
	assert_int_equal(rf_balloon_interrupt_status(d.b),
			 RF_BALLOON_IRQ_VRING | RF_BALLOON_IRQ_CONFIG);
	/* NULL: back to rf_balloon_ops.irq */
	assert_int_equal(rf_balloon_set_queue_interrupt(d.b, NULL, NULL), 0);
	assert_int_equal(rf_balloon_set_target(d.b, 2 << 20), 0);
	assert_int_equal(l.n, 3);
	assert_int_equal(d.irqs, old_irqs + 1);
	bdrv_teardown(&d);
}

/* Issue 14: features 32 bits at a time, queue state, stopping a queue. */
static void test_own_transport_halves_and_queue_state(void **state)
{
	struct bdrv d;
	struct vq_mock m;
	uint32_t pfn = htole32(78);
	uint64_t f;

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, 0, NULL, false), 0);
	f = rf_balloon_device_features(d.b);
	assert_int_equal(rf_balloon_device_features_half(d.b, 0), (uint32_t)f);
	assert_int_equal(rf_balloon_device_features_half(d.b, 1), (uint32_t)(f >> 32));
	assert_int_equal(rf_balloon_device_features_half(d.b, 2), 0);
	assert_int_equal(rf_balloon_set_status(d.b, 1 | 2), 0);
	/* the high half first: alone it is not yet a valid set */
	assert_int_equal(rf_balloon_set_driver_features_half(d.b, 1, (uint32_t)(f >> 32)), 0);
	assert_int_equal(
	    rf_balloon_set_driver_features_half(d.b, 0, (uint32_t)RF_BALLOON_F_STATS_VQ), 0);
	assert_int_equal(rf_balloon_set_status(d.b, 1 | 2 | 8), 0);
	assert_int_equal(rf_balloon_get_status(d.b), 1 | 2 | 8);
	assert_int_equal(rf_balloon_num_queues(d.b), 3);
	assert_int_equal(rf_balloon_queue_enabled(d.b, 0), 0);
	assert_int_equal(rf_balloon_queue_enabled(d.b, 3), -EINVAL);
	assert_int_equal(rf_balloon_queue_enabled(NULL, 0), -EINVAL);
	vq_mock_init(&m, d.vm, 8ull << 20, 64, 64 << 10);
	assert_int_equal(rf_balloon_queue_setup(d.b, 0, 64, m.desc, m.avail, m.used), 0);
	assert_int_equal(rf_balloon_queue_enabled(d.b, 0), 1);
	assert_int_equal(rf_balloon_set_status(d.b, 1 | 2 | 8 | 4), 0);
	bdrv_fill_page(&d, 78, 1);
	vq_mock_add(&m, &pfn, 4, false);
	/* stopped: the queue is the driver's again, a notify touches nothing */
	assert_int_equal(rf_balloon_queue_disable(d.b, 0), 0);
	assert_int_equal(rf_balloon_queue_enabled(d.b, 0), 0);
	assert_int_equal(rf_balloon_queue_disable(d.b, 0), 0); /* not enabled: no-op */
	rf_balloon_queue_notify(d.b, 0);
	assert_int_equal(vq_mock_used_idx(&m), 0);
	assert_true(bdrv_page_is(&d, 78, 1));
	/* enabled anew on a fresh ring, it works */
	vq_mock_init(&m, d.vm, 8ull << 20, 64, 64 << 10);
	assert_int_equal(rf_balloon_queue_setup(d.b, 0, 64, m.desc, m.avail, m.used), 0);
	vq_mock_add(&m, &pfn, 4, false);
	assert_int_equal(rf_balloon_queue_notify(d.b, 0), 0);
	assert_int_equal(vq_mock_used_idx(&m), 1);
	assert_int_equal(rf_vm_page_state(d.vm, 78ull << 12), RF_PAGE_BALLOONED);
	bdrv_teardown(&d);
}

static void test_lifecycle(void **state)
{
	struct bdrv d;
	rf_balloon *b2;
	struct rf_balloon_config cfg;

	(void)state;
	assert_int_equal(bdrv_setup(&d, RAM, ALL, NULL, true), 0);
	assert_int_equal(rf_balloon_new(d.vm, NULL, NULL, &b2), -EBUSY);
	rf_balloon_config_init(&cfg);
	cfg.queue_size_max = 100;
	rf_balloon_free(d.b);
	assert_int_equal(rf_balloon_new(d.vm, NULL, &cfg, &b2), -EINVAL);
	cfg.queue_size_max = 256;
	assert_int_equal(rf_balloon_new(d.vm, NULL, &cfg, &b2), 0);
	/* freeing the VM first takes the balloon with it (ASan checks) */
	rf_vm_free(d.vm);
	d.b = NULL;
	bdrv_teardown(&d);
	rf_balloon_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_handshake_and_registers),
	    cmocka_unit_test(test_queue_layout_follows_features),
	    cmocka_unit_test(test_inflate_discards),
	    cmocka_unit_test(test_inflate_merged_page_goes_through_owner),
	    cmocka_unit_test(test_inflate_really_merged_pages),
	    cmocka_unit_test(test_deflate_returns_zero_pages),
	    cmocka_unit_test(test_excluded_pages_stay),
	    cmocka_unit_test(test_free_page_reporting),
	    cmocka_unit_test(test_reporting_with_poison_keeps_pages),
	    cmocka_unit_test(test_report_reuse_keeps_churn),
	    cmocka_unit_test(test_report_reuse_off_and_bad_window),
	    cmocka_unit_test(test_stats_polling),
	    cmocka_unit_test(test_target_and_actual),
	    cmocka_unit_test(test_reset_unballoons),
	    cmocka_unit_test(test_reset_cost_follows_the_balloon),
	    cmocka_unit_test(test_own_transport),
	    cmocka_unit_test(test_queue_interrupt),
	    cmocka_unit_test(test_own_transport_halves_and_queue_state),
	    cmocka_unit_test(test_lifecycle),
	};

	(void)drain_used;
	return cmocka_run_group_tests_name("balloon", tests, NULL, NULL);
}
