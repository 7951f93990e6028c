/* SPDX-License-Identifier: MIT */
/*
 * The embedder's share of the VM's userfaultfd (rf_vm_set_fault_handler,
 * rf_vm_uffd_fd, rf_vm_adopt_uffd): a lazy snapshot restore, as
 * Firecracker's UFFD handler does it, on the same VM as dedup and swap.
 * The test's threads play the vCPUs, touching guest RAM directly; the
 * handler fills each page from a "snapshot" buffer when it is first touched.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "internal.h"
#include "rf_test.h"
#include "uffd.h"

#define MiB (1ull << 20)
#define PG  RF_PAGE_SIZE

/* Snapshot pages by index: every 8th a hole (the handler asks for zeros),
 * every 4th else one of 4 shared contents (so dedup merges them), the rest
 * unique. Generation @gen > 0: what the test's writers put there. */
static void fill(uint8_t *p, uint64_t i, uint32_t gen)
{
	uint64_t seed = gen == 0 && i % 4 == 1 ? 1000 + i % 16 / 4 : i;

	if (gen == 0 && i % 8 == 0) {
		memset(p, 0, PG);
		return;
	}
	for (unsigned int k = 0; k < PG; k += 8) {
		uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)gen << 40) ^ k;

		memcpy(p + k, &x, 8);
	}
}

static bool check(const uint8_t *p, uint64_t i, uint32_t gen)
{
	uint8_t want[PG];

	fill(want, i, gen);
	return memcmp(p, want, PG) == 0;
}

/* The embedder's restore: a snapshot in memory, a call count per page. */
struct restore {
	uint8_t *snap;
	uint64_t npages;
	_Atomic uint32_t *calls;
	_Atomic uint64_t eagain;
	int fail_idx; /* a page whose load fails (-EIO), or -1 */
	bool no_fill; /* return 0 without filling (a buggy handler) */
};

static int restore_page(rf_vm *vm, uint64_t gpa, void *hva, unsigned int flags, void *arg)
{
	struct restore *rs = arg;
	uint64_t i = gpa / PG;
	/* DONTWAKE: the library wakes the faulting thread once it has counted
	 * and unlocked the page (a handler that wakes is fine too). */
	struct uffdio_copy c = {
	    .dst = (uintptr_t)hva, .len = PG, .mode = UFFDIO_COPY_MODE_DONTWAKE};

	(void)flags;
	if (gpa == RF_VM_GPA_NONE || i >= rs->npages)
		return -EFAULT;
	atomic_fetch_add(&rs->calls[i], 1);
	if ((int)i == rs->fail_idx)
		return -EIO;
	if (rs->no_fill)
		return 0;
	if (i % 8 == 0)
		return RF_VM_FAULT_ZERO; /* a hole in the snapshot */
	c.src = (uintptr_t)(rs->snap + i * PG);
	if (ioctl(rf_vm_uffd_fd(vm), UFFDIO_COPY, &c) != 0) {
		if (errno == EAGAIN) {
			/* An event is pending: the fault thread must read it first. */
			atomic_fetch_add(&rs->eagain, 1);
			return -EAGAIN;
		}
		if (errno != EEXIST)
			return -errno;
	}
	return 0;
}

