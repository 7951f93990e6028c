/* SPDX-License-Identifier: MIT */
/*
 * Swap benchmark, in process (no guest): the cost a guest sees.
 *
 *   first touch   per-page cost of writing never-used memory: not
 *                 registered (a VM without a target: the kernel's own
 *                 fault); under a target (all RAM registered, every first
 *                 write comes to the swap pager) in address order, where the
 *                 swap pager fills ahead, and in random order, one page a fault;
 *   swap-out      throughput of rf_swap_pager_swap_out (swap/swap_out.c: the
 *                 whole range now, whatever its age) over 128 MiB, to the
 *                 compressed tier and to the file;
 *   swap-in       latency of a fault on a swapped page, measured by the
 *                 faulting thread (fault to data), from the compressed tier,
 *                 from the file (page cache) and from the file with O_DIRECT,
 *                 random order; and sequential from the file, where prefetch
 *                 hits;
 *   copy mode     swap-out and swap-in to the file with UFFDIO_MOVE hidden,
 *                 as on Linux < 6.8 (write-protect, copy, discard), in the
 *                 same run as move mode so the two compare.
 *
 * Prints a table and writes build/bench/swap_fault.csv. "long" as argument:
 * 512 MiB instead of 128 MiB.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ramfold/ramfold.h>

/* The one private entry point: rf_swap_pager_swap_out swaps a whole range
 * out now, whatever its age, which is what the swap-out rows time. Through
 * the public API (a target) the swapper would take two CLOCK passes and its
 * ticks to get there, and the rows would time those instead. */
#include "swap_pager.h"

#define MiB (1ull << 20)
#define PG  RF_PAGE_SIZE

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

struct row {
	char what[64];
	double p50_us, p99_us, max_us, gibps;
	uint64_t n;
};

static struct row rows[16];
static unsigned int nrows;

static void add_lat(const char *what, uint64_t *lat, uint64_t n)
{
	struct row *r = &rows[nrows++];

	qsort(lat, n, sizeof(*lat), cmp_u64);
	snprintf(r->what, sizeof(r->what), "%s", what);
	r->n = n;
	r->p50_us = lat[n / 2] / 1000.0;
	r->p99_us = lat[n * 99 / 100] / 1000.0;
	r->max_us = lat[n - 1] / 1000.0;
	r->gibps = -1;
}

static void add_tput(const char *what, uint64_t bytes, uint64_t ns)
{
	struct row *r = &rows[nrows++];

	snprintf(r->what, sizeof(r->what), "%s", what);
	r->n = bytes / PG;
	r->p50_us = r->p99_us = r->max_us = -1;
	r->gibps = (double)bytes / (1ull << 30) / ((double)ns / 1e9);
}

static void die(const char *what, int err)
{
	fprintf(stderr, "bench swap: %s: %s\n", what, strerror(-err));
	exit(1);
}

/* RF_HIDE_* for the next engine: the copy-mode case hides UFFDIO_MOVE. */
static unsigned int hide;

static rf_engine *engine(uint64_t tier, bool direct)
{
	struct rf_engine_config ec;
	struct rf_swap_config sc;
	rf_engine *e;
	int err;

	rf_engine_config_init(&ec);
	ec.hide_features = hide;
	if ((err = rf_engine_new(&ec, &e)))
		die("engine", err);
	rf_swap_config_init(&sc);
	sc.dir = "/var/tmp";
	sc.tier_limit_bytes = tier;
	sc.direct_io = direct;
	if ((err = rf_engine_set_swap(e, &sc)))
		die("swap config", err);
	return e;
}

static rf_vm *vm_new(rf_engine *e, uint64_t bytes, uint8_t **ram)
{
	struct rf_vm_config vc;
	rf_vm *vm;
	int err;

	rf_vm_config_init(&vc);
	vc.ram_bytes = bytes;
	if ((err = rf_vm_new(e, "bench", &vc, &vm)) ||
	    (err = rf_vm_map_ram(vm, 0, bytes, (void **)ram)))
		die("vm", err);
	return vm;
}

static void fill(uint8_t *ram, uint64_t n, bool compressible)
{
	uint64_t x = 88172645463325252ull;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t *w = (uint64_t *)(ram + i * PG);

		for (unsigned int k = 0; k < PG / 8; k++) {
			if (compressible) {
				w[k] = (k % 64 == 0) ? i * 0x9e3779b97f4a7c15ull + k : i;
			} else {
				x ^= x << 13;
				x ^= x >> 7;
				x ^= x << 17;
				w[k] = x;
			}
		}
	}
}

static void shuffle(uint64_t *order, uint64_t n)
{
	for (uint64_t i = 0; i < n; i++)
		order[i] = i;
	srand(42);
	for (uint64_t i = n - 1; i > 0; i--) {
		uint64_t j = (uint64_t)rand() % (i + 1), t = order[i];

		order[i] = order[j];
		order[j] = t;
	}
}

/* Write one byte of each page of [@ram, +@n pages) in @order (NULL: in
 * address order), timing each. */
static void touch_timed(const char *what, uint8_t *ram, uint64_t n, const uint64_t *order,
			uint64_t *lat)
{
	uint64_t t0, start = now_ns(), total;

	for (uint64_t i = 0; i < n; i++) {
		uint64_t pg = order ? order[i] : i;

		t0 = now_ns();
		ram[pg * PG] = 1;
		lat[i] = now_ns() - t0;
	}
	total = now_ns() - start;
	add_lat(what, lat, n);
	rows[nrows - 1].gibps = (double)(n * PG) / (1ull << 30) / ((double)total / 1e9);
}

