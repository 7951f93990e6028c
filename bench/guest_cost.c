/* SPDX-License-Identifier: MIT */
/*
 * bench/guest_cost: what page dedup costs the guests it works on (issue 17,
 * "the guest must not pay for it").
 *
 * The demo VMM runs two guests doing memory-bound work: memcheck (verifies
 * and rewrites 320 MiB, round after round) and hotcold (reads and writes a
 * 64 MiB hot set; 224 MiB cold). Each round runs them twice, for the same
 * seconds: with --dedup off, then with ramfold's engine in the library's
 * default mode (--dedup intra: as fast as it can until converged, then 2% of
 * a core). --rounds rounds (3 by default) interleave them: off, on, off, on...
 *
 * Throughput is the guests' own count of their work, query-vms' work-bytes
 * (memcheck: bytes verified and rewritten; hotcold: hot-set bytes read and
 * written; guest/bootinfo.h), sampled every 100 ms. A run's clock starts
 * SETTLE_S after both guests are READY (t = 0): the on run holds its VMs
 * back from the engine until then (--dedup-paused, then set-dedup), so that
 * both runs count their seconds from the same point of the guests' lives.
 * In the on run:
 *  - the first pass is over when a pass that began after the attach has
 *    ended: scan-passes two above its count just after set-dedup (the pass
 *    under way then may have begun before the VMs were in). At most one
 *    pass late, never early;
 *  - converged: query-dedup says so once the first pass is over. The flag
 *    is set at the end of a pass that found no work; the first whole pass
 *    over the VMs hashes their pages for the first time, which is work, so
 *    a flag read then comes from a pass that saw them all. (Waiting for a
 *    third pass put the window past an idle pass of seconds.)
 * Each guest's throughput during the first pass (over [0, its end]), until
 * converged (over [0, converged]: the engine works as fast as it can until
 * then, which can be many passes after the first) and once converged (over
 * the --window seconds that follow) is given as a share of the off run's
 * over the same seconds since t = 0, with the engine's CPU share in each.
 *
 * Fair measurement (docs/dedup.md): the host line at the start; before each
 * run the bench waits for the load average to fall below 0.9 (the run before
 * raises it) and records it at the run's start; medians and ranges over the
 * rounds; the verdict (target: once converged, within 2% of dedup off) only
 * if every run started below load 1, "noisy" otherwise. Both runs poll the
 * same commands at the same rate, and query-dedup with counters=true, which
 * walks no pagemap: the bench does not make the cost it measures.
 *
 * Usage: guest_cost [--rounds N] [--seconds S] [--window S] [--wait S] [--out DIR]
 * (--wait: the longest wait for a quiet machine before a run, 180 s).
 * Output: the table on stdout; DIR/guest_cost.csv (every sample),
 * DIR/guest_cost_summary.csv (per round and guest) and DIR/guest_cost.svg
 * (each guest's throughput over time, off and on, every round).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "dedup_report.h"
#include "vmm_proc.h"

#define NG	 2   /* guests */
#define CPU	 NG  /* struct reading's v[CPU]: the engine's CPU seconds */
#define SAMPLE_S 0.1 /* sampling period */
#define MB	 1e6
/* Measured here (kvm_pvm): the guests' throughput climbs for about 1.5 s
 * after READY, dedup off or on. t = 0 is this long after READY, so that the
 * first pass is compared with the guests' steady state, not their warm-up. */
#define SETTLE_S 3

static const struct guest {
	const char *name, *spec;
} guests[NG] = {
    {"memcheck", "name=memcheck,mem=384M,workload=memcheck,mib=320,console=off"},
    {"hotcold", "name=hotcold,mem=320M,workload=hotcold,mib=224,hot=64,console=off"},
};

static unsigned int opt_rounds = 3;
static double opt_seconds = 16, opt_window = 10;
static int opt_wait = 180; /* longest wait for a quiet machine before a run, s */
static const char *opt_out = "build/bench";

struct reading {
	double t;	   /* seconds since t = 0 */
	double v[NG + 1];  /* each guest's work-bytes, the engine's CPU-s: since t = 0 */
	unsigned int pass; /* scan passes since the attach */
	bool converged;
	/* The engine's mapping changes so far (pages merged, zero, unmerged):
	 * what to look at where a guest's throughput dips. */
	double changes[3];
};

