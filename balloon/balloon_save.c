/* SPDX-License-Identifier: MIT */
/*
 * Save and restore of the balloon device's state, for snapshots and live
 * migration (rf_balloon_save / rf_balloon_restore, issue 14).
 *
 * The image is little-endian, versioned and checksummed (CRC-32 of the whole
 * image with its crc field zero):
 *
 *   header   magic "RFBL", version, flags (0), total length, crc,
 *            the number of queue records, stats values and counters
 *            (each a count, so a later version may add some), and of
 *            ballooned runs
 *   device   offered and negotiated features, status, the "features above
 *            63" flag, interrupt status, config generation, the config
 *            space (num_pages = target, actual, poison_val), the held stats
 *            buffer (flag and descriptor head), the virtio-mmio selectors
 *   stats    the guest's last values, update count, wall-clock time
 *   counters rf_balloon_counters as u64s: the device's life goes on
 *   queues   per queue: the layout registers as written (qcfg), whether
 *            enabled, and if so its rings and the device's indices
 *            (last_avail, used idx, the event-index state)
 *   runs     the ballooned pages as (pfn, npages) runs, ascending, each in
 *            one region: read from the VM's page-state table (state
 *            BALLOONED), the one source of truth, not from a shadow list,
 *            in the chunks the balloon map marks (put_runs): the image and
 *            the time to make it grow with the runs ballooned, not with RAM
 *
 * Not saved: guest RAM (the VMM migrates it; FREE_REPORTED pages are just
 * zero pages in it), the host's configuration (rf_balloon_config: the
 * destination's own), CLOCK_MONOTONIC times (meaningless on another host:
 * restored as "now").
 *
 * Restore is all or nothing: the whole image is validated against the
 * destination first (every guest address through the VM's checked accessor,
 * every run inside one region, every index in range), a bad one gives
 * -EINVAL and a log line naming the field, and nothing changes. Then the
 * ballooned pages go through the core's discard path (rf_vm_discard_as to
 * BALLOONED), then the device state is set; the state cannot fail, and a
 * failed discard is undone before anything else is touched.
 *
 * Both run with b->lock held: the device state and the BALLOONED pages
 * (only this device makes or clears them, under b->lock) are consistent.
 */
#include <endian.h>
#include <errno.h>
#include <string.h>

#include "balloon_internal.h"

#define SAVE_MAGIC   0x4c424652u /* "RFBL" */
#define SAVE_VERSION 1u
#define HDR_BYTES    40u
#define CRC_OFF	     12u
#define DEV_BYTES    72u
#define STATS_TAIL   16u /* updates, last_update */
#define QUEUE_BYTES  72u
#define RUN_BYTES    16u
#define MAX_COUNTERS 1024u
#define MAX_STATS    1024u

/* ---- CRC-32 (IEEE 802.3, as zlib), four bits at a time -------------------- */

static uint32_t crc32_le(const uint8_t *p, size_t n)
{
	static const uint32_t t[16] = {
	    0x00000000, 0x1db71064, 0x3b6e20c8, 0x26d930ac, 0x76dc4190, 0x6b6b51f4,
	    0x4db26158, 0x5005713c, 0xedb88320, 0xf00f9344, 0xd6d6a3e8, 0xcb61b38c,
	    0x9b64c2b0, 0x86d3d2d4, 0xa00ae278, 0xbdbdf21c,
	};
	uint32_t c = 0xffffffffu;

	for (size_t i = 0; i < n; i++) {
		c ^= p[i];
		c = (c >> 4) ^ t[c & 15];
		c = (c >> 4) ^ t[c & 15];
	}
	return ~c;
}

/* ---- little-endian cursor ---------------------------------------------------- */

/* Writes what fits; always advances, so a dry run measures the image. */
struct wcur {
	uint8_t *p;
	size_t len, off;
};

static void put(struct wcur *w, uint64_t v, unsigned int bytes)
{
	for (unsigned int i = 0; i < bytes; i++, w->off++)
		if (w->p && w->off < w->len)
			w->p[w->off] = i < 8 ? (uint8_t)(v >> (8 * i)) : 0; /* reserved bytes */
}

/* Reads inside a length already checked to hold everything read. */
struct rcur {
	const uint8_t *p;
	size_t off;
};

