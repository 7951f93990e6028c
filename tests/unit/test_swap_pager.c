/* SPDX-License-Identifier: MIT */
/*
 * Swap-out and swap-in through a real userfaultfd, in process: the test's
 * threads play the vCPUs, touching guest RAM directly.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "pager_internal.h"
#include "rf_test.h"
#include "swap_pager.h"

#define MiB (1ull << 20)
#define PG  RF_PAGE_SIZE

/* Page kinds, by index: zero, compressible, random. */
static void fill(uint8_t *p, uint64_t i, uint32_t gen)
{
	uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull + gen;

	switch (i % 3) {
	case 0:
		memset(p, 0, PG);
		break;
	case 1:
		for (unsigned int k = 0; k < PG; k++)
			p[k] = (uint8_t)(i + gen + k / 1024);
		break;
	default:
		for (unsigned int k = 0; k < PG; k += 8) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			memcpy(p + k, &x, 8);
		}
	}
}

static bool check(const uint8_t *p, uint64_t i, uint32_t gen)
{
	uint8_t want[PG];

	fill(want, i, gen);
	return memcmp(p, want, PG) == 0;
}

static struct rf_pager *pager_of(rf_vm *vm)
{
	struct rf_pager *p;

	assert_int_equal(rf_swap_pager_get(vm, &p), 0);
	return p;
}

static void test_swap_out_and_in(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 64 * MiB, 16 * MiB);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 8 * MiB, (void **)&ram);
	uint64_t n = 8 * MiB / PG, done = 0;
	struct rf_swap_stats st = {.size = sizeof(st)};
	struct rf_vm_stats vs = {.size = sizeof(vs)};
	struct rf_audit_report rep = {.size = sizeof(rep)};
	struct rf_pager *p;

	(void)state;
	for (uint64_t i = 0; i < n; i++)
		fill(ram + i * PG, i, 1);
	p = pager_of(vm);
	assert_int_equal(rf_swap_pager_swap_out(p, 0, n, &done), 0);
	assert_int_equal(done, n);
	assert_int_equal(rf_vm_page_state(vm, 0), RF_PAGE_ZERO);
	assert_int_equal(rf_vm_page_state(vm, PG), RF_PAGE_COMPRESSED);
	assert_int_equal(rf_vm_page_state(vm, 2 * PG), RF_PAGE_SWAPPED);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_int_equal(st.zero_outs, (n + 2) / 3);
	assert_int_equal(st.swap_outs, n - (n + 2) / 3);
	assert_int_equal(st.tier_bytes + st.file_bytes, st.swap_outs * PG);
	assert_true(st.compression_ratio > 4.0);
	/* The kernel agrees: guest RAM is gone from memory. */
	assert_int_equal(rf_vm_stats(vm, &vs), 0);
	assert_int_equal(vs.resident_bytes, 0);
	assert_int_equal(vs.state_bytes[RF_PAGE_SWAPPED] + vs.state_bytes[RF_PAGE_COMPRESSED],
			 st.swap_outs * PG);
	assert_int_equal(rf_vm_audit(vm, &rep, 0), 0);

	for (uint64_t i = 0; i < n; i++)
		if (!check(ram + i * PG, i, 1))
			fail_msg("page %llu differs after swap-in", (unsigned long long)i);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_int_equal(st.swap_ins, st.swap_outs);
	assert_int_equal(st.tier_bytes + st.file_bytes, 0);
	assert_true(st.fault_p50_ns > 0 && st.fault_p50_ns <= st.fault_p99_ns);
	assert_int_equal(rf_vm_page_state(vm, 2 * PG), RF_PAGE_PRIVATE);
	assert_int_equal(rf_vm_stats(vm, &vs), 0);
	assert_int_equal(vs.state_bytes[RF_PAGE_PRIVATE] + vs.state_bytes[RF_PAGE_ZERO], 8 * MiB);
	rf_engine_free(e);
}

/* Discarded pages inside a registered range read as zeros, never as stale
 * swap content: through rf_vm_discard_as (the balloon) and through a plain
 * madvise (UFFD_EVENT_REMOVE). Never-touched pages get the zero page. */
