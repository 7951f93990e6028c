/* SPDX-License-Identifier: MIT */
/*
 * The demo VMM: one process, several KVM VMs, one vCPU thread per VM, guest
 * RAM from libramfold (public API only: the VMM is an embedder like any
 * other). This header is what the VMM's own files and its modules (the
 * balloon device, the library modules, the Linux boot path) see: the VMM
 * and VM state, and the services modules call.
 *
 * Threads and who touches what:
 *   main thread   parses options, sets every VM up, then runs the control
 *                 socket, the live table / CSV, module ticks, and tears down;
 *   vCPU thread   one per VM: KVM_RUN and its exits (MMIO bus, console).
 * struct vmm_vm fields marked [setup] are written before the vCPU thread
 * starts and read-only afterwards; [atomic] ones may be read from any thread.
 *
 * One extension mechanism (see docs/vmm.md): modules, core/module.h. A
 * module's hooks add devices (vmm_vm_add_mmio_device, below) and control
 * commands (vmm_ctl_register, ctl/ctl.h).
 */
#ifndef VMM_VMM_H
#define VMM_VMM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <ramfold/ramfold.h>

#include "../../guest/bootinfo.h"
#include "core/print.h"
#include "devices/mmio_bus.h"

#define VMM_MAX_VMS  64
#define VMM_MAX_KEYS 32

struct kvm_run;
struct vmm;
struct vmm_vm;

/*
 * An alternative guest loader (linux/linux.c, --kernel): NULL for the
 * native guest. Set while options are parsed.
 */
struct vmm_boot_ops {
	int (*vm_created)(struct vmm_vm *vm); /* KVM VM made, no vCPU yet; 0 or -1 */
	int (*setup_vcpu)(struct vmm_vm *vm); /* instead of x86_setup_vcpu; 0 or -1 */
	bool (*port_io)(struct vmm_vm *vm);   /* a KVM_EXIT_IO; false: the VM ended */
};

enum vmm_vm_state {
	VMM_VM_CREATED = 0, /* set up, vCPU not started */
	VMM_VM_BOOTING,	    /* running, READY not seen yet */
	VMM_VM_READY,	    /* the guest printed READY */
	VMM_VM_EXITED,	    /* the guest exited through the debug device */
	VMM_VM_FAULTED,	    /* triple fault, internal error, bad access: ended alone */
	VMM_VM_STOPPED,	    /* stopped by the VMM (quit, --duration) */
};

const char *vmm_vm_state_name(enum vmm_vm_state s);

/* One key=value of a --vm spec, as given. */
struct vmm_kv {
	char *key, *val;
};

struct vmm_vm {
	struct vmm *vmm;
	unsigned int idx;		  /* [setup] position in vmm->vms */
	char name[32];			  /* [setup] */
	struct vmm_kv keys[VMM_MAX_KEYS]; /* [setup] every key of the --vm spec */
	unsigned int nr_keys;

	/* Guest configuration [setup]. */
	uint64_t mem_bytes;
	enum rf_workload workload;
	struct rf_wl_params params;
	char *preload_dir; /* osimage */
	char *preload_glob;
	bool console_stdout;
	bool thp; /* thp=on: guest RAM backed by transparent huge pages (RF_VM_THP) */

	/* Library and KVM [setup]. */
	rf_vm *rf;
	uint8_t *ram;		      /* host address of guest RAM (gpa 0) */
	struct rf_bootinfo *bootinfo; /* inside ram, at RF_BOOTINFO_GPA */
	int vmfd, vcpufd;
	struct kvm_run *run;
	struct mmio_bus *bus;
	unsigned int next_mmio_slot; /* slot 0 is the debug device */
	pthread_t thread;
	bool thread_started;

	/* Run state. */
	_Atomic int state;		/* [atomic] enum vmm_vm_state */
	_Atomic bool stop;		/* [atomic] asked to stop */
	uint64_t start_ns;		/* [setup] when the vCPU thread was started */
	_Atomic uint64_t ready_ns;	/* [atomic] when READY was seen, 0 before */
	_Atomic uint64_t exits;		/* [atomic] VM exits handled */
	_Atomic uint64_t console_lines; /* [atomic] */
	int exit_status;		/* valid once state is EXITED */
	char end_reason[256];		/* valid once the vCPU thread ended */

	/* Console: written by the vCPU thread only. */
	FILE *console_log;
	void *debug; /* devices/debug.c */

	/* Per-VM state of modules, each owned by the file named. */
	void *balloon; /* devices/balloon.c */
	void *dedup;   /* modules/dedup.c */
	void *ext[4];  /* ext[0]: linux/linux.c; the others free */
};

struct vmm {
	rf_engine *engine;
	struct vmm_vm *vms[VMM_MAX_VMS];
	unsigned int nr_vms;

	/* Options. */
	const char *guest_path;
	const char *kvm_path;
	const char *hide_features; /* --hide-features, for rf_engine_config_hide */
	const char *ctl_path;
	const char *log_dir;
	const char *csv_path;
	const char *preload_dir; /* default for osimage VMs */
	double duration_s;	 /* 0: until the guests end or quit */
	int table_mode;		 /* -1 auto (tty), 0 off, 1 on */
	bool console_stdout;
	bool quiet;

	/* KVM. */
	int kvm_fd;
	int run_size;
	void *cpuid;			 /* struct kvm_cpuid2 *, from KVM_GET_SUPPORTED_CPUID */
	const struct vmm_boot_ops *boot; /* NULL: the native guest */

	/* The guest image, loaded once, copied into each VM. */
	uint8_t *image;
	uint64_t image_entry, image_end; /* gpa */
	struct vmm_image_seg {
		uint64_t gpa, filesz, memsz, off;
	} segs[8];
	unsigned int nr_segs;
	uint64_t image_file_size;

	_Atomic bool quit; /* [atomic] stop everything */
	int wake_fd;	   /* eventfd: wakes the main loop */
	uint64_t start_ns;
};

/* Find a VM by name; NULL if none. */
struct vmm_vm *vmm_find_vm(struct vmm *vmm, const char *name);

/* Value of key @key in the VM's --vm spec, or NULL. */
const char *vmm_vm_key(const struct vmm_vm *vm, const char *key);

/*
 * For modules' vm_devices hooks (core/module.h): take the next MMIO slot above RAM,
 * route it to @ops/@opaque on the VM's bus, and list it in the guest's
 * boot-info page as a virtio-mmio device with @virtio_id. *@base gets the
 * slot's guest-physical address. -ENOSPC when slots or boot-info entries run
 * out. Only before the vCPU runs.
 */
int vmm_vm_add_mmio_device(struct vmm_vm *vm, const char *name, uint32_t virtio_id,
			   const struct mmio_ops *ops, void *opaque, uint64_t *base);

/* Ask one VM to stop (any thread); it ends as STOPPED unless it already ended. */
void vmm_vm_request_stop(struct vmm_vm *vm);
/* Wake the main loop (any thread). */
void vmm_wake(struct vmm *vmm);

#endif
