/* SPDX-License-Identifier: MIT */
/*
 * ramfoldd's core and its domain rules: no socket I/O here, so the fuzz
 * target (tests/fuzz/fuzz_broker.c) and the tests drive it directly and
 * main.c is only the transport (epoll, SCM_RIGHTS, peer credentials).
 *
 * Single-threaded: every call from one thread. The wire protocol is
 * ksm/broker_proto.h; this header is private to ramfoldd/ and its tests.
 */
#ifndef RAMFOLDD_BROKER_H
#define RAMFOLDD_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "broker_proto.h"

/* ---- domains.conf (conf.c) ---------------------------------------------- */

enum dom_rule_kind { RULE_UID, RULE_GID, RULE_CGROUP };

struct dom_rule {
	enum dom_rule_kind kind;
	uint32_t id;  /* RULE_UID, RULE_GID */
	char *prefix; /* RULE_CGROUP: a cgroup path, matched at '/' boundaries */
};

struct dom_conf {
	char name[RFB_DOMAIN_MAX];
	struct dom_rule *rules;
	size_t nrules;
};

/*
 * The domains and who may join each. private_uid >= 0 (ramfoldd --private):
 * any domain name, peers of that uid only, no file.
 */
struct domains {
	struct dom_conf *dom;
	size_t n;
	long long private_uid; /* -1 unless --private */
};

/* The credentials of a connection's peer, as main.c read them at accept. */
struct broker_peer {
	uid_t uid;
	gid_t gid;
	const gid_t *groups; /* supplementary groups (SO_PEERGROUPS) */
	size_t ngroups;
	pid_t pid;
	const char *cgroup; /* "/system.slice/x.service" (cgroup v2), or NULL */
};

/* Parse @path; 0, or -errno with "FILE:LINE: cause" (or "FILE: cause") in @err. */
int domains_load(const char *path, struct domains *d, char *err, size_t errlen);
/* The same from text (tests); @name stands for the file in messages. */
int domains_parse(const char *text, const char *name, struct domains *d, char *err, size_t errlen);
void domains_free(struct domains *d);
/* A domain name: 1..RFB_DOMAIN_MAX-1 of [A-Za-z0-9_.-]. */
bool domain_name_ok(const char *name);
/* May @p join domain @name? Any rule of the domain admits. */
bool domains_admit(const struct domains *d, const char *name, const struct broker_peer *p);

/* ---- the broker ---------------------------------------------------------- */

struct broker_conf {
	const struct domains *domains; /* kept, not copied */
	uint64_t store_pages;	       /* capacity of each (domain, node) store */
	int nr_nodes;		       /* the host's NUMA nodes: stores are mbound when > 1 */
	uint64_t secret;	       /* keys the tables' hashing; 0 = from getrandom */
	uint64_t (*now_ms)(void);      /* NULL = CLOCK_MONOTONIC */
	void (*log)(const char *line); /* NULL = stderr */
};

struct broker;
struct bclient;

/* The largest reply broker_handle writes (a full LOOKUP_R). */
#define BROKER_REPLY_MAX (sizeof(struct rfb_hdr) + RFB_LOOKUP_MAX * sizeof(struct rfb_lookup_ent))

struct broker *broker_new(const struct broker_conf *conf);
/* Every client must have been disconnected. */
void broker_free(struct broker *b);

/* A new connection from @peer (copied); NULL if out of memory. */
struct bclient *broker_connect(struct broker *b, const struct broker_peer *peer);
/*
 * One request datagram of @len bytes (unaligned is fine). Writes the reply
 * to @reply (BROKER_REPLY_MAX bytes) and returns its length: every request
 * gets one. *@fd_out is -1, or a descriptor to pass with the reply by
 * SCM_RIGHTS (the broker keeps it: do not close it). *@close_after: the
 * connection must be closed once the reply is sent (a malformed request, a
 * refused HELLO); the client's holds stay until broker_disconnect.
 */
size_t broker_handle(struct broker *b, struct bclient *c, const void *msg, size_t len, void *reply,
		     int *fd_out, bool *close_after);
/* The connection is gone: every hold of @c dropped at once (pages no one
 * holds any more are punched), its candidates forgotten, @c freed. */
void broker_disconnect(struct broker *b, struct bclient *c);

uint32_t broker_client_id(const struct bclient *c);
/* Store pages @c holds now. */
uint64_t broker_client_holds(const struct bclient *c);

/* One (domain, node) store's figures: query-domains and the metrics. */
struct broker_store_info {
	const char *domain;
	int node; /* -1: not bound to a node */
	uint32_t clients;
	uint64_t capacity_pages;
	uint64_t store_pages;	     /* held by one client or more */
	uint64_t shared_pages;	     /* held by two clients or more */
	uint64_t mapped_pages;	     /* sum of the clients' last REPORTs */
	uint64_t resident_bytes;     /* of the memfd (fstat st_blocks) */
	uint64_t candidates;	     /* entries of the candidate cache, dead ones included */
	uint64_t candidate_bytes;    /* what the cache costs the broker */
	uint64_t candidates_evicted; /* live candidates pushed out of a full bucket */
	uint64_t lookups, hits, twins, inserts, inserts_new, bad_hash, enospc;
	uint64_t released, refused, punched;
};

struct broker_counters {
	uint64_t connections;	  /* broker_connect calls */
	uint64_t clients;	  /* connected now */
	uint64_t refusals;	  /* WELCOME with a non-zero status */
	uint64_t protocol_errors; /* RFB_ERROR replies */
};

void broker_counters(const struct broker *b, struct broker_counters *out);
/* Calls @fn for each store, in creation order. */
void broker_foreach_store(const struct broker *b,
			  void (*fn)(const struct broker_store_info *, void *), void *arg);

#endif
