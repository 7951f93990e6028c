/* SPDX-License-Identifier: MIT */
/*
 * The dedup engine in-process (no KVM): guest RAM written by threads of this
 * process. Savings are read from the kernel (smaps_rollup), never from the
 * engine's counters; every test ends with the content checked page by page
 * and the page-state table audited against pagemap.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sys/resource.h>
#include <sched.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ramfold/ramfold.h>

#ifndef RF_ARENA_LIBC
#include <jemalloc/jemalloc.h>
#endif

#include "../../ksm/dedup_internal.h"
#include "dedup_util.h"
#include "rf_test.h"

#define PG 4096u

struct fx {
	rf_engine *e;
	rf_vm *vm[2];
	uint8_t *ram[2];
	size_t size;
};

static int skip_unless_supported(void)
{
	const char *why = NULL;

	if (!dedup_supported(&why)) {
		printf("skipped: %s\n", why);
		return 1;
	}
	return 0;
}

static void fx_init(struct fx *f, size_t size, unsigned int nvms, const char *dom0,
		    const char *dom1)
{
	struct rf_engine_config ec;
	struct rf_vm_config vc;
	const char *doms[2] = {dom0, dom1};

	memset(f, 0, sizeof(*f));
	rf_engine_config_init(&ec);
	ec.log = dedup_test_log;
	ec.scan_threads = 2;
	assert_int_equal(rf_engine_new(&ec, &f->e), 0);
	f->size = size;
	for (unsigned int i = 0; i < nvms; i++) {
		char name[16];
		void *hva;

		rf_vm_config_init(&vc);
		vc.ram_bytes = size;
		vc.domain = doms[i];
		snprintf(name, sizeof(name), "vm%u", i);
		assert_int_equal(rf_vm_new(f->e, name, &vc, &f->vm[i]), 0);
		assert_int_equal(rf_vm_map_ram(f->vm[i], 0, size, &hva), 0);
		f->ram[i] = hva;
	}
}

/* rf_dedup_config.vma_single_pct for the next fx_start (0: the default). */
static unsigned int fx_vma_single_pct;

static void fx_start_idle(struct fx *f, enum rf_dedup_mode mode, uint64_t vma_budget,
			  unsigned int idle_pct)
{
	struct rf_dedup_config dc;

	rf_dedup_config_init(&dc);
	dc.mode = mode;
	dc.vma_budget = vma_budget;
	if (fx_vma_single_pct)
		dc.vma_single_pct = fx_vma_single_pct;
	dc.idle_cpu_percent = idle_pct;
	if (idle_pct == 100)
		dc.backoff_max = 0; /* racing tests: merge rewritten pages at once */
	assert_int_equal(rf_dedup_start(f->e, &dc), 0);
	for (unsigned int i = 0; i < 2; i++)
		if (f->vm[i])
			assert_int_equal(rf_dedup_add_vm(f->vm[i]), 0);
}

static void fx_start(struct fx *f, enum rf_dedup_mode mode, uint64_t vma_budget)
{
	fx_start_idle(f, mode, vma_budget, 0);
}

static void fx_audit(struct fx *f)
{
	for (unsigned int i = 0; i < 2; i++) {
		struct rf_audit_report rep = {.size = sizeof(rep)};

		if (!f->vm[i])
			continue;
		assert_int_equal(rf_vm_audit(f->vm[i], &rep, 0), 0);
		assert_int_equal(rep.mismatches, 0);
	}
}

static void fx_fini(struct fx *f)
{
	rf_dedup_stop(f->e);
	rf_engine_free(f->e);
}

/* Layout used by several tests: @copies copies of a @tpl-page template,
 * then @uniq unique pages, then @zero zero pages (written, so resident). */
static size_t fill_layout(uint8_t *ram, unsigned int copies, unsigned int tpl, unsigned int uniq,
			  unsigned int zero, uint64_t seed)
{
	size_t p = 0;

	for (unsigned int c = 0; c < copies; c++)
		for (unsigned int i = 0; i < tpl; i++)
			dedup_fill_page(ram + (p++) * PG, seed + i);
	for (unsigned int i = 0; i < uniq; i++)
		dedup_fill_page(ram + (p++) * PG, seed + 1000000 + i);
	for (unsigned int i = 0; i < zero; i++) {
		memset(ram + p * PG, 0, PG);
		ram[p * PG] = 1;     /* fault in a private page... */
		ram[(p++) * PG] = 0; /* ...that reads all zero */
	}
	return p;
}

static void check_layout(const uint8_t *ram, unsigned int copies, unsigned int tpl,
			 unsigned int uniq, unsigned int zero, uint64_t seed)
{
	static uint8_t want[PG];
	size_t p = 0;

	for (unsigned int c = 0; c < copies; c++)
		for (unsigned int i = 0; i < tpl; i++) {
			dedup_fill_page(want, seed + i);
			assert_memory_equal(ram + (p++) * PG, want, PG);
		}
	for (unsigned int i = 0; i < uniq; i++) {
		dedup_fill_page(want, seed + 1000000 + i);
		assert_memory_equal(ram + (p++) * PG, want, PG);
	}
	memset(want, 0, PG);
	for (unsigned int i = 0; i < zero; i++)
		assert_memory_equal(ram + (p++) * PG, want, PG);
}

/* Duplicates, uniques and zero pages: the kernel's Pss falls by at least 90%
 * of what perfect dedup would save. */
