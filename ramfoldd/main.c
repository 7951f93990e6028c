/* SPDX-License-Identifier: MIT */
/*
 * ramfoldd: the host broker that lets ramfold share pages between VM
 * processes (docs/broker.md). This file is the transport around the core
 * (broker.c): one thread, one epoll loop over
 *
 *   the broker socket (SOCK_SEQPACKET; ours, or fd 3 from systemd),
 *   its connections: one request datagram in, one reply out (the WELCOME
 *     with the store's read-only memfd by SCM_RIGHTS),
 *   pidfds of connections the broker closed while their process lives,
 *   the control socket (--ctl: JSON lines, ramfold-vmm's dialect),
 *   the metrics server (--metrics-port) and a signalfd.
 *
 * What a client does must not stop the loop: replies are sent without
 * blocking, and a client that does not read them is not read either until
 * it does (it can only hurt itself); SIGPIPE is ignored; when descriptors
 * run out (EMFILE) a spare one is given up to accept and close the pending
 * connection, so the listening socket does not spin.
 *
 * A connection the broker closes (a malformed request) keeps its holds
 * until its process exits, watched through a pidfd taken at accept: its
 * MAP_PRIVATE mappings of store pages are still live, and punching a page
 * under them would turn the guest's memory to zeros. A connection its peer
 * closes (the process exited or was killed, or gave its pages back first)
 * drops its holds at once.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <numa.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/pidfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "broker.h"
#include "core/json.h"
#include "core/util.h"
#include "ctl/wire.h"

#ifndef SO_PEERPIDFD
#define SO_PEERPIDFD 77
#endif

#define DEFAULT_DOMAINS "/etc/ramfold/domains.conf"
#define CTL_MAX		16
#define HTTP_MAX	16
#define CTL_LINE_MAX	(64 * 1024)

enum kind { K_LISTEN, K_CONN, K_ORPHAN, K_CTL_LISTEN, K_CTL, K_HTTP_LISTEN, K_HTTP, K_SIGNAL };

struct ev {
	enum kind kind;
	int fd;
};

struct conn {
	struct ev ev; /* K_CONN: the socket; K_ORPHAN: ev.fd is the pidfd */
	int pidfd;    /* -1 if none could be had */
	struct bclient *c;
	pid_t pid;
	void *pending; /* a reply the socket had no room for */
	size_t pending_len;
	int pending_fd;
	bool close_after;
	struct conn *prev, *next;
};

struct line_client {
	struct ev ev;
	char *buf;
	size_t len;
};

static struct {
	const char *socket_path, *domains_path, *ctl_path, *metrics_file;
	uint64_t store_size;
	int metrics_port;
	bool private_mode;
} opt = {.socket_path = RFB_DEFAULT_SOCKET};

static struct {
	int epfd, spare_fd;
	struct ev listen, ctl_listen, http_listen, sig;
	bool listen_ours; /* bound here (unlinked at exit), not systemd's */
	struct broker *b;
	struct domains domains;
	struct conn *conns;
	uint64_t orphans, emfile;
	struct line_client ctl[CTL_MAX], http[HTTP_MAX];
	uint64_t next_metrics_ms;
	bool stop;
} d = {.spare_fd = -1};

/* Datagrams are received here: one larger than the largest allowed, so an
 * oversized one arrives too long rather than silently cut to fit. */
static _Alignas(16) uint8_t rbuf[RFB_DGRAM_MAX + 1];
/* When a datagram longer than a page last came in (mono_ms), or 0 once
 * rbuf's pages were given back: an INSERT touches up to 128 KiB of it,
 * which would otherwise stay in the broker's Pss for good. Given back
 * RBUF_IDLE_MS after the last such datagram (rbuf_release); the small
 * LOOKUPs and REPORTs of converged clients touch its first page only. */
static uint64_t rbuf_big_ms;
#define RBUF_IDLE_MS 1000
static _Alignas(16) uint8_t reply[BROKER_REPLY_MAX];

/* Give rbuf's whole pages back (they read as zeros after): no datagram
 * longer than a page for RBUF_IDLE_MS. A failure only keeps them. */
static void rbuf_release(void)
{
	uintptr_t a = ((uintptr_t)rbuf + 4095) & ~(uintptr_t)4095;
	uintptr_t b = ((uintptr_t)rbuf + sizeof(rbuf)) & ~(uintptr_t)4095;

	if (b > a)
		madvise((void *)a, b - a, MADV_DONTNEED);
	rbuf_big_ms = 0;
}

/* One write per line: lines of one process never interleave in the
 * journal or a shared log file. */
