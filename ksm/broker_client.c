/* SPDX-License-Identifier: MIT */
/*
 * Sharing a domain across processes: the client of the host broker
 * (ramfoldd; the protocol and its rules are in broker_proto.h).
 *
 * In RF_DEDUP_DOMAINS mode, for each (domain, node) of its VMs the engine
 * keeps one connection to the broker. The broker sends the domain's store
 * memfd, read-only; it becomes one of d->stores[] (a "broker store",
 * store_init_remote) and from then on the merge code treats it as it treats
 * the engine's own stores, with three differences:
 *
 *   - a new store page is not allocated and filled here but INSERTed: the
 *     broker copies the bytes, hashes them itself, and answers with the page
 *     (a new one, or the one that already had these bytes);
 *   - its pages are not filed in our index (a node per page in every
 *     process would cost more than the broker's one entry): the scanner
 *     asks the broker, one LOOKUP per scan unit, about the stable pages
 *     with no twin in our index. A HIT names a store page (another
 *     process's, or one we map already), a TWIN says another process has a
 *     page with this hash and is waiting, so this one INSERTs its own;
 *   - when the last of our guest pages lets go of a broker page, the page is
 *     reaped as usual and our hold on it is given back (PUT) instead of
 *     punching it: the broker punches a page no process holds.
 *
 * Holds and references. The broker counts at most one hold per process and
 * page (STORE_REF_HELD here); our store_page.ref counts our guest pages, as for
 * our own stores. A granted hold becomes a reference in take(); a page that
 * is dying here (STORE_REF_DYING: its last reference just went and the
 * reap's grace period has not passed) cannot be taken, so a grant of it is
 * given back. PUTs are queued (store_reap runs on scanner thread 0) and
 * always sent before the connection's next request, so the broker never
 * sees a PUT of ours after a grant it answered later: a page we map is
 * never released by a late PUT.
 *
 * Faults. A vCPU never waits for the broker: guest writes to merged pages
 * are the kernel's copy-on-write, and only scanner threads talk to it, with
 * a timeout. If the broker dies, the connection is lost: our merged pages
 * stay valid (the memfd lives as long as we map it), the store stays in
 * d->stores[] for them, and nothing more is merged onto it or asked of
 * it; one line is logged, and thread 0 connects
 * again every second, a new store taking a new slot. If the broker does not
 * answer in time, the connection is left open but unused: closing it would
 * make the broker drop our holds and punch pages our guests still map.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "broker_proto.h"
#include "dedup_internal.h"

#define RETRY_NS     1000000000ull
#define REPORT_NS    1000000000ull
#define IO_TIMEOUT_S 2

enum bc_state {
	BC_DOWN,    /* not connected; thread 0 tries again every RETRY_NS */
	BC_UP,	    /* connected, store published */
	BC_REFUSED, /* the broker refused this domain: intra-process only */
	BC_STUCK,   /* no answer in time: never used again, never closed */
};

struct broker_conn {
	struct rf_dedup *d;
	uint32_t domain;		/* interned id (dedup.c) */
	int numa;			/* the VMs' node, -1 = none */
	int16_t key_numa;		/* the node in index keys */
	char name[RFB_DOMAIN_MAX];	/* the domain's name */
	_Atomic int state;		/* enum bc_state */
	struct rf_store *_Atomic store; /* while BC_UP */
	int fd;
	pthread_mutex_t lock; /* one request in flight; puts; holds */
	uint32_t seq;
	uint64_t retry_ns, report_ns;
	uint32_t *puts; /* queued PUTs */
	unsigned int nputs, puts_cap;
	bool down_logged;
	uint8_t *buf; /* BC_BUF_MAX: the request, then its reply */
	struct broker_conn *next;
};

/* ---- I/O ---------------------------------------------------------------- */

#define BC_MAX(a, b) ((a) > (b) ? (a) : (b))
/*
 * The connection's buffer: every request but an INSERT's page bytes, and
 * every reply. The pages of an INSERT are sent from where they are
 * (bc_call's @pages), not copied in: a buffer big enough for them (128 KiB)
 * would be memory each process pays for as soon as its first full INSERT
 * touched it, against 16 KiB for the biggest other message (a full PUT).
 */
