/* SPDX-License-Identifier: MIT */
/*
 * The kernel's reclaim stack for the experiment's peer run (kernel_stack.h):
 * each setup journals the host's own values first, then changes them;
 * restoring walks the journal backwards. The journal is a few "key value"
 * lines, rewritten whole (a temporary file, fsync, rename) before every
 * change, so whatever kills the runner, the journal on disk covers every
 * change already made.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/swap.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host.h"
#include "kernel_stack.h"

#define KSM_DIR	  "/sys/kernel/mm/ksm/"
#define ZSWAP_DIR "/sys/module/zswap/parameters/"
#define CG2_ROOT  "/sys/fs/cgroup"
#define CG1_ROOT  "/sys/fs/cgroup/memory"

static int file_write(const char *path, const char *val)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC), err = 0;
	ssize_t n;

	if (fd < 0)
		return -errno;
	n = write(fd, val, strlen(val));
	if (n < 0)
		err = -errno;
	close(fd);
	return err;
}

static int file_write_u64(const char *path, uint64_t v)
{
	char b[32];

	snprintf(b, sizeof(b), "%llu", (unsigned long long)v);
	return file_write(path, b);
}

static void say(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t cap, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
}

/* ---- the journal ---- */

static const struct {
	const char *key;
	size_t off, len;
} fields[] = {
#define F(k, m)                                                                                    \
	{                                                                                          \
		k, offsetof(struct kstack, m), sizeof(((struct kstack *)0)->m)                     \
	}
    F("ksm_run", ksm_run),
    F("ksm_pages_to_scan", ksm_pages),
    F("ksm_sleep_millisecs", ksm_sleep),
    F("zswap_enabled", zswap_enabled),
    F("zswap_compressor", zswap_compressor),
    F("swap_file", swap_file),
    F("cgroup", cgroup),
#undef F
};
#define NFIELDS (sizeof(fields) / sizeof(fields[0]))

static char *field(struct kstack *ks, size_t i)
{
	return (char *)ks + fields[i].off;
}

void kstack_init(struct kstack *ks, const char *journal_path)
{
	memset(ks, 0, sizeof(*ks));
	snprintf(ks->journal, sizeof(ks->journal), "%s", journal_path);
}

static bool journal_empty(struct kstack *ks)
{
	for (size_t i = 0; i < NFIELDS; i++)
		if (*field(ks, i))
			return false;
	return true;
}

static int journal_write(struct kstack *ks)
{
	char tmp[640];
	FILE *f;
	int err = 0;

	snprintf(tmp, sizeof(tmp), "%s.tmp", ks->journal);
	f = fopen(tmp, "we");
	if (!f)
		return -errno;
	fprintf(f, "# overcommit-run: the host's state before the kernel-stack run; "
		   "overcommit-run --restore puts it back\n");
	for (size_t i = 0; i < NFIELDS; i++)
		if (*field(ks, i))
			fprintf(f, "%s %s\n", fields[i].key, field(ks, i));
	fprintf(f, "cgroup_version %d\n", ks->cgroup_version);
	if (fflush(f) || fsync(fileno(f)))
		err = -errno;
	if (fclose(f) && !err)
		err = -errno;
	if (!err && rename(tmp, ks->journal))
		err = -errno;
	return err;
}

static int journal_read(struct kstack *ks)
{
	char line[1024];
	FILE *f = fopen(ks->journal, "re");

	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		char *v = strchr(line, ' ');

		if (line[0] == '#' || !v)
			continue;
		*v++ = 0;
		v[strcspn(v, "\n")] = 0;
		if (!strcmp(line, "cgroup_version"))
			ks->cgroup_version = atoi(v);
		for (size_t i = 0; i < NFIELDS; i++)
			if (!strcmp(line, fields[i].key))
				snprintf(field(ks, i), fields[i].len, "%s", v);
	}
	fclose(f);
	return 0;
}

/* ---- setting up ---- */

