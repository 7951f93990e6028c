/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "dedup_report.h"
#include "vmm_proc.h"

void results_init(struct result rs[DEDUP_ENGINES])
{
	static const char *const names[DEDUP_ENGINES] = {"ramfold", "ksm-fastest", "ksm-default"};

	for (unsigned int k = 0; k < DEDUP_ENGINES; k++)
		rs[k] = (struct result){.name = names[k], .load = -1};
}

double bench_now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The fields of a /proc/.../stat file after the command's closing
 * parenthesis (the command may hold any byte), in @buf; NULL if unreadable. */
static const char *stat_after_comm(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;
	char *p;

	if (!f)
		return NULL;
	n = fread(buf, 1, len - 1, f);
	fclose(f);
	buf[n] = 0;
	p = strrchr(buf, ')');
	return p && p[1] ? p + 2 : NULL;
}

double bench_stat_cpu(const char *path)
{
	char buf[1024];
	const char *p = stat_after_comm(path, buf, sizeof(buf));
	unsigned long long ut, st;

	if (!p || sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return -1;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

double bench_json_num(const char *reply, const char *key)
{
	char pat[80];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(reply, pat);
	return p ? strtod(p + strlen(pat), NULL) : -1;
}

double bench_ksm_metadata(int pid)
{
	char path[64], key[64];
	double merging = 0, zero = 0, profit = 0, v;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/ksm_stat", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fscanf(f, "%63s %lf", key, &v) == 2) {
		if (!strcmp(key, "ksm_merging_pages"))
			merging = v;
		else if (!strcmp(key, "ksm_zero_pages"))
			zero = v;
		else if (!strcmp(key, "ksm_process_profit"))
			profit = v;
	}
	fclose(f);
	v = (merging + zero) * 4096 - profit;
	return v > 0 ? v : 0;
}

static void result_add(struct result *r, double t, double saved, double cpu)
{
	if (r->n == r->cap) {
		r->cap = r->cap ? 2 * r->cap : 1024;
		r->s = realloc(r->s, r->cap * sizeof(*r->s));
		if (!r->s) {
			perror("realloc");
			exit(1);
		}
	}
	r->s[r->n++] = (struct sample){t, saved, cpu};
}

/* KSM's switch: 1 while it merges, -1 if unreadable. */
static int ksm_run(void)
{
	char v[16];

	return bench_file_line("/sys/kernel/mm/ksm/run", v, sizeof(v)) ? atoi(v) : -1;
}

void conv_watch_init(struct conv_watch *w, double t0, bool ksm, double ksm_quiet_s, double timeout,
		     uint64_t ideal)
{
	*w = (struct conv_watch){.ksm = ksm,
				 .ksm_quiet_s = ksm_quiet_s,
				 .timeout = timeout,
				 .ideal = (double)ideal,
				 .t0 = t0,
				 .last_growth_t = t0,
				 .conv_t = -1,
				 .idle_window = 3};
}

bool conv_watch_sample(struct conv_watch *w, struct result *r, double t, double saved, double cpu,
		       bool converged)
{
	result_add(r, t - w->t0, saved, cpu);
	if (w->ksm && ksm_run() != 1) {
		snprintf(r->note, sizeof(r->note), "KSM switched off by another process at %.1f s",
			 t - w->t0);
		r->idle_cpu_share = -1;
		return true;
	}
	/* Growth is counted past 0.5% and 16 pages, so that a saving that
	 * only wobbles does not keep KSM "growing". */
	if (saved > w->best * 1.005 + 4096 * 16) {
		w->best = saved;
		w->last_growth_t = t;
	}
	if (w->conv_t < 0) {
		bool done =
		    w->ksm ? (w->best > 0.5 * w->ideal && t - w->last_growth_t > w->ksm_quiet_s)
			   : converged;

		if (done) {
			w->conv_t = t;
			w->conv_cpu = cpu;
		} else if (t - w->t0 > w->timeout) {
			snprintf(r->note, sizeof(r->note), "stopped after %.0f s", w->timeout);
			w->conv_t = t;
			w->conv_cpu = cpu;
			w->idle_window = 0;
		}
	} else if (t - w->conv_t >= w->idle_window) {
		r->idle_cpu_share = w->idle_window > 0 ? (cpu - w->conv_cpu) / (t - w->conv_t) : -1;
		return true;
	}
	return false;
}

void result_finish(struct result *r)
{
	r->final_saved = r->n ? r->s[r->n - 1].saved : 0;
	if (r->note[0] == 'K') /* cut short: the best it reached */
		for (unsigned int i = 0; i < r->n; i++)
			if (r->s[i].saved > r->final_saved)
				r->final_saved = r->s[i].saved;
	r->ran = r->n > 0;
}

/* Time and CPU to 95% of the best saving the engine reached. */
static void result_summarise(struct result *r, uint64_t ideal)
{
	double final = 0;

	for (unsigned int i = 0; i < r->n; i++)
		if (r->s[i].saved > final)
			final = r->s[i].saved;
	/* "Achievable" is what the content allows; an engine that never gets
	 * near it within the run has no time to 95%. */
	if (final < 0.9 * (double)ideal)
		final = (double)ideal;
	for (unsigned int i = 0; i < r->n; i++) {
		if (r->s[i].saved >= 0.95 * final) {
			r->t95 = r->s[i].t;
			r->cpu95 = r->s[i].cpu;
			r->reached = true;
			return;
		}
	}
}

static void results_write(struct result *rs, unsigned int n, uint64_t ideal, const char *dir,
			  const char *prefix, const char *title)
{
	char path[512];
	double tmax = 0, ymax = (double)ideal * 1.05;
	static const char *colors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd"};
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s.csv", dir, prefix);
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "engine,t_s,saved_bytes,cpu_s\n");
		for (unsigned int k = 0; k < n; k++)
			for (unsigned int i = 0; i < rs[k].n; i++)
				fprintf(f, "%s,%.3f,%.0f,%.3f\n", rs[k].name, rs[k].s[i].t,
					rs[k].s[i].saved, rs[k].s[i].cpu);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/%s_summary.csv", dir, prefix);
	f = fopen(path, "w");
	if (f) {
		fprintf(f, "engine,t95_s,cpu_to_t95_s,idle_cpu_share,final_saved_bytes,net_saved_"
			   "bytes,host_saved_bytes,ideal_bytes,note\n");
		for (unsigned int k = 0; k < n; k++)
			fprintf(f, "%s,%.3f,%.3f,%.4f,%.0f,%.0f,%.0f,%llu,%s\n", rs[k].name,
				rs[k].reached ? rs[k].t95 : -1, rs[k].reached ? rs[k].cpu95 : -1,
				rs[k].idle_cpu_share, rs[k].final_saved,
				rs[k].final_saved - rs[k].metadata, rs[k].final_host_saved,
				(unsigned long long)ideal, rs[k].note);
		fclose(f);
	}
	for (unsigned int k = 0; k < n; k++)
		if (rs[k].n && rs[k].s[rs[k].n - 1].t > tmax)
			tmax = rs[k].s[rs[k].n - 1].t;
	if (tmax > 30)
		tmax = 30;
	snprintf(path, sizeof(path), "%s/%s.svg", dir, prefix);
	f = fopen(path, "w");
	if (!f)
		return;
	/* Plot area 60..760 x 20..380: x = time (s), y = saved MiB. */
	fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"800\" height=\"440\" "
		   "font-family=\"sans-serif\" font-size=\"12\">\n");
	fprintf(f, "<rect width=\"800\" height=\"440\" fill=\"white\"/>\n");
	fprintf(f, "<line x1=\"60\" y1=\"380\" x2=\"760\" y2=\"380\" stroke=\"black\"/>\n");
	fprintf(f, "<line x1=\"60\" y1=\"20\" x2=\"60\" y2=\"380\" stroke=\"black\"/>\n");
	for (int i = 0; i <= 5; i++) {
		double t = tmax * i / 5, y = ymax * i / 5;

		fprintf(f, "<text x=\"%.0f\" y=\"398\" text-anchor=\"middle\">%.1f s</text>\n",
			60 + 700.0 * i / 5, t);
		fprintf(f, "<text x=\"55\" y=\"%.0f\" text-anchor=\"end\">%.0f MiB</text>\n",
			380 - 360.0 * i / 5 + 4, y / 1048576);
	}
	fprintf(f,
		"<line x1=\"60\" y1=\"%.1f\" x2=\"760\" y2=\"%.1f\" stroke=\"gray\" "
		"stroke-dasharray=\"4\"/>\n",
		380 - 360 * (double)ideal / ymax, 380 - 360 * (double)ideal / ymax);
	fprintf(f, "<text x=\"755\" y=\"%.1f\" text-anchor=\"end\" fill=\"gray\">ideal</text>\n",
		380 - 360 * (double)ideal / ymax - 4);
	for (unsigned int k = 0; k < n; k++) {
		fprintf(f, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"",
			colors[k % 4]);
		for (unsigned int i = 0; i < rs[k].n && rs[k].s[i].t <= tmax; i++)
			fprintf(f, "%.1f,%.1f ", 60 + 700 * rs[k].s[i].t / tmax,
				380 - 360 * rs[k].s[i].saved / ymax);
		fprintf(f, "\"/>\n<text x=\"70\" y=\"%u\" fill=\"%s\">%s</text>\n", 36 + 16 * k,
			colors[k % 4], rs[k].name);
	}
	fprintf(f, "<text x=\"410\" y=\"430\" text-anchor=\"middle\">%s</text>\n</svg>\n", title);
	fclose(f);
}

