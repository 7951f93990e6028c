/* SPDX-License-Identifier: MIT */
/*
 * Inflate and deflate of 1 GiB end to end: the demo VMM with one 1.5 GiB
 * guest that first touches (and frees) 1.3 GiB, then a 1 GiB balloon target
 * set through the control socket, timed until the guest's `actual` reaches
 * it, and back to 0. Also the VMM's RSS (smaps_rollup) before and after.
 * Free page reporting is off for this VM so that the RSS drop is the
 * balloon's. Prints a table and writes $B/bench/balloon_e2e.csv.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "vmm_proc.h"

#define MiB (1ull << 20)

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static long long actual(struct vmm_proc *p)
{
	char reply[4096];
	const char *a;

	if (vmm_proc_ctl(p, "{\"execute\":\"query-balloon\",\"arguments\":{\"vm\":\"b\"}}", reply,
			 sizeof(reply), 5000))
		return -1;
	a = strstr(reply, "\"actual\":");
	return a ? strtoll(a + 9, NULL, 10) : -1;
}

/* Set the target and time until actual equals it (ns), or 0 on timeout. */
static uint64_t timed(struct vmm_proc *p, const char *size, uint64_t bytes)
{
	char req[160], reply[512];
	uint64_t t0 = now_ns();
	struct timespec ts = {0, 5 * 1000000};

	snprintf(req, sizeof(req),
		 "{\"execute\":\"set-balloon\",\"arguments\":{\"vm\":\"b\",\"balloon\":\"%s\"}}",
		 size);
	if (vmm_proc_ctl(p, req, reply, sizeof(reply), 5000) || !strstr(reply, "return"))
		return 0;
	while (now_ns() - t0 < 60000000000ull) {
		if (actual(p) == (long long)bytes)
			return now_ns() - t0;
		nanosleep(&ts, NULL);
	}
	return 0;
}

int main(void)
{
	const char *args[] = {
	    "--vm", "name=b,mem=1536M,workload=churn,mib=1300,rounds=1,balloon-report=off", NULL};
	const char *dir = getenv("B") ? getenv("B") : "build";
	struct vmm_proc p;
	struct vmm_smaps s0, s1, s2;
	uint64_t tin, tout;
	char path[256];
	FILE *csv;

	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("balloon e2e: skipped (/dev/kvm not accessible)\n");
		return 0;
	}
	if (vmm_proc_start(&p, args) || vmm_proc_wait_output(&p, "RESULT churn", 120000)) {
		fprintf(stderr, "balloon e2e: VMM did not come up:\n%s\n", p.out ? p.out : "");
		return 1;
	}
	vmm_smaps_rollup(p.pid, &s0);
	tin = timed(&p, "1G", 1024 * MiB);
	vmm_smaps_rollup(p.pid, &s1);
	tout = timed(&p, "0", 0);
	vmm_smaps_rollup(p.pid, &s2);
	vmm_proc_stop(&p);
	vmm_proc_free(&p);
	if (!tin || !tout) {
		fprintf(stderr, "balloon e2e: the guest did not reach the target\n");
		return 1;
	}
	snprintf(path, sizeof(path), "%s/bench/balloon_e2e.csv", dir);
	csv = fopen(path, "w");
	printf("balloon: 1 GiB end to end with the guest (1.5 GiB VM, 256-PFN buffers)\n");
	printf("  %-10s %9s %8s %14s %14s\n", "operation", "seconds", "GiB/s", "VMM RSS before",
	       "VMM RSS after");
	printf("  %-10s %9.3f %8.2f %10llu MiB %10llu MiB\n", "inflate", tin / 1e9, 1e9 / tin,
	       (unsigned long long)(s0.rss / MiB), (unsigned long long)(s1.rss / MiB));
	printf("  %-10s %9.3f %8.2f %10llu MiB %10llu MiB\n", "deflate", tout / 1e9, 1e9 / tout,
	       (unsigned long long)(s1.rss / MiB), (unsigned long long)(s2.rss / MiB));
	if (csv) {
		fprintf(csv, "operation,bytes,seconds,gib_per_s,rss_before,rss_after\n");
		fprintf(csv, "inflate,%llu,%.6f,%.3f,%llu,%llu\n", 1024 * MiB, tin / 1e9, 1e9 / tin,
			(unsigned long long)s0.rss, (unsigned long long)s1.rss);
		fprintf(csv, "deflate,%llu,%.6f,%.3f,%llu,%llu\n", 1024 * MiB, tout / 1e9,
			1e9 / tout, (unsigned long long)s1.rss, (unsigned long long)s2.rss);
		fclose(csv);
		printf("  CSV: %s\n", path);
	}
	return 0;
}