static uint64_t get(struct rcur *r, unsigned int bytes)
{
	uint64_t v = 0;

	for (unsigned int i = 0; i < bytes; i++, r->off++)
		if (i < 8)
			v |= (uint64_t)r->p[r->off] << (8 * i);
	return v;
}

/* ---- save --------------------------------------------------------------------- */

static void put_queue(struct wcur *w, const struct rf_virtio_dev *d, unsigned int q)
{
	const struct rf_virtio_queue_cfg *qc = &d->qcfg[q];
	const struct rf_virtq *vq = &d->vq[q];

	put(w, qc->num, 4);
	put(w, qc->desc, 8);
	put(w, qc->avail, 8);
	put(w, qc->used, 8);
	put(w, vq->size != 0, 1);
	put(w, vq->signalled_valid, 1);
	put(w, vq->size, 2);
	put(w, vq->desc_gpa, 8);
	put(w, vq->avail_gpa, 8);
	put(w, vq->used_gpa, 8);
	put(w, vq->last_avail, 2);
	put(w, vq->used_idx, 2);
	put(w, vq->signalled_used, 2);
	put(w, 0, 10); /* reserved */
}

/* Runs are written as they are found, a run that continues into the next
 * page range found (the next marked chunk) being held open until it ends. */
struct run_writer {
	struct wcur *w;
	const struct rf_region *r; /* the open run's */
	uint64_t pfn, npages;	   /* the open run; npages 0: none */
	uint64_t nruns, found;
};

static void run_flush(struct run_writer *rw)
{
	if (!rw->npages)
		return;
	put(rw->w, rw->pfn, 8);
	put(rw->w, rw->npages, 8);
	rw->nruns++;
	rw->npages = 0;
}

/* The BALLOONED pages of @r in [first, end), appended in order. */
static void runs_in(struct rf_balloon *b, struct rf_region *r, uint64_t first, uint64_t end,
		    void *arg)
{
	struct run_writer *rw = arg;

	b->save_pages_scanned += end - first;
	for (uint64_t idx = first; idx < end; idx++) {
		uint64_t pfn = (r->gpa >> RF_PAGE_SHIFT) + idx;

		if (rf_pte_state(rf_pte_peek(&r->pte[idx])) != RF_PAGE_BALLOONED)
			continue;
		rw->found++;
		if (rw->npages && rw->pfn + rw->npages == pfn && rw->r == r) {
			rw->npages++;
			continue;
		}
		run_flush(rw); /* a run never spans two regions, adjacent or not */
		rw->pfn = pfn;
		rw->npages = 1;
		rw->r = r;
	}
}

/*
 * Write the BALLOONED runs of every region (ascending gpa); their number.
 * Only the 2 MiB chunks the balloon map marks are read, so a save costs what
 * is ballooned, not the size of guest RAM (16M page entries at 64 GiB). The
 * marks are a superset of the ballooned pages unless one could not be
 * recorded (balloon_map.c): if the marked chunks hold fewer BALLOONED pages
 * than the VM counts, every page is read instead, as the reset does.
 */
static uint64_t put_runs(struct wcur *w, struct rf_balloon *b)
{
	rf_vm *vm = b->vm;
	struct run_writer rw = {w, NULL, 0, 0, 0, 0};
	size_t start = w->off;
	struct rf_region *r;

	rf_vm_regions_rdlock(vm);
	__balloon_map_walk(b, runs_in, &rw);
	run_flush(&rw);
	if (rw.found < atomic_load(&vm->state_pages[RF_PAGE_BALLOONED])) {
		w->off = start;
		rw = (struct run_writer){w, NULL, 0, 0, 0, 0};
		for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++)
			runs_in(b, r, 0, r->npages, &rw);
		run_flush(&rw);
	}
	rf_vm_regions_unlock(vm);
	return rw.nruns;
}