static const char *const change_keys[3] = {"pages-merged", "pages-zero", "pages-unmerged"};

struct run {
	bool on;
	double load; /* load average at the run's start */
	struct reading *s;
	unsigned int n;
	double t_pass, t_conv; /* first pass over, converged (s since t = 0); -1: not seen */
};

/* The windows of an on run whose throughput is compared with the off
 * run's: [0, first pass over], [0, converged], and --window s from then. */
enum { W_FIRST, W_UNTIL, W_CONV, NW };
static const char *const wnames[NW] = {"first pass", "until converged", "converged"};

/* Per round, for the medians: each guest's off throughput (whole run) and
 * its shares per window; the on run's times and the engine's CPU share per
 * window. -1: not measured. */
struct rounds {
	unsigned int n;
	double maxload;
	double off[NG][BENCH_MAX_ROUNDS], share[NW][NG][BENCH_MAX_ROUNDS];
	double t_pass[BENCH_MAX_ROUNDS], t_conv[BENCH_MAX_ROUNDS], cpu[NW][BENCH_MAX_ROUNDS];
};

/* Value @k of @r at @t s, linear between the samples around it; -1 if @t
 * is outside the run. The values are counters: a rate is a difference. */
static double value_at(const struct run *r, unsigned int k, double t)
{
	for (unsigned int i = 1; i < r->n; i++) {
		const struct reading *a = &r->s[i - 1], *b = &r->s[i];

		if (b->t >= t && a->t <= t)
			return a->v[k] + (b->v[k] - a->v[k]) * (t - a->t) / (b->t - a->t);
	}
	return -1;
}

/* Value @k's rate over [@a, @b] (per second), -1 if not covered. */
static double rate(const struct run *r, unsigned int k, double a, double b)
{
	double va = value_at(r, k, a), vb = value_at(r, k, b);

	return va < 0 || vb < 0 || b <= a ? -1 : (vb - va) / (b - a);
}

static int start(struct vmm_proc *p, bool on)
{
	const char *args[16];
	unsigned int n = 0;

	args[n++] = "--dedup";
	args[n++] = on ? "intra" : "off";
	if (on)
		args[n++] = "--dedup-paused";
	for (unsigned int g = 0; g < NG; g++) {
		args[n++] = "--vm";
		args[n++] = guests[g].spec;
	}
	args[n] = NULL;
	if (vmm_proc_start(p, args)) {
		fprintf(stderr, "guest_cost: the VMM did not start:\n%s\n", p->out);
		vmm_proc_free(p);
		return -1;
	}
	for (unsigned int g = 0; g < NG; g++)
		if (vmm_proc_wait_ready(p, guests[g].name, 60000)) {
			fprintf(stderr, "guest_cost: %s not READY:\n%s\n", guests[g].name, p->out);
			vmm_proc_stop(p);
			vmm_proc_free(p);
			return -1;
		}
	return 0;
}

/* Ask @req; the reply in @reply, or -1 (said). */
static int ask(struct vmm_proc *p, const char *req, char *reply, size_t len)
{
	reply[0] = 0;
	if (vmm_proc_ctl(p, req, reply, len, 5000) || !strstr(reply, "\"return\"")) {
		fprintf(stderr, "guest_cost: %s: no answer (%s)\n", req, reply);
		return -1;
	}
	return 0;
}

/* One reading: each guest's work-bytes (query-vms), the engine's passes,
 * convergence and CPU (query-dedup, counters only). 0 or -1 (said). */
