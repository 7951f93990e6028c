/* SPDX-License-Identifier: MIT */
/*
 * bench/dedup: ramfold's dedup engine against the kernel's KSM, side by
 * side in one run, on the same synthetic memory content.
 *
 * Content (in-process guest RAM from rf_vm_map_ram, THP off): a template of
 * unique pages copied several times (duplicates, as identical OS images
 * give), unique pages, and all-zero pages, in chosen ratios. The ideal saving
 * is computed from that layout; the measured saving is the fall of this
 * process's Pss (/proc/self/smaps_rollup), which counts a page shared by N
 * mappings as 1/N each, so it is right for both engines (KSM leaves RSS as
 * it was). The host's AnonPages+Shmem (/proc/meminfo) is reported too.
 *
 * For each engine: time until 95% of its final saving, CPU seconds spent
 * until then (scanner + pager threads for ramfold, ksmd for KSM), CPU share
 * once converged, final saving. KSM is run at its defaults (100 pages every
 * 20 ms) and at its fastest (10000 pages, no sleep), and is left at run=0.
 *
 * Usage: dedup [--mib N] [--ksm-default-timeout S] [--out DIR]
 * Output: a table on stdout, DIR/dedup.csv (time series), DIR/dedup_summary.csv,
 * DIR/dedup.svg (saved bytes over time).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <ramfold/ramfold.h>

#define PG 4096ull

struct sample {
	double t, saved, cpu;
};

struct result {
	const char *name;
	struct sample *s;
	unsigned int n, cap;
	double t95, cpu95, idle_cpu_share, final_saved, final_host_saved;
	double metadata; /* engine metadata outside this process (KSM's rmap items) */
	bool reached;
	bool ran;
	char note[128];
};

static unsigned int opt_mib = 1024;
static double opt_ksm_default_timeout = 20;
static const char *opt_out = "build/bench";
static bool opt_ramfold_only;
static unsigned int sample_us = 40000;
static double dup_ratio = 0.50, zero_ratio = 0.15; /* rest unique */
static unsigned int copies = 8;

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/*
 * CPU seconds of every thread of this process but the calling (sampling)
 * one: the engine's scanner, pager and RCU threads, as the kernel counts
 * them. KSM's work is done by ksmd, whose time the engine stats report.
 */
static double others_cpu_s(void)
{
	struct rusage ru;
	struct timespec ts;

	getrusage(RUSAGE_SELF, &ru);
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6 -
	       ((double)ts.tv_sec + (double)ts.tv_nsec / 1e9);
}

static uint64_t smaps_pss(void)
{
	char line[256];
	unsigned long long kb, pss = 0;
	FILE *f = fopen("/proc/self/smaps_rollup", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pss: %llu kB", &kb) == 1)
			pss = kb << 10;
	fclose(f);
	return pss;
}

static uint64_t host_anon_shmem(void)
{
	char line[256];
	unsigned long long kb, sum = 0;
	FILE *f = fopen("/proc/meminfo", "re");

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonPages: %llu kB", &kb) == 1 ||
		    sscanf(line, "Shmem: %llu kB", &kb) == 1)
			sum += kb << 10;
	fclose(f);
	return sum;
}

static void fill_page(uint8_t *p, uint64_t seed)
{
	uint64_t *w = (uint64_t *)p, x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (unsigned int i = 0; i < PG / 8; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		w[i] = x * 0x2545f4914f6cdd1dull;
	}
	w[0] |= 1;
}

/* Lay out the content; return the ideal saving in bytes. */
static uint64_t fill(uint8_t *ram, uint64_t pages)
{
	uint64_t dup = (uint64_t)((double)pages * dup_ratio),
		 zero = (uint64_t)((double)pages * zero_ratio);
	uint64_t tpl = dup / copies, p = 0;

	for (unsigned int c = 0; c < copies; c++)
		for (uint64_t i = 0; i < tpl; i++)
			fill_page(ram + (p++) * PG, i);
	for (uint64_t i = 0; i < zero; i++) {
		ram[p * PG] = 1;
		ram[(p++) * PG] = 0;
	}
	for (uint64_t i = 0; p < pages; i++)
		fill_page(ram + (p++) * PG, 1000000000ull + i);
	return ((uint64_t)(copies - 1) * tpl + zero) * PG;
}

static void add_sample(struct result *r, double t, double saved, double cpu)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 1024;
		r->s = realloc(r->s, r->cap * sizeof(*r->s));
		if (!r->s) {
			perror("realloc");
			exit(1);
		}
	}
	r->s[r->n++] = (struct sample){t, saved, cpu};
}

static void log_cb(void *arg, enum rf_log_level level, const char *msg)
{
	(void)arg;
	if (level <= RF_LOG_WARN)
		fprintf(stderr, "  [ramfold] %s\n", msg);
}