static void test_savings_measured(void **state)
{
	const unsigned int copies = 8, tpl = 1024, uniq = 2048, zero = 2048;
	struct dedup_mem before, after;
	struct rf_dedup_stats st = {.size = sizeof(st)};
	uint64_t ideal, saved;
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, 64u << 20, 1, NULL, NULL);
	fill_layout(f.ram[0], copies, tpl, uniq, zero, 1);
	assert_int_equal(dedup_mem_read(&before), 0);
	fx_start(&f, RF_DEDUP_INTRA_VM, 0);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	assert_int_equal(dedup_mem_read(&after), 0);
	assert_int_equal(rf_dedup_stats(f.e, &st), 0);
	ideal = (uint64_t)(copies - 1) * tpl * PG + (uint64_t)zero * PG;
	saved = before.pss > after.pss ? before.pss - after.pss : 0;
	printf("  pss %llu -> %llu KiB: saved %llu KiB of ideal %llu KiB (engine says %llu KiB), "
	       "%llu passes\n",
	       (unsigned long long)before.pss >> 10, (unsigned long long)after.pss >> 10,
	       (unsigned long long)saved >> 10, (unsigned long long)ideal >> 10,
	       (unsigned long long)st.saved_bytes >> 10, (unsigned long long)st.scan_passes);
	assert_true(saved >= ideal * 9 / 10);
	assert_int_equal(st.pages_sharing, copies * tpl);
	assert_int_equal(st.pages_zero, zero);
	assert_int_equal(st.store_pages, tpl);
	check_layout(f.ram[0], copies, tpl, uniq, zero, 1);
	fx_audit(&f);
	fx_fini(&f);
}

static uint64_t passes_of(rf_engine *e)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};

	assert_int_equal(rf_dedup_counters(e, &st), 0);
	return st.scan_passes;
}

/*
 * Pages seen before the Bloom filter and the seen map grow are found by
 * twins written after: a 1 MiB VM counts 200 unique pages in the seen map
 * (both maps at their smallest), a 64 MiB region mapped later grows them
 * once 16,384 pages of it have content of their own (the maps follow the
 * pages hashed, not the RAM: the empty region alone leaves them as they
 * are), and twins of the 200 written there are all merged one pass after
 * they are stable. Were the old pages' bits missing from the new seen map,
 * neither side would ever be filed, and nothing merged.
 */
static void test_bloom_grow_keeps_twins(void **state)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};
	const unsigned int n = 200;
	uint8_t *ram2;
	uint64_t p0;
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, 1u << 20, 1, NULL, NULL);
	for (unsigned int i = 0; i < n; i++)
		dedup_fill_page(f.ram[0] + (size_t)i * PG, 77 + i);
	fx_start_idle(&f, RF_DEDUP_INTRA_VM, 0, 100);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	assert_int_equal(f.e->dedup->bloom_bits, BLOOM_MIN_BITS);
	assert_int_equal(rf_vm_set_ram_bytes(f.vm[0], 65u << 20), 0);
	assert_int_equal(rf_vm_map_ram(f.vm[0], 64u << 20, 64u << 20, (void **)&ram2), 0);
	p0 = passes_of(f.e);
	while (passes_of(f.e) < p0 + 2)
		usleep(1000);
	/* Mapped, still empty: nothing more hashed. */
	assert_int_equal(f.e->dedup->bloom_bits, BLOOM_MIN_BITS);
	for (unsigned int i = 0; i < 16384 - n; i++)
		dedup_fill_page(ram2 + (size_t)(n + i) * PG, (1ull << 40) + i);
	/* Pass p0 + 2 hashes them all (p0 + 1 may have begun before the
	 * fill), and the maps are sized to its count as p0 + 3 begins. */
	p0 = passes_of(f.e);
	while (passes_of(f.e) < p0 + 3)
		usleep(1000);
	/* 16,384 pages hashed * 8 bits: 2^17; more with the engine's own
	 * pages counted once more in a pass that overlapped the fill. */
	assert_true(f.e->dedup->bloom_bits >= 1ull << 17);
	for (unsigned int i = 0; i < n; i++)
		dedup_fill_page(ram2 + (size_t)i * PG, 77 + i);
	/* Pass p0 + 1 may have gone by the twins, p0 + 2 hashes them and
	 * finds their keys seen (the old pages are counted in the seen map,
	 * not filed: the keys get their Bloom bits), p0 + 3 files and pairs
	 * them. Two scanner threads can leave a pair that lost a race to the
	 * pass after. */
	p0 = passes_of(f.e);
	while (passes_of(f.e) < p0 + 4)
		usleep(1000);
	dedup_wait_sharing(f.e, 2 * n, 10000);
	assert_int_equal(rf_dedup_counters(f.e, &st), 0);
	assert_int_equal(st.pages_sharing, 2 * n);
	assert_int_equal(st.store_pages, n);
	for (unsigned int i = 0; i < n; i++)
		assert_memory_equal(ram2 + (size_t)i * PG, f.ram[0] + (size_t)i * PG, PG);
	fx_audit(&f);
	fx_fini(&f);
}

/*
 * The first size of the maps comes from the resident pages (nothing is
 * hashed yet), which over-counts: here 16,384 resident pages, all but 200
 * of them zero-filled (as a booted QEMU guest's huge pages mostly are).
 * Once the first pass has counted the 200 pages it hashed, the maps are
 * replaced by the smallest, and twins of the 200 written after are merged:
 * the smaller maps were rebuilt from the pages' hashes.
 */
static void test_bloom_guess_shrunk(void **state)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};
	const unsigned int n = 200;
	uint64_t p0;
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, 64u << 20, 1, NULL, NULL);
	memset(f.ram[0], 0, 64u << 20); /* resident, zero */
	for (unsigned int i = 0; i < n; i++)
		dedup_fill_page(f.ram[0] + (size_t)i * PG, 5000 + i);
	fx_start_idle(&f, RF_DEDUP_INTRA_VM, 0, 100);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	p0 = passes_of(f.e);
	while (passes_of(f.e) < p0 + 2)
		usleep(1000);
	assert_int_equal(f.e->dedup->bloom_bits, BLOOM_MIN_BITS);
	for (unsigned int i = 0; i < n; i++)
		dedup_fill_page(f.ram[0] + (size_t)(8192 + i) * PG, 5000 + i);
	dedup_wait_sharing(f.e, 2 * n, 10000);
	assert_int_equal(rf_dedup_counters(f.e, &st), 0);
	assert_int_equal(st.pages_sharing, 2 * n);
	fx_audit(&f);
	fx_fini(&f);
}

