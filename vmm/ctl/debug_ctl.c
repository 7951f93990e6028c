/* SPDX-License-Identifier: MIT */
/*
 * The debug_ctl module: test-only control commands, registered only with
 * --debug-ctl (from the option's parse, so they exist only then): they let a
 * test damage guest memory on purpose, to prove that the integrity oracle
 * (memcheck) notices. Never enable them on a VMM you care about.
 *
 *   debug-poke {"vm": NAME, "gpa": ADDR, "value": U64}
 *       writes the 8-byte value at guest-physical ADDR (checked accessor).
 */
#include <string.h>

#include "core/module.h"
#include "core/vmm.h"
#include "ctl/ctl.h"

static int debug_poke(struct vmm_ctl_req *req, void *arg)
{
	struct vmm_vm *vm = vmm_ctl_arg_vm(req);
	uint64_t gpa, value;
	void *hva;

	(void)arg;
	if (!vm)
		return -1;
	if (json_get_u64(req->args, "gpa", &gpa) || json_get_u64(req->args, "value", &value))
		return vmm_ctl_fail(req, "debug-poke: \"gpa\" and \"value\" must be integers");
	if (gpa & 7)
		return vmm_ctl_fail(req, "debug-poke: gpa 0x%llx is not 8-byte aligned",
				    (unsigned long long)gpa);
	if (rf_vm_gpa_to_hva(vm->rf, gpa, 8, &hva))
		return vmm_ctl_fail(req, "debug-poke: gpa 0x%llx is not guest RAM of %s",
				    (unsigned long long)gpa, vm->name);
	__atomic_store_n((uint64_t *)hva, value, __ATOMIC_RELAXED);
	return 0;
}

static int enable(struct vmm *vmm, const char *value)
{
	(void)vmm;
	(void)value;
	vmm_ctl_register("debug-poke", "test only: write 8 bytes of guest RAM", debug_poke, NULL);
	return 0;
}

static const struct vmm_option debug_options[] = {
    {"debug-ctl", NULL, "add test-only control commands (debug-poke)", enable},
    {NULL},
};

const struct vmm_module debug_ctl_module = {
    .name = "debug_ctl",
    .options = debug_options,
};