static void logf_(const char *fmt, ...)
{
	char line[640];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = snprintf(line, sizeof(line), "ramfoldd: ");
	n += vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	if (n > (int)sizeof(line) - 2)
		n = (int)sizeof(line) - 2;
	line[n++] = '\n';
	(void)!write(2, line, (size_t)n);
}

static void log_line(const char *line)
{
	logf_("%s", line);
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int ep_add(struct ev *ev, uint32_t events)
{
	struct epoll_event e = {.events = events, .data.ptr = ev};

	return epoll_ctl(d.epfd, EPOLL_CTL_ADD, ev->fd, &e);
}

static void ep_mod(struct ev *ev, uint32_t events)
{
	struct epoll_event e = {.events = events, .data.ptr = ev};

	epoll_ctl(d.epfd, EPOLL_CTL_MOD, ev->fd, &e);
}

/* ---- connections ----------------------------------------------------------- */

static void conn_free(struct conn *k)
{
	if (k->ev.fd >= 0)
		close(k->ev.fd); /* the socket, or the pidfd of an orphan */
	if (k->pidfd >= 0 && k->pidfd != k->ev.fd)
		close(k->pidfd);
	if (k->prev)
		k->prev->next = k->next;
	else
		d.conns = k->next;
	if (k->next)
		k->next->prev = k->prev;
	free(k->pending);
	free(k);
}

/* The peer is gone (or never mattered): its holds go now. */
static void conn_gone(struct conn *k)
{
	broker_disconnect(d.b, k->c);
	conn_free(k);
}

static bool pid_alive(int pidfd)
{
	struct pollfd p = {.fd = pidfd, .events = POLLIN};

	return pidfd >= 0 && poll(&p, 1, 0) == 0;
}

/* The broker closes the connection: holds stay while the process lives. */
static void conn_end(struct conn *k)
{
	uint64_t holds = broker_client_holds(k->c);

	if (!holds || !pid_alive(k->pidfd)) {
		conn_gone(k);
		return;
	}
	close(k->ev.fd);
	k->ev = (struct ev){.kind = K_ORPHAN, .fd = k->pidfd};
	if (ep_add(&k->ev, EPOLLIN)) {
		logf_("client %u (pid %d): watching its pidfd: %s: its holds dropped now",
		      broker_client_id(k->c), (int)k->pid, strerror(errno));
		conn_gone(k);
		return;
	}
	d.orphans++;
	logf_("client %u (pid %d): connection closed; its %" PRIu64
	      " holds kept until the process exits (its mappings are live)",
	      broker_client_id(k->c), (int)k->pid, holds);
}

static int send_reply(struct conn *k, const void *buf, size_t len, int fd)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};
	struct msghdr mh = {.msg_iov = &iov, .msg_iovlen = 1};

	if (fd >= 0) {
		struct cmsghdr *cm;

		memset(&u, 0, sizeof(u));
		mh.msg_control = u.b;
		mh.msg_controllen = sizeof(u.b);
		cm = CMSG_FIRSTHDR(&mh);
		cm->cmsg_level = SOL_SOCKET;
		cm->cmsg_type = SCM_RIGHTS;
		cm->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cm), &fd, sizeof(int));
	}
	return sendmsg(k->ev.fd, &mh, MSG_DONTWAIT | MSG_NOSIGNAL) < 0 ? -errno : 0;
}

/* Send a reply; on a full socket keep it and wait for room. */
static void conn_reply(struct conn *k, const void *buf, size_t len, int fd, bool close_after)
{
	int e = send_reply(k, buf, len, fd);

	if (e == -EAGAIN) {
		k->pending = malloc(len);
		if (!k->pending) {
			conn_end(k);
			return;
		}
		memcpy(k->pending, buf, len);
		k->pending_len = len;
		k->pending_fd = fd;
		k->close_after = close_after;
		ep_mod(&k->ev, EPOLLOUT);
		return;
	}
	if (e) {
		conn_gone(k); /* EPIPE, ECONNRESET: the peer is gone */
		return;
	}
	if (close_after)
		conn_end(k);
}

static void conn_event(struct conn *k, uint32_t events)
{
	int fd_out;
	bool close_after;
	ssize_t n;
	size_t len;

	if (k->pending) {
		int e = send_reply(k, k->pending, k->pending_len, k->pending_fd);

		if (e == -EAGAIN && !(events & (EPOLLHUP | EPOLLERR)))
			return;
		free(k->pending);
		k->pending = NULL;
		if (e) {
			conn_gone(k);
			return;
		}
		if (k->close_after) {
			conn_end(k);
			return;
		}
		ep_mod(&k->ev, EPOLLIN);
		return;
	}
	/* recv without a control buffer: descriptors a client sends are
	 * released by the kernel, never installed here. */
	n = recv(k->ev.fd, rbuf, sizeof(rbuf), MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 4096)
		rbuf_big_ms = mono_ms();
	if (n <= 0) {
		conn_gone(k);
		return;
	}
	len = broker_handle(d.b, k->c, rbuf, (size_t)n, reply, &fd_out, &close_after);
	conn_reply(k, reply, len, fd_out, close_after);
}