static void results_print(struct result *rs, unsigned int n, uint64_t ideal)
{
	double maxload = -1;

	printf("\nideal saving (from the layout): %.1f MiB\n\n", (double)ideal / 1048576);
	printf("%-12s %9s %11s %9s %13s %13s %13s  %s\n", "engine", "t95 (s)", "CPU to t95",
	       "idle CPU", "saved (Pss)", "net of meta", "host anon+shm", "note");
	for (unsigned int k = 0; k < n; k++) {
		struct result *r = &rs[k];
		char t95[32], c95[32];

		if (!r->ran) {
			printf("%-12s %9s %11s %9s %13s %13s %13s  %s\n", r->name, "-", "-", "-",
			       "-", "-", "-", r->note);
			continue;
		}
		if (r->reached) {
			snprintf(t95, sizeof(t95), "%.2f", r->t95);
			snprintf(c95, sizeof(c95), "%.2f s", r->cpu95);
		} else {
			snprintf(t95, sizeof(t95), "> %.0f", r->s[r->n - 1].t);
			snprintf(c95, sizeof(c95), "> %.2f s", r->s[r->n - 1].cpu);
		}
		printf("%-12s %9s %11s %8.1f%% %9.1f MiB %9.1f MiB %9.1f MiB  %s\n", r->name, t95,
		       c95, r->idle_cpu_share < 0 ? -1 : r->idle_cpu_share * 100,
		       r->final_saved / 1048576, (r->final_saved - r->metadata) / 1048576,
		       r->final_host_saved / 1048576, r->note);
	}
	if (!rs[0].reached || !rs[1].reached || rs[0].t95 <= 0 || rs[0].cpu95 <= 0 ||
	    rs[1].final_saved <= 0)
		return;
	/* Every run of the round counts, as for the medians' verdict. */
	for (unsigned int k = 0; k < n; k++)
		if (rs[k].ran && rs[k].load > maxload)
			maxload = rs[k].load;
	if (maxload >= 1) {
		printf("\nthis round, ramfold vs ksm-fastest: noisy (load average %.2f at a run's "
		       "start, 1 or more)\n",
		       maxload);
		return;
	}
	printf("\nthis round, ramfold vs ksm-fastest: %.1fx sooner to 95%%, %.2fx the CPU, idle "
	       "%.1f%% of a core, saved %.2fx in Pss and %.2fx net of metadata (the verdict is "
	       "on the medians)\n",
	       rs[1].t95 / rs[0].t95, rs[0].cpu95 / rs[1].cpu95, rs[0].idle_cpu_share * 100,
	       rs[0].final_saved / rs[1].final_saved,
	       rs[0].final_saved / (rs[1].final_saved - rs[1].metadata > 0
					? rs[1].final_saved - rs[1].metadata
					: 1));
}

