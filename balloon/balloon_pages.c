/* SPDX-License-Identifier: MIT */
/*
 * What the balloon's requests do to guest pages. The device (balloon.c) pops
 * a buffer from a queue and hands it here; this file checks it as a whole,
 * then moves the pages through the page-state table, always through the
 * core's discard path (page_ops.c, uffd.c), never with madvise of its own:
 *
 *   inflate    PRIVATE (or any state but BALLOONED) -> BALLOONED, by
 *              rf_vm_discard_as(), which first hands MERGED/SWAPPED pages back
 *              to their owning module and skips excluded pages.
 *   deflate    BALLOONED -> PRIVATE under the page lock: the pages are
 *              discarded again (rf_vm_discard_locked) on the way, so they
 *              fault in as fresh zero pages even if the guest wrote to them
 *              while they were in the balloon.
 *   reporting  any state but BALLOONED -> FREE_REPORTED, by rf_vm_discard_as():
 *              free memory the guest lends, still the guest's. Overlapping
 *              ranges of one report are merged first (each page once). A
 *              guest that takes reported memory back within seconds gets
 *              its reports kept, nothing discarded (report_reuse.c).
 *   reset      BALLOONED -> PRIVATE under the page lock, nothing discarded:
 *              after a reset the guest owns all its RAM again. Only the
 *              chunks inflate marked (balloon_map.c) are looked at.
 *
 * A PFN list (inflate, deflate) is copied out of the guest's buffer once,
 * validated as a whole (a buffer with one PFN outside guest RAM is dropped
 * with no page touched), then sorted into runs (pfn_runs.c) so that each run
 * costs one discard and its pages are locked in ascending address order.
 *
 * Only this device makes pages BALLOONED, and it holds b->lock while it
 * does: so a BALLOONED state read without the page lock, under b->lock, is
 * stable (inflate and reporting skip ballooned pages on such a read).
 * Deflate and reset lock each page and re-check that it is BALLOONED.
 *
 * Locks: called with b->lock held; the regions lock is taken here for
 * reading, and page locks inside it in address order; rf_vm_discard_as() takes
 * the regions lock itself, so it is called without it.
 */
#include <endian.h>
#include <string.h>

#include "balloon_internal.h"

/* ---- PFN lists -------------------------------------------------------------- */

/*
 * Copy the PFN array out of the guest's buffer (it may change under us) and
 * check its shape. Returns the number of PFNs, or 0 if the buffer is dropped.
 */
static size_t gather_pfns(struct rf_balloon *b, const char *qn)
{
	struct rf_virtq_chain *c = &b->chain;
	size_t n, off = 0;

	if (c->total_len == 0 || c->total_len % 4) {
		BAD(b, buf_len_invalid,
		    "%s: balloon: %s: buffer of %llu bytes is not whole PFNs, dropped", b->vm->name,
		    qn, (unsigned long long)c->total_len);
		return 0;
	}
	n = c->total_len / 4;
	if (n > b->cfg.max_pfns_per_buffer) {
		BAD(b, buf_too_many_pfns,
		    "%s: balloon: %s: %zu PFNs in one buffer (at most %u), dropped", b->vm->name,
		    qn, n, b->cfg.max_pfns_per_buffer);
		return 0;
	}
	for (unsigned int i = 0; i < c->nseg; i++) {
		memcpy((uint8_t *)b->pfns + off, c->seg[i].hva, c->seg[i].len);
		off += c->seg[i].len;
	}
	for (size_t i = 0; i < n; i++)
		b->pfns[i] = le32toh(b->pfns[i]);
	return n;
}

/* Every PFN inside guest RAM? Called with the regions lock held. */
static bool __pfns_valid(struct rf_balloon *b, size_t n, const char *qn)
{
	for (size_t i = 0; i < n; i++) {
		/* Widen before shifting: PFN 0x80000000 is gpa 0x80000000000,
		 * not a negative number. */
		uint64_t gpa = (uint64_t)b->pfns[i] << RF_PAGE_SHIFT;

		if (!__rf_vm_find_region(b->vm, gpa)) {
			BAD(b, pfn_invalid,
			    "%s: balloon: %s: PFN 0x%x beyond guest RAM (0x%llx pages) or in a "
			    "hole, buffer dropped",
			    b->vm->name, qn, b->pfns[i],
			    (unsigned long long)(b->vm->mapped_bytes >> RF_PAGE_SHIFT));
			return false;
		}
	}
	return true;
}

/*
 * The first steps of an inflate or deflate request: copy the PFN list out of
 * the buffer, check it as a whole, and sort it into runs in b->runs (their
 * number in *@nruns, repeated PFNs in *@dups). Returns true with the regions
 * lock held for reading, or false (the buffer dropped, counted) without it.
 */