/* "0::/path" of /proc/PID/cgroup (cgroup v2), or NULL. */
static char *peer_cgroup(pid_t pid)
{
	char path[64], line[4096];
	char *cg = NULL;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/cgroup", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return NULL;
	while (!cg && fgets(line, sizeof(line), f))
		if (!strncmp(line, "0::", 3)) {
			line[strcspn(line, "\n")] = 0;
			cg = strdup(line + 3);
		}
	fclose(f);
	return cg;
}

static void conn_accept(int fd)
{
	struct conn *k = calloc(1, sizeof(*k));
	struct ucred cred;
	socklen_t sl = sizeof(cred);
	gid_t gbuf[64], *groups = gbuf;
	struct broker_peer peer = {0};
	char *cg = NULL;

	if (!k || getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &sl)) {
		logf_("new connection: %s: refused", k ? strerror(errno) : "out of memory");
		free(k);
		close(fd);
		return;
	}
	k->ev = (struct ev){.kind = K_CONN, .fd = fd};
	k->pid = cred.pid;
	k->pending_fd = -1;
	/* The pidfd of the process that connected (not of whatever has its
	 * pid later); pidfd_open on kernels without SO_PEERPIDFD. */
	sl = sizeof(k->pidfd);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERPIDFD, &k->pidfd, &sl))
		k->pidfd = (int)pidfd_open(cred.pid, 0);
	sl = sizeof(gbuf);
	if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, gbuf, &sl)) {
		/* ERANGE: more groups than gbuf holds, sl says how many. */
		groups = errno == ERANGE ? malloc(sl) : NULL;
		if (groups && getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups, &sl)) {
			free(groups);
			groups = NULL;
		}
	}
	/* The cgroup of a process still alive is its own (its pid is not
	 * reused while the pidfd says so). */
	cg = peer_cgroup(cred.pid);
	if (cg && !pid_alive(k->pidfd)) {
		free(cg);
		cg = NULL;
	}
	peer = (struct broker_peer){.uid = cred.uid,
				    .gid = cred.gid,
				    .groups = groups,
				    .ngroups = groups ? sl / sizeof(gid_t) : 0,
				    .pid = cred.pid,
				    .cgroup = cg};
	k->c = broker_connect(d.b, &peer);
	if (groups != gbuf)
		free(groups);
	free(cg);
	if (!k->c || ep_add(&k->ev, EPOLLIN)) {
		logf_("connection of pid %d: %s: refused", (int)cred.pid,
		      k->c ? strerror(errno) : "out of memory");
		if (k->c)
			broker_disconnect(d.b, k->c);
		if (k->pidfd >= 0)
			close(k->pidfd);
		free(k);
		close(fd);
		return;
	}
	k->next = d.conns;
	if (d.conns)
		d.conns->prev = k;
	d.conns = k;
}

/*
 * accept4 on @lfd; -1 when nothing is pending or the connection could not
 * be had. Out of descriptors (EMFILE), the spare one is given up to take
 * the connection and close it: left pending, it would keep the listening
 * socket readable and the loop spinning.
 */
static int accept_or_shed(int lfd, const char *what)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);

		if (fd >= 0)
			return fd;
		if (errno == EINTR || errno == ECONNABORTED)
			continue;
		if ((errno == EMFILE || errno == ENFILE) && d.spare_fd >= 0) {
			int e = errno;

			/* (accept4 takes the descriptor before it looks at the
			 * queue: EMFILE does not mean a connection waits.) */
			close(d.spare_fd);
			fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0)
				close(fd);
			d.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
			if (fd < 0)
				return -1;
			if (!d.emfile++ || !(d.emfile & 1023))
				logf_("%s: out of descriptors (%s): %" PRIu64
				      " connections closed unserved so far",
				      what, strerror(e), d.emfile);
			continue;
		}
		if (errno != EAGAIN)
			logf_("%s: accept: %s", what, strerror(errno));
		return -1;
	}
}

static void on_listen(void)
{
	/* A bounded batch: the other descriptors get their turn. */
	for (int i = 0; i < 64; i++) {
		int fd = accept_or_shed(d.listen.fd, "broker socket");

		if (fd < 0)
			return;
		conn_accept(fd);
	}
}

/* ---- statistics: control socket and metrics ---------------------------------- */

