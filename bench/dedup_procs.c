/* SPDX-License-Identifier: MIT */
/*
 * bench/dedup_procs: one sharing domain across processes (issue 16). Four
 * osimage guests of 256 MiB on the same files, in one domain, run two ways:
 *
 *   one process   one ramfold-vmm with the four guests (in-process sharing)
 *   four procs    four ramfold-vmm, one guest each, sharing through a
 *                 private ramfoldd (--dedup-broker)
 *
 * The same footing for both: every VMM starts with --dedup-paused, so its
 * guests boot to READY with nothing merged; 2 s later the Pss of all the
 * processes is read (the baseline) and set-dedup {"run":true} releases
 * every VMM's scanner: that instant is t0. The saving is the fall of the
 * processes' summed Pss (smaps_rollup) below the baseline; the broker's own
 * Pss (its index; it fills the store with pwrite and maps none of it) is
 * added to the four processes', since it is part of what sharing costs.
 * Time: from t0 to 95% of the run's final saving, sampled every 20 ms for
 * the first 2 s, then every 100 ms; CPU: the engines' threads (query-dedup
 * cpu-ns), summed, and the broker's.
 * Three rounds, interleaved; the table gives the median and the range, with
 * the load average at the start of each round. Targets: four processes
 * save at least 95% of one process's saving, and reach 95% of it within
 * 1.5x its time.
 *
 * Usage: dedup_procs [--mib N] [--rounds N] [--out DIR]
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "dedup_report.h"
#include "broker_proc.h"
#include "dedup_util.h"
#include "vmm_proc.h"

#define NVMS	  4
#define MAXROUNDS 5

static unsigned int opt_mib = 192, opt_rounds = 3;
static const char *opt_out = "build/bench";
static char bdir[64], bsock[96], broker_bin[256];

/* Start @nprocs VMMs holding NVMS guests between them; wait for READY. */
static int start(struct vmm_proc *p, unsigned int nprocs, const char *dedup, bool broker)
{
	static char specs[NVMS][128];
	unsigned int per = NVMS / nprocs;

	for (unsigned int k = 0; k < nprocs; k++) {
		const char *args[32];
		unsigned int n = 0;

		args[n++] = "--dedup";
		args[n++] = dedup;
		args[n++] = "--dedup-paused";
		if (broker) {
			args[n++] = "--dedup-broker";
			args[n++] = bsock;
		}
		for (unsigned int i = k * per; i < (k + 1) * per; i++) {
			snprintf(
			    specs[i], sizeof(specs[i]),
			    "name=os%u,mem=256M,workload=osimage,mib=%u,domain=img,console=off", i,
			    opt_mib);
			args[n++] = "--vm";
			args[n++] = specs[i];
		}
		args[n] = NULL;
		if (vmm_proc_start(&p[k], args)) {
			for (unsigned int j = 0; j < k; j++) {
				vmm_proc_stop(&p[j]);
				vmm_proc_free(&p[j]);
			}
			return -1;
		}
	}
	for (unsigned int k = 0; k < nprocs; k++)
		for (unsigned int i = k * per; i < (k + 1) * per; i++) {
			char name[8];

			snprintf(name, sizeof(name), "os%u", i);
			if (vmm_proc_wait_ready(&p[k], name, 180000)) {
				fprintf(stderr, "dedup_procs: %s not READY:\n%s\n", name, p[k].out);
				return -1;
			}
		}
	return 0;
}

static void stop(struct vmm_proc *p, unsigned int nprocs)
{
	for (unsigned int k = 0; k < nprocs; k++) {
		vmm_proc_stop(&p[k]);
		vmm_proc_free(&p[k]);
	}
}

/* CPU of a whole process, seconds (0 if it is gone). */
static double proc_cpu(pid_t pid)
{
	char path[64];
	double c;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	c = bench_stat_cpu(path);
	return c > 0 ? c : 0;
}