#ifndef RF_ARENA_LIBC
/* The engine's arena's freed pages still resident (jemalloc's own count). */
static uint64_t arena_dirty_bytes(rf_engine *e)
{
	uint64_t epoch = 1;
	size_t sz = sizeof(epoch), pdirty = 0, psz = sizeof(pdirty);
	char key[64];

	assert_int_equal(mallctl("epoch", &epoch, &sz, &epoch, sz), 0);
	snprintf(key, sizeof(key), "stats.arenas.%u.pdirty", e->arena);
	assert_int_equal(mallctl(key, &pdirty, &psz, NULL, 0), 0);
	return (uint64_t)pdirty * PG;
}
#endif

/*
 * A pass that frees many index nodes gives their pages back: 8192 pairs
 * merged onto 8192 store pages (512 KiB of STORE nodes), then zeroed by the
 * guest, so that one pass unmerges every page and the reap removes every
 * node. Once converged again, the arena holds no freed pages worth
 * counting: without the purge the allocator would keep them for its 10 s
 * decay, which a converged engine's few allocations hardly move.
 */
static void test_freed_nodes_given_back(void **state)
{
#ifdef RF_ARENA_LIBC
	(void)state;
	skip(); /* metadata from libc: no arena to purge */
#else
	const unsigned int n = 16384;
	struct fx f;
	uint64_t p0, dirty;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, (size_t)n * PG, 1, NULL, NULL);
	fill_layout(f.ram[0], 2, n / 2, 0, 0, 5);
	fx_start_idle(&f, RF_DEDUP_INTRA_VM, 0, 100);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	assert_int_equal(index_count(f.e->dedup->ht), n / 2);
	memset(f.ram[0], 0, (size_t)n * PG);
	p0 = passes_of(f.e);
	while (passes_of(f.e) < p0 + 3)
		usleep(1000);
	assert_true(dedup_wait_converged(f.e, (unsigned int)p0 + 3, 20000));
	dirty = arena_dirty_bytes(f.e);
	printf("  arena: %llu KiB freed and still resident\n", (unsigned long long)dirty >> 10);
	assert_true(dirty < (128u << 10));
	fx_audit(&f);
	fx_fini(&f);
#endif
}

/* A guest write to a merged page breaks the sharing, keeps the write, and
 * the engine notices: page PRIVATE again, store reference dropped. */
static void test_cow_unmerge(void **state)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, 8u << 20, 1, NULL, NULL);
	fill_layout(f.ram[0], 4, 256, 0, 0, 7);
	fx_start(&f, RF_DEDUP_INTRA_VM, 0);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	assert_int_equal(rf_vm_page_state(f.vm[0], 5 * PG), RF_PAGE_MERGED);
	f.ram[0][5 * PG + 100] ^= 0xff;
	f.ram[0][(256 + 5) * PG + 100] ^= 0xff;
	rf_dedup_scan_now(f.e);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	assert_int_equal(rf_dedup_stats(f.e, &st), 0);
	assert_true(st.pages_unmerged >= 2);
	/* The two written pages are equal to each other again: merged anew. */
	assert_int_equal(f.ram[0][5 * PG + 100], f.ram[0][(256 + 5) * PG + 100]);
	fx_audit(&f);
	rf_dedup_stop(f.e);
	for (size_t p = 0; p < 1024; p++)
		assert_int_equal(rf_vm_page_state(f.vm[0], p * PG), RF_PAGE_PRIVATE);
	fx_audit(&f);
	rf_engine_free(f.e);
}

struct writer {
	uint8_t *ram;
	unsigned int npages, first, stride;
	uint64_t writes, bad_reads;
	uint32_t *last;
	unsigned int seed;
	_Atomic bool *stop;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;
	uint64_t target = w->writes;

	w->writes = 0;
	while (w->writes < target) {
		unsigned int p =
		    w->first + w->stride * (rand_r(&w->seed) % (w->npages / w->stride));
		volatile uint32_t *word = (volatile uint32_t *)(w->ram + (size_t)p * PG + 64);
		uint32_t v = (uint32_t)(rand_r(&w->seed) % 4); /* few values: pages stay twins */

		*word = v;
		w->last[p] = v;
		if (*word != v)
			w->bad_reads++;
		w->writes++;
		if ((w->writes & 511) == 0)
			usleep(1000); /* let pages sit still for a pass now and then */
	}
	return NULL;
}

/* Threads write continuously while the scanner merges: >= 10^6 writes, and
 * every page holds exactly its last value at the end. */
static void test_racing_writers(void **state)
{
	const unsigned int npages = 2048, nw = 2;
	struct writer w[2];
	pthread_t t[2];
	uint32_t *last;
	struct rf_dedup_stats st = {.size = sizeof(st)};
	uint64_t total = 0, lost = 0, bad = 0;
	static uint8_t tpl[PG];
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	last = calloc(npages, sizeof(uint32_t));
	assert_non_null(last);
	fx_init(&f, (size_t)npages * PG, 1, NULL, NULL);
	dedup_fill_page(tpl, 42);
	for (unsigned int p = 0; p < npages; p++) {
		memcpy(f.ram[0] + (size_t)p * PG, tpl, PG);
		*(uint32_t *)(f.ram[0] + (size_t)p * PG + 64) = 0;
	}
	/* No idle throttle: the scanner keeps merging under the writers. */
	fx_start_idle(&f, RF_DEDUP_INTRA_VM, 0, 100);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	for (unsigned int i = 0; i < nw; i++) {
		w[i] = (struct writer){.ram = f.ram[0],
				       .npages = npages,
				       .first = i,
				       .stride = nw,
				       .writes = 600000,
				       .last = last,
				       .seed = 1234 + i};
		assert_int_equal(pthread_create(&t[i], NULL, writer_main, &w[i]), 0);
	}
	for (unsigned int i = 0; i < nw; i++) {
		pthread_join(t[i], NULL);
		total += w[i].writes;
		bad += w[i].bad_reads;
	}
	/* The audit compares a snapshot of the mappings with the table: only
	 * meaningful once the engine has nothing left to change. */
	rf_dedup_scan_now(f.e);
	assert_true(dedup_wait_converged(f.e, 2, 20000));
	assert_int_equal(rf_dedup_stats(f.e, &st), 0);
	for (unsigned int p = 0; p < npages; p++) {
		uint8_t *pg = f.ram[0] + (size_t)p * PG;

		if (*(uint32_t *)(pg + 64) != last[p])
			lost++;
		assert_memory_equal(pg, tpl, 64);
		assert_memory_equal(pg + 68, tpl + 68, PG - 68);
	}
	printf("  %llu writes, %llu lost, %llu bad read-backs; engine: %llu merged, %llu unmerged "
	       "by writes, %llu races, %llu volatile skipped, %llu passes\n",
	       (unsigned long long)total, (unsigned long long)lost, (unsigned long long)bad,
	       (unsigned long long)st.pages_merged, (unsigned long long)st.pages_unmerged,
	       (unsigned long long)st.merge_races, (unsigned long long)st.volatile_skipped,
	       (unsigned long long)st.scan_passes);
	assert_true(total >= 1000000);
	assert_int_equal(lost, 0);
	assert_int_equal(bad, 0);
	/* The race was real: merges happened under the writers. */
	assert_true(st.pages_unmerged > 100);
	fx_audit(&f);
	fx_fini(&f);
	free(last);
}