static void restore_init(struct restore *rs, uint64_t npages)
{
	memset(rs, 0, sizeof(*rs));
	rs->npages = npages;
	rs->fail_idx = -1;
	rs->snap =
	    mmap(NULL, npages * PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	assert_true(rs->snap != MAP_FAILED);
	rs->calls = calloc(npages, sizeof(*rs->calls));
	assert_non_null(rs->calls);
	for (uint64_t i = 0; i < npages; i++)
		fill(rs->snap + i * PG, i, 0);
}

static void restore_destroy(struct restore *rs)
{
	munmap(rs->snap, rs->npages * PG);
	free(rs->calls);
}

static struct rf_uffd_stats uffd_stats(rf_vm *vm)
{
	struct rf_uffd_stats st;

	rf_uffd_stats(rf_uffd_of(vm), &st);
	return st;
}

static rf_engine *uffd_engine(struct rf_test_log *log)
{
	rf_engine *e = rf_test_engine(log);
	struct rf_features f = {.size = sizeof(f)};

	rf_engine_features(e, &f);
	if (!f.uffd || !f.uffd_wp || !f.uffd_event_remove) {
		rf_engine_free(e);
		rf_require(false, "userfaultfd with write-protect and UFFD_EVENT_REMOVE needed");
	}
	return e;
}

/* Every page reads as the snapshot, each restored once, on first touch;
 * holes read as zeros; a page never touched is never asked for. */
static void test_restore_on_demand(void **state)
{
	struct rf_test_log log = {0};
	rf_engine *e = uffd_engine(&log);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	uint64_t n = 4 * MiB / PG;
	struct restore rs;
	struct rf_uffd_stats st;
	int fd;

	(void)state;
	restore_init(&rs, n);
	assert_int_equal(rf_vm_set_fault_handler(vm, restore_page, &rs), 0);
	fd = rf_vm_uffd_fd(vm);
	assert_true(fd >= 0);
	assert_int_equal(rf_vm_uffd_fd(vm), fd); /* the same, opened once */
	/* The embedder cannot register its own: the range is the library's. */
	{
		int own = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
		struct uffdio_api api = {.api = UFFD_API};
		struct uffdio_register reg = {.range = {(uintptr_t)ram, PG},
					      .mode = UFFDIO_REGISTER_MODE_MISSING};

		if (own >= 0) {
			assert_int_equal(ioctl(own, UFFDIO_API, &api), 0);
			assert_int_equal(ioctl(own, UFFDIO_REGISTER, &reg), -1);
			assert_int_equal(errno, EBUSY);
			close(own);
		}
	}
	/* Backwards, so that nothing reads ahead in order. */
	for (uint64_t i = n - 1; i >= 1; i--)
		if (!check(ram + i * PG, i, 0))
			fail_msg("page %llu is not the snapshot's", (unsigned long long)i);
	for (uint64_t i = 1; i < n; i++)
		assert_int_equal(atomic_load(&rs.calls[i]), 1);
	assert_int_equal(atomic_load(&rs.calls[0]), 0); /* never touched */
	st = uffd_stats(vm);
	assert_int_equal(st.foreign_zero, (n - 1) / 8);
	assert_int_equal(st.foreign_fills, n - 1 - (n - 1) / 8);
	assert_int_equal(st.foreign_errors, 0);
	/* A write to a restored page stays; page 0 is written without a read. */
	ram[5 * PG] = 0x5a;
	ram[0] = 1;
	assert_int_equal(atomic_load(&rs.calls[0]), 1);
	assert_int_equal(ram[5 * PG], 0x5a);
	assert_int_equal(ram[0], 1);
	assert_true(check(ram + 6 * PG, 6, 0));
	assert_int_equal(rf_vm_page_state(vm, 5 * PG), RF_PAGE_PRIVATE);
	restore_destroy(&rs);
	rf_engine_free(e);
}

/* A page discarded before it was restored reads as zeros, whoever discarded
 * it (rf_vm_discard, or the embedder's raw madvise seen as a REMOVE event):
 * the snapshot's content is no longer wanted there. */
static void test_discarded_page_not_restored(void **state)
{
	rf_engine *e = uffd_engine(NULL);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 1 * MiB, (void **)&ram);
	struct restore rs;

	(void)state;
	restore_init(&rs, 1 * MiB / PG);
	assert_int_equal(rf_vm_set_fault_handler(vm, restore_page, &rs), 0);
	assert_int_equal(rf_vm_discard(vm, 8 * PG, 4 * PG, NULL), 0);
	assert_int_equal(madvise(ram + 20 * PG, 2 * PG, MADV_DONTNEED), 0);
	for (uint64_t i = 8; i < 12; i++) {
		for (unsigned int k = 0; k < PG; k++)
			assert_int_equal(ram[i * PG + k], 0);
		assert_int_equal(atomic_load(&rs.calls[i]), 0);
	}
	for (uint64_t i = 20; i < 22; i++) {
		for (unsigned int k = 0; k < PG; k++)
			assert_int_equal(ram[i * PG + k], 0);
		assert_int_equal(atomic_load(&rs.calls[i]), 0);
	}
	assert_true(check(ram + 13 * PG, 13, 0));
	/* Once restored, a page discarded later reads as zeros too. */
	assert_int_equal(rf_vm_discard(vm, 13 * PG, PG, NULL), 0);
	for (unsigned int k = 0; k < PG; k++)
		assert_int_equal(ram[13 * PG + k], 0);
	assert_int_equal(atomic_load(&rs.calls[13]), 1);
	/* Removing the handler: pages not restored yet fault in as zeros. */
	assert_int_equal(rf_vm_set_fault_handler(vm, NULL, NULL), 0);
	for (unsigned int k = 0; k < PG; k++)
		assert_int_equal(ram[30 * PG + k], 0);
	assert_int_equal(atomic_load(&rs.calls[30]), 0);
	restore_destroy(&rs);
	rf_engine_free(e);
}

