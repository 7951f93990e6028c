/* SPDX-License-Identifier: MIT */
/*
 * The swap store and its pure parts: the slot allocator, the latency
 * histogram, the compressed tier and the file, checksums on every read,
 * and ENOSPC/EIO/corruption injected: no page lost, a clear error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "rf_test.h"
#include "swap_hist.h"
#include "swap_slots.h"
#include "swap_store.h"

/* ---- slot allocator ---- */

static void test_slots_runs_and_reuse(void **state)
{
	uint64_t bits[4] = {0};
	struct rf_slots s;
	uint32_t got;
	int64_t a, b, c;

	(void)state;
	rf_slots_init(&s, bits, 200);
	a = rf_slots_alloc(&s, 64, &got);
	assert_int_equal(a, 0);
	assert_int_equal(got, 64);
	b = rf_slots_alloc(&s, 10, &got);
	assert_int_equal(b, 64);
	assert_int_equal(got, 10);
	assert_int_equal(s.used, 74);
	/* Free a hole in the first run: the cursor goes on forward first. */
	assert_true(rf_slots_free(&s, 10, 5));
	c = rf_slots_alloc(&s, 3, &got);
	assert_int_equal(c, 74);
	assert_int_equal(got, 3);
	/* Double free is refused and changes nothing. */
	assert_false(rf_slots_free(&s, 10, 1));
	assert_false(rf_slots_free(&s, 199, 2));
	assert_int_equal(s.used, 72);
	/* Use everything: the hole is found after wrapping, as a short run. */
	while (s.used < 200)
		assert_true(rf_slots_alloc(&s, 50, &got) >= 0);
	assert_int_equal(rf_slots_alloc(&s, 1, &got), -1);
	assert_int_equal(got, 0);
	/* Bits beyond nslots are never set. */
	assert_int_equal(bits[3] >> (200 - 192), 0);
	assert_true(rf_slots_free(&s, 0, 200));
	assert_int_equal(s.used, 0);
}

static void test_slots_random_model(void **state)
{
	enum { N = 1000 };
	uint64_t bits[(N + 63) / 64] = {0};
	unsigned char model[N] = {0};
	struct rf_slots s;
	unsigned int used = 0;

	(void)state;
	srand(7);
	rf_slots_init(&s, bits, N);
	for (int it = 0; it < 100000; it++) {
		if (rand() % 2) {
			uint32_t got, want = 1 + (uint32_t)(rand() % 16);
			int64_t f = rf_slots_alloc(&s, want, &got);

			if (used == N) {
				assert_int_equal(f, -1);
				continue;
			}
			assert_true(f >= 0 && got >= 1 && got <= want);
			for (uint32_t i = 0; i < got; i++) {
				assert_int_equal(model[f + i], 0);
				model[f + i] = 1;
			}
			used += got;
		} else {
			uint32_t i = (uint32_t)(rand() % N);

			assert_int_equal(rf_slots_free(&s, i, 1), model[i] == 1);
			if (model[i]) {
				model[i] = 0;
				used--;
			}
		}
		assert_int_equal(s.used, used);
	}
}

/* ---- histogram ---- */

static void test_hist_percentiles(void **state)
{
	static struct rf_hist h;

	(void)state;
	assert_int_equal(rf_hist_percentile(&h, 50), 0);
	for (uint64_t v = 1; v <= 1000; v++)
		rf_hist_record(&h, v * 1000); /* 1 us .. 1 ms */
	/* Within the 12.5% bucket precision. */
	assert_in_range(rf_hist_percentile(&h, 50), 500000, 500000 * 1125 / 1000);
	assert_in_range(rf_hist_percentile(&h, 99), 990000, 990000 * 1125 / 1000);
	assert_int_equal(rf_hist_percentile(&h, 100), 1000000);
	assert_int_equal(atomic_load(&h.max), 1000000);
	rf_hist_reset(&h);
	rf_hist_record(&h, 3);
	assert_int_equal(rf_hist_percentile(&h, 50), 3);
}

