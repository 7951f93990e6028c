/* SPDX-License-Identifier: MIT */
/*
 * The virtio-balloon device in the demo VMM, as the balloon module
 * (core/module.h): one libramfold balloon per VM (rf_balloon_new), behind a
 * virtio-mmio slot on the VM's MMIO bus (its vm_devices hook), plus the
 * control commands and --vm keys that drive it.
 *
 *   --vm keys     balloon=SIZE        initial balloon size (default 0)
 *                 balloon-stats=MS    stats polling interval (default 1000, 0 = off)
 *                 balloon-oom=on|off  offer DEFLATE_ON_OOM (default on)
 *                 balloon-report=on|off  offer free page reporting (default off:
 *                                     reported pages leave PRIVATE, which changes
 *                                     what every other experiment measures; the
 *                                     library itself offers it by default)
 *                 balloon-report-reuse=MS  keep the reports of a guest that takes
 *                                     reported memory back within MS (default
 *                                     10000, 0 = discard every report)
 *   commands      set-balloon {"vm", "balloon": SIZE | "guest-size": SIZE,
 *                              ["stats-interval": MS]}
 *                 query-balloon {"vm"}: target and actual, each both as the
 *                 balloon's size and as the guest's resulting size (QEMU's
 *                 `balloon` command takes the latter; say which you mean),
 *                 the page-state table's view, the stats under QEMU's names
 *                 with last-update, and the device's rejection counters.
 *
 * Threads: MMIO accesses arrive on the VM's vCPU thread; control commands on
 * the main thread; a ticker thread (started in the module's start hook,
 * stopped in its stop hook, before any VM is torn down) calls
 * rf_balloon_tick() every 20 ms so stats buffers go back to the guest on
 * time. The library serialises calls on one device; `devs` (the ticker's
 * list) has its own lock. The guest polls, so the irq callback is not needed.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/module.h"
#include "core/util.h"
#include "core/vmm.h"
#include "ctl/ctl.h"
#include "linux/linux.h"

struct balloon_dev {
	struct vmm_vm *vm;
	rf_balloon *b;
	uint64_t base; /* the MMIO window, for Linux guests' interrupt */
	struct balloon_dev *next;
};

static struct {
	pthread_mutex_t lock;
	struct balloon_dev *devs;
	pthread_t ticker;
	bool running;
	_Atomic bool stop;
} bd = {.lock = PTHREAD_MUTEX_INITIALIZER};

static int dev_read(void *opaque, uint64_t offset, void *data, unsigned len)
{
	struct balloon_dev *d = opaque;

	/* Offsets past the 0x200-byte register window read as 0 (counted). */
	return rf_balloon_mmio_read(d->b, offset, data, len) ? -EIO : 0;
}

static int dev_write(void *opaque, uint64_t offset, const void *data, unsigned len)
{
	struct balloon_dev *d = opaque;

	return rf_balloon_mmio_write(d->b, offset, data, len) ? -EIO : 0;
}

static void dev_destroy(void *opaque)
{
	struct balloon_dev *d = opaque, **pp;

	pthread_mutex_lock(&bd.lock);
	for (pp = &bd.devs; *pp; pp = &(*pp)->next)
		if (*pp == d) {
			*pp = d->next;
			break;
		}
	pthread_mutex_unlock(&bd.lock);
	d->vm->balloon = NULL;
	rf_balloon_free(d->b);
	free(d);
}

/* Linux guests take interrupts (an irqfd, linux/linux.c); the native guest polls. */
static void dev_irq(void *arg, unsigned int reason)
{
	struct balloon_dev *d = arg;

	(void)reason;
	linux_guest_irq(d->vm, d->base);
}

static const struct mmio_ops balloon_mmio_ops = {
    .read = dev_read,
    .write = dev_write,
    .destroy = dev_destroy,
};

static int key_onoff(struct vmm_vm *vm, const char *key, bool *out)
{
	const char *v = vmm_vm_key(vm, key);

	if (!v)
		return 0;
	if (!strcmp(v, "on"))
		*out = true;
	else if (!strcmp(v, "off"))
		*out = false;
	else {
		vmm_errorf("%s: %s=%s: expected on or off", vm->name, key, v);
		return -1;
	}
	return 0;
}

