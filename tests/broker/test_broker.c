/* SPDX-License-Identifier: MIT */
/*
 * ramfoldd end to end: the real daemon (RF_RAMFOLDD names it; ramfoldd.mk
 * sets it) driven over its socket by a small raw client written here from
 * ksm/broker_proto.h, checked from outside: the replies, the store memfd
 * the broker hands out (what a client can and cannot do with it, what it
 * reads through MAP_PRIVATE mappings, its resident blocks), the control
 * socket, the log, the daemon's descriptors. Children that setresuid to
 * other uids play the tenants (skipped when not root). A few tests drive the
 * core (broker.c, conf.c) directly where the socket cannot reach: the
 * candidates' time to live, and the domains.conf parser.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <poll.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <xxhash.h>

#include "broker.h"
#include "broker_proto.h"

#define PG RFB_PAGE_SIZE

static const char *daemon_bin;
static char dir[64];

struct daemon {
	pid_t pid;
	char sock[100], ctl[100], log[100];
};

/* The private daemon most tests share. */
static struct daemon pd;

/* ---- the daemon ----------------------------------------------------------- */

static bool can_connect(const char *path)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	bool ok;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
	close(fd);
	return ok;
}

/* Start ramfoldd with @args (NULL-terminated, after --socket and --ctl);
 * @nofile > 0 limits its descriptors. */
static void daemon_start(struct daemon *dm, const char *name, int nofile, ...)
{
	char *argv[32];
	int argc = 0;
	va_list ap;

	snprintf(dm->sock, sizeof(dm->sock), "%s/%s.sock", dir, name);
	snprintf(dm->ctl, sizeof(dm->ctl), "%s/%s.ctl", dir, name);
	snprintf(dm->log, sizeof(dm->log), "%s/%s.log", dir, name);
	argv[argc++] = (char *)daemon_bin;
	argv[argc++] = "--socket";
	argv[argc++] = dm->sock;
	argv[argc++] = "--ctl";
	argv[argc++] = dm->ctl;
	va_start(ap, nofile);
	for (char *a; (a = va_arg(ap, char *));)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	dm->pid = fork();
	assert_true(dm->pid >= 0);
	if (dm->pid == 0) {
		int fd = open(dm->log, O_WRONLY | O_CREAT | O_TRUNC, 0644);

		/* Every process a test starts goes with the test, failed or not. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(fd, 2);
		if (nofile > 0)
			setrlimit(RLIMIT_NOFILE, &(struct rlimit){nofile, nofile});
		execv(argv[0], argv);
		_exit(127);
	}
	for (int i = 0; i < 500 && !can_connect(dm->sock); i++)
		usleep(10000);
	assert_true(can_connect(dm->sock));
}

static void daemon_stop(struct daemon *dm)
{
	int st;

	if (dm->pid <= 0)
		return;
	kill(dm->pid, SIGTERM);
	waitpid(dm->pid, &st, 0);
	dm->pid = 0;
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

static char *slurp(const char *path)
{
	static char buf[1 << 20];
	int fd = open(path, O_RDONLY);
	ssize_t n = fd < 0 ? -1 : read(fd, buf, sizeof(buf) - 1);

	if (fd >= 0)
		close(fd);
	buf[n > 0 ? n : 0] = 0;
	return buf;
}

/* Lines of the daemon's log containing @s. */
static int log_count(const struct daemon *dm, const char *s)
{
	const char *p = slurp(dm->log);
	int n = 0;

	while ((p = strstr(p, s))) {
		n++;
		p += strlen(s);
	}
	return n;
}

/* One control command; the answer line in a static buffer. */
static const char *ctl(const struct daemon *dm, const char *cmd)
{
	static char out[65536];
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	size_t n = 0;
	ssize_t r;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", dm->ctl);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_true(write(fd, cmd, strlen(cmd)) == (ssize_t)strlen(cmd));
	assert_true(write(fd, "\n", 1) == 1);
	while (n + 1 < sizeof(out) && (r = read(fd, out + n, sizeof(out) - n - 1)) > 0) {
		n += (size_t)r;
		if (out[n - 1] == '\n')
			break;
	}
	out[n] = 0;
	close(fd);
	return out;
}

static int fd_count(pid_t pid)
{
	char path[64];
	DIR *dd;
	int n = 0;

	snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
	dd = opendir(path);
	assert_non_null(dd);
	while (readdir(dd))
		n++;
	closedir(dd);
	return n - 2;
}

/* ---- a raw client ----------------------------------------------------------- */

struct cl {
	int fd;
	int store; /* the read-only memfd, or -1 */
	uint32_t id, seq;
	uint64_t store_pages;
};

static int cl_connect(struct cl *c, const struct daemon *dm)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	struct timeval tv = {.tv_sec = 5};

	memset(c, 0, sizeof(*c));
	c->store = -1;
	c->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (c->fd < 0)
		return -errno;
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	snprintf(a.sun_path, sizeof(a.sun_path), "%s", dm->sock);
	return connect(c->fd, (struct sockaddr *)&a, sizeof(a)) ? -errno : 0;
}

static void cl_close(struct cl *c)
{
	if (c->store >= 0)
		close(c->store);
	if (c->fd >= 0)
		close(c->fd);
	c->fd = c->store = -1;
}

/* Send @len bytes, receive one reply (and a descriptor if one comes). */
static ssize_t cl_xfer(struct cl *c, const void *req, size_t len, void *rep, size_t cap, int *rfd)
{
	union {
		char b[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} u;
	struct iovec iov = {.iov_base = rep, .iov_len = cap};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.b, .msg_controllen = sizeof(u.b)};
	ssize_t n;

	if (rfd)
		*rfd = -1;
	if (send(c->fd, req, len, MSG_NOSIGNAL) != (ssize_t)len)
		return -errno;
	n = recvmsg(c->fd, &mh, MSG_CMSG_CLOEXEC);
	if (n < 0)
		return -errno;
	for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm))
		if (cm->cmsg_type == SCM_RIGHTS) {
			int fd;

			memcpy(&fd, CMSG_DATA(cm), sizeof(fd));
			if (rfd)
				*rfd = fd;
			else
				close(fd);
		}
	return n;
}

static struct rfb_hdr hdr(struct cl *c, uint32_t type, size_t len, uint32_t count)
{
	return (struct rfb_hdr){
	    .type = type, .len = (uint32_t)len, .seq = ++c->seq, .count = count};
}

