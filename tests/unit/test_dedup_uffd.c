/* SPDX-License-Identifier: MIT */
/*
 * The per-VM userfaultfd and its fault thread (src/uffd.c), which dedup uses
 * and swap extends: a write-protect fault nobody claims is resolved by the
 * fault thread (the writer completes); a handler that asks for a retry gets the
 * message again; MADV_DONTNEED on registered memory is seen as
 * UFFD_EVENT_REMOVE; the descriptor is shared and reference-counted.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "compat_linux.h"
#include "dedup_util.h"
#include "rf_test.h"
#include "uffd.h"

struct writer_arg {
	volatile uint8_t *p;
	_Atomic bool done;
};

static void *writer(void *arg)
{
	struct writer_arg *w = arg;

	w->p[0] = 0x42;
	atomic_store(&w->done, true);
	return NULL;
}

static _Atomic int wp_calls;

static int wp_retry_once(struct rf_uffd *u, const struct uffd_msg *m, void *arg)
{
	uint64_t page = m->arg.pagefault.address & ~4095ull;

	(void)arg;
	if (atomic_fetch_add(&wp_calls, 1) == 0)
		return -EAGAIN; /* not now: the fault thread must come back */
	if (rf_uffd_writeprotect(u, (void *)page, 4096, false, false) != 0)
		rf_uffd_wake(u, (void *)page, 4096);
	return 0;
}

static void run_writer_on_protected_page(struct rf_uffd *u, uint8_t *page)
{
	struct writer_arg w = {.p = page};
	pthread_t t;

	assert_int_equal(rf_uffd_writeprotect(u, page, 4096, true, false), 0);
	assert_int_equal(pthread_create(&t, NULL, writer, &w), 0);
	for (int i = 0; i < 5000 && !atomic_load(&w.done); i++)
		usleep(1000);
	assert_true(atomic_load(&w.done));
	pthread_join(t, NULL);
	assert_int_equal(page[0], 0x42);
}

/* An engine with one 1 MiB VM and its userfaultfd (skipped without WP). */
static rf_engine *uffd_setup(const char *name, rf_vm **vm, uint8_t **ram, struct rf_uffd **u)
{
	const char *why;
	rf_engine *e;

	rf_require(dedup_supported(&why), "userfaultfd write-protect not supported");
	e = rf_test_engine(NULL);
	*vm = rf_test_vm(e, name, 1u << 20, (void **)ram);
	assert_int_equal(rf_uffd_get(*vm, u), 0);
	return e;
}

static void test_pager(void **state)
{
	struct rf_uffd_stats st;
	struct rf_uffd *u, *u2;
	uint8_t *ram;
	rf_vm *vm;
	rf_engine *e = uffd_setup("uffd0", &vm, &ram, &u);

	(void)state;
	assert_int_equal(rf_uffd_get(vm, &u2), 0);
	assert_ptr_equal(u, u2); /* one descriptor per VM, shared */
	rf_uffd_add_base_mode(u, UFFDIO_REGISTER_MODE_WP);
	assert_int_equal(rf_uffd_register(u, ram, 1u << 20, 0), 0);
	memset(ram, 1, 1u << 20);

	/* Nobody claims the protection: the fault thread lifts it. */
	run_writer_on_protected_page(u, ram);
	/* A handler asking for a retry sees the fault again, then resolves it. */
	rf_uffd_set_handler(u, RF_UFFD_FAULT_WP, wp_retry_once, NULL);
	run_writer_on_protected_page(u, ram + 4096);
	assert_true(atomic_load(&wp_calls) >= 2);
	rf_uffd_set_handler(u, RF_UFFD_FAULT_WP, NULL, NULL);

	/* A discard of registered memory is an event the fault thread reads (the
	 * madvise waits for it: it returns only because the fault thread runs). */
	if (rf_uffd_features(u) & UFFD_FEATURE_EVENT_REMOVE) {
		assert_int_equal(madvise(ram + 8192, 8192, MADV_DONTNEED), 0);
		assert_int_equal(ram[8192], 0);
	}
	/* The fault thread counts a message just after read() returns it, which is
	 * also when the madvise may go on: give the counter a moment. */
	for (int i = 0; i < 1000; i++) {
		rf_uffd_stats(u, &st);
		if (st.msgs[RF_UFFD_EV_REMOVE] >= 1 ||
		    !(rf_uffd_features(u) & UFFD_FEATURE_EVENT_REMOVE))
			break;
		usleep(1000);
	}
	printf("  wp faults %llu, removes %llu, retried %llu\n",
	       (unsigned long long)st.msgs[RF_UFFD_FAULT_WP],
	       (unsigned long long)st.msgs[RF_UFFD_EV_REMOVE], (unsigned long long)st.retried);
	assert_true(st.msgs[RF_UFFD_FAULT_WP] >= 2);
	assert_true(st.retried >= 1);
	if (rf_uffd_features(u) & UFFD_FEATURE_EVENT_REMOVE)
		assert_true(st.msgs[RF_UFFD_EV_REMOVE] >= 1);
	rf_uffd_put(vm);
	assert_non_null(vm->uffd); /* one user left */
	rf_uffd_put(vm);
	assert_null(vm->uffd);
	rf_engine_free(e);
}

