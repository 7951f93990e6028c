/* SPDX-License-Identifier: MIT */
/*
 * Sharing a domain across processes, end to end: a private ramfoldd
 * (RF_RAMFOLDD names the binary) and client processes, each an engine with
 * one VM in RF_DEDUP_DOMAINS mode connected to it. Checked from outside:
 * the clients' Pss together (smaps_rollup), the broker's store (fstat of
 * its memfd, through a raw connection of the test's own), and from inside:
 * every client checks every page of its RAM against what it wrote.
 *
 * A client is a forked child driven over a pipe: it fills its RAM (a part
 * common to all clients, a part only it has, twice, so that its store
 * pages are its own), starts dedup, then answers commands: 'w' wait until
 * it shares N pages through the broker, 'c' check every page, 'x' write
 * into every merged page and check again, 'q' stop. A failed check makes
 * it exit non-zero, which the test reads as a lost or wrong page.
 */
#include <errno.h>
#include <inttypes.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <ramfold/ramfold.h>

#include "../../ksm/broker_proto.h"
#include "broker_proc.h"
#include "dedup_util.h"

#define PG     4096u
#define COMMON 1024u /* pages every client has */
#define OWN    256u  /* pages only one client has, twice */
#define RAM    (8u << 20)

static const char *ramfoldd;
static char dir[48], sock[96];
static pid_t broker;
static pid_t clients[8];
static unsigned int nclients;

struct client {
	pid_t pid;
	int cmd, ans; /* pipes: to it, from it */
};

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void fill(uint8_t *ram, unsigned int id)
{
	for (unsigned int i = 0; i < COMMON; i++)
		dedup_fill_page(ram + (size_t)i * PG, 7 + i);
	for (unsigned int i = 0; i < 2 * OWN; i++)
		dedup_fill_page(ram + (size_t)(COMMON + i) * PG, 1000000ull * (id + 1) + i % OWN);
}

/* Every page as fill() made it, with @bumped pages' byte 100 flipped. */
static int check(const uint8_t *ram, unsigned int id, bool bumped)
{
	uint8_t want[PG];

	for (unsigned int i = 0; i < COMMON + 2 * OWN; i++) {
		dedup_fill_page(want,
				i < COMMON ? 7 + i : 1000000ull * (id + 1) + (i - COMMON) % OWN);
		if (bumped)
			want[100] ^= 0x5a;
		if (memcmp(want, ram + (size_t)i * PG, PG) != 0) {
			fprintf(stderr, "client %u: page %u lost or wrong\n", id, i);
			return 1;
		}
	}
	for (size_t off = (size_t)(COMMON + 2 * OWN) * PG; off < RAM; off += 64)
		if (ram[off])
			return 1;
	return 0;
}

/* Guest pages mapped from the broker's store, as the kernel says: present
 * file pages (pagemap) in mappings of its memfd (/proc/self/maps names it
 * "ramfold-store:DOMAIN:NODE"; the engine's own store is
 * "ramfold-store-nN"). */
static uint64_t broker_mapped_pages(const uint8_t *ram, const char *domain)
{
	char line[512], want[96];
	uint64_t n = 0;
	FILE *f = fopen("/proc/self/maps", "re");
	int pm = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	snprintf(want, sizeof(want), "ramfold-store:%s:", domain);
	while (f && pm >= 0 && fgets(line, sizeof(line), f)) {
		uintptr_t lo, hi, a = (uintptr_t)ram, b = (uintptr_t)ram + RAM;

		if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) != 2 || !strstr(line, want))
			continue;
		lo = lo < a ? a : lo;
		hi = hi > b ? b : hi;
		for (uintptr_t p = lo; p < hi; p += PG) {
			uint64_t e;

			if (pread(pm, &e, sizeof(e), (off_t)(p / PG * 8)) == sizeof(e) &&
			    (e >> 63 & 1) && (e >> 61 & 1))
				n++;
		}
	}
	if (f)
		fclose(f);
	if (pm >= 0)
		close(pm);
	return n;
}

