/* SPDX-License-Identifier: MIT */
/*
 * The experiment's rounds (overcommit-run --rounds N): every run of the
 * scenario once per round, the runs of a round one after the other
 * (unconstrained, ramfold, the kernel's stack, in the scenario's order), so
 * that a host that speeds up or slows down over the minutes weighs on every
 * stack alike. This file turns the rounds into the table a reader decides
 * from: per run, how many rounds kept every guest alive and the budget
 * held, and the median (min..max) of the guests' work, the worst guest's,
 * the stall and the VMM's largest Pss; then one line comparing ramfold's
 * run with the peer's (the kernel's stack, else KSM alone) on issue 18's
 * targets, from the medians. A round's own work share is against the
 * unconstrained run of the same round.
 *
 * The noisy rule of the peer benches (docs/dedup.md, "Fair measurement"):
 * if any run started at load average 1 or more, the line gives no ratio and
 * no verdict.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "overcommit.h"

/* The issue 18 targets the comparison line holds ramfold's run to. */
#define WORK_RATIO_TARGET 1.5
#define STALL_TARGET_PCT  2.0

double run_stall(const struct run_spec *r, const struct run_result *x)
{
	return r->ramfold_reclaim ? x->rf_stall_pct : x->stall_pct;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

int rounds_median(const double *v, int n, double *med, double *lo, double *hi)
{
	double s[MAX_ROUNDS];
	int k = 0;

	for (int i = 0; i < n && k < MAX_ROUNDS; i++)
		if (v[i] >= 0)
			s[k++] = v[i];
	if (!k)
		return 0;
	qsort(s, (size_t)k, sizeof(s[0]), cmp_double);
	*lo = s[0];
	*hi = s[k - 1];
	*med = k % 2 ? s[k / 2] : (s[k / 2 - 1] + s[k / 2]) / 2;
	return k;
}

/* Every guest alive to the end, memcheck clean. */
static bool alive(const struct run_result *x)
{
	return x->nvms > 0 && x->responsive == x->nvms && x->memcheck_ok;
}

/* A round's work share: a VMM the cgroup killed did no work from then on,
 * so its share is what it did, 0 when it died before settling. */
static double work_of(double share, const struct run_result *x)
{
	return share < 0 && x->oom_kills ? 0 : share;
}

/* "93% (86..94%)", or "-" when no round has the figure; @scale turns the
 * value into what is printed, @unit follows it. */
static const char *fig(char *b, size_t cap, const double *v, int n, double scale,
		       const char *fmt_unit)
{
	double med, lo, hi;
	char m[24], l[24], h[24];

	if (!rounds_median(v, n, &med, &lo, &hi))
		return "-";
	snprintf(m, sizeof(m), fmt_unit, med * scale);
	snprintf(l, sizeof(l), fmt_unit, lo * scale);
	snprintf(h, sizeof(h), fmt_unit, hi * scale);
	snprintf(b, cap, "%s (%s..%s)", m, l, h);
	return b;
}

/* The first run of @sc that is ramfold's reclaim, and its peer. */
static void pick_runs(const struct scenario *sc, int *rf, int *peer)
{
	*rf = *peer = -1;
	for (int r = 0; r < sc->nruns; r++)
		if (*rf < 0 && sc->runs[r].ramfold_reclaim && !sc->runs[r].unconstrained)
			*rf = r;
	for (int r = 0; r < sc->nruns && *peer < 0; r++)
		if (sc->runs[r].kernel)
			*peer = r;
	for (int r = 0; r < sc->nruns && *peer < 0; r++)
		if (sc->runs[r].ksm)
			*peer = r;
}

static void write_verdict(FILE *f, const struct scenario *sc, struct run_result *const rr[],
			  int rounds, double maxload)
{
	double w_rf[MAX_ROUNDS], w_peer[MAX_ROUNDS], st[MAX_ROUNDS];
	double wrf = 0, wpeer = 0, stall = 0, lo, hi;
	int rf, peer, held_rf = 0, held_peer = 0, dead_peer = 0;
	char missed[256] = "", stall_s[32] = "-";
	bool have_stall;

	pick_runs(sc, &rf, &peer);
	if (rf < 0 || peer < 0)
		return;
	for (int k = 0; k < rounds; k++) {
		const struct run_result *a = &rr[k][rf], *b = &rr[k][peer];

		w_rf[k] = work_of(a->work_share, a);
		w_peer[k] = work_of(b->work_share, b);
		st[k] = run_stall(&sc->runs[rf], a);
		held_rf += alive(a) && a->under_budget;
		held_peer += alive(b) && b->under_budget;
		dead_peer += b->oom_kills != 0;
	}
	fprintf(f, "%s vs %s, per round:", sc->runs[rf].name, sc->runs[peer].name);
	for (int k = 0; k < rounds; k++) {
		if (w_rf[k] < 0 || w_peer[k] < 0)
			fprintf(f, " -");
		else if (w_peer[k] == 0)
			fprintf(f, " %.0f%%/0%%", w_rf[k] * 100);
		else
			fprintf(f, " %.2fx", w_rf[k] / w_peer[k]);
	}
	fprintf(f, "\n");
	if (maxload >= 1) {
		fprintf(f,
			"%s vs %s: noisy (load average %.2f at a run's start, 1 or more): no "
			"verdict\n",
			sc->runs[rf].name, sc->runs[peer].name, maxload);
		return;
	}
	if (!rounds_median(w_rf, rounds, &wrf, &lo, &hi) ||
	    !rounds_median(w_peer, rounds, &wpeer, &lo, &hi)) {
		fprintf(f, "%s vs %s: no ratio (no unconstrained run to measure work against)\n",
			sc->runs[rf].name, sc->runs[peer].name);
		return;
	}
	have_stall = rounds_median(st, rounds, &stall, &lo, &hi) > 0;
	fprintf(f,
		"%s vs %s (medians of %d round%s, load average at most %.2f at the runs' "
		"starts): work %.0f%% against %.0f%%",
		sc->runs[rf].name, sc->runs[peer].name, rounds, rounds == 1 ? "" : "s", maxload,
		wrf * 100, wpeer * 100);
	if (wpeer > 0)
		fprintf(f, ", %.2fx (target >= %.1fx)", wrf / wpeer, WORK_RATIO_TARGET);
	else
		fprintf(f, " (target >= %.1fx; the peer's median is no work: %d of %d killed)",
			WORK_RATIO_TARGET, dead_peer, rounds);
	if (have_stall)
		snprintf(stall_s, sizeof(stall_s), "%.2f%%", stall);
	fprintf(f,
		"; %s's stall %s (target < %.0f%%); budget held with every guest alive: "
		"%s %d/%d, %s %d/%d (target: every round)",
		sc->runs[rf].name, stall_s, STALL_TARGET_PCT, sc->runs[rf].name, held_rf, rounds,
		sc->runs[peer].name, held_peer, rounds);
	if (wrf < WORK_RATIO_TARGET * wpeer || (wpeer == 0 && wrf == 0))
		strcat(missed, " work,");
	if (!have_stall || stall >= STALL_TARGET_PCT)
		strcat(missed, " stall,");
	if (held_rf < rounds)
		snprintf(missed + strlen(missed), sizeof(missed) - strlen(missed), " %s's budget,",
			 sc->runs[rf].name);
	if (held_peer < rounds)
		snprintf(missed + strlen(missed), sizeof(missed) - strlen(missed), " %s's budget,",
			 sc->runs[peer].name);
	if (*missed) {
		missed[strlen(missed) - 1] = 0;
		fprintf(f, ": missed:%s\n", missed);
	} else {
		fprintf(f, ": targets met\n");
	}
}

void write_rounds_table(FILE *f, const struct scenario *sc, struct run_result *const rr[],
			int rounds, double maxload)
{
	fprintf(f, "\n%d round%s, the runs one after the other in each (", rounds,
		rounds == 1 ? "" : "s");
	for (int r = 0; r < sc->nruns; r++)
		fprintf(f, "%s%s", sc->runs[r].name, r + 1 < sc->nruns ? ", " : "");
	fprintf(f, "): median (min..max)\n");
	fprintf(f, "%-14s %6s %6s %-20s %-20s %-24s %-26s\n", "run", "alive", "held", "work",
		"worst", "stall", "max Pss MiB");
	for (int r = 0; r < sc->nruns; r++) {
		double w[MAX_ROUNDS], wo[MAX_ROUNDS], st[MAX_ROUNDS], pss[MAX_ROUNDS];
		char bw[128], bwo[128], bst[128], bp[128], held[16];
		int nalive = 0, nheld = 0;

		for (int k = 0; k < rounds; k++) {
			const struct run_result *x = &rr[k][r];

			w[k] = work_of(x->work_share, x);
			wo[k] = work_of(x->work_worst, x);
			st[k] = run_stall(&sc->runs[r], x);
			pss[k] = x->max_pss_after > 0 ? (double)x->max_pss_after : -1;
			nalive += alive(x);
			nheld += alive(x) && x->under_budget;
		}
		if (sc->runs[r].unconstrained)
			snprintf(held, sizeof(held), "n/a");
		else
			snprintf(held, sizeof(held), "%d/%d", nheld, rounds);
		fprintf(f, "%-14s %4d/%-1d %6s %-20s %-20s %-24s %-26s\n", sc->runs[r].name, nalive,
			rounds, held, fig(bw, sizeof(bw), w, rounds, 100, "%.0f%%"),
			fig(bwo, sizeof(bwo), wo, rounds, 100, "%.0f%%"),
			fig(bst, sizeof(bst), st, rounds, 1, "%.2f%%"),
			fig(bp, sizeof(bp), pss, rounds, 1.0 / 1048576, "%.1f"));
	}
	fprintf(f, "alive = rounds with every guest alive and memcheck clean; held = those with "
		   "the budget held too (the VMM's Pss after settling).\n");
	write_verdict(f, sc, rr, rounds, maxload);
}

int rounds_median_index(const struct scenario *sc, struct run_result *const rr[], int rounds)
{
	double w[MAX_ROUNDS], med, lo, hi;
	int rf, peer, best = 0;

	pick_runs(sc, &rf, &peer);
	if (rf < 0)
		return 0;
	for (int k = 0; k < rounds; k++)
		w[k] = rr[k][rf].work_share;
	if (!rounds_median(w, rounds, &med, &lo, &hi))
		return 0;
	for (int k = 1; k < rounds; k++)
		if ((w[k] - med) * (w[k] - med) < (w[best] - med) * (w[best] - med))
			best = k;
	return best;
}
