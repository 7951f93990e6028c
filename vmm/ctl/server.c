/* SPDX-License-Identifier: MIT */
/*
 * The control socket server and command dispatcher. Clients are served from
 * the main loop with non-blocking sockets: input is buffered until a newline,
 * replies are written whole (a client that does not read its replies and
 * lets the socket buffer fill is disconnected rather than stalling the VMM).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/vmm.h"
#include "ctl/ctl.h"
#include "ctl/wire.h"

struct ctl_cmd {
	const char *name, *help;
	vmm_ctl_fn fn;
	void *arg;
};

static struct ctl_cmd cmds[VMM_CTL_MAX_CMDS];
static unsigned int nr_cmds;

#define MAX_CLIENTS 16

struct client {
	int fd;
	char *buf;
	size_t len;
	bool overflow; /* discarding a too-long line up to its newline */
};

static struct {
	int listen_fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct client c[MAX_CLIENTS];
} srv = {.listen_fd = -1};

int vmm_ctl_register(const char *name, const char *help, vmm_ctl_fn fn, void *arg)
{
	for (unsigned int i = 0; i < nr_cmds; i++)
		if (!strcmp(cmds[i].name, name))
			return -EEXIST;
	if (nr_cmds == VMM_CTL_MAX_CMDS)
		return -ENOSPC;
	cmds[nr_cmds++] = (struct ctl_cmd){name, help, fn, arg};
	return 0;
}

int vmm_ctl_fail(struct vmm_ctl_req *req, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(req->error, sizeof(req->error), fmt, ap);
	va_end(ap);
	if (!req->error_class)
		req->error_class = "GenericError";
	return -1;
}

struct vmm_vm *vmm_ctl_arg_vm(struct vmm_ctl_req *req)
{
	const char *name = json_get_str(req->args, "vm");
	struct vmm_vm *vm;

	if (!name) {
		vmm_ctl_fail(req, "%s: missing argument \"vm\" (a VM name)", req->command);
		return NULL;
	}
	vm = vmm_find_vm(req->vmm, name);
	if (!vm)
		vmm_ctl_fail(req, "%s: no VM named \"%s\"", req->command, name);
	return vm;
}

/* Serialise a parsed value again (for echoing "id"). */
static void write_value(struct jbuf *jb, const struct json *v)
{
	switch (v->type) {
	case JSON_NULL:
		jb_null(jb);
		break;
	case JSON_BOOL:
		jb_bool(jb, v->boolean);
		break;
	case JSON_NUMBER:
		jb_raw(jb, v->str);
		break;
	case JSON_STRING:
		jb_string(jb, v->str);
		break;
	case JSON_ARRAY:
	case JSON_OBJECT:
		v->type == JSON_ARRAY ? jb_arr_open(jb) : jb_obj_open(jb);
		for (const struct json *c = v->child; c; c = c->next) {
			if (v->type == JSON_OBJECT)
				jb_key(jb, c->key);
			write_value(jb, c);
		}
		v->type == JSON_ARRAY ? jb_arr_close(jb) : jb_obj_close(jb);
		break;
	}
}

void vmm_ctl_execute(struct vmm *vmm, const char *line, size_t len, struct jbuf *out)
{
	struct vmm_ctl_req req = {.vmm = vmm};
	struct jbuf ret, idb;
	const struct json *id, *args;
	const char *id_text = NULL;
	char err[160], desc[256];
	struct json *j;
	const char *cmd;

	jb_init(&ret);
	jb_init(&idb);
	j = json_parse(line, len, err, sizeof(err));
	if (!j) {
		snprintf(desc, sizeof(desc), "malformed JSON: %s", err);
		wire_error(out, "GenericError", desc, NULL);
		return;
	}
	id = json_get(j, "id");
	if (id) {
		write_value(&idb, id);
		id_text = jb_str(&idb);
	}
	if (j->type != JSON_OBJECT) {
		wire_error(out, "GenericError", "a request must be a JSON object", id_text);
		goto out;
	}
	cmd = json_get_str(j, "execute");
	if (!cmd) {
		wire_error(out, "GenericError", "missing \"execute\" (the command name)", id_text);
		goto out;
	}
	args = json_get(j, "arguments");
	if (args && args->type != JSON_OBJECT) {
		wire_error(out, "GenericError", "\"arguments\" must be an object", id_text);
		goto out;
	}
	for (unsigned int i = 0; i < nr_cmds; i++) {
		if (strcmp(cmds[i].name, cmd))
			continue;
		req.command = cmd;
		req.args = args;
		req.ret = &ret;
		if (cmds[i].fn(&req, cmds[i].arg)) {
			wire_error(out, req.error_class ? req.error_class : "GenericError",
				   req.error[0] ? req.error : "command failed", id_text);
		} else {
			wire_return(out, &ret, id_text);
		}
		goto out;
	}
	snprintf(desc, sizeof(desc), "unknown command \"%.64s\" (try \"help\")", cmd);
	wire_error(out, "CommandNotFound", desc, id_text);
out:
	jb_free(&ret);
	jb_free(&idb);
	json_free(j);
}

static int help_cmd(struct vmm_ctl_req *req, void *arg)
{
	(void)arg;
	jb_arr_open(req->ret);
	for (unsigned int i = 0; i < nr_cmds; i++) {
		jb_obj_open(req->ret);
		jb_kv_str(req->ret, "name", cmds[i].name);
		jb_kv_str(req->ret, "help", cmds[i].help ? cmds[i].help : "");
		jb_obj_close(req->ret);
	}
	jb_arr_close(req->ret);
	return 0;
}

