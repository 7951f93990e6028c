/* SPDX-License-Identifier: MIT */
/*
 * bench/dedup_thp: huge pages and dedup in the demo VMM (issue 17, "Huge
 * pages the way ESX treats them"; docs/dedup.md, "Huge pages").
 *
 * Part 1, what THP gives the guests: a memcheck and a hotcold guest (as in
 * bench/guest_cost), dedup off, with thp=off then thp=on, --rounds times
 * interleaved (medians and ranges); each guest's
 * throughput (query-vms' work-bytes) over --seconds, from SETTLE_S after
 * READY. On a host whose KVM has EPT/NPT the huge pages save TLB misses;
 * this machine's kvm_pvm shadows the guest's page tables in 4 KiB pages, so
 * what it shows is its own (the docs say what).
 *
 * Part 2, what dedup saves on THP-backed guests: two dup guests (a share of
 * their pages copies of a few templates, a share all zero, the rest
 * unique), in six configurations, one VMM each:
 *   thp off, dedup off            the baseline
 *   thp on,  dedup off            what THP itself costs in memory
 *   thp off, dedup intra          no policy: today's saving
 *   thp on,  intra, policy high   huge pages kept whole (budget MemTotal)
 *   thp on,  intra, policy low    cold huge pages split and merged
 *                                 (--host-budget below the guests' use)
 *   thp on,  dedup ksm            the kernel's KSM at its fastest (10000
 *                                 pages a wake-up, no sleep)
 * each measured by the kernel once the engine has converged (or the VMM's
 * Pss has stopped falling, for KSM): the VMM's Pss and AnonHugePages
 * (/proc/PID/smaps_rollup), with what dedup measures itself (saved-bytes)
 * and its huge-page counters (query-dedup).
 *
 * The host line (load, CPUs, frequency policy) is printed first; each run's
 * load average at its start is printed with it, and a load of 1 or more makes
 * the throughput table "noisy". Three throughput rounds and one saving run of
 * each configuration (about 4 minutes on a quiet machine), so not part of
 * `make bench`.
 *
 * Usage: dedup_thp [--rounds N] [--seconds S] [--wait S] [--skip-throughput]
 *                  [--skip-saving]
 * (--wait: the longest wait for a quiet machine before a run, 60 s).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dedup_report.h"
#include "host.h"
#include "vmm_proc.h"

#define SETTLE_S 3
#define MIB	 (1024.0 * 1024.0)

static double opt_seconds = 8;
static unsigned int opt_rounds = 3;
static int opt_wait = 60; /* longest wait for a quiet machine before a run, s */

/* /proc/PID/smaps_rollup: Pss and AnonHugePages, bytes. 0 or -1. */
static int rollup(pid_t pid, double *pss, double *huge)
{
	char path[64], line[256];
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -1;
	*pss = *huge = 0;
	while (fgets(line, sizeof(line), f)) {
		unsigned long kb;

		if (sscanf(line, "Pss: %lu kB", &kb) == 1)
			*pss = kb * 1024.0;
		else if (sscanf(line, "AnonHugePages: %lu kB", &kb) == 1)
			*huge = kb * 1024.0;
	}
	fclose(f);
	return 0;
}

/* Start the VMM with @args (NULL-terminated) and wait for @names READY:
 * the seconds it took, or -1 (said, the VMM stopped). */
static double start(struct vmm_proc *p, const char *const *args, const char *const *names)
{
	double t0 = bench_now_s();

	if (vmm_proc_start(p, args)) {
		fprintf(stderr, "dedup_thp: the VMM did not start:\n%s\n", p->out);
		vmm_proc_free(p);
		return -1;
	}
	for (unsigned int i = 0; names[i]; i++)
		if (vmm_proc_wait_ready(p, names[i], 120000)) {
			fprintf(stderr, "dedup_thp: %s not READY:\n%s\n", names[i], p->out);
			vmm_proc_stop(p);
			vmm_proc_free(p);
			return -1;
		}
	return bench_now_s() - t0;
}

static void stop(struct vmm_proc *p)
{
	vmm_proc_stop(p);
	vmm_proc_free(p);
}