static void test_discarded_pages_read_zero(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 64 * MiB, 16 * MiB);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	struct rf_swap_stats st = {.size = sizeof(st)};
	struct rf_pager *p = pager_of(vm);
	uint64_t skipped, done;

	(void)state;
	for (uint64_t i = 0; i < 64; i++)
		fill(ram + i * PG, i, 2);
	assert_int_equal(rf_swap_pager_swap_out(p, 0, 64, &done), 0);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_true(st.file_bytes > 0 && st.tier_bytes > 0);

	/* The balloon takes pages 0..31: their slots are freed. */
	assert_int_equal(rf_vm_discard_as(vm, 0, 32, RF_PAGE_BALLOONED, &skipped), 0);
	assert_int_equal(skipped, 0);
	/* Someone madvises pages 32..47 away behind the library's back. */
	assert_int_equal(madvise(ram + 32 * PG, 16 * PG, MADV_DONTNEED), 0);
	for (uint64_t i = 0; i < 48; i++)
		for (unsigned int k = 0; k < PG; k += 512)
			if (ram[i * PG + k])
				fail_msg("page %llu not zero after discard", (unsigned long long)i);
	for (uint64_t i = 48; i < 64; i++)
		assert_true(check(ram + i * PG, i, 2));
	/* Never touched, in the registered chunk: zero page at once. */
	assert_int_equal(ram[100 * PG], 0);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_true(st.zero_fills >= 1);
	assert_int_equal(st.tier_bytes + st.file_bytes, 0);
	assert_int_equal(rf_vm_page_state(vm, 0), RF_PAGE_BALLOONED);
	rf_engine_free(e);
}

static sigjmp_buf reader_jmp;
static void on_usr1(int sig)
{
	(void)sig;
	siglongjmp(reader_jmp, 1);
}

struct reader {
	volatile uint8_t *addr;
	_Atomic int done; /* 1 read, 2 interrupted */
};

static void *reader_main(void *arg)
{
	struct reader *r = arg;
	struct sigaction sa = {.sa_handler = on_usr1};

	sigaction(SIGUSR1, &sa, NULL);
	if (sigsetjmp(reader_jmp, 1)) {
		atomic_store(&r->done, 2);
		return NULL;
	}
	(void)r->addr[0];
	atomic_store(&r->done, 1);
	return NULL;
}

/* A page that cannot be read back correctly is never answered: the VM
 * stops, with a clear error, and its faulting thread stays blocked. */
static void test_bad_page_stops_vm(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_swap_engine(&log, false, 64 * MiB, 0);
	uint8_t *ram, *ram2;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	rf_vm *vm2 = rf_test_vm(e, "vm1", 4 * MiB, (void **)&ram2);
	struct rf_swap_stats st = {.size = sizeof(st)};
	struct rf_pager *p = pager_of(vm), *p2 = pager_of(vm2);
	struct reader rd = {.addr = NULL};
	pthread_t t;
	uint64_t done;

	(void)state;
	fill(ram + 2 * PG, 2, 3);
	fill(ram2 + 2 * PG, 2, 4);
	assert_int_equal(rf_swap_pager_swap_out(p, 2 * PG, 1, &done), 0);
	assert_int_equal(rf_swap_pager_swap_out(p2, 2 * PG, 1, &done), 0);
	assert_int_equal(rf_vm_page_state(vm, 2 * PG), RF_PAGE_SWAPPED);
	/* Every read of vm0's page comes back corrupted. */
	rf_swap_store_inject(rf_swap_pager_store(p), RF_SWAP_INJ_CORRUPT, 1000);
	rd.addr = ram + 2 * PG;
	assert_int_equal(pthread_create(&t, NULL, reader_main, &rd), 0);
	for (int i = 0; i < 100 && !rf_vm_swap_stats(vm, &st) && !st.stopped; i++)
		usleep(10000);
	usleep(100000);
	assert_true(st.stopped);
	assert_int_equal(atomic_load(&rd.done), 0); /* still blocked: no zeros, no garbage */
	assert_log_contains(&log, "vm0: swap: page at gpa 0x2000 cannot be read back");
	assert_log_contains(&log, "checksum mismatch");
	assert_int_equal(rf_vm_page_state(vm, 2 * PG), RF_PAGE_SWAPPED);
	assert_true(st.csum_errors >= 3);
	rf_swap_store_inject(rf_swap_pager_store(p), RF_SWAP_INJ_NONE, 0);
	/* The other VM runs on. */
	assert_true(check(ram2 + 2 * PG, 2, 4));
	assert_int_equal(rf_vm_swap_stats(vm2, &st), 0);
	assert_false(st.stopped);
	/* End the blocked reader the way a VMM would end a stopped vCPU. */
	pthread_kill(t, SIGUSR1);
	pthread_join(t, NULL);
	assert_int_equal(atomic_load(&rd.done), 2);
	rf_engine_free(e);
}

