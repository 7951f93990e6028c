/* SPDX-License-Identifier: MIT */
/*
 * memcheck: the integrity oracle. Write a deterministic pattern over N MiB,
 * then loop: verify every word against the previous round's pattern and
 * rewrite it with this round's. Any difference means the host lost or
 * corrupted guest memory (a bad merge, a lost write, a wrong swap-in). Word
 * i of round r holds i * K1 ^ (seed + r * K2): every word of every page is
 * distinct, so no page is a duplicate of another.
 *
 * Reports: a bad round at once (count, first bad offset, expected/got), a
 * summary about once a second, and RESULT when the rounds are done. The
 * bytes verified and rewritten go to work_bytes every 4 MiB (bootinfo.h),
 * for a host that samples the guest's bandwidth.
 */
#include "drivers.h"
#include "lib.h"
#include "pageset.h"
#include "workloads.h"

#define K1 0x9e3779b97f4a7c15ull
#define K2 0xd1b54a32d192ed03ull

static inline uint64_t round_key(uint64_t seed, uint64_t r)
{
	return seed + r * K2;
}

int wl_memcheck(const struct rf_bootinfo *bi)
{
	const struct rf_wl_params *p = &bi->p;
	uint64_t first_bad = ~0ull, bad_rounds = 0, r, t0, bytes, last_report, report_rounds = 0;
	uint64_t report_ns = 0;
	struct pageset ps;

	if (pageset_alloc(&ps, p->mib * MIB / PAGE_SIZE)) {
		console_printf("memcheck: cannot allocate %lu MiB", p->mib);
		return 1;
	}
	bytes = ps.n * PAGE_SIZE;
	t0 = time_ns();
	for (uint64_t i = 0; i < ps.n; i++) {
		uint64_t *pg = pageset_page(&ps, i), k = round_key(p->seed, 0), v = (i << 9) * K1;

		for (unsigned w = 0; w < 512; w++, v += K1)
			pg[w] = v ^ k;
		if ((i & 1023) == 1023)
			drivers_poll();
	}
	console_printf("memcheck: wrote %lu MiB in %lu ms (first touch)", bytes >> 20,
		       (time_ns() - t0) / 1000000);
	wl_ready();
	last_report = time_ns();
	for (r = 1; !p->rounds || r <= p->rounds; r++) {
		uint64_t kold = round_key(p->seed, r - 1), knew = round_key(p->seed, r);
		uint64_t nbad = 0, bad_off = 0, exp = 0, got = 0, rt = time_ns(), now;

		for (uint64_t i = 0; i < ps.n; i++) {
			uint64_t *pg = pageset_page(&ps, i), v = (i << 9) * K1;

			for (unsigned w = 0; w < 512; w++, v += K1) {
				uint64_t x = pg[w];

				if (__builtin_expect(x != (v ^ kold), 0)) {
					if (!nbad++) {
						bad_off = i * PAGE_SIZE + w * 8;
						exp = v ^ kold;
						got = x;
					}
				}
				pg[w] = v ^ knew;
			}
			if ((i & 1023) == 1023) {
				wl_count_work(1024 * PAGE_SIZE);
				drivers_poll();
			}
		}
		wl_count_work((ps.n & 1023) * PAGE_SIZE); /* the pages after the last 1024 */
		now = time_ns();
		report_ns += now - rt;
		report_rounds++;
		if (nbad) {
			bad_rounds++;
			if (first_bad == ~0ull)
				first_bad = bad_off;
			console_printf(
			    "memcheck: round %lu BAD: %lu bad words, first bad offset 0x%lx "
			    "(gpa 0x%lx) expected 0x%lx got 0x%lx",
			    r, nbad, bad_off, ps.gpa[bad_off / PAGE_SIZE] + bad_off % PAGE_SIZE,
			    exp, got);
		}
		if (now - last_report >= 1000000000ull || (p->rounds && r == p->rounds)) {
			console_printf(
			    "memcheck: rounds=%lu bad_rounds=%lu verify+rewrite %lu MB/s", r,
			    bad_rounds, mbps(bytes * report_rounds, report_ns));
			last_report = now;
			report_rounds = 0;
			report_ns = 0;
		}
	}
	if (first_bad == ~0ull)
		console_printf("RESULT memcheck rounds=%lu clean=%lu bad_rounds=0 first_bad=none",
			       r - 1, r - 1);
	else
		console_printf(
		    "RESULT memcheck rounds=%lu clean=%lu bad_rounds=%lu first_bad=0x%lx", r - 1,
		    r - 1 - bad_rounds, bad_rounds, first_bad);
	return bad_rounds ? 3 : 0;
}
