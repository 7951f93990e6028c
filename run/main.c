/* SPDX-License-Identifier: MIT */
/*
 * ramfold-run [options] -- PROGRAM ARGS...: run an unmodified VMM with
 * ramfold in place of the kernel's KSM.
 *
 * Everything that can be checked before the program starts is checked here,
 * so that a mistake or a missing privilege is one line and exit status 2
 * instead of a VMM that runs without what the operator asked for: the
 * options, the directories they name, and the kernel features and
 * privileges, by the library's own checks on a trial engine (the same
 * engine, dedup mode and VM setup the preload will make). Then the options go
 * into the environment (run.h), libramfold-preload.so is prepended to
 * LD_PRELOAD, and this process execs the program: same pid, which is how
 * the preload knows the process it must act in (and the pid libvirt or a
 * pidfile sees is the VMM's own).
 *
 * A program killed with SIGKILL cannot remove its control socket or metrics
 * file, so before the exec a cleaner process is left behind (start_cleaner):
 * it waits for the end of a pipe whose write end only the program holds and
 * then removes the paths the program said (over that pipe) it made. It is double-forked so that it
 * is not the program's child (a VMM reaping its children must never see it).
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ramfold/ramfold.h>

#include "core/util.h"
#include "run.h"

static char last_msg[512];

static void capture_log(void *arg, enum rf_log_level level, const char *msg)
{
	(void)arg;
	if (level <= RF_LOG_WARN)
		snprintf(last_msg, sizeof(last_msg), "%s", msg);
}

static void __attribute__((noreturn, format(printf, 1, 2))) die(const char *fmt, ...)
{
	va_list ap;

	fputs("ramfold-run: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(2);
}

static void usage(FILE *f)
{
	fputs("usage: ramfold-run [options] -- PROGRAM [ARGS...]\n"
	      "Runs PROGRAM with ramfold adopting the memory it marks MADV_MERGEABLE\n"
	      "(or all large anonymous memory after prctl(PR_SET_MEMORY_MERGE)).\n"
	      "  --dedup zero|intra|domain=NAME  dedup mode (intra)\n"
	      "  --broker PATH                   with domain=NAME: share the domain with other\n"
	      "                                  processes through ramfoldd at PATH (default:\n"
	      "                                  $RAMFOLD_BROKER, else /run/ramfold/broker.sock\n"
	      "                                  if it exists)\n"
	      "  --broker-start PATH             the same, starting a private ramfoldd at PATH\n"
	      "                                  if none answers there (it ends with the\n"
	      "                                  program; for tests and demos)\n"
	      "  --dedup-paused                  scan nothing until the control socket's\n"
	      "                                  set-dedup releases the scanner (needs --ctl)\n"
	      "  --dedup-nice N                  the scanner threads at nice N, -20..19\n"
	      "                                  (default: the program's)\n"
	      "  --dedup-huge split|keep|split-cold\n"
	      "                                  transparent huge pages from the first pass:\n"
	      "                                  merged and so split (split, the default),\n"
	      "                                  kept whole (keep; all-zero ones still freed),\n"
	      "                                  or split only when cold (split-cold);\n"
	      "                                  set-dedup huge=MODE changes it later\n"
	      "  --swap-resident SIZE            keep at most SIZE of guest RAM resident\n"
	      "  --swap-dir DIR                  directory of the (unlinked) swap file\n"
	      "  --ctl PATH                      control socket (query-memory, query-dedup,\n"
	      "                                  set-dedup, set-swap, query-swap, help)\n"
	      "  --metrics-file PATH             Prometheus text, rewritten every second\n"
	      "  --metrics-port N                Prometheus text on 127.0.0.1:N/metrics\n"
	      "  --min-size SIZE                 smallest range adopted after\n"
	      "                                  PR_SET_MEMORY_MERGE (64M)\n"
	      "  --max-ram SIZE                  most guest RAM adopted (no bound)\n"
	      "  --log FILE|-                    log lines to FILE or stderr (-)\n"
	      "  -v, --verbose                   log every adopt, release and discard\n"
	      "  -h, --help\n",
	      f);
}

static uint64_t size_arg(const char *opt, const char *s, bool zero_ok)
{
	uint64_t v;

	if (parse_size(s, &v) || (!zero_ok && v == 0))
		die("%s %s: not a size (bytes, or with K, M, G, T)", opt, s);
	if (v & (RF_PAGE_SIZE - 1))
		die("%s %s: not a multiple of 4 KiB", opt, s);
	return v;
}

static void check_dir(const char *opt, const char *path)
{
	struct stat st;

	if (stat(path, &st))
		die("%s %s: %s", opt, path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		die("%s %s: not a directory", opt, path);
	if (access(path, W_OK | X_OK))
		die("%s %s: not writable: %s", opt, path, strerror(errno));
}

/* The directory part of @path must exist and be writable. */
static void check_parent(const char *opt, const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	if (strlen(path) >= sizeof(dir))
		die("%s: path too long", opt);
	strcpy(dir, path);
	slash = strrchr(dir, '/');
	if (!slash)
		strcpy(dir, ".");
	else if (slash == dir)
		dir[1] = 0;
	else
		*slash = 0;
	check_dir(opt, dir);
}