/*
 * One run: a fresh engine and VM with the content, then the engine under
 * test, sampled every 25 ms until converged (ramfold) or until the saving
 * stops growing (KSM), then an idle window to measure the CPU share.
 */
static int run(struct result *r, enum rf_dedup_mode mode, unsigned int ksm_pages,
	       unsigned int ksm_sleep, bool ksm_fast, double timeout, uint64_t *ideal)
{
	struct rf_engine_config ec;
	struct rf_dedup_config dc;
	struct rf_vm_config vc;
	struct rf_dedup_stats st;
	uint64_t size = (uint64_t)opt_mib << 20, base_pss, base_host;
	double t0, cpu0, last_growth_t, best = 0, conv_t = -1, conv_cpu = 0, idle_window = 3;
	rf_engine *e;
	rf_vm *vm;
	void *ram;
	int err;

	rf_engine_config_init(&ec);
	ec.log = log_cb;
	ec.scan_threads = 1;
	if ((err = rf_engine_new(&ec, &e)))
		return err;
	rf_vm_config_init(&vc);
	vc.ram_bytes = size;
	if ((err = rf_vm_new(e, "bench", &vc, &vm)) || (err = rf_vm_map_ram(vm, 0, size, &ram))) {
		rf_engine_free(e);
		return err;
	}
	*ideal = fill(ram, size / PG);
	usleep(200000);
	base_pss = smaps_pss();
	base_host = host_anon_shmem();
	rf_dedup_config_init(&dc);
	dc.mode = mode;
	dc.scan_threads = 1;
	dc.fastest = mode != RF_DEDUP_KSM || ksm_fast;
	dc.ksm_pages_to_scan = ksm_pages;
	dc.ksm_sleep_ms = ksm_sleep;
	if ((err = rf_dedup_start(e, &dc)) || (err = rf_dedup_add_vm(vm))) {
		fprintf(stderr, "dedup bench: %s: start: %s\n", r->name, strerror(-err));
		rf_dedup_stop(e);
		rf_engine_free(e);
		return err;
	}
	t0 = now_s();
	cpu0 = others_cpu_s();
	last_growth_t = t0;
	for (;;) {
		double t, saved, cpu;
		uint64_t pss;

		usleep(sample_us);
		t = now_s();
		pss = smaps_pss();
		if (mode == RF_DEDUP_KSM) {
			rf_dedup_stats(e, &st);
			cpu = (double)st.cpu_ns / 1e9 + others_cpu_s() - cpu0;
		} else {
			rf_dedup_counters(e, &st);
			cpu = others_cpu_s() - cpu0;
		}
		saved = base_pss > pss ? (double)(base_pss - pss) : 0;
		add_sample(r, t - t0, saved, cpu);
		if (saved > best * 1.005 + 4096 * 16) {
			best = saved;
			last_growth_t = t;
		}
		if (conv_t < 0) {
			/* KSM has no "converged": done when it saved most of
			 * the ideal and has not gained for 2 s. */
			bool done = mode == RF_DEDUP_KSM
					? (best > 0.5 * (double)*ideal && t - last_growth_t > 2.0)
					: (st.converged && st.scan_passes >= 3);

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
	r->final_saved = r->s[r->n - 1].saved;
	if (mode == RF_DEDUP_KSM) {
		/* KSM's own metadata lives in kernel slab, not in our Pss: the
		 * kernel reports this process's net as ksm_process_profit,
		 * which the engine returns as saved_bytes. */
		rf_dedup_stats(e, &st);
		if ((st.pages_sharing + st.pages_zero) * PG > st.saved_bytes)
			r->metadata =
			    (double)((st.pages_sharing + st.pages_zero) * PG - st.saved_bytes);
	}
	{
		uint64_t h = host_anon_shmem();

		r->final_host_saved = base_host > h ? (double)(base_host - h) : 0;
	}
	r->ran = true;
	rf_dedup_stop(e);
	rf_engine_free(e);
	return 0;
}

/* Time and CPU to 95% of the best saving the engine reached. */
static void summarise(struct result *r, uint64_t ideal)
{
	double final = 0;

	for (unsigned int i = 0; i < r->n; i++)
		if (r->s[i].saved > final)
			final = r->s[i].saved;
	/* "Achievable" is what the content allows; an engine that never gets
	 * near it within the run has no time to 95%. */
	if (final < 0.9 * (double)ideal)
		final = (double)ideal;
	for (unsigned int i = 0; i < r->n; i++) {
		if (r->s[i].saved >= 0.95 * final) {
			r->t95 = r->s[i].t;
			r->cpu95 = r->s[i].cpu;
			r->reached = true;
			return;
		}
	}
}

static void write_outputs(struct result *rs, unsigned int n, uint64_t ideal)
{
	char path[512];
	double tmax = 0, ymax = (double)ideal * 1.05;
	static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
	FILE *f;

	snprintf(path, sizeof(path), "%s/dedup.csv", opt_out);
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "engine,t_s,saved_bytes,cpu_s\n");
		for (unsigned int k = 0; k < n; k++)
			for (unsigned int i = 0; i < rs[k].n; i++)
				fprintf(f, "%s,%.3f,%.0f,%.3f\n", rs[k].name, rs[k].s[i].t,
					rs[k].s[i].saved, rs[k].s[i].cpu);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/dedup_summary.csv", opt_out);
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "engine,t95_s,cpu_to_t95_s,idle_cpu_share,final_saved_bytes,net_saved_"
			   "bytes,host_saved_bytes,ideal_bytes,note\n");
		for (unsigned int k = 0; k < n; k++)
			fprintf(f, "%s,%.3f,%.3f,%.4f,%.0f,%.0f,%.0f,%llu,%s\n", rs[k].name,
				rs[k].reached ? rs[k].t95 : -1, rs[k].reached ? rs[k].cpu95 : -1,
				rs[k].idle_cpu_share, rs[k].final_saved,
				rs[k].final_saved - rs[k].metadata, rs[k].final_host_saved,
				(unsigned long long)ideal, rs[k].note);
		fclose(f);
	}
	for (unsigned int k = 0; k < n; k++)
		if (rs[k].n && rs[k].s[rs[k].n - 1].t > tmax)
			tmax = rs[k].s[rs[k].n - 1].t;
	if (tmax > 30)
		tmax = 30;
	snprintf(path, sizeof(path), "%s/dedup.svg", opt_out);
	f = fopen(path, "w");
	if (!f)
		return;
	/* Plot area 60..760 x 20..380: x = time (s), y = saved MiB. */
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"440\" "
		   "font-family=\"sans-serif\" font-size=\"12\">\n");
	fprintf(f, "<rect width=\"800\" height=\"440\" fill=\"white\"/>\n");
	fprintf(f, "<line x1=\"60\" y1=\"380\" x2=\"760\" y2=\"380\" stroke=\"black\"/>\n");
	fprintf(f, "<line x1=\"60\" y1=\"20\" x2=\"60\" y2=\"380\" stroke=\"black\"/>\n");
	for (int i = 0; i <= 5; i++) {
		double t = tmax * i / 5, y = ymax * i / 5;

		fprintf(f, "<text x=\"%.0f\" y=\"398\" text-anchor=\"middle\">%.1f s</text>\n",
			60 + 700.0 * i / 5, t);
		fprintf(f, "<text x=\"55\" y=\"%.0f\" text-anchor=\"end\">%.0f MiB</text>\n",
			380 - 360.0 * i / 5 + 4, y / 1048576);
	}
	fprintf(f,
		"<line x1=\"60\" y1=\"%.1f\" x2=\"760\" y2=\"%.1f\" stroke=\"gray\" "
		"stroke-dasharray=\"4\"/>\n",
		380 - 360 * (double)ideal / ymax, 380 - 360 * (double)ideal / ymax);
	fprintf(f, "<text x=\"755\" y=\"%.1f\" text-anchor=\"end\" fill=\"gray\">ideal</text>\n",
		380 - 360 * (double)ideal / ymax - 4);
	for (unsigned int k = 0; k < n; k++) {
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
			colors[k % 4]);
		for (unsigned int i = 0; i < rs[k].n && rs[k].s[i].t <= tmax; i++)
			fprintf(f, "%.1f,%.1f ", 60 + 700 * rs[k].s[i].t / tmax,
				380 - 360 * rs[k].s[i].saved / ymax);
		fprintf(f, "\"/>\n<text x=\"70\" y=\"%u\" fill=\"%s\">%s</text>\n", 36 + 16 * k,
			colors[k % 4], rs[k].name);
	}
	fprintf(f,
		"<text x=\"410\" y=\"430\" text-anchor=\"middle\">saved bytes (Pss fall) over "
		"time, %u MiB in-process</text>\n</svg>\n",
		opt_mib);
	fclose(f);
}