int kstack_ksm_on(struct kstack *ks, unsigned int pages, unsigned int sleep_ms, char *why,
		  size_t cap)
{
	char old[3][32], v[32];
	int err;

	if (!bench_file_line(KSM_DIR "run", old[0], sizeof(old[0])) ||
	    !bench_file_line(KSM_DIR "pages_to_scan", old[1], sizeof(old[1])) ||
	    !bench_file_line(KSM_DIR "sleep_millisecs", old[2], sizeof(old[2]))) {
		say(why, cap, "KSM: not in this kernel (" KSM_DIR ")");
		return -ENOENT;
	}
	if (!*ks->ksm_run) {
		snprintf(ks->ksm_run, sizeof(ks->ksm_run), "%s", old[0]);
		snprintf(ks->ksm_pages, sizeof(ks->ksm_pages), "%s", old[1]);
		snprintf(ks->ksm_sleep, sizeof(ks->ksm_sleep), "%s", old[2]);
		if ((err = journal_write(ks))) {
			say(why, cap, "KSM: cannot write the journal %s: %s", ks->journal,
			    strerror(-err));
			return err;
		}
	}
	snprintf(v, sizeof(v), "%u", pages);
	err = file_write(KSM_DIR "pages_to_scan", v);
	snprintf(v, sizeof(v), "%u", sleep_ms);
	if (!err)
		err = file_write(KSM_DIR "sleep_millisecs", v);
	if (!err)
		err = file_write(KSM_DIR "run", "1");
	if (err)
		say(why, cap, "KSM: cannot start it: %s", strerror(-err));
	return err;
}

static int run_mkswap(const char *path)
{
	static const char *const paths[] = {"mkswap", "/usr/sbin/mkswap", "/sbin/mkswap"};
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int null = open("/dev/null", O_WRONLY);

		if (null >= 0)
			dup2(null, 1);
		for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++)
			execlp(paths[i], paths[i], "-q", path, (char *)NULL);
		_exit(127);
	}
	if (waitpid(pid, &status, 0) != pid)
		return -errno;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -EIO;
}

int kstack_swap_on(struct kstack *ks, const char *path, uint64_t bytes, char *why, size_t cap)
{
	int fd, err;

	if (*ks->swap_file) {
		say(why, cap, "swap: a swap file is already on (%s)", ks->swap_file);
		return -EBUSY;
	}
	if (strlen(path) >= sizeof(ks->swap_file)) {
		say(why, cap, "swap: the path %s is too long", path);
		return -ENAMETOOLONG;
	}
	snprintf(ks->swap_file, sizeof(ks->swap_file), "%s", path);
	if ((err = journal_write(ks))) {
		say(why, cap, "swap: cannot write the journal %s: %s", ks->journal, strerror(-err));
		return err;
	}
	unlink(path);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		err = -errno;
		say(why, cap, "swap: cannot create %s: %s", path, strerror(errno));
		return err;
	}
	err = posix_fallocate(fd, 0, (off_t)bytes);
	close(fd);
	if (err) {
		say(why, cap, "swap: cannot allocate %llu MiB for %s: %s",
		    (unsigned long long)(bytes >> 20), path, strerror(err));
		return -err;
	}
	if ((err = run_mkswap(path))) {
		say(why, cap, "swap: mkswap %s failed", path);
		return err;
	}
	if (swapon(path, 0)) {
		err = -errno;
		say(why, cap, "swap: swapon %s: %s", path, strerror(errno));
		return err;
	}
	return 0;
}

int kstack_zswap_on(struct kstack *ks, const char *compressor, char *why, size_t cap)
{
	char en[32], comp[32];
	int err, cerr;

	if (!bench_file_line(ZSWAP_DIR "enabled", en, sizeof(en)) ||
	    !bench_file_line(ZSWAP_DIR "compressor", comp, sizeof(comp))) {
		say(why, cap, "zswap: not in this kernel (" ZSWAP_DIR ")");
		return -ENOENT;
	}
	if (!*ks->zswap_enabled) {
		snprintf(ks->zswap_enabled, sizeof(ks->zswap_enabled), "%s", en);
		snprintf(ks->zswap_compressor, sizeof(ks->zswap_compressor), "%s", comp);
		if ((err = journal_write(ks))) {
			say(why, cap, "zswap: cannot write the journal %s: %s", ks->journal,
			    strerror(-err));
			return err;
		}
	}
	/* Read back: a kernel without the compressor may take the write and
	 * keep its own. */
	cerr = file_write(ZSWAP_DIR "compressor", compressor);
	if (!cerr &&
	    (!bench_file_line(ZSWAP_DIR "compressor", en, sizeof(en)) || strcmp(en, compressor)))
		cerr = -ENOENT;
	if ((err = file_write(ZSWAP_DIR "enabled", "Y"))) {
		say(why, cap, "zswap: cannot turn it on: %s", strerror(-err));
		return err;
	}
	if (cerr) {
		say(why, cap, "zswap: the kernel has no %s compressor, on with its %s", compressor,
		    comp);
		return -ENOENT;
	}
	return 0;
}

