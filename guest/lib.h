/* SPDX-License-Identifier: MIT */
/*
 * The guest's tiny libc: memory and string functions the compiler may call,
 * a printf subset, and the debug device (console lines, time, sleep, exit).
 */
#ifndef GUEST_LIB_H
#define GUEST_LIB_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PAGE_SIZE  4096ul
#define PAGE_SHIFT 12
#define MIB	   (1ul << 20)

void *memset(void *d, int c, size_t n);
void *memcpy(void *d, const void *s, size_t n);
void *memmove(void *d, const void *s, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strcmp(const char *a, const char *b);

/* printf subset: %s %c %d %i %u %x %p %%, with l/ll/z and a width/0 flag. */
int vsnprintf(char *buf, size_t len, const char *fmt, va_list ap);
int snprintf(char *buf, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* One console line per call (one VM exit); longer lines are cut at 255. */
void console_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

uint64_t time_ns(void);
void sleep_us(uint64_t us);
bool stop_requested(void);
__attribute__((noreturn)) void guest_exit(uint64_t status);

#include "page_content.h" /* mix64 */

/* Bytes per second as MB/s (10^6), with a floor of 1 ns elapsed. */
static inline uint64_t mbps(uint64_t bytes, uint64_t ns)
{
	return ns ? bytes * 1000 / ns : 0;
}

#endif
