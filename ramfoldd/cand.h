/* SPDX-License-Identifier: MIT */
/*
 * The broker's candidates: for a hash no store page has, which client last
 * asked about it (cand.c says how, and why a lossy cache is enough).
 */
#ifndef RF_RAMFOLDD_CAND_H
#define RF_RAMFOLDD_CAND_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Client slots of one store: 1..CAND_SLOTS-1; 0 = a client that files no
 * candidates (it is still told of twins). */
#define CAND_SLOTS 256u

struct cand_ent;

struct cand_cache {
	struct cand_ent *e; /* NULL until the first candidate */
	uint32_t mask;	    /* buckets - 1 */
	uint32_t count;	    /* entries in use, dead ones included */
	uint32_t max;	    /* entries at most (a power of two) */
	uint64_t secret;
	uint64_t evicted; /* live candidates pushed out of a full bucket */
};

/* The live slots: a bitmap of CAND_SLOTS bits, one per store (a slot
 * means something in its store's cache only). */
struct cand_slots {
	uint64_t live[CAND_SLOTS / 64];
	uint32_t next; /* where the next allocation starts looking */
};

/* At most @max_entries entries (rounded up to a power of two). */
void cand_init(struct cand_cache *cc, uint64_t secret, uint32_t max_entries);
void cand_fini(struct cand_cache *cc);

/* A free slot, marked live; 0 if all are taken. */
uint16_t cand_slot_get(struct cand_slots *s);
void cand_slot_put(struct cand_slots *s, uint16_t slot);

/*
 * The client in @slot asked about @hash and no store page has it. True
 * (TWIN) if another live client asked within @ttl_ms; else @slot becomes
 * (or stays, refreshed) the hash's candidate, unless @slot is 0.
 */
bool cand_ask(struct cand_cache *cc, const struct cand_slots *s, uint64_t hash, uint16_t slot,
	      uint64_t now_ms, uint32_t ttl_ms);

/* Bytes of the table (what the cache costs the broker). */
size_t cand_bytes(const struct cand_cache *cc);

#endif
