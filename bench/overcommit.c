/* SPDX-License-Identifier: MIT */
/*
 * The overcommit experiment: run a scenario (VMs, sizes, workloads, a host
 * budget) in the demo VMM for a set time, once per "run" line (ramfold's
 * reclaim, the kernel's KSM instead, ...), and show what the host paid.
 *
 *   overcommit-run [--vmm PATH] [--out DIR] [--duration SEC] SCENARIO
 *   overcommit-run [--out DIR] --restore
 *
 * Scenario file, one directive per line ('#' starts a comment):
 *   budget SIZE          host memory the guests may use (--host-budget)
 *   duration SEC         length of each run
 *   settle SEC           time allowed before the budget must hold
 *   run NAME [ARGS...]   one run: extra ramfold-vmm options; the token
 *                        +ksm[=PAGES/MS] makes the runner turn the kernel's
 *                        KSM on for the VMM (prctl PR_SET_MEMORY_MERGE in
 *                        the child, /sys/kernel/mm/ksm driven and restored);
 *                        a token @KEY=VALUE adds KEY=VALUE to every VM of
 *                        the run (e.g. @balloon-report=on); +kernel makes it
 *                        the kernel's own stack (kernel_stack.h): the VMM
 *                        in a memory cgroup limited to the budget, a swap
 *                        file, zswap with lz4, KSM at its fastest
 *                        (10000 pages, no sleep, unless +ksm= says
 *                        otherwise); +unconstrained marks the run the
 *                        others' guest work is a share of (its budget is
 *                        not checked)
 *   vm SPEC              a VM, as ramfold-vmm --vm takes it
 *
 * For each run, in DIR/NAME/: the VMM's output and console logs, its
 * ledger CSV (host memory by category each second, from the library),
 * samples.csv (the ledger's rows plus the kernel's view of the VMM process:
 * smaps_rollup Rss/Pss, and KSM's pages_sharing), work.csv (each guest's
 * work per second after the settling time, as judged), memory.svg (stacked
 * categories over time, with the budget and the process's Pss), and a row
 * in DIR/summary.csv and DIR/summary.txt. The checks of issue 7: every
 * guest responsive (its VM exits keep growing to the end), memcheck clean,
 * and the guests' measured use under the budget after the settling time.
 *
 * Guest work: each second the runner samples every guest's work_bytes
 * (query-vms' work-bytes) and the guests' stall: for runs with ramfold's
 * reclaim, the time their vCPUs waited in ramfold's fault handling
 * (query-swap's stall-ns, summed over the VMs), for the others the memory
 * pressure stall (PSI "some": the cgroup's on v2, else the host's).
 * The table gives each run's guest work after the settling time as a share
 * of the unconstrained run's (mean over the guests that count work, and the
 * worst guest), and DIR/work.svg the same share over time for every run.
 *
 * Whatever a run changes on the host is journaled in DIR/host.journal
 * first and put back after the run, on SIGINT/SIGTERM, and, after a SIGKILL,
 * at the next start or by --restore (make experiment-restore). A part of the
 * kernel's stack the host cannot set up is one line, and the run's row is
 * marked incomplete.
 *
 * The host line (CPUs, frequency policy, load average) is printed at the
 * start and heads summary.txt, and each run's load average at its start is
 * printed and in summary.csv: the runs compare only if all of them started
 * below load 1 (the summary says "noisy" otherwise: a loaded host starves
 * ksmd, a nice-5 kernel thread, first).
 * Exit status 0 when every run passes them, 1 otherwise, 2 on errors.
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
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "host.h"
#include "kernel_stack.h"
#include "overcommit.h"

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67 /* Linux 6.4 */
#endif

#define KSM_DIR "/sys/kernel/mm/ksm"
/* KSM at its fastest, as bench/dedup.c runs it: pages_to_scan, sleep_millisecs. */
#define KSM_FASTEST_PAGES    10000
#define KSM_FASTEST_SLEEP_MS 0

static const char *const lnames[L_NF] = {
    "used",	     "private",	      "shared_fair",	   "zero",	"ballooned",
    "free_reported", "swapped",	      "compressed_host",   "metadata",	"saved_dedup",
    "saved_zero",    "saved_balloon", "saved_free_report", "saved_swap"};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "overcommit-run: ");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	double v = strtod(s, &end);
	uint64_t mul = 1;

	if (end == s || v < 0)
		return -1;
	switch (*end) {
	case 'k':
	case 'K':
		mul = 1ull << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mul = 1ull << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mul = 1ull << 30;
		end++;
		break;
	case 't':
	case 'T':
		mul = 1ull << 40;
		end++;
		break;
	}
	if (*end == 'i')
		end++;
	if (*end == 'B')
		end++;
	if (*end)
		return -1;
	*out = (uint64_t)(v * (double)mul);
	return 0;
}

static char *trim(char *s)
{
	char *e;

	if ((e = strchr(s, '#')))
		*e = 0;
	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && strchr(" \t\r\n", e[-1]))
		*--e = 0;
	return s;
}

