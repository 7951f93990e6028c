/* SPDX-License-Identifier: MIT */
/*
 * The guest's virtio-balloon driver, polling, behaving on the wire as Linux's
 * drivers/virtio/virtio_balloon.c does:
 *
 *  - features: VERSION_1, MUST_TELL_HOST, STATS_VQ, DEFLATE_ON_OOM and
 *    REPORTING when offered (no PAGE_POISON: this guest does not poison
 *    free pages); queues numbered as Linux numbers them, only the ones
 *    that exist: inflateq, deflateq, [statsq], [reporting_vq];
 *  - towards the target (num_pages): inflate with buffers of up to 256 PFNs
 *    taken from the memory manager, deflate with buffers of up to 256 PFNs,
 *    always telling the host before the pages are reused (the order
 *    MUST_TELL_HOST requires), and write `actual` after each buffer;
 *  - stats: one buffer, refilled from the memory manager and put back each
 *    time the host returns it;
 *  - free page reporting: wholly free 2 MiB blocks (order 9, Linux's default
 *    page_reporting_order), up to 32 per request (PAGE_REPORTING_CAPACITY),
 *    a sweep at most every 2 s (Linux's reporting delay);
 *  - deflate-on-OOM: the memory manager's OOM hook gives back at least 256
 *    pages (VIRTIO_BALLOON_OOM_NR_PAGES) when the feature was negotiated;
 *    without it, the hook waits (up to 60 s, polling) for the host to lower
 *    the target and deflates to it: the guest stalls instead of failing.
 *
 * Inflation never takes the last BALLOON_RESERVE free pages, so the guest
 * keeps running (and an OOM deflate is not undone at once by the next poll).
 * Single-threaded (one vCPU, no interrupts), like everything in the guest.
 */
#include "balloon_drv.h"
#include "hw.h"
#include "lib.h"
#include "mm.h"
#include "virtio_mmio_drv.h"

#define F_MUST_TELL_HOST (1ull << 0)
#define F_STATS_VQ	 (1ull << 1)
#define F_DEFLATE_ON_OOM (1ull << 2)
#define F_REPORTING	 (1ull << 5)
#define WANTED		 (VIRTIO_F_VERSION_1 | F_MUST_TELL_HOST | F_STATS_VQ | F_DEFLATE_ON_OOM | F_REPORTING)

#define CFG_NUM_PAGES	0
#define CFG_ACTUAL	4
#define PFNS_PER_BUF	256
#define OOM_NR_PAGES	256
#define REPORT_CAPACITY 32
#define REPORT_DELAY_NS 2000000000ull
/* Pages inflation leaves free (2 MiB): about the min watermark Linux keeps
 * in a guest of a few hundred MiB. */
#define BALLOON_RESERVE 512
#define BUFS_PER_POLL	64
#define WAIT_MS		1000

enum {
	S_SWAP_IN,
	S_SWAP_OUT,
	S_MAJFLT,
	S_MINFLT,
	S_MEMFREE,
	S_MEMTOT,
	S_AVAIL,
	S_CACHES,
	S_OOM_KILL = 10,
	S_ALLOC_STALL = 11
};

struct stat_entry {
	uint16_t tag;
	uint64_t val;
} __attribute__((packed));

static struct {
	bool up;
	uint64_t base, features;
	struct gvq inflate, deflate, stats, report;
	uint32_t *list; /* PFNs in the balloon, list[0..n) */
	uint64_t n, cap;
	uint32_t *buf; /* one request's PFNs */
	struct stat_entry *st;
	unsigned int nstats;
	uint64_t last_report_ns;
	uint64_t report_cursor;
	uint32_t logged_target;
	uint64_t stats_sent, blocks_reported, oom_deflated;
} bl;

static uint32_t target_pages(void)
{
	uint32_t gen, v;

	/* Read num_pages consistently with the config generation. */
	do {
		gen = mmio_read32(bl.base + 0xfc);
		v = vmmio_config_read32(bl.base, CFG_NUM_PAGES);
	} while (gen != mmio_read32(bl.base + 0xfc));
	return v;
}

static void update_actual(void)
{
	vmmio_config_write32(bl.base, CFG_ACTUAL, (uint32_t)bl.n);
}