#define BC_BUF_MAX                                                                                 \
	BC_MAX(                                                                                    \
	    sizeof(struct rfb_put) + RFB_PUT_MAX * sizeof(uint32_t),                               \
	    BC_MAX(sizeof(struct rfb_lookup_r) + RFB_LOOKUP_MAX * sizeof(struct rfb_lookup_ent),   \
		   BC_MAX(sizeof(struct rfb_welcome), sizeof(struct rfb_error))))
_Static_assert(sizeof(struct rfb_lookup) + RFB_LOOKUP_MAX * sizeof(uint64_t) <= BC_BUF_MAX,
	       "a full LOOKUP fits the buffer");
_Static_assert(sizeof(struct rfb_insert) + RFB_INSERT_MAX * sizeof(uint64_t) <= BC_BUF_MAX &&
		   sizeof(struct rfb_insert_r) + RFB_INSERT_MAX * sizeof(struct rfb_insert_ent) <=
		       BC_BUF_MAX,
	       "an INSERT's hashes and its reply fit the buffer");
_Static_assert(sizeof(struct rfb_hello) <= BC_BUF_MAX && sizeof(struct rfb_report_r) <= BC_BUF_MAX,
	       "HELLO and REPORT_R fit the buffer");

static void bc_lost(struct broker_conn *bc, const char *why, int err)
{
	struct rf_dedup *d = bc->d;

	if (err == -EAGAIN || err == -EWOULDBLOCK || err == -EPROTO) {
		/* The broker may still be there and still count our holds:
		 * closing would have it punch pages our guests map. */
		atomic_store(&bc->state, BC_STUCK);
		rf_log(d->e, RF_LOG_ERR,
		       "dedup: broker %s: domain \"%s\": %s %s; merging across processes stops "
		       "(the connection stays open so that the broker keeps our pages)",
		       d->broker_path, bc->name,
		       err == -EPROTO ? "protocol error on" : "no answer to", why);
		return;
	}
	atomic_store(&bc->state, BC_DOWN);
	atomic_store(&bc->store, NULL);
	close(bc->fd);
	bc->fd = -1;
	bc->nputs = 0; /* the broker dropped every hold of ours */
	bc->retry_ns = rf_now_ns() + RETRY_NS;
	rf_log(d->e, RF_LOG_WARN,
	       "dedup: broker %s: domain \"%s\": connection lost (%s: %s); merging across "
	       "processes stops until it is back, merged pages stay",
	       d->broker_path, bc->name, why, err ? strerror(-err) : "closed");
}

/*
 * Send the request in bc->buf (@len bytes), followed by @npages pages of
 * RF_PAGE_SIZE bytes from @pages (an INSERT's; the datagram is one, the
 * kernel gathers it), and receive its reply in bc->buf; the reply must be
 * @type with @fixed bytes plus hdr.count entries of @ent bytes (@count
 * entries when @count is not ~0u). *@fd receives a descriptor passed with
 * it, if @fd. Connection lock held.
 */