/* swap.moved over page 61 of refused_ram: the VMM discards it now, after
 * the move took its bytes out and before the store refuses them. */
static uint8_t *refused_ram;
static _Atomic int refused_fired;

static void discard_when_moved(const char *where, void *arg)
{
	if (!rf_test_moved_out(where, arg, refused_ram + 61 * PG) ||
	    atomic_exchange(&refused_fired, 1))
		return;
	assert_int_equal(madvise(refused_ram + 61 * PG, PG, MADV_DONTNEED), 0);
}

/* Move mode, store full: a refused page goes back into guest RAM, except
 * one discarded from outside while the swap-out held it, whose bytes go
 * with the discard: it reads zeros. Before the fix the put-back copied the
 * discarded bytes back in. */
static void test_refused_page_discarded_outside(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 16 * PG, 0); /* 16 file slots */
	struct rf_features f = {.size = sizeof(f)};
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	struct rf_pager *p = pager_of(vm);
	uint64_t done;

	(void)state;
	assert_int_equal(rf_engine_features(e, &f), 0);
	if (!f.uffd_move) {
		rf_engine_free(e);
		skip(); /* copy mode never takes a refused page out */
	}
	for (uint64_t i = 0; i < 64; i++)
		fill(ram + i * PG, i, 5);
	refused_ram = ram;
	atomic_store(&refused_fired, 0);
	rf_test_point = discard_when_moved;
	/* One batch of 64: 16 stored, 48 refused and put back, page 61 among them (a third of the
	 * pages are zero, and go as such). */
	assert_int_equal(rf_swap_pager_swap_out(p, 0, 64, &done), -ENOSPC);
	rf_test_point = NULL;
	assert_int_equal(atomic_load(&refused_fired), 1);
	assert_int_equal(rf_vm_page_state(vm, 61 * PG), RF_PAGE_PRIVATE); /* refused */
	assert_true(rf_test_all_zero(ram + 61 * PG, PG));
	for (uint64_t i = 0; i < 64; i++)
		if (i != 61 && !check(ram + i * PG, i, 5))
			fail_msg("page %llu lost after ENOSPC", (unsigned long long)i);
	rf_engine_free(e);
}

static void test_enospc_and_cap_lose_nothing(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_swap_engine(&log, false, 16 * PG, 0); /* 16 file slots, no tier */
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	struct rf_swap_stats st = {.size = sizeof(st)};
	struct rf_pager *p = pager_of(vm);
	uint64_t done;

	(void)state;
	for (uint64_t i = 0; i < 96; i++)
		fill(ram + i * PG, i, 5);
	/* 64 non-zero pages, 16 slots: swap-out stops at the limit. */
	assert_int_equal(rf_swap_pager_swap_out(p, 0, 96, &done), -ENOSPC);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_int_equal(st.file_bytes, 16 * PG);
	assert_true(st.enospc >= 1);
	for (uint64_t i = 0; i < 96; i++)
		if (!check(ram + i * PG, i, 5))
			fail_msg("page %llu lost after ENOSPC", (unsigned long long)i);

	/* EIO on write: nothing lost, a clear error. */
	rf_swap_store_inject(rf_swap_pager_store(p), RF_SWAP_INJ_WRITE_EIO, 1);
	assert_int_equal(rf_swap_pager_swap_out(p, 0, 96, &done), -EIO);
	assert_log_contains(&log, "Input/output error");
	for (uint64_t i = 0; i < 96; i++)
		assert_true(check(ram + i * PG, i, 5));

	/* The per-VM cap: 4 pages. */
	assert_int_equal(rf_vm_set_swap_cap(vm, 4 * PG), 0);
	assert_int_equal(rf_swap_pager_swap_out(p, 0, 96, &done), -ENOSPC);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_int_equal(st.file_bytes, 0);
	for (uint64_t i = 0; i < 96; i++)
		assert_true(check(ram + i * PG, i, 5));
	rf_engine_free(e);
}