/* ---- part 1: throughput ------------------------------------------------- */

static const char *const tp_names[] = {"memcheck", "hotcold", NULL};

/* The guests' work-bytes from query-vms into @v[2]: 0 or -1. */
static int work_bytes(struct vmm_proc *p, double v[2])
{
	char reply[4096];

	if (vmm_proc_ctl(p, "{\"execute\":\"query-vms\"}", reply, sizeof(reply), 5000))
		return -1;
	for (unsigned int g = 0; g < 2; g++) {
		char key[48];
		const char *o;

		snprintf(key, sizeof(key), "{\"name\":\"%s\"", tp_names[g]);
		o = strstr(reply, key);
		v[g] = o ? bench_json_num(o, "work-bytes") : -1;
		if (v[g] < 0)
			return -1;
	}
	return 0;
}

static int throughput(bool thp, double rate[2], double *ready_s)
{
	char spec[2][160];
	const char *args[8] = {"--dedup", "off", "--vm", spec[0], "--vm", spec[1], NULL};
	struct vmm_proc p;
	double a[2], b[2], t0, t1;

	snprintf(spec[0], sizeof(spec[0]),
		 "name=memcheck,mem=384M,workload=memcheck,mib=320,console=off,thp=%s",
		 thp ? "on" : "off");
	snprintf(spec[1], sizeof(spec[1]),
		 "name=hotcold,mem=320M,workload=hotcold,mib=224,hot=64,console=off,thp=%s",
		 thp ? "on" : "off");
	*ready_s = start(&p, args, tp_names);
	if (*ready_s < 0)
		return -1;
	sleep(SETTLE_S);
	t0 = bench_now_s();
	if (work_bytes(&p, a))
		goto fail;
	usleep((useconds_t)(opt_seconds * 1e6));
	t1 = bench_now_s();
	if (work_bytes(&p, b))
		goto fail;
	for (unsigned int g = 0; g < 2; g++)
		rate[g] = (b[g] - a[g]) / (t1 - t0);
	stop(&p);
	return 0;
fail:
	fprintf(stderr, "dedup_thp: query-vms failed\n");
	stop(&p);
	return -1;
}

/* --rounds rounds of thp=off then thp=on, interleaved: the medians and
 * ranges, each run's load average at its start said. */
static int part_throughput(void)
{
	double r[2][2][BENCH_MAX_ROUNDS], ready[2][BENCH_MAX_ROUNDS], ratio[2][BENCH_MAX_ROUNDS];
	double maxload = 0;
	char c[3][64];

	for (unsigned int i = 0; i < opt_rounds; i++) {
		for (unsigned int k = 0; k < 2; k++) {
			double rate[2], load;

			bench_wait_quiet("dedup_thp bench", opt_wait);
			load = bench_loadavg();
			if (load > maxload)
				maxload = load;
			printf("dedup_thp bench: throughput round %u, thp=%s: load average %.2f at "
			       "start\n",
			       i + 1, k ? "on" : "off", load);
			fflush(stdout);
			if (throughput(k == 1, rate, &ready[k][i]))
				return -1;
			r[k][0][i] = rate[0];
			r[k][1][i] = rate[1];
		}
		for (unsigned int g = 0; g < 2; g++)
			ratio[g][i] = r[1][g][i] / r[0][g][i];
	}
	printf("\nguest throughput, dedup off, over %.0f s from %d s after READY: median "
	       "(min..max) of %u interleaved rounds\n",
	       opt_seconds, SETTLE_S, opt_rounds);
	printf("%-10s %-24s %-24s %-24s\n", "guest", "thp=off (MB/s)", "thp=on (MB/s)",
	       "on/off (%)");
	for (unsigned int g = 0; g < 2; g++) {
		bench_median_cell(c[0], 64, r[0][g], opt_rounds, 1e-6, "%.0f");
		bench_median_cell(c[1], 64, r[1][g], opt_rounds, 1e-6, "%.0f");
		bench_median_cell(c[2], 64, ratio[g], opt_rounds, 100, "%.1f");
		printf("%-10s %-24s %-24s %-24s\n", tp_names[g], c[0], c[1], c[2]);
	}
	bench_median_cell(c[0], 64, ready[0], opt_rounds, 1, "%.2f");
	bench_median_cell(c[1], 64, ready[1], opt_rounds, 1, "%.2f");
	printf("time to READY (both guests): thp=off %s s, thp=on %s s\n", c[0], c[1]);
	if (maxload >= 1)
		printf("noisy: load average %.2f at a run's start (1 or more): not a result\n",
		       maxload);
	printf("\n");
	return 0;
}

