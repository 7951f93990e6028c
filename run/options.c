/* SPDX-License-Identifier: MIT */
/* Option defaults and the --dedup parser, shared by ramfold-run and the preload. */
#include <errno.h>
#include <string.h>

#include "run.h"

void rf_run_opts_init(struct rf_run_opts *o)
{
	memset(o, 0, sizeof(*o));
	o->dedup = RF_DEDUP_INTRA_VM;
	o->huge = RF_DEDUP_HUGE_SPLIT;
	/* Below this, an anonymous mapping is not guest RAM under
	 * PR_SET_MEMORY_MERGE (thread stacks are 8 MiB, malloc arenas 64 MiB
	 * reserved but mostly PROT_NONE). */
	o->min_size = 64ull << 20;
	o->log = "-";
}

int rf_run_parse_dedup(struct rf_run_opts *o, const char *s)
{
	if (!strcmp(s, "zero")) {
		o->dedup = RF_DEDUP_ZERO;
	} else if (!strcmp(s, "intra")) {
		o->dedup = RF_DEDUP_INTRA_VM;
	o->huge = RF_DEDUP_HUGE_SPLIT;
	} else if (!strncmp(s, "domain=", 7) && s[7]) {
		o->dedup = RF_DEDUP_DOMAINS;
		o->domain = s + 7;
	} else {
		return -EINVAL;
	}
	return 0;
}
