/* SPDX-License-Identifier: MIT */
/*
 * rf_vm_set_ram_bytes, the promise changed for memory hotplug: a region that
 * did not fit (-E2BIG) fits after a grow, by map and by adopt; a shrink
 * below the mapped regions (-EBUSY) or the reservation (-EINVAL) and a grow
 * admission control refuses (-ENOMEM) are logged with the VM and the sizes
 * and change nothing; every reader of the promise (rf_vm_stats,
 * rf_vm_breakdown, rf_host_stats) follows; and a thread writing region A
 * keeps every write while region B comes and goes and the promise grows and
 * shrinks, with readers never seeing a promise below the mapped bytes.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>

#include "internal.h"
#include "ledger.h"
#include "rf_test.h"

#define MiB (1ull << 20)
#define PG  4096ull

static rf_vm *new_vm(rf_engine *e, const char *name, uint64_t ram, uint64_t resv)
{
	struct rf_vm_config vc;
	rf_vm *vm = NULL;

	rf_vm_config_init(&vc);
	vc.ram_bytes = ram;
	vc.reservation_bytes = resv;
	assert_int_equal(rf_vm_new(e, name, &vc, &vm), 0);
	return vm;
}

/* The promise as every reader reports it; they must agree. */
static uint64_t promised(rf_engine *e, rf_vm *vm)
{
	struct rf_vm_stats st = {.size = sizeof(st)};
	struct rf_vm_breakdown bd = {.size = sizeof(bd)};

	assert_int_equal(rf_vm_stats(vm, &st), 0);
	assert_int_equal(rf_vm_breakdown(vm, &bd), 0);
	assert_int_equal(st.promised_bytes, rf_vm_ram_bytes(vm));
	assert_int_equal(bd.promised_bytes, rf_vm_ram_bytes(vm));
	assert_int_equal(bd.unmapped_bytes, st.promised_bytes - st.mapped_bytes);
	(void)e;
	return st.promised_bytes;
}

static uint64_t host_promised(rf_engine *e)
{
	struct rf_host_stats hs = {.size = sizeof(hs)};

	assert_int_equal(rf_host_stats(e, &hs), 0);
	return hs.promised_bytes;
}

static void test_grow_then_map(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine_cap(1024 * MiB, &log);
	rf_vm *vm = new_vm(e, "hp0", 4 * MiB, 0), *other = new_vm(e, "hp1", 8 * MiB, 0);
	void *a, *b = NULL;

	(void)state;
	assert_int_equal(rf_vm_map_ram(vm, 0, 4 * MiB, &a), 0);
	assert_int_equal(rf_vm_map_ram(vm, 16 * MiB, 2 * MiB, &b), -E2BIG);
	assert_null(b);
	assert_int_equal(host_promised(e), 12 * MiB);

	assert_int_equal(rf_vm_set_ram_bytes(vm, 6 * MiB), 0);
	assert_int_equal(promised(e, vm), 6 * MiB);
	assert_int_equal(host_promised(e), 14 * MiB);
	assert_int_equal(rf_vm_map_ram(vm, 16 * MiB, 2 * MiB, &b), 0);
	memset(b, 0x5a, 2 * MiB);
	/* Full again: the next one is refused as before. */
	assert_int_equal(rf_vm_map_ram(vm, 32 * MiB, PG, &b), -E2BIG);

	/* Same value: accepted, nothing to admit. */
	assert_int_equal(rf_vm_set_ram_bytes(vm, 6 * MiB), 0);
	/* Unmap, then shrink back: the host sum follows. */
	assert_int_equal(rf_vm_unmap_ram(vm, 16 * MiB), 0);
	assert_int_equal(rf_vm_set_ram_bytes(vm, 4 * MiB), 0);
	assert_int_equal(promised(e, vm), 4 * MiB);
	assert_int_equal(host_promised(e), 12 * MiB);
	assert_int_equal(promised(e, other), 8 * MiB);
	rf_vm_free(other);
	rf_vm_free(vm);
	rf_engine_free(e);
}

