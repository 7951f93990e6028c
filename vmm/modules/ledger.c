/* SPDX-License-Identifier: MIT */
/*
 * The overcommit ledger and reclaim policy in the demo VMM: options for the
 * host budget, admission control and the policy tick; --vm keys for each
 * VM's reservation, limit and shares; control commands query-host,
 * query-breakdown, set-vm and ledger-audit; and the Prometheus metrics,
 * served on a loopback port (--metrics-port, metrics_http.c) and/or written
 * to a file, plus
 * a per-second CSV of the host's memory by category (--ledger-csv) that the
 * overcommit experiment plots.
 *
 * Threads: everything runs on the main thread (hooks, control commands)
 * except the metrics server (metrics_http.c), one thread that answers HTTP
 * GETs on 127.0.0.1 with rf_metrics_format(); it is stopped in the stop
 * hook, before any VM is torn down. The ledger is first in the module table
 * (core/module_table.c), so its stop hook runs before the other modules'.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/module.h"
#include "core/util.h"
#include "core/vmm.h"
#include "ctl/ctl.h"
#include "modules/metrics_http.h"

static struct {
	uint64_t budget; /* 0: the library's default (MemTotal or cgroup) */
	uint64_t host_reserved;
	unsigned int max_overcommit_permille;
	unsigned int policy_ms;	    /* 0: no policy thread */
	int policy_swap;	    /* -1: the library's default */
	unsigned int free_bp;	    /* 0: the library's thresholds */
	unsigned int proactive_ppm; /* 0: no proactive mode; else its stall target */
	uint64_t proactive_floor;   /* 0: the library's */
	int deflate_hold_ms;	    /* -1: the library's */
	struct rf_policy_config pc; /* as configured, for set-policy to change */
	bool policy_started;
	int metrics_port; /* 0: none */
	const char *metrics_file;
	const char *csv_path;
	FILE *csv;
} lg = {.policy_swap = -1, .deflate_hold_ms = -1};

/* ---- options -------------------------------------------------------- */

static int opt_budget(struct vmm *vmm, const char *v)
{
	(void)vmm;
	if (parse_size(v, &lg.budget) || lg.budget < (1u << 20)) {
		vmm_errorf("--host-budget %s: expected a size of at least 1M (e.g. 1G)", v);
		return -1;
	}
	return 0;
}

static int opt_reserved(struct vmm *vmm, const char *v)
{
	(void)vmm;
	if (parse_size(v, &lg.host_reserved)) {
		vmm_errorf("--host-reserved %s: expected a size (e.g. 128M)", v);
		return -1;
	}
	return 0;
}

static int opt_overcommit(struct vmm *vmm, const char *v)
{
	char *end;
	double r = strtod(v, &end);

	(void)vmm;
	if (end == v || *end || !(r >= 0.1 && r <= 1000.0)) {
		vmm_errorf("--max-overcommit %s: expected a ratio such as 3 or 2.5", v);
		return -1;
	}
	lg.max_overcommit_permille = (unsigned int)(r * 1000.0 + 0.5);
	return 0;
}

static int opt_policy(struct vmm *vmm, const char *v)
{
	uint64_t ms;

	(void)vmm;
	if (!strcmp(v, "off")) {
		lg.policy_ms = 0;
		return 0;
	}
	if (parse_u64(v, &ms) || ms < 100 || ms > 1000) {
		vmm_errorf("--policy %s: expected a tick period in ms (100..1000) or off", v);
		return -1;
	}
	lg.policy_ms = (unsigned int)ms;
	return 0;
}

static int opt_policy_swap(struct vmm *vmm, const char *v)
{
	(void)vmm;
	if (strcmp(v, "on") && strcmp(v, "off")) {
		vmm_errorf("--policy-swap %s: expected on or off", v);
		return -1;
	}
	lg.policy_swap = !strcmp(v, "on");
	return 0;
}

