/* SPDX-License-Identifier: MIT */
/*
 * The virtio-balloon device (device ID 5), as the generic virtio layer sees
 * it: an ops table (balloon_dev_ops) of config space, features, queue roles,
 * queue processing and reset. It knows no transport (balloon_transport.c
 * holds the calls transports make) and what a request does to guest pages is
 * in balloon_pages.c. Its queues:
 *
 *   inflateq   PFNs the guest gives up: state BALLOONED (balloon_pages.c).
 *   deflateq   PFNs the guest takes back: PRIVATE again, read as zero
 *              (balloon_pages.c).
 *   statsq     one buffer of {tag, value} entries, held by the device and
 *              returned when the polling interval has passed (that is how
 *              the device asks for fresh stats): here, parsed by
 *              balloon_stats.c.
 *   reporting  device-writable page ranges the guest reports free: state
 *              FREE_REPORTED, still the guest's memory (balloon_pages.c).
 *
 * Also here: the device's lifecycle (rf_balloon_new/free, and its end with
 * the VM through a vm_free hook) and the host side (target, info, stats,
 * tick, counters).
 *
 * Invariants:
 *  - A request is validated as a whole before anything is done: a buffer
 *    with one PFN outside guest RAM is returned untouched, no page of it
 *    discarded. Counting and logging happen at the point of rejection.
 *  - The device's own accounting comes from the page-state table; `actual`
 *    and the stats are what the guest says and only ever displayed.
 *  - The work per request is bounded (max_pfns_per_buffer,
 *    max_report_bytes), and so is the number of requests handled per notify
 *    (4 x queue size); the rest waits for the next notify or tick.
 *
 * Locking: b->lock serialises everything on the device (lock order: b->lock,
 * then the VM's regions lock, then page locks, as internal.h orders them).
 */
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <ramfold/balloon.h>

#include "abi.h"
#include "balloon_internal.h"
#include "balloon_stats.h"

/* The public names of the virtio constants (<ramfold/balloon.h>) are the
 * generic layer's (virtio_dev.h), which includes no device header. */
_Static_assert(RF_VIRTIO_STATUS_ACKNOWLEDGE == VIRTIO_STATUS_ACKNOWLEDGE, "status");
_Static_assert(RF_VIRTIO_STATUS_DRIVER == VIRTIO_STATUS_DRIVER, "status");
_Static_assert(RF_VIRTIO_STATUS_DRIVER_OK == VIRTIO_STATUS_DRIVER_OK, "status");
_Static_assert(RF_VIRTIO_STATUS_FEATURES_OK == VIRTIO_STATUS_FEATURES_OK, "status");
_Static_assert(RF_VIRTIO_STATUS_DEVICE_NEEDS_RESET == VIRTIO_STATUS_DEVICE_NEEDS_RESET, "status");
_Static_assert(RF_VIRTIO_STATUS_FAILED == VIRTIO_STATUS_FAILED, "status");
/* The public feature bits are typed constants (balloon.h), not constant
 * expressions in C: their bit numbers, as balloon.h spells them. */
_Static_assert(1ull << 28 == VIRTIO_FEATURE_INDIRECT_DESC, "feature");
_Static_assert(1ull << 29 == VIRTIO_FEATURE_EVENT_IDX, "feature");
_Static_assert(1ull << 32 == VIRTIO_FEATURE_VERSION_1, "feature");
_Static_assert(RF_BALLOON_IRQ_VRING == VIRTIO_ISR_VRING, "interrupt reason");
_Static_assert(RF_BALLOON_IRQ_CONFIG == VIRTIO_ISR_CONFIG, "interrupt reason");

#define VIRTIO_ID_BALLOON   5
#define BALLOON_CONFIG_SIZE 16 /* num_pages, actual, free_page_hint_cmd_id, poison_val */
#define CFG_NUM_PAGES	    0
#define CFG_ACTUAL	    4
#define CFG_CMD_ID	    8
#define CFG_POISON	    12