struct reader {
	const volatile uint8_t *p;
	_Atomic bool done;
	uint8_t first;
};

static void *read_page(void *arg)
{
	struct reader *rd = arg;

	rd->first = rd->p[0];
	atomic_store(&rd->done, true);
	return NULL;
}

/* A page the handler cannot load leaves its reader blocked (never running
 * on with zeros), logged and counted; loading it later wakes the reader
 * onto the right content. A handler that says "filled" without filling is
 * an error too, not a silent zero page. */
static void test_handler_failure_blocks(void **state)
{
	struct rf_test_log log = {0};
	rf_engine *e = uffd_engine(&log);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 1 * MiB, (void **)&ram);
	struct restore rs;
	struct reader rd = {0};
	pthread_t t;
	struct uffdio_copy c;

	(void)state;
	restore_init(&rs, 1 * MiB / PG);
	rs.fail_idx = 3;
	assert_int_equal(rf_vm_set_fault_handler(vm, restore_page, &rs), 0);
	rd.p = ram + 3 * PG;
	assert_int_equal(pthread_create(&t, NULL, read_page, &rd), 0);
	for (int ms = 0; ms < 2000 && !uffd_stats(vm).foreign_errors; ms += 10)
		rf_test_sleep_ms(10);
	rf_test_sleep_ms(100);
	assert_int_equal(uffd_stats(vm).foreign_errors, 1);
	assert_false(atomic_load(&rd.done));
	assert_log_contains(&log, "vm0: fault handler: gpa 0x3000");
	assert_log_contains(&log, "stays blocked");
	/* The embedder loads it after all, and wakes the reader. */
	c = (struct uffdio_copy){
	    .dst = (uintptr_t)(ram + 3 * PG), .src = (uintptr_t)(rs.snap + 3 * PG), .len = PG};
	assert_int_equal(ioctl(rf_vm_uffd_fd(vm), UFFDIO_COPY, &c), 0);
	pthread_join(t, NULL);
	assert_true(atomic_load(&rd.done));
	assert_true(check(ram + 3 * PG, 3, 0));

	rs.no_fill = true;
	rd = (struct reader){.p = ram + 5 * PG};
	assert_int_equal(pthread_create(&t, NULL, read_page, &rd), 0);
	for (int ms = 0; ms < 2000 && uffd_stats(vm).foreign_errors < 2; ms += 10)
		rf_test_sleep_ms(10);
	assert_int_equal(uffd_stats(vm).foreign_errors, 2);
	assert_log_contains(&log, "returned 0 but did not fill the page");
	assert_false(atomic_load(&rd.done));
	c = (struct uffdio_copy){
	    .dst = (uintptr_t)(ram + 5 * PG), .src = (uintptr_t)(rs.snap + 5 * PG), .len = PG};
	assert_int_equal(ioctl(rf_vm_uffd_fd(vm), UFFDIO_COPY, &c), 0);
	pthread_join(t, NULL);
	assert_true(check(ram + 5 * PG, 5, 0));
	restore_destroy(&rs);
	rf_engine_free(e);
}

/* The embedder's own descriptor, handed in: the library reads it and
 * faults reach the handler. Bad descriptors are refused with the reason. */