static void store_json(const struct broker_store_info *si, void *arg)
{
	struct jbuf *jb = arg;

	jb_obj_open(jb);
	jb_kv_str(jb, "domain", si->domain);
	jb_kv_i64(jb, "node", si->node);
	jb_kv_u64(jb, "clients", si->clients);
	jb_kv_u64(jb, "capacity-pages", si->capacity_pages);
	jb_kv_u64(jb, "store-pages", si->store_pages);
	jb_kv_u64(jb, "shared-pages", si->shared_pages);
	jb_kv_u64(jb, "mapped-pages", si->mapped_pages);
	jb_kv_u64(jb, "saved-bytes",
		  si->mapped_pages > si->store_pages
		      ? (si->mapped_pages - si->store_pages) * RFB_PAGE_SIZE
		      : 0);
	jb_kv_u64(jb, "resident-bytes", si->resident_bytes);
	jb_kv_u64(jb, "lookups", si->lookups);
	jb_kv_u64(jb, "hits", si->hits);
	jb_kv_u64(jb, "twins", si->twins);
	jb_kv_u64(jb, "inserts", si->inserts);
	jb_kv_u64(jb, "inserts-new", si->inserts_new);
	jb_kv_u64(jb, "bad-hash", si->bad_hash);
	jb_kv_u64(jb, "enospc", si->enospc);
	jb_kv_u64(jb, "released", si->released);
	jb_kv_u64(jb, "refused", si->refused);
	jb_kv_u64(jb, "punched", si->punched);
	jb_kv_u64(jb, "candidates", si->candidates);
	jb_kv_u64(jb, "candidate-bytes", si->candidate_bytes);
	jb_kv_u64(jb, "candidates-evicted", si->candidates_evicted);
	jb_obj_close(jb);
}

struct seen {
	const char *names[256];
	size_t n;
};

static void note_domain(const struct broker_store_info *si, void *arg)
{
	struct seen *s = arg;

	if (s->n < 256)
		s->names[s->n++] = si->domain;
}

static void write_domains(struct jbuf *jb)
{
	struct seen s = {.n = 0};

	jb_arr_open(jb);
	broker_foreach_store(d.b, store_json, jb);
	broker_foreach_store(d.b, note_domain, &s);
	/* Configured domains nobody joined yet: there, with nothing. */
	for (size_t i = 0; i < d.domains.n; i++) {
		bool active = false;

		for (size_t j = 0; j < s.n; j++)
			active |= !strcmp(s.names[j], d.domains.dom[i].name);
		if (active)
			continue;
		jb_obj_open(jb);
		jb_kv_str(jb, "domain", d.domains.dom[i].name);
		jb_kv_i64(jb, "node", -1);
		jb_kv_u64(jb, "clients", 0);
		jb_kv_u64(jb, "store-pages", 0);
		jb_kv_u64(jb, "shared-pages", 0);
		jb_kv_u64(jb, "mapped-pages", 0);
		jb_kv_u64(jb, "saved-bytes", 0);
		jb_kv_u64(jb, "resident-bytes", 0);
		jb_obj_close(jb);
	}
	jb_arr_close(jb);
}

static void write_broker(struct jbuf *jb)
{
	struct broker_counters bc;

	broker_counters(d.b, &bc);
	jb_obj_open(jb);
	jb_kv_u64(jb, "pid", (uint64_t)getpid());
	jb_kv_u64(jb, "connections", bc.connections);
	jb_kv_u64(jb, "connected", bc.clients);
	jb_kv_u64(jb, "refusals", bc.refusals);
	jb_kv_u64(jb, "protocol-errors", bc.protocol_errors);
	jb_kv_u64(jb, "orphans", d.orphans);
	jb_kv_u64(jb, "emfile", d.emfile);
	jb_kv_u64(jb, "store-size", opt.store_size);
	jb_obj_close(jb);
}

static int query_domains(const struct json *args, struct jbuf *ret, char *err, size_t errlen)
{
	(void)args, (void)err, (void)errlen;
	write_domains(ret);
	return 0;
}

static int query_broker(const struct json *args, struct jbuf *ret, char *err, size_t errlen)
{
	(void)args, (void)err, (void)errlen;
	write_broker(ret);
	return 0;
}

static const struct wire_cmd commands[] = {
    {"query-domains", "per (domain, node): clients, store, shared and mapped pages, saved bytes",
     query_domains},
    {"query-broker", "connections, refusals, protocol errors", query_broker},
};

struct metrics_arg {
	FILE *f;
	const char *name, *type, *help;
	size_t off; /* of a uint64_t in broker_store_info, or SIZE_MAX: saved bytes */
};