static int bc_call_pages(struct broker_conn *bc, size_t len, const uint8_t *const *pages,
			 unsigned int npages, uint32_t type, size_t fixed, size_t ent,
			 uint32_t count, int *fd)
{
	struct rfb_hdr *h = (struct rfb_hdr *)bc->buf;
	union {
		struct cmsghdr c;
		char b[CMSG_SPACE(sizeof(int))];
	} cm;
	struct iovec out[1 + RFB_INSERT_MAX];
	struct iovec iov = {bc->buf, BC_BUF_MAX};
	struct msghdr mh = {.msg_iov = out, .msg_iovlen = 1 + npages};
	size_t total = len + (size_t)npages * RF_PAGE_SIZE;
	uint32_t seq = ++bc->seq;
	ssize_t got;

	if (npages > RFB_INSERT_MAX)
		return -EINVAL;
	h->seq = seq;
	h->len = (uint32_t)total;
	out[0] = (struct iovec){bc->buf, len};
	for (unsigned int i = 0; i < npages; i++)
		out[1 + i] = (struct iovec){(void *)pages[i], RF_PAGE_SIZE};
	if (sendmsg(bc->fd, &mh, MSG_NOSIGNAL) != (ssize_t)total) {
		bc_lost(bc, "sending a request", -errno);
		return -EPIPE;
	}
	mh = (struct msghdr){.msg_iov = &iov, .msg_iovlen = 1};
	if (fd) {
		*fd = -1;
		mh.msg_control = cm.b;
		mh.msg_controllen = sizeof(cm.b);
	}
	got = recvmsg(bc->fd, &mh, MSG_CMSG_CLOEXEC);
	if (got <= 0) {
		bc_lost(bc, "waiting for its answer", got < 0 ? -errno : 0);
		return -EPIPE;
	}
	if (fd) {
		for (struct cmsghdr *c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c))
			if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
			    c->cmsg_len == CMSG_LEN(sizeof(int)))
				memcpy(fd, CMSG_DATA(c), sizeof(int));
	}
	if ((size_t)got >= sizeof(struct rfb_error) && h->type == RFB_ERROR) {
		struct rfb_error *e = (struct rfb_error *)bc->buf;

		e->msg[RFB_MSG_MAX - 1] = 0;
		rf_log(bc->d->e, RF_LOG_ERR,
		       "dedup: broker %s: domain \"%s\": refused a request: %s", bc->d->broker_path,
		       bc->name, e->msg);
		bc_lost(bc, "a request", -EPROTO);
		return -EPROTO;
	}
	if ((mh.msg_flags & MSG_TRUNC) || (size_t)got < fixed || h->type != type || h->seq != seq ||
	    h->len != (uint32_t)got || (count != ~0u && h->count != count) ||
	    (size_t)got != fixed + (size_t)h->count * ent) {
		if (fd && *fd >= 0)
			close(*fd);
		bc_lost(bc, "a malformed answer", -EPROTO);
		return -EPROTO;
	}
	return 0;
}

static int bc_call(struct broker_conn *bc, size_t len, uint32_t type, size_t fixed, size_t ent,
		   uint32_t count, int *fd)
{
	return bc_call_pages(bc, len, NULL, 0, type, fixed, ent, count, fd);
}

/* Send the queued PUTs. Connection lock held. */
static int bc_flush_puts(struct broker_conn *bc)
{
	struct rfb_put *p = (struct rfb_put *)bc->buf;
	unsigned int done = 0;

	while (done < bc->nputs && atomic_load(&bc->state) == BC_UP) {
		unsigned int n = bc->nputs - done < RFB_PUT_MAX ? bc->nputs - done : RFB_PUT_MAX;

		p->h.type = RFB_PUT;
		p->h.count = n;
		memcpy(p->pg, bc->puts + done, n * sizeof(uint32_t));
		if (bc_call(bc, sizeof(*p) + n * sizeof(uint32_t), RFB_PUT_R,
			    sizeof(struct rfb_put_r), 0, 0, NULL) != 0)
			return -EPIPE;
		if (((struct rfb_put_r *)bc->buf)->refused)
			rf_log(bc->d->e, RF_LOG_ERR,
			       "dedup: broker %s: domain \"%s\": %u of %u pages given back were "
			       "not ours",
			       bc->d->broker_path, bc->name, ((struct rfb_put_r *)bc->buf)->refused,
			       n);
		done += n;
	}
	bc->nputs = 0;
	return atomic_load(&bc->state) == BC_UP ? 0 : -EPIPE;
}

