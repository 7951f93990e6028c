/* SPDX-License-Identifier: MIT */
/*
 * The virtio-balloon device (virtio 1.x, device ID 5).
 *
 * The host asks the guest for memory back by setting a target (num_pages);
 * the guest's driver answers by putting page frame numbers on the inflate
 * queue (the library discards those pages: state BALLOONED) and takes them
 * back through the deflate queue (state PRIVATE again; they read as zero).
 * It also reports free memory (free page reporting: state FREE_REPORTED,
 * discarded but still the guest's) and statistics (the stats queue).
 *
 * Everything the guest writes (rings, descriptors, PFNs, stats, config, MMIO
 * registers) is hostile input: it is validated, every guest address goes
 * through the VM's checked accessor, a bad buffer is returned used with
 * nothing done (or the device sets DEVICE_NEEDS_RESET where the spec says so),
 * the reason is logged (rate-limited) and counted in rf_balloon_counters.
 * Guest-reported figures (`actual`, stats) are shown, never acted upon.
 *
 * Two ways to attach it to a guest:
 *
 *  1. virtio-mmio (version 2): route the MMIO exits of a 0x200-byte window to
 *     rf_balloon_mmio_read()/rf_balloon_mmio_write(). A write to QueueNotify
 *     processes the queue right there, in the calling (vCPU) thread; an
 *     embedder with an ioeventfd on QueueNotify calls rf_balloon_queue_notify()
 *     from its event loop instead.
 *
 *  2. Your own virtio transport (virtio-pci, vhost-user, ...): drive the same
 *     state machine with the "own transport" calls below (features, status,
 *     queue addresses, config space, notify, interrupt status). The device
 *     does not know which transport it sits behind and never calls KVM.
 *
 * The host side: rf_balloon_set_target(), rf_balloon_info(), the stats
 * getters, and rf_balloon_tick(), which the embedder calls periodically
 * (at least as often as the stats interval) so the stats buffer is returned
 * to the guest on time; the library starts no thread of its own.
 *
 * Queues, in the order the driver sets them up (Linux numbers only the queues
 * that exist, so the index of a queue depends on the negotiated features):
 * inflateq, deflateq, statsq (STATS_VQ), free_page_vq (FREE_PAGE_HINT, never
 * offered here), reporting_vq (REPORTING).
 *
 * Concurrency: every call on one device is serialised by the device's own
 * mutex, so vCPU threads (MMIO exits), an event loop (notify, tick) and a
 * control thread (target, info, stats) may call concurrently. The callbacks
 * in rf_balloon_ops are called with that mutex held, from whichever of those
 * threads triggered them: they must not call back into the same device.
 * Guest RAM must stay mapped (rf_vm_map_ram) while the device may process
 * queues, as for a running vCPU.
 */
#ifndef RAMFOLD_BALLOON_H
#define RAMFOLD_BALLOON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vm.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rf_balloon rf_balloon;

/* Feature bits (bit numbers as in the virtio spec; values are masks). All
 * 64-bit typed constants, so bindings (bindgen) see one width for every
 * feature mask; being objects, not macros, they cannot appear in #if or
 * case labels. */
static const uint64_t RF_BALLOON_F_MUST_TELL_HOST = 1ull << 0;
static const uint64_t RF_BALLOON_F_STATS_VQ = 1ull << 1;
static const uint64_t RF_BALLOON_F_DEFLATE_ON_OOM = 1ull << 2;
static const uint64_t RF_BALLOON_F_FREE_PAGE_HINT = 1ull << 3; /* not implemented, never offered */
static const uint64_t RF_BALLOON_F_PAGE_POISON = 1ull << 4;
static const uint64_t RF_BALLOON_F_REPORTING = 1ull << 5;
static const uint64_t RF_VIRTIO_F_INDIRECT_DESC = 1ull << 28;
static const uint64_t RF_VIRTIO_F_EVENT_IDX = 1ull << 29;
static const uint64_t RF_VIRTIO_F_VERSION_1 = 1ull << 32; /* always offered and required */

/* What rf_balloon_config_init() offers: everything implemented (the bits
 * above but FREE_PAGE_HINT). */
static const uint64_t RF_BALLOON_FEATURES_DEFAULT = (1ull << 0) | (1ull << 1) | (1ull << 2) |
						    (1ull << 4) | (1ull << 5) | (1ull << 28) |
						    (1ull << 29) | (1ull << 32);