static int opt_policy_free(struct vmm *vmm, const char *v)
{
	char *end;
	double pct = strtod(v, &end);

	(void)vmm;
	if (end == v || *end || !(pct >= 1.0 && pct <= 50.0)) {
		vmm_errorf("--policy-free %s: expected a percentage of the budget, 1..50", v);
		return -1;
	}
	lg.free_bp = (unsigned int)(pct * 100.0 + 0.5);
	return 0;
}

/* @v, a stall target in % of vCPU time (0.001..100), as ppm: 0, or -1 if
 * it is not one. */
static int parse_stall_pct(const char *v, unsigned int *ppm)
{
	char *end;
	double pct = strtod(v, &end);

	if (end == v || *end || !(pct >= 0.001 && pct <= 100.0))
		return -1;
	*ppm = (unsigned int)(pct * 10000.0 + 0.5);
	return 0;
}

static int opt_policy_proactive(struct vmm *vmm, const char *v)
{
	(void)vmm;
	if (!strcmp(v, "off")) {
		lg.proactive_ppm = 0;
		return 0;
	}
	if (parse_stall_pct(v, &lg.proactive_ppm)) {
		vmm_errorf("--policy-proactive %s: expected a stall target in %% of vCPU time "
			   "(e.g. 0.5) or off",
			   v);
		return -1;
	}
	return 0;
}

static int opt_policy_proactive_floor(struct vmm *vmm, const char *v)
{
	(void)vmm;
	if (parse_size(v, &lg.proactive_floor) || !lg.proactive_floor ||
	    (lg.proactive_floor & 0xfff)) {
		vmm_errorf("--policy-proactive-floor %s: expected a size, a multiple of 4K (e.g. "
			   "16M)",
			   v);
		return -1;
	}
	return 0;
}

static int opt_policy_deflate_hold(struct vmm *vmm, const char *v)
{
	uint64_t ms;

	(void)vmm;
	if (parse_u64(v, &ms) || ms > 3600000) {
		vmm_errorf("--policy-deflate-hold %s: expected milliseconds, 0 to 3600000", v);
		return -1;
	}
	lg.deflate_hold_ms = (int)ms;
	return 0;
}

static int opt_metrics_port(struct vmm *vmm, const char *v)
{
	uint64_t p;

	(void)vmm;
	if (parse_u64(v, &p) || p == 0 || p > 65535) {
		vmm_errorf("--metrics-port %s: expected a TCP port 1..65535", v);
		return -1;
	}
	lg.metrics_port = (int)p;
	return 0;
}

static int opt_metrics_file(struct vmm *vmm, const char *v)
{
	(void)vmm;
	lg.metrics_file = v;
	return 0;
}

static int opt_csv(struct vmm *vmm, const char *v)
{
	(void)vmm;
	lg.csv_path = v;
	return 0;
}

static const struct vmm_option ledger_options[] = {
    {"host-budget", "SIZE", "host memory the guests may use (default: MemTotal)", opt_budget},
    {"host-reserved", "SIZE", "kept back from reservations for the host", opt_reserved},
    {"max-overcommit", "RATIO", "refuse VMs beyond RATIO x the budget promised", opt_overcommit},
    {"policy", "MS|off", "run the reclaim policy every MS ms (default off)", opt_policy},
    {"policy-swap", "on|off", "let the policy swap guest memory (default on)", opt_policy_swap},
    {"policy-free", "PCT", "free memory the policy keeps, in % of the budget (default 6)",
     opt_policy_free},
    {"policy-proactive", "PCT|off",
     "in the high state, shrink each VM while its fault stall stays under PCT % of its "
     "vCPU time (default off)",
     opt_policy_proactive},
    {"policy-proactive-floor", "SIZE",
     "the proactive mode leaves each VM at least this resident (default 32M)",
     opt_policy_proactive_floor},
    {"policy-deflate-hold", "MS",
     "balloons deflate only after MS ms without pressure, nor inflate for MS ms after the guest "
     "took pages back on OOM (default 10000; 0: neither)",
     opt_policy_deflate_hold},
    {"metrics-port", "PORT", "Prometheus metrics on http://127.0.0.1:PORT/metrics",
     opt_metrics_port},
    {"metrics-file", "FILE", "Prometheus metrics written to FILE every second", opt_metrics_file},
    {"ledger-csv", "FILE", "host memory by category every second, as CSV", opt_csv},
    {NULL},
};