/* Excluded pages (pinned for a device), and pages another module owns or
 * the guest gave back (merged, ballooned), are never swapped. A page
 * reported free that holds data again was written by the guest since: it
 * is the guest's own memory again, and swapped like any other. */
static void test_never_swapped(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 64 * MiB, 16 * MiB);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	struct rf_pager *p = pager_of(vm);
	uint64_t done;

	(void)state;
	for (uint64_t i = 0; i < 16; i++)
		fill(ram + i * PG, 2 + 3 * i, 8);
	assert_int_equal(rf_vm_exclude_range(vm, 0, 4 * PG, true), 0);
	rf_test_set_state(vm, 4 * PG, RF_PAGE_MERGED);
	rf_test_set_state(vm, 5 * PG, RF_PAGE_BALLOONED);
	rf_test_set_state(vm, 6 * PG, RF_PAGE_FREE_REPORTED);
	assert_int_equal(rf_swap_pager_swap_out(p, 0, 16, &done), 0);
	assert_int_equal(done, 16 - 6);
	for (uint64_t i = 0; i < 4; i++)
		assert_int_equal(rf_vm_page_state(vm, i * PG), RF_PAGE_PRIVATE);
	assert_int_equal(rf_vm_page_state(vm, 4 * PG), RF_PAGE_MERGED);
	assert_int_equal(rf_vm_page_state(vm, 5 * PG), RF_PAGE_BALLOONED);
	assert_int_equal(rf_vm_page_state(vm, 6 * PG), RF_PAGE_SWAPPED);
	assert_int_equal(rf_vm_page_state(vm, 7 * PG), RF_PAGE_SWAPPED);
	for (uint64_t i = 0; i < 16; i++)
		assert_true(check(ram + i * PG, 2 + 3 * i, 8));
	rf_engine_free(e);
}

/* Unmapping a region frees the slots of its swapped pages; the store is
 * empty again. */
static void test_unmap_frees_slots(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 64 * MiB, 16 * MiB);
	struct rf_swap_stats st = {.size = sizeof(st)};
	struct rf_vm_config vc;
	struct rf_pager *p;
	uint8_t *a, *b;
	uint64_t done;
	rf_vm *vm;

	(void)state;
	rf_vm_config_init(&vc);
	vc.ram_bytes = 8 * MiB;
	assert_int_equal(rf_vm_new(e, "vm0", &vc, &vm), 0);
	assert_int_equal(rf_vm_map_ram(vm, 0, 4 * MiB, (void **)&a), 0);
	assert_int_equal(rf_vm_map_ram(vm, 4 * MiB, 4 * MiB, (void **)&b), 0);
	for (uint64_t i = 0; i < 64; i++) {
		fill(a + i * PG, 1 + 3 * i, 9);
		fill(b + i * PG, 2 + 3 * i, 9);
	}
	p = pager_of(vm);
	assert_int_equal(rf_swap_pager_swap_out(p, 0, 64, &done), 0);
	assert_int_equal(rf_swap_pager_swap_out(p, 4 * MiB, 64, &done), 0);
	assert_int_equal(rf_engine_swap_stats(e, &st), 0);
	assert_int_equal(st.file_bytes + st.tier_bytes, 128 * PG);
	assert_int_equal(rf_vm_unmap_ram(vm, 0), 0);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_int_equal(st.file_bytes + st.tier_bytes, 64 * PG);
	for (uint64_t i = 0; i < 64; i++)
		assert_true(check(b + i * PG, 2 + 3 * i, 9));
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_int_equal(st.file_bytes + st.tier_bytes, 0);
	rf_engine_free(e);
}

/* Sequential faults on pages that went to the file together are served
 * from the read-ahead cache. */
static void test_sequential_prefetch(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 64 * MiB, 0);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	struct rf_swap_stats st = {.size = sizeof(st)};
	struct rf_pager *p = pager_of(vm);
	uint64_t done;

	(void)state;
	for (uint64_t i = 0; i < 256; i++)
		fill(ram + i * PG, 2 + 3 * i, 7); /* random content: the file */
	assert_int_equal(rf_swap_pager_swap_out(p, 0, 256, &done), 0);
	assert_int_equal(done, 256);
	for (uint64_t i = 0; i < 256; i++)
		assert_true(check(ram + i * PG, 2 + 3 * i, 7));
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	print_message("sequential: %llu swap-ins, %llu prefetched, %llu hits\n",
		      (unsigned long long)st.swap_ins, (unsigned long long)st.prefetched,
		      (unsigned long long)st.prefetch_hits);
	assert_int_equal(st.swap_ins, 256);
	assert_true(st.prefetch_hits > 200);
	assert_true(st.prefetched >= st.prefetch_hits);
	rf_engine_free(e);
}