/* virtio device status bits */
#define RF_VIRTIO_STATUS_ACKNOWLEDGE	    1u
#define RF_VIRTIO_STATUS_DRIVER		    2u
#define RF_VIRTIO_STATUS_DRIVER_OK	    4u
#define RF_VIRTIO_STATUS_FEATURES_OK	    8u
#define RF_VIRTIO_STATUS_DEVICE_NEEDS_RESET 64u
#define RF_VIRTIO_STATUS_FAILED		    128u

/* Interrupt reasons (the virtio-mmio InterruptStatus bits). */
#define RF_BALLOON_IRQ_VRING  1u /* a used buffer was returned */
#define RF_BALLOON_IRQ_CONFIG 2u /* the configuration (target) changed, or NEEDS_RESET */

/* Size of the virtio-mmio register window. */
#define RF_BALLOON_MMIO_SIZE 0x200u

struct rf_balloon_ops {
	/* sizeof(struct rf_balloon_ops), set by the embedder (.size = sizeof ops; no _init): the
	 * library reads only what this size covers (docs/embedding.md, "ABI and versions"). */
	size_t size;
	/*
	 * Raise the device's interrupt: @reason (RF_BALLOON_IRQ_*) was just
	 * set in the interrupt status. A level-triggered embedder keeps the
	 * line up until rf_balloon_interrupt_status() reads 0 again (the guest
	 * acknowledges through InterruptACK). May be NULL for a polling guest.
	 */
	void (*irq)(void *arg, unsigned int reason);
	/* The guest wrote a new `actual` (its balloon size as it reports it:
	 * shown to users, never trusted). May be NULL. */
	void (*actual_changed)(void *arg, uint64_t actual_bytes);
	/* A stats buffer was received and parsed. May be NULL. */
	void (*stats_updated)(void *arg);
	void *arg;
};

struct rf_balloon_config {
	/* sizeof(struct rf_balloon_config), set by rf_balloon_config_init: the library reads only
	 * what this size covers (docs/embedding.md, "ABI and versions"). */
	size_t size;
	/* Features offered (RF_BALLOON_F_* | RF_VIRTIO_F_*); VERSION_1 is
	 * always added, FREE_PAGE_HINT always removed. */
	uint64_t features;
	/* Stats polling interval in ms; 0: the stats buffer is never returned
	 * (no polling). Changeable at run time: rf_balloon_set_stats_interval. */
	unsigned int stats_interval_ms;
	/* Largest queue size the driver may choose (QueueNumMax), a power of
	 * two 2..1024. Default 256. */
	unsigned int queue_size_max;
	/* Most PFNs accepted in one inflate/deflate buffer (Linux sends at most
	 * 256): a bound on the work one guest request can cause. 1..4096,
	 * default 256. */
	unsigned int max_pfns_per_buffer;
	/* Most bytes one free page reporting buffer may cover (Linux reports
	 * at most 32 blocks of at most 4 MiB). Default 128 MiB. */
	uint64_t max_report_bytes;
	/*
	 * 0.4: free page reporting keeps what the guest takes back. When at
	 * least half of the pages reported again within this many ms of an
	 * earlier report's discard are back in use (resident), reports are
	 * kept instead of discarded (one in 16 is still discarded, to notice
	 * when the guest stops), until that share of the latest evidence
	 * (128-256 MiB of pages reported again) falls under half: a guest
	 * that frees and reallocates the same memory every few seconds would
	 * otherwise refault all of it each time. 0: every report discarded
	 * (0.3's behaviour). Default 10000, at most
	 * RF_BALLOON_REPORT_REUSE_MAX_MS. Counted in report_reused_pages and
	 * report_kept_pages.
	 */
	unsigned int report_reuse_ms;
};

#define RF_BALLOON_REPORT_REUSE_MAX_MS 120000u

/* Defaults as documented above. */
void rf_balloon_config_init(struct rf_balloon_config *cfg);

/*
 * Create the balloon of @vm (at most one per VM). @ops and @cfg may be NULL
 * (no callbacks; defaults). The guest RAM it manages is every region of @vm.
 * Returns 0 and sets *@out, or -EINVAL (bad config), -EBUSY (@vm already has
 * a balloon), -ENOMEM. Pairs with rf_balloon_free(); if the embedder frees
 * the VM first, the balloon is freed with it.
 */
