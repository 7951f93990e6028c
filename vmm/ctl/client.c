/* SPDX-License-Identifier: MIT */
/*
 * Client mode: ramfold-vmm ctl SOCKET COMMAND [ARGS]
 * ARGS are key=value pairs (values that are plain decimal numbers are sent
 * as numbers, everything else as strings) or one JSON object. Prints the
 * reply line; exit status 0 for a "return", 1 for an "error", 2 when the
 * request could not be sent.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "core/util.h"
#include "core/vmm.h"
#include "ctl/ctl.h"

static int build_request(int argc, char **argv, struct jbuf *jb)
{
	jb_obj_open(jb);
	jb_kv_str(jb, "execute", argv[0]);
	if (argc > 1) {
		jb_key(jb, "arguments");
		if (argv[1][0] == '{') {
			char err[128];
			struct json *j = json_parse(argv[1], strlen(argv[1]), err, sizeof(err));

			if (!j || j->type != JSON_OBJECT || argc > 2) {
				vmm_errorf("ctl: arguments: %s",
					   j ? "expected one JSON object" : err);
				json_free(j);
				return -1;
			}
			json_free(j);
			jb_raw(jb, argv[1]);
		} else {
			jb_obj_open(jb);
			for (int i = 1; i < argc; i++) {
				char *eq = strchr(argv[i], '=');
				uint64_t v;

				if (!eq || eq == argv[i]) {
					vmm_errorf("ctl: argument \"%s\" is not key=value",
						   argv[i]);
					return -1;
				}
				*eq = 0;
				jb_key(jb, argv[i]);
				if (!parse_u64(eq + 1, &v))
					jb_u64(jb, v);
				else if (!strcmp(eq + 1, "true") || !strcmp(eq + 1, "false"))
					jb_bool(jb, eq[1] == 't');
				else
					jb_string(jb, eq + 1);
			}
			jb_obj_close(jb);
		}
	}
	jb_obj_close(jb);
	return 0;
}

int vmm_ctl_client(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct jbuf jb;
	char buf[VMM_CTL_LINE_MAX];
	size_t len = 0;
	int fd, rc = 2;

	if (argc < 2) {
		vmm_errorf("usage: ramfold-vmm ctl SOCKET COMMAND [key=value...|JSON]");
		return 2;
	}
	if (strlen(argv[0]) >= sizeof(sa.sun_path)) {
		vmm_errorf("ctl: socket path too long: %s", argv[0]);
		return 2;
	}
	strcpy(sa.sun_path, argv[0]);
	jb_init(&jb);
	if (build_request(argc - 1, argv + 1, &jb))
		goto out;
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa))) {
		vmm_errorf("ctl: cannot connect to %s: %s", argv[0], strerror(errno));
		if (fd >= 0)
			close(fd);
		goto out;
	}
	if (write(fd, jb_str(&jb), jb.len) != (ssize_t)jb.len || write(fd, "\n", 1) != 1) {
		vmm_errorf("ctl: %s: write: %s", argv[0], strerror(errno));
		close(fd);
		goto out;
	}
	while (len < sizeof(buf) - 1) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t n;

		if (poll(&p, 1, 10000) != 1) {
			vmm_errorf("ctl: %s: no reply within 10 s", argv[0]);
			break;
		}
		n = read(fd, buf + len, sizeof(buf) - 1 - len);
		if (n <= 0) {
			vmm_errorf("ctl: %s: connection closed before the reply", argv[0]);
			break;
		}
		len += (size_t)n;
		if (memchr(buf, '\n', len)) {
			buf[len] = 0;
			*strchr(buf, '\n') = 0;
			printf("%s\n", buf);
			rc = strncmp(buf, "{\"return\"", 9) ? 1 : 0;
			break;
		}
	}
	close(fd);
out:
	jb_free(&jb);
	return rc;
}
