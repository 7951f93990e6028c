/* SPDX-License-Identifier: MIT */
/*
 * The swap slot allocator: which 4 KiB slots of the swap file (or entries of
 * the compressed tier) are in use. Pure logic, no I/O, no locking: the swap
 * store calls it under its own lock, and tests drive it directly.
 *
 * One bit per slot. Allocation hands out runs of consecutive free slots from
 * a roving cursor, so that pages swapped out together land next to each
 * other in the file: one pwritev writes the batch, and one preadv prefetches
 * the neighbours of a faulting page. The cursor moves forward and wraps, so
 * slots freed behind it are reused only once the space ahead is used up
 * (which spreads writes and keeps recent batches contiguous).
 *
 * Invariants: used == number of set bits; bits beyond nslots are never set.
 */
#ifndef RF_SWAP_SLOTS_H
#define RF_SWAP_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct rf_slots {
	uint64_t *bits;	 /* nslots bits, caller-provided, zeroed */
	uint32_t nslots; /* capacity */
	uint32_t used;
	uint32_t cursor; /* where the next search starts */
};

/* Bytes of bitmap needed for @nslots slots (a multiple of 8). */
static inline size_t rf_slots_bitmap_bytes(uint32_t nslots)
{
	return (((size_t)nslots + 63) / 64) * sizeof(uint64_t);
}

/* Set up @s over @bits (rf_slots_bitmap_bytes(@nslots) zeroed bytes). */
void rf_slots_init(struct rf_slots *s, uint64_t *bits, uint32_t nslots);

/*
 * Allocate a run of 1..@want consecutive free slots. Returns the first slot
 * and sets *@got to the run's length, or returns -1 (all slots in use).
 * A shorter run than @want is returned only when the first free slot found
 * is followed by a used one; callers loop for the rest.
 */
int64_t rf_slots_alloc(struct rf_slots *s, uint32_t want, uint32_t *got);

/* Free @n slots from @first. Freeing a free slot is a bug: returns false
 * (and changes nothing) so the caller can log it. */
bool rf_slots_free(struct rf_slots *s, uint32_t first, uint32_t n);

bool rf_slots_in_use(const struct rf_slots *s, uint32_t slot);

#endif
