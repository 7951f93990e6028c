/* SPDX-License-Identifier: MIT */
/*
 * The broker's tables place keys through a keyed mix (the key XORed with a
 * secret, then this finaliser), so that a client choosing hashes cannot
 * pile them on one slot.
 */
#ifndef RF_RAMFOLDD_MIX_H
#define RF_RAMFOLDD_MIX_H

#include <stdint.h>

static inline uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdull;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ull;
	x ^= x >> 33;
	return x;
}

#endif