static const char *const role_names[] = {
    [ROLE_NONE] = "queue?",  [ROLE_INFLATE] = "inflateq",	[ROLE_DEFLATE] = "deflateq",
    [ROLE_STATS] = "statsq", [ROLE_FREE_PAGE] = "free_page_vq", [ROLE_REPORTING] = "reporting_vq",
};

_Static_assert(offsetof(struct rf_balloon, dev) == 0, "to_balloon() casts");

static struct rf_balloon *to_balloon(struct rf_virtio_dev *d)
{
	return (struct rf_balloon *)d;
}

/* ---- counters for the generic layer's rejections ------------------------- */

static const size_t reject_counter[RF_RJ_NR] = {
    [RF_RJ_MMIO_ACCESS] = offsetof(struct rf_balloon_counters, mmio_access_invalid),
    [RF_RJ_STATUS] = offsetof(struct rf_balloon_counters, status_invalid),
    [RF_RJ_FEATURES_UNSUPPORTED] = offsetof(struct rf_balloon_counters, features_unsupported),
    [RF_RJ_FEATURES_LATE] = offsetof(struct rf_balloon_counters, features_after_features_ok),
    [RF_RJ_CONFIG_RANGE] = offsetof(struct rf_balloon_counters, config_out_of_range),
    [RF_RJ_CONFIG_READONLY] = offsetof(struct rf_balloon_counters, config_write_readonly),
    [RF_RJ_QUEUE_SETUP] = offsetof(struct rf_balloon_counters, queue_setup_invalid),
    [RF_RJ_QUEUE_SIZE] = offsetof(struct rf_balloon_counters, queue_size_invalid),
    [RF_RJ_RING_ADDR] = offsetof(struct rf_balloon_counters, ring_addr_invalid),
    [RF_RJ_NOTIFY_INVALID] = offsetof(struct rf_balloon_counters, notify_invalid),
    [RF_RJ_NOTIFY_EARLY] = offsetof(struct rf_balloon_counters, notify_before_driver_ok),
    [RF_RJ_NOTIFY_NEEDS_RESET] = offsetof(struct rf_balloon_counters, notify_needs_reset),
    [RF_RJ_VQ + RF_VQ_E_DESC_INDEX] = offsetof(struct rf_balloon_counters, desc_index_invalid),
    [RF_RJ_VQ + RF_VQ_E_CHAIN_LEN] = offsetof(struct rf_balloon_counters, desc_chain_too_long),
    [RF_RJ_VQ + RF_VQ_E_DESC_FLAGS] = offsetof(struct rf_balloon_counters, desc_flags_invalid),
    [RF_RJ_VQ + RF_VQ_E_DESC_ADDR] = offsetof(struct rf_balloon_counters, desc_addr_invalid),
    [RF_RJ_VQ + RF_VQ_E_DIRECTION] = offsetof(struct rf_balloon_counters, desc_wrong_direction),
    [RF_RJ_VQ + RF_VQ_E_INDIRECT_NOT_NEG] =
	offsetof(struct rf_balloon_counters, indirect_not_negotiated),
    [RF_RJ_VQ + RF_VQ_E_INDIRECT_NESTED] = offsetof(struct rf_balloon_counters, indirect_nested),
    [RF_RJ_VQ + RF_VQ_E_INDIRECT_LEN] = offsetof(struct rf_balloon_counters, indirect_len_invalid),
    [RF_RJ_VQ + RF_VQ_E_AVAIL_JUMP] = offsetof(struct rf_balloon_counters, avail_idx_jump),
    [RF_RJ_VQ + RF_VQ_E_HEAD_INDEX] = offsetof(struct rf_balloon_counters, desc_index_invalid),
    [RF_RJ_VQ + RF_VQ_E_RING_GONE] = offsetof(struct rf_balloon_counters, ring_addr_invalid),
};

static void dev_reject(struct rf_virtio_dev *d, enum rf_virtio_reject kind, const char *detail)
{
	struct rf_balloon *b = to_balloon(d);

	if ((unsigned int)kind < RF_RJ_NR && reject_counter[kind])
		(*(uint64_t *)((char *)&b->ctr + reject_counter[kind]))++;
	rf_log_ratelimited(b->e, &b->rl, RF_LOG_WARN, "%s: balloon: %s", b->vm->name, detail);
}

