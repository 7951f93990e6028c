/* SPDX-License-Identifier: MIT */
/*
 * The ledger: admission arithmetic and admission control through the API
 * (nothing is created or changed when refused), the breakdown's arithmetic,
 * the breakdown of real guest RAM against the kernel's numbers, the fair
 * part of store pages mapped by two VMs, and the audit catching a wrong
 * counter, a wrong table, and a wrong breakdown.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "ledger.h"
#include "rf_test.h"

#define MiB (1ull << 20)
#define GiB (1ull << 30)
#define PG  4096ull

static int new_vm(rf_engine *e, const char *name, uint64_t ram, uint64_t resv, rf_vm **vm)
{
	struct rf_vm_config vc;

	rf_vm_config_init(&vc);
	vc.ram_bytes = ram;
	vc.reservation_bytes = resv;
	return rf_vm_new(e, name, &vc, vm);
}

static void test_admit_arithmetic(void **state)
{
	struct rf_admission a = {.capacity = GiB,
				 .reserved_others = 624 * MiB,
				 .promised_others = 2 * GiB,
				 .reservation = 400 * MiB,
				 .promised = 512 * MiB,
				 .creating = true,
				 .growing = true};
	char why[256];

	(void)state;
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), 0); /* exactly full */
	a.reservation += PG;
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), -ENOMEM);
	assert_non_null(strstr(why, "cannot be covered"));
	a.host_reserved = 100 * MiB;
	a.reservation = 300 * MiB;
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), 0);
	a.reservation += PG;
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), -ENOMEM);
	/* Shrinking always passes, even over budget. */
	a.growing = a.creating = false;
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), 0);
	/* Ratio: 2.5 GiB promised on 1 GiB is 2.5x. */
	a = (struct rf_admission){.capacity = GiB,
				  .promised_others = 2 * GiB,
				  .promised = 512 * MiB,
				  .max_overcommit_permille = 2500,
				  .creating = true,
				  .growing = true};
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), 0);
	a.promised += PG;
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), -ENOMEM);
	assert_non_null(strstr(why, "maximum overcommit 2.50x"));
	/* In the low state nothing grows. */
	a.max_overcommit_permille = 0;
	a.state = RF_MEM_LOW;
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), -ENOMEM);
	assert_non_null(strstr(why, "low free-memory state"));
	a.state = RF_MEM_HARD;
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), 0);
}

static void test_admission_control(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine_cap(GiB, &log);
	rf_vm *a = NULL, *b = NULL, *c = (rf_vm *)1;
	struct rf_host_stats hs = {.size = sizeof(hs)};
	struct rf_ledger_config lc;

	(void)state;
	assert_int_equal(new_vm(e, "a", 512 * MiB, 512 * MiB, &a), 0);
	assert_int_equal(new_vm(e, "b", 512 * MiB, 256 * MiB, &b), 0);
	/* 768 MiB reserved: 512 more cannot be covered. */
	assert_int_equal(new_vm(e, "c", 512 * MiB, 512 * MiB, &c), -ENOMEM);
	assert_null(c);
	assert_log_contains(&log, "c: vm_new: refused: reservation 512.0 MiB cannot be covered: "
				  "768.0 MiB already reserved of 1.00 GiB");
	/* Nothing was created: the name is free and the totals unchanged. */
	assert_int_equal(rf_host_stats(e, &hs), 0);
	assert_int_equal(hs.nr_vms, 2);
	assert_int_equal(hs.reserved_bytes, 768 * MiB);
	assert_int_equal(hs.promised_bytes, GiB);
	assert_int_equal(hs.overcommit_permille, 1000);
	assert_int_equal(hs.admissions_refused, 1);
	assert_int_equal(new_vm(e, "c", 512 * MiB, 256 * MiB, &c), 0);

	/* Growing: refused with the reason, old value kept; shrinking passes. */
	assert_int_equal(rf_vm_set_reservation(b, 512 * MiB), -ENOMEM);
	assert_log_contains(&log, "b: set_reservation: refused");
	assert_int_equal(rf_host_stats(e, &hs), 0);
	assert_int_equal(hs.reserved_bytes, GiB);
	assert_int_equal(rf_vm_set_reservation(a, 128 * MiB), 0);
	assert_int_equal(rf_vm_set_reservation(b, 512 * MiB), 0);
	assert_int_equal(rf_host_stats(e, &hs), 0);
	assert_int_equal(hs.reserved_bytes, 896 * MiB);

	/* Bad values: -EINVAL, nothing changed. */
	assert_int_equal(rf_vm_set_reservation(a, 600 * MiB), -EINVAL); /* > promised */
	assert_int_equal(rf_vm_set_reservation(a, 100), -EINVAL);	/* unaligned */
	assert_int_equal(rf_vm_set_limit(b, 100 * MiB), -EINVAL);	/* < reservation */
	assert_log_contains(&log, "b: ledger: limit 104857600 bytes is below the reservation");
	assert_int_equal(rf_vm_set_shares(a, RF_SHARES_MAX + 1), -EINVAL);
	assert_int_equal(rf_vm_set_reservation(NULL, 0), -EINVAL);
	assert_int_equal(rf_host_stats(e, &hs), 0);
	assert_int_equal(hs.reserved_bytes, 896 * MiB);

	/* Maximum overcommit ratio: 1.5 GiB promised, max 2x: 512 MiB more is
	 * fine, then nothing. */
	rf_ledger_config_init(&lc);
	lc.max_overcommit_permille = 2000;
	assert_int_equal(rf_ledger_configure(e, &lc), 0);
	{
		rf_vm *d = NULL, *f = NULL;

		assert_int_equal(new_vm(e, "d", 512 * MiB, 0, &d), 0);
		assert_int_equal(new_vm(e, "f", 4 * MiB, 0, &f), -ENOMEM);
		assert_log_contains(&log, "maximum overcommit 2.00x");
		assert_null(f);
	}
	lc.audit_pct = 99;
	assert_int_equal(rf_ledger_configure(e, &lc), -EINVAL);

	/* A VM config with a bad contract is refused before anything. */
	{
		struct rf_vm_config vc;
		rf_vm *g = NULL;

		rf_vm_config_init(&vc);
		vc.ram_bytes = 8 * MiB;
		vc.reservation_bytes = 4 * MiB;
		vc.limit_bytes = 2 * MiB;
		assert_int_equal(rf_vm_new(e, "g", &vc, &g), -EINVAL);
		assert_null(g);
	}
	rf_engine_free(e);
}