/* The v2 hierarchy when its memory controller is there for children, else v1's. */
static int cgroup_version(void)
{
	char l[512];

	if (bench_file_line(CG2_ROOT "/cgroup.subtree_control", l, sizeof(l)) &&
	    strstr(l, "memory"))
		return 2;
	if (!access(CG1_ROOT "/memory.limit_in_bytes", W_OK))
		return 1;
	return 0;
}

int kstack_cgroup_make(struct kstack *ks, const char *name, uint64_t limit, char *why, size_t cap)
{
	char p[700];
	int v = cgroup_version(), err;

	if (!v) {
		say(why, cap,
		    "cgroup: no memory controller (v2 subtree_control or v1 at " CG1_ROOT ")");
		return -ENOENT;
	}
	snprintf(ks->cgroup, sizeof(ks->cgroup), "%s/%s", v == 2 ? CG2_ROOT : CG1_ROOT, name);
	ks->cgroup_version = v;
	if ((err = journal_write(ks))) {
		say(why, cap, "cgroup: cannot write the journal %s: %s", ks->journal,
		    strerror(-err));
		return err;
	}
	if (mkdir(ks->cgroup, 0755) && errno != EEXIST) {
		err = -errno;
		say(why, cap, "cgroup: mkdir %s: %s", ks->cgroup, strerror(errno));
		return err;
	}
	if (v == 2) {
		/* high a little below max: the kernel reclaims (and throttles) before
		 * the hard limit would OOM-kill the VMM. */
		snprintf(p, sizeof(p), "%s/memory.high", ks->cgroup);
		err = file_write_u64(p, limit - limit / 16);
		snprintf(p, sizeof(p), "%s/memory.max", ks->cgroup);
		if (!err)
			err = file_write_u64(p, limit);
	} else {
		snprintf(p, sizeof(p), "%s/memory.limit_in_bytes", ks->cgroup);
		err = file_write_u64(p, limit);
	}
	if (err)
		say(why, cap, "cgroup: cannot limit %s: %s", ks->cgroup, strerror(-err));
	return err;
}

int kstack_cgroup_join(const struct kstack *ks)
{
	char p[700], pid[24];

	if (!*ks->cgroup)
		return 0;
	snprintf(p, sizeof(p), "%s/cgroup.procs", ks->cgroup);
	snprintf(pid, sizeof(pid), "%d", (int)getpid());
	return file_write(p, pid);
}

int64_t kstack_stall_us(const struct kstack *ks, const char **source)
{
	char p[700], l[256];
	const char *t;

	*source = "host";
	snprintf(p, sizeof(p), "/proc/pressure/memory");
	if (*ks->cgroup && ks->cgroup_version == 2) {
		snprintf(p, sizeof(p), "%s/memory.pressure", ks->cgroup);
		*source = "cgroup";
	}
	if (!bench_file_line(p, l, sizeof(l)) || !(t = strstr(l, "total=")))
		return -1;
	return strtoll(t + 6, NULL, 10);
}

uint64_t kstack_cgroup_usage(const struct kstack *ks)
{
	char p[700], l[64];

	if (!*ks->cgroup)
		return 0;
	snprintf(p, sizeof(p), "%s/%s", ks->cgroup,
		 ks->cgroup_version == 2 ? "memory.current" : "memory.usage_in_bytes");
	return bench_file_line(p, l, sizeof(l)) ? strtoull(l, NULL, 10) : 0;
}

uint64_t kstack_cgroup_oom_kills(const struct kstack *ks)
{
	char p[700], l[128];
	uint64_t n = 0;
	FILE *f;

	if (!*ks->cgroup)
		return 0;
	/* v1: memory.oom_control has "oom_kill N" (since 4.13); v2:
	 * memory.events has it too. */
	snprintf(p, sizeof(p), "%s/%s", ks->cgroup,
		 ks->cgroup_version == 2 ? "memory.events" : "memory.oom_control");
	f = fopen(p, "r");
	if (!f)
		return 0;
	while (fgets(l, sizeof(l), f))
		if (!strncmp(l, "oom_kill ", 9))
			n = strtoull(l + 9, NULL, 10);
	fclose(f);
	return n;
}