/* The per-queue callback (rf_balloon_set_queue_interrupt) replaces the
 * per-device one when set: a virtio-pci embedder signals one MSI-X vector
 * per queue, and one for the config, and must know which. */
static void dev_irq(struct rf_virtio_dev *d, unsigned int reason, int queue)
{
	struct rf_balloon *b = to_balloon(d);

	if (b->queue_irq)
		b->queue_irq(b->queue_irq_arg, reason == VIRTIO_ISR_CONFIG ? -1 : queue);
	else if (b->ops.irq)
		b->ops.irq(b->ops.arg, reason);
}

/* ---- queues --------------------------------------------------------------- */

static unsigned int dev_num_queues(struct rf_virtio_dev *d, uint64_t f)
{
	(void)d;
	/* Linux's virtio-mmio numbers only the queues that exist (it skips a
	 * missing one without using up its index), so the count, and each
	 * queue's index, follow the features. */
	return 2 + !!(f & RF_BALLOON_F_STATS_VQ) + !!(f & RF_BALLOON_F_FREE_PAGE_HINT) +
	       !!(f & RF_BALLOON_F_REPORTING);
}

void balloon_assign_roles(struct rf_balloon *b, uint64_t f)
{
	unsigned int q = 0;

	memset(b->role, 0, sizeof(b->role));
	b->role[q++] = ROLE_INFLATE;
	b->role[q++] = ROLE_DEFLATE;
	if (f & RF_BALLOON_F_STATS_VQ)
		b->role[q++] = ROLE_STATS;
	if (f & RF_BALLOON_F_FREE_PAGE_HINT)
		b->role[q++] = ROLE_FREE_PAGE;
	if (f & RF_BALLOON_F_REPORTING)
		b->role[q++] = ROLE_REPORTING;
}

static bool dev_queue_device_writes(struct rf_virtio_dev *d, unsigned int q)
{
	struct rf_balloon *b = to_balloon(d);

	return q < RF_VIRTIO_MAX_QUEUES &&
	       (b->role[q] == ROLE_REPORTING || b->role[q] == ROLE_FREE_PAGE);
}

static void dev_features_ok(struct rf_virtio_dev *d)
{
	struct rf_balloon *b = to_balloon(d);

	char layout[96] = "";
	size_t len = 0;

	balloon_assign_roles(b, d->driver_features);
	for (unsigned int q = 0; q < RF_VIRTIO_MAX_QUEUES && b->role[q] != ROLE_NONE; q++)
		len += (size_t)snprintf(layout + len, sizeof(layout) - len, "%s%u=%s", q ? " " : "",
					q, role_names[b->role[q]]);
	rf_log(b->e, RF_LOG_INFO, "%s: balloon: features negotiated 0x%llx, queues %s", b->vm->name,
	       (unsigned long long)d->driver_features, layout);
}

static uint64_t guest_ram_bytes(rf_vm *vm)
{
	uint64_t n;

	rf_vm_regions_rdlock(vm);
	n = vm->mapped_bytes;
	rf_vm_regions_unlock(vm);
	return n;
}

/* ---- config space ---------------------------------------------------------- */

static void config_image(struct rf_balloon *b, uint8_t img[BALLOON_CONFIG_SIZE])
{
	uint32_t v[4] = {htole32(b->num_pages), htole32(b->actual), 0, htole32(b->poison_val)};

	memcpy(img, v, BALLOON_CONFIG_SIZE);
}

static void dev_config_read(struct rf_virtio_dev *d, uint32_t off, uint8_t *data, uint32_t len)
{
	uint8_t img[BALLOON_CONFIG_SIZE];

	config_image(to_balloon(d), img);
	memcpy(data, img + off, len);
}

