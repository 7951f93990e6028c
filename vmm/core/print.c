/* SPDX-License-Identifier: MIT */
/*
 * The VMM's output lines (see print.h). One lock serialises every line on
 * stdout and stderr and the table's frames, so nothing interleaves; the
 * ring of recent lines is written under it too.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "core/print.h"

#define RECENT 8

static pthread_mutex_t out_lock = PTHREAD_MUTEX_INITIALIZER;

static struct {
	bool keep;
	char line[RECENT][200];
	unsigned int n, next;
} recent;

/* Called under out_lock. */
static void keep_line(const char *line)
{
	if (!recent.keep)
		return;
	/* Kept lines are cut at 199 characters. */
	snprintf(recent.line[recent.next], sizeof(recent.line[0]), "%.*s",
		 (int)sizeof(recent.line[0]) - 1, line);
	recent.next = (recent.next + 1) % RECENT;
	if (recent.n < RECENT)
		recent.n++;
}

/* One line on @f, after @prefix. */
static void print_line(FILE *f, const char *prefix, const char *fmt, va_list ap)
{
	char line[1024];

	vsnprintf(line, sizeof(line), fmt, ap);
	pthread_mutex_lock(&out_lock);
	fprintf(f, "%s%s\n", prefix, line);
	fflush(f);
	keep_line(line);
	pthread_mutex_unlock(&out_lock);
}

void vmm_errorf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	print_line(stderr, "ramfold-vmm: ", fmt, ap);
	va_end(ap);
}

void vmm_printf(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	print_line(stdout, "", fmt, ap);
	va_end(ap);
}

void vmm_out_lock(void)
{
	pthread_mutex_lock(&out_lock);
}

void vmm_out_unlock(void)
{
	pthread_mutex_unlock(&out_lock);
}

void vmm_out_keep_recent(void)
{
	pthread_mutex_lock(&out_lock);
	recent.keep = true;
	pthread_mutex_unlock(&out_lock);
}

void vmm_out_print_recent(FILE *f)
{
	if (!recent.n)
		return;
	fprintf(f, "\n");
	for (unsigned int k = 0; k < recent.n; k++)
		fprintf(f, "%s\n", recent.line[(recent.next + RECENT - recent.n + k) % RECENT]);
}