/* HELLO for @domain: the WELCOME's status (its msg into @msg). */
static uint32_t cl_hello(struct cl *c, const char *domain, char *msg, size_t msglen)
{
	struct rfb_hello h = {.version = RFB_VERSION, .numa = -1};
	struct rfb_welcome w;
	ssize_t n;

	h.h = hdr(c, RFB_HELLO, sizeof(h), 0);
	snprintf(h.domain, sizeof(h.domain), "%s", domain);
	n = cl_xfer(c, &h, sizeof(h), &w, sizeof(w), &c->store);
	assert_int_equal(n, sizeof(w));
	assert_int_equal(w.h.type, RFB_WELCOME);
	assert_int_equal(w.h.seq, h.h.seq);
	if (msg)
		snprintf(msg, msglen, "%s", w.msg);
	if (!w.status) {
		assert_true(c->store >= 0);
		c->id = w.client_id;
		c->store_pages = w.store_pages;
	} else {
		assert_int_equal(c->store, -1);
	}
	return w.status;
}

static void cl_join(struct cl *c, const struct daemon *dm, const char *domain)
{
	char msg[RFB_MSG_MAX];

	assert_int_equal(cl_connect(c, dm), 0);
	if (cl_hello(c, domain, msg, sizeof(msg)))
		fail_msg("HELLO %s: %s", domain, msg);
}

static void cl_lookup(struct cl *c, const uint64_t *hash, uint32_t n, struct rfb_lookup_ent *ent)
{
	static _Alignas(8) uint8_t req[sizeof(struct rfb_hdr) + 8 * RFB_LOOKUP_MAX],
	    rep[sizeof(struct rfb_hdr) + 8 * RFB_LOOKUP_MAX];
	size_t len = sizeof(struct rfb_hdr) + 8 * (size_t)n;
	struct rfb_hdr h = hdr(c, RFB_LOOKUP, len, n), r;

	memcpy(req, &h, sizeof(h));
	memcpy(req + sizeof(h), hash, 8 * (size_t)n);
	assert_int_equal(cl_xfer(c, req, len, rep, sizeof(rep), NULL), len);
	memcpy(&r, rep, sizeof(r));
	assert_int_equal(r.type, RFB_LOOKUP_R);
	assert_int_equal(r.count, n);
	memcpy(ent, rep + sizeof(r), n * sizeof(*ent));
}

static struct rfb_lookup_ent lookup1(struct cl *c, uint64_t hash)
{
	struct rfb_lookup_ent e;

	cl_lookup(c, &hash, 1, &e);
	return e;
}

static struct rfb_insert_ent insert1(struct cl *c, uint64_t hash, const void *page)
{
	static _Alignas(8) uint8_t req[sizeof(struct rfb_hdr) + 8 + PG];
	uint8_t rep[64];
	struct rfb_hdr h = hdr(c, RFB_INSERT, sizeof(req), 1), r;
	struct rfb_insert_ent e;

	memcpy(req, &h, sizeof(h));
	memcpy(req + sizeof(h), &hash, 8);
	memcpy(req + sizeof(h) + 8, page, PG);
	assert_int_equal(cl_xfer(c, req, sizeof(req), rep, sizeof(rep), NULL),
			 sizeof(r) + sizeof(e));
	memcpy(&r, rep, sizeof(r));
	assert_int_equal(r.type, RFB_INSERT_R);
	memcpy(&e, rep + sizeof(r), sizeof(e));
	return e;
}

static struct rfb_put_r put1(struct cl *c, uint32_t pg)
{
	struct {
		struct rfb_hdr h;
		uint32_t pg;
	} req = {hdr(c, RFB_PUT, sizeof(req), 1), pg};
	struct rfb_put_r r;

	assert_int_equal(cl_xfer(c, &req, sizeof(req), &r, sizeof(r), NULL), sizeof(r));
	assert_int_equal(r.h.type, RFB_PUT_R);
	return r;
}

/* Send raw bytes: expect RFB_ERROR naming @cause, then the connection
 * closed. */
static void expect_error(struct cl *c, const void *msg, size_t len, const char *cause)
{
	struct rfb_error e;
	char byte;

	assert_int_equal(cl_xfer(c, msg, len, &e, sizeof(e), NULL), sizeof(e));
	assert_int_equal(e.h.type, RFB_ERROR);
	assert_int_equal(e.status, EPROTO);
	assert_non_null(strstr(e.msg, "client "));
	if (!strstr(e.msg, cause))
		fail_msg("error \"%s\" does not say \"%s\"", e.msg, cause);
	assert_int_equal(recv(c->fd, &byte, 1, 0), 0); /* closed */
}

static void fill_page(uint8_t *p, uint32_t seed)
{
	for (size_t i = 0; i < PG; i += 4) {
		uint32_t v = seed * 2654435761u + (uint32_t)i * 40503u + 1;

		memcpy(p + i, &v, 4);
	}
}

static uint64_t resident(int store)
{
	struct stat sb;

	assert_int_equal(fstat(store, &sb), 0);
	return (uint64_t)sb.st_blocks * 512;
}

/* Map store page @pg MAP_PRIVATE and compare it with @want. */
static void expect_page(int store, uint32_t pg, const void *want)
{
	void *p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, store, (off_t)pg * PG);

	assert_true(p != MAP_FAILED);
	assert_memory_equal(p, want, PG);
	munmap(p, PG);
}

/* Poll @cond for up to 5 s. */
#define WAIT_FOR(cond)                                                                             \
	do {                                                                                       \
		for (int i_ = 0; i_ < 500 && !(cond); i_++)                                        \
			usleep(10000);                                                             \
		assert_true(cond);                                                                 \
	} while (0)

/* ---- tests over the socket -------------------------------------------------------- */

