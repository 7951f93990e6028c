/* SPDX-License-Identifier: MIT */
/* Sized structs: the one copy in and out of every public struct (abi.h). */
#include <errno.h>
#include <string.h>

#include "abi.h"
#include "internal.h"

int rf_struct_in(rf_engine *e, void *dst, size_t dst_size, const void *src, size_t min,
		 const char *what)
{
	size_t size, n;

	if (!src)
		return -EINVAL;
	memcpy(&size, src, sizeof(size));
	if (size < min) {
		rf_log(e, RF_LOG_ERR,
		       "ramfold: struct %s: size %zu is below %zu (not set by its _init, or .size "
		       "= sizeof missing)",
		       what, size, min);
		return -EINVAL;
	}
	if (size > RF_STRUCT_SIZE_MAX) {
		rf_log(e, RF_LOG_ERR,
		       "ramfold: struct %s: size %zu is not a struct's size (uninitialised?)", what,
		       size);
		return -E2BIG;
	}
	/* Members of a newer header this library does not know must be unset:
	 * the caller asked for something this version cannot do otherwise. */
	for (n = dst_size; n < size; n++)
		if (((const unsigned char *)src)[n]) {
			rf_log(e, RF_LOG_ERR,
			       "ramfold: struct %s: size %zu from a newer header, and byte %zu "
			       "(past the %zu this library knows) is set",
			       what, size, n, dst_size);
			return -E2BIG;
		}
	n = size < dst_size ? size : dst_size;
	memcpy((char *)dst + sizeof(size_t), (const char *)src + sizeof(size_t),
	       n - sizeof(size_t));
	memcpy(dst, &dst_size, sizeof(dst_size));
	return 0;
}

int rf_struct_out_check(rf_engine *e, const void *dst, size_t min, const char *what)
{
	size_t size;

	if (!dst)
		return -EINVAL;
	memcpy(&size, dst, sizeof(size));
	if (size < min || size > RF_STRUCT_SIZE_MAX) {
		rf_log(e, RF_LOG_ERR,
		       "ramfold: struct %s: size %zu is not between %zu and %u (set .size = "
		       "sizeof before the call)",
		       what, size, min, RF_STRUCT_SIZE_MAX);
		return -EINVAL;
	}
	return 0;
}

void rf_struct_out(void *dst, const void *src, size_t src_size)
{
	size_t size, n;

	memcpy(&size, dst, sizeof(size));
	n = size < src_size ? size : src_size;
	memcpy((char *)dst + sizeof(size_t), (const char *)src + sizeof(size_t),
	       n - sizeof(size_t));
	memcpy(dst, &n, sizeof(n));
}