static uint64_t const_hash(const void *p, size_t len)
{
	(void)p;
	(void)len;
	return 0x1234;
}

/* Every page hashes the same: only byte-equal pages may merge. */
static void test_forced_collision(void **state)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};
	uint64_t (*saved_fn)(const void *, size_t) = dedup_hash_fn;
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, 4u << 20, 1, NULL, NULL);
	/* 2 contents, interleaved: A B A B ... */
	for (unsigned int p = 0; p < 512; p++)
		dedup_fill_page(f.ram[0] + (size_t)p * PG, p & 1);
	dedup_hash_fn = const_hash;
	fx_start(&f, RF_DEDUP_INTRA_VM, 0);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	assert_int_equal(rf_dedup_stats(f.e, &st), 0);
	printf("  collisions %llu, sharing %llu\n", (unsigned long long)st.hash_collisions,
	       (unsigned long long)st.pages_sharing);
	assert_true(st.hash_collisions > 0);
	for (unsigned int p = 0; p < 512; p++) {
		static uint8_t want[PG];

		dedup_fill_page(want, p & 1);
		assert_memory_equal(f.ram[0] + (size_t)p * PG, want, PG);
	}
	fx_audit(&f);
	fx_fini(&f);
	dedup_hash_fn = saved_fn;
}

/* Two VMs with identical content: different domains never share (only zero
 * pages go); the same domain shares. */
static void run_domains(const char *d0, const char *d1, enum rf_dedup_mode mode,
			uint64_t want_sharing)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};
	struct fx f;

	fx_init(&f, 4u << 20, 2, d0, d1);
	for (unsigned int i = 0; i < 2; i++)
		fill_layout(f.ram[i], 1, 512, 0, 256, 99);
	fx_start(&f, mode, 0);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	dedup_wait_sharing(f.e, want_sharing, 10000);
	assert_int_equal(rf_dedup_stats(f.e, &st), 0);
	printf("  domains %s/%s mode %s: sharing %llu zero %llu\n", d0 ? d0 : "-", d1 ? d1 : "-",
	       rf_dedup_mode_name(mode), (unsigned long long)st.pages_sharing,
	       (unsigned long long)st.pages_zero);
	assert_int_equal(st.pages_sharing, want_sharing);
	assert_int_equal(st.pages_zero, 512);
	for (unsigned int i = 0; i < 2; i++)
		check_layout(f.ram[i], 1, 512, 0, 256, 99);
	fx_audit(&f);
	fx_fini(&f);
}

static void test_domains(void **state)
{
	(void)state;
	if (skip_unless_supported())
		skip();
	run_domains("red", "blue", RF_DEDUP_DOMAINS, 0);
	run_domains(NULL, NULL, RF_DEDUP_DOMAINS, 0);
	run_domains("red", "red", RF_DEDUP_INTRA_VM, 0); /* intra mode ignores domains */
	run_domains("red", "red", RF_DEDUP_DOMAINS, 1024);
}

/* Zero-only mode discards zero pages and merges nothing. */
static void test_zero_mode(void **state)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, 8u << 20, 1, NULL, NULL);
	fill_layout(f.ram[0], 2, 256, 16, 300, 5);
	fx_start(&f, RF_DEDUP_ZERO, 0);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	assert_int_equal(rf_dedup_stats(f.e, &st), 0);
	assert_int_equal(st.pages_sharing, 0);
	assert_int_equal(st.pages_zero, 300);
	check_layout(f.ram[0], 2, 256, 16, 300, 5);
	/* A write to a discarded zero page lands, and the page is private again. */
	f.ram[0][(512 + 16 + 3) * PG] = 7;
	rf_dedup_scan_now(f.e);
	assert_true(dedup_wait_converged(f.e, 2, 20000));
	assert_int_equal(rf_vm_page_state(f.vm[0], (512 + 16 + 3) * PG), RF_PAGE_PRIVATE);
	assert_int_equal(f.ram[0][(512 + 16 + 3) * PG], 7);
	fx_audit(&f);
	fx_fini(&f);
}

/* Excluded pages (pinned for DMA) are never remapped. */
static void test_exclusion(void **state)
{
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, 4u << 20, 1, NULL, NULL);
	fill_layout(f.ram[0], 2, 256, 0, 256, 3);
	assert_int_equal(rf_vm_exclude_range(f.vm[0], 0, 64 * PG, true), 0);
	assert_int_equal(rf_vm_exclude_range(f.vm[0], 512 * PG, 64 * PG, true), 0);
	fx_start(&f, RF_DEDUP_INTRA_VM, 0);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	for (unsigned int p = 0; p < 64; p++) {
		assert_int_equal(rf_vm_page_state(f.vm[0], (uint64_t)p * PG), RF_PAGE_PRIVATE);
		assert_int_equal(rf_vm_page_state(f.vm[0], (uint64_t)(512 + p) * PG),
				 RF_PAGE_PRIVATE);
	}
	assert_int_equal(rf_vm_page_state(f.vm[0], 100 * PG), RF_PAGE_MERGED);
	assert_int_equal(rf_vm_page_state(f.vm[0], 600 * PG), RF_PAGE_ZERO);
	check_layout(f.ram[0], 2, 256, 0, 256, 3);
	fx_audit(&f);
	fx_fini(&f);
}