static void put_image(struct wcur *w, struct rf_balloon *b, uint64_t nruns)
{
	const struct rf_virtio_dev *d = &b->dev;
	unsigned int nq = rf_virtio_num_queues(&b->dev);
	/* The counters after their size member (the image holds no sizes). */
	const uint64_t *ctr = &b->ctr.inflate_buffers;
	const size_t nctr =
	    (sizeof(b->ctr) - offsetof(struct rf_balloon_counters, inflate_buffers)) /
	    sizeof(uint64_t);

	put(w, SAVE_MAGIC, 4);
	put(w, SAVE_VERSION, 2);
	put(w, 0, 2); /* flags */
	put(w, 0, 4); /* total length: patched */
	put(w, 0, 4); /* crc: patched */
	put(w, nq, 2);
	put(w, RF_BALLOON_NR_STATS, 2);
	put(w, nctr, 2);
	put(w, 0, 2);
	put(w, nruns, 8);
	put(w, 0, 8); /* reserved */

	put(w, d->host_features, 8);
	put(w, d->driver_features, 8);
	put(w, d->status, 1);
	put(w, d->driver_features_beyond, 1);
	put(w, b->stats_held, 1);
	put(w, 0, 1);
	put(w, d->isr, 4);
	put(w, d->config_generation, 4);
	put(w, b->num_pages, 4);
	put(w, b->actual, 4);
	put(w, b->poison_val, 4);
	put(w, b->stats_held ? b->stats_head : 0, 2);
	put(w, 0, 2);
	put(w, d->dev_features_sel, 4);
	put(w, d->drv_features_sel, 4);
	put(w, d->queue_sel, 4);
	put(w, 0, 16); /* reserved */

	for (unsigned int i = 0; i < RF_BALLOON_NR_STATS; i++)
		put(w, b->stats.value[i], 8);
	put(w, b->stats.updates, 8);
	put(w, (uint64_t)b->stats.last_update, 8);
	for (size_t i = 0; i < nctr; i++)
		put(w, ctr[i], 8);
	for (unsigned int q = 0; q < nq; q++)
		put_queue(w, d, q);
}

_Static_assert(sizeof(struct rf_balloon_counters) % sizeof(uint64_t) == 0,
	       "counters are saved as u64s");

RF_EXPORT int rf_balloon_save(rf_balloon *b, void *buf, size_t len, size_t *needed)
{
	struct wcur w = {buf, buf ? len : 0, 0};
	uint64_t nruns;
	uint32_t v;

	if (!b || (!buf && len))
		return -EINVAL;
	pthread_mutex_lock(&b->lock);
	/* The runs first, into a dry cursor: their number is in the header. */
	nruns = put_runs(&(struct wcur){NULL, 0, 0}, b);
	put_image(&w, b, nruns);
	if (put_runs(&w, b) != nruns)
		w.off = SIZE_MAX; /* cannot happen under b->lock: refuse, do not lie */
	pthread_mutex_unlock(&b->lock);
	if (w.off == SIZE_MAX) {
		rf_log(b->e, RF_LOG_ERR, "%s: balloon: save: ballooned pages changed meanwhile",
		       b->vm->name);
		return -EAGAIN;
	}
	if (needed)
		*needed = w.off;
	if (w.off > len || w.off > UINT32_MAX)
		return w.off > UINT32_MAX ? -EOVERFLOW : -ENOSPC;
	v = htole32((uint32_t)w.off);
	memcpy((uint8_t *)buf + 8, &v, 4);
	v = htole32(crc32_le(buf, w.off));
	memcpy((uint8_t *)buf + CRC_OFF, &v, 4);
	return 0;
}

/* ---- restore ------------------------------------------------------------------- */

struct saved_queue {
	struct rf_virtio_queue_cfg qc;
	bool enabled, signalled_valid;
	uint16_t size, last_avail, used_idx, signalled_used;
	uint64_t desc, avail, used;
};

struct saved {
	unsigned int nq, nstats, nctr;
	uint64_t nruns;
	uint64_t host_features, driver_features;
	uint8_t status;
	bool beyond, stats_held;
	uint32_t isr, generation, num_pages, actual, poison_val;
	uint16_t stats_head;
	uint32_t dev_sel, drv_sel, queue_sel;
	size_t stats_off, ctr_off, runs_off;
	struct saved_queue q[RF_VIRTIO_MAX_QUEUES];
};

#define BAD_IMAGE(b, ...)                                                                          \
	({                                                                                         \
		rf_log((b)->e, RF_LOG_ERR, __VA_ARGS__);                                           \
		-EINVAL;                                                                           \
	})

