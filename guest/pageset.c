/* SPDX-License-Identifier: MIT */
#include "pageset.h"
#include "drivers.h"
#include "lib.h"
#include "mm.h"

int pageset_alloc(struct pageset *ps, uint64_t n)
{
	uint64_t list;

	ps->n = 0;
	ps->list_pages = (n * 8 + PAGE_SIZE - 1) / PAGE_SIZE;
	if (!ps->list_pages)
		ps->list_pages = 1;
	list = mm_alloc_contig(ps->list_pages);
	if (!list)
		return -1;
	ps->gpa = (uint64_t *)(uintptr_t)list;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t g = mm_alloc_page();

		if (!g) {
			pageset_free(ps);
			return -1;
		}
		ps->gpa[ps->n++] = g;
		if ((i & 4095) == 4095)
			drivers_poll();
	}
	return 0;
}

void pageset_free(struct pageset *ps)
{
	for (uint64_t i = 0; i < ps->n; i++)
		mm_free_page(ps->gpa[i]);
	if (ps->gpa)
		mm_free_contig((uint64_t)(uintptr_t)ps->gpa, ps->list_pages);
	ps->gpa = 0;
	ps->n = 0;
}
