/* SPDX-License-Identifier: MIT */
/*
 * bench/qemu: ramfold-run against the kernel's KSM under stock QEMU (issue
 * 15): guests of 256 MiB, each its own qemu-system-x86_64 (TCG, microvm,
 * -machine mem-merge=on, THP as QEMU sets it), the same Linux guest image
 * running osimage, booted by tests/qemu/lib.sh. Two layouts: three guests
 * side by side (KSM merges across them, ramfold intra-VM does not) and one
 * guest (both see the same pages). Engines, interleaved in each round:
 * ksm-default (the host's knobs as found: 100 pages / 20 ms here),
 * ksm-fastest (10000 pages, 0 ms) and ramfold (ramfold-run --dedup intra);
 * with three guests also ramfold-domain (issue 16): ramfold-run --dedup
 * domain=img --broker S, the three QEMUs sharing one domain through a
 * private ramfoldd started for the run, whose own Pss and CPU count with
 * theirs (the comparison with KSM merging across the processes).
 *
 * The same footing for both: every guest boots to READY with nothing merged
 * (KSM at run=0; ramfold-run --dedup-paused, its scanner with no VM), then
 * after the same settle of 3 s the engine is switched on: run=1 for KSM,
 * set-dedup {"run":true} on each QEMU's control socket for ramfold. That
 * instant is t0 for the clock and the CPU: ksmd's utime+stime, or the sum
 * over the QEMU processes' threads named rf-*, each read at t0 and
 * subtracted. Saving: the fall of the QEMU processes' summed Pss
 * (smaps_rollup) below the same run's Pss at t0. Pss is sampled every
 * 20 ms for the first 2 s, then every 0.1 s; the cost of one reading is
 * measured and printed. Converged: the
 * saving has not grown by 0.5% for 5 s; then 3 s more give the CPU share.
 * Time and CPU to 95% of the engine's own final saving.
 *
 * Before each engine's run the bench waits (up to 3 minutes) for the load
 * average to fall below 0.9: the previous run's guests raise it.
 *
 * Fair measurement (docs/dedup.md): the host line at the start, the load
 * average at each run's start (after that wait) in the output and the CSV,
 * and a layout's ratio lines only if every run of it started below load 1
 * ("noisy" instead). Scheduling: QEMU runs at nice 19 (tests/qemu/lib.sh);
 * ramfold-run --dedup-nice puts its scanner threads at ksmd's nice (read
 * back from /proc and printed), or with --sched zero both at 0 (ksmd
 * reniced for the KSM runs and put back).
 *
 * KSM is put back to run=0 with its knobs as found when the bench ends,
 * fails or is interrupted; every QEMU it started is killed.
 *
 * Usage: qemu [--rounds N] [--sched ksmd|zero] [--timeout S] [--out DIR]
 *             [--layout 1|3|both]
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker_proc.h"
#include "dedup_report.h"

#define MAXG	 3
#define MAXR	 BENCH_MAX_ROUNDS
#define KSM	 "/sys/kernel/mm/ksm/"
#define OS_KIB_D 16384
/* The engines of dedup_report.h, and this bench's fourth (k = 3). */
#define NENG 4

static unsigned int opt_rounds = 3;
static struct bench_sched sched;
static double opt_timeout = 150;
static const char *opt_out = "build/bench";
static const char *bdir = "build";
static unsigned int opt_layouts = 3; /* bit 0: one guest, bit 1: three */
/* Cost of one Pss reading of all guests (smaps_rollup), summed over runs. */
static double pss_read_s, pss_read_max_s;
static unsigned long pss_reads;
static char run_bin[512];
static bool have_run;
/* ramfold-domain: the private broker of the run (0 when none). */
static pid_t broker;
static char broker_sock[100], broker_bin[512];

/* KSM's knobs as found, and the QEMUs running: for the exit paths. */
static char ksm_saved[3][32];
static const char *const ksm_knobs[3] = {"run", "pages_to_scan", "sleep_millisecs"};
static volatile pid_t guests[MAXG];

