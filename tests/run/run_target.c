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
 *   mremap MIB     merged RAM shrunk, grown in place, moved (MREMAP_FIXED):
 *                  content and writes kept, the new range merged again
 *   fixed MIB      a memfd mapped MAP_FIXED over the middle of merged RAM
 *   uffd MIB       the program's own userfaultfd (MISSING, as postcopy)
 *                  registered over merged and swapped RAM: content kept, the
 *                  program gets its faults
 *   vfio MIB       VFIO_IOMMU_MAP_DMA on merged RAM, through an fd that is no
 *                  VFIO container (the kernel's error comes back unchanged)
 *
 * Whether a range is ramfold's is read from the kernel: the library
 * registers adopted RAM with its userfaultfd in write-protect mode, so
 * /proc/self/smaps shows "uw" in the range's VmFlags.
 */
#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/userfaultfd.h>
#include <linux/vfio.h>
#include <poll.h>
#include <pthread.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
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

/* Pages whose index is at least uniq_from are all different (nothing for
 * dedup to merge, something for swap to take). */
static size_t uniq_from = SIZE_MAX;

/* Page i of the duplicate pattern: 16 contents, each word naming it. */
static uint64_t word(size_t i, size_t w)
{
	return ((i < uniq_from ? i % 16 : i) + 1) * 0x9e3779b97f4a7c15ull ^ w;
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

/* Wait up to 20 s for Pss to be at most @limit bytes; true if it is. */
static bool wait_pss_below(uint64_t limit)
{
	double t0 = now();

	while (rollup("Pss:") > limit && now() - t0 < 20)
		usleep(100000);
	return rollup("Pss:") <= limit;
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
	/* What Pss would be unmerged: under PR_SET_MEMORY_MERGE the RAM is
	 * adopted at mmap, and merging may start while it is being filled. */
	before = rollup("Pss:") + bytes;
	p = dup_ram(bytes, !merge_all);
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

/*
 * Whether the kernel's VMAs over [p, p + len) carry VmFlags @flag: 1 all of
 * them, 0 none, -1 some (or no mapping there).
 */
static int vma_flag(const void *p, size_t len, const char *flag)
{
	uintptr_t a = (uintptr_t)p, b = a + len, lo = 0, hi = 0;
	int all = 1, none = 1, seen = 0;
	bool store = false;
	char line[512];
	FILE *f = fopen("/proc/self/smaps", "r");

	while (f && fgets(line, sizeof(line), f)) {
		unsigned long x, y;
		char c;

		if (sscanf(line, "%lx-%lx %c", &x, &y, &c) == 3 &&
		    strchr(line, '-') < strchr(line, ' ')) {
			lo = x;
			hi = y;
			/* ramfold's store mapped over guest RAM: a merged page,
			 * which only ramfold puts there. It is registered for
			 * write-protect just after it is mapped, so a read of
			 * smaps while the scanner merges can catch it without
			 * "uw": it is adopted RAM all the same. */
			store = strstr(line, "ramfold-store") != NULL;
		} else if (!strncmp(line, "VmFlags:", 8) && lo < b && a < hi) {
			char want[8];
			bool has;

			snprintf(want, sizeof(want), " %s", flag);
			has = strstr(line + 8, want) != NULL || (store && !strcmp(flag, "uw"));
			all &= has;
			none &= !has;
			seen = 1;
		}
	}
	if (f)
		fclose(f);
	if (!seen)
		return -1;
	return all ? 1 : none ? 0 : -1;
}

/* ramfold's: the library's write-protect userfaultfd covers all of it
 * (registered by the dedup scanner when it first sees the region: waited
 * for, up to 10 s). */
static bool adopted(const void *p, size_t len)
{
	for (int i = 0; i < 100 && vma_flag(p, len, "uw") != 1; i++)
		usleep(100000);
	if (vma_flag(p, len, "uw") == 1)
		return true;
	if (getenv("RUN_TARGET_DEBUG")) {
		char cmd[128];

		snprintf(cmd, sizeof(cmd), "grep -E '^[0-9a-f]+-|VmFlags' /proc/%d/smaps >&2",
			 (int)getpid());
		(void)!system(cmd);
	}
	return false;
}

#define ADOPTED(p, len)	    adopted(p, len)
#define NOT_ADOPTED(p, len) (vma_flag(p, len, "uw") == 0)

/* Pages [first, first + n) of @p hold word(first + k, .) at page k. */
static size_t check_from(const char *p, size_t first, size_t n)
{
	size_t bad = 0;

	for (size_t k = 0; k < n; k++)
		for (size_t w = 0; w < PAGE / 8; w++)
			bad += ((const uint64_t *)(p + k * PAGE))[w] != word(first + k, w);
	return bad;
}

static bool zeros(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i += 8)
		if (*(const uint64_t *)(p + i))
			return false;
	return true;
}

/* Duplicate RAM, advised mergeable, merged (Pss fell by half of it). */
static char *merged_ram(char *at, size_t bytes)
{
	uint64_t before;
	char *p = mmap(at, bytes, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (at ? MAP_FIXED : 0), -1, 0);

	if (p == MAP_FAILED) {
		printf("FAIL mmap: %s\n", strerror(errno));
		exit(1);
	}
	fill(p, bytes / PAGE);
	before = rollup("Pss:");
	CHECK(madvise(p, bytes, MADV_MERGEABLE) == 0, "MERGEABLE: %s", strerror(errno));
	CHECK(wait_pss_drop(before, bytes / 2) + bytes / 2 <= before, "not merged");
	CHECK(ADOPTED(p, bytes), "not adopted after MADV_MERGEABLE");
	return p;
}

static int mode_mremap(size_t mib)
{
	size_t bytes = mib << 20, pages = bytes / PAGE, cut = 64;
	uint64_t base = rollup("Pss:");
	char *p, *q, *r;

	/* Room above for the in-place growth. */
	p = mmap(NULL, 2 * bytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(p != MAP_FAILED, "reserve: %s", strerror(errno));
	munmap(p, 2 * bytes);
	p = merged_ram(p, bytes);

	/* Shrink: the tail goes, the rest stays adopted and intact. */
	q = mremap(p, bytes, bytes - cut * PAGE, 0);
	CHECK(q == p, "shrink: %s", q == MAP_FAILED ? strerror(errno) : "moved");
	pages -= cut;
	CHECK(check_from(p, 0, pages) == 0, "content wrong after the shrink");
	CHECK(ADOPTED(p, pages * PAGE), "not adopted after the shrink");
	printf("ok mremap shrink\n");

	/* Grow in place: the new tail reads zeros and is adopted too. */
	q = mremap(p, pages * PAGE, (pages + 2 * cut) * PAGE, 0);
	CHECK(q == p, "grow: %s", q == MAP_FAILED ? strerror(errno) : "moved");
	CHECK(check_from(p, 0, pages) == 0, "content wrong after the growth");
	CHECK(zeros(p + pages * PAGE, 2 * cut * PAGE), "the grown tail is not zeros");
	pages += 2 * cut;
	CHECK(ADOPTED(p, pages * PAGE), "not adopted after the growth");
	printf("ok mremap grow\n");

	/* Move (MREMAP_MAYMOVE | MREMAP_FIXED, as a realloc of guest RAM),
	 * merged first: the range is then many VMAs. */
	CHECK(wait_pss_below(base + bytes / 2), "grown RAM not merged");
	r = mmap(NULL, pages * PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(r != MAP_FAILED, "target: %s", strerror(errno));
	q = mremap(p, pages * PAGE, pages * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, r);
	CHECK(q == r, "move: %s", q == MAP_FAILED ? strerror(errno) : "elsewhere");
	CHECK(check_from(q, 0, pages - 2 * cut) == 0, "content wrong after the move");
	CHECK(zeros(q + (pages - 2 * cut) * PAGE, 2 * cut * PAGE), "tail not zeros after the move");
	CHECK(ADOPTED(q, pages * PAGE), "the new range is not adopted");
	/* The old range is gone, and nothing of ramfold's is left there: a
	 * new mapping at that address is the program's own. */
	p = mmap(p, bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	CHECK(p != MAP_FAILED, "old range still mapped: %s", strerror(errno));
	CHECK(NOT_ADOPTED(p, bytes), "the old range is still adopted");
	memset(p, 0x5a, bytes);
	printf("ok mremap move\n");

	/* The moved RAM merges again (the new mapping at the old address
	 * counts in full); writes after that land. */
	CHECK(wait_pss_below(base + bytes + bytes / 2), "moved RAM not merged");
	for (size_t i = 0; i < pages; i += 5)
		((uint64_t *)(q + i * PAGE))[9] = 0x1234ull + i;
	for (size_t i = 0; i < pages; i += 5)
		CHECK(((uint64_t *)(q + i * PAGE))[9] == 0x1234ull + i, "write to page %zu lost",
		      i);
	for (size_t i = 0; i < bytes; i += PAGE)
		CHECK(p[i] == 0x5a && p[i + PAGE - 1] == 0x5a,
		      "new mapping at the old address changed");
	printf("ok mremap merged again\n");

	/* Grow with MREMAP_MAYMOVE where the room above is taken: moved. */
	r = mmap(q + pages * PAGE, PAGE, PROT_NONE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	for (size_t i = 0; i < pages; i += 5)
		((uint64_t *)(q + i * PAGE))[9] = i < pages - 2 * cut ? word(i, 9) : 0;
	CHECK(wait_pss_below(base + bytes + bytes / 2), "not merged before the growing move");
	p = mremap(q, pages * PAGE, (pages + cut) * PAGE, MREMAP_MAYMOVE);
	CHECK(p != MAP_FAILED && p != q, "growing move: %s",
	      p == MAP_FAILED ? strerror(errno) : "in place");
	if (p != MAP_FAILED) {
		CHECK(check_from(p, 0, pages - 2 * cut) == 0,
		      "content wrong after the growing move");
		CHECK(zeros(p + (pages - 2 * cut) * PAGE, 3 * cut * PAGE), "tail not zeros");
		CHECK(ADOPTED(p, (pages + cut) * PAGE), "not adopted after the growing move");
		q = p;
		pages += cut;
	}
	if (r != MAP_FAILED)
		munmap(r, PAGE);
	printf("ok mremap grow moved\n");
	munmap(q, pages * PAGE);
	munmap(p, bytes);
	return failed;
}

/* A memfd mapped MAP_FIXED over the middle (QEMU replacing RAM). */
static int mode_fixed(size_t mib)
{
	size_t bytes = mib << 20, pages = bytes / PAGE, at = pages / 4, n = pages / 4;
	int fd = memfd_create("new-ram", 0);
	uint64_t base = rollup("Pss:");
	char *p = merged_ram(NULL, bytes), *f;

	CHECK(fd >= 0 && ftruncate(fd, (off_t)(n * PAGE)) == 0, "memfd: %s", strerror(errno));
	f = mmap(p + at * PAGE, n * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
	CHECK(f == p + at * PAGE, "mmap MAP_FIXED: %s", strerror(errno));
	CHECK(zeros(f, n * PAGE), "the new mapping does not read as the (empty) file");
	memset(f, 0x77, n * PAGE);
	{
		char c = 0;

		CHECK(pread(fd, &c, 1, (off_t)(n * PAGE / 2)) == 1 && c == 0x77,
		      "writes to the new mapping missed the file");
	}
	CHECK(NOT_ADOPTED(f, n * PAGE), "the memfd part is adopted");
	CHECK(check_from(p, 0, at) == 0, "head changed");
	CHECK(check_from(p + (at + n) * PAGE, at + n, pages - at - n) == 0, "tail changed");
	CHECK(ADOPTED(p, at * PAGE) && ADOPTED(p + (at + n) * PAGE, (pages - at - n) * PAGE),
	      "the rest is no longer adopted");
	printf("ok fixed replaced\n");
	/* The rest merges again (the release copied its merged pages back). */
	CHECK(wait_pss_below(base + n * PAGE + bytes / 4), "the rest did not merge again");
	for (size_t i = 0; i < n * PAGE; i += PAGE)
		CHECK(f[i] == 0x77, "memfd page %zu changed", i / PAGE);
	CHECK(check_from(p, 0, at) == 0, "head changed after merging");
	printf("ok fixed merged\n");
	return failed;
}

struct toucher {
	volatile char *page;
	char seen;
};

static void *touch(void *arg)
{
	struct toucher *t = arg;

	t->seen = t->page[100];
	return NULL;
}

/*
 * The program's own userfaultfd over adopted RAM, as postcopy does it:
 * register MISSING, discard, and serve the faults with UFFDIO_COPY.
 */
static int mode_uffd(size_t mib)
{
	size_t bytes = mib << 20, pages = bytes / PAGE, hole = 8;
	struct uffdio_api api = {.api = UFFD_API};
	struct uffdio_register reg;
	struct toucher t;
	pthread_t th;
	char *p, *src;
	int uffd;

	uniq_from = pages / 2; /* half duplicates (merged), half unique (swapped) */
	p = merged_ram(NULL, bytes);
	sleep(2); /* let swap take the unique half down to --swap-resident */
	printf("ok uffd before rss=%llu swap=%llu\n", (unsigned long long)rollup("Rss:"),
	       (unsigned long long)rollup("Swap:"));
	uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
	CHECK(uffd >= 0, "userfaultfd: %s", strerror(errno));
	CHECK(ioctl(uffd, UFFDIO_API, &api) == 0, "UFFDIO_API: %s", strerror(errno));
	reg = (struct uffdio_register){.range = {(uintptr_t)p, bytes},
				       .mode = UFFDIO_REGISTER_MODE_MISSING};
	CHECK(ioctl(uffd, UFFDIO_REGISTER, &reg) == 0, "UFFDIO_REGISTER: %s", strerror(errno));
	CHECK(vma_flag(p, bytes, "um") == 1 && NOT_ADOPTED(p, bytes),
	      "not the program's alone after its UFFDIO_REGISTER");
	CHECK(check(p, pages, SIZE_MAX) == 0, "content lost by the release");
	printf("ok uffd registered\n");

	/* Discard a few pages and serve their faults. */
	CHECK(madvise(p + 3 * PAGE, hole * PAGE, MADV_DONTNEED) == 0, "DONTNEED: %s",
	      strerror(errno));
	t.page = p + 5 * PAGE;
	pthread_create(&th, NULL, touch, &t);
	{
		struct pollfd pf = {.fd = uffd, .events = POLLIN};
		struct uffd_msg msg;

		CHECK(poll(&pf, 1, 5000) == 1, "no fault came to the program's userfaultfd");
		CHECK(read(uffd, &msg, sizeof(msg)) == sizeof(msg) &&
			  msg.event == UFFD_EVENT_PAGEFAULT &&
			  msg.arg.pagefault.address / PAGE == (uintptr_t)t.page / PAGE,
		      "wrong fault message");
		src = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		memset(src, 0x42, PAGE);
		struct uffdio_copy cp = {
		    .dst = (uintptr_t)t.page, .src = (uintptr_t)src, .len = PAGE};
		CHECK(ioctl(uffd, UFFDIO_COPY, &cp) == 0, "UFFDIO_COPY: %s", strerror(errno));
	}
	pthread_join(th, NULL);
	CHECK(t.seen == 0x42, "the faulting thread read %#x, not the copied page", t.seen);
	CHECK(check(p, 3, SIZE_MAX) == 0 &&
		  check_from(p + (3 + hole) * PAGE, 3 + hole, pages - 3 - hole) == 0,
	      "pages outside the hole changed");
	printf("ok uffd faults\n");

	/* Never adopted again: the program's registration stays its own. */
	CHECK(ioctl(uffd, UFFDIO_UNREGISTER, &reg.range) == 0, "UNREGISTER: %s", strerror(errno));
	madvise(p, bytes, MADV_MERGEABLE);
	CHECK(NOT_ADOPTED(p, bytes), "adopted again after the program's own userfaultfd");
	printf("ok uffd kept\n");
	close(uffd);
	return failed;
}

/* VFIO_IOMMU_MAP_DMA on merged RAM, on /dev/null (no VFIO device here). */
static int mode_vfio(size_t mib)
{
	size_t bytes = mib << 20, pages = bytes / PAGE;
	char *p = merged_ram(NULL, bytes);
	struct vfio_iommu_type1_dma_map map = {
	    .argsz = sizeof(map),
	    .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
	    .vaddr = (uintptr_t)p,
	    .iova = 0,
	    .size = bytes / 2,
	};
	int fd = open("/dev/null", O_RDWR), ret, err;

	errno = 0;
	ret = ioctl(fd, VFIO_IOMMU_MAP_DMA, &map);
	err = errno;
	printf("ok vfio ioctl=%d errno=%s\n", ret, strerrorname_np(err));
	CHECK(ret == -1 && err == ENOTTY, "ioctl: %d %s, not the kernel's ENOTTY", ret,
	      strerror(err));
	CHECK(NOT_ADOPTED(p, bytes / 2), "the DMA range is still adopted");
	CHECK(ADOPTED(p + bytes / 2, bytes / 2), "the rest is no longer adopted");
	CHECK(check(p, pages, SIZE_MAX) == 0, "content changed by the release");
	madvise(p, bytes / 2, MADV_MERGEABLE);
	CHECK(NOT_ADOPTED(p, bytes / 2), "the DMA range was adopted again");
	close(fd);
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
	if (argc >= 3 && !strcmp(argv[1], "mremap"))
		return mode_mremap(strtoul(argv[2], NULL, 0));
	if (argc >= 3 && !strcmp(argv[1], "fixed"))
		return mode_fixed(strtoul(argv[2], NULL, 0));
	if (argc >= 3 && !strcmp(argv[1], "uffd"))
		return mode_uffd(strtoul(argv[2], NULL, 0));
	if (argc >= 3 && !strcmp(argv[1], "vfio"))
		return mode_vfio(strtoul(argv[2], NULL, 0));
	if (argc >= 3 && !strcmp(argv[1], "serve"))
		mode_serve(strtoul(argv[2], NULL, 0));
	fprintf(stderr, "usage: run_target dup|merge-all|shared|serve|mremap|fixed|uffd|vfio MIB | "
			"marker PATH | spawn | env\n");
	return 2;
}