/* --dedup-nice in the trial: the first refusal, seen once the scanner
 * threads are joined (rf_engine_free). */
static int trial_nice, trial_nice_err;

static void trial_thread_start(void *arg, const char *name)
{
	int err = scan_thread_set_nice(name, trial_nice);

	(void)arg;
	if (err && !trial_nice_err)
		trial_nice_err = err;
}

/*
 * The library's own checks, on the setup the preload will make: an engine
 * with write-protect userfaultfd, the dedup engine in the chosen mode, a VM
 * attached to it (kernel-mode userfaultfd, pagemap), with --dedup-nice the
 * scanner's nice and, with a swap target, the VM's swap pager over a page
 * of RAM.
 */
static void trial(const struct rf_run_opts *o)
{
	struct rf_engine_config ec;
	struct rf_dedup_config dc;
	struct rf_vm_config vc;
	rf_engine *e = NULL;
	rf_vm *vm = NULL;
	void *hva;
	int err;

	rf_engine_config_init(&ec);
	ec.log = capture_log;
	ec.flags = RF_ENGINE_REQUIRE_UFFD | RF_ENGINE_REQUIRE_UFFD_WP;
	if (o->dedup_nice_set) {
		trial_nice = o->dedup_nice;
		ec.thread_start = trial_thread_start;
	}
	err = rf_engine_new(&ec, &e);
	if (err)
		die("cannot start ramfold: %s", last_msg[0] ? last_msg : strerror(-err));
	rf_dedup_config_init(&dc);
	dc.mode = o->dedup;
	dc.huge = o->huge;
	last_msg[0] = 0;
	err = rf_dedup_start(e, &dc);
	if (err)
		goto fail;
	/* The library starts with huge pages split when it cannot do the mode
	 * asked (logged, start succeeds): asked again, it says so. */
	if (o->huge != RF_DEDUP_HUGE_SPLIT && (err = rf_dedup_set_huge(e, o->huge))) {
		char msg[sizeof(last_msg)];

		snprintf(msg, sizeof(msg), "%s", last_msg[0] ? last_msg : strerror(-err));
		rf_engine_free(e);
		die("--dedup-huge %s: refused here (%s); only split is possible",
		    rf_dedup_huge_name(o->huge), msg);
	}
	rf_vm_config_init(&vc);
	vc.ram_bytes = 2u << 20;
	vc.domain = o->domain;
	err = rf_vm_new(e, "ramfold-run-trial", &vc, &vm);
	if (!err)
		err = rf_dedup_add_vm(vm);
	if (!err && o->swap_resident) {
		struct rf_swap_config sc;

		rf_swap_config_init(&sc);
		sc.dir = o->swap_dir;
		err = rf_engine_set_swap(e, &sc);
		if (!err)
			err = rf_vm_map_ram(vm, 0, RF_PAGE_SIZE, &hva);
		if (!err)
			err = rf_vm_set_swap_target(vm, o->swap_resident);
	}
	if (!err) {
		rf_engine_free(e);
		if (trial_nice_err)
			die("--dedup-nice %d: %s (a nice below the program's needs CAP_SYS_NICE)",
			    o->dedup_nice, strerror(-trial_nice_err));
		return;
	}
fail:
	/* Copy before freeing: the engine's teardown may log too. */
	{
		char msg[sizeof(last_msg)];

		snprintf(msg, sizeof(msg), "%s", last_msg[0] ? last_msg : strerror(-err));
		rf_engine_free(e);
		die("cannot start ramfold: %s", msg);
	}
}

