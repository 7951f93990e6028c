/* SPDX-License-Identifier: MIT */
/*
 * The density search in plain words. A trial of N guests passes or fails;
 * more guests on the same budget can only make things worse, so the answer
 * is the boundary: the largest N that passes with N + 1 failing. Trials are
 * minutes long, so the search spends as few as it can:
 *
 *  1. Grow: try the start (the count that fits the budget without any
 *     reclaim), and while it passes double it, up to the maximum.
 *  2. Bisect between the largest N that passed (lo, 0 if none) and the
 *     smallest that failed (hi): try the middle, move lo or hi, until they
 *     are neighbours.
 *  3. Confirm: the answer is tried once more (unless it already passed
 *     twice). If it fails now, it counts as failing: hi becomes it, lo the
 *     largest N below it that ever passed, and the bisection goes on.
 *
 * The trials are noisy (the host's other work, KSM's progress, where a
 * churn wave falls), and not always monotone in N. Noise mostly takes work
 * away, so a failed N is tried again (retries) before it counts: a load
 * burst must hit twice in a row to pull the answer down. A lucky pass is
 * caught by the confirmation. What the search returns is then always a
 * local boundary: best passed (twice, with confirm on) and first_fail
 * failed on every attempt, with best < first_fail; a real hole lower down
 * (N passes, a smaller N fails) is not looked for, since each trial costs
 * minutes and the bisection never tries an N outside (lo, hi).
 *
 * Invariants: lo < hi; lo is 0 or an N that passed and was not refuted;
 * hi is max + 1 or an N that failed every attempt (or its confirmation).
 */
#include <errno.h>

#include "density_search.h"

void density_search_init(struct density_search *ds)
{
	*ds = (struct density_search){
	    .start = 1, .max = 1, .retries = 1, .confirm = true, .max_trials = DENSITY_MAX_TRIALS};
}

/* One trial of @n, logged. 1 pass, 0 fail, -ENOSPC when no trial is left,
 * or the trial's error. */
static int attempt(struct density_search *ds, density_trial_fn trial, void *ctx, int n)
{
	int r;

	if (ds->trials >= ds->max_trials)
		return -ENOSPC;
	r = trial(ctx, n);
	if (r < 0)
		return r;
	ds->log[ds->trials].n = n;
	ds->log[ds->trials].pass = r > 0;
	ds->trials++;
	return r > 0;
}

/* @n passes if any of 1 + retries attempts passes (stopping at the first). */
static int probe(struct density_search *ds, density_trial_fn trial, void *ctx, int n)
{
	int r = 0;

	for (int i = 0; i <= ds->retries && r == 0; i++)
		r = attempt(ds, trial, ctx, n);
	return r;
}

static int passes_of(const struct density_search *ds, int n)
{
	int c = 0;

	for (int i = 0; i < ds->trials; i++)
		c += ds->log[i].n == n && ds->log[i].pass;
	return c;
}

/* The largest N below @hi that ever passed; 0 if none. */
static int best_pass_below(const struct density_search *ds, int hi)
{
	int lo = 0;

	for (int i = 0; i < ds->trials; i++)
		if (ds->log[i].pass && ds->log[i].n < hi && ds->log[i].n > lo)
			lo = ds->log[i].n;
	return lo;
}

static int search(struct density_search *ds, density_trial_fn trial, void *ctx, int *lo, int *hi)
{
	int n = ds->start < 1 ? 1 : ds->start > ds->max ? ds->max : ds->start;
	int r;

	/* 1. Grow. */
	for (;;) {
		if ((r = probe(ds, trial, ctx, n)) < 0)
			return r;
		if (!r) {
			*hi = n;
			break;
		}
		*lo = n;
		if (n == ds->max)
			break;
		n = n > ds->max / 2 ? ds->max : 2 * n;
	}
	for (;;) {
		/* 2. Bisect. */
		while (*hi - *lo > 1) {
			int mid = *lo + (*hi - *lo) / 2;

			if ((r = probe(ds, trial, ctx, mid)) < 0)
				return r;
			*(r ? lo : hi) = mid;
		}
		/* 3. Confirm. */
		if (!ds->confirm || *lo == 0 || passes_of(ds, *lo) >= 2)
			return 0;
		if ((r = probe(ds, trial, ctx, *lo)) < 0)
			return r;
		if (r)
			return 0;
		*hi = *lo;
		*lo = best_pass_below(ds, *hi);
	}
}

int density_search_run(struct density_search *ds, density_trial_fn trial, void *ctx)
{
	int lo = 0, hi, r;

	if (ds->max < 1 || ds->retries < 0 || ds->max_trials < 1 ||
	    ds->max_trials > DENSITY_MAX_TRIALS)
		return -EINVAL;
	hi = ds->max + 1;
	ds->trials = 0;
	ds->cut_short = false;
	r = search(ds, trial, ctx, &lo, &hi);
	if (r == -ENOSPC) {
		ds->cut_short = true;
		r = 0;
	}
	ds->best = lo;
	ds->first_fail = hi <= ds->max ? hi : 0;
	ds->at_max = lo == ds->max;
	return r;
}