static bool byte_writable(struct rf_balloon *b, uint32_t off)
{
	if (off >= CFG_ACTUAL && off < CFG_ACTUAL + 4)
		return true;
	return off >= CFG_POISON && off < CFG_POISON + 4 &&
	       rf_virtio_negotiated(&b->dev, RF_BALLOON_F_PAGE_POISON);
}

static int dev_config_write(struct rf_virtio_dev *d, uint32_t off, const uint8_t *data,
			    uint32_t len)
{
	struct rf_balloon *b = to_balloon(d);
	uint8_t img[BALLOON_CONFIG_SIZE];
	uint32_t actual, poison;

	for (uint32_t i = 0; i < len; i++)
		if (!byte_writable(b, off + i))
			return -EPERM;
	config_image(b, img);
	memcpy(img + off, data, len);
	memcpy(&actual, img + CFG_ACTUAL, 4);
	memcpy(&poison, img + CFG_POISON, 4);
	b->poison_val = le32toh(poison);
	actual = le32toh(actual);
	if (actual != b->actual) {
		uint64_t ram_pages = guest_ram_bytes(b->vm) >> RF_PAGE_SHIFT;

		b->actual = actual;
		b->actual_changed_ns = rf_now_ns();
		/* Shown as the guest said it; the device's own count of
		 * ballooned pages comes from the page-state table. */
		if (actual > ram_pages)
			BAD(b, actual_implausible,
			    "%s: balloon: guest reports actual %u pages, it has only %llu",
			    b->vm->name, actual, (unsigned long long)ram_pages);
		if (b->ops.actual_changed)
			b->ops.actual_changed(b->ops.arg, (uint64_t)actual << RF_PAGE_SHIFT);
	}
	return 0;
}

/* ---- stats queue ------------------------------------------------------------ */

/* The index of the stats queue, or -1 if STATS_VQ is not in use. */
static int stats_queue(struct rf_balloon *b)
{
	for (unsigned int q = 0; q < RF_VIRTIO_MAX_QUEUES; q++)
		if (b->role[q] == ROLE_STATS)
			return (int)q;
	return -1;
}

static void return_stats_buffer(struct rf_balloon *b, unsigned int q)
{
	b->stats_held = false;
	if (rf_virtq_push(&b->dev.vq[q], b->stats_head, 0)) {
		rf_virtio_vq_error(&b->dev, q, -RF_VQ_E_RING_GONE, b->stats_head);
		return;
	}
	rf_virtio_vq_done(&b->dev, q, 1);
}

/* Returns true if the buffer is kept by the device (not to be pushed now). */
static bool stats_buffer(struct rf_balloon *b)
{
	struct rf_virtq_chain *c = &b->chain;
	uint8_t buf[RF_BALLOON_STATS_MAX_BYTES];
	struct rf_stats_parse sp;
	struct timespec ts;
	size_t off = 0;

	if (b->stats_held) {
		BAD(b, stats_second_buffer,
		    "%s: balloon: statsq: second stats buffer while one is outstanding, dropped",
		    b->vm->name);
		return false;
	}
	if (c->total_len == 0 || c->total_len > RF_BALLOON_STATS_MAX_BYTES ||
	    c->total_len % RF_BALLOON_STAT_ENTRY) {
		BAD(b, stats_len_invalid,
		    "%s: balloon: statsq: buffer of %llu bytes is not whole 10-byte entries (at "
		    "most %u bytes), dropped",
		    b->vm->name, (unsigned long long)c->total_len, RF_BALLOON_STATS_MAX_BYTES);
		return false;
	}
	for (unsigned int i = 0; i < c->nseg; i++) {
		memcpy(buf + off, c->seg[i].hva, c->seg[i].len);
		off += c->seg[i].len;
	}
	rf_balloon_stats_parse(buf, off, &sp);
	if (sp.duplicate) {
		BAD(b, stats_tag_duplicate,
		    "%s: balloon: statsq: tag %u sent more than once, first kept", b->vm->name,
		    sp.first_bad_tag);
		b->ctr.stats_tag_duplicate += sp.duplicate - 1;
	}
	if (sp.unknown) {
		b->ctr.stats_tag_unknown += sp.unknown;
		rf_log_ratelimited(b->e, &b->rl, RF_LOG_DEBUG,
				   "%s: balloon: statsq: %u unknown tags ignored", b->vm->name,
				   sp.unknown);
	}
	memcpy(b->stats.value, sp.value, sizeof(sp.value));
	b->stats.last_update_ns = rf_now_ns();
	clock_gettime(CLOCK_REALTIME, &ts);
	b->stats.last_update = ts.tv_sec;
	b->stats.updates++;
	b->ctr.stats_buffers++;
	b->stats_held = true;
	b->stats_head = c->head;
	b->stats_since_ns = b->stats.last_update_ns;
	if (b->ops.stats_updated)
		b->ops.stats_updated(b->ops.arg);
	return true;
}

