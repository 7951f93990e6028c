/* SPDX-License-Identifier: MIT */
/*
 * libFuzzer target: hostile clients of ramfoldd's core (ramfoldd/broker.c)
 * and its domains.conf parser. Three client slots speak to one broker
 * through broker_handle, as main.c would after each recv: raw datagrams,
 * and well-formed requests built from the input so that the deeper paths
 * (holds, candidates, the index, punching, a full store) are reached too.
 * Built with ASan+UBSan: any out-of-bounds access, leak or overflow is a
 * finding; so is a broken invariant, which aborts:
 *   every reply is of the type asked (or RFB_ERROR) and fits the buffer;
 *   a HIT's page has the hash looked up, an INSERT's the bytes sent;
 *   a store's memfd holds exactly its pages in use (st_blocks);
 *   shared <= in use <= the holds of all clients, in use <= capacity.
 *
 * Input: operations, an opcode byte and its arguments, until the input
 * runs out (slot = byte % 3):
 *   0 connect     slot peer:u8      (uid 1000 + (peer & 1), gid peer >> 1 & 7,
 *                                    cgroup "/x" or "/y/z" or none)
 *   1 disconnect  slot
 *   2 raw         slot len:u16 bytes[len]
 *   3 hello       slot dom:u8 numa:i8 bad:u8  (bad: version/flags wrong)
 *   4 lookup      slot n:u8 keys[n]:u8   (key < 200: the hash of page key,
 *                                         else a made-up hash)
 *   5 insert      slot n:u8 (key:u8 wrong:u8)[n]
 *   6 put         slot n:u8 pg:u8[n]
 *   7 report      slot mapped:u64
 *   8 time        ms:u16 (x 64)
 *   9 conf        len:u8 text[len]  (domains_parse, separately)
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <xxhash.h>

#include "broker.h"

#define PG    RFB_PAGE_SIZE
#define SLOTS 3
#define CAP   24

struct in {
	const uint8_t *p;
	size_t n;
};

static int take(struct in *in, void *out, size_t n)
{
	if (in->n < n)
		return -1;
	memcpy(out, in->p, n);
	in->p += n;
	in->n -= n;
	return 0;
}

static uint64_t now_ms;
static uint64_t fake_clock(void)
{
	return now_ms;
}
static void quiet(const char *line)
{
	(void)line;
}

static struct slot {
	struct bclient *c;
	int store;   /* the store descriptor its WELCOME carried, or -1 */
	bool closed; /* the broker asked for the connection to be closed */
} sl[SLOTS];

static uint8_t msg[RFB_DGRAM_MAX];
static _Alignas(8) uint8_t reply[BROKER_REPLY_MAX];

static void page_of(uint8_t key, uint8_t *page)
{
	/* A few distinct contents, some equal across keys: key % 50. */
	memset(page, key % 50, PG);
	page[key % 7] = (uint8_t)(key % 50 + 1);
}

static uint64_t hash_of(uint8_t key)
{
	static uint8_t page[PG];

	page_of(key, page);
	return XXH3_64bits(page, PG);
}

static void check_page(int store, uint32_t pg, uint64_t hash)
{
	static uint8_t page[PG];

	if (pg >= CAP || pread(store, page, PG, (off_t)pg * PG) != PG ||
	    XXH3_64bits(page, PG) != hash)
		abort();
}

struct totals {
	uint64_t holds;
};

static void check_store(const struct broker_store_info *si, void *arg)
{
	struct totals *t = arg;

	if (si->store_pages > si->capacity_pages || si->shared_pages > si->store_pages ||
	    si->resident_bytes != si->store_pages * PG || si->clients > SLOTS)
		abort();
	(void)t;
}

static void check_all(struct broker *b)
{
	struct totals t = {0};
	struct broker_counters bc;

	for (int i = 0; i < SLOTS; i++)
		if (sl[i].c)
			t.holds += broker_client_holds(sl[i].c);
	broker_foreach_store(b, check_store, &t);
	broker_counters(b, &bc);
	if (bc.clients > SLOTS)
		abort();
}

