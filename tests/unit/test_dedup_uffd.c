/* SPDX-License-Identifier: MIT */
/*
 * The per-VM userfaultfd and its pager thread (src/uffd.c), which dedup
 * uses and swap extends: a write-protect fault nobody claims is resolved by
 * the pager (the writer completes); a handler that asks for a retry gets the
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
		return -EAGAIN; /* not now: the pager must come back */
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

static void test_pager(void **state)
{
	struct rf_uffd_stats st;
	struct rf_uffd *u, *u2;
	const char *why;
	uint8_t *ram;
	rf_engine *e;
	rf_vm *vm;

	(void)state;
	rf_require(dedup_supported(&why), "userfaultfd write-protect not supported");
	e = rf_test_engine(NULL);
	vm = rf_test_vm(e, "uffd0", 1u << 20, (void **)&ram);
	assert_int_equal(rf_uffd_get(vm, &u), 0);
	assert_int_equal(rf_uffd_get(vm, &u2), 0);
	assert_ptr_equal(u, u2); /* one descriptor per VM, shared */
	rf_uffd_add_base_mode(u, UFFDIO_REGISTER_MODE_WP);
	assert_int_equal(rf_uffd_register(u, ram, 1u << 20, 0), 0);
	memset(ram, 1, 1u << 20);

	/* Nobody claims the protection: the pager lifts it. */
	run_writer_on_protected_page(u, ram);
	/* A handler asking for a retry sees the fault again, then resolves it. */
	rf_uffd_set_handler(u, RF_UFFD_FAULT_WP, wp_retry_once, NULL);
	run_writer_on_protected_page(u, ram + 4096);
	assert_true(atomic_load(&wp_calls) >= 2);
	rf_uffd_set_handler(u, RF_UFFD_FAULT_WP, NULL, NULL);

	/* A discard of registered memory is an event the pager reads (the
	 * madvise waits for it: it returns only because the pager runs). */
	if (rf_uffd_features(u) & UFFD_FEATURE_EVENT_REMOVE) {
		assert_int_equal(madvise(ram + 8192, 8192, MADV_DONTNEED), 0);
		assert_int_equal(ram[8192], 0);
	}
	/* The pager counts a message just after read() returns it, which is
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pager),
	};

	return cmocka_run_group_tests_name("dedup_uffd", tests, NULL, NULL);
}