/* vm_devices hook: the VM's balloon, in the first slot after the debug device. */
static int balloon_vm_devices(struct vmm_vm *vm)
{
	struct rf_balloon_config cfg;
	struct balloon_dev *d;
	bool oom = true, report = false;
	uint64_t target = 0, ms = 1000, base, reuse;
	const char *v;
	int err;

	rf_balloon_config_init(&cfg);
	if ((v = vmm_vm_key(vm, "balloon")) && (parse_size(v, &target) || target > vm->mem_bytes)) {
		vmm_errorf("%s: balloon=%s: expected a size up to the VM's RAM", vm->name, v);
		return -1;
	}
	if ((v = vmm_vm_key(vm, "balloon-stats")) && (parse_u64(v, &ms) || ms > 3600000)) {
		vmm_errorf("%s: balloon-stats=%s: expected a polling interval in ms (0 = off)",
			   vm->name, v);
		return -1;
	}
	if (key_onoff(vm, "balloon-oom", &oom) || key_onoff(vm, "balloon-report", &report))
		return -1;
	if ((v = vmm_vm_key(vm, "balloon-report-reuse"))) {
		if (parse_u64(v, &reuse) || reuse > RF_BALLOON_REPORT_REUSE_MAX_MS) {
			vmm_errorf("%s: balloon-report-reuse=%s: expected a window in ms, "
				   "0..%u (0 = discard every report)",
				   vm->name, v, RF_BALLOON_REPORT_REUSE_MAX_MS);
			return -1;
		}
		cfg.report_reuse_ms = (unsigned int)reuse;
	}
	if (!oom)
		cfg.features &= ~RF_BALLOON_F_DEFLATE_ON_OOM;
	if (!report)
		cfg.features &= ~RF_BALLOON_F_REPORTING;
	cfg.stats_interval_ms = (unsigned int)ms;
	d = calloc(1, sizeof(*d));
	if (!d) {
		vmm_errorf("%s: balloon: out of memory", vm->name);
		return -1;
	}
	d->vm = vm;
	err = rf_balloon_new(vm->rf,
			     &(struct rf_balloon_ops){
				 .size = sizeof(struct rf_balloon_ops), .irq = dev_irq, .arg = d},
			     &cfg, &d->b);
	if (err) {
		vmm_errorf("%s: balloon: %s", vm->name, strerror(-err));
		free(d);
		return -1;
	}
	if (target)
		rf_balloon_set_target(d->b, target);
	err = vmm_vm_add_mmio_device(vm, "virtio-balloon", 5, &balloon_mmio_ops, d, &base);
	if (err) {
		vmm_errorf("%s: balloon: no MMIO slot: %s", vm->name, strerror(-err));
		rf_balloon_free(d->b);
		free(d);
		return -1;
	}
	d->base = base;
	vm->balloon = d;
	pthread_mutex_lock(&bd.lock);
	d->next = bd.devs;
	bd.devs = d;
	pthread_mutex_unlock(&bd.lock);
	return 0;
}

/* ---- ticker ------------------------------------------------------------- */

