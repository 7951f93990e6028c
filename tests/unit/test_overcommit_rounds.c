/* SPDX-License-Identifier: MIT */
/*
 * The experiment's rounds table (bench/overcommit_rounds.c) over made-up
 * rounds: medians and ranges of the figures a round has, the comparison of
 * ramfold's run with the kernel stack's (a ratio from the medians, a peer
 * the cgroup killed counted as no work, the budget counted only where every
 * guest lived), and the noisy rule (no verdict when a run started at load
 * average 1 or more).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rf_test.h"

#include "overcommit.h"

static struct scenario sc;
static struct run_result res[MAX_ROUNDS][MAX_RUNS];
static struct run_result *rr[MAX_ROUNDS];

/* Three runs as in scenarios/overcommit-default.txt, @rounds rounds. */
static void setup_runs(int rounds)
{
	memset(&sc, 0, sizeof(sc));
	memset(res, 0, sizeof(res));
	sc.nruns = 3;
	snprintf(sc.runs[0].name, sizeof(sc.runs[0].name), "unconstrained");
	sc.runs[0].unconstrained = true;
	snprintf(sc.runs[1].name, sizeof(sc.runs[1].name), "ramfold");
	sc.runs[1].ramfold_reclaim = true;
	snprintf(sc.runs[2].name, sizeof(sc.runs[2].name), "kernel-stack");
	sc.runs[2].kernel = sc.runs[2].ksm = true;
	for (int k = 0; k < rounds; k++) {
		rr[k] = res[k];
		for (int r = 0; r < 3; r++) {
			struct run_result *x = &res[k][r];

			x->nvms = x->responsive = 6;
			x->memcheck_ok = true;
			x->under_budget = r != 0;
			x->work_share = x->work_worst = r == 0 ? 1.0 : -1;
			x->rf_stall_pct = r == 1 ? 0.01 : -1;
			x->stall_pct = r == 2 ? 50 : -1;
			x->max_pss_after = (uint64_t)(900 + 10 * k) << 20;
		}
	}
}

static void set_work(int k, int r, double share, double worst)
{
	res[k][r].work_share = share;
	res[k][r].work_worst = worst;
}

/* The table as text. */
static char *table(int rounds, double maxload)
{
	static char buf[1 << 14];
	FILE *f = fmemopen(buf, sizeof(buf), "w");

	assert_non_null(f);
	write_rounds_table(f, &sc, rr, rounds, maxload);
	fclose(f);
	return buf;
}

static void test_median_and_range(void **state)
{
	double v[] = {0.86, -1, 0.94, 0.93}, med, lo, hi;
	double even[] = {1, 4, 2, 3};

	(void)state;
	assert_int_equal(rounds_median(v, 4, &med, &lo, &hi), 3);
	assert_true(med == 0.93 && lo == 0.86 && hi == 0.94);
	assert_int_equal(rounds_median(even, 4, &med, &lo, &hi), 4);
	assert_true(med == 2.5 && lo == 1 && hi == 4);
	v[0] = v[2] = v[3] = -1;
	assert_int_equal(rounds_median(v, 4, &med, &lo, &hi), 0);
}

/* The last session's three rounds (docs/overcommit.md): the peer killed in
 * two. The median of its work is no work; the line must say so, and count
 * the killed rounds against the peer's budget, not for it. */
static void test_peer_killed_in_two_rounds(void **state)
{
	char *t;

	(void)state;
	setup_runs(3);
	set_work(0, 1, 0.86, 0.62);
	set_work(1, 1, 0.93, 0.78);
	set_work(2, 1, 0.94, 0.85);
	res[0][1].rf_stall_pct = 2.28;
	for (int k = 0; k < 2; k++) {
		res[k][2].oom_kills = 1;
		res[k][2].responsive = 0;
		res[k][2].under_budget = false;
	}
	set_work(2, 2, 0.43, 0.07);
	t = table(3, 0.89);
	assert_non_null(strstr(t, "93% (86%..94%)"));
	assert_non_null(strstr(t, "0% (0%..43%)")); /* killed: no work, not left out */
	assert_non_null(strstr(t, "0.01% (0.01%..2.28%)"));
	assert_non_null(strstr(t, "per round: 86%/0% 93%/0% 2.19x"));
	assert_non_null(strstr(t, "work 93% against 0%"));
	assert_non_null(strstr(t, "2 of 3 killed"));
	assert_non_null(strstr(t, "ramfold 3/3, kernel-stack 1/3"));
	assert_non_null(strstr(t, "missed: kernel-stack's budget\n"));
	assert_null(strstr(t, "targets met"));
}

static void test_targets_met(void **state)
{
	char *t;

	(void)state;
	setup_runs(3);
	for (int k = 0; k < 3; k++) {
		set_work(k, 1, 0.90 + 0.01 * k, 0.80);
		set_work(k, 2, 0.40 + 0.05 * k, 0.10);
	}
	t = table(3, 0.85);
	assert_non_null(strstr(t, "work 91% against 45%, 2.02x (target >= 1.5x)"));
	assert_non_null(strstr(t, ": targets met\n"));
	assert_non_null(strstr(t, "3/3    3/3"));
}

static void test_each_target_missed(void **state)
{
	char *t;

	(void)state;
	setup_runs(3);
	for (int k = 0; k < 3; k++) {
		set_work(k, 1, 0.60, 0.50);
		set_work(k, 2, 0.50, 0.40);
		res[k][1].rf_stall_pct = 3;
	}
	res[1][1].under_budget = false; /* OVER once */
	res[2][1].memcheck_ok = false;	/* a wrong page: not alive */
	t = table(3, 0.5);
	assert_non_null(strstr(t, "1.20x (target >= 1.5x)"));
	assert_non_null(strstr(t, "missed: work, stall, ramfold's budget\n"));
	assert_non_null(strstr(t, "ramfold 1/3"));
}

static void test_noisy_gives_no_verdict(void **state)
{
	char *t;

	(void)state;
	setup_runs(3);
	for (int k = 0; k < 3; k++) {
		set_work(k, 1, 0.90, 0.80);
		set_work(k, 2, 0.30, 0.10);
	}
	t = table(3, 1.4);
	assert_non_null(strstr(t, "noisy (load average 1.40 at a run's start, 1 or more): no "
				  "verdict"));
	assert_null(strstr(t, "targets met"));
	assert_null(strstr(t, "missed"));
}

/* No unconstrained run: no share, so no ratio; no peer: no line at all. */
static void test_without_baseline_or_peer(void **state)
{
	char *t;

	(void)state;
	setup_runs(2);
	t = table(2, 0.5);
	assert_non_null(strstr(t, "no ratio"));
	sc.nruns = 2;
	t = table(2, 0.5);
	assert_null(strstr(t, " vs "));
	assert_int_equal(rounds_median_index(&sc, rr, 2), 0);
}

static void test_median_round(void **state)
{
	(void)state;
	setup_runs(3);
	set_work(0, 1, 0.86, 0.6);
	set_work(1, 1, 0.99, 0.6);
	set_work(2, 1, 0.93, 0.6);
	assert_int_equal(rounds_median_index(&sc, rr, 3), 2);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_median_and_range),
	    cmocka_unit_test(test_peer_killed_in_two_rounds),
	    cmocka_unit_test(test_targets_met),
	    cmocka_unit_test(test_each_target_missed),
	    cmocka_unit_test(test_noisy_gives_no_verdict),
	    cmocka_unit_test(test_without_baseline_or_peer),
	    cmocka_unit_test(test_median_round),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
