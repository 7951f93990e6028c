/* SPDX-License-Identifier: MIT */
/*
 * Preloading real files into guest RAM for the osimage workload: the regular
 * files of a directory whose names match a glob (default "*.so*"), sorted by
 * name, each starting on a page boundary, until a byte limit. The same
 * directory, glob and limit give byte-identical guest pages in every VM.
 */
#ifndef VMM_PRELOAD_H
#define VMM_PRELOAD_H

#include <stdint.h>

struct preload_result {
	uint64_t files;
	uint64_t data_bytes; /* file bytes copied */
	uint64_t bytes;	     /* page-rounded span used */
};

/* Check that @dir can be read and has at least one matching file.
 * 0, or -1 after one clear line naming @who. */
int preload_check(const char *who, const char *dir, const char *glob);

/* Fill @dst (at most @limit bytes, page-aligned) and report what went in.
 * 0, or -1 after one clear line. */
int preload_fill(const char *who, const char *dir, const char *glob, uint8_t *dst, uint64_t limit,
		 struct preload_result *res);

#endif
