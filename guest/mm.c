/* SPDX-License-Identifier: MIT */
/* The guest memory manager; the design and invariants are in mm.h. */
#include "mm.h"
#include "lib.h"

static struct {
	uint64_t first_pfn; /* first pfn covered by the bitmap (block-aligned) */
	uint64_t nblocks;
	uint64_t *used;	    /* bitmap, nblocks * 8 words */
	uint16_t *blk_free; /* free pages per block */
	uint64_t *reported; /* bit per block */
	uint64_t hint;	    /* block to try first */
	uint64_t free_pages, managed_pages, metadata_pages, reported_blocks;
	uint64_t oom_calls, failed_allocs;
	mm_oom_fn oom;
	void *oom_arg;
} mm;

#define WORDS_PER_BLOCK (MM_BLOCK_PAGES / 64)

static inline bool bit_test(const uint64_t *map, uint64_t i)
{
	return map[i / 64] >> (i % 64) & 1;
}

static inline void bit_set(uint64_t *map, uint64_t i)
{
	map[i / 64] |= 1ull << (i % 64);
}

static inline void bit_clear(uint64_t *map, uint64_t i)
{
	map[i / 64] &= ~(1ull << (i % 64));
}

static bool managed(uint64_t gpa)
{
	uint64_t pfn = gpa >> PAGE_SHIFT;

	return pfn >= mm.first_pfn && pfn < mm.first_pfn + mm.nblocks * MM_BLOCK_PAGES;
}

/* Mark page @i (bitmap index) used; it must be free. */
static void take(uint64_t i)
{
	uint64_t b = i / MM_BLOCK_PAGES;

	bit_set(mm.used, i);
	mm.blk_free[b]--;
	mm.free_pages--;
	if (bit_test(mm.reported, b)) {
		bit_clear(mm.reported, b);
		mm.reported_blocks--;
	}
}

static void give(uint64_t i)
{
	bit_clear(mm.used, i);
	mm.blk_free[i / MM_BLOCK_PAGES]++;
	mm.free_pages++;
}

int mm_init(uint64_t start, uint64_t end)
{
	uint64_t spfn = (start + PAGE_SIZE - 1) >> PAGE_SHIFT, epfn = end >> PAGE_SHIFT;
	uint64_t words, meta_bytes, meta_pages;

	memset(&mm, 0, sizeof(mm));
	if (epfn <= spfn)
		return -1;
	mm.first_pfn = spfn & ~(MM_BLOCK_PAGES - 1);
	mm.nblocks = (epfn - mm.first_pfn + MM_BLOCK_PAGES - 1) / MM_BLOCK_PAGES;
	words = mm.nblocks * WORDS_PER_BLOCK;
	meta_bytes = words * 8 + mm.nblocks * 2 + (mm.nblocks + 63) / 64 * 8;
	meta_pages = (meta_bytes + PAGE_SIZE - 1) >> PAGE_SHIFT;
	if (spfn + meta_pages >= epfn)
		return -1;
	mm.used = (uint64_t *)(uintptr_t)(spfn << PAGE_SHIFT);
	mm.reported = mm.used + words;
	mm.blk_free = (uint16_t *)(mm.reported + (mm.nblocks + 63) / 64);
	memset(mm.used, 0xff, words * 8);
	memset(mm.reported, 0, (mm.nblocks + 63) / 64 * 8);
	for (uint64_t b = 0; b < mm.nblocks; b++)
		mm.blk_free[b] = 0;
	mm.managed_pages = epfn - spfn;
	mm.metadata_pages = meta_pages;
	for (uint64_t pfn = spfn + meta_pages; pfn < epfn; pfn++)
		give(pfn - mm.first_pfn);
	return 0;
}

static uint64_t alloc_page_nohook(void)
{
	for (uint64_t n = 0; n < mm.nblocks; n++) {
		uint64_t b = (mm.hint + n) % mm.nblocks;

		if (!mm.blk_free[b])
			continue;
		for (uint64_t w = b * WORDS_PER_BLOCK; w < (b + 1) * WORDS_PER_BLOCK; w++) {
			if (mm.used[w] == ~0ull)
				continue;
			uint64_t i = w * 64 + (uint64_t)__builtin_ctzll(~mm.used[w]);

			take(i);
			mm.hint = b;
			return (mm.first_pfn + i) << PAGE_SHIFT;
		}
	}
	return 0;
}