/* The swapper holds the VM to its target; the pages it keeps are the ones
 * being touched. */
static void test_target_keeps_hot_pages(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 256 * MiB, 0);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 32 * MiB, (void **)&ram);
	/* 4 MiB hot at the bottom, where the clock hand starts: it is marked,
	 * then swapped out once, then kept because it came back. */
	uint64_t n = 32 * MiB / PG, hot = 1024;
	struct rf_swap_stats st = {.size = sizeof(st)};
	struct rf_vm_stats vs = {.size = sizeof(vs)};
	uint64_t ins_before;

	(void)state;
	for (uint64_t i = 0; i < n; i++)
		fill(ram + i * PG, 2 + 3 * (i % 1000), 6); /* all random */
	assert_int_equal(rf_vm_set_swap_target(vm, 8 * MiB), 0);
	for (int round = 0; round < 150; round++) {
		for (uint64_t i = 0; i < hot; i++)
			ram[i * PG + 8]++;
		usleep(10000);
	}
	assert_int_equal(rf_vm_stats(vm, &vs), 0);
	assert_true(vs.resident_bytes <= 8 * MiB + 2 * MiB);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	ins_before = st.swap_ins;
	for (int round = 0; round < 50; round++) {
		for (uint64_t i = 0; i < hot; i++)
			ram[i * PG + 8]++;
		usleep(10000);
	}
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	print_message("target 8 MiB: resident %llu KiB, swap-outs %llu, swap-ins %llu (last 50 "
		      "rounds: %llu)\n",
		      (unsigned long long)vs.resident_bytes >> 10, (unsigned long long)st.swap_outs,
		      (unsigned long long)st.swap_ins,
		      (unsigned long long)(st.swap_ins - ins_before));
	/* Once settled, the hot set stays in. */
	assert_true(st.swap_ins - ins_before < hot / 10);
	assert_int_equal(rf_vm_set_swap_target(vm, RF_SWAP_NO_TARGET), 0);
	for (uint64_t i = hot; i < n; i++)
		assert_true(check(ram + i * PG, 2 + 3 * (i % 1000), 6));
	rf_engine_free(e);
}

/* Pages of [@p, @p + @len) the kernel has in memory. */
static uint64_t resident_pages(const void *p, size_t len)
{
	static unsigned char vec[256 * MiB / PG];
	uint64_t n = 0;

	assert_true(len / PG <= sizeof(vec));
	assert_int_equal(mincore((void *)p, len, vec), 0);
	for (size_t i = 0; i < len / PG; i++)
		n += vec[i] & 1;
	return n;
}

/*
 * A VM that writes fresh memory faster than the swapper evicts, under a
 * target set before it starts: its first writes must wait for room as its
 * swap-ins do, so it never gets past the throttle line (target + 4 MiB
 * here) by more than the pager's lag. Without that rule the writer below,
 * which writes 128 MiB at memory speed, had all 128 MiB resident (8 times
 * its target) before the swapper's first round. And nothing written is
 * lost.
 */
static void test_first_writes_wait_for_room(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 256 * MiB, 0);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 128 * MiB, (void **)&ram);
	uint64_t n = 128 * MiB / PG, max_res = 0, bad = 0, t0;
	struct rf_swap_stats st = {.size = sizeof(st)};

	(void)state;
	assert_int_equal(rf_vm_set_swap_target(vm, 16 * MiB), 0);
	t0 = rf_test_now_ms();
	for (uint64_t i = 0; i < n; i++) {
		fill(ram + i * PG, 2 + 3 * i, 7); /* random: none is zero */
		if ((i & 255) == 255) {
			uint64_t res = resident_pages(ram, 128 * MiB);

			max_res = res > max_res ? res : max_res;
		}
	}
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	print_message("128 MiB written under a 16 MiB target in %llu ms: resident at most %llu "
		      "KiB; swap-outs %llu, first-write fills %llu\n",
		      (unsigned long long)(rf_test_now_ms() - t0),
		      (unsigned long long)(max_res * PG >> 10), (unsigned long long)st.swap_outs,
		      (unsigned long long)st.zero_fills);
	assert_true(max_res * PG <= 16 * MiB + 4 * MiB + 2 * MiB);
	assert_true(st.swap_outs >= (128 - 22) * MiB / PG);
	for (uint64_t i = 0; i < n; i++)
		bad += !check(ram + i * PG, 2 + 3 * i, 7);
	assert_int_equal(bad, 0);
	rf_engine_free(e);
}