static void test_welcome_fd_is_read_only(void **state)
{
	struct cl c;
	struct stat sb;
	char path[64];
	void *p;
	int fd;

	(void)state;
	cl_join(&c, &pd, "ro");
	assert_true(c.store_pages > 0);
	assert_int_equal(fstat(c.store, &sb), 0);
	assert_int_equal((uint64_t)sb.st_size, c.store_pages * PG);
	assert_int_equal(sb.st_mode & 0777, 0400);
	/* No writable shared mapping, now or by mprotect later. */
	assert_true(mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, c.store, 0) == MAP_FAILED);
	assert_int_equal(errno, EACCES);
	p = mmap(NULL, PG, PROT_READ, MAP_SHARED, c.store, 0);
	assert_true(p != MAP_FAILED);
	assert_int_equal(mprotect(p, PG, PROT_READ | PROT_WRITE), -1);
	assert_int_equal(errno, EACCES);
	assert_int_equal(madvise(p, PG, MADV_REMOVE), -1);
	assert_int_equal(errno, EACCES);
	munmap(p, PG);
	/* No write, punch, truncate or seal. */
	assert_int_equal(write(c.store, "x", 1), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(pwrite(c.store, "x", 1, 0), -1);
	assert_int_equal(fallocate(c.store, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, PG), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(ftruncate(c.store, 0), -1);
	assert_int_equal(fcntl(c.store, F_ADD_SEALS, F_SEAL_WRITE), -1);
	/* A private mapping is the client's own copy-on-write. */
	p = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, c.store, 0);
	assert_true(p != MAP_FAILED);
	munmap(p, PG);
	/* Reopening writable: denied by the mode to any uid but the owner's
	 * and root's (CAP_DAC_OVERRIDE). A child of another uid tries. */
	if (geteuid() == 0) {
		pid_t pid = fork();
		int st;

		if (pid == 0) {
			if (setgroups(0, NULL) || setresgid(65534, 65534, 65534) ||
			    setresuid(65534, 65534, 65534))
				_exit(10);
			snprintf(path, sizeof(path), "/proc/self/fd/%d", c.store);
			fd = open(path, O_RDWR);
			if (fd >= 0 || errno != EACCES)
				_exit(11);
			if (fchmod(c.store, 0666) == 0 || errno != EPERM)
				_exit(12);
			if (mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_SHARED, c.store, 0) !=
			    MAP_FAILED)
				_exit(13);
			_exit(0);
		}
		waitpid(pid, &st, 0);
		assert_true(WIFEXITED(st));
		assert_int_equal(WEXITSTATUS(st), 0);
	}
	cl_close(&c);
}

/* Two clients of @domain and a page of @seed: its hash. */
static uint64_t two_and_a_page(struct cl *a, struct cl *b, const char *domain, uint8_t *page,
			       uint32_t seed)
{
	fill_page(page, seed);
	cl_join(a, &pd, domain);
	cl_join(b, &pd, domain);
	return XXH3_64bits(page, PG);
}

static void test_twin_insert_hit(void **state)
{
	static uint8_t page[PG], copy[PG];
	struct cl a, b;
	struct rfb_lookup_ent e;
	struct rfb_insert_ent ie;
	uint64_t h;
	uint8_t *pa, *pb;

	(void)state;
	h = two_and_a_page(&a, &b, "twin", page, 1);
	assert_int_not_equal(a.id, b.id);
	e = lookup1(&a, h);
	assert_int_equal(e.status, RFB_MISS);
	e = lookup1(&a, h); /* the same client again: refreshed, still a miss */
	assert_int_equal(e.status, RFB_MISS);
	e = lookup1(&b, h);
	assert_int_equal(e.status, RFB_TWIN);
	ie = insert1(&b, h, page);
	assert_int_equal(ie.status, 0);
	e = lookup1(&a, h);
	assert_int_equal(e.status, RFB_HIT);
	assert_int_equal(e.pg, ie.pg);
	/* Both map it privately and read the same bytes; a write is a copy. */
	pa = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, a.store, (off_t)e.pg * PG);
	pb = mmap(NULL, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, b.store, (off_t)e.pg * PG);
	assert_true(pa != MAP_FAILED && pb != MAP_FAILED);
	assert_memory_equal(pa, page, PG);
	assert_memory_equal(pb, page, PG);
	pa[0] ^= 0xff;
	assert_memory_equal(pb, page, PG);
	munmap(pa, PG);
	munmap(pb, PG);
	assert_true(resident(a.store) >= PG);
	/* The same bytes inserted again are the same page. */
	memcpy(copy, page, PG);
	ie = insert1(&a, h, copy);
	assert_int_equal(ie.status, 0);
	assert_int_equal(ie.pg, e.pg);
	assert_non_null(strstr(ctl(&pd, "{\"execute\":\"query-domains\"}"),
			       "\"domain\":\"twin\",\"node\":-1,\"clients\":2,"));
	assert_non_null(strstr(ctl(&pd, "{\"execute\":\"query-domains\"}"), "\"shared-pages\":1,"));
	cl_close(&a);
	cl_close(&b);
}

static void test_insert_bad_hash_files_nothing(void **state)
{
	static uint8_t page[PG];
	struct cl a, b;
	struct rfb_insert_ent ie;
	uint64_t h, before;

	(void)state;
	h = two_and_a_page(&a, &b, "badhash", page, 2);
	before = resident(a.store);
	ie = insert1(&a, h ^ 1, page);
	assert_int_equal(ie.status, EBADMSG);
	assert_int_equal(resident(a.store), before);
	/* Neither the false hash nor the true one finds anything. */
	assert_int_equal(lookup1(&b, h ^ 1).status, RFB_MISS);
	assert_int_equal(lookup1(&b, h).status, RFB_MISS);
	assert_non_null(strstr(ctl(&pd, "{\"execute\":\"query-domains\"}"), "\"bad-hash\":1,"));
	cl_close(&a);
	cl_close(&b);
}

/* kB of anonymous memory in @pid's Pss (smaps_rollup's Pss_Anon). */
static long pss_anon_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = -1;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "r");
	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pss_Anon: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/*
 * A full INSERT (32 pages: 128 KiB) touches the broker's receive buffer; the
 * broker gives those pages back a second after the last datagram that big,
 * while small ones (LOOKUPs) keep coming. Without that, every broker kept
 * 128 KiB more than its tables from its first INSERT on.
 */
static void test_receive_buffer_given_back(void **state)
{
	enum { N = RFB_INSERT_MAX };
	static _Alignas(8) uint8_t req[sizeof(struct rfb_hdr) + N * (8 + PG)];
	uint8_t rep[sizeof(struct rfb_hdr) + N * sizeof(struct rfb_insert_ent)];
	struct rfb_hdr h;
	struct cl a, b;
	uint8_t page[PG];
	long full, later = -1;

	(void)state;
	two_and_a_page(&a, &b, "rbuf", page, 3);
	h = hdr(&a, RFB_INSERT, sizeof(req), N);
	memcpy(req, &h, sizeof(h));
	for (unsigned int i = 0; i < N; i++) {
		uint64_t bad = i; /* not the pages' hashes: nothing is stored */

		memcpy(req + sizeof(h) + 8 * i, &bad, 8);
		memset(req + sizeof(h) + 8 * N + (size_t)i * PG, 0x5a + (int)i, PG);
	}
	assert_int_equal(cl_xfer(&a, req, sizeof(req), rep, sizeof(rep), NULL), sizeof(rep));
	full = pss_anon_kb(pd.pid);
	for (int t = 0; t < 40 && later < 0; t++) {
		long kb;

		usleep(100 * 1000);
		lookup1(&b, 0x1234 + (uint64_t)t);
		kb = pss_anon_kb(pd.pid);
		if (kb <= full - 96)
			later = kb;
	}
	printf("  broker Pss_Anon after a full INSERT %ld kB, then %ld kB\n", full, later);
	assert_true(later >= 0);
	cl_close(&a);
	cl_close(&b);
}