static void read_scenario(const char *path, struct scenario *sc)
{
	char line[4096];
	FILE *f = fopen(path, "re");
	int lineno = 0;

	if (!f)
		die("%s: %s", path, strerror(errno));
	sc->duration = 60;
	sc->settle = 20;
	while (fgets(line, sizeof(line), f)) {
		char *s = trim(line), *kw, *rest;

		lineno++;
		if (!*s)
			continue;
		kw = strtok_r(s, " \t", &rest);
		rest = trim(rest);
		if (!strcmp(kw, "budget")) {
			if (parse_size(rest, &sc->budget) || sc->budget == 0)
				die("%s:%d: budget: expected a size such as 1G", path, lineno);
		} else if (!strcmp(kw, "duration") || !strcmp(kw, "settle")) {
			char *end;
			double v = strtod(rest, &end);

			if (end == rest || *end || v <= 0)
				die("%s:%d: %s: expected seconds", path, lineno, kw);
			*(!strcmp(kw, "duration") ? &sc->duration : &sc->settle) = v;
		} else if (!strcmp(kw, "vm")) {
			const char *n;
			int i = sc->nvms;

			n = strstr(rest, "name=");
			if (i == MAX_VMS)
				die("%s:%d: more than %d VMs", path, lineno, MAX_VMS);
			if (!n)
				die("%s:%d: vm: a name= key is required", path, lineno);
			sc->vms[i] = strdup(rest);
			snprintf(sc->vm_names[i], sizeof(sc->vm_names[i]), "%.*s",
				 (int)strcspn(n + 5, ","), n + 5);
			sc->vm_memcheck[i] = strstr(rest, "workload=memcheck") != NULL;
			sc->vm_mem[i] = 256ull << 20; /* the VMM's default */
			if ((n = strstr(rest, "mem="))) {
				char m[32];

				snprintf(m, sizeof(m), "%.*s", (int)strcspn(n + 4, ","), n + 4);
				if (parse_size(m, &sc->vm_mem[i]))
					die("%s:%d: vm: mem=%s is not a size", path, lineno, m);
			}
			sc->nvms++;
		} else if (!strcmp(kw, "run")) {
			struct run_spec *r = &sc->runs[sc->nruns];
			char *tok, *save;

			if (sc->nruns == MAX_RUNS)
				die("%s:%d: more than %d runs", path, lineno, MAX_RUNS);
			tok = strtok_r(rest, " \t", &save);
			if (!tok)
				die("%s:%d: run: a name is required", path, lineno);
			snprintf(r->name, sizeof(r->name), "%s", tok);
			while ((tok = strtok_r(NULL, " \t", &save))) {
				if (!strncmp(tok, "+ksm", 4)) {
					r->ksm = true;
					r->ksm_pages = 1000;
					r->ksm_sleep_ms = 20;
					if (tok[4] == '=' && sscanf(tok + 5, "%u/%u", &r->ksm_pages,
								    &r->ksm_sleep_ms) != 2)
						die("%s:%d: +ksm=PAGES/MS", path, lineno);
					continue;
				}
				if (!strcmp(tok, "+kernel") || !strcmp(tok, "+unconstrained")) {
					*(tok[1] == 'k' ? &r->kernel : &r->unconstrained) = true;
					continue;
				}
				if (tok[0] == '@') {
					size_t l = strlen(r->vm_keys);

					snprintf(r->vm_keys + l, sizeof(r->vm_keys) - l, ",%s",
						 tok + 1);
					continue;
				}
				if (r->nargs == MAX_ARGS)
					die("%s:%d: too many arguments", path, lineno);
				r->args[r->nargs++] = strdup(tok);
				if (r->nargs > 1 && !strcmp(r->args[r->nargs - 2], "--policy"))
					r->ramfold_reclaim = strcmp(tok, "off") != 0;
			}
			if (r->kernel && !r->ksm) {
				r->ksm = true;
				r->ksm_pages = KSM_FASTEST_PAGES;
				r->ksm_sleep_ms = KSM_FASTEST_SLEEP_MS;
			}
			sc->nruns++;
		} else {
			die("%s:%d: unknown directive \"%s\"", path, lineno, kw);
		}
	}
	fclose(f);
	if (!sc->budget || !sc->nvms)
		die("%s: a budget and at least one vm are required", path);
	if (!sc->nruns) {
		snprintf(sc->runs[0].name, sizeof(sc->runs[0].name), "ramfold");
		sc->runs[0].args[0] = "--policy";
		sc->runs[0].args[1] = "500";
		sc->runs[0].nargs = 2;
		sc->runs[0].ramfold_reclaim = true;
		sc->nruns = 1;
	}
}

/* ---- the host, changed for a run and put back ---- */

static struct kstack host_changes; /* journaled in OUT/host.journal */
static volatile pid_t vmm_pid;	   /* the running VMM, for the signal handler */

static uint64_t ksm_u64(const char *name)
{
	char p[128], b[64];

	snprintf(p, sizeof(p), KSM_DIR "/%s", name);
	return bench_file_line(p, b, sizeof(b)) ? strtoull(b, NULL, 10) : 0;
}

/* The VMM first (its memory comes back through swapoff otherwise), then
 * whatever the run changed on the host. */
static void on_signal(int sig)
{
	if (vmm_pid > 0) {
		kill(vmm_pid, SIGKILL);
		waitpid(vmm_pid, NULL, 0);
	}
	kstack_restore(&host_changes, stderr);
	signal(sig, SIG_DFL);
	raise(sig);
}

/* Append "WHAT" to the run's list of what could not be set up, and say it. */
static void incomplete(const struct run_spec *r, struct run_result *rr, const char *what)
{
	size_t l = strlen(rr->incomplete);

	printf("run %s: incomplete: %s\n", r->name, what);
	snprintf(rr->incomplete + l, sizeof(rr->incomplete) - l, "%s%s", l ? "; " : "", what);
}

/* Set up the kernel's stack (or KSM alone) for run @r; each part that fails
 * is one line, and the run goes on without it. */
static void host_setup(const struct scenario *sc, const struct run_spec *r, const char *out,
		       struct run_result *rr)
{
	char why[400], path[4200], name[64], abs[4096];
	uint64_t promised = 0;

	if (r->ksm && kstack_ksm_on(&host_changes, r->ksm_pages, r->ksm_sleep_ms, why, sizeof(why)))
		incomplete(r, rr, why);
	if (!r->kernel)
		return;
	for (int i = 0; i < sc->nvms; i++)
		promised += sc->vm_mem[i];
	/* Room for every guest's memory: the kernel never runs out of swap. The
	 * path absolute: a restore may start from another directory. */
	if (!realpath(out, abs))
		snprintf(abs, sizeof(abs), "%s", out);
	snprintf(path, sizeof(path), "%s/kernel-stack.swap", abs);
	if (kstack_swap_on(&host_changes, path, promised, why, sizeof(why)))
		incomplete(r, rr, why);
	if (kstack_zswap_on(&host_changes, "lz4", why, sizeof(why)))
		incomplete(r, rr, why);
	snprintf(name, sizeof(name), "ramfold-experiment-%d", (int)getpid());
	if (kstack_cgroup_make(&host_changes, name, sc->budget, why, sizeof(why)))
		incomplete(r, rr, why);
}