/* One inflate buffer. Returns pages inflated (0: no memory to give). */
static uint64_t inflate_once(uint64_t want)
{
	struct mm_stats ms;
	uint64_t n = 0, addr;
	uint32_t len;

	if (want > PFNS_PER_BUF)
		want = PFNS_PER_BUF;
	mm_get_stats(&ms);
	if (ms.free_pages <= BALLOON_RESERVE)
		return 0;
	if (want > ms.free_pages - BALLOON_RESERVE)
		want = ms.free_pages - BALLOON_RESERVE;
	mm_set_oom_hook(NULL, NULL); /* never deflate to inflate */
	while (n < want && bl.n + n < bl.cap) {
		uint64_t gpa = mm_alloc_page();

		if (!gpa)
			break;
		bl.buf[n++] = (uint32_t)(gpa >> PAGE_SHIFT);
	}
	balloon_set_oom_hook();
	if (!n)
		return 0;
	addr = (uint64_t)(uintptr_t)bl.buf;
	len = (uint32_t)(n * 4);
	if (gvq_send_wait(&bl.inflate, &addr, &len, 1, false, WAIT_MS)) {
		/* the host did not take them: keep them ours */
		for (uint64_t i = 0; i < n; i++)
			mm_free_page((uint64_t)bl.buf[i] << PAGE_SHIFT);
		return 0;
	}
	for (uint64_t i = 0; i < n; i++)
		bl.list[bl.n++] = bl.buf[i];
	update_actual();
	return n;
}

/* One deflate buffer: tell the host first, then hand the pages back. */
static uint64_t deflate_once(uint64_t want)
{
	uint64_t n = want < PFNS_PER_BUF ? want : PFNS_PER_BUF, addr;
	uint32_t len;

	if (n > bl.n)
		n = bl.n;
	if (!n)
		return 0;
	for (uint64_t i = 0; i < n; i++)
		bl.buf[i] = bl.list[bl.n - n + i];
	addr = (uint64_t)(uintptr_t)bl.buf;
	len = (uint32_t)(n * 4);
	if (gvq_send_wait(&bl.deflate, &addr, &len, 1, false, WAIT_MS))
		return 0;
	bl.n -= n;
	for (uint64_t i = 0; i < n; i++)
		mm_free_page((uint64_t)bl.buf[i] << PAGE_SHIFT);
	update_actual();
	return n;
}

static uint64_t oom_hook(uint64_t wanted, void *arg)
{
	uint64_t got = 0, end;

	(void)arg;
	if (!bl.up || !bl.n)
		return 0;
	if (bl.features & F_DEFLATE_ON_OOM) {
		uint64_t goal = wanted > OOM_NR_PAGES ? wanted : OOM_NR_PAGES;

		while (got < goal && bl.n) {
			uint64_t d = deflate_once(goal - got);

			if (!d)
				break;
			got += d;
		}
		bl.oom_deflated += got;
		console_printf("balloon: deflate-on-oom: gave back %lu pages, actual %lu pages",
			       got, bl.n);
		return got;
	}
	/* No DEFLATE_ON_OOM: the host decides. Wait for it to lower the target. */
	end = time_ns() + 60000000000ull;
	while (time_ns() < end && !stop_requested()) {
		uint32_t t = target_pages();

		if (t < bl.n) {
			while (bl.n > t) {
				uint64_t d = deflate_once(bl.n - t);

				if (!d)
					break;
				got += d;
			}
			return got;
		}
		sleep_us(10000);
	}
	return 0;
}

void balloon_set_oom_hook(void)
{
	if (bl.up)
		mm_set_oom_hook(oom_hook, NULL);
}

static void fill_stats(void)
{
	struct mm_stats ms;
	unsigned int i = 0;

	mm_get_stats(&ms);
#define PUT(t, v) (bl.st[i].tag = (t), bl.st[i].val = (v), i++)
	PUT(S_SWAP_IN, 0);
	PUT(S_SWAP_OUT, 0);
	PUT(S_MAJFLT, 0);
	PUT(S_MINFLT, 0);
	PUT(S_MEMFREE, ms.free_pages << PAGE_SHIFT);
	PUT(S_MEMTOT, ms.managed_pages << PAGE_SHIFT);
	PUT(S_AVAIL, ms.free_pages << PAGE_SHIFT);
	PUT(S_CACHES, 0);
	PUT(S_OOM_KILL, 0);
	PUT(S_ALLOC_STALL, ms.oom_calls);
#undef PUT
	bl.nstats = i;
}

static void send_stats(void)
{
	uint64_t addr = (uint64_t)(uintptr_t)bl.st;
	uint32_t len = bl.nstats * (uint32_t)sizeof(struct stat_entry);

	if (gvq_add(&bl.stats, &addr, &len, 1, false) >= 0) {
		gvq_kick(&bl.stats);
		bl.stats_sent++;
	}
}