/* The state split always adds up to the promised size; drift is carved out. */
static void test_breakdown_arithmetic(void **state)
{
	uint64_t cnt[RF_PAGE_NSTATES] = {0};
	struct rf_ledger_walk w;
	struct rf_vm_breakdown b = {.size = sizeof(b)};
	uint64_t sum;

	(void)state;
	memset(&w, 0, sizeof(w));
	memset(&b, 0, sizeof(b));
	cnt[RF_PAGE_PRIVATE] = 1000;
	cnt[RF_PAGE_ZERO] = 100;
	cnt[RF_PAGE_MERGED] = 300;
	cnt[RF_PAGE_BALLOONED] = 200;
	cnt[RF_PAGE_FREE_REPORTED] = 50;
	cnt[RF_PAGE_SWAPPED] = 40;
	cnt[RF_PAGE_COMPRESSED] = 60;
	w.anon[RF_PAGE_PRIVATE] = w.resident[RF_PAGE_PRIVATE] = 700;
	w.resident[RF_PAGE_ZERO] = w.anon[RF_PAGE_ZERO] = 10; /* guest wrote 10 zero pages */
	w.resident[RF_PAGE_MERGED] = 250;		      /* 250 present ... */
	w.anon[RF_PAGE_MERGED] = 20;			      /* ... 20 of them CoW-broken */
	w.shared_fair_milli = 230 * 500;		      /* each store page has 2 sharers */
	rf_breakdown_compute(cnt, &w, 2000 * PG, 1750 * PG, 8192, 30 * PG, &b);
	assert_int_equal(b.private_bytes, 700 * PG);
	assert_int_equal(b.untouched_bytes, 300 * PG);
	assert_int_equal(b.zero_bytes, 90 * PG);
	assert_int_equal(b.shared_bytes, 280 * PG);
	assert_int_equal(b.drift_bytes, 30 * PG);
	assert_int_equal(b.shared_resident_bytes, 230 * PG);
	assert_int_equal(b.shared_fair_bytes, 115 * PG);
	assert_int_equal(b.unmapped_bytes, 250 * PG);
	sum = b.private_bytes + b.untouched_bytes + b.shared_bytes + b.zero_bytes +
	      b.ballooned_bytes + b.free_reported_bytes + b.swapped_file_bytes +
	      b.swapped_compressed_bytes + b.drift_bytes + b.unmapped_bytes;
	assert_int_equal(sum, b.promised_bytes);
	assert_int_equal(b.host_bytes, (700 + 30 + 115 + 30) * PG + 8192);
	assert_int_equal(b.saved.dedup, (280 - 115) * PG);
	assert_int_equal(b.saved.zero, 90 * PG);
	assert_int_equal(b.saved.balloon, 200 * PG);
	assert_int_equal(b.saved.free_report, 50 * PG);
	assert_int_equal(b.saved.swap, (100 - 30) * PG);
}

