/* SPDX-License-Identifier: MIT */
/*
 * Page dedup in the demo VMM: options to start ramfold's dedup engine (or
 * the kernel-KSM backend) for the VMM's guests, --vm keys for a VM's sharing
 * domain and to leave a VM out, and the query-dedup control command.
 *
 *   --dedup MODE           off (default), zero, intra, domains or ksm
 *   --dedup-threads N      scanner threads (default 0: one per CPU the VMM may run on)
 *   --dedup-cpu PCT        CPU share per scanner thread before convergence
 *                          (default: as fast as it can)
 *   --dedup-rate PAGES     pages hashed per second until converged (default: no limit)
 *   --dedup-idle-cpu PCT   CPU share once converged (default 2)
 *   --dedup-ksm PAGES/MS   with ksm: ksmd's pages_to_scan and sleep_millisecs
 *   --dedup-broker PATH    with domains: share them with other processes through
 *                          the broker ramfoldd at PATH (docs/broker.md)
 *   --dedup-broker-start PATH  the same, starting a private ramfoldd at PATH if
 *                          none answers there (it ends with this VMM)
 *   --dedup-paused         attach no VM until set-dedup {"run":true} (for
 *                          measuring from one instant, as bench-dedup-procs does)
 *   --dedup-nice N         the scanner threads' nice, -20..19 (default: the
 *                          VMM's): a peer bench runs them at ksmd's (5)
 *   --dedup-vma-single PCT share of the VMA budget single-page merges may use
 *                          (default 100; the experiment's scenarios: 50)
 *   --vm ...,domain=NAME   sharing domain (mode domains: same name shares)
 *   --vm ...,dedup=off     this VM is not scanned
 *
 * Everything runs on the main thread: start (engine up), vm_setup (RAM
 * loaded, before the vCPU), stop (before VMs are torn down: merged pages
 * are made private again while the RAM is still mapped).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "core/module.h"
#include "core/util.h"
#include "core/vmm.h"
#include "ctl/ctl.h"
#include "ctl/wire.h"

static struct {
	bool set;
	struct rf_dedup_config cfg;
	bool started;
	bool paused; /* --dedup-paused: VMs wait for set-dedup */
	bool nice_set;
	int nice; /* --dedup-nice */
} dg;

static void cfg_defaults(void)
{
	if (!dg.set) {
		rf_dedup_config_init(&dg.cfg);
		dg.cfg.mode = RF_DEDUP_OFF;
		dg.cfg.scan_threads = 0; /* the engine's: one per allowed CPU */
		dg.set = true;
	}
}

static int opt_mode(struct vmm *vmm, const char *v)
{
	(void)vmm;
	cfg_defaults();
	if (rf_dedup_mode_parse(v, &dg.cfg.mode)) {
		vmm_errorf("--dedup %s: expected off, zero, intra, domains or ksm", v);
		return -1;
	}
	return 0;
}

static int opt_uint(const char *opt, const char *v, uint64_t max, unsigned int *out)
{
	uint64_t n;

	if (parse_u64(v, &n) || n > max) {
		vmm_errorf("--%s %s: expected an integer from 0 to %llu", opt, v,
			   (unsigned long long)max);
		return -1;
	}
	*out = (unsigned int)n;
	return 0;
}

static int opt_threads(struct vmm *vmm, const char *v)
{
	(void)vmm;
	cfg_defaults();
	return opt_uint("dedup-threads", v, 64, &dg.cfg.scan_threads);
}

static int opt_cpu(struct vmm *vmm, const char *v)
{
	(void)vmm;
	cfg_defaults();
	if (opt_uint("dedup-cpu", v, 100, &dg.cfg.cpu_percent))
		return -1;
	dg.cfg.fastest = dg.cfg.cpu_percent == 0 || dg.cfg.cpu_percent == 100;
	return 0;
}

static int opt_rate(struct vmm *vmm, const char *v)
{
	(void)vmm;
	cfg_defaults();
	if (parse_u64(v, &dg.cfg.pages_per_sec)) {
		vmm_errorf("--dedup-rate %s: expected pages per second", v);
		return -1;
	}
	dg.cfg.fastest =
	    dg.cfg.pages_per_sec == 0 && (dg.cfg.cpu_percent == 0 || dg.cfg.cpu_percent == 100);
	return 0;
}