/* The header: magic, version, lengths, checksum. */
static int check_header(struct rf_balloon *b, const uint8_t *p, size_t len, struct saved *s)
{
	const char *vm = b->vm->name;
	struct rcur r = {p, 0};
	uint32_t magic, total, crc;
	uint16_t version, flags;
	uint8_t *copy;
	uint64_t want;

	if (len < HDR_BYTES)
		return BAD_IMAGE(b, "%s: balloon: restore: image of %zu bytes is truncated", vm,
				 len);
	magic = (uint32_t)get(&r, 4);
	version = (uint16_t)get(&r, 2);
	flags = (uint16_t)get(&r, 2);
	total = (uint32_t)get(&r, 4);
	crc = (uint32_t)get(&r, 4);
	s->nq = (unsigned int)get(&r, 2);
	s->nstats = (unsigned int)get(&r, 2);
	s->nctr = (unsigned int)get(&r, 2);
	get(&r, 2);
	s->nruns = get(&r, 8);
	if (magic != SAVE_MAGIC)
		return BAD_IMAGE(b, "%s: balloon: restore: not a balloon image (magic 0x%x)", vm,
				 magic);
	if (version != SAVE_VERSION || flags)
		return BAD_IMAGE(b,
				 "%s: balloon: restore: image version %u flags 0x%x (this "
				 "library reads version %u, flags 0)",
				 vm, version, flags, SAVE_VERSION);
	if (total != len)
		return BAD_IMAGE(b,
				 "%s: balloon: restore: image says %u bytes, %zu given "
				 "(truncated or padded)",
				 vm, total, len);
	if (s->nq > RF_VIRTIO_MAX_QUEUES || s->nstats > MAX_STATS || s->nctr > MAX_COUNTERS ||
	    s->nruns > len / RUN_BYTES)
		return BAD_IMAGE(b,
				 "%s: balloon: restore: image counts out of range (%u queues, "
				 "%u stats, %u counters, %llu runs)",
				 vm, s->nq, s->nstats, s->nctr, (unsigned long long)s->nruns);
	want = HDR_BYTES + DEV_BYTES + 8ull * s->nstats + STATS_TAIL + 8ull * s->nctr +
	       (uint64_t)QUEUE_BYTES * s->nq + RUN_BYTES * s->nruns;
	if (want != len)
		return BAD_IMAGE(b,
				 "%s: balloon: restore: image of %zu bytes, its counts make "
				 "%llu",
				 vm, len, (unsigned long long)want);
	copy = rf_zalloc(b->e, len);
	if (!copy)
		return -ENOMEM;
	memcpy(copy, p, len);
	memset(copy + CRC_OFF, 0, 4);
	want = crc32_le(copy, len);
	rf_free(b->e, copy);
	if (want != crc)
		return BAD_IMAGE(b,
				 "%s: balloon: restore: checksum 0x%x, image has 0x%x "
				 "(corrupt)",
				 vm, (uint32_t)want, crc);
	return 0;
}

static void read_device(struct rcur *r, struct saved *s)
{
	s->host_features = get(r, 8);
	s->driver_features = get(r, 8);
	s->status = (uint8_t)get(r, 1);
	s->beyond = get(r, 1);
	s->stats_held = get(r, 1);
	get(r, 1);
	s->isr = (uint32_t)get(r, 4);
	s->generation = (uint32_t)get(r, 4);
	s->num_pages = (uint32_t)get(r, 4);
	s->actual = (uint32_t)get(r, 4);
	s->poison_val = (uint32_t)get(r, 4);
	s->stats_head = (uint16_t)get(r, 2);
	get(r, 2);
	s->dev_sel = (uint32_t)get(r, 4);
	s->drv_sel = (uint32_t)get(r, 4);
	s->queue_sel = (uint32_t)get(r, 4);
	get(r, 16);
}

static void read_queue(struct rcur *r, struct saved_queue *q)
{
	q->qc.num = (uint32_t)get(r, 4);
	q->qc.desc = get(r, 8);
	q->qc.avail = get(r, 8);
	q->qc.used = get(r, 8);
	q->enabled = get(r, 1);
	q->signalled_valid = get(r, 1);
	q->size = (uint16_t)get(r, 2);
	q->desc = get(r, 8);
	q->avail = get(r, 8);
	q->used = get(r, 8);
	q->last_avail = (uint16_t)get(r, 2);
	q->used_idx = (uint16_t)get(r, 2);
	q->signalled_used = (uint16_t)get(r, 2);
	get(r, 10);
}