static void test_adopt_uffd(void **state)
{
	struct rf_test_log log = {0};
	rf_engine *e = uffd_engine(&log);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 1 * MiB, (void **)&ram);
	rf_vm *vm1 = rf_test_vm(e, "vm1", 1 * MiB, NULL);
	int own = (int)syscall(SYS_userfaultfd, O_CLOEXEC), efd, used;
	struct uffdio_api api = {.api = UFFD_API};
	struct restore rs;

	(void)state;
	rf_require(own >= 0, "userfaultfd(2) not permitted to this process");
	restore_init(&rs, 1 * MiB / PG);
	assert_int_equal(rf_vm_adopt_uffd(NULL, own), -EINVAL);
	assert_int_equal(rf_vm_adopt_uffd(vm, -1), -EINVAL);
	/* Not a userfaultfd. */
	efd = eventfd(0, EFD_CLOEXEC);
	assert_int_equal(rf_vm_adopt_uffd(vm, efd), -EINVAL);
	assert_log_contains(&log, "not a userfaultfd");
	close(efd);
	assert_null(rf_uffd_of(vm)); /* nothing left behind */
	/* Already initialised by the embedder. */
	used = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	assert_true(used >= 0);
	assert_int_equal(ioctl(used, UFFDIO_API, &api), 0);
	assert_int_equal(rf_vm_adopt_uffd(vm, used), -EINVAL);
	assert_log_contains(&log, "UFFDIO_API was already called");
	close(used);
	assert_null(rf_uffd_of(vm));

	assert_int_equal(rf_vm_adopt_uffd(vm, own), 0);
	assert_int_equal(rf_vm_set_fault_handler(vm, restore_page, &rs), 0);
	for (uint64_t i = 1; i < 64; i++)
		assert_true(check(ram + i * PG, i, 0));
	assert_int_equal(atomic_load(&rs.calls[7]), 1);
	/* The embedder's descriptor and the library's are one context. */
	{
		struct uffdio_copy c = {.dst = (uintptr_t)(ram + 100 * PG),
					.src = (uintptr_t)(rs.snap + 100 * PG),
					.len = PG};

		assert_int_equal(ioctl(own, UFFDIO_COPY, &c), 0);
		assert_true(check(ram + 100 * PG, 100, 0));
		assert_int_equal(atomic_load(&rs.calls[100]), 0);
	}
	close(own); /* the library keeps its duplicate */
	assert_true(check(ram + 101 * PG, 101, 0));
	/* Once the VM has a descriptor, another cannot be handed in. */
	own = (int)syscall(SYS_userfaultfd, O_CLOEXEC);
	assert_int_equal(rf_vm_adopt_uffd(vm, own), -EBUSY);
	assert_log_contains(&log, "vm0: adopt userfaultfd: the VM has its userfaultfd already");
	/* vm1 has the library's own descriptor already (the handler opened it). */
	assert_int_equal(rf_vm_set_fault_handler(vm1, restore_page, &rs), 0);
	assert_int_equal(rf_vm_adopt_uffd(vm1, own), -EBUSY);
	close(own);
	assert_int_equal(rf_vm_set_fault_handler(NULL, restore_page, &rs), -EINVAL);
	assert_int_equal(rf_vm_uffd_fd(NULL), -EINVAL);
	restore_destroy(&rs);
	rf_engine_free(e);
}

/* The handler may not change handlers from inside: -EDEADLK, not a hang. */
static _Atomic int inner_ret = 1;

static int reentrant(rf_vm *vm, uint64_t gpa, void *hva, unsigned int flags, void *arg)
{
	(void)gpa;
	(void)hva;
	(void)flags;
	(void)arg;
	atomic_store(&inner_ret, rf_vm_set_fault_handler(vm, NULL, NULL));
	return RF_VM_FAULT_ZERO;
}

static void test_handler_reentry_refused(void **state)
{
	rf_engine *e = uffd_engine(NULL);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 1 * MiB, (void **)&ram);

	(void)state;
	assert_int_equal(rf_vm_set_fault_handler(vm, reentrant, NULL), 0);
	assert_int_equal(ram[PG], 0);
	assert_int_equal(atomic_load(&inner_ret), -EDEADLK);
	rf_engine_free(e);
}

/*
 * The restore runs while dedup merges and swap swaps the same VM: writer
 * threads (the vCPUs) read every page, which restores it, and rewrite some;
 * the first pass stops halfway until pages have been merged and swapped.
 * Afterwards every page is as the snapshot or as its writer left it.
 */
#define NT 2

struct rw {
	uint8_t *ram;
	uint64_t n;
	unsigned int id;
	uint32_t *gen; /* per page, owned by thread id = page % NT */
	_Atomic bool *halfway;
	_Atomic bool *go_on;
	_Atomic uint64_t *bad;
};

static void *rw_main(void *arg)
{
	struct rw *w = arg;
	uint64_t x = 0x12345 + w->id, mine = w->n / NT;

	for (unsigned int round = 0; round < 3; round++) {
		for (uint64_t k = 0; k < mine; k++) {
			uint64_t i;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			/* Round 0 goes through every page once, in a random
			 * walk of stride 2 primes; later rounds at random. */
			i = round == 0 ? (k * 7919 % mine) * NT + w->id : (x % mine) * NT + w->id;
			if (round == 0 && k == mine / 2) {
				atomic_store(&w->halfway[w->id], true);
				while (!atomic_load(w->go_on))
					rf_test_sleep_ms(1);
			}
			if (!check(w->ram + i * PG, i, w->gen[i])) {
				if (atomic_fetch_add(w->bad, 1) < 5)
					fprintf(stderr, "page %llu gen %u lost\n",
						(unsigned long long)i, w->gen[i]);
			}
			if (i % 4 == 3) {
				w->gen[i]++;
				fill(w->ram + i * PG, i, w->gen[i]);
			}
		}
	}
	return NULL;
}

