/* SPDX-License-Identifier: MIT */
/*
 * ramfoldd's core: the stores, the content index, the holds and the
 * candidates of every sharing domain, driven one request at a time.
 *
 * A store is one (domain, NUMA node): a memfd of capacity pages (sparse:
 * only filled pages cost memory), created when the first client of the pair
 * says HELLO and closed when the last one leaves (every page is punched by
 * then). The broker keeps its read-write descriptor; clients get a
 * read-only one, opened through /proc/self/fd after the memfd's mode was set
 * to 0400, so a client of another uid can neither write, punch, truncate,
 * seal nor reopen it writable (root can reopen: mode bits do not bind it).
 * The broker fills and reads pages with pwrite/pread rather than through a
 * mapping, so it maps none of them and its Pss stays out of the saving; on a
 * host of several nodes a window is mapped only to mbind the memfd (the
 * policy is the file's, and applies to the broker's writes).
 *
 * Per store page (struct spage, 16 bytes): its content hash, how many
 * clients hold it, and one link (the next page of the same hash in the
 * index, or the next free page). The index maps a hash to the first of its
 * pages (a chain of more than one only for equal hashes of different bytes,
 * which a client can make: XXH3 is not collision-resistant; the client
 * compares bytes before it maps, so a false HIT costs it a PUT). Free page
 * numbers are reused last-freed first; pages never used are never touched,
 * so the page array costs memory only as the store fills.
 *
 * Per client: the set of pages it holds, a bitmap over the store's pages
 * (mapped on the first hold, MAP_NORESERVE: only the words of pages in use
 * are ever touched, and the store hands out low page numbers first), and
 * its slot in the candidates. A hold is granted once per page whatever the
 * client asks; a PUT of a page it does not hold is refused and counted and
 * changes nothing. A page whose last hold goes is punched at once and leaves
 * the index.
 *
 * Candidates (a hash no store page has -> the client that asked last): a
 * LOOKUP miss leaves the client's mark, another live client's LOOKUP of the
 * hash gets TWIN. They are a lossy cache of 4-byte entries (cand.c), keyed
 * with the asking client's slot (a small number each client of the store
 * holds from its HELLO); its leaving frees its slot and its entries are dead
 * from then on. The cache is capped at 2 x capacity entries (4096 at
 * least): a client sending made-up hashes cannot grow the broker without
 * bound, only push its own domain's candidates out (a delay of their
 * merges, never a wrong one).
 *
 * The other tables are open addressing with linear probing and deletion by
 * backward shift (no tombstones), indexed through a keyed mix so that a
 * client choosing hashes cannot pile them on one slot. Nothing per request
 * is proportional to the store or the number of clients.
 */
#include <errno.h>
#include <fcntl.h>
#include <numaif.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <xxhash.h>

#include "broker.h"
#include "cand.h"
#include "mix.h"

#define PAGE RFB_PAGE_SIZE
/* A REPORT's mapped_pages is the client's word: capped so sums cannot wrap. */
#define MAPPED_MAX (1ull << 40)

/* ---- open addressing ------------------------------------------------------ */

struct lp;
struct lp_ops {
	size_t esz;
	bool (*empty)(const void *e);
	uint64_t (*key)(const struct lp *t, const void *e);
};

struct lp {
	char *e;
	uint32_t mask, count; /* mask + 1 slots; 0 slots while e is NULL */
	const struct lp_ops *ops;
	const void *ctx; /* for key(): the store of an index */
	uint64_t secret;
};

static void *lp_at(const struct lp *t, uint32_t i)
{
	return t->e + (size_t)i * t->ops->esz;
}

static uint32_t lp_home(const struct lp *t, uint64_t key)
{
	return (uint32_t)mix64(key ^ t->secret) & t->mask;
}

/* The slot of @key, or the empty slot where it would go (*found false). */
static uint32_t lp_probe(const struct lp *t, uint64_t key, bool *found)
{
	for (uint32_t i = lp_home(t, key);; i = (i + 1) & t->mask) {
		const void *e = lp_at(t, i);

		if (t->ops->empty(e)) {
			*found = false;
			return i;
		}
		if (t->ops->key(t, e) == key) {
			*found = true;
			return i;
		}
	}
}

/* Empty slot @i by moving back the entries that probed past it. */
static void lp_del(struct lp *t, uint32_t i)
{
	size_t esz = t->ops->esz;

	for (uint32_t j = i;;) {
		void *ej;

		j = (j + 1) & t->mask;
		ej = lp_at(t, j);
		if (t->ops->empty(ej))
			break;
		/* ej may fill the hole at i if its home is not in (i, j]. */
		if (((j - lp_home(t, t->ops->key(t, ej))) & t->mask) >= ((j - i) & t->mask)) {
			memcpy(lp_at(t, i), ej, esz);
			i = j;
		}
	}
	memset(lp_at(t, i), 0, esz);
	t->count--;
}