static int take_reading(struct vmm_proc *p, double t0, struct reading *s)
{
	char vms[4096], dd[1024];
	double t1 = bench_now_s(), t2, x;

	if (ask(p, "{\"execute\":\"query-vms\"}", vms, sizeof(vms)))
		return -1;
	t2 = bench_now_s();
	if (ask(p, "{\"execute\":\"query-dedup\",\"arguments\":{\"counters\":true}}", dd,
		sizeof(dd)))
		return -1;
	/* The VMM read the counters between the request and the reply. */
	s->t = (t1 + t2) / 2 - t0;
	for (unsigned int g = 0; g < NG; g++) {
		char key[48];
		const char *o;

		snprintf(key, sizeof(key), "{\"name\":\"%s\"", guests[g].name);
		o = strstr(vms, key);
		s->v[g] = o ? bench_json_num(o, "work-bytes") : -1;
		if (s->v[g] < 0) {
			fprintf(stderr, "guest_cost: %s reports no work-bytes: %s\n",
				guests[g].name, vms);
			return -1;
		}
	}
	s->v[CPU] = bench_json_num(dd, "cpu-ns") / 1e9; /* -1e-9 with dedup off */
	if (s->v[CPU] < 0)
		s->v[CPU] = 0;
	x = bench_json_num(dd, "scan-passes"); /* -1: dedup off */
	s->pass = x > 0 ? (unsigned int)x : 0;
	s->converged = strstr(dd, "\"converged\":true") != NULL;
	for (unsigned int i = 0; i < 3; i++) {
		s->changes[i] = bench_json_num(dd, change_keys[i]);
		if (s->changes[i] < 0) /* dedup off */
			s->changes[i] = 0;
	}
	return 0;
}

/* A memcheck round that found a wrong word is a lost write: the bench's
 * numbers would be the least of its problems. */
static bool memcheck_clean(struct vmm_proc *p)
{
	static char log[1 << 16];

	return vmm_proc_console_log(p, "memcheck", log, sizeof(log)) < 0 || !strstr(log, "BAD");
}

/* One run: start the guests, t = 0 once they have settled after READY (the
 * on run attaches them to the engine then), a reading every 100 ms for
 * --seconds. */
static int run_one(struct run *r, FILE *csv, unsigned int round)
{
	unsigned int cap = (unsigned int)(opt_seconds / SAMPLE_S) + 2, pass0 = 0;
	double base[NG + 1] = {0};
	struct vmm_proc p;
	char reply[1024];
	double t0;
	int err = 0;

	r->s = calloc(cap, sizeof(*r->s));
	r->n = 0;
	r->t_pass = r->t_conv = -1;
	if (!r->s || start(&p, r->on))
		return -1;
	sleep(SETTLE_S);
	if (r->on && ask(&p, "{\"execute\":\"set-dedup\",\"arguments\":{\"run\":true}}", reply,
			 sizeof(reply)))
		err = -1;
	t0 = bench_now_s();
	while (!err && r->n < cap) {
		struct reading *s = &r->s[r->n];
		double wait = t0 + r->n * SAMPLE_S - bench_now_s();

		if (wait > 0)
			usleep((useconds_t)(wait * 1e6));
		if (take_reading(&p, t0, s)) {
			err = -1;
			break;
		}
		if (r->n == 0) { /* t = 0: every figure counts from here */
			t0 += s->t;
			s->t = 0;
			pass0 = s->pass;
			memcpy(base, s->v, sizeof(base));
		}
		s->pass -= pass0;
		for (unsigned int k = 0; k <= CPU; k++)
			s->v[k] -= base[k];
		if (r->on && r->t_pass < 0 && s->pass >= 2)
			r->t_pass = s->t;
		if (r->on && r->t_conv < 0 && s->pass >= 2 && s->converged)
			r->t_conv = s->t;
		fprintf(csv, "%u,%s,%.3f,%.0f,%.0f,%.4f,%u,%d,%.0f,%.0f,%.0f\n", round,
			r->on ? "on" : "off", s->t, s->v[0], s->v[1], s->v[CPU], s->pass,
			s->converged, s->changes[0], s->changes[1], s->changes[2]);
		r->n++;
		if (s->t >= opt_seconds)
			break;
	}
	if (!err && !memcheck_clean(&p)) {
		fprintf(stderr, "guest_cost: memcheck found a bad round with dedup %s\n",
			r->on ? "on" : "off");
		err = -1;
	}
	vmm_proc_stop(&p);
	vmm_proc_free(&p);
	return err;
}

/* "@v MB/s" or "-". */
static const char *mbps(char *buf, size_t len, double v)
{
	if (v < 0)
		snprintf(buf, len, "-");
	else
		snprintf(buf, len, "%.0f MB/s", v / MB);
	return buf;
}

/* A round's figures from its off and on runs: printed, written to the
 * summary CSV and kept for the medians. */