static void test_malformed_closes_and_others_served(void **state)
{
	static _Alignas(8) uint8_t buf[sizeof(struct rfb_hdr) + 8 * (RFB_LOOKUP_MAX + 1)];
	struct rfb_hdr h;
	struct rfb_hello hello = {.version = RFB_VERSION, .numa = -1};
	struct cl c;
	int errors = log_count(&pd, "protocol error");

	(void)state;
	/* Garbage. */
	assert_int_equal(cl_connect(&c, &pd), 0);
	for (size_t i = 0; i < 37; i++)
		buf[i] = (uint8_t)(i * 77 + 5);
	expect_error(&c, buf, 37, "unknown message type");
	cl_close(&c);
	/* Shorter than a header. */
	assert_int_equal(cl_connect(&c, &pd), 0);
	expect_error(&c, "abc", 3, "shorter than the header");
	cl_close(&c);
	/* A request before HELLO. */
	assert_int_equal(cl_connect(&c, &pd), 0);
	h = (struct rfb_hdr){RFB_LOOKUP, sizeof(h) + 8, 1, 1};
	memcpy(buf, &h, sizeof(h));
	expect_error(&c, buf, sizeof(h) + 8, "LOOKUP before HELLO");
	cl_close(&c);
	/* A truncated batch: count 4, three hashes (hdr.len says so too). */
	cl_join(&c, &pd, "bad");
	h = (struct rfb_hdr){RFB_LOOKUP, sizeof(h) + 24, 7, 4};
	memcpy(buf, &h, sizeof(h));
	expect_error(&c, buf, sizeof(h) + 24, "count 4 makes 48");
	cl_close(&c);
	/* hdr.len not the datagram's length. */
	cl_join(&c, &pd, "bad");
	h = (struct rfb_hdr){RFB_LOOKUP, sizeof(h) + 32, 7, 4};
	memcpy(buf, &h, sizeof(h));
	expect_error(&c, buf, sizeof(h) + 24, "hdr.len 48, but the datagram is 40");
	cl_close(&c);
	/* A count over the maximum, and 0. */
	cl_join(&c, &pd, "bad");
	h = (struct rfb_hdr){RFB_LOOKUP, sizeof(h) + 8 * (RFB_LOOKUP_MAX + 1), 7,
			     RFB_LOOKUP_MAX + 1};
	memcpy(buf, &h, sizeof(h));
	expect_error(&c, buf, h.len, "count 513");
	cl_close(&c);
	cl_join(&c, &pd, "bad");
	h = (struct rfb_hdr){RFB_PUT, sizeof(h), 7, 0};
	expect_error(&c, &h, sizeof(h), "PUT: count 0");
	cl_close(&c);
	/* HELLO twice. */
	cl_join(&c, &pd, "bad");
	hello.h = (struct rfb_hdr){RFB_HELLO, sizeof(hello), 9, 0};
	strcpy(hello.domain, "bad");
	expect_error(&c, &hello, sizeof(hello), "HELLO twice");
	cl_close(&c);
	/* A domain name without its NUL. */
	assert_int_equal(cl_connect(&c, &pd), 0);
	memset(hello.domain, 'a', sizeof(hello.domain));
	expect_error(&c, &hello, sizeof(hello), "not NUL-terminated");
	cl_close(&c);
	/* A reply type sent as a request. */
	cl_join(&c, &pd, "bad");
	h = (struct rfb_hdr){RFB_WELCOME, sizeof(h), 7, 0};
	expect_error(&c, &h, sizeof(h), "unknown message type 0x101");
	cl_close(&c);
	assert_int_equal(log_count(&pd, "protocol error") - errors, 10);
	/* The broker still serves. */
	cl_join(&c, &pd, "bad");
	assert_int_equal(lookup1(&c, 42).status, RFB_MISS);
	cl_close(&c);
}

static void test_hello_refusals(void **state)
{
	struct rfb_hello hello = {.version = RFB_VERSION + 1, .numa = -1};
	struct rfb_welcome w;
	char msg[RFB_MSG_MAX];
	struct cl c;
	char byte;

	(void)state;
	assert_int_equal(cl_connect(&c, &pd), 0);
	hello.h = (struct rfb_hdr){RFB_HELLO, sizeof(hello), 1, 0};
	strcpy(hello.domain, "v");
	assert_int_equal(cl_xfer(&c, &hello, sizeof(hello), &w, sizeof(w), NULL), sizeof(w));
	assert_int_equal(w.status, EPROTO);
	assert_non_null(strstr(w.msg, "version 2; this broker speaks 1"));
	assert_int_equal(recv(c.fd, &byte, 1, 0), 0);
	cl_close(&c);
	assert_int_equal(cl_connect(&c, &pd), 0);
	assert_int_equal(cl_hello(&c, "no spaces", msg, sizeof(msg)), EINVAL);
	assert_non_null(strstr(msg, "domain name \"no spaces\""));
	cl_close(&c);
	assert_int_equal(cl_connect(&c, &pd), 0);
	assert_int_equal(cl_hello(&c, "", msg, sizeof(msg)), EINVAL);
	cl_close(&c);
}

static void test_put_not_held_refused(void **state)
{
	static uint8_t page[PG];
	struct cl a, b;
	struct rfb_insert_ent ie;
	struct rfb_lookup_ent e;
	struct rfb_put_r r;
	uint64_t h, res;

	(void)state;
	h = two_and_a_page(&a, &b, "put", page, 3);
	ie = insert1(&a, h, page);
	assert_int_equal(ie.status, 0);
	res = resident(a.store);
	/* b does not hold it: refused, a's page untouched. */
	r = put1(&b, ie.pg);
	assert_int_equal(r.released, 0);
	assert_int_equal(r.refused, 1);
	r = put1(&b, 0xfffffff0u); /* beyond the store */
	assert_int_equal(r.refused, 1);
	assert_int_equal(resident(a.store), res);
	expect_page(a.store, ie.pg, page);
	assert_int_equal(lookup1(&b, h).status, RFB_HIT);
	/* A hold is once per client: two HITs, one PUT releases, the next
	 * is refused. */
	e = lookup1(&b, h);
	assert_int_equal(e.status, RFB_HIT);
	r = put1(&b, e.pg);
	assert_int_equal(r.released, 1);
	r = put1(&b, e.pg);
	assert_int_equal(r.refused, 1);
	expect_page(a.store, ie.pg, page);
	/* The last hold goes: punched, out of the index. */
	r = put1(&a, ie.pg);
	assert_int_equal(r.released, 1);
	assert_true(resident(a.store) < res);
	assert_int_equal(lookup1(&b, h).status, RFB_MISS);
	cl_close(&a);
	cl_close(&b);
}