/* ---- talking to the VMM ---- */

static int ctl_request(const char *sock, const char *req, char *reply, size_t len)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 2};
	size_t got = 0;
	int fd;

	if (strlen(sock) >= sizeof(a.sun_path))
		return -ENAMETOOLONG;
	memcpy(a.sun_path, sock, strlen(sock) + 1);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	if (connect(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req) || write(fd, "\n", 1) != 1) {
		close(fd);
		return -EIO;
	}
	while (got + 1 < len) {
		ssize_t n = read(fd, reply + got, len - 1 - got);

		if (n <= 0)
			break;
		got += (size_t)n;
		if (memchr(reply + got - n, '\n', (size_t)n))
			break;
	}
	reply[got] = 0;
	close(fd);
	return got ? 0 : -EIO;
}

/* From query-vms: each VM's exits, whether it faulted, and its work. */
static void read_vms(const char *sock, const struct scenario *sc, uint64_t *exits, bool *faulted,
		     uint64_t *work)
{
	static char reply[1 << 16];

	if (ctl_request(sock, "{\"execute\":\"query-vms\"}", reply, sizeof(reply)))
		return;
	for (int i = 0; i < sc->nvms; i++) {
		char key[64];
		const char *p, *q;

		snprintf(key, sizeof(key), "\"name\":\"%s\"", sc->vm_names[i]);
		p = strstr(reply, key);
		if (!p)
			continue;
		q = strstr(p, "\"exits\":");
		if (q)
			exits[i] = strtoull(q + 8, NULL, 10);
		q = strstr(p, "\"state\":\"");
		if (q && !strncmp(q + 9, "faulted", 7))
			faulted[i] = true;
		q = strstr(p, "\"work-bytes\":");
		if (q && q < strchr(p, '}'))
			work[i] = strtoull(q + 13, NULL, 10);
	}
}

/* The VMs' fault stall so far (query-swap's stall-ns, vCPU-ns), summed;
 * -1 if a VM did not answer (a sum without it would look like a drop). */
static int64_t read_rf_stall(const char *sock, const struct scenario *sc)
{
	char req[160], reply[4096];
	int64_t sum = 0;

	for (int i = 0; i < sc->nvms; i++) {
		const char *q;

		snprintf(req, sizeof(req),
			 "{\"execute\":\"query-swap\",\"arguments\":{\"vm\":\"%s\"}}",
			 sc->vm_names[i]);
		if (ctl_request(sock, req, reply, sizeof(reply)) ||
		    !(q = strstr(reply, "\"stall-ns\":")))
			return -1;
		sum += (int64_t)strtoull(q + 11, NULL, 10);
	}
	return sum;
}

static void read_rollup(pid_t pid, uint64_t *rss, uint64_t *pss)
{
	char path[64], line[256], key[64];
	unsigned long long kb;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	*rss = *pss = 0;
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63[^:]: %llu kB", key, &kb) != 2)
			continue;
		if (!strcmp(key, "Rss"))
			*rss = (uint64_t)kb << 10;
		else if (!strcmp(key, "Pss"))
			*pss = (uint64_t)kb << 10;
	}
	fclose(f);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Column indexes of the ledger CSV, from its header. */
static void ledger_columns(const char *header, int *col, int *state_col, int *mono_col)
{
	char buf[2048], *tok, *save;
	int c = 0;

	snprintf(buf, sizeof(buf), "%.2047s", header);
	for (int k = 0; k < L_NF; k++)
		col[k] = -1;
	*state_col = *mono_col = -1;
	for (tok = strtok_r(buf, ",\n", &save); tok; tok = strtok_r(NULL, ",\n", &save), c++) {
		if (!strcmp(tok, "state"))
			*state_col = c;
		if (!strcmp(tok, "mono_s"))
			*mono_col = c;
		for (int k = 0; k < L_NF; k++)
			if (!strcmp(tok, lnames[k]))
				col[k] = c;
	}
}

/*
 * Fill each sample's ledger fields with the ledger row nearest in time. Rows
 * carry CLOCK_MONOTONIC (mono_s), the clock the samples are taken on, so
 * the two line up whatever the VMM's start-up took; @t0 is the runner's
 * start on that clock.
 */
static void merge_ledger(const char *path, struct run_result *rr, double t0)
{
	char line[2048];
	FILE *f = fopen(path, "re");
	int col[L_NF], scol, mcol, nrows = 0;
	struct sample *rows;

	if (!f)
		return;
	rows = calloc(MAX_SAMPLES, sizeof(*rows));
	if (!rows || !fgets(line, sizeof(line), f)) {
		free(rows);
		fclose(f);
		return;
	}
	ledger_columns(line, col, &scol, &mcol);
	while (nrows < MAX_SAMPLES && fgets(line, sizeof(line), f)) {
		char *fields[64], *save, *tok;
		int nf = 0;
		struct sample *r = &rows[nrows];

		for (tok = strtok_r(line, ",\n", &save); tok && nf < 64;
		     tok = strtok_r(NULL, ",\n", &save))
			fields[nf++] = tok;
		if (mcol < 0 || mcol >= nf)
			continue;
		r->t = atof(fields[mcol]) - t0;
		for (int k = 0; k < L_NF; k++)
			if (col[k] >= 0 && col[k] < nf)
				r->l[k] = strtoull(fields[col[k]], NULL, 10);
		if (scol >= 0 && scol < nf)
			snprintf(r->state, sizeof(r->state), "%s", fields[scol]);
		nrows++;
	}
	fclose(f);
	/* Each sample takes the ledger row nearest in time (rows are ~1 s apart). */
	for (int i = 0; i < rr->n; i++) {
		int best = -1;
		double bestd = 1.5;

		for (int k = 0; k < nrows; k++) {
			double d = fabs(rows[k].t - rr->s[i].t);

			if (d < bestd) {
				bestd = d;
				best = k;
			}
		}
		if (best < 0)
			continue;
		memcpy(rr->s[i].l, rows[best].l, sizeof(rr->s[i].l));
		memcpy(rr->s[i].state, rows[best].state, sizeof(rr->s[i].state));
		rr->s[i].have_ledger = true;
	}
	free(rows);
}