static void round_eval(struct rounds *rd, const struct run *off, const struct run *on, FILE *sum)
{
	unsigned int i = rd->n;
	double end =
	    off->s[off->n - 1].t < on->s[on->n - 1].t ? off->s[off->n - 1].t : on->s[on->n - 1].t;
	double from[NW] = {0, 0, on->t_conv},
	       to[NW] = {on->t_pass, on->t_conv, on->t_conv + opt_window};
	bool ok[NW];

	rd->t_pass[i] = on->t_pass;
	rd->t_conv[i] = on->t_conv;
	for (unsigned int w = 0; w < NW; w++) {
		ok[w] = from[w] >= 0 && to[w] > from[w] && to[w] <= end;
		rd->cpu[w][i] = ok[w] ? rate(on, CPU, from[w], to[w]) : -1;
	}
	printf("round %u: first pass over at %.2f s, converged at %.2f s%s; the engine took "
	       "%.0f%% of a core until converged, %.1f%% once converged\n",
	       i + 1, on->t_pass, on->t_conv,
	       ok[W_CONV] ? "" : " (no window: not converged in time)", rd->cpu[W_UNTIL][i] * 100,
	       rd->cpu[W_CONV][i] * 100);
	for (unsigned int g = 0; g < NG; g++) {
		rd->off[g][i] = rate(off, g, 0, end);
		printf("  %-9s", guests[g].name);
		fprintf(sum, "%u,%s,%.2f,%.2f,%.3f,%.3f", i + 1, guests[g].name, off->load,
			on->load, on->t_pass, on->t_conv);
		for (unsigned int w = 0; w < NW; w++) {
			double r_off = ok[w] ? rate(off, g, from[w], to[w]) : -1;
			double r_on = ok[w] ? rate(on, g, from[w], to[w]) : -1;
			char x[2][32];

			rd->share[w][g][i] = r_on >= 0 && r_off > 0 ? r_on / r_off : -1;
			printf("%s %s %s of %s (%.1f%%)", w ? "," : "", wnames[w],
			       mbps(x[0], 32, r_on), mbps(x[1], 32, r_off),
			       rd->share[w][g][i] * 100);
			fprintf(sum, ",%.0f,%.0f,%.4f,%.4f", r_off, r_on, rd->share[w][g][i],
				rd->cpu[w][i]);
		}
		printf("\n");
		fprintf(sum, "\n");
	}
	rd->n++;
}

/* The guest whose median share @v is the lowest; -1 if none has one. */
static int lowest_guest(double v[NG][BENCH_MAX_ROUNDS], unsigned int n, double *med)
{
	int low = -1;

	for (unsigned int g = 0; g < NG; g++) {
		double m = bench_median(v[g], n);

		if (m >= 0 && (low < 0 || m < *med)) {
			low = (int)g;
			*med = m;
		}
	}
	return low;
}

static void rounds_report(struct rounds *rd)
{
	unsigned int n = rd->n;
	char c[4][64];
	double m = 0;
	int g;

	printf("\n%u round(s), dedup off and on interleaved. With dedup on, each guest's "
	       "throughput as a share of dedup off's over the same seconds since t = 0: median "
	       "(min..max)\n",
	       n);
	printf("%-10s %-22s %-22s %-22s %-22s\n", "guest", "dedup off (MB/s)", "first pass (%)",
	       "until converged (%)", "converged (%)");
	for (g = 0; g < NG; g++) {
		bench_median_cell(c[0], 64, rd->off[g], n, 1 / MB, "%.0f");
		for (unsigned int w = 0; w < NW; w++)
			bench_median_cell(c[w + 1], 64, rd->share[w][g], n, 100, "%.1f");
		printf("%-10s %-22s %-22s %-22s %-22s\n", guests[g].name, c[0], c[1], c[2], c[3]);
	}
	bench_median_cell(c[0], 64, rd->t_pass, n, 1, "%.2f");
	bench_median_cell(c[1], 64, rd->t_conv, n, 1, "%.2f");
	bench_median_cell(c[2], 64, rd->cpu[W_UNTIL], n, 100, "%.0f");
	bench_median_cell(c[3], 64, rd->cpu[W_CONV], n, 100, "%.1f");
	printf("first pass over at %s s after the attach, converged at %s s; the engine took %s%% "
	       "of a core until converged, %s%% once converged\n",
	       c[0], c[1], c[2], c[3]);
	for (unsigned int w = W_FIRST; w <= W_UNTIL; w++) {
		g = lowest_guest(rd->share[w], n, &m);
		if (g >= 0)
			printf("%s: %.1f%% of dedup off (%s, the lower median; reported, no "
			       "target)\n",
			       wnames[w], m * 100, guests[g].name);
	}
	g = lowest_guest(rd->share[W_CONV], n, &m);
	if (rd->maxload >= 1)
		printf("converged: noisy (load average %.2f at a run's start, 1 or more): no "
		       "verdict\n",
		       rd->maxload);
	else if (g < 0)
		printf("converged: no figure (the engine converged too late in every round for a "
		       "%.0f s window within %.0f s)\n",
		       opt_window, opt_seconds);
	else
		printf("converged: %.1f%% of dedup off (target within 2%%): %s (%s, the lower "
		       "median; load average at most %.2f at the runs' starts)\n",
		       m * 100, m >= 0.98 ? "met" : "not met", guests[g].name, rd->maxload);
}

