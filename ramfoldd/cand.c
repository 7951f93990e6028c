/* SPDX-License-Identifier: MIT */
/*
 * The broker's candidates (the unstable side across processes): a LOOKUP
 * that finds no store page leaves the asking client's mark on the hash, and
 * the next client of the domain to ask about it is told TWIN and inserts
 * its page.
 *
 * Every client asks about every page that has no twin in its own process,
 * which is most of a guest, so this is the broker's largest table. It is a
 * lossy cache rather than an exact table, 4 bytes an entry:
 *
 *   - Buckets of 16 entries (one cache line). The hash, mixed with the
 *     broker's secret (a client choosing hashes cannot aim them at one
 *     bucket), is a 64-bit key: its low P bits are its home bucket in a
 *     table of 2^P buckets, and its entry goes there or to the next bucket,
 *     whichever has more room (two choices keep the buckets level: a table
 *     seven eighths full loses about 1% of its entries to full buckets,
 *     test_cand, as the 8-byte entries' two random buckets did), with a bit
 *     that says which. The entry keeps the key's next 15 bits, P and up, as
 *     its fingerprint: the bucket is the rest of the key.
 *   - The fingerprint is stored under a marker bit, 0x8000 | fp, or with
 *     fewer bits 1 << w | (w bits). When the table doubles, key bit P is
 *     the fingerprint's lowest bit: it says whether the entry's home i
 *     becomes i or i + 2^P, and the fingerprint shifts right by one, marker
 *     included. So the table doubles from its entries alone, without the
 *     hashes, and an entry that moved d times compares on 15 - d bits: the
 *     marker says how many are valid and a lookup compares those, the
 *     widest alike entry first. An entry asked about again by its client is
 *     written anew with all 15 (a refresh); one left with fewer than
 *     FP_MIN_BITS is dropped (one not asked about since 9 doublings ago,
 *     all within a TTL: none in practice, as a table starts at 1,024
 *     entries).
 *   - The slot is a small number the broker gives each client of the store
 *     (cand_slot_get), live while the client is connected: 255 of them per
 *     store, and a client of a store with none left files no candidates
 *     but is still told of twins. The stamp is the time of the last ask in
 *     1.024 s units, 7 bits: it wraps after 131 s, so a TTL of 64 units at
 *     most tells the dead from the live.
 *   - An entry is live while its slot is and its stamp is younger than the
 *     TTL. Nothing is ever removed: a client that leaves only frees its
 *     slot, and dead entries are written over by the next key of their
 *     buckets, first, before the oldest live one. The table doubles when it
 *     would push out a live entry while seven eighths full, up to a cap
 *     fixed by the store's size, so made-up hashes cannot grow the broker
 *     without bound; at the cap the oldest live entry of the buckets goes.
 *
 * Why losing or confusing entries is safe: every answer is a hint the
 * client acts on with its own bytes. A false TWIN (another client's entry
 * alike in the bits it kept, a slot reused by a new client, a stamp that
 * wrapped after 131 s untouched) makes the client INSERT its page: a store
 * page held once costs what its private page did, and a later merge onto it
 * compares bytes as always. A lost candidate (pushed out, dropped at a
 * doubling, or hidden by an alike entry of the same client, which is then
 * refreshed instead) delays its pair until one of its pages is asked about
 * again, which clients do every pass while they converge. Lookups never
 * cross domains: each store has its own cache and its own slots, and an
 * answer is TWIN or not, nothing about whose page.
 *
 * Why the hit rate stays that of the 8-byte entries (32-bit tags): a key is
 * told apart on P + 15 bits, 28 at 8,192 buckets (the table of 35,000
 * candidates), so a lookup meets an alike entry of its home about once in
 * 3,000 (about 10 entries, each alike with 2^-15, or a little more for one
 * that moved), fewer than full buckets push out; a doubling moves every live
 * entry (room is certain in practice: the new table is at most seven
 * sixteenths full). test_cand, 100,000 pairs asked while the table grows
 * from nothing: 98,884 told TWIN and 1,057 pushed out, where the 8-byte
 * entries had 98,934 and 1,076, in half the bytes (the other 59 were hidden
 * by an alike entry of their own client, found on its next ask). A lookup
 * reads two adjacent cache lines and passes over most entries on the
 * FP_MIN_BITS every one keeps: about 40 ns against 25 for the 8-byte
 * entries, a few milliseconds over all the lookups of three guests.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "cand.h"
#include "mix.h"

#define WAYS	    16u
#define MIN_BUCKETS 64u /* 4 KiB, the page a smaller table would take */
#define STAMP_SHIFT 10	/* stamps in units of 1024 ms */
#define STAMP_BITS  7
#define SLOT_BITS   8
#define FP_BITS	    15 /* a fingerprint's bits when filed */
#define FP_MIN_BITS 6  /* an entry left with fewer by a doubling is dropped */

