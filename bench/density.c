/* SPDX-License-Identifier: MIT */
/*
 * Density (issue 18): for a scenario's guest mix and its budget, the largest
 * number of guests that all keep at least 90% of their unconstrained work,
 * under ramfold's reclaim and under the kernel's own stack, and the ratio of
 * the two.
 *
 *   density-run [options] [--vmm PATH] [--runner PATH] [--out DIR] [--csv FILE] SCENARIO
 *
 * A trial is one overcommit-run of N guests with one run of the scenario
 * (its ramfold run, or its +kernel run): the scenario's vm lines dealt out in
 * order, round and round, until there are N (os0 os1 dup0 churn0 idle0
 * check0 os2 os3 dup1 ...: the mix's proportions, exact at multiples of its
 * size), on the scenario's budget, for --settle + --measure seconds. Each
 * guest's work rate after the settling time (samples.csv) is divided by the
 * same guest's rate in the unconstrained run of the same N guests (the
 * scenario's +unconstrained run, no budget): measured once per N, shared by
 * both stacks, and needed per N because the guests share the host's CPUs
 * (memcheck is a busy loop), so that the share measures what the reclaim
 * cost and not what N guests on two cores cost. A trial passes when every
 * guest is alive, memcheck clean, the budget held (the VMM's Pss, as
 * overcommit-run judges it) and every guest that counts work kept at least
 * --threshold of it. bench/density_search.c chooses the N of each trial.
 *
 * overcommit-run does the host's part: the kernel stack's cgroup, swap file,
 * zswap and KSM are journaled in DIR/host.journal and put back after each
 * trial, when the runner is signalled (density-run forwards SIGINT and
 * SIGTERM, and the runner gets SIGTERM if density-run dies: PDEATHSIG), and
 * after a SIGKILL of both, at the next trial or by `make
 * experiment-restore`.
 *
 * Prints a line per trial (N, budget held, the lowest guest's share, stall,
 * load average at the start) and at the end
 *   density: ramfold N1 guests, kernel stack N2 guests, ratio X (target >= 1.5x): VERDICT
 * where VERDICT is "met", "not met", or "noisy" when a trial started at
 * load average 1 or more (then not a result). CSV: a row per trial.
 * Exit status 0 when the search ran (whatever it found), 2 on errors.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "density_plot.h"
#include "density_search.h"
#include "host.h"

#define MAX_GUESTS 64 /* the demo VMM's and overcommit-run's limit */
#define MAX_MIX	   16

/* A stack under test: a run line of the scenario and its search. */
struct stack {
	const char *label; /* "ramfold", "kernel stack" */
	char run[1024];	   /* the run line's arguments after its name */
	char name[32];	   /* the run's name in the scenario */
	struct density_search ds;
};

struct density {
	/* settings */
	const char *vmm, *runner, *out, *csv_path;
	uint64_t budget_mib;
	double settle, measure, threshold;
	int quiet_wait, scale;
	/* the scenario's mix */
	char mix[MAX_MIX][1024];
	int nmix;
	char ref_run[1024];
	/* the unconstrained reference of N guests, measured once per N */
	bool have_ref[MAX_GUESTS + 1];
	double ref_rate[MAX_GUESTS + 1][MAX_GUESTS];
	/* bookkeeping */
	int trial_no;
	double max_load;
	char host_at_start[512]; /* host_state() when density-run started */
	int host_changed;	 /* trials after which the host was not as found */
	FILE *csv;
	struct stack *cur;
	int cur_index; /* 0 ramfold, 1 kernel stack */
	struct density_point pt[2 * DENSITY_MAX_TRIALS];
	int npt;
};

static volatile pid_t runner_pid;

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "density-run: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

/* The runner puts the host back on SIGTERM; wait for it before going. */
static void on_signal(int sig)
{
	if (runner_pid > 0) {
		kill(runner_pid, SIGTERM);
		waitpid(runner_pid, NULL, 0);
	}
	signal(sig, SIG_DFL);
	raise(sig);
}

