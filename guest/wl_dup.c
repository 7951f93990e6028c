/* SPDX-License-Identifier: MIT */
/*
 * dup: fill N MiB with a known mix of pages, so dedup savings can be checked
 * against an exact ideal. Each page's class comes from a hash of (seed, page
 * index): zero (all zero bytes, written), duplicate (a copy of one of K
 * templates whose content depends on the seed only, so two VMs with the same
 * seed hold the same templates), or unique (content from the seed, the VM
 * name and the page index, so no two pages anywhere are equal).
 */
#include "drivers.h"
#include "lib.h"
#include "pageset.h"
#include "workloads.h"

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return h;
}

int wl_dup(const struct rf_bootinfo *bi)
{
	const struct rf_wl_params *p = &bi->p;
	uint64_t useed = mix64(p->seed ^ name_hash(bi->name));
	uint64_t nzero = 0, ndup = 0, nunique = 0, t0 = time_ns();
	struct pageset ps;

	if (pageset_alloc(&ps, p->mib * MIB / PAGE_SIZE)) {
		console_printf("dup: cannot allocate %lu MiB", p->mib);
		return 1;
	}
	for (uint64_t i = 0; i < ps.n; i++) {
		switch (dup_fill_page(pageset_page(&ps, i), i, p->seed, useed, p->zero_pct,
				      p->dup_pct, p->templates)) {
		case DUP_ZERO:
			nzero++;
			break;
		case DUP_TEMPLATE:
			ndup++;
			break;
		case DUP_UNIQUE:
			nunique++;
			break;
		}
		if ((i & 1023) == 1023)
			drivers_poll();
	}
	console_printf("dup: filled %lu MiB in %lu ms", p->mib, (time_ns() - t0) / 1000000);
	wl_ready();
	console_printf("RESULT dup pages=%lu dup=%lu unique=%lu zero=%lu templates=%lu seed=%lu",
		       ps.n, ndup, nunique, nzero, p->templates, p->seed);
	return 0;
}