/* ---- queue processing ------------------------------------------------------- */

static void process_queue(struct rf_balloon *b, unsigned int q)
{
	struct rf_virtq *vq = &b->dev.vq[q];
	enum queue_role role = b->role[q];
	unsigned int pushed = 0, budget = 4u * vq->size;
	int r;

	while (budget-- && (r = rf_virtq_pop(vq, &b->chain)) != 0) {
		if (r < 0) {
			if (!rf_virtio_vq_error(&b->dev, q, r, b->chain.head))
				break;
			pushed++;
			continue;
		}
		switch (role) {
		case ROLE_INFLATE:
			balloon_inflate_buffer(b);
			break;
		case ROLE_DEFLATE:
			balloon_deflate_buffer(b);
			break;
		case ROLE_REPORTING:
			balloon_report_buffer(b);
			break;
		case ROLE_STATS:
			if (stats_buffer(b))
				continue; /* held: returned by the next poll */
			break;
		default:
			break;
		}
		if (rf_virtq_push(vq, b->chain.head, 0)) {
			rf_virtio_vq_error(&b->dev, q, -RF_VQ_E_RING_GONE, b->chain.head);
			break;
		}
		pushed++;
	}
	rf_virtio_vq_done(&b->dev, q, pushed);
}

static void dev_queue_notify(struct rf_virtio_dev *d, unsigned int q)
{
	process_queue(to_balloon(d), q);
}

/* Process every enabled queue with buffers pending, unless one of them
 * broke the device (NEEDS_RESET) meanwhile. */
static void process_pending(struct rf_balloon *b)
{
	struct rf_virtio_dev *d = &b->dev;

	for (unsigned int q = 0; q < rf_virtio_num_queues(d); q++)
		if (d->vq[q].size && rf_virtq_pending(&d->vq[q]) > 0 &&
		    !(d->status & RF_VIRTIO_STATUS_DEVICE_NEEDS_RESET))
			process_queue(b, q);
}

/* Linux's driver queues its first stats buffer (and notifies) before it
 * sets DRIVER_OK; that notify was counted and deferred, not lost: whatever
 * is pending is processed now. */
static void dev_driver_ok(struct rf_virtio_dev *d)
{
	process_pending(to_balloon(d));
}

/* The driver stopped queue @q: a stats buffer held from it is the driver's
 * again (returning it later would write into a ring the driver may have
 * freed or moved). */
static void dev_queue_stopped(struct rf_virtio_dev *d, unsigned int q)
{
	struct rf_balloon *b = to_balloon(d);

	if (b->role[q] == ROLE_STATS)
		b->stats_held = false;
}

static void dev_reset(struct rf_virtio_dev *d)
{
	struct rf_balloon *b = to_balloon(d);

	b->ctr.resets++;
	b->stats_held = false;
	b->poison_val = 0;
	if (b->actual) {
		b->actual = 0;
		b->actual_changed_ns = rf_now_ns();
		if (b->ops.actual_changed)
			b->ops.actual_changed(b->ops.arg, 0);
	}
	balloon_assign_roles(b, b->dev.host_features);
	balloon_unballoon_all(b);
}