static void bc_queue_put(struct broker_conn *bc, uint32_t pg)
{
	if (bc->nputs == bc->puts_cap) {
		unsigned int cap = bc->puts_cap ? bc->puts_cap * 2 : 1024;
		uint32_t *n = rf_zalloc(bc->d->e, cap * sizeof(*n));

		if (!n) {
			/* Cannot queue: send what is queued now, then this one. */
			bc_flush_puts(bc);
			if (bc->nputs == bc->puts_cap)
				return;
		} else {
			if (bc->puts)
				memcpy(n, bc->puts, bc->nputs * sizeof(*n));
			rf_free(bc->d->e, bc->puts);
			bc->puts = n;
			bc->puts_cap = cap;
		}
	}
	bc->puts[bc->nputs++] = pg;
}

/* ---- holds -------------------------------------------------------------- */

/*
 * The broker just granted us a hold on @pg (HIT or INSERT). Make it a
 * reference of ours, or give it back if the page is dying here. Returns
 * whether a reference was taken. Connection lock held.
 */
static bool take(struct broker_conn *bc, struct rf_store *s, uint32_t pg)
{
	struct store_page *p = &s->pages[pg];
	uint32_t free_ref = 0, v;

	if (store_get_unless_zero(s, pg))
		return true; /* ours already (held): one more reference */
	v = atomic_load(&p->ref);
	if (v & STORE_REF_DYING) {
		/* Still held: the reap will give it back. Not held: the reap
		 * did, and this grant is a new hold to give back too. */
		if (!(v & STORE_REF_HELD))
			bc_queue_put(bc, pg);
		return false;
	}
	/* Free here: no guest page of ours maps it. Only grants (under this
	 * lock) take a free page, so nobody races the 0 -> 1. */
	if (!atomic_compare_exchange_strong(&p->ref, &free_ref, 1 | STORE_REF_HELD))
		return store_get_unless_zero(s, pg);
	atomic_fetch_add(&s->live, 1);
	atomic_fetch_add(&s->refs, 1);
	return true;
}

void broker_release(struct broker_conn *bc, struct rf_store *s, const uint32_t *pgs, uint64_t n)
{
	pthread_mutex_lock(&bc->lock);
	for (uint64_t i = 0; i < n; i++) {
		struct store_page *p = &s->pages[pgs[i]];

		if (atomic_fetch_and(&p->ref, ~STORE_REF_HELD) & STORE_REF_HELD) {
			/* A store no longer up keeps its pages for us: the
			 * broker that held them is gone. */
			if (atomic_load(&bc->store) == s)
				bc_queue_put(bc, pgs[i]);
		}
	}
	pthread_mutex_unlock(&bc->lock);
}

/* ---- connecting ------------------------------------------------------------ */

