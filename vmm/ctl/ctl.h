/* SPDX-License-Identifier: MIT */
/*
 * The control socket: a Unix stream socket speaking JSON lines, QMP-like.
 *
 *   request:  {"execute": "query-memory", "arguments": {"vm": "vm0"}, "id": 7}
 *   reply:    {"return": {...}, "id": 7}
 *   error:    {"error": {"class": "GenericError", "desc": "..."}, "id": 7}
 *
 * One request per line, one reply line per request, in order; "arguments"
 * and "id" are optional (the id, any JSON value, is echoed). Malformed JSON,
 * a line longer than VMM_CTL_LINE_MAX, a missing "execute" or an unknown
 * command get an error reply and the connection stays usable. Several
 * clients may be connected; commands run one at a time on the main thread.
 *
 * Commands are registered by name (vmm_ctl_register) from a module's hooks
 * (core/module.h), normally its start hook, before the socket is served; the
 * built-in ones are query-vms, query-memory, audit and quit (commands.c,
 * registered by main before the options are parsed) and help (server.c,
 * registered last, when the socket is opened).
 */
#ifndef VMM_CTL_H
#define VMM_CTL_H

#include <poll.h>
#include <stdarg.h>

#include "core/json.h"

struct vmm;

#define VMM_CTL_LINE_MAX 65536
#define VMM_CTL_MAX_CMDS 64

struct vmm_ctl_req {
	struct vmm *vmm;
	const char *command;
	const struct json *args; /* the "arguments" object, or NULL */
	struct jbuf *ret;	 /* the handler writes its "return" value here */
	char error[512];	 /* set by vmm_ctl_fail() */
	const char *error_class;
};

/*
 * A command handler. Success: write one JSON value into @req->ret (nothing
 * written means {}) and return 0. Failure: return vmm_ctl_fail(req, ...).
 * Runs on the main thread; whatever it shares with vCPU threads it locks.
 */
typedef int (*vmm_ctl_fn)(struct vmm_ctl_req *req, void *arg);

/* Register @name (-EEXIST if taken, -ENOSPC if full). @help is one line. */
int vmm_ctl_register(const char *name, const char *help, vmm_ctl_fn fn, void *arg);

/* Set the error text (class GenericError) and return -1. */
int vmm_ctl_fail(struct vmm_ctl_req *req, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/*
 * Helper for commands that name a VM with "vm": the VM, or NULL after
 * vmm_ctl_fail() ("missing argument vm" / "no VM named x").
 */
struct vmm_vm *vmm_ctl_arg_vm(struct vmm_ctl_req *req);

/* Run one request line and write the reply (no newline) into @out. Used by
 * the server and by tests. */
void vmm_ctl_execute(struct vmm *vmm, const char *line, size_t len, struct jbuf *out);

/* Server, driven by the main loop. */
int vmm_ctl_listen(struct vmm *vmm, const char *path); /* 0 or -1 (message printed) */
/* Fill @fds with the descriptors to poll (POLLIN); returns how many. */
int vmm_ctl_pollfds(struct pollfd *fds, int max);
/* Handle whatever is readable on the control descriptors. */
void vmm_ctl_process(struct vmm *vmm);
void vmm_ctl_close(void); /* closes clients and unlinks the socket */

/* Client mode: ramfold-vmm ctl SOCKET CMD [key=value...|JSON]. Returns the
 * process exit status (0 for a "return" reply). */
int vmm_ctl_client(int argc, char **argv);

/* Built-in commands (commands.c). */
void vmm_ctl_register_builtins(void);

#endif
