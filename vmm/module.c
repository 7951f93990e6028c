/* SPDX-License-Identifier: MIT */
/* The module registry: filled by constructors before main() runs, read-only after. */
#include <stdio.h>
#include <stdlib.h>

#include "vmm.h"

#define VMM_MAX_MODULES 16

static const struct vmm_module *modules[VMM_MAX_MODULES];
static unsigned int nr_modules;

void vmm_module_register(const struct vmm_module *m)
{
	if (nr_modules == VMM_MAX_MODULES) {
		fprintf(stderr, "ramfold-vmm: too many modules (%d), %s not registered\n",
			VMM_MAX_MODULES, m->name);
		exit(1);
	}
	modules[nr_modules++] = m;
}

unsigned int vmm_nr_modules(void)
{
	return nr_modules;
}

const struct vmm_module *vmm_module_at(unsigned int i)
{
	return i < nr_modules ? modules[i] : NULL;
}
