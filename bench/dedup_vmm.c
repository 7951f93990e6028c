/* SPDX-License-Identifier: MIT */
/*
 * bench/dedup_vmm: ramfold's dedup engine against the kernel's KSM on real
 * guests: the demo VMM with 4 guests of 256 MiB running osimage on the same
 * files (the page cache of VMs booted from one OS image), once per engine.
 *
 * The saving is the fall of the VMM's Pss (smaps_rollup) from a run with
 * --dedup off; the ideal is computed from the files the guests hold (the
 * bench reads them as the VMM preloads them). CPU: the engine's threads
 * (ramfold) or ksmd (KSM), from query-dedup. Same table, CSV and SVG as
 * bench/dedup, as build/bench/dedup_vmm*.
 *
 * Usage: dedup_vmm [--mib N] [--ksm-default-timeout S] [--out DIR]
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dedup_report.h"
#include "dedup_util.h"
#include "vmm_proc.h"

#define PG     4096ull
#define NVMS   4
#define LIBDIR "/usr/lib/x86_64-linux-gnu"

static unsigned int opt_mib = 192;
static double opt_ksm_default_timeout = 20;
static const char *opt_out = "build/bench";

/* The ideal saving for NVMS guests holding the same preload (0 if the
 * files cannot be read). */
static uint64_t osimage_ideal(uint64_t limit)
{
	struct osimage_pages op;

	if (dedup_osimage_pages(LIBDIR, "*.so*", limit, &op))
		return 0;
	return ((uint64_t)NVMS * op.total - op.distinct) * PG;
}

/* Start the VMM with the 4 guests and @dedup_args, wait for READY. */
static int start(struct vmm_proc *p, const char *const *dedup_args)
{
	static char specs[NVMS][128];
	const char *args[32];
	unsigned int n = 0;

	for (unsigned int i = 0; dedup_args[i]; i++)
		args[n++] = dedup_args[i];
	for (unsigned int i = 0; i < NVMS; i++) {
		snprintf(specs[i], sizeof(specs[i]),
			 "name=os%u,mem=256M,workload=osimage,mib=%u,domain=img,console=off", i,
			 opt_mib);
		args[n++] = "--vm";
		args[n++] = specs[i];
	}
	args[n] = NULL;
	if (vmm_proc_start(p, args))
		return -1;
	for (unsigned int i = 0; i < NVMS; i++) {
		char name[8];

		snprintf(name, sizeof(name), "os%u", i);
		if (vmm_proc_wait_ready(p, name, 120000)) {
			fprintf(stderr, "dedup_vmm: %s not READY:\n%s\n", name, p->out);
			vmm_proc_stop(p);
			return -1;
		}
	}
	return 0;
}

static uint64_t baseline(void)
{
	const char *args[] = {"--dedup", "off", NULL};
	struct vmm_smaps sm = {0};
	struct vmm_proc p;

	if (start(&p, args))
		return 0;
	usleep(1500000);
	vmm_smaps_rollup(p.pid, &sm);
	vmm_proc_stop(&p);
	vmm_proc_free(&p);
	return sm.pss;
}

static int run(struct result *r, const char *const *dedup_args, bool ksm, double timeout,
	       uint64_t base, uint64_t ideal)
{
	struct conv_watch w;
	struct vmm_proc p;
	char reply[8192];

	if (start(&p, dedup_args))
		return -1;
	/* Dedup runs from VM setup on; the clock starts when all guests are
	 * READY, which is when their content is in place. */
	conv_watch_init(&w, bench_now_s(), ksm, 3.0, timeout, ideal);
	for (;;) {
		struct vmm_smaps sm;
		double t, saved, cpu;

		usleep(100000);
		t = bench_now_s();
		if (vmm_smaps_rollup(p.pid, &sm) ||
		    vmm_proc_ctl(&p, "{\"execute\":\"query-dedup\"}", reply, sizeof(reply), 10000))
			break;
		cpu = bench_json_num(reply, "cpu-ns") / 1e9;
		saved = base > sm.pss ? (double)(base - sm.pss) : 0;
		if (conv_watch_sample(&w, r, t, saved, cpu,
				      strstr(reply, "\"converged\":true") &&
					  bench_json_num(reply, "scan-passes") >= 3))
			break;
	}
	result_finish(r);
	vmm_proc_stop(&p);
	vmm_proc_free(&p);
	return 0;
}

int main(int argc, char **argv)
{
	struct result rs[DEDUP_ENGINES];
	const char *a_ramfold[] = {"--dedup", "domains", NULL};
	const char *a_fast[] = {"--dedup", "ksm", "--dedup-ksm", "10000/0", NULL};
	const char *a_default[] = {"--dedup", "ksm", "--dedup-ksm", "100/20", NULL};
	char title[128];
	uint64_t base, ideal;

	results_init(rs);
	for (int i = 1; i < argc; i++) {
		if (!bench_common_opt(argc, argv, &i, &opt_mib, &opt_ksm_default_timeout,
				      &opt_out)) {
			fprintf(stderr,
				"usage: %s [--mib N] [--ksm-default-timeout S] [--out DIR]\n",
				argv[0]);
			return 2;
		}
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("dedup_vmm: /dev/kvm not accessible: skipped\n");
		return 0;
	}
	printf("dedup_vmm bench: %d guests of 256 MiB, osimage over %u MiB of %s (one domain)\n",
	       NVMS, opt_mib, LIBDIR);
	ideal = osimage_ideal((uint64_t)opt_mib << 20);
	base = baseline();
	if (!base) {
		fprintf(stderr, "dedup_vmm: baseline run failed\n");
		return 1;
	}
	run(&rs[0], a_ramfold, false, 60, base, ideal);
	if (access("/sys/kernel/mm/ksm/run", W_OK) == 0) {
		run(&rs[1], a_fast, true, 60, base, ideal);
		run(&rs[2], a_default, true, opt_ksm_default_timeout, base, ideal);
	} else {
		snprintf(rs[1].note, sizeof(rs[1].note), "kernel KSM not available");
		snprintf(rs[2].note, sizeof(rs[2].note), "kernel KSM not available");
	}
	printf("VMM Pss with --dedup off: %.1f MiB\n", (double)base / 1048576);
	snprintf(title, sizeof(title), "VMM Pss fall over time, %d osimage guests of 256 MiB",
		 NVMS);
	results_report(rs, ideal, opt_out, "dedup_vmm", title);
	return 0;
}
