/* SPDX-License-Identifier: MIT */
/*
 * osimage: the page cache of a VM running a given OS image. The VMM has
 * loaded real files into the preload area, each starting on a page boundary,
 * in a fixed order, so two VMs given the same files hold identical pages.
 * The guest reads them all (as a booting OS would) and reports a checksum
 * the host can compare between VMs.
 */
#include "drivers.h"
#include "lib.h"
#include "workloads.h"

int wl_osimage(const struct rf_bootinfo *bi)
{
	const uint64_t *p = (const uint64_t *)(uintptr_t)bi->preload_gpa;
	uint64_t words = bi->preload_bytes / 8, sum = 0, t0 = time_ns();

	for (uint64_t i = 0; i < words; i++) {
		sum = (sum ^ p[i]) * 0x100000001b3ull;
		if ((i & 0x3ffff) == 0x3ffff)
			drivers_poll();
	}
	console_printf("osimage: read %lu files, %lu MiB in %lu ms", bi->preload_files,
		       bi->preload_bytes >> 20, (time_ns() - t0) / 1000000);
	wl_ready();
	console_printf("RESULT osimage files=%lu bytes=%lu pages=%lu checksum=0x%lx",
		       bi->preload_files, bi->preload_data_bytes, bi->preload_bytes / PAGE_SIZE,
		       sum);
	return 0;
}
