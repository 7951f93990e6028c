/* SPDX-License-Identifier: MIT */
/*
 * A 64-bit finaliser, for tables that place keys by it. The broker's tables
 * mix each key XORed with a secret, so that a client choosing hashes cannot
 * pile them on one slot; the engine's index mixes the low 32 bits of a
 * content hash it keeps per page (index.c: index_key_hash).
 */
#ifndef RF_MIX_H
#define RF_MIX_H

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