/* ---- the store ---- */

static struct rf_swap_store *new_store(rf_engine *e, uint64_t file_pages, uint64_t tier_bytes)
{
	struct rf_swap_config c;
	struct rf_swap_store *s = NULL;

	rf_swap_config_init(&c);
	c.dir = "/var/tmp";
	c.file_limit_bytes = file_pages * RF_PAGE_SIZE;
	c.tier_limit_bytes = tier_bytes;
	assert_int_equal(rf_swap_store_new(e, &c, &s), 0);
	return s;
}

/* A page that lz4 shrinks a lot (@compressible) or not at all. */
static void fill_page(uint8_t *p, unsigned int seed, bool compressible)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;

	for (unsigned int i = 0; i < RF_PAGE_SIZE; i++) {
		if (compressible) {
			p[i] = (uint8_t)(seed + i / 512);
		} else {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			p[i] = (uint8_t)x;
		}
	}
}

static uint8_t *pages_alloc(unsigned int n)
{
	void *p = mmap(NULL, (size_t)n * RF_PAGE_SIZE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

static void test_store_tier_and_file_roundtrip(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	struct rf_swap_store *s = new_store(e, 256, 1 << 20);
	struct rf_swap_store_stats st;
	uint8_t *src = pages_alloc(16), out[RF_PAGE_SIZE];
	void *pv[16];
	uint32_t h[16];

	(void)state;
	for (unsigned int i = 0; i < 16; i++) {
		fill_page(src + i * RF_PAGE_SIZE, i, i % 2 == 0);
		pv[i] = src + i * RF_PAGE_SIZE;
	}
	assert_int_equal(rf_swap_store_put(s, pv, 16, true, h), 0);
	for (unsigned int i = 0; i < 16; i++) {
		/* Compressible pages land in the tier, the others in the file. */
		assert_int_equal(rf_swap_handle_in_tier(h[i]), i % 2 == 0);
		memset(out, 0xee, sizeof(out));
		assert_int_equal(rf_swap_store_get(s, h[i], out), 0);
		assert_memory_equal(out, pv[i], RF_PAGE_SIZE);
	}
	/* File pages of one batch got consecutive slots. */
	for (unsigned int i = 3; i < 16; i += 2)
		assert_int_equal(h[i], h[i - 2] + 1);
	rf_swap_store_stats(s, &st);
	assert_int_equal(st.tier_pages, 8);
	assert_int_equal(st.file_pages, 8);
	assert_true(st.tier_bytes > 0 && st.tier_bytes < 8 * 2048);
	assert_true(rf_swap_store_mem_bytes(s, h[0]) > 0);
	assert_int_equal(rf_swap_store_mem_bytes(s, h[1]), 0);
	for (unsigned int i = 0; i < 16; i++)
		rf_swap_store_drop(s, h[i]);
	rf_swap_store_stats(s, &st);
	assert_int_equal(st.tier_pages + st.file_pages + st.tier_bytes, 0);
	assert_int_equal(rf_swap_store_get(s, h[0], out), -EINVAL);
	/* tier_ok false: everything to the file. */
	assert_int_equal(rf_swap_store_put(s, pv, 2, false, h), 0);
	assert_false(rf_swap_handle_in_tier(h[0]));
	rf_swap_store_drop(s, h[0]);
	rf_swap_store_drop(s, h[1]);
	rf_swap_store_free(s);
	munmap(src, 16 * RF_PAGE_SIZE);
	rf_engine_free(e);
}

static void test_store_tier_limit_spills_to_file(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	struct rf_swap_store *s = new_store(e, 256, 1024); /* room for a few entries */
	uint8_t *src = pages_alloc(32), out[RF_PAGE_SIZE];
	void *pv[32];
	uint32_t h[32];
	unsigned int tier = 0;

	(void)state;
	for (unsigned int i = 0; i < 32; i++) {
		fill_page(src + i * RF_PAGE_SIZE, i, true);
		pv[i] = src + i * RF_PAGE_SIZE;
	}
	assert_int_equal(rf_swap_store_put(s, pv, 32, true, h), 0);
	for (unsigned int i = 0; i < 32; i++) {
		tier += rf_swap_handle_in_tier(h[i]);
		assert_int_equal(rf_swap_store_get(s, h[i], out), 0);
		assert_memory_equal(out, pv[i], RF_PAGE_SIZE);
		rf_swap_store_drop(s, h[i]);
	}
	assert_true(tier > 0 && tier < 32);
	rf_swap_store_free(s);
	munmap(src, 32 * RF_PAGE_SIZE);
	rf_engine_free(e);
}

static void test_store_checksum_mismatch(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	struct rf_swap_store *s = new_store(e, 64, 1 << 20);
	struct rf_swap_store_stats st;
	uint8_t *src = pages_alloc(2), out[RF_PAGE_SIZE], bad = 0x42;
	void *pv[2] = {src, src + RF_PAGE_SIZE};
	uint32_t h[2];

	(void)state;
	fill_page(src, 1, true);
	fill_page(src + RF_PAGE_SIZE, 2, false);
	assert_int_equal(rf_swap_store_put(s, pv, 2, true, h), 0);
	assert_true(rf_swap_handle_in_tier(h[0]));
	assert_false(rf_swap_handle_in_tier(h[1]));

	/* A bad read (injected): caught for both tiers. */
	rf_swap_store_inject(s, RF_SWAP_INJ_CORRUPT, 2);
	assert_int_equal(rf_swap_store_get(s, h[0], out), -EBADMSG);
	assert_log_contains(&log, "checksum mismatch");
	assert_int_equal(rf_swap_store_get(s, h[1], out), -EBADMSG);
	/* The injection is spent: the pages are still there, intact. */
	assert_int_equal(rf_swap_store_get(s, h[0], out), 0);
	assert_memory_equal(out, pv[0], RF_PAGE_SIZE);

	/* A real bad disk: one byte of the file changed behind the store. */
	assert_int_equal(pread(rf_swap_store_fd(s), &bad, 1, (off_t)h[1] * RF_PAGE_SIZE + 100), 1);
	bad ^= 0x42;
	assert_int_equal(pwrite(rf_swap_store_fd(s), &bad, 1, (off_t)h[1] * RF_PAGE_SIZE + 100), 1);
	assert_int_equal(rf_swap_store_get(s, h[1], out), -EBADMSG);
	assert_log_contains(&log, "file slot");
	rf_swap_store_stats(s, &st);
	assert_int_equal(st.csum_errors, 3);

	rf_swap_store_drop(s, h[0]);
	rf_swap_store_drop(s, h[1]);
	rf_swap_store_free(s);
	munmap(src, 2 * RF_PAGE_SIZE);
	rf_engine_free(e);
}

static void test_store_enospc_limit_and_injected(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	struct rf_swap_store *s = new_store(e, 8, 0); /* 8 file slots, no tier */
	struct rf_swap_store_stats st;
	uint8_t *src = pages_alloc(12), out[RF_PAGE_SIZE];
	void *pv[12];
	uint32_t h[12], h2[4];
	unsigned int stored = 0;

	(void)state;
	for (unsigned int i = 0; i < 12; i++) {
		fill_page(src + i * RF_PAGE_SIZE, 100 + i, true);
		pv[i] = src + i * RF_PAGE_SIZE;
	}
	/* The file limit: 8 stored, 4 refused, nothing half-stored. */
	assert_int_equal(rf_swap_store_put(s, pv, 12, true, h), -ENOSPC);
	for (unsigned int i = 0; i < 12; i++) {
		if (h[i] == RF_SWAP_NONE)
			continue;
		stored++;
		assert_int_equal(rf_swap_store_get(s, h[i], out), 0);
		assert_memory_equal(out, pv[i], RF_PAGE_SIZE);
	}
	assert_int_equal(stored, 8);
	rf_swap_store_stats(s, &st);
	assert_int_equal(st.enospc, 1);
	for (unsigned int i = 0; i < 12; i++)
		rf_swap_store_drop(s, h[i]);

	/* A full filesystem (injected): nothing stored, slots given back. */
	rf_swap_store_inject(s, RF_SWAP_INJ_WRITE_ENOSPC, 1);
	assert_int_equal(rf_swap_store_put(s, pv, 4, true, h2), -ENOSPC);
	for (unsigned int i = 0; i < 4; i++)
		assert_int_equal(h2[i], RF_SWAP_NONE);
	assert_log_contains(&log, "they stay in memory");
	rf_swap_store_stats(s, &st);
	assert_int_equal(st.file_pages, 0);
	assert_int_equal(st.enospc, 2);
	/* And the store works again afterwards. */
	assert_int_equal(rf_swap_store_put(s, pv, 4, true, h2), 0);
	for (unsigned int i = 0; i < 4; i++) {
		assert_int_equal(rf_swap_store_get(s, h2[i], out), 0);
		assert_memory_equal(out, pv[i], RF_PAGE_SIZE);
		rf_swap_store_drop(s, h2[i]);
	}
	rf_swap_store_free(s);
	munmap(src, 12 * RF_PAGE_SIZE);
	rf_engine_free(e);
}

static void test_store_eio_write_and_read(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	struct rf_swap_store *s = new_store(e, 64, 0);
	struct rf_swap_store_stats st;
	uint8_t *src = pages_alloc(4), out[RF_PAGE_SIZE];
	void *pv[4];
	uint32_t h[4];

	(void)state;
	for (unsigned int i = 0; i < 4; i++) {
		fill_page(src + i * RF_PAGE_SIZE, 7 + i, false);
		pv[i] = src + i * RF_PAGE_SIZE;
	}
	rf_swap_store_inject(s, RF_SWAP_INJ_WRITE_EIO, 1);
	assert_int_equal(rf_swap_store_put(s, pv, 4, true, h), -EIO);
	for (unsigned int i = 0; i < 4; i++)
		assert_int_equal(h[i], RF_SWAP_NONE);
	assert_log_contains(&log, "Input/output error");
	rf_swap_store_stats(s, &st);
	assert_int_equal(st.io_errors, 1);
	assert_int_equal(st.file_pages, 0);

	assert_int_equal(rf_swap_store_put(s, pv, 4, true, h), 0);
	rf_swap_store_inject(s, RF_SWAP_INJ_READ_EIO, 1);
	assert_int_equal(rf_swap_store_get(s, h[2], out), -EIO);
	assert_log_contains(&log, "reading file slot");
	/* Still stored; the next read succeeds. */
	assert_int_equal(rf_swap_store_get(s, h[2], out), 0);
	assert_memory_equal(out, pv[2], RF_PAGE_SIZE);
	for (unsigned int i = 0; i < 4; i++)
		rf_swap_store_drop(s, h[i]);
	rf_swap_store_free(s);
	munmap(src, 4 * RF_PAGE_SIZE);
	rf_engine_free(e);
}

/* Read-ahead: one read for a run of consecutive file slots, each page
 * verified on its own; the run stops at a hole. */
static void test_store_get_run(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	struct rf_swap_store *s = new_store(e, 64, 0);
	uint8_t *src = pages_alloc(8), *dst = pages_alloc(8);
	void *pv[8], *bufs[8];
	uint32_t h[8];
	int res[8];

	(void)state;
	for (unsigned int i = 0; i < 8; i++) {
		fill_page(src + i * RF_PAGE_SIZE, 40 + i, false);
		pv[i] = src + i * RF_PAGE_SIZE;
		bufs[i] = dst + i * RF_PAGE_SIZE;
	}
	assert_int_equal(rf_swap_store_put(s, pv, 8, true, h), 0);
	for (unsigned int i = 1; i < 8; i++)
		assert_int_equal(h[i], h[0] + i);
	rf_swap_store_get_run(s, h[0], 8, bufs, res);
	for (unsigned int i = 0; i < 8; i++) {
		assert_int_equal(res[i], 0);
		assert_memory_equal(bufs[i], pv[i], RF_PAGE_SIZE);
	}
	/* One bad page in the run is caught alone. */
	rf_swap_store_inject(s, RF_SWAP_INJ_CORRUPT, 1);
	rf_swap_store_get_run(s, h[0], 3, bufs, res);
	assert_int_equal(res[0], -EBADMSG);
	assert_int_equal(res[1], 0);
	assert_int_equal(res[2], 0);
	/* A hole ends the run. */
	rf_swap_store_drop(s, h[4]);
	rf_swap_store_get_run(s, h[2], 4, bufs, res);
	assert_int_equal(res[0], 0);
	assert_int_equal(res[1], 0);
	assert_int_equal(res[2], -EINVAL);
	assert_int_equal(res[3], -EINVAL);
	for (unsigned int i = 0; i < 8; i++)
		if (i != 4)
			rf_swap_store_drop(s, h[i]);
	rf_swap_store_free(s);
	munmap(src, 8 * RF_PAGE_SIZE);
	munmap(dst, 8 * RF_PAGE_SIZE);
	rf_engine_free(e);
}

static void test_store_bad_dir_and_config(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine(&log);
	struct rf_swap_config c;
	struct rf_swap_store *s = NULL;

	(void)state;
	rf_swap_config_init(&c);
	c.dir = "/nonexistent/ramfold";
	assert_int_equal(rf_swap_store_new(e, &c, &s), -ENOENT);
	assert_null(s);
	assert_log_contains(&log, "cannot create the swap file in /nonexistent/ramfold");
	c.dir = NULL;
	c.compress_max_bytes = 10;
	assert_int_equal(rf_engine_set_swap(e, &c), -EINVAL);
	assert_log_contains(&log, "compress threshold");
	rf_swap_config_init(&c);
	c.file_limit_bytes = 4097;
	assert_int_equal(rf_engine_set_swap(e, &c), -EINVAL);
	assert_int_equal(rf_engine_set_swap(NULL, &c), -EINVAL);
	rf_swap_config_init(&c);
	assert_int_equal(rf_engine_set_swap(e, &c), 0);
	rf_engine_free(e);
}

/* Nothing is left in the directory: the file never had a name. */
static void test_store_leaves_no_file(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	char dir[] = "/var/tmp/rf-swap-test-XXXXXX", cmd[128];
	struct rf_swap_config c;
	struct rf_swap_store *s = NULL;
	FILE *f;
	int n = -1;

	(void)state;
	assert_non_null(mkdtemp(dir));
	rf_swap_config_init(&c);
	c.dir = dir;
	assert_int_equal(rf_swap_store_new(e, &c, &s), 0);
	snprintf(cmd, sizeof(cmd), "ls -A %s | wc -l", dir);
	f = popen(cmd, "r");
	assert_non_null(f);
	assert_int_equal(fscanf(f, "%d", &n), 1);
	pclose(f);
	assert_int_equal(n, 0);
	rf_swap_store_free(s);
	rmdir(dir);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_slots_runs_and_reuse),
	    cmocka_unit_test(test_slots_random_model),
	    cmocka_unit_test(test_hist_percentiles),
	    cmocka_unit_test(test_store_tier_and_file_roundtrip),
	    cmocka_unit_test(test_store_tier_limit_spills_to_file),
	    cmocka_unit_test(test_store_checksum_mismatch),
	    cmocka_unit_test(test_store_enospc_limit_and_injected),
	    cmocka_unit_test(test_store_eio_write_and_read),
	    cmocka_unit_test(test_store_get_run),
	    cmocka_unit_test(test_store_bad_dir_and_config),
	    cmocka_unit_test(test_store_leaves_no_file),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