static int write_knob(const char *knob, const char *val)
{
	char path[128];
	int fd, rc = 0;

	snprintf(path, sizeof(path), KSM "%s", knob);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0 || write(fd, val, strlen(val)) < 0)
		rc = -errno;
	if (fd >= 0)
		close(fd);
	return rc;
}

/* Async-signal-safe: used from the signal handler as well. */
static void put_back(void)
{
	for (unsigned int i = 0; i < MAXG; i++)
		if (guests[i] > 0)
			kill(guests[i], SIGKILL);
	/* --sched zero: ksmd may be at 0 for a KSM run. */
	if (sched.zero && sched.ksmd > 0)
		setpriority(PRIO_PROCESS, (id_t)sched.ksmd, sched.ksmd_nice);
	write_knob("run", "0");
	for (unsigned int k = 1; k < 3; k++)
		if (ksm_saved[k][0])
			write_knob(ksm_knobs[k], ksm_saved[k]);
	write_knob("run", ksm_saved[0][0] ? ksm_saved[0] : "0");
}

static void on_signal(int sig)
{
	put_back();
	signal(sig, SIG_DFL);
	raise(sig);
}

static int read_knobs(void)
{
	for (unsigned int k = 0; k < 3; k++) {
		char path[128];
		FILE *f;

		snprintf(path, sizeof(path), KSM "%s", ksm_knobs[k]);
		f = fopen(path, "re");
		if (!f || !fgets(ksm_saved[k], sizeof(ksm_saved[k]), f)) {
			fprintf(stderr, "bench-qemu: %s: %s\n", path, strerror(errno));
			if (f)
				fclose(f);
			return -1;
		}
		ksm_saved[k][strcspn(ksm_saved[k], "\n")] = 0;
		fclose(f);
	}
	if (strcmp(ksm_saved[0], "0")) {
		fprintf(stderr,
			"bench-qemu: KSM is running (run=%s): another user of KSM would "
			"skew both sides; stop it first\n",
			ksm_saved[0]);
		return -1;
	}
	return 0;
}

static double pss_bytes(pid_t pid)
{
	char path[64], line[256];
	double v = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "re");
	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, "Pss:", 4))
			v = atof(line + 4) * 1024;
	if (f)
		fclose(f);
	return v;
}

static double pss_sum(unsigned int n)
{
	double s = 0;

	for (unsigned int i = 0; i < n; i++) {
		double v = pss_bytes(guests[i]);

		if (v < 0)
			return -1;
		s += v;
	}
	if (broker > 0) {
		double v = pss_bytes(broker);

		if (v > 0)
			s += v;
	}
	return s;
}

static void stop_guests(void)
{
	for (unsigned int i = 0; i < MAXG; i++) {
		if (guests[i] > 0) {
			kill(guests[i], SIGTERM);
			for (int t = 0; t < 100 && !kill(guests[i], 0); t++)
				usleep(100000);
			kill(guests[i], SIGKILL);
		}
		guests[i] = 0;
	}
}

/* Boot @n osimage guests through tests/qemu/lib.sh, wait for READY. */
static int start_guests(unsigned int n, bool wrap, bool domain)
{
	char cmd[2048], path[600];

	snprintf(cmd, sizeof(cmd),
		 "B='%s' QEMU_DIR='%s/bench/qemu-guests' QEMU_TIMEOUT=900 bash -c '"
		 ". tests/qemu/lib.sh && qemu_check || exit 2; for i in $(seq 0 %u); do "
		 "RUN_WRAPPER=%s qemu_boot g$i osimage; done; "
		 "for i in $(seq 0 %u); do qemu_wait g$i ^READY 300 || exit 1; done'",
		 bdir, bdir, n - 1,
		 !wrap	  ? "''"
		 : domain ? "\"$RF_RUN --dedup domain=img --broker $RF_BROKER --dedup-paused "
			    "--dedup-nice $RF_NICE --ctl $QEMU_DIR/g$i.sock --\""
			  : "\"$RF_RUN --dedup intra --dedup-paused --dedup-nice $RF_NICE "
			    "--ctl $QEMU_DIR/g$i.sock --\"",
		 n - 1);
	if (wrap) {
		char nice[16];

		snprintf(nice, sizeof(nice), "%d", sched.scan_nice);
		setenv("RF_RUN", run_bin, 1);
		setenv("RF_NICE", nice, 1);
	}
	if (domain)
		setenv("RF_BROKER", broker_sock, 1);
	for (unsigned int i = 0; i < n; i++) {
		snprintf(path, sizeof(path), "%s/bench/qemu-guests/g%u.pid", bdir, i);
		unlink(path);
	}
	int rc = system(cmd);

	for (unsigned int i = 0; i < n; i++) {
		FILE *f;

		snprintf(path, sizeof(path), "%s/bench/qemu-guests/g%u.pid", bdir, i);
		f = fopen(path, "re");
		if (f) {
			int pid;

			if (fscanf(f, "%d", &pid) == 1)
				guests[i] = pid;
			fclose(f);
		}
	}
	if (rc) {
		fprintf(stderr, "bench-qemu: guests did not boot (see %s/bench/qemu-guests/)\n",
			bdir);
		stop_guests();
		return -1;
	}
	return 0;
}

