/* SPDX-License-Identifier: MIT */
/*
 * The wire protocol between libramfold (ksm/broker_client.c) and the host
 * broker ramfoldd (ramfoldd/): sharing domains across processes. Not
 * installed; both sides are built from this tree, and a HELLO carries the
 * version so a mismatch is refused by name rather than misread.
 *
 * Transport: a unix SOCK_SEQPACKET socket, one message per datagram, host
 * byte order (both ends are on one host). Every message starts with struct
 * rfb_hdr; hdr.len is the datagram's whole length and must equal what the
 * type and hdr.count imply, or the message is malformed. The client sends
 * one request and waits for its reply (seq echoed), so there is never more
 * than one request in flight per connection. A malformed request gets an
 * RFB_ERROR reply and the connection is closed; it never harms another
 * client.
 *
 * A connection is one client's membership of one (domain, NUMA node): the
 * first message is HELLO; the broker decides from the peer's credentials
 * (SO_PEERCRED, SO_PEERGROUPS, its cgroup) and domains.conf whether it may
 * join. On success the WELCOME carries, by SCM_RIGHTS, a read-only
 * descriptor of the domain's store memfd: the client maps store pages
 * MAP_PRIVATE (a guest write is the kernel's copy-on-write) and reads them
 * through a MAP_SHARED PROT_READ window to compare bytes; it can neither
 * write nor punch the store. Only the broker fills store pages (from the
 * content an INSERT carries, hashed again by the broker: a client cannot
 * file a page under a false hash) and punches them.
 *
 * Holds: a client holds a store page at most once, whatever number of its
 * guest pages map it. A HIT or a successful INSERT grants a hold; PUT gives
 * it back. A page no client holds is punched out of the memfd and leaves
 * the index. A connection its client closes (the process exited or was
 * killed) drops all its holds at once, so a live client never closes a
 * connection while its guests map pages of the store. A connection the
 * broker closes (after an RFB_ERROR) keeps its holds until the client
 * process exits: its mappings may still be live.
 *
 * Candidates (the unstable side, as in mm/ksm.c, across processes): a
 * LOOKUP that misses files the hash as the asking client's candidate; a
 * later LOOKUP of the same hash by another client of the domain is answered
 * TWIN, and that client INSERTs its page; the first client then finds it
 * with its next LOOKUP (HIT). Candidates go with their client's connection,
 * and those not looked up again for RFB_CAND_TTL_MS are forgotten.
 */
#ifndef RF_BROKER_PROTO_H
#define RF_BROKER_PROTO_H

#include <stdint.h>

#define RFB_VERSION	1
#define RFB_PAGE_SIZE	4096u
#define RFB_DOMAIN_MAX	64  /* domain name, NUL included */
#define RFB_MSG_MAX	128 /* text of WELCOME and ERROR, NUL included */
#define RFB_LOOKUP_MAX	512 /* hashes per LOOKUP */
#define RFB_INSERT_MAX	32  /* pages per INSERT (128 KiB of content) */
#define RFB_PUT_MAX	4096
#define RFB_CAND_TTL_MS 60000
/* The largest datagram either side sends or accepts. */
#define RFB_DGRAM_MAX (sizeof(struct rfb_hdr) + RFB_INSERT_MAX * (8 + RFB_PAGE_SIZE))

/* Default socket of the system broker (dist/ramfoldd.socket); the engine
 * config, ramfold-run's --broker and RAMFOLD_BROKER override it. */
#define RFB_DEFAULT_SOCKET "/run/ramfold/broker.sock"

enum rfb_type {
	/* requests (client -> broker) */
	RFB_HELLO = 1,
	RFB_LOOKUP = 2,
	RFB_INSERT = 3,
	RFB_PUT = 4,
	RFB_REPORT = 5,
	/* replies (broker -> client): request type | RFB_REPLY */
	RFB_REPLY = 0x100,
	RFB_WELCOME = RFB_HELLO | RFB_REPLY,
	RFB_LOOKUP_R = RFB_LOOKUP | RFB_REPLY,
	RFB_INSERT_R = RFB_INSERT | RFB_REPLY,
	RFB_PUT_R = RFB_PUT | RFB_REPLY,
	RFB_REPORT_R = RFB_REPORT | RFB_REPLY,
	RFB_ERROR = 0x1ff,
};