static const char *const ledger_vm_keys[] = {"reservation", "limit", "shares", NULL};

/* ---- hooks ---------------------------------------------------------- */

static int ledger_engine_config(struct vmm *vmm, struct rf_engine_config *cfg)
{
	(void)vmm;
	if (lg.budget)
		cfg->host_capacity_bytes = lg.budget;
	return 0;
}

static int ledger_vm_config(struct vmm_vm *vm, struct rf_vm_config *cfg)
{
	const char *v;
	uint64_t x;

	if ((v = vmm_vm_key(vm, "reservation"))) {
		if (parse_size(v, &x)) {
			vmm_errorf("%s: reservation=%s: expected a size", vm->name, v);
			return -1;
		}
		cfg->reservation_bytes = x;
	}
	if ((v = vmm_vm_key(vm, "limit"))) {
		if (parse_size(v, &x)) {
			vmm_errorf("%s: limit=%s: expected a size", vm->name, v);
			return -1;
		}
		cfg->limit_bytes = x;
	}
	if ((v = vmm_vm_key(vm, "shares"))) {
		if (parse_u64(v, &x) || x == 0 || x > RF_SHARES_MAX) {
			vmm_errorf("%s: shares=%s: expected 1..%u", vm->name, v, RF_SHARES_MAX);
			return -1;
		}
		cfg->shares = (uint32_t)x;
	}
	return 0;
}

/*
 * The guest's system pages (boot info, GDT/TSS, page tables, stack) and its
 * code are read by KVM itself on the guest's behalf; with reclaim running
 * they must not be swapped or merged under it. Excluded for every VM when
 * the policy runs.
 */
static int ledger_vm_setup(struct vmm_vm *vm)
{
	uint64_t end = (vm->vmm->image_end + 0xfff) & ~0xfffull;
	int rc;

	if (!lg.policy_ms || !vm->rf || end <= RF_BOOTINFO_GPA || end > vm->mem_bytes)
		return 0;
	rc = rf_vm_exclude_range(vm->rf, RF_BOOTINFO_GPA, end - RF_BOOTINFO_GPA, true);
	if (rc) {
		vmm_errorf("%s: cannot exclude the guest's system pages from reclaim: %s", vm->name,
			   strerror(-rc));
		return -1;
	}
	return 0;
}

static void csv_header(FILE *f)
{
	fprintf(f, "t_s,state,capacity,used,free,private,shared_fair,zero,ballooned,free_reported,"
		   "swapped,compressed_host,metadata,saved_dedup,saved_zero,saved_balloon,"
		   "saved_free_report,saved_swap,process_rss,process_pss,mono_s\n");
}

static void csv_row(struct vmm *vmm)
{
	struct rf_host_stats h = {.size = sizeof(h)};

	if (!lg.csv || rf_host_stats(vmm->engine, &h))
		return;
	fprintf(
	    lg.csv,
	    "%.3f,%s,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,%llu,"
	    "%llu,%llu,%llu,%.3f\n",
	    (double)(now_ns() - vmm->start_ns) / 1e9, rf_mem_state_name(h.state),
	    (unsigned long long)h.capacity_bytes, (unsigned long long)h.used_bytes,
	    (unsigned long long)h.free_bytes, (unsigned long long)h.private_bytes,
	    (unsigned long long)h.shared_fair_bytes, (unsigned long long)h.zero_bytes,
	    (unsigned long long)h.ballooned_bytes, (unsigned long long)h.free_reported_bytes,
	    (unsigned long long)h.swapped_bytes, (unsigned long long)h.compressed_host_bytes,
	    (unsigned long long)h.metadata_bytes, (unsigned long long)h.saved.dedup,
	    (unsigned long long)h.saved.zero, (unsigned long long)h.saved.balloon,
	    (unsigned long long)h.saved.free_report, (unsigned long long)h.saved.swap,
	    (unsigned long long)h.process_rss_bytes, (unsigned long long)h.process_pss_bytes,
	    (double)now_ns() / 1e9);
	fflush(lg.csv);
}

