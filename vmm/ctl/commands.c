/* SPDX-License-Identifier: MIT */
/* The built-in control commands: query-vms, query-memory, audit, quit. */
#include <errno.h>
#include <stdatomic.h>
#include <string.h>

#include "core/host_mem.h"
#include "core/util.h"
#include "core/vmm.h"
#include "ctl/ctl.h"
#include "ctl/wire.h"

static const char *workload_name(enum rf_workload w)
{
	switch (w) {
	case RF_WL_IDLE:
		return "idle";
	case RF_WL_DUP:
		return "dup";
	case RF_WL_OSIMAGE:
		return "osimage";
	case RF_WL_MEMCHECK:
		return "memcheck";
	case RF_WL_CHURN:
		return "churn";
	case RF_WL_HOTCOLD:
		return "hotcold";
	case RF_WL_CRASH:
		return "crash";
	case RF_WL_SELFTEST:
		return "selftest";
	}
	return "?";
}

static void write_vm(struct jbuf *jb, struct vmm_vm *vm)
{
	uint64_t ready = atomic_load(&vm->ready_ns);
	int state = atomic_load(&vm->state);

	jb_obj_open(jb);
	jb_kv_str(jb, "name", vm->name);
	jb_kv_str(jb, "state", vmm_vm_state_name(state));
	jb_kv_str(jb, "workload", workload_name(vm->workload));
	jb_kv_u64(jb, "mem-bytes", vm->mem_bytes);
	if (ready)
		jb_kv_double(jb, "ready-ms", (double)(ready - vm->start_ns) / 1e6);
	else
		jb_kv_bool(jb, "ready", false);
	jb_kv_u64(jb, "exits", atomic_load(&vm->exits));
	jb_kv_u64(jb, "console-lines", atomic_load(&vm->console_lines));
	/* The native guest's own count of its work (bootinfo.h); a Linux
	 * guest owns that page, so it has none. */
	if (!vm->vmm->boot && vm->bootinfo)
		jb_kv_u64(jb, "work-bytes",
			  __atomic_load_n(&vm->bootinfo->work_bytes, __ATOMIC_RELAXED));
	if (state == VMM_VM_EXITED)
		jb_kv_i64(jb, "exit-status", vm->exit_status);
	if (state >= VMM_VM_EXITED)
		jb_kv_str(jb, "end-reason", vm->end_reason);
	jb_obj_close(jb);
}

static int query_vms(struct vmm_ctl_req *req, void *arg)
{
	(void)arg;
	jb_arr_open(req->ret);
	for (unsigned int i = 0; i < req->vmm->nr_vms; i++)
		write_vm(req->ret, req->vmm->vms[i]);
	jb_arr_close(req->ret);
	return 0;
}

static int write_memory(struct vmm_ctl_req *req, struct vmm_vm *vm)
{
	struct rf_vm_stats st = {.size = sizeof(st)};
	struct jbuf *jb = req->ret;
	int rc = rf_vm_stats(vm->rf, &st);

	if (rc)
		return vmm_ctl_fail(req, "query-memory: %s: rf_vm_stats: %s", vm->name,
				    strerror(-rc));
	jb_obj_open(jb);
	jb_kv_str(jb, "name", vm->name);
	wire_vm_stats(jb, &st);
	jb_obj_close(jb);
	return 0;
}

static void write_host(struct jbuf *jb)
{
	struct host_mem hm;

	host_mem_read(0, &hm);
	jb_obj_open(jb);
	jb_kv_u64(jb, "vmm-rss", hm.rss);
	jb_kv_u64(jb, "vmm-pss", hm.pss);
	jb_kv_u64(jb, "vmm-anon", hm.anon);
	jb_kv_u64(jb, "mem-available", hm.mem_available);
	jb_obj_close(jb);
}

/* With "vm": that VM's stats object. Without: {"vms": [...], "host": {...}}. */
static int query_memory(struct vmm_ctl_req *req, void *arg)
{
	struct vmm_vm *vm;

	(void)arg;
	if (json_get(req->args, "vm")) {
		vm = vmm_ctl_arg_vm(req);
		return vm ? write_memory(req, vm) : -1;
	}
	jb_obj_open(req->ret);
	jb_key(req->ret, "vms");
	jb_arr_open(req->ret);
	for (unsigned int i = 0; i < req->vmm->nr_vms; i++)
		if (write_memory(req, req->vmm->vms[i]))
			return -1;
	jb_arr_close(req->ret);
	jb_key(req->ret, "host");
	write_host(req->ret);
	jb_obj_close(req->ret);
	return 0;
}

/* rf_vm_audit on one VM: the table against the kernel's view, while the VM
 * runs (a reported mismatch is real: the library looks again under the
 * page lock before it reports one). */
static int audit(struct vmm_ctl_req *req, void *arg)
{
	struct rf_audit_report rep = {.size = sizeof(rep)};
	struct vmm_vm *vm = vmm_ctl_arg_vm(req);
	int rc;

	(void)arg;
	if (!vm)
		return -1;
	rc = rf_vm_audit(vm->rf, &rep, 0);
	if (rc && rc != -EIO)
		return vmm_ctl_fail(req, "audit: %s: %s", vm->name, strerror(-rc));
	jb_obj_open(req->ret);
	jb_kv_u64(req->ret, "pages-checked", rep.pages_checked);
	jb_kv_u64(req->ret, "mismatches", rep.mismatches);
	jb_kv_u64(req->ret, "merged-not-file", rep.merged_not_file);
	jb_kv_u64(req->ret, "discarded-present", rep.discarded_present);
	jb_kv_u64(req->ret, "private-file", rep.private_file);
	jb_kv_u64(req->ret, "drift", rep.drift);
	jb_obj_close(req->ret);
	return 0;
}

static int quit(struct vmm_ctl_req *req, void *arg)
{
	(void)arg;
	atomic_store(&req->vmm->quit, true);
	vmm_wake(req->vmm);
	return 0;
}

void vmm_ctl_register_builtins(void)
{
	vmm_ctl_register("query-vms", "list the VMs with their state and READY time", query_vms,
			 NULL);
	vmm_ctl_register("query-memory",
			 "memory of one VM (\"vm\") or of all VMs and the host, from the library",
			 query_memory, NULL);
	vmm_ctl_register("audit",
			 "check one VM's page-state table against the kernel (\"vm\"): mismatches "
			 "and drift",
			 audit, NULL);
	vmm_ctl_register("quit", "stop every VM and exit", quit, NULL);
}
