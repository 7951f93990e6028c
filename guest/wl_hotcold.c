/* SPDX-License-Identifier: MIT */
/*
 * hotcold: write a cold set once, then keep touching a hot set (read and
 * write every word; with ro=1 only read it, a hot set the host never sees
 * a write to) and report the hot set's throughput about once a second.
 * With stream=N, each pass over the hot set is followed by a read of the
 * next N cold pages, in order and wrapping: a scan that keeps bringing
 * cold pages back, so a capped VM's swapper must keep choosing victims
 * (between the hot set, read all the time, and the cold pages the scan
 * read once).
 * Swap and dedup policies should leave the hot set alone: its throughput is
 * what a bad policy costs the guest. Each pass's bytes also go to work_bytes
 * (bootinfo.h), for a host that samples the throughput itself.
 */
#include "drivers.h"
#include "lib.h"
#include "pageset.h"
#include "workloads.h"

int wl_hotcold(const struct rf_bootinfo *bi)
{
	const struct rf_wl_params *p = &bi->p;
	struct pageset cold, hot;
	uint64_t reports = 0, passes = 0, t0, total_passes = 0, total_ns = 0;
	uint64_t sum = 0, cursor = 0, streamed = 0;

	if (pageset_alloc(&cold, p->mib * MIB / PAGE_SIZE) ||
	    pageset_alloc(&hot, p->hot_mib * MIB / PAGE_SIZE)) {
		console_printf("hotcold: cannot allocate %lu+%lu MiB", p->mib, p->hot_mib);
		return 1;
	}
	for (uint64_t i = 0; i < cold.n; i++) {
		uint64_t *pg = pageset_page(&cold, i);

		for (unsigned w = 0; w < 512; w++)
			pg[w] = mix64(p->seed ^ (i << 9 | w));
		if ((i & 1023) == 1023)
			drivers_poll();
	}
	for (uint64_t i = 0; i < hot.n; i++) {
		uint64_t *pg = pageset_page(&hot, i);

		/* Read-only: content that is neither zero nor a duplicate, so
		 * neither the zero-page path nor dedup takes the hot set. */
		for (unsigned w = 0; w < 512 && p->hot_ro; w++)
			pg[w] = mix64(~p->seed ^ (i << 9 | w));
		if (!p->hot_ro)
			memset(pg, 0, PAGE_SIZE);
	}
	wl_ready();
	t0 = time_ns();
	while (!p->rounds || reports < p->rounds) {
		uint64_t now;

		for (uint64_t i = 0; i < hot.n; i++) {
			uint64_t *pg = pageset_page(&hot, i);

			if (p->hot_ro) {
				for (unsigned w = 0; w < 512; w++)
					sum += pg[w];
				continue;
			}
			for (unsigned w = 0; w < 512; w++)
				pg[w] += w;
		}
		for (uint64_t k = 0; k < p->stream && cold.n; k++) {
			sum += *(volatile uint64_t *)pageset_page(&cold, cursor);
			cursor = cursor + 1 == cold.n ? 0 : cursor + 1;
			streamed++;
		}
		passes++;
		wl_count_work(hot.n * PAGE_SIZE);
		drivers_poll();
		now = time_ns();
		if (now - t0 >= 1000000000ull) {
			reports++;
			total_passes += passes;
			total_ns += now - t0;
			console_printf("hotcold: hot %lu MiB cold %lu MiB: %lu passes, %lu MB/s, "
				       "%lu cold pages read (sum %lx)",
				       p->hot_mib, p->mib, passes,
				       mbps(passes * hot.n * PAGE_SIZE, now - t0), streamed,
				       sum & 0xffff);
			passes = 0;
			streamed = 0;
			t0 = now;
		}
	}
	console_printf("RESULT hotcold hot_mib=%lu cold_mib=%lu hot_MBps=%lu", p->hot_mib, p->mib,
		       mbps(total_passes * hot.n * PAGE_SIZE, total_ns));
	return 0;
}