/* Real guest RAM: the breakdown follows discards, and the audit agrees. */
static void test_breakdown_real(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine_cap(GiB, &log);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 16 * MiB, (void **)&ram);
	struct rf_vm_breakdown b = {.size = sizeof(b)};
	struct rf_host_stats hs = {.size = sizeof(hs)};
	struct rf_ledger_audit_report rep = {.size = sizeof(rep)};

	(void)state;
	memset(ram, 7, 8 * MiB);
	assert_int_equal(rf_vm_discard_as(vm, 2 * MiB, MiB / PG, RF_PAGE_ZERO, NULL), 0);
	assert_int_equal(rf_vm_discard_as(vm, 4 * MiB, 2 * MiB / PG, RF_PAGE_BALLOONED, NULL), 0);
	assert_int_equal(rf_vm_discard_as(vm, 6 * MiB, MiB / PG, RF_PAGE_FREE_REPORTED, NULL), 0);
	assert_int_equal(rf_vm_breakdown(vm, &b), 0);
	assert_int_equal(b.promised_bytes, 16 * MiB);
	assert_int_equal(b.private_bytes, 4 * MiB);
	assert_int_equal(b.untouched_bytes, 8 * MiB);
	assert_int_equal(b.zero_bytes, MiB);
	assert_int_equal(b.ballooned_bytes, 2 * MiB);
	assert_int_equal(b.free_reported_bytes, MiB);
	assert_int_equal(b.drift_bytes, 0);
	assert_int_equal(b.shares, RF_SHARES_DEFAULT);
	assert_int_equal(b.limit_bytes, UINT64_MAX);
	assert_true(b.metadata_bytes > 0);
	assert_int_equal(b.host_bytes, 4 * MiB + b.metadata_bytes);
	assert_int_equal(b.saved.balloon, 2 * MiB);
	assert_int_equal(b.guest_free_bytes, UINT64_MAX);

	/* The guest writes a zero page again: drift, still adds up. */
	ram[2 * MiB] = 1;
	assert_int_equal(rf_vm_breakdown(vm, &b), 0);
	assert_int_equal(b.drift_bytes, PG);
	assert_int_equal(b.zero_bytes, MiB - PG);

	assert_int_equal(rf_host_stats(e, &hs), 0);
	assert_int_equal(hs.used_bytes, b.host_bytes);
	assert_int_equal(hs.free_bytes, GiB - b.host_bytes);
	assert_true(hs.process_rss_bytes >= 4 * MiB);
	assert_int_equal(hs.state, RF_MEM_HIGH);

	assert_int_equal(rf_ledger_audit(e, &rep), 0);
	assert_int_equal(rep.vms_checked, 1);
	assert_int_equal(rep.vms_disagreeing, 0);
	assert_int_equal(rep.kernel_rss_bytes, 4 * MiB + PG);
	assert_int_equal(rep.ledger_resident_bytes, 4 * MiB + PG);
	assert_string_equal(rep.first_reason, "");
	assert_int_equal(rf_vm_breakdown(NULL, &b), -EINVAL);
	assert_int_equal(rf_ledger_audit(e, NULL), -EINVAL);
	rf_engine_free(e);
}