static void report_free_blocks(void)
{
	for (int req = 0; req < 8; req++) {
		uint64_t addr[REPORT_CAPACITY], blk;
		uint32_t len[REPORT_CAPACITY];
		unsigned int n = 0;

		while (n < REPORT_CAPACITY && (blk = mm_next_free_block(&bl.report_cursor))) {
			addr[n] = blk;
			len[n] = MM_BLOCK_SIZE;
			n++;
		}
		if (!n)
			return;
		/* Single-threaded: nothing allocates these blocks while the
		 * host processes the request (synchronously, in the exit). */
		if (gvq_send_wait(&bl.report, addr, len, n, true, WAIT_MS))
			return;
		for (unsigned int i = 0; i < n; i++)
			mm_mark_reported(addr[i]);
		bl.blocks_reported += n;
		if (bl.report_cursor == 0)
			return; /* end of this sweep */
	}
}

void balloon_init(const struct rf_bootinfo *bi)
{
	uint64_t offered, list_pages;
	int q = 0;

	/* The memory manager's selftest needs the manager to itself (it checks
	 * that every managed page is free at start and sweeps the reported
	 * bits): leave the device alone there. */
	if (bi->workload == RF_WL_SELFTEST)
		return;
	for (uint32_t i = 0; i < bi->nr_devices && i < RF_BOOTINFO_MAX_DEVICES; i++)
		if (bi->devices[i].kind == RF_DEV_VIRTIO_MMIO && bi->devices[i].device_id == 5)
			bl.base = bi->devices[i].base;
	if (!bl.base)
		return;
	if (vmmio_negotiate(bl.base, 5, WANTED, &offered, &bl.features)) {
		console_printf("balloon: device at 0x%lx refused the features", bl.base);
		return;
	}
	if (vmmio_queue_setup(bl.base, (uint16_t)q++, &bl.inflate) ||
	    vmmio_queue_setup(bl.base, (uint16_t)q++, &bl.deflate) ||
	    ((bl.features & F_STATS_VQ) && vmmio_queue_setup(bl.base, (uint16_t)q++, &bl.stats)) ||
	    ((bl.features & F_REPORTING) &&
	     vmmio_queue_setup(bl.base, (uint16_t)q++, &bl.report))) {
		console_printf("balloon: queue setup failed");
		return;
	}
	bl.cap = bi->ram_bytes >> PAGE_SHIFT;
	list_pages = (bl.cap * 4 + PAGE_SIZE - 1) / PAGE_SIZE;
	bl.list = (uint32_t *)(uintptr_t)mm_alloc_contig(list_pages);
	bl.buf = (uint32_t *)(uintptr_t)mm_alloc_page();
	bl.st = (struct stat_entry *)(uintptr_t)mm_alloc_page();
	if (!bl.list || !bl.buf || !bl.st) {
		console_printf("balloon: no memory for the driver");
		return;
	}
	vmmio_driver_ok(bl.base);
	bl.up = true;
	console_printf("balloon: features offered 0x%lx accepted 0x%lx:%s%s%s%s%s, %d queues",
		       offered, bl.features, (bl.features & VIRTIO_F_VERSION_1) ? " VERSION_1" : "",
		       (bl.features & F_MUST_TELL_HOST) ? " MUST_TELL_HOST" : "",
		       (bl.features & F_STATS_VQ) ? " STATS_VQ" : "",
		       (bl.features & F_DEFLATE_ON_OOM) ? " DEFLATE_ON_OOM" : "",
		       (bl.features & F_REPORTING) ? " REPORTING" : "", q);
	if (bl.features & F_STATS_VQ) {
		fill_stats();
		send_stats();
	}
	bl.last_report_ns = time_ns();
	balloon_set_oom_hook();
	balloon_poll();
}

void balloon_poll(void)
{
	uint32_t target;

	if (!bl.up)
		return;
	if ((vmmio_status(bl.base) & 64) != 0)
		return; /* DEVICE_NEEDS_RESET: stop using it */
	if (bl.features & F_STATS_VQ) {
		while (gvq_get_used(&bl.stats, NULL) >= 0) {
			fill_stats();
			send_stats();
		}
	}
	target = target_pages();
	for (int i = 0; i < BUFS_PER_POLL && bl.n < target; i++)
		if (!inflate_once(target - bl.n))
			break;
	for (int i = 0; i < BUFS_PER_POLL && bl.n > target; i++)
		if (!deflate_once(bl.n - target))
			break;
	if (target != bl.logged_target && bl.n == target) {
		struct mm_stats ms;

		mm_get_stats(&ms);
		console_printf("balloon: actual %lu pages (%lu MiB), memory manager free %lu MiB",
			       bl.n, bl.n >> 8, ms.free_pages >> 8);
		bl.logged_target = target;
	}
	if ((bl.features & F_REPORTING) && time_ns() - bl.last_report_ns >= REPORT_DELAY_NS) {
		report_free_blocks();
		bl.last_report_ns = time_ns();
	}
}
