/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "vmm_proc.h"

static uint64_t ms_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

const char *vmm_bin_path(void)
{
	static char path[512];
	const char *b = getenv("B");

	snprintf(path, sizeof(path), "%s/ramfold-vmm", b && *b ? b : "build");
	return path;
}

const char *vmm_guest_path(void)
{
	static char path[512];
	const char *b = getenv("B");

	snprintf(path, sizeof(path), "%s/guest/ramfold-guest", b && *b ? b : "build");
	return path;
}

static void append(struct vmm_proc *p, const char *s, size_t n)
{
	if (p->out_len + n + 1 > p->out_cap) {
		size_t cap = p->out_cap ? p->out_cap : 65536;
		char *o;

		while (cap < p->out_len + n + 1)
			cap *= 2;
		o = realloc(p->out, cap);
		if (!o)
			return;
		p->out = o;
		p->out_cap = cap;
	}
	memcpy(p->out + p->out_len, s, n);
	p->out_len += n;
	p->out[p->out_len] = 0;
}

/* Read what is there; wait up to @ms for more. */
static void pump(struct vmm_proc *p, int ms)
{
	struct pollfd pf = {.fd = p->out_fd, .events = POLLIN};
	char buf[8192];
	ssize_t n;

	if (p->out_fd < 0)
		return;
	if (ms > 0 && poll(&pf, 1, ms) <= 0)
		return;
	while ((n = read(p->out_fd, buf, sizeof(buf))) > 0)
		append(p, buf, (size_t)n);
	if (n == 0) {
		close(p->out_fd);
		p->out_fd = -1;
	}
}

static bool reap(struct vmm_proc *p, bool block)
{
	int st;
	pid_t r;

	if (p->exited)
		return true;
	r = waitpid(p->pid, &st, block ? 0 : WNOHANG);
	if (r != p->pid)
		return false;
	p->exited = true;
	p->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
	return true;
}

static int spawn(struct vmm_proc *p, const char *const *args)
{
	const char *argv[128];
	int pipefd[2], n = 0;
	pid_t parent = getpid();

	p->out_fd = -1;
	argv[n++] = vmm_bin_path();
	for (int i = 0; args && args[i] && n < 127; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	if (pipe2(pipefd, O_CLOEXEC))
		return -errno;
	fflush(stdout);
	p->pid = fork();
	if (p->pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		return -errno;
	}
	if (p->pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(127);
		dup2(pipefd[1], STDOUT_FILENO);
		dup2(pipefd[1], STDERR_FILENO);
		execv(argv[0], (char *const *)argv);
		fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
		_exit(127);
	}
	close(pipefd[1]);
	p->out_fd = pipefd[0];
	fcntl(p->out_fd, F_SETFL, O_NONBLOCK);
	return 0;
}

int vmm_proc_spawn(struct vmm_proc *p, const char *const *args)
{
	memset(p, 0, sizeof(*p));
	return spawn(p, args);
}

int vmm_proc_start(struct vmm_proc *p, const char *const *args)
{
	const char *argv[128];
	char logdir[96];
	uint64_t end;
	int n = 0, rc;

	memset(p, 0, sizeof(*p));
	snprintf(p->dir, sizeof(p->dir), "/tmp/rf-vmm-test.XXXXXX");
	if (!mkdtemp(p->dir))
		return -errno;
	snprintf(p->ctl_path, sizeof(p->ctl_path), "%s/ctl.sock", p->dir);
	snprintf(logdir, sizeof(logdir), "%s", p->dir);
	argv[n++] = "--console";
	argv[n++] = "--no-table";
	argv[n++] = "--ctl";
	argv[n++] = p->ctl_path;
	argv[n++] = "--log-dir";
	argv[n++] = logdir;
	if (getenv("RF_TEST_HIDE")) {
		argv[n++] = "--hide-features";
		argv[n++] = getenv("RF_TEST_HIDE");
	}
	for (int i = 0; args && args[i] && n < 127; i++)
		argv[n++] = args[i];
	argv[n] = NULL;
	rc = spawn(p, argv);
	if (rc)
		return rc;
	end = ms_now() + 10000;
	while (ms_now() < end) {
		char reply[4096];

		if (vmm_proc_ctl(p, "{\"execute\":\"query-vms\"}", reply, sizeof(reply), 1000) == 0)
			return 0;
		pump(p, 20);
		if (reap(p, false)) {
			pump(p, 0);
			return -ESRCH;
		}
	}
	vmm_proc_stop(p);
	return -ETIMEDOUT;
}

int vmm_proc_wait_output(struct vmm_proc *p, const char *needle, int timeout_ms)
{
	uint64_t end = ms_now() + (uint64_t)timeout_ms;

	for (;;) {
		pump(p, 0);
		if (p->out && strstr(p->out, needle))
			return 0;
		if (p->out_fd < 0 && reap(p, false))
			return -ESRCH;
		if (ms_now() >= end)
			return -ETIMEDOUT;
		pump(p, 20);
	}
}

int vmm_proc_wait_ready(struct vmm_proc *p, const char *vm, int timeout_ms)
{
	char needle[64];

	snprintf(needle, sizeof(needle), "%s: READY", vm);
	return vmm_proc_wait_output(p, needle, timeout_ms);
}

int64_t vmm_proc_sum_after(const struct vmm_proc *p, size_t from, const char *line, const char *key)
{
	const char *s = p->out + from;
	int64_t sum = 0;

	while ((s = strstr(s, line))) {
		const char *c = strstr(s, key);
		const char *nl = strchr(s, '\n');

		if (c && (!nl || c < nl))
			sum += strtoll(c + strlen(key), NULL, 10);
		s++;
	}
	return sum;
}

unsigned int vmm_proc_count(struct vmm_proc *p, const char *needle)
{
	unsigned int n = 0;

	pump(p, 0);
	for (const char *s = p->out; s && (s = strstr(s, needle)); s += strlen(needle))
		n++;
	return n;
}

int vmm_proc_ctl(struct vmm_proc *p, const char *request, char *reply, size_t len, int timeout_ms)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	uint64_t end = ms_now() + (uint64_t)timeout_ms;
	size_t got = 0;
	int fd, rc = -ETIMEDOUT;

	if (!len)
		return -EINVAL;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", p->ctl_path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		rc = -errno;
		close(fd);
		return rc;
	}
	if (send(fd, request, strlen(request), MSG_NOSIGNAL) < 0 ||
	    send(fd, "\n", 1, MSG_NOSIGNAL) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	while (ms_now() < end && got + 1 < len) {
		struct pollfd pf = {.fd = fd, .events = POLLIN};
		ssize_t n;
		char *nl;

		pump(p, 0);
		if (poll(&pf, 1, 20) <= 0)
			continue;
		n = read(fd, reply + got, len - 1 - got);
		if (n <= 0) {
			rc = -ECONNRESET;
			break;
		}
		got += (size_t)n;
		reply[got] = 0;
		nl = strchr(reply, '\n');
		if (nl) {
			*nl = 0;
			rc = 0;
			break;
		}
	}
	close(fd);
	return rc;
}