/* ---- part 2: saving ----------------------------------------------------- */

static const char *const sv_names[] = {"d0", "d1", NULL};

struct config {
	const char *label;
	bool thp;
	const char *dedup; /* --dedup MODE */
	bool policy;
	bool pressure; /* --host-budget below the guests' use */
};

static const struct config configs[] = {
    {"thp off, dedup off", false, "off", false, false},
    {"thp on,  dedup off", true, "off", false, false},
    {"thp off, intra", false, "intra", false, false},
    {"thp on,  intra, high", true, "intra", true, false},
    {"thp on,  intra, low", true, "intra", true, true},
    {"thp on,  ksm fastest", true, "ksm", false, false},
};
#define NCONF (sizeof(configs) / sizeof(configs[0]))

struct saving {
	double pss, huge, saved, t;
	double kept, zero_freed, opened, vma_stops;
	char mode[16];
};

static int saving(const struct config *c, struct saving *s)
{
	char spec[2][160], reply[8192];
	const char *args[24];
	unsigned int n = 0;
	struct vmm_proc p;
	double t0, last_pss = 0, last_t = 0;

	args[n++] = "--dedup";
	args[n++] = c->dedup;
	if (!strcmp(c->dedup, "ksm")) {
		args[n++] = "--dedup-ksm";
		args[n++] = "10000/0";
	}
	if (c->policy) {
		/* As an embedder running the policy should: no pass before
		 * its first tick splits a huge page. */
		args[n++] = "--dedup-huge";
		args[n++] = "keep";
		args[n++] = "--policy";
		args[n++] = "200";
		args[n++] = "--policy-swap";
		args[n++] = "off";
		args[n++] = "--max-overcommit";
		args[n++] = "100";
	}
	if (c->pressure) {
		args[n++] = "--host-budget";
		args[n++] = "32M";
	}
	for (unsigned int i = 0; i < 2; i++) {
		snprintf(spec[i], sizeof(spec[i]),
			 "name=%s,mem=256M,workload=dup,mib=96,dup=60,zero=20,templates=64,"
			 "seed=%u,console=off,thp=%s",
			 sv_names[i], 7 + i, c->thp ? "on" : "off");
		args[n++] = "--vm";
		args[n++] = spec[i];
	}
	args[n] = NULL;
	if (start(&p, args, sv_names) < 0)
		return -1;
	t0 = bench_now_s();
	/* The Pss still for 3 s (not 1 MiB lower), and the own engine
	 * converged (its flag, after 3 passes): at most 60 s. */
	for (;;) {
		double t, pss, huge;
		bool conv;

		usleep(500000);
		t = bench_now_s() - t0;
		if (rollup(p.pid, &pss, &huge) ||
		    vmm_proc_ctl(&p, "{\"execute\":\"query-dedup\"}", reply, sizeof(reply), 10000))
			break;
		conv = strstr(reply, "\"converged\":true") &&
		       bench_json_num(reply, "scan-passes") >= 3;
		if (last_t == 0 || pss < last_pss - MIB) {
			last_pss = pss;
			last_t = t;
		}
		if (t > 60 || (t > 4 && t - last_t >= 3 && (conv || strcmp(c->dedup, "intra")))) {
			const char *m = strstr(reply, "\"huge-mode\":\"");

			s->pss = pss;
			s->huge = huge;
			s->t = t;
			s->saved = bench_json_num(reply, "saved-bytes");
			s->kept = bench_json_num(reply, "huge-kept-pages");
			s->zero_freed = bench_json_num(reply, "huge-zero-freed");
			s->opened = bench_json_num(reply, "huge-opened");
			s->vma_stops = bench_json_num(reply, "vma-budget-stops");
			snprintf(s->mode, sizeof(s->mode), "%s", "-");
			if (m)
				sscanf(m + 13, "%15[^\"]", s->mode);
			stop(&p);
			return 0;
		}
	}
	fprintf(stderr, "dedup_thp: %s: query-dedup failed\n", c->label);
	stop(&p);
	return -1;
}