/* Pages of [ram, ram + n pages) whose pte is write-protected (pagemap). */
static unsigned int count_wp(rf_engine *e, const uint8_t *ram, unsigned int n)
{
	uint64_t ents[64];
	unsigned int c = 0;

	assert_true(n <= 64);
	assert_int_equal(rf_pagemap_read(e, ram, n, ents), 0);
	for (unsigned int i = 0; i < n; i++)
		c += !!(ents[i] & PM_UFFD_WP);
	return c;
}

/*
 * rf_uffd_writeprotect over several VMAs (Linux 6.1 takes one VMA per
 * ioctl and says ENOENT otherwise), and over a hole that is not registered:
 * then it fails and leaves nothing protected.
 */
static void test_writeprotect_spans_vmas(void **state)
{
	struct rf_uffd *u;
	uint8_t *ram;
	rf_vm *vm;
	rf_engine *e = uffd_setup("uffd1", &vm, &ram, &u);

	(void)state;
	assert_int_equal(rf_uffd_register(u, ram, 1u << 20, UFFDIO_REGISTER_MODE_WP), 0);
	/* Pages 4-7 registered for missing faults too: a VMA of their own. */
	assert_int_equal(rf_uffd_register(u, ram + 4 * 4096, 4 * 4096,
					  UFFDIO_REGISTER_MODE_WP | UFFDIO_REGISTER_MODE_MISSING),
			 0);
	memset(ram, 1, 16 * 4096);
	assert_int_equal(rf_uffd_writeprotect(u, ram, 16 * 4096, true, false), 0);
	assert_int_equal(count_wp(e, ram, 16), 16);
	assert_int_equal(rf_uffd_writeprotect(u, ram, 16 * 4096, false, false), 0);
	assert_int_equal(count_wp(e, ram, 16), 0);

	/* A hole (pages 10-11 not registered): refused, none left protected. */
	assert_int_equal(rf_uffd_unregister(u, ram + 10 * 4096, 2 * 4096), 0);
	assert_int_equal(rf_uffd_writeprotect(u, ram, 16 * 4096, true, false), -ENOENT);
	assert_int_equal(count_wp(e, ram, 16), 0);
	rf_uffd_put(vm);
	rf_engine_free(e);
}

/*
 * The fault thread leaves a write-protect fault on a page a module has marked
 * RF_PTE_F_WP (dedup merging it, swap copying it out): the writer waits
 * until the module lifts the protection, instead of the fault thread lifting it
 * under the module's feet.
 */
static void test_owned_protection_waits(void **state)
{
	struct writer_arg w;
	struct rf_uffd *u;
	pthread_t t;
	uint8_t *ram;
	rf_vm *vm;
	uint64_t v;
	rf_engine *e = uffd_setup("uffd2", &vm, &ram, &u);

	(void)state;
	assert_int_equal(rf_uffd_register(u, ram, 1u << 20, UFFDIO_REGISTER_MODE_WP), 0);
	memset(ram, 1, 4096);
	v = atomic_load(&vm->regions[0]->pte[0]);
	atomic_store(&vm->regions[0]->pte[0], v | RF_PTE_F_WP);
	assert_int_equal(rf_uffd_writeprotect(u, ram, 4096, true, false), 0);
	w = (struct writer_arg){.p = ram};
	assert_int_equal(pthread_create(&t, NULL, writer, &w), 0);
	usleep(200000);
	assert_false(atomic_load(&w.done)); /* still waiting: ours */
	assert_int_equal(ram[0], 1);
	atomic_store(&vm->regions[0]->pte[0], v);
	assert_int_equal(rf_uffd_writeprotect(u, ram, 4096, false, false), 0);
	pthread_join(t, NULL);
	assert_int_equal(ram[0], 0x42);
	rf_uffd_put(vm);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pager),
	    cmocka_unit_test(test_writeprotect_spans_vmas),
	    cmocka_unit_test(test_owned_protection_waits),
	};

	return cmocka_run_group_tests_name("dedup_uffd", tests, NULL, NULL);
}
