/* SPDX-License-Identifier: MIT */
/*
 * What ramfold-vmm's control socket and metrics server and ramfold-run's
 * preload (run/service.c) both put on the wire, in one place so that the two
 * dialects cannot drift apart. Needs only the JSON writer and the public API
 * (never core/vmm.h): the preload compiles it too, as position-independent
 * code.
 */
#ifndef VMM_CTL_WIRE_H
#define VMM_CTL_WIRE_H

#include <ramfold/ramfold.h>

#include "core/json.h"

/* {"error":{"class":CLS,"desc":DESC},"id":ID}; @id is JSON text or NULL. */
void wire_error(struct jbuf *out, const char *cls, const char *desc, const char *id);
/* {"return": @ret (empty: {}), "id": @id if any}: a command's answer. */
void wire_return(struct jbuf *out, struct jbuf *ret, const char *id);

/*
 * A command of a control socket served with wire_execute: fill @ret (one
 * JSON value; nothing written means {}) and return 0, or write a message
 * naming the cause into @err and return -1. @args is the request's
 * "arguments" object, or NULL.
 */
struct wire_cmd {
	const char *name, *help;
	int (*fn)(const struct json *args, struct jbuf *ret, char *err, size_t errlen);
};

/*
 * One request line of the JSON dialect: parse it, run the command of @cmds
 * it names ("help" lists @cmds and is always there), and write the answer
 * or the error, with the request's "id" if it had one, into @out. For the
 * servers that keep a fixed table (ramfold-run's, ramfoldd's); ramfold-vmm's
 * has a registry of its own (ctl/server.c).
 */
void wire_execute(const char *line, size_t len, const struct wire_cmd *cmds, size_t ncmds,
		  struct jbuf *out);

/* query-memory's figures from @st into the open object @jb: promised,
 * mapped, resident (-anon, -file), metadata, then one key per page state
 * (the library's names with '_' and ' ' as '-'). */
void wire_vm_stats(struct jbuf *jb, const struct rf_vm_stats *st);

/* query-dedup's figures from @st into the open object @jb: converged, the
 * page and merge counts, cpu-ns, the broker's, then the huge-page mode
 * ("huge-mode", rf_dedup_huge_name) and its counters. @measured: also
 * vmas and saved-bytes, which rf_dedup_counters does not measure. */
void wire_dedup_stats(struct jbuf *jb, const struct rf_dedup_stats *st, bool measured);

/* query-swap's figures of one VM (rf_vm_swap_stats), the same in ramfold-vmm
 * and ramfold-run: store sizes, counts, fault latency, the VM's fault stall
 * and the working-set sampling; into an open object. */
void wire_swap_stats(struct jbuf *jb, const struct rf_swap_stats *st);

/*
 * A listening unix socket at @path (@type: SOCK_STREAM or SOCK_SEQPACKET;
 * @flags: SOCK_NONBLOCK or 0; @mode: chmod of the socket file, 0 = as
 * created). A stale socket (nobody accepts) is replaced; a live one is
 * another process's and left alone: -EADDRINUSE. The fd, or -errno.
 */
int wire_unix_listen(const char *path, int type, int flags, unsigned int mode);
/* A listening TCP socket on 127.0.0.1:@port (@flags: SOCK_NONBLOCK or 0),
 * for a metrics server. The fd, or -errno. */
int wire_http_listen(int port, int flags);

/* An HTTP/1.0 reply on @fd: 200 with @body as Prometheus text, or 404 with
 * no body when @body is NULL. */
void wire_http_reply(int fd, const char *body);

#endif