static bool read_pfn_runs(struct rf_balloon *b, const char *qn, size_t *nruns, size_t *dups)
{
	size_t n = gather_pfns(b, qn);

	if (!n)
		return false;
	rf_vm_regions_rdlock(b->vm);
	if (!__pfns_valid(b, n, qn)) {
		rf_vm_regions_unlock(b->vm);
		return false;
	}
	*nruns = rf_pfn_runs(b->pfns, n, b->runs, dups);
	return true;
}

/* ---- inflate ------------------------------------------------------------------ */

/*
 * Split the @nruns runs in b->runs at region ends and around pages already
 * ballooned (a second inflate of a page must not count it twice) into
 * b->sub; the pages already ballooned are added to *@already. Returns the
 * number of sub-runs. The state is read without the page lock: only this
 * device makes pages BALLOONED, and it holds b->lock. Called with the
 * regions lock held.
 */
static size_t __split_unballooned(struct rf_balloon *b, size_t nruns, uint64_t *already)
{
	struct rf_region *last_r = NULL;
	size_t nsub = 0;

	for (size_t i = 0; i < nruns; i++) {
		for (uint64_t p = b->runs[i].pfn; p < b->runs[i].pfn + b->runs[i].npages; p++) {
			uint64_t gpa = p << RF_PAGE_SHIFT;
			struct rf_region *r = __rf_vm_find_region(b->vm, gpa);
			uint64_t idx = rf_region_index(r, gpa);

			if (rf_pte_state(rf_pte_peek(&r->pte[idx])) == RF_PAGE_BALLOONED) {
				(*already)++;
				continue;
			}
			if (nsub && r == last_r &&
			    b->sub[nsub - 1].pfn + b->sub[nsub - 1].npages == p)
				b->sub[nsub - 1].npages++;
			else
				b->sub[nsub++] = (struct rf_pfn_run){p, 1};
			last_r = r;
		}
	}
	return nsub;
}

/* Discard each of the @nsub runs in b->sub into the balloon, one call each. */
static void discard_into_balloon(struct rf_balloon *b, size_t nsub)
{
	for (size_t i = 0; i < nsub; i++) {
		uint64_t skipped = 0;
		int err = rf_vm_discard_as(b->vm, b->sub[i].pfn << RF_PAGE_SHIFT, b->sub[i].npages,
					   RF_PAGE_BALLOONED, &skipped);

		if (err) {
			rf_log(b->e, RF_LOG_ERR,
			       "%s: balloon: inflateq: discard of %llu pages at PFN 0x%llx: %s",
			       b->vm->name, (unsigned long long)b->sub[i].npages,
			       (unsigned long long)b->sub[i].pfn, strerror(-err));
			continue;
		}
		b->ctr.inflated_pages += b->sub[i].npages - skipped;
		b->ctr.excluded_pages += skipped;
	}
}

void balloon_inflate_buffer(struct rf_balloon *b)
{
	size_t nruns, nsub, dups;
	uint64_t already = 0;

	if (!read_pfn_runs(b, "inflateq", &nruns, &dups))
		return;
	nsub = __split_unballooned(b, nruns, &already);
	/* Before the discard, so the marks cover every page it balloons. */
	__balloon_map_mark(b, b->sub, nsub);
	rf_vm_regions_unlock(b->vm);
	if (dups + already)
		BAD(b, inflate_already_ballooned,
		    "%s: balloon: inflateq: %llu PFNs inflated twice, counted once", b->vm->name,
		    (unsigned long long)(dups + already));
	if (dups + already > 1)
		b->ctr.inflate_already_ballooned += dups + already - 1;
	discard_into_balloon(b, nsub);
	b->ctr.inflate_buffers++;
}

/* ---- deflate ------------------------------------------------------------------ */

/* Discard and unlock pages [first, first+n) of @r, locked BALLOONED, as PRIVATE. */
static void release_run(struct rf_balloon *b, struct rf_region *r, uint64_t first, uint64_t n,
			const uint64_t *old)
{
	/* They were discarded when inflated; again now, so a page the guest
	 * wrote while it was in the balloon still comes back as zero. A
	 * BALLOONED page is always anonymous (discard released any store
	 * mapping first), so DONTNEED yields the zero page, not old data.
	 * Through the core like every discard of guest RAM: its REMOVE event
	 * is handled before the pages are unlocked. A late one, handled after
	 * the guest had written a page and the swap pager had swapped it out,
	 * wiped that page (the stress test's lost writes, issue 12). */
	int err = rf_vm_discard_locked(b->vm, rf_region_page(r, first), n << RF_PAGE_SHIFT);

	if (err)
		rf_log(b->e, RF_LOG_ERR, "%s: balloon: deflateq: madvise at gpa 0x%llx: %s",
		       b->vm->name, (unsigned long long)(r->gpa + (first << RF_PAGE_SHIFT)),
		       strerror(-err));
	for (uint64_t i = 0; i < n; i++)
		rf_pte_unlock(b->vm, &r->pte[first + i], old[i],
			      rf_pte_with_payload(rf_pte_with_state(old[i], RF_PAGE_PRIVATE), 0));
	b->ctr.deflated_pages += n;
}

