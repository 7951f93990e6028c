/* SPDX-License-Identifier: MIT */
/*
 * The broker's candidates (the unstable side across processes): a LOOKUP
 * that finds no store page leaves the asking client's mark on the hash, and
 * the next client of the domain to ask about it is told TWIN and inserts
 * its page.
 *
 * Every client asks about every page that has no twin in its own process,
 * which is most of a guest, so this is the broker's largest table. It is a
 * lossy cache rather than an exact table, 8 bytes an entry:
 *
 *   - Buckets of 8 entries (one cache line) of {tag, slot, stamp}. The tag
 *     is the high half of the hash mixed with the broker's secret (a client
 *     choosing hashes cannot aim them at one bucket). Each tag has two
 *     buckets, both computed from the tag alone (so the table doubles from
 *     the tags), and a new entry goes to the emptier: two choices keep the
 *     buckets level, so a table seven eighths full loses about 1% of its
 *     entries to full buckets (test_cand), where one bucket a tag lost 13%.
 *   - The slot is a small number the broker gives each connected client
 *     (cand_slot_get), live while the client is connected; the stamp is the
 *     time of the last ask in 1.024 s units, 16 bits.
 *   - An entry is live while its slot is and its stamp is younger than the
 *     TTL. Nothing is ever removed: a client that leaves only frees its
 *     slot, and dead entries are written over by the next hash of their
 *     bucket, first, before the oldest live one. The table doubles when it
 *     would push out a live entry while seven eighths full, up to a cap
 *     fixed by the store's size, so made-up hashes cannot grow the broker
 *     without bound; at the cap the oldest live entry of the bucket goes.
 *
 * Why losing or confusing entries is safe: every answer is a hint the
 * client acts on with its own bytes. A false TWIN (two hashes with one
 * tag, a slot reused by a new client, a stamp that wrapped after 18 hours)
 * makes the client INSERT its page: a store page held once costs what its
 * private page did, and a later merge onto it compares bytes as always. A
 * lost candidate delays its pair until one of its pages is asked about
 * again, which clients do every pass while they converge.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cand.h"
#include "mix.h"

#define WAYS	    8u
#define MIN_BUCKETS 32u
#define STAMP_SHIFT 10 /* stamps in units of 1024 ms */

struct cand_ent {
	uint32_t tag;
	uint16_t slot; /* 0: empty */
	uint16_t stamp;
};

_Static_assert(sizeof(struct cand_ent) == 8, "cand_ent is 8 bytes");

void cand_init(struct cand_cache *cc, uint64_t secret, uint32_t max_entries)
{
	uint32_t max = MIN_BUCKETS * WAYS;

	while (max < max_entries && max < (1u << 31))
		max <<= 1;
	*cc = (struct cand_cache){.secret = secret, .max = max};
}

/* Tables are mapped, not malloc'd: an old table's memory goes back to the
 * kernel when the table doubles, where a freed heap block would stay in
 * the broker's Pss. */