static const struct rf_virtio_dev_ops balloon_dev_ops = {
    .device_id = VIRTIO_ID_BALLOON,
    .config_size = BALLOON_CONFIG_SIZE,
    .num_queues = dev_num_queues,
    .queue_device_writes = dev_queue_device_writes,
    .config_read = dev_config_read,
    .config_write = dev_config_write,
    .features_ok = dev_features_ok,
    .queue_notify = dev_queue_notify,
    .driver_ok = dev_driver_ok,
    .queue_stopped = dev_queue_stopped,
    .reset = dev_reset,
    .reject = dev_reject,
    .irq = dev_irq,
};

/* ---- lifecycle ---------------------------------------------------------------- */

RF_EXPORT void rf_balloon_config_init(struct rf_balloon_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->features = RF_BALLOON_FEATURES_DEFAULT;
	cfg->stats_interval_ms = 0;
	cfg->queue_size_max = 256;
	cfg->max_pfns_per_buffer = 256;
	cfg->max_report_bytes = 128ull << 20;
	cfg->report_reuse_ms = 10000;
}
RF_VERSION_0_3(rf_balloon_config_init);

static void balloon_destroy(struct rf_balloon *b)
{
	rf_engine *e = b->e;

	b->vm->balloon = NULL;
	pthread_mutex_destroy(&b->lock);
	balloon_map_free(b);
	report_reuse_free(b);
	rf_free(e, b->pfns);
	rf_free(e, b->runs);
	rf_free(e, b->sub);
	atomic_fetch_sub(&b->vm->metadata_bytes, sizeof(*b));
	rf_free(e, b);
}

/* The VM is going away first: take its balloon with it. The hook's arg is
 * unused; the VM's own pointer says whether a balloon is attached, so the
 * hook stays valid after rf_balloon_free(). */
static void balloon_vm_free(rf_vm *vm, void *arg)
{
	(void)arg;
	if (vm->balloon)
		balloon_destroy(vm->balloon);
}

static int ensure_vm_hook(rf_vm *vm)
{
	struct rf_vm_hooks h = {.vm_free = balloon_vm_free};

	if (rf_vm_hooks_registered(vm, balloon_vm_free))
		return 0;
	return rf_vm_add_hooks(vm, &h);
}

