/* SPDX-License-Identifier: MIT */
/*
 * The embedder's write protection through the VM's userfaultfd
 * (rf_vm_write_protect, RF_VM_FAULT_WP): a background snapshot as QEMU
 * takes one. The embedder protects guest RAM, a writer thread writes every
 * page, and the fault handler saves each page's content before the write
 * lands: the saved copy must be the content before the write, for private,
 * merged, swapped-out and zero-discarded pages, and no write may be lost.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "rf_test.h"
#include "uffd.h"

#define MiB (1ull << 20)
#define PG  RF_PAGE_SIZE
#define NP  64u /* pages in the every-state layout */

struct snap {
	uint8_t saved[NP][PG];
	_Atomic uint32_t wp_calls[NP];
	_Atomic uint32_t other_calls;
};

static int snap_fault(rf_vm *vm, uint64_t gpa, void *hva, unsigned int flags, void *arg)
{
	struct snap *s = arg;
	uint64_t i = gpa / PG;

	(void)vm;
	if (!(flags & RF_VM_FAULT_WP) || i >= NP) {
		atomic_fetch_add(&s->other_calls, 1);
		return RF_VM_FAULT_ZERO; /* a page never written: no snapshot of it */
	}
	assert_true(flags & RF_VM_FAULT_WRITE);
	memcpy(s->saved[i], hva, PG);
	atomic_fetch_add(&s->wp_calls[i], 1);
	return 0;
}

/* Pages 9-11 and 13-15 share content with 8 and 12: left unwritten, they
 * show that the write to their sharer did not reach them. */
static bool written(unsigned int i)
{
	return i < 32 && !(i >= 9 && i <= 11) && !(i >= 13 && i <= 15);
}

struct writer {
	uint8_t *ram;
	unsigned int from, to;
};

static void *writer_main(void *arg)
{
	struct writer *w = arg;

	for (unsigned int i = w->from; i < w->to; i++)
		if (written(i))
			memset(w->ram + (uint64_t)i * PG, 0xa0 + (int)(i & 15), PG);
	return NULL;
}

static void test_snapshot_every_state(void **state)
{
	rf_engine *e = rf_test_swap_engine(NULL, false, 64 * MiB, 0);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	static struct snap s;
	static uint8_t pre[NP][PG];
	struct writer w[2] = {{.ram = ram, .from = 0, .to = 16},
			      {.ram = ram, .from = 16, .to = 32}};
	pthread_t t[2];
	struct rf_uffd_stats st;
	uint64_t lost = 0;

	(void)state;
	memset(&s, 0, sizeof(s));
	rf_test_every_state(e, vm, ram, NP);
	assert_int_equal(rf_vm_page_state(vm, 8 * PG), RF_PAGE_MERGED);
	assert_int_equal(rf_vm_page_state(vm, 16 * PG), RF_PAGE_SWAPPED);
	assert_int_equal(rf_vm_set_fault_handler(vm, snap_fault, &s), 0);
	assert_int_equal(rf_vm_write_protect(vm, 0, 32 * PG, true), 0);
	/* Swapped pages came back to be protected; merged ones stay merged. */
	for (unsigned int i = 16; i < 24; i++)
		assert_int_not_equal(rf_vm_page_state(vm, (uint64_t)i * PG), RF_PAGE_SWAPPED);
	for (unsigned int i = 8; i < 16; i++)
		assert_int_equal(rf_vm_page_state(vm, (uint64_t)i * PG), RF_PAGE_MERGED);
	/* Reads do not fault on a protection. */
	for (unsigned int i = 0; i < NP; i++)
		memcpy(pre[i], ram + (uint64_t)i * PG, PG);
	for (unsigned int k = 0; k < 2; k++)
		assert_int_equal(pthread_create(&t[k], NULL, writer_main, &w[k]), 0);
	for (unsigned int k = 0; k < 2; k++)
		pthread_join(t[k], NULL);
	for (unsigned int i = 0; i < 32; i++) {
		uint8_t want[PG];

		if (!written(i)) {
			assert_int_equal(atomic_load(&s.wp_calls[i]), 0);
			assert_memory_equal(ram + (uint64_t)i * PG, pre[i], PG);
			assert_int_equal(rf_vm_page_state(vm, (uint64_t)i * PG), RF_PAGE_MERGED);
			continue;
		}
		if (atomic_load(&s.wp_calls[i]) != 1)
			fail_msg("page %u: handler called %u times", i,
				 atomic_load(&s.wp_calls[i]));
		if (memcmp(s.saved[i], pre[i], PG) != 0)
			fail_msg("page %u: the snapshot is not the content before the write", i);
		memset(want, 0xa0 + (int)(i & 15), PG);
		lost += memcmp(ram + (uint64_t)i * PG, want, PG) != 0;
	}
	assert_int_equal(lost, 0);
	/* The merged page saved the shared content, which its sharers still hold. */
	assert_memory_equal(s.saved[8], ram + 9 * PG, PG);
	/* Lifted: a second write is not reported. */
	ram[0] = 1;
	assert_int_equal(atomic_load(&s.wp_calls[0]), 1);
	/* Protected and lifted again without a write: nothing reported. */
	assert_int_equal(rf_vm_write_protect(vm, 40 * PG, 4 * PG, true), 0);
	assert_int_equal(rf_vm_write_protect(vm, 40 * PG, 4 * PG, false), 0);
	memset(ram + 40 * PG, 7, 4 * PG);
	assert_int_equal(atomic_load(&s.wp_calls[40]), 0);
	st = (struct rf_uffd_stats){0};
	rf_uffd_stats(rf_uffd_of(vm), &st);
	assert_int_equal(st.foreign_wp, 26);
	assert_int_equal(st.foreign_errors, 0);
	rf_engine_free(e);
}