/* set-dedup {"run":true} on guest @i's control socket: 0 or -1 (said). */
static int release_ramfold(unsigned int i)
{
	static const char req[] = "{\"execute\":\"set-dedup\",\"arguments\":{\"run\":true}}\n";
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	char reply[512];
	size_t n = 0;
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);

	snprintf(a.sun_path, sizeof(a.sun_path), "%s/bench/qemu-guests/g%u.sock", bdir, i);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a)) ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req)) {
		fprintf(stderr, "bench-qemu: %s: %s\n", a.sun_path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	while (n + 1 < sizeof(reply) && read(fd, reply + n, 1) == 1 && reply[n] != '\n')
		n++;
	reply[n] = 0;
	close(fd);
	if (!strstr(reply, "\"return\"")) {
		fprintf(stderr, "bench-qemu: %s: set-dedup: %s\n", a.sun_path, reply);
		return -1;
	}
	return 0;
}

static double rf_cpu_sum(unsigned int n)
{
	double cpu = 0;

	for (unsigned int i = 0; i < n; i++)
		cpu += bench_threads_cpu(guests[i], "rf-");
	if (broker > 0) {
		char path[64];
		double c;

		snprintf(path, sizeof(path), "/proc/%d/stat", (int)broker);
		c = bench_stat_cpu(path);
		if (c > 0)
			cpu += c;
	}
	return cpu;
}

/* A private ramfoldd for the ramfold-domain run: 0, or -1 (said). */
static int broker_start(void)
{
	snprintf(broker_sock, sizeof(broker_sock), "%s/bench/qemu-guests/broker.sock", bdir);
	unlink(broker_sock);
	broker = broker_proc_start(broker_bin, broker_sock, NULL);
	if (broker > 0)
		return 0;
	broker = 0;
	return -1;
}

static void broker_stop(void)
{
	broker_proc_stop(&broker, SIGTERM, broker_sock);
}

/* One engine (k: 0 ramfold, 1 ksm-fastest, 2 ksm-default, 3 ramfold-domain)
 * on @n guests. @before: out, the guests' Pss at t0 (the saving's baseline). */
static int run_engine(unsigned int k, unsigned int n, double *before, struct result *r)
{
	struct conv_watch w;
	double t0, cpu0, best = 0, last_growth;
	pid_t ksmd = bench_ksmd_pid();
	char path[64];
	bool ksm = k == 1 || k == 2;

	if (k == 3 && broker_start())
		return -1;
	if (start_guests(n, !ksm, k == 3)) {
		broker_stop();
		return -1;
	}
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)ksmd);
	/* The same settle after READY for every engine, then its switch. */
	sleep(3);
	*before = pss_sum(n);
	if (!ksm) {
		printf("bench-qemu: ramfold's scanner threads at nice %d (read from /proc)\n",
		       bench_threads_nice(guests[0], "rf-scan/"));
		cpu0 = rf_cpu_sum(n);
		t0 = bench_now_s();
		for (unsigned int i = 0; i < n; i++)
			if (release_ramfold(i)) {
				stop_guests();
				broker_stop();
				return -1;
			}
	} else {
		bench_sched_ksm(&sched, true);
		write_knob("pages_to_scan", k == 1 ? "10000" : ksm_saved[1]);
		write_knob("sleep_millisecs", k == 1 ? "0" : ksm_saved[2]);
		if (write_knob("run", "1")) {
			fprintf(stderr, "bench-qemu: cannot switch KSM on: %s\n", strerror(errno));
			bench_sched_ksm(&sched, false);
			stop_guests();
			return -1;
		}
		t0 = bench_now_s();
		cpu0 = bench_stat_cpu(path);
	}
	last_growth = t0;
	conv_watch_init(&w, t0, ksm, 5, k == 2 ? opt_timeout / 2 : opt_timeout,
			(uint64_t)n * 2 * OS_KIB_D * 1024 / 2);
	for (;;) {
		double t, saved, cpu, p, rt;

		/* 20 ms for the first 2 s (ramfold's t95 fell within the
		 * first 0.1 s sample), then 0.1 s. */
		usleep(bench_now_s() - t0 < 2 ? 20000 : 100000);
		t = bench_now_s();
		p = pss_sum(n);
		rt = bench_now_s() - t;
		pss_read_s += rt;
		pss_reads++;
		if (rt > pss_read_max_s)
			pss_read_max_s = rt;
		if (p < 0) {
			snprintf(r->note, sizeof(r->note), "a QEMU ended during the run");
			break;
		}
		saved = *before - p;
		cpu = (ksm ? bench_stat_cpu(path) : rf_cpu_sum(n)) - cpu0;
		if (saved > best * 1.005 + 4096 * 16) {
			best = saved;
			last_growth = t;
		}
		if (conv_watch_sample(&w, r, t, saved, cpu, best > 0 && t - last_growth > 5))
			break;
	}
	result_finish(r);
	if (ksm)
		for (unsigned int i = 0; i < MAXG; i++)
			if (guests[i] > 0)
				r->metadata += bench_ksm_metadata(guests[i]);
	stop_guests();
	broker_stop();
	if (ksm) {
		write_knob("run", "0");
		bench_sched_ksm(&sched, false);
	}
	return 0;
}