/* "512M", "1G", "300" (MiB) to MiB; -1 if it is not a size. */
static long long size_mib(const char *s)
{
	char *end;
	double v = strtod(s, &end);

	if (end == s || v < 0)
		return -1;
	if (*end == 'G' || *end == 'g')
		v *= 1024, end++;
	else if (*end == 'K' || *end == 'k')
		v /= 1024, end++;
	else if (*end == 'M' || *end == 'm')
		end++;
	if (*end == 'i')
		end++;
	if (*end == 'B')
		end++;
	return *end ? -1 : (long long)v;
}

/* The value of key @key in the vm spec @spec ("k=v,k=v"), or NULL. */
static const char *spec_value(const char *spec, const char *key, char *out, size_t cap)
{
	size_t kl = strlen(key);

	for (const char *p = spec; p && *p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL) {
		if (!strncmp(p, key, kl) && p[kl] == '=') {
			snprintf(out, cap, "%.*s", (int)strcspn(p + kl + 1, ","), p + kl + 1);
			return out;
		}
	}
	return NULL;
}

/* Guest @i of a trial: mix line i % nmix, renamed (its name's letters and a
 * count of its kind so far) and, in smoke mode, scaled down. */
static void guest_spec(const struct density *d, int i, char *out, size_t cap)
{
	const char *tpl = d->mix[i % d->nmix];
	char base[32], name[32], key[64], v[32];
	int kind = 0;
	size_t l = 0;

	spec_value(tpl, "name", name, sizeof(name));
	snprintf(base, sizeof(base), "%.*s", (int)strcspn(name, "0123456789"), name);
	for (int j = 0; j < i; j++) {
		char other[32];

		spec_value(d->mix[j % d->nmix], "name", other, sizeof(other));
		kind += strcspn(other, "0123456789") == strlen(base) &&
			!strncmp(other, base, strlen(base));
	}
	out[0] = 0;
	for (const char *p = tpl; *p;) {
		size_t n = strcspn(p, ",");

		snprintf(key, sizeof(key), "%.*s", (int)strcspn(p, "="), p);
		if (!strcmp(key, "name"))
			l += snprintf(out + l, cap - l, "%sname=%s%d", l ? "," : "", base, kind);
		else if (d->scale > 1 && (!strcmp(key, "mem") || !strcmp(key, "mib")))
			l += snprintf(out + l, cap - l, "%s%s=%lld%s", l ? "," : "", key,
				      size_mib(spec_value(p, key, v, sizeof(v))) / d->scale,
				      key[1] == 'e' ? "M" : "");
		else
			l += snprintf(out + l, cap - l, "%s%.*s", l ? "," : "", (int)n, p);
		if (l >= cap)
			die("vm spec too long: %s", tpl);
		p += n + (p[n] == ',');
	}
}

/* The scenario's budget, vm lines and run lines (the first run of each
 * kind: +unconstrained, +kernel, ramfold's reclaim). */
