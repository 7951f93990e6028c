/* SPDX-License-Identifier: MIT */
/*
 * idle: touch a base set of pages (the guest's "kernel and daemons"), wait.
 *
 * With pause=MS the guest's daemons wake up every MS ms and each wake-up
 * reads one page of the base set (the next one, round the set). A wake-up
 * whose page is read within a tenth of the period past its due time is on
 * time, and adds its page's bytes to work_bytes (bootinfo.h); a late one
 * adds nothing, and the wake-ups it overran are skipped. So an idle guest's
 * work is its wake-ups on time: what a host that keeps it waiting (on a
 * swapped page, or off the CPU) takes from it.
 */
#include "drivers.h"
#include "lib.h"
#include "mm.h"
#include "pageset.h"
#include "workloads.h"

static void wake_up_forever(const struct pageset *ps, uint64_t period_ms)
{
	const uint64_t period = period_ms * 1000000ull, slack = period / 10;
	uint64_t due = time_ns() + period, sum = 0;

	for (uint64_t i = 0;; i = (i + 1) % ps->n) {
		const volatile uint64_t *pg = pageset_page(ps, i);
		uint64_t now;

		while ((now = time_ns()) < due) {
			uint64_t left_us = (due - now) / 1000;

			drivers_poll();
			sleep_us(left_us < 10000 ? left_us : 10000);
		}
		for (unsigned w = 0; w < 512; w += 8)
			sum += pg[w];
		now = time_ns();
		if (now - due <= slack)
			wl_count_work(PAGE_SIZE);
		due += period;
		if (now > due)
			due += (now - due) / period * period + period;
	}
	(void)sum;
}

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
	if (bi->p.pause_ms && ps.n)
		wake_up_forever(&ps, bi->p.pause_ms);
	return 0;
}