static uint64_t pss_sum(struct vmm_proc *p, unsigned int nprocs, pid_t broker)
{
	struct vmm_smaps sm;
	uint64_t s = 0;

	for (unsigned int k = 0; k < nprocs; k++)
		if (vmm_smaps_rollup(p[k].pid, &sm) == 0)
			s += sm.pss;
	if (broker > 0 && vmm_smaps_rollup(broker, &sm) == 0)
		s += sm.pss;
	return s;
}

struct run {
	double t95, cpu95, saved, load;
	bool done;
};

static int run(struct run *out, unsigned int nprocs)
{
	struct vmm_proc p[NVMS];
	pid_t broker = 0;
	double t0, cpu0, best = 0, ts[2048], sv[2048], cp[2048];
	uint64_t base;
	unsigned int n = 0;

	memset(out, 0, sizeof(*out));
	/* The guests of the run before raise the load for a while. */
	bench_wait_quiet("dedup_procs", 120);
	out->load = bench_loadavg();
	if (nprocs > 1 && (broker = broker_proc_start(broker_bin, bsock, NULL)) < 0) {
		fprintf(stderr, "dedup_procs: ramfoldd did not start\n");
		return -1;
	}
	if (start(p, nprocs, "domains", nprocs > 1)) {
		if (broker > 0)
			kill(broker, SIGKILL);
		return -1;
	}
	sleep(2);
	base = pss_sum(p, nprocs, broker);
	cpu0 = 0;
	for (unsigned int k = 0; k < nprocs; k++) {
		char reply[8192];

		if (vmm_proc_ctl(&p[k], "{\"execute\":\"query-dedup\"}", reply, sizeof(reply),
				 10000) == 0)
			cpu0 += bench_json_num(reply, "cpu-ns") / 1e9;
	}
	if (broker > 0)
		cpu0 += proc_cpu(broker);
	t0 = bench_now_s();
	for (unsigned int k = 0; k < nprocs; k++) {
		char reply[512];

		if (vmm_proc_ctl(&p[k], "{\"execute\":\"set-dedup\",\"arguments\":{\"run\":true}}",
				 reply, sizeof(reply), 10000) ||
		    !strstr(reply, "\"return\"")) {
			fprintf(stderr, "dedup_procs: set-dedup: %s\n", reply);
			stop(p, nprocs);
			if (broker > 0)
				kill(broker, SIGKILL);
			return -1;
		}
	}
	while (n < 2048) {
		unsigned int conv = 0;
		double cpu = 0, t;
		uint64_t pss;

		usleep(bench_now_s() - t0 < 2 ? 20000 : 100000);
		t = bench_now_s() - t0;
		for (unsigned int k = 0; k < nprocs; k++) {
			char reply[8192];

			if (vmm_proc_ctl(&p[k], "{\"execute\":\"query-dedup\"}", reply,
					 sizeof(reply), 10000) == 0) {
				cpu += bench_json_num(reply, "cpu-ns") / 1e9;
				conv += strstr(reply, "\"converged\":true") &&
					bench_json_num(reply, "scan-passes") >= 3;
			}
		}
		if (broker > 0)
			cpu += proc_cpu(broker); /* its work is part of the sharing */
		pss = pss_sum(p, nprocs, broker);
		ts[n] = t;
		sv[n] = base > pss ? (double)(base - pss) : 0;
		cp[n] = cpu - cpu0;
		if (sv[n] > best)
			best = sv[n];
		n++;
		if ((conv == nprocs && t > 3) || t > 120)
			break;
	}
	out->saved = best;
	out->done = true;
	for (unsigned int i = 0; i < n; i++)
		if (sv[i] >= 0.95 * best) {
			out->t95 = ts[i];
			out->cpu95 = cp[i];
			break;
		}
	stop(p, nprocs);
	broker_proc_stop(&broker, SIGTERM, bsock);
	return 0;
}

static int cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(const double *v, unsigned int n, double *lo, double *hi)
{
	double s[MAXROUNDS];

	memcpy(s, v, n * sizeof(*v));
	qsort(s, n, sizeof(*s), cmpd);
	*lo = s[0];
	*hi = s[n - 1];
	return s[n / 2];
}

