/* SPDX-License-Identifier: MIT */
/*
 * Where the balloon's pages may be: one bit per 2 MiB chunk of each region
 * of guest RAM, set when an inflate request makes a page of that chunk
 * BALLOONED, cleared all at once by a guest reset. A reset then looks at
 * the page states of the marked chunks only (balloon_unballoon_all), so it
 * costs what was put in the balloon, not the size of the guest: walking
 * every page of a 64 GiB guest under the device lock took 17 ms on average
 * per reset write.
 *
 * The marks are a superset, never a subset, of the chunks that hold
 * BALLOONED pages from this device: a page is marked before it is
 * discarded into the balloon, deflate leaves the marks alone, and a mark
 * that cannot be recorded (no memory) only means that the reset finds
 * ballooned pages left after the marked chunks and walks all of guest RAM,
 * as it did before. The same fallback covers pages some other path made
 * BALLOONED.
 *
 * Regions come and go (hotplug), so a region's bits are kept with its gpa
 * and size, and a slot whose region is gone (nothing with that gpa and
 * size is mapped now) is reused. The same slot holds free page reporting's
 * per-chunk stamps (report_reuse.c), so the two share one lookup. The
 * bitmaps are small: 4 KiB for a 64 GiB region. Used under b->lock; the
 * calls named __ need the regions lock.
 */
#include <string.h>

#include "balloon_internal.h"

static uint64_t map_words(uint64_t npages)
{
	uint64_t chunks = (npages + BALLOON_CHUNK_PAGES - 1) / BALLOON_CHUNK_PAGES;

	return (chunks + 63) / 64;
}

/* Is the region @m describes still mapped, as it was? Regions lock held. */
static bool __map_region_live(struct rf_balloon *b, const struct balloon_map_region *m)
{
	struct rf_region *r = __rf_vm_find_region(b->vm, m->gpa);

	return r && r->gpa == m->gpa && r->npages == m->npages;
}

struct balloon_map_region *__balloon_map_slot(struct rf_balloon *b, const struct rf_region *r,
					      bool make)
{
	struct balloon_map_region *m;
	unsigned int i;

	for (i = 0; i < RF_MAX_REGIONS; i++) {
		m = &b->map[i];
		if ((m->bits || m->stamp) && m->gpa == r->gpa && m->npages == r->npages)
			return m;
	}
	if (!make)
		return NULL;
	/* At most RF_MAX_REGIONS regions are mapped, so while @r is one of
	 * them, some slot is free or describes a region that is gone. */
	for (i = 0; i < RF_MAX_REGIONS; i++) {
		m = &b->map[i];
		if ((!m->bits && !m->stamp) || !__map_region_live(b, m))
			break;
	}
	if (i == RF_MAX_REGIONS)
		return NULL;
	rf_free(b->e, m->bits);
	rf_free(b->e, m->stamp);
	m->bits = NULL;
	m->stamp = NULL;
	m->gpa = r->gpa;
	m->npages = r->npages;
	return m;
}

void __balloon_map_mark(struct rf_balloon *b, const struct rf_pfn_run *runs, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		uint64_t gpa = runs[i].pfn << RF_PAGE_SHIFT;
		struct rf_region *r = __rf_vm_find_region(b->vm, gpa);
		struct balloon_map_region *m = r ? __balloon_map_slot(b, r, true) : NULL;
		uint64_t first, last;

		if (m && !m->bits)
			m->bits = rf_zalloc(b->e, map_words(m->npages) * sizeof(*m->bits));

		if (!m || !m->bits)
			continue; /* the reset's fallback walk finds these pages */
		first = rf_region_index(r, gpa) / BALLOON_CHUNK_PAGES;
		last = (rf_region_index(r, gpa) + runs[i].npages - 1) / BALLOON_CHUNK_PAGES;
		for (uint64_t c = first; c <= last; c++)
			m->bits[c / 64] |= 1ull << (c % 64);
	}
}

void __balloon_map_walk(struct rf_balloon *b, balloon_chunk_fn *fn, void *arg)
{
	struct rf_region *r;

	/* Region by region in gpa order, chunks ascending: a save writes its
	 * runs in the order found. */
	for (unsigned int i = 0; (r = __rf_vm_region(b->vm, i)); i++) {
		const struct balloon_map_region *m = __balloon_map_slot(b, r, false);

		for (uint64_t w = 0; m && m->bits && w < map_words(m->npages); w++) {
			for (uint64_t bits = m->bits[w]; bits; bits &= bits - 1) {
				uint64_t c = w * 64 + (uint64_t)__builtin_ctzll(bits);
				uint64_t first = c * BALLOON_CHUNK_PAGES;
				uint64_t end = first + BALLOON_CHUNK_PAGES;

				fn(b, r, first, end < r->npages ? end : r->npages, arg);
			}
		}
	}
}

void balloon_map_clear(struct rf_balloon *b)
{
	for (unsigned int i = 0; i < RF_MAX_REGIONS; i++)
		if (b->map[i].bits)
			memset(b->map[i].bits, 0, map_words(b->map[i].npages) * sizeof(uint64_t));
}

void balloon_map_free(struct rf_balloon *b)
{
	for (unsigned int i = 0; i < RF_MAX_REGIONS; i++) {
		rf_free(b->e, b->map[i].bits);
		rf_free(b->e, b->map[i].stamp);
		b->map[i].bits = NULL;
		b->map[i].stamp = NULL;
	}
}