static void client_main(unsigned int id, const char *domain, int cmd, int ans)
{
	struct rf_engine_config ec;
	struct rf_vm_config vc;
	struct rf_dedup_config dc;
	rf_engine *e;
	rf_vm *vm;
	void *hva;
	uint8_t *ram;
	bool bumped = false;
	char c;

	prctl(PR_SET_PDEATHSIG, SIGKILL);
	rf_engine_config_init(&ec);
	ec.log = dedup_test_log;
	ec.scan_threads = 1;
	rf_vm_config_init(&vc);
	vc.ram_bytes = RAM;
	vc.domain = domain;
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_DOMAINS;
	dc.broker = sock;
	if (rf_engine_new(&ec, &e) || rf_vm_new(e, "vm0", &vc, &vm) ||
	    rf_vm_map_ram(vm, 0, RAM, &hva))
		_exit(10);
	ram = hva;
	fill(ram, id);
	/* Filled: the test may measure before anything is merged. */
	if (write(ans, "r", 1) != 1 || read(cmd, &c, 1) != 1 || c != 'g')
		_exit(8);
	if (rf_dedup_start(e, &dc) || rf_dedup_add_vm(vm))
		_exit(11);
	while (read(cmd, &c, 1) == 1) {
		struct rf_dedup_stats st = {.size = sizeof(st)};
		uint64_t want = 0, t0 = now_ms();
		char r = 'y';

		switch (c) {
		case 'w': /* then 8 bytes: pages to share through the broker */
		case 'W': /* the same, now or never */
			if (read(cmd, &want, sizeof(want)) != sizeof(want))
				_exit(12);
			r = 'n';
			while (now_ms() - t0 < (c == 'w' ? 20000u : 1u)) {
				if (rf_dedup_counters(e, &st) == 0 &&
				    st.broker_pages_sharing >= want) {
					r = 'y';
					break;
				}
				usleep(20000);
			}
			if (r == 'n' && c == 'w')
				fprintf(
				    stderr,
				    "client %u: shares %llu pages through the broker, not %llu\n",
				    id, (unsigned long long)st.broker_pages_sharing,
				    (unsigned long long)want);
			break;
		case 'c':
			if (check(ram, id, bumped))
				_exit(13);
			break;
		case 'x':
			for (unsigned int i = 0; i < COMMON + 2 * OWN; i++)
				ram[(size_t)i * PG + 100] ^= 0x5a;
			bumped = true;
			if (check(ram, id, bumped))
				_exit(14);
			break;
		case 'p': { /* then 8 bytes: at least this many pages map the broker's store */
			uint64_t got;

			if (read(cmd, &want, sizeof(want)) != sizeof(want))
				_exit(12);
			got = broker_mapped_pages(ram, domain);
			r = got >= want ? 'y' : 'n';
			if (r == 'n')
				fprintf(stderr,
					"client %u: %llu pages map the broker's store, not %llu\n",
					id, (unsigned long long)got, (unsigned long long)want);
			break;
		}
		case 'd': /* broker domains up */
			rf_dedup_counters(e, &st);
			r = (char)('0' + st.broker_domains);
			break;
		case 'q':
			rf_dedup_stop(e);
			if (check(ram, id, bumped))
				_exit(15);
			rf_engine_free(e);
			_exit(0);
		}
		if (write(ans, &r, 1) != 1)
			_exit(16);
	}
	_exit(17);
}

/* Fork a client; it fills its RAM and, if @go, starts dedup (else the test
 * sends 'g' when it has measured). */
static struct client client_start(unsigned int id, const char *domain, gid_t gid, bool go)
{
	int a[2], b[2];
	struct client cl;

	assert_int_equal(pipe(a), 0);
	assert_int_equal(pipe(b), 0);
	cl.pid = fork();
	assert_true(cl.pid >= 0);
	if (cl.pid == 0) {
		close(a[1]);
		close(b[0]);
		if (gid && setresgid(gid, gid, gid) != 0)
			_exit(9);
		client_main(id, domain, a[0], b[1]);
	}
	close(a[0]);
	close(b[1]);
	cl.cmd = a[1];
	cl.ans = b[0];
	if (nclients < 8)
		clients[nclients++] = cl.pid;
	{
		char r = 0;

		assert_int_equal(read(cl.ans, &r, 1), 1);
		assert_int_equal(r, 'r');
	}
	if (go && write(cl.cmd, "g", 1) != 1)
		fail_msg("client %u: cannot start it", id);
	return cl;
}

static char ask(struct client *cl, char c, uint64_t arg)
{
	char r = 0;

	if (write(cl->cmd, &c, 1) != 1)
		return 0;
	if ((c == 'w' || c == 'W' || c == 'p') && write(cl->cmd, &arg, sizeof(arg)) != sizeof(arg))
		return 0;
	if (read(cl->ans, &r, 1) != 1)
		return 0;
	return r;
}

static void client_end(struct client *cl)
{
	int st;

	assert_int_equal(ask(cl, 'q', 0), 0); /* it exits instead of answering */
	assert_int_equal(waitpid(cl->pid, &st, 0), cl->pid);
	assert_true(WIFEXITED(st));
	assert_int_equal(WEXITSTATUS(st), 0);
	close(cl->cmd);
	close(cl->ans);
}

static uint64_t pss_kb(pid_t pid)
{
	char path[64], line[256];
	uint64_t kb = 0;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "Pss: %" SCNu64, &kb) == 1)
			break;
	fclose(f);
	return kb;
}

