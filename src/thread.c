/* SPDX-License-Identifier: MIT */
/*
 * The library's threads, as an operator sees them in ps, top and
 * /proc/PID/task: every thread it starts names itself "rf-KIND/WHO" on
 * start (the kernel keeps 15 characters): rf-fault/VM (the VM's userfaultfd
 * fault thread), rf-swap/VM (its swapper), rf-scan/N (dedup scanner N),
 * rf-policy (the policy tick); ksm/own_engine.c names its RCU worker rf-rcu.
 * Then the embedder's rf_engine_config.thread_start runs in it, with that
 * name, before the thread does any work.
 */
#include <pthread.h>
#include <stdio.h>

#include "internal.h"

void rf_thread_name(rf_engine *e, const char *kind, const char *who)
{
	char name[16];

	snprintf(name, sizeof(name), who && *who ? "rf-%s/%s" : "rf-%s", kind, who ? who : "");
	pthread_setname_np(pthread_self(), name);
	if (e && e->cfg.thread_start)
		e->cfg.thread_start(e->cfg.thread_arg, name);
}