/* From the top: marker and fingerprint (16 bits), the entry is in the
 * bucket after its home (1), slot (8; 0 = empty), stamp (7). */
struct cand_ent {
	uint32_t v;
};

_Static_assert(sizeof(struct cand_ent) == 4, "cand_ent is 4 bytes");
_Static_assert(CAND_SLOTS == 1u << SLOT_BITS, "a slot fits its field");
_Static_assert(FP_BITS + 1 + 1 + SLOT_BITS + STAMP_BITS == 32, "the fields fill 32 bits");

#define STAMP_MASK ((1u << STAMP_BITS) - 1)
#define DISP_SHIFT (SLOT_BITS + STAMP_BITS)
#define FP_SHIFT   (DISP_SHIFT + 1)

static uint32_t ent_fp(struct cand_ent e)
{
	return e.v >> FP_SHIFT;
}
static uint32_t ent_disp(struct cand_ent e)
{
	return e.v >> DISP_SHIFT & 1;
}
static uint16_t ent_slot(struct cand_ent e)
{
	return (uint16_t)(e.v >> STAMP_BITS & (CAND_SLOTS - 1));
}
static uint32_t ent_stamp(struct cand_ent e)
{
	return e.v & STAMP_MASK;
}
static struct cand_ent ent_make(uint32_t fp, uint32_t disp, uint16_t slot, uint32_t stamp)
{
	return (struct cand_ent){fp << FP_SHIFT | disp << DISP_SHIFT |
				 (uint32_t)slot << STAMP_BITS | (stamp & STAMP_MASK)};
}

/* The valid bits of a stored fingerprint: below its marker. */
static unsigned int fp_width(uint32_t fp)
{
	return 31u - (unsigned int)__builtin_clz(fp);
}

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

static uint32_t ent_age(struct cand_ent e, uint32_t now)
{
	return (now - ent_stamp(e)) & STAMP_MASK;
}

static bool ent_live(struct cand_ent e, const struct cand_slots *s, uint32_t now, uint32_t ttl)
{
	return slot_live(s, ent_slot(e)) && ent_age(e, now) < ttl;
}

/* log2 of the table's buckets: the key bits that pick a bucket. */
static unsigned int table_bits(const struct cand_cache *cc)
{
	return (unsigned int)__builtin_ctz(cc->mask + 1);
}

static uint32_t free_in(const struct cand_ent *b)
{
	uint32_t n = 0;

	for (uint32_t w = 0; w < WAYS; w++)
		n += !b[w].v;
	return n;
}

/* The first empty entry of @b (WAYS if none): a doubling fills buckets
 * from their first way, so it is also how many entries they hold. */
static uint32_t first_free(const struct cand_ent *b)
{
	uint32_t w = 0;

	while (w < WAYS && ent_slot(b[w]))
		w++;
	return w;
}

/* Room in bucket @i (home, *disp 0) or the next (*disp 1) of a table being
 * filled by a doubling, the emptier first; NULL if both are full. */
static struct cand_ent *room_for(struct cand_ent *t, uint32_t mask, uint32_t i, uint32_t *disp)
{
	struct cand_ent *b0 = &t[(size_t)i * WAYS], *b1 = &t[(size_t)((i + 1) & mask) * WAYS];
	uint32_t n0 = first_free(b0), n1 = first_free(b1);

	if (n0 == WAYS && n1 == WAYS)
		return NULL;
	*disp = n1 < n0;
	return *disp ? &b1[n1] : &b0[n0];
}

/* Double the table (or make its first one), dropping the dead entries.
 * Each live one's home (its bucket, or the one before if it sits in the
 * next) becomes home or home + old buckets as its fingerprint's lowest bit
 * (key bit P) says, and it keeps the rest of its fingerprint. Dropped too:
 * one left with too few bits, one with no room in its new home or the next
 * (rare: the new table is at most seven sixteenths full). */
static int grow(struct cand_cache *cc, const struct cand_slots *s, uint32_t now, uint32_t ttl)
{
	uint32_t ob = cc->e ? cc->mask + 1 : 0, nb = ob ? ob * 2 : MIN_BUCKETS;
	struct cand_ent *n = table_new(nb);
	uint32_t count = 0;

	if (!n)
		return -ENOMEM;
	for (uint32_t i = 0; i < ob * WAYS; i++) {
		struct cand_ent e = cc->e[i], *to;
		uint32_t fp = ent_fp(e), home, disp;

		if (!ent_slot(e) || !ent_live(e, s, now, ttl) || fp_width(fp) <= FP_MIN_BITS)
			continue;
		home = (i / WAYS - ent_disp(e)) & (ob - 1);
		to = room_for(n, nb - 1, home + (fp & 1) * ob, &disp);
		if (!to)
			continue;
		*to = ent_make(fp >> 1, disp, ent_slot(e), ent_stamp(e));
		count++;
	}
	table_free(cc->e, ob);
	cc->e = n;
	cc->mask = nb - 1;
	cc->count = count;
	return 0;
}

