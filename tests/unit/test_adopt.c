/* SPDX-License-Identifier: MIT */
/*
 * VMM-owned RAM (issue 14): rf_vm_adopt_ram takes memory the embedder mapped,
 * rf_vm_release_ram gives it back with every page private and intact, and
 * what works on which backing is read from the kernel, not from a flag.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dedup_util.h"
#include "internal.h"
#include "rf_test.h"
#include "swap_pager.h"

#define PG  4096ull
#define NPG 64

/* The embedder's own guest RAM: private anonymous, as QEMU or Firecracker
 * map it. */
static uint8_t *embedder_map(uint64_t size)
{
	void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

/* Every VMA over [@p, @p + @len) is private anonymous (no file: no store
 * page left mapped), and no page there is mapped from a file. */
static void assert_private_anon(const uint8_t *p, uint64_t len)
{
	uintptr_t lo = (uintptr_t)p, hi = lo + len;
	char line[512];
	FILE *f = fopen("/proc/self/maps", "re");
	int fd = open("/proc/self/pagemap", O_RDONLY);

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long long s, e, off, ino;
		unsigned int maj, min;
		char perms[8];

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &s, &e, perms, &off, &maj, &min,
			   &ino) != 7 ||
		    e <= lo || s >= hi)
			continue;
		if (ino != 0 || perms[3] != 'p')
			fail_msg("after release, %s", line);
	}
	fclose(f);
	assert_true(fd >= 0);
	for (uint64_t i = 0; i < len / PG; i++) {
		uint64_t ent = 0;

		assert_int_equal(pread(fd, &ent, 8, (off_t)((lo / PG + i) * 8)), 8);
		if ((ent & (1ull << 63)) && (ent & (1ull << 61)))
			fail_msg("page %llu is mapped from a file after release",
				 (unsigned long long)i);
	}
	close(fd);
}

/*
 * The embedder's anonymous RAM under every mechanism: pages 8-15 merged,
 * 16-23 swapped out, 24-31 zero-discarded, 32 ballooned, 33 excluded; then
 * release gives back every page private with its content (zeros where the
 * guest gave it up), the library lets go of it (writes to every page go
 * through with no handler behind them), and the embedder unmaps it.
 */
static void test_adopt_release_every_mechanism(void **state)
{
	struct rf_test_log log = {0};
	rf_engine *e = rf_test_swap_engine(&log, false, 0, 0);
	struct rf_audit_report rep = {.size = sizeof(rep)};
	struct rf_dedup_stats ds = {.size = sizeof(ds)};
	struct rf_swap_stats ss = {.size = sizeof(ss)};
	uint8_t *ram = embedder_map(NPG * PG), want[PG];
	rf_vm *vm = rf_test_vm_unmapped(e, "vm0", NPG * PG);

	(void)state;
	assert_int_equal(rf_vm_adopt_ram(vm, 0, ram, NPG * PG, 0), 0);
	assert_int_equal(rf_vm_backing(vm, 0), RF_BACKING_ANON);
	assert_int_equal(rf_vm_nr_regions(vm), 1);
	rf_test_every_state(e, vm, ram, NPG);
	assert_int_equal(rf_vm_audit(vm, &rep, 0), 0);
	assert_int_equal(rep.mismatches, 0);

	assert_int_equal(rf_vm_release_ram(vm, 0), 0);
	assert_int_equal(rf_vm_nr_regions(vm), 0);
	assert_int_equal(rf_vm_backing(vm, 0), -EFAULT);
	/* Nothing of it left in the library: no store share, no swap slot. */
	assert_int_equal(rf_dedup_stats(e, &ds), 0);
	assert_int_equal(ds.pages_sharing, 0);
	assert_int_equal(rf_vm_swap_stats(vm, &ss), 0);
	assert_int_equal(ss.file_bytes + ss.tier_bytes, 0);
	/* Every page intact and private. */
	for (unsigned int i = 0; i < NPG; i++) {
		if (i >= 24 && i <= 32) {
			if (!rf_test_all_zero(ram + i * PG, PG))
				fail_msg("page %u: discarded, but does not read as zeros", i);
			continue;
		}
		dedup_fill_page(want, rf_test_every_state_seed(i));
		if (memcmp(ram + i * PG, want, PG) != 0)
			fail_msg("page %u lost its content on release", i);
	}
	assert_private_anon(ram, NPG * PG);
	/* The embedder's memory again: every write goes through at once (a
	 * range still registered with the library's userfaultfd would leave
	 * a fault on a discarded page with nobody to serve it). */
	for (unsigned int i = 0; i < NPG; i++)
		memset(ram + i * PG, (int)i, PG);
	for (unsigned int i = 0; i < NPG; i++)
		assert_int_equal(ram[i * PG + 7], (uint8_t)i);
	assert_int_equal(munmap(ram, NPG * PG), 0);
	rf_engine_free(e);
}