/* ---- putting back ---- */

static void note(FILE *log, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(FILE *log, const char *fmt, ...)
{
	va_list ap;

	if (!log)
		return;
	fprintf(log, "overcommit-run: restore: ");
	va_start(ap, fmt);
	vfprintf(log, fmt, ap);
	va_end(ap);
	fputc('\n', log);
	fflush(log);
}

/* Kill what is left in the run's cgroup (the VMM: nothing else joins it),
 * wait for it to empty, remove it. */
static int cgroup_remove(const char *dir, FILE *log)
{
	char p[700], l[32];

	snprintf(p, sizeof(p), "%s/cgroup.procs", dir);
	for (int i = 0; i < 200; i++) {
		FILE *f = fopen(p, "re");
		bool any = false;

		if (!f)
			break; /* gone, or never made */
		while (fgets(l, sizeof(l), f)) {
			any = true;
			kill((pid_t)atoi(l), SIGKILL);
		}
		fclose(f);
		if (!any && (!rmdir(dir) || errno == ENOENT)) {
			note(log, "cgroup %s removed", dir);
			return 0;
		}
		usleep(50000);
	}
	if (access(dir, F_OK))
		return 0;
	note(log, "cannot remove the cgroup %s: %s", dir, strerror(errno));
	return 1;
}

static int swap_remove(const char *path, FILE *log)
{
	int fails = 0;

	if (swapoff(path) && errno != EINVAL && errno != ENOENT) {
		note(log, "swapoff %s: %s", path, strerror(errno));
		fails++;
	}
	if (unlink(path) && errno != ENOENT) {
		note(log, "cannot remove %s: %s", path, strerror(errno));
		fails++;
	}
	if (!fails)
		note(log, "swap file %s off and removed", path);
	return fails;
}

static int zswap_put_back(const struct kstack *ks, FILE *log)
{
	int err = file_write(ZSWAP_DIR "compressor", ks->zswap_compressor);

	if (!err)
		err = file_write(ZSWAP_DIR "enabled", ks->zswap_enabled);
	if (err) {
		note(log, "zswap: %s", strerror(-err));
		return 1;
	}
	note(log, "zswap enabled=%s compressor=%s", ks->zswap_enabled, ks->zswap_compressor);
	return 0;
}

/* Unmerge every KSM page (run=2), then the host's settings and run state. */
static int ksm_put_back(const struct kstack *ks, FILE *log)
{
	char n[32];
	int err;

	file_write(KSM_DIR "run", "2");
	for (int i = 0; i < 100; i++) {
		if (!bench_file_line(KSM_DIR "pages_shared", n, sizeof(n)) || !atoll(n))
			break;
		usleep(100000);
	}
	err = file_write(KSM_DIR "pages_to_scan", ks->ksm_pages);
	if (!err)
		err = file_write(KSM_DIR "sleep_millisecs", ks->ksm_sleep);
	if (!err)
		err = file_write(KSM_DIR "run", ks->ksm_run);
	if (err) {
		note(log, "KSM: %s", strerror(-err));
		return 1;
	}
	note(log, "KSM run=%s pages_to_scan=%s sleep_millisecs=%s", ks->ksm_run, ks->ksm_pages,
	     ks->ksm_sleep);
	return 0;
}

int kstack_restore(struct kstack *ks, FILE *log)
{
	int fails = 0;

	if (journal_empty(ks)) {
		unlink(ks->journal);
		return 0;
	}
	if (*ks->cgroup)
		fails += cgroup_remove(ks->cgroup, log);
	if (*ks->swap_file)
		fails += swap_remove(ks->swap_file, log);
	if (*ks->zswap_enabled)
		fails += zswap_put_back(ks, log);
	if (*ks->ksm_run)
		fails += ksm_put_back(ks, log);
	if (!fails) {
		char journal[sizeof(ks->journal)];

		memcpy(journal, ks->journal, sizeof(journal));
		unlink(journal);
		kstack_init(ks, journal);
	}
	return fails;
}

int kstack_restore_journal(const char *path, FILE *log)
{
	struct kstack ks;

	kstack_init(&ks, path);
	if (journal_read(&ks))
		return 0;
	note(log, "%s was left by a run that did not finish: putting the host back", path);
	return kstack_restore(&ks, log);
}