static void test_restore_with_dedup_and_swap(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 64 * MiB, 4 * MiB);
	uint64_t n = 16 * MiB / PG;
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 16 * MiB, (void **)&ram);
	struct rf_dedup_config dc;
	struct rf_dedup_stats ds = {.size = sizeof(ds)};
	struct rf_swap_stats ss = {.size = sizeof(ss)};
	struct rf_audit_report rep = {.size = sizeof(rep)};
	struct rf_uffd_stats us;
	struct restore rs;
	struct rw w[NT];
	pthread_t t[NT];
	uint32_t *gen = calloc(n, sizeof(*gen));
	_Atomic bool halfway[NT] = {false}, go_on = false;
	_Atomic uint64_t bad = 0;
	uint64_t lost = 0;

	(void)state;
	assert_non_null(gen);
	restore_init(&rs, n);
	/* As a VMM restores: the handler first, then dedup and swap. */
	assert_int_equal(rf_vm_set_fault_handler(vm, restore_page, &rs), 0);
	rf_dedup_config_init(&dc);
	dc.fastest = true;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_int_equal(rf_vm_set_swap_target(vm, 1 * MiB),
			 0); /* below the private half: merged pages do not count */
	for (unsigned int k = 0; k < NT; k++) {
		w[k] = (struct rw){.ram = ram,
				   .n = n,
				   .id = k,
				   .gen = gen,
				   .halfway = halfway,
				   .go_on = &go_on,
				   .bad = &bad};
		assert_int_equal(pthread_create(&t[k], NULL, rw_main, &w[k]), 0);
	}
	for (unsigned int k = 0; k < NT; k++)
		while (!atomic_load(&halfway[k]))
			rf_test_sleep_ms(1);
	/* Halfway through the restore: wait until pages are merged and
	 * swapped, so both happen while half of RAM is still the snapshot's. */
	for (unsigned int ms = 0; ms < 20000; ms += 10) {
		assert_int_equal(rf_dedup_counters(e, &ds), 0);
		assert_int_equal(rf_vm_swap_stats(vm, &ss), 0);
		if (ds.pages_merged > 0 && ss.swap_outs > 0)
			break;
		rf_dedup_scan_now(e);
		rf_test_sleep_ms(10);
	}
	us = uffd_stats(vm);
	assert_true(ds.pages_merged > 0);
	assert_true(ss.swap_outs > 0);
	assert_true(us.foreign_fills + us.foreign_zero < n); /* restore not finished */
	atomic_store(&go_on, true);
	for (unsigned int k = 0; k < NT; k++)
		pthread_join(t[k], NULL);
	assert_int_equal(atomic_load(&bad), 0);
	for (uint64_t i = 0; i < n; i++)
		if (!check(ram + i * PG, i, gen[i])) {
			if (lost++ < 5)
				fprintf(stderr, "page %llu gen %u lost at the end\n",
					(unsigned long long)i, gen[i]);
		}
	assert_int_equal(lost, 0);
	for (uint64_t i = 0; i < n; i++)
		assert_true(atomic_load(&rs.calls[i]) <= 1);
	us = uffd_stats(vm);
	assert_int_equal(us.foreign_errors, 0);
	assert_true(us.foreign_fills + us.foreign_zero > n / 2);
	assert_int_equal(rf_vm_swap_stats(vm, &ss), 0);
	assert_int_equal(rf_dedup_counters(e, &ds), 0);
	print_message("restore: %llu filled, %llu zero; dedup merged %llu; swap out %llu in %llu\n",
		      (unsigned long long)us.foreign_fills, (unsigned long long)us.foreign_zero,
		      (unsigned long long)ds.pages_merged, (unsigned long long)ss.swap_outs,
		      (unsigned long long)ss.swap_ins);
	assert_int_equal(rf_vm_audit(vm, &rep, 0), 0);
	restore_destroy(&rs);
	free(gen);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_restore_on_demand),
	    cmocka_unit_test(test_discarded_page_not_restored),
	    cmocka_unit_test(test_handler_failure_blocks),
	    cmocka_unit_test(test_adopt_uffd),
	    cmocka_unit_test(test_handler_reentry_refused),
	    cmocka_unit_test(test_restore_with_dedup_and_swap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