void balloon_deflate_buffer(struct rf_balloon *b)
{
	/* b->sub as scratch: room for every PFN of one buffer, and more. */
	uint64_t not_ballooned = 0, *old = (uint64_t *)b->sub;
	struct rf_region *run_r = NULL;
	uint64_t run_first = 0, run_n = 0;
	size_t nruns, dups;

	if (!read_pfn_runs(b, "deflateq", &nruns, &dups))
		return;
	not_ballooned = dups;
	/* Pages are locked in ascending address order (the PFNs are sorted),
	 * one run at a time, as page_ops.c does. */
	for (size_t i = 0; i < nruns; i++) {
		for (uint64_t p = b->runs[i].pfn; p < b->runs[i].pfn + b->runs[i].npages; p++) {
			uint64_t gpa = p << RF_PAGE_SHIFT;
			struct rf_region *r = __rf_vm_find_region(b->vm, gpa);
			uint64_t idx = rf_region_index(r, gpa);
			uint64_t v = rf_pte_lock(&r->pte[idx]);

			if (rf_pte_state(v) != RF_PAGE_BALLOONED) {
				rf_pte_unlock(b->vm, &r->pte[idx], v, v);
				not_ballooned++;
				continue;
			}
			if (run_n && (r != run_r || idx != run_first + run_n)) {
				release_run(b, run_r, run_first, run_n, old);
				run_n = 0;
			}
			if (!run_n) {
				run_r = r;
				run_first = idx;
			}
			old[run_n++] = v;
		}
	}
	if (run_n)
		release_run(b, run_r, run_first, run_n, old);
	rf_vm_regions_unlock(b->vm);
	if (not_ballooned) {
		BAD(b, deflate_not_ballooned,
		    "%s: balloon: deflateq: %llu PFNs were not in the balloon, left alone",
		    b->vm->name, (unsigned long long)not_ballooned);
		b->ctr.deflate_not_ballooned += not_ballooned - 1;
	}
	b->ctr.deflate_buffers++;
}

/* ---- free page reporting ------------------------------------------------------- */

/* Is the chain a report the device takes: at most max_report_bytes, every
 * range whole pages? Counts and logs the first reason it is not. */
static bool report_valid(struct rf_balloon *b)
{
	struct rf_virtq_chain *c = &b->chain;

	if (c->total_len > b->cfg.max_report_bytes) {
		BAD(b, report_too_long,
		    "%s: balloon: reporting_vq: %llu bytes in one buffer (at most %llu), dropped",
		    b->vm->name, (unsigned long long)c->total_len,
		    (unsigned long long)b->cfg.max_report_bytes);
		return false;
	}
	for (unsigned int i = 0; i < c->nseg; i++) {
		if ((c->seg[i].gpa | c->seg[i].len) & (RF_PAGE_SIZE - 1) || c->seg[i].len == 0) {
			BAD(b, report_range_invalid,
			    "%s: balloon: reporting_vq: range gpa 0x%llx len 0x%x not whole pages, "
			    "buffer dropped",
			    b->vm->name, (unsigned long long)c->seg[i].gpa, c->seg[i].len);
			return false;
		}
	}
	return true;
}

/*
 * Discard the pages [@p, @end) of one reported range as FREE_REPORTED. The
 * range lies inside one region (the virtqueue translated each segment whole).
 */