void results_report(struct result rs[DEDUP_ENGINES], uint64_t ideal, const char *dir,
		    const char *prefix, const char *title)
{
	for (unsigned int k = 0; k < DEDUP_ENGINES; k++)
		result_summarise(&rs[k], ideal);
	results_print(rs, DEDUP_ENGINES, ideal);
	results_write(rs, DEDUP_ENGINES, ideal, dir, prefix, title);
	printf("results: %s/%s.csv, %s/%s_summary.csv, %s/%s.svg\n", dir, prefix, dir, prefix, dir,
	       prefix);
}

/* ---- fair measurement ------------------------------------------------------ */

int bench_ksmd_pid(void)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int pid = 0;

	while (d && !pid && (e = readdir(d))) {
		char path[300], comm[32] = "";
		FILE *f;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
		f = fopen(path, "re");
		if (f) {
			if (fgets(comm, sizeof(comm), f) && !strcmp(comm, "ksmd\n"))
				pid = atoi(e->d_name);
			fclose(f);
		}
	}
	if (d)
		closedir(d);
	return pid;
}

/* Field 19 of a /proc/.../stat file; 0 if unreadable. */
static int stat_nice(const char *path)
{
	char buf[1024];
	const char *p = stat_after_comm(path, buf, sizeof(buf));
	int nice;

	if (!p || sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %d",
			 &nice) != 1)
		return 0;
	return nice;
}

