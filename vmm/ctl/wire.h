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

/* query-memory's figures from @st into the open object @jb: promised,
 * mapped, resident (-anon, -file), metadata, then one key per page state
 * (the library's names with '_' and ' ' as '-'). */
void wire_vm_stats(struct jbuf *jb, const struct rf_vm_stats *st);

/* An HTTP/1.0 reply on @fd: 200 with @body as Prometheus text, or 404 with
 * no body when @body is NULL. */
void wire_http_reply(int fd, const char *body);

#endif