/*
 * Dedup and swap on one VM: dedup maps store pages over guest RAM and, when
 * a merged page is written, remaps a private copy and registers that range
 * again. A chunk swap had registered for missing faults must keep them, or
 * a page swapped out of it later reads back as zeros (the kernel fills an
 * unregistered hole itself). Merge, unmerge by writing, swap out, read back.
 */
static void test_swap_after_dedup_remaps(void **state)
{
	struct rf_dedup_config dc;
	struct rf_dedup_vm_stats ds = {.size = sizeof(ds)};
	rf_engine *e = rf_test_swap_engine(NULL, false, 64 * MiB, 0);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	uint64_t done = 0, bad = 0;
	struct rf_pager *p;

	(void)state;
	/* Pages 256-511 duplicate 0-255 (all non-zero, all distinct). */
	for (uint64_t i = 0; i < 512; i++)
		for (unsigned int k = 0; k < PG; k += 8)
			*(uint64_t *)(ram + i * PG + k) = ((i % 256) + 1) * 0x100000001ull + k;
	p = pager_of(vm);
	/* Swap out and back in in this chunk, so swap has registered it. */
	assert_int_equal(rf_swap_pager_swap_out(p, 100 * PG, 4, &done), 0);
	assert_int_equal(done, 4);
	assert_int_equal(*(uint64_t *)(ram + 100 * PG), 101 * 0x100000001ull);
	rf_dedup_config_init(&dc);
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	for (int t = 0; t < 2000; t++) {
		assert_int_equal(rf_dedup_vm_stats(vm, &ds), 0);
		if (ds.pages_sharing >= 256)
			break;
		usleep(10000);
	}
	assert_true(ds.pages_sharing >= 256);
	/* Writes unmerge: each page gets a private copy, remapped. */
	for (uint64_t i = 256; i < 512; i++)
		*(uint64_t *)(ram + i * PG) = 0xabcdef00 + i;
	rf_dedup_stop(e);
	assert_int_equal(rf_swap_pager_swap_out(p, 256 * PG, 256, &done), 0);
	assert_true(done > 200);
	for (uint64_t i = 256; i < 512; i++)
		bad += *(uint64_t *)(ram + i * PG) != 0xabcdef00 + i ||
		       *(uint64_t *)(ram + i * PG + 8) != ((i % 256) + 1) * 0x100000001ull + 8;
	assert_int_equal(bad, 0);
	rf_engine_free(e);
}

/*
 * Merged pages do not count against a resident target (swap cannot evict
 * them; the ledger charges their fair part): a VM whose private memory fits
 * its target loses nothing to swap, however much of it is merged, and a
 * lower target is met from the private pages alone. Before this rule the
 * swapper counted the 12 MiB merged below at full size, swapped out every
 * private page and still sat above an 8 MiB target.
 */
