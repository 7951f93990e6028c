/* SPDX-License-Identifier: MIT */
/*
 * churn: allocate N MiB page by page through the memory manager, write every
 * page, free them all, pause; repeat for the given number of waves. Freed
 * memory stays resident on the host until something (free page reporting)
 * tells the host about it. The bytes written by every wave after the first
 * (the first ends before READY) go to work_bytes every 4 MiB (bootinfo.h).
 */
#include "drivers.h"
#include "lib.h"
#include "pageset.h"
#include "workloads.h"

int wl_churn(const struct rf_bootinfo *bi)
{
	const struct rf_wl_params *p = &bi->p;
	uint64_t wave;

	for (wave = 1; !p->rounds || wave <= p->rounds; wave++) {
		struct pageset ps;
		uint64_t t0 = time_ns();

		if (pageset_alloc(&ps, p->mib * MIB / PAGE_SIZE)) {
			console_printf("churn: wave %lu: cannot allocate %lu MiB", wave, p->mib);
			return 1;
		}
		for (uint64_t i = 0; i < ps.n; i++) {
			uint64_t *pg = pageset_page(&ps, i);

			for (unsigned w = 0; w < 512; w++)
				pg[w] = mix64(p->seed ^ wave ^ (i << 9 | w));
			if ((i & 1023) == 1023) {
				if (wave > 1)
					wl_count_work(1024 * PAGE_SIZE);
				drivers_poll();
			}
		}
		if (wave > 1)
			wl_count_work((ps.n & 1023) * PAGE_SIZE);
		pageset_free(&ps);
		console_printf("churn: wave %lu: allocated, wrote and freed %lu MiB in %lu ms",
			       wave, p->mib, (time_ns() - t0) / 1000000);
		wl_ready();
		wl_pause_ms(p->pause_ms);
	}
	console_printf("RESULT churn waves=%lu mib=%lu", wave - 1, p->mib);
	return 0;
}