/* memcheck: clean unless a BAD round was printed; rounds from the last summary. */
static void read_memcheck(const char *log, bool *clean, uint64_t *rounds)
{
	char line[512];
	FILE *f = fopen(log, "re");

	*clean = f != NULL;
	*rounds = 0;
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		const char *p;

		if (strstr(line, "BAD") ||
		    (strstr(line, "bad_rounds=") && !strstr(line, "bad_rounds=0")))
			*clean = false;
		if ((p = strstr(line, "rounds=")) && p > line && p[-1] == ' ')
			*rounds = strtoull(p + 7, NULL, 10);
	}
	fclose(f);
}

/* ---- the plot ---- */

static const char *const colors[L_NF] = {NULL,	    "#4e79a7", "#59a14f", NULL,	     NULL,
					 NULL,	    NULL,      "#b07aa1", "#9c755f", "#a0cbe8",
					 "#8cd17d", "#f1ce63", "#ff9d9a", "#d4a6c8"};

static void write_svg(const char *path, const char *title, const struct run_result *rr,
		      uint64_t budget)
{
	/* Layers bottom-up: what the host pays, then what each mechanism saved. */
	static const int layers[] = {L_PRIVATE, L_SHARED,    L_COMPRESSED, L_META,  L_S_DEDUP,
				     L_S_ZERO,	L_S_BALLOON, L_S_REPORT,   L_S_SWAP};
	static const char *const labels[] = {"private (paid)",
					     "shared, fair part (paid)",
					     "compressed tier (paid)",
					     "metadata (paid)",
					     "saved: dedup",
					     "saved: zero pages",
					     "saved: balloon",
					     "saved: free reporting",
					     "saved: swap"};
	const int nl = sizeof(layers) / sizeof(layers[0]);
	const double W = 960, H = 460, X0 = 70, Y0 = 30, PW = 640, PH = 370;
	double tmax = 1, ymax = (double)budget * 1.1;
	FILE *f = fopen(path, "we");

	if (!f)
		return;
	for (int i = 0; i < rr->n; i++) {
		double top = 0;

		for (int k = 0; k < nl; k++)
			top += (double)rr->s[i].l[layers[k]];
		if (top > ymax)
			ymax = top;
		if ((double)rr->s[i].pss > ymax)
			ymax = (double)rr->s[i].pss;
		if (rr->s[i].t > tmax)
			tmax = rr->s[i].t;
	}
	ymax *= 1.05;
#define PX(t) (X0 + (t) / tmax * PW)
#define PY(v) (Y0 + PH - (double)(v) / ymax * PH)
	plot_header(f, W, H, X0, title);
	/* Stacked areas: each layer a polygon between its bottom and top. */
	for (int k = 0; k < nl; k++) {
		fprintf(f, "<polygon fill=\"%s\" stroke=\"none\" points=\"", colors[layers[k]]);
		for (int i = 0; i < rr->n; i++) {
			double top = 0;

			for (int j = 0; j <= k; j++)
				top += (double)rr->s[i].l[layers[j]];
			fprintf(f, "%.1f,%.1f ", PX(rr->s[i].t), PY(top));
		}
		for (int i = rr->n - 1; i >= 0; i--) {
			double bot = 0;

			for (int j = 0; j < k; j++)
				bot += (double)rr->s[i].l[layers[j]];
			fprintf(f, "%.1f,%.1f ", PX(rr->s[i].t), PY(bot));
		}
		fprintf(f, "\"/>\n");
	}
	/* The process as the kernel charges it, and the budget. */
	fprintf(f, "<polyline fill=\"none\" stroke=\"black\" stroke-width=\"1.5\" points=\"");
	for (int i = 0; i < rr->n; i++)
		fprintf(f, "%.1f,%.1f ", PX(rr->s[i].t), PY(rr->s[i].pss));
	fprintf(f, "\"/>\n");
	fprintf(f,
		"<line x1=\"%.1f\" y1=\"%.1f\" x2=\"%.1f\" y2=\"%.1f\" stroke=\"#e15759\" "
		"stroke-width=\"2\" stroke-dasharray=\"6,4\"/>\n",
		X0, PY(budget), X0 + PW, PY(budget));
	/* Axes and ticks. */
	plot_axes(f, &(struct plot_frame){X0, Y0, PW, PH, tmax, ymax}, 1 / 1048576.0, " MiB");
	/* Legend. */
	for (int k = 0; k < nl; k++)
		fprintf(f,
			"<rect x=\"%.0f\" y=\"%.0f\" width=\"12\" height=\"12\" fill=\"%s\"/>"
			"<text x=\"%.0f\" y=\"%.0f\">%s</text>\n",
			X0 + PW + 20, Y0 + 20.0 * (nl - 1 - k), colors[layers[k]], X0 + PW + 38,
			Y0 + 20.0 * (nl - 1 - k) + 10, labels[k]);
	fprintf(f,
		"<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"#e15759\" "
		"stroke-width=\"2\" stroke-dasharray=\"6,4\"/><text x=\"%.0f\" y=\"%.0f\">host "
		"budget</text>\n"
		"<line x1=\"%.0f\" y1=\"%.0f\" x2=\"%.0f\" y2=\"%.0f\" stroke=\"black\" "
		"stroke-width=\"1.5\"/><text x=\"%.0f\" y=\"%.0f\">VMM process Pss "
		"(smaps_rollup)</text>\n",
		X0 + PW + 20, Y0 + 20.0 * nl + 6, X0 + PW + 32, Y0 + 20.0 * nl + 6, X0 + PW + 38,
		Y0 + 20.0 * nl + 10, X0 + PW + 20, Y0 + 20.0 * nl + 26, X0 + PW + 32,
		Y0 + 20.0 * nl + 26, X0 + PW + 38, Y0 + 20.0 * nl + 30);
	fprintf(f, "</svg>\n");
#undef PX
#undef PY
	fclose(f);
}