static void test_target_leaves_merged_out(void **state)
{
	struct rf_test_log log;
	struct rf_dedup_config dc;
	struct rf_dedup_vm_stats ds = {.size = sizeof(ds)};
	rf_engine *e = rf_test_swap_engine(&log, false, 64 * MiB, 0);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 16 * MiB, (void **)&ram);
	uint64_t n = 16 * MiB / PG, priv = 1024, bad = 0;
	struct rf_swap_stats st = {.size = sizeof(st)};
	struct rf_pager *p = pager_of(vm);

	(void)state;
	/* 4 MiB of random pages, then 12 MiB of 12 copies of 256 pages. */
	for (uint64_t i = 0; i < n; i++)
		fill(ram + i * PG, i < priv ? 2 + 3 * i : 2 + 3 * (100000 + i % 256), 8);
	rf_dedup_config_init(&dc);
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	for (int t = 0; t < 2000; t++) {
		assert_int_equal(rf_dedup_vm_stats(vm, &ds), 0);
		if (ds.pages_sharing >= n - priv)
			break;
		usleep(10000);
	}
	assert_int_equal(ds.pages_sharing, n - priv);
	assert_int_equal(rf_vm_set_swap_target(vm, 8 * MiB), 0);
	rf_test_sleep_ms(300);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	print_message("8 MiB target, 4 MiB private + 12 MiB merged: %llu swap-outs\n",
		      (unsigned long long)st.swap_outs);
	assert_int_equal(st.swap_outs, 0);
	assert_int_equal(atomic_load(&p->targets_unmet), 0);
	/* Below the private memory: met from private pages, merged ones stay. */
	assert_int_equal(rf_vm_set_swap_target(vm, 2 * MiB), 0);
	rf_test_sleep_ms(300);
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_int_equal(rf_dedup_vm_stats(vm, &ds), 0);
	print_message("2 MiB target: %llu swap-outs, resident estimate %llu KiB, %llu merged\n",
		      (unsigned long long)st.swap_outs,
		      (unsigned long long)atomic_load(&p->resident_est) >> 10,
		      (unsigned long long)ds.pages_sharing);
	assert_true(st.swap_outs >= (4 - 2) * MiB / PG);
	assert_true(atomic_load(&p->resident_est) <= 2 * MiB + 1 * MiB);
	assert_int_equal(ds.pages_sharing, n - priv);
	assert_int_equal(atomic_load(&p->targets_unmet), 0);
	assert_int_equal(rf_vm_set_swap_target(vm, RF_SWAP_NO_TARGET), 0);
	for (uint64_t i = 0; i < n; i++)
		bad += !check(ram + i * PG, i < priv ? 2 + 3 * i : 2 + 3 * (100000 + i % 256), 8);
	assert_int_equal(bad, 0);
	rf_dedup_stop(e);
	rf_engine_free(e);
}

/*
 * A target that cannot be met is said: once per episode, naming the VM and
 * why. Here 12 of 16 MiB are excluded from swap under a 4 MiB target.
 */
static void test_unreachable_target_is_reported(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_swap_engine(&log, false, 64 * MiB, 0);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm7", 16 * MiB, (void **)&ram);
	uint64_t n = 16 * MiB / PG;
	struct rf_pager *p = pager_of(vm);

	(void)state;
	for (uint64_t i = 0; i < n; i++)
		fill(ram + i * PG, 2 + 3 * i, 9);
	assert_int_equal(rf_vm_exclude_range(vm, 4 * MiB, 12 * MiB, true), 0);
	assert_int_equal(rf_vm_set_swap_target(vm, 4 * MiB), 0);
	rf_test_sleep_ms(400);
	print_message("log: %s\n", log.last);
	assert_int_equal(atomic_load(&p->targets_unmet), 1);
	assert_log_contains(&log, "vm7: swap: resident target 4.0 MiB not reachable");
	assert_log_contains(&log, "excluded from swap");
	/* Met again (a higher target): the episode ends; the next one is said. */
	assert_int_equal(rf_vm_set_swap_target(vm, 32 * MiB), 0);
	rf_test_sleep_ms(100);
	assert_false(atomic_load(&p->target_unmet));
	assert_int_equal(rf_vm_set_swap_target(vm, 2 * MiB), 0);
	rf_test_sleep_ms(200);
	assert_int_equal(atomic_load(&p->targets_unmet), 2);
	assert_log_contains(&log, "vm7: swap: resident target 2.0 MiB not reachable");
	assert_int_equal(rf_vm_set_swap_target(vm, RF_SWAP_NO_TARGET), 0);
	for (uint64_t i = 0; i < n; i++)
		assert_true(check(ram + i * PG, 2 + 3 * i, 9));
	rf_engine_free(e);
}

/* The fault thread takes SLOW_MS longer over every fault on [slow_lo,
 * slow_hi): time the faulting thread waits, which its VM's stall must hold. */
#define SLOW_MS 2
static uint64_t slow_lo, slow_hi;

static void slow_dispatch(const char *where, void *arg)
{
	const struct uffd_msg *m = arg;

	if (strcmp(where, "uffd.dispatch") == 0 && m->event == UFFD_EVENT_PAGEFAULT &&
	    m->arg.pagefault.address >= slow_lo && m->arg.pagefault.address < slow_hi)
		rf_test_sleep_ms(SLOW_MS);
}

