/* SPDX-License-Identifier: MIT */
/*
 * The live memory table (once a second on the terminal) and the CSV file
 * with the same rows over time. Figures come from rf_vm_stats() (the
 * page-state table and pagemap) and, for the host row, from the VMM's own
 * smaps_rollup: what the kernel measures.
 */
#ifndef VMM_TABLE_H
#define VMM_TABLE_H

#include <stdbool.h>

struct vmm;

int table_open(struct vmm *vmm); /* 0 or -1 (CSV cannot be created; message printed) */
/* Collect once; print if the table is on; append to the CSV. */
void table_tick(struct vmm *vmm, bool final);
void table_close(void);

#endif
