/* SPDX-License-Identifier: MIT */
/*
 * rfwork: the workloads of the native guest (guest/), for a Linux guest.
 *
 *   rfwork WORKLOAD [key=value...]
 *
 * Workloads and the keys each reads (0 or absent means the default):
 *   idle                               hold nothing, wait
 *   dup      mib seed dup_pct zero_pct templates name
 *   osimage  dir                       copy the files of DIR (sorted, each
 *                                      page-aligned) into anonymous memory
 *   memcheck mib seed rounds           the integrity oracle
 *   churn    mib seed rounds pause_ms  allocate, write, free in waves
 *   hold     mib                       allocate and write N MiB, keep it
 *   holdfree mib hold_ms               allocate and write N MiB, keep it for
 *                                      hold_ms, then free it (free page
 *                                      reporting: what the host gets back)
 *   meminfo  interval_ms count         print /proc/meminfo figures
 *
 * The page contents of dup and memcheck are the native guest's (same hash,
 * same seeds), so a Linux guest and a native one given the same parameters
 * hold the same pages. Each workload prints "READY" once in its steady state
 * and one "RESULT <workload> key=value..." line, like the native guest; it
 * then keeps its memory and waits (so the host can merge, balloon and swap
 * it) unless exit=1 is given.
 *
 * Output goes to stdout, which /init connects to the serial console; lines
 * are written whole (one write per line) so they are not interleaved.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "page_content.h"

#define PAGE_SIZE 4096ull
#define MIB	  (1024ull * 1024)
#define K1	  0x9e3779b97f4a7c15ull
#define K2	  0xd1b54a32d192ed03ull

struct params {
	uint64_t mib, seed, dup_pct, zero_pct, templates, rounds, pause_ms, interval_ms, count;
	uint64_t hold_ms;
	int exit_after;
	const char *dir, *name;
};

static void say(const char *fmt, ...)
{
	char line[512];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	if (write(1, line, n) < 0)
		_exit(2);
}

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + ts.tv_nsec;
}

static uint64_t ms_since(uint64_t t0)
{
	return (now_ns() - t0) / 1000000;
}

static uint64_t mbps(uint64_t bytes, uint64_t ns)
{
	return bytes * 1000 / (ns ? ns : 1);
}

static uint64_t name_hash(const char *s)
{
	uint64_t h = 1469598103934665603ull;

	while (*s)
		h = (h ^ (uint8_t)*s++) * 1099511628211ull;
	return h;
}

/* Anonymous memory the workload owns; never returns NULL (exits instead). */
static uint64_t *alloc_pages(uint64_t bytes, const char *who)
{
	void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		say("%s: cannot allocate %llu MiB: %s", who, (unsigned long long)(bytes / MIB),
		    strerror(errno));
		exit(1);
	}
	return p;
}

static void ready(void)
{
	say("READY");
}

static void hold(const struct params *p)
{
	if (p->exit_after)
		return;
	for (;;)
		pause();
}

static int wl_dup(const struct params *p)
{
	uint64_t n = p->mib * MIB / PAGE_SIZE, useed = mix64(p->seed ^ name_hash(p->name));
	uint64_t nzero = 0, ndup = 0, nunique = 0, t0 = now_ns();
	uint64_t *mem = alloc_pages(n * PAGE_SIZE, "dup");

	for (uint64_t i = 0; i < n; i++) {
		switch (dup_fill_page(mem + i * 512, i, p->seed, useed, p->zero_pct, p->dup_pct,
				      p->templates)) {
		case DUP_ZERO:
			nzero++;
			break;
		case DUP_TEMPLATE:
			ndup++;
			break;
		case DUP_UNIQUE:
			nunique++;
			break;
		}
	}
	say("dup: filled %llu MiB in %llu ms", (unsigned long long)p->mib,
	    (unsigned long long)ms_since(t0));
	ready();
	say("RESULT dup pages=%llu dup=%llu unique=%llu zero=%llu templates=%llu seed=%llu",
	    (unsigned long long)n, (unsigned long long)ndup, (unsigned long long)nunique,
	    (unsigned long long)nzero, (unsigned long long)p->templates,
	    (unsigned long long)p->seed);
	hold(p);
	return 0;
}

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/*
 * osimage: the files of DIR in name order, each copied to a page boundary of
 * one anonymous buffer (the page cache of a VM that booted this OS image).
 * Two guests given the same files hold identical pages, whatever physical
 * pages their kernels chose.
 */