int vmm_ctl_listen(struct vmm *vmm, const char *path)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct stat st;
	int fd;

	(void)vmm;
	vmm_ctl_register("help", "list the commands", help_cmd, NULL);
	if (strlen(path) >= sizeof(sa.sun_path)) {
		vmm_errorf("control socket path %s is longer than %zu bytes", path,
			   sizeof(sa.sun_path) - 1);
		return -1;
	}
	/* A stale socket from a crashed run is replaced; anything else is not. */
	if (lstat(path, &st) == 0) {
		if (!S_ISSOCK(st.st_mode)) {
			vmm_errorf("control socket %s: exists and is not a socket", path);
			return -1;
		}
		unlink(path);
	}
	strcpy(sa.sun_path, path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) || listen(fd, 8)) {
		vmm_errorf("control socket %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	srv.listen_fd = fd;
	snprintf(srv.path, sizeof(srv.path), "%s", path);
	for (int i = 0; i < MAX_CLIENTS; i++)
		srv.c[i].fd = -1;
	return 0;
}

int vmm_ctl_pollfds(struct pollfd *fds, int max)
{
	int n = 0;

	if (srv.listen_fd < 0)
		return 0;
	if (n < max)
		fds[n++] = (struct pollfd){.fd = srv.listen_fd, .events = POLLIN};
	for (int i = 0; i < MAX_CLIENTS && n < max; i++)
		if (srv.c[i].fd >= 0)
			fds[n++] = (struct pollfd){.fd = srv.c[i].fd, .events = POLLIN};
	return n;
}

static void drop_client(struct client *c)
{
	close(c->fd);
	free(c->buf);
	*c = (struct client){.fd = -1};
}

static void send_all(struct client *c, const char *s, size_t n)
{
	while (n) {
		ssize_t w = send(c->fd, s, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0 && errno == EAGAIN) {
			struct pollfd p = {.fd = c->fd, .events = POLLOUT};

			if (poll(&p, 1, 1000) == 1)
				continue;
		}
		if (w <= 0) {
			drop_client(c);
			return;
		}
		s += w;
		n -= (size_t)w;
	}
}

static void handle_line(struct vmm *vmm, struct client *c, const char *line, size_t len)
{
	struct jbuf out;

	while (len && (line[len - 1] == '\r' || line[len - 1] == ' '))
		len--;
	if (!len)
		return;
	jb_init(&out);
	vmm_ctl_execute(vmm, line, len, &out);
	if (jb_str(&out)) {
		send_all(c, jb_str(&out), out.len);
		if (c->fd >= 0)
			send_all(c, "\n", 1);
	}
	jb_free(&out);
}

static void read_client(struct vmm *vmm, struct client *c)
{
	char tmp[4096];
	ssize_t n = recv(c->fd, tmp, sizeof(tmp), 0);

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		drop_client(c);
		return;
	}
	for (ssize_t i = 0; i < n && c->fd >= 0; i++) {
		if (tmp[i] == '\n') {
			if (c->overflow) {
				struct jbuf out;
				char desc[96];

				jb_init(&out);
				snprintf(desc, sizeof(desc), "request longer than %d bytes",
					 VMM_CTL_LINE_MAX);
				wire_error(&out, "GenericError", desc, NULL);
				send_all(c, jb_str(&out), out.len);
				if (c->fd >= 0)
					send_all(c, "\n", 1);
				jb_free(&out);
				c->overflow = false;
			} else {
				handle_line(vmm, c, c->buf ? c->buf : "", c->len);
			}
			c->len = 0;
			continue;
		}
		if (c->overflow)
			continue;
		if (c->len + 1 >= VMM_CTL_LINE_MAX) {
			c->overflow = true;
			c->len = 0;
			continue;
		}
		if (!c->buf && !(c->buf = malloc(VMM_CTL_LINE_MAX))) {
			drop_client(c);
			return;
		}
		c->buf[c->len++] = tmp[i];
	}
}

void vmm_ctl_process(struct vmm *vmm)
{
	struct pollfd fds[MAX_CLIENTS + 1];
	int n = vmm_ctl_pollfds(fds, MAX_CLIENTS + 1);

	if (n == 0 || poll(fds, (nfds_t)n, 0) <= 0)
		return;
	for (int i = 0; i < MAX_CLIENTS; i++) {
		struct client *c = &srv.c[i];

		for (int k = 1; k < n && c->fd >= 0; k++)
			if (fds[k].fd == c->fd && (fds[k].revents & (POLLIN | POLLHUP | POLLERR)))
				read_client(vmm, c);
	}
	if (fds[0].revents & POLLIN) {
		int fd;

		while ((fd = accept4(srv.listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK)) >=
		       0) {
			int i;

			for (i = 0; i < MAX_CLIENTS && srv.c[i].fd >= 0; i++)
				;
			if (i == MAX_CLIENTS) {
				static const char busy[] = "{\"error\":{\"class\":\"GenericError\","
							   "\"desc\":\"too many clients\"}}\n";

				if (send(fd, busy, sizeof(busy) - 1, MSG_NOSIGNAL) < 0) {
					/* the client goes away either way */
				}
				close(fd);
				continue;
			}
			srv.c[i] = (struct client){.fd = fd};
		}
	}
}

void vmm_ctl_close(void)
{
	if (srv.listen_fd >= 0) {
		for (int i = 0; i < MAX_CLIENTS; i++)
			if (srv.c[i].fd >= 0)
				drop_client(&srv.c[i]);
		close(srv.listen_fd);
		unlink(srv.path);
		srv.listen_fd = -1;
	}
}
