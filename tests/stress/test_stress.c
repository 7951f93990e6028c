/* SPDX-License-Identifier: MIT */
/*
 * The combined stress test: page dedup, swap and the balloon act on the same
 * guest RAM at the same time while host threads and a real vCPU write it.
 * No write may ever be lost.
 *
 * One run (one seed, one swap mode) sets up one engine with a swap store
 * (compressed tier and file), dedup in RF_DEDUP_DOMAINS mode scanning as
 * fast as it can, the reclaim policy ticking, and three VMs:
 *
 *   a0  40 MiB, domain "tenant-a", swap target 8 MiB, balloon, real vCPU
 *   a1  40 MiB, domain "tenant-a", balloon (no swap target: reported pages
 *       written again are noticed by the scanner, not by a fault)
 *   b0  32 MiB, no domain, swap target 6 MiB, balloon
 *
 * Then, all at once:
 *
 *   writers   (4 threads) sub-page writes of 1..64 bytes at random offsets,
 *             and whole-page writes of a template (duplicates within a VM
 *             and across a0/a1), of zeros, or of unique bytes. Half of them
 *             go to a hot window that moves, half anywhere, so the swap
 *             targets keep both swap-outs and swap-ins going.
 *   vCPU      kvm_mini's real-mode writer on a0 (gpa 0), run by the test's
 *             main thread between verification stops; its 128 pages hold
 *             one template, so they merge with each other.
 *   reader    verifies random pages against the shadow copy under a
 *             per-page seqlock.
 *   balloon   plays the guest's driver over the "own transport" calls:
 *             split virtqueues in guest RAM (excluded from dedup, swap and
 *             the balloon), inflate, deflate and free page reporting.
 *   audit     rf_vm_audit(vm, &rep, 0) on every VM every 200 ms; any
 *             non-zero return fails the run.
 *   watchdog  no progress of a thread for RF_STRESS_STALL seconds, or the
 *             run's deadline passed: every thread's stack is dumped (gdb,
 *             /proc/self/task/<tid>/stack and wchan) and the test aborts.
 *
 * Ownership of a page, as the guest's kernel would keep it: a writer touches
 * only GUEST pages; the driver takes a page out of GUEST (under the page's
 * writer lock) before it puts it on a queue and gives it back when the used
 * buffer returns. An inflated page is the host's until it is deflated, and
 * reads as zeros afterwards; a reported page is free memory whose content is
 * undefined until the guest writes it (the first write after a report is
 * always a whole page). Every page the test wrote after it was reported free
 * must not be FREE_REPORTED at the end.
 *
 * The seqlock: a writer holds the page's mutex, makes the page's sequence
 * odd, writes the page and its shadow, and makes the sequence even again. A
 * reader copies page and shadow without the lock and compares the copies
 * only if the sequence was even and did not move; a difference is read once
 * more under the writer lock (to rule out the reader's own race) before it
 * counts as a lost write. A writer also compares the page with its shadow
 * before it writes, so a lost write shows at the next write to its page.
 *
 * Environment: RF_STRESS_WRITES (host writes per mode, split over the seeds;
 * default 1000000), RF_STRESS_SEEDS (runs per mode, default 1),
 * RF_STRESS_SEED (first seed, default 1), RF_STRESS_SECONDS (deadline of one
 * run, default 150), RF_STRESS_STALL (seconds without progress that count
 * as a stall, default 20), RF_STRESS_MODES ("move", "copy": run only those).
 * docs/stress.md says how to read the output.
 */
#include <dirent.h>
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "kvm_mini.h"
#include "rf_test.h"
#include "virtq_mock.h"

extern char **environ;

#define PG	    RF_PAGE_SIZE
#define MiB	    (1ull << 20)
#define NVMS	    3
#define NWRITERS    4
#define NTPL	    32
#define RING_PAGES  16 /* three queues of 64 entries, 4 pages each, at the top of RAM */
#define QSIZE	    64
#define QPAGES	    4
#define HOT_PAGES   1024
#define VCPU_PAGES  256 /* a0's first MiB: the vCPU's code and pages, written by nobody else */
#define MAX_REPORTS 20	/* mismatches printed in full per run; all are counted */

/* Who owns a page right now (the guest kernel's view, kept by the test). */
enum owner {
	OWN_GUEST,     /* writers write it, readers verify it */
	OWN_STATIC,    /* nobody writes it (a0's first MiB but the vCPU's pages) */
	OWN_VCPU,      /* the vCPU writes it; checked at its verification stops */
	OWN_RING,      /* virtqueue rings: excluded from everything */
	OWN_BALLOON,   /* inflated (or on its way there): the host's */
	OWN_REPORTING, /* on the reporting queue: the device's until the buffer returns */
};

#define PF_UNKNOWN   1u /* reported free: content undefined until a whole-page write */
#define PF_REWRITTEN 2u /* written after its last report came back */

struct page_meta {
	_Atomic uint32_t seq;
	_Atomic uint8_t own;   /* enum owner; changed under @lock with the sequence odd */
	_Atomic uint8_t flags; /* PF_*; changed under @lock (readers look without it) */
	/* History for the mismatch report (under @lock): the last write's
	 * kind and when (now_ms), when a report or a deflate last gave the
	 * page back; 0 = never. */
	uint8_t last_kind;
	uint64_t t_write, t_report, t_deflate;
	pthread_mutex_t lock;
};

struct vm_plan {
	const char *name, *domain;
	uint64_t ram, swap_target;
	bool vcpu;
};

static const struct vm_plan plan[NVMS] = {
    {"a0", "tenant-a", 40 * MiB, 8 * MiB, true},
    {"a1", "tenant-a", 40 * MiB, 0, false},
    {"b0", NULL, 32 * MiB, 6 * MiB, false},
};

struct svm {
	const struct vm_plan *plan;
	unsigned int idx;
	rf_vm *vm;
	uint8_t *ram, *shadow;
	struct page_meta *pm;
	uint64_t npages, pool_lo, pool_hi; /* writers and the balloon use [pool_lo, pool_hi) */
	rf_balloon *b;
	struct vq_mock q[3]; /* inflateq, deflateq, reporting_vq */
	uint32_t *ballooned; /* page indices in the balloon (balloon thread only) */
	uint64_t nballooned;
};

/* What the library says happened (rf_dedup_counters, rf_vm_swap_stats,
 * rf_balloon_counters), summed over the VMs. */
struct activity {
	uint64_t merges, unmerges, swap_outs, swap_ins, inflates, deflates, reports;
	bool stopped, copy_mode;
};

/* A thread's progress, as the watchdog sees it. */
struct beat {
	char name[16];
	_Atomic uint64_t n;
	_Atomic bool on;
	/* The page a writer is writing: vm index << 56 | page index + 1; 0 none. */
	_Atomic uint64_t page;
	uint64_t seen, since_ms; /* watchdog's own */
};

enum { B_WRITER0, B_READER = NWRITERS, B_BALLOON, B_AUDIT, B_MAIN, NBEATS };

struct run {
	const char *mode;
	unsigned int seed;
	rf_engine *e;
	struct svm v[NVMS];
	bool kvm;
	uint64_t start_ms, deadline_ms;
	unsigned int stall_s;
	_Atomic bool stop, wd_stop;
	_Atomic uint64_t epoch; /* moves the writers' hot window */
	_Atomic(const char *) phase;
	struct beat beat[NBEATS];
	/* results */
	_Atomic uint64_t host_writes, vcpu_writes, reads, read_races;
	_Atomic uint64_t mismatches, vcpu_lost, audits, audit_fails, audit_max_ms, log_errs,
	    log_warns;
	_Atomic unsigned int printed;
	uint64_t still_reported, rewritten_end, balloon_rejected;
	struct activity act;
	struct rf_policy_counters policy;
};

struct totals {
	uint64_t runs, writes, vcpu_writes, merges, unmerges, swap_outs, swap_ins;
	uint64_t inflates, deflates, reports, audits, audit_fails, mismatches, still_reported;
};

