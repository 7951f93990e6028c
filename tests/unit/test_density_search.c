/* SPDX-License-Identifier: MIT */
/*
 * The density search (bench/density_search.c) over scripted trials: a true
 * density the trials follow, plus noise written into the script (an N that
 * fails its first attempts, a lucky pass above the boundary, a hole), and
 * the checks that it finds the largest passing N, does so in few trials,
 * never tries more than the maximum, and stops when told.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "rf_test.h"

#include "density_search.h"

#define MAXN 128

/* A scripted host: N passes when N <= density, except where the script
 * says otherwise for the first attempts at an N. */
struct script {
	int density;
	int flip[MAXN + 2];  /* this many first attempts at N give the opposite */
	int hole[MAXN + 2];  /* N always fails (a real non-monotone host) */
	int tries[MAXN + 2]; /* attempts made at each N */
	int error_at;	     /* a trial of this N returns -EIO (0: never) */
};

static int scripted(void *ctx, int n)
{
	struct script *s = ctx;
	bool pass;

	if (n < 1 || n > MAXN)
		fail_msg("trial of %d guests, outside 1..%d", n, MAXN);
	if (n == s->error_at)
		return -EIO;
	pass = n <= s->density && !s->hole[n];
	if (s->tries[n]++ < s->flip[n])
		pass = !pass;
	return pass;
}

static void run(struct density_search *ds, struct script *s, int start, int max)
{
	density_search_init(ds);
	ds->start = start;
	ds->max = max;
	assert_int_equal(density_search_run(ds, scripted, s), 0);
	for (int i = 0; i < ds->trials; i++)
		assert_true(ds->log[i].n >= 1 && ds->log[i].n <= max);
}

/* A clean monotone host: the exact density, whatever the start. */
static void test_finds_density(void **state)
{
	(void)state;
	for (int start = 1; start <= 20; start += 3)
		for (int density = 0; density <= 40; density++) {
			struct script s = {.density = density};
			struct density_search ds;

			run(&ds, &s, start, 64);
			if (ds.best != density)
				fail_msg("start %d, density %d: found %d", start, density, ds.best);
			assert_false(ds.cut_short);
			assert_int_equal(ds.first_fail, density + 1);
			/* Grow (at most 7 to 64), bisect (at most 6 steps, a fail
			 * tried twice), confirm once. */
			assert_true(ds.trials <= 7 + 12 + 1);
		}
}

/* Everything passes: it stops at the maximum and says so. */
static void test_stops_at_max(void **state)
{
	struct script s = {.density = 1000};
	struct density_search ds;

	(void)state;
	run(&ds, &s, 4, 24);
	assert_int_equal(ds.best, 24);
	assert_true(ds.at_max);
	assert_int_equal(ds.first_fail, 0);
	/* 4, 8, 16, 24, then 24 confirmed. */
	assert_int_equal(ds.trials, 5);
	assert_int_equal(s.tries[24], 2);
	/* Nothing passes: 0, and the search went down to 1. */
	memset(&s, 0, sizeof(s));
	run(&ds, &s, 4, 24);
	assert_int_equal(ds.best, 0);
	assert_false(ds.at_max);
	assert_int_equal(ds.first_fail, 1);
	assert_true(s.tries[1] == 2);
}

/* A load burst fails an N below the density once: the retry passes, and
 * the answer is right. */
static void test_retry_absorbs_a_spurious_fail(void **state)
{
	struct script s = {.density = 10};
	struct density_search ds;

	(void)state;
	s.flip[8] = 1; /* 4 passes, 8 fails once, then passes */
	run(&ds, &s, 4, 32);
	assert_int_equal(ds.best, 10);
	assert_int_equal(s.tries[8], 2);
	/* Without retries the same burst pulls the answer down to 7. */
	memset(s.tries, 0, sizeof(s.tries));
	density_search_init(&ds);
	ds.start = 4;
	ds.max = 32;
	ds.retries = 0;
	assert_int_equal(density_search_run(&ds, scripted, &s), 0);
	assert_int_equal(ds.best, 7);
}

/* A lucky pass above the density: the confirmation refutes it and the
 * search goes back down to the real boundary. */
static void test_confirm_refutes_a_lucky_pass(void **state)
{
	struct script s = {.density = 10};
	struct density_search ds;

	(void)state;
	s.flip[12] = 1; /* 16 fails; 12 passes once by luck */
	run(&ds, &s, 4, 32);
	assert_int_equal(ds.best, 10);
	assert_int_equal(ds.first_fail, 11);
	assert_true(s.tries[12] >= 2);
	/* Without the confirmation the lucky pass stands. */
	memset(s.tries, 0, sizeof(s.tries));
	density_search_init(&ds);
	ds.start = 4;
	ds.max = 32;
	ds.confirm = false;
	assert_int_equal(density_search_run(&ds, scripted, &s), 0);
	assert_int_equal(ds.best, 12);
}

/* A host that is not monotone (N = 6 always fails, 7..10 pass): whatever
 * comes back is a boundary the trials showed, passed at best and failed at
 * first_fail. */
static void test_non_monotone_gives_a_shown_boundary(void **state)
{
	(void)state;
	for (int start = 1; start <= 12; start++) {
		struct script s = {.density = 10};
		struct density_search ds;

		s.hole[6] = 1;
		run(&ds, &s, start, 32);
		assert_true(ds.best == 10 || ds.best == 5);
		assert_int_equal(ds.first_fail, ds.best + 1);
		assert_true(s.tries[ds.first_fail] >= 2); /* failed every attempt */
	}
}

/* The trial budget: the search stops, says it was cut short, and keeps what
 * it knew. An error from a trial stops it with that error. Bad settings are
 * refused. */
static void test_limits_and_errors(void **state)
{
	struct script s = {.density = 20};
	struct density_search ds;

	(void)state;
	density_search_init(&ds);
	ds.start = 4;
	ds.max = 64;
	ds.max_trials = 3; /* 4, 8, 16 */
	assert_int_equal(density_search_run(&ds, scripted, &s), 0);
	assert_true(ds.cut_short);
	assert_int_equal(ds.trials, 3);
	assert_int_equal(ds.best, 16);

	memset(&s, 0, sizeof(s));
	s.density = 20;
	s.error_at = 8;
	density_search_init(&ds);
	ds.start = 4;
	ds.max = 64;
	assert_int_equal(density_search_run(&ds, scripted, &s), -EIO);

	density_search_init(&ds);
	ds.max = 0;
	assert_int_equal(density_search_run(&ds, scripted, &s), -EINVAL);
	density_search_init(&ds);
	ds.max_trials = DENSITY_MAX_TRIALS + 1;
	assert_int_equal(density_search_run(&ds, scripted, &s), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_finds_density),
	    cmocka_unit_test(test_stops_at_max),
	    cmocka_unit_test(test_retry_absorbs_a_spurious_fail),
	    cmocka_unit_test(test_confirm_refutes_a_lucky_pass),
	    cmocka_unit_test(test_non_monotone_gives_a_shown_boundary),
	    cmocka_unit_test(test_limits_and_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