/* The features and status as the destination device could have reached them. */
static int check_device(struct rf_balloon *b, const struct saved *s)
{
	struct rf_virtio_dev *d = &b->dev;
	const char *vm = b->vm->name;
	const uint8_t known = RF_VIRTIO_STATUS_ACKNOWLEDGE | RF_VIRTIO_STATUS_DRIVER |
			      RF_VIRTIO_STATUS_DRIVER_OK | RF_VIRTIO_STATUS_FEATURES_OK |
			      RF_VIRTIO_STATUS_DEVICE_NEEDS_RESET | RF_VIRTIO_STATUS_FAILED;
	bool fok = s->status & RF_VIRTIO_STATUS_FEATURES_OK;
	unsigned int nq = d->ops->num_queues(d, fok ? s->driver_features : d->host_features);
	uint64_t ram_pages;

	rf_vm_regions_rdlock(b->vm);
	ram_pages = b->vm->mapped_bytes >> RF_PAGE_SHIFT;
	rf_vm_regions_unlock(b->vm);

	if ((s->status & ~known) || ((s->status & RF_VIRTIO_STATUS_DRIVER_OK) && !fok))
		return BAD_IMAGE(b,
				 "%s: balloon: restore: device status 0x%x is not one the "
				 "device can reach",
				 vm, s->status);
	if (fok && ((s->driver_features & ~d->host_features) || s->beyond ||
		    !(s->driver_features & RF_VIRTIO_F_VERSION_1)))
		return BAD_IMAGE(b,
				 "%s: balloon: restore: negotiated features 0x%llx are not "
				 "offered here (0x%llx)",
				 vm, (unsigned long long)s->driver_features,
				 (unsigned long long)d->host_features);
	if (s->isr & ~(RF_BALLOON_IRQ_VRING | RF_BALLOON_IRQ_CONFIG))
		return BAD_IMAGE(b, "%s: balloon: restore: interrupt status 0x%x", vm, s->isr);
	if (s->num_pages > ram_pages)
		return BAD_IMAGE(b, "%s: balloon: restore: target of %u pages, the VM has %llu", vm,
				 s->num_pages, (unsigned long long)ram_pages);
	if (s->poison_val && !(fok && (s->driver_features & RF_BALLOON_F_PAGE_POISON)))
		return BAD_IMAGE(b,
				 "%s: balloon: restore: poison value 0x%x without "
				 "PAGE_POISON negotiated",
				 vm, s->poison_val);
	if (s->nq != nq)
		return BAD_IMAGE(b, "%s: balloon: restore: %u queues saved, the features make %u",
				 vm, s->nq, nq);
	return 0;
}

/* One queue record: enabled only after FEATURES_OK, on rings inside this
 * VM's RAM that the destination accepts, with indices the device could have. */
static int check_queue(struct rf_balloon *b, const struct saved *s, unsigned int i)
{
	const struct saved_queue *q = &s->q[i];
	const char *vm = b->vm->name;

	if (!q->enabled) {
		if (q->size || q->desc || q->avail || q->used || q->last_avail || q->used_idx ||
		    q->signalled_used || q->signalled_valid)
			return BAD_IMAGE(b,
					 "%s: balloon: restore: queue %u is off but has ring "
					 "state",
					 vm, i);
		return 0;
	}
	if (!(s->status & RF_VIRTIO_STATUS_FEATURES_OK))
		return BAD_IMAGE(b, "%s: balloon: restore: queue %u enabled before FEATURES_OK", vm,
				 i);
	if (rf_virtq_check(b->vm, q->size, b->dev.queue_size_max, q->desc, q->avail, q->used))
		return BAD_IMAGE(b,
				 "%s: balloon: restore: queue %u rings desc 0x%llx avail "
				 "0x%llx used 0x%llx (size %u, at most %u here): misaligned "
				 "or not inside guest RAM",
				 vm, i, (unsigned long long)q->desc, (unsigned long long)q->avail,
				 (unsigned long long)q->used, q->size, b->dev.queue_size_max);
	if ((uint16_t)(q->last_avail - q->used_idx) > q->size)
		return BAD_IMAGE(b,
				 "%s: balloon: restore: queue %u took %u buffers and returned "
				 "%u (size %u)",
				 vm, i, q->last_avail, q->used_idx, q->size);
	return 0;
}