/* A child that joins @domain, inserts @n pages (seeds @seed..) and
 * reports their numbers on @out, then waits to be killed. */
static pid_t holder_child(const char *domain, uint32_t seed, int n, int out, bool garbage_after)
{
	pid_t pid = fork();

	if (pid == 0) {
		static uint8_t page[PG];
		struct cl c;

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		cl_join(&c, &pd, domain);
		for (int i = 0; i < n; i++) {
			struct rfb_insert_ent ie;

			fill_page(page, seed + (uint32_t)i);
			ie = insert1(&c, XXH3_64bits(page, PG), page);
			if (ie.status)
				_exit(3);
			if (write(out, &ie.pg, 4) != 4)
				_exit(4);
		}
		if (garbage_after) {
			char junk[20] = "junk";

			send(c.fd, junk, sizeof(junk), 0);
		}
		pause();
		_exit(0);
	}
	return pid;
}

static void test_sigkill_drops_holds(void **state)
{
	static uint8_t page[PG];
	int p[2], st;
	uint32_t pgs[64];
	struct cl a;
	struct rfb_lookup_ent e;
	uint64_t res, h;
	pid_t pid;
	char line[64];

	(void)state;
	assert_int_equal(pipe(p), 0);
	pid = holder_child("kill", 1000, 64, p[1], false);
	for (int i = 0; i < 64; i++)
		assert_int_equal(read(p[0], &pgs[i], 4), 4);
	/* a holds the first of the child's pages too. */
	cl_join(&a, &pd, "kill");
	fill_page(page, 1000);
	h = XXH3_64bits(page, PG);
	e = lookup1(&a, h);
	assert_int_equal(e.status, RFB_HIT);
	assert_int_equal(e.pg, pgs[0]);
	res = resident(a.store);
	assert_true(res >= 64 * PG);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	/* Its 63 pages no one else holds are punched, a's is intact. */
	WAIT_FOR(resident(a.store) <= res - 63 * PG);
	expect_page(a.store, e.pg, page);
	snprintf(line, sizeof(line), "(pid %d, uid", (int)pid);
	WAIT_FOR(log_count(&pd, line) >= 1);
	assert_non_null(strstr(slurp(pd.log), "64 holds dropped, 63 pages punched"));
	cl_close(&a);
	close(p[0]);
	close(p[1]);
}

static void test_closed_by_broker_keeps_holds_while_alive(void **state)
{
	static uint8_t page[PG];
	int p[2], st;
	uint32_t pgs[8];
	struct cl a;
	uint64_t res;
	pid_t pid;
	char line[96];

	(void)state;
	cl_join(&a, &pd, "orphan");
	assert_int_equal(pipe(p), 0);
	pid = holder_child("orphan", 2000, 8, p[1], true);
	for (int i = 0; i < 8; i++)
		assert_int_equal(read(p[0], &pgs[i], 4), 4);
	snprintf(line, sizeof(line), "(pid %d, uid %u): unknown message type", (int)pid,
		 (unsigned)getuid());
	WAIT_FOR(log_count(&pd, line) == 1);
	WAIT_FOR(strstr(slurp(pd.log), "holds kept until the process exits"));
	/* Its mappings are live: nothing punched while it runs. */
	res = resident(a.store);
	assert_true(res >= 8 * PG);
	usleep(100000);
	assert_int_equal(resident(a.store), res);
	fill_page(page, 2000);
	assert_int_equal(lookup1(&a, XXH3_64bits(page, PG)).status, RFB_HIT);
	kill(pid, SIGKILL);
	waitpid(pid, &st, 0);
	WAIT_FOR(resident(a.store) <= res - 7 * PG);
	expect_page(a.store, pgs[0], page);
	cl_close(&a);
	close(p[0]);
	close(p[1]);
}

static void test_10000_connections(void **state)
{
	unsigned long long conns0;
	const char *conns;
	int before;

	(void)state;
	WAIT_FOR(strstr(ctl(&pd, "{\"execute\":\"query-broker\"}"), "\"connected\":0,"));
	usleep(100000); /* the control connection closed too */
	before = fd_count(pd.pid);
	conns = strstr(ctl(&pd, "{\"execute\":\"query-broker\"}"), "\"connections\":");
	assert_non_null(conns);
	conns0 = strtoull(conns + 14, NULL, 10);
	for (int i = 0; i < 10000; i++) {
		struct cl c;

		assert_int_equal(cl_connect(&c, &pd), 0);
		if (i % 3 == 1) {
			assert_int_equal(cl_hello(&c, "many", NULL, 0), 0);
		} else if (i % 3 == 2) {
			assert_int_equal(cl_hello(&c, "many", NULL, 0), 0);
			assert_int_equal(lookup1(&c, (uint64_t)i).status, RFB_MISS);
		}
		cl_close(&c);
	}
	WAIT_FOR(strstr(ctl(&pd, "{\"execute\":\"query-broker\"}"), "\"connected\":0,"));
	WAIT_FOR(fd_count(pd.pid) == before);
	conns = strstr(ctl(&pd, "{\"execute\":\"query-broker\"}"), "\"connections\":");
	assert_true(strtoull(conns + 14, NULL, 10) >= conns0 + 10000);
	{
		struct cl c;

		cl_join(&c, &pd, "many");
		assert_int_equal(lookup1(&c, 7).status, RFB_MISS);
		cl_close(&c);
	}
}

