/* SPDX-License-Identifier: MIT */
#include <signal.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "broker_proc.h"

int broker_proc_answers(const char *sock)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0), ok;

	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	ok = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0;
	if (fd >= 0)
		close(fd);
	return ok;
}

pid_t broker_proc_start(const char *bin, const char *sock, const char *conf)
{
	pid_t pid = fork();

	if (pid < 0)
		return -1;
	if (pid == 0) {
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (conf)
			execl(bin, bin, "--socket", sock, "--domains", conf, (char *)NULL);
		else
			execl(bin, bin, "--private", "--socket", sock, (char *)NULL);
		_exit(127);
	}
	for (int i = 0; i < 250; i++) {
		if (broker_proc_answers(sock))
			return pid;
		if (waitpid(pid, NULL, WNOHANG) == pid)
			break;
		usleep(20000);
	}
	fprintf(stderr, "%s did not listen on %s\n", bin, sock);
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
	return -1;
}

void broker_proc_stop(pid_t *pid, int sig, const char *sock)
{
	if (*pid > 0) {
		kill(*pid, sig);
		waitpid(*pid, NULL, 0);
	}
	*pid = 0;
	unlink(sock);
}