/* rf_vm_free gives adopted RAM back the same way: merged and swapped pages
 * intact afterwards, and the library never unmaps it. */
static void test_vm_free_releases(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 0, 0);
	struct rf_dedup_config dc;
	struct rf_pager *p;
	uint64_t done = 0;
	uint8_t *ram = embedder_map(NPG * PG), want[PG];
	rf_vm *vm = rf_test_vm_unmapped(e, "vm0", NPG * PG);

	(void)state;
	for (unsigned int i = 0; i < NPG; i++)
		dedup_fill_page(ram + i * PG, i < 16 ? 7 : 2000 + i);
	assert_int_equal(rf_vm_adopt_ram(vm, 0, ram, NPG * PG, 0), 0);
	assert_int_equal(rf_swap_pager_get(vm, &p), 0);
	assert_int_equal(rf_swap_pager_swap_out(p, 32 * PG, 16, &done), 0);
	assert_int_equal(done, 16);
	rf_dedup_config_init(&dc);
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_true(dedup_wait_converged(e, 3, 20000));
	assert_int_equal(rf_vm_page_state(vm, 0), RF_PAGE_MERGED);
	rf_vm_free(vm);
	for (unsigned int i = 0; i < NPG; i++) {
		dedup_fill_page(want, i < 16 ? 7 : 2000 + i);
		if (memcmp(ram + i * PG, want, PG) != 0)
			fail_msg("page %u lost its content when the VM was freed", i);
	}
	assert_private_anon(ram, NPG * PG);
	memset(ram, 1, NPG * PG);
	assert_int_equal(munmap(ram, NPG * PG), 0);
	rf_engine_free(e);
}

/* Every bad input: a clear error, the log naming the cause, and nothing
 * adopted, unmapped or changed. */
