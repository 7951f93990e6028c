/* SPDX-License-Identifier: MIT */
/* Parsing of --vm specs (name=...,mem=...,workload=...,key=value...). */
#ifndef VMM_OPTIONS_H
#define VMM_OPTIONS_H

#include "core/vmm.h"

/* Parse @spec into a new VM appended to vmm->vms. 0, or -1 after one clear line. */
int vm_spec_parse(struct vmm *vmm, const char *spec);
/* Checks that need the guest image (RAM large enough). 0 or -1. */
int vm_spec_check_memory(struct vmm *vmm, struct vmm_vm *vm);
/* The --vm keys and workloads, for --help. */
void vm_spec_help(FILE *f);
const char *workload_to_name(enum rf_workload w);

#endif