/* The broker's store of @domain as a client sees it: resident pages (the
 * test joins the domain itself, read-only, holding nothing). */
static int64_t store_resident_pages(const char *domain)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct rfb_hello h = {
	    .h = {RFB_HELLO, sizeof(h), 1, 0}, .version = RFB_VERSION, .numa = -1};
	struct rfb_welcome w;
	char cbuf[CMSG_SPACE(sizeof(int))];
	struct iovec iov = {&w, sizeof(w)};
	struct msghdr mh = {
	    .msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf, .msg_controllen = sizeof(cbuf)};
	struct cmsghdr *c;
	struct stat st;
	int fd, sfd = -1;

	snprintf(h.domain, sizeof(h.domain), "%s", domain);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
	fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    send(fd, &h, sizeof(h), 0) != sizeof(h) || recvmsg(fd, &mh, 0) != sizeof(w) ||
	    w.status != 0) {
		close(fd);
		return -1;
	}
	c = CMSG_FIRSTHDR(&mh);
	if (c && c->cmsg_type == SCM_RIGHTS)
		memcpy(&sfd, CMSG_DATA(c), sizeof(int));
	close(fd);
	if (sfd < 0 || fstat(sfd, &st) != 0) {
		if (sfd >= 0)
			close(sfd);
		return -1;
	}
	close(sfd);
	return (int64_t)st.st_blocks * 512 / PG;
}

static void broker_start(const char *conf)
{
	broker = broker_proc_start(ramfoldd, sock, conf);
	assert_true(broker > 0);
}

static void broker_kill(void)
{
	broker_proc_stop(&broker, SIGKILL, sock);
}

