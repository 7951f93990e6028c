/* SPDX-License-Identifier: MIT */
/*
 * selftest: checks the guest memory manager against its contract (mm.h) on
 * the real guest RAM, so the balloon driver and free page reporting can rely
 * on it: every page allocatable exactly once, counts restored after freeing,
 * wholly free 2 MiB blocks found and the reported mark cleared by
 * allocation, contiguous allocations, and the OOM hook giving pages back.
 * Each failed check prints a line; RESULT counts checks and failures.
 */
#include "lib.h"
#include "mm.h"
#include "pageset.h"
#include "workloads.h"

static uint64_t checks, failed;

#define CHECK(cond, fmt, ...)                                                                      \
	do {                                                                                       \
		checks++;                                                                          \
		if (!(cond)) {                                                                     \
			failed++;                                                                  \
			console_printf("selftest: FAILED line %d: " fmt, __LINE__, ##__VA_ARGS__); \
		}                                                                                  \
	} while (0)

/* A reserve the OOM hook hands back one page at a time. */
static uint64_t reserve[16], nreserve;

static uint64_t give_back(uint64_t wanted, void *arg)
{
	(void)wanted;
	(void)arg;
	if (!nreserve)
		return 0;
	mm_free_page(reserve[--nreserve]);
	return 1;
}

/* Wholly free blocks, counted page by page through mm_page_is_free(). */
static uint64_t count_free_blocks(const struct rf_bootinfo *bi)
{
	uint64_t n = 0;

	for (uint64_t b = 0; b + MM_BLOCK_SIZE <= bi->ram_bytes; b += MM_BLOCK_SIZE) {
		uint64_t k;

		for (k = 0; k < MM_BLOCK_PAGES && mm_page_is_free(b + k * PAGE_SIZE); k++)
			;
		n += k == MM_BLOCK_PAGES;
	}
	return n;
}

int wl_selftest(const struct rf_bootinfo *bi)
{
	struct mm_stats st0, st;
	uint64_t list, n = 0, blocks = 0, cursor = 0, b, first, c;

	mm_get_stats(&st0);
	CHECK(st0.free_pages == st0.managed_pages - st0.metadata_pages, "free %lu managed %lu",
	      st0.free_pages, st0.managed_pages);

	/* Every free page exactly once: tag each with its own address. */
	list = mm_alloc_contig((st0.free_pages * 8 + PAGE_SIZE - 1) / PAGE_SIZE);
	CHECK(list != 0, "no room for the page list");
	if (!list)
		goto out;
	for (uint64_t g; (g = mm_alloc_page());) {
		uint64_t *p = (uint64_t *)(uintptr_t)g;

		CHECK(!(g & (PAGE_SIZE - 1)) && g >= bi->free_start && g < bi->ram_bytes,
		      "page 0x%lx outside the managed range", g);
		CHECK(!mm_page_is_free(g), "allocated page 0x%lx reads as free", g);
		p[0] = g;
		((uint64_t *)(uintptr_t)list)[n++] = g;
	}
	mm_get_stats(&st);
	CHECK(st.free_pages == 0, "%lu pages free after allocating all", st.free_pages);
	CHECK(st.failed_allocs == st0.failed_allocs + 1, "failed allocation not counted");
	for (uint64_t i = 0; i < n; i++) {
		uint64_t g = ((uint64_t *)(uintptr_t)list)[i];

		CHECK(*(uint64_t *)(uintptr_t)g == g, "page 0x%lx handed out twice", g);
	}
	CHECK(mm_next_free_block(&cursor) == 0, "a free block while all is allocated");

	/* OOM hook: pages come back one at a time until the reserve is empty. */
	for (nreserve = 0; nreserve < 16; nreserve++)
		reserve[nreserve] = ((uint64_t *)(uintptr_t)list)[--n];
	mm_set_oom_hook(give_back, 0);
	for (int i = 0; i < 16; i++) {
		uint64_t g = mm_alloc_page();

		CHECK(g != 0, "OOM hook did not help allocation %d", i);
		((uint64_t *)(uintptr_t)list)[n++] = g;
	}
	CHECK(mm_alloc_page() == 0, "allocation succeeded with an empty reserve");
	mm_get_stats(&st);
	CHECK(st.oom_calls >= 17, "OOM hook called %lu times", st.oom_calls);
	mm_set_oom_hook(0, 0);

	for (uint64_t i = 0; i < n; i++)
		mm_free_page(((uint64_t *)(uintptr_t)list)[i]);
	mm_get_stats(&st);
	CHECK(st.free_pages ==
		  st0.free_pages - (list ? (st0.free_pages * 8 + PAGE_SIZE - 1) / PAGE_SIZE : 0),
	      "free %lu after freeing all", st.free_pages);

	/* Free 2 MiB blocks: the iterator finds exactly the wholly free ones. */
	while ((b = mm_next_free_block(&cursor))) {
		CHECK(!(b & (MM_BLOCK_SIZE - 1)), "block 0x%lx not 2 MiB aligned", b);
		blocks++;
	}
	CHECK(blocks == count_free_blocks(bi) && blocks > 0, "%lu free blocks, expected %lu",
	      blocks, count_free_blocks(bi));
	cursor = 0;
	first = mm_next_free_block(&cursor);
	mm_mark_reported(first);
	CHECK(mm_block_is_reported(first), "block 0x%lx not marked", first);
	cursor = 0;
	CHECK(mm_next_free_block(&cursor) != first, "reported block returned again");
	mm_get_stats(&st);
	CHECK(st.reported_blocks == 1, "%lu reported blocks", st.reported_blocks);
	b = mm_alloc_block();
	CHECK(b == first, "alloc_block gave 0x%lx, expected 0x%lx", b, first);
	CHECK(!mm_block_is_reported(first), "allocation did not clear the reported mark");
	mm_free_contig(b, MM_BLOCK_PAGES);
	cursor = 0;
	CHECK(mm_next_free_block(&cursor) == first, "freed block not offered for reporting");

	/* Contiguous runs. */
	c = mm_alloc_contig(600);
	CHECK(c != 0, "no 600-page run");
	for (uint64_t k = 0; c && k < 600; k++)
		CHECK(!mm_page_is_free(c + k * PAGE_SIZE), "run page %lu free", k);
	mm_free_contig(c, 600);
	mm_free_contig(list, (st0.free_pages * 8 + PAGE_SIZE - 1) / PAGE_SIZE);
	mm_get_stats(&st);
	CHECK(st.free_pages == st0.free_pages, "free %lu at the end, %lu at the start",
	      st.free_pages, st0.free_pages);
out:
	wl_ready();
	console_printf("RESULT selftest checks=%lu failed=%lu", checks, failed);
	return failed ? 5 : 0;
}
