/* SPDX-License-Identifier: MIT */
/*
 * Page contents of the dup workload, in one place for both guests: the
 * freestanding native guest (guest/wl_dup.c) and the Linux guest's workload
 * program (guest/linux/rfwork.c). Same parameters, byte-identical pages, so
 * dedup results of the two guests compare. Header-only and dependency-free
 * (stdint only): it builds with -ffreestanding and against libc alike.
 */
#ifndef RF_GUEST_PAGE_CONTENT_H
#define RF_GUEST_PAGE_CONTENT_H

#include <stdint.h>

/* splitmix64: a tiny PRNG with good mixing, used for patterns and seeds. */
static inline uint64_t mix64(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

enum dup_class { DUP_ZERO, DUP_TEMPLATE, DUP_UNIQUE };

/*
 * Fill page @i (512 words at @pg) of a dup workload. Its class is drawn from
 * @seed and @i: zero with probability @zero_pct %, a copy of one of
 * @templates template pages with @dup_pct %, else unique to this guest
 * (@useed mixes in the guest's own identity).
 */
static inline enum dup_class dup_fill_page(uint64_t *pg, uint64_t i, uint64_t seed, uint64_t useed,
					   uint64_t zero_pct, uint64_t dup_pct, uint64_t templates)
{
	uint64_t r = mix64(seed ^ mix64(i)), cls = r % 100;

	if (cls < zero_pct) {
		for (unsigned int w = 0; w < 512; w++)
			pg[w] = 0;
		return DUP_ZERO;
	}
	if (cls < zero_pct + dup_pct) {
		uint64_t tseed = mix64(seed * 31 + (r >> 8) % templates);

		for (unsigned int w = 0; w < 512; w++)
			pg[w] = mix64(tseed + w);
		return DUP_TEMPLATE;
	}
	for (unsigned int w = 0; w < 512; w++)
		pg[w] = mix64(useed ^ (i << 9 | w));
	return DUP_UNIQUE;
}

#endif
