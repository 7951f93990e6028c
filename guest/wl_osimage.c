/* SPDX-License-Identifier: MIT */
/*
 * osimage: the page cache of a VM running a given OS image. The VMM has
 * loaded real files into the preload area, each starting on a page boundary,
 * in a fixed order, so two VMs given the same files hold identical pages.
 * The guest reads them all (as a booting OS would) and reports a checksum
 * the host can compare between VMs.
 *
 * With pause=MS it keeps reading them, a checksum pass every MS ms (an OS
 * that keeps using its libraries): each pass must give the first pass's
 * checksum (a different one is printed as BAD: the host changed a page), and
 * the bytes of these later passes go to work_bytes every 2 MiB (bootinfo.h),
 * so the host can sample how fast the guest reads its page cache.
 */
#include "drivers.h"
#include "lib.h"
#include "workloads.h"

/* One checksum pass; @count: add the bytes read to work_bytes as it goes. */
static uint64_t checksum_pass(const struct rf_bootinfo *bi, bool count)
{
	const uint64_t *p = (const uint64_t *)(uintptr_t)bi->preload_gpa;
	uint64_t words = bi->preload_bytes / 8, sum = 0;

	for (uint64_t i = 0; i < words; i++) {
		sum = (sum ^ p[i]) * 0x100000001b3ull;
		if ((i & 0x3ffff) == 0x3ffff) {
			if (count)
				wl_count_work(0x40000 * 8);
			drivers_poll();
		}
	}
	if (count)
		wl_count_work((words & 0x3ffff) * 8);
	return sum;
}

int wl_osimage(const struct rf_bootinfo *bi)
{
	uint64_t t0 = time_ns(), sum = checksum_pass(bi, false);

	console_printf("osimage: read %lu files, %lu MiB in %lu ms", bi->preload_files,
		       bi->preload_bytes >> 20, (time_ns() - t0) / 1000000);
	wl_ready();
	console_printf("RESULT osimage files=%lu bytes=%lu pages=%lu checksum=0x%lx",
		       bi->preload_files, bi->preload_data_bytes, bi->preload_bytes / PAGE_SIZE,
		       sum);
	for (uint64_t pass = 2; bi->p.pause_ms; pass++) {
		uint64_t again;

		wl_pause_ms(bi->p.pause_ms);
		again = checksum_pass(bi, true);
		if (again != sum)
			console_printf("osimage: pass %lu BAD: checksum 0x%lx, the first was 0x%lx",
				       pass, again, sum);
	}
	return 0;
}