static void test_grow_then_adopt(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine_cap(1024 * MiB, &log);
	rf_vm *vm = new_vm(e, "hp0", 2 * MiB, 0);
	uint8_t *mem =
	    mmap(NULL, 4 * MiB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	(void)state;
	assert_true(mem != MAP_FAILED);
	assert_int_equal(rf_vm_adopt_ram(vm, 0, mem, 2 * MiB, 0), 0);
	assert_int_equal(rf_vm_adopt_ram(vm, 8 * MiB, mem + 2 * MiB, 2 * MiB, 0), -E2BIG);
	assert_non_null(strstr(log.last, "would exceed the promised RAM"));
	assert_int_equal(rf_vm_nr_regions(vm), 1);

	assert_int_equal(rf_vm_set_ram_bytes(vm, 4 * MiB), 0);
	assert_int_equal(rf_vm_adopt_ram(vm, 8 * MiB, mem + 2 * MiB, 2 * MiB, 0), 0);
	memset(mem + 2 * MiB, 0x33, 2 * MiB);
	assert_int_equal(promised(e, vm), 4 * MiB);
	assert_int_equal(rf_vm_release_ram(vm, 8 * MiB), 0);
	assert_int_equal(rf_vm_set_ram_bytes(vm, 2 * MiB), 0);
	assert_int_equal(host_promised(e), 2 * MiB);
	/* The embedder's memory was never touched by the shrink. */
	for (uint64_t i = 0; i < 2 * MiB; i += PG)
		assert_int_equal(mem[2 * MiB + i], 0x33);
	rf_vm_free(vm);
	munmap(mem, 4 * MiB);
	rf_engine_free(e);
}

static void test_shrink_refused(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine_cap(1024 * MiB, &log);
	rf_vm *vm = new_vm(e, "hp0", 8 * MiB, 2 * MiB);
	uint8_t *a, *b;

	(void)state;
	assert_int_equal(rf_vm_map_ram(vm, 0, 4 * MiB, (void **)&a), 0);
	assert_int_equal(rf_vm_map_ram(vm, 8 * MiB, 2 * MiB, (void **)&b), 0);
	memset(a, 0x11, 4 * MiB);

	/* Below the 6 MiB mapped: -EBUSY, naming the VM and both sizes. */
	assert_int_equal(rf_vm_set_ram_bytes(vm, 4 * MiB), -EBUSY);
	assert_non_null(strstr(log.last, "hp0: set_ram_bytes: cannot promise 0x400000 bytes: "
					 "0x600000 are mapped in 2 regions"));
	assert_int_equal(promised(e, vm), 8 * MiB);
	assert_int_equal(host_promised(e), 8 * MiB);
	/* Exactly the mapped bytes is fine. */
	assert_int_equal(rf_vm_set_ram_bytes(vm, 6 * MiB), 0);
	assert_int_equal(rf_vm_map_ram(vm, 16 * MiB, PG, (void **)&b), -E2BIG);

	/* Below the reservation: -EINVAL, the reservation does not follow. */
	assert_int_equal(rf_vm_unmap_ram(vm, 8 * MiB), 0);
	assert_int_equal(rf_vm_unmap_ram(vm, 0), 0);
	assert_int_equal(rf_vm_set_ram_bytes(vm, 1 * MiB), -EINVAL);
	assert_non_null(strstr(log.last, "hp0: set_ram_bytes: 1.0 MiB is below the reservation "
					 "2.0 MiB"));
	assert_int_equal(promised(e, vm), 6 * MiB);
	assert_int_equal(rf_vm_set_reservation(vm, 1 * MiB), 0);
	assert_int_equal(rf_vm_set_ram_bytes(vm, 1 * MiB), 0);
	assert_int_equal(promised(e, vm), 1 * MiB);
	/* And a reservation cannot now go above the smaller promise. */
	assert_int_equal(rf_vm_set_reservation(vm, 2 * MiB), -EINVAL);

	/* Bad values: -EINVAL, logged, nothing changed. */
	assert_int_equal(rf_vm_set_ram_bytes(vm, 0), -EINVAL);
	assert_non_null(strstr(log.last, "hp0: set_ram_bytes: promised RAM 0 bytes"));
	assert_int_equal(rf_vm_set_ram_bytes(vm, 4 * MiB + 100), -EINVAL);
	assert_non_null(strstr(log.last, "not a positive multiple of 4 KiB"));
	assert_int_equal(rf_vm_set_ram_bytes(NULL, 4 * MiB), -EINVAL);
	assert_int_equal(rf_vm_ram_bytes(NULL), 0);
	assert_int_equal(promised(e, vm), 1 * MiB);
	rf_vm_free(vm);
	rf_engine_free(e);
}

static void test_grow_admission(void **state)
{
	struct rf_test_log log;
	rf_engine *e = rf_test_engine_cap(64 * MiB, &log);
	struct rf_ledger_config lc;
	struct rf_host_stats hs = {.size = sizeof(hs)};
	rf_vm *a, *b;
	void *hva;

	(void)state;
	rf_ledger_config_init(&lc);
	lc.max_overcommit_permille = 1000; /* no overcommit: promises <= 64 MiB */
	assert_int_equal(rf_ledger_configure(e, &lc), 0);
	a = new_vm(e, "hp0", 32 * MiB, 0);
	b = new_vm(e, "hp1", 16 * MiB, 0);
	assert_int_equal(rf_vm_map_ram(b, 0, 16 * MiB, &hva), 0);

	/* 32 + 48 > 64: refused by the ledger with its reason. */
	assert_int_equal(rf_vm_set_ram_bytes(b, 48 * MiB), -ENOMEM);
	assert_non_null(strstr(log.last, "hp1: set_ram_bytes: 48.0 MiB refused: 48.0 MiB for this "
					 "VM would promise 1.25x the host's 64.0 MiB (maximum "
					 "overcommit 1.00x)"));
	assert_int_equal(promised(e, b), 16 * MiB);
	assert_int_equal(rf_host_stats(e, &hs), 0);
	assert_int_equal(hs.promised_bytes, 48 * MiB);
	assert_int_equal(hs.admissions_refused, 1);
	assert_int_equal(rf_vm_map_ram(b, 32 * MiB, PG, &hva), -E2BIG);

	/* Exactly full is admitted; shrinking is never refused by the ledger. */
	assert_int_equal(rf_vm_set_ram_bytes(b, 32 * MiB), 0);
	assert_int_equal(host_promised(e), 64 * MiB);
	assert_int_equal(rf_vm_set_ram_bytes(a, 8 * MiB), 0);
	assert_int_equal(host_promised(e), 40 * MiB);
	/* The room a's shrink made is b's to take. */
	assert_int_equal(rf_vm_set_ram_bytes(b, 56 * MiB), 0);
	assert_int_equal(rf_vm_set_ram_bytes(b, 56 * MiB + PG), -ENOMEM);
	assert_int_equal(rf_host_stats(e, &hs), 0);
	assert_int_equal(hs.promised_bytes, 64 * MiB);
	assert_int_equal(hs.overcommit_permille, 1000);
	assert_int_equal(hs.admissions_refused, 2);
	rf_vm_free(a);
	rf_vm_free(b);
	rf_engine_free(e);
}

/* The arithmetic: a size going up meets the low state and the ratio, not
 * the reservations (which do not change). */
static void test_admit_promise_arithmetic(void **state)
{
	struct rf_admission a = {.capacity = 64 * MiB,
				 .reserved_others = 64 * MiB, /* already over: not asked */
				 .reservation = 4 * MiB,
				 .promised_others = 32 * MiB,
				 .promised = 32 * MiB,
				 .max_overcommit_permille = 1000,
				 .promise_growing = true};
	char why[256];

	(void)state;
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), 0);
	a.promised += PG;
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), -ENOMEM);
	assert_non_null(strstr(why, "for this VM would promise"));
	a.promise_growing = false; /* shrinking */
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), 0);
	a.promise_growing = true;
	a.max_overcommit_permille = 0;
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), 0);
	a.state = RF_MEM_LOW;
	assert_int_equal(rf_ledger_admit(&a, why, sizeof(why)), -ENOMEM);
	assert_non_null(strstr(why, "no VM may be grown"));
}