/*
 * DIR/guest_cost.svg: one panel per guest, its throughput in 0.5 s bins,
 * dedup off dashed and on solid, one colour per round; where each on run's
 * first pass ended (dotted) and where it converged (dashed).
 */
static void write_svg(const char *path, struct run (*runs)[2], unsigned int n)
{
	static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"};
	const double bin = 0.5, pw = 700, ph = 200;
	FILE *f = fopen(path, "w");

	if (!f)
		return;
	fprintf(f,
		"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"%d\" "
		"font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%%\" "
		"height=\"100%%\" fill=\"white\"/>\n",
		20 + 260 * NG);
	for (unsigned int g = 0; g < NG; g++) {
		double top = 20 + 260 * g, ymax = 0;

		for (unsigned int r = 0; r < n; r++)
			for (unsigned int k = 0; k < 2; k++)
				for (double t = 0; t + bin <= opt_seconds; t += bin)
					if (rate(&runs[r][k], g, t, t + bin) > ymax)
						ymax = rate(&runs[r][k], g, t, t + bin);
		ymax = ymax > 0 ? ymax * 1.1 : 1;
		fprintf(f,
			"<path d=\"M60 %.0f V%.0f H760\" fill=\"none\" stroke=\"black\"/>\n"
			"<text x=\"410\" y=\"%.0f\" text-anchor=\"middle\">%s: MB/s over the "
			"seconds since t = 0; dashed: dedup off, solid: on</text>\n"
			"<text x=\"55\" y=\"%.0f\" text-anchor=\"end\">%.0f</text>\n"
			"<text x=\"55\" y=\"%.0f\" text-anchor=\"end\">0</text>\n"
			"<text x=\"760\" y=\"%.0f\" text-anchor=\"end\">%.0f s</text>\n",
			top, top + ph, top + ph + 30, guests[g].name, top + 4, ymax / MB,
			top + ph + 4, top + ph + 15, opt_seconds);
		for (unsigned int r = 0; r < n; r++) {
			const char *col = colors[r % 5];

			for (unsigned int k = 0; k < 2; k++) {
				fprintf(f, "<polyline fill=\"none\" stroke=\"%s\"%s points=\"", col,
					k ? "" : " stroke-dasharray=\"4\"");
				for (double t = 0; t + bin <= opt_seconds; t += bin) {
					double v = rate(&runs[r][k], g, t, t + bin);

					if (v >= 0)
						fprintf(f, "%.1f,%.1f ",
							60 + pw * (t + bin / 2) / opt_seconds,
							top + ph - ph * v / ymax);
				}
				fprintf(f, "\"/>\n");
			}
			for (unsigned int m = 0; m < 2; m++) {
				double t = m ? runs[r][1].t_conv : runs[r][1].t_pass;

				if (t >= 0)
					fprintf(f,
						"<line x1=\"%.1f\" y1=\"%.0f\" x2=\"%.1f\" "
						"y2=\"%.0f\" stroke=\"%s\" "
						"stroke-dasharray=\"%s\"/>\n",
						60 + pw * t / opt_seconds, top,
						60 + pw * t / opt_seconds, top + ph, col,
						m ? "6,3" : "1,3");
			}
		}
	}
	fprintf(f, "</svg>\n");
	fclose(f);
}

