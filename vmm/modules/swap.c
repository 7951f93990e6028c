/* SPDX-License-Identifier: MIT */
/*
 * Swap in the demo VMM: options for the engine's swap store, --vm keys for a
 * VM's resident target and swap cap, the control commands set-swap and
 * query-swap, and a tick that reports a VM the swap pager had to stop.
 *
 *   --swap-dir DIR          directory of the (unlinked) swap file
 *   --swap-tier SIZE        memory of the compressed tier (0: off)
 *   --swap-file-limit SIZE  size limit of the swap file
 *   --vm ...,swap-resident=SIZE,swap-cap=SIZE,swap-sample=MS[:PAGES]|off
 *   set-swap vm=NAME [resident=SIZE|none] [cap=SIZE|none]
 *   query-swap vm=NAME   (also the VM's fault stall: stall-ns, stall-faults,
 *                        and working-set sampling: active-bytes & co.)
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/module.h"
#include "core/util.h"
#include "core/vmm.h"
#include "ctl/ctl.h"
#include "ctl/wire.h"

static struct rf_swap_config swap_cfg;
static bool swap_cfg_set;
static char swap_dir[256];
static bool reported_stop[VMM_MAX_VMS];

static void cfg_defaults(void)
{
	if (!swap_cfg_set) {
		rf_swap_config_init(&swap_cfg);
		swap_cfg_set = true;
	}
}

static int opt_dir(struct vmm *vmm, const char *value)
{
	(void)vmm;
	cfg_defaults();
	if (strlen(value) >= sizeof(swap_dir)) {
		vmm_errorf("--swap-dir: path too long");
		return -1;
	}
	strcpy(swap_dir, value);
	swap_cfg.dir = swap_dir;
	return 0;
}

static int opt_tier(struct vmm *vmm, const char *value)
{
	(void)vmm;
	cfg_defaults();
	if (parse_size(value, &swap_cfg.tier_limit_bytes)) {
		vmm_errorf("--swap-tier: \"%s\" is not a size (e.g. 256M, 0 for no tier)", value);
		return -1;
	}
	return 0;
}

static int opt_file_limit(struct vmm *vmm, const char *value)
{
	(void)vmm;
	cfg_defaults();
	if (parse_size(value, &swap_cfg.file_limit_bytes) || swap_cfg.file_limit_bytes == 0) {
		vmm_errorf("--swap-file-limit: \"%s\" is not a positive size (e.g. 8G)", value);
		return -1;
	}
	return 0;
}

/* Read a size or "none" (RF_SWAP_NO_TARGET). */
static int size_or_none(const char *s, uint64_t *out)
{
	if (strcmp(s, "none") == 0) {
		*out = RF_SWAP_NO_TARGET;
		return 0;
	}
	return parse_size(s, out);
}

static int swap_start(struct vmm *vmm)
{
	int err;

	if (!swap_cfg_set)
		return 0;
	err = rf_engine_set_swap(vmm->engine, &swap_cfg);
	if (err) {
		char msg[256];

		rf_engine_last_error(vmm->engine, msg, sizeof(msg));
		vmm_errorf("swap: %s", msg);
		return -1;
	}
	return 0;
}

static int swap_vm_setup(struct vmm_vm *vm)
{
	const char *res = vmm_vm_key(vm, "swap-resident");
	const char *cap = vmm_vm_key(vm, "swap-cap");
	const char *smp = vmm_vm_key(vm, "swap-sample");
	uint64_t v;
	int err;

	if (smp && strcmp(smp, "off") != 0) {
		/* Working-set sampling: a period in ms, and pages a period
		 * (default 128). */
		char *end;
		unsigned long ms = strtoul(smp, &end, 10), pages = 128;

		if (*end == ':')
			pages = strtoul(end + 1, &end, 10);
		if (*end || ms == 0 || pages == 0) {
			vmm_errorf("%s: swap-sample=%s: give MS[:PAGES] or off", vm->name, smp);
			return -1;
		}
		err = rf_vm_set_swap_sampling(vm->rf, (uint32_t)ms, (uint32_t)pages);
		if (err) {
			vmm_errorf("%s: swap-sample: %s", vm->name, strerror(-err));
			return -1;
		}
	}

	if (cap) {
		if (size_or_none(cap, &v)) {
			vmm_errorf("%s: swap-cap=%s is not a size or \"none\"", vm->name, cap);
			return -1;
		}
		err = rf_vm_set_swap_cap(vm->rf, v);
		if (err) {
			vmm_errorf("%s: swap-cap: %s", vm->name, strerror(-err));
			return -1;
		}
	}
	if (res) {
		if (size_or_none(res, &v)) {
			vmm_errorf("%s: swap-resident=%s is not a size or \"none\"", vm->name, res);
			return -1;
		}
		err = rf_vm_set_swap_target(vm->rf, v);
		if (err) {
			char msg[256];

			rf_engine_last_error(vm->vmm->engine, msg, sizeof(msg));
			vmm_errorf("%s: swap-resident: %s", vm->name, msg);
			return -1;
		}
	}
	return 0;
}