int bench_nice_of(int pid)
{
	char path[64];

	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	return stat_nice(path);
}

static bool add_cpu(pid_t pid, int tid, void *arg)
{
	char stat[64];
	double c;

	snprintf(stat, sizeof(stat), "/proc/%d/task/%d/stat", (int)pid, tid);
	c = bench_stat_cpu(stat);
	if (c > 0)
		*(double *)arg += c;
	return true;
}

double bench_threads_cpu(int pid, const char *prefix)
{
	double sum = 0;

	vmm_threads_named(pid, prefix, add_cpu, &sum);
	return sum;
}

static bool take_nice(pid_t pid, int tid, void *arg)
{
	char stat[64];

	snprintf(stat, sizeof(stat), "/proc/%d/task/%d/stat", (int)pid, tid);
	*(int *)arg = stat_nice(stat);
	return false;
}

int bench_threads_nice(int pid, const char *prefix)
{
	int nice = BENCH_NO_THREAD;

	vmm_threads_named(pid, prefix, take_nice, &nice);
	return nice;
}

bool bench_rounds_opt(int argc, char **argv, int *i, unsigned int *rounds)
{
	int n;

	if (strcmp(argv[*i], "--rounds") || *i + 1 >= argc)
		return false;
	n = atoi(argv[++*i]);
	if (n < 1 || n > BENCH_MAX_ROUNDS) {
		fprintf(stderr, "%s: --rounds must be 1..%d\n", argv[0], BENCH_MAX_ROUNDS);
		exit(2);
	}
	*rounds = (unsigned int)n;
	return true;
}

bool bench_sched_opt(int argc, char **argv, int *i, struct bench_sched *s)
{
	if (strcmp(argv[*i], "--sched") || *i + 1 >= argc ||
	    (strcmp(argv[*i + 1], "ksmd") && strcmp(argv[*i + 1], "zero")))
		return false;
	s->zero = !strcmp(argv[++*i], "zero");
	return true;
}

bool bench_common_opt(int argc, char **argv, int *i, struct bench_opts *o)
{
	if (bench_rounds_opt(argc, argv, i, &o->rounds) ||
	    bench_sched_opt(argc, argv, i, &o->sched))
		return true;
	if (*i + 1 >= argc)
		return false;
	if (!strcmp(argv[*i], "--mib"))
		o->mib = (unsigned int)atoi(argv[++*i]);
	else if (!strcmp(argv[*i], "--ksm-default-timeout"))
		o->ksm_default_timeout = atof(argv[++*i]);
	else if (!strcmp(argv[*i], "--out"))
		o->out = argv[++*i];
	else
		return false;
	return true;
}

void bench_sched_init(struct bench_sched *s, const char *bench)
{
	s->ksmd = bench_ksmd_pid();
	s->ksmd_nice = s->ksmd > 0 ? bench_nice_of(s->ksmd) : 5;
	s->scan_nice = s->zero ? 0 : s->ksmd_nice;
	if (s->zero)
		printf("%s: scheduling: ramfold's scanner and ksmd both at nice 0 (--sched "
		       "zero)\n",
		       bench);
	else
		printf("%s: scheduling: ramfold's scanner at ksmd's nice, %d%s\n", bench,
		       s->ksmd_nice, s->ksmd > 0 ? "" : " (no ksmd: assumed)");
}