static FILE *open_out(const char *name, const char *header)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", opt_out, name);
	f = fopen(path, "w");
	if (!f)
		perror(path);
	else
		fputs(header, f);
	return f;
}

int main(int argc, char **argv)
{
	struct rounds rd = {0};
	struct run(*runs)[2];
	char path[512];
	FILE *csv, *sum;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--rounds") && i + 1 < argc)
			opt_rounds = (unsigned int)atoi(argv[++i]);
		else if (!strcmp(argv[i], "--seconds") && i + 1 < argc)
			opt_seconds = atof(argv[++i]);
		else if (!strcmp(argv[i], "--window") && i + 1 < argc)
			opt_window = atof(argv[++i]);
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			opt_out = argv[++i];
		else if (!strcmp(argv[i], "--wait") && i + 1 < argc)
			opt_wait = atoi(argv[++i]);
		else {
			fprintf(
			    stderr,
			    "usage: %s [--rounds N] [--seconds S] [--window S] [--wait S] [--out "
			    "DIR]\n",
			    argv[0]);
			return 2;
		}
	}
	if (opt_rounds < 1 || opt_rounds > BENCH_MAX_ROUNDS || opt_window <= 0 ||
	    opt_seconds <= opt_window) {
		fprintf(stderr, "guest_cost: --rounds 1..%d, and --seconds above --window\n",
			BENCH_MAX_ROUNDS);
		return 2;
	}
	if (access("/dev/kvm", R_OK | W_OK)) {
		printf("guest_cost: /dev/kvm not accessible: skipped\n");
		return 0;
	}
	bench_host_line("guest_cost bench");
	printf("guest_cost bench: %s and %s in one ramfold-vmm, dedup off then --dedup intra "
	       "(fastest until converged), %.0f s each from t = 0 (%d s after READY), %u "
	       "round(s); converged window %.0f s\n",
	       guests[0].spec, guests[1].spec, opt_seconds, SETTLE_S, opt_rounds, opt_window);
	csv =
	    open_out("guest_cost.csv", "round,dedup,t_s,memcheck_work_bytes,hotcold_work_bytes,"
				       "engine_cpu_s,scan_passes,converged,pages_merged,pages_zero,"
				       "pages_unmerged\n");
	sum =
	    open_out("guest_cost_summary.csv",
		     "round,guest,load_off,load_on,first_pass_s,converged_s,"
		     "first_pass_off_Bps,first_pass_on_Bps,first_pass_share,first_pass_engine_cpu,"
		     "until_off_Bps,until_on_Bps,until_share,until_engine_cpu,"
		     "converged_off_Bps,converged_on_Bps,converged_share,converged_engine_cpu\n");
	runs = calloc(opt_rounds, sizeof(*runs));
	if (!csv || !sum || !runs)
		return 1;
	for (unsigned int r = 0; r < opt_rounds; r++) {
		for (unsigned int k = 0; k < 2; k++) {
			struct run *x = &runs[r][k];

			bench_wait_quiet("guest_cost bench", opt_wait);
			x->on = k == 1;
			x->load = bench_loadavg();
			if (x->load > rd.maxload)
				rd.maxload = x->load;
			printf("guest_cost bench: round %u, dedup %s: load average %.2f at start\n",
			       r + 1, x->on ? "on" : "off", x->load);
			fflush(stdout);
			if (run_one(x, csv, r + 1)) {
				fprintf(stderr, "guest_cost: round %u, dedup %s failed\n", r + 1,
					x->on ? "on" : "off");
				return 1;
			}
		}
		round_eval(&rd, &runs[r][0], &runs[r][1], sum);
		fflush(stdout);
	}
	rounds_report(&rd);
	fclose(csv);
	fclose(sum);
	snprintf(path, sizeof(path), "%s/guest_cost.svg", opt_out);
	write_svg(path, runs, opt_rounds);
	printf("results: %s/guest_cost.csv, %s/guest_cost_summary.csv, %s\n", opt_out, opt_out,
	       path);
	for (unsigned int r = 0; r < opt_rounds; r++)
		for (unsigned int k = 0; k < 2; k++)
			free(runs[r][k].s);
	free(runs);
	return 0;
}