static void *ticker_main(void *arg)
{
	struct timespec ts = {0, 20 * 1000000};

	(void)arg;
	while (!bd.stop) {
		pthread_mutex_lock(&bd.lock);
		for (struct balloon_dev *d = bd.devs; d; d = d->next)
			rf_balloon_tick(d->b, NULL);
		pthread_mutex_unlock(&bd.lock);
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* ---- control commands ------------------------------------------------------ */

static struct balloon_dev *arg_dev(struct vmm_ctl_req *req, struct vmm_vm **vmp)
{
	struct vmm_vm *vm = vmm_ctl_arg_vm(req);

	if (!vm)
		return NULL;
	if (!vm->balloon) {
		vmm_ctl_fail(req, "%s has no balloon device", vm->name);
		return NULL;
	}
	*vmp = vm;
	return vm->balloon;
}

static int cmd_set_balloon(struct vmm_ctl_req *req, void *arg)
{
	struct vmm_vm *vm;
	struct balloon_dev *d = arg_dev(req, &vm);
	struct rf_balloon_info info = {.size = sizeof(info)};
	bool has_b, has_g;
	uint64_t balloon = 0, guest = 0, ms;
	int err;

	(void)arg;
	if (!d)
		return -1;
	rf_balloon_info(d->b, &info);
	has_b = json_get(req->args, "balloon") != NULL;
	has_g = json_get(req->args, "guest-size") != NULL;
	if (json_get(req->args, "stats-interval")) {
		if (json_get_u64(req->args, "stats-interval", &ms) || ms > 3600000)
			return vmm_ctl_fail(req,
					    "set-balloon: stats-interval must be ms (0 = off)");
		rf_balloon_set_stats_interval(d->b, (unsigned int)ms);
		if (!has_b && !has_g)
			return 0;
	}
	if (has_b == has_g)
		return vmm_ctl_fail(req,
				    "set-balloon: give exactly one of balloon=SIZE (the "
				    "balloon's size) or guest-size=SIZE (the guest's size after "
				    "ballooning)");
	if (has_b && json_get_size(req->args, "balloon", &balloon))
		return vmm_ctl_fail(req, "set-balloon: balloon must be a size (e.g. 256M)");
	if (has_g) {
		if (json_get_size(req->args, "guest-size", &guest))
			return vmm_ctl_fail(req,
					    "set-balloon: guest-size must be a size (e.g. 256M)");
		if (guest > info.guest_ram_bytes)
			return vmm_ctl_fail(
			    req, "set-balloon: guest-size %llu is larger than %s's RAM (%llu)",
			    (unsigned long long)guest, vm->name,
			    (unsigned long long)info.guest_ram_bytes);
		balloon = info.guest_ram_bytes - guest;
	}
	err = rf_balloon_set_target(d->b, balloon);
	if (err)
		return vmm_ctl_fail(
		    req, "set-balloon: balloon of %llu bytes: larger than %s's RAM (%llu bytes)",
		    (unsigned long long)balloon, vm->name,
		    (unsigned long long)info.guest_ram_bytes);
	rf_balloon_info(d->b, &info);
	jb_obj_open(req->ret);
	jb_kv_u64(req->ret, "balloon-target", info.target_bytes);
	jb_kv_u64(req->ret, "guest-size-target", info.guest_ram_bytes - info.target_bytes);
	jb_obj_close(req->ret);
	return 0;
}

static int cmd_query_balloon(struct vmm_ctl_req *req, void *arg)
{
	struct vmm_vm *vm;
	struct balloon_dev *d = arg_dev(req, &vm);
	struct rf_balloon_info info = {.size = sizeof(info)};
	struct rf_balloon_stats st = {.size = sizeof(st)};
	struct rf_balloon_counters c = {.size = sizeof(c)};
	char feat[32];

	(void)arg;
	if (!d)
		return -1;
	rf_balloon_info(d->b, &info);
	rf_balloon_stats(d->b, &st);
	rf_balloon_counters(d->b, &c);
	snprintf(feat, sizeof(feat), "0x%llx", (unsigned long long)info.features_negotiated);
	jb_obj_open(req->ret);
	jb_kv_str(req->ret, "vm", vm->name);
	jb_kv_u64(req->ret, "guest-ram", info.guest_ram_bytes);
	jb_kv_u64(req->ret, "balloon-target", info.target_bytes);
	jb_kv_u64(req->ret, "guest-size-target", info.guest_ram_bytes - info.target_bytes);
	/* `actual` is what the guest says; the table's view is next to it. */
	jb_kv_u64(req->ret, "actual", info.actual_bytes);
	jb_kv_u64(req->ret, "guest-size",
		  info.actual_bytes <= info.guest_ram_bytes
		      ? info.guest_ram_bytes - info.actual_bytes
		      : 0);
	jb_kv_u64(req->ret, "ballooned", info.ballooned_bytes);
	jb_kv_u64(req->ret, "free-reported", info.reported_bytes);
	jb_kv_str(req->ret, "features", feat);
	jb_kv_bool(req->ret, "driver-ok", (info.status & RF_VIRTIO_STATUS_DRIVER_OK) != 0);
	jb_kv_bool(req->ret, "needs-reset",
		   (info.status & RF_VIRTIO_STATUS_DEVICE_NEEDS_RESET) != 0);
	jb_kv_u64(req->ret, "stats-interval", info.stats_interval_ms);
	jb_kv_i64(req->ret, "last-update", st.last_update);
	jb_kv_u64(req->ret, "last-update-ns", st.last_update_ns);
	jb_kv_u64(req->ret, "stats-updates", st.updates);
	jb_key(req->ret, "stats");
	jb_obj_open(req->ret);
	for (unsigned int t = 0; t < RF_BALLOON_NR_STATS; t++)
		jb_kv_i64(req->ret, rf_balloon_stat_name(t),
			  st.value[t] == RF_BALLOON_STAT_UNSET ? -1 : (int64_t)st.value[t]);
	jb_obj_close(req->ret);
	jb_key(req->ret, "counters");
	jb_obj_open(req->ret);
	jb_kv_u64(req->ret, "inflated-pages", c.inflated_pages);
	jb_kv_u64(req->ret, "deflated-pages", c.deflated_pages);
	jb_kv_u64(req->ret, "reported-pages", c.reported_pages);
	jb_kv_u64(req->ret, "report-reused-pages", c.report_reused_pages);
	jb_kv_u64(req->ret, "report-kept-pages", c.report_kept_pages);
	jb_kv_u64(req->ret, "stats-buffers", c.stats_buffers);
	jb_kv_u64(req->ret, "rejected", rf_balloon_rejected_total(&c));
	jb_obj_close(req->ret);
	jb_obj_close(req->ret);
	return 0;
}

/* ---- module ----------------------------------------------------------------- */

static int balloon_start(struct vmm *vmm)
{
	(void)vmm;
	vmm_ctl_register("set-balloon",
			 "set-balloon vm=NAME balloon=SIZE|guest-size=SIZE [stats-interval=MS]",
			 cmd_set_balloon, NULL);
	vmm_ctl_register("query-balloon", "query-balloon vm=NAME: target, actual, stats",
			 cmd_query_balloon, NULL);
	bd.stop = false;
	if (pthread_create(&bd.ticker, NULL, ticker_main, NULL)) {
		vmm_errorf("balloon: cannot start the stats ticker thread");
		return -1;
	}
	bd.running = true;
	return 0;
}

static void balloon_stop(struct vmm *vmm)
{
	(void)vmm;
	if (!bd.running)
		return;
	bd.stop = true;
	pthread_join(bd.ticker, NULL);
	bd.running = false;
}

static const char *const balloon_vm_keys[] = {
    "balloon", "balloon-stats", "balloon-oom", "balloon-report", "balloon-report-reuse", NULL};

const struct vmm_module balloon_module = {
    .name = "balloon",
    .vm_keys = balloon_vm_keys,
    .start = balloon_start,
    .vm_devices = balloon_vm_devices,
    .stop = balloon_stop,
};
