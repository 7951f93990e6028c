/* SPDX-License-Identifier: MIT */
#include <ctype.h>
#include <stdbool.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/util.h"

int parse_u64(const char *s, uint64_t *out)
{
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

int parse_nice(const char *s, int *out)
{
	bool neg = s && *s == '-';
	uint64_t v;

	if (parse_u64(neg ? s + 1 : s, &v) || v > (neg ? 20u : 19u))
		return -EINVAL;
	*out = neg ? -(int)v : (int)v;
	return 0;
}

int parse_dedup_huge(const char *s, enum rf_dedup_huge *out)
{
	for (unsigned int m = RF_DEDUP_HUGE_SPLIT; s && m <= RF_DEDUP_HUGE_SPLIT_COLD; m++)
		if (!strcmp(s, rf_dedup_huge_name((enum rf_dedup_huge)m))) {
			*out = (enum rf_dedup_huge)m;
			return 0;
		}
	return -EINVAL;
}

int parse_size(const char *s, uint64_t *out)
{
	unsigned shift = 0;
	uint64_t v;
	char *end;

	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	v = strtoull(s, &end, 10);
	if (errno)
		return -EINVAL;
	switch (toupper((unsigned char)*end)) {
	case 0:
		break;
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end) {
		end++;
		if (strcasecmp(end, "") && strcasecmp(end, "b") && strcasecmp(end, "ib"))
			return -EINVAL;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -EINVAL;
	*out = v << shift;
	return 0;
}

const char *fmt_size(char *buf, size_t len, uint64_t b)
{
	if (b < 1024)
		snprintf(buf, len, "%lluB", (unsigned long long)b);
	else if (b < (10ull << 20))
		snprintf(buf, len, "%.1fK", b / 1024.0);
	else if (b < (10ull << 30))
		snprintf(buf, len, "%.1fM", b / 1048576.0);
	else
		snprintf(buf, len, "%.2fG", b / 1073741824.0);
	return buf;
}

uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool broker_answers(const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

int broker_ensure(const char *path, char *why, size_t len)
{
	char exe[4096], bin[4200];
	ssize_t n;
	pid_t pid;
	int st;

	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		snprintf(why, len, "%s: a socket path has at most 107 characters", path);
		return -ENAMETOOLONG;
	}
	if (broker_answers(path))
		return 0;
	/* ramfoldd beside this program (build tree, or both in bin/). */
	n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	exe[n > 0 ? n : 0] = 0;
	if (strrchr(exe, '/'))
		*strrchr(exe, '/') = 0;
	snprintf(bin, sizeof(bin), "%s/ramfoldd", exe);
	pid = fork();
	if (pid < 0) {
		snprintf(why, len, "fork: %s", strerror(errno));
		return -errno;
	}
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGTERM);
		execl(bin, bin, "--private", "--socket", path, (char *)NULL);
		execlp("ramfoldd", "ramfoldd", "--private", "--socket", path, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 250; i++) {
		if (broker_answers(path))
			return 0;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			snprintf(why, len, "ramfoldd (%s, or in PATH) did not start: exit %d", bin,
				 WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
			return -ENOENT;
		}
		usleep(20000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	snprintf(why, len, "ramfoldd did not answer on %s within 5 s", path);
	return -ETIMEDOUT;
}

int scan_thread_set_nice(const char *thread_name, int nice)
{
	/* PRIO_PROCESS with a thread id: Linux sets that one thread. */
	if (strncmp(thread_name, "rf-scan/", 8) ||
	    setpriority(PRIO_PROCESS, (id_t)syscall(SYS_gettid), nice) == 0)
		return 0;
	return -errno;
}