static void test_emfile_survived(void **state)
{
	struct daemon dm;
	struct cl c[100];
	int ok = 0;

	(void)state;
	daemon_start(&dm, "emfile", 40, "--private", "--store-size", "16M", NULL);
	for (int i = 0; i < 100; i++) {
		assert_int_equal(cl_connect(&c[i], &dm), 0);
		if (i < 50) {
			struct rfb_hello h = {.version = RFB_VERSION, .numa = -1};
			struct rfb_welcome w;

			h.h = hdr(&c[i], RFB_HELLO, sizeof(h), 0);
			strcpy(h.domain, "e");
			ok += cl_xfer(&c[i], &h, sizeof(h), &w, sizeof(w), &c[i].store) ==
			      (ssize_t)sizeof(w);
		}
	}
	assert_true(ok > 0 && ok < 50); /* some served, the rest closed */
	WAIT_FOR(log_count(&dm, "out of descriptors") >= 1);
	for (int i = 0; i < 100; i++)
		cl_close(&c[i]);
	WAIT_FOR(strstr(ctl(&dm, "{\"execute\":\"query-broker\"}"), "\"connected\":0,"));
	cl_join(&c[0], &dm, "e");
	assert_int_equal(lookup1(&c[0], 1).status, RFB_MISS);
	cl_close(&c[0]);
	daemon_stop(&dm);
}

/* Two domains, two uids: each child may join its own domain only, and
 * their equal pages never meet. */
static void tenant(struct daemon *dm, uid_t uid, const char *mine, const char *other, int go,
		   int done)
{
	static uint8_t page[PG];
	char msg[RFB_MSG_MAX], want[RFB_MSG_MAX];
	struct cl c;
	uint64_t h;
	char b;

	if (setgroups(0, NULL) || setresgid(uid, uid, uid) || setresuid(uid, uid, uid))
		_exit(10);
	prctl(PR_SET_PDEATHSIG, SIGKILL); /* after: a change of uid clears it */
	if (cl_connect(&c, dm) || cl_hello(&c, other, msg, sizeof(msg)) != EACCES)
		_exit(11);
	snprintf(want, sizeof(want), "domain \"%s\": uid %u (gid %u) not allowed", other, uid, uid);
	if (strcmp(msg, want))
		_exit(12);
	cl_close(&c);
	if (cl_connect(&c, dm) || cl_hello(&c, mine, msg, sizeof(msg)))
		_exit(13);
	fill_page(page, 77); /* the same content in both */
	h = XXH3_64bits(page, PG);
	if (read(go, &b, 1) != 1)
		_exit(14);
	/* Whatever the other tenant did: never a TWIN or a HIT. */
	if (lookup1(&c, h).status != RFB_MISS || lookup1(&c, h).status != RFB_MISS)
		_exit(15);
	if (insert1(&c, h, page).status)
		_exit(16);
	if (write(done, "x", 1) != 1)
		_exit(17);
	pause();
	_exit(0);
}

/* One byte from @fd within 10 s (a tenant that failed never sends it). */
static void wait_byte(int fd)
{
	struct pollfd p = {.fd = fd, .events = POLLIN};
	char b;

	assert_int_equal(poll(&p, 1, 10000), 1);
	assert_int_equal(read(fd, &b, 1), 1);
}

static void test_two_domains_two_uids(void **state)
{
	struct daemon dm;
	char conf[128], text[8192];
	int go[2], done[2], st;
	pid_t t1, t2;
	FILE *f;

	(void)state;
	if (geteuid() != 0)
		skip();
	snprintf(conf, sizeof(conf), "%s/domains.conf", dir);
	f = fopen(conf, "w");
	assert_non_null(f);
	fprintf(f, "# tenants\nblue uid=65534\ngreen uid=4243  # another\n"
		   "root-cg cgroup=/nope uid=0\n");
	fclose(f);
	daemon_start(&dm, "tenants", 0, "--domains", conf, NULL);
	assert_int_equal(pipe(go), 0);
	assert_int_equal(pipe(done), 0);
	t1 = fork();
	if (t1 == 0)
		tenant(&dm, 65534, "blue", "green", go[0], done[1]);
	t2 = fork();
	if (t2 == 0)
		tenant(&dm, 4243, "green", "blue", go[0], done[1]);
	/* One after the other: the second looks up what the first inserted. */
	assert_int_equal(write(go[1], "1", 1), 1);
	wait_byte(done[0]);
	assert_int_equal(write(go[1], "2", 1), 1);
	wait_byte(done[0]);
	snprintf(text, sizeof(text), "%s", ctl(&dm, "{\"execute\":\"query-domains\"}"));
	assert_non_null(strstr(text, "\"domain\":\"blue\",\"node\":-1,\"clients\":1,"));
	assert_non_null(strstr(text, "\"domain\":\"green\",\"node\":-1,\"clients\":1,"));
	assert_int_equal(log_count(&dm, "not allowed"), 2);
	kill(t1, SIGKILL);
	kill(t2, SIGKILL);
	waitpid(t1, &st, 0);
	waitpid(t2, &st, 0);
	daemon_stop(&dm);
	close(go[0]);
	close(go[1]);
	close(done[0]);
	close(done[1]);
}

static void test_bad_conf_names_line(void **state)
{
	char conf[128], out[4096];
	int p[2], st;
	ssize_t n;
	pid_t pid;
	FILE *f;

	(void)state;
	snprintf(conf, sizeof(conf), "%s/bad.conf", dir);
	f = fopen(conf, "w");
	assert_non_null(f);
	fprintf(f, "ok uid=1\nworse uid=x\n");
	fclose(f);
	assert_int_equal(pipe(p), 0);
	pid = fork();
	if (pid == 0) {
		dup2(p[1], 2);
		execl(daemon_bin, daemon_bin, "--socket", "/nonexistent/s", "--domains", conf,
		      (char *)NULL);
		_exit(127);
	}
	close(p[1]);
	for (size_t len = 0;; len += (size_t)n) {
		n = read(p[0], out + len, sizeof(out) - 1 - len);
		if (n <= 0) {
			out[len] = 0;
			break;
		}
	}
	close(p[0]);
	waitpid(pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	if (!strstr(out, "bad.conf:2: domain \"worse\": rule \"uid=x\""))
		fail_msg("ramfoldd said: %s", out);
}

static void test_metrics_file_and_port(void **state)
{
	struct daemon dm;
	static const char get[] = "GET /metrics HTTP/1.0\r\n\r\n";
	char file[128], port[16], want[128], reply[8192];
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int p = 20000 + getpid() % 20000, fd;
	size_t n = 0;
	ssize_t r;
	struct cl c;

	(void)state;
	snprintf(file, sizeof(file), "%s/metrics.prom", dir);
	snprintf(port, sizeof(port), "%d", p);
	daemon_start(&dm, "metrics", 0, "--private", "--metrics-file", file, "--metrics-port", port,
		     NULL);
	cl_join(&c, &dm, "m");
	snprintf(want, sizeof(want), "ramfoldd_clients{domain=\"m\",node=\"-1\"} 1\n");
	WAIT_FOR(strstr(slurp(file), want));
	WAIT_FOR(strstr(slurp(file), "ramfoldd_connected 1\n"));
	fd = socket(AF_INET, SOCK_STREAM, 0);
	a.sin_port = htons((uint16_t)p);
	assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_true(write(fd, get, strlen(get)) == (ssize_t)strlen(get));
	while (n + 1 < sizeof(reply) && (r = read(fd, reply + n, sizeof(reply) - n - 1)) > 0)
		n += (size_t)r;
	reply[n] = 0;
	close(fd);
	assert_non_null(strstr(reply, "HTTP/1.0 200 OK"));
	assert_non_null(strstr(reply, want));
	cl_close(&c);
	daemon_stop(&dm);
	assert_int_equal(access(file, F_OK), -1); /* removed at exit */
}

/* systemd's convention: the socket as fd 3, LISTEN_PID and LISTEN_FDS. */
static pid_t activate(const char *path, int type, int log)
{
	struct sockaddr_un a = {.sun_family = AF_UNIX};
	int fd = socket(AF_UNIX, type, 0);
	pid_t pid;

	snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
	unlink(path);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 16), 0);
	pid = fork();
	if (pid == 0) {
		char env[32];

		prctl(PR_SET_PDEATHSIG, SIGKILL);
		dup2(log, 2); /* first: log may be fd 3 */
		dup2(fd, 3);
		snprintf(env, sizeof(env), "%d", (int)getpid());
		setenv("LISTEN_PID", env, 1);
		setenv("LISTEN_FDS", "1", 1);
		execl(daemon_bin, daemon_bin, "--private", "--socket", "/nonexistent/x",
		      (char *)NULL);
		_exit(127);
	}
	close(fd);
	return pid;
}

