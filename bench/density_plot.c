/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>

#include "density_plot.h"
#include "overcommit.h"

int density_plot(const char *path, const char *title, const struct density_point *pt, int npt,
		 double threshold, const int best[2])
{
	static const char *const color[2] = {"#4e79a7", "#e15759"};
	static const char *const label[2] = {"ramfold", "kernel stack"};
	const double W = 900, H = 420, X0 = 70, Y0 = 40, PW = 600, PH = 320;
	double ymax = 1.25; /* ticks every 25% */
	int nmax = 2;
	FILE *f;

	for (int i = 0; i < npt; i++) {
		if (pt[i].n + 1 > nmax)
			nmax = pt[i].n + 1;
		while (pt[i].min_share > ymax && ymax < 2)
			ymax += 0.25;
	}
	if (!(f = fopen(path, "we")))
		return -errno;
#define PX(n) (X0 + (double)(n) / nmax * PW)
#define PY(v) (Y0 + PH - (v) / ymax * PH)
	plot_header(f, W, H, X0, title);
	/* Axes: guests across, the lowest guest's share up. */
	fprintf(f,
		"<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n"
		"<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n"
		"<text x=\"%.0f\" y=\"%.0f\" text-anchor=\"middle\">guests</text>\n",
		X0, Y0, X0, Y0 + PH, X0, Y0 + PH, X0 + PW, Y0 + PH, X0 + PW / 2, Y0 + PH + 34);
	for (int n = 0; n <= nmax; n += nmax > 16 ? 4 : nmax > 8 ? 2 : 1)
		fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%d</text>\n", PX(n),
			Y0 + PH + 16, n);
	for (int i = 0; i <= 5; i++)
		fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.0f%%</text>\n",
			X0 - 4, PY(ymax * i / 5) + 4, 100 * ymax * i / 5);
	fprintf(f,
		"<line x1=\"%.0f\" y1=\"%.1f\" x2=\"%.0f\" y2=\"%.1f\" stroke=\"#888\" "
		"stroke-dasharray=\"6,4\"/><text x=\"%.0f\" y=\"%.1f\" fill=\"#666\">pass: "
		"every guest at %.0f%% or more</text>\n",
		X0, PY(threshold), X0 + PW, PY(threshold), X0 + 6, PY(threshold) - 5,
		100 * threshold);
	/* Each stack's density, a vertical line; then its trials, offset a little
	 * so that the two stacks' points at one N do not hide each other. */
	for (int s = 0; s < 2; s++) {
		double dx = s ? 4 : -4;

		if (best[s] > 0)
			fprintf(
			    f,
			    "<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" y2=\"%.0f\" stroke=\"%s\" "
			    "stroke-width=\"2\"/>\n",
			    PX(best[s]) + dx, Y0, PX(best[s]) + dx, Y0 + PH, color[s]);
		for (int i = 0; i < npt; i++) {
			double v = pt[i].min_share < 0 ? 0 : pt[i].min_share;

			if (pt[i].stack != s)
				continue;
			fprintf(f,
				"<circle cx=\"%.1f\" cy=\"%.1f\" r=\"5\" stroke=\"%s\" "
				"stroke-width=\"2\" fill=\"%s\"/>\n",
				PX(pt[i].n) + dx, PY(v < ymax ? v : ymax), color[s],
				pt[i].pass ? color[s] : "white");
		}
		fprintf(f,
			"<circle cx=\"%.0f\" cy=\"%.0f\" r=\"5\" fill=\"%s\"/><text x=\"%.0f\" "
			"y=\"%.0f\">%s: %s%d guests</text>\n",
			X0 + PW + 12, Y0 + 40.0 + 20 * s, color[s], X0 + PW + 22,
			Y0 + 44.0 + 20 * s, label[s], best[s] < 0 ? "not run, " : "",
			best[s] < 0 ? 0 : best[s]);
	}
	fprintf(f,
		"<text x=\"%.0f\" y=\"%.0f\">filled: the trial passed</text>\n"
		"<text x=\"%.0f\" y=\"%.0f\">hollow: it failed</text>\n"
		"<text x=\"%.0f\" y=\"%.0f\">line: the density found</text>\n</svg>\n",
		X0 + PW + 12, Y0 + 100, X0 + PW + 12, Y0 + 118, X0 + PW + 12, Y0 + 136);
#undef PX
#undef PY
	return fclose(f) ? -errno : 0;
}