/* One store page mapped twice in each of two VMs: each VM is charged half. */
static void test_fair_share(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine_cap(GiB, &log);
	uint8_t *ra, *rb;
	rf_vm *a = rf_test_vm(e, "a", 4 * MiB, (void **)&ra);
	rf_vm *b = rf_test_vm(e, "b", 4 * MiB, (void **)&rb);
	int fd = memfd_create("store", MFD_CLOEXEC);
	struct rf_vm_breakdown ba = {.size = sizeof(ba)}, bb = {.size = sizeof(bb)};
	struct rf_host_stats hs = {.size = sizeof(hs)};
	struct rf_ledger_audit_report rep = {.size = sizeof(rep)};
	struct rf_features f = {.size = sizeof(f)};
	volatile uint8_t sink;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, PG), 0);
	assert_int_equal(pwrite(fd, "shared", 6, 0), 6);
	for (int i = 0; i < 2; i++) {
		uint8_t *pa = ra + (uint64_t)(10 + i) * PG, *pb = rb + (uint64_t)(20 + i) * PG;

		assert_ptr_equal(
		    mmap(pa, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0), pa);
		assert_ptr_equal(
		    mmap(pb, PG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0), pb);
		sink = pa[0];
		sink = pb[0];
		rf_test_set_state(a, (uint64_t)(10 + i) * PG, RF_PAGE_MERGED);
		rf_test_set_state(b, (uint64_t)(20 + i) * PG, RF_PAGE_MERGED);
	}
	(void)sink;
	close(fd);
	memset(ra, 1, 8 * PG); /* 8 private pages in a */
	assert_int_equal(rf_engine_features(e, &f), 0);
	assert_int_equal(rf_vm_breakdown(a, &ba), 0);
	assert_int_equal(rf_vm_breakdown(b, &bb), 0);
	assert_int_equal(ba.shared_bytes, 2 * PG);
	assert_int_equal(ba.shared_resident_bytes, 2 * PG);
	assert_int_equal(ba.private_bytes, 8 * PG);
	assert_int_equal(rf_host_stats(e, &hs), 0);
	if (f.pagemap_pfn) {
		/* Four mappings of one page: a quarter each, half per VM. */
		assert_int_equal(ba.shared_fair_bytes, PG / 2);
		assert_int_equal(bb.shared_fair_bytes, PG / 2);
		assert_int_equal(ba.saved.dedup, 2 * PG - PG / 2);
		assert_int_equal(hs.store_pages_resident, 1);
	} else {
		print_message("pagemap hides PFNs here: each mapping charged a whole page\n");
		assert_int_equal(ba.shared_fair_bytes, 2 * PG);
	}
	/* The kernel agrees: Pss of the four mappings is one page. */
	assert_int_equal(rf_ledger_audit(e, &rep), 0);
	assert_int_equal(rep.kernel_rss_bytes, 12 * PG);
	assert_int_equal(rep.kernel_pss_bytes, 9 * PG);
	rf_engine_free(e);
}

/* The audit catches a counter that lies, a table that lies, a breakdown that lies. */
static void test_audit_catches(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine_cap(GiB, &log);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 16 * MiB, (void **)&ram);
	struct rf_ledger_audit_report rep = {.size = sizeof(rep)};
	struct rf_ledger_check c;
	char why[256];

	(void)state;
	memset(ram, 7, 8 * MiB);
	assert_int_equal(rf_ledger_audit(e, &rep), 0);

	/* A counter off by 4 MiB worth of pages. */
	atomic_fetch_add(&vm->state_pages[RF_PAGE_ZERO], 1024);
	assert_int_equal(rf_ledger_audit(e, &rep), -EIO);
	assert_int_equal(rep.vms_disagreeing, 1);
	assert_non_null(strstr(rep.first_reason, "vm0: ledger: the counters say 1024 zero pages, "
						 "the table holds 0"));
	assert_log_contains(&log, "the counters say 1024 zero pages");
	atomic_fetch_sub(&vm->state_pages[RF_PAGE_ZERO], 1024);
	assert_int_equal(rf_ledger_audit(e, &rep), 0);

	/* The table claims 2 MiB ballooned that the guest still holds. */
	for (uint64_t g = 0; g < 2 * MiB; g += PG)
		rf_test_set_state(vm, g, RF_PAGE_BALLOONED);
	assert_int_equal(rf_ledger_audit(e, &rep), -EIO);
	assert_non_null(strstr(rep.first_reason, "2.0 MiB resident in pages the table says are "
						 "ballooned or swapped out"));
	for (uint64_t g = 0; g < 2 * MiB; g += PG)
		rf_test_set_state(vm, g, RF_PAGE_PRIVATE);
	assert_int_equal(rf_ledger_audit(e, &rep), 0);

	/* A breakdown that disagrees with the kernel's Rss or Pss. */
	memset(&c, 0, sizeof(c));
	c.name = "vmX";
	c.mapped_bytes = 64 * MiB;
	c.ledger_resident_bytes = c.ledger_fair_bytes = 40 * MiB;
	c.kernel_rss_bytes = 40 * MiB + 800 * 1024; /* within 2% + 1 MiB */
	c.kernel_pss_bytes = 40 * MiB;
	c.slack_bytes = MiB;
	c.pct = 2;
	assert_int_equal(rf_ledger_compare(&c, why, sizeof(why)), 0);
	c.kernel_rss_bytes = 44 * MiB;
	assert_int_equal(rf_ledger_compare(&c, why, sizeof(why)), -EIO);
	assert_string_equal(why, "vmX: ledger: 40.0 MiB resident by the ledger, 44.0 MiB by the "
				 "kernel (smaps Rss), tolerance 1.9 MiB");
	c.kernel_rss_bytes = 40 * MiB;
	c.kernel_pss_bytes = 43 * MiB;
	assert_int_equal(rf_ledger_compare(&c, why, sizeof(why)), -EIO);
	assert_non_null(strstr(why, "fair cost 40.0 MiB, but the kernel charges 43.0 MiB"));
	c.kernel_pss_bytes = 30 * MiB; /* the store's own mapping takes a share: fine */
	assert_int_equal(rf_ledger_compare(&c, why, sizeof(why)), 0);
	rf_engine_free(e);
}