static int opt_idle_cpu(struct vmm *vmm, const char *v)
{
	(void)vmm;
	cfg_defaults();
	return opt_uint("dedup-idle-cpu", v, 100, &dg.cfg.idle_cpu_percent);
}

static int opt_huge(struct vmm *vmm, const char *v)
{
	(void)vmm;
	cfg_defaults();
	if (!parse_dedup_huge(v, &dg.cfg.huge))
		return 0;
	vmm_errorf("--dedup-huge %s: expected " DEDUP_HUGE_NAMES, v);
	return -1;
}

static int opt_broker(struct vmm *vmm, const char *v)
{
	(void)vmm;
	cfg_defaults();
	if (!v[0] || strlen(v) >= 108) {
		vmm_errorf("--dedup-broker %s: expected a socket path of 1 to 107 characters", v);
		return -1;
	}
	dg.cfg.broker = v;
	return 0;
}

static int opt_broker_start(struct vmm *vmm, const char *v)
{
	char why[300];

	if (opt_broker(vmm, v))
		return -1;
	if (broker_ensure(v, why, sizeof(why)) != 0) {
		vmm_errorf("--dedup-broker-start %s: %s", v, why);
		return -1;
	}
	return 0;
}

static int opt_paused(struct vmm *vmm, const char *v)
{
	(void)vmm;
	(void)v;
	dg.paused = true;
	return 0;
}

static int opt_vma_single(struct vmm *vmm, const char *v)
{
	uint64_t pct;

	(void)vmm;
	cfg_defaults();
	if (parse_u64(v, &pct) || pct < 1 || pct > 100) {
		vmm_errorf("--dedup-vma-single %s: expected a share of the VMA budget, 1..100 "
			   "(percent)",
			   v);
		return -1;
	}
	dg.cfg.vma_single_pct = (unsigned int)pct;
	return 0;
}

static int opt_nice(struct vmm *vmm, const char *v)
{
	(void)vmm;
	if (parse_nice(v, &dg.nice)) {
		vmm_errorf("--dedup-nice %s: expected a nice value from -20 to 19", v);
		return -1;
	}
	dg.nice_set = true;
	return 0;
}

/* The engine's thread_start hook with --dedup-nice: in each scanner thread
 * as it starts, before it scans. A refusal (a nice below the VMM's without
 * CAP_SYS_NICE) leaves the thread at the VMM's nice, said once per thread. */
static void scanner_nice(void *arg, const char *name)
{
	int err = scan_thread_set_nice(name, dg.nice);

	(void)arg;
	if (err)
		vmm_errorf("--dedup-nice %d: %s stays at the VMM's nice: %s", dg.nice, name,
			   strerror(-err));
}

static int opt_ksm(struct vmm *vmm, const char *v)
{
	unsigned int pages, ms;
	char end;

	(void)vmm;
	cfg_defaults();
	if (sscanf(v, "%u/%u%c", &pages, &ms, &end) != 2 || pages == 0) {
		vmm_errorf("--dedup-ksm %s: expected PAGES/MS, e.g. 10000/0", v);
		return -1;
	}
	dg.cfg.ksm_pages_to_scan = pages;
	dg.cfg.ksm_sleep_ms = ms;
	dg.cfg.fastest = ms == 0;
	return 0;
}

static int start(struct vmm *vmm)
{
	int err;

	cfg_defaults();
	if (dg.cfg.mode == RF_DEDUP_OFF)
		return 0;
	err = rf_dedup_start(vmm->engine, &dg.cfg);
	if (err) {
		char why[256];

		rf_engine_last_error(vmm->engine, why, sizeof(why));
		vmm_errorf("--dedup %s: cannot start: %s (%s)", rf_dedup_mode_name(dg.cfg.mode),
			   why[0] ? why : "no reason given", strerror(-err));
		return err;
	}
	dg.started = true;
	return 0;
}