static void metric_line(const struct broker_store_info *si, void *arg)
{
	struct metrics_arg *m = arg;
	uint64_t v;

	if (m->off == SIZE_MAX)
		v = si->mapped_pages > si->store_pages
			? (si->mapped_pages - si->store_pages) * RFB_PAGE_SIZE
			: 0;
	else if (m->off == offsetof(struct broker_store_info, clients))
		v = si->clients;
	else
		v = *(const uint64_t *)((const char *)si + m->off);
	fprintf(m->f, "%s{domain=\"%s\",node=\"%d\"} %" PRIu64 "\n", m->name, si->domain, si->node,
		v);
}

/* The Prometheus text; NULL if out of memory. */
static char *metrics_text(void)
{
	static const struct {
		const char *name, *type, *help;
		size_t off;
	} per[] = {
#define F(x) offsetof(struct broker_store_info, x)
	    {"ramfoldd_clients", "gauge", "Clients joined to the store.", F(clients)},
	    {"ramfoldd_store_pages", "gauge", "Store pages held by a client or more.",
	     F(store_pages)},
	    {"ramfoldd_shared_pages", "gauge", "Store pages held by two clients or more.",
	     F(shared_pages)},
	    {"ramfoldd_mapped_pages", "gauge", "Guest pages mapping the store (clients' reports).",
	     F(mapped_pages)},
	    {"ramfoldd_saved_bytes", "gauge", "(mapped - store pages) x page size.", SIZE_MAX},
	    {"ramfoldd_resident_bytes", "gauge", "Memory of the store memfd (st_blocks).",
	     F(resident_bytes)},
	    {"ramfoldd_lookups_total", "counter", "Hashes looked up.", F(lookups)},
	    {"ramfoldd_hits_total", "counter", "Lookups that found a page.", F(hits)},
	    {"ramfoldd_twins_total", "counter", "Lookups answered TWIN.", F(twins)},
	    {"ramfoldd_inserts_total", "counter", "Pages inserted.", F(inserts)},
	    {"ramfoldd_bad_hash_total", "counter", "Inserts refused: bytes not of their hash.",
	     F(bad_hash)},
	    {"ramfoldd_enospc_total", "counter", "Inserts refused: store full.", F(enospc)},
	    {"ramfoldd_put_refused_total", "counter", "PUTs of pages not held.", F(refused)},
	    {"ramfoldd_punched_total", "counter", "Store pages punched.", F(punched)},
	    {"ramfoldd_candidates", "gauge", "Entries of the candidate cache.", F(candidates)},
	    {"ramfoldd_candidate_bytes", "gauge", "Memory of the candidate cache.",
	     F(candidate_bytes)},
	    {"ramfoldd_candidates_evicted_total", "counter",
	     "Live candidates pushed out of a full bucket.", F(candidates_evicted)},
#undef F
	};
	struct broker_counters bc;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return NULL;
	for (size_t i = 0; i < sizeof(per) / sizeof(per[0]); i++) {
		struct metrics_arg m = {f, per[i].name, per[i].type, per[i].help, per[i].off};

		fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", m.name, m.help, m.name, m.type);
		broker_foreach_store(d.b, metric_line, &m);
	}
	broker_counters(d.b, &bc);
	fprintf(
	    f,
	    "# HELP ramfoldd_connections_total Connections accepted.\n"
	    "# TYPE ramfoldd_connections_total counter\n"
	    "ramfoldd_connections_total %" PRIu64 "\n"
	    "# HELP ramfoldd_refusals_total HELLOs refused.\n"
	    "# TYPE ramfoldd_refusals_total counter\n"
	    "ramfoldd_refusals_total %" PRIu64 "\n"
	    "# HELP ramfoldd_protocol_errors_total Connections closed for a malformed request.\n"
	    "# TYPE ramfoldd_protocol_errors_total counter\n"
	    "ramfoldd_protocol_errors_total %" PRIu64 "\n"
	    "# HELP ramfoldd_connected Connections open now.\n"
	    "# TYPE ramfoldd_connected gauge\n"
	    "ramfoldd_connected %" PRIu64 "\n",
	    bc.connections, bc.refusals, bc.protocol_errors, bc.clients);
	if (fclose(f)) {
		free(text);
		return NULL;
	}
	return text;
}

static void write_metrics_file(void)
{
	static bool warned;
	char tmp[4200];
	char *text = metrics_text();
	FILE *f;

	if (!text)
		return;
	snprintf(tmp, sizeof(tmp), "%s.tmp", opt.metrics_file);
	f = fopen(tmp, "we");
	if (!f || fputs(text, f) < 0 || fclose(f) || rename(tmp, opt.metrics_file)) {
		if (!warned)
			logf_("--metrics-file %s: %s (not written; retried each second)",
			      opt.metrics_file, strerror(errno));
		warned = true;
	}
	free(text);
}

