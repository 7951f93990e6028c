/* SPDX-License-Identifier: MIT */
/*
 * The density search as one picture (bench/density.c): each trial's lowest
 * guest share against its guest count, a colour per stack, filled when the
 * trial passed, the threshold as a line and each stack's density marked.
 */
#ifndef BENCH_DENSITY_PLOT_H
#define BENCH_DENSITY_PLOT_H

#include <stdbool.h>

struct density_point {
	int stack; /* 0 ramfold, 1 kernel stack */
	int n;
	double min_share; /* < 0: no guest counted work */
	bool pass;
};

/* Write the SVG to @path; @best[2] the stacks' densities (-1: not run).
 * Returns 0 or a negative errno. */
int density_plot(const char *path, const char *title, const struct density_point *pt, int npt,
		 double threshold, const int best[2]);

#endif
