/* SPDX-License-Identifier: MIT */
/*
 * Swap under a real vCPU: a minimal guest rewrites a counter word in 128
 * pages, round after round, while a host thread keeps swapping those pages
 * out. Every guest write to a swapped page is a fault that KVM takes from
 * the kernel (get_user_pages or copy_to_user on the host mapping), which the
 * swap pager must serve through userfaultfd. After every round, with the guest
 * stopped at its port write, the host checks every page: the value of the
 * round just written, and the rest of the page intact. Over 10^6 guest
 * writes, not one may be missing.
 *
 * The guest runs in real mode (no page tables needed); on kvm_pvm that mode
 * is emulated, so every guest write is a KVM write into the host mapping.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
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

#define PG	   4096u
#define NPAGES	   RF_KVM_WRITER_NPAGES
#define FIRST_PAGE RF_KVM_WRITER_FIRST_PAGE
#define WORD_OFF   RF_KVM_WRITER_WORD_OFF

static _Atomic bool stop_swapping;

static void *swapper(void *arg)
{
	struct rf_pager *p = arg;
	uint64_t done;

	while (!atomic_load(&stop_swapping)) {
		rf_swap_pager_swap_out(p, FIRST_PAGE, NPAGES, &done);
		usleep(100);
	}
	return NULL;
}

static void fill_page(uint8_t *pg, unsigned int seed)
{
	uint64_t x = seed * 0x9e3779b97f4a7c15ull + 7;

	for (unsigned int i = 0; i < PG; i += 8) {
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		memcpy(pg + i, &x, 8);
	}
}

/* Guest writes to make: 10^6, or RF_SWAP_KVM_WRITES (at least 10^5, for
 * the copy-mode run of `make compat`, whose every swap-out is a copy, a
 * write-protect and a discard: README, "Tests"). */
static unsigned int writes_wanted(void)
{
	const char *s = getenv("RF_SWAP_KVM_WRITES");
	unsigned long n = s ? strtoul(s, NULL, 10) : 0;

	return n >= 100000 && n <= 100000000 ? (unsigned int)n : 1000000;
}

static void test_guest_writes_while_swapping(void **state)
{
	const unsigned int want = writes_wanted();
	const unsigned int rounds = (want + NPAGES - 1) / NPAGES + 1;
	static uint8_t tpl[NPAGES][PG];
	struct rf_swap_stats st = {.size = sizeof(st)};
	struct rf_pager *p;
	struct rf_kvm_mini k;
	uint64_t writes = 0, bad = 0, first_bad_round = 0, t0, wall;
	pthread_t t;
	uint8_t *ram;
	rf_engine *e;
	rf_vm *vm;

	(void)state;
	/* A 64-page tier: half the pages in the tier, half in the file. */
	e = rf_test_swap_engine(NULL, true, 0, 64 * PG);
	vm = rf_test_vm(e, "kvm0", 2u << 20, (void **)&ram);
	rf_kvm_mini_setup(&k, ram, 2u << 20);
	memcpy(ram + 0x1000, rf_kvm_writer_guest, sizeof(rf_kvm_writer_guest));
	for (unsigned int i = 0; i < NPAGES; i++) {
		/* Every other page compresses (tier), the others do not (file). */
		if (i % 2)
			fill_page(tpl[i], i);
		else
			memset(tpl[i], (int)i, PG);
		memset(tpl[i] + WORD_OFF, 0, 4);
		memcpy(ram + FIRST_PAGE + i * PG, tpl[i], PG);
	}
	assert_int_equal(rf_swap_pager_get(vm, &p), 0);
	atomic_store(&stop_swapping, false);
	assert_int_equal(pthread_create(&t, NULL, swapper, p), 0);

	t0 = rf_test_now_ms();
	for (unsigned int r = 0; r < rounds; r++) {
		unsigned int n;

		rf_kvm_mini_run_to_port(&k, 0x10); /* end of a round */
		writes += NPAGES;
		/* The host reads fault pages back in too: both kinds of access. */
		n = rf_kvm_writer_bad_pages(ram, tpl[0], PG, r);
		if (n && !bad)
			first_bad_round = r;
		bad += n;
	}
	atomic_store(&stop_swapping, true);
	pthread_join(t, NULL);
	wall = rf_test_now_ms() - t0;
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	printf("  %llu guest writes in %u rounds, %llu lost (first in round %llu); pager: %llu "
	       "swap-outs, %llu swap-ins, fault p50 %llu ns p99 %llu ns\n",
	       (unsigned long long)writes, rounds, (unsigned long long)bad,
	       (unsigned long long)first_bad_round, (unsigned long long)st.swap_outs,
	       (unsigned long long)st.swap_ins, (unsigned long long)st.fault_p50_ns,
	       (unsigned long long)st.fault_p99_ns);
	printf("  stall: %.0f ms over %llu faults in %llu ms of run\n", (double)st.stall_ns / 1e6,
	       (unsigned long long)st.stall_faults, (unsigned long long)wall);
	assert_true(writes >= want);
	assert_int_equal(bad, 0);
	assert_false(st.stopped);
	/* The race was real: pages went out and came back under the guest. */
	assert_true(st.swap_outs > 10000);
	assert_true(st.swap_ins > 10000);
	/* Each swap-in was a fault that this thread waited for, running the
	 * vCPU or checking the pages: all in the stall, and one thread cannot
	 * wait longer than the run. */
	assert_true(st.stall_faults >= st.swap_ins);
	assert_true(st.stall_ns > 0 && st.stall_ns <= (wall + 1) * 1000000ull);
	rf_kvm_mini_teardown(&k);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_guest_writes_while_swapping),
	};

	return cmocka_run_group_tests_name("swap_kvm", tests, NULL, NULL);
}