/* ---- control commands ------------------------------------------------ */

static void kv_saved(struct jbuf *jb, const struct rf_saved *s)
{
	jb_key(jb, "saved");
	jb_obj_open(jb);
	jb_kv_u64(jb, "dedup", s->dedup);
	jb_kv_u64(jb, "zero", s->zero);
	jb_kv_u64(jb, "balloon", s->balloon);
	jb_kv_u64(jb, "free-report", s->free_report);
	jb_kv_u64(jb, "swap", s->swap);
	jb_obj_close(jb);
}

static void write_proactive(struct jbuf *jb, const struct rf_policy_config *pc)
{
	jb_kv_bool(jb, "proactive", pc->proactive);
	jb_kv_double(jb, "stall-target-pct", (double)pc->stall_target_ppm / 1e4);
	jb_kv_u64(jb, "proactive-floor", pc->proactive_floor_bytes);
}

static int cmd_query_host(struct vmm_ctl_req *req, void *arg)
{
	struct rf_host_stats h = {.size = sizeof(h)};
	struct rf_policy_counters pc = {.size = sizeof(pc)};
	struct jbuf *jb = req->ret;
	int rc;

	(void)arg;
	rc = rf_host_stats(req->vmm->engine, &h);
	if (rc)
		return vmm_ctl_fail(req, "query-host: rf_host_stats: %s", strerror(-rc));
	jb_obj_open(jb);
	jb_kv_u64(jb, "capacity", h.capacity_bytes);
	jb_kv_u64(jb, "reserved", h.reserved_bytes);
	jb_kv_u64(jb, "promised", h.promised_bytes);
	jb_kv_double(jb, "overcommit-ratio", (double)h.overcommit_permille / 1000.0);
	jb_kv_u64(jb, "used", h.used_bytes);
	jb_kv_u64(jb, "free", h.free_bytes);
	jb_kv_str(jb, "state", rf_mem_state_name(h.state));
	jb_kv_u64(jb, "vms", h.nr_vms);
	jb_kv_u64(jb, "private", h.private_bytes);
	jb_kv_u64(jb, "shared-fair", h.shared_fair_bytes);
	jb_kv_u64(jb, "zero", h.zero_bytes);
	jb_kv_u64(jb, "ballooned", h.ballooned_bytes);
	jb_kv_u64(jb, "free-reported", h.free_reported_bytes);
	jb_kv_u64(jb, "swapped", h.swapped_bytes);
	jb_kv_u64(jb, "compressed-host", h.compressed_host_bytes);
	jb_kv_u64(jb, "metadata", h.metadata_bytes);
	jb_kv_u64(jb, "store-pages-resident", h.store_pages_resident);
	kv_saved(jb, &h.saved);
	jb_kv_u64(jb, "process-rss", h.process_rss_bytes);
	jb_kv_u64(jb, "process-pss", h.process_pss_bytes);
	jb_kv_u64(jb, "admissions-refused", h.admissions_refused);
	if (rf_policy_counters(req->vmm->engine, &pc) == 0) {
		jb_key(jb, "policy");
		jb_obj_open(jb);
		jb_kv_bool(jb, "running", lg.policy_ms != 0);
		jb_kv_u64(jb, "ticks", pc.ticks);
		jb_kv_u64(jb, "transitions", pc.transitions);
		jb_kv_u64(jb, "balloon-actions", pc.actions[RF_POLICY_SET_BALLOON]);
		jb_kv_u64(jb, "swap-actions", pc.actions[RF_POLICY_SET_SWAP]);
		jb_kv_u64(jb, "scan-rate-actions", pc.actions[RF_POLICY_SET_SCAN_RATE]);
		jb_kv_u64(jb, "failed-actions", pc.failed[0] + pc.failed[1] + pc.failed[2]);
		jb_kv_u64(jb, "balloon-bytes-asked", pc.balloon_bytes_asked);
		jb_kv_u64(jb, "swap-bytes-asked", pc.swap_bytes_asked);
		write_proactive(jb, &lg.pc);
		jb_kv_u64(jb, "proactive-shrinks", pc.proactive_shrinks);
		jb_kv_u64(jb, "proactive-grows", pc.proactive_grows);
		jb_obj_close(jb);
	}
	jb_obj_close(jb);
	return 0;
}