/* Where a new entry goes in buckets @b0 and @b1, @b0 the emptier: an empty
 * entry, else a dead one, else the oldest (ages tie within a stamp's
 * second: the search starts at a way the key picks, so that one way does
 * not take every new hash). */
static struct cand_ent *victim_in(struct cand_ent *b0, struct cand_ent *b1, uint32_t start,
				  const struct cand_slots *s, uint32_t now, uint32_t ttl)
{
	struct cand_ent *b[2] = {b0, b1}, *best = NULL;
	uint32_t best_rank = 0;

	for (uint32_t w = 0; w < WAYS; w++)
		if (!b0[w].v)
			return &b0[w]; /* none in b1 either, if none here */
	for (uint32_t k = 0; k < 2; k++) {
		for (uint32_t w = 0; w < WAYS; w++) {
			struct cand_ent *e = &b[k][(w + start) % WAYS];
			uint32_t age = ent_age(*e, now);
			/* dead: above every age of the live */
			uint32_t rank =
			    slot_live(s, ent_slot(*e)) && age < ttl ? age + 1 : 2 * ttl + 2;

			if (rank > best_rank) {
				best_rank = rank;
				best = e;
			}
		}
	}
	return best;
}

bool cand_ask(struct cand_cache *cc, const struct cand_slots *s, uint64_t hash, uint16_t slot,
	      uint64_t now_ms, uint32_t ttl_ms)
{
	uint64_t key = mix64(hash ^ cc->secret);
	uint32_t now = (uint32_t)(now_ms >> STAMP_SHIFT) & STAMP_MASK;
	uint32_t ttl = (ttl_ms + (1u << STAMP_SHIFT) - 1) >> STAMP_SHIFT;
	struct cand_ent *b[2], *victim, *match;
	uint32_t fp, full, first;
	unsigned int best;

	/* An age is told modulo the stamp's range: a TTL of half of it at
	 * most leaves the other half to tell the dead apart. */
	if (ttl > (STAMP_MASK + 1) / 2)
		ttl = (STAMP_MASK + 1) / 2;
	if (!cc->e && (!slot || grow(cc, s, now, ttl)))
		return false;
again:
	b[0] = &cc->e[(size_t)(key & cc->mask) * WAYS];
	b[1] = &cc->e[(size_t)((key + 1) & cc->mask) * WAYS];
	fp = (uint32_t)(key >> table_bits(cc)) & ((1u << FP_BITS) - 1);
	full = 1u << FP_BITS | fp;
	match = NULL;
	best = 0;
	/* The entries of this home (in it, or in the next bucket), and of
	 * them the one alike in the most bits: one filed (or refreshed) at
	 * this size, else the widest of those that moved. Without branches
	 * on the entries (which of them are this home's is a coin toss). */
	for (uint32_t which = 0; which < 2; which++) {
		for (uint32_t w = 0; w < WAYS; w++) {
			uint32_t v = b[which][w].v, efp = v >> FP_SHIFT;
			unsigned int width;

			/* Every entry keeps FP_MIN_BITS at least: most differ
			 * there (and an empty one has no marker). */
			if ((efp ^ fp) & ((1u << FP_MIN_BITS) - 1) || !v ||
			    (v >> DISP_SHIFT & 1) != which)
				continue;
			width = fp_width(efp);
			if (width > best && ((efp ^ fp) & ((1u << width) - 1)) == 0) {
				best = width;
				match = &b[which][w];
				if (width == FP_BITS) /* none is wider */
					goto found;
			}
		}
	}
	if (match) {
	found:
		if (ent_live(*match, s, now, ttl) && ent_slot(*match) != slot)
			return true;
		if (slot) /* ours: refreshed; dead: ours now */
			*match = ent_make(full, ent_disp(*match), slot, now);
		return false;
	}
	if (!slot)
		return false;
	/* The emptier bucket first (choosing keeps buckets level), the other
	 * only if it has nothing free. */
	first = free_in(b[1]) > free_in(b[0]);
	victim = victim_in(b[first], b[first ^ 1], (uint32_t)(key >> 60), s, now, ttl);
	if (ent_slot(*victim) && ent_live(*victim, s, now, ttl)) {
		if ((uint64_t)cc->count * 8 >= (uint64_t)(cc->mask + 1) * WAYS * 7 &&
		    (cc->mask + 1) * WAYS < cc->max && !grow(cc, s, now, ttl))
			goto again;
		cc->evicted++;
	}
	if (!ent_slot(*victim))
		cc->count++;
	*victim = ent_make(full, victim >= b[1] && victim < b[1] + WAYS, slot, now);
	return false;
}