static void test_adopt_bad_input(void **state)
{
	struct rf_test_log log = {0};
	rf_engine *e = rf_test_engine(&log);
	rf_vm *vm = rf_test_vm_unmapped(e, "vm0", 4 * NPG * PG), *small;
	uint8_t *ram = embedder_map(6 * NPG * PG), *ro, *lib;
	char path[] = "/tmp/rf-adopt-XXXXXX";
	int fd;

	(void)state;
	/* Past the embedder's 2 * NPG pages, a guard of its own that no other
	 * mapping can take (ASan's allocator maps wherever there is room). */
	assert_int_equal(mprotect(ram + 2 * NPG * PG, 4 * NPG * PG, PROT_NONE), 0);
	memset(ram, 0x5a, 2 * NPG * PG);
	assert_int_equal(rf_vm_adopt_ram(NULL, 0, ram, PG, 0), -EINVAL);
	assert_int_equal(rf_vm_adopt_ram(vm, 0, NULL, PG, 0), -EINVAL);
	assert_int_equal(rf_vm_adopt_ram(vm, 0, ram, PG, 1), -EINVAL);
	assert_log_contains(&log, "vm0: adopt_ram: gpa 0x0: unknown flags 0x1");
	assert_int_equal(rf_vm_adopt_ram(vm, 0, ram, 0, 0), -EINVAL);
	assert_int_equal(rf_vm_adopt_ram(vm, 100, ram, PG, 0), -EINVAL);
	assert_log_contains(&log, "must be non-zero and 4 KiB aligned");
	assert_int_equal(rf_vm_adopt_ram(vm, 0, ram + 100, PG, 0), -EINVAL);
	assert_log_contains(&log, "is not 4 KiB aligned or wraps");
	assert_int_equal(rf_vm_adopt_ram(vm, UINT64_MAX & ~(PG - 1), ram, 2 * PG, 0), -EINVAL);
	assert_log_contains(&log, "wraps around");
	/* Not all mapped: a hole in the middle. */
	assert_int_equal(munmap(ram + NPG * PG, PG), 0);
	assert_int_equal(rf_vm_adopt_ram(vm, 0, ram, 2 * NPG * PG, 0), -EFAULT);
	assert_log_contains(&log, "is not mapped");
	/* Read-only memory is not guest RAM. */
	ro = mmap(NULL, NPG * PG, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(ro != MAP_FAILED);
	assert_int_equal(rf_vm_adopt_ram(vm, 0, ro, NPG * PG, 0), -EFAULT);
	assert_log_contains(&log, "must be readable and writable");
	/* A private mapping of a file, and a shared one of a disk file. */
	fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	assert_int_equal(ftruncate(fd, NPG * PG), 0);
	lib = mmap(NULL, NPG * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_true(lib != MAP_FAILED);
	assert_int_equal(rf_vm_adopt_ram(vm, 0, lib, NPG * PG, 0), -EOPNOTSUPP);
	assert_log_contains(&log, "private copy-on-write mapping of");
	munmap(lib, NPG * PG);
	close(fd);
	/* Two backings in one range: anonymous, then a memfd over its tail. */
	fd = memfd_create("rf-adopt-mixed", MFD_CLOEXEC);
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 8 * PG), 0);
	assert_true(mmap(ram + 8 * PG, 8 * PG, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd,
			 0) != MAP_FAILED);
	assert_int_equal(rf_vm_adopt_ram(vm, 0, ram, 16 * PG, 0), -EOPNOTSUPP);
	assert_log_contains(&log, "one region has one backing");
	close(fd);
	assert_int_equal(rf_vm_nr_regions(vm), 0);

	/* Overlaps, by gpa and by hva; past the promised RAM. */
	assert_int_equal(rf_vm_adopt_ram(vm, 0, ram, 8 * PG, 0), 0);
	assert_int_equal(rf_vm_adopt_ram(vm, 4 * PG, ram + 16 * PG, 8 * PG, 0), -EEXIST);
	assert_log_contains(&log, "overlaps a mapped region");
	assert_int_equal(rf_vm_adopt_ram(vm, 64 * PG, ram + 2 * PG, 4 * PG, 0), -EEXIST);
	assert_log_contains(&log, "overlaps the region at gpa 0x0");
	assert_int_equal(rf_vm_adopt_ram(vm, 64 * PG, ram + 16 * PG, 4 * NPG * PG, 0), -EFAULT);
	assert_int_equal(rf_vm_adopt_ram(vm, 64 * PG, ram + 16 * PG, 32 * PG, 0), 0);
	assert_int_equal(rf_vm_nr_regions(vm), 2);
	small = rf_test_vm_unmapped(e, "small", 4 * PG);
	assert_int_equal(rf_vm_adopt_ram(small, 0, ram + 48 * PG, 8 * PG, 0), -E2BIG);
	assert_log_contains(
	    &log, "small: adopt_ram: 0x8000 bytes at gpa 0x0 would exceed the promised RAM");
	assert_int_equal(rf_vm_nr_regions(small), 0);
	rf_vm_free(small);

	/* Unmap is for the library's own RAM, release for adopted RAM. */
	assert_int_equal(rf_vm_unmap_ram(vm, 0), -EINVAL);
	assert_log_contains(&log, "was adopted");
	assert_int_equal(rf_vm_map_ram(vm, 128 * PG, 8 * PG, (void **)&lib), 0);
	assert_int_equal(rf_vm_release_ram(vm, 128 * PG), -EINVAL);
	assert_log_contains(&log, "unmap it with rf_vm_unmap_ram");
	assert_int_equal(rf_vm_release_ram(vm, 4 * PG), -ENOENT);
	assert_log_contains(&log, "no region starts at gpa 0x4000");
	assert_int_equal(rf_vm_release_ram(NULL, 0), -EINVAL);
	assert_int_equal(rf_vm_nr_regions(vm), 3);
	assert_int_equal(ram[0], 0x5a);
	assert_int_equal(ram[20 * PG], 0x5a);

	assert_int_equal(rf_vm_release_ram(vm, 0), 0);
	assert_int_equal(rf_vm_release_ram(vm, 64 * PG), 0);
	assert_int_equal(rf_vm_unmap_ram(vm, 128 * PG), 0);
	assert_int_equal(ram[0], 0x5a);
	assert_int_equal(ram[20 * PG], 0x5a);
	assert_string_equal(rf_backing_name(RF_BACKING_SHMEM), "shmem");
	assert_string_equal(rf_backing_name((enum rf_backing)9), "invalid");
	munmap(ro, NPG * PG);
	munmap(ram, 6 * NPG * PG);
	rf_vm_free(vm);
	rf_engine_free(e);
}