static int wl_osimage(const struct params *p)
{
	char **names = NULL, path[4096];
	uint64_t nfiles = 0, cap = 0, total = 0, data = 0, sum = 0, t0 = now_ns();
	struct dirent *de;
	DIR *d = opendir(p->dir);
	uint8_t *mem, *at;

	if (!d) {
		say("osimage: cannot open %s: %s", p->dir, strerror(errno));
		return 1;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "%s/%s", p->dir, de->d_name);
		if (stat(path, &st) || !S_ISREG(st.st_mode))
			continue;
		if (nfiles == cap) {
			cap = cap ? cap * 2 : 256;
			names = realloc(names, cap * sizeof(*names));
			if (!names)
				return 1;
		}
		names[nfiles++] = strdup(de->d_name);
		total += (st.st_size + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1);
	}
	closedir(d);
	if (!nfiles) {
		say("osimage: no files in %s", p->dir);
		return 1;
	}
	qsort(names, nfiles, sizeof(*names), cmp_names);
	at = mem = (uint8_t *)alloc_pages(total, "osimage");
	for (uint64_t i = 0; i < nfiles; i++) {
		ssize_t got;
		int fd;

		snprintf(path, sizeof(path), "%s/%s", p->dir, names[i]);
		fd = open(path, O_RDONLY);
		if (fd < 0) {
			say("osimage: cannot open %s: %s", path, strerror(errno));
			return 1;
		}
		while ((got = read(fd, at, mem + total - at)) > 0) {
			at += got;
			data += got;
		}
		close(fd);
		at = mem + (((at - mem) + PAGE_SIZE - 1) & ~(PAGE_SIZE - 1));
	}
	for (uint64_t i = 0; i < total / 8; i++)
		sum = (sum ^ ((uint64_t *)mem)[i]) * 0x100000001b3ull;
	say("osimage: read %llu files, %llu MiB in %llu ms", (unsigned long long)nfiles,
	    (unsigned long long)(total / MIB), (unsigned long long)ms_since(t0));
	ready();
	say("RESULT osimage files=%llu bytes=%llu pages=%llu checksum=0x%llx",
	    (unsigned long long)nfiles, (unsigned long long)data,
	    (unsigned long long)(total / PAGE_SIZE), (unsigned long long)sum);
	hold(p);
	return 0;
}

/*
 * memcheck: word w of page i in round r holds ((i << 9) + w) * K1 ^ (seed +
 * r * K2); each round verifies the previous round's pattern and writes its
 * own, so a page the host lost, merged wrongly or swapped back stale shows up
 * as a bad word. rounds=0 runs forever.
 */
