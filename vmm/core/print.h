/* SPDX-License-Identifier: MIT */
/*
 * The VMM's own output lines: status lines on stdout (vmm_printf) and errors
 * on stderr (vmm_errorf), from any thread, one whole line at a time. The
 * live table (ctl/table.c) prints under the same lock, and when it redraws
 * the terminal it shows the last lines printed below itself: those are kept
 * here, so printing a line never calls into the table.
 */
#ifndef VMM_CORE_PRINT_H
#define VMM_CORE_PRINT_H

#include <stdbool.h>
#include <stdio.h>

/* One line on stdout (no interleaving with other lines or the table). */
void vmm_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* One line on stderr, prefixed "ramfold-vmm: ". */
void vmm_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* For the live table: hold the output lock while printing several lines. */
void vmm_out_lock(void);
void vmm_out_unlock(void);
/* From now on keep the last lines printed (the table redraws the terminal). */
void vmm_out_keep_recent(void);
/* Under vmm_out_lock: if lines were kept, an empty line and then those lines,
 * oldest first, on @f. */
void vmm_out_print_recent(FILE *f);

#endif
