/* SPDX-License-Identifier: MIT */
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "ctl/wire.h"

void wire_error(struct jbuf *out, const char *cls, const char *desc, const char *id)
{
	jb_obj_open(out);
	jb_key(out, "error");
	jb_obj_open(out);
	jb_kv_str(out, "class", cls);
	jb_kv_str(out, "desc", desc);
	jb_obj_close(out);
	if (id) {
		jb_key(out, "id");
		jb_raw(out, id);
	}
	jb_obj_close(out);
}

void wire_return(struct jbuf *out, struct jbuf *ret, const char *id)
{
	jb_obj_open(out);
	jb_key(out, "return");
	jb_raw(out, ret->len ? jb_str(ret) : "{}");
	if (id) {
		jb_key(out, "id");
		jb_raw(out, id);
	}
	jb_obj_close(out);
}

void wire_vm_stats(struct jbuf *jb, const struct rf_vm_stats *st)
{
	jb_kv_u64(jb, "promised", st->promised_bytes);
	jb_kv_u64(jb, "mapped", st->mapped_bytes);
	jb_kv_u64(jb, "resident", st->resident_bytes);
	jb_kv_u64(jb, "resident-anon", st->resident_anon_bytes);
	jb_kv_u64(jb, "resident-file", st->resident_file_bytes);
	jb_kv_u64(jb, "metadata", st->metadata_bytes);
	for (int s = 0; s < RF_PAGE_NSTATES; s++) {
		char key[40];

		snprintf(key, sizeof(key), "%s", rf_page_state_name(s));
		for (char *p = key; *p; p++)
			if (*p == '_' || *p == ' ')
				*p = '-';
		jb_kv_u64(jb, key, st->state_bytes[s]);
	}
}

void wire_http_reply(int fd, const char *body)
{
	char head[256];

	if (!body) {
		static const char nf[] = "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n";

		(void)!send(fd, nf, strlen(nf), MSG_NOSIGNAL);
		return;
	}
	snprintf(head, sizeof(head),
		 "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\n"
		 "Content-Length: %zu\r\n\r\n",
		 strlen(body));
	(void)!send(fd, head, strlen(head), MSG_NOSIGNAL);
	(void)!send(fd, body, strlen(body), MSG_NOSIGNAL);
}