static void read_mix(struct density *d, const char *path, struct stack *rf, struct stack *ks)
{
	char line[4096];
	FILE *f = fopen(path, "re");

	if (!f)
		die("%s: %s", path, strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		char *s = line, *rest;

		s[strcspn(s, "#\n")] = 0;
		s += strspn(s, " \t");
		if (!strncmp(s, "budget", 6) && !d->budget_mib) {
			d->budget_mib = (uint64_t)size_mib(s + 6 + strspn(s + 6, " \t"));
		} else if (!strncmp(s, "vm ", 3)) {
			if (d->nmix == MAX_MIX)
				die("%s: more than %d vm lines", path, MAX_MIX);
			snprintf(d->mix[d->nmix++], sizeof(d->mix[0]), "%s",
				 s + 3 + strspn(s + 3, " \t"));
		} else if (!strncmp(s, "run ", 4)) {
			struct stack *st = NULL;
			char name[32];

			s += 4 + strspn(s + 4, " \t");
			snprintf(name, sizeof(name), "%.*s", (int)strcspn(s, " \t"), s);
			rest = s + strcspn(s, " \t");
			if (strstr(rest, "+unconstrained")) {
				if (!*d->ref_run)
					snprintf(d->ref_run, sizeof(d->ref_run), "%s", rest);
				continue;
			}
			if (strstr(rest, "+kernel"))
				st = ks;
			else if (strstr(rest, "--policy") && !strstr(rest, "--policy off"))
				st = rf;
			if (st && !*st->name) {
				snprintf(st->name, sizeof(st->name), "%s", name);
				snprintf(st->run, sizeof(st->run), "%s", rest);
			}
		}
	}
	fclose(f);
	if (!d->budget_mib || !d->nmix)
		die("%s: a budget and at least one vm line are needed", path);
	if (!*d->ref_run)
		snprintf(d->ref_run, sizeof(d->ref_run), " --policy off +unconstrained");
	if (!*rf->name || !*ks->name)
		die("%s: a ramfold run (--policy PERIOD) and a +kernel run are needed", path);
}

/* The count of guests that fits the budget without any reclaim: the budget
 * over the mix's mean touched memory (mib=, else mem=). */
static int fitting_count(const struct density *d)
{
	double sum = 0;
	char v[32];

	for (int i = 0; i < d->nmix; i++) {
		long long m = spec_value(d->mix[i], "mib", v, sizeof(v)) ? size_mib(v) : -1;

		if (m < 0)
			m = spec_value(d->mix[i], "mem", v, sizeof(v)) ? size_mib(v) : 256;
		sum += (double)m / d->scale;
	}
	return sum > 0 ? (int)fmax(1, floor((double)d->budget_mib * d->nmix / sum)) : 1;
}

/* ---- one trial: an overcommit-run of one run of N guests ---- */

struct trial {
	char name[64];
	int status, responsive, vms;
	bool memcheck_clean, under_budget;
	double load, stall_pct;
	char incomplete[512];
	double rate[MAX_GUESTS];
};

/* Field @col of CSV line @line (the last field takes the rest of the line:
 * the runner's "incomplete" column is quoted and may hold commas). */
static const char *csv_field(const char *line, int col, int ncols, char *out, size_t cap)
{
	for (int c = 0; c < col && line; c++)
		line = strchr(line, ',') ? strchr(line, ',') + 1 : NULL;
	if (!line)
		return "";
	snprintf(out, cap, "%.*s",
		 (int)(col == ncols - 1 ? strcspn(line, "\n") : strcspn(line, ",\n")), line);
	return out;
}

static int column(const char *header, const char *name)
{
	char h[4096], *tok, *save;
	int c = 0;

	snprintf(h, sizeof(h), "%s", header);
	for (tok = strtok_r(h, ",\n", &save); tok; tok = strtok_r(NULL, ",\n", &save), c++)
		if (!strcmp(tok, name))
			return c;
	return -1;
}

/* The run's row of the runner's summary.csv. */
static int read_summary(const char *path, struct trial *t)
{
	char head[4096], row[4096], f[512];
	FILE *fp = fopen(path, "re");
	int n;

	if (!fp)
		return -errno;
	if (!fgets(head, sizeof(head), fp) || !fgets(row, sizeof(row), fp)) {
		fclose(fp);
		return -EIO;
	}
	fclose(fp);
	n = column(head, "incomplete") + 1;
#define FIELD(name) csv_field(row, column(head, name), n, f, sizeof(f))
	t->status = atoi(FIELD("vmm_status"));
	t->responsive = atoi(FIELD("responsive"));
	t->vms = atoi(FIELD("vms"));
	t->memcheck_clean = atoi(FIELD("memcheck_clean"));
	t->under_budget = atoi(FIELD("under_budget"));
	t->load = atof(FIELD("load_at_start"));
	t->stall_pct = atof(FIELD("stall_pct"));
	/* quoted: "" when the setup was complete */
	FIELD("incomplete");
	snprintf(t->incomplete, sizeof(t->incomplete), "%.*s",
		 f[0] == '"' ? (int)strcspn(f + 1, "\"") : (int)strlen(f), f + (f[0] == '"'));
#undef FIELD
	return 0;
}