static void test_socket_activation(void **state)
{
	struct daemon dm = {0};
	int st, log;

	(void)state;
	snprintf(dm.sock, sizeof(dm.sock), "%s/act.sock", dir);
	snprintf(dm.log, sizeof(dm.log), "%s/act.log", dir);
	log = open(dm.log, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	dm.pid = activate(dm.sock, SOCK_SEQPACKET, log);
	{
		struct cl c;

		/* The listening socket exists before the daemon: connect
		 * waits in its backlog until the daemon accepts. */
		cl_join(&c, &dm, "act");
		assert_int_equal(lookup1(&c, 3).status, RFB_MISS);
		cl_close(&c);
	}
	assert_non_null(strstr(slurp(dm.log), "socket from systemd"));
	daemon_stop(&dm);
	assert_int_equal(access(dm.sock, F_OK), 0); /* systemd's to remove */
	/* Not what ramfoldd.socket makes: refused by name. */
	dm.pid = activate(dm.sock, SOCK_STREAM, log);
	waitpid(dm.pid, &st, 0);
	assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 1);
	assert_non_null(strstr(slurp(dm.log), "fd 3 is not a SOCK_SEQPACKET socket"));
	close(log);
}

/* ---- the core, directly --------------------------------------------------------- */

static uint64_t fake_now;
static uint64_t fake_clock(void)
{
	return fake_now;
}
static void quiet(const char *line)
{
	(void)line;
}

static size_t core_req(struct broker *b, struct bclient *c, uint32_t type, const void *body,
		       size_t blen, uint32_t count, void *rep)
{
	static _Alignas(8) uint8_t msg[RFB_DGRAM_MAX];
	struct rfb_hdr h = {type, (uint32_t)(sizeof(h) + blen), 1, count};
	int fd;
	bool close_after;

	memcpy(msg, &h, sizeof(h));
	memcpy(msg + sizeof(h), body, blen);
	return broker_handle(b, c, msg, sizeof(h) + blen, rep, &fd, &close_after);
}

static uint32_t core_lookup(struct broker *b, struct bclient *c, uint64_t h)
{
	static _Alignas(8) uint8_t rep[BROKER_REPLY_MAX];
	struct rfb_lookup_ent e;

	core_req(b, c, RFB_LOOKUP, &h, 8, 1, rep);
	memcpy(&e, rep + sizeof(struct rfb_hdr), sizeof(e));
	return e.status;
}

static struct bclient *core_join(struct broker *b, const char *domain)
{
	static _Alignas(8) uint8_t rep[BROKER_REPLY_MAX];
	struct broker_peer peer = {.uid = getuid(), .gid = getgid(), .pid = getpid()};
	struct bclient *c = broker_connect(b, &peer);
	struct rfb_hello h = {.version = RFB_VERSION, .numa = -1};
	struct rfb_welcome w;
	bool close_after;
	int fd;

	h.h = (struct rfb_hdr){RFB_HELLO, sizeof(h), 1, 0};
	strcpy(h.domain, domain);
	broker_handle(b, c, &h, sizeof(h), rep, &fd, &close_after);
	memcpy(&w, rep, sizeof(w));
	assert_int_equal(w.status, 0);
	assert_true(fd >= 0);
	return c;
}

/* A broker of 64-page stores on the fake clock, any domain for this uid
 * (@d, kept: it must outlive the broker). */
static struct broker *core_broker(const struct domains *d)
{
	struct broker_conf conf = {.domains = d,
				   .store_pages = 64,
				   .nr_nodes = 1,
				   .secret = 1,
				   .now_ms = fake_clock,
				   .log = quiet};

	return broker_new(&conf);
}

static void test_candidates_expire_and_leave(void **state)
{
	struct domains d = {.private_uid = getuid()};
	struct broker *b = core_broker(&d);
	struct bclient *x, *y, *z;

	(void)state;
	fake_now = 1000;
	x = core_join(b, "c");
	y = core_join(b, "c");
	assert_int_equal(core_lookup(b, x, 5), RFB_MISS);
	assert_int_equal(core_lookup(b, y, 5), RFB_TWIN);
	/* Not looked up again for the TTL: forgotten, y files its own. */
	fake_now += RFB_CAND_TTL_MS;
	assert_int_equal(core_lookup(b, y, 5), RFB_MISS);
	assert_int_equal(core_lookup(b, x, 5), RFB_TWIN);
	/* A refresh keeps it. */
	fake_now += RFB_CAND_TTL_MS - 1;
	assert_int_equal(core_lookup(b, y, 5), RFB_MISS);
	fake_now += RFB_CAND_TTL_MS - 1;
	assert_int_equal(core_lookup(b, x, 5), RFB_TWIN);
	/* It leaves with its client. */
	broker_disconnect(b, y);
	z = core_join(b, "c");
	assert_int_equal(core_lookup(b, z, 5), RFB_MISS);
	assert_int_equal(core_lookup(b, x, 5), RFB_TWIN);
	broker_disconnect(b, x);
	broker_disconnect(b, z);
	broker_free(b);
}

