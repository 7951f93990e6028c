/* SPDX-License-Identifier: MIT */
/*
 * The content hash with XXH3's AVX2 path, inlined. Debian's libxxhash.so is
 * built for the baseline x86-64 (its SSE2 path): on a CPU with AVX2 the
 * inlined hash runs about 2.5 times faster, and hashing is most of a first
 * pass. own_engine.c picks this one at run time when the CPU has AVX2.
 *
 * XXH3's value does not depend on the vector code that computed it, so
 * every path gives the same hash for the same page: pages hashed before and
 * after the choice, and the broker (which hashes with libxxhash) agree.
 * test_dedup checks it.
 */
#include <stddef.h>
#include <stdint.h>

#include "dedup_internal.h"

/* GCC's target pragma; clang (the fuzz builds) takes the libxxhash path. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#pragma GCC push_options
#pragma GCC target("avx2")
#define XXH_INLINE_ALL
#define XXH_VECTOR XXH_AVX2
#include <xxhash.h>

uint64_t dedup_hash_avx2(const void *page, size_t len)
{
	return XXH3_64bits(page, len);
}
#pragma GCC pop_options

bool dedup_hash_avx2_usable(void)
{
	__builtin_cpu_init();
	return __builtin_cpu_supports("avx2");
}
#else
uint64_t dedup_hash_avx2(const void *page, size_t len)
{
	(void)page;
	(void)len;
	return 0;
}

bool dedup_hash_avx2_usable(void)
{
	return false;
}
#endif