static void first_touch(uint64_t bytes)
{
	uint64_t n = bytes / PG, *lat = malloc(n * sizeof(*lat)),
		 *order = malloc(n * sizeof(*order));
	rf_engine *e = engine(64 * MiB, false);
	uint8_t *ram;
	rf_vm *vm = vm_new(e, 3 * bytes, &ram);

	touch_timed("first write, no target (kernel fault)", ram, n, NULL, lat);
	/* A target above what will be written: all RAM registered, nothing
	 * waits for room. */
	if (rf_vm_set_swap_target(vm, 4 * bytes))
		die("target", -EIO);
	touch_timed("first write, under a target, in order (fill-ahead)", ram + bytes, n, NULL,
		    lat);
	shuffle(order, n);
	touch_timed("first write, under a target, random order", ram + 2 * bytes, n, order, lat);
	free(lat);
	free(order);
	rf_engine_free(e);
}

static void swap_in(const char *out_what, const char *in_what, uint64_t bytes, uint64_t tier,
		    bool direct, bool compressible, bool sequential)
{
	uint64_t n = bytes / PG, t0, done = 0, *lat = malloc(n * sizeof(*lat));
	uint64_t *order = malloc(n * sizeof(*order));
	rf_engine *e = engine(tier, direct);
	struct rf_swap_stats st = {.size = sizeof(st)};
	struct rf_pager *p;
	uint8_t *ram;
	rf_vm *vm = vm_new(e, bytes, &ram);
	volatile uint8_t sink = 0;
	int err;

	fill(ram, n, compressible);
	if (rf_swap_pager_get(vm, &p))
		die("pager", -EIO);
	t0 = now_ns();
	if ((err = rf_swap_pager_swap_out(p, 0, n, &done)))
		die("swap-out", err);
	if (out_what)
		add_tput(out_what, done * PG, now_ns() - t0);
	if (sequential)
		for (uint64_t i = 0; i < n; i++)
			order[i] = i;
	else
		shuffle(order, n);
	for (uint64_t i = 0; i < n; i++) {
		t0 = now_ns();
		sink += ram[order[i] * PG + 64];
		lat[i] = now_ns() - t0;
	}
	(void)sink;
	rf_vm_swap_stats(vm, &st);
	add_lat(in_what, lat, n);
	rows[nrows - 1].gibps = -1;
	if (sequential)
		printf("  (%s: %llu prefetched, %llu hits)\n", in_what,
		       (unsigned long long)st.prefetched, (unsigned long long)st.prefetch_hits);
	free(lat);
	free(order);
	rf_engine_free(e);
}

int main(int argc, char **argv)
{
	uint64_t bytes = (argc > 1 && !strcmp(argv[1], "long")) ? 512 * MiB : 128 * MiB;
	const char *dir = getenv("B") ? getenv("B") : "build";
	char path[256];
	FILE *csv;

	printf("bench swap: %llu MiB per case, 4 KiB pages\n", (unsigned long long)(bytes / MiB));
	first_touch(bytes);
	swap_in("swap-out to compressed tier", "swap-in from compressed tier (random)", bytes,
		2 * bytes, false, true, false);
	swap_in("swap-out to file", "swap-in from file, page cache (random)", bytes, 0, false,
		false, false);
	swap_in("swap-out to file, O_DIRECT", "swap-in from file, O_DIRECT (random)", bytes, 0,
		true, false, false);
	swap_in(NULL, "swap-in from file, O_DIRECT (sequential)", bytes, 0, true, false, true);
	/* Linux < 6.8: write-protect, copy, discard instead of UFFDIO_MOVE. */
	hide = RF_HIDE_UFFD_MOVE;
	swap_in("swap-out to file, copy mode (no UFFDIO_MOVE)",
		"swap-in from file, copy mode (random)", bytes, 0, false, false, false);
	hide = 0;

	printf("\n%-52s %8s %10s %10s %10s %8s\n", "case", "pages", "p50 us", "p99 us", "max us",
	       "GiB/s");
	for (unsigned int i = 0; i < nrows; i++) {
		struct row *r = &rows[i];
		char lat[3][16], tput[16] = "-";

		const double v[3] = {r->p50_us, r->p99_us, r->max_us};

		for (int k = 0; k < 3; k++)
			snprintf(lat[k], sizeof(lat[k]), "%.1f", v[k]);
		for (int k = 0; k < 3; k++)
			if (v[k] < 0)
				strcpy(lat[k], "-");
		if (r->gibps >= 0)
			snprintf(tput, sizeof(tput), "%.2f", r->gibps);
		printf("%-52s %8llu %10s %10s %10s %8s\n", r->what, (unsigned long long)r->n,
		       lat[0], lat[1], lat[2], tput);
	}
	snprintf(path, sizeof(path), "%s/bench/swap_fault.csv", dir);
	csv = fopen(path, "w");
	if (!csv) {
		perror(path);
		return 1;
	}
	fprintf(csv, "case,pages,p50_us,p99_us,max_us,gib_per_s\n");
	for (unsigned int i = 0; i < nrows; i++)
		fprintf(csv, "\"%s\",%llu,%.2f,%.2f,%.2f,%.3f\n", rows[i].what,
			(unsigned long long)rows[i].n, rows[i].p50_us, rows[i].p99_us,
			rows[i].max_us, rows[i].gibps);
	fclose(csv);
	printf("\ntarget: compressed tier p50 < 15 us, p99 < 100 us; CSV: %s\n", path);
	return 0;
}
