/* SPDX-License-Identifier: MIT */
/*
 * qmp: a minimal QMP client for the QEMU tests and benchmark, so that they
 * need neither python nor socat.
 *
 *   qmp SOCKET COMMAND [JSON-ARGUMENTS]
 *
 * Connects to QEMU's QMP socket, reads the greeting, negotiates
 * capabilities, sends {"execute":COMMAND,"arguments":JSON-ARGUMENTS} and
 * prints the reply line (asynchronous events QEMU sends in between are
 * skipped). Exit status: 0 for a "return", 1 for an "error" reply or a
 * broken connection, 2 for bad usage.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#define TIMEOUT_MS 10000

static char buf[1 << 16];
static size_t have;

/* One line from @fd (without the newline) into @line; -1 on EOF, error or
 * timeout, with the cause on stderr. */
static int read_line(int fd, char *line, size_t cap)
{
	for (;;) {
		char *nl = memchr(buf, '\n', have);
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (nl) {
			size_t len = (size_t)(nl - buf);

			if (len >= cap)
				len = cap - 1;
			memcpy(line, buf, len);
			line[len] = 0;
			have -= (size_t)(nl + 1 - buf);
			memmove(buf, nl + 1, have);
			return 0;
		}
		if (have == sizeof(buf)) {
			fprintf(stderr, "qmp: reply line over %zu bytes\n", sizeof(buf));
			return -1;
		}
		if (poll(&p, 1, TIMEOUT_MS) != 1) {
			fprintf(stderr, "qmp: no reply within %d ms\n", TIMEOUT_MS);
			return -1;
		}
		n = read(fd, buf + have, sizeof(buf) - have);
		if (n <= 0) {
			fprintf(stderr, "qmp: connection closed: %s\n",
				n ? strerror(errno) : "EOF");
			return -1;
		}
		have += (size_t)n;
	}
}

static int send_str(int fd, const char *s)
{
	size_t len = strlen(s);

	while (len) {
		ssize_t n = write(fd, s, len);

		if (n < 0) {
			fprintf(stderr, "qmp: write: %s\n", strerror(errno));
			return -1;
		}
		s += n;
		len -= (size_t)n;
	}
	return 0;
}

/* The next line that is not an event: 0 for a return, 1 for anything else. */
static int reply(int fd, char *line, size_t cap)
{
	do {
		if (read_line(fd, line, cap))
			return 1;
	} while (strstr(line, "\"event\"") && !strstr(line, "\"return\""));
	return strncmp(line, "{\"return\"", 9) != 0;
}

int main(int argc, char **argv)
{
	static char line[1 << 16], cmd[4096];
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd, rc;

	if (argc < 3 || argc > 4) {
		fprintf(stderr, "usage: qmp SOCKET COMMAND [JSON-ARGUMENTS]\n");
		return 2;
	}
	if (strlen(argv[1]) >= sizeof(a.sun_path)) {
		fprintf(stderr, "qmp: %s: path too long for a unix socket\n", argv[1]);
		return 2;
	}
	strcpy(a.sun_path, argv[1]);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof(a))) {
		fprintf(stderr, "qmp: %s: connect: %s\n", argv[1], strerror(errno));
		return 1;
	}
	/* The greeting, then capability negotiation. */
	if (read_line(fd, line, sizeof(line)) || !strstr(line, "\"QMP\"")) {
		fprintf(stderr, "qmp: %s: no QMP greeting\n", argv[1]);
		return 1;
	}
	if (send_str(fd, "{\"execute\":\"qmp_capabilities\"}\n") || reply(fd, line, sizeof(line))) {
		fprintf(stderr, "qmp: %s: qmp_capabilities refused: %s\n", argv[1], line);
		return 1;
	}
	if (argc == 4)
		snprintf(cmd, sizeof(cmd), "{\"execute\":\"%s\",\"arguments\":%s}\n", argv[2],
			 argv[3]);
	else
		snprintf(cmd, sizeof(cmd), "{\"execute\":\"%s\"}\n", argv[2]);
	if (send_str(fd, cmd))
		return 1;
	rc = reply(fd, line, sizeof(line));
	puts(line);
	close(fd);
	return rc;
}