static int vm_config(struct vmm_vm *vm, struct rf_vm_config *cfg)
{
	const char *dom = vmm_vm_key(vm, "domain");
	const char *on = vmm_vm_key(vm, "dedup");

	if (on && strcmp(on, "on") && strcmp(on, "off")) {
		vmm_errorf("%s: dedup=%s: expected on or off", vm->name, on);
		return -1;
	}
	if (dom) {
		size_t n = strlen(dom);

		if (n == 0 || n >= 32) {
			vmm_errorf("%s: domain=%s: expected 1 to 31 characters", vm->name, dom);
			return -1;
		}
		cfg->domain = dom;
	}
	return 0;
}

static int vm_setup(struct vmm_vm *vm)
{
	const char *on = vmm_vm_key(vm, "dedup");
	int err;

	if (!dg.started || (on && !strcmp(on, "off")) || dg.paused)
		return 0;
	err = rf_dedup_add_vm(vm->rf);
	if (err) {
		char why[256];

		rf_engine_last_error(vm->vmm->engine, why, sizeof(why));
		vmm_errorf("%s: dedup: %s (%s)", vm->name, why[0] ? why : "cannot attach",
			   strerror(-err));
		return err;
	}
	vm->dedup = vm->rf; /* marks the VM as scanned */
	return 0;
}

static void stop(struct vmm *vmm)
{
	if (!dg.started)
		return;
	rf_dedup_stop(vmm->engine);
	dg.started = false;
}

/* One VM's part of query-dedup. */
static void vm_stats_json(struct jbuf *jb, struct vmm_vm *vm)
{
	struct rf_dedup_vm_stats vs = {.size = sizeof(vs)};

	jb_obj_open(jb);
	jb_kv_str(jb, "name", vm->name);
	if (vm->dedup && rf_dedup_vm_stats(vm->rf, &vs) == 0) {
		jb_kv_bool(jb, "scanned", true);
		jb_kv_u64(jb, "pages-scanned", vs.pages_scanned);
		jb_kv_u64(jb, "pages-merged", vs.pages_merged);
		jb_kv_u64(jb, "pages-sharing", vs.pages_sharing);
		jb_kv_u64(jb, "pages-zero", vs.pages_zero);
		jb_kv_u64(jb, "pages-unmerged", vs.pages_unmerged);
		jb_kv_u64(jb, "volatile-skipped", vs.volatile_skipped);
		jb_kv_u64(jb, "saved-bytes", vs.saved_bytes);
	} else {
		jb_kv_bool(jb, "scanned", false);
	}
	jb_obj_close(jb);
}

/*
 * query-dedup [vm=NAME] [counters=true]. counters=true leaves out what is
 * measured (saved-bytes, vmas and the per-VM stats: a pagemap walk and a
 * count of the mappings, on the VMM's main thread) and answers with the
 * engine's counters (rf_dedup_counters): a bench that polls 10 times a
 * second (bench-guest-cost) must not take from the guests the CPU whose
 * cost to them it measures.
 */
static int query_dedup(struct vmm_ctl_req *req, void *arg)
{
	const struct json *cnt = req->args ? json_get(req->args, "counters") : NULL;
	bool counters = cnt && cnt->type == JSON_BOOL && cnt->boolean;
	struct vmm *vmm = req->vmm;
	struct rf_dedup_stats st = {.size = sizeof(st)};

	(void)arg;
	if (req->args && json_get_str(req->args, "vm")) {
		struct vmm_vm *vm = vmm_ctl_arg_vm(req);

		if (!vm)
			return -1;
		vm_stats_json(req->ret, vm);
		return 0;
	}
	jb_obj_open(req->ret);
	jb_kv_str(req->ret, "mode", rf_dedup_mode_name(dg.started ? dg.cfg.mode : RF_DEDUP_OFF));
	if (dg.started && (counters ? rf_dedup_counters(vmm->engine, &st)
				    : rf_dedup_stats(vmm->engine, &st)) == 0)
		wire_dedup_stats(req->ret, &st, !counters);
	if (!counters) {
		jb_key(req->ret, "vms");
		jb_arr_open(req->ret);
		for (unsigned int i = 0; i < vmm->nr_vms; i++)
			vm_stats_json(req->ret, vmm->vms[i]);
		jb_arr_close(req->ret);
	}
	jb_obj_close(req->ret);
	return 0;
}