/* Each guest's work per second, as the runner judged it (RUN/work.csv: from
 * the first sample after the settling time to the last within the duration,
 * overcommit_work.c's judge_work), in guest order. -ENODATA when no guest
 * worked at all (the VMM died before settling). */
static int read_rates(const char *path, int nguests, struct trial *t)
{
	char line[256];
	FILE *fp = fopen(path, "re");
	bool any = false;
	int i = 0;

	if (!fp)
		return -errno;
	if (!fgets(line, sizeof(line), fp)) { /* the header */
		fclose(fp);
		return -ENODATA;
	}
	for (; i < nguests && fgets(line, sizeof(line), fp); i++) {
		const char *c = strchr(line, ',');

		t->rate[i] = c ? atof(c + 1) : 0;
		any |= t->rate[i] > 0;
	}
	fclose(fp);
	return i == nguests && any ? 0 : -ENODATA;
}

/*
 * What the kernel stack's trials change and put back, as one line: KSM's
 * knobs, zswap's, the swap areas. The runner's journal assumes nobody else
 * changes these meanwhile; another bench or test that does (KSM at its
 * fastest for a while) would be journaled as the host's own and put back
 * after it had restored. So density-run compares the host with its own
 * start before and after every trial, and says so when they differ.
 */
static void host_state(char *out, size_t cap)
{
	static const char *const knobs[] = {
	    "/sys/kernel/mm/ksm/run", "/sys/kernel/mm/ksm/pages_to_scan",
	    "/sys/kernel/mm/ksm/sleep_millisecs", "/sys/module/zswap/parameters/enabled",
	    "/sys/module/zswap/parameters/compressor"};
	char l[256];
	size_t n = 0;
	FILE *f;

	out[0] = 0;
	for (size_t i = 0; i < sizeof(knobs) / sizeof(knobs[0]) && n < cap; i++)
		n += (size_t)snprintf(out + n, cap - n, "%s=%s ", strrchr(knobs[i], '/') + 1,
				      bench_file_line(knobs[i], l, sizeof(l)) ? l : "?");
	if ((f = fopen("/proc/swaps", "re"))) {
		int areas = -1; /* the header line */

		while (fgets(l, sizeof(l), f))
			areas++;
		fclose(f);
		if (n < cap)
			snprintf(out + n, cap - n, "swap_areas=%d", areas);
	}
}

/* Wait up to @max_s for the host to be as at the start; false if it is not. */
static bool host_as_found(struct density *d, const char *when, int max_s)
{
	char now[512];

	for (int waited = 0;; waited += 5) {
		host_state(now, sizeof(now));
		if (!strcmp(now, d->host_at_start))
			return true;
		if (waited >= max_s)
			break;
		sleep(5);
	}
	printf("  density: %s, the host is not as it was at the start (another user of KSM, "
	       "zswap or swap?):\n    now   %s\n    start %s\n",
	       when, now, d->host_at_start);
	return false;
}

/* Run @run_args (a scenario run line's arguments) with @n guests. */
static int run_trial(struct density *d, const char *label, const char *run_args, int n,
		     struct trial *t)
{
	char scen[1024], log[1024], path[1200], spec[1024];
	int fd, status;
	pid_t pid;
	FILE *f;