static void write_breakdown(struct jbuf *jb, const char *name, const struct rf_vm_breakdown *b)
{
	jb_obj_open(jb);
	jb_kv_str(jb, "name", name);
	jb_kv_u64(jb, "promised", b->promised_bytes);
	jb_kv_u64(jb, "reservation", b->reservation_bytes);
	if (b->limit_bytes != UINT64_MAX)
		jb_kv_u64(jb, "limit", b->limit_bytes);
	else
		jb_kv_str(jb, "limit", "none");
	jb_kv_u64(jb, "shares", b->shares);
	jb_kv_u64(jb, "private", b->private_bytes);
	jb_kv_u64(jb, "untouched", b->untouched_bytes);
	jb_kv_u64(jb, "shared", b->shared_bytes);
	jb_kv_u64(jb, "shared-fair", b->shared_fair_bytes);
	jb_kv_u64(jb, "zero", b->zero_bytes);
	jb_kv_u64(jb, "ballooned", b->ballooned_bytes);
	jb_kv_u64(jb, "free-reported", b->free_reported_bytes);
	jb_kv_u64(jb, "swapped-file", b->swapped_file_bytes);
	jb_kv_u64(jb, "swapped-compressed", b->swapped_compressed_bytes);
	jb_kv_u64(jb, "compressed-host", b->compressed_host_bytes);
	jb_kv_u64(jb, "drift", b->drift_bytes);
	jb_kv_u64(jb, "unmapped", b->unmapped_bytes);
	jb_kv_u64(jb, "metadata", b->metadata_bytes);
	jb_kv_u64(jb, "host", b->host_bytes);
	kv_saved(jb, &b->saved);
	jb_kv_u64(jb, "balloon-target", b->balloon_target_bytes);
	if (b->resident_target_bytes != UINT64_MAX)
		jb_kv_u64(jb, "resident-target", b->resident_target_bytes);
	jb_kv_u64(jb, "active", b->active_bytes); /* sampling's estimate; 0: off */
	if (b->guest_free_bytes != UINT64_MAX)
		jb_kv_u64(jb, "guest-free", b->guest_free_bytes);
	jb_obj_close(jb);
}

/* query-breakdown [vm=NAME]: one VM, or all of them as an array. */
static int cmd_query_breakdown(struct vmm_ctl_req *req, void *arg)
{
	struct rf_vm_breakdown b = {.size = sizeof(b)};
	int rc;

	(void)arg;
	if (json_get_str(req->args, "vm")) {
		struct vmm_vm *vm = vmm_ctl_arg_vm(req);

		if (!vm)
			return -1;
		rc = rf_vm_breakdown(vm->rf, &b);
		if (rc)
			return vmm_ctl_fail(req, "query-breakdown: %s: %s", vm->name,
					    strerror(-rc));
		write_breakdown(req->ret, vm->name, &b);
		return 0;
	}
	jb_arr_open(req->ret);
	for (unsigned int i = 0; i < req->vmm->nr_vms; i++) {
		struct vmm_vm *vm = req->vmm->vms[i];

		if (!vm->rf || rf_vm_breakdown(vm->rf, &b))
			continue;
		write_breakdown(req->ret, vm->name, &b);
	}
	jb_arr_close(req->ret);
	return 0;
}