/* One request through the core; the reply checked against what was asked. */
static void handle(struct broker *b, struct slot *s, size_t len, const uint64_t *hashes)
{
	struct rfb_hdr req, rep;
	bool close_after;
	size_t n;
	int fd;

	if (!s->c || s->closed)
		return;
	n = broker_handle(b, s->c, msg, len, reply, &fd, &close_after);
	if (n < sizeof(rep) || n > BROKER_REPLY_MAX)
		abort();
	memcpy(&rep, reply, sizeof(rep));
	if (rep.len != n)
		abort();
	if (rep.type == RFB_ERROR) {
		if (!close_after || fd >= 0)
			abort();
		s->closed = true;
		return;
	}
	memcpy(&req, msg, sizeof(req));
	if (rep.type != (req.type | RFB_REPLY) || rep.seq != req.seq)
		abort();
	if (rep.type == RFB_WELCOME) {
		struct rfb_welcome w;

		memcpy(&w, reply, sizeof(w));
		if ((w.status == 0) != (fd >= 0) || (w.status != 0) != close_after ||
		    !memchr(w.msg, 0, sizeof(w.msg)))
			abort();
		if (fd >= 0)
			s->store = fd; /* the broker's: not closed here */
		else
			s->closed = true;
	}
	if (rep.type == RFB_LOOKUP_R && hashes) {
		for (uint32_t k = 0; k < rep.count; k++) {
			struct rfb_lookup_ent e;

			memcpy(&e, reply + sizeof(rep) + k * sizeof(e), sizeof(e));
			if (e.status > RFB_TWIN)
				abort();
			if (e.status == RFB_HIT)
				check_page(s->store, e.pg, hashes[k]);
		}
	}
	if (rep.type == RFB_INSERT_R && hashes) {
		for (uint32_t k = 0; k < rep.count; k++) {
			struct rfb_insert_ent e;

			memcpy(&e, reply + sizeof(rep) + k * sizeof(e), sizeof(e));
			if (e.status == 0)
				check_page(s->store, e.pg, hashes[k]);
			else if (e.status != EBADMSG && e.status != ENOSPC)
				abort();
		}
	}
}

static void put_hdr(uint32_t type, size_t len, uint32_t count)
{
	static uint32_t seq;
	struct rfb_hdr h = {type, (uint32_t)len, ++seq, count};

	memcpy(msg, &h, sizeof(h));
}

