/* SPDX-License-Identifier: MIT */
/*
 * The guest's memory manager: which 4 KiB pages of guest RAM are in use and
 * which are free. Everything the guest does with memory goes through it, so
 * the balloon driver can take pages from it and give them back, and free
 * page reporting can find whole free 2 MiB blocks.
 *
 * What it keeps (all in guest RAM, carved from the start of the managed
 * range by mm_init):
 *   - a bitmap, one bit per page, 1 = allocated (or not managed: pages below
 *     the managed range and past its end inside the last block read as used);
 *   - per 2 MiB block (order 9, 512 pages, naturally aligned), the count of
 *     free pages, so a wholly free block is found without reading its bitmap;
 *   - per block, a "reported" bit: set by free page reporting once the host
 *     was told the block is free; cleared as soon as any page of the block
 *     is allocated again, so a block is reported again only after it was used.
 *
 * Invariants: blk_free[b] == number of 0 bits of block b; free_pages == sum
 * of blk_free. Single-threaded (one vCPU, no interrupts): no locking.
 *
 * Out of memory: an allocation that finds nothing calls the OOM hook (the
 * balloon driver's deflate-on-OOM), which may return pages to the manager;
 * the allocation is retried while the hook reports progress.
 */
#ifndef GUEST_MM_H
#define GUEST_MM_H

#include <stdbool.h>
#include <stdint.h>

#define MM_BLOCK_ORDER 9
#define MM_BLOCK_PAGES (1ul << MM_BLOCK_ORDER)
#define MM_BLOCK_SIZE  (MM_BLOCK_PAGES << 12)

/* Manage [@start, @end) (page-aligned guest-physical). Returns 0, or -1 if the
 * range cannot even hold the manager's own metadata. */
int mm_init(uint64_t start, uint64_t end);

/* One page: its gpa, or 0 when none is free even after the OOM hook. */
uint64_t mm_alloc_page(void);
void mm_free_page(uint64_t gpa);

/* @n physically contiguous pages (first fit): gpa or 0. */
uint64_t mm_alloc_contig(uint64_t n);
void mm_free_contig(uint64_t gpa, uint64_t n);

/* A wholly free, naturally aligned 2 MiB block, taken whole: gpa or 0.
 * Does not call the OOM hook. */
uint64_t mm_alloc_block(void);

bool mm_page_is_free(uint64_t gpa);

/*
 * Free page reporting: the next wholly free 2 MiB block at or after *@cursor
 * (a gpa; start at 0) that is not marked reported, or 0 when the end of RAM is
 * reached (*@cursor is then reset to 0 for the next sweep). The block stays
 * free: the caller may allocate it (mm_alloc_block) while reporting, or just
 * mark it with mm_mark_reported() after the host has acknowledged it.
 */
uint64_t mm_next_free_block(uint64_t *cursor);
void mm_mark_reported(uint64_t block_gpa);
bool mm_block_is_reported(uint64_t block_gpa);

/* Deflate-on-OOM: @fn returns how many pages it gave back to the manager. */
typedef uint64_t (*mm_oom_fn)(uint64_t pages_wanted, void *arg);
void mm_set_oom_hook(mm_oom_fn fn, void *arg);

struct mm_stats {
	uint64_t managed_pages; /* pages in the managed range, metadata included */
	uint64_t free_pages;
	uint64_t metadata_pages;
	uint64_t reported_blocks; /* blocks currently marked reported */
	uint64_t oom_calls;	  /* times the OOM hook was called */
	uint64_t failed_allocs;	  /* allocations that failed even after the hook */
};
void mm_get_stats(struct mm_stats *st);

#endif