int rf_balloon_new(rf_vm *vm, const struct rf_balloon_ops *ops, const struct rf_balloon_config *cfg,
		   rf_balloon **out);

/* Free the device. Ballooned pages stay ballooned (the guest does not own
 * them until it deflates). NULL is accepted. No other thread may be inside
 * or about to enter a call on @b (stop vCPUs, event loops and the policy
 * thread, rf_policy_stop(), first). */
void rf_balloon_free(rf_balloon *b);

/* ---- virtio-mmio transport ------------------------------------------------ */

/*
 * An MMIO read of @len bytes (1, 2, 4 or 8 in the config space at 0x100;
 * exactly 4, aligned, for registers) at @offset inside the window. *@data
 * gets the value (little-endian); an invalid access (any other length, any
 * unaligned register) fills all @len bytes with 0 and is counted.
 * Returns 0, or -EINVAL for NULL arguments. Never fails because of the guest.
 */
int rf_balloon_mmio_read(rf_balloon *b, uint64_t offset, void *data, unsigned int len);

/* An MMIO write (same rules). A write to QueueNotify processes that queue;
 * QueueReady = 0 stops the selected queue (it reads back 0, its rings are
 * forgotten, a stats buffer held from it is dropped) until it is set up
 * again. */
int rf_balloon_mmio_write(rf_balloon *b, uint64_t offset, const void *data, unsigned int len);

/* ---- both transports ------------------------------------------------------- */

/*
 * The guest notified queue @queue (QueueNotify, or an ioeventfd the embedder
 * owns): process every available buffer now, in this thread. The work per
 * buffer is bounded (max_pfns_per_buffer, max_report_bytes). Returns 0 or
 * -EINVAL (NULL). A notify for a missing queue, or before DRIVER_OK, is
 * counted and ignored.
 */
int rf_balloon_queue_notify(rf_balloon *b, unsigned int queue);

/* The interrupt status (RF_BALLOON_IRQ_* bits not yet acknowledged). */
uint32_t rf_balloon_interrupt_status(rf_balloon *b);

/* ---- own transport --------------------------------------------------------
 * For a VMM with its own virtio transport. These calls go through the same
 * checks as the MMIO registers (and bump the same counters).
 */

/* Features the device offers. */
uint64_t rf_balloon_device_features(rf_balloon *b);
/* The driver's features: -EINVAL if not a subset of the offer or without
 * VERSION_1 (FEATURES_OK will then be refused), -EBUSY after FEATURES_OK. */
int rf_balloon_set_driver_features(rf_balloon *b, uint64_t features);
/* Device status (RF_VIRTIO_STATUS_*). Writing 0 resets the device; setting
 * FEATURES_OK checks the features (read the status back, as the spec says):
 * refused, neither FEATURES_OK nor a DRIVER_OK set in the same write is
 * kept; -EINVAL for an invalid transition (bits cleared, DRIVER_OK without
 * FEATURES_OK). */
uint8_t rf_balloon_get_status(rf_balloon *b);
int rf_balloon_set_status(rf_balloon *b, uint8_t status);
/* Number of queues for the negotiated (or, before FEATURES_OK, offered)
 * features, and the largest size each may have. */
unsigned int rf_balloon_num_queues(rf_balloon *b);
unsigned int rf_balloon_queue_size_max(rf_balloon *b);
/*
 * Set up and enable queue @queue: @size entries (power of two, at most
 * rf_balloon_queue_size_max) with descriptor table, driver (avail) and device
 * (used) areas at these guest-physical addresses. Checked for alignment and
 * for lying inside guest RAM. -EINVAL (and DEVICE_NEEDS_RESET set) if not;
 * -ENOENT no such queue; -EBUSY already enabled.
 */
int rf_balloon_queue_setup(rf_balloon *b, unsigned int queue, unsigned int size, uint64_t desc,
			   uint64_t avail, uint64_t used);
/* Device-specific config space (struct virtio_balloon_config, 16 bytes). */
int rf_balloon_config_read(rf_balloon *b, uint64_t offset, void *data, unsigned int len);
int rf_balloon_config_write(rf_balloon *b, uint64_t offset, const void *data, unsigned int len);
uint32_t rf_balloon_config_generation(rf_balloon *b);
/* Acknowledge interrupt reasons (InterruptACK). */
void rf_balloon_interrupt_ack(rf_balloon *b, uint32_t bits);

