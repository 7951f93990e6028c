/* SPDX-License-Identifier: MIT */
/*
 * Free page reporting that notices a guest taking back what it reported.
 *
 * A reported range is discarded (balloon_pages.c): the host has the memory
 * back until the guest allocates those pages again, when each one faults in
 * as a fresh zero page. For a guest that frees and reallocates the same
 * memory every few seconds (a build, a batch job, the demo's churn
 * workload) that is a poor trade: the memory comes back within seconds,
 * and every page of it costs a fault and a clear, which under nested or PVM
 * virtualisation is tens of microseconds a page (a 256 MiB wave of the
 * churn guest took 10-12 s instead of 0.7 s in the density search,
 * docs/overcommit.md). The kernel's own stack leaves such pages resident.
 *
 * So each 2 MiB chunk of guest RAM that a report discarded keeps the
 * second it was discarded (one byte: the second modulo 255, plus one; 0 is
 * "never"). When a later report names pages of a chunk discarded at most
 * report_reuse_ms ago, those pages are "rechecked", and the ones resident
 * again (pagemap) were taken back by the guest within the window: "reused".
 * Both counts halve whenever the rechecked pages pass EVIDENCE_MAX, so the
 * verdict follows the latest 128-256 MiB of evidence, however old (a guest
 * whose reports are kept only gives evidence through its probes, below).
 * While reused pages are at least
 * half of the rechecked ones, and at least a chunk's worth was rechecked,
 * the device keeps reports: it returns them to the guest with nothing
 * discarded, the pages stay as they are, and the chunks whose pages were
 * back in use forget their stamps (a kept page stays resident whether or
 * not the guest uses it again, so it tells nothing more). One report in
 * KEEP_PROBE is still discarded while keeping, as a probe: a guest that
 * stops taking its memory back reports the probed pages again untouched,
 * the counts fall under half, and discarding resumes.
 *
 * None of this is needed for correctness. A kept report is a hint not
 * taken, which the virtio spec allows; a wrong guess costs a refault
 * (discarded, then reused) or resident free memory (kept), which the
 * balloon can still take (the policy inflates a guest that reports free
 * memory). A guest gains nothing it does not own by gaming it. Stamps
 * alias after 255 s, so a chunk discarded 300 s ago looks 45 s old: the
 * window is at most 120 s, and at worst one report is judged on stale
 * evidence.
 *
 * Memory: one byte per 2 MiB chunk of each region (512 bytes per GiB), kept
 * in balloon_map.c's per-region slot beside the ballooned-chunk bits, made at
 * the first report that needs it; a region that went away (hotplug) frees
 * its slot to the next. Used under b->lock; the regions lock is taken
 * for reading here.
 */
#include <string.h>

#include "balloon_internal.h"
#include "compat_linux.h"

#define KEEP_PROBE 16 /* one report in this many is discarded while keeping */
/* Pages of evidence kept: past this both counts halve (256 MiB). */
#define EVIDENCE_MAX (64u * 1024)

static uint8_t stamp_now(uint64_t now_ns)
{
	return (uint8_t)((now_ns / 1000000000ull) % 255 + 1);
}

/* Seconds since @s was stamped, 0..254; meaningless for 0 (never). */
static unsigned int stamp_age(uint8_t now, uint8_t s)
{
	return (unsigned int)(now + 255 - s) % 255;
}

/* The stamps of region @r (balloon_map.c's slot), made if @make and need
 * be; NULL if none. Regions lock held. */
static uint8_t *region_stamps(struct rf_balloon *b, const struct rf_region *r, bool make)
{
	struct balloon_map_region *m = __balloon_map_slot(b, r, make);

	if (m && !m->stamp && make)
		m->stamp =
		    rf_zalloc(b->e, (m->npages + BALLOON_CHUNK_PAGES - 1) / BALLOON_CHUNK_PAGES);
	return m ? m->stamp : NULL;
}

/* Pages of [@idx, @idx + @n) of @r resident now (at most one chunk). */
static uint64_t resident_pages(struct rf_balloon *b, const struct rf_region *r, uint64_t idx,
			       uint64_t n)
{
	uint64_t cnt = 0;

	if (rf_pagemap_read(b->e, rf_region_page(r, idx), n, b->reuse.pm) != 0)
		return 0; /* no evidence: counts as not reused */
	for (uint64_t i = 0; i < n; i++)
		cnt += rf_pagemap_resident(b->e, b->reuse.pm[i]);
	return cnt;
}

/* Visit each chunk-sized piece of the @n runs: @fn(b, r, stamps, chunk,
 * first idx, pages). Regions lock held. */
typedef void piece_fn(struct rf_balloon *b, const struct rf_region *r, uint8_t *st, uint64_t chunk,
		      uint64_t idx, uint64_t n, void *arg);

static void for_each_piece(struct rf_balloon *b, const struct rf_pfn_run *runs, size_t nruns,
			   bool make, piece_fn *fn, void *arg)
{
	for (size_t i = 0; i < nruns; i++) {
		uint64_t p = runs[i].pfn, end = runs[i].pfn + runs[i].npages;

		while (p < end) {
			const struct rf_region *r = __rf_vm_find_region(b->vm, p << RF_PAGE_SHIFT);
			uint64_t idx, chunk, n;
			uint8_t *st;

			if (!r)
				break; /* validated before: cannot happen */
			idx = rf_region_index(r, p << RF_PAGE_SHIFT);
			chunk = idx / BALLOON_CHUNK_PAGES;
			n = (chunk + 1) * BALLOON_CHUNK_PAGES - idx;
			if (n > end - p)
				n = end - p;
			if (n > r->npages - idx)
				n = r->npages - idx;
			st = region_stamps(b, r, make);
			if (st)
				fn(b, r, st, chunk, idx, n, arg);
			p += n;
		}
	}
}