static uint64_t mono_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * The fault stall (rf_swap_stats.stall_ns): a thread reads N swapped-out
 * pages, one fault each, while every fault is made SLOW_MS slower: the
 * VM's stall grows by at least N * SLOW_MS and by no more than the wall
 * time the thread spent (one thread waits at most that long), and its
 * stall_faults by exactly N. A VM that never faults keeps 0, and the
 * engine's sum is the two VMs'.
 */
static void test_fault_stall(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 64 * MiB, 16 * MiB);
	uint8_t *ram, *quiet_ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	rf_vm *quiet = rf_test_vm(e, "quiet", 4 * MiB, (void **)&quiet_ram);
	struct rf_swap_stats a = {.size = sizeof(a)}, b = {.size = sizeof(b)};
	struct rf_swap_stats q = {.size = sizeof(q)}, all = {.size = sizeof(all)};
	const uint64_t n = 64;
	uint64_t done, t0, wall;
	struct rf_pager *p;

	(void)state;
	for (uint64_t i = 0; i < n; i++)
		fill(ram + i * PG, i, 11);
	memset(quiet_ram, 1, 16 * PG); /* resident, never swapped: no fault */
	p = pager_of(vm);
	assert_int_equal(rf_swap_pager_swap_out(p, 0, n, &done), 0);
	assert_int_equal(done, n);
	assert_int_equal(rf_vm_swap_stats(vm, &a), 0);
	slow_lo = (uintptr_t)ram;
	slow_hi = slow_lo + n * PG;
	rf_test_point = slow_dispatch;
	t0 = mono_ns();
	for (uint64_t i = 0; i < n; i++)
		if (!check(ram + i * PG, i, 11))
			fail_msg("page %llu differs after swap-in", (unsigned long long)i);
	wall = mono_ns() - t0;
	rf_test_point = NULL;
	assert_int_equal(rf_vm_swap_stats(vm, &b), 0);
	print_message("stall: %llu faults, %.2f ms waited in %.2f ms (at least %llu ms)\n",
		      (unsigned long long)(b.stall_faults - a.stall_faults),
		      (double)(b.stall_ns - a.stall_ns) / 1e6, (double)wall / 1e6,
		      (unsigned long long)(n * SLOW_MS));
	/* One fault a page, but a swap-in may bring a neighbour in with it
	 * (no fault left for that one): at most n, each at least SLOW_MS. */
	assert_true(b.stall_faults - a.stall_faults >= 1 && b.stall_faults - a.stall_faults <= n);
	assert_true(b.stall_ns - a.stall_ns >=
		    (b.stall_faults - a.stall_faults) * SLOW_MS * 1000000ull);
	assert_true(b.stall_ns - a.stall_ns <= wall);
	/* No more counted than the swap-ins and zero fills answered. */
	assert_true(b.stall_faults - a.stall_faults <=
		    b.swap_ins + b.zero_fills - a.swap_ins - a.zero_fills);

	assert_int_equal(rf_vm_swap_stats(quiet, &q), 0);
	assert_int_equal(q.stall_ns, 0);
	assert_int_equal(q.stall_faults, 0);
	assert_int_equal(rf_engine_swap_stats(e, &all), 0);
	assert_int_equal(all.stall_ns, b.stall_ns);
	assert_int_equal(all.stall_faults, b.stall_faults);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_swap_out_and_in),
	    cmocka_unit_test(test_discarded_pages_read_zero),
	    cmocka_unit_test(test_bad_page_stops_vm),
	    cmocka_unit_test(test_enospc_and_cap_lose_nothing),
	    cmocka_unit_test(test_refused_page_discarded_outside),
	    cmocka_unit_test(test_never_swapped),
	    cmocka_unit_test(test_unmap_frees_slots),
	    cmocka_unit_test(test_sequential_prefetch),
	    cmocka_unit_test(test_target_keeps_hot_pages),
	    cmocka_unit_test(test_first_writes_wait_for_room),
	    cmocka_unit_test(test_swap_after_dedup_remaps),
	    cmocka_unit_test(test_target_leaves_merged_out),
	    cmocka_unit_test(test_unreachable_target_is_reported),
	    cmocka_unit_test(test_fault_stall),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
