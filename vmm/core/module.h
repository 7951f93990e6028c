/* SPDX-License-Identifier: MIT */
/*
 * The demo VMM's one extension mechanism: modules. Everything that is not
 * the VMM's own plumbing (vmm/core/) is a module: the balloon device, the
 * Linux boot path, the test-only control commands and the library modules
 * (dedup, swap, ledger and policy). A module is a const struct vmm_module in
 * its own file, named after the module, and one line in the module table,
 * vmm_modules[] in vmm/core/module_table.c. Nothing registers itself: the
 * table is the whole list, and its order is the order of everything below.
 *
 * A module may declare
 *   options      --NAME [ARG] (parsed in command-line order, shown in --help
 *                in table order);
 *   vm_keys      extra --vm keys it reads with vmm_vm_key() (accepted for
 *                every workload; listed in --help as "--vm keys of NAME");
 *   hooks        each may be NULL, called on the main thread:
 *
 *     engine_config  before rf_engine_new()
 *     start          engine up, no VM yet
 *     vm_config      per VM, before rf_vm_new()
 *     vm_devices     per VM, RAM mapped and loaded: add the VM's devices with
 *                    vmm_vm_add_mmio_device() (core/vmm.h); slot 0 is the
 *                    core's debug device, then slots in table order, so a
 *                    device has the same guest-physical address in every VM
 *                    and every run
 *     vm_setup       per VM, after every module's vm_devices, before the vCPU
 *     vm_teardown    per VM, vCPU stopped, RAM still mapped; also after a
 *                    failed setup, so check for NULL state
 *     tick           about once a second from the main loop
 *     stop           before the VMs are torn down (only if the engine was made)
 *
 * Order: every hook runs in table order, stop included; vm_teardown alone
 * runs in reverse. So the table order is also the shutdown order: the
 * ledger comes first because its policy thread and metrics server read and
 * drive the mechanisms the later modules stop (dedup, balloon, swap).
 *
 * Hooks that return int return 0, or non-zero after printing one clear line
 * with vmm_errorf(); the VMM then tears down and exits with status 2.
 *
 * Second level: a module adds control commands with vmm_ctl_register()
 * (ctl/ctl.h) from one of its hooks, normally start (the debug_ctl module
 * does it from its option's parse, so its command exists only with
 * --debug-ctl). `help` lists commands in the order they were registered.
 */
#ifndef VMM_CORE_MODULE_H
#define VMM_CORE_MODULE_H

struct rf_engine_config;
struct rf_vm_config;
struct vmm;
struct vmm_vm;

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
	int (*engine_config)(struct vmm *vmm, struct rf_engine_config *cfg);
	int (*start)(struct vmm *vmm);
	int (*vm_config)(struct vmm_vm *vm, struct rf_vm_config *cfg);
	int (*vm_devices)(struct vmm_vm *vm);
	int (*vm_setup)(struct vmm_vm *vm);
	void (*vm_teardown)(struct vmm_vm *vm);
	void (*tick)(struct vmm *vmm);
	void (*stop)(struct vmm *vmm);
};

/* The module table (core/module_table.c), NULL-terminated. */
extern const struct vmm_module *const vmm_modules[];

#endif