/* Time and CPU to 95% of the engine's own final saving; none for a run
 * stopped by the timeout (its final saving was still growing). */
static void own95(const struct result *r, double *t95, double *c95)
{
	*t95 = *c95 = -1;
	if (!strncmp(r->note, "stopped", 7))
		return;
	for (unsigned int i = 0; i < r->n; i++)
		if (r->s[i].saved >= 0.95 * r->final_saved) {
			*t95 = r->s[i].t;
			*c95 = r->s[i].cpu;
			return;
		}
}

int main(int argc, char **argv)
{
	static const unsigned int layouts[2] = {3, 1};
	static const unsigned int order[NENG] = {2, 1, 0, 3};
	/* Issue 15's targets (docs/bench-qemu.md); the idle share is per QEMU. */
	static const struct bench_targets tg_ramfold = {
	    .sooner = 3, .cpu = 0.33, .idle = 0.02, .net = 1, .idle_of = "a core per QEMU"};
	static const struct bench_targets tg_domain = {.sooner = 3, .cpu = 0.33, .net = 1};
	struct bench_medians m[NENG];
	double t95[2][NENG][MAXR], c95[2][NENG][MAXR], idle[2][NENG][MAXR], saved[2][NENG][MAXR],
	    net[2][NENG][MAXR], maxload[2] = {0, 0};
	FILE *csv;
	char path[600];

	if (getenv("B"))
		bdir = getenv("B");
	for (int i = 1; i < argc; i++) {
		if (bench_rounds_opt(argc, argv, &i, &opt_rounds) ||
		    bench_sched_opt(argc, argv, &i, &sched))
			continue;
		if (!strcmp(argv[i], "--timeout") && i + 1 < argc)
			opt_timeout = atof(argv[++i]);
		else if (!strcmp(argv[i], "--out") && i + 1 < argc)
			opt_out = argv[++i];
		else if (!strcmp(argv[i], "--layout") && i + 1 < argc && !strcmp(argv[i + 1], "1"))
			opt_layouts = 1, i++;
		else if (!strcmp(argv[i], "--layout") && i + 1 < argc && !strcmp(argv[i + 1], "3"))
			opt_layouts = 2, i++;
		else if (!strcmp(argv[i], "--layout") && i + 1 < argc &&
			 !strcmp(argv[i + 1], "both"))
			opt_layouts = 3, i++;
		else {
			fprintf(stderr,
				"usage: qemu [--rounds N] [--sched ksmd|zero] [--timeout S] "
				"[--out DIR] [--layout 1|3|both]\n");
			return 2;
		}
	}
	if (read_knobs())
		return 2;
	snprintf(run_bin, sizeof(run_bin), "%s/ramfold-run", bdir);
	snprintf(broker_bin, sizeof(broker_bin), "%s/ramfoldd", bdir);
	have_run = access(run_bin, X_OK) == 0;
	if (!have_run)
		printf("bench-qemu: %s is not built: the ramfold rows are left empty\n", run_bin);
	atexit(put_back);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	signal(SIGHUP, on_signal);
	snprintf(path, sizeof(path), "%s/qemu_runs.csv", opt_out);
	csv = fopen(path, "w");
	if (csv)
		fprintf(csv, "guests,round,engine,loadavg,t95_s,cpu_to_t95_s,idle_cpu_share,"
			     "before_bytes,saved_bytes,net_bytes,note\n");
	bench_host_line("bench-qemu");
	bench_sched_init(&sched, "bench-qemu");
	printf("bench-qemu: THP %s",
	       "as QEMU sets it (MADV_HUGEPAGE on guest RAM; /sys/kernel/mm/transparent_hugepage/"
	       "enabled: ");
	fflush(stdout);
	if (system("cat /sys/kernel/mm/transparent_hugepage/enabled | tr -d '\\n'"))
		printf("?");
	printf("); KSM default knobs as found: %s pages / %s ms\n", ksm_saved[1], ksm_saved[2]);
	for (unsigned int l = 0; l < 2; l++)
		for (unsigned int k = 0; k < NENG; k++)
			for (unsigned int r = 0; r < MAXR; r++)
				t95[l][k][r] = c95[l][k][r] = idle[l][k][r] = saved[l][k][r] =
				    net[l][k][r] = -1;
	for (unsigned int r = 0; r < opt_rounds; r++) {
		for (unsigned int l = 0; l < 2; l++) {
			if (!(opt_layouts & (l == 0 ? 2u : 1u)))
				continue;
			struct result rs[NENG];
			double before = 0, ideal = 0;
			char prefix[64], title[160];

			results_init(rs);
			memset(&rs[3], 0, sizeof(rs[3]));
			rs[3].name = "ramfold-domain";
			for (unsigned int o = 0; o < NENG; o++) {
				/* Odd rounds in the reverse order: no engine always
				 * follows the same one (a host's page cache and free
				 * memory after a run are part of the next run's start). */
				unsigned int k = order[r % 2 ? NENG - 1 - o : o];

				/* Across processes: only with several QEMUs. */
				if (k == 3 && layouts[l] == 1)
					continue;
				if ((k == 0 || k == 3) && !have_run) {
					snprintf(rs[k].note, sizeof(rs[k].note),
						 "ramfold-run not built");
					continue;
				}
				bench_wait_quiet("bench-qemu", 180);
				rs[k].load = bench_loadavg();
				printf(
				    "bench-qemu: round %u, %u guest(s), %s: load average %.2f at "
				    "start\n",
				    r + 1, layouts[l], rs[k].name, rs[k].load);
				fflush(stdout);
				if (run_engine(k, layouts[l], &before, &rs[k]))
					continue;
				if (rs[k].load > maxload[l])
					maxload[l] = rs[k].load;
				own95(&rs[k], &t95[l][k][r], &c95[l][k][r]);
				idle[l][k][r] = rs[k].idle_cpu_share;
				saved[l][k][r] = rs[k].final_saved;
				net[l][k][r] = rs[k].final_saved - rs[k].metadata;
				if (rs[k].final_saved > ideal && k < DEDUP_ENGINES)
					ideal = rs[k].final_saved;
				if (csv)
					fprintf(csv,
						"%u,%u,%s,%.2f,%.3f,%.3f,%.4f,%.0f,%.0f,%.0f,%s\n",
						layouts[l], r + 1, rs[k].name, rs[k].load,
						t95[l][k][r], c95[l][k][r], idle[l][k][r], before,
						saved[l][k][r], net[l][k][r], rs[k].note);
			}
			snprintf(prefix, sizeof(prefix), "qemu%u_r%u", layouts[l], r + 1);
			snprintf(title, sizeof(title),
				 "%u QEMU guest(s) of 256 MiB, osimage: saved Pss (round %u)",
				 layouts[l], r + 1);
			if (ideal > 0)
				results_report(rs, (uint64_t)ideal, opt_out, prefix, title);
		}
	}
	if (csv)
		fclose(csv);
	for (unsigned int l = 0; l < 2; l++) {
		if (!(opt_layouts & (l == 0 ? 2u : 1u)))
			continue;
		static const char *const nm[NENG] = {"ramfold", "ksm-fastest", "ksm-default",
						     "ramfold-domain"};

		printf("\n%u guest(s), %u round(s): median (min..max); t95 and CPU to 95%% of "
		       "the engine's own final saving\n",
		       layouts[l], opt_rounds);
		printf("%-12s %-22s %-22s %-22s %-24s %-24s\n", "engine", "t95 (s)",
		       "CPU to t95 (s)", "CPU share after (%)", "saved Pss (MiB)",
		       "net of KSM slab (MiB)");
		for (unsigned int k = 0; k < (layouts[l] > 1 ? NENG : DEDUP_ENGINES); k++) {
			char a[128], b[128], c[128], d[128], e[128];

			bench_median_cell(a, sizeof(a), t95[l][k], opt_rounds, 1, "%.1f");
			bench_median_cell(b, sizeof(b), c95[l][k], opt_rounds, 1, "%.2f");
			bench_median_cell(c, sizeof(c), idle[l][k], opt_rounds, 100, "%.1f");
			bench_median_cell(d, sizeof(d), saved[l][k], opt_rounds, 1.0 / 1048576,
					  "%.1f");
			bench_median_cell(e, sizeof(e), net[l][k], opt_rounds, 1.0 / 1048576,
					  "%.1f");
			printf("%-12s %-22s %-22s %-22s %-24s %-24s\n", nm[k], a, b, c, d, e);
		}
		for (unsigned int k = 0; k < NENG; k++) {
			double per_qemu = bench_median(idle[l][k], opt_rounds);

			if (per_qemu > 0)
				per_qemu /= layouts[l];
			m[k] = (struct bench_medians){bench_median(t95[l][k], opt_rounds),
						      bench_median(c95[l][k], opt_rounds), per_qemu,
						      bench_median(saved[l][k], opt_rounds),
						      bench_median(net[l][k], opt_rounds)};
		}
		bench_verdict("ramfold", &m[0], &m[1], maxload[l], 0, &tg_ramfold);
		if (layouts[l] > 1) {
			char who[96];

			snprintf(who, sizeof(who),
				 "ramfold-domain (one domain across %u QEMU processes, broker "
				 "included)",
				 layouts[l]);
			bench_verdict(who, &m[3], &m[1], maxload[l], 0, &tg_domain);
		}
	}
	if (pss_reads)
		printf("Pss sampling: one reading of every guest's smaps_rollup took %.2f ms on "
		       "average, %.2f ms at most (%lu readings, 20 ms apart for 2 s, then 0.1 s)\n",
		       pss_read_s * 1000 / (double)pss_reads, pss_read_max_s * 1000, pss_reads);
	printf("results: %s/qemu_runs.csv, %s/qemu{3,1}_r*.{csv,svg}\n", opt_out, opt_out);
	return 0;
}