static int check_stats_held(struct rf_balloon *b, const struct saved *s)
{
	uint64_t f = s->driver_features;
	unsigned int sq = 2; /* the stats queue follows inflateq and deflateq */

	if (!s->stats_held)
		return s->stats_head ? BAD_IMAGE(b,
						 "%s: balloon: restore: stats head without "
						 "a held buffer",
						 b->vm->name)
				     : 0;
	if (!(s->status & RF_VIRTIO_STATUS_FEATURES_OK) || !(f & RF_BALLOON_F_STATS_VQ) ||
	    !s->q[sq].enabled || s->stats_head >= s->q[sq].size ||
	    s->q[sq].last_avail == s->q[sq].used_idx)
		return BAD_IMAGE(b,
				 "%s: balloon: restore: held stats buffer %u without a stats "
				 "queue holding it",
				 b->vm->name, s->stats_head);
	return 0;
}

/* Every run ascending, disjoint, non-empty and inside one region. Regions
 * lock held. */
static int __check_runs(struct rf_balloon *b, const uint8_t *p, const struct saved *s)
{
	struct rcur r = {p, s->runs_off};
	uint64_t prev_end = 0;

	for (uint64_t i = 0; i < s->nruns; i++) {
		uint64_t pfn = get(&r, 8), n = get(&r, 8);
		const uint64_t max = UINT64_MAX >> RF_PAGE_SHIFT;
		struct rf_region *reg;
		uint64_t gpa;

		if (n == 0 || pfn > max || n > max - pfn || (i && pfn < prev_end))
			return BAD_IMAGE(b,
					 "%s: balloon: restore: ballooned run %llu (PFN 0x%llx, "
					 "%llu pages) empty, overlapping or out of order",
					 b->vm->name, (unsigned long long)i,
					 (unsigned long long)pfn, (unsigned long long)n);
		gpa = pfn << RF_PAGE_SHIFT;
		reg = __rf_vm_find_region(b->vm, gpa);
		if (!reg || n > reg->npages - rf_region_index(reg, gpa))
			return BAD_IMAGE(b,
					 "%s: balloon: restore: ballooned run at PFN 0x%llx of "
					 "%llu pages is not inside one region of guest RAM",
					 b->vm->name, (unsigned long long)pfn,
					 (unsigned long long)n);
		prev_end = pfn + n;
	}
	return 0;
}

static int parse(struct rf_balloon *b, const uint8_t *p, size_t len, struct saved *s)
{
	struct rcur r = {p, HDR_BYTES};
	int err = check_header(b, p, len, s);

	if (err)
		return err;
	read_device(&r, s);
	s->stats_off = r.off;
	r.off += 8ull * s->nstats + STATS_TAIL;
	s->ctr_off = r.off;
	r.off += 8ull * s->nctr;
	for (unsigned int q = 0; q < s->nq; q++)
		read_queue(&r, &s->q[q]);
	s->runs_off = r.off;
	err = check_device(b, s);
	for (unsigned int q = 0; !err && q < s->nq; q++)
		err = check_queue(b, s, q);
	if (!err)
		err = check_stats_held(b, s);
	if (!err) {
		rf_vm_regions_rdlock(b->vm);
		err = __check_runs(b, p, s);
		rf_vm_regions_unlock(b->vm);
	}
	return err;
}

/* Make the saved runs BALLOONED here, through the core's discard path.
 * Undone (back to PRIVATE) if a discard fails. */
static int apply_runs(struct rf_balloon *b, const uint8_t *p, const struct saved *s,
		      uint64_t *skipped_total)
{
	struct rcur r = {p, s->runs_off};

	for (uint64_t i = 0; i < s->nruns; i++) {
		struct rf_pfn_run run = {get(&r, 8), 0};
		uint64_t skipped = 0;
		int err;

		run.npages = get(&r, 8);
		/* Marked first, so a later guest reset finds them (balloon_map.c). */
		rf_vm_regions_rdlock(b->vm);
		__balloon_map_mark(b, &run, 1);
		rf_vm_regions_unlock(b->vm);
		err = rf_vm_discard_as(b->vm, run.pfn << RF_PAGE_SHIFT, run.npages,
				       RF_PAGE_BALLOONED, &skipped);
		if (err) {
			rf_log(b->e, RF_LOG_ERR,
			       "%s: balloon: restore: discard of %llu pages at PFN 0x%llx: %s; "
			       "nothing restored",
			       b->vm->name, (unsigned long long)run.npages,
			       (unsigned long long)run.pfn, strerror(-err));
			balloon_unballoon_all(b);
			return err;
		}
		*skipped_total += skipped;
	}
	return 0;
}