/* ---- one run ---- */

static void run_one(const struct scenario *sc, const struct run_spec *r, const char *vmm,
		    const char *out, struct run_result *rr)
{
	char dir[700], path[1024], sock[800], csv[800], logs[800], buf[256];
	const char *argv[MAX_ARGS + MAX_VMS * 2 + 32];
	int argc = 0, outfd;
	double t0, settle_at;
	pid_t pid;
	FILE *f;

	snprintf(dir, sizeof(dir), "%s/%s", out, r->name);
	mkdir(dir, 0755);
	snprintf(sock, sizeof(sock), "%s/ctl.sock", dir);
	snprintf(csv, sizeof(csv), "%s/ledger.csv", dir);
	snprintf(logs, sizeof(logs), "%s/logs", dir);
	snprintf(buf, sizeof(buf), "%.0f", sc->duration);
	unlink(sock);
	argv[argc++] = vmm;
	argv[argc++] = "--no-table";
	argv[argc++] = "--duration";
	argv[argc++] = buf;
	argv[argc++] = "--ctl";
	argv[argc++] = sock;
	argv[argc++] = "--log-dir";
	argv[argc++] = logs;
	argv[argc++] = "--ledger-csv";
	argv[argc++] = csv;
	argv[argc++] = "--host-budget";
	{
		static char b[32];

		snprintf(b, sizeof(b), "%llu", (unsigned long long)sc->budget);
		argv[argc++] = b;
	}
	for (int i = 0; i < r->nargs; i++)
		argv[argc++] = r->args[i];
	for (int i = 0; i < sc->nvms; i++) {
		static char specs[MAX_VMS][1024];

		snprintf(specs[i], sizeof(specs[i]), "%s%s", sc->vms[i], r->vm_keys);
		argv[argc++] = "--vm";
		argv[argc++] = specs[i];
	}
	argv[argc] = NULL;

	snprintf(path, sizeof(path), "%s/vmm.out", dir);
	outfd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (outfd < 0)
		die("%s: %s", path, strerror(errno));
	snprintf(path, sizeof(path), "%s/command", dir);
	if ((f = fopen(path, "we"))) {
		for (int i = 0; i < argc; i++)
			fprintf(f, "%s%s", argv[i], i + 1 < argc ? " " : "\n");
		fclose(f);
	}
	host_setup(sc, r, out, rr);
	rr->load = bench_loadavg();
	printf("run %s: %d VMs, budget %llu MiB, %.0f s, load average %.2f at start ...\n", r->name,
	       sc->nvms, (unsigned long long)(sc->budget >> 20), sc->duration, rr->load);
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		die("fork: %s", strerror(errno));
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		if (kstack_cgroup_join(&host_changes)) {
			perror("overcommit-run: joining the cgroup");
			_exit(127);
		}
		if (r->ksm && prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0)) {
			perror("overcommit-run: prctl(PR_SET_MEMORY_MERGE)");
			_exit(127);
		}
		dup2(outfd, 1);
		dup2(outfd, 2);
		execv(vmm, (char *const *)argv);
		perror("overcommit-run: exec");
		_exit(127);
	}
	close(outfd);
	vmm_pid = pid;
	t0 = now_s();
	settle_at = sc->settle;
	rr->s = calloc(MAX_SAMPLES, sizeof(*rr->s));
	rr->nvms = sc->nvms;
	for (;;) {
		int status;
		struct sample *s;
		double t;

		if (waitpid(pid, &status, WNOHANG) == pid) {
			rr->vmm_status =
			    WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
			rr->vmm_end_t = now_s() - t0;
			vmm_pid = 0;
			break;
		}
		usleep(1000000 - (useconds_t)(fmod(now_s() - t0, 1.0) * 1e6));
		t = now_s() - t0;
		if (rr->n == MAX_SAMPLES)
			continue;
		s = &rr->s[rr->n];
		s->t = t;
		read_rollup(pid, &s->rss, &s->pss);
		if (!s->rss)
			continue; /* exiting */
		s->ksm_sharing = r->ksm ? ksm_u64("pages_sharing") : 0;
		s->cgroup_bytes = kstack_cgroup_usage(&host_changes);
		s->stall_us = kstack_stall_us(&host_changes, &rr->stall_source);
		s->rf_stall_ns = r->ramfold_reclaim ? read_rf_stall(sock, sc) : -1;
		if (rr->n)
			memcpy(s->work, s[-1].work, sizeof(s->work));
		rr->n++;
		read_vms(sock, sc, rr->exits_end, rr->faulted, s->work);
		if (t < settle_at)
			memcpy(rr->exits_settle, rr->exits_end, sizeof(rr->exits_settle));
	}
	/* An OOM kill is the kernel stack's own failure, not a setup problem:
	 * said in one line, and in the summary below the table. */
	rr->oom_kills = kstack_cgroup_oom_kills(&host_changes);
	if (rr->oom_kills)
		printf("run %s: the cgroup's OOM killer killed %llu process%s (the VMM: status %d "
		       "at %.0f s)\n",
		       r->name, (unsigned long long)rr->oom_kills, rr->oom_kills == 1 ? "" : "es",
		       rr->vmm_status, rr->vmm_end_t);
	if (kstack_restore(&host_changes, stdout))
		incomplete(r, rr, "the host could not be put back: see above");
	merge_ledger(csv, rr, t0);
	for (int i = 0; i < sc->nvms; i++) {
		if (!sc->vm_memcheck[i])
			continue;
		snprintf(path, sizeof(path), "%s/%s.log", logs, sc->vm_names[i]);
		read_memcheck(path, &rr->memcheck_clean[i], &rr->memcheck_rounds[i]);
	}
}

