/* SPDX-License-Identifier: MIT */
/* idle: touch a base set of pages (the guest's "kernel and daemons"), wait. */
#include "drivers.h"
#include "lib.h"
#include "mm.h"
#include "pageset.h"
#include "workloads.h"

int wl_idle(const struct rf_bootinfo *bi)
{
	struct pageset ps;

	if (pageset_alloc(&ps, bi->p.mib * MIB / PAGE_SIZE)) {
		console_printf("idle: cannot allocate %lu MiB", bi->p.mib);
		return 1;
	}
	for (uint64_t i = 0; i < ps.n; i++) {
		uint64_t *p = pageset_page(&ps, i);

		for (unsigned w = 0; w < 512; w += 64)
			p[w] = mix64(bi->p.seed ^ (i << 9 | w));
		if ((i & 1023) == 1023)
			drivers_poll();
	}
	wl_ready();
	console_printf("RESULT idle base_mib=%lu", bi->p.mib);
	return 0;
}