static struct cand_ent *table_new(uint32_t buckets)
{
	void *p = mmap(NULL, (size_t)buckets * WAYS * sizeof(struct cand_ent),
		       PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static void table_free(struct cand_ent *t, uint32_t buckets)
{
	if (t)
		munmap(t, (size_t)buckets * WAYS * sizeof(struct cand_ent));
}

void cand_fini(struct cand_cache *cc)
{
	table_free(cc->e, cc->mask + 1);
	cc->e = NULL;
	cc->count = 0;
}

size_t cand_bytes(const struct cand_cache *cc)
{
	return cc->e ? ((size_t)cc->mask + 1) * WAYS * sizeof(struct cand_ent) : 0;
}

uint16_t cand_slot_get(struct cand_slots *s)
{
	for (uint32_t n = 0; n < CAND_SLOTS; n++) {
		uint32_t i = (s->next + n) % CAND_SLOTS;

		if (i == 0 || (s->live[i / 64] >> (i % 64) & 1))
			continue;
		s->live[i / 64] |= 1ull << (i % 64);
		/* Round robin: a freed slot is taken again as late as can be,
		 * so its old entries have mostly aged out by then. */
		s->next = i + 1;
		return (uint16_t)i;
	}
	return 0;
}

void cand_slot_put(struct cand_slots *s, uint16_t slot)
{
	s->live[slot / 64] &= ~(1ull << (slot % 64));
}

static bool slot_live(const struct cand_slots *s, uint16_t slot)
{
	return slot && (s->live[slot / 64] >> (slot % 64) & 1);
}

static bool ent_live(const struct cand_ent *e, const struct cand_slots *s, uint16_t now,
		     uint16_t ttl)
{
	return slot_live(s, e->slot) && (uint16_t)(now - e->stamp) < ttl;
}

/* A tag's two buckets: its low bits, and a mix of all of it. Both come
 * from the tag alone, so a doubled table places every entry again. */
static struct cand_ent *bucket(struct cand_ent *t, uint32_t mask, uint32_t tag, int which)
{
	uint32_t h = tag;

	if (which) {
		h ^= h >> 16;
		h *= 0x7feb352du;
		h ^= h >> 15;
	}
	return &t[(size_t)(h & mask) * WAYS];
}

/* Double the table (or make its first one), dropping the dead entries. An
 * entry whose two new buckets are both full is dropped too (rare: the new
 * table is at most seven sixteenths full). */
static int grow(struct cand_cache *cc, const struct cand_slots *s, uint16_t now, uint16_t ttl)
{
	uint32_t nb = cc->e ? (cc->mask + 1) * 2 : MIN_BUCKETS;
	struct cand_ent *n = table_new(nb);
	uint32_t count = 0;

	if (!n)
		return -ENOMEM;
	for (uint32_t i = 0; cc->e && i < (cc->mask + 1) * WAYS; i++) {
		const struct cand_ent *e = &cc->e[i];
		bool placed = false;

		if (!e->slot || !ent_live(e, s, now, ttl))
			continue;
		for (int which = 0; which < 2 && !placed; which++) {
			struct cand_ent *b = bucket(n, nb - 1, e->tag, which);

			for (uint32_t w = 0; w < WAYS && !placed; w++) {
				if (!b[w].slot) {
					b[w] = *e;
					count++;
					placed = true;
				}
			}
		}
	}
	table_free(cc->e, cc->mask + 1);
	cc->e = n;
	cc->mask = nb - 1;
	cc->count = count;
	return 0;
}

/* Where a new entry goes in @b: an empty entry, else a dead one, else the
 * oldest (ages tie within a stamp's second: the search starts at a way the
 * tag picks, so that one way does not take every new hash). */
static struct cand_ent *victim_in(struct cand_ent *b, struct cand_ent *best, uint32_t tag,
				  const struct cand_slots *s, uint16_t now, uint16_t ttl)
{
	for (uint32_t k = 0; k < WAYS && !(best && !best->slot); k++) {
		struct cand_ent *e = &b[(k + (tag >> 24)) % WAYS];

		if (!e->slot || !ent_live(e, s, now, ttl)) {
			if (!best || ent_live(best, s, now, ttl) || !e->slot)
				best = e;
		} else if (!best || (ent_live(best, s, now, ttl) &&
				     (uint16_t)(now - e->stamp) > (uint16_t)(now - best->stamp))) {
			best = e;
		}
	}
	return best;
}

static uint32_t free_in(const struct cand_ent *b)
{
	uint32_t n = 0;

	for (uint32_t w = 0; w < WAYS; w++)
		n += !b[w].slot;
	return n;
}

bool cand_ask(struct cand_cache *cc, const struct cand_slots *s, uint64_t hash, uint16_t slot,
	      uint64_t now_ms, uint32_t ttl_ms)
{
	uint32_t tag = (uint32_t)(mix64(hash ^ cc->secret) >> 32);
	uint16_t now = (uint16_t)(now_ms >> STAMP_SHIFT);
	uint32_t ttl32 = (ttl_ms + (1u << STAMP_SHIFT) - 1) >> STAMP_SHIFT;
	uint16_t ttl = ttl32 > UINT16_MAX / 2 ? UINT16_MAX / 2 : (uint16_t)ttl32;
	struct cand_ent *b[2], *victim;

	if (!cc->e && (!slot || grow(cc, s, now, ttl)))
		return false;
again:
	b[0] = bucket(cc->e, cc->mask, tag, 0);
	b[1] = bucket(cc->e, cc->mask, tag, 1);
	for (int which = 0; which < 2; which++) {
		for (uint32_t w = 0; w < WAYS; w++) {
			struct cand_ent *e = &b[which][w];

			if (!e->slot || e->tag != tag)
				continue;
			if (ent_live(e, s, now, ttl) && e->slot != slot)
				return true;
			if (slot) /* ours: refreshed; dead: ours now */
				*e = (struct cand_ent){.tag = tag, .slot = slot, .stamp = now};
			return false;
		}
	}
	if (!slot)
		return false;
	/* The emptier bucket first (two choices keep buckets level), the
	 * other only if it has nothing free. */
	if (free_in(b[1]) > free_in(b[0])) {
		victim = b[0];
		b[0] = b[1];
		b[1] = victim;
	}
	victim = victim_in(b[1], victim_in(b[0], NULL, tag, s, now, ttl), tag, s, now, ttl);
	if (ent_live(victim, s, now, ttl)) {
		if ((uint64_t)cc->count * 8 >= (uint64_t)(cc->mask + 1) * WAYS * 7 &&
		    (cc->mask + 1) * WAYS < cc->max && !grow(cc, s, now, ttl))
			goto again;
		cc->evicted++;
	}
	if (!victim->slot)
		cc->count++;
	*victim = (struct cand_ent){.tag = tag, .slot = slot, .stamp = now};
	return false;
}