static void disconnect(struct broker *b, struct slot *s)
{
	if (s->c)
		broker_disconnect(b, s->c);
	*s = (struct slot){.store = -1};
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const doms[] = {"a", "b", "c", "bad name", ""};
	struct domains d;
	struct broker_conf conf = {.domains = &d,
				   .store_pages = CAP,
				   .nr_nodes = 2, /* node 0 mbinds; node 1 is refused here */
				   .secret = 7,
				   .now_ms = fake_clock,
				   .log = quiet};
	char err[256];
	struct in in = {data, size};
	struct broker *b;
	uint8_t op;

	if (domains_parse("a uid=1000\nb gid=3 cgroup=/y # z\nc cgroup=/x\n", "fuzz", &d, err,
			  sizeof(err)))
		abort();
	b = broker_new(&conf);
	if (!b)
		abort();
	now_ms = 1;
	for (int i = 0; i < SLOTS; i++)
		sl[i] = (struct slot){.store = -1};
	while (take(&in, &op, 1) == 0) {
		uint8_t sb = 0, n = 0, u8;
		struct slot *s;

		if (op % 10 != 8 && op % 10 != 9 && take(&in, &sb, 1))
			break;
		s = &sl[sb % SLOTS];
		switch (op % 10) {
		case 0: {
			static const gid_t groups[] = {3, 9};
			struct broker_peer p;

			if (take(&in, &u8, 1) || s->c)
				break;
			p = (struct broker_peer){.uid = 1000u + (u8 & 1),
						 .gid = (u8 >> 1) & 7,
						 .groups = groups,
						 .ngroups = (u8 >> 4) & 1 ? 2 : 0,
						 .pid = 42,
						 .cgroup = (u8 >> 5) % 3 == 0	? "/x"
							   : (u8 >> 5) % 3 == 1 ? "/y/z"
										: NULL};
			s->c = broker_connect(b, &p);
			break;
		}
		case 1:
			disconnect(b, s);
			break;
		case 2: {
			uint16_t len;

			if (take(&in, &len, 2))
				break;
			len = len % (sizeof(msg) + 1);
			if (in.n < len)
				len = (uint16_t)in.n;
			take(&in, msg, len);
			handle(b, s, len, NULL);
			break;
		}
		case 3: {
			struct rfb_hello h = {.version = RFB_VERSION};
			uint8_t dom, bad;
			int8_t numa;

			if (take(&in, &dom, 1) || take(&in, &numa, 1) || take(&in, &bad, 1))
				break;
			h.numa = numa % 3;
			h.version += (bad & 3) == 1;
			h.flags = (bad & 3) == 2;
			snprintf(h.domain, sizeof(h.domain), "%s", doms[dom % 5]);
			memcpy(msg, &h, sizeof(h));
			put_hdr(RFB_HELLO, sizeof(h), 0);
			handle(b, s, sizeof(h), NULL);
			break;
		}
		case 4: {
			uint64_t hashes[16];

			if (take(&in, &n, 1))
				break;
			n = n % 16 + 1;
			for (int k = 0; k < n; k++) {
				if (take(&in, &u8, 1))
					u8 = 0;
				hashes[k] = u8 < 200 ? hash_of(u8) : 0x1234567ull * u8;
				memcpy(msg + sizeof(struct rfb_hdr) + 8 * k, &hashes[k], 8);
			}
			put_hdr(RFB_LOOKUP, sizeof(struct rfb_hdr) + 8 * (size_t)n, n);
			handle(b, s, sizeof(struct rfb_hdr) + 8 * (size_t)n, hashes);
			break;
		}
		case 5: {
			uint64_t hashes[3];
			uint8_t wrong;

			if (take(&in, &n, 1))
				break;
			n = n % 3 + 1;
			for (int k = 0; k < n; k++) {
				uint8_t *page =
				    msg + sizeof(struct rfb_hdr) + 8 * n + (size_t)k * PG;
				uint64_t h;

				if (take(&in, &u8, 1) || take(&in, &wrong, 1))
					u8 = wrong = 0;
				page_of(u8, page);
				hashes[k] = hash_of(u8);
				h = hashes[k] ^ (wrong & 1);
				memcpy(msg + sizeof(struct rfb_hdr) + 8 * k, &h, 8);
			}
			put_hdr(RFB_INSERT, sizeof(struct rfb_hdr) + (8 + PG) * (size_t)n, n);
			handle(b, s, sizeof(struct rfb_hdr) + (8 + PG) * (size_t)n, hashes);
			break;
		}
		case 6: {
			if (take(&in, &n, 1))
				break;
			n = n % 8 + 1;
			for (int k = 0; k < n; k++) {
				uint32_t pg;

				if (take(&in, &u8, 1))
					u8 = 0;
				pg = u8 == 255 ? UINT32_MAX : u8 % (CAP + 2);
				memcpy(msg + sizeof(struct rfb_hdr) + 4 * k, &pg, 4);
			}
			put_hdr(RFB_PUT, sizeof(struct rfb_hdr) + 4 * (size_t)n, n);
			handle(b, s, sizeof(struct rfb_hdr) + 4 * (size_t)n, NULL);
			break;
		}
		case 7: {
			struct rfb_report r = {0};

			if (take(&in, &r.mapped_pages, 8))
				break;
			memcpy(msg, &r, sizeof(r));
			put_hdr(RFB_REPORT, sizeof(r), 0);
			handle(b, s, sizeof(r), NULL);
			break;
		}
		case 8: {
			uint16_t ms;

			if (take(&in, &ms, 2))
				break;
			now_ms += (uint64_t)ms * 64;
			break;
		}
		case 9: {
			struct domains other;
			char text[257];

			if (take(&in, &n, 1))
				break;
			if (in.n < n)
				n = (uint8_t)in.n;
			take(&in, text, n);
			text[n] = 0;
			if (!domains_parse(text, "fuzz", &other, err, sizeof(err)))
				domains_free(&other);
			break;
		}
		}
		check_all(b);
	}
	for (int i = 0; i < SLOTS; i++)
		disconnect(b, &sl[i]);
	check_all(b);
	broker_free(b);
	domains_free(&d);
	return 0;
}
