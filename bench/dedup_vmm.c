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
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "dedup_report.h"
#include "vmm_proc.h"

#define PG     4096ull
#define NVMS   4
#define LIBDIR "/usr/lib/x86_64-linux-gnu"

static unsigned int opt_mib = 192;
static double opt_ksm_default_timeout = 20;
static const char *opt_out = "build/bench";

static int cmp_str(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The ideal saving for NVMS guests holding the same preload: every copy
 * but one of each distinct non-zero page, and every zero page. */
static uint64_t osimage_ideal(uint64_t limit)
{
	static uint8_t page[PG], zpage[PG];
	uint64_t *hashes = calloc(limit / PG + 1, sizeof(*hashes)), off = 0, nh = 0, distinct = 0;
	char **names = NULL;
	size_t n = 0, cap = 0;
	struct dirent *de;
	DIR *d = opendir(LIBDIR);
	int dfd;

	if (!d || !hashes)
		return 0;
	while ((de = readdir(d))) {
		struct stat st;

		if (fnmatch("*.so*", de->d_name, 0) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(st.st_mode) || !st.st_size)
			continue;
		if (n == cap)
			names = realloc(names, (cap = cap ? 2 * cap : 256) * sizeof(*names));
		names[n++] = strdup(de->d_name);
	}
	closedir(d);
	qsort(names, n, sizeof(*names), cmp_str);
	dfd = open(LIBDIR, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (size_t i = 0; i < n && off < limit; i++) {
		int fd = openat(dfd, names[i], O_RDONLY | O_CLOEXEC);
		ssize_t r;

		if (fd < 0)
			continue;
		for (;;) {
			uint64_t want = limit - off < PG ? limit - off : PG;

			memset(page, 0, PG);
			r = read(fd, page, (size_t)want);
			if (r <= 0)
				break;
			if (memcmp(page, zpage, PG))
				hashes[nh++] = XXH3_64bits(page, PG);
			off += PG;
			if (r < (ssize_t)want || off >= limit)
				break;
		}
		close(fd);
	}
	close(dfd);
	qsort(hashes, nh, sizeof(*hashes), cmp_u64);
	for (uint64_t i = 0; i < nh; i++)
		if (i == 0 || hashes[i] != hashes[i - 1])
			distinct++;
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	free(hashes);
	return ((uint64_t)NVMS * (off / PG) - distinct) * PG;
}

static int ksm_run(void)
{
	int v = -1;
	FILE *f = fopen("/sys/kernel/mm/ksm/run", "re");

	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static double jnum(const char *reply, const char *key)
{
	char pat[80];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(reply, pat);
	return p ? strtod(p + strlen(pat), NULL) : -1;
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
	double t0, best = 0, last_growth_t, conv_t = -1, conv_cpu = 0, idle_window = 3;
	struct vmm_proc p;
	char reply[8192];

	if (start(&p, dedup_args))
		return -1;
	/* Dedup runs from VM setup on; the clock starts when all guests are
	 * READY, which is when their content is in place. */
	t0 = bench_now_s();
	last_growth_t = t0;
	for (;;) {
		struct vmm_smaps sm;
		double t, saved, cpu;

		usleep(100000);
		t = bench_now_s();
		if (vmm_smaps_rollup(p.pid, &sm) ||
		    vmm_proc_ctl(&p, "{\"execute\":\"query-dedup\"}", reply, sizeof(reply), 10000))
			break;
		cpu = jnum(reply, "cpu-ns") / 1e9;
		saved = base > sm.pss ? (double)(base - sm.pss) : 0;
		result_add(r, t - t0, saved, cpu);
		if (ksm && ksm_run() != 1) {
			/* KSM is host-wide: another process switched it. */
			snprintf(r->note, sizeof(r->note),
				 "KSM switched off by another process at %.1f s", t - t0);
			r->idle_cpu_share = -1;
			break;
		}
		if (saved > best * 1.005 + 65536) {
			best = saved;
			last_growth_t = t;
		}
		if (conv_t < 0) {
			bool done = ksm ? (best > 0.5 * (double)ideal && t - last_growth_t > 3.0)
					: (strstr(reply, "\"converged\":true") &&
					   jnum(reply, "scan-passes") >= 3);

			if (done) {
				conv_t = t;
				conv_cpu = cpu;
			} else if (t - t0 > timeout) {
				snprintf(r->note, sizeof(r->note), "stopped after %.0f s", timeout);
				conv_t = t;
				conv_cpu = cpu;
				idle_window = 0;
			}
		} else if (t - conv_t >= idle_window) {
			r->idle_cpu_share = idle_window > 0 ? (cpu - conv_cpu) / (t - conv_t) : -1;
			break;
		}
	}
	r->final_saved = r->n ? r->s[r->n - 1].saved : 0;
	if (r->note[0] == 'K') /* cut short: the best it reached */
		for (unsigned int i = 0; i < r->n; i++)
			if (r->s[i].saved > r->final_saved)
				r->final_saved = r->s[i].saved;
	r->ran = r->n > 0;
	vmm_proc_stop(&p);
	vmm_proc_free(&p);
	return 0;
}

int main(int argc, char **argv)
{
	struct result rs[3] = {
	    {.name = "ramfold"},
	    {.name = "ksm-fastest"},
	    {.name = "ksm-default"},
	};
	const char *a_ramfold[] = {"--dedup", "domains", NULL};
	const char *a_fast[] = {"--dedup", "ksm", "--dedup-ksm", "10000/0", NULL};
	const char *a_default[] = {"--dedup", "ksm", "--dedup-ksm", "100/20", NULL};
	char title[128];
	uint64_t base, ideal;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--mib") && i + 1 < argc)
			opt_mib = (unsigned int)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ksm-default-timeout") && i + 1 < argc)
			opt_ksm_default_timeout = atof(argv[++i]);
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			opt_out = argv[++i];
		else {
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
	for (int k = 0; k < 3; k++)
		result_summarise(&rs[k], ideal);
	printf("VMM Pss with --dedup off: %.1f MiB\n", (double)base / 1048576);
	results_print(rs, 3, ideal);
	snprintf(title, sizeof(title), "VMM Pss fall over time, %d osimage guests of 256 MiB",
		 NVMS);
	results_write(rs, 3, ideal, opt_out, "dedup_vmm", title);
	printf("results: %s/dedup_vmm.csv, %s/dedup_vmm_summary.csv, %s/dedup_vmm.svg\n", opt_out,
	       opt_out, opt_out);
	return 0;
}