static struct totals tot;
/* Set by the watchdog while it dumps the stacks of a stall: gdb's attach
 * makes KVM_RUN return EINTR, which fails the vCPU's assertion and sends
 * this thread on to the next test; it waits here for the abort instead. */
static _Atomic bool stalling;
static uint8_t tpl[NTPL][PG];

/* ---- small helpers ------------------------------------------------------- */

static uint64_t env_u64(const char *name, uint64_t dflt)
{
	const char *s = getenv(name);
	char *end;
	unsigned long long v;

	if (!s || !*s)
		return dflt;
	v = strtoull(s, &end, 0);
	return *end ? dflt : (uint64_t)v;
}

static uint64_t splitmix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dull;
}

static void fill_random(uint8_t *p, size_t len, uint64_t *rng)
{
	for (size_t i = 0; i < len; i += 8) {
		uint64_t x = rnd(rng);

		memcpy(p + i, &x, len - i < 8 ? len - i : 8);
	}
}

static uint64_t now_ms(void)
{
	return rf_test_now_ms();
}

static void beat(struct run *r, int who)
{
	atomic_fetch_add_explicit(&r->beat[who].n, 1, memory_order_relaxed);
}

static void set_phase(struct run *r, const char *p)
{
	atomic_store(&r->phase, p);
	beat(r, B_MAIN);
}

/* The vCPU's template is template 0 with its counter word cleared: host
 * pages written with template 0 equal the vCPU's pages in every fourth
 * round, so they merge with them too. */
static void make_templates(void)
{
	for (unsigned int t = 0; t < NTPL; t++) {
		uint64_t s = splitmix(0x7e3a1a7e + t);

		fill_random(tpl[t], PG, &s);
	}
	memset(tpl[0] + RF_KVM_WRITER_WORD_OFF, 0, 4);
}

/* ---- the seqlock ------------------------------------------------------------ */

/* Called with m->lock held. The fence keeps the odd sequence ahead of the
 * data stores, as smp_wmb() in the kernel's write_seqcount_begin. */
static void seq_begin(struct page_meta *m)
{
	atomic_store_explicit(&m->seq, atomic_load_explicit(&m->seq, memory_order_relaxed) + 1,
			      memory_order_relaxed);
	atomic_thread_fence(memory_order_release);
}

static void seq_end(struct page_meta *m)
{
	atomic_store_explicit(&m->seq, atomic_load_explicit(&m->seq, memory_order_relaxed) + 1,
			      memory_order_release);
}

/* Change the owner under the lock; the sequence moves so that a reader
 * copying the page meanwhile throws its copy away. */
static void set_owner(struct page_meta *m, enum owner o)
{
	seq_begin(m);
	atomic_store_explicit(&m->own, (uint8_t)o, memory_order_relaxed);
	seq_end(m);
}

static bool verifiable(struct page_meta *m, uint8_t own)
{
	return (own == OWN_GUEST &&
		!(atomic_load_explicit(&m->flags, memory_order_relaxed) & PF_UNKNOWN)) ||
	       own == OWN_STATIC;
}

static uint8_t *page_of(struct svm *v, uint64_t i)
{
	return v->ram + i * PG;
}

static uint8_t *shadow_of(struct svm *v, uint64_t i)
{
	return v->shadow + i * PG;
}

/* ---- reporting a lost write ------------------------------------------------- */

static int which_template(const uint8_t *p)
{
	for (int t = 0; t < NTPL; t++)
		if (memcmp(p, tpl[t], PG) == 0)
			return t;
	return -1;
}

static bool all_zero(const uint8_t *p)
{
	for (unsigned int i = 0; i < PG; i++)
		if (p[i])
			return false;
	return true;
}

static void hex(char *out, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sprintf(out + 2 * i, "%02x", p[i]);
}

enum wkind { W_SUB, W_TPL, W_ZERO, W_UNIQUE };

static const char *const kind_name[] = {"sub-page", "template", "zeros", "unique"};

/* "1234 ms ago (at 5.6 s)" for a now_ms() stamp, or "never". */
static void ago(struct run *r, uint64_t t, char *out, size_t len)
{
	if (!t)
		snprintf(out, len, "never");
	else
		snprintf(out, len, "%llu ms ago (at %.1f s)", (unsigned long long)(now_ms() - t),
			 (double)(t - r->start_ms) / 1000);
}

/*
 * Print one lost write: where, the page's state in the library's table, the
 * first differing offset and the bytes there. Called with the page's lock
 * held (or with every writer stopped).
 */
static void print_mismatch(struct run *r, struct svm *v, uint64_t i, const uint8_t *found,
			   const uint8_t *want, const char *where)
{
	struct page_meta *m = &v->pm[i];
	uint64_t gpa = i * PG;
	unsigned int off = 0, ndiff = 0, n;
	char fh[33], wh[33], what[48] = "", tw[32], tr[32], td[32];
	int st = rf_vm_page_state(v->vm, gpa), t;

	while (off < PG && found[off] == want[off])
		off++;
	for (unsigned int k = off; k < PG; k++)
		ndiff += found[k] != want[k];
	n = PG - off < 16 ? PG - off : 16;
	hex(fh, found + off, n);
	hex(wh, want + off, n);
	if (all_zero(found))
		snprintf(what, sizeof(what), ", found page is all zeros");
	else if ((t = which_template(found)) >= 0)
		snprintf(what, sizeof(what), ", found page is template %d", t);
	ago(r, m->t_write, tw, sizeof(tw));
	ago(r, m->t_report, tr, sizeof(tr));
	ago(r, m->t_deflate, td, sizeof(td));
	printf("stress: MISMATCH (%s, mode %s, seed %u): vm %s gpa 0x%llx state %s owner %u: "
	       "first difference at offset %u (%u bytes differ): expected %s found %s%s; last "
	       "write %s %s, last given back by a report %s, by a deflate %s\n",
	       where, r->mode, r->seed, v->plan->name, (unsigned long long)gpa,
	       st < 0 ? "?" : rf_page_state_name((enum rf_page_state)st),
	       (unsigned int)atomic_load(&m->own), off, ndiff, wh, fh, what,
	       m->t_write ? kind_name[m->last_kind] : "(initial fill)", tw, tr, td);
}

/* A real mismatch of page @i, with its lock held: count it, print it, then
 * take the page's content as the new truth so that one loss is reported
 * once and later losses still show. */
static void lost_write(struct run *r, struct svm *v, uint64_t i, const char *where)
{
	struct page_meta *m = &v->pm[i];

	atomic_fetch_add(&r->mismatches, 1);
	if (atomic_fetch_add(&r->printed, 1) < MAX_REPORTS) {
		print_mismatch(r, v, i, page_of(v, i), shadow_of(v, i), where);
		fflush(stdout);
		rf_debug_page_history(v->vm, i * PG);
	}
	seq_begin(m);
	memcpy(shadow_of(v, i), page_of(v, i), PG);
	seq_end(m);
}

/* ---- writers ----------------------------------------------------------------- */

/* One write to page @i (GUEST, lock held): page and shadow alike. */
static void guest_write(struct svm *v, uint64_t i, enum wkind k, uint64_t *rng)
{
	struct page_meta *m = &v->pm[i];
	uint8_t *p = page_of(v, i), *s = shadow_of(v, i);

	uint8_t fl = atomic_load_explicit(&m->flags, memory_order_relaxed);

	if (fl & PF_UNKNOWN && k == W_SUB)
		k = W_UNIQUE; /* a reported page's bytes are undefined: write all of it */
	seq_begin(m);
	if (fl & PF_UNKNOWN)
		atomic_store_explicit(&m->flags, (uint8_t)((fl & ~PF_UNKNOWN) | PF_REWRITTEN),
				      memory_order_relaxed);
	switch (k) {
	case W_SUB: {
		uint8_t buf[64];
		unsigned int len = 1 + (unsigned int)(rnd(rng) % 64);
		unsigned int off = (unsigned int)(rnd(rng) % (PG - len + 1));

		fill_random(buf, len, rng);
		memcpy(s + off, buf, len);
		memcpy(p + off, buf, len);
		break;
	}
	case W_TPL: {
		unsigned int t = (unsigned int)(rnd(rng) % NTPL);

		memcpy(s, tpl[t], PG);
		memcpy(p, tpl[t], PG);
		break;
	}
	case W_ZERO:
		memset(s, 0, PG);
		memset(p, 0, PG);
		break;
	case W_UNIQUE: {
		uint64_t stamp[2] = {((uint64_t)v->idx << 56) | i, rnd(rng)};

		fill_random(s, PG, rng);
		memcpy(s, stamp, sizeof(stamp)); /* unique even if the generator repeats */
		memcpy(p, s, PG);
		break;
	}
	}
	seq_end(m);
	m->last_kind = (uint8_t)k;
	m->t_write = now_ms();
}