/* Page @p of the VMA budget tests: pairs of equal pages separated by unique
 * ones (no run coalesces) over the first 2,048 pages; after them, if @run, a
 * 256-page run at 2,048 equal to the one at 2,560; 0 for the pages between. */
static uint32_t vma_seed(unsigned int p, bool run)
{
	if (p < 2048)
		return (p & 1) ? 500000 + p : p / 4;
	if (run && (p < 2048 + 256 || (p >= 2048 + 512 && p < 2048 + 768)))
		return 700000 + (p - 2048) % 512;
	return 0;
}

/* Fill @f's pages, start the engine with @extra mappings of budget and wait
 * for it to converge: the stats and the engine's last error in @err. */
static void vma_budget_run(struct fx *f, bool run, unsigned int extra, struct rf_dedup_stats *st,
			   char *err, size_t errlen)
{
	for (unsigned int p = 0; p < (run ? 2048 + 768 : 2048); p++)
		if (vma_seed(p, run))
			dedup_fill_page(f->ram[0] + (size_t)p * PG, vma_seed(p, run));
	fx_start(f, RF_DEDUP_INTRA_VM, count_vmas() + extra);
	assert_true(dedup_wait_converged(f->e, 3, 20000));
	assert_int_equal(rf_dedup_stats(f->e, st), 0);
	printf("  budget stops %llu, sharing %llu, vmas %llu\n",
	       (unsigned long long)st->vma_budget_stops, (unsigned long long)st->pages_sharing,
	       (unsigned long long)count_vmas());
	assert_true(st->vma_budget_stops > 0);
	assert_true(rf_engine_last_error(f->e, err, errlen) > 0);
}

/* Every filled page of @f still holds what vma_budget_run wrote. */
static void vma_check_content(struct fx *f, bool run)
{
	static uint8_t want[PG];

	for (unsigned int p = 0; p < (run ? 2048 + 768 : 2048); p++) {
		if (!vma_seed(p, run))
			continue;
		dedup_fill_page(want, vma_seed(p, run));
		assert_memory_equal(f->ram[0] + (size_t)p * PG, want, PG);
	}
	fx_audit(f);
	fx_fini(f);
}

/* An artificially low VMA budget: merging stops with a stat and a logged
 * reason; content and the table stay right. */
static void test_vma_budget(void **state)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};
	char err[512];
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, 8u << 20, 1, NULL, NULL);
	vma_budget_run(&f, false, 40, &st, err, sizeof(err));
	assert_true(st.pages_sharing > 0);
	assert_true(st.pages_sharing < 1024);
	assert_non_null(strstr(err, "VMA budget"));
	vma_check_content(&f, false);
}

/*
 * With vma_single_pct at 50, single pages may use only half of what the VMA
 * budget leaves, so that a long run of duplicates after them still merges:
 * 1,024 single-page pairs come first in the scan, then a 256-page run equal
 * to another. Without the share the pairs took every mapping and the run
 * stayed private. A share over 100 is refused.
 */
static void test_vma_budget_keeps_runs(void **state)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};
	char err[512];
	unsigned int merged_run = 0;
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, 16u << 20, 1, NULL, NULL);
	{
		struct rf_dedup_config bad;

		rf_dedup_config_init(&bad);
		bad.vma_single_pct = 101;
		assert_int_equal(rf_dedup_start(f.e, &bad), -EINVAL);
		assert_true(rf_engine_last_error(f.e, err, sizeof(err)) > 0);
		assert_non_null(strstr(err, "vma_single_pct 101 (0..100)"));
	}
	fx_vma_single_pct = 50;
	vma_budget_run(&f, true, 60, &st, err, sizeof(err));
	fx_vma_single_pct = 0;
	assert_non_null(
	    strstr(err, "merging of single pages stopped at their share of the VMA budget (50%)"));
	/* Two scanner threads may cut the run where one files candidates
	 * while the other pairs with them; a cut-off single page is weighed
	 * as any (nearly all of the run merges all the same). */
	for (unsigned int p = 0; p < 256; p++)
		merged_run +=
		    (rf_vm_page_state(f.vm[0], (uint64_t)(2048 + p) * PG) == RF_PAGE_MERGED) +
		    (rf_vm_page_state(f.vm[0], (uint64_t)(2048 + 512 + p) * PG) == RF_PAGE_MERGED);
	printf("  run: %u of 512 pages merged\n", merged_run);
	assert_true(merged_run >= 448);
	assert_true(st.pages_sharing < 512 + 1024);
	vma_check_content(&f, true);
}

/* The lines of /proc/self/maps that overlap the guest RAM of @f. */
static uint64_t maps_lines_over_ram(const struct fx *f)
{
	char line[4096];
	uint64_t n = 0;
	FILE *m = fopen("/proc/self/maps", "re");

	assert_non_null(m);
	while (fgets(line, sizeof(line), m)) {
		unsigned long a, b;
		bool over = false;

		if (sscanf(line, "%lx-%lx", &a, &b) != 2)
			continue;
		for (unsigned int i = 0; i < 2; i++)
			over |= f->ram[i] && a < (uintptr_t)f->ram[i] + f->size &&
				b > (uintptr_t)f->ram[i];
		n += over;
	}
	fclose(m);
	return n;
}

/* rf_dedup_stats.vmas equals what /proc/self/maps shows over guest RAM. */
static void check_vmas(struct fx *f, struct rf_dedup_stats *st, const char *when)
{
	uint64_t want;

	assert_int_equal(rf_dedup_stats(f->e, st), 0);
	want = maps_lines_over_ram(f);
	printf("  %s: vmas %llu, /proc/self/maps %llu over guest RAM, %llu unmerges\n", when,
	       (unsigned long long)st->vmas, (unsigned long long)want,
	       (unsigned long long)st->pages_unmerged);
	assert_int_equal(st->vmas, want);
}