/* libramfold-preload.so next to this binary (build tree) or in
 * ../lib/ramfold/ (installed), as an absolute path. */
static void find_preload(char *out, size_t len)
{
	static const char *const rel[] = {"libramfold-preload.so",
					  "../lib/ramfold/libramfold-preload.so"};
	char exe[PATH_MAX], cand[PATH_MAX + 64];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	char *slash;

	if (n <= 0)
		die("cannot find my own path (/proc/self/exe): %s", strerror(errno));
	exe[n] = 0;
	slash = strrchr(exe, '/');
	*slash = 0;
	for (size_t i = 0; i < sizeof(rel) / sizeof(rel[0]); i++) {
		snprintf(cand, sizeof(cand), "%s/%s", exe, rel[i]);
		if (!access(cand, R_OK) && realpath(cand, out) && strlen(out) < len)
			return;
	}
	die("libramfold-preload.so not found in %s or %s/../lib/ramfold", exe, exe);
}

static void set_env(const char *name, const char *value)
{
	if (value && setenv(name, value, 1))
		die("setenv %s: %s", name, strerror(errno));
}

static void set_env_u64(const char *name, uint64_t v)
{
	char buf[32];

	snprintf(buf, sizeof(buf), "%" PRIu64, v);
	set_env(name, buf);
}

/*
 * The cleaner: reads its pipe until every writer is gone (the program ended,
 * however), then unlinks the socket and the metrics file if the program left
 * them. Signals meant for the program's process group (^C, a TERM to the
 * group) must not end it first. Returns the write end for the program.
 */
static int start_cleaner(const struct rf_run_opts *o)
{
	int p[2], st;
	pid_t a;

	if (!o->ctl && !o->metrics_file)
		return -1;
	if (pipe(p))
		die("cleaner: pipe: %s", strerror(errno));
	a = fork();
	if (a < 0)
		die("cleaner: fork: %s", strerror(errno));
	if (a == 0) {
		bool made_ctl = false, made_metrics = false;
		char c;

		if (fork() != 0)
			_exit(0);
		close(p[1]);
		setsid();
		signal(SIGINT, SIG_IGN);
		signal(SIGTERM, SIG_IGN);
		signal(SIGHUP, SIG_IGN);
		signal(SIGQUIT, SIG_IGN);
		prctl(PR_SET_NAME, "ramfold-clean");
		for (int fd = 0; fd < 3; fd++) {
			int n = open("/dev/null", O_RDWR);

			if (n >= 0 && n != fd) {
				dup2(n, fd);
				close(n);
			}
		}
		for (;;) {
			ssize_t r = read(p[0], &c, 1);

			if (r == 0 || (r < 0 && errno != EINTR))
				break;
			if (r == 1 && c == RR_MADE_CTL)
				made_ctl = true;
			if (r == 1 && c == RR_MADE_METRICS)
				made_metrics = true;
		}
		/* Only what the program made: a socket path another process
		 * holds (the program's bind failed) is not ours to remove. */
		if (made_ctl)
			unlink(o->ctl);
		if (made_metrics)
			unlink(o->metrics_file);
		_exit(0);
	}
	close(p[0]);
	while (waitpid(a, &st, 0) < 0 && errno == EINTR)
		;
	return p[1];
}