	memset(t, 0, sizeof(*t));
	snprintf(t->name, sizeof(t->name), "t%02d-%s-n%d", ++d->trial_no, label, n);
	snprintf(scen, sizeof(scen), "%s/%s.scenario", d->out, t->name);
	if (!(f = fopen(scen, "we")))
		die("%s: %s", scen, strerror(errno));
	fprintf(f, "# density trial %d: %d guests of the mix, written by density-run\n",
		d->trial_no, n);
	fprintf(f, "budget %lluM\nduration %.0f\nsettle %.0f\nrun %s%s\n",
		(unsigned long long)d->budget_mib, d->settle + d->measure, d->settle, t->name,
		run_args);
	for (int i = 0; i < n; i++) {
		guest_spec(d, i, spec, sizeof(spec));
		fprintf(f, "vm %s\n", spec);
	}
	fclose(f);
	bench_wait_quiet("density", d->quiet_wait);
	if (!host_as_found(d, "before the trial", 60))
		d->host_changed++;
	snprintf(log, sizeof(log), "%s/%s.log", d->out, t->name);
	fd = open(log, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		die("%s: %s", log, strerror(errno));
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		/* The runner restores the host on SIGTERM: get one if we die. */
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		dup2(fd, 1);
		dup2(fd, 2);
		execl(d->runner, d->runner, "--vmm", d->vmm, "--out", d->out, scen, (char *)NULL);
		perror("density-run: exec the runner");
		_exit(127);
	}
	close(fd);
	runner_pid = pid;
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	runner_pid = 0;
	if (!WIFEXITED(status) || WEXITSTATUS(status) > 1) {
		fprintf(stderr, "density-run: trial %s: the runner failed (see %s)\n", t->name,
			log);
		return -EIO;
	}
	snprintf(path, sizeof(path), "%s/summary.csv", d->out);
	if (read_summary(path, t)) {
		fprintf(stderr, "density-run: trial %s: no summary in %s\n", t->name, path);
		return -EIO;
	}
	snprintf(scen, sizeof(scen), "%s/%s/summary.csv", d->out, t->name);
	rename(path, scen);
	snprintf(path, sizeof(path), "%s/%s/work.csv", d->out, t->name);
	if (read_rates(path, n, t)) {
		/* A VMM that died before the settling time (the kernel stack's
		 * cgroup OOM-killed it 3 s in, in one trial) did no work: the
		 * trial failed, the search goes on. With every guest alive to
		 * the end, no samples is the runner's fault. */
		if (t->status == 0 && t->responsive == n) {
			fprintf(stderr, "density-run: trial %s: no guest work after %.0f s in %s\n",
				t->name, d->settle, path);
			return -EIO;
		}
		printf("  (%s: the VMM stopped early, status %d, %d of %d guests alive: no work, a "
		       "failed trial)\n",
		       t->name, t->status, t->responsive, n);
		memset(t->rate, 0, sizeof(t->rate));
	}
	if (!host_as_found(d, "after the trial", 0))
		d->host_changed++;
	if (t->load > d->max_load)
		d->max_load = t->load;
	return 0;
}

static void csv_row(struct density *d, const char *stack, int n, const struct trial *t,
		    double min_share, double mean_share, const char *worst, int pass)
{
	fprintf(d->csv, "%s,%s,%d,%.2f,%d,%d,%d,%d,%.4f,%.4f,%s,%.4f,%d,\"%s\"\n", t->name, stack,
		n, t->load, t->under_budget, t->responsive, t->vms, t->memcheck_clean, min_share,
		mean_share, worst, t->stall_pct, pass, t->incomplete);
	fflush(d->csv);
}

/* The unconstrained run of @n guests, once per n. */
static int reference(struct density *d, int n)
{
	struct trial t;
	int r;

	if (d->have_ref[n])
		return 0;
	if ((r = run_trial(d, "unconstrained", d->ref_run, n, &t)))
		return r;
	if (t.status || t.responsive != n) {
		fprintf(stderr,
			"density-run: %s: the unconstrained run of %d guests did not run them "
			"all (VMM status %d, %d alive): no reference to measure against\n",
			t.name, n, t.status, t.responsive);
		return -EIO;
	}
	memcpy(d->ref_rate[n], t.rate, sizeof(t.rate));
	d->have_ref[n] = true;
	printf("  reference N=%-3d unconstrained, load %.2f\n", n, t.load);
	csv_row(d, "unconstrained", n, &t, 1, 1, "", -1);
	return 0;
}