/* A table of a page or more is mapped, not malloc'd: when it doubles, the
 * old one goes back to the kernel, where a freed heap block would stay in
 * the broker's Pss (the allocator gives dirty pages back only as it is
 * used, and a converged broker hardly allocates: the 8, 16 and 32 KiB
 * tables an index of 10,000 pages grew through stayed 56 kB of its Pss). */
#define LP_MAP_BYTES (4u << 10)

static void *lp_alloc(size_t bytes)
{
	void *p;

	if (bytes < LP_MAP_BYTES)
		return calloc(1, bytes);
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void lp_free(struct lp *t)
{
	size_t bytes = ((size_t)t->mask + 1) * t->ops->esz;

	if (t->e && bytes >= LP_MAP_BYTES)
		munmap(t->e, bytes);
	else
		free(t->e);
	t->e = NULL;
}

/* Rebuild with @slots slots (a power of two). -ENOMEM leaves the table as
 * it was. */
static int lp_rebuild(struct lp *t, uint32_t slots)
{
	struct lp n = *t;

	n.e = lp_alloc((size_t)slots * t->ops->esz);
	if (!n.e)
		return -ENOMEM;
	n.mask = slots - 1;
	n.count = 0;
	for (uint32_t i = 0; t->e && i <= t->mask; i++) {
		void *e = lp_at(t, i);
		bool found;

		if (t->ops->empty(e))
			continue;
		memcpy(lp_at(&n, lp_probe(&n, t->ops->key(t, e), &found)), e, t->ops->esz);
		n.count++;
	}
	lp_free(t);
	*t = n;
	return 0;
}

/* Room for one more entry, keeping the table at most half full. */
static int lp_reserve(struct lp *t)
{
	uint32_t slots = t->e ? t->mask + 1 : 0;

	if ((uint64_t)(t->count + 1) * 2 <= slots)
		return 0;
	if (slots >= (1u << 31))
		return -ENOMEM;
	return lp_rebuild(t, slots ? slots * 2 : 16);
}

/* Find @key: its slot, or UINT32_MAX. */
static uint32_t lp_find(const struct lp *t, uint64_t key)
{
	bool found;
	uint32_t i;

	if (!t->e)
		return UINT32_MAX;
	i = lp_probe(t, key, &found);
	return found ? i : UINT32_MAX;
}

/* ---- the tables' entries ---------------------------------------------------- */

struct spage {
	uint64_t hash;
	uint32_t holders;
	uint32_t next; /* page + 1: next of the same hash (in use), next free (free); 0 = none */
};

struct store {
	struct store *next;
	char domain[RFB_DOMAIN_MAX];
	int node;
	int memfd, rofd;
	void *window; /* only to mbind: never read or written */
	size_t window_len;
	uint32_t cap, hi, free_head; /* free_head: page + 1 */
	struct spage *pages;
	struct lp index; /* uint32_t page + 1, keyed by pages[].hash */
	struct cand_cache cand;
	struct cand_slots slots; /* of the clients of this store */
	uint32_t clients;
	uint64_t used, shared, mapped;
	uint64_t lookups, hits, twins, inserts, inserts_new, bad_hash, enospc;
	uint64_t released, refused, punched;
};

struct bclient {
	uint32_t id;
	pid_t pid;
	uid_t uid;
	gid_t gid;
	gid_t *groups; /* until HELLO */
	size_t ngroups;
	char *cgroup; /* until HELLO */
	bool said_hello;
	struct store *st; /* NULL until a successful HELLO */
	uint64_t *held;	  /* bit per store page; NULL until the first hold */
	uint64_t nheld;
	uint16_t slot; /* in its store's candidates, from HELLO; 0 = files none */
	uint64_t mapped;
};

struct broker {
	struct broker_conf conf;
	uint32_t next_id;
	struct lp byid; /* struct bclient *, keyed by id */
	struct store *stores;
	struct broker_counters ctr;
	bool punch_warned;
};

static bool u32_empty(const void *e)
{
	return *(const uint32_t *)e == 0;
}
static uint64_t index_key(const struct lp *t, const void *e)
{
	const struct store *st = t->ctx;

	return st->pages[*(const uint32_t *)e - 1].hash;
}
static bool ptr_empty(const void *e)
{
	return *(void *const *)e == NULL;
}
static uint64_t byid_key(const struct lp *t, const void *e)
{
	(void)t;
	return (*(struct bclient *const *)e)->id;
}

static const struct lp_ops index_ops = {sizeof(uint32_t), u32_empty, index_key};
static const struct lp_ops byid_ops = {sizeof(struct bclient *), ptr_empty, byid_key};

/* ---- helpers ------------------------------------------------------------------ */

static uint64_t clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t now_ms(const struct broker *b)
{
	return b->conf.now_ms ? b->conf.now_ms() : clock_ms();
}

static void blog(const struct broker *b, const char *fmt, ...)
{
	char line[512];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (b->conf.log)
		b->conf.log(line);
	else
		fprintf(stderr, "ramfoldd: %s\n", line);
}

static struct bclient *client_by_id(const struct broker *b, uint32_t id)
{
	uint32_t i = lp_find(&b->byid, id);

	return i == UINT32_MAX ? NULL : *(struct bclient **)lp_at(&b->byid, i);
}

/* "client 3 (pid 1234, uid 1000)" */
static const char *who(const struct bclient *c, char *buf, size_t len)
{
	snprintf(buf, len, "client %u (pid %d, uid %u)", c->id, (int)c->pid, (unsigned)c->uid);
	return buf;
}

/* ---- stores ------------------------------------------------------------------- */

static size_t pages_bytes(const struct store *st)
{
	return (size_t)st->cap * sizeof(*st->pages);
}

static void store_close(struct store *st)
{
	if (st->window)
		munmap(st->window, st->window_len);
	if (st->rofd >= 0)
		close(st->rofd);
	if (st->memfd >= 0)
		close(st->memfd);
	if (st->pages)
		munmap(st->pages, pages_bytes(st));
	lp_free(&st->index);
	cand_fini(&st->cand);
	free(st);
}

/* A new store of @b->conf.store_pages pages; NULL with errno and @why. */
static struct store *store_open(struct broker *b, const char *domain, int node, char *why,
				size_t whylen)
{
	struct store *st = calloc(1, sizeof(*st));
	char name[RFB_DOMAIN_MAX + 32], path[64];
	const char *step = "memfd_create";
	int e;

	if (!st) {
		snprintf(why, whylen, "out of memory");
		errno = ENOMEM;
		return NULL;
	}
	st->memfd = st->rofd = -1;
	snprintf(st->domain, sizeof(st->domain), "%s", domain);
	st->node = node;
	st->cap = (uint32_t)b->conf.store_pages;
	st->index = (struct lp){.ops = &index_ops, .ctx = st, .secret = b->conf.secret};
	cand_init(&st->cand, b->conf.secret ^ 0x5bd1e995,
		  st->cap < 2048	 ? 4096
		  : st->cap > (1u << 30) ? 1u << 31
					 : st->cap * 2);
	/* Mapped: fresh zero pages, touched only as the store fills. Not
	 * calloc'd: jemalloc's calloc of the same 24 MiB (a store of 6 GiB)
	 * costs 100 kB of Pss at once in its own metadata. */
	st->pages = mmap(NULL, pages_bytes(st), PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (st->pages == MAP_FAILED) {
		st->pages = NULL;
		errno = ENOMEM;
		step = "page array";
		goto fail;
	}
	snprintf(name, sizeof(name), "ramfold-store:%s:%d", domain, node);
	st->memfd = memfd_create(name, MFD_CLOEXEC);
	if (st->memfd < 0)
		goto fail;
	step = "ftruncate";
	if (ftruncate(st->memfd, (off_t)st->cap * PAGE))
		goto fail;
	/* Before the read-only open: what a client can reopen through
	 * /proc/PID/fd is what the mode allows its uid. */
	step = "fchmod";
	if (fchmod(st->memfd, 0400))
		goto fail;
	if (node >= 0 && b->conf.nr_nodes > 1) {
		unsigned long mask[(node / (8 * sizeof(unsigned long))) + 1];

		memset(mask, 0, sizeof(mask));
		mask[node / (8 * sizeof(unsigned long))] = 1ul
							   << (node % (8 * sizeof(unsigned long)));
		step = "mmap";
		st->window_len = (size_t)st->cap * PAGE;
		st->window = mmap(NULL, st->window_len, PROT_READ | PROT_WRITE,
				  MAP_SHARED | MAP_NORESERVE, st->memfd, 0);
		if (st->window == MAP_FAILED) {
			st->window = NULL;
			goto fail;
		}
		step = "mbind";
		if (mbind(st->window, st->window_len, MPOL_BIND, mask, sizeof(mask) * 8 + 1, 0))
			goto fail;
	}
	step = "reopen read-only";
	snprintf(path, sizeof(path), "/proc/self/fd/%d", st->memfd);
	st->rofd = open(path, O_RDONLY | O_CLOEXEC);
	if (st->rofd < 0)
		goto fail;
	return st;
fail:
	e = errno;
	snprintf(why, whylen, "store of domain \"%s\" node %d: %s: %s", domain, node, step,
		 strerror(e));
	store_close(st);
	errno = e;
	return NULL;
}

static struct store *store_find(struct broker *b, const char *domain, int node)
{
	for (struct store *st = b->stores; st; st = st->next)
		if (st->node == node && !strcmp(st->domain, domain))
			return st;
	return NULL;
}

static void store_unlink(struct broker *b, struct store *st)
{
	for (struct store **p = &b->stores; *p; p = &(*p)->next)
		if (*p == st) {
			*p = st->next;
			return;
		}
}

/* ---- pages and holds ---------------------------------------------------------- */

/* The index slot of @hash, or UINT32_MAX. */
static uint32_t index_slot(const struct store *st, uint64_t hash)
{
	return lp_find(&st->index, hash);
}

static void page_free(struct broker *b, struct store *st, uint32_t pg)
{
	struct spage *p = &st->pages[pg];
	uint32_t slot = index_slot(st, p->hash);

	/* Out of the index: the head of its chain, or linked past. */
	if (slot != UINT32_MAX) {
		uint32_t *head = lp_at(&st->index, slot);

		if (*head == pg + 1) {
			if (p->next)
				*head = p->next;
			else
				lp_del(&st->index, slot);
		} else {
			for (uint32_t q = *head - 1; st->pages[q].next; q = st->pages[q].next - 1)
				if (st->pages[q].next == pg + 1) {
					st->pages[q].next = p->next;
					break;
				}
		}
	}
	if (fallocate(st->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)pg * PAGE,
		      PAGE)) {
		if (!b->punch_warned)
			blog(b,
			     "domain \"%s\": punching store page %u: %s (the page is reused, "
			     "its memory not returned)",
			     st->domain, pg, strerror(errno));
		b->punch_warned = true;
	}
	p->hash = 0;
	p->holders = 0;
	p->next = st->free_head;
	st->free_head = pg + 1;
	st->used--;
	st->punched++;
}

/* A new page (holders 0, not in the index), or -ENOSPC. */
static int64_t page_alloc(struct store *st)
{
	uint32_t pg;

	if (st->free_head) {
		pg = st->free_head - 1;
		st->free_head = st->pages[pg].next;
	} else if (st->hi < st->cap) {
		pg = st->hi++;
	} else {
		return -ENOSPC;
	}
	st->pages[pg] = (struct spage){0};
	st->used++;
	return pg;
}

static size_t held_bytes(const struct store *st)
{
	return ((size_t)st->cap + 63) / 64 * 8;
}

static bool holds(const struct bclient *c, uint32_t pg)
{
	return c->held && (c->held[pg / 64] >> (pg % 64) & 1);
}

/* @c holds @pg (once): 0, or -ENOMEM (not granted). */
static int hold_grant(struct store *st, struct bclient *c, uint32_t pg)
{
	if (!c->held) {
		void *p = mmap(NULL, held_bytes(st), PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

		if (p == MAP_FAILED)
			return -ENOMEM;
		c->held = p;
	}
	if (holds(c, pg))
		return 0;
	c->held[pg / 64] |= 1ull << (pg % 64);
	c->nheld++;
	if (++st->pages[pg].holders == 2)
		st->shared++;
	return 0;
}

static void hold_drop(struct broker *b, struct store *st, uint32_t pg)
{
	struct spage *p = &st->pages[pg];

	if (--p->holders == 1)
		st->shared--;
	if (!p->holders)
		page_free(b, st, pg);
}

/* ---- replies -------------------------------------------------------------------- */

static void put_hdr(void *reply, uint32_t type, uint32_t len, uint32_t seq, uint32_t count)
{
	struct rfb_hdr h = {.type = type, .len = len, .seq = seq, .count = count};

	memcpy(reply, &h, sizeof(h));
}

static size_t reply_error(struct broker *b, struct bclient *c, uint32_t seq, void *reply,
			  bool *close_after, const char *fmt, ...)
{
	struct rfb_error r = {.status = EPROTO};
	va_list ap;
	size_t n;

	/* "client 3 (pid 1234, uid 1000): cause", cut to fit */
	n = strlen(who(c, r.msg, sizeof(r.msg)));
	r.msg[n++] = ':';
	r.msg[n++] = ' ';
	va_start(ap, fmt);
	vsnprintf(r.msg + n, sizeof(r.msg) - n, fmt, ap);
	va_end(ap);
	put_hdr(&r, RFB_ERROR, sizeof(r), seq, 0);
	memcpy(reply, &r, sizeof(r));
	blog(b, "%s: closed (protocol error)", r.msg);
	b->ctr.protocol_errors++;
	*close_after = true;
	return sizeof(r);
}

static size_t reply_welcome(struct broker *b, struct bclient *c, uint32_t seq, void *reply,
			    uint32_t status, const char *msg)
{
	struct rfb_welcome r = {.status = status, .client_id = c->id};

	if (!status)
		r.store_pages = c->st->cap;
	snprintf(r.msg, sizeof(r.msg), "%s", msg);
	put_hdr(&r, RFB_WELCOME, sizeof(r), seq, 0);
	memcpy(reply, &r, sizeof(r));
	if (status) {
		char w[64];

		b->ctr.refusals++;
		blog(b, "%s: refused: %s", who(c, w, sizeof(w)), msg);
	}
	return sizeof(r);
}

/* ---- requests ------------------------------------------------------------------- */

static size_t do_hello(struct broker *b, struct bclient *c, const struct rfb_hello *m, void *reply,
		       int *fd_out, bool *close_after)
{
	uint32_t seq = m->h.seq;
	char msg[RFB_MSG_MAX + 64], why[200];
	struct broker_peer peer = {.uid = c->uid,
				   .gid = c->gid,
				   .groups = c->groups,
				   .ngroups = c->ngroups,
				   .pid = c->pid,
				   .cgroup = c->cgroup};
	struct store *st, **tail;
	int node = m->numa;

	c->said_hello = true;
	/* A refused HELLO ends the connection: the client then runs without
	 * the broker, and nothing is left half-joined. */
	*close_after = true;
	if (m->version != RFB_VERSION) {
		snprintf(msg, sizeof(msg), "protocol version %u; this broker speaks %u", m->version,
			 RFB_VERSION);
		return reply_welcome(b, c, seq, reply, EPROTO, msg);
	}
	if (m->flags) {
		snprintf(msg, sizeof(msg), "HELLO flags %#llx unknown (none are defined)",
			 (unsigned long long)m->flags);
		return reply_welcome(b, c, seq, reply, EINVAL, msg);
	}
	if (!domain_name_ok(m->domain)) {
		snprintf(msg, sizeof(msg), "domain name \"%.70s\": 1 to %d of A-Z a-z 0-9 _ . -",
			 m->domain, RFB_DOMAIN_MAX - 1);
		return reply_welcome(b, c, seq, reply, EINVAL, msg);
	}
	if (node < -1 || (b->conf.nr_nodes > 1 && node >= b->conf.nr_nodes) ||
	    (b->conf.nr_nodes <= 1 && node > 0)) {
		snprintf(msg, sizeof(msg), "domain \"%s\": NUMA node %d: the host has %d",
			 m->domain, node, b->conf.nr_nodes < 1 ? 1 : b->conf.nr_nodes);
		return reply_welcome(b, c, seq, reply, EINVAL, msg);
	}
	if (b->conf.nr_nodes <= 1)
		node = -1; /* one node: one store per domain */
	if (!domains_admit(b->conf.domains, m->domain, &peer)) {
		snprintf(msg, sizeof(msg), "domain \"%s\": uid %u (gid %u) not allowed", m->domain,
			 (unsigned)c->uid, (unsigned)c->gid);
		return reply_welcome(b, c, seq, reply, EACCES, msg);
	}
	st = store_find(b, m->domain, node);
	if (!st) {
		st = store_open(b, m->domain, node, why, sizeof(why));
		if (!st)
			return reply_welcome(b, c, seq, reply, (uint32_t)errno, why);
		for (tail = &b->stores; *tail;)
			tail = &(*tail)->next;
		*tail = st;
	}
	st->clients++;
	c->st = st;
	c->slot = cand_slot_get(&st->slots);
	free(c->groups);
	free(c->cgroup);
	c->groups = NULL;
	c->cgroup = NULL;
	c->ngroups = 0;
	*close_after = false;
	*fd_out = st->rofd;
	snprintf(msg, sizeof(msg), "domain \"%s\" node %d: client %u", st->domain, st->node, c->id);
	return reply_welcome(b, c, seq, reply, 0, msg);
}

static size_t do_lookup(struct broker *b, struct bclient *c, const struct rfb_hdr *h,
			const uint8_t *body, void *reply)
{
	struct store *st = c->st;
	uint64_t now = now_ms(b);

	for (uint32_t k = 0; k < h->count; k++) {
		struct rfb_lookup_ent ent = {.status = RFB_MISS};
		uint64_t hash;
		uint32_t slot;

		memcpy(&hash, body + 8 * (size_t)k, 8);
		st->lookups++;
		slot = index_slot(st, hash);
		if (slot != UINT32_MAX) {
			uint32_t pg = *(uint32_t *)lp_at(&st->index, slot) - 1;

			if (!hold_grant(st, c, pg)) {
				ent = (struct rfb_lookup_ent){.status = RFB_HIT, .pg = pg};
				st->hits++;
			}
		} else {
			if (cand_ask(&st->cand, &st->slots, hash, c->slot, now, RFB_CAND_TTL_MS)) {
				ent.status = RFB_TWIN;
				st->twins++;
			}
		}
		memcpy((char *)reply + sizeof(*h) + k * sizeof(ent), &ent, sizeof(ent));
	}
	put_hdr(reply, RFB_LOOKUP_R,
		(uint32_t)(sizeof(*h) + h->count * sizeof(struct rfb_lookup_ent)), h->seq,
		h->count);
	return sizeof(*h) + h->count * sizeof(struct rfb_lookup_ent);
}

/* One INSERT entry: a store page with exactly @data's bytes, held by @c. */
static struct rfb_insert_ent insert_one(struct broker *b, struct store *st, struct bclient *c,
					uint64_t hash, const uint8_t *data)
{
	uint8_t have[PAGE];
	uint32_t slot, last = 0;
	int64_t pg;

	st->inserts++;
	if (XXH3_64bits(data, PAGE) != hash) {
		st->bad_hash++;
		return (struct rfb_insert_ent){.status = EBADMSG};
	}
	slot = index_slot(st, hash);
	if (slot != UINT32_MAX) {
		for (uint32_t q = *(uint32_t *)lp_at(&st->index, slot); q;
		     q = st->pages[q - 1].next) {
			last = q;
			if (pread(st->memfd, have, PAGE, (off_t)(q - 1) * PAGE) != PAGE ||
			    memcmp(have, data, PAGE))
				continue;
			if (hold_grant(st, c, q - 1))
				return (struct rfb_insert_ent){.status = ENOMEM};
			return (struct rfb_insert_ent){.status = 0, .pg = q - 1};
		}
	} else if (lp_reserve(&st->index)) {
		return (struct rfb_insert_ent){.status = ENOMEM};
	}
	pg = page_alloc(st);
	if (pg < 0) {
		st->enospc++;
		return (struct rfb_insert_ent){.status = ENOSPC};
	}
	if (pwrite(st->memfd, data, PAGE, pg * PAGE) != PAGE) {
		int e = errno ? errno : EIO;

		st->pages[pg].next = st->free_head; /* back to the free list, unfiled */
		st->free_head = (uint32_t)pg + 1;
		st->used--;
		fallocate(st->memfd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, pg * PAGE, PAGE);
		return (struct rfb_insert_ent){.status = (uint32_t)e};
	}
	st->pages[pg].hash = hash;
	if (last) {
		st->pages[last - 1].next = (uint32_t)pg + 1; /* same hash, other bytes */
	} else {
		bool found;

		*(uint32_t *)lp_at(&st->index, lp_probe(&st->index, hash, &found)) =
		    (uint32_t)pg + 1;
		st->index.count++;
	}
	st->inserts_new++;
	if (hold_grant(st, c, (uint32_t)pg)) {
		/* Filed but unheld would never be punched: undo. */
		st->pages[pg].holders = 1;
		hold_drop(b, st, (uint32_t)pg);
		return (struct rfb_insert_ent){.status = ENOMEM};
	}
	return (struct rfb_insert_ent){.status = 0, .pg = (uint32_t)pg};
}

static size_t do_insert(struct broker *b, struct bclient *c, const struct rfb_hdr *h,
			const uint8_t *body, void *reply)
{
	const uint8_t *pages = body + 8 * (size_t)h->count;

	for (uint32_t k = 0; k < h->count; k++) {
		struct rfb_insert_ent ent;
		uint64_t hash;

		memcpy(&hash, body + 8 * (size_t)k, 8);
		ent = insert_one(b, c->st, c, hash, pages + (size_t)k * PAGE);
		memcpy((char *)reply + sizeof(*h) + k * sizeof(ent), &ent, sizeof(ent));
	}
	put_hdr(reply, RFB_INSERT_R,
		(uint32_t)(sizeof(*h) + h->count * sizeof(struct rfb_insert_ent)), h->seq,
		h->count);
	return sizeof(*h) + h->count * sizeof(struct rfb_insert_ent);
}

static size_t do_put(struct broker *b, struct bclient *c, const struct rfb_hdr *h,
		     const uint8_t *body, void *reply)
{
	struct rfb_put_r r = {0};
	struct store *st = c->st;

	for (uint32_t k = 0; k < h->count; k++) {
		uint32_t pg;

		memcpy(&pg, body + 4 * (size_t)k, 4);
		if (pg >= st->cap || !holds(c, pg)) {
			r.refused++;
			continue;
		}
		c->held[pg / 64] &= ~(1ull << (pg % 64));
		c->nheld--;
		hold_drop(b, st, pg);
		r.released++;
	}
	st->released += r.released;
	st->refused += r.refused;
	put_hdr(&r, RFB_PUT_R, sizeof(r), h->seq, 0);
	memcpy(reply, &r, sizeof(r));
	return sizeof(r);
}

static size_t do_report(struct bclient *c, const struct rfb_report *m, void *reply)
{
	struct store *st = c->st;
	struct rfb_report_r r = {0};
	uint64_t mapped = m->mapped_pages > MAPPED_MAX ? MAPPED_MAX : m->mapped_pages;

	st->mapped = st->mapped - c->mapped + mapped;
	c->mapped = mapped;
	r.clients = st->clients;
	r.store_pages = st->used;
	r.shared_pages = st->shared;
	r.mapped_pages = st->mapped;
	put_hdr(&r, RFB_REPORT_R, sizeof(r), m->h.seq, 0);
	memcpy(reply, &r, sizeof(r));
	return sizeof(r);
}

static const char *type_name(uint32_t t)
{
	switch (t) {
	case RFB_HELLO:
		return "HELLO";
	case RFB_LOOKUP:
		return "LOOKUP";
	case RFB_INSERT:
		return "INSERT";
	case RFB_PUT:
		return "PUT";
	case RFB_REPORT:
		return "REPORT";
	}
	return NULL;
}

size_t broker_handle(struct broker *b, struct bclient *c, const void *msg, size_t len, void *reply,
		     int *fd_out, bool *close_after)
{
	union {
		struct rfb_hello hello;
		struct rfb_report report;
		struct rfb_hdr h;
	} m;
	const uint8_t *body = (const uint8_t *)msg + sizeof(struct rfb_hdr);
	uint64_t want = 0, min = 1, max = 0, per = 0;
	const char *name;

	*fd_out = -1;
	*close_after = false;
	if (len < sizeof(m.h))
		return reply_error(b, c, 0, reply, close_after,
				   "a datagram of %zu bytes, shorter than the header", len);
	memcpy(&m.h, msg, sizeof(m.h));
	name = type_name(m.h.type);
	if (!name)
		return reply_error(b, c, m.h.seq, reply, close_after, "unknown message type %#x",
				   m.h.type);
	if (m.h.len != len)
		return reply_error(b, c, m.h.seq, reply, close_after,
				   "%s: hdr.len %u, but the datagram is %zu bytes", name, m.h.len,
				   len);
	switch (m.h.type) {
	case RFB_HELLO:
	case RFB_REPORT:
		want = m.h.type == RFB_HELLO ? sizeof(struct rfb_hello) : sizeof(struct rfb_report);
		min = max = 0;
		break;
	case RFB_LOOKUP:
		max = RFB_LOOKUP_MAX;
		per = 8;
		break;
	case RFB_INSERT:
		max = RFB_INSERT_MAX;
		per = 8 + PAGE;
		break;
	case RFB_PUT:
		max = RFB_PUT_MAX;
		per = 4;
		break;
	}
	if (m.h.count < min || m.h.count > max)
		return reply_error(b, c, m.h.seq, reply, close_after, "%s: count %u (%llu to %llu)",
				   name, m.h.count, (unsigned long long)min,
				   (unsigned long long)max);
	if (per)
		want = sizeof(m.h) + per * m.h.count;
	if (len != want)
		return reply_error(b, c, m.h.seq, reply, close_after,
				   "%s: %zu bytes, but count %u makes %llu", name, len, m.h.count,
				   (unsigned long long)want);
	if (m.h.type == RFB_HELLO) {
		memcpy(&m.hello, msg, sizeof(m.hello));
		if (c->said_hello)
			return reply_error(b, c, m.h.seq, reply, close_after, "HELLO twice");
		if (!memchr(m.hello.domain, 0, sizeof(m.hello.domain)))
			return reply_error(b, c, m.h.seq, reply, close_after,
					   "HELLO: domain name not NUL-terminated");
		return do_hello(b, c, &m.hello, reply, fd_out, close_after);
	}
	if (!c->st)
		return reply_error(b, c, m.h.seq, reply, close_after, "%s before HELLO", name);
	switch (m.h.type) {
	case RFB_LOOKUP:
		return do_lookup(b, c, &m.h, body, reply);
	case RFB_INSERT:
		return do_insert(b, c, &m.h, body, reply);
	case RFB_PUT:
		return do_put(b, c, &m.h, body, reply);
	default:
		memcpy(&m.report, msg, sizeof(m.report));
		return do_report(c, &m.report, reply);
	}
}

/* ---- clients -------------------------------------------------------------------- */

struct bclient *broker_connect(struct broker *b, const struct broker_peer *peer)
{
	struct bclient *c = calloc(1, sizeof(*c));
	bool found;
	uint32_t i;

	if (!c)
		return NULL;
	c->pid = peer->pid;
	c->uid = peer->uid;
	c->gid = peer->gid;
	if (peer->ngroups) {
		c->groups = malloc(peer->ngroups * sizeof(gid_t));
		if (!c->groups)
			goto fail;
		memcpy(c->groups, peer->groups, peer->ngroups * sizeof(gid_t));
		c->ngroups = peer->ngroups;
	}
	if (peer->cgroup && !(c->cgroup = strdup(peer->cgroup)))
		goto fail;
	if (lp_reserve(&b->byid))
		goto fail;
	/* An id still connected after 2^32 connections is skipped. */
	do {
		c->id = ++b->next_id;
	} while (!c->id || client_by_id(b, c->id));
	i = lp_probe(&b->byid, c->id, &found);
	*(struct bclient **)lp_at(&b->byid, i) = c;
	b->byid.count++;
	b->ctr.connections++;
	b->ctr.clients++;
	return c;
fail:
	free(c->groups);
	free(c->cgroup);
	free(c);
	return NULL;
}

void broker_disconnect(struct broker *b, struct bclient *c)
{
	struct store *st = c->st;
	uint64_t dropped = 0, punched = 0;

	if (st) {
		uint64_t before = st->punched;

		/* Pages at hi and above were never handed out. */
		for (uint32_t w = 0; c->held && w < (st->hi + 63) / 64; w++) {
			for (uint64_t bits = c->held[w]; bits; bits &= bits - 1) {
				hold_drop(b, st, w * 64 + (uint32_t)__builtin_ctzll(bits));
				dropped++;
			}
		}
		if (c->held)
			munmap(c->held, held_bytes(st));
		punched = st->punched - before;
		st->mapped -= c->mapped;
		st->clients--;
		if (c->slot)
			cand_slot_put(&st->slots, c->slot); /* its candidates are dead */
	}
	lp_del(&b->byid, lp_find(&b->byid, c->id));
	b->ctr.clients--;
	if (st) {
		char w[64];

		blog(b, "%s: gone from domain \"%s\": %llu holds dropped, %llu pages punched",
		     who(c, w, sizeof(w)), st->domain, (unsigned long long)dropped,
		     (unsigned long long)punched);
		if (!st->clients) {
			store_unlink(b, st);
			store_close(st);
		}
	}
	free(c->groups);
	free(c->cgroup);
	free(c);
}

uint32_t broker_client_id(const struct bclient *c)
{
	return c->id;
}

uint64_t broker_client_holds(const struct bclient *c)
{
	return c->nheld;
}

/* ---- the broker ---------------------------------------------------------------- */

struct broker *broker_new(const struct broker_conf *conf)
{
	struct broker *b = calloc(1, sizeof(*b));

	if (!b)
		return NULL;
	b->conf = *conf;
	/* Page numbers travel as uint32 and tables store page + 1. */
	if (b->conf.store_pages > (1u << 31))
		b->conf.store_pages = 1u << 31;
	if (!b->conf.store_pages)
		b->conf.store_pages = 1;
	if (!b->conf.secret && getrandom(&b->conf.secret, sizeof(b->conf.secret), 0) < 0)
		b->conf.secret = clock_ms() * 0x9e3779b97f4a7c15ull;
	b->byid = (struct lp){.ops = &byid_ops, .secret = b->conf.secret ^ 0x27d4eb2f};
	return b;
}

void broker_free(struct broker *b)
{
	if (!b)
		return;
	while (b->stores) {
		struct store *st = b->stores;

		b->stores = st->next;
		store_close(st);
	}
	lp_free(&b->byid);
	free(b);
}

void broker_counters(const struct broker *b, struct broker_counters *out)
{
	*out = b->ctr;
}

void broker_foreach_store(const struct broker *b,
			  void (*fn)(const struct broker_store_info *, void *), void *arg)
{
	for (const struct store *st = b->stores; st; st = st->next) {
		struct broker_store_info si = {
		    .domain = st->domain,
		    .node = st->node,
		    .clients = st->clients,
		    .capacity_pages = st->cap,
		    .store_pages = st->used,
		    .shared_pages = st->shared,
		    .mapped_pages = st->mapped,
		    .lookups = st->lookups,
		    .hits = st->hits,
		    .twins = st->twins,
		    .inserts = st->inserts,
		    .inserts_new = st->inserts_new,
		    .bad_hash = st->bad_hash,
		    .enospc = st->enospc,
		    .released = st->released,
		    .refused = st->refused,
		    .punched = st->punched,
		    .candidates = st->cand.count,
		    .candidate_bytes = cand_bytes(&st->cand),
		    .candidates_evicted = st->cand.evicted,
		};
		struct stat sb;

		if (!fstat(st->memfd, &sb))
			si.resident_bytes = (uint64_t)sb.st_blocks * 512;
		fn(&si, arg);
	}
}
