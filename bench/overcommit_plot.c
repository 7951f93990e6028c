/* SPDX-License-Identifier: MIT */
/* The frame every plot of the experiment shares: the SVG's head, the axes
 * and their ticks. */
#include "overcommit.h"

void plot_header(FILE *f, double w, double h, double title_x, const char *title)
{
	fprintf(f,
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%.0f\" height=\"%.0f\" "
		"font-family=\"sans-serif\" font-size=\"12\">\n"
		"<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n"
		"<text x=\"%.0f\" y=\"18\" font-size=\"14\">%s</text>\n",
		w, h, title_x, title);
}

void plot_axes(FILE *f, const struct plot_frame *p, double yscale, const char *yunit)
{
	fprintf(f,
		"<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n"
		"<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\"/>\n",
		p->x0, p->y0, p->x0, p->y0 + p->ph, p->x0, p->y0 + p->ph, p->x0 + p->pw,
		p->y0 + p->ph);
	for (int i = 0; i <= 5; i++) {
		double v = p->ymax * i / 5, t = p->tmax * i / 5;

		fprintf(f, "<text x=\"%.0f\" y=\"%.1f\" text-anchor=\"end\">%.0f%s</text>\n",
			p->x0 - 4, p->y0 + p->ph - v / p->ymax * p->ph + 4, v * yscale, yunit);
		fprintf(f, "<text x=\"%.1f\" y=\"%.0f\" text-anchor=\"middle\">%.0f s</text>\n",
			p->x0 + t / p->tmax * p->pw, p->y0 + p->ph + 16, t);
	}
}