static enum wkind pick_kind(uint64_t *rng)
{
	unsigned int x = (unsigned int)(rnd(rng) % 100);

	return x < 60 ? W_SUB : x < 75 ? W_TPL : x < 85 ? W_ZERO : W_UNIQUE;
}

/*
 * Seven in eight to a hot window of HOT_PAGES (below the swap targets) that
 * moves every half second, the rest anywhere: the window's new pages and the
 * stray writes come back from swap, and the writers are not held to the
 * swap pager's pace all the time.
 */
static uint64_t pick_page(struct run *r, struct svm *v, uint64_t *rng)
{
	uint64_t n = v->pool_hi - v->pool_lo, x = rnd(rng);

	if ((x & 7) && n > HOT_PAGES) {
		uint64_t base =
		    (atomic_load_explicit(&r->epoch, memory_order_relaxed) * 256) % (n - HOT_PAGES);

		return v->pool_lo + base + (x >> 3) % HOT_PAGES;
	}
	return v->pool_lo + (x >> 3) % n;
}

struct targ {
	struct run *r;
	unsigned int id;
};

static void *writer(void *arg)
{
	struct targ *ta = arg;
	struct run *r = ta->r;
	uint64_t rng = splitmix(((uint64_t)r->seed << 8) | ta->id) | 1;

	while (!atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		struct svm *v = &r->v[rnd(&rng) % NVMS];
		uint64_t i = pick_page(r, v, &rng);
		struct page_meta *m = &v->pm[i];

		pthread_mutex_lock(&m->lock);
		if (atomic_load_explicit(&m->own, memory_order_relaxed) != OWN_GUEST) {
			pthread_mutex_unlock(&m->lock);
			continue;
		}
		/* Check before writing: a lost write shows at the next write to
		 * its page, before a whole-page write can cover it up. */
		atomic_store_explicit(&r->beat[B_WRITER0 + ta->id].page,
				      ((uint64_t)v->idx << 56) | (i + 1), memory_order_relaxed);
		if (verifiable(m, OWN_GUEST) && memcmp(page_of(v, i), shadow_of(v, i), PG))
			lost_write(r, v, i, "writer");
		guest_write(v, i, pick_kind(&rng), &rng);
		atomic_store_explicit(&r->beat[B_WRITER0 + ta->id].page, 0, memory_order_relaxed);
		pthread_mutex_unlock(&m->lock);
		atomic_fetch_add_explicit(&r->host_writes, 1, memory_order_relaxed);
		beat(r, B_WRITER0 + (int)ta->id);
	}
	return NULL;
}

/* ---- reader -------------------------------------------------------------------- */

/* Verify page @i once. Returns false if the copy raced a writer. */
static bool verify_page(struct run *r, struct svm *v, uint64_t i, uint8_t *pc, uint8_t *sc)
{
	struct page_meta *m = &v->pm[i];
	uint32_t s1 = atomic_load_explicit(&m->seq, memory_order_acquire);
	uint8_t own = atomic_load_explicit(&m->own, memory_order_relaxed);

	if (s1 & 1)
		return false;
	if (!verifiable(m, own))
		return true;
	memcpy(pc, page_of(v, i), PG);
	memcpy(sc, shadow_of(v, i), PG);
	/* The copies before the second read of the sequence (smp_rmb). */
	atomic_thread_fence(memory_order_acquire);
	if (atomic_load_explicit(&m->seq, memory_order_relaxed) != s1)
		return false;
	if (memcmp(pc, sc, PG) == 0)
		return true;
	/* Different: once more under the writer lock, so that only a real
	 * loss counts, never this reader's own race. */
	pthread_mutex_lock(&m->lock);
	if (verifiable(m, atomic_load(&m->own)) && memcmp(page_of(v, i), shadow_of(v, i), PG))
		lost_write(r, v, i, "reader");
	pthread_mutex_unlock(&m->lock);
	return true;
}

static void *reader(void *arg)
{
	struct run *r = arg;
	uint64_t rng = splitmix(((uint64_t)r->seed << 8) | 0x80) | 1;
	uint8_t *pc = malloc(PG), *sc = malloc(PG);

	while (pc && sc && !atomic_load_explicit(&r->stop, memory_order_relaxed)) {
		struct svm *v = &r->v[rnd(&rng) % NVMS];
		uint64_t i = rnd(&rng) % v->npages;

		if (verify_page(r, v, i, pc, sc))
			atomic_fetch_add_explicit(&r->reads, 1, memory_order_relaxed);
		else
			atomic_fetch_add_explicit(&r->read_races, 1, memory_order_relaxed);
		beat(r, B_READER);
	}
	free(pc);
	free(sc);
	return NULL;
}

/* ---- the balloon driver ----------------------------------------------------------- */

/* The used buffer of the request just made. The device processes a queue
 * in the notifying thread, so it is normally there at once; notify again
 * now and then in case the device left work for the next notify. */
static void reap(struct svm *v, unsigned int q)
{
	for (unsigned int n = 1; !vq_mock_get_used(&v->q[q], NULL, NULL); n++) {
		if (n % 1000 == 0)
			rf_balloon_queue_notify(v->b, q);
		usleep(100);
	}
	rf_balloon_interrupt_ack(v->b, rf_balloon_interrupt_status(v->b));
}

static void send_pfns(struct svm *v, unsigned int q, const uint32_t *pages, unsigned int n)
{
	uint32_t le[64];

	for (unsigned int k = 0; k < n; k++)
		le[k] = htole32(pages[k]);
	vq_mock_add(&v->q[q], le, n * 4, false);
	rf_balloon_queue_notify(v->b, q);
	reap(v, q);
}

static void inflate(struct run *r, struct svm *v, uint64_t *rng)
{
	uint32_t pages[64];
	unsigned int want = 1 + (unsigned int)(rnd(rng) % 64), n = 0;
	uint64_t i = pick_page(r, v, rng);
	bool run = rnd(rng) & 1; /* a contiguous run, or scattered pages */

	for (unsigned int k = 0; k < want; k++) {
		struct page_meta *m;

		i = run ? i + 1 : pick_page(r, v, rng);
		if (i >= v->pool_hi)
			break;
		m = &v->pm[i];
		/* trylock: a writer holding the lock may wait on a fault, and
		 * a guest's balloon driver picks another free page then. */
		if (pthread_mutex_trylock(&m->lock))
			continue;
		if (atomic_load(&m->own) == OWN_GUEST) {
			set_owner(m, OWN_BALLOON);
			atomic_store(&m->flags, 0);
			/* The host may drop the content: what comes back is zeros. */
			memset(shadow_of(v, i), 0, PG);
			pages[n++] = (uint32_t)i;
		}
		pthread_mutex_unlock(&m->lock);
	}
	if (!n)
		return;
	send_pfns(v, 0, pages, n);
	for (unsigned int k = 0; k < n; k++)
		v->ballooned[v->nballooned++] = pages[k];
}