/* A VM freed while the ledger is configured, and an engine freed with VMs. */
/*
 * The breakdown shows a VM's resident target however it was set: through
 * rf_vm_set_swap_target (the embedder), or remembered by the ledger for a
 * policy whose own actuator swaps (no swap pager of ramfold's).
 */
static void test_breakdown_shows_swap_target(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_swap_engine(&log, false, 64 * MiB, 0);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 16 * MiB, (void **)&ram);
	rf_vm *other = rf_test_vm(e, "vm1", 16 * MiB, (void **)&ram);
	struct rf_vm_breakdown b = {.size = sizeof(b)};

	(void)state;
	assert_int_equal(rf_vm_breakdown(vm, &b), 0);
	assert_int_equal(b.resident_target_bytes, UINT64_MAX);
	assert_int_equal(rf_vm_set_swap_target(vm, 8 * MiB), 0);
	assert_int_equal(rf_vm_breakdown(vm, &b), 0);
	assert_int_equal(b.resident_target_bytes, 8 * MiB);
	assert_int_equal(rf_vm_set_swap_target(vm, RF_SWAP_NO_TARGET), 0);
	assert_int_equal(rf_vm_breakdown(vm, &b), 0);
	assert_int_equal(b.resident_target_bytes, UINT64_MAX);
	/* A policy's own actuator: what the ledger remembers. */
	atomic_store(&other->ledger->resident_target, 4 * MiB);
	assert_int_equal(rf_vm_breakdown(other, &b), 0);
	assert_int_equal(b.resident_target_bytes, 4 * MiB);
	rf_engine_free(e);
}

/* The policy acts on the targets it set, never on the embedder's: a tick
 * without pressure leaves a target set with rf_vm_set_swap_target as it
 * is. (Once the breakdown showed the embedder's target, the policy took it
 * for its own and lifted it: the stress test's swapping nearly stopped.) */
static void test_policy_leaves_embedder_target(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_swap_engine(&log, false, 64 * MiB, 0);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 16 * MiB, (void **)&ram);
	struct rf_vm_breakdown b = {.size = sizeof(b)};

	(void)state;
	assert_int_equal(rf_vm_set_swap_target(vm, 8 * MiB), 0);
	for (int i = 0; i < 3; i++)
		assert_int_equal(rf_policy_tick(e), 0);
	assert_int_equal(rf_vm_breakdown(vm, &b), 0);
	assert_int_equal(b.resident_target_bytes, 8 * MiB);
	rf_engine_free(e);
}

static void test_lifecycle(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine_cap(GiB, &log);
	rf_vm *a = NULL, *b = NULL;
	struct rf_host_stats hs = {.size = sizeof(hs)};

	(void)state;
	assert_int_equal(new_vm(e, "a", 64 * MiB, 32 * MiB, &a), 0);
	assert_int_equal(new_vm(e, "b", 64 * MiB, 32 * MiB, &b), 0);
	rf_vm_free(a);
	assert_int_equal(rf_host_stats(e, &hs), 0);
	assert_int_equal(hs.nr_vms, 1);
	assert_int_equal(hs.reserved_bytes, 32 * MiB);
	assert_int_equal(rf_mem_state_name(RF_MEM_HARD)[0], 'h');
	assert_string_equal(rf_mem_state_name(RF_MEM_LOW), "low");
	rf_engine_free(e); /* frees b, its ledger first */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_admit_arithmetic),
	    cmocka_unit_test(test_admission_control),
	    cmocka_unit_test(test_breakdown_arithmetic),
	    cmocka_unit_test(test_breakdown_real),
	    cmocka_unit_test(test_fair_share),
	    cmocka_unit_test(test_audit_catches),
	    cmocka_unit_test(test_lifecycle),
	    cmocka_unit_test(test_breakdown_shows_swap_target),
	    cmocka_unit_test(test_policy_leaves_embedder_target),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