static void report_range(struct rf_balloon *b, uint64_t p, uint64_t end)
{
	while (p < end) {
		size_t nsub = 0;
		struct rf_region *r;

		/* Skip ballooned pages: they are the host's, and making
		 * them FREE_REPORTED would hand them back to the guest.
		 * Only this device makes pages BALLOONED (under b->lock),
		 * so the unlocked read is stable. Sub-runs are collected
		 * in batches, then discarded without the regions lock
		 * (rf_vm_discard_as takes it itself). */
		rf_vm_regions_rdlock(b->vm);
		r = __rf_vm_find_region(b->vm, p << RF_PAGE_SHIFT);
		for (; r && p < end; p++) {
			uint64_t idx = rf_region_index(r, p << RF_PAGE_SHIFT);

			if (rf_pte_state(rf_pte_peek(&r->pte[idx])) == RF_PAGE_BALLOONED)
				continue;
			if (nsub && b->sub[nsub - 1].pfn + b->sub[nsub - 1].npages == p) {
				b->sub[nsub - 1].npages++;
				continue;
			}
			if (nsub == b->cfg.max_pfns_per_buffer)
				break;
			b->sub[nsub++] = (struct rf_pfn_run){p, 1};
		}
		rf_vm_regions_unlock(b->vm);
		if (!r)
			return; /* the region went away: cannot happen while mapped */
		for (size_t k = 0; k < nsub; k++) {
			uint64_t skipped = 0;

			if (rf_vm_discard_as(b->vm, b->sub[k].pfn << RF_PAGE_SHIFT,
					     b->sub[k].npages, RF_PAGE_FREE_REPORTED,
					     &skipped) == 0) {
				b->ctr.reported_pages += b->sub[k].npages - skipped;
				b->ctr.excluded_pages += skipped;
			}
		}
	}
}

void balloon_report_buffer(struct rf_balloon *b)
{
	struct rf_virtq_chain *c = &b->chain;
	uint64_t pages = 0;
	size_t n;

	if (!report_valid(b))
		return;
	b->ctr.report_buffers++;
	/* Ranges may overlap (a guest may name a page twice): each page is
	 * discarded and counted once per report. The union of two ranges
	 * that overlap lies in the region both lie in. */
	for (unsigned int i = 0; i < c->nseg; i++)
		b->report[i] = (struct rf_pfn_run){c->seg[i].gpa >> RF_PAGE_SHIFT,
						   c->seg[i].len >> RF_PAGE_SHIFT};
	n = rf_pfn_runs_union(b->report, c->nseg, NULL);
	for (size_t i = 0; i < n; i++)
		pages += b->report[i].npages;
	if (rf_virtio_negotiated(&b->dev, RF_BALLOON_F_PAGE_POISON) && b->poison_val != 0) {
		/* The guest expects free pages to hold its poison pattern; a
		 * discarded page would read as zero. Keep them. */
		b->ctr.report_poison_kept += pages;
		return;
	}
	/* A guest that takes its reported memory back within seconds gets
	 * its reports kept: nothing discarded (report_reuse.c). */
	if (report_reuse_judge(b, b->report, n, pages))
		return;
	for (size_t i = 0; i < n; i++)
		report_range(b, b->report[i].pfn, b->report[i].pfn + b->report[i].npages);
	report_reuse_stamp(b, b->report, n);
}

/* ---- reset -------------------------------------------------------------------- */

/* Pages [first, end) of @r that are BALLOONED become PRIVATE. Regions lock
 * held. */
static void unballoon_range(struct rf_balloon *b, struct rf_region *r, uint64_t first, uint64_t end,
			    void *arg)
{
	(void)arg;
	for (uint64_t idx = first; idx < end; idx++) {
		uint64_t v;

		if (rf_pte_state(rf_pte_peek(&r->pte[idx])) != RF_PAGE_BALLOONED)
			continue;
		v = rf_pte_lock(&r->pte[idx]);
		rf_pte_unlock(b->vm, &r->pte[idx], v,
			      rf_pte_state(v) == RF_PAGE_BALLOONED
				  ? rf_pte_with_state(v, RF_PAGE_PRIVATE)
				  : v);
	}
	b->reset_pages_scanned += end - first;
}

/*
 * After a guest reset the guest owns all its RAM again: pages left in the
 * balloon go back to PRIVATE. They were discarded when inflated and are not
 * discarded again here (deflate does that): one the guest wrote to while it
 * was in the balloon keeps what it wrote.
 *
 * Only the chunks balloon_map.c marked are looked at, so the cost follows
 * what was inflated since the last reset, not the size of guest RAM. If
 * BALLOONED pages are left after them (a mark that could not be recorded,
 * or pages some other path ballooned), all of guest RAM is walked, as the
 * VM's per-state count tells.
 */
void balloon_unballoon_all(struct rf_balloon *b)
{
	struct rf_region *r;

	if (atomic_load(&b->vm->state_pages[RF_PAGE_BALLOONED]) == 0) {
		balloon_map_clear(b);
		return;
	}
	rf_vm_regions_rdlock(b->vm);
	__balloon_map_walk(b, unballoon_range, NULL);
	if (atomic_load(&b->vm->state_pages[RF_PAGE_BALLOONED]) != 0)
		for (unsigned int i = 0; (r = __rf_vm_region(b->vm, i)); i++)
			unballoon_range(b, r, 0, r->npages, NULL);
	rf_vm_regions_unlock(b->vm);
	balloon_map_clear(b);
}
