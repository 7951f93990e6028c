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
 * until then (scanner and fault threads for ramfold, ksmd for KSM), CPU share
 * once converged, final saving. KSM is run at its defaults (100 pages every
 * 20 ms) and at its fastest (10000 pages, no sleep), and is left at run=0.
 *
 * Fair measurement (docs/dedup.md): the host's CPUs, frequency policy and
 * load average are printed at the start; each round runs the three engines
 * one after the other, --rounds of them (3 by default), and the end gives
 * the medians and ranges, with the ratios only if every run started at a
 * load average under 1 ("noisy" otherwise). Both sides get the same
 * scheduling: by default ramfold's scanner runs at ksmd's nice (5 here: a
 * kernel thread's), set by the engine's thread_start hook; --sched zero
 * runs both at 0 instead (ksmd reniced for its runs and put back).
 *
 * --quiet-wait S: before each run, wait up to S seconds (180 by default, 0:
 * not at all) for the load average to fall below 0.9.
 *
 * --threads N: ramfold's scanner threads (0 by default: the engine's default,
 * one per CPU the process may run on; 1 is ksmd's count). The count that
 * ran is printed after each ramfold run.
 *
 * Usage: dedup [--mib N] [--rounds N] [--threads N] [--sched ksmd|zero] [--ksm-default-timeout S]
 *              [--out DIR] [--ramfold-only] [--quiet-wait S]
 * Output: per round a table on stdout, DIR/dedup_rN.csv (time series),
 * DIR/dedup_rN_summary.csv, DIR/dedup_rN.svg (saved bytes over time); then
 * the medians.
 */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <ramfold/ramfold.h>

#include "core/util.h"
#include "dedup_report.h"
#include "dedup_util.h"

#define PG 4096ull

static struct bench_opts opt = {
    .mib = 1024, .rounds = 3, .ksm_default_timeout = 20, .out = "build/bench"};
static bool opt_ramfold_only;
static int opt_quiet_wait = 180; /* s, before each run (--quiet-wait) */
static unsigned int sample_us = 40000;
static double dup_ratio = 0.50, zero_ratio = 0.15; /* rest unique */
static unsigned int copies = 8;
static unsigned int opt_threads; /* ramfold's scanner threads; 0 = the engine's default */

static _Atomic unsigned int scanners_started;

/* The engine's thread_start hook: its scanner threads at opt.sched.scan_nice. */
static void thread_start(void *arg, const char *name)
{
	int err = scan_thread_set_nice(name, opt.sched.scan_nice);

	(void)arg;
	if (!strncmp(name, "rf-scan/", 8))
		scanners_started++;
	if (err)
		fprintf(stderr, "dedup bench: %s: setpriority(%d): %s\n", name, opt.sched.scan_nice,
			strerror(-err));
}

/*
 * CPU seconds of every thread of this process but the calling (sampling)
 * one: the engine's scanner, fault and RCU threads, as the kernel counts
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

/* This process's Pss: a page shared by N mappings counts 1/N in each. */
static uint64_t self_pss(void)
{
	struct dedup_mem m;

	dedup_mem_read(&m); /* all zero if unreadable */
	return m.pss;
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
	struct rf_dedup_stats st = {.size = sizeof(st)};
	uint64_t size = (uint64_t)opt.mib << 20, base_pss, base_host;
	struct conv_watch w;
	double cpu0;
	rf_engine *e;
	rf_vm *vm;
	void *ram;
	int err;

	rf_engine_config_init(&ec);
	ec.log = log_cb;
	ec.thread_start = thread_start;
	ec.scan_threads = opt_threads;
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
	base_pss = self_pss();
	base_host = host_anon_shmem();
	rf_dedup_config_init(&dc);
	dc.mode = mode;
	dc.scan_threads = opt_threads;
	dc.fastest = mode != RF_DEDUP_KSM || ksm_fast;
	dc.ksm_pages_to_scan = ksm_pages;
	dc.ksm_sleep_ms = ksm_sleep;
	if ((err = rf_dedup_start(e, &dc)) || (err = rf_dedup_add_vm(vm))) {
		fprintf(stderr, "dedup bench: %s: start: %s\n", r->name, strerror(-err));
		rf_dedup_stop(e);
		rf_engine_free(e);
		return err;
	}
	conv_watch_init(&w, bench_now_s(), mode == RF_DEDUP_KSM, 2.0, timeout, *ideal);
	cpu0 = others_cpu_s();
	for (;;) {
		double t, saved, cpu;
		uint64_t pss;

		usleep(sample_us);
		t = bench_now_s();
		pss = self_pss();
		if (mode == RF_DEDUP_KSM) {
			rf_dedup_stats(e, &st);
			cpu = (double)st.cpu_ns / 1e9 + others_cpu_s() - cpu0;
		} else {
			rf_dedup_counters(e, &st);
			cpu = others_cpu_s() - cpu0;
		}
		saved = base_pss > pss ? (double)(base_pss - pss) : 0;
		if (conv_watch_sample(&w, r, t, saved, cpu,
				      mode != RF_DEDUP_KSM && st.converged && st.scan_passes >= 3))
			break;
	}
	result_finish(r);
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
	rf_dedup_stop(e);
	rf_engine_free(e);
	if (mode != RF_DEDUP_KSM)
		printf("dedup bench: %s ran %u scanner thread(s)\n", r->name,
		       atomic_exchange(&scanners_started, 0));
	return 0;
}

/* One round (bench_round_fn): the engines one after the other. @arg: the
 * kernel has KSM. */
static int run_round(struct result rs[DEDUP_ENGINES], unsigned int round, uint64_t *ideal,
		     void *arg)
{
	bool have_ksm = *(const bool *)arg;

	static const struct {
		unsigned int pages, sleep;
		bool fast;
	} ksm[3] = {{0, 0, true}, {10000, 0, true}, {100, 20, false}};

	for (unsigned int k = 0; k < DEDUP_ENGINES; k++) {
		if (k > 0 && (opt_ramfold_only || !have_ksm)) {
			snprintf(rs[k].note, sizeof(rs[k].note), "%s",
				 opt_ramfold_only ? "not run (--ramfold-only)"
						  : "kernel KSM not available");
			continue;
		}
		/* The run before leaves the load average up for a while: wait
		 * for a quiet start, as the other peer benches do. */
		bench_wait_quiet("dedup bench", opt_quiet_wait);
		rs[k].load = bench_loadavg();
		printf("dedup bench: round %u, %s: load average %.2f at start\n", round, rs[k].name,
		       rs[k].load);
		fflush(stdout);
		if (k > 0)
			bench_sched_ksm(&opt.sched, true);
		if (run(&rs[k], k == 0 ? RF_DEDUP_INTRA_VM : RF_DEDUP_KSM, ksm[k].pages,
			ksm[k].sleep, ksm[k].fast, k == 2 ? opt.ksm_default_timeout : 60, ideal))
			snprintf(rs[k].note, sizeof(rs[k].note), "failed to run");
		if (k > 0)
			bench_sched_ksm(&opt.sched, false);
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct bench_rounds br = {0};
	char title[96];
	struct rf_engine_config ec;
	struct rf_features feat = {.size = sizeof(feat)};
	/* Issue 17's targets for the in-process GiB. */
	static const struct bench_targets targets = {
	    .sooner = 4, .cpu = 0.25, .cpu_per_gib = 0.3, .net = 1};
	rf_engine *e;

	for (int i = 1; i < argc; i++) {
		if (bench_common_opt(argc, argv, &i, &opt))
			continue;
		if (!strcmp(argv[i], "--sample-ms") && i + 1 < argc)
			sample_us = 1000u * (unsigned int)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
			opt_threads = (unsigned int)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--ramfold-only"))
			opt_ramfold_only = true;
		else if (!strcmp(argv[i], "--quiet-wait") && i + 1 < argc)
			opt_quiet_wait = atoi(argv[++i]);
		else {
			fprintf(
			    stderr,
			    "usage: %s [--mib N] [--rounds N] [--threads N] [--sched ksmd|zero] "
			    "[--ksm-default-timeout S] [--out DIR] [--ramfold-only] [--quiet-wait "
			    "S]\n",
			    argv[0]);
			return 2;
		}
	}
	bench_host_line("dedup bench");
	bench_sched_init(&opt.sched, "dedup bench");
	rf_engine_config_init(&ec);
	if (rf_engine_new(&ec, &e) == 0) {
		rf_engine_features(e, &feat);
		rf_engine_free(e);
	} else {
		memset(&feat, 0, sizeof(feat));
	}
	printf("dedup bench: %u MiB in-process, %.0f%% duplicates (%u copies of a template), "
	       "%.0f%% zero, %.0f%% unique; THP off\n",
	       opt.mib, dup_ratio * 100, copies, zero_ratio * 100,
	       (1 - dup_ratio - zero_ratio) * 100);
	snprintf(title, sizeof(title), "saved bytes (Pss fall) over time, %u MiB in-process",
		 opt.mib);
	bench_rounds_run(&br, opt.rounds, run_round, &feat.ksm, opt.out, "dedup", title);
	bench_rounds_report(&br, opt.mib / 1024.0, &targets);
	return 0;
}