/*
 * Since 0.2. One interrupt callback per queue, for a transport with a vector
 * per queue (virtio-pci MSI-X): once set, @fn is called instead of
 * rf_balloon_ops.irq, with the index of the queue that got a used buffer, or
 * -1 for a configuration change (a new target, DEVICE_NEEDS_RESET: the
 * config vector). The interrupt status (rf_balloon_interrupt_status) is kept
 * as before. Same calling rules as rf_balloon_ops (device lock held: do not
 * call back into the device). @fn NULL goes back to rf_balloon_ops.irq.
 * Returns 0 or -EINVAL (@b NULL).
 */
int rf_balloon_set_queue_interrupt(rf_balloon *b, void (*fn)(void *arg, int queue), void *arg);

/*
 * Since 0.2. The features 32 bits at a time, as a transport's
 * device_feature_select / driver_feature_select deliver them (@sel 0: bits
 * 0..31, 1: bits 32..63). Reading @sel > 1 gives 0 (nothing offered there).
 * A half written is stored and checked only when the driver sets
 * FEATURES_OK (the other half may still come), as over virtio-mmio: returns
 * 0 before FEATURES_OK, -EBUSY after it (ignored, counted). Non-zero bits
 * with @sel > 1 were never offered: -EINVAL, counted, and FEATURES_OK is
 * refused until the driver resets the device; zero bits there are accepted.
 */
uint32_t rf_balloon_device_features_half(rf_balloon *b, unsigned int sel);
int rf_balloon_set_driver_features_half(rf_balloon *b, unsigned int sel, uint32_t bits);

/*
 * Since 0.2. Whether queue @queue is enabled (rf_balloon_queue_setup, or
 * QueueReady over virtio-mmio): 1 or 0; -EINVAL for a queue that does not
 * exist for the features as they stand (or @b NULL).
 */
int rf_balloon_queue_enabled(rf_balloon *b, unsigned int queue);
/*
 * Since 0.2. The driver stops queue @queue (virtio-pci queue_enable 0, or a
 * queue reset): as QueueReady = 0 over virtio-mmio, its rings are forgotten,
 * a stats buffer held from it is dropped, and it is not touched again until
 * rf_balloon_queue_setup() enables it anew. Returns 0 (also for a queue not
 * enabled: nothing to do), or -EINVAL for a queue that does not exist
 * (counted as queue_setup_invalid) or @b NULL.
 */
int rf_balloon_queue_disable(rf_balloon *b, unsigned int queue);

/* ---- save / restore (snapshots, migration) ----------------------------------
 * Since 0.2.
 */

/*
 * Save the device's state into @buf (@len bytes): negotiated features,
 * status, config space (target included), each queue's addresses, size,
 * whether it is enabled and the device's ring indices (last avail, used idx,
 * event-index state), a held stats buffer's descriptor head, the last stats,
 * the counters, and the ballooned pages (as runs of PFNs, from the VM's
 * page-state table), in a versioned, checksummed little-endian image.
 * Guest RAM is not in it: the VMM migrates that. *@needed (may be NULL) gets
 * the image's size; with @buf NULL and @len 0 only that is done.
 * Returns 0, -ENOSPC (@len too small; the contents of @buf are undefined),
 * -EOVERFLOW (an image above 4 GiB), -EINVAL (NULL @b). Take it with the
 * vCPUs stopped: a guest that inflates between a size query and the save
 * makes the second call return -ENOSPC again.
 */
int rf_balloon_save(rf_balloon *b, void *buf, size_t len, size_t *needed);

/*
 * Restore an image from rf_balloon_save() into a new device (status 0, on a
 * VM with no ballooned page, else -EBUSY) of a VM with the same guest RAM
 * layout. Everything is checked first (length, version, checksum, the
 * features against this device's offer, queue rings inside guest RAM and
 * within this device's queue size, indices, the held stats buffer, every
 * ballooned run inside one region): a bad image gives -EINVAL and a log line
 * naming the field, and changes nothing. Then the ballooned pages become
 * BALLOONED through the library's discard path (an excluded page stays the
 * guest's, and is counted) and the device takes the saved state. The
 * embedder's own config (rf_balloon_config) is kept.
 *
 * Buffers the guest made available before the save but the device had not
 * processed are not processed by the restore: call rf_balloon_tick() (or
 * rf_balloon_queue_notify() on each queue) once after it, as the guest's
 * notification may have been consumed on the source. Interrupt reasons
 * pending in the restored interrupt status are not raised again: the
 * embedder restores its interrupt controller's state.
 */