void bench_sched_ksm(const struct bench_sched *s, bool on)
{
	int nice = on ? 0 : s->ksmd_nice;

	if (s->zero && s->ksmd > 0 && setpriority(PRIO_PROCESS, (id_t)s->ksmd, nice) != 0)
		fprintf(stderr, "ksmd (pid %d): setpriority(%d): %s\n", s->ksmd, nice,
			strerror(errno));
}

void bench_rounds_add(struct bench_rounds *br, const struct result rs[DEDUP_ENGINES])
{
	unsigned int r = br->n;

	if (r >= BENCH_MAX_ROUNDS)
		return;
	for (unsigned int k = 0; k < DEDUP_ENGINES; k++) {
		const struct result *x = &rs[k];
		bool ok = x->ran && x->reached;

		br->t95[k][r] = ok ? x->t95 : -1;
		br->cpu95[k][r] = ok ? x->cpu95 : -1;
		br->idle[k][r] = x->ran ? x->idle_cpu_share : -1;
		br->saved[k][r] = x->ran ? x->final_saved : -1;
		br->net[k][r] = x->ran ? x->final_saved - x->metadata : -1;
		if (x->ran && x->load > br->maxload)
			br->maxload = x->load;
	}
	br->n++;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* Median and range of the values >= 0 of @v; false if there are none. */
static bool median_of(const double *v, unsigned int n, double *med, double *lo, double *hi)
{
	double s[BENCH_MAX_ROUNDS];
	unsigned int m = 0;

	for (unsigned int i = 0; i < n; i++)
		if (v[i] >= 0)
			s[m++] = v[i];
	if (!m)
		return false;
	qsort(s, m, sizeof(*s), cmp_double);
	*med = s[m / 2];
	*lo = s[0];
	*hi = s[m - 1];
	return true;
}

double bench_median(const double *v, unsigned int n)
{
	double m, lo, hi;

	return median_of(v, n, &m, &lo, &hi) ? m : -1;
}

void bench_median_cell(char *out, size_t cap, const double *v, unsigned int n, double scale,
		       const char *fmt)
{
	double m, lo, hi;
	char a[32], b[32], c[32];

	if (!median_of(v, n, &m, &lo, &hi)) {
		snprintf(out, cap, "-");
		return;
	}
	snprintf(a, sizeof(a), fmt, m * scale);
	snprintf(b, sizeof(b), fmt, lo * scale);
	snprintf(c, sizeof(c), fmt, hi * scale);
	snprintf(out, cap, "%s (%s..%s)", a, b, c);
}

int bench_rounds_run(struct bench_rounds *br, unsigned int rounds, bench_round_fn *run_round,
		     void *arg, const char *dir, const char *prefix, const char *title)
{
	struct result rs[DEDUP_ENGINES];
	char p[64], t[192];
	int err = 0;

	for (unsigned int r = 1; r <= rounds && !err; r++) {
		uint64_t ideal = 0;

		results_init(rs);
		err = run_round(rs, r, &ideal, arg);
		if (!err) {
			snprintf(p, sizeof(p), "%s_r%u", prefix, r);
			snprintf(t, sizeof(t), "%s, round %u", title, r);
			results_report(rs, ideal, dir, p, t);
			bench_rounds_add(br, rs);
		}
		for (unsigned int k = 0; k < DEDUP_ENGINES; k++)
			free(rs[k].s);
	}
	return err;
}

/* The verdict line as it is written: the ratios, and the targets missed. */
struct verdict_text {
	char line[768];
	char missed[128];
};

static void __attribute__((format(printf, 2, 3)))
vt_add(struct verdict_text *v, const char *fmt, ...)
{
	size_t n = strlen(v->line);
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->line + n, sizeof(v->line) - n, fmt, ap);
	va_end(ap);
}

/* " (target OP T UNIT)" after the ratio, if the bench has a target for it;
 * @name goes to the missed ones if @met is false. */
static void vt_target(struct verdict_text *v, const char *op, double target, const char *unit,
		      bool met, const char *name)
{
	size_t n = strlen(v->missed);

	if (target <= 0)
		return;
	vt_add(v, " (target %s %g%s)", op, target, unit);
	if (!met)
		snprintf(v->missed + n, sizeof(v->missed) - n, "%s%s", n ? ", " : "", name);
}