static int arg_size_or_none(struct vmm_ctl_req *req, const char *key, uint64_t *out)
{
	const char *s = json_get_str(req->args, key);

	if (s)
		return size_or_none(s, out);
	return json_get_size(req->args, key, out);
}

static int cmd_set_swap(struct vmm_ctl_req *req, void *arg)
{
	struct vmm_vm *vm = vmm_ctl_arg_vm(req);
	bool has_r, has_c;
	uint64_t r = 0, c = 0;
	int err;

	(void)arg;
	if (!vm)
		return -1;
	has_r = json_get(req->args, "resident") != NULL;
	has_c = json_get(req->args, "cap") != NULL;
	if (!has_r && !has_c)
		return vmm_ctl_fail(req, "set-swap: give resident=SIZE|none and/or cap=SIZE|none");
	if (has_r && arg_size_or_none(req, "resident", &r))
		return vmm_ctl_fail(req, "set-swap: resident must be a size (e.g. 384M) or none");
	if (has_c && arg_size_or_none(req, "cap", &c))
		return vmm_ctl_fail(req, "set-swap: cap must be a size (e.g. 1G) or none");
	if (has_c && (err = rf_vm_set_swap_cap(vm->rf, c)))
		return vmm_ctl_fail(req, "set-swap: %s: %s", vm->name, strerror(-err));
	if (has_r && (err = rf_vm_set_swap_target(vm->rf, r)))
		return vmm_ctl_fail(req, "set-swap: %s: %s", vm->name, strerror(-err));
	return 0;
}

static int cmd_query_swap(struct vmm_ctl_req *req, void *arg)
{
	struct vmm_vm *vm = vmm_ctl_arg_vm(req);
	struct rf_swap_stats st = {.size = sizeof(st)};

	(void)arg;
	if (!vm)
		return -1;
	rf_vm_swap_stats(vm->rf, &st);
	jb_obj_open(req->ret);
	jb_kv_str(req->ret, "vm", vm->name);
	wire_swap_stats(req->ret, &st);
	jb_obj_close(req->ret);
	return 0;
}

static int swap_start_cmds(struct vmm *vmm)
{
	vmm_ctl_register("set-swap", "set-swap vm=NAME [resident=SIZE|none] [cap=SIZE|none]",
			 cmd_set_swap, NULL);
	vmm_ctl_register("query-swap", "query-swap vm=NAME: swapped bytes, faults, latency, stall",
			 cmd_query_swap, NULL);
	return swap_start(vmm);
}

/* A VM whose page could not be read back is stopped by the swap pager (its
 * vCPU stays blocked on the fault): say so once. */
static void swap_tick(struct vmm *vmm)
{
	for (unsigned int i = 0; i < vmm->nr_vms; i++) {
		struct vmm_vm *vm = vmm->vms[i];
		struct rf_swap_stats st = {.size = sizeof(st)};

		if (!vm->rf || reported_stop[i] || rf_vm_swap_stats(vm->rf, &st) || !st.stopped)
			continue;
		reported_stop[i] = true;
		vmm_printf("ramfold-vmm: %s: swap: a page could not be read back (see the log); "
			   "this VM is stopped, the others keep running",
			   vm->name);
	}
}

static const struct vmm_option swap_options[] = {
    {"swap-dir", "DIR", "directory of the swap file (unlinked; default /var/tmp)", opt_dir},
    {"swap-tier", "SIZE", "memory of the compressed swap tier (default 512M, 0: off)", opt_tier},
    {"swap-file-limit", "SIZE", "size limit of the swap file (default 64G)", opt_file_limit},
    {NULL},
};

static const char *const swap_keys[] = {"swap-resident", "swap-cap", "swap-sample", NULL};

const struct vmm_module swap_module = {
    .name = "swap",
    .options = swap_options,
    .vm_keys = swap_keys,
    .start = swap_start_cmds,
    .vm_setup = swap_vm_setup,
    .tick = swap_tick,
};
