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

#include "host.h"

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
	double load; /* the load average at the run's start; -1: not recorded */
	char note[128];
};

/* Every dedup bench compares these engines, in this order: ramfold,
 * ksm-fastest (10000 pages, no sleep), ksm-default (100 pages every 20 ms). */
#define DEDUP_ENGINES 3
void results_init(struct result rs[DEDUP_ENGINES]);

double bench_now_s(void);
/* utime + stime in seconds of a /proc/.../stat file (a process or a
 * thread), -1 if unreadable. */
double bench_stat_cpu(const char *path);
/* The number after "KEY": in a JSON reply, -1 if there is none. */
double bench_json_num(const char *reply, const char *key);
/*
 * KSM's own cost of the merging it did in process @pid, in bytes: its
 * kernel slab (an rmap_item per page it tracks), which is in no Pss. The
 * kernel's ksm_process_profit (/proc/PID/ksm_stat) is the merged pages minus
 * that, so the cost is their difference; 0 if unreadable. ramfold's own
 * metadata is in the process's Pss already.
 */
double bench_ksm_metadata(int pid);

/* bench_ksmd_pid finds the kernel's ksmd (0 if none), bench_nice_of a
 * process's nice value. */
int bench_ksmd_pid(void);
int bench_nice_of(int pid);

/* The threads of @pid whose name starts with @prefix ("rf-"): their
 * utime + stime summed, in seconds (0 if none). */
double bench_threads_cpu(int pid, const char *prefix);
/* The nice value of the first such thread, or BENCH_NO_THREAD if none. */
#define BENCH_NO_THREAD (-100)
int bench_threads_nice(int pid, const char *prefix);

/*
 * Both sides get the same scheduling (--sched): by default ramfold's
 * scanner threads run at ksmd's nice (5: a kernel thread's); "zero" runs
 * both at 0, ksmd reniced for the KSM runs and put back after each. How a
 * bench gives its scanner scan_nice is its own: the engine's thread_start
 * hook in-process, --dedup-nice for ramfold-vmm and ramfold-run.
 */
struct bench_sched {
	bool zero;
	int ksmd;      /* ksmd's pid, 0 if none */
	int ksmd_nice; /* as found (5 assumed without ksmd) */
	int scan_nice; /* for ramfold's scanner threads */
};
/* If argv[*i] is --rounds N, store N, step *i past it, true; an N outside
 * 1..BENCH_MAX_ROUNDS ends the bench (status 2). */
bool bench_rounds_opt(int argc, char **argv, int *i, unsigned int *rounds);
/* If argv[*i] is --sched ksmd|zero, store it, step *i past it, true. */
bool bench_sched_opt(int argc, char **argv, int *i, struct bench_sched *s);
/* After the options: find ksmd and its nice, set scan_nice, and print
 * which scheduling the runs get ("BENCH: scheduling: ..."). */
void bench_sched_init(struct bench_sched *s, const char *bench);
/* Before (@on) and after a KSM run: with --sched zero, ksmd at nice 0,
 * then back to its own. */
void bench_sched_ksm(const struct bench_sched *s, bool on);

/* The options every dedup bench takes: if argv[*i] is --mib N, --rounds N,
 * --sched ksmd|zero, --ksm-default-timeout S or --out DIR, store its value
 * in @o, step *i past it and return true. */
struct bench_opts {
	unsigned int mib, rounds;
	double ksm_default_timeout;
	const char *out;
	struct bench_sched sched;
};
bool bench_common_opt(int argc, char **argv, int *i, struct bench_opts *o);

/* The median of the values >= 0 of @v[0..n) (at most BENCH_MAX_ROUNDS),
 * -1 if none; bench_median_cell writes "median (min..max)" of them, each
 * times @scale in @fmt, or "-". */
double bench_median(const double *v, unsigned int n);
void bench_median_cell(char *out, size_t cap, const double *v, unsigned int n, double scale,
		       const char *fmt);

/*
 * The verdict of a peer bench: one engine's medians against ksm-fastest's,
 * each ratio followed by its target where the bench has one (0: none).
 */
struct bench_medians {
	double t95, cpu95, idle, saved, net; /* s, CPU-s, share of a core, bytes */
};
struct bench_targets {
	double sooner;	     /* ksm-fastest's t95 / ours, at least */
	double cpu;	     /* our CPU to 95% / ksm-fastest's, at most */
	double cpu_per_gib;  /* our CPU-seconds to 95% per GiB of content, at most */
	double idle;	     /* our CPU share once converged, below (0.02: 2%) */
	double net;	     /* our saving net of metadata / ksm-fastest's, at least */
	const char *idle_of; /* what the idle share is of: NULL for "a core" */
};
/*
 * "WHO vs ksm-fastest (medians, ...): the ratios, then "targets met" or
 * the ones missed; or "noisy" and no ratio when @maxload (the highest load
 * average at a run's start) is 1 or more: on a loaded machine ksmd, a
 * nice-5 kernel thread, starves and every ratio grows for that alone.
 * @gib: GiB of content, for CPU-seconds per GiB (0: not given).
 */
void bench_verdict(const char *who, const struct bench_medians *ours,
		   const struct bench_medians *ksm, double maxload, double gib,
		   const struct bench_targets *tg);

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
 * not run or never reached 95% is left out of the medians) and the load
 * average at its runs' starts. */
void bench_rounds_add(struct bench_rounds *br, const struct result rs[DEDUP_ENGINES]);
/*
 * @rounds rounds: each @run_round (engines interleaved: it fills @rs with
 * each engine's run and *@ideal with the ideal saving, and returns 0, or
 * -1 to stop the bench), then results_report as DIR/PREFIX_rN.* titled
 * "TITLE, round N", and bench_rounds_add. 0, or -1 if a round stopped.
 */
typedef int bench_round_fn(struct result rs[DEDUP_ENGINES], unsigned int round, uint64_t *ideal,
			   void *arg);
int bench_rounds_run(struct bench_rounds *br, unsigned int rounds, bench_round_fn *run_round,
		     void *arg, const char *dir, const char *prefix, const char *title);
/* The medians (min..max) of every engine, then bench_verdict of ramfold
 * against ksm-fastest from the medians (@gib, @tg: as there). */
void bench_rounds_report(const struct bench_rounds *br, double gib, const struct bench_targets *tg);

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
 * and the round's ratios of ramfold to ksm-fastest on stdout (no verdict:
 * that is on the medians; "noisy" if a run of the round started at load 1
 * or more), DIR/PREFIX.csv, DIR/PREFIX_summary.csv and DIR/PREFIX.svg
 * (titled @title), and a line naming those files.
 */
void results_report(struct result rs[DEDUP_ENGINES], uint64_t ideal, const char *dir,
		    const char *prefix, const char *title);

#endif