/* A discard lifts the protection: the page reads as zeros, no report. */
static void test_discard_lifts(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 1 * MiB, (void **)&ram);
	static struct snap s;

	(void)state;
	memset(&s, 0, sizeof(s));
	memset(ram, 3, 4 * PG);
	assert_int_equal(rf_vm_set_fault_handler(vm, snap_fault, &s), 0);
	assert_int_equal(rf_vm_write_protect(vm, 0, 4 * PG, true), 0);
	assert_int_equal(rf_vm_discard(vm, PG, PG, NULL), 0);
	assert_true(rf_test_all_zero(ram + PG, PG));
	ram[PG] = 9;
	assert_int_equal(atomic_load(&s.wp_calls[1]), 0);
	ram[2 * PG] = 9; /* still protected */
	assert_int_equal(atomic_load(&s.wp_calls[2]), 1);
	assert_int_equal(s.saved[2][0], 3);
	rf_engine_free(e);
}

/* Bad input: -EINVAL naming the VM, and nothing protected. */
static void test_bad_input(void **state)
{
	struct rf_test_log log = {0};
	rf_engine *e = rf_test_engine(&log);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 1 * MiB, (void **)&ram);
	static struct snap s;

	(void)state;
	memset(&s, 0, sizeof(s));
	assert_int_equal(rf_vm_write_protect(NULL, 0, PG, true), -EINVAL);
	/* No handler: nobody to tell of a write. */
	assert_int_equal(rf_vm_write_protect(vm, 0, PG, true), -EINVAL);
	assert_log_contains(&log, "vm0: write-protect");
	assert_log_contains(&log, "no fault handler");
	assert_int_equal(rf_vm_set_fault_handler(vm, snap_fault, &s), 0);
	assert_int_equal(rf_vm_write_protect(vm, 1 * MiB, PG, true), -EINVAL);
	assert_log_contains(&log, "not inside one region");
	assert_int_equal(rf_vm_write_protect(vm, 1 * MiB - PG, 2 * PG, true), -EINVAL);
	assert_int_equal(rf_vm_write_protect(vm, 100, PG, true), -EINVAL);
	assert_log_contains(&log, "vm0: write-protect: gpa 0x64");
	assert_int_equal(rf_vm_write_protect(vm, 0, 100, true), -EINVAL);
	assert_int_equal(rf_vm_write_protect(vm, 0, 0, true), -EINVAL);
	assert_int_equal(rf_vm_write_protect(vm, -PG, 2 * PG, true), -EINVAL);
	/* Nothing was protected: writes land, unreported. */
	memset(ram, 5, 2 * PG);
	memset(ram + 1 * MiB - PG, 5, PG);
	for (unsigned int i = 0; i < NP; i++)
		assert_int_equal(atomic_load(&s.wp_calls[i]), 0);
	assert_int_equal(ram[PG], 5);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_discard_lifts),
	    cmocka_unit_test(test_snapshot_every_state),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
