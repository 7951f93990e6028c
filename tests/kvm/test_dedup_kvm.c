/* SPDX-License-Identifier: MIT */
/*
 * The dedup engine under a real vCPU: a minimal guest rewrites a counter
 * word in 128 pages that are otherwise twins, round after round, while the
 * scanner merges them (its writes go through KVM into library-owned RAM,
 * and block on userfaultfd write-protect while a page is being merged).
 * After every round, with the guest stopped at its port write, the host
 * checks every page: each must hold the value of the round just written.
 * Over 10^6 guest writes, not one may be missing.
 *
 * The guest runs in real mode (it needs no page tables); on kvm_pvm that
 * mode is emulated, which is slow but makes every guest write a KVM write
 * into the host mapping, the path a merge has to get right.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"
#include "dedup_util.h"
#include "kvm_mini.h"
#include "rf_test.h"

#define PG	   4096u
#define NPAGES	   RF_KVM_WRITER_NPAGES
#define FIRST_PAGE RF_KVM_WRITER_FIRST_PAGE
#define WORD_OFF   RF_KVM_WRITER_WORD_OFF

static void test_guest_writes_while_merging(void **state)
{
	const unsigned int rounds = (1000000 + NPAGES - 1) / NPAGES + 1;
	struct rf_dedup_config dc;
	struct rf_dedup_stats st = {.size = sizeof(st)};
	struct rf_features f = {.size = sizeof(f)};
	struct rf_kvm_mini k;
	static uint8_t tpl[PG];
	uint64_t writes = 0, bad = 0, first_bad_round = 0;
	const char *why = NULL;
	uint8_t *ram;
	rf_engine *e;
	rf_vm *vm;

	(void)state;
	e = rf_test_engine(NULL);
	rf_engine_features(e, &f);
	if (!f.kvm || !dedup_supported(&why)) {
		rf_engine_free(e);
		rf_require(false, !f.kvm ? "/dev/kvm not available" : why);
	}
	vm = rf_test_vm(e, "kvm0", 2u << 20, (void **)&ram);
	rf_kvm_mini_setup(&k, ram, 2u << 20);
	memcpy(ram + 0x1000, rf_kvm_writer_guest, sizeof(rf_kvm_writer_guest));
	dedup_fill_page(tpl, 77);
	memset(tpl + WORD_OFF, 0, 4);
	for (unsigned int p = 0; p < NPAGES; p++)
		memcpy(ram + FIRST_PAGE + p * PG, tpl, PG);

	rf_dedup_config_init(&dc);
	dc.scan_threads = 2;
	dc.idle_cpu_percent = 100; /* keep scanning while the guest writes */
	dc.backoff_max = 0;	   /* and merge rewritten pages again at once */
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);

	/* At least @rounds rounds (10^6 writes), and on until the race has
	 * really happened (merges and write-breaks under the guest) or two
	 * minutes pass: a loaded machine merges less per round. */
	uint64_t t_end = rf_test_now_ms() + 120000;
	unsigned int r;

	for (r = 0;; r++) {
		unsigned int n;

		if (r >= rounds && (r & 63) == 0) {
			assert_int_equal(rf_dedup_counters(e, &st), 0);
			if ((st.pages_merged > 1000 && st.pages_unmerged > 1000) ||
			    rf_test_now_ms() > t_end)
				break;
		}

		rf_kvm_mini_run_to_port(&k, 0x10); /* end of a round */
		writes += NPAGES;
		/* The guest is stopped at its port write: every page must hold
		 * this round's value, and the rest of the page its template. */
		n = rf_kvm_writer_bad_pages(ram, tpl, 0, r);
		if (n && !bad)
			first_bad_round = r;
		bad += n;
		/* Now and then let the pages sit still long enough to merge. */
		if ((r & 7) == 0)
			usleep(300);
	}
	assert_int_equal(rf_dedup_stats(e, &st), 0);
	printf("  %llu guest writes in %u rounds, %llu lost (first in round %llu); engine: %llu "
	       "merged, %llu unmerged by writes, %llu races, %llu passes\n",
	       (unsigned long long)writes, r, (unsigned long long)bad,
	       (unsigned long long)first_bad_round, (unsigned long long)st.pages_merged,
	       (unsigned long long)st.pages_unmerged, (unsigned long long)st.merge_races,
	       (unsigned long long)st.scan_passes);
	assert_true(writes >= 1000000);
	assert_int_equal(bad, 0);
	/* The race was real: pages were merged and broken under the guest. */
	assert_true(st.pages_merged > 1000);
	assert_true(st.pages_unmerged > 1000);

	rf_dedup_stop(e);
	rf_kvm_mini_teardown(&k);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_guest_writes_while_merging),
	};

	return cmocka_run_group_tests_name("dedup_kvm", tests, NULL, NULL);
}