/* rf_dedup_stats.vmas is what /proc/self/maps shows of guest RAM, after
 * merges and after unmerges (the kernel merges mappings back together; a
 * count of remaps only grows). */
static void test_vmas_counted(void **state)
{
	struct rf_dedup_stats st = {.size = sizeof(st)}, ct = {.size = sizeof(ct)};
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, 8u << 20, 2, NULL, NULL);
	/* Pairs of equal pages separated by unique ones: many runs. */
	for (unsigned int v = 0; v < 2; v++)
		for (unsigned int p = 0; p < 2048; p++)
			dedup_fill_page(f.ram[v] + (size_t)p * PG,
					(p & 1) ? 500000 + p + v * 10000 : p / 4);
	fx_start(&f, RF_DEDUP_INTRA_VM, 0);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	check_vmas(&f, &st, "merged");
	assert_true(st.pages_sharing > 0);
	assert_true(st.vmas > 2);
	/* The counters repeat the last count. */
	assert_int_equal(rf_dedup_counters(f.e, &ct), 0);
	assert_int_equal(ct.vmas, st.vmas);
	/* Unmerge most of them: guest writes make every page unique. */
	for (unsigned int v = 0; v < 2; v++)
		for (unsigned int p = 0; p < 2048; p += 2)
			f.ram[v][(size_t)p * PG + 8] ^= (uint8_t)(p * 7 + v + 1);
	rf_dedup_scan_now(f.e);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	check_vmas(&f, &st, "unmerged");
	assert_true(st.pages_unmerged > 0);
	fx_audit(&f);
	fx_fini(&f);
}

/* Discarding merged pages through the core (what the balloon does) releases
 * them to the engine first: they read as zeros, store pages are freed. */
static void test_discard_merged(void **state)
{
	struct rf_dedup_stats st0 = {.size = sizeof(st0)}, st1 = {.size = sizeof(st1)};
	uint64_t skipped;
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, 4u << 20, 1, NULL, NULL);
	fill_layout(f.ram[0], 2, 128, 0, 0, 11);
	fx_start(&f, RF_DEDUP_INTRA_VM, 0);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	assert_int_equal(rf_dedup_stats(f.e, &st0), 0);
	assert_int_equal(st0.store_pages, 128);
	assert_int_equal(rf_vm_discard_as(f.vm[0], 0, 128, RF_PAGE_BALLOONED, &skipped), 0);
	assert_int_equal(rf_vm_discard_as(f.vm[0], 128 * PG, 128, RF_PAGE_BALLOONED, &skipped), 0);
	assert_int_equal(skipped, 0);
	for (unsigned int p = 0; p < 256; p++) {
		assert_int_equal(rf_vm_page_state(f.vm[0], (uint64_t)p * PG), RF_PAGE_BALLOONED);
		for (unsigned int b = 0; b < PG; b += 512)
			assert_int_equal(f.ram[0][(size_t)p * PG + b], 0);
	}
	rf_dedup_scan_now(f.e);
	assert_true(dedup_wait_converged(f.e, 2, 20000));
	assert_int_equal(rf_dedup_stats(f.e, &st1), 0);
	assert_int_equal(st1.pages_sharing, 0);
	assert_int_equal(st1.store_pages, 0);
	fx_audit(&f);
	fx_fini(&f);
}

/* A rate set at run time bounds the pages hashed per second; 0 lifts it. */
static void test_set_rate(void **state)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, 32u << 20, 1, NULL, NULL);
	for (unsigned int p = 0; p < 8192; p++)
		dedup_fill_page(f.ram[0] + (size_t)p * PG, 70000 + p);
	fx_start(&f, RF_DEDUP_INTRA_VM, 0);
	assert_int_equal(rf_dedup_set_rate(f.e, 4000), 0);
	usleep(300000); /* the unit in flight when the rate was set ends */
	assert_int_equal(rf_dedup_counters(f.e, &st), 0);
	{
		uint64_t s0 = st.pages_scanned;

		usleep(2000000);
		assert_int_equal(rf_dedup_counters(f.e, &st), 0);
		printf("  at 4000 pages/s: %llu pages hashed in 2 s\n",
		       (unsigned long long)(st.pages_scanned - s0));
		/* 2 s at 4000/s, plus a unit of 512 per thread of slack */
		assert_true(st.pages_scanned - s0 <= 2 * 4000 + 2 * 512);
		assert_true(st.pages_scanned - s0 > 0);
	}
	assert_int_equal(rf_dedup_set_rate(f.e, 0), 0);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	fx_fini(&f);
	assert_int_equal(rf_dedup_set_rate(NULL, 5), -ENOENT);
}

/* scan_threads 0 (the default): one scanner per CPU the starting thread may
 * run on, at most RF_SCAN_THREADS_AUTO_MAX: one under an affinity of one
 * CPU, all of them (up to the cap) with the affinity restored. */
static void test_default_threads(void **state)
{
	cpu_set_t all, one;
	unsigned int n_all;

	(void)state;
	assert_int_equal(sched_getaffinity(0, sizeof(all), &all), 0);
	n_all = (unsigned int)CPU_COUNT(&all);
	if (n_all > RF_SCAN_THREADS_AUTO_MAX)
		n_all = RF_SCAN_THREADS_AUTO_MAX;
	CPU_ZERO(&one);
	for (int c = 0; c < CPU_SETSIZE; c++)
		if (CPU_ISSET(c, &all)) {
			CPU_SET(c, &one);
			break;
		}
	for (int pass = 0; pass < 2; pass++) {
		struct rf_engine_config ec;
		struct rf_dedup_config dc;
		unsigned int n = 0, want = pass ? n_all : 1;
		rf_engine *e;

		assert_int_equal(sched_setaffinity(0, sizeof(one), pass ? &all : &one), 0);
		rf_engine_config_init(&ec);
		ec.log = dedup_test_log;
		assert_int_equal(rf_engine_new(&ec, &e), 0);
		rf_dedup_config_init(&dc);
		dc.mode = RF_DEDUP_INTRA_VM;
		assert_int_equal(rf_dedup_start(e, &dc), 0);
		/* Each thread names itself when it runs: wait for the names. */
		for (int i = 0; i < 200 && n != want; i++) {
			usleep(10000);
			n = rf_test_threads_at_nice(getpid(), "rf-scan/",
						    getpriority(PRIO_PROCESS, 0));
		}
		assert_int_equal(n, want);
		rf_dedup_stop(e);
		rf_engine_free(e);
	}
	assert_int_equal(sched_setaffinity(0, sizeof(all), &all), 0);
}