static void bc_connect(struct broker_conn *bc)
{
	struct rf_dedup *d = bc->d;
	struct rfb_hello *hello = (struct rfb_hello *)bc->buf;
	struct rfb_welcome *w = (struct rfb_welcome *)bc->buf;
	struct timeval tv = {IO_TIMEOUT_S, 0};
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	int slot, sfd = -1, err;

	bc->retry_ns = rf_now_ns() + RETRY_NS;
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", d->broker_path);
	bc->fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (bc->fd < 0)
		goto fail;
	if (connect(bc->fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 ||
	    setsockopt(bc->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv)) != 0 ||
	    setsockopt(bc->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0)
		goto fail;
	memset(hello, 0, sizeof(*hello));
	hello->h.type = RFB_HELLO;
	hello->version = RFB_VERSION;
	hello->numa = bc->numa;
	snprintf(hello->domain, sizeof(hello->domain), "%s", bc->name);
	atomic_store(&bc->state, BC_UP); /* for bc_call; published below */
	if (bc_call(bc, sizeof(*hello), RFB_WELCOME, sizeof(*w), 0, 0, &sfd) != 0) {
		/* bc_call said why. No hold yet: nothing to keep open for. */
		if (bc->fd >= 0)
			close(bc->fd);
		bc->fd = -1;
		atomic_store(&bc->state, BC_DOWN);
		return;
	}
	w->msg[RFB_MSG_MAX - 1] = 0;
	if (w->status) {
		atomic_store(&bc->state, BC_REFUSED);
		rf_log(d->e, RF_LOG_ERR,
		       "dedup: broker %s: domain \"%s\" refused: %s; its VMs share pages within "
		       "this process only",
		       d->broker_path, bc->name, w->msg);
		if (sfd >= 0)
			close(sfd);
		close(bc->fd);
		bc->fd = -1;
		return;
	}
	slot = atomic_load(&d->nslots);
	if (sfd < 0 || w->store_pages == 0 || w->store_pages > STORE_PG_MASK ||
	    slot >= STORE_MAX_NODES) {
		rf_log(d->e, RF_LOG_ERR,
		       "dedup: broker %s: domain \"%s\": %s; sharing within this process only",
		       d->broker_path, bc->name,
		       slot >= STORE_MAX_NODES
			   ? "no store slot left (the broker restarted too often)"
			   : "the welcome carried no usable store");
		if (sfd >= 0)
			close(sfd);
		atomic_store(&bc->state, BC_REFUSED);
		close(bc->fd);
		bc->fd = -1;
		return;
	}
	err = store_init_remote(&d->stores[slot], d->e, sfd, w->store_pages, bc);
	if (err) {
		bc_lost(bc, "mapping its store", err);
		return;
	}
	/* Published: dedup_store_of may resolve payloads of this slot. */
	atomic_store(&d->nslots, slot + 1);
	atomic_store(&bc->store, &d->stores[slot]);
	bc->down_logged = false;
	rf_log(d->e, RF_LOG_INFO,
	       "dedup: broker %s: domain \"%s\" joined (client %u, store of %" PRIu64 " pages)",
	       d->broker_path, bc->name, w->client_id, (uint64_t)w->store_pages);
	return;

fail:
	err = -errno;
	if (bc->fd >= 0)
		close(bc->fd);
	bc->fd = -1;
	atomic_store(&bc->state, BC_DOWN);
	if (!bc->down_logged) {
		bc->down_logged = true;
		rf_log(d->e, RF_LOG_WARN,
		       "dedup: broker %s: domain \"%s\": cannot connect: %s; sharing within this "
		       "process only until it can",
		       d->broker_path, bc->name, strerror(-err));
	}
}

static struct broker_conn *bc_find(struct rf_dedup *d, uint32_t domain, int numa)
{
	for (struct broker_conn *bc = atomic_load(&d->bconns); bc; bc = bc->next)
		if (bc->domain == domain && bc->numa == numa)
			return bc;
	return NULL;
}

static struct broker_conn *bc_new(struct rf_dedup *d, const struct rf_dedup_vm *dv)
{
	struct broker_conn *bc = rf_zalloc(d->e, sizeof(*bc));

	if (!bc)
		return NULL;
	bc->buf = rf_zalloc(d->e, BC_BUF_MAX);
	if (!bc->buf) {
		rf_free(d->e, bc);
		return NULL;
	}
	bc->d = d;
	bc->domain = dv->domain;
	bc->numa = d->e->feat.numa_nodes > 1 ? dv->numa : -1;
	bc->key_numa = d->cfg.cross_node ? 0 : (int16_t)dv->numa;
	snprintf(bc->name, sizeof(bc->name), "%s", d->domain_names[dv->domain - 1]);
	bc->fd = -1;
	pthread_mutex_init(&bc->lock, NULL);
	/* Readers walk the list without a lock: it only grows, at its head. */
	bc->next = atomic_load(&d->bconns);
	atomic_store(&d->bconns, bc);
	return bc;
}

/* Domain ids of named domains are 1..256; other VMs share in-process only. */
static bool shares_across(const struct rf_dedup *d, const struct rf_dedup_vm *dv)
{
	return d->broker_path[0] && d->cfg.mode == RF_DEDUP_DOMAINS && dv->domain >= 1 &&
	       dv->domain <= 256;
}

void broker_tick(struct rf_dedup *d)
{
	uint64_t now = rf_now_ns();

	if (!d->broker_path[0])
		return;
	/* A connection for every (domain, node) of the VMs. */
	pthread_mutex_lock(&d->lock);
	for (struct rf_dedup_vm *dv = d->vms; dv; dv = dv->next)
		if (shares_across(d, dv) && !atomic_load(&dv->dead) &&
		    !bc_find(d, dv->domain, d->e->feat.numa_nodes > 1 ? dv->numa : -1))
			bc_new(d, dv);
	pthread_mutex_unlock(&d->lock);
	for (struct broker_conn *bc = atomic_load(&d->bconns); bc; bc = bc->next) {
		pthread_mutex_lock(&bc->lock);
		switch (atomic_load(&bc->state)) {
		case BC_DOWN:
			if (now < bc->retry_ns)
				break;
			/* The store of the broker we lost (if any) keeps
			 * the pages mapped from it; new twins go to the new
			 * store (broker pages are never in our index). */
			bc_connect(bc);
			break;
		case BC_UP:
			if (bc_flush_puts(bc) != 0)
				break;
			if (now >= bc->report_ns) {
				struct rfb_report *r = (struct rfb_report *)bc->buf;
				struct rf_store *s = atomic_load(&bc->store);

				bc->report_ns = now + REPORT_NS;
				memset(r, 0, sizeof(*r));
				r->h.type = RFB_REPORT;
				r->mapped_pages = s ? atomic_load(&s->refs) : 0;
				bc_call(bc, sizeof(*r), RFB_REPORT_R, sizeof(struct rfb_report_r),
					0, 0, NULL);
			}
			break;
		default:
			break;
		}
		pthread_mutex_unlock(&bc->lock);
	}
}

struct rf_store *broker_store_for(struct rf_dedup *d, const struct rf_dedup_vm *dv)
{
	struct broker_conn *bc;

	if (!shares_across(d, dv))
		return NULL;
	bc = bc_find(d, dv->domain, d->e->feat.numa_nodes > 1 ? dv->numa : -1);
	if (!bc || atomic_load(&bc->state) != BC_UP)
		return NULL;
	return atomic_load(&bc->store);
}

/* ---- requests ------------------------------------------------------------ */

int broker_lookup(struct rf_dedup *d, struct rf_store *s, const uint64_t *hash, unsigned int n,
		  struct rfb_lookup_ent *ent)
{
	struct broker_conn *bc = s->remote;
	struct rfb_lookup *q = (struct rfb_lookup *)bc->buf;
	const struct rfb_lookup_r *a = (const struct rfb_lookup_r *)bc->buf;
	int err = 0;

	(void)d;
	if (n == 0 || n > RFB_LOOKUP_MAX)
		return -EINVAL;
	pthread_mutex_lock(&bc->lock);
	if (atomic_load(&bc->state) != BC_UP || atomic_load(&bc->store) != s ||
	    bc_flush_puts(bc) != 0) {
		err = -ENOTCONN;
		goto out;
	}
	q->h.type = RFB_LOOKUP;
	q->h.count = n;
	memcpy(q->hash, hash, n * sizeof(uint64_t));
	err = bc_call(bc, sizeof(*q) + n * sizeof(uint64_t), RFB_LOOKUP_R, sizeof(*a),
		      sizeof(a->ent[0]), n, NULL);
	if (err)
		goto out;
	memcpy(ent, a->ent, n * sizeof(*ent));
	for (unsigned int i = 0; i < n; i++) {
		if (ent[i].status == RFB_HIT) {
			if (ent[i].pg >= s->cap) {
				bc_lost(bc, "a lookup (a page beyond its store)", -EPROTO);
				/* The earlier hits hold references: hand them
				 * back as misses would not. */
				for (unsigned int k = 0; k < i; k++)
					if (ent[k].status == RFB_HIT)
						store_put(s, ent[k].pg);
				err = -EPROTO;
				goto out;
			}
			if (!take(bc, s, ent[i].pg))
				ent[i].status = RFB_MISS;
		} else if (ent[i].status != RFB_TWIN) {
			ent[i].status = RFB_MISS;
		}
	}
out:
	pthread_mutex_unlock(&bc->lock);
	return err;
}

int broker_insert(struct rf_dedup *d, struct rf_store *s, const uint64_t *hash,
		  const uint8_t *const *pages, unsigned int n, uint32_t *pg)
{
	struct broker_conn *bc = s->remote;
	struct rfb_insert *q = (struct rfb_insert *)bc->buf;
	const struct rfb_insert_r *a = (const struct rfb_insert_r *)bc->buf;
	struct rfb_insert_ent ent[RFB_INSERT_MAX];
	int err = -ENOTCONN;

	if (n == 0 || n > RFB_INSERT_MAX)
		return -EINVAL;
	for (unsigned int i = 0; i < n; i++)
		pg[i] = UINT32_MAX;
	pthread_mutex_lock(&bc->lock);
	if (atomic_load(&bc->state) != BC_UP || atomic_load(&bc->store) != s ||
	    bc_flush_puts(bc) != 0)
		goto out;
	q->h.type = RFB_INSERT;
	q->h.count = n;
	memcpy(q->hash, hash, n * sizeof(uint64_t));
	err = bc_call_pages(bc, sizeof(*q) + n * sizeof(uint64_t), pages, n, RFB_INSERT_R,
			    sizeof(*a), sizeof(a->ent[0]), n, NULL);
	if (err)
		goto out;
	memcpy(ent, a->ent, n * sizeof(ent[0]));
	for (unsigned int i = 0; i < n; i++) {
		if (ent[i].status) {
			if (ent[i].status != ENOSPC)
				rf_log(d->e, RF_LOG_WARN,
				       "dedup: broker %s: domain \"%s\": insert refused: %s",
				       d->broker_path, bc->name, strerror((int)ent[i].status));
			continue;
		}
		if (ent[i].pg >= s->cap || !take(bc, s, ent[i].pg))
			continue; /* beyond the store, or dying here (given back) */
		/* The broker's word is not taken: the bytes are checked. */
		if (memcmp(store_addr(s, ent[i].pg), pages[i], RF_PAGE_SIZE) != 0) {
			store_put(s, ent[i].pg);
			continue;
		}
		pg[i] = ent[i].pg;
	}
out:
	pthread_mutex_unlock(&bc->lock);
	return err;
}

/* ---- start and stop -------------------------------------------------------- */

int broker_config(struct rf_dedup *d, const char *path)
{
	const char *env = getenv("RAMFOLD_BROKER");

	d->broker_path[0] = 0;
	if (d->cfg.mode != RF_DEDUP_DOMAINS)
		return 0;
	if (!path || !path[0])
		path = env && env[0] ? env : NULL;
	if (!path) {
		/* The system broker, if there is one; else in-process. */
		if (access(RFB_DEFAULT_SOCKET, F_OK) != 0)
			return 0;
		path = RFB_DEFAULT_SOCKET;
	}
	if (strlen(path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		rf_log(d->e, RF_LOG_ERR, "dedup: broker socket path too long (%zu bytes): %s",
		       strlen(path), path);
		return -ENAMETOOLONG;
	}
	snprintf(d->broker_path, sizeof(d->broker_path), "%s", path);
	return 0;
}

void broker_close_all(struct rf_dedup *d)
{
	struct broker_conn *bc = atomic_exchange(&d->bconns, NULL), *next;

	/* Every VM is detached: no guest page maps a store page any more,
	 * so closing drops nothing anyone needs. */
	for (; bc; bc = next) {
		next = bc->next;
		if (bc->fd >= 0)
			close(bc->fd);
		pthread_mutex_destroy(&bc->lock);
		rf_free(d->e, bc->puts);
		rf_free(d->e, bc->buf);
		rf_free(d->e, bc);
	}
}

unsigned int broker_connected(struct rf_dedup *d)
{
	unsigned int n = 0;

	for (struct broker_conn *bc = atomic_load(&d->bconns); bc; bc = bc->next)
		n += atomic_load(&bc->state) == BC_UP;
	return n;
}