static int setup(void **state)
{
	(void)state;
	ramfoldd = getenv("RF_RAMFOLDD");
	if (!ramfoldd || access(ramfoldd, X_OK) != 0) {
		fprintf(stderr, "test_share: RF_RAMFOLDD must name the ramfoldd binary\n");
		return -1;
	}
	snprintf(dir, sizeof(dir), "/tmp/rf-share.XXXXXX");
	if (!mkdtemp(dir))
		return -1;
	snprintf(sock, sizeof(sock), "%s/broker.sock", dir);
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	broker_kill();
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* After each test, passed or not: nothing of it left running. */
static int test_teardown(void **state)
{
	(void)state;
	for (unsigned int i = 0; i < nclients; i++) {
		kill(clients[i], SIGKILL);
		waitpid(clients[i], NULL, 0);
	}
	nclients = 0;
	broker_kill();
	return 0;
}

static int skip_unless_supported(void)
{
	const char *why = NULL;

	if (!dedup_supported(&why)) {
		printf("skipped: %s\n", why);
		return 1;
	}
	return 0;
}

/*
 * Three processes, one domain: the common pages are stored once for all
 * three (their Pss together falls by about two copies), every page reads
 * back as written, and a write into merged pages is each process's own.
 */
static void test_share_three(void **state)
{
	struct client cl[3];
	uint64_t before = 0, after = 0;
	int64_t res;

	(void)state;
	if (skip_unless_supported())
		skip();
	broker_start(NULL);
	for (unsigned int i = 0; i < 3; i++)
		cl[i] = client_start(i, "pool", 0, false);
	for (unsigned int i = 0; i < 3; i++)
		before += pss_kb(cl[i].pid);
	before += pss_kb(broker);
	for (unsigned int i = 0; i < 3; i++)
		assert_int_equal(write(cl[i].cmd, "g", 1), 1);
	for (unsigned int i = 0; i < 3; i++)
		assert_int_equal(ask(&cl[i], 'w', COMMON + 2 * OWN), 'y');
	for (unsigned int i = 0; i < 3; i++)
		assert_int_equal(ask(&cl[i], 'c', 0), 'y');
	for (unsigned int i = 0; i < 3; i++) {
		after += pss_kb(cl[i].pid);
		/* The kernel's word: every page maps the broker's store... */
		assert_int_equal(ask(&cl[i], 'p', COMMON + 2 * OWN), 'y');
	}
	after += pss_kb(broker);
	/* ...which holds each content once: the common part and each
	 * process's own pages (the test's own connection holds nothing). */
	res = store_resident_pages("pool");
	printf("  3 clients: guest pages 3 x %u mapped from a store of %lld pages; Pss of the "
	       "clients and the broker %llu -> %llu KiB (engine metadata included)\n",
	       COMMON + 2 * OWN, (long long)res, (unsigned long long)before,
	       (unsigned long long)after);
	assert_int_equal(res, COMMON + 3 * OWN);
	/* Two of three copies of the common part and one of two of each
	 * own page are gone; the engines' metadata (about 1 MiB each at
	 * this size) comes out of that. */
	assert_true(before > after && before - after >= (2 * COMMON + 3 * OWN) * 4 / 2);
	assert_int_equal(ask(&cl[0], 'x', 0), 'y');
	for (unsigned int i = 0; i < 3; i++)
		assert_int_equal(ask(&cl[i], 'c', 0), 'y');
	for (unsigned int i = 0; i < 3; i++)
		client_end(&cl[i]);
	broker_kill();
}

/*
 * kill -9 of one client while the others share its pages: they stay
 * intact, and the store pages only it held are punched.
 */
static void test_kill_client(void **state)
{
	struct client cl[3];
	int64_t res0, res1;

	(void)state;
	if (skip_unless_supported())
		skip();
	broker_start(NULL);
	for (unsigned int i = 0; i < 3; i++)
		cl[i] = client_start(i, "pool", 0, true);
	for (unsigned int i = 0; i < 3; i++)
		assert_int_equal(ask(&cl[i], 'w', COMMON + 2 * OWN), 'y');
	res0 = store_resident_pages("pool");
	kill(cl[2].pid, SIGKILL);
	waitpid(cl[2].pid, NULL, 0);
	for (int i = 0; i < 100; i++) {
		res1 = store_resident_pages("pool");
		if (res1 >= 0 && res1 <= res0 - OWN)
			break;
		usleep(20000);
	}
	printf("  store: %lld resident pages with 3 clients, %lld after kill -9 of one\n",
	       (long long)res0, (long long)res1);
	assert_true(res0 >= COMMON + 3 * OWN);
	assert_true(res1 <= res0 - OWN);
	for (unsigned int i = 0; i < 2; i++) {
		assert_int_equal(ask(&cl[i], 'c', 0), 'y');
		assert_int_equal(ask(&cl[i], 'x', 0), 'y');
	}
	for (unsigned int i = 0; i < 2; i++)
		client_end(&cl[i]);
	broker_kill();
}

/*
 * kill -9 of the broker: every client keeps running with its pages intact
 * (merged pages stay mapped), writes work, and when a broker is back they
 * connect again.
 */
static void test_kill_broker(void **state)
{
	struct client cl[2];
	char up = 0;

	(void)state;
	if (skip_unless_supported())
		skip();
	broker_start(NULL);
	for (unsigned int i = 0; i < 2; i++)
		cl[i] = client_start(i, "pool", 0, true);
	for (unsigned int i = 0; i < 2; i++)
		assert_int_equal(ask(&cl[i], 'w', COMMON + 2 * OWN), 'y');
	broker_kill();
	for (unsigned int i = 0; i < 2; i++)
		assert_int_equal(ask(&cl[i], 'c', 0), 'y');
	assert_int_equal(ask(&cl[1], 'x', 0), 'y');
	assert_int_equal(ask(&cl[0], 'c', 0), 'y');
	broker_start(NULL);
	for (int t = 0; t < 150 && up != '1'; t++) {
		usleep(20000);
		up = ask(&cl[0], 'd', 0);
	}
	assert_int_equal(up, '1');
	for (unsigned int i = 0; i < 2; i++)
		client_end(&cl[i]);
	broker_kill();
}

/*
 * Two domains, two groups: a process of one group asking for the other's
 * domain is refused and shares with nobody; its pages never map the
 * other domain's store.
 */
static void test_domains_refused(void **state)
{
	char conf[160];
	struct client a, b, intruder;
	FILE *f;

	(void)state;
	if (skip_unless_supported())
		skip();
	snprintf(conf, sizeof(conf), "%s/domains.conf", dir);
	f = fopen(conf, "we");
	assert_non_null(f);
	fprintf(f, "# test\nred gid=64001\nblue gid=64002\n");
	fclose(f);
	broker_start(conf);
	a = client_start(0, "red", 64001, true);
	b = client_start(0, "red", 64001, true);
	intruder = client_start(0, "red", 64002, true); /* same content, wrong group */
	assert_int_equal(ask(&a, 'w', COMMON + 2 * OWN), 'y');
	assert_int_equal(ask(&b, 'w', COMMON + 2 * OWN), 'y');
	/* It has had the passes a and b needed to share everything. */
	assert_int_equal(ask(&intruder, 'd', 0), '0');
	assert_int_equal(ask(&intruder, 'W', 1), 'n');
	assert_int_equal(ask(&intruder, 'c', 0), 'y');
	client_end(&a);
	client_end(&b);
	client_end(&intruder);
	broker_kill();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_share_three, test_teardown),
	    cmocka_unit_test_teardown(test_kill_client, test_teardown),
	    cmocka_unit_test_teardown(test_kill_broker, test_teardown),
	    cmocka_unit_test_teardown(test_domains_refused, test_teardown),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