int main(int argc, char **argv)
{
	double t95[2][MAXROUNDS], cpu[2][MAXROUNDS], saved[2][MAXROUNDS], load[MAXROUNDS];
	static const char *const names[2] = {"one process, 4 guests", "4 processes + ramfoldd"};
	double maxload = 0, lo, hi, m[2][3];
	char path[256];
	FILE *csv;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--mib") && i + 1 < argc)
			opt_mib = (unsigned int)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			opt_rounds = (unsigned int)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			opt_out = argv[++i];
		else {
			fprintf(stderr, "usage: %s [--mib N] [--rounds N] [--out DIR]\n", argv[0]);
			return 2;
		}
	}
	if (opt_rounds < 1 || opt_rounds > MAXROUNDS)
		opt_rounds = 3;
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("dedup_procs: /dev/kvm not accessible: skipped\n");
		return 0;
	}
	snprintf(bdir, sizeof(bdir), "/tmp/rf-procs.XXXXXX");
	if (!mkdtemp(bdir))
		return 1;
	snprintf(bsock, sizeof(bsock), "%s/broker.sock", bdir);
	snprintf(broker_bin, sizeof(broker_bin), "%s/ramfoldd",
		 getenv("B") ? getenv("B") : "build");
	printf("dedup_procs bench: %d osimage guests of 256 MiB over %u MiB, one domain; "
	       "%u CPUs, load %.2f at start\n",
	       NVMS, opt_mib, (unsigned int)sysconf(_SC_NPROCESSORS_ONLN), bench_loadavg());
	for (unsigned int r = 0; r < opt_rounds; r++)
		for (unsigned int l = 0; l < 2; l++) {
			struct run x;

			if (run(&x, l ? NVMS : 1)) {
				fprintf(stderr, "dedup_procs: round %u (%s) failed\n", r + 1,
					names[l]);
				return 1;
			}
			t95[l][r] = x.t95;
			cpu[l][r] = x.cpu95;
			saved[l][r] = x.saved;
			if (l == 0)
				load[r] = x.load;
			if (x.load > maxload)
				maxload = x.load;
			printf(
			    "  round %u, %-24s load %.2f: saved %.1f MiB, t95 %.2f s, CPU %.2f s\n",
			    r + 1, names[l], x.load, x.saved / 1048576, x.t95, x.cpu95);
		}
	snprintf(path, sizeof(path), "%s/dedup_procs.csv", opt_out);
	csv = fopen(path, "we");
	if (csv)
		fprintf(csv, "layout,round,load,t95_s,cpu95_s,saved_bytes\n");
	printf("\n%-26s %-22s %-22s %-22s\n", "layout", "saved MiB (range)", "t95 s (range)",
	       "CPU to t95 s (range)");
	for (unsigned int l = 0; l < 2; l++) {
		double s_lo, s_hi, t_lo, t_hi;

		m[l][0] = median(saved[l], opt_rounds, &s_lo, &s_hi);
		m[l][1] = median(t95[l], opt_rounds, &t_lo, &t_hi);
		m[l][2] = median(cpu[l], opt_rounds, &lo, &hi);
		printf("%-26s %6.1f (%.1f..%.1f)     %5.2f (%.2f..%.2f)      %5.2f (%.2f..%.2f)\n",
		       names[l], m[l][0] / 1048576, s_lo / 1048576, s_hi / 1048576, m[l][1], t_lo,
		       t_hi, m[l][2], lo, hi);
		for (unsigned int r = 0; csv && r < opt_rounds; r++)
			fprintf(csv, "%s,%u,%.2f,%.3f,%.3f,%.0f\n", l ? "procs" : "single", r + 1,
				load[r], t95[l][r], cpu[l][r], saved[l][r]);
	}
	if (csv)
		fclose(csv);
	printf("\n4 processes vs one: saved %.3fx (target >= 0.95), t95 %.2fx (target <= 1.5)%s\n",
	       m[1][0] / m[0][0], m[1][1] / m[0][1],
	       maxload > 1 ? "; noisy: a round started at load > 1" : "");
	printf("CSV %s\n", path);
	rmdir(bdir);
	return 0;
}