/* The search's trial: the reference of n guests, then the stack's run. */
static int density_trial(void *ctx, int n)
{
	struct density *d = ctx;
	struct stack *st = d->cur;
	struct trial t;
	double min = -1, sum = 0;
	int counted = 0, pass, r;
	char worst[32] = "-", spec[1024];

	if ((r = reference(d, n)) || (r = run_trial(d, st->name, st->run, n, &t)))
		return r;
	for (int i = 0; i < n; i++) {
		double share;

		if (d->ref_rate[n][i] <= 0)
			continue; /* counts no work (dup) */
		share = t.rate[i] / d->ref_rate[n][i];
		sum += share;
		counted++;
		if (min < 0 || share < min) {
			min = share;
			guest_spec(d, i, spec, sizeof(spec));
			spec_value(spec, "name", worst, sizeof(worst));
		}
	}
	pass = counted && t.status == 0 && t.responsive == n && t.memcheck_clean &&
	       t.under_budget && min >= d->threshold;
	printf("  %-12s N=%-3d budget %-4s alive %d/%d%s  min share %5.1f%% (%s)  mean %5.1f%%  "
	       "stall %.2f%%  load %.2f  -> %s%s\n",
	       st->label, n, t.under_budget ? "held" : "OVER", t.responsive, n,
	       t.memcheck_clean ? "" : " memcheck FAILED", 100 * min, worst,
	       counted ? 100 * sum / counted : -100.0, t.stall_pct, t.load, pass ? "pass" : "FAIL",
	       *t.incomplete ? " (incomplete setup)" : "");
	fflush(stdout);
	csv_row(d, st->label, n, &t, min, counted ? sum / counted : -1, worst, pass);
	if (d->npt < 2 * DENSITY_MAX_TRIALS)
		d->pt[d->npt++] = (struct density_point){d->cur_index, n, min, pass};
	return pass;
}

/* "N" or ">=N" (the search stopped at its maximum) or "N?" (cut short). */
static const char *count_cell(char *b, size_t cap, const struct density_search *ds)
{
	snprintf(b, cap, "%s%d%s", ds->at_max ? ">=" : "", ds->best, ds->cut_short ? "?" : "");
	return b;
}

#define USAGE                                                                                      \
	"usage: density-run [--vmm PATH] [--runner PATH] [--out DIR] [--csv FILE]\n"               \
	"           [--budget SIZE] [--settle S] [--measure S] [--start N] [--max N]\n"            \
	"           [--retries K] [--no-confirm] [--max-trials K] [--threshold F]\n"               \
	"           [--quiet-wait S] [--stacks ramfold|kernel|both] [--smoke] SCENARIO"