/* The region limit is RF_VM_MAX_REGIONS, for adopted RAM as for mapped. */
static void test_adopt_region_limit(void **state)
{
	struct rf_test_log log = {0};
	rf_engine *e = rf_test_engine(&log);
	rf_vm *vm = rf_test_vm_unmapped(e, "vm0", 2 * RF_VM_MAX_REGIONS * PG);
	uint8_t *ram = embedder_map((RF_VM_MAX_REGIONS + 1) * 2 * PG);

	(void)state;
	/* Every other page, so the kernel keeps them separate VMAs' worth of
	 * regions while they stay one mapping. */
	for (unsigned int i = 0; i < RF_VM_MAX_REGIONS; i++)
		assert_int_equal(rf_vm_adopt_ram(vm, i * 2 * PG, ram + i * 2 * PG, PG, 0), 0);
	assert_int_equal(rf_vm_adopt_ram(vm, RF_VM_MAX_REGIONS * 2 * PG,
					 ram + RF_VM_MAX_REGIONS * 2 * PG, PG, 0),
			 -ENOSPC);
	assert_log_contains(&log, "32 regions already mapped (RF_VM_MAX_REGIONS)");
	rf_vm_free(vm);
	munmap(ram, (RF_VM_MAX_REGIONS + 1) * 2 * PG);
	rf_engine_free(e);
}

/* Blocks a memfd holds (what a vhost-user backend would still see). */
static uint64_t memfd_bytes(int fd)
{
	struct stat st;

	assert_int_equal(fstat(fd, &st), 0);
	return (uint64_t)st.st_blocks * 512;
}

/*
 * memfd MAP_SHARED RAM (vhost-user): recognised from the kernel's view;
 * dedup and swap refuse it with the backing named (either order: the
 * mechanism first, or the RAM first); a discard punches holes, so the
 * memfd itself gives the memory back and a second mapping of it (the
 * backend's) reads zeros; release leaves the content where it was.
 */