/* Slots are per store: the first client of each domain takes slot 1 of
 * its own store. A candidate is never a TWIN in another domain, and a
 * client leaving one domain frees its slot there only: the candidates of
 * the other domain's client with the same slot number stay live. */
static void test_candidate_slots_per_domain(void **state)
{
	struct domains d = {.private_uid = getuid()};
	struct broker *b = core_broker(&d);
	struct bclient *x, *y, *z;

	(void)state;
	fake_now = 1000;
	x = core_join(b, "red");
	y = core_join(b, "blue");
	assert_int_equal(core_lookup(b, x, 5), RFB_MISS);
	assert_int_equal(core_lookup(b, y, 5), RFB_MISS); /* not red's */
	assert_int_equal(core_lookup(b, y, 6), RFB_MISS);
	broker_disconnect(b, x);
	z = core_join(b, "blue");
	assert_int_equal(core_lookup(b, z, 5), RFB_TWIN); /* y's, still live */
	assert_int_equal(core_lookup(b, z, 6), RFB_TWIN);
	x = core_join(b, "red");
	assert_int_equal(core_lookup(b, x, 6), RFB_MISS);
	broker_disconnect(b, x);
	broker_disconnect(b, y);
	broker_disconnect(b, z);
	broker_free(b);
}

static void test_store_full_enospc(void **state)
{
	static _Alignas(8) uint8_t body[8 + PG], rep[BROKER_REPLY_MAX];
	struct domains d = {.private_uid = getuid()};
	struct broker_conf conf = {
	    .domains = &d, .store_pages = 4, .nr_nodes = 1, .secret = 1, .log = quiet};
	struct broker *b = broker_new(&conf);
	struct bclient *x;
	struct rfb_insert_ent e;
	uint32_t pgs[5];

	(void)state;
	x = core_join(b, "full");
	for (uint32_t i = 0; i < 5; i++) {
		uint64_t h;

		fill_page(body + 8, 500 + i);
		h = XXH3_64bits(body + 8, PG);
		memcpy(body, &h, 8);
		core_req(b, x, RFB_INSERT, body, sizeof(body), 1, rep);
		memcpy(&e, rep + sizeof(struct rfb_hdr), sizeof(e));
		assert_int_equal(e.status, i < 4 ? 0 : ENOSPC);
		pgs[i] = e.pg;
	}
	/* A page given back is punched and its number reused. */
	core_req(b, x, RFB_PUT, &pgs[2], 4, 1, rep);
	core_req(b, x, RFB_INSERT, body, sizeof(body), 1, rep);
	memcpy(&e, rep + sizeof(struct rfb_hdr), sizeof(e));
	assert_int_equal(e.status, 0);
	assert_int_equal(e.pg, pgs[2]);
	broker_disconnect(b, x);
	broker_free(b);
}

static void test_conf_rules(void **state)
{
	struct domains d;
	char err[256];
	gid_t groups[] = {50, 60};
	struct broker_peer p = {.uid = 1001,
				.gid = 1001,
				.groups = groups,
				.ngroups = 2,
				.cgroup = "/machine.slice/vm-a.scope"};

	(void)state;
	assert_int_equal(domains_parse("# c\n\na uid=1001\nb gid=60 uid=7\n"
				       "c cgroup=/machine.slice/\nd cgroup=/machine\n",
				       "t.conf", &d, err, sizeof(err)),
			 0);
	assert_int_equal(d.n, 4);
	assert_true(domains_admit(&d, "a", &p));
	assert_true(domains_admit(&d, "b", &p));
	assert_true(domains_admit(&d, "c", &p));
	assert_false(domains_admit(&d, "d", &p)); /* "/machine" is not "/machine.slice" */
	assert_false(domains_admit(&d, "e", &p));
	p.uid = 1002;
	assert_false(domains_admit(&d, "a", &p));
	domains_free(&d);
	assert_int_equal(domains_parse("a uid=1\na gid=2\n", "t.conf", &d, err, sizeof(err)),
			 -EINVAL);
	assert_string_equal(err, "t.conf:2: domain \"a\" given twice (one line per domain)");
	assert_int_equal(domains_parse("x\n", "t.conf", &d, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "t.conf:1: domain \"x\" has no rule"));
	assert_int_equal(domains_parse("x cgroup=rel\n", "t.conf", &d, err, sizeof(err)), -EINVAL);
	assert_int_equal(domains_parse("b@d uid=1\n", "t.conf", &d, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, "t.conf:1: domain name \"b@d\""));
}

static int group_setup(void **state)
{
	(void)state;
	daemon_start(&pd, "private", 0, "--private", "--store-size", "64M", NULL);
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	daemon_stop(&pd);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_welcome_fd_is_read_only),
	    cmocka_unit_test(test_twin_insert_hit),
	    cmocka_unit_test(test_insert_bad_hash_files_nothing),
	    cmocka_unit_test(test_receive_buffer_given_back),
	    cmocka_unit_test(test_malformed_closes_and_others_served),
	    cmocka_unit_test(test_hello_refusals),
	    cmocka_unit_test(test_put_not_held_refused),
	    cmocka_unit_test(test_sigkill_drops_holds),
	    cmocka_unit_test(test_closed_by_broker_keeps_holds_while_alive),
	    cmocka_unit_test(test_10000_connections),
	    cmocka_unit_test(test_emfile_survived),
	    cmocka_unit_test(test_two_domains_two_uids),
	    cmocka_unit_test(test_bad_conf_names_line),
	    cmocka_unit_test(test_metrics_file_and_port),
	    cmocka_unit_test(test_socket_activation),
	    cmocka_unit_test(test_candidates_expire_and_leave),
	    cmocka_unit_test(test_candidate_slots_per_domain),
	    cmocka_unit_test(test_store_full_enospc),
	    cmocka_unit_test(test_conf_rules),
	};
	int ret;

	daemon_bin = getenv("RF_RAMFOLDD");
	if (!daemon_bin) {
		fprintf(stderr, "test_broker: set RF_RAMFOLDD (make broker-test does)\n");
		return 1;
	}
	snprintf(dir, sizeof(dir), "/tmp/rf-broker-test.XXXXXX");
	if (!mkdtemp(dir) || chmod(dir, 0755))
		return 1;
	signal(SIGPIPE, SIG_IGN);
	ret = cmocka_run_group_tests(tests, group_setup, group_teardown);
	if (!ret) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
		(void)!system(cmd);
	}
	return ret;
}