void bench_verdict(const char *who, const struct bench_medians *ours,
		   const struct bench_medians *ksm, double maxload, double gib,
		   const struct bench_targets *tg)
{
	struct verdict_text v = {"", ""};
	double sooner, cpu, net;

	if (maxload >= 1) {
		printf("%s vs ksm-fastest: noisy (load average %.2f at a run's start, 1 or more): "
		       "no verdict\n",
		       who, maxload);
		return;
	}
	if (ours->t95 <= 0 || ours->cpu95 <= 0 || ksm->t95 <= 0 || ksm->cpu95 <= 0 ||
	    ksm->saved <= 0 || ksm->net <= 0) {
		printf("%s vs ksm-fastest: no ratio (a median is missing)\n", who);
		return;
	}
	sooner = ksm->t95 / ours->t95;
	cpu = ours->cpu95 / ksm->cpu95;
	net = ours->net / ksm->net;
	vt_add(&v,
	       "%s vs ksm-fastest (medians, load average at most %.2f at the runs' starts): %.1fx "
	       "sooner to 95%%",
	       who, maxload, sooner);
	vt_target(&v, ">=", tg->sooner, "x", sooner >= tg->sooner, "sooner");
	vt_add(&v, ", %.2fx the CPU", cpu);
	vt_target(&v, "<=", tg->cpu, "x", cpu <= tg->cpu, "CPU");
	if (gib > 0) {
		vt_add(&v, ", %.2f CPU-s per GiB to 95%%", ours->cpu95 / gib);
		vt_target(&v, "<=", tg->cpu_per_gib, "", ours->cpu95 / gib <= tg->cpu_per_gib,
			  "CPU per GiB");
	}
	if (tg->idle > 0) {
		vt_add(&v, ", idle %.1f%% of %s", ours->idle * 100,
		       tg->idle_of ? tg->idle_of : "a core");
		vt_target(&v, "<", tg->idle * 100, "%", ours->idle >= 0 && ours->idle < tg->idle,
			  "idle");
	}
	vt_add(&v, ", saved %.2fx in Pss and %.2fx net of metadata", ours->saved / ksm->saved, net);
	vt_target(&v, ">=", tg->net, "x", net >= tg->net, "saving");
	printf("%s: %s%s\n", v.line, v.missed[0] ? "missed: " : "targets met",
	       v.missed[0] ? v.missed : "");
}

void bench_rounds_report(const struct bench_rounds *br, double gib, const struct bench_targets *tg)
{
	static const char *const names[DEDUP_ENGINES] = {"ramfold", "ksm-fastest", "ksm-default"};
	struct bench_medians m[2];
	unsigned int n = br->n;

	printf("\n%u round(s), engines interleaved in each: median (min..max)\n", n);
	printf("%-12s %-22s %-22s %-20s %-24s %-24s\n", "engine", "t95 (s)", "CPU to t95 (s)",
	       "idle CPU (%)", "saved Pss (MiB)", "net of metadata (MiB)");
	for (unsigned int k = 0; k < DEDUP_ENGINES; k++) {
		char a[128], b[128], d[128], e[128], f[128];

		bench_median_cell(a, sizeof(a), br->t95[k], n, 1, "%.2f");
		bench_median_cell(b, sizeof(b), br->cpu95[k], n, 1, "%.2f");
		bench_median_cell(d, sizeof(d), br->idle[k], n, 100, "%.1f");
		bench_median_cell(e, sizeof(e), br->saved[k], n, 1.0 / 1048576, "%.1f");
		bench_median_cell(f, sizeof(f), br->net[k], n, 1.0 / 1048576, "%.1f");
		printf("%-12s %-22s %-22s %-20s %-24s %-24s\n", names[k], a, b, d, e, f);
	}
	for (unsigned int k = 0; k < 2; k++)
		m[k] = (struct bench_medians){
		    bench_median(br->t95[k], n), bench_median(br->cpu95[k], n),
		    bench_median(br->idle[k], n), bench_median(br->saved[k], n),
		    bench_median(br->net[k], n)};
	bench_verdict("ramfold", &m[0], &m[1], br->maxload, gib, tg);
}
