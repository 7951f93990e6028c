/* SPDX-License-Identifier: MIT */
/*
 * A ramfoldd of a test's or benchmark's own: started as a child that dies
 * with the caller (PR_SET_PDEATHSIG), on a socket path of the caller's
 * choosing, and waited for until it accepts connections.
 */
#ifndef BROKER_PROC_H
#define BROKER_PROC_H

#include <sys/types.h>

/* `@bin --private --socket @sock`, or `--domains @conf` instead of
 * --private when @conf is not NULL. Its pid once @sock accepts (within
 * 5 s), else -1 (the child killed, the reason on stderr). */
pid_t broker_proc_start(const char *bin, const char *sock, const char *conf);
/* Whether something accepts connections on @sock. */
int broker_proc_answers(const char *sock);
/* Send @sig to *@pid (if > 0), reap it, set *@pid to 0, unlink @sock. */
void broker_proc_stop(pid_t *pid, int sig, const char *sock);

#endif
