/* SPDX-License-Identifier: MIT */
/*
 * The density search (issue 18, "Density"): the largest number of guests N
 * for which a trial passes (every guest keeps at least 90% of its
 * unconstrained work, the budget held), found with as few trials as the
 * noise allows. Pure logic: the trial is a callback, so the search is
 * unit-tested over scripted trials (tests/unit/test_density_search.c) and
 * bench/density.c gives it real experiment runs.
 *
 * Single-threaded; the callback runs in the caller's thread.
 */
#ifndef BENCH_DENSITY_SEARCH_H
#define BENCH_DENSITY_SEARCH_H

#include <stdbool.h>

#define DENSITY_MAX_TRIALS 64

/* One trial of @n guests: 1 passed, 0 failed, a negative errno to stop the
 * search (the trial could not be run at all). */
typedef int (*density_trial_fn)(void *ctx, int n);

struct density_search {
	/* Settings (density_search_init() sets the defaults). */
	int start;	/* first N tried (clamped to 1..max) */
	int max;	/* never more guests than this */
	int retries;	/* a failed N is tried again this many times before it counts */
	bool confirm;	/* the answer is tried once more before it stands */
	int max_trials; /* stop after this many trials, whatever is known then */

	/* Results. */
	int best;	/* the largest N that passed and stands; 0: none did */
	int first_fail; /* the smallest N above best that failed; 0: none was seen */
	bool at_max;	/* best == max: the real density may be higher */
	bool cut_short; /* max_trials ran out before the answer was known */
	int trials;	/* how many trials ran */
	struct {
		int n;
		bool pass;
	} log[DENSITY_MAX_TRIALS]; /* each trial, in order */
};

/* The defaults: start 1, max 1, one retry, confirm on, DENSITY_MAX_TRIALS. */
void density_search_init(struct density_search *ds);

/* Run the search with @trial(@ctx, n). Returns 0 (the answer in ds->best,
 * which may be cut short: ds->cut_short), -EINVAL for settings out of range,
 * or the negative errno a trial returned. */
int density_search_run(struct density_search *ds, density_trial_fn trial, void *ctx);

#endif