/* set-dedup {"run":true}: attach the VMs --dedup-paused held back, all at
 * once (there is no pausing again: an attached VM stays attached). */
static int set_dedup(struct vmm_ctl_req *req, void *arg)
{
	const struct json *run = req->args ? json_get(req->args, "run") : NULL;
	struct vmm *vmm = req->vmm;
	unsigned int n = 0;

	(void)arg;
	if (!run || run->type != JSON_BOOL || !run->boolean)
		return vmm_ctl_fail(req, "set-dedup: give run=true (attaches the VMs "
					 "--dedup-paused held back)");
	if (!dg.started)
		return vmm_ctl_fail(req, "set-dedup: dedup is off");
	dg.paused = false;
	for (unsigned int i = 0; i < vmm->nr_vms; i++) {
		struct vmm_vm *vm = vmm->vms[i];

		if (vm->dedup || !vm->rf)
			continue;
		if (vm_setup(vm))
			return vmm_ctl_fail(req, "set-dedup: %s: cannot attach", vm->name);
		n += vm->dedup != NULL;
	}
	rf_dedup_scan_now(vmm->engine);
	jb_obj_open(req->ret);
	jb_kv_u64(req->ret, "attached", n);
	jb_obj_close(req->ret);
	return 0;
}

/* In engine_config, the first hook: query-dedup is listed before the other
 * modules' commands, which they register in start. And the scanners' nice:
 * the hook runs in every library thread the engine starts. */
static int engine_config(struct vmm *vmm, struct rf_engine_config *cfg)
{
	(void)vmm;
	if (dg.nice_set)
		cfg->thread_start = scanner_nice;
	vmm_ctl_register("query-dedup",
			 "dedup engine stats (vm=NAME for one VM; counters=true: no measured "
			 "figures, cheap to poll)",
			 query_dedup, NULL);
	vmm_ctl_register("set-dedup", "run=true: attach the VMs --dedup-paused held back",
			 set_dedup, NULL);
	return 0;
}

static const struct vmm_option dedup_options[] = {
    {"dedup", "MODE", "page dedup: off (default), zero, intra, domains or ksm", opt_mode},
    {"dedup-threads", "N",
     "dedup scanner threads (default 0: one per CPU the VMM may run on, at most 8)", opt_threads},
    {"dedup-cpu", "PCT", "dedup CPU share per thread until converged (default: no limit)", opt_cpu},
    {"dedup-rate", "PAGES", "dedup pages hashed per second until converged (default: no limit)",
     opt_rate},
    {"dedup-idle-cpu", "PCT", "dedup CPU share once converged (default 2)", opt_idle_cpu},
    {"dedup-ksm", "PAGES/MS",
     "with --dedup ksm: ksmd pages_to_scan/sleep_millisecs (default: the kernel's)", opt_ksm},
    {"dedup-huge", "MODE",
     "huge pages (thp=on) from the first pass: split (default), keep or split-cold; the "
     "--policy sets keep in its high state, split-cold in the others",
     opt_huge},
    {"dedup-paused", NULL, "attach no VM to dedup until set-dedup {\"run\":true}", opt_paused},
    {"dedup-nice", "N", "the dedup scanner threads' nice, -20..19 (default: the VMM's)", opt_nice},
    {"dedup-vma-single", "PCT",
     "share of the VMA budget merges of single pages may use, 1..100 (default 100)",
     opt_vma_single},
    {"dedup-broker", "PATH",
     "with --dedup domains: share across processes through ramfoldd at PATH", opt_broker},
    {"dedup-broker-start", "PATH",
     "the same, starting a private ramfoldd at PATH if none answers (it ends with the VMM)",
     opt_broker_start},
    {NULL},
};

static const char *const dedup_keys[] = {"domain", "dedup", NULL};

const struct vmm_module dedup_module = {
    .name = "dedup",
    .options = dedup_options,
    .vm_keys = dedup_keys,
    .engine_config = engine_config,
    .start = start,
    .vm_config = vm_config,
    .vm_setup = vm_setup,
    .stop = stop,
};