/* ---- concurrency ---- */

#define A_BYTES (2 * MiB)
#define B_BYTES (2 * MiB)

struct race {
	rf_engine *e;
	rf_vm *vm;
	uint8_t *a;
	atomic_bool stop;
	atomic_ulong rounds, bad, readings, inconsistent;
};

/* Region A: each round writes the round number into every page, then
 * checks them all. */
static void *writer(void *arg)
{
	struct race *r = arg;

	for (uint32_t round = 1; !atomic_load(&r->stop); round++) {
		for (uint64_t off = 0; off < A_BYTES; off += PG)
			memcpy(r->a + off + (round % 64) * 8, &round, sizeof(round));
		for (uint64_t off = 0; off < A_BYTES; off += PG) {
			uint32_t v;

			memcpy(&v, r->a + off + (round % 64) * 8, sizeof(v));
			if (v != round)
				atomic_fetch_add(&r->bad, 1);
		}
		atomic_fetch_add(&r->rounds, 1);
	}
	return NULL;
}

/* Readers of the promise: it always covers the mapped bytes. */
static void *reader(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->stop)) {
		struct rf_vm_stats st = {.size = sizeof(st)};
		struct rf_host_stats hs = {.size = sizeof(hs)};
		struct rf_vm_breakdown bd = {.size = sizeof(bd)};

		if (rf_vm_stats(r->vm, &st) != 0 || st.promised_bytes < st.mapped_bytes ||
		    st.mapped_bytes < A_BYTES || st.promised_bytes > A_BYTES + B_BYTES)
			atomic_fetch_add(&r->inconsistent, 1);
		if (rf_host_stats(r->e, &hs) != 0 || hs.promised_bytes < A_BYTES ||
		    hs.promised_bytes > A_BYTES + B_BYTES)
			atomic_fetch_add(&r->inconsistent, 1);
		if (rf_vm_breakdown(r->vm, &bd) != 0 ||
		    bd.unmapped_bytes > bd.promised_bytes - A_BYTES)
			atomic_fetch_add(&r->inconsistent, 1);
		atomic_fetch_add(&r->readings, 1);
	}
	return NULL;
}