static void line_close(struct line_client *lc)
{
	close(lc->ev.fd);
	free(lc->buf);
	*lc = (struct line_client){.ev.fd = -1};
}

static void ctl_read(struct line_client *lc)
{
	char chunk[4096];
	ssize_t n = recv(lc->ev.fd, chunk, sizeof(chunk), MSG_DONTWAIT);
	char *nl, *grown;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0 || lc->len + (size_t)n > CTL_LINE_MAX) {
		line_close(lc);
		return;
	}
	grown = realloc(lc->buf, lc->len + (size_t)n + 1);
	if (!grown) {
		line_close(lc);
		return;
	}
	lc->buf = grown;
	memcpy(lc->buf + lc->len, chunk, (size_t)n);
	lc->len += (size_t)n;
	while (lc->ev.fd >= 0 && (nl = memchr(lc->buf, '\n', lc->len))) {
		size_t ll = (size_t)(nl - lc->buf);
		struct jbuf out;
		bool ok = true;

		jb_init(&out);
		if (ll)
			wire_execute(lc->buf, ll, commands, sizeof(commands) / sizeof(commands[0]),
				     &out);
		/* A reply the client has no room for ends it: the loop
		 * never waits for a control client. */
		if (ll && jb_str(&out))
			ok = send(lc->ev.fd, jb_str(&out), out.len, MSG_DONTWAIT | MSG_NOSIGNAL) ==
				 (ssize_t)out.len &&
			     send(lc->ev.fd, "\n", 1, MSG_DONTWAIT | MSG_NOSIGNAL) == 1;
		jb_free(&out);
		if (!ok) {
			line_close(lc);
			return;
		}
		memmove(lc->buf, nl + 1, lc->len - ll - 1);
		lc->len -= ll + 1;
	}
}

static void http_read(struct line_client *lc)
{
	char req[1024];
	ssize_t n = recv(lc->ev.fd, req, sizeof(req) - 1, MSG_DONTWAIT);
	char *body = NULL;

	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n > 0) {
		req[n] = 0;
		if (!strncmp(req, "GET /metrics ", 13) || !strncmp(req, "GET / ", 6))
			body = metrics_text();
		wire_http_reply(lc->ev.fd, body);
		free(body);
	}
	line_close(lc);
}

/* A control or HTTP connection into a free slot, or closed. */
static void line_accept(int lfd, struct line_client *slots, int nslots, enum kind kind)
{
	int fd = accept_or_shed(lfd, kind == K_CTL ? "control socket" : "metrics port");

	if (fd < 0)
		return;
	for (int i = 0; i < nslots; i++)
		if (slots[i].ev.fd < 0) {
			slots[i].ev = (struct ev){.kind = kind, .fd = fd};
			if (ep_add(&slots[i].ev, EPOLLIN)) {
				slots[i].ev.fd = -1;
				break;
			}
			return;
		}
	close(fd);
}

/* ---- sockets ----------------------------------------------------------------- */

/*
 * systemd's socket activation, by hand: LISTEN_PID is ours and LISTEN_FDS
 * 1: fd 3 is the listening socket (a SOCK_SEQPACKET unix one). -1 when not
 * activated, exits on a socket that is not what ramfoldd.socket makes.
 */
static int activated_socket(void)
{
	const char *pid = getenv("LISTEN_PID"), *fds = getenv("LISTEN_FDS");
	int type = 0;
	socklen_t sl = sizeof(type);

	if (!pid || !fds || strtol(pid, NULL, 10) != getpid())
		return -1;
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	if (strcmp(fds, "1")) {
		logf_("socket activation: LISTEN_FDS=%s: expected one socket (ramfoldd.socket)",
		      fds);
		exit(1);
	}
	if (getsockopt(3, SOL_SOCKET, SO_TYPE, &type, &sl) || type != SOCK_SEQPACKET) {
		logf_("socket activation: fd 3 is not a SOCK_SEQPACKET socket "
		      "(ListenSequentialPacket= in ramfoldd.socket)");
		exit(1);
	}
	fcntl(3, F_SETFD, FD_CLOEXEC);
	fcntl(3, F_SETFL, fcntl(3, F_GETFL) | O_NONBLOCK);
	return 3;
}

static uint64_t mem_total(void)
{
	unsigned long long kb = 0;
	char line[256];
	FILE *f = fopen("/proc/meminfo", "re");

	while (f && fgets(line, sizeof(line), f))
		if (sscanf(line, "MemTotal: %llu kB", &kb) == 1)
			break;
	if (f)
		fclose(f);
	return (uint64_t)kb << 10;
}

/* ---- main -------------------------------------------------------------------- */

