/* SPDX-License-Identifier: MIT */
/*
 * The overcommit experiment's data, shared by the runner (overcommit.c:
 * the scenario, the runs, the memory plot, the table) and the guest-work
 * measure (overcommit_work.c): a scenario, its runs, one sample a second
 * and each run's verdicts.
 */
#ifndef BENCH_OVERCOMMIT_H
#define BENCH_OVERCOMMIT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define MAX_VMS	    64
#define MAX_RUNS    8
#define MAX_ARGS    32
#define MAX_SAMPLES 7200
#define MAX_ROUNDS  9

struct run_spec {
	char name[32];
	char *args[MAX_ARGS];
	int nargs;
	bool ksm, kernel, unconstrained;
	bool ramfold_reclaim; /* --policy with a period: the stall is ramfold's to report */
	unsigned int ksm_pages, ksm_sleep_ms;
	char vm_keys[256]; /* ",key=value..." added to every VM of this run */
};

struct scenario {
	uint64_t budget;
	double duration, settle;
	char *vms[MAX_VMS];
	char vm_names[MAX_VMS][32];
	bool vm_memcheck[MAX_VMS];
	uint64_t vm_mem[MAX_VMS];
	int nvms;
	struct run_spec runs[MAX_RUNS];
	int nruns;
};

/* One second of a run. Ledger fields come from the VMM's --ledger-csv. */
enum {
	L_USED,
	L_PRIVATE,
	L_SHARED,
	L_ZERO,
	L_BALLOONED,
	L_REPORTED,
	L_SWAPPED,
	L_COMPRESSED,
	L_META,
	L_S_DEDUP,
	L_S_ZERO,
	L_S_BALLOON,
	L_S_REPORT,
	L_S_SWAP,
	L_NF
};

struct sample {
	double t;
	uint64_t rss, pss, ksm_sharing, cgroup_bytes;
	uint64_t work[MAX_VMS]; /* each guest's work_bytes */
	int64_t stall_us;	/* PSI "some" total, -1 without PSI */
	int64_t rf_stall_ns;	/* ramfold's fault stall, summed over the VMs; -1: not read */
	uint64_t l[L_NF];
	bool have_ledger;
	char state[8];
};

struct run_result {
	struct sample *s;
	int n;
	uint64_t exits_settle[MAX_VMS], exits_end[MAX_VMS];
	bool faulted[MAX_VMS];
	bool memcheck_clean[MAX_VMS];
	uint64_t memcheck_rounds[MAX_VMS];
	int vmm_status;
	uint64_t oom_kills;   /* by the kernel stack's cgroup, during the run */
	double vmm_end_t;     /* seconds from the start to the VMM's exit, if it died */
	double load;	      /* the load average at the run's start */
	char incomplete[512]; /* what of the kernel's stack could not be set up */
	const char *stall_source;
	/* verdicts */
	int responsive, nvms;
	bool memcheck_ok, under_budget;
	uint64_t max_used_after, mean_used_after, max_pss_after, final_used;
	uint64_t saved[5];
	double work_rate[MAX_VMS];     /* work_bytes per second after the settling time */
	double work_share, work_worst; /* of the unconstrained run's; -1: no baseline */
	double stall_pct;	       /* PSI some, % of the time after settling; -1: none */
	/* ramfold's fault stall after settling, % of the guests' vCPU time
	 * (one vCPU each in the demo VMM); -1: not read (runs without it). */
	double rf_stall_pct;
};

/* A plot's area (pixels) and the ranges its axes show. */
struct plot_frame {
	double x0, y0, pw, ph; /* the plot area's top left corner and size */
	double tmax, ymax;     /* seconds and values at its right and top edges */
};

/* An SVG of @w x @h on white, @title at (@title_x, 18): the head every
 * plot shares (close it with "</svg>"). */
void plot_header(FILE *f, double w, double h, double title_x, const char *title);
/* The axes of @p with 6 ticks each, y labels v * @yscale followed by @yunit. */
void plot_axes(FILE *f, const struct plot_frame *p, double yscale, const char *yunit);

/* Each guest's work rate after the settling time, and the stall (PSI, and
 * ramfold's fault stall). */
void judge_work(const struct scenario *sc, struct run_result *rr);
/* @path: a line per guest, its work per second after the settling time as
 * judge_work found it (density-run reads it). */
void write_work_rates(const char *path, const struct scenario *sc, const struct run_result *rr);
/* @rr's guest work as a share of the unconstrained run @base's (NULL: none). */
void judge_share(const struct scenario *sc, struct run_result *rr, const struct run_result *base);
/* One line per run but @base: each guest's share of its work in @base. */
void write_guest_shares(FILE *f, const struct scenario *sc, const struct run_result *rr,
			const struct run_result *base);
/* Guest work over time, as a share of @base's, one line per run, into @path. */
void write_work_svg(const char *path, const struct scenario *sc, const struct run_result *rr,
		    const struct run_result *base);

/* The guests' stall of @x, % after settling: for ramfold's reclaim the time
 * their vCPUs waited in its fault handling, else PSI; -1: none. */
double run_stall(const struct run_spec *r, const struct run_result *x);

/* overcommit_rounds.c: the median, min and max of the values of @v[0..n)
 * that are >= 0 (a figure a round does not have is -1); returns how many. */
int rounds_median(const double *v, int n, double *med, double *lo, double *hi);
/* The rounds table: @rr[k] is round k's results, one per run of @sc; then
 * the line comparing ramfold's run with its peer on issue 18's targets, no
 * verdict if @maxload (the highest load average at a run's start) >= 1. */
void write_rounds_table(FILE *f, const struct scenario *sc, struct run_result *const rr[],
			int rounds, double maxload);
/* The round whose ramfold run's work is nearest the median (its work.svg
 * stands for the rounds). */
int rounds_median_index(const struct scenario *sc, struct run_result *const rr[], int rounds);

#endif
