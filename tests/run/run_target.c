/* SPDX-License-Identifier: MIT */
/*
 * The program test_run runs under ramfold-run: it knows nothing of ramfold
 * (libc only) and uses memory as a VMM does, through madvise(MADV_MERGEABLE)
 * and madvise(MADV_DONTNEED). Each mode prints "ok ..." lines and exits 0
 * when every check held, 1 otherwise ("FAIL ..." says which).
 *
 *   dup MIB        duplicate pages marked mergeable: Pss falls, content
 *                  stays, writes after merges land, DONTNEED reads zeros,
 *                  munmap works
 *   shared MIB     memfd RAM marked mergeable (must be left to the kernel)
 *   merge-all MIB  prctl(PR_SET_MEMORY_MERGE) instead of madvise
 *   marker PATH    leaves PATH (a program that must not have run)
 *   spawn          fork + exec of this program in mode "env"
 *   env            prints what a child inherited
 *   serve MIB      duplicate mergeable RAM, "ready", then waits; SIGTERM
 *                  exits through exit(), as QEMU's handler does
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#endif

#define PAGE 4096ul
static int failed;

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			printf("FAIL %s:%d: ", __FILE__, __LINE__);                                \
			printf(__VA_ARGS__);                                                       \
			printf("\n");                                                              \
			failed = 1;                                                                \
		}                                                                                  \
	} while (0)

static uint64_t rollup(const char *key)
{
	char line[256];
	unsigned long long kb = 0;
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	size_t n = strlen(key);

	while (f && fgets(line, sizeof(line), f))
		if (!strncmp(line, key, n))
			sscanf(line + n, "%llu", &kb);
	if (f)
		fclose(f);
	return kb << 10;
}

/* Page i of the duplicate pattern: 16 contents, each word naming it. */
static uint64_t word(size_t i, size_t w)
{
	return ((i % 16) + 1) * 0x9e3779b97f4a7c15ull ^ w;
}

static void fill(char *p, size_t pages)
{
	for (size_t i = 0; i < pages; i++)
		for (size_t w = 0; w < PAGE / 8; w++)
			((uint64_t *)(p + i * PAGE))[w] = word(i, w);
}

static size_t check(const char *p, size_t pages, size_t skip)
{
	size_t bad = 0;

	for (size_t i = 0; i < pages; i++)
		if (i != skip)
			for (size_t w = 0; w < PAGE / 8; w++)
				bad += ((const uint64_t *)(p + i * PAGE))[w] != word(i, w);
	return bad;
}

static double now(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec + t.tv_nsec / 1e9;
}

/* Wait up to 20 s for Pss to fall by at least @drop bytes from @before. */
static uint64_t wait_pss_drop(uint64_t before, uint64_t drop)
{
	double t0 = now();
	uint64_t pss = rollup("Pss:");

	while (pss + drop > before && now() - t0 < 20) {
		usleep(100000);
		pss = rollup("Pss:");
	}
	return pss;
}

static char *dup_ram(size_t bytes, bool advise)
{
	char *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		printf("FAIL mmap: %s\n", strerror(errno));
		exit(1);
	}
	fill(p, bytes / PAGE);
	if (advise)
		CHECK(madvise(p, bytes, MADV_MERGEABLE) == 0, "madvise MERGEABLE: %s",
		      strerror(errno));
	return p;
}

static int mode_dup(size_t mib, bool merge_all)
{
	size_t bytes = mib << 20, pages = bytes / PAGE;
	uint64_t before, after;
	char *p;

	if (merge_all)
		CHECK(prctl(PR_SET_MEMORY_MERGE, 1, 0, 0, 0) == 0, "prctl: %s", strerror(errno));
	p = dup_ram(bytes, !merge_all);
	before = rollup("Pss:");
	after = wait_pss_drop(before, bytes / 2);
	printf("ok pss before=%llu after=%llu\n", (unsigned long long)before,
	       (unsigned long long)after);
	CHECK(after + bytes / 2 <= before, "Pss fell only from %llu to %llu",
	      (unsigned long long)before, (unsigned long long)after);
	CHECK(check(p, pages, SIZE_MAX) == 0, "content changed after merging");

	/* Writes after merges land, and only where written. */
	for (size_t i = 0; i < pages; i += 7)
		((uint64_t *)(p + i * PAGE))[3] = 0xabcdef00ull + i;
	for (size_t i = 0; i < pages; i += 7) {
		CHECK(((uint64_t *)(p + i * PAGE))[3] == 0xabcdef00ull + i,
		      "write to page %zu lost", i);
		((uint64_t *)(p + i * PAGE))[3] = word(i, 3);
	}
	CHECK(check(p, pages, SIZE_MAX) == 0, "content wrong after writes");
	printf("ok writes\n");

	/* Let the written pages merge again, then discard one merged page. */
	wait_pss_drop(before, bytes / 2);
	CHECK(madvise(p + 5 * PAGE, PAGE, MADV_DONTNEED) == 0, "DONTNEED: %s", strerror(errno));
	for (size_t w = 0; w < PAGE / 8; w++)
		if (((uint64_t *)(p + 5 * PAGE))[w]) {
			CHECK(0, "page 5 after DONTNEED: word %zu is %#llx, not 0", w,
			      (unsigned long long)((uint64_t *)(p + 5 * PAGE))[w]);
			break;
		}
	CHECK(check(p, pages, 5) == 0, "other pages changed by the DONTNEED of page 5");
	printf("ok dontneed\n");

	/* A partial munmap (the head), then the rest. */
	CHECK(munmap(p, 64 * PAGE) == 0, "munmap head: %s", strerror(errno));
	{
		size_t bad = 0;

		for (size_t i = 64; i < pages; i++)
			for (size_t w = 0; w < PAGE / 8; w++)
				bad += ((uint64_t *)(p + i * PAGE))[w] != word(i, w);
		CHECK(bad == 0, "%zu words wrong after the partial munmap", bad);
	}
	CHECK(munmap(p + 64 * PAGE, bytes - 64 * PAGE) == 0, "munmap: %s", strerror(errno));
	printf("ok munmap\n");
	return failed;
}

