/* SPDX-License-Identifier: MIT */
/*
 * One VM: library VM and guest RAM, KVM VM and vCPU, guest image, boot-info
 * page, preload, devices. Setup order matters only in that devices and
 * modules see RAM already mapped and loaded, and nothing runs until
 * vm_start().
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/module.h"
#include "core/util.h"
#include "core/vm_internal.h"
#include "devices/debug.h"
#include "native/guest_image.h"
#include "native/preload.h"
#include "native/x86_setup.h"

#define ALIGN_UP(x, a) (((x) + (a)-1) & ~((uint64_t)(a)-1))

const char *vmm_vm_state_name(enum vmm_vm_state s)
{
	static const char *const names[] = {"created", "booting", "ready",
					    "exited",  "faulted", "stopped"};

	return (unsigned int)s < sizeof(names) / sizeof(names[0]) ? names[s] : "?";
}

struct vmm_vm *vmm_find_vm(struct vmm *vmm, const char *name)
{
	for (unsigned int i = 0; i < vmm->nr_vms; i++)
		if (!strcmp(vmm->vms[i]->name, name))
			return vmm->vms[i];
	return NULL;
}

const char *vmm_vm_key(const struct vmm_vm *vm, const char *key)
{
	for (unsigned int i = 0; i < vm->nr_keys; i++)
		if (!strcmp(vm->keys[i].key, key))
			return vm->keys[i].val;
	return NULL;
}

int vmm_vm_add_mmio_device(struct vmm_vm *vm, const char *name, uint32_t virtio_id,
			   const struct mmio_ops *ops, void *opaque, uint64_t *base)
{
	struct rf_bootinfo *bi = vm->bootinfo;
	uint64_t gpa;
	int rc;

	if (vm->next_mmio_slot >= RF_MMIO_SLOTS || bi->nr_devices >= RF_BOOTINFO_MAX_DEVICES)
		return -ENOSPC;
	gpa = RF_MMIO_BASE + vm->next_mmio_slot * RF_MMIO_SLOT_SIZE;
	rc = mmio_bus_register(vm->bus, gpa, RF_MMIO_SLOT_SIZE, ops, opaque, name);
	if (rc)
		return rc;
	vm->next_mmio_slot++;
	bi->devices[bi->nr_devices++] = (struct rf_bootinfo_device){.base = gpa,
								    .size = RF_MMIO_SLOT_SIZE,
								    .kind = RF_DEV_VIRTIO_MMIO,
								    .device_id = virtio_id};
	if (base)
		*base = gpa;
	return 0;
}

static int create_kvm_vm(struct vmm *vmm, struct vmm_vm *vm)
{
	struct kvm_userspace_memory_region r = {
	    .slot = 0,
	    .guest_phys_addr = 0,
	    .memory_size = vm->mem_bytes,
	    .userspace_addr = (uintptr_t)vm->ram,
	};

	vm->vmfd = ioctl(vmm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vmfd < 0) {
		vmm_errorf("%s: KVM_CREATE_VM: %s", vm->name, strerror(errno));
		return -1;
	}
	if (ioctl(vm->vmfd, KVM_SET_USER_MEMORY_REGION, &r)) {
		vmm_errorf("%s: KVM_SET_USER_MEMORY_REGION: %s", vm->name, strerror(errno));
		return -1;
	}
	if (vmm->boot && vmm->boot->vm_created(vm))
		return -1;
	vm->vcpufd = ioctl(vm->vmfd, KVM_CREATE_VCPU, 0);
	if (vm->vcpufd < 0) {
		vmm_errorf("%s: KVM_CREATE_VCPU: %s", vm->name, strerror(errno));
		return -1;
	}
	vm->run =
	    mmap(NULL, (size_t)vmm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vm->vcpufd, 0);
	if (vm->run == MAP_FAILED) {
		vm->run = NULL;
		vmm_errorf("%s: mmap of kvm_run: %s", vm->name, strerror(errno));
		return -1;
	}
	return 0;
}

static int load_guest(struct vmm *vmm, struct vmm_vm *vm)
{
	struct rf_bootinfo *bi;
	uint64_t preload_gpa = ALIGN_UP(vmm->image_end, 2ull << 20);

	x86_build_tables(vm->ram, vm->mem_bytes);
	guest_image_copy(vmm, vm->ram);
	bi = vm->bootinfo = (struct rf_bootinfo *)(vm->ram + RF_BOOTINFO_GPA);
	memset(bi, 0, sizeof(*bi));
	bi->magic = RF_BOOTINFO_MAGIC;
	bi->version = RF_BOOTINFO_VERSION;
	bi->size = sizeof(*bi);
	snprintf(bi->name, sizeof(bi->name), "%s", vm->name);
	bi->ram_bytes = vm->mem_bytes;
	bi->workload = vm->workload;
	bi->p = vm->params;
	bi->preload_gpa = preload_gpa;
	if (vm->workload == RF_WL_OSIMAGE && !vmm->boot) {
		struct preload_result res;
		uint64_t limit = vm->params.mib << 20;

		if (preload_gpa + limit > vm->mem_bytes) {
			vmm_errorf(
			    "%s: RAM too small: mem=%lluM cannot hold %lluM of files above the "
			    "guest image",
			    vm->name, (unsigned long long)(vm->mem_bytes >> 20),
			    (unsigned long long)vm->params.mib);
			return -1;
		}
		if (preload_fill(vm->name, vm->preload_dir, vm->preload_glob, vm->ram + preload_gpa,
				 limit, &res))
			return -1;
		bi->preload_bytes = res.bytes;
		bi->preload_files = res.files;
		bi->preload_data_bytes = res.data_bytes;
	}
	bi->free_start = preload_gpa + bi->preload_bytes;
	return 0;
}

int vm_setup(struct vmm *vmm, struct vmm_vm *vm)
{
	struct rf_vm_config cfg;
	int rc;

	vm->vmfd = vm->vcpufd = -1;
	rf_vm_config_init(&cfg);
	cfg.ram_bytes = vm->mem_bytes;
	if (vm->thp)
		cfg.flags |= RF_VM_THP;
	for (const struct vmm_module *const *m = vmm_modules; *m; m++)
		if ((*m)->vm_config && (*m)->vm_config(vm, &cfg))
			return -1;
	rc = rf_vm_new(vmm->engine, vm->name, &cfg, &vm->rf);
	if (rc) {
		char err[256];

		rf_engine_last_error(vmm->engine, err, sizeof(err));
		vmm_errorf("%s: rf_vm_new: %s (%s)", vm->name, strerror(-rc), err);
		return -1;
	}
	rc = rf_vm_map_ram(vm->rf, 0, vm->mem_bytes, (void **)&vm->ram);
	if (rc) {
		vmm_errorf("%s: rf_vm_map_ram of %llu MiB: %s", vm->name,
			   (unsigned long long)(vm->mem_bytes >> 20), strerror(-rc));
		return -1;
	}
	if (create_kvm_vm(vmm, vm) || load_guest(vmm, vm))
		return -1;
	vm->bus = mmio_bus_new();
	if (!vm->bus) {
		vmm_errorf("%s: out of memory", vm->name);
		return -1;
	}
	if (debug_dev_register(vm))
		return -1;
	vm->next_mmio_slot = 1;
	for (const struct vmm_module *const *m = vmm_modules; *m; m++)
		if ((*m)->vm_devices && (*m)->vm_devices(vm))
			return -1;
	for (const struct vmm_module *const *m = vmm_modules; *m; m++)
		if ((*m)->vm_setup && (*m)->vm_setup(vm))
			return -1;
	return vmm->boot ? vmm->boot->setup_vcpu(vm) : x86_setup_vcpu(vmm, vm, vmm->image_entry);
}

int vm_start(struct vmm_vm *vm)
{
	sigset_t set, old;
	int rc;

	/* The thread starts with SIGUSR1 blocked and unblocks it itself, so a
	 * stop request cannot hit it before it can handle it. */
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_BLOCK, &set, &old);
	vm->start_ns = now_ns();
	atomic_store(&vm->state, VMM_VM_BOOTING);
	rc = pthread_create(&vm->thread, NULL, vcpu_thread, vm);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc) {
		atomic_store(&vm->state, VMM_VM_FAULTED);
		vmm_errorf("%s: cannot start the vCPU thread: %s", vm->name, strerror(rc));
		return -1;
	}
	vm->thread_started = true;
	return 0;
}