/*
 * set-vm vm=NAME [reservation=SIZE] [limit=SIZE|0] [shares=N]: all values
 * are checked before any is applied; the reservation goes through
 * admission control. An error names what was refused and changes nothing
 * that came after it.
 */
static int cmd_set_vm(struct vmm_ctl_req *req, void *arg)
{
	struct vmm_vm *vm = vmm_ctl_arg_vm(req);
	uint64_t resv = 0, limit = 0, shares = 0;
	struct rf_vm_breakdown old = {.size = sizeof(old)};
	int r, l, sh, rc = 0;
	char err[256];

	(void)arg;
	if (!vm)
		return -1;
	r = json_get_size(req->args, "reservation", &resv);
	l = json_get_size(req->args, "limit", &limit);
	sh = json_get_u64(req->args, "shares", &shares);
	if (r == -EINVAL || l == -EINVAL || sh == -EINVAL)
		return vmm_ctl_fail(req, "set-vm: reservation and limit are sizes, shares a "
					 "number");
	if (r && l && sh)
		return vmm_ctl_fail(req, "set-vm: nothing to set (reservation=, limit=, shares=)");
	if (!sh && (shares == 0 || shares > RF_SHARES_MAX))
		return vmm_ctl_fail(req, "set-vm: shares %llu out of range 1..%u",
				    (unsigned long long)shares, RF_SHARES_MAX);
	if (!r && !l && limit && limit < resv)
		return vmm_ctl_fail(req, "set-vm: limit below the reservation");
	rc = rf_vm_breakdown(vm->rf, &old); /* to put back on a refusal */
	if (rc)
		return vmm_ctl_fail(req, "set-vm: %s: %s", vm->name, strerror(-rc));
	/* The limit first, unless it must wait for a lower reservation. */
	if (!l) {
		rc = rf_vm_set_limit(vm->rf, limit);
		if (rc == -EINVAL && !r) {
			rc = rf_vm_set_reservation(vm->rf, resv);
			r = 1; /* done */
			if (!rc)
				rc = rf_vm_set_limit(vm->rf, limit);
		}
	}
	if (!rc && !r)
		rc = rf_vm_set_reservation(vm->rf, resv);
	if (!rc && !sh)
		rc = rf_vm_set_shares(vm->rf, (uint32_t)shares);
	if (rc) {
		rf_engine_last_error(req->vmm->engine, err, sizeof(err));
		/* All or nothing: lower first whichever the order needs. */
		rf_vm_set_limit(vm->rf, 0);
		rf_vm_set_reservation(vm->rf, old.reservation_bytes);
		rf_vm_set_limit(vm->rf, old.limit_bytes == UINT64_MAX ? 0 : old.limit_bytes);
		rf_vm_set_shares(vm->rf, old.shares);
		return vmm_ctl_fail(req, "set-vm: %s: %s", strerror(-rc), err);
	}
	{
		struct rf_vm_breakdown b = {.size = sizeof(b)};

		rc = rf_vm_breakdown(vm->rf, &b);
		if (rc)
			return vmm_ctl_fail(req, "set-vm: %s: %s", vm->name, strerror(-rc));
		write_breakdown(req->ret, vm->name, &b);
	}
	return 0;
}

/*
 * set-policy [proactive=on|off] [stall-target=PCT] [proactive-floor=SIZE]:
 * the proactive mode at run time, applied at the next tick. Checked whole
 * before anything changes.
 */
