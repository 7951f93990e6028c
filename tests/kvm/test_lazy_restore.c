/* SPDX-License-Identifier: MIT */
/*
 * A lazy snapshot restore under a real vCPU, on a VM that dedup and swap
 * work on at the same time: the embedder's fault handler
 * (rf_vm_set_fault_handler) loads each page of guest RAM from a snapshot
 * file when it is first touched, as Firecracker's UFFD handler does, while
 * the vCPU (the minimal real-mode writer guest, itself restored from the
 * snapshot: its code page faults in on the first instruction fetch) rewrites
 * a counter word in 128 pages round after round, a host thread reads the
 * rest of RAM (restoring it) and swaps pages out, and the dedup engine
 * merges the pages that look alike. After every round the host checks the
 * writer's pages; at the end every page is as the snapshot left it or as
 * the guest wrote it: 0 lost writes, 0 pages restored twice.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <linux/userfaultfd.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "kvm_mini.h"
#include "rf_test.h"
#include "swap_pager.h"
#include "uffd.h"

#define PG	   4096u
#define RAM	   (2u << 20)
#define NPG	   (RAM / PG)
#define NPAGES	   RF_KVM_WRITER_NPAGES
#define FIRST_PAGE RF_KVM_WRITER_FIRST_PAGE
#define WORD_OFF   RF_KVM_WRITER_WORD_OFF
#define ROUNDS	   3000

/* The snapshot's page @i: the writer's code at page 1; the writer's pages
 * (one content for every 4th, so dedup merges them between rounds, the
 * rest unique), each with its word 0; elsewhere a third zeros, a third of
 * five shared contents, a third unique. */
static void snap_page(uint8_t *pg, unsigned int i)
{
	unsigned int w = i - FIRST_PAGE / PG;
	uint64_t seed = i;

	memset(pg, 0, PG);
	if (i == 1) {
		memcpy(pg, rf_kvm_writer_guest, sizeof(rf_kvm_writer_guest));
		return;
	}
	if (w < NPAGES && w % 4 == 0)
		seed = 1000;
	else if (w >= NPAGES && i % 3 == 0)
		return;
	else if (w >= NPAGES && i % 3 == 1)
		seed = 2000 + i % 5;
	for (unsigned int k = 0; k < PG; k += 8) {
		uint64_t x = (seed + 1) * 0x9e3779b97f4a7c15ull ^ k;

		memcpy(pg + k, &x, 8);
	}
	if (w < NPAGES)
		memset(pg + WORD_OFF, 0, 4);
}

struct restore {
	int file; /* the snapshot */
	_Atomic uint32_t calls[NPG];
	_Atomic uint64_t eagain;
};

/* Firecracker's way: read the page from the snapshot file, UFFDIO_COPY it. */
static int restore_page(rf_vm *vm, uint64_t gpa, void *hva, unsigned int flags, void *arg)
{
	struct restore *rs = arg;
	static uint8_t buf[PG] __attribute__((aligned(PG))); /* the fault thread's */
	struct uffdio_copy c = {.dst = (uintptr_t)hva,
				.src = (uintptr_t)buf,
				.len = PG,
				.mode = UFFDIO_COPY_MODE_DONTWAKE};

	(void)flags;
	if (gpa >= RAM)
		return -EFAULT;
	if (pread(rs->file, buf, PG, (off_t)gpa) != PG)
		return -EIO;
	if (ioctl(rf_vm_uffd_fd(vm), UFFDIO_COPY, &c) != 0) {
		if (errno == EAGAIN) {
			atomic_fetch_add(&rs->eagain, 1);
			return -EAGAIN;
		}
		return -errno;
	}
	atomic_fetch_add(&rs->calls[gpa / PG], 1);
	return 0;
}

struct host {
	uint8_t *ram;
	struct rf_pager *p;
	const uint8_t *snap;
	_Atomic bool stop;
	_Atomic bool read; /* restore by reading, once merging and swapping were seen */
	_Atomic uint64_t read_bad;
};

/* Reads the pages the guest does not write (each read the first time
 * restores it) in a random walk, and swaps RAM out, all of it, the guest's
 * code and pages not restored yet included. */
static void *host_main(void *arg)
{
	struct host *h = arg;
	uint64_t x = 88172645463325252ull, done;

	while (!atomic_load(&h->stop)) {
		for (unsigned int k = 0; k < 2 && atomic_load(&h->read); k++) {
			unsigned int i;

			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
			i = (unsigned int)(x % NPG);
			if (i >= FIRST_PAGE / PG && i < FIRST_PAGE / PG + NPAGES)
				continue;
			if (memcmp(h->ram + (uint64_t)i * PG, h->snap + (uint64_t)i * PG, PG) != 0)
				atomic_fetch_add(&h->read_bad, 1);
		}
		rf_swap_pager_swap_out(h->p, 0, NPG, &done);
		usleep(1000);
	}
	return NULL;
}