struct rfb_hdr {
	uint32_t type;	/* enum rfb_type */
	uint32_t len;	/* bytes of the whole datagram, this header included */
	uint32_t seq;	/* chosen by the client, echoed in the reply */
	uint32_t count; /* entries after the fixed part (0 where none) */
};

/* HELLO: hdr.count 0. */
struct rfb_hello {
	struct rfb_hdr h;
	uint32_t version; /* RFB_VERSION */
	int32_t numa;	  /* node of the client's pages, -1 = none */
	uint64_t flags;	  /* 0 */
	char domain[RFB_DOMAIN_MAX];
};

/* WELCOME: hdr.count 0; with status 0, one descriptor (SCM_RIGHTS): the
 * store memfd, read-only. status is 0 or a positive errno (EACCES: not
 * allowed in this domain; EPROTO: version; EINVAL: bad name), msg says why
 * in words naming the domain and the peer. */
struct rfb_welcome {
	struct rfb_hdr h;
	uint32_t status;
	uint32_t client_id;   /* the broker's number for this connection */
	uint64_t store_pages; /* the memfd's size in pages */
	char msg[RFB_MSG_MAX];
};

/* LOOKUP: hdr.count hashes (1..RFB_LOOKUP_MAX), XXH3-64 of each page. */
struct rfb_lookup {
	struct rfb_hdr h;
	uint64_t hash[];
};

enum rfb_lookup_status {
	RFB_MISS = 0, /* nothing; filed as this client's candidate */
	RFB_HIT = 1,  /* pg has this hash; the client now holds it */
	RFB_TWIN = 2, /* another client has a candidate: INSERT yours */
};

struct rfb_lookup_ent {
	uint32_t status; /* enum rfb_lookup_status */
	uint32_t pg;	 /* RFB_HIT only */
};

/* LOOKUP_R: hdr.count as the request's, one entry per hash, same order. */
struct rfb_lookup_r {
	struct rfb_hdr h;
	struct rfb_lookup_ent ent[];
};

/* INSERT: hdr.count pages (1..RFB_INSERT_MAX): the hashes, then the pages. */
struct rfb_insert {
	struct rfb_hdr h;
	uint64_t hash[]; /* [count], followed by count * RFB_PAGE_SIZE bytes */
};

/* INSERT_R entry: status 0 and pg (a store page with exactly these bytes,
 * new or found; the client holds it), or a positive errno: EBADMSG (the
 * bytes do not have the hash sent), ENOSPC (store full). */
struct rfb_insert_ent {
	uint32_t status;
	uint32_t pg;
};

struct rfb_insert_r {
	struct rfb_hdr h;
	struct rfb_insert_ent ent[];
};

/* PUT: hdr.count page numbers (1..RFB_PUT_MAX) the client gives back. */
struct rfb_put {
	struct rfb_hdr h;
	uint32_t pg[];
};

/* PUT_R: hdr.count 0. Pages named that the client did not hold (or beyond
 * the store) are refused and counted, never dropped for another client. */
struct rfb_put_r {
	struct rfb_hdr h;
	uint32_t released;
	uint32_t refused;
};

/* REPORT: hdr.count 0. The client's guest pages that map this domain's
 * store now (the broker's saved-bytes figure: mapped - store pages). */
struct rfb_report {
	struct rfb_hdr h;
	uint64_t mapped_pages;
};

/* REPORT_R: hdr.count 0; the domain's figures as the broker sees them. */
struct rfb_report_r {
	struct rfb_hdr h;
	uint32_t clients;
	uint32_t pad;
	uint64_t store_pages;  /* held by at least one client */
	uint64_t shared_pages; /* held by two clients or more */
	uint64_t mapped_pages; /* sum of the clients' last REPORTs */
};

/* ERROR: hdr.count 0; the broker closes the connection after sending it. */
struct rfb_error {
	struct rfb_hdr h;
	uint32_t status; /* positive errno */
	uint32_t pad;
	char msg[RFB_MSG_MAX];
};

#endif
