/* SPDX-License-Identifier: MIT */
/*
 * Host-side cost of the balloon's page work, per page: inflate buffers
 * (validation, PFN runs, the discard path through rf_vm_discard_as) and deflate
 * buffers, driven through the real device with requests laid out in guest
 * RAM (tests/helpers/virtq_mock), as a guest would send them: 256 PFNs per
 * buffer, up to a queue's worth of buffers per notify.
 *
 * Cases: contiguous PFNs (one madvise per buffer), scattered PFNs (a random
 * permutation: runs of one page), pages never touched (nothing to zap), and
 * deflate of contiguous ballooned pages. Each runs over 1024 MiB
 * of resident guest RAM (4096 MiB with `long` in argv[1]).
 *
 * Prints a table and writes $B/bench/balloon.csv.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "virtq_mock.h"

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

struct result {
	const char *name;
	uint64_t pages, ns, rss_drop;
};

static uint64_t resident(struct bdrv *d)
{
	struct rf_vm_stats st = {.size = sizeof(st)};

	rf_vm_stats(d->vm, &st);
	return st.resident_bytes;
}

/* Send @n PFNs from @pfns on queue @q in buffers of 256, a queue's worth per
 * notify; only the device's work (the notifies) is timed. */
static uint64_t run(struct bdrv *d, int q, const uint32_t *pfns, uint64_t n)
{
	struct vq_mock *m = &d->q[q];
	/* No more buffers in flight than the mock's buffer area holds (it
	 * reuses its space round-robin). */
	unsigned int room = (unsigned int)((m->buf_hi - m->buf_lo) / 1024) - 1;
	unsigned int max = room < m->size ? room : m->size;
	uint64_t ns = 0;

	for (uint64_t i = 0; i < n;) {
		unsigned int batch = 0;
		uint64_t t0;

		while (i < n && batch < max) {
			uint32_t k = n - i < 256 ? (uint32_t)(n - i) : 256;

			vq_mock_add(m, pfns + i, k * 4, false);
			i += k;
			batch++;
		}
		t0 = now_ns();
		rf_balloon_queue_notify(d->b, (unsigned int)q);
		ns += now_ns() - t0;
		while (vq_mock_get_used(m, NULL, NULL))
			;
	}
	return ns;
}

int main(int argc, char **argv)
{
	uint64_t mib = (argc > 1 && !strcmp(argv[1], "long")) ? 4096 : 1024;
	const char *dir = getenv("B") ? getenv("B") : "build";
	struct result res[4];
	struct rf_balloon_config cfg;
	struct bdrv d;
	uint64_t n, ram = (mib + 2) << 20;
	uint32_t *pfns;
	char path[256];
	FILE *csv;

	rf_balloon_config_init(&cfg);
	cfg.queue_size_max = 256;
	if (bdrv_setup(&d, ram, ~0ull, &cfg, true)) {
		fprintf(stderr, "bench: balloon setup failed\n");
		return 1;
	}
	n = mib << 8;
	pfns = malloc(n * sizeof(*pfns));
	if (!pfns)
		return 1;

	/* 1. contiguous, resident */
	memset(d.ram, 1, n << 12);
	for (uint64_t i = 0; i < n; i++)
		pfns[i] = (uint32_t)i;
	res[0].name = "inflate contiguous (resident)";
	res[0].pages = n;
	res[0].rss_drop = resident(&d);
	res[0].ns = run(&d, d.inflate_q, pfns, n);
	res[0].rss_drop -= resident(&d);

	/* 4. deflate of those */
	res[3].name = "deflate contiguous";
	res[3].pages = n;
	res[3].rss_drop = 0;
	res[3].ns = run(&d, d.deflate_q, pfns, n);

	/* 2. scattered, resident */
	memset(d.ram, 2, n << 12);
	srand(1);
	for (uint64_t i = n - 1; i > 0; i--) {
		uint64_t j = (uint64_t)rand() % (i + 1);
		uint32_t t = pfns[i];

		pfns[i] = pfns[j];
		pfns[j] = t;
	}
	res[1].name = "inflate scattered (resident)";
	res[1].pages = n;
	res[1].rss_drop = resident(&d);
	res[1].ns = run(&d, d.inflate_q, pfns, n);
	res[1].rss_drop -= resident(&d);
	run(&d, d.deflate_q, pfns, n);

	/* 3. never touched: deflated pages are discarded, nothing resident */
	for (uint64_t i = 0; i < n; i++)
		pfns[i] = (uint32_t)i;
	res[2].name = "inflate contiguous (not resident)";
	res[2].pages = n;
	res[2].rss_drop = 0;
	res[2].ns = run(&d, d.inflate_q, pfns, n);

	snprintf(path, sizeof(path), "%s/bench", dir);
	mkdir(path, 0755);
	snprintf(path, sizeof(path), "%s/bench/balloon.csv", dir);
	csv = fopen(path, "w");
	if (csv)
		fprintf(csv,
			"case,pages,seconds,ns_per_page,pages_per_s,gib_per_s,rss_drop_bytes\n");
	printf("balloon: host-side cost of inflate/deflate buffers (256 PFNs each), %llu MiB\n",
	       (unsigned long long)mib);
	printf("  %-36s %10s %9s %9s %12s %8s %10s\n", "case", "pages", "seconds", "ns/page",
	       "pages/s", "GiB/s", "RSS drop");
	for (int i = 0; i < 4; i++) {
		double s = (double)res[i].ns / 1e9;
		double nspp = (double)res[i].ns / (double)res[i].pages;
		double pps = (double)res[i].pages / s;
		double gibs = (double)(res[i].pages << 12) / s / (double)(1ull << 30);

		printf("  %-36s %10llu %9.3f %9.1f %12.0f %8.2f %7llu MiB\n", res[i].name,
		       (unsigned long long)res[i].pages, s, nspp, pps, gibs,
		       (unsigned long long)(res[i].rss_drop >> 20));
		if (csv)
			fprintf(csv, "%s,%llu,%.6f,%.2f,%.0f,%.3f,%llu\n", res[i].name,
				(unsigned long long)res[i].pages, s, nspp, pps, gibs,
				(unsigned long long)res[i].rss_drop);
	}
	if (csv)
		fclose(csv);
	printf("  CSV: %s\n", path);
	free(pfns);
	bdrv_teardown(&d);
	return 0;
}