RF_EXPORT int rf_balloon_new(rf_vm *vm, const struct rf_balloon_ops *ops,
			     const struct rf_balloon_config *cfg, rf_balloon **out)
{
	struct rf_balloon_ops o = {0};
	struct rf_balloon_config c;
	struct rf_balloon *b;
	unsigned int qmax;
	int err;

	if (!vm || !out)
		return -EINVAL;
	*out = NULL;
	rf_balloon_config_init(&c);
	if (cfg) {
		err = rf_struct_in(vm->e, &c, sizeof(c), cfg,
				   RF_STRUCT_MIN(struct rf_balloon_config, features),
				   "rf_balloon_config");
		if (err)
			return err;
	}
	if (ops) {
		err = rf_struct_in(vm->e, &o, sizeof(o), ops,
				   RF_STRUCT_MIN(struct rf_balloon_ops, irq), "rf_balloon_ops");
		if (err)
			return err;
	}
	qmax = c.queue_size_max;
	if (qmax < 2 || qmax > RF_VIRTQ_MAX_SIZE || (qmax & (qmax - 1)) ||
	    c.max_pfns_per_buffer == 0 || c.max_pfns_per_buffer > 4096 ||
	    c.max_report_bytes < RF_PAGE_SIZE ||
	    c.report_reuse_ms > RF_BALLOON_REPORT_REUSE_MAX_MS) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: balloon_new: queue_size_max %u (power of two 2..%u), "
		       "max_pfns_per_buffer %u (1..4096), max_report_bytes %llu (>= 4096), "
		       "report_reuse_ms %u (0..%u)",
		       vm->name, qmax, RF_VIRTQ_MAX_SIZE, c.max_pfns_per_buffer,
		       (unsigned long long)c.max_report_bytes, c.report_reuse_ms,
		       RF_BALLOON_REPORT_REUSE_MAX_MS);
		return -EINVAL;
	}
	if (vm->balloon) {
		rf_log(vm->e, RF_LOG_ERR, "%s: balloon_new: the VM already has a balloon",
		       vm->name);
		return -EBUSY;
	}
	c.features = (c.features | RF_VIRTIO_F_VERSION_1) & RF_BALLOON_FEATURES_DEFAULT;
	b = rf_zalloc(vm->e, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->pfns = rf_zalloc(vm->e, c.max_pfns_per_buffer * sizeof(*b->pfns));
	b->runs = rf_zalloc(vm->e, c.max_pfns_per_buffer * sizeof(*b->runs));
	b->sub = rf_zalloc(vm->e, c.max_pfns_per_buffer * sizeof(*b->sub));
	if (!b->pfns || !b->runs || !b->sub) {
		err = -ENOMEM;
		goto out_free;
	}
	err = ensure_vm_hook(vm);
	if (err) {
		rf_log(vm->e, RF_LOG_ERR, "%s: balloon_new: no free module hook slot", vm->name);
		goto out_free;
	}
	b->vm = vm;
	b->e = vm->e;
	b->cfg = c;
	if (ops)
		b->ops = o;
	b->rl.burst = 10;
	pthread_mutex_init(&b->lock, NULL);
	for (unsigned int i = 0; i < RF_BALLOON_NR_STATS; i++)
		b->stats.value[i] = RF_BALLOON_STAT_UNSET;
	rf_virtio_dev_init(&b->dev, &balloon_dev_ops, vm, c.features, qmax);
	balloon_assign_roles(b, c.features);
	vm->balloon = b;
	atomic_fetch_add(&vm->metadata_bytes, sizeof(*b));
	*out = b;
	return 0;

out_free:
	rf_free(vm->e, b->pfns);
	rf_free(vm->e, b->runs);
	rf_free(vm->e, b->sub);
	rf_free(vm->e, b);
	return err;
}
RF_VERSION_0_3(rf_balloon_new);

RF_EXPORT void rf_balloon_free(rf_balloon *b)
{
	if (b)
		balloon_destroy(b);
}

/* ---- host side ------------------------------------------------------------------ */

RF_EXPORT int rf_balloon_set_target(rf_balloon *b, uint64_t balloon_bytes)
{
	uint64_t ram, pages;

	if (!b)
		return -EINVAL;
	ram = guest_ram_bytes(b->vm);
	pages = balloon_bytes >> RF_PAGE_SHIFT;
	if (balloon_bytes > ram || pages > UINT32_MAX) {
		rf_log(
		    b->e, RF_LOG_ERR,
		    "%s: balloon: target of %llu bytes is larger than the guest's RAM (%llu bytes)",
		    b->vm->name, (unsigned long long)balloon_bytes, (unsigned long long)ram);
		return -EINVAL;
	}
	pthread_mutex_lock(&b->lock);
	if (b->num_pages != pages) {
		b->num_pages = (uint32_t)pages;
		rf_virtio_config_changed(&b->dev);
	}
	pthread_mutex_unlock(&b->lock);
	return 0;
}

static int rf_balloon_info_full(rf_balloon *b, struct rf_balloon_info *out)
{
	if (!b || !out)
		return -EINVAL;
	memset(out, 0, sizeof(*out));
	out->guest_ram_bytes = guest_ram_bytes(b->vm);
	pthread_mutex_lock(&b->lock);
	out->target_bytes = (uint64_t)b->num_pages << RF_PAGE_SHIFT;
	out->actual_bytes = (uint64_t)b->actual << RF_PAGE_SHIFT;
	out->actual_changed_ns = b->actual_changed_ns;
	out->features_offered = b->dev.host_features;
	out->features_negotiated =
	    (b->dev.status & RF_VIRTIO_STATUS_FEATURES_OK) ? b->dev.driver_features : 0;
	out->poison_val = b->poison_val;
	out->status = b->dev.status;
	out->stats_interval_ms = b->cfg.stats_interval_ms;
	pthread_mutex_unlock(&b->lock);
	out->ballooned_bytes = atomic_load(&b->vm->state_pages[RF_PAGE_BALLOONED]) << RF_PAGE_SHIFT;
	out->reported_bytes = atomic_load(&b->vm->state_pages[RF_PAGE_FREE_REPORTED])
			      << RF_PAGE_SHIFT;
	return 0;
}

