/* SPDX-License-Identifier: MIT */
/*
 * What the dedup benchmarks share: their engines and common options, the
 * watch of one engine's run until it converges and then idles, a time
 * series of saved bytes and CPU per engine, the summary (time and CPU to 95%
 * of the achievable saving, idle CPU share once converged), the table on
 * stdout, and the CSV and SVG files.
 */
#ifndef BENCH_DEDUP_REPORT_H
#define BENCH_DEDUP_REPORT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

/* Every dedup bench compares these engines, in this order: ramfold,
 * ksm-fastest (10000 pages, no sleep), ksm-default (100 pages every 20 ms). */
#define DEDUP_ENGINES 3
void results_init(struct result rs[DEDUP_ENGINES]);

/* The options every dedup bench takes: if argv[*i] is --mib N,
 * --ksm-default-timeout S or --out DIR, store its value, step *i past it
 * and return true. */
bool bench_common_opt(int argc, char **argv, int *i, unsigned int *mib, double *ksm_default_timeout,
		      const char **out);

double bench_now_s(void);
/* The 1-minute load average (/proc/loadavg), -1 if unreadable. */
double bench_loadavg(void);
/* utime + stime in seconds of a /proc/.../stat file (a process or a
 * thread), -1 if unreadable. */
double bench_stat_cpu(const char *path);
/* The number after "KEY": in a JSON reply, -1 if there is none. */
double bench_json_num(const char *reply, const char *key);

/*
 * A peer comparison is only as fair as its host (docs/dedup.md, "Fair
 * measurement"): bench_host_line prints, at a bench's start, the CPUs
 * online, cpu0's cpufreq governor and the load average. bench_ksmd_pid finds
 * the kernel's ksmd (0 if none), bench_nice_of a process's nice value.
 */
void bench_host_line(const char *bench);
int bench_ksmd_pid(void);
int bench_nice_of(int pid);

/* The median of the values >= 0 of @v[0..n) (at most BENCH_MAX_ROUNDS),
 * -1 if none; bench_median_cell writes "median (min..max)" of them, each
 * times @scale in @fmt, or "-". */
double bench_median(const double *v, unsigned int n);
void bench_median_cell(char *out, size_t cap, const double *v, unsigned int n, double scale,
		       const char *fmt);

/* Per-round figures of the engines, for the medians over rounds. */
#define BENCH_MAX_ROUNDS 9
struct bench_rounds {
	unsigned int n;
	double maxload; /* the highest load average at a run's start */
	double t95[DEDUP_ENGINES][BENCH_MAX_ROUNDS], cpu95[DEDUP_ENGINES][BENCH_MAX_ROUNDS];
	double idle[DEDUP_ENGINES][BENCH_MAX_ROUNDS], saved[DEDUP_ENGINES][BENCH_MAX_ROUNDS];
	double net[DEDUP_ENGINES][BENCH_MAX_ROUNDS];
};
/* After results_report of a round: keep its figures (an engine that did
 * not run or never reached 95% is left out of the medians). */
void bench_rounds_add(struct bench_rounds *br, const struct result rs[DEDUP_ENGINES]);
/* The medians (min..max) of every engine, then ramfold against ksm-fastest
 * from the medians: the ratios with @gib of content for CPU-seconds per
 * GiB, or "noisy" instead of any verdict when a run started at load 1 or
 * more. */
void bench_rounds_report(const struct bench_rounds *br, double gib);

/*
 * One engine's run, sample by sample: how long it takes to converge and
 * what CPU share it keeps afterwards. An engine is done when it says so
 * (ramfold: converged after 3 passes); KSM has no such notion, so it is done
 * once it has saved over half the ideal and not grown for @ksm_quiet_s.
 * Then the samples go on for a 3 s idle window, whose CPU over time is the
 * idle share. A run not done by @timeout is noted "stopped after N s" and
 * gets no idle share. KSM is host-wide: a KSM run ends at the first sample
 * after another process set /sys/kernel/mm/ksm/run to anything but 1.
 */
struct conv_watch {
	bool ksm;
	double ksm_quiet_s, timeout, ideal;
	double t0, best, last_growth_t, conv_t, conv_cpu, idle_window;
};

/* @t0: the run's start, from bench_now_s(). */
void conv_watch_init(struct conv_watch *w, double t0, bool ksm, double ksm_quiet_s, double timeout,
		     uint64_t ideal);
/* Add one sample (@t from bench_now_s(), @saved in bytes, @cpu seconds
 * since t0) to @r. @converged: the engine reports converged after 3 passes
 * (not used for KSM). True when the run is over. */
bool conv_watch_sample(struct conv_watch *w, struct result *r, double t, double saved, double cpu,
		       bool converged);
/* After the last sample: the final saving (for a run cut short by KSM
 * being switched off, the best it reached) and whether it ran at all. */
void result_finish(struct result *r);

/*
 * Once every engine has run: each one's time and CPU to 95% of the best
 * saving (or of @ideal if the engine never got within 90% of it), the table
 * and the ramfold-vs-ksm-fastest line on stdout, DIR/PREFIX.csv,
 * DIR/PREFIX_summary.csv and DIR/PREFIX.svg (titled @title), and a line
 * naming those files.
 */
void results_report(struct result rs[DEDUP_ENGINES], uint64_t ideal, const char *dir,
		    const char *prefix, const char *title);

#endif
