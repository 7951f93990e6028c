/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "host.h"

bool bench_file_line(const char *path, char *out, size_t cap)
{
	FILE *f = fopen(path, "re");
	bool ok = f && fgets(out, (int)cap, f);

	if (f)
		fclose(f);
	if (ok)
		out[strcspn(out, "\n")] = 0;
	return ok;
}

double bench_loadavg(void)
{
	char l[128];

	return bench_file_line("/proc/loadavg", l, sizeof(l)) ? atof(l) : -1;
}

void bench_host_describe(char *out, size_t cap)
{
	char gov[64];

	if (!bench_file_line("/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor", gov,
			     sizeof(gov)))
		snprintf(gov, sizeof(gov), "no cpufreq");
	snprintf(out, cap, "host: %ld CPUs online, cpu0 frequency policy: %s, load average %.2f",
		 sysconf(_SC_NPROCESSORS_ONLN), gov, bench_loadavg());
}

void bench_host_line(const char *bench)
{
	char host[160];

	bench_host_describe(host, sizeof(host));
	printf("%s: %s at start\n", bench, host);
}

void bench_wait_quiet(const char *bench, int max_s)
{
	double l = bench_loadavg();
	int waited = 0;

	while (l >= 0.9 && waited < max_s) {
		sleep(5);
		waited += 5;
		l = bench_loadavg();
	}
	if (waited)
		printf("%s: waited %d s for the load average to fall below 0.9 (%.2f)\n", bench,
		       waited, l);
}