static void test_adopt_memfd_shared(void **state)
{
	struct rf_test_log log = {0};
	rf_engine *e = rf_test_swap_engine(&log, false, 0, 0);
	rf_vm *vm = rf_test_vm_unmapped(e, "vm0", 2 * NPG * PG),
	      *vm1 = rf_test_vm_unmapped(e, "vm1", 2 * NPG * PG);
	struct rf_dedup_config dc;
	uint64_t skipped = 0;
	uint8_t *ram, *backend, *anon = embedder_map(NPG * PG);
	int fd = memfd_create("guest-ram", MFD_CLOEXEC);

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, NPG * PG), 0);
	ram = mmap(NULL, NPG * PG, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	backend = mmap(NULL, NPG * PG, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(ram != MAP_FAILED && backend != MAP_FAILED);
	for (unsigned int i = 0; i < NPG; i++)
		dedup_fill_page(ram + i * PG, 3000 + i);
	assert_int_equal(rf_vm_adopt_ram(vm, 0x100000, ram, NPG * PG, 0), 0);
	assert_int_equal(rf_vm_backing(vm, 0x100000), RF_BACKING_SHMEM);

	/* The RAM first, then the mechanisms: refused, the backing named. */
	assert_int_equal(rf_vm_set_swap_target(vm, 16 * PG), -EOPNOTSUPP);
	assert_log_contains(
	    &log, "vm0: swap: gpa 0x100000: memfd MAP_SHARED RAM cannot be swapped (vhost-user "
		  "shares it)");
	rf_dedup_config_init(&dc);
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), -EOPNOTSUPP);
	assert_log_contains(&log,
			    "vm0: dedup: gpa 0x100000: memfd MAP_SHARED RAM cannot be merged");

	/* The mechanisms first, then the RAM: the adoption is refused. */
	assert_int_equal(rf_vm_adopt_ram(vm1, 0, anon, NPG * PG, 0), 0);
	assert_int_equal(rf_dedup_add_vm(vm1), 0);
	assert_int_equal(rf_vm_adopt_ram(vm1, 0x100000, ram, NPG * PG, 0), -EOPNOTSUPP);
	assert_log_contains(&log,
			    "vm1: dedup: gpa 0x100000: memfd MAP_SHARED RAM cannot be merged");
	assert_int_equal(rf_vm_nr_regions(vm1), 1);

	/* Balloon-style discard of pages 0-7 and the embedder's discard of
	 * 8-15: holes punched, the memfd shrinks, the backend reads zeros. */
	uint64_t before = memfd_bytes(fd);

	assert_int_equal(rf_vm_discard_as(vm, 0x100000, 8, RF_PAGE_BALLOONED, &skipped), 0);
	assert_int_equal(skipped, 0);
	assert_int_equal(rf_vm_discard(vm, 0x100000 + 8 * PG, 8 * PG, &skipped), 0);
	assert_int_equal(memfd_bytes(fd), before - 16 * PG);
	assert_true(rf_test_all_zero(backend, 16 * PG));
	assert_true(rf_test_all_zero(ram, 16 * PG));
	assert_int_equal(rf_vm_page_state(vm, 0x100000), RF_PAGE_BALLOONED);
	assert_int_equal(rf_vm_page_state(vm, 0x100000 + 8 * PG), RF_PAGE_ZERO);

	/* Shared pages are file pages, and the guest's own: the audit finds
	 * no contradiction and the stats count none as the store's. */
	{
		struct rf_audit_report rep = {.size = sizeof(rep)};
		struct rf_vm_stats st = {.size = sizeof(st)};

		assert_int_equal(rf_vm_audit(vm, &rep, 0), 0);
		assert_int_equal(rep.mismatches, 0);
		assert_int_equal(rf_vm_stats(vm, &st), 0);
		assert_int_equal(st.resident_file_bytes, 0);
		assert_int_equal(st.resident_anon_bytes, st.resident_bytes);
		assert_true(st.resident_bytes >= (NPG - 16) * PG);
	}
	assert_int_equal(rf_vm_release_ram(vm, 0x100000), 0);
	for (unsigned int i = 16; i < NPG; i++) {
		uint8_t want[PG];

		dedup_fill_page(want, 3000 + i);
		assert_memory_equal(ram + i * PG, want, PG);
		assert_memory_equal(backend + i * PG, want, PG);
	}
	munmap(ram, NPG * PG);
	munmap(backend, NPG * PG);
	close(fd);
	rf_vm_free(vm1);
	munmap(anon, NPG * PG);
	rf_vm_free(vm);
	rf_engine_free(e);
}

