/* SPDX-License-Identifier: MIT */
/* The swap slot allocator: see swap_slots.h. */
#include "swap_slots.h"

void rf_slots_init(struct rf_slots *s, uint64_t *bits, uint32_t nslots)
{
	s->bits = bits;
	s->nslots = nslots;
	s->used = 0;
	s->cursor = 0;
}

static inline bool bit_test(const uint64_t *b, uint32_t i)
{
	return (b[i / 64] >> (i % 64)) & 1;
}

/* First free slot in [from, nslots), or nslots. Skips full words. */
static uint32_t find_free(const struct rf_slots *s, uint32_t from)
{
	uint32_t i = from;

	while (i < s->nslots) {
		uint64_t w = ~s->bits[i / 64] >> (i % 64);

		if (w) {
			i += (uint32_t)__builtin_ctzll(w);
			return i < s->nslots ? i : s->nslots;
		}
		i = (i / 64 + 1) * 64;
	}
	return s->nslots;
}

int64_t rf_slots_alloc(struct rf_slots *s, uint32_t want, uint32_t *got)
{
	uint32_t first, n;

	*got = 0;
	if (want == 0 || s->used == s->nslots)
		return -1;
	first = find_free(s, s->cursor);
	if (first == s->nslots)
		first = find_free(s, 0);
	if (first == s->nslots)
		return -1; /* unreachable while used < nslots */
	for (n = 0; n < want && first + n < s->nslots && !bit_test(s->bits, first + n); n++)
		s->bits[(first + n) / 64] |= 1ull << ((first + n) % 64);
	s->used += n;
	s->cursor = first + n == s->nslots ? 0 : first + n;
	*got = n;
	return first;
}

bool rf_slots_free(struct rf_slots *s, uint32_t first, uint32_t n)
{
	if (n == 0 || first >= s->nslots || n > s->nslots - first)
		return false;
	for (uint32_t i = first; i < first + n; i++)
		if (!bit_test(s->bits, i))
			return false;
	for (uint32_t i = first; i < first + n; i++)
		s->bits[i / 64] &= ~(1ull << (i % 64));
	s->used -= n;
	return true;
}

bool rf_slots_in_use(const struct rf_slots *s, uint32_t slot)
{
	return slot < s->nslots && bit_test(s->bits, slot);
}
