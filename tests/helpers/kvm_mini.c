/* SPDX-License-Identifier: MIT */
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "kvm_mini.h"
#include "rf_test.h"

const uint8_t rf_kvm_writer_guest[38] = {
    0x66, 0x31, 0xdb, 0x66, 0x89, 0xd8, 0x66, 0x83, 0xe0, 0x03, 0xb9, 0x00, 0x10,
    0xba, 0x80, 0x00, 0x8e, 0xc1, 0x26, 0x66, 0xa3, 0x40, 0x00, 0x81, 0xc1, 0x00,
    0x01, 0x4a, 0x75, 0xf2, 0x66, 0x43, 0x88, 0xd8, 0xe6, 0x10, 0xeb, 0xdd,
};

unsigned int rf_kvm_writer_bad_pages(const uint8_t *ram, const uint8_t *tpl, size_t tpl_stride,
				     unsigned int round)
{
	const size_t pg = 4096, off = RF_KVM_WRITER_WORD_OFF;
	uint32_t want = round & 3;
	unsigned int bad = 0;

	for (unsigned int i = 0; i < RF_KVM_WRITER_NPAGES; i++) {
		const uint8_t *p = ram + RF_KVM_WRITER_FIRST_PAGE + i * pg,
			      *t = tpl + i * tpl_stride;
		uint32_t v;

		memcpy(&v, p + off, 4);
		bad += v != want || memcmp(p, t, off) != 0 ||
		       memcmp(p + off + 4, t + off + 4, pg - off - 4) != 0;
	}
	return bad;
}

void rf_kvm_mini_setup(struct rf_kvm_mini *k, void *ram, uint64_t size)
{
	struct kvm_userspace_memory_region mr = {
	    .slot = 0,
	    .guest_phys_addr = 0,
	    .memory_size = size,
	    .userspace_addr = (uintptr_t)ram,
	};

	k->kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	assert_true(k->kvm >= 0);
	k->vm = ioctl(k->kvm, KVM_CREATE_VM, 0);
	assert_true(k->vm >= 0);
	assert_int_equal(ioctl(k->vm, KVM_SET_USER_MEMORY_REGION, &mr), 0);
	k->vcpu = ioctl(k->vm, KVM_CREATE_VCPU, 0);
	assert_true(k->vcpu >= 0);
	k->run_size = ioctl(k->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	assert_true(k->run_size > 0);
	k->run = mmap(NULL, (size_t)k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, k->vcpu, 0);
	assert_true(k->run != MAP_FAILED);
	rf_kvm_mini_reset(k);
}

void rf_kvm_mini_reset(struct rf_kvm_mini *k)
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

uint8_t rf_kvm_mini_run_to_port(struct rf_kvm_mini *k, uint16_t port)
{
	for (;;) {
		assert_int_equal(ioctl(k->vcpu, KVM_RUN, 0), 0);
		if (k->run->exit_reason != KVM_EXIT_IO)
			fail_msg("unexpected KVM exit %u", k->run->exit_reason);
		if (k->run->io.port == port)
			return *((uint8_t *)k->run + k->run->io.data_offset);
	}
}

void rf_kvm_mini_teardown(struct rf_kvm_mini *k)
{
	munmap(k->run, (size_t)k->run_size);
	close(k->vcpu);
	close(k->vm);
	close(k->kvm);
}