static void deflate(struct svm *v, uint64_t *rng, unsigned int want)
{
	uint32_t pages[64];
	unsigned int n = 0;

	while (n < want && n < 64 && v->nballooned) {
		uint64_t k = rnd(rng) % v->nballooned;

		pages[n++] = v->ballooned[k];
		v->ballooned[k] = v->ballooned[--v->nballooned];
	}
	if (!n)
		return;
	/* MUST_TELL_HOST: the pages are the guest's once the buffer is used. */
	send_pfns(v, 1, pages, n);
	for (unsigned int k = 0; k < n; k++) {
		struct page_meta *m = &v->pm[pages[k]];

		pthread_mutex_lock(&m->lock);
		set_owner(m, OWN_GUEST); /* the shadow says zeros since the inflate */
		m->t_deflate = now_ms();
		pthread_mutex_unlock(&m->lock);
	}
}

/* Report up to four runs of free pages, then take them back; half the time
 * reuse them at once, else the writers (or the end of the run) write them. */
static void report(struct run *r, struct svm *v, uint64_t *rng)
{
	uint64_t addr[4], first[4];
	uint32_t len[4], npg[4];
	unsigned int nseg = 0, segs = 1 + (unsigned int)(rnd(rng) % 4);

	for (unsigned int s = 0; s < segs; s++) {
		uint64_t i = pick_page(r, v, rng), want = 1 + rnd(rng) % 64, n = 0;

		for (; n < want && i + n < v->pool_hi; n++) {
			struct page_meta *m = &v->pm[i + n];
			bool taken = false;

			if (pthread_mutex_trylock(&m->lock))
				break;
			if (atomic_load(&m->own) == OWN_GUEST) {
				set_owner(m, OWN_REPORTING);
				atomic_store(&m->flags, 0);
				taken = true;
			}
			pthread_mutex_unlock(&m->lock);
			if (!taken)
				break;
		}
		if (!n)
			continue;
		first[nseg] = i;
		npg[nseg] = (uint32_t)n;
		addr[nseg] = i * PG;
		len[nseg] = (uint32_t)(n * PG);
		nseg++;
	}
	if (!nseg)
		return;
	/* Linux puts the reported ranges on the queue as device-writable
	 * buffers (virtqueue_add_inbuf), one descriptor per range. */
	vq_mock_add_chain(&v->q[2], addr, len, nseg, true);
	rf_balloon_queue_notify(v->b, 2);
	reap(v, 2);
	for (unsigned int s = 0; s < nseg; s++) {
		for (uint64_t i = first[s]; i < first[s] + npg[s]; i++) {
			struct page_meta *m = &v->pm[i];
			bool reuse = rnd(rng) & 1;

			pthread_mutex_lock(&m->lock);
			atomic_store(&m->flags, PF_UNKNOWN);
			set_owner(m, OWN_GUEST);
			m->t_report = now_ms();
			if (reuse) {
				guest_write(v, i, pick_kind(rng), rng);
				atomic_fetch_add(&r->host_writes, 1);
			}
			pthread_mutex_unlock(&m->lock);
		}
	}
}

static void *balloon_driver(void *arg)
{
	struct run *r = arg;
	uint64_t rng = splitmix(((uint64_t)r->seed << 8) | 0x90) | 1;

	while (!atomic_load(&r->stop)) {
		for (unsigned int k = 0; k < NVMS; k++) {
			struct svm *v = &r->v[k];
			uint64_t pool = v->pool_hi - v->pool_lo;
			unsigned int x = (unsigned int)(rnd(&rng) % 100);

			/* Between an eighth and a quarter of the pool in the
			 * balloon most of the time; churn inside that. */
			if (v->nballooned < pool / 8 || (x < 35 && v->nballooned < pool / 4))
				inflate(r, v, &rng);
			else if (x < 70)
				deflate(v, &rng, 1 + (unsigned int)(rnd(&rng) % 64));
			else
				report(r, v, &rng);
			beat(r, B_BALLOON);
		}
		usleep(1000 + rnd(&rng) % 2000);
	}
	/* The guest takes everything back before the final checks. */
	for (unsigned int k = 0; k < NVMS; k++)
		while (r->v[k].nballooned) {
			deflate(&r->v[k], &rng, 64);
			beat(r, B_BALLOON);
		}
	return NULL;
}

static int balloon_setup(struct svm *v)
{
	const uint64_t want =
	    RF_VIRTIO_F_VERSION_1 | RF_BALLOON_F_MUST_TELL_HOST | RF_BALLOON_F_REPORTING;
	const uint8_t ack = RF_VIRTIO_STATUS_ACKNOWLEDGE | RF_VIRTIO_STATUS_DRIVER;
	uint64_t base = (v->npages - RING_PAGES) * PG;

	if (rf_balloon_new(v->vm, NULL, NULL, &v->b))
		return -1;
	if (rf_balloon_set_status(v->b, 0) ||
	    rf_balloon_set_status(v->b, RF_VIRTIO_STATUS_ACKNOWLEDGE) ||
	    rf_balloon_set_status(v->b, ack))
		return -2;
	if ((rf_balloon_device_features(v->b) & want) != want ||
	    rf_balloon_set_driver_features(v->b, want))
		return -3;
	if (rf_balloon_set_status(v->b, ack | RF_VIRTIO_STATUS_FEATURES_OK) ||
	    !(rf_balloon_get_status(v->b) & RF_VIRTIO_STATUS_FEATURES_OK))
		return -4;
	/* Without STATS_VQ the queues are inflateq, deflateq, reporting_vq. */
	if (rf_balloon_num_queues(v->b) != 3 || rf_balloon_queue_size_max(v->b) < QSIZE)
		return -5;
	for (unsigned int q = 0; q < 3; q++) {
		struct vq_mock *m = &v->q[q];

		vq_mock_init(m, v->vm, base + q * QPAGES * PG, QSIZE, PG);
		if (rf_balloon_queue_setup(v->b, q, QSIZE, m->desc, m->avail, m->used))
			return -6;
	}
	if (rf_balloon_set_status(v->b,
				  ack | RF_VIRTIO_STATUS_FEATURES_OK | RF_VIRTIO_STATUS_DRIVER_OK))
		return -7;
	return 0;
}

/* ---- audit ---------------------------------------------------------------------------- */

static void audit_one(struct run *r, struct svm *v, const char *when)
{
	struct rf_audit_report rep = {.size = sizeof(rep)};
	uint64_t t0 = now_ms(), ms;
	int err = rf_vm_audit(v->vm, &rep, 0);

	ms = now_ms() - t0;
	if (ms > atomic_load(&r->audit_max_ms))
		atomic_store(&r->audit_max_ms, ms); /* one auditing thread at a time */
	atomic_fetch_add(&r->audits, 1);
	if (!err)
		return;
	if (atomic_fetch_add(&r->audit_fails, 1) < MAX_REPORTS) {
		uint64_t g = rep.first_bad_gpa;
		int st = g == UINT64_MAX ? -1 : rf_vm_page_state(v->vm, g);

		printf("stress: AUDIT FAILED (%s, mode %s, seed %u): vm %s: %s; %llu checked, "
		       "%llu mismatches (merged_not_file %llu, discarded_present %llu, "
		       "private_file %llu), drift %llu, first bad gpa 0x%llx (now %s, owner %u)\n",
		       when, r->mode, r->seed, v->plan->name, strerror(-err),
		       (unsigned long long)rep.pages_checked, (unsigned long long)rep.mismatches,
		       (unsigned long long)rep.merged_not_file,
		       (unsigned long long)rep.discarded_present,
		       (unsigned long long)rep.private_file, (unsigned long long)rep.drift,
		       (unsigned long long)g,
		       st < 0 ? "?" : rf_page_state_name((enum rf_page_state)st),
		       g / PG < v->npages ? (unsigned int)atomic_load(&v->pm[g / PG].own) : 0u);
	}
}

static void *auditor(void *arg)
{
	struct run *r = arg;

	while (!atomic_load(&r->stop)) {
		for (unsigned int k = 0; k < NVMS; k++) {
			audit_one(r, &r->v[k], "during the run");
			beat(r, B_AUDIT);
		}
		rf_test_sleep_ms(200);
	}
	return NULL;
}