/* Set /proc/sys/vm/nr_hugepages to @n; false if the process may not. */
static bool set_nr_hugepages(long n)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "w");
	bool ok;

	if (!f)
		return false;
	ok = fprintf(f, "%ld\n", n) > 0;
	return fclose(f) == 0 && ok;
}

static long get_nr_hugepages(void)
{
	FILE *f = fopen("/proc/sys/vm/nr_hugepages", "r");
	long n = -1;

	if (f) {
		if (fscanf(f, "%ld", &n) != 1)
			n = -1;
		fclose(f);
	}
	return n;
}

/*
 * hugetlbfs RAM: recognised by its kernel page size; not 2 MiB aligned is
 * refused; dedup and swap refuse it; a discard frees the huge pages it
 * covers whole and leaves the rest, counted as skipped. Needs 4 huge pages
 * of 2 MiB (nr_hugepages is raised and put back).
 */
static void test_adopt_hugetlb(void **state)
{
	struct rf_test_log log = {0};
	const uint64_t HP = 2ull << 20;
	long old = get_nr_hugepages();
	rf_engine *e;
	rf_vm *vm;
	uint8_t *ram;
	uint64_t skipped = 0, free_before;

	(void)state;
	rf_require(old >= 0 && set_nr_hugepages(old + 4), "cannot set /proc/sys/vm/nr_hugepages");
	ram = mmap(NULL, 2 * HP, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB,
		   -1, 0);
	if (ram == MAP_FAILED) {
		set_nr_hugepages(old);
		rf_require(false, "no 2 MiB huge pages to map");
	}
	e = rf_test_swap_engine(&log, false, 0, 0);
	vm = rf_test_vm_unmapped(e, "vm0", 4 * HP);
	memset(ram, 0x77, 2 * HP);
	assert_int_equal(rf_vm_adopt_ram(vm, 0, ram, HP / 2, 0), -EINVAL);
	assert_log_contains(&log, "is hugetlbfs with 2048 KiB pages: must be aligned to them");
	assert_int_equal(rf_vm_adopt_ram(vm, 0, ram, 2 * HP, 0), 0);
	assert_int_equal(rf_vm_backing(vm, 0), RF_BACKING_HUGETLB);
	assert_int_equal(rf_vm_set_swap_target(vm, HP), -EOPNOTSUPP);
	assert_log_contains(&log, "vm0: swap: gpa 0x0: hugetlbfs RAM cannot be swapped");

	/* 1.5 huge pages from 0: the first is freed, the half of the second
	 * is left as it was. */
	free_before = rf_test_meminfo("HugePages_Free");
	assert_int_equal(rf_vm_discard_as(vm, 0, (HP + HP / 2) / PG, RF_PAGE_BALLOONED, &skipped),
			 0);
	assert_int_equal(skipped, HP / 2 / PG);
	assert_int_equal(rf_test_meminfo("HugePages_Free"), free_before + 1024); /* "kB" x1024 */
	assert_int_equal(rf_vm_page_state(vm, 0), RF_PAGE_BALLOONED);
	assert_int_equal(rf_vm_page_state(vm, HP), RF_PAGE_PRIVATE);
	assert_true(rf_test_all_zero(ram, HP));
	for (uint64_t k = HP; k < 2 * HP; k += PG)
		assert_int_equal(ram[k], 0x77);
	/* An excluded page keeps its whole huge page. */
	assert_int_equal(rf_vm_exclude_range(vm, HP + 5 * PG, PG, true), 0);
	assert_int_equal(rf_vm_discard(vm, HP, HP, &skipped), 0);
	assert_int_equal(skipped, HP / PG);
	assert_int_equal(ram[HP + 100 * PG], 0x77);

	assert_int_equal(rf_vm_release_ram(vm, 0), 0);
	assert_int_equal(ram[HP + 100 * PG], 0x77);
	rf_vm_free(vm);
	rf_engine_free(e);
	munmap(ram, 2 * HP);
	assert_true(set_nr_hugepages(old));
}

