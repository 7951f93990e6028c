/* SPDX-License-Identifier: MIT */
/*
 * Library-owned guest RAM under a real vCPU: the host address rf_vm_map_ram()
 * returns is what KVM maps, guest writes land in it and show in the measured
 * stats, and a discard by the library is seen by the guest at once (KVM's
 * MMU notifier), as zeros.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"
#include "kvm_mini.h"
#include "rf_test.h"

#define MiB (1ull << 20)

static void test_guest_ram_under_vcpu(void **state)
{
	static const uint8_t code[] = {
	    0xc6, 0x06, 0x00, 0x20, 0x42, /* mov byte [0x2000], 0x42 */
	    0xa0, 0x00, 0x30,		  /* mov al, [0x3000] */
	    0xe6, 0x10,			  /* out 0x10, al */
	    0xf4,			  /* hlt */
	};
	struct rf_features f = {.size = sizeof(f)};
	struct rf_vm_stats st = {.size = sizeof(st)};
	struct rf_kvm_mini k;
	rf_engine *e = rf_test_engine(NULL);
	uint8_t *ram;
	rf_vm *vm;

	(void)state;
	rf_engine_features(e, &f);
	if (!f.kvm) {
		rf_engine_free(e);
		rf_require(false, "/dev/kvm not available");
	}
	vm = rf_test_vm(e, "vm0", 2 * MiB, (void **)&ram);
	rf_kvm_mini_setup(&k, ram, 2 * MiB);
	memcpy(ram + 0x1000, code, sizeof(code));
	ram[0x3000] = 0x77;
	assert_int_equal(rf_kvm_mini_run_to_port(&k, 0x10), 0x77);
	assert_int_equal(ram[0x2000], 0x42); /* the guest's write, seen through the hva */
	assert_int_equal(rf_vm_stats(vm, &st), 0);
	assert_true(st.resident_bytes >= 3 * 4096);

	/* Discard the page the guest reads: it must now read zero. */
	assert_int_equal(rf_vm_discard_as(vm, 0x3000, 1, RF_PAGE_ZERO, NULL), 0);
	rf_kvm_mini_reset(&k);
	assert_int_equal(rf_kvm_mini_run_to_port(&k, 0x10), 0);
	assert_int_equal(rf_vm_page_state(vm, 0x3000), RF_PAGE_ZERO);

	rf_kvm_mini_teardown(&k);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_guest_ram_under_vcpu),
	};

	return cmocka_run_group_tests_name("core_kvm", tests, NULL, NULL);
}