static void judge(const struct scenario *sc, struct run_result *rr)
{
	uint64_t sum = 0;
	int cnt = 0;
	const struct sample *last = NULL;

	rr->responsive = 0;
	for (int i = 0; i < sc->nvms; i++)
		if (!rr->faulted[i] && rr->exits_end[i] > rr->exits_settle[i])
			rr->responsive++;
	rr->memcheck_ok = true;
	for (int i = 0; i < sc->nvms; i++)
		if (sc->vm_memcheck[i] && (!rr->memcheck_clean[i] || !rr->memcheck_rounds[i]))
			rr->memcheck_ok = false;
	rr->under_budget = true;
	for (int i = 0; i < rr->n; i++) {
		const struct sample *s = &rr->s[i];

		if (!s->have_ledger)
			continue;
		/* Teardown (after the duration) is not the run: see judge_work. */
		if (s->t > sc->duration)
			break;
		last = s;
		if (s->t < sc->settle)
			continue;
		if (s->l[L_USED] > rr->max_used_after)
			rr->max_used_after = s->l[L_USED];
		if (s->pss > rr->max_pss_after)
			rr->max_pss_after = s->pss;
		sum += s->l[L_USED];
		cnt++;
		/* The kernel's number decides: the VMM process's Pss. */
		if (s->pss > sc->budget)
			rr->under_budget = false;
	}
	if (!cnt)
		rr->under_budget = false;
	rr->mean_used_after = cnt ? sum / (uint64_t)cnt : 0;
	judge_work(sc, rr);
	if (last) {
		rr->final_used = last->l[L_USED];
		for (int k = 0; k < 5; k++)
			rr->saved[k] = last->l[L_S_DEDUP + k];
	}
}

static void write_samples(const char *path, const struct scenario *sc, const struct run_result *rr)
{
	FILE *f = fopen(path, "we");

	if (!f)
		return;
	fprintf(f, "t_s,process_rss,process_pss,ksm_pages_sharing,state");
	for (int k = 0; k < L_NF; k++)
		fprintf(f, ",%s", lnames[k]);
	fprintf(f, ",cgroup_bytes,psi_some_total_us,ramfold_stall_ns");
	for (int i = 0; i < sc->nvms; i++)
		fprintf(f, ",work_bytes_%s", sc->vm_names[i]);
	fprintf(f, "\n");
	for (int i = 0; i < rr->n; i++) {
		const struct sample *s = &rr->s[i];

		fprintf(f, "%.2f,%llu,%llu,%llu,%s", s->t, (unsigned long long)s->rss,
			(unsigned long long)s->pss, (unsigned long long)s->ksm_sharing,
			s->have_ledger ? s->state : "");
		for (int k = 0; k < L_NF; k++)
			fprintf(f, ",%llu", (unsigned long long)s->l[k]);
		fprintf(f, ",%llu,%lld,%lld", (unsigned long long)s->cgroup_bytes,
			(long long)s->stall_us, (long long)s->rf_stall_ns);
		for (int i = 0; i < sc->nvms; i++)
			fprintf(f, ",%llu", (unsigned long long)s->work[i]);
		fprintf(f, "\n");
	}
	fclose(f);
}

#define MB(x) ((double)(x) / 1048576.0)

/* "  87%" or what stands for a figure this run does not have. */
static const char *pct_cell(char *b, size_t cap, double v, const char *none)
{
	if (v < 0)
		snprintf(b, cap, "%s", none);
	else
		snprintf(b, cap, "%.0f%%", v * 100);
	return b;
}

static const char *budget_cell(const struct run_spec *r, const struct run_result *x)
{
	if (r->unconstrained)
		return "n/a";
	return x->under_budget ? "held" : "OVER";
}

static const char *stall_cell(char *b, size_t cap, const struct run_spec *r,
			      const struct run_result *x)
{
	if (run_stall(r, x) < 0)
		return r->ramfold_reclaim ? "-" : "no PSI";
	snprintf(b, cap, "%.2f%%", run_stall(r, x));
	return b;
}

static void write_table(FILE *f, const struct scenario *sc, const struct run_result *rr,
			const struct run_result *base, double maxload, uint64_t promised)
{
	bool any_incomplete = false, any_ramfold = false;
	const char *psi_source = NULL;

	fprintf(f,
		"\n%d VMs, %.0f MiB promised, budget %.0f MiB (%.2fx overcommit), %.0f s "
		"per run, budget and work after %.0f s\n",
		sc->nvms, MB(promised), MB(sc->budget), (double)promised / (double)sc->budget,
		sc->duration, sc->settle);
	fprintf(f,
		"%-14s %6s %8s %6s %6s %7s %9s %9s %9s | %-8s | saved MiB: %6s %6s %7s %6s "
		"%6s\n",
		"run", "alive", "memcheck", "budget", "work", "worst", "stall", "max Pss", "mean",
		"setup", "dedup", "zero", "balloon", "report", "swap");
	for (int r = 0; r < sc->nruns; r++) {
		const struct run_result *x = &rr[r];
		const struct run_spec *rs = &sc->runs[r];
		char w[16], wo[16], st[16];

		fprintf(f,
			"%-14s %3d/%-2d %8s %6s %6s %7s %9s %9.1f %9.1f | %-8s | %17.1f %6.1f "
			"%7.1f %6.1f %6.1f\n",
			rs->name, x->responsive, x->nvms, x->memcheck_ok ? "clean" : "FAILED",
			budget_cell(rs, x), pct_cell(w, sizeof(w), x->work_share, "-"),
			pct_cell(wo, sizeof(wo), x->work_worst, "-"),
			stall_cell(st, sizeof(st), rs, x), MB(x->max_pss_after),
			MB(x->mean_used_after), *x->incomplete ? "INCOMPL." : "complete",
			MB(x->saved[0]), MB(x->saved[1]), MB(x->saved[2]), MB(x->saved[3]),
			MB(x->saved[4]));
		any_incomplete |= *x->incomplete != 0;
		any_ramfold |= rs->ramfold_reclaim;
		if (!rs->ramfold_reclaim && x->stall_source)
			psi_source = x->stall_source;
	}
	if (base)
		fprintf(f,
			"work = the guests' work after settling as a share of the unconstrained "
			"run's (mean of the guests that count work; worst = the lowest guest).\n");
	else
		fprintf(f, "work: - (the scenario has no +unconstrained run to compare with)\n");
	write_guest_shares(f, sc, rr, base);
	if (psi_source)
		fprintf(f,
			"stall = memory pressure stall, PSI \"some\" of the %s, %% of the time "
			"after settling.\n",
			psi_source);
	if (any_ramfold)
		fprintf(f, "stall of ramfold's runs = the time the guests' vCPUs waited in "
			   "ramfold's fault handling (rf_swap_stats.stall_ns), %% of their vCPU "
			   "time after settling (one vCPU a guest).\n");
	fprintf(f, "Pss = the VMM process (smaps_rollup); mean = guests' host cost by the "
		   "ramfold ledger (pagemap).\n");
	for (int r = 0; any_incomplete && r < sc->nruns; r++)
		if (*rr[r].incomplete)
			fprintf(f, "%s incomplete: %s\n", sc->runs[r].name, rr[r].incomplete);
	for (int r = 0; r < sc->nruns; r++)
		if (rr[r].oom_kills)
			fprintf(f,
				"%s: the cgroup's OOM killer killed the VMM %.0f s into the run "
				"(%llu kill%s): its guests did no work from then on\n",
				sc->runs[r].name, rr[r].vmm_end_t,
				(unsigned long long)rr[r].oom_kills,
				rr[r].oom_kills == 1 ? "" : "s");
	fprintf(f, "load average at each run's start:");
	for (int r = 0; r < sc->nruns; r++)
		fprintf(f, " %s %.2f", sc->runs[r].name, rr[r].load);
	fprintf(f, sc->nruns > 1 && maxload >= 1
		       ? " - noisy: a run started at load 1 or more, so the runs "
			 "do not compare (no result)\n"
		       : "\n");
}