static int wl_memcheck(const struct params *p)
{
	uint64_t n = p->mib * MIB / PAGE_SIZE, bytes = n * PAGE_SIZE, t0 = now_ns();
	uint64_t first_bad = ~0ull, bad_rounds = 0, r, last_report, report_rounds = 0,
		 report_ns = 0;
	uint64_t *mem = alloc_pages(bytes, "memcheck");

	for (uint64_t i = 0; i < n; i++) {
		uint64_t *pg = mem + i * 512, k = p->seed, v = (i << 9) * K1;

		for (unsigned w = 0; w < 512; w++, v += K1)
			pg[w] = v ^ k;
	}
	say("memcheck: wrote %llu MiB in %llu ms (first touch)", (unsigned long long)(bytes >> 20),
	    (unsigned long long)ms_since(t0));
	ready();
	last_report = now_ns();
	for (r = 1; !p->rounds || r <= p->rounds; r++) {
		uint64_t kold = p->seed + (r - 1) * K2, knew = p->seed + r * K2;
		uint64_t nbad = 0, bad_off = 0, exp = 0, got = 0, rt = now_ns(), now;

		for (uint64_t i = 0; i < n; i++) {
			uint64_t *pg = mem + i * 512, v = (i << 9) * K1;

			for (unsigned w = 0; w < 512; w++, v += K1) {
				uint64_t x = pg[w];

				if (__builtin_expect(x != (v ^ kold), 0) && !nbad++) {
					bad_off = i * PAGE_SIZE + w * 8;
					exp = v ^ kold;
					got = x;
				}
				pg[w] = v ^ knew;
			}
		}
		now = now_ns();
		report_ns += now - rt;
		report_rounds++;
		if (nbad) {
			bad_rounds++;
			if (first_bad == ~0ull)
				first_bad = bad_off;
			say("memcheck: round %llu BAD: %llu bad words, first bad offset 0x%llx "
			    "expected 0x%llx got 0x%llx",
			    (unsigned long long)r, (unsigned long long)nbad,
			    (unsigned long long)bad_off, (unsigned long long)exp,
			    (unsigned long long)got);
		}
		if (now - last_report >= 2000000000ull || (p->rounds && r == p->rounds)) {
			say("memcheck: rounds=%llu bad_rounds=%llu verify+rewrite %llu MB/s",
			    (unsigned long long)r, (unsigned long long)bad_rounds,
			    (unsigned long long)mbps(bytes * report_rounds, report_ns));
			last_report = now;
			report_rounds = 0;
			report_ns = 0;
		}
		if (p->pause_ms)
			usleep(p->pause_ms * 1000);
	}
	if (first_bad == ~0ull)
		say("RESULT memcheck rounds=%llu clean=%llu bad_rounds=0 first_bad=none",
		    (unsigned long long)(r - 1), (unsigned long long)(r - 1));
	else
		say("RESULT memcheck rounds=%llu clean=%llu bad_rounds=%llu first_bad=0x%llx",
		    (unsigned long long)(r - 1), (unsigned long long)(r - 1 - bad_rounds),
		    (unsigned long long)bad_rounds, (unsigned long long)first_bad);
	if (!bad_rounds)
		hold(p);
	return bad_rounds ? 3 : 0;
}

/*
 * churn: allocate N MiB, write every page, give it back to the kernel
 * (munmap), pause; the freed pages return to the buddy allocator, where free
 * page reporting finds them.
 */
static int wl_churn(const struct params *p)
{
	uint64_t wave, bytes = p->mib * MIB;

	for (wave = 1; !p->rounds || wave <= p->rounds; wave++) {
		uint64_t t0 = now_ns(), *mem = alloc_pages(bytes, "churn");

		for (uint64_t i = 0; i < bytes / 8; i++)
			mem[i] = mix64(p->seed ^ wave ^ i);
		munmap(mem, bytes);
		say("churn: wave %llu: allocated, wrote and freed %llu MiB in %llu ms",
		    (unsigned long long)wave, (unsigned long long)p->mib,
		    (unsigned long long)ms_since(t0));
		if (wave == 1)
			ready();
		usleep(p->pause_ms * 1000);
	}
	say("RESULT churn waves=%llu mib=%llu", (unsigned long long)(wave - 1),
	    (unsigned long long)p->mib);
	hold(p);
	return 0;
}

static int wl_hold(const struct params *p)
{
	uint64_t bytes = p->mib * MIB, t0 = now_ns(), *mem = alloc_pages(bytes, "hold");

	for (uint64_t i = 0; i < bytes / 8; i++)
		mem[i] = mix64(p->seed ^ i);
	say("hold: wrote %llu MiB in %llu ms", (unsigned long long)p->mib,
	    (unsigned long long)ms_since(t0));
	ready();
	say("RESULT hold mib=%llu", (unsigned long long)p->mib);
	hold(p);
	return 0;
}

static int wl_holdfree(const struct params *p)
{
	uint64_t bytes = p->mib * MIB, t0 = now_ns(), *mem = alloc_pages(bytes, "holdfree");

	for (uint64_t i = 0; i < bytes / 8; i++)
		mem[i] = mix64(p->seed ^ i);
	say("holdfree: holding %llu MiB (written in %llu ms) for %llu ms",
	    (unsigned long long)p->mib, (unsigned long long)ms_since(t0),
	    (unsigned long long)p->hold_ms);
	ready();
	usleep(p->hold_ms * 1000);
	munmap(mem, bytes);
	say("holdfree: freed %llu MiB", (unsigned long long)p->mib);
	say("RESULT holdfree mib=%llu", (unsigned long long)p->mib);
	hold(p);
	return 0;
}