/* ---- watchdog ------------------------------------------------------------------------- */

static void print_file(const char *path, const char *prefix)
{
	char buf[4096];
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	while ((n = read(fd, buf, sizeof(buf) - 1)) > 0) {
		buf[n] = 0;
		fprintf(stderr, "%s%s", prefix, buf);
	}
	close(fd);
	fprintf(stderr, "\n");
}

/* Every thread's stack: the kernel's view, then gdb's (user space). */
static void dump_threads(void)
{
	char cmd[512], *argv[] = {"sh", "-c", cmd, NULL};
	struct dirent *d;
	DIR *dir;
	pid_t c;

	/* The kernel's view first: it cannot hang, gdb can. */
	dir = opendir("/proc/self/task");
	while (dir && (d = readdir(dir))) {
		char path[300], prefix[64], comm[32] = "";
		FILE *f;

		if (d->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", d->d_name);
		f = fopen(path, "re");
		if (f) {
			if (fgets(comm, sizeof(comm), f))
				comm[strcspn(comm, "\n")] = 0;
			fclose(f);
		}
		fprintf(stderr, "---- thread %s (%s)\n", d->d_name, comm);
		snprintf(prefix, sizeof(prefix), "  wchan: ");
		snprintf(path, sizeof(path), "/proc/self/task/%s/wchan", d->d_name);
		print_file(path, prefix);
		snprintf(path, sizeof(path), "/proc/self/task/%s/stack", d->d_name);
		print_file(path, "");
	}
	if (dir)
		closedir(dir);
	/*
	 * gdb runs under a shell that resumes this process afterwards: gdb
	 * killed by its timeout leaves its tracee group-stopped, this thread
	 * included. Frame arguments are not printed: a char pointer into a
	 * swapped guest page would make gdb's read of it wait for a fault
	 * thread that gdb itself has stopped.
	 */
	snprintf(cmd, sizeof(cmd),
		 "if command -v gdb >/dev/null; then timeout -k 5 60 gdb -nx -batch -p %d "
		 "-ex 'set pagination off' -ex 'set print frame-arguments none' "
		 "-ex 'thread apply all bt' 1>&2; else echo 'stress: no gdb: kernel stacks "
		 "only' 1>&2; fi; kill -CONT %d",
		 (int)getpid(), (int)getpid());
	fflush(stdout);
	/* Under Yama's ptrace_scope 1 a child may not trace its parent
	 * unless told so; elsewhere this fails harmlessly. */
	prctl(PR_SET_PTRACER, PR_SET_PTRACER_ANY, 0, 0, 0);
	/* posix_spawn, not fork: a fork would copy guest RAM mappings that
	 * userfaultfd and the dedup store manage. */
	if (posix_spawn(&c, "/bin/sh", NULL, NULL, argv, environ) == 0) {
		int status;

		waitpid(c, &status, 0);
	}
}

static _Noreturn void stall(struct run *r, const char *why)
{
	uint64_t t = now_ms();

	atomic_store(&stalling, true);
	fprintf(stderr,
		"stress: STALL in mode %s, seed %u, %.1f s into the run (phase: %s): %s; "
		"host writes %llu, vcpu writes %llu\n",
		r->mode, r->seed, (double)(t - r->start_ms) / 1000, atomic_load(&r->phase), why,
		(unsigned long long)atomic_load(&r->host_writes),
		(unsigned long long)atomic_load(&r->vcpu_writes));
	for (int k = 0; k < NBEATS; k++) {
		uint64_t pg = atomic_load(&r->beat[k].page);
		char at[96] = "";

		if (!atomic_load(&r->beat[k].on))
			continue;
		if (pg) {
			struct svm *v = &r->v[pg >> 56];
			uint64_t gpa = ((pg & ((1ull << 56) - 1)) - 1) * PG;
			int st = rf_vm_page_state(v->vm, gpa);

			snprintf(at, sizeof(at), ", writing vm %s gpa 0x%llx (state %s)",
				 v->plan->name, (unsigned long long)gpa,
				 st < 0 ? "?" : rf_page_state_name((enum rf_page_state)st));
		}
		fprintf(stderr, "  %-10s %llu beats, last progress %.1f s ago%s\n", r->beat[k].name,
			(unsigned long long)atomic_load(&r->beat[k].n),
			(double)(t - r->beat[k].since_ms) / 1000, at);
	}
	dump_threads();
	fprintf(stderr, "stress: STALL in mode %s, seed %u: aborting (stacks above)\n", r->mode,
		r->seed);
	abort();
}

static void *watchdog(void *arg)
{
	struct run *r = arg;
	unsigned int tick = 0;

	while (!atomic_load(&r->wd_stop)) {
		uint64_t t = now_ms();
		char why[160];

		if (++tick % 2 == 0)
			atomic_fetch_add(&r->epoch, 1);
		if (t > r->deadline_ms) {
			snprintf(why, sizeof(why), "the deadline of %llu s passed",
				 (unsigned long long)(r->deadline_ms - r->start_ms) / 1000);
			stall(r, why);
		}
		for (int k = 0; k < NBEATS; k++) {
			struct beat *b = &r->beat[k];
			uint64_t n = atomic_load(&b->n);

			if (!atomic_load(&b->on) || !b->since_ms || n != b->seen) {
				b->seen = n;
				b->since_ms = t;
			} else if (t - b->since_ms > r->stall_s * 1000ull) {
				snprintf(why, sizeof(why), "thread %s made no progress for %u s",
					 b->name, r->stall_s);
				stall(r, why);
			}
		}
		rf_test_sleep_ms(250);
	}
	return NULL;
}

/* ---- setup, the vCPU, the checks ------------------------------------------------------ */

static void on_log(void *arg, enum rf_log_level level, const char *msg)
{
	struct run *r = arg;

	if (level <= RF_LOG_ERR && atomic_fetch_add(&r->log_errs, 1) < MAX_REPORTS)
		printf("stress: library error (mode %s, seed %u): %s\n", r->mode, r->seed, msg);
	else if (level == RF_LOG_WARN && atomic_fetch_add(&r->log_warns, 1) < MAX_REPORTS)
		printf("stress: library warning (mode %s, seed %u): %s\n", r->mode, r->seed, msg);
}

static void setup_vm(struct run *r, unsigned int k, uint64_t *rng)
{
	struct svm *v = &r->v[k];
	struct rf_vm_config vc;
	void *ram;

	v->plan = &plan[k];
	v->idx = k;
	v->npages = plan[k].ram / PG;
	rf_vm_config_init(&vc);
	vc.ram_bytes = plan[k].ram;
	vc.domain = plan[k].domain;
	assert_int_equal(rf_vm_new(r->e, plan[k].name, &vc, &v->vm), 0);
	assert_int_equal(rf_vm_map_ram(v->vm, 0, plan[k].ram, &ram), 0);
	v->ram = ram;
	v->shadow = malloc(plan[k].ram);
	v->pm = calloc(v->npages, sizeof(*v->pm));
	v->ballooned = calloc(v->npages, sizeof(*v->ballooned));
	assert_non_null(v->shadow);
	assert_non_null(v->pm);
	assert_non_null(v->ballooned);
	v->pool_lo = plan[k].vcpu ? VCPU_PAGES : 0;
	v->pool_hi = v->npages - RING_PAGES;
	for (uint64_t i = 0; i < v->npages; i++) {
		struct page_meta *m = &v->pm[i];
		enum owner o = OWN_GUEST;

		pthread_mutex_init(&m->lock, NULL);
		if (i >= v->pool_hi)
			o = OWN_RING;
		else if (i < v->pool_lo)
			o = i * PG >= RF_KVM_WRITER_FIRST_PAGE &&
				    i * PG < RF_KVM_WRITER_FIRST_PAGE + RF_KVM_WRITER_NPAGES * PG
				? OWN_VCPU
				: OWN_STATIC;
		atomic_store(&m->own, (uint8_t)o);
		memset(shadow_of(v, i), 0, PG);
		if (o == OWN_GUEST) {
			pthread_mutex_lock(&m->lock);
			guest_write(v, i, pick_kind(rng), rng);
			pthread_mutex_unlock(&m->lock);
		}
	}
	/* The rings must never be merged, swapped or ballooned: the device
	 * reads them through the host mapping at any time. */
	assert_int_equal(rf_vm_exclude_range(v->vm, v->pool_hi * PG, RING_PAGES * PG, true), 0);
	if (balloon_setup(v))
		fail_msg("vm %s: balloon driver setup failed", plan[k].name);
}

static void fill_vcpu_area(struct svm *v)
{
	memcpy(v->ram + 0x1000, rf_kvm_writer_guest, sizeof(rf_kvm_writer_guest));
	memcpy(v->shadow + 0x1000, rf_kvm_writer_guest, sizeof(rf_kvm_writer_guest));
	for (unsigned int p = 0; p < RF_KVM_WRITER_NPAGES; p++)
		memcpy(v->ram + RF_KVM_WRITER_FIRST_PAGE + p * PG, tpl[0], PG);
}

/* After round @round every vCPU page is template 0 with round & 3 in its
 * word. Called with the vCPU stopped at its port write. */
static unsigned int check_vcpu_pages(struct run *r, struct svm *v, unsigned int round,
				     const char *where)
{
	uint8_t want[PG];
	uint32_t w = round & 3;
	unsigned int bad = rf_kvm_writer_bad_pages(v->ram, tpl[0], 0, round);

	if (!bad)
		return 0;
	memcpy(want, tpl[0], PG);
	memcpy(want + RF_KVM_WRITER_WORD_OFF, &w, 4);
	for (unsigned int p = 0; p < RF_KVM_WRITER_NPAGES; p++) {
		uint64_t i = RF_KVM_WRITER_FIRST_PAGE / PG + p;

		if (memcmp(page_of(v, i), want, PG) == 0)
			continue;
		if (atomic_fetch_add(&r->printed, 1) < MAX_REPORTS)
			print_mismatch(r, v, i, page_of(v, i), want, where);
		/* Repaired, so one loss is counted once. */
		memcpy(page_of(v, i), want, PG);
	}
	atomic_fetch_add(&r->vcpu_lost, bad);
	return bad;
}

static void read_activity(struct run *r, struct activity *a)
{
	struct rf_dedup_stats ds = {.size = sizeof(ds)};

	memset(a, 0, sizeof(*a));
	if (rf_dedup_counters(r->e, &ds) == 0) {
		a->merges = ds.pages_merged;
		a->unmerges = ds.pages_unmerged;
	}
	for (unsigned int k = 0; k < NVMS; k++) {
		struct rf_balloon_counters bc = {.size = sizeof(bc)};
		struct rf_swap_stats ss = {.size = sizeof(ss)};

		if (rf_vm_swap_stats(r->v[k].vm, &ss) == 0) {
			a->swap_outs += ss.swap_outs;
			a->swap_ins += ss.swap_ins;
			a->stopped |= ss.stopped;
			if (r->v[k].plan->swap_target)
				a->copy_mode |= ss.copy_mode;
		}
		if (rf_balloon_counters(r->v[k].b, &bc) == 0) {
			a->inflates += bc.inflated_pages;
			a->deflates += bc.deflated_pages;
			a->reports += bc.reported_pages;
		}
	}
}

/* Enough of every mechanism happened for the run to count as a race. */
#define MIN_MERGES    100
#define MIN_UNMERGES  100
#define MIN_SWAP      1000
#define MIN_BALLOON   100
#define MIN_REWRITTEN 100
#define MIN_VCPU      100 /* rounds */

static bool busy_enough(bool kvm, const struct activity *a, unsigned int vcpu_rounds)
{
	return a->merges >= MIN_MERGES && a->unmerges >= MIN_UNMERGES && a->swap_outs >= MIN_SWAP &&
	       a->swap_ins >= MIN_SWAP && a->inflates >= MIN_BALLOON &&
	       a->deflates >= MIN_BALLOON && a->reports >= MIN_BALLOON &&
	       (!kvm || vcpu_rounds >= MIN_VCPU);
}

/* Whole-page write of every page still undefined since its report: the
 * guest uses its free memory again, and the FREE_REPORTED check then covers
 * every page that was ever reported. */
static void rewrite_reported(struct run *r, uint64_t *rng)
{
	for (unsigned int k = 0; k < NVMS; k++) {
		struct svm *v = &r->v[k];

		for (uint64_t i = v->pool_lo; i < v->pool_hi; i++)
			if (atomic_load(&v->pm[i].flags) & PF_UNKNOWN) {
				guest_write(v, i, pick_kind(rng), rng);
				atomic_fetch_add(&r->host_writes, 1);
			}
	}
}

static uint64_t count_still_reported(struct run *r)
{
	uint64_t n = 0, shown = 0;

	r->rewritten_end = 0;
	for (unsigned int k = 0; k < NVMS; k++) {
		struct svm *v = &r->v[k];

		for (uint64_t i = v->pool_lo; i < v->pool_hi; i++) {
			if (!(atomic_load(&v->pm[i].flags) & PF_REWRITTEN))
				continue;
			r->rewritten_end++;
			if (rf_vm_page_state(v->vm, i * PG) != RF_PAGE_FREE_REPORTED)
				continue;
			if (shown++ < 5)
				printf("stress: STILL FREE_REPORTED (mode %s, seed %u): vm %s gpa "
				       "0x%llx was written after its report\n",
				       r->mode, r->seed, v->plan->name,
				       (unsigned long long)(i * PG));
			n++;
		}
	}
	return n;
}

/* Every page against its shadow (every thread but this one stopped). */
static void verify_all(struct run *r, unsigned int vcpu_rounds, const char *where)
{
	for (unsigned int k = 0; k < NVMS; k++) {
		struct svm *v = &r->v[k];

		for (uint64_t i = 0; i < v->npages; i++) {
			struct page_meta *m = &v->pm[i];

			if ((i & 1023) == 0)
				beat(r, B_MAIN);
			if (verifiable(m, atomic_load(&m->own)) &&
			    memcmp(page_of(v, i), shadow_of(v, i), PG))
				lost_write(r, v, i, where);
		}
		if (v->plan->vcpu && r->kvm && vcpu_rounds)
			check_vcpu_pages(r, v, vcpu_rounds - 1, where);
	}
}

static rf_engine *new_engine(struct run *r, bool copy)
{
	struct rf_engine_config ec;
	struct rf_swap_config sc;
	struct rf_features f = {.size = sizeof(f)};
	rf_engine *e = NULL;

	rf_engine_config_init(&ec);
	ec.scan_threads = 2;
	ec.log = on_log;
	ec.log_arg = r;
	ec.log_level = RF_LOG_WARN;
	/* Copy mode: the paths of Linux before 6.8, as `make compat` takes. */
	if (copy)
		assert_int_equal(rf_engine_config_hide(&ec, "uffd-move,pagemap-scan"), 0);
	assert_int_equal(rf_engine_new(&ec, &e), 0);
	rf_engine_features(e, &f);
	if (!f.uffd || !f.uffd_wp || (!copy && !f.uffd_move)) {
		rf_engine_free(e);
		rf_require(false,
			   !f.uffd || !f.uffd_wp
			       ? "userfaultfd with write-protect needed"
			       : "no UFFDIO_MOVE on this kernel: the copy-mode test covers it");
	}
	r->kvm = f.kvm;
	rf_swap_config_init(&sc);
	sc.dir = "/var/tmp";
	sc.file_limit_bytes = 512 * MiB;
	sc.tier_limit_bytes = 4 * MiB; /* small: both the tier and the file see traffic */
	assert_int_equal(rf_engine_set_swap(e, &sc), 0);
	return e;
}

static void start_thread(struct run *r, pthread_t *t, void *(*fn)(void *), void *arg, int who,
			 const char *name)
{
	if (who >= 0) {
		snprintf(r->beat[who].name, sizeof(r->beat[who].name), "%s", name);
		atomic_store(&r->beat[who].on, true);
	}
	assert_int_equal(pthread_create(t, NULL, fn, arg), 0);
	pthread_setname_np(*t, name);
}

/* ---- one run ----------------------------------------------------------------------------- */

struct threads {
	pthread_t writer[NWRITERS], reader, balloon, audit, watchdog;
	struct targ targ[NWRITERS];
};

/* Dedup scanning as fast as it can, the swap targets, the policy. */
static void start_mechanisms(struct run *r)
{
	struct rf_dedup_config dc;
	struct rf_policy_config pc;

	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_DOMAINS;
	dc.scan_threads = 2;
	dc.fastest = true;
	dc.idle_cpu_percent = 100; /* keep scanning as fast once converged */
	dc.backoff_max = 0;	   /* and merge rewritten pages again at once */
	assert_int_equal(rf_dedup_start(r->e, &dc), 0);
	for (unsigned int v = 0; v < NVMS; v++)
		assert_int_equal(rf_dedup_add_vm(r->v[v].vm), 0);
	for (unsigned int v = 0; v < NVMS; v++)
		if (plan[v].swap_target)
			assert_int_equal(rf_vm_set_swap_target(r->v[v].vm, plan[v].swap_target), 0);
	/* The policy sets a swap target only under pressure or above a limit
	 * (none here), so it runs alongside the explicit targets: its ticks
	 * read the ledger (pagemap) while everything moves. */
	rf_policy_config_init(&pc);
	assert_int_equal(rf_policy_configure(r->e, &pc), 0);
	assert_int_equal(rf_policy_start(r->e, 250), 0);
}

static void start_threads(struct run *r, struct threads *th)
{
	snprintf(r->beat[B_MAIN].name, sizeof(r->beat[B_MAIN].name), "main/vcpu");
	atomic_store(&r->beat[B_MAIN].on, true);
	start_thread(r, &th->watchdog, watchdog, r, -1, "watchdog");
	set_phase(r, "running");
	for (unsigned int t = 0; t < NWRITERS; t++) {
		char name[16];

		th->targ[t] = (struct targ){r, t};
		snprintf(name, sizeof(name), "writer%u", t);
		start_thread(r, &th->writer[t], writer, &th->targ[t], B_WRITER0 + (int)t, name);
	}
	start_thread(r, &th->reader, reader, r, B_READER, "reader");
	start_thread(r, &th->balloon, balloon_driver, r, B_BALLOON, "balloon");
	start_thread(r, &th->audit, auditor, r, B_AUDIT, "audit");
}

/* Every thread but the watchdog (and this one). */
static void stop_threads(struct run *r, struct threads *th)
{
	set_phase(r, "stopping threads");
	atomic_store(&r->stop, true);
	for (unsigned int t = 0; t < NWRITERS; t++)
		pthread_join(th->writer[t], NULL);
	pthread_join(th->reader, NULL);
	pthread_join(th->balloon, NULL);
	pthread_join(th->audit, NULL);
	for (int b = 0; b < NBEATS; b++)
		if (b != B_MAIN)
			atomic_store(&r->beat[b].on, false);
}

/*
 * The test's own thread is the vCPU (kvm_mini's checks are cmocka
 * assertions, which must fail on this thread): bursts of rounds, each round
 * followed by its verification stop, and pauses long enough for the pages to
 * merge. Returns when the run has made its writes and every mechanism acted
 * (or the soft end came first). Returns the number of rounds run.
 */
static unsigned int drive_vcpu(struct run *r, struct rf_kvm_mini *k, uint64_t *rng, uint64_t writes,
			       uint64_t soft_end)
{
	unsigned int round = 0;

	for (uint64_t next_check = 0, burst = 0;;) {
		uint64_t t = now_ms();

		if (t >= next_check) {
			next_check = t + 250;
			read_activity(r, &r->act);
			if (atomic_load(&r->host_writes) >= writes &&
			    (busy_enough(r->kvm, &r->act, round) || t > soft_end))
				return round;
		}
		if (!r->kvm) {
			rf_test_sleep_ms(20);
			beat(r, B_MAIN);
			continue;
		}
		if (!burst) {
			rf_test_sleep_ms((unsigned int)(rnd(rng) % 300));
			burst = 1 + rnd(rng) % 64;
		}
		rf_kvm_mini_run_to_port(k, 0x10);
		atomic_fetch_add(&r->vcpu_writes, RF_KVM_WRITER_NPAGES);
		check_vcpu_pages(r, &r->v[0], round, "vcpu stop");
		round++;
		burst--;
		beat(r, B_MAIN);
	}
}

/* With the threads stopped: the FREE_REPORTED check, audits and full
 * verifications, before and after rf_dedup_stop. */
static void final_checks(struct run *r, unsigned int round, uint64_t *rng)
{
	/* Reported pages written after the report must leave FREE_REPORTED:
	 * seen by the scanner, or by the fault that brought them back. */
	set_phase(r, "rewriting reported pages");
	rewrite_reported(r, rng);
	set_phase(r, "waiting 2 s for the scanner");
	rf_test_sleep_ms(2000);
	set_phase(r, "checking FREE_REPORTED");
	r->still_reported = count_still_reported(r);

	set_phase(r, "final audit");
	for (unsigned int v = 0; v < NVMS; v++)
		audit_one(r, &r->v[v], "final, dedup running");
	set_phase(r, "final verification");
	verify_all(r, round, "final, dedup running");
	read_activity(r, &r->act);

	set_phase(r, "rf_policy_stop");
	rf_policy_stop(r->e);
	r->policy.size = sizeof(r->policy);
	rf_policy_counters(r->e, &r->policy);
	set_phase(r, "rf_dedup_stop");
	rf_dedup_stop(r->e);
	set_phase(r, "verification after rf_dedup_stop");
	verify_all(r, round, "after rf_dedup_stop");
	for (unsigned int v = 0; v < NVMS; v++)
		audit_one(r, &r->v[v], "after rf_dedup_stop");
	for (unsigned int v = 0; v < NVMS; v++) {
		struct rf_balloon_counters bc = {.size = sizeof(bc)};

		/* This driver is well-behaved: nothing it sends may be refused. */
		if (rf_balloon_counters(r->v[v].b, &bc) == 0)
			r->balloon_rejected += rf_balloon_rejected_total(&bc) + bc.excluded_pages;
	}
}

/* The run's summary line, and its share of the total line. */
static void print_run(struct run *r, unsigned int round, double el)
{
	const struct activity *a = &r->act;
	uint64_t hw = atomic_load(&r->host_writes), vw = atomic_load(&r->vcpu_writes);
	uint64_t lost = atomic_load(&r->mismatches) + atomic_load(&r->vcpu_lost);

	printf("stress: %s seed %u: %llu writes (host %llu, vcpu %llu in %u rounds) in %.1f s: "
	       "merges %llu, unmerges %llu, swap-outs %llu, swap-ins %llu, inflates %llu, "
	       "deflates %llu, reports %llu, audits %llu (longest %llu ms), policy ticks %llu, "
	       "reads %llu; mismatches %llu (host pages %llu, vcpu pages %llu), audit failures "
	       "%llu, written after report %llu of which still free-reported %llu\n",
	       r->mode, r->seed, (unsigned long long)(hw + vw), (unsigned long long)hw,
	       (unsigned long long)vw, round, el, (unsigned long long)a->merges,
	       (unsigned long long)a->unmerges, (unsigned long long)a->swap_outs,
	       (unsigned long long)a->swap_ins, (unsigned long long)a->inflates,
	       (unsigned long long)a->deflates, (unsigned long long)a->reports,
	       (unsigned long long)atomic_load(&r->audits),
	       (unsigned long long)atomic_load(&r->audit_max_ms),
	       (unsigned long long)r->policy.ticks, (unsigned long long)atomic_load(&r->reads),
	       (unsigned long long)lost, (unsigned long long)atomic_load(&r->mismatches),
	       (unsigned long long)atomic_load(&r->vcpu_lost),
	       (unsigned long long)atomic_load(&r->audit_fails),
	       (unsigned long long)r->rewritten_end, (unsigned long long)r->still_reported);
	tot.runs++;
	tot.writes += hw + vw;
	tot.vcpu_writes += vw;
	tot.merges += a->merges;
	tot.unmerges += a->unmerges;
	tot.swap_outs += a->swap_outs;
	tot.swap_ins += a->swap_ins;
	tot.inflates += a->inflates;
	tot.deflates += a->deflates;
	tot.reports += a->reports;
	tot.audits += atomic_load(&r->audits);
	tot.audit_fails += atomic_load(&r->audit_fails);
	tot.mismatches += lost;
	tot.still_reported += r->still_reported;
}

static void free_run(struct run *r)
{
	rf_engine_free(r->e);
	for (unsigned int v = 0; v < NVMS; v++) {
		for (uint64_t i = 0; r->v[v].pm && i < r->v[v].npages; i++)
			pthread_mutex_destroy(&r->v[v].pm[i].lock);
		free(r->v[v].shadow);
		free(r->v[v].pm);
		free(r->v[v].ballooned);
	}
	free(r);
}

/* What one run found, kept past free_run for the verdict. */
struct verdict {
	uint64_t lost, audit_fails, host_writes, still, rewritten, rejected;
	struct activity act;
	bool kvm;
};

static void judge(const char *mode, bool copy, unsigned int seed, uint64_t writes,
		  unsigned int round, double el, const struct verdict *v)
{
	const struct activity *a = &v->act;

	if (v->lost)
		fail_msg("mode %s seed %u: %llu lost writes (details above)", mode, seed,
			 (unsigned long long)v->lost);
	if (v->audit_fails)
		fail_msg("mode %s seed %u: rf_vm_audit failed %llu times (details above)", mode,
			 seed, (unsigned long long)v->audit_fails);
	if (v->still)
		fail_msg("mode %s seed %u: %llu of %llu pages written after their free page "
			 "report are still FREE_REPORTED 2 s after the last write",
			 mode, seed, (unsigned long long)v->still,
			 (unsigned long long)v->rewritten);
	if (a->stopped)
		fail_msg("mode %s seed %u: a VM was stopped (a swapped page could not be read "
			 "back)",
			 mode, seed);
	if (v->rejected)
		fail_msg("mode %s seed %u: the balloon refused %llu requests or pages of a "
			 "well-behaved driver",
			 mode, seed, (unsigned long long)v->rejected);
	if (copy != a->copy_mode)
		fail_msg("mode %s seed %u: the pager swaps in %s mode", mode, seed,
			 a->copy_mode ? "copy" : "move");
	if (v->host_writes < writes)
		fail_msg("mode %s seed %u: %llu host writes, %llu asked for", mode, seed,
			 (unsigned long long)v->host_writes, (unsigned long long)writes);
	/* The race was real: every mechanism acted under the writers. */
	if (!busy_enough(v->kvm, a, round) || v->rewritten < MIN_REWRITTEN)
		fail_msg("mode %s seed %u: too little happened in %.0f s: merges %llu, unmerges "
			 "%llu, swap-outs %llu, swap-ins %llu, inflates %llu, deflates %llu, "
			 "reports %llu, rewritten reported pages %llu, vcpu rounds %u",
			 mode, seed, el, (unsigned long long)a->merges,
			 (unsigned long long)a->unmerges, (unsigned long long)a->swap_outs,
			 (unsigned long long)a->swap_ins, (unsigned long long)a->inflates,
			 (unsigned long long)a->deflates, (unsigned long long)a->reports,
			 (unsigned long long)v->rewritten, round);
}

static void one_run(const char *mode, bool copy, unsigned int seed, uint64_t writes)
{
	struct run *r = calloc(1, sizeof(*r));
	uint64_t rng = splitmix(seed) | 1, secs = env_u64("RF_STRESS_SECONDS", 150);
	struct threads th;
	struct rf_kvm_mini k;
	struct verdict v;
	unsigned int round;
	double el;

	assert_non_null(r);
	r->mode = mode;
	r->seed = seed;
	r->stall_s = (unsigned int)env_u64("RF_STRESS_STALL", 20);
	atomic_store(&r->phase, "setup");
	r->e = new_engine(r, copy);
	r->start_ms = now_ms();
	r->deadline_ms = r->start_ms + secs * 1000;
	for (unsigned int i = 0; i < NVMS; i++)
		setup_vm(r, i, &rng);
	if (r->kvm) {
		fill_vcpu_area(&r->v[0]);
		rf_kvm_mini_setup(&k, r->v[0].ram, plan[0].ram);
	} else {
		print_message("[   INFO   ] no /dev/kvm: the vCPU writer is skipped (host "
			      "writers only)\n");
	}
	start_mechanisms(r);
	start_threads(r, &th);
	/* Waiting for activity ends at 3/4 of the deadline, leaving the rest
	 * for the final checks. */
	round = drive_vcpu(r, &k, &rng, writes, r->start_ms + secs * 750);
	stop_threads(r, &th);
	final_checks(r, round, &rng);
	atomic_store(&r->wd_stop, true);
	pthread_join(th.watchdog, NULL);
	el = (double)(now_ms() - r->start_ms) / 1000;
	print_run(r, round, el);

	v = (struct verdict){
	    .lost = atomic_load(&r->mismatches) + atomic_load(&r->vcpu_lost),
	    .audit_fails = atomic_load(&r->audit_fails),
	    .host_writes = atomic_load(&r->host_writes),
	    .still = r->still_reported,
	    .rewritten = r->rewritten_end,
	    .rejected = r->balloon_rejected,
	    .act = r->act,
	    .kvm = r->kvm,
	};
	if (r->kvm)
		rf_kvm_mini_teardown(&k);
	free_run(r);
	judge(mode, copy, seed, writes, round, el, &v);
}

static void wait_if_stalling(void)
{
	while (atomic_load(&stalling))
		rf_test_sleep_ms(1000);
}

static void run_mode(const char *mode, bool copy)
{
	uint64_t writes = env_u64("RF_STRESS_WRITES", 1000000);
	uint64_t seeds = env_u64("RF_STRESS_SEEDS", 1), first = env_u64("RF_STRESS_SEED", 1);
	uint64_t per_run = (writes + seeds - 1) / (seeds ? seeds : 1);
	const char *modes = getenv("RF_STRESS_MODES");

	wait_if_stalling();
	rf_require(!modes || strstr(modes, mode), "mode not in RF_STRESS_MODES");
	for (uint64_t s = first; s < first + seeds; s++)
		one_run(mode, copy, (unsigned int)s, per_run);
}

static void test_stress_move(void **state)
{
	(void)state;
	run_mode("move", false);
}

static void test_stress_copy(void **state)
{
	(void)state;
	run_mode("copy", true);
}

static int print_totals(void **state)
{
	(void)state;
	wait_if_stalling();
	printf("stress total: %llu runs, %llu writes (vcpu %llu), merges %llu, unmerges %llu, "
	       "swap-outs %llu, swap-ins %llu, inflates %llu, deflates %llu, reports %llu, "
	       "audits %llu, audit failures %llu, mismatches %llu, still free-reported %llu\n",
	       (unsigned long long)tot.runs, (unsigned long long)tot.writes,
	       (unsigned long long)tot.vcpu_writes, (unsigned long long)tot.merges,
	       (unsigned long long)tot.unmerges, (unsigned long long)tot.swap_outs,
	       (unsigned long long)tot.swap_ins, (unsigned long long)tot.inflates,
	       (unsigned long long)tot.deflates, (unsigned long long)tot.reports,
	       (unsigned long long)tot.audits, (unsigned long long)tot.audit_fails,
	       (unsigned long long)tot.mismatches, (unsigned long long)tot.still_reported);
	return 0;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_stress_move),
	    cmocka_unit_test(test_stress_copy),
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	make_templates();
	return cmocka_run_group_tests_name("stress", tests, NULL, print_totals);
}