/* A row per run of @rr; with @round > 0 (rounds.csv) the round comes first,
 * and the header only with @header. */
static void write_summary_csv(FILE *f, const struct scenario *sc, const struct run_result *rr,
			      int round, bool header)
{
	if (header)
		fprintf(f,
			"%srun,vmm_status,responsive,vms,memcheck_clean,under_budget,budget,"
			"max_used_after_settle,mean_used_after_settle,final_used,"
			"max_process_pss_after_settle,saved_dedup,saved_zero,saved_balloon,"
			"saved_free_report,saved_swap,load_at_start,work_share,work_worst,"
			"stall_pct,incomplete\n",
			round ? "round," : "");
	for (int r = 0; r < sc->nruns; r++) {
		const struct run_result *x = &rr[r];

		if (round)
			fprintf(f, "%d,", round);
		fprintf(f,
			"%s,%d,%d,%d,%d,%d,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%.2f,"
			"%.4f,%.4f,%.4f,\"%s\"\n",
			sc->runs[r].name, x->vmm_status, x->responsive, x->nvms, x->memcheck_ok,
			x->under_budget, (unsigned long long)sc->budget,
			(unsigned long long)x->max_used_after,
			(unsigned long long)x->mean_used_after, (unsigned long long)x->final_used,
			(unsigned long long)x->max_pss_after, (unsigned long long)x->saved[0],
			(unsigned long long)x->saved[1], (unsigned long long)x->saved[2],
			(unsigned long long)x->saved[3], (unsigned long long)x->saved[4], x->load,
			x->work_share, x->work_worst, run_stall(&sc->runs[r], x), x->incomplete);
	}
}

/* What every round shares. */
struct runner {
	const struct scenario *sc;
	const char *vmm, *host;
	int quiet_wait;
	uint64_t promised;
	double maxload;
};

/* The index of @sc's unconstrained run in @rr, or NULL. */
static const struct run_result *base_of(const struct scenario *sc, const struct run_result *rr)
{
	for (int r = 0; r < sc->nruns; r++)
		if (sc->runs[r].unconstrained)
			return &rr[r];
	return NULL;
}

/* One round: every run of the scenario into @dir, its table on stdout and
 * in @dir/summary.txt. */
static void run_round(struct runner *rn, const char *dir, struct run_result *rr)
{
	const struct scenario *sc = rn->sc;
	const struct run_result *base;
	char path[1024];
	FILE *sum_csv, *sum_txt;
	double maxload = 0;

	for (int r = 0; r < sc->nruns; r++) {
		char title[256];

		/* Each run's guests load the host for a while after they
		 * stop: the next run waits (up to --quiet-wait s) for the
		 * load average to fall, as the peer benches do, so that its
		 * start is as quiet as the first's. */
		if (rn->quiet_wait > 0)
			bench_wait_quiet("overcommit-run", rn->quiet_wait);
		run_one(sc, &sc->runs[r], rn->vmm, dir, &rr[r]);
		judge(sc, &rr[r]);
		if (rr[r].load > maxload)
			maxload = rr[r].load;
		snprintf(path, sizeof(path), "%s/%s/samples.csv", dir, sc->runs[r].name);
		write_samples(path, sc, &rr[r]);
		snprintf(path, sizeof(path), "%s/%s/work.csv", dir, sc->runs[r].name);
		write_work_rates(path, sc, &rr[r]);
		snprintf(path, sizeof(path), "%s/%s/memory.svg", dir, sc->runs[r].name);
		snprintf(title, sizeof(title),
			 "%s: guest memory by category (ramfold ledger) vs budget %.0f MiB",
			 sc->runs[r].name, MB(sc->budget));
		write_svg(path, title, &rr[r], sc->budget);
	}
	if (maxload > rn->maxload)
		rn->maxload = maxload;
	base = base_of(sc, rr);
	for (int r = 0; r < sc->nruns; r++)
		judge_share(sc, &rr[r], base);
	snprintf(path, sizeof(path), "%s/work.svg", dir);
	write_work_svg(path, sc, rr, base);

	snprintf(path, sizeof(path), "%s/summary.csv", dir);
	sum_csv = fopen(path, "we");
	snprintf(path, sizeof(path), "%s/summary.txt", dir);
	sum_txt = fopen(path, "we");
	if (!sum_csv || !sum_txt)
		die("%s: cannot write the summary", dir);
	write_summary_csv(sum_csv, sc, rr, 0, true);
	fprintf(sum_txt, "%s at start\n", rn->host);
	write_table(stdout, sc, rr, base, maxload, rn->promised);
	write_table(sum_txt, sc, rr, base, maxload, rn->promised);
	fclose(sum_csv);
	fclose(sum_txt);
}