int rf_balloon_restore(rf_balloon *b, const void *buf, size_t len);

/* ---- host side ------------------------------------------------------------ */

/*
 * Ask the guest for a balloon of @balloon_bytes (rounded down to 4 KiB
 * pages): sets num_pages and raises a config interrupt. -EINVAL if larger
 * than the guest's RAM (the sum of its regions). The guest-size view of QEMU's
 * `balloon` command is guest_ram_bytes - balloon_bytes (rf_balloon_info).
 */
int rf_balloon_set_target(rf_balloon *b, uint64_t balloon_bytes);

struct rf_balloon_info {
	/* Set by the caller to sizeof(struct rf_balloon_info) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	uint64_t guest_ram_bytes;   /* sum of the VM's regions */
	uint64_t target_bytes;	    /* balloon size asked for (num_pages) */
	uint64_t actual_bytes;	    /* the guest's `actual` as it reports it */
	uint64_t ballooned_bytes;   /* pages in state BALLOONED (page-state table) */
	uint64_t reported_bytes;    /* pages in state FREE_REPORTED */
	uint64_t actual_changed_ns; /* CLOCK_MONOTONIC of the last change of actual */
	uint64_t features_offered;
	uint64_t features_negotiated; /* valid once FEATURES_OK */
	uint32_t poison_val;	      /* as written by the guest (PAGE_POISON) */
	uint8_t status;		      /* RF_VIRTIO_STATUS_* */
	unsigned int stats_interval_ms;
};

int rf_balloon_info(rf_balloon *b, struct rf_balloon_info *out);

/* Stats tags (the virtio spec's 0..9 and the ones Linux 6.12 added). */
enum rf_balloon_stat {
	RF_BALLOON_S_SWAP_IN = 0,
	RF_BALLOON_S_SWAP_OUT,
	RF_BALLOON_S_MAJFLT,
	RF_BALLOON_S_MINFLT,
	RF_BALLOON_S_MEMFREE,
	RF_BALLOON_S_MEMTOT,
	RF_BALLOON_S_AVAIL,
	RF_BALLOON_S_CACHES,
	RF_BALLOON_S_HTLB_PGALLOC,
	RF_BALLOON_S_HTLB_PGFAIL,
	RF_BALLOON_S_OOM_KILL,
	RF_BALLOON_S_ALLOC_STALL,
	RF_BALLOON_S_ASYNC_SCAN,
	RF_BALLOON_S_DIRECT_SCAN,
	RF_BALLOON_S_ASYNC_RECLAIM,
	RF_BALLOON_S_DIRECT_RECLAIM,
	RF_BALLOON_NR_STATS
};

/* Value of a stat the guest did not send (QEMU shows it as -1). */
static const uint64_t RF_BALLOON_STAT_UNSET = 0xffffffffffffffffull;

struct rf_balloon_stats {
	/* Set by the caller to sizeof(struct rf_balloon_stats) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	uint64_t value[RF_BALLOON_NR_STATS]; /* as the guest sent them; or UNSET */
	uint64_t last_update_ns;	     /* CLOCK_MONOTONIC; 0 = never */
	int64_t last_update;		     /* seconds since the epoch (QEMU's last-update) */
	uint64_t updates;		     /* buffers parsed so far */
};

/* The last stats the guest sent. */
int rf_balloon_stats(rf_balloon *b, struct rf_balloon_stats *out);

/* QEMU/libvirt name of a stat tag ("stat-swap-in", "stat-free-memory",
 * "stat-oom-kills", ...), or NULL for an unknown tag. */
const char *rf_balloon_stat_name(unsigned int tag);

/* Change the stats polling interval (ms, 0 = off) at run time. */
int rf_balloon_set_stats_interval(rf_balloon *b, unsigned int ms);

/*
 * Time-driven work: return the outstanding stats buffer to the guest when the
 * interval has passed since it arrived. Call at least as often as the stats
 * interval. *@next_ms (may be NULL) gets the ms until the next tick is due
 * (UINT32_MAX: nothing pending). Returns 0 or -EINVAL.
 */
int rf_balloon_tick(rf_balloon *b, unsigned int *next_ms);