static void test_bad_config(void **state)
{
	struct rf_engine_config ec;
	struct rf_dedup_config dc;
	struct rf_vm_config vc;
	enum rf_dedup_mode m;
	rf_engine *e;
	rf_vm *vm;

	(void)state;
	rf_engine_config_init(&ec);
	assert_int_equal(rf_engine_new(&ec, &e), 0);
	rf_vm_config_init(&vc);
	vc.ram_bytes = 1 << 20;
	assert_int_equal(rf_vm_new(e, "v", &vc, &vm), 0);
	assert_int_equal(rf_dedup_add_vm(vm), -ENOENT);
	rf_dedup_config_init(&dc);
	dc.mode = (enum rf_dedup_mode)42;
	assert_int_equal(rf_dedup_start(e, &dc), -EINVAL);
	rf_dedup_config_init(&dc);
	dc.scan_threads = 65;
	assert_int_equal(rf_dedup_start(e, &dc), -EINVAL);
	rf_dedup_config_init(&dc);
	dc.cpu_percent = 101;
	assert_int_equal(rf_dedup_start(e, &dc), -EINVAL);
	rf_dedup_config_init(&dc);
	dc.backoff_max = 31;
	assert_int_equal(rf_dedup_start(e, &dc), -EINVAL);
	assert_int_equal(rf_dedup_mode_parse("bogus", &m), -EINVAL);
	assert_int_equal(rf_dedup_mode_parse("domains", &m), 0);
	assert_int_equal(m, RF_DEDUP_DOMAINS);
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_OFF;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_start(e, &dc), -EALREADY);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_int_equal(rf_dedup_add_vm(vm), -EALREADY);
	rf_dedup_stop(e);
	rf_engine_free(e);
}

/*
 * Unique pages cost no index node: 16384 pages of which 16 pairs, the rest
 * unique. Once converged the pairs are merged, and the index holds their 16
 * STORE nodes plus at most the candidates of pages whose two seen bits
 * other keys had set (the seen map has 8 bits a page, two a key: about 1
 * in 20; it was 1 in 8 with one bit a key, 2,002 nodes here).
 */
static void test_unique_pages_not_filed(void **state)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};
	const unsigned int n = 16384;
	uint64_t nodes;
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, (size_t)n * PG, 1, NULL, NULL);
	fill_layout(f.ram[0], 2, 16, n - 32, 0, 9);
	fx_start(&f, RF_DEDUP_INTRA_VM, 0);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	assert_int_equal(rf_dedup_counters(f.e, &st), 0);
	assert_int_equal(st.pages_sharing, 32);
	assert_int_equal(st.store_pages, 16);
	nodes = index_count(f.e->dedup->ht);
	printf("  %u unique pages: %llu index nodes (16 of them STORE)\n", n - 32,
	       (unsigned long long)nodes);
	assert_true(nodes >= 16 && nodes < 16 + n / 16);
	check_layout(f.ram[0], 2, 16, n - 32, 0, 9);
	fx_audit(&f);
	fx_fini(&f);
}

/*
 * The seen map does not fill up with a live guest's churn: every pass the
 * guest gives 4096 of 16384 pages fresh content, each counted in the map
 * once stable. After a few rounds, far more keys than fill the map to a
 * quarter (16384 keys of two bits in its 131072) have passed through it;
 * it is refilled from the pages counted now, so its bits stay near the
 * pages themselves. Twins written at the end are still found.
 */
static void test_seen_map_refilled(void **state)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};
	const unsigned int n = 16384;
	uint64_t p0, total = 0;
	struct fx f;

	(void)state;
	if (skip_unless_supported())
		skip();
	fx_init(&f, (size_t)n * PG, 1, NULL, NULL);
	fill_layout(f.ram[0], 0, 0, n, 0, 100);
	fx_start_idle(&f, RF_DEDUP_INTRA_VM, 0, 100);
	assert_true(dedup_wait_converged(f.e, 3, 20000));
	assert_int_equal(f.e->dedup->bloom_bits, 1ull << 17);
	for (unsigned int round = 1; round <= 12; round++) {
		for (unsigned int i = 0; i < n / 4; i++)
			dedup_fill_page(f.ram[0] + (size_t)((round * 4099 + i * 4) % n) * PG,
					(uint64_t)round << 32 | i);
		total += n / 4;
		p0 = passes_of(f.e);
		rf_dedup_scan_now(f.e);
		while (passes_of(f.e) < p0 + 3)
			usleep(1000);
	}
	printf("  %llu keys counted over the rounds, %llu bits set now (map of %llu)\n",
	       (unsigned long long)(total + n),
	       (unsigned long long)atomic_load(&f.e->dedup->seen_count),
	       (unsigned long long)f.e->dedup->bloom_bits);
	assert_true(total + n > f.e->dedup->bloom_bits / 4);
	/* Refilled at the start of a pass: one round's keys may come after. */
	assert_true(atomic_load(&f.e->dedup->seen_count) <= f.e->dedup->bloom_bits / 4 + n / 4);
	/* Twins of 64 pages, written now, are merged. */
	for (unsigned int i = 0; i < 64; i++)
		memcpy(f.ram[0] + (size_t)(n - 1 - i) * PG, f.ram[0] + (size_t)i * 2 * PG, PG);
	p0 = passes_of(f.e);
	rf_dedup_scan_now(f.e);
	while (passes_of(f.e) < p0 + 5)
		usleep(1000);
	assert_int_equal(rf_dedup_counters(f.e, &st), 0);
	assert_true(st.pages_sharing >= 128);
	fx_audit(&f);
	fx_fini(&f);
}

