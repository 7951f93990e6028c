/* SPDX-License-Identifier: MIT */
/*
 * The demo VMM: one process, several KVM VMs, one vCPU thread per VM, guest
 * RAM from libramfold (public API only: the VMM is an embedder like any
 * other). This header is what the VMM's own files and its extensions (the
 * balloon device, the dedup glue, later ones) see.
 *
 * Threads and who touches what:
 *   main thread   parses options, sets every VM up, then runs the control
 *                 socket, the live table / CSV, module ticks, and tears down;
 *   vCPU thread   one per VM: KVM_RUN and its exits (MMIO bus, console).
 * struct vmm_vm fields marked [setup] are written before the vCPU thread
 * starts and read-only afterwards; [atomic] ones may be read from any thread.
 *
 * Extension points (see docs/vmm.md):
 *   devices.c     per-VM device setup functions (a table: add one line);
 *   vmm_module    options, --vm keys and lifecycle hooks, registered from a
 *                 constructor with VMM_MODULE() (no edit of main.c needed);
 *   ctl.h         control-socket commands (vmm_ctl_register).
 */
#ifndef VMM_VMM_H
#define VMM_VMM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <ramfold/ramfold.h>

#include "../guest/bootinfo.h"
#include "mmio_bus.h"

#define VMM_MAX_VMS  64
#define VMM_MAX_KEYS 32

struct kvm_run;
struct vmm;
struct vmm_vm;

/*
 * An alternative guest loader (vmm/linux_guest.c, --kernel): NULL for the
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
	void *debug; /* vmm/debug_dev.c */

	/* Per-VM state of extensions, each owned by the file named. */
	void *balloon; /* vmm/balloon_dev.c */
	void *dedup;   /* vmm/dedup_glue.c */
	void *ext[4];  /* free for later extensions */
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
	pthread_mutex_t out_lock; /* serialises stdout lines */
};

/* Find a VM by name; NULL if none. */
struct vmm_vm *vmm_find_vm(struct vmm *vmm, const char *name);

/* Value of key @key in the VM's --vm spec, or NULL. */
const char *vmm_vm_key(const struct vmm_vm *vm, const char *key);

/*
 * For device setup functions (devices.c): take the next MMIO slot above RAM,
 * route it to @ops/@opaque on the VM's bus, and list it in the guest's
 * boot-info page as a virtio-mmio device with @virtio_id. *@base gets the
 * slot's guest-physical address. -ENOSPC when slots or boot-info entries run
 * out. Only before the vCPU runs.
 */
int vmm_vm_add_mmio_device(struct vmm_vm *vm, const char *name, uint32_t virtio_id,
			   const struct mmio_ops *ops, void *opaque, uint64_t *base);

/* Print one line on stdout (under out_lock, no interleaving with the table). */
void vmm_printf(struct vmm *vmm, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* One line on stderr, prefixed "ramfold-vmm: ". */
void vmm_errorf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Ask one VM to stop (any thread); it ends as STOPPED unless it already ended. */
void vmm_vm_request_stop(struct vmm_vm *vm);
/* Wake the main loop (any thread). */
void vmm_wake(struct vmm *vmm);

/* ---- modules: options, --vm keys and lifecycle hooks ---------------- */

struct vmm_option {
	const char *name; /* long option without "--" */
	const char *arg;  /* argument name for --help, NULL for a flag */
	const char *help;
	/* @value is NULL for a flag. Return 0, or -1 after printing one line
	 * with vmm_errorf() (the VMM then exits with status 2). */
	int (*parse)(struct vmm *vmm, const char *value);
};

struct vmm_module {
	const char *name;
	const struct vmm_option *options; /* ends with {NULL} ; may be NULL */
	const char *const *vm_keys;	  /* extra --vm keys it reads, NULL-terminated */
	/* Each hook may be NULL. A hook returning non-zero must have printed one
	 * clear line (vmm_errorf); the VMM then tears down and exits non-zero. */
	int (*engine_config)(struct vmm *vmm,
			     struct rf_engine_config *cfg);	       /* before rf_engine_new */
	int (*start)(struct vmm *vmm);				       /* engine up, no VM yet */
	int (*vm_config)(struct vmm_vm *vm, struct rf_vm_config *cfg); /* before rf_vm_new */
	int (*vm_setup)(struct vmm_vm *vm);	/* RAM mapped and loaded, before the vCPU */
	void (*vm_teardown)(struct vmm_vm *vm); /* vCPU stopped, RAM still mapped */
	void (*tick)(struct vmm *vmm);		/* about once a second, main thread */
	void (*stop)(struct vmm *vmm);		/* before the VMs are torn down */
};

void vmm_module_register(const struct vmm_module *m);
unsigned int vmm_nr_modules(void);
const struct vmm_module *vmm_module_at(unsigned int i);

/* Register a module from its own file, before main() runs. */
#define VMM_MODULE(m)                                                                              \
	static void __attribute__((constructor)) m##_register_ctor(void)                           \
	{                                                                                          \
		vmm_module_register(&(m));                                                         \
	}

#endif