/*
 * Counters. The first group is work done; every other field counts one kind
 * of rejected guest input (each with a rate-limited log line). Monotonic for
 * the life of the device (a guest reset does not clear them).
 */
struct rf_balloon_counters {
	/* Set by the caller to sizeof(struct rf_balloon_counters) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	/* work done */
	uint64_t inflate_buffers;
	uint64_t inflated_pages; /* pages that became BALLOONED */
	uint64_t deflate_buffers;
	uint64_t deflated_pages; /* pages that left BALLOONED */
	uint64_t report_buffers;
	uint64_t reported_pages;     /* pages discarded as FREE_REPORTED */
	uint64_t report_poison_kept; /* reported pages kept: non-zero poison value */
	uint64_t stats_buffers;
	uint64_t excluded_pages; /* excluded by the embedder: not ballooned */
	uint64_t resets;

	/* transport: registers, status, features, config space */
	uint64_t mmio_access_invalid;	     /* bad width/alignment, unknown register */
	uint64_t status_invalid;	     /* status bits cleared, DRIVER_OK early, ... */
	uint64_t features_unsupported;	     /* not offered, or no VERSION_1: FEATURES_OK refused */
	uint64_t features_after_features_ok; /* DriverFeatures written after FEATURES_OK */
	uint64_t config_out_of_range;	     /* offset/length past the config space */
	uint64_t config_write_readonly;	  /* write to num_pages, cmd id, poison (not negotiated) */
	uint64_t queue_setup_invalid;	  /* write to queue registers of a missing/live queue */
	uint64_t queue_size_invalid;	  /* 0, not a power of two, above the maximum */
	uint64_t ring_addr_invalid;	  /* unaligned, outside guest RAM, wrapping */
	uint64_t notify_invalid;	  /* missing or not-enabled queue */
	uint64_t notify_before_driver_ok; /* queue used before DRIVER_OK */
	uint64_t notify_needs_reset;	  /* queue used while DEVICE_NEEDS_RESET */

	/* split virtqueue */
	uint64_t avail_idx_jump;       /* avail index moved more than the queue size */
	uint64_t desc_index_invalid;   /* head or next index out of range */
	uint64_t desc_chain_too_long;  /* loops, or longer than the queue size (indirect
					* entries included) */
	uint64_t desc_flags_invalid;   /* unknown flags, INDIRECT together with NEXT */
	uint64_t desc_addr_invalid;    /* buffer outside guest RAM, wraps, crosses a region end */
	uint64_t desc_wrong_direction; /* device-writable where readable is due, or back */
	uint64_t indirect_not_negotiated;
	uint64_t indirect_nested;
	uint64_t indirect_len_invalid; /* 0 or not a multiple of 16 */

	/* balloon requests */
	uint64_t buf_len_invalid;	    /* PFN buffer empty or not a multiple of 4 */
	uint64_t buf_too_many_pfns;	    /* more than max_pfns_per_buffer */
	uint64_t pfn_invalid;		    /* beyond guest RAM or in a hole */
	uint64_t inflate_already_ballooned; /* PFN inflated twice */
	uint64_t deflate_not_ballooned;	    /* PFN deflated that was never inflated */
	uint64_t report_range_invalid;	    /* not page-aligned, or outside guest RAM */
	uint64_t report_too_long;	    /* more than max_report_bytes */
	uint64_t stats_len_invalid;	    /* not whole 10-byte entries, or too long */
	uint64_t stats_tag_duplicate;
	uint64_t stats_tag_unknown;   /* ignored (a newer driver) */
	uint64_t stats_second_buffer; /* a stats buffer while one is outstanding */
	uint64_t actual_implausible;  /* guest's actual above its RAM */

	/* 0.4, work done (after the rejections so that the 0.3 layout holds;
	 * rf_balloon_rejected_total stops before them): */
	uint64_t report_reused_pages; /* reported again, resident again, within report_reuse_ms */
	/* pages of reports kept, not discarded (ballooned ones among them stay so) */
	uint64_t report_kept_pages;
};

int rf_balloon_counters(rf_balloon *b, struct rf_balloon_counters *out);

/* Sum of the rejected-input counters (every field from mmio_access_invalid to
 * actual_implausible). */
uint64_t rf_balloon_rejected_total(const struct rf_balloon_counters *c);

#ifdef __cplusplus
}
#endif
#endif
