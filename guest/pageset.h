/* SPDX-License-Identifier: MIT */
/*
 * A set of pages a workload works on, allocated one by one from the memory
 * manager (so it works however fragmented free memory is, for example after
 * the balloon took pages here and there). The gpa list itself lives in a
 * contiguous allocation.
 */
#ifndef GUEST_PAGESET_H
#define GUEST_PAGESET_H

#include <stdint.h>

struct pageset {
	uint64_t *gpa;
	uint64_t n;
	uint64_t list_pages; /* pages holding the gpa list */
};

/* Allocate @n pages; on failure frees what it took and returns -1. */
int pageset_alloc(struct pageset *ps, uint64_t n);
void pageset_free(struct pageset *ps);

static inline uint64_t *pageset_page(const struct pageset *ps, uint64_t i)
{
	return (uint64_t *)(uintptr_t)ps->gpa[i];
}

#endif