RF_EXPORT int rf_balloon_info(rf_balloon *b, struct rf_balloon_info *out)
{
	struct rf_balloon_info full;

	RF_STRUCT_OUT(b ? b->e : NULL, out, full, guest_ram_bytes, "rf_balloon_info",
		      rf_balloon_info_full(b, &full));
}
RF_VERSION_0_3(rf_balloon_info);

static int rf_balloon_stats_full(rf_balloon *b, struct rf_balloon_stats *out)
{
	if (!b || !out)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	*out = b->stats;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

RF_EXPORT int rf_balloon_stats(rf_balloon *b, struct rf_balloon_stats *out)
{
	struct rf_balloon_stats full;

	RF_STRUCT_OUT(b ? b->e : NULL, out, full, value, "rf_balloon_stats",
		      rf_balloon_stats_full(b, &full));
}
RF_VERSION_0_3(rf_balloon_stats);

RF_EXPORT int rf_balloon_set_stats_interval(rf_balloon *b, unsigned int ms)
{
	if (!b)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	b->cfg.stats_interval_ms = ms;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

RF_EXPORT int rf_balloon_tick(rf_balloon *b, unsigned int *next_ms)
{
	unsigned int next = UINT32_MAX;
	uint8_t st;

	if (!b)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	st = b->dev.status;
	if ((st & RF_VIRTIO_STATUS_DRIVER_OK) && !(st & RF_VIRTIO_STATUS_DEVICE_NEEDS_RESET)) {
		int sq = stats_queue(b);

		/* Buffers left over by the per-notify budget. */
		process_pending(b);
		if (sq >= 0 && b->stats_held && b->cfg.stats_interval_ms && b->dev.vq[sq].size) {
			uint64_t now = rf_now_ns();
			uint64_t due =
			    b->stats_since_ns + (uint64_t)b->cfg.stats_interval_ms * 1000000;

			if (now >= due)
				return_stats_buffer(b, (unsigned int)sq);
			else
				next = (unsigned int)((due - now + 999999) / 1000000);
		}
	}
	pthread_mutex_unlock(&b->lock);
	if (next_ms)
		*next_ms = next;
	return 0;
}

static int rf_balloon_counters_full(rf_balloon *b, struct rf_balloon_counters *out)
{
	if (!b || !out)
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	*out = b->ctr;
	pthread_mutex_unlock(&b->lock);
	return 0;
}

RF_EXPORT int rf_balloon_counters(rf_balloon *b, struct rf_balloon_counters *out)
{
	struct rf_balloon_counters full;

	RF_STRUCT_OUT(b ? b->e : NULL, out, full, inflate_buffers, "rf_balloon_counters",
		      rf_balloon_counters_full(b, &full));
}
RF_VERSION_0_3(rf_balloon_counters);

RF_EXPORT uint64_t rf_balloon_rejected_total(const struct rf_balloon_counters *user)
{
	struct rf_balloon_counters full = {0}, *c = &full;
	const uint64_t *p, *end;
	uint64_t sum = 0;

	/* Counters the caller's struct does not have count 0; a bad size
	 * gives 0 (no engine to name it to). */
	if (!user || rf_struct_in(NULL, &full, sizeof(full), user,
				  RF_STRUCT_MIN(struct rf_balloon_counters, inflate_buffers),
				  "rf_balloon_counters"))
		return 0;
	/* Every field from mmio_access_invalid to the end counts rejections. */
	p = &c->mmio_access_invalid;
	end = &c->actual_implausible;
	for (; p <= end; p++)
		sum += *p;
	return sum;
}
RF_VERSION_0_3(rf_balloon_rejected_total);