static int part_saving(void)
{
	struct saving s[NCONF];

	for (unsigned int k = 0; k < NCONF; k++) {
		bench_wait_quiet("dedup_thp bench", opt_wait);
		printf("dedup_thp bench: saving, %s: load average %.2f at start\n",
		       configs[k].label, bench_loadavg());
		fflush(stdout);
		memset(&s[k], 0, sizeof(s[k]));
		if (saving(&configs[k], &s[k]))
			return -1;
	}
	printf("\ntwo dup guests (mem=256M, mib=96, dup=60%%, zero=20%%, 64 templates): the VMM "
	       "measured by the kernel once converged\n");
	printf("%-22s %9s %9s %11s %11s %11s %11s %8s %8s %8s %6s\n", "configuration", "Pss MiB",
	       "THP MiB", "vs thp-off", "vs thp-on", "saved-bytes", "mode", "zeroHP", "opened",
	       "vmastops", "t s");
	for (unsigned int k = 0; k < NCONF; k++)
		printf("%-22s %9.1f %9.1f %11.1f %11.1f %11.1f %11s %8.0f %8.0f %8.0f %6.1f\n",
		       configs[k].label, s[k].pss / MIB, s[k].huge / MIB,
		       (s[0].pss - s[k].pss) / MIB, (s[1].pss - s[k].pss) / MIB,
		       s[k].saved > 0 ? s[k].saved / MIB : 0, s[k].mode,
		       s[k].zero_freed > 0 ? s[k].zero_freed : 0, s[k].opened > 0 ? s[k].opened : 0,
		       s[k].vma_stops > 0 ? s[k].vma_stops : 0, s[k].t);
	printf("(vs thp-off / vs thp-on: MiB of Pss below the dedup-off run with THP off / on; "
	       "saved-bytes: what dedup measures itself, MiB; zeroHP: all-zero huge pages "
	       "discarded whole; opened: cold huge pages opened to merges, counted per pass; "
	       "vmastops: merges refused by the VMA budget)\n");
	return 0;
}

int main(int argc, char **argv)
{
	bool do_tp = true, do_sv = true;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			opt_seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			opt_rounds = (unsigned int)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--wait") && i + 1 < argc)
			opt_wait = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--skip-throughput"))
			do_tp = false;
		else if (!strcmp(argv[i], "--skip-saving"))
			do_sv = false;
		else {
			fprintf(stderr,
				"usage: %s [--seconds S] [--wait S] [--skip-throughput] "
				"[--skip-saving]\n",
				argv[0]);
			return 2;
		}
	}
	if (opt_rounds < 1 || opt_rounds > BENCH_MAX_ROUNDS || opt_seconds <= 0) {
		fprintf(stderr, "dedup_thp: --rounds 1..%d, --seconds above 0\n", BENCH_MAX_ROUNDS);
		return 2;
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("dedup_thp: /dev/kvm not accessible: skipped\n");
		return 0;
	}
	bench_host_line("dedup_thp bench");
	{
		char buf[128] = "";
		FILE *f = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re");

		if (f) {
			if (!fgets(buf, sizeof(buf), f))
				buf[0] = 0;
			fclose(f);
		}
		printf("dedup_thp bench: transparent_hugepage/enabled: %s", buf[0] ? buf : "?\n");
		if (!buf[0] || strstr(buf, "[never]")) {
			printf("dedup_thp: THP off on this host: skipped\n");
			return 0;
		}
	}
	if (do_tp && part_throughput())
		return 1;
	if (do_sv && part_saving())
		return 1;
	return 0;
}