void vmm_vm_request_stop(struct vmm_vm *vm)
{
	atomic_store(&vm->stop, true);
	if (vm->run)
		vm->run->immediate_exit = 1;
	if (vm->thread_started)
		pthread_kill(vm->thread, SIGUSR1);
}

void vmm_wake(struct vmm *vmm)
{
	uint64_t one = 1;

	if (vmm->wake_fd >= 0 && write(vmm->wake_fd, &one, sizeof(one)) < 0) {
		/* the counter cannot overflow in practice; nothing to do */
	}
}

void vm_join(struct vmm_vm *vm)
{
	if (vm->thread_started) {
		pthread_join(vm->thread, NULL);
		vm->thread_started = false;
	}
}

void vm_destroy(struct vmm_vm *vm)
{
	const struct vmm_module *const *m = vmm_modules;

	while (*m) /* then back: vm_teardown runs in reverse table order */
		m++;
	while (m-- > vmm_modules)
		if ((*m)->vm_teardown)
			(*m)->vm_teardown(vm);
	mmio_bus_free(vm->bus);
	vm->bus = NULL;
	if (vm->run)
		munmap(vm->run, (size_t)vm->vmm->run_size);
	if (vm->vcpufd >= 0)
		close(vm->vcpufd);
	if (vm->vmfd >= 0)
		close(vm->vmfd);
	rf_vm_free(vm->rf);
	if (vm->console_log)
		fclose(vm->console_log);
	for (unsigned int i = 0; i < vm->nr_keys; i++) {
		free(vm->keys[i].key);
		free(vm->keys[i].val);
	}
	free(vm->preload_dir);
	free(vm->preload_glob);
	free(vm);
}
