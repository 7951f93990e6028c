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
#include "rf_test.h"

#define MiB (1ull << 20)

struct kvm_ctx {
	int kvm, vm, vcpu;
	struct kvm_run *run;
};

static int kvm_setup(struct kvm_ctx *k, void *ram, uint64_t size)
{
	struct kvm_userspace_memory_region mr = {
	    .slot = 0,
	    .guest_phys_addr = 0,
	    .memory_size = size,
	    .userspace_addr = (uintptr_t)ram,
	};
	int sz;

	k->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->kvm < 0)
		return -errno;
	k->vm = ioctl(k->kvm, KVM_CREATE_VM, 0);
	assert_true(k->vm >= 0);
	assert_int_equal(ioctl(k->vm, KVM_SET_USER_MEMORY_REGION, &mr), 0);
	k->vcpu = ioctl(k->vm, KVM_CREATE_VCPU, 0);
	assert_true(k->vcpu >= 0);
	sz = ioctl(k->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	k->run = mmap(NULL, (size_t)sz, PROT_READ | PROT_WRITE, MAP_SHARED, k->vcpu, 0);
	assert_true(k->run != MAP_FAILED);
	return 0;
}

/* Real mode, cs:ip = 0:0x1000. */
static void reset_regs(struct kvm_ctx *k)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	assert_int_equal(ioctl(k->vcpu, KVM_GET_SREGS, &sregs), 0);
	sregs.cs.base = 0;
	sregs.cs.selector = 0;
	sregs.ds.base = 0;
	sregs.ds.selector = 0;
	assert_int_equal(ioctl(k->vcpu, KVM_SET_SREGS, &sregs), 0);
	memset(&regs, 0, sizeof(regs));
	regs.rip = 0x1000;
	regs.rflags = 2;
	assert_int_equal(ioctl(k->vcpu, KVM_SET_REGS, &regs), 0);
}

/* Run until the guest writes port 0x10; return the byte written. */
static int run_to_port(struct kvm_ctx *k)
{
	for (;;) {
		assert_int_equal(ioctl(k->vcpu, KVM_RUN, 0), 0);
		if (k->run->exit_reason == KVM_EXIT_IO && k->run->io.port == 0x10)
			return *((uint8_t *)k->run + k->run->io.data_offset);
		if (k->run->exit_reason != KVM_EXIT_IO)
			fail_msg("unexpected exit %u", k->run->exit_reason);
	}
}

static void test_guest_ram_under_vcpu(void **state)
{
	static const uint8_t code[] = {
	    0xc6, 0x06, 0x00, 0x20, 0x42, /* mov byte [0x2000], 0x42 */
	    0xa0, 0x00, 0x30,		  /* mov al, [0x3000] */
	    0xe6, 0x10,			  /* out 0x10, al */
	    0xf4,			  /* hlt */
	};
	struct rf_features f;
	struct rf_vm_stats st;
	struct kvm_ctx k = {-1, -1, -1, NULL};
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
	assert_int_equal(kvm_setup(&k, ram, 2 * MiB), 0);
	memcpy(ram + 0x1000, code, sizeof(code));
	ram[0x3000] = 0x77;
	reset_regs(&k);
	assert_int_equal(run_to_port(&k), 0x77);
	assert_int_equal(ram[0x2000], 0x42); /* the guest's write, seen through the hva */
	assert_int_equal(rf_vm_stats(vm, &st), 0);
	assert_true(st.resident_bytes >= 3 * 4096);

	/* Discard the page the guest reads: it must now read zero. */
	assert_int_equal(rf_vm_discard(vm, 0x3000, 1, RF_PAGE_ZERO, NULL), 0);
	reset_regs(&k);
	assert_int_equal(run_to_port(&k), 0);
	assert_int_equal(rf_vm_page_state(vm, 0x3000), RF_PAGE_ZERO);

	munmap(k.run, 4096);
	close(k.vcpu);
	close(k.vm);
	close(k.kvm);
	rf_engine_free(e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_guest_ram_under_vcpu),
	};

	return cmocka_run_group_tests_name("core_kvm", tests, NULL, NULL);
}