int vmm_proc_wait_exit(struct vmm_proc *p, int timeout_ms)
{
	uint64_t end = ms_now() + (uint64_t)timeout_ms;

	for (;;) {
		pump(p, 10);
		if (reap(p, false)) {
			pump(p, 0);
			return p->status;
		}
		if (ms_now() >= end)
			return -ETIMEDOUT;
	}
}

static void remove_dir(const char *dir)
{
	DIR *d = opendir(dir);
	struct dirent *de;

	if (!d)
		return;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			unlinkat(dirfd(d), de->d_name, 0);
	closedir(d);
	rmdir(dir);
}

int vmm_proc_stop(struct vmm_proc *p)
{
	char reply[256];
	int rc;

	if (!p->pid)
		return -ESRCH;
	if (!reap(p, false) && p->ctl_path[0])
		vmm_proc_ctl(p, "{\"execute\":\"quit\"}", reply, sizeof(reply), 2000);
	rc = vmm_proc_wait_exit(p, 15000);
	if (rc == -ETIMEDOUT) {
		kill(p->pid, SIGTERM);
		rc = vmm_proc_wait_exit(p, 5000);
	}
	if (rc == -ETIMEDOUT) {
		kill(p->pid, SIGKILL);
		reap(p, true);
		rc = p->status;
	}
	pump(p, 0);
	if (p->out_fd >= 0) {
		close(p->out_fd);
		p->out_fd = -1;
	}
	if (p->dir[0])
		remove_dir(p->dir);
	return rc;
}

void vmm_proc_free(struct vmm_proc *p)
{
	if (p->out_fd >= 0)
		close(p->out_fd);
	free(p->out);
	p->out = NULL;
	p->out_len = p->out_cap = 0;
	p->out_fd = -1;
}

ssize_t vmm_proc_console_log(struct vmm_proc *p, const char *vm, char *buf, size_t len)
{
	char path[160];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s.log", p->dir, vm);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len ? len - 1 : 0);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = 0;
	return n;
}

int vmm_smaps_rollup(pid_t pid, struct vmm_smaps *s)
{
	char path[64], line[256];
	unsigned long long kb;
	FILE *f;

	memset(s, 0, sizeof(*s));
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Rss: %llu kB", &kb) == 1)
			s->rss = kb * 1024;
		else if (sscanf(line, "Pss: %llu kB", &kb) == 1)
			s->pss = kb * 1024;
		else if (sscanf(line, "Anonymous: %llu kB", &kb) == 1)
			s->anon = kb * 1024;
	}
	fclose(f);
	return 0;
}

int vmm_line_u64(const char *line, const char *key, uint64_t *out)
{
	size_t n = strlen(key);

	for (const char *s = line; (s = strstr(s, key)); s += n) {
		if ((s == line || s[-1] == ' ' || s[-1] == ',') && s[n] == '=') {
			char *end;

			*out = strtoull(s + n + 1, &end, 0);
			return end == s + n + 1 ? -ENOENT : 0;
		}
	}
	return -ENOENT;
}

int vmm_proc_find_line(struct vmm_proc *p, const char *needle, char *buf, size_t len)
{
	const char *s, *b, *e;

	pump(p, 0);
	if (!p->out || !(s = strstr(p->out, needle)))
		return -ENOENT;
	for (b = s; b > p->out && b[-1] != '\n'; b--)
		;
	e = strchr(s, '\n');
	if (!e)
		e = s + strlen(s);
	snprintf(buf, len, "%.*s", (int)(e - b), b);
	return 0;
}

void vmm_threads_named(pid_t pid, const char *prefix, bool (*fn)(pid_t pid, int tid, void *arg),
		       void *arg)
{
	char path[64];
	struct dirent *e;
	bool more = true;
	DIR *d;

	snprintf(path, sizeof(path), "/proc/%d/task", (int)pid);
	d = opendir(path);
	while (d && more && (e = readdir(d))) {
		char comm[32] = "";
		FILE *f;

		if (e->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/%d/task/%.16s/comm", (int)pid, e->d_name);
		f = fopen(path, "re");
		if (!f)
			continue; /* the thread ended */
		if (fgets(comm, sizeof(comm), f) && !strncmp(comm, prefix, strlen(prefix)))
			more = fn(pid, atoi(e->d_name), arg);
		fclose(f);
	}
	if (d)
		closedir(d);
}