static int cmd_set_policy(struct vmm_ctl_req *req, void *arg)
{
	struct rf_policy_config pc = lg.pc;
	const struct json *st = json_get(req->args, "stall-target");
	const char *on = json_get_str(req->args, "proactive");
	uint64_t floor;
	int fl, rc;

	(void)arg;
	if (!on && json_get(req->args, "proactive") &&
	    json_get(req->args, "proactive")->type == JSON_BOOL)
		on = json_get(req->args, "proactive")->boolean ? "on" : "off";
	if (on) {
		if (strcmp(on, "on") && strcmp(on, "off"))
			return vmm_ctl_fail(req, "set-policy: proactive=%s: expected on or off",
					    on);
		pc.proactive = !strcmp(on, "on");
	}
	if (st) {
		char num[64];

		snprintf(num, sizeof(num), "%s", st->str ? st->str : "");
		if ((st->type != JSON_STRING && st->type != JSON_NUMBER) ||
		    parse_stall_pct(num, &pc.stall_target_ppm))
			return vmm_ctl_fail(req, "set-policy: stall-target: expected a %% of vCPU "
						 "time, 0.001..100");
	}
	fl = json_get_size(req->args, "proactive-floor", &floor);
	if (fl == -EINVAL)
		return vmm_ctl_fail(req, "set-policy: proactive-floor: expected a size");
	if (!fl)
		pc.proactive_floor_bytes = floor;
	if (!on && !st && fl)
		return vmm_ctl_fail(req, "set-policy: nothing to set (proactive=, stall-target=, "
					 "proactive-floor=)");
	rc = rf_policy_configure(req->vmm->engine, &pc);
	if (rc)
		return vmm_ctl_fail(req, "set-policy: %s", strerror(-rc));
	lg.pc = pc;
	jb_obj_open(req->ret);
	write_proactive(req->ret, &pc);
	jb_obj_close(req->ret);
	return 0;
}

static int cmd_ledger_audit(struct vmm_ctl_req *req, void *arg)
{
	struct rf_ledger_audit_report rep = {.size = sizeof(rep)};
	struct jbuf *jb = req->ret;
	int rc;

	(void)arg;
	rc = rf_ledger_audit(req->vmm->engine, &rep);
	if (rc && rc != -EIO)
		return vmm_ctl_fail(req, "ledger-audit: %s", strerror(-rc));
	jb_obj_open(jb);
	jb_kv_bool(jb, "agree", rc == 0);
	jb_kv_u64(jb, "vms-checked", rep.vms_checked);
	jb_kv_u64(jb, "vms-disagreeing", rep.vms_disagreeing);
	jb_kv_u64(jb, "vms-grouped", rep.vms_grouped);
	jb_kv_u64(jb, "ledger-resident", rep.ledger_resident_bytes);
	jb_kv_u64(jb, "kernel-rss", rep.kernel_rss_bytes);
	jb_kv_u64(jb, "ledger-fair", rep.ledger_fair_bytes);
	jb_kv_u64(jb, "kernel-pss", rep.kernel_pss_bytes);
	jb_kv_u64(jb, "process-rss", rep.process_rss_bytes);
	jb_kv_str(jb, "first-reason", rep.first_reason);
	jb_obj_close(jb);
	return 0;
}