struct judge {
	uint8_t now;
	unsigned int window_s;
	uint64_t rechecked, reused;
};

/*
 * One piece of a report, before the verdict: if its chunk was discarded by a
 * report within the window, its pages are rechecked and the resident ones
 * counted as reused. Whatever the verdict, a resident page is the guest's
 * again: one still marked FREE_REPORTED (nothing noticed the write yet) is
 * PRIVATE, so that the ledger does not count it saved if the report is kept
 * (a discard makes it FREE_REPORTED again), and a chunk with pages back in
 * use forgets its stamp, since a kept page stays resident whether or not the
 * guest uses it again (a discard stamps it again, report_reuse_stamp). Pages
 * still out (reported twice, untouched between) keep the stamp: each report
 * of them says the guest is not taking them back. Only this device makes
 * pages FREE_REPORTED, under b->lock, so the pagemap reading taken before a
 * page's lock still holds for a page whose state is FREE_REPORTED under it.
 */
static void judge_piece(struct rf_balloon *b, const struct rf_region *r, uint8_t *st,
			uint64_t chunk, uint64_t idx, uint64_t n, void *arg)
{
	const uint64_t *pm = b->reuse.pm;
	struct judge *j = arg;
	uint64_t back;

	if (!st[chunk] || stamp_age(j->now, st[chunk]) > j->window_s)
		return;
	back = resident_pages(b, r, idx, n);
	j->rechecked += n;
	j->reused += back;
	if (!back)
		return;
	st[chunk] = 0;
	for (uint64_t i = 0; i < n; i++) {
		rf_pte_t *p = &r->pte[idx + i];
		uint64_t v;

		if (!rf_pagemap_resident(b->e, pm[i]) || (pm[i] & PM_FILE) ||
		    rf_pte_state(rf_pte_peek(p)) != RF_PAGE_FREE_REPORTED || !rf_pte_trylock(p, &v))
			continue;
		rf_pte_unlock(b->vm, p, v,
			      rf_pte_state(v) == RF_PAGE_FREE_REPORTED
				  ? rf_pte_with_state(v, RF_PAGE_PRIVATE)
				  : v);
	}
}

static void stamp_piece(struct rf_balloon *b, const struct rf_region *r, uint8_t *st,
			uint64_t chunk, uint64_t idx, uint64_t n, void *arg)
{
	(void)b;
	(void)r;
	(void)idx;
	(void)n;
	st[chunk] = *(const uint8_t *)arg;
}

bool report_reuse_judge(struct rf_balloon *b, const struct rf_pfn_run *runs, size_t n,
			uint64_t pages)
{
	struct report_reuse *u = &b->reuse;
	uint64_t now_ns = rf_now_ns();
	struct judge j = {stamp_now(now_ns), b->cfg.report_reuse_ms / 1000, 0, 0};
	bool keep, churning;

	if (!b->cfg.report_reuse_ms)
		return false;
	if (!u->pm) {
		u->pm = rf_zalloc(b->e, BALLOON_CHUNK_PAGES * sizeof(*u->pm));
		if (!u->pm)
			return false; /* no memory: discard, as without the window */
	}
	rf_vm_regions_rdlock(b->vm);
	for_each_piece(b, runs, n, false, judge_piece, &j);
	u->rechecked += j.rechecked;
	u->reused += j.reused;
	while (u->rechecked > EVIDENCE_MAX) {
		u->rechecked /= 2;
		u->reused /= 2;
	}
	b->ctr.report_reused_pages += j.reused;
	churning = u->rechecked >= BALLOON_CHUNK_PAGES && 2 * u->reused >= u->rechecked;
	keep = churning && ++u->kept_run % KEEP_PROBE != 0;
	if (!churning)
		u->kept_run = 0;
	rf_vm_regions_unlock(b->vm);
	if (keep)
		b->ctr.report_kept_pages += pages;
	if (churning != u->keeping) {
		/* Only the turns are logged: a guest reports every 2 s. */
		u->keeping = churning;
		rf_log(b->e, RF_LOG_INFO,
		       "%s: balloon: free page reporting: %s (%llu of %llu pages reported again "
		       "within %u ms were back in use)",
		       b->vm->name,
		       churning ? "reports kept, not discarded: the guest takes its reported "
				  "memory back"
				: "reports discarded again",
		       (unsigned long long)u->reused, (unsigned long long)u->rechecked,
		       b->cfg.report_reuse_ms);
	}
	return keep;
}

void report_reuse_stamp(struct rf_balloon *b, const struct rf_pfn_run *runs, size_t n)
{
	uint8_t now;

	if (!b->cfg.report_reuse_ms)
		return;
	now = stamp_now(rf_now_ns());
	rf_vm_regions_rdlock(b->vm);
	for_each_piece(b, runs, n, true, stamp_piece, &now);
	rf_vm_regions_unlock(b->vm);
}

void report_reuse_free(struct rf_balloon *b)
{
	/* The stamps go with balloon_map.c's slots (balloon_map_free). */
	rf_free(b->e, b->reuse.pm);
	memset(&b->reuse, 0, sizeof(b->reuse));
}
