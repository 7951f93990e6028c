/* SPDX-License-Identifier: MIT */
/*
 * Library metadata lives in a jemalloc arena of its own, reached through
 * mallocx()/dallocx() only. The library never calls malloc(), so the
 * embedder's allocator stays whatever the embedder chose: libramfold.so pulls
 * in libjemalloc.so for mallocx, but the embedder's own malloc (earlier in the
 * symbol search order, e.g. glibc's) keeps serving the embedder.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

#ifdef RF_ARENA_LIBC
/*
 * Sanitizer builds: metadata from libc's calloc, so LeakSanitizer and
 * AddressSanitizer see every allocation the library makes.
 */
#include <stdlib.h>

int rf_arena_new(unsigned int *idx)
{
	*idx = 0;
	return 0;
}

void rf_arena_delete(unsigned int idx)
{
	(void)idx;
}

void *rf_arena_alloc_engine(unsigned int idx, size_t size)
{
	(void)idx;
	return calloc(1, size);
}

void *rf_zalloc(rf_engine *e, size_t size)
{
	(void)e;
	return calloc(1, size ? size : 1);
}

void rf_free(rf_engine *e, void *p)
{
	(void)e;
	free(p);
}

void rf_arena_free(void *p)
{
	free(p);
}

void rf_arena_purge(rf_engine *e)
{
	(void)e;
}
#else
#include <jemalloc/jemalloc.h>

int rf_arena_new(unsigned int *idx)
{
	size_t sz = sizeof(*idx);

	if (mallctl("arenas.create", idx, &sz, NULL, 0) != 0)
		return -ENOMEM;
	return 0;
}

/* Every allocation of the arena must have been freed: destroy discards it all. */
void rf_arena_delete(unsigned int idx)
{
	char cmd[64];

	snprintf(cmd, sizeof(cmd), "arena.%u.destroy", idx);
	mallctl(cmd, NULL, NULL, NULL, 0);
}

static int rf_arena_flags(const rf_engine *e)
{
	return MALLOCX_ARENA(e->arena) | MALLOCX_TCACHE_NONE;
}

/* The engine struct itself, which holds the arena index. */
void *rf_arena_alloc_engine(unsigned int idx, size_t size)
{
	return mallocx(size, MALLOCX_ARENA(idx) | MALLOCX_TCACHE_NONE | MALLOCX_ZERO);
}

void *rf_zalloc(rf_engine *e, size_t size)
{
	if (size == 0)
		size = 1;
	return mallocx(size, rf_arena_flags(e) | MALLOCX_ZERO);
}

void rf_free(rf_engine *e, void *p)
{
	if (p)
		dallocx(p, rf_arena_flags(e));
}

/* dallocx takes the arena from the pointer's extent; the flags only say
 * which cache, and metadata bypasses the thread caches. */
void rf_arena_free(void *p)
{
	if (p)
		dallocx(p, MALLOCX_TCACHE_NONE);
}

/*
 * jemalloc keeps freed pages dirty for dirty_decay_ms (10 s by default), and
 * its decay only advances when the arena allocates again: a dedup engine
 * that has just freed most of its index nodes, and then allocates next to
 * nothing, would keep them resident. arena.<i>.purge returns every unused
 * dirty and muzzy page of the arena at once.
 */
void rf_arena_purge(rf_engine *e)
{
	char cmd[64];

	snprintf(cmd, sizeof(cmd), "arena.%u.purge", e->arena);
	mallctl(cmd, NULL, NULL, NULL, 0);
}

#endif

char *rf_strdup(rf_engine *e, const char *s)
{
	size_t n = strlen(s) + 1;
	char *d = rf_zalloc(e, n);

	if (d)
		memcpy(d, s, n);
	return d;
}