/*
 * Every hash path gives the same value: the AVX2 one (where the CPU has it)
 * and libxxhash's, on zero, random and patterned pages and on lengths that
 * are not a page. The broker hashes with libxxhash, and pages hashed on one
 * path are looked up on the other.
 */
static void test_hash_paths_agree(void **state)
{
	static uint8_t buf[2 * PG];
	uint64_t x = 0x9e3779b97f4a7c15ull;

	(void)state;
	if (!dedup_hash_avx2_usable()) {
		printf("skipped: no AVX2 on this CPU\n");
		skip();
	}
	assert_true(dedup_hash_fn == dedup_hash_avx2);
	for (unsigned int round = 0; round < 64; round++) {
		for (unsigned int i = 0; i < sizeof(buf); i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			buf[i] = round < 8 ? 0 : round < 16 ? (uint8_t)i : (uint8_t)x;
		}
		for (size_t len = 0; len <= PG; len += len < 256 ? 1 : 509)
			assert_true(dedup_hash_avx2(buf + round, len) ==
				    dedup_hash_default(buf + round, len));
		assert_true(dedup_hash_avx2(buf, PG) == dedup_hash_default(buf, PG));
	}
}

static _Atomic unsigned int full_lines;

static void count_full_log(void *arg, enum rf_log_level level, const char *msg)
{
	if (strstr(msg, "store full"))
		atomic_fetch_add(&full_lines, 1);
	dedup_test_log(arg, level, msg);
}

/*
 * A full store steps back without losing a page: the store is capped at 64
 * pages and the guest has 128 pairs. The first run is cut to the 64 pages
 * left; the other pairs stay private with their content, one warning says so
 * (however many passes try them again), and merges onto existing store pages
 * go on: a third copy of a merged page, written later, is merged at sight.
 */
static void test_store_full(void **state)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};
	struct rf_engine_config ec;
	struct rf_dedup_config dc;
	struct rf_audit_report rep = {.size = sizeof(rep)};
	struct rf_vm_config vc;
	uint64_t cap[STORE_MAX_NODES], p0;
	rf_engine *e;
	uint8_t *ram;
	rf_vm *vm;
	void *hva;

	(void)state;
	if (skip_unless_supported())
		skip();
	atomic_store(&full_lines, 0);
	rf_engine_config_init(&ec);
	ec.log = count_full_log;
	ec.scan_threads = 2;
	assert_int_equal(rf_engine_new(&ec, &e), 0);
	rf_vm_config_init(&vc);
	vc.ram_bytes = 4u << 20;
	assert_int_equal(rf_vm_new(e, "vm0", &vc, &vm), 0);
	assert_int_equal(rf_vm_map_ram(vm, 0, 4u << 20, &hva), 0);
	ram = hva;
	fill_layout(ram, 2, 128, 0, 0, 21);
	rf_dedup_config_init(&dc);
	dc.idle_cpu_percent = 100;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	/* Before any VM is attached: nothing is allocated yet. The real
	 * capacity goes back before the stop (it sizes the unmaps). */
	for (int i = 0; i < e->dedup->nstores; i++) {
		cap[i] = e->dedup->stores[i].cap;
		e->dedup->stores[i].cap = 64;
	}
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_true(dedup_wait_converged(e, 3, 20000));
	p0 = passes_of(e);
	while (passes_of(e) < p0 + 3)
		usleep(1000);
	assert_int_equal(rf_dedup_counters(e, &st), 0);
	printf("  store of 64 pages, 128 pairs: %llu store pages, %llu sharing, %u warning(s)\n",
	       (unsigned long long)st.store_pages, (unsigned long long)st.pages_sharing,
	       atomic_load(&full_lines));
	assert_int_equal(st.store_pages, 64);
	assert_int_equal(st.pages_sharing, 128);
	assert_int_equal(atomic_load(&full_lines), 1);
	check_layout(ram, 2, 128, 0, 0, 21);
	/* A third copy of merged page 0. */
	memcpy(ram + 300 * PG, ram, PG);
	p0 = passes_of(e);
	rf_dedup_scan_now(e);
	while (passes_of(e) < p0 + 3)
		usleep(1000);
	assert_int_equal(rf_dedup_counters(e, &st), 0);
	assert_int_equal(st.store_pages, 64);
	assert_int_equal(st.pages_sharing, 129);
	assert_int_equal(rf_vm_page_state(vm, 300 * PG), RF_PAGE_MERGED);
	assert_memory_equal(ram + 300 * PG, ram, PG);
	assert_int_equal(atomic_load(&full_lines), 1);
	check_layout(ram, 2, 128, 0, 0, 21);
	assert_int_equal(rf_vm_audit(vm, &rep, 0), 0);
	assert_int_equal(rep.mismatches, 0);
	for (int i = 0; i < e->dedup->nstores; i++)
		e->dedup->stores[i].cap = cap[i];
	rf_dedup_stop(e);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_config),
	    cmocka_unit_test(test_default_threads),
	    cmocka_unit_test(test_savings_measured),
	    cmocka_unit_test(test_cow_unmerge),
	    cmocka_unit_test(test_forced_collision),
	    cmocka_unit_test(test_domains),
	    cmocka_unit_test(test_zero_mode),
	    cmocka_unit_test(test_exclusion),
	    cmocka_unit_test(test_vma_budget),
	    cmocka_unit_test(test_vma_budget_keeps_runs),
	    cmocka_unit_test(test_discard_merged),
	    cmocka_unit_test(test_racing_writers),
	    cmocka_unit_test(test_set_rate),
	    cmocka_unit_test(test_vmas_counted),
	    cmocka_unit_test(test_bloom_grow_keeps_twins),
	    cmocka_unit_test(test_bloom_guess_shrunk),
	    cmocka_unit_test(test_freed_nodes_given_back),
	    cmocka_unit_test(test_unique_pages_not_filed),
	    cmocka_unit_test(test_seen_map_refilled),
	    cmocka_unit_test(test_store_full),
	    cmocka_unit_test(test_hash_paths_agree),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