uint64_t mm_alloc_page(void)
{
	for (;;) {
		uint64_t gpa = alloc_page_nohook();

		if (gpa)
			return gpa;
		if (!mm.oom) {
			mm.failed_allocs++;
			return 0;
		}
		mm.oom_calls++;
		if (mm.oom(1, mm.oom_arg) == 0) {
			mm.failed_allocs++;
			return 0;
		}
	}
}

void mm_free_page(uint64_t gpa)
{
	uint64_t i;

	if (!managed(gpa))
		return;
	i = (gpa >> PAGE_SHIFT) - mm.first_pfn;
	if (bit_test(mm.used, i))
		give(i);
}

static uint64_t find_contig(uint64_t n)
{
	uint64_t total = mm.nblocks * MM_BLOCK_PAGES, run = 0;

	for (uint64_t i = 0; i < total; i++) {
		if ((i % 64) == 0 && mm.used[i / 64] == ~0ull) {
			run = 0;
			i += 63;
			continue;
		}
		if (bit_test(mm.used, i)) {
			run = 0;
			continue;
		}
		if (++run == n)
			return i + 1 - n + 1; /* +1: 0 means "none" */
	}
	return 0;
}

uint64_t mm_alloc_contig(uint64_t n)
{
	uint64_t first;

	if (!n)
		return 0;
	for (;;) {
		first = find_contig(n);
		if (first)
			break;
		if (!mm.oom) {
			mm.failed_allocs++;
			return 0;
		}
		mm.oom_calls++;
		if (mm.oom(n, mm.oom_arg) == 0) {
			mm.failed_allocs++;
			return 0;
		}
	}
	first--;
	for (uint64_t i = first; i < first + n; i++)
		take(i);
	return (mm.first_pfn + first) << PAGE_SHIFT;
}

void mm_free_contig(uint64_t gpa, uint64_t n)
{
	for (uint64_t k = 0; k < n; k++)
		mm_free_page(gpa + (k << PAGE_SHIFT));
}

uint64_t mm_alloc_block(void)
{
	for (uint64_t b = 0; b < mm.nblocks; b++) {
		if (mm.blk_free[b] != MM_BLOCK_PAGES)
			continue;
		for (uint64_t i = b * MM_BLOCK_PAGES; i < (b + 1) * MM_BLOCK_PAGES; i++)
			take(i);
		return (mm.first_pfn + b * MM_BLOCK_PAGES) << PAGE_SHIFT;
	}
	return 0;
}

bool mm_page_is_free(uint64_t gpa)
{
	return managed(gpa) && !bit_test(mm.used, (gpa >> PAGE_SHIFT) - mm.first_pfn);
}

uint64_t mm_next_free_block(uint64_t *cursor)
{
	uint64_t b = 0;

	if (*cursor > (mm.first_pfn << PAGE_SHIFT))
		b = ((*cursor >> PAGE_SHIFT) - mm.first_pfn + MM_BLOCK_PAGES - 1) / MM_BLOCK_PAGES;
	for (; b < mm.nblocks; b++) {
		if (mm.blk_free[b] == MM_BLOCK_PAGES && !bit_test(mm.reported, b)) {
			uint64_t gpa = (mm.first_pfn + b * MM_BLOCK_PAGES) << PAGE_SHIFT;

			*cursor = gpa + MM_BLOCK_SIZE;
			return gpa;
		}
	}
	*cursor = 0;
	return 0;
}

static bool block_index(uint64_t gpa, uint64_t *b)
{
	if (!managed(gpa) || (gpa & (MM_BLOCK_SIZE - 1)))
		return false;
	*b = ((gpa >> PAGE_SHIFT) - mm.first_pfn) / MM_BLOCK_PAGES;
	return true;
}

void mm_mark_reported(uint64_t block_gpa)
{
	uint64_t b;

	/* Only a block that is still wholly free may carry the mark. */
	if (!block_index(block_gpa, &b) || mm.blk_free[b] != MM_BLOCK_PAGES ||
	    bit_test(mm.reported, b))
		return;
	bit_set(mm.reported, b);
	mm.reported_blocks++;
}

bool mm_block_is_reported(uint64_t block_gpa)
{
	uint64_t b;

	return block_index(block_gpa, &b) && bit_test(mm.reported, b);
}

void mm_set_oom_hook(mm_oom_fn fn, void *arg)
{
	mm.oom = fn;
	mm.oom_arg = arg;
}

void mm_get_stats(struct mm_stats *st)
{
	st->managed_pages = mm.managed_pages;
	st->free_pages = mm.free_pages;
	st->metadata_pages = mm.metadata_pages;
	st->reported_blocks = mm.reported_blocks;
	st->oom_calls = mm.oom_calls;
	st->failed_allocs = mm.failed_allocs;
}