static int ledger_start(struct vmm *vmm)
{
	struct rf_ledger_config lc;

	rf_ledger_config_init(&lc);
	lc.host_reserved_bytes = lg.host_reserved;
	lc.max_overcommit_permille = lg.max_overcommit_permille;
	if (rf_ledger_configure(vmm->engine, &lc)) {
		vmm_errorf("ledger: cannot configure admission control");
		return -1;
	}
	if (vmm_ctl_register("query-host", "host capacity, use, state, savings", cmd_query_host,
			     NULL) ||
	    vmm_ctl_register("query-breakdown", "[vm=NAME] where each VM's memory is",
			     cmd_query_breakdown, NULL) ||
	    vmm_ctl_register("set-vm", "vm=NAME [reservation=SIZE] [limit=SIZE] [shares=N]",
			     cmd_set_vm, NULL) ||
	    vmm_ctl_register("set-policy",
			     "[proactive=on|off] [stall-target=PCT] [proactive-floor=SIZE]",
			     cmd_set_policy, NULL) ||
	    vmm_ctl_register("ledger-audit", "check the ledger against the kernel",
			     cmd_ledger_audit, NULL)) {
		vmm_errorf("ledger: cannot register the control commands");
		return -1;
	}
	if (lg.csv_path) {
		lg.csv = fopen(lg.csv_path, "we");
		if (!lg.csv) {
			vmm_errorf("--ledger-csv %s: %s", lg.csv_path, strerror(errno));
			return -1;
		}
		csv_header(lg.csv);
	}
	if (lg.metrics_port && metrics_http_start(vmm, lg.metrics_port))
		return -1;
	rf_policy_config_init(&lg.pc);
	if (lg.policy_swap >= 0 || lg.free_bp || lg.proactive_ppm || lg.proactive_floor ||
	    lg.deflate_hold_ms >= 0) {
		struct rf_policy_config pc = lg.pc;

		if (lg.proactive_ppm) {
			pc.proactive = true;
			pc.stall_target_ppm = lg.proactive_ppm;
		}
		if (lg.proactive_floor)
			pc.proactive_floor_bytes = lg.proactive_floor;
		if (lg.deflate_hold_ms >= 0)
			pc.deflate_hold_ms = (unsigned int)lg.deflate_hold_ms;
		if (lg.policy_swap >= 0)
			pc.swap = lg.policy_swap;
		if (lg.free_bp) {
			/* ESX's proportions: soft, hard and low at 2/3, 1/3 and
			 * 1/6 of high; the hysteresis a sixth of high. */
			pc.high_bp = lg.free_bp;
			pc.soft_bp = lg.free_bp * 2 / 3;
			pc.hard_bp = lg.free_bp / 3;
			pc.low_bp = lg.free_bp / 6;
			pc.hysteresis_bp = lg.free_bp / 6;
		}
		if (rf_policy_configure(vmm->engine, &pc)) {
			vmm_errorf(
			    "--policy-swap/--policy-free/--policy-proactive: cannot configure "
			    "the policy");
			return -1;
		}
		lg.pc = pc;
	}
	return 0;
}

static void ledger_tick(struct vmm *vmm)
{
	/* The policy starts at the first tick: every module is up by then (the
	 * dedup engine it drives is started by a later module's start hook). */
	if (lg.policy_ms && !lg.policy_started) {
		int rc = rf_policy_start(vmm->engine, lg.policy_ms);

		if (rc)
			vmm_errorf("--policy: cannot start the policy: %s", strerror(-rc));
		lg.policy_started = true;
	}
	csv_row(vmm);
	if (lg.metrics_file && rf_metrics_write_file(vmm->engine, lg.metrics_file))
		vmm_errorf("--metrics-file %s: write failed", lg.metrics_file);
}

static void ledger_stop(struct vmm *vmm)
{
	rf_policy_stop(vmm->engine);
	metrics_http_stop();
	if (lg.csv) {
		/* No last row: other modules' stop hooks (dedup restores its
		 * merged pages) may already have run. */
		fclose(lg.csv);
		lg.csv = NULL;
	}
}

const struct vmm_module ledger_module = {
    .name = "ledger",
    .options = ledger_options,
    .vm_keys = ledger_vm_keys,
    .engine_config = ledger_engine_config,
    .start = ledger_start,
    .vm_config = ledger_vm_config,
    .vm_setup = ledger_vm_setup,
    .tick = ledger_tick,
    .stop = ledger_stop,
};
