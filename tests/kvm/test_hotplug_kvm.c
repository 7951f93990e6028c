/* SPDX-License-Identifier: MIT */
/*
 * Memory hotplug under a real vCPU: the writer guest (kvm_mini.h) rewrites
 * 128 pages of region A round after round on its own thread, checking after
 * every round that each page holds the round's value, while the main thread
 * plugs region B (promise grown, B adopted, KVM memory slot 1 added),
 * writes it, and unplugs it (slot removed, B released, promise shrunk), on
 * and on. Not one guest write may be lost, and B's bytes stay the
 * embedder's.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "internal.h"
#include "kvm_mini.h"
#include "rf_test.h"

#define MiB   (1ull << 20)
#define PG    4096u
#define A_RAM (2 * MiB)
#define B_RAM (2 * MiB)
#define B_GPA (64 * MiB)

struct guest {
	struct rf_kvm_mini k;
	uint8_t *ram;
	uint8_t tpl[PG];
	atomic_bool stop;
	atomic_uint rounds, bad;
};

static void *vcpu(void *arg)
{
	struct guest *g = arg;

	for (unsigned int r = 0; !atomic_load(&g->stop); r++) {
		rf_kvm_mini_run_to_port(&g->k, 0x10); /* end of a round */
		atomic_fetch_add(&g->bad, rf_kvm_writer_bad_pages(g->ram, g->tpl, 0, r));
		atomic_fetch_add(&g->rounds, 1);
	}
	return NULL;
}

static void set_slot(struct guest *g, uint64_t size, void *hva)
{
	struct kvm_userspace_memory_region m = {.slot = 1,
						.guest_phys_addr = B_GPA,
						.memory_size = size,
						.userspace_addr = (uintptr_t)hva};

	assert_int_equal(ioctl(g->k.vm, KVM_SET_USER_MEMORY_REGION, &m), 0);
}

static void test_hotplug_under_vcpu(void **state)
{
	static struct guest g;
	struct rf_features f = {.size = sizeof(f)};
	rf_engine *e = rf_test_engine(NULL);
	uint8_t *b = mmap(NULL, B_RAM, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned int cycles = 0;
	uint64_t t_end;
	pthread_t t;
	rf_vm *vm;

	(void)state;
	assert_true(b != MAP_FAILED);
	rf_engine_features(e, &f);
	if (!f.kvm) {
		rf_engine_free(e);
		rf_require(false, "/dev/kvm not available");
	}
	vm = rf_test_vm(e, "hp0", A_RAM, (void **)&g.ram);
	rf_kvm_mini_setup(&g.k, g.ram, A_RAM);
	memcpy(g.ram + 0x1000, rf_kvm_writer_guest, sizeof(rf_kvm_writer_guest));
	memset(g.tpl, 0x5c, PG);
	memset(g.tpl + RF_KVM_WRITER_WORD_OFF, 0, 4);
	for (unsigned int p = 0; p < RF_KVM_WRITER_NPAGES; p++)
		memcpy(g.ram + RF_KVM_WRITER_FIRST_PAGE + p * PG, g.tpl, PG);
	assert_int_equal(pthread_create(&t, NULL, vcpu, &g), 0);

	t_end = rf_test_now_ms() + 3000;
	while (cycles < 20 || (rf_test_now_ms() < t_end && cycles < 1000)) {
		assert_int_equal(rf_vm_set_ram_bytes(vm, A_RAM + B_RAM), 0);
		assert_int_equal(rf_vm_adopt_ram(vm, B_GPA, b, B_RAM, 0), 0);
		set_slot(&g, B_RAM, b);
		memset(b, (int)(cycles & 0xff), B_RAM);
		assert_int_equal(rf_vm_set_ram_bytes(vm, A_RAM), -EBUSY);
		set_slot(&g, 0, b); /* the slot goes before the region */
		assert_int_equal(rf_vm_release_ram(vm, B_GPA), 0);
		assert_int_equal(rf_vm_set_ram_bytes(vm, A_RAM), 0);
		assert_int_equal(b[B_RAM - 1], (uint8_t)cycles);
		cycles++;
	}
	atomic_store(&g.stop, true);
	pthread_join(t, NULL);
	printf("# %u hotplug cycles, %u guest rounds (%u writes)\n", cycles, atomic_load(&g.rounds),
	       atomic_load(&g.rounds) * RF_KVM_WRITER_NPAGES);
	assert_int_equal(atomic_load(&g.bad), 0);
	assert_true(atomic_load(&g.rounds) > 0);
	assert_int_equal(rf_vm_ram_bytes(vm), A_RAM);
	rf_kvm_mini_teardown(&g.k);
	rf_engine_free(e);
	munmap(b, B_RAM);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hotplug_under_vcpu),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