static void test_lazy_restore_under_vcpu(void **state)
{
	static uint8_t snap[RAM] __attribute__((aligned(PG)));
	static struct restore rs;
	static struct host h;
	char path[] = "/var/tmp/rf-snapshot-XXXXXX";
	struct rf_dedup_config dc;
	struct rf_dedup_stats ds = {.size = sizeof(ds)};
	struct rf_swap_stats ss = {.size = sizeof(ss)};
	struct rf_uffd_stats us;
	struct rf_kvm_mini k;
	uint64_t bad = 0, lost = 0, twice = 0, first_bad_round = 0;
	bool overlap = false; /* merged and swapped while pages were still to restore */
	pthread_t t;
	uint8_t *ram;
	rf_engine *e;
	rf_vm *vm;

	(void)state;
	e = rf_test_swap_engine(NULL, true, 0, 128 * PG);
	vm = rf_test_vm(e, "kvm0", RAM, (void **)&ram);
	for (unsigned int i = 0; i < NPG; i++)
		snap_page(snap + (uint64_t)i * PG, i);
	rs.file = mkstemp(path);
	assert_true(rs.file >= 0);
	unlink(path);
	assert_int_equal(pwrite(rs.file, snap, RAM, 0), RAM);
	/* The restore first: nothing of guest RAM is there yet. */
	assert_int_equal(rf_vm_set_fault_handler(vm, restore_page, &rs), 0);
	rf_kvm_mini_setup(&k, ram, RAM);
	rf_dedup_config_init(&dc);
	dc.fastest = true;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	h = (struct host){.ram = ram, .snap = snap};
	assert_int_equal(rf_swap_pager_get(vm, &h.p), 0);
	assert_int_equal(pthread_create(&t, NULL, host_main, &h), 0);

	for (unsigned int r = 0; r < ROUNDS; r++) {
		unsigned int n;

		rf_kvm_mini_run_to_port(&k, 0x10); /* end of a round */
		n = rf_kvm_writer_bad_pages(ram, snap + FIRST_PAGE, PG, r);
		if (n && !bad)
			first_bad_round = r;
		bad += n;
		/* The host reads (and so restores) pages only once merging and
		 * swapping are under way with most of RAM still to restore:
		 * on a loaded machine its reads could otherwise finish the
		 * restore before the scanner's first merge. */
		if (r % 64 == 0)
			rf_dedup_scan_now(e);
		if (!overlap) {
			rf_uffd_stats(rf_uffd_of(vm), &us);
			assert_int_equal(rf_vm_swap_stats(vm, &ss), 0);
			assert_int_equal(rf_dedup_counters(e, &ds), 0);
			overlap =
			    us.foreign_fills < NPG - 64 && ds.pages_merged > 0 && ss.swap_outs > 0;
			if (overlap)
				atomic_store(&h.read, true);
		}
	}
	atomic_store(&h.stop, true);
	pthread_join(t, NULL);
	/* Every page the guest does not write is the snapshot's. */
	for (unsigned int i = 0; i < NPG; i++) {
		if (i >= FIRST_PAGE / PG && i < FIRST_PAGE / PG + NPAGES)
			continue;
		if (memcmp(ram + (uint64_t)i * PG, snap + (uint64_t)i * PG, PG) != 0 && lost++ < 5)
			fprintf(stderr, "page %u is not the snapshot's\n", i);
	}
	for (unsigned int i = 0; i < NPG; i++)
		twice += atomic_load(&rs.calls[i]) > 1;
	assert_int_equal(rf_vm_swap_stats(vm, &ss), 0);
	assert_int_equal(rf_dedup_counters(e, &ds), 0);
	rf_uffd_stats(rf_uffd_of(vm), &us);
	printf("  %u rounds, %llu bad pages (first in round %llu), %llu lost, %llu host reads "
	       "bad; restore: %llu filled (%llu EAGAIN); dedup: %llu merged; swap: %llu out, "
	       "%llu in\n",
	       ROUNDS, (unsigned long long)bad, (unsigned long long)first_bad_round,
	       (unsigned long long)lost, (unsigned long long)atomic_load(&h.read_bad),
	       (unsigned long long)us.foreign_fills, (unsigned long long)atomic_load(&rs.eagain),
	       (unsigned long long)ds.pages_merged, (unsigned long long)ss.swap_outs,
	       (unsigned long long)ss.swap_ins);
	assert_int_equal(bad, 0);
	assert_int_equal(lost, 0);
	assert_int_equal(atomic_load(&h.read_bad), 0);
	assert_int_equal(twice, 0);
	assert_int_equal(us.foreign_errors, 0);
	assert_false(ss.stopped);
	/* It was a restore, and the other two ran on the same pages. */
	assert_true(us.foreign_fills > NPG / 2);
	assert_true(ds.pages_merged > 0);
	assert_true(ss.swap_outs > 1000 && ss.swap_ins > 1000);
	assert_true(overlap);
	rf_kvm_mini_teardown(&k);
	rf_engine_free(e);
	close(rs.file);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_lazy_restore_under_vcpu),
	};

	return cmocka_run_group_tests_name("lazy_restore", tests, NULL, NULL);
}