/* rf_vm_stats alone, as fast as it goes: the promise and the mapped bytes
 * it reports come from one moment. */
static void *stats_reader(void *arg)
{
	struct race *r = arg;

	while (!atomic_load(&r->stop)) {
		struct rf_vm_stats st = {.size = sizeof(st)};

		if (rf_vm_stats(r->vm, &st) != 0 || st.promised_bytes < st.mapped_bytes)
			atomic_fetch_add(&r->inconsistent, 1);
		atomic_fetch_add(&r->readings, 1);
	}
	return NULL;
}

static void test_hotplug_while_writing(void **state)
{
	struct rf_test_log log;
	struct race r = {0};
	pthread_t w, rd, sr;
	uint8_t *mem =
	    mmap(NULL, B_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned int cycles = 0;
	uint64_t t_end;

	(void)state;
	assert_true(mem != MAP_FAILED);
	r.e = rf_test_engine_cap(1024 * MiB, &log);
	r.vm = new_vm(r.e, "hp0", A_BYTES, 0);
	assert_int_equal(rf_vm_map_ram(r.vm, 0, A_BYTES, (void **)&r.a), 0);
	assert_int_equal(pthread_create(&w, NULL, writer, &r), 0);
	assert_int_equal(pthread_create(&rd, NULL, reader, &r), 0);
	assert_int_equal(pthread_create(&sr, NULL, stats_reader, &r), 0);

	/* B at 1 GiB: mapped by the library on even cycles, adopted on odd. */
	t_end = rf_test_now_ms() + 3000;
	while (cycles < 50 || (rf_test_now_ms() < t_end && cycles < 2000)) {
		uint8_t *b = NULL;
		bool adopt = cycles & 1;

		assert_int_equal(rf_vm_set_ram_bytes(r.vm, A_BYTES + B_BYTES), 0);
		if (adopt) {
			assert_int_equal(rf_vm_adopt_ram(r.vm, 1024 * MiB, mem, B_BYTES, 0), 0);
			b = mem;
		} else {
			assert_int_equal(rf_vm_map_ram(r.vm, 1024 * MiB, B_BYTES, (void **)&b), 0);
		}
		memset(b, (int)(cycles & 0xff), B_BYTES);
		/* Shrinking while B is there is refused, and B stays. */
		assert_int_equal(rf_vm_set_ram_bytes(r.vm, A_BYTES), -EBUSY);
		assert_int_equal(b[B_BYTES - 1], (uint8_t)cycles);
		if (adopt)
			assert_int_equal(rf_vm_release_ram(r.vm, 1024 * MiB), 0);
		else
			assert_int_equal(rf_vm_unmap_ram(r.vm, 1024 * MiB), 0);
		assert_int_equal(rf_vm_set_ram_bytes(r.vm, A_BYTES), 0);
		cycles++;
	}
	atomic_store(&r.stop, true);
	pthread_join(w, NULL);
	pthread_join(rd, NULL);
	pthread_join(sr, NULL);
	printf("# %u hotplug cycles, %lu writer rounds, %lu readings\n", cycles,
	       (unsigned long)atomic_load(&r.rounds), (unsigned long)atomic_load(&r.readings));
	assert_int_equal(atomic_load(&r.bad), 0);
	assert_int_equal(atomic_load(&r.inconsistent), 0);
	assert_true(atomic_load(&r.rounds) > 0);
	assert_true(atomic_load(&r.readings) > 0);
	assert_int_equal(rf_vm_nr_regions(r.vm), 1);
	assert_int_equal(promised(r.e, r.vm), A_BYTES);
	rf_vm_free(r.vm);
	rf_engine_free(r.e);
	munmap(mem, B_BYTES);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_grow_then_map),
	    cmocka_unit_test(test_grow_then_adopt),
	    cmocka_unit_test(test_shrink_refused),
	    cmocka_unit_test(test_grow_admission),
	    cmocka_unit_test(test_admit_promise_arithmetic),
	    cmocka_unit_test(test_hotplug_while_writing),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