static void apply_state(struct rf_balloon *b, const uint8_t *p, const struct saved *s)
{
	struct rf_virtio_dev *d = &b->dev;
	uint64_t *ctr = &b->ctr.inflate_buffers;
	const size_t nctr =
	    (sizeof(b->ctr) - offsetof(struct rf_balloon_counters, inflate_buffers)) /
	    sizeof(uint64_t);
	bool fok = s->status & RF_VIRTIO_STATUS_FEATURES_OK;
	struct rcur r = {p, s->stats_off};
	uint64_t now = rf_now_ns();

	d->driver_features = s->driver_features;
	d->driver_features_beyond = s->beyond;
	d->status = s->status;
	d->isr = s->isr;
	d->config_generation = s->generation;
	d->dev_features_sel = s->dev_sel;
	d->drv_features_sel = s->drv_sel;
	d->queue_sel = s->queue_sel;
	balloon_assign_roles(b, fok ? s->driver_features : d->host_features);
	for (unsigned int q = 0; q < s->nq; q++) {
		const struct saved_queue *sq = &s->q[q];
		struct rf_virtq *vq = &d->vq[q];

		d->qcfg[q] = sq->qc;
		if (!sq->enabled)
			continue;
		rf_virtq_enable(vq, d->vm, sq->size, sq->desc, sq->avail, sq->used,
				d->ops->queue_device_writes(d, q),
				rf_virtio_negotiated(d, RF_VIRTIO_F_EVENT_IDX),
				rf_virtio_negotiated(d, RF_VIRTIO_F_INDIRECT_DESC));
		vq->last_avail = sq->last_avail;
		vq->used_idx = sq->used_idx;
		vq->signalled_used = sq->signalled_used;
		vq->signalled_valid = sq->signalled_valid;
	}
	b->num_pages = s->num_pages;
	b->actual = s->actual;
	b->poison_val = s->poison_val;
	b->actual_changed_ns = now;
	b->stats_held = s->stats_held;
	b->stats_head = s->stats_head;
	b->stats_since_ns = now; /* the interval starts again on this host */
	for (unsigned int i = 0; i < s->nstats; i++) {
		uint64_t v = get(&r, 8);

		if (i < RF_BALLOON_NR_STATS)
			b->stats.value[i] = v;
	}
	b->stats.updates = get(&r, 8);
	b->stats.last_update = (int64_t)get(&r, 8);
	b->stats.last_update_ns = b->stats.updates ? now : 0;
	for (unsigned int i = 0; i < s->nctr; i++) {
		uint64_t v = get(&r, 8);

		if (i < nctr)
			ctr[i] = v;
	}
}

RF_EXPORT int rf_balloon_restore(rf_balloon *b, const void *buf, size_t len)
{
	struct saved s;
	uint64_t skipped = 0;
	int err;

	if (!b || !buf)
		return -EINVAL;
	memset(&s, 0, sizeof(s));
	pthread_mutex_lock(&b->lock);
	if (b->dev.status || atomic_load(&b->vm->state_pages[RF_PAGE_BALLOONED])) {
		rf_log(b->e, RF_LOG_ERR,
		       "%s: balloon: restore: the device is in use (status 0x%x) or the VM has "
		       "ballooned pages: restore into a new device",
		       b->vm->name, b->dev.status);
		err = -EBUSY;
		goto out;
	}
	err = parse(b, buf, len, &s);
	if (!err)
		err = apply_runs(b, buf, &s, &skipped);
	if (err)
		goto out;
	apply_state(b, buf, &s);
	b->ctr.excluded_pages += skipped;
	rf_log(b->e, skipped ? RF_LOG_WARN : RF_LOG_INFO,
	       "%s: balloon: restored: status 0x%x, features 0x%llx, target %u pages, %llu "
	       "ballooned runs%s",
	       b->vm->name, s.status, (unsigned long long)s.driver_features, s.num_pages,
	       (unsigned long long)s.nruns,
	       skipped ? "; pages excluded on this VM stay the guest's" : "");
out:
	pthread_mutex_unlock(&b->lock);
	return err;
}