static int mode_shared(size_t mib)
{
	size_t bytes = mib << 20;
	int fd = memfd_create("guest-ram", 0);
	char *p;

	CHECK(fd >= 0 && ftruncate(fd, (off_t)bytes) == 0, "memfd: %s", strerror(errno));
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	CHECK(p != MAP_FAILED, "mmap shared: %s", strerror(errno));
	fill(p, bytes / PAGE);
	/* The kernel's answer: 0 where KSM is built in (it never merges shmem). */
	printf("ok shared madvise=%d\n", madvise(p, bytes, MADV_MERGEABLE));
	CHECK(check(p, bytes / PAGE, SIZE_MAX) == 0, "shared content changed");
	return failed;
}

static int mode_env(void)
{
	const char *ld = getenv("LD_PRELOAD");
	char line[512];
	int mapped = 0;
	FILE *f = fopen("/proc/self/maps", "r");

	while (f && fgets(line, sizeof(line), f))
		mapped |= strstr(line, "libramfold") != NULL;
	if (f)
		fclose(f);
	printf("child LD_PRELOAD=%s RAMFOLD_RUN_PID=%s mapped=%d\n", ld ? ld : "(none)",
	       getenv("RAMFOLD_RUN_PID") ? getenv("RAMFOLD_RUN_PID") : "(none)", mapped);
	return 0;
}

static int mode_spawn(const char *self)
{
	char *p = dup_ram(8 << 20, true);
	pid_t pid;
	int st;

	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		/* The forked child: its copy of guest RAM reads as the parent's. */
		_exit(check(p, (8 << 20) / PAGE, SIZE_MAX) ? 3 : 0);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "forked child saw wrong content (status %#x)", st);
	fflush(stdout);
	pid = fork();
	if (pid == 0) {
		execl(self, self, "env", (char *)NULL);
		_exit(127);
	}
	CHECK(waitpid(pid, &st, 0) == pid && WIFEXITED(st) && WEXITSTATUS(st) == 0,
	      "exec'd child failed (status %#x)", st);
	return failed;
}

static void on_term(int sig)
{
	(void)sig;
	exit(0);
}

static void __attribute__((noreturn)) mode_serve(size_t mib)
{
	signal(SIGTERM, on_term);
	dup_ram(mib << 20, true);
	printf("ready\n");
	fflush(stdout);
	for (;;)
		pause();
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc >= 3 && !strcmp(argv[1], "dup"))
		return mode_dup(strtoul(argv[2], NULL, 0), false);
	if (argc >= 3 && !strcmp(argv[1], "merge-all"))
		return mode_dup(strtoul(argv[2], NULL, 0), true);
	if (argc >= 3 && !strcmp(argv[1], "shared"))
		return mode_shared(strtoul(argv[2], NULL, 0));
	if (argc >= 3 && !strcmp(argv[1], "marker")) {
		FILE *f = fopen(argv[2], "w");

		return f ? fclose(f) : 1;
	}
	if (argc >= 2 && !strcmp(argv[1], "spawn"))
		return mode_spawn(argv[0]);
	if (argc >= 2 && !strcmp(argv[1], "env"))
		return mode_env();
	if (argc >= 3 && !strcmp(argv[1], "serve"))
		mode_serve(strtoul(argv[2], NULL, 0));
	fprintf(stderr,
		"usage: run_target dup|merge-all|shared|serve MIB | marker PATH | spawn | env\n");
	return 2;
}
