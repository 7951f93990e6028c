/* SPDX-License-Identifier: MIT */
/*
 * The Prometheus metrics server of the ledger module (--metrics-port): one
 * thread that accepts connections on 127.0.0.1:PORT and answers each
 * `GET /metrics` (or `GET /`) with rf_metrics_format(), anything else with
 * a 404; one request per connection, HTTP/1.0.
 *
 * Stopping: metrics_http_stop() writes an eventfd the thread polls next to
 * the listening socket, joins it, then closes both descriptors. The ledger
 * module calls it from its stop hook, before any VM is torn down.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/vmm.h"
#include "ctl/wire.h"
#include "modules/metrics_http.h"

static struct {
	int listen_fd, stop_fd;
	pthread_t thread;
	bool running;
} http = {.listen_fd = -1, .stop_fd = -1};

static void serve_one(struct vmm *vmm, int fd)
{
	char req[1024];
	long need;
	char *body = NULL;
	size_t cap = 64 * 1024;
	ssize_t n;
	bool ok;

	/* One request per connection; anything but GET /metrics is a 404. */
	n = recv(fd, req, sizeof(req) - 1, 0);
	if (n <= 0)
		return;
	req[n] = 0;
	ok = !strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET / ", 6);
	for (int tries = 0; ok && tries < 3; tries++) {
		free(body);
		body = malloc(cap);
		if (!body)
			return;
		need = rf_metrics_format(vmm->engine, body, cap);
		if (need < 0) {
			ok = false;
			break;
		}
		if ((size_t)need < cap)
			break;
		cap = (size_t)need + 4096;
	}
	wire_http_reply(fd, ok ? body : NULL);
	free(body);
}

static void *metrics_server(void *arg)
{
	struct vmm *vmm = arg;
	struct pollfd p[2] = {{.fd = http.listen_fd, .events = POLLIN},
			      {.fd = http.stop_fd, .events = POLLIN}};

	for (;;) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (p[0].revents & POLLIN) {
			int c = accept4(http.listen_fd, NULL, NULL, SOCK_CLOEXEC);

			if (c < 0)
				continue;
			serve_one(vmm, c);
			close(c);
		}
	}
	return NULL;
}

int metrics_http_start(struct vmm *vmm, int port)
{
	int err;

	err = wire_http_listen(port, 0);
	if (err < 0) {
		vmm_errorf("--metrics-port %d: %s", port, strerror(-err));
		return -1;
	}
	http.listen_fd = err;
	http.stop_fd = eventfd(0, EFD_CLOEXEC);
	if (http.stop_fd < 0) {
		vmm_errorf("--metrics-port: eventfd: %s", strerror(errno));
		return -1;
	}
	err = pthread_create(&http.thread, NULL, metrics_server, vmm);
	if (err) {
		vmm_errorf("--metrics-port: cannot start the server thread: %s", strerror(err));
		return -1;
	}
	http.running = true;
	return 0;
}

void metrics_http_stop(void)
{
	uint64_t one = 1;

	if (http.running) {
		(void)!write(http.stop_fd, &one, sizeof(one));
		pthread_join(http.thread, NULL);
		http.running = false;
	}
	if (http.listen_fd >= 0)
		close(http.listen_fd);
	if (http.stop_fd >= 0)
		close(http.stop_fd);
	http.listen_fd = http.stop_fd = -1;
}