/* One MEMINFO line with the figures balloon stats are checked against (KiB). */
static void print_meminfo(void)
{
	static const char *const keys[] = {"MemTotal", "MemFree", "MemAvailable", "Cached",
					   "SwapFree"};
	unsigned long long v[5] = {0};
	char line[256], out[512];
	FILE *f = fopen("/proc/meminfo", "r");

	if (!f)
		return;
	while (fgets(line, sizeof(line), f))
		for (unsigned k = 0; k < 5; k++) {
			size_t kl = strlen(keys[k]);

			if (!strncmp(line, keys[k], kl) && line[kl] == ':')
				v[k] = strtoull(line + kl + 1, NULL, 10);
		}
	fclose(f);
	snprintf(out, sizeof(out),
		 "MEMINFO total_kib=%llu free_kib=%llu available_kib=%llu cached_kib=%llu", v[0],
		 v[1], v[2], v[3]);
	say("%s", out);
}

static int wl_meminfo(const struct params *p)
{
	for (uint64_t i = 0; !p->count || i < p->count; i++) {
		print_meminfo();
		usleep((p->interval_ms ? p->interval_ms : 2000) * 1000);
	}
	return 0;
}

static int wl_idle(const struct params *p)
{
	ready();
	say("RESULT idle");
	hold(p);
	return 0;
}

static uint64_t parse_size(const char *key, const char *v)
{
	char *end;
	unsigned long long x;

	errno = 0;
	x = strtoull(v, &end, 0);
	if (errno || end == v || *end) {
		say("rfwork: bad value for %s: '%s'", key, v);
		exit(64);
	}
	return x;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(const struct params *);
	} wls[] = {{"idle", wl_idle},	      {"dup", wl_dup},		{"osimage", wl_osimage},
		   {"memcheck", wl_memcheck}, {"churn", wl_churn},	{"hold", wl_hold},
		   {"meminfo", wl_meminfo},   {"holdfree", wl_holdfree}};
	struct params p = {.mib = 64,
			   .seed = 1,
			   .dup_pct = 50,
			   .zero_pct = 10,
			   .templates = 64,
			   .pause_ms = 1000,
			   .hold_ms = 10000,
			   .dir = "/osimage",
			   .name = "vm"};

	if (argc < 2) {
		fprintf(stderr, "usage: rfwork WORKLOAD [key=value...]\n");
		return 64;
	}
	for (int i = 2; i < argc; i++) {
		char *eq = strchr(argv[i], '=');
		const char *k = argv[i], *v;

		if (!eq) {
			say("rfwork: argument '%s' is not key=value", argv[i]);
			return 64;
		}
		*eq = 0;
		v = eq + 1;
		if (!strcmp(k, "dir"))
			p.dir = v;
		else if (!strcmp(k, "name"))
			p.name = v;
		else if (!strcmp(k, "mib"))
			p.mib = parse_size(k, v);
		else if (!strcmp(k, "seed"))
			p.seed = parse_size(k, v);
		else if (!strcmp(k, "dup_pct"))
			p.dup_pct = parse_size(k, v);
		else if (!strcmp(k, "zero_pct"))
			p.zero_pct = parse_size(k, v);
		else if (!strcmp(k, "templates"))
			p.templates = parse_size(k, v);
		else if (!strcmp(k, "rounds"))
			p.rounds = parse_size(k, v);
		else if (!strcmp(k, "pause_ms"))
			p.pause_ms = parse_size(k, v);
		else if (!strcmp(k, "interval_ms"))
			p.interval_ms = parse_size(k, v);
		else if (!strcmp(k, "hold_ms"))
			p.hold_ms = parse_size(k, v);
		else if (!strcmp(k, "count"))
			p.count = parse_size(k, v);
		else if (!strcmp(k, "exit"))
			p.exit_after = parse_size(k, v) != 0;
		else {
			say("rfwork: unknown key '%s'", k);
			return 64;
		}
	}
	if (!p.templates || p.dup_pct + p.zero_pct > 100) {
		say("rfwork: dup_pct + zero_pct must be <= 100 and templates > 0");
		return 64;
	}
	for (unsigned i = 0; i < sizeof(wls) / sizeof(wls[0]); i++)
		if (!strcmp(argv[1], wls[i].name))
			return wls[i].fn(&p);
	say("rfwork: unknown workload '%s'", argv[1]);
	return 64;
}