int main(int argc, char **argv)
{
	static struct density d = {.vmm = "build/ramfold-vmm",
				   .runner = "build/bench/overcommit-run",
				   .out = "build/density",
				   .settle = 40,
				   .measure = 20,
				   .threshold = 0.9,
				   .quiet_wait = 120,
				   .scale = 1};
	static struct stack rf = {.label = "ramfold"}, ks = {.label = "kernel-stack"};
	struct stack *stacks[] = {&rf, &ks};
	const char *scen = NULL;
	int start = 0, max = 24, retries = 1, max_trials = 20;
	bool smoke = false, confirm = true, set[4] = {0}, run_stack[2] = {true, true};
	char a[32], b[32], rc[64], line[400];
	double ratio;
	char path[1200];
	FILE *f;
	time_t t0 = time(NULL);

	for (int i = 1; i < argc; i++) {
		const char *o = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (!strcmp(o, "--smoke") || !strcmp(o, "--no-confirm")) {
			*(o[2] == 's' ? &smoke : &confirm) = o[2] == 's';
			continue;
		}
		if (!v || o[0] != '-') {
			if (o[0] == '-' || scen)
				die(USAGE);
			scen = o;
			continue;
		} else if (!strcmp(o, "--vmm"))
			d.vmm = v;
		else if (!strcmp(o, "--runner"))
			d.runner = v;
		else if (!strcmp(o, "--out"))
			d.out = v;
		else if (!strcmp(o, "--csv"))
			d.csv_path = v;
		else if (!strcmp(o, "--budget")) {
			if (size_mib(v) <= 0)
				die("--budget %s: expected a size such as 1G", v);
			d.budget_mib = (uint64_t)size_mib(v);
		} else if (!strcmp(o, "--settle"))
			d.settle = atof(v), set[0] = true;
		else if (!strcmp(o, "--measure"))
			d.measure = atof(v), set[1] = true;
		else if (!strcmp(o, "--start"))
			start = atoi(v);
		else if (!strcmp(o, "--max"))
			max = atoi(v), set[2] = true;
		else if (!strcmp(o, "--retries"))
			retries = atoi(v), set[3] = true;
		else if (!strcmp(o, "--max-trials"))
			max_trials = atoi(v);
		else if (!strcmp(o, "--threshold"))
			d.threshold = atof(v);
		else if (!strcmp(o, "--quiet-wait"))
			d.quiet_wait = atoi(v);
		else if (!strcmp(o, "--stacks") &&
			 (!strcmp(v, "ramfold") || !strcmp(v, "kernel") || !strcmp(v, "both")))
			run_stack[0] = v[0] != 'k', run_stack[1] = v[0] != 'r';
		else
			die(USAGE);
		i++;
	}
	if (!scen)
		die(USAGE);
	/* Smoke: the same mix at an eighth of its size, on an eighth of the
	 * budget, in trials of ~12 s, at most 4 guests: the machinery, not a
	 * result. */
	if (smoke) {
		d.scale = 8;
		d.settle = set[0] ? d.settle : 6;
		d.measure = set[1] ? d.measure : 5;
		max = set[2] ? max : 4;
		retries = set[3] ? retries : 0;
		confirm = false;
		d.quiet_wait = 0;
		start = start ? start : 2;
	}
	if (d.settle < 1 || d.measure < 2 || max < 1 || max > MAX_GUESTS || d.threshold <= 0)
		die("--settle >= 1, --measure >= 2, --max 1..%d and --threshold > 0", MAX_GUESTS);
	{
		bool budget_given = d.budget_mib != 0;

		read_mix(&d, scen, &rf, &ks);
		if (smoke && !budget_given)
			d.budget_mib /= (uint64_t)d.scale;
	}
	if (!start)
		start = fitting_count(&d);
	if (mkdir(d.out, 0755) && errno != EEXIST)
		die("%s: %s", d.out, strerror(errno));
	if (!d.csv_path) {
		static char p[1024];

		snprintf(p, sizeof(p), "%s/density.csv", d.out);
		d.csv_path = p;
	}
	if (!(d.csv = fopen(d.csv_path, "we")))
		die("%s: %s", d.csv_path, strerror(errno));
	fprintf(d.csv, "trial,stack,guests,load_at_start,budget_held,alive,vms,memcheck_clean,"
		       "min_share,mean_share,worst_guest,stall_pct,pass,incomplete\n");
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	bench_host_line("density");
	host_state(d.host_at_start, sizeof(d.host_at_start));
	printf("density: the host at the start: %s\n", d.host_at_start);
	printf("density: %s%d-guest mix of %s on %llu MiB; trials of %.0f s settle + %.0f s "
	       "measured; pass = every guest alive, memcheck clean, budget held and each "
	       "guest >= %.0f%% of its unconstrained work (same N); N from %d, at most %d, "
	       "%d retr%s on a fail, %sconfirmed\n",
	       smoke ? "SMOKE (guests at 1/8): " : "", d.nmix, scen,
	       (unsigned long long)d.budget_mib, d.settle, d.measure, 100 * d.threshold, start, max,
	       retries, retries == 1 ? "y" : "ies", confirm ? "" : "not ");
	for (int s = 0; s < 2; s++) {
		struct stack *st = stacks[s];
		int r;

		if (!run_stack[s])
			continue;
		density_search_init(&st->ds);
		st->ds.start = start;
		st->ds.max = max;
		st->ds.retries = retries;
		st->ds.confirm = confirm;
		st->ds.max_trials = max_trials;
		d.cur = st;
		d.cur_index = s;
		printf("%s (run \"%s\"):\n", st->label, st->name);
		if ((r = density_search_run(&st->ds, density_trial, &d)))
			die("%s: the search stopped: %s", st->label, strerror(-r));
	}
	fclose(d.csv);
	/* "~": a count is a lower bound (at the maximum) or cut short. */
	ratio = ks.ds.best ? (double)rf.ds.best / ks.ds.best : 0;
	if (!run_stack[0] || !run_stack[1])
		snprintf(rc, sizeof(rc), "- (one stack only)");
	else if (ks.ds.best)
		snprintf(rc, sizeof(rc), "%s%.2f",
			 rf.ds.at_max || ks.ds.at_max || rf.ds.cut_short || ks.ds.cut_short ? "~"
											    : "",
			 ratio);
	else
		snprintf(rc, sizeof(rc), "- (the kernel stack kept no guest count)");
	printf("density: %d trials of %d guests at most, %.0f min in all, load average at the "
	       "trials' start up to %.2f; CSV %s\n",
	       d.trial_no, max, difftime(time(NULL), t0) / 60, d.max_load, d.csv_path);
	snprintf(line, sizeof(line),
		 "density: ramfold %s guests, kernel stack %s guests, ratio %s (target >= "
		 "1.5x): %s",
		 run_stack[0] ? count_cell(a, sizeof(a), &rf.ds) : "-",
		 run_stack[1] ? count_cell(b, sizeof(b), &ks.ds) : "-", rc,
		 d.host_changed	   ? "host changed by another user during the search: not a result"
		 : d.max_load >= 1 ? "noisy (a trial started at load average >= 1: not a result)"
		 : smoke	   ? "smoke (not a result)"
		 : !run_stack[0] || !run_stack[1] ? "no verdict"
		 : ks.ds.best && ratio >= 1.5	  ? "met"
		 : !ks.ds.best && rf.ds.best	  ? "met"
						  : "not met");
	/* The picture beside the CSV: FILE.csv -> FILE.svg. */
	snprintf(path, sizeof(path), "%.*s.svg",
		 (int)(strlen(d.csv_path) - (strstr(d.csv_path, ".csv") ? 4 : 0)), d.csv_path);
	{
		char title[300];
		int best[2] = {run_stack[0] ? rf.ds.best : -1, run_stack[1] ? ks.ds.best : -1};

		snprintf(title, sizeof(title),
			 "%sthe lowest guest's share of its unconstrained work, %llu MiB budget, "
			 "%.0f+%.0f s trials, load up to %.2f%s",
			 smoke ? "SMOKE: " : "", (unsigned long long)d.budget_mib, d.settle,
			 d.measure, d.max_load, d.max_load >= 1 ? " (noisy)" : "");
		if (density_plot(path, title, d.pt, d.npt, d.threshold, best))
			fprintf(stderr, "density-run: %s: cannot write the plot\n", path);
		else
			printf("density: plot %s\n", path);
	}
	printf("%s\n", line);
	snprintf(path, sizeof(path), "%s/density.txt", d.out);
	if ((f = fopen(path, "we"))) {
		fprintf(f, "%s\n", line);
		fclose(f);
	}
	return 0;
}
