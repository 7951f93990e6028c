/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/host_mem.h"

static void field(const char *line, const char *name, uint64_t *out)
{
	size_t n = strlen(name);
	unsigned long long kb;

	if (!strncmp(line, name, n) && line[n] == ':' && sscanf(line + n + 1, "%llu", &kb) == 1)
		*out = (uint64_t)kb * 1024;
}

int host_mem_read(pid_t pid, struct host_mem *hm)
{
	char path[64], line[256];
	FILE *f;

	memset(hm, 0, sizeof(*hm));
	if (pid)
		snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	else
		snprintf(path, sizeof(path), "/proc/self/smaps_rollup");
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		field(line, "Rss", &hm->rss);
		field(line, "Pss", &hm->pss);
		field(line, "Anonymous", &hm->anon);
		field(line, "Pss_Anon", &hm->pss_anon);
		field(line, "Pss_File", &hm->pss_file);
	}
	fclose(f);
	f = fopen("/proc/meminfo", "re");
	if (f) {
		while (fgets(line, sizeof(line), f))
			field(line, "MemAvailable", &hm->mem_available);
		fclose(f);
	}
	return 0;
}