int main(int argc, char **argv)
{
	struct result rs[3] = {
	    {.name = "ramfold"},
	    {.name = "ksm-fastest"},
	    {.name = "ksm-default"},
	};
	uint64_t ideal = 0;
	struct rf_engine_config ec;
	struct rf_features feat;
	rf_engine *e;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--mib") && i + 1 < argc)
			opt_mib = (unsigned int)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ksm-default-timeout") && i + 1 < argc)
			opt_ksm_default_timeout = atof(argv[++i]);
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			opt_out = argv[++i];
		else if (!strcmp(argv[i], "--sample-ms") && i + 1 < argc)
			sample_us = 1000u * (unsigned int)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ramfold-only"))
			opt_ramfold_only = true;
		else {
			fprintf(stderr,
				"usage: %s [--mib N] [--ksm-default-timeout S] [--out DIR] "
				"[--ramfold-only]\n",
				argv[0]);
			return 2;
		}
	}
	rf_engine_config_init(&ec);
	if (rf_engine_new(&ec, &e) == 0) {
		rf_engine_features(e, &feat);
		rf_engine_free(e);
	} else {
		memset(&feat, 0, sizeof(feat));
	}
	printf("dedup bench: %u MiB in-process, %.0f%% duplicates (%u copies of a template), "
	       "%.0f%% zero, %.0f%% unique; THP off\n",
	       opt_mib, dup_ratio * 100, copies, zero_ratio * 100,
	       (1 - dup_ratio - zero_ratio) * 100);
	if (run(&rs[0], RF_DEDUP_INTRA_VM, 0, 0, true, 60, &ideal))
		snprintf(rs[0].note, sizeof(rs[0].note), "failed to run");
	if (opt_ramfold_only) {
		snprintf(rs[1].note, sizeof(rs[1].note), "not run (--ramfold-only)");
		snprintf(rs[2].note, sizeof(rs[2].note), "not run (--ramfold-only)");
	} else if (!feat.ksm) {
		snprintf(rs[1].note, sizeof(rs[1].note), "kernel KSM not available");
		snprintf(rs[2].note, sizeof(rs[2].note), "kernel KSM not available");
	} else {
		if (run(&rs[1], RF_DEDUP_KSM, 10000, 0, true, 60, &ideal))
			snprintf(rs[1].note, sizeof(rs[1].note), "failed to run");
		if (run(&rs[2], RF_DEDUP_KSM, 100, 20, false, opt_ksm_default_timeout, &ideal))
			snprintf(rs[2].note, sizeof(rs[2].note), "failed to run");
	}
	for (int k = 0; k < 3; k++)
		summarise(&rs[k], ideal);

	printf("\nideal saving (from the layout): %.1f MiB\n\n", (double)ideal / 1048576);
	printf("%-12s %9s %11s %9s %13s %13s %13s  %s\n", "engine", "t95 (s)", "CPU to t95",
	       "idle CPU", "saved (Pss)", "net of meta", "host anon+shm", "note");
	for (int k = 0; k < 3; k++) {
		struct result *r = &rs[k];
		char t95[32], c95[32];

		if (!r->ran) {
			printf("%-12s %9s %11s %9s %13s %13s %13s  %s\n", r->name, "-", "-", "-",
			       "-", "-", "-", r->note);
			continue;
		}
		if (r->reached) {
			snprintf(t95, sizeof(t95), "%.2f", r->t95);
			snprintf(c95, sizeof(c95), "%.2f s", r->cpu95);
		} else {
			snprintf(t95, sizeof(t95), "> %.0f", r->s[r->n - 1].t);
			snprintf(c95, sizeof(c95), "> %.2f s", r->s[r->n - 1].cpu);
		}
		printf("%-12s %9s %11s %8.1f%% %9.1f MiB %9.1f MiB %9.1f MiB  %s\n", r->name, t95,
		       c95, r->idle_cpu_share < 0 ? -1 : r->idle_cpu_share * 100,
		       r->final_saved / 1048576, (r->final_saved - r->metadata) / 1048576,
		       r->final_host_saved / 1048576, r->note);
	}
	if (rs[0].reached && rs[1].reached && rs[0].t95 > 0 && rs[0].cpu95 > 0) {
		printf("\nramfold vs ksm-fastest: %.1fx sooner to 95%% (target >= 3x), %.2fx the "
		       "CPU (target <= 0.33x), idle %.1f%% of a core (target < 5%%), saved %.2fx "
		       "in Pss and %.2fx net of metadata (target >= 1x)\n",
		       rs[1].t95 / rs[0].t95, rs[0].cpu95 / rs[1].cpu95, rs[0].idle_cpu_share * 100,
		       rs[0].final_saved / (rs[1].final_saved > 0 ? rs[1].final_saved : 1),
		       rs[0].final_saved / (rs[1].final_saved - rs[1].metadata > 0
						? rs[1].final_saved - rs[1].metadata
						: 1));
	}
	write_outputs(rs, 3, ideal);
	printf("results: %s/dedup.csv, %s/dedup_summary.csv, %s/dedup.svg\n", opt_out, opt_out,
	       opt_out);
	return 0;
}