static void usage(FILE *f)
{
	fprintf(f,
		"usage: ramfoldd [options]\n"
		"  --socket PATH        the broker socket (default %s)\n"
		"  --domains FILE       who may join which domain (default %s)\n"
		"  --private            no file: any domain, this process's uid only; exits\n"
		"                       with its parent (tests, demos)\n"
		"  --store-size SIZE    capacity of each (domain, node) store (default:\n"
		"                       a quarter of MemTotal; memory is used as pages fill)\n"
		"  --ctl PATH           JSON control socket (query-domains, query-broker)\n"
		"  --metrics-file FILE  Prometheus text, rewritten every second\n"
		"  --metrics-port N     Prometheus text on 127.0.0.1:N\n",
		RFB_DEFAULT_SOCKET, DEFAULT_DOMAINS);
}

static void parse_args(int argc, char **argv)
{
	static const struct option lo[] = {
	    {"socket", required_argument, NULL, 's'},
	    {"domains", required_argument, NULL, 'd'},
	    {"private", no_argument, NULL, 'p'},
	    {"store-size", required_argument, NULL, 'S'},
	    {"ctl", required_argument, NULL, 'c'},
	    {"metrics-file", required_argument, NULL, 'm'},
	    {"metrics-port", required_argument, NULL, 'P'},
	    {"help", no_argument, NULL, 'h'},
	    {0},
	};
	uint64_t v;
	int o;

	while ((o = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
		switch (o) {
		case 's':
			opt.socket_path = optarg;
			break;
		case 'd':
			opt.domains_path = optarg;
			break;
		case 'p':
			opt.private_mode = true;
			break;
		case 'S':
			if (parse_size(optarg, &opt.store_size) || opt.store_size < RFB_PAGE_SIZE) {
				logf_("--store-size %s: a size of a page or more (256M, 4G)",
				      optarg);
				exit(2);
			}
			break;
		case 'c':
			opt.ctl_path = optarg;
			break;
		case 'm':
			opt.metrics_file = optarg;
			break;
		case 'P':
			if (parse_u64(optarg, &v) || !v || v > 65535) {
				logf_("--metrics-port %s: a TCP port, 1 to 65535", optarg);
				exit(2);
			}
			opt.metrics_port = (int)v;
			break;
		case 'h':
			usage(stdout);
			exit(0);
		default:
			usage(stderr);
			exit(2);
		}
	}
	if (optind < argc) {
		logf_("unexpected argument \"%s\"", argv[optind]);
		exit(2);
	}
	if (opt.private_mode && opt.domains_path) {
		logf_("--private and --domains: choose one (--private needs no file)");
		exit(2);
	}
}

static void setup(void)
{
	struct broker_conf bc = {.log = log_line};
	char err[512];
	sigset_t ss;
	int e;

	if (opt.private_mode) {
		d.domains.private_uid = getuid();
	} else {
		const char *path = opt.domains_path ? opt.domains_path : DEFAULT_DOMAINS;

		if (domains_load(path, &d.domains, err, sizeof(err))) {
			logf_("%s", err);
			exit(1);
		}
		if (!d.domains.n)
			logf_("%s: no domain: every HELLO will be refused", path);
	}
	if (!opt.store_size)
		opt.store_size = mem_total() / 4;
	if (opt.store_size < RFB_PAGE_SIZE)
		opt.store_size = 1ull << 30;
	bc.domains = &d.domains;
	bc.store_pages = opt.store_size / RFB_PAGE_SIZE;
	bc.nr_nodes = numa_available() < 0 ? 1 : numa_max_node() + 1;
	d.b = broker_new(&bc);
	d.epfd = epoll_create1(EPOLL_CLOEXEC);
	d.spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (!d.b || d.epfd < 0) {
		logf_("start: %s", strerror(errno ? errno : ENOMEM));
		exit(1);
	}
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&ss);
	sigaddset(&ss, SIGTERM);
	sigaddset(&ss, SIGINT);
	sigaddset(&ss, SIGHUP);
	sigprocmask(SIG_BLOCK, &ss, NULL);
	d.sig = (struct ev){.kind = K_SIGNAL, .fd = signalfd(-1, &ss, SFD_CLOEXEC | SFD_NONBLOCK)};
	ep_add(&d.sig, EPOLLIN);

	d.listen = (struct ev){.kind = K_LISTEN, .fd = activated_socket()};
	if (d.listen.fd < 0) {
		e = wire_unix_listen(opt.socket_path, SOCK_SEQPACKET, SOCK_NONBLOCK, 0666);
		if (e < 0) {
			logf_("--socket %s: %s", opt.socket_path,
			      e == -EADDRINUSE ? "in use by a running broker" : strerror(-e));
			exit(1);
		}
		d.listen.fd = e;
		d.listen_ours = true;
	}
	ep_add(&d.listen, EPOLLIN);
	for (int i = 0; i < CTL_MAX; i++)
		d.ctl[i].ev.fd = -1;
	for (int i = 0; i < HTTP_MAX; i++)
		d.http[i].ev.fd = -1;
	if (opt.ctl_path) {
		e = wire_unix_listen(opt.ctl_path, SOCK_STREAM, SOCK_NONBLOCK, 0600);
		if (e < 0) {
			logf_("--ctl %s: %s", opt.ctl_path,
			      e == -EADDRINUSE ? "in use by another process" : strerror(-e));
			exit(1);
		}
		d.ctl_listen = (struct ev){.kind = K_CTL_LISTEN, .fd = e};
		ep_add(&d.ctl_listen, EPOLLIN);
	}
	if (opt.metrics_port) {
		e = wire_http_listen(opt.metrics_port, SOCK_NONBLOCK);
		if (e < 0) {
			logf_("--metrics-port %d: %s", opt.metrics_port, strerror(-e));
			exit(1);
		}
		d.http_listen = (struct ev){.kind = K_HTTP_LISTEN, .fd = e};
		ep_add(&d.http_listen, EPOLLIN);
	}
}