struct writer {
	uint8_t *ram;
	uint64_t pages;
	_Atomic bool stop;
	uint64_t rounds;
	int bad; /* page index + 1 of a lost write */
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (uint64_t round = 1; !atomic_load(&w->stop) && !w->bad; round++) {
		for (uint64_t i = 0; i < w->pages; i++)
			*(volatile uint64_t *)(w->ram + i * PG) = round * 1000003 + i;
		for (uint64_t i = 0; i < w->pages; i++)
			if (*(volatile uint64_t *)(w->ram + i * PG) != round * 1000003 + i)
				w->bad = (int)i + 1;
		w->rounds = round;
	}
	return NULL;
}

/*
 * Hotplug: regions adopted and released while another thread writes into
 * another region, with dedup and swap attached to the VM. Every adopted
 * region comes back intact, and no write of the other thread is lost.
 */
static void test_hotplug(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 0, 0);
	rf_vm *vm = rf_test_vm_unmapped(e, "vm0", 4 * NPG * PG);
	struct writer w = {0};
	struct rf_dedup_config dc;
	struct rf_pager *p;
	pthread_t t;
	uint8_t *hot = embedder_map(2 * NPG * PG), want[PG];

	(void)state;
	assert_int_equal(rf_vm_map_ram(vm, 0, NPG * PG, (void **)&w.ram), 0);
	w.pages = NPG;
	assert_int_equal(rf_swap_pager_get(vm, &p), 0);
	rf_dedup_config_init(&dc);
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_int_equal(pthread_create(&t, NULL, writer_main, &w), 0);
	for (unsigned int round = 0; round < 40 && !w.bad; round++) {
		uint64_t gpa = (1 + round % 2) * NPG * PG, done = 0;
		uint8_t *hva = hot + (round % 2) * NPG * PG;

		for (unsigned int i = 0; i < NPG; i++)
			dedup_fill_page(hva + i * PG, i % 4 == 0 ? 5 : round * 100 + i);
		assert_int_equal(rf_vm_adopt_ram(vm, gpa, hva, NPG * PG, 0), 0);
		assert_int_equal(rf_swap_pager_swap_out(p, gpa + 32 * PG, 8, &done), 0);
		rf_dedup_scan_now(e);
		rf_test_sleep_ms(5);
		assert_int_equal(rf_vm_release_ram(vm, gpa), 0);
		for (unsigned int i = 0; i < NPG; i++) {
			dedup_fill_page(want, i % 4 == 0 ? 5 : round * 100 + i);
			if (memcmp(hva + i * PG, want, PG) != 0)
				fail_msg("round %u: page %u lost on release", round, i);
		}
	}
	atomic_store(&w.stop, true);
	pthread_join(t, NULL);
	if (w.bad)
		fail_msg("writer lost a write at page %d", w.bad - 1);
	assert_true(w.rounds > 0);
	assert_int_equal(rf_vm_nr_regions(vm), 1);
	rf_engine_free(e);
	munmap(hot, 2 * NPG * PG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_adopt_release_every_mechanism),
	    cmocka_unit_test(test_vm_free_releases),
	    cmocka_unit_test(test_adopt_bad_input),
	    cmocka_unit_test(test_adopt_region_limit),
	    cmocka_unit_test(test_adopt_memfd_shared),
	    cmocka_unit_test(test_adopt_hugetlb),
	    cmocka_unit_test(test_hotplug),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