/* The rounds together (--rounds 2 or more): OUT/summary.txt with the
 * rounds table, OUT/rounds.csv with every round's rows, OUT/work.svg the
 * median round's. */
static void write_rounds(struct runner *rn, const char *out, struct run_result *const rr[],
			 int rounds)
{
	const struct scenario *sc = rn->sc;
	char path[1024];
	int med = rounds_median_index(sc, rr, rounds);
	FILE *f;

	/* Every round's summary.csv rows, the round first. */
	snprintf(path, sizeof(path), "%s/rounds.csv", out);
	if ((f = fopen(path, "we"))) {
		for (int k = 0; k < rounds; k++)
			write_summary_csv(f, sc, rr[k], k + 1, k == 0);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s/work.svg", out);
	write_work_svg(path, sc, rr[med], base_of(sc, rr[med]));
	snprintf(path, sizeof(path), "%s/summary.txt", out);
	if ((f = fopen(path, "we"))) {
		fprintf(f, "%s at start\n", rn->host);
		fprintf(f,
			"each round's table: %s/rN/summary.txt; work.svg is round %d's (ramfold's "
			"median work)\n",
			out, med + 1);
		write_rounds_table(f, sc, rr, rounds, rn->maxload);
		fclose(f);
	}
	write_rounds_table(stdout, sc, rr, rounds, rn->maxload);
}

#define USAGE                                                                                      \
	"usage: overcommit-run [--vmm PATH] [--out DIR] [--duration SEC] [--quiet-wait SEC] "      \
	"[--rounds N] SCENARIO\n"                                                                  \
	"       overcommit-run [--out DIR] --restore"

int main(int argc, char **argv)
{
	const char *vmm = "build/ramfold-vmm", *out = "build/experiment", *scen = NULL;
	static struct scenario sc;
	static struct run_result results[MAX_ROUNDS][MAX_RUNS];
	struct run_result *rr[MAX_ROUNDS];
	struct runner rn = {0};
	double duration = 0;
	char path[1024];
	bool all_ok = true, restore_only = false;
	int quiet_wait = 0, rounds = 1;
	char host[160];
	uint64_t promised = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--vmm") && i + 1 < argc)
			vmm = argv[++i];
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			out = argv[++i];
		else if (!strcmp(argv[i], "--duration") && i + 1 < argc)
			duration = atof(argv[++i]);
		else if (!strcmp(argv[i], "--quiet-wait") && i + 1 < argc)
			quiet_wait = atoi(argv[++i]);
		else if (!strcmp(argv[i], "--rounds") && i + 1 < argc) {
			char *end;
			long v = strtol(argv[++i], &end, 10);

			if (*end || v < 1 || v > MAX_ROUNDS)
				die("--rounds %s: a whole number from 1 to %d", argv[i],
				    MAX_ROUNDS);
			rounds = (int)v;
		} else if (!strcmp(argv[i], "--restore"))
			restore_only = true;
		else if (argv[i][0] != '-' && !scen)
			scen = argv[i];
		else
			die(USAGE);
	}
	/* A runner killed outright (SIGKILL) left its changes in the journal. */
	snprintf(path, sizeof(path), "%s/host.journal", out);
	if (kstack_restore_journal(path, stdout))
		die("%s: the host could not be put back (see above); fix it, then run "
		    "overcommit-run --out %s --restore",
		    path, out);
	if (restore_only)
		return 0;
	kstack_init(&host_changes, path);
	if (!scen)
		die(USAGE);
	if (access(vmm, X_OK))
		die("%s: %s (build it with make)", vmm, strerror(errno));
	read_scenario(scen, &sc);
	if (duration > 0) {
		sc.settle = sc.settle * duration / sc.duration;
		sc.duration = duration;
	}
	for (int i = 0; i < sc.nvms; i++)
		promised += sc.vm_mem[i];
	if (mkdir(out, 0755) && errno != EEXIST)
		die("%s: %s", out, strerror(errno));
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	bench_host_describe(host, sizeof(host));
	printf("overcommit-run: %s at start\n", host);

	rn.sc = &sc;
	rn.vmm = vmm;
	rn.host = host;
	rn.quiet_wait = quiet_wait;
	rn.promised = promised;
	for (int k = 0; k < rounds; k++) {
		char dir[600];

		rr[k] = results[k];
		/* One round: its files where they always were. More: a
		 * directory each, and the rounds together at the top. */
		if (rounds == 1) {
			snprintf(dir, sizeof(dir), "%s", out);
		} else {
			snprintf(dir, sizeof(dir), "%s/r%d", out, k + 1);
			if (mkdir(dir, 0755) && errno != EEXIST)
				die("%s: %s", dir, strerror(errno));
			printf("overcommit-run: round %d of %d\n", k + 1, rounds);
		}
		run_round(&rn, dir, rr[k]);
		/* ramfold's runs must pass; the peers and the baseline report. */
		for (int r = 0; r < sc.nruns; r++) {
			const struct run_result *x = &rr[k][r];

			if (sc.runs[r].ramfold_reclaim &&
			    !(x->responsive == x->nvms && x->memcheck_ok && x->under_budget))
				all_ok = false;
		}
	}
	if (rounds > 1)
		write_rounds(&rn, out, rr, rounds);
	printf("results in %s/ (%ssummary.txt, summary.csv, work.svg, RUN/memory.svg, "
	       "RUN/samples.csv)\n",
	       out, rounds > 1 ? "summary.txt and rounds.csv, then per round rN/: " : "");
	return all_ok ? 0 : 1;
}