static void teardown(void)
{
	while (d.conns)
		conn_gone(d.conns);
	for (int i = 0; i < CTL_MAX; i++)
		if (d.ctl[i].ev.fd >= 0)
			line_close(&d.ctl[i]);
	for (int i = 0; i < HTTP_MAX; i++)
		if (d.http[i].ev.fd >= 0)
			line_close(&d.http[i]);
	if (d.listen_ours)
		unlink(opt.socket_path);
	if (opt.ctl_path)
		unlink(opt.ctl_path);
	if (opt.metrics_file)
		unlink(opt.metrics_file);
	broker_free(d.b);
	domains_free(&d.domains);
}

int main(int argc, char **argv)
{
	pid_t parent = getppid();

	parse_args(argc, argv);
	if (opt.private_mode) {
		/* A private broker serves its parent's tests or demo and goes
		 * with it (SIGTERM, caught by the signalfd below). */
		if (prctl(PR_SET_PDEATHSIG, SIGTERM) || getppid() != parent) {
			logf_("--private: parent %d already gone", (int)parent);
			return 1;
		}
	}
	setup();
	logf_("pid %d: serving %s (%s), stores of %" PRIu64 " MiB per domain and node",
	      (int)getpid(), d.listen_ours ? opt.socket_path : "socket from systemd",
	      opt.private_mode ? "private: this uid only" : "domains.conf", opt.store_size >> 20);
	while (!d.stop) {
		struct epoll_event ev[64];
		int timeout = -1, n;

		if (opt.metrics_file) {
			uint64_t now = mono_ms();

			if (now >= d.next_metrics_ms) {
				write_metrics_file();
				d.next_metrics_ms = now + 1000;
			}
			timeout = (int)(d.next_metrics_ms - now);
		}
		if (rbuf_big_ms) {
			uint64_t now = mono_ms();

			if (now >= rbuf_big_ms + RBUF_IDLE_MS)
				rbuf_release();
			else if (timeout < 0 || (uint64_t)timeout > rbuf_big_ms + RBUF_IDLE_MS - now)
				timeout = (int)(rbuf_big_ms + RBUF_IDLE_MS - now);
		}
		n = epoll_wait(d.epfd, ev, 64, timeout);
		for (int i = 0; i < n && !d.stop; i++) {
			struct ev *e = ev[i].data.ptr;

			switch (e->kind) {
			case K_LISTEN:
				on_listen();
				break;
			case K_CONN:
				conn_event((struct conn *)e, ev[i].events);
				break;
			case K_ORPHAN:
				/* The process exited: its mappings went with it. */
				conn_gone((struct conn *)e);
				break;
			case K_CTL_LISTEN:
				line_accept(e->fd, d.ctl, CTL_MAX, K_CTL);
				break;
			case K_CTL:
				ctl_read((struct line_client *)e);
				break;
			case K_HTTP_LISTEN:
				line_accept(e->fd, d.http, HTTP_MAX, K_HTTP);
				break;
			case K_HTTP:
				http_read((struct line_client *)e);
				break;
			case K_SIGNAL: {
				struct signalfd_siginfo si;

				if (read(e->fd, &si, sizeof(si)) == sizeof(si) &&
				    si.ssi_signo != SIGHUP) {
					logf_("signal %d: exiting", (int)si.ssi_signo);
					d.stop = true;
				}
				break;
			}
			}
		}
	}
	teardown();
	return 0;
}
