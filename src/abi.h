/* SPDX-License-Identifier: MIT */
/*
 * Sized structs (docs/embedding.md, "ABI and versions"): every public struct
 * that may grow starts with `size_t size`, the caller's sizeof. The library
 * reads or writes only as many bytes as both sides know, so an embedder
 * built against an older (smaller) or newer (larger) header keeps working:
 *
 *  inputs (configs, ops): the library starts from its defaults and takes
 *  min(size, its sizeof) bytes from the caller; a larger struct is accepted
 *  only if the bytes the library does not know are all zero (-E2BIG), as the
 *  kernel's copy_struct_from_user does for openat2 and clone3;
 *
 *  outputs (stats, info, counters, reports): the library fills
 *  min(size, its sizeof) bytes, never past the caller's size, and sets
 *  size to the number of bytes it filled.
 *
 * A size that does not reach the end of the first member after `size` (0,
 * or a struct never initialised) is -EINVAL; one above RF_STRUCT_SIZE_MAX
 * cannot be a struct at all (garbage) and is -E2BIG. Every refusal is
 * logged on @e (when there is an engine) naming the struct.
 */
#ifndef RF_ABI_H
#define RF_ABI_H

#include <stddef.h>

#include <ramfold/engine.h>

/* No public struct comes near this; a size above it is garbage. */
#define RF_STRUCT_SIZE_MAX 4096u

/* The least size a caller may give for @type: up to the end of @first, the
 * member after `size`. */
#define RF_STRUCT_MIN(type, first) (offsetof(type, first) + sizeof(((type *)0)->first))

/*
 * Input: @dst (@dst_size bytes, the library's sizeof) holds the defaults;
 * copy the caller's @src over it as described above and set dst's size to
 * @dst_size. Returns 0, -EINVAL or -E2BIG (logged on @e, naming @what).
 */
int rf_struct_in(rf_engine *e, void *dst, size_t dst_size, const void *src, size_t min,
		 const char *what);

/*
 * Output: check the caller's @dst before the work is done: 0, or -EINVAL
 * (NULL, or a size below @min or above RF_STRUCT_SIZE_MAX; logged).
 */
int rf_struct_out_check(rf_engine *e, const void *dst, size_t min, const char *what);

/* Output: copy min(dst's size, @src_size) bytes of the library's @src
 * into @dst and set dst's size to that count. */
void rf_struct_out(void *dst, const void *src, size_t src_size);

/*
 * The whole output path of a getter: check @user, run @call (which fills
 * the local @full and returns 0 or -errno), copy out whatever it filled
 * (a report comes with -EIO too). Used as the body of every public function
 * that fills a sized struct; @what names the struct in messages.
 */
#define RF_STRUCT_OUT(e, user, full, first, what, call)                                            \
	do {                                                                                       \
		int rc_ = rf_struct_out_check((e), (user), RF_STRUCT_MIN(__typeof__(full), first), \
					      (what));                                             \
		if (rc_)                                                                           \
			return rc_;                                                                \
		memset(&(full), 0, sizeof(full));                                                  \
		rc_ = (call);                                                                      \
		(full).size = sizeof(full);                                                        \
		rf_struct_out((user), &(full), sizeof(full));                                      \
		return rc_;                                                                        \
	} while (0)

/*
 * After the definition of a public function whose struct changed in 0.3:
 * its symbol becomes name@@RAMFOLD_0.3, the default a binary links to now
 * (src/libramfold.map lists it in that node), beside the name@RAMFOLD_0.1
 * that lib/abi_0_2.c keeps for binaries built against 0.2. Without an
 * explicit version here the linker would give the plain name the first
 * node that lists it, 0.1, and lose one of the two.
 */
#ifndef __clang__
#define RF_VERSION_0_3(name) __asm__(".symver " #name ", " #name "@@RAMFOLD_0.3, remove")
#else
/* clang's assembler keeps the plain name beside the versioned one (no
 * "remove"), and a static link then sees two definitions. clang builds only
 * the fuzz targets, statically linked, where versions mean nothing; the
 * shared library is built by GCC (make check-exports checks its versions). */
#define RF_VERSION_0_3(name) _Static_assert(1, #name)
#endif

#endif