int main(int argc, char **argv)
{
	enum {
		O_DEDUP = 256,
		O_SWAP_RES,
		O_SWAP_DIR,
		O_CTL,
		O_MFILE,
		O_MPORT,
		O_MIN,
		O_MAX,
		O_LOG,
		O_PAUSED,
		O_BROKER,
		O_BROKER_START,
		O_NICE,
		O_HUGE
	};
	static const struct option lo[] = {
	    {"dedup", required_argument, NULL, O_DEDUP},
	    {"dedup-paused", no_argument, NULL, O_PAUSED},
	    {"dedup-nice", required_argument, NULL, O_NICE},
	    {"dedup-huge", required_argument, NULL, O_HUGE},
	    {"broker", required_argument, NULL, O_BROKER},
	    {"broker-start", required_argument, NULL, O_BROKER_START},
	    {"swap-resident", required_argument, NULL, O_SWAP_RES},
	    {"swap-dir", required_argument, NULL, O_SWAP_DIR},
	    {"ctl", required_argument, NULL, O_CTL},
	    {"metrics-file", required_argument, NULL, O_MFILE},
	    {"metrics-port", required_argument, NULL, O_MPORT},
	    {"min-size", required_argument, NULL, O_MIN},
	    {"max-ram", required_argument, NULL, O_MAX},
	    {"log", required_argument, NULL, O_LOG},
	    {"verbose", no_argument, NULL, 'v'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	char preload[PATH_MAX], *ld;
	int cleaner;
	struct rf_run_opts o;
	bool broker_start = false;
	uint64_t port;
	int c;

	rf_run_opts_init(&o);
	opterr = 0;
	/* '+': stop at the program's name even without "--". */
	while ((c = getopt_long(argc, argv, "+vh", lo, NULL)) != -1) {
		switch (c) {
		case O_DEDUP:
			if (rf_run_parse_dedup(&o, optarg))
				die("--dedup %s: expected zero, intra or domain=NAME", optarg);
			break;
		case O_PAUSED:
			o.dedup_paused = true;
			break;
		case O_NICE:
			if (parse_nice(optarg, &o.dedup_nice))
				die("--dedup-nice %s: expected a nice value from -20 to 19",
				    optarg);
			o.dedup_nice_set = true;
			break;
		case O_HUGE:
			if (parse_dedup_huge(optarg, &o.huge))
				die("--dedup-huge %s: expected " DEDUP_HUGE_NAMES, optarg);
			break;
		case O_BROKER:
			o.broker = optarg;
			break;
		case O_BROKER_START:
			o.broker = optarg;
			broker_start = true;
			break;
		case O_SWAP_RES:
			o.swap_resident = size_arg("--swap-resident", optarg, false);
			break;
		case O_SWAP_DIR:
			o.swap_dir = optarg;
			break;
		case O_CTL:
			o.ctl = optarg;
			break;
		case O_MFILE:
			o.metrics_file = optarg;
			break;
		case O_MPORT:
			if (parse_u64(optarg, &port) || port == 0 || port > 65535)
				die("--metrics-port %s: expected a port number 1..65535", optarg);
			o.metrics_port = (int)port;
			break;
		case O_MIN:
			o.min_size = size_arg("--min-size", optarg, false);
			break;
		case O_MAX:
			o.max_ram = size_arg("--max-ram", optarg, false);
			break;
		case O_LOG:
			o.log = optarg;
			break;
		case 'v':
			o.verbose = true;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			if (optopt && optopt < 256)
				die("unknown option -%c (try --help)", optopt);
			die("unknown or incomplete option %s (try --help)", argv[optind - 1]);
		}
	}
	if (optind >= argc)
		die("no program to run (ramfold-run [options] -- PROGRAM ARGS...)");
	if (o.swap_dir && !o.swap_resident)
		die("--swap-dir needs --swap-resident");
	if (o.swap_dir)
		check_dir("--swap-dir", o.swap_dir);
	if (o.broker && o.dedup != RF_DEDUP_DOMAINS)
		die("--broker and --broker-start need --dedup domain=NAME (the broker shares a "
		    "domain across "
		    "processes)");
	if (o.broker && strlen(o.broker) >= 108)
		die("--broker %s: a socket path has at most 107 characters", o.broker);
	if (broker_start) {
		char why[300];

		if (broker_ensure(o.broker, why, sizeof(why)) != 0)
			die("--broker-start %s: %s", o.broker, why);
	} else if (o.broker && access(o.broker, F_OK) != 0)
		fprintf(stderr,
			"ramfold-run: --broker %s: %s; the program starts, and shares across "
			"processes once the broker is there\n",
			o.broker, strerror(errno));
	if (o.dedup_paused && !o.ctl)
		die("--dedup-paused needs --ctl PATH (only set-dedup there releases the scanner)");
	if (o.ctl) {
		check_parent("--ctl", o.ctl);
		if (strlen(o.ctl) >= 108)
			die("--ctl %s: a socket path has at most 107 characters", o.ctl);
	}
	if (o.metrics_file)
		check_parent("--metrics-file", o.metrics_file);
	if (strcmp(o.log, "-")) {
		int fd = open(o.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);

		if (fd < 0)
			die("--log %s: %s", o.log, strerror(errno));
		close(fd);
	}
	trial(&o);
	find_preload(preload, sizeof(preload));

	cleaner = start_cleaner(&o);
	if (cleaner >= 0)
		set_env_u64(RF_RUN_ENV_CLEANER_FD, (uint64_t)cleaner);
	set_env_u64(RF_RUN_ENV_PID, (uint64_t)getpid());
	set_env(RF_RUN_ENV_PRELOAD, preload);
	set_env(RF_RUN_ENV_DEDUP, o.dedup == RF_DEDUP_ZERO ? "zero" : "intra");
	if (o.domain) {
		char d[300];

		snprintf(d, sizeof(d), "domain=%s", o.domain);
		set_env(RF_RUN_ENV_DEDUP, d);
	}
	/* Read by the library itself (rf_dedup_config.broker unset), so that
	 * the program's children that link it share through it too. */
	if (o.broker)
		setenv("RAMFOLD_BROKER", o.broker, 1);
	if (o.swap_resident)
		set_env_u64(RF_RUN_ENV_SWAP_RESIDENT, o.swap_resident);
	set_env(RF_RUN_ENV_SWAP_DIR, o.swap_dir);
	set_env(RF_RUN_ENV_CTL, o.ctl);
	set_env(RF_RUN_ENV_METRICS_FILE, o.metrics_file);
	if (o.metrics_port)
		set_env_u64(RF_RUN_ENV_METRICS_PORT, (uint64_t)o.metrics_port);
	set_env_u64(RF_RUN_ENV_MIN_SIZE, o.min_size);
	if (o.max_ram)
		set_env_u64(RF_RUN_ENV_MAX_RAM, o.max_ram);
	set_env(RF_RUN_ENV_LOG, o.log);
	if (o.verbose)
		set_env(RF_RUN_ENV_VERBOSE, "1");
	if (o.dedup_paused)
		set_env(RF_RUN_ENV_DEDUP_PAUSED, "1");
	if (o.dedup_nice_set) {
		char n[16];

		snprintf(n, sizeof(n), "%d", o.dedup_nice);
		set_env(RF_RUN_ENV_DEDUP_NICE, n);
	}
	if (o.huge != RF_DEDUP_HUGE_SPLIT)
		set_env(RF_RUN_ENV_DEDUP_HUGE, rf_dedup_huge_name(o.huge));
	/* Prepended: our interposers must come before any other preload's. */
	ld = getenv("LD_PRELOAD");
	if (ld && *ld) {
		char *v = malloc(strlen(preload) + strlen(ld) + 2);

		if (!v)
			die("out of memory");
		sprintf(v, "%s:%s", preload, ld);
		set_env("LD_PRELOAD", v);
	} else {
		set_env("LD_PRELOAD", preload);
	}
	execvp(argv[optind], argv + optind);
	fprintf(stderr, "ramfold-run: %s: %s\n", argv[optind], strerror(errno));
	return errno == ENOENT ? 127 : 126;
}
