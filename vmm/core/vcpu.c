/* SPDX-License-Identifier: MIT */
/*
 * The vCPU thread: KVM_RUN and its exits. A fault of the guest (triple
 * fault, internal error, an access to no device) ends this VM alone, with
 * one clear line; the other VMs' threads never notice.
 *
 * Stopping: vmm_vm_request_stop() sets vm->stop, sets immediate_exit in the
 * kvm_run page (so a KVM_RUN about to start returns at once) and sends
 * SIGUSR1 to the thread (so one in progress returns with EINTR, and so does
 * a nanosleep of the debug device). The handler does nothing; it exists so
 * the signal interrupts instead of killing.
 */
#include <errno.h>
#include <linux/kvm.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>

#include "core/util.h"
#include "core/vm_internal.h"
#include "devices/debug.h"
#include "native/x86_setup.h"

static void sigusr1(int sig)
{
	(void)sig;
}

void vcpu_signal_init(void)
{
	struct sigaction sa = {.sa_handler = sigusr1}; /* no SA_RESTART */

	sigemptyset(&sa.sa_mask);
	sigaction(SIGUSR1, &sa, NULL);
}

void vm_end(struct vmm_vm *vm, enum vmm_vm_state state, const char *fmt, ...)
{
	char line[320];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(vm->end_reason, sizeof(vm->end_reason), fmt, ap);
	va_end(ap);
	atomic_store(&vm->state, state);
	if (state == VMM_VM_FAULTED) {
		snprintf(line, sizeof(line),
			 "guest fault: %s; this VM is stopped, the others keep running",
			 vm->end_reason);
		vmm_errorf("%s: %s", vm->name, line);
	} else {
		snprintf(line, sizeof(line), "%s", vm->end_reason);
		if (!vm->vmm->quiet)
			vmm_printf("%s: %s", vm->name, line);
	}
	if (vm->console_log)
		fprintf(vm->console_log, "%8.3f [vmm] %s\n", (now_ns() - vm->start_ns) / 1e9, line);
}

static bool handle_mmio(struct vmm_vm *vm)
{
	struct kvm_run *run = vm->run;
	uint64_t addr = run->mmio.phys_addr, status;
	int rc = mmio_bus_access(vm->bus, addr, run->mmio.data, run->mmio.len, run->mmio.is_write);

	if (rc == -ENOENT) {
		vm_end(vm, VMM_VM_FAULTED,
		       "%s of %u bytes at unknown MMIO address 0x%llx (rip 0x%llx)",
		       run->mmio.is_write ? "write" : "read", run->mmio.len,
		       (unsigned long long)addr, (unsigned long long)x86_guest_rip(vm));
		return false;
	}
	if (rc == -EINVAL) {
		vm_end(vm, VMM_VM_FAULTED, "MMIO access of %u bytes at 0x%llx is not supported",
		       run->mmio.len, (unsigned long long)addr);
		return false;
	}
	if (rc) {
		vm_end(vm, VMM_VM_FAULTED, "device %s failed at 0x%llx: %s",
		       mmio_bus_window_name(vm->bus, addr), (unsigned long long)addr,
		       strerror(-rc));
		return false;
	}
	if (debug_dev_exit_requested(vm, &status)) {
		vm->exit_status = (int)status;
		vm_end(vm, VMM_VM_EXITED, "guest exited with status %llu",
		       (unsigned long long)status);
		return false;
	}
	return true;
}

void *vcpu_thread(void *arg)
{
	struct vmm_vm *vm = arg;
	struct kvm_run *run = vm->run;
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);
	for (;;) {
		unsigned long long rip;

		if (atomic_load(&vm->stop)) {
			vm_end(vm, VMM_VM_STOPPED, "stopped by the VMM");
			break;
		}
		if (ioctl(vm->vcpufd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				run->immediate_exit = 0;
				continue;
			}
			vm_end(vm, VMM_VM_FAULTED, "KVM_RUN failed: %s", strerror(errno));
			break;
		}
		atomic_fetch_add(&vm->exits, 1);
		switch (run->exit_reason) {
		case KVM_EXIT_MMIO:
			if (handle_mmio(vm))
				continue;
			break;
		case KVM_EXIT_IO:
			if (vm->vmm->boot) {
				if (vm->vmm->boot->port_io(vm))
					continue;
				break;
			}
			vm_end(vm, VMM_VM_FAULTED,
			       "port I/O (%s of %u bytes at port 0x%x) has no device",
			       run->io.direction == KVM_EXIT_IO_OUT ? "out" : "in", run->io.size,
			       run->io.port);
			break;
		case KVM_EXIT_INTR:
			continue;
		case KVM_EXIT_SHUTDOWN:
			rip = x86_guest_rip(vm);
			vm_end(vm, VMM_VM_FAULTED, "triple fault (KVM_EXIT_SHUTDOWN) at rip 0x%llx",
			       rip);
			break;
		case KVM_EXIT_INTERNAL_ERROR:
			rip = x86_guest_rip(vm);
			vm_end(vm, VMM_VM_FAULTED, "KVM internal error (suberror %u) at rip 0x%llx",
			       run->internal.suberror, rip);
			break;
		case KVM_EXIT_FAIL_ENTRY:
			vm_end(vm, VMM_VM_FAULTED, "VM entry failed (hardware reason 0x%llx)",
			       (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
			break;
		case KVM_EXIT_HLT:
			rip = x86_guest_rip(vm);
			vm_end(vm, VMM_VM_FAULTED, "guest halted (hlt) at rip 0x%llx", rip);
			break;
		default:
			rip = x86_guest_rip(vm);
			vm_end(vm, VMM_VM_FAULTED, "unexpected KVM exit reason %u at rip 0x%llx",
			       run->exit_reason, rip);
			break;
		}
		break;
	}
	vmm_wake(vm->vmm);
	return NULL;
}
