/* SPDX-License-Identifier: MIT */
/*
 * The engine's swap state: its configuration, the one swap store that every
 * VM's pager shares (created when the first pager starts, freed when the
 * last one goes, so an engine that never swaps never creates a file), and
 * the public swap API, which forwards to the VM's pager.
 */
#include <errno.h>
#include <string.h>

#include "abi.h"
#include "swap_pager.h"

/* Creation of e->swap: rare, one lock for every engine. */
static pthread_mutex_t swap_create_lock = PTHREAD_MUTEX_INITIALIZER;

RF_EXPORT void rf_swap_config_init(struct rf_swap_config *cfg)
{
	if (!cfg)
		return;
	memset(cfg, 0, sizeof(*cfg));
	cfg->size = sizeof(*cfg);
	cfg->file_limit_bytes = 64ull << 30;
	cfg->tier_limit_bytes = 512ull << 20;
	cfg->compress_max_bytes = 2048;
	cfg->prefetch_pages = 8;
}
RF_VERSION_0_3(rf_swap_config_init);

static int check_config(rf_engine *e, const struct rf_swap_config *c)
{
	const char *why = NULL;

	if (c->file_limit_bytes == 0 || (c->file_limit_bytes & (RF_PAGE_SIZE - 1)) ||
	    (c->file_limit_bytes >> RF_PAGE_SHIFT) >= (1ull << 30))
		why = "file limit must be a positive multiple of 4 KiB below 4 TiB";
	else if ((c->tier_limit_bytes / 128) >= (1ull << 30))
		why = "compressed tier limit must be below 128 GiB";
	else if (c->compress_max_bytes < 64 || c->compress_max_bytes > RF_PAGE_SIZE)
		why = "compress threshold must be 64..4096 bytes";
	else if (c->prefetch_pages > 64)
		why = "prefetch must be 0..64 pages";
	else if (c->dir && strlen(c->dir) >= 256)
		why = "directory path too long";
	if (!why)
		return 0;
	rf_log(e, RF_LOG_ERR, "ramfold: swap config: %s", why);
	return -EINVAL;
}

struct rf_swap *rf_swap_of(rf_engine *e)
{
	struct rf_swap *sw;

	pthread_mutex_lock(&swap_create_lock);
	sw = e->swap;
	if (!sw) {
		sw = rf_zalloc(e, sizeof(*sw));
		if (sw) {
			rf_swap_config_init(&sw->cfg);
			pthread_mutex_init(&sw->lock, NULL);
			e->swap = sw;
		}
	}
	pthread_mutex_unlock(&swap_create_lock);
	return sw;
}

RF_EXPORT int rf_engine_set_swap(rf_engine *e, const struct rf_swap_config *user_cfg)
{
	struct rf_swap_config cfg_full;
	const struct rf_swap_config *cfg = user_cfg ? &cfg_full : NULL;
	struct rf_swap *sw;
	int err;

	if (user_cfg) {
		int abi_err = 0;

		rf_swap_config_init(&cfg_full);
		abi_err = rf_struct_in(e, &cfg_full, sizeof(cfg_full), user_cfg,
				       RF_STRUCT_MIN(struct rf_swap_config, dir), "rf_swap_config");
		if (abi_err)
			return abi_err;
	}

	if (!e || !cfg)
		return -EINVAL;
	err = check_config(e, cfg);
	if (err)
		return err;
	sw = rf_swap_of(e);
	if (!sw)
		return -ENOMEM;
	pthread_mutex_lock(&sw->lock);
	if (sw->store) {
		pthread_mutex_unlock(&sw->lock);
		rf_log(e, RF_LOG_ERR, "ramfold: swap config: the store is in use by a VM");
		return -EBUSY;
	}
	sw->cfg = *cfg;
	if (cfg->dir) {
		strcpy(sw->dir, cfg->dir);
		sw->cfg.dir = sw->dir;
	}
	pthread_mutex_unlock(&sw->lock);
	return 0;
}
RF_VERSION_0_3(rf_engine_set_swap);

int rf_swap_store_acquire(rf_engine *e, struct rf_swap_store **out)
{
	struct rf_swap *sw = rf_swap_of(e);
	int err = 0;

	if (!sw)
		return -ENOMEM;
	pthread_mutex_lock(&sw->lock);
	if (!sw->store)
		err = rf_swap_store_new(e, &sw->cfg, &sw->store);
	if (!err) {
		sw->users++;
		*out = sw->store;
	}
	pthread_mutex_unlock(&sw->lock);
	return err;
}

void rf_swap_store_release(rf_engine *e)
{
	struct rf_swap *sw = e->swap;
	struct rf_swap_store *s = NULL;

	if (!sw)
		return;
	pthread_mutex_lock(&sw->lock);
	if (sw->users && --sw->users == 0) {
		s = sw->store;
		sw->store = NULL;
	}
	pthread_mutex_unlock(&sw->lock);
	rf_swap_store_free(s);
}

static void swap_engine_free(rf_engine *e)
{
	struct rf_swap *sw = e->swap;

	if (!sw)
		return;
	/* Every VM is gone, and with it every pager's reference. */
	rf_swap_pager_free_dead(sw);
	rf_swap_store_free(sw->store);
	pthread_mutex_destroy(&sw->lock);
	rf_free(e, sw);
	e->swap = NULL;
}

/* @vm's pager, started on first use. */
static int pager_of(rf_vm *vm, struct rf_pager **p)
{
	return vm ? rf_swap_pager_get(vm, p) : -EINVAL;
}

RF_EXPORT int rf_vm_set_swap_target(rf_vm *vm, uint64_t resident_bytes)
{
	struct rf_pager *p;
	int err = pager_of(vm, &p);

	if (!err)
		rf_swap_pager_set_target(p, resident_bytes);
	return err;
}

RF_EXPORT int rf_vm_set_swap_sampling(rf_vm *vm, uint32_t period_ms, uint32_t sample_pages)
{
	struct rf_pager *p;
	int err;

	if (!vm || period_ms > 60000)
		return -EINVAL;
	err = pager_of(vm, &p);
	if (!err)
		rf_swap_pager_set_sampling(p, period_ms, sample_pages);
	return err;
}

RF_EXPORT int rf_vm_set_swap_cap(rf_vm *vm, uint64_t max_swapped_bytes)
{
	struct rf_pager *p;
	int err = pager_of(vm, &p);

	if (!err)
		rf_swap_pager_set_cap(p, max_swapped_bytes);
	return err;
}

static void finish_ratio(struct rf_swap_stats *st)
{
	st->compression_ratio = st->tier_compressed_bytes
				    ? (double)st->tier_bytes / (double)st->tier_compressed_bytes
				    : 0.0;
}

static int rf_vm_swap_stats_full(rf_vm *vm, struct rf_swap_stats *st)
{
	if (!vm || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	st->copy_mode = !vm->e->feat.uffd_move; /* how it would swap, before it does */
	/* vm->pager is set once and freed only by rf_vm_free. */
	if (vm->pager)
		rf_swap_pager_stats(vm->pager, st);
	/* Kept by the core for every VM, swapping or not (src/fault_stall.h). */
	st->stall_ns = atomic_load_explicit(&vm->stall_ns, memory_order_relaxed);
	st->stall_faults = atomic_load_explicit(&vm->stall_faults, memory_order_relaxed);
	finish_ratio(st);
	return 0;
}

RF_EXPORT int rf_vm_swap_stats(rf_vm *vm, struct rf_swap_stats *st)
{
	struct rf_swap_stats full;

	RF_STRUCT_OUT(vm ? vm->e : NULL, st, full, file_bytes, "rf_swap_stats",
		      rf_vm_swap_stats_full(vm, &full));
}
RF_VERSION_0_3(rf_vm_swap_stats);

static int rf_engine_swap_stats_full(rf_engine *e, struct rf_swap_stats *st)
{
	struct rf_swap_store_stats ss;
	uint64_t p50 = 0, p99 = 0;

	if (!e || !st)
		return -EINVAL;
	memset(st, 0, sizeof(*st));
	st->copy_mode = !e->feat.uffd_move;
	pthread_mutex_lock(&e->vms_lock);
	for (rf_vm *vm = __rf_engine_vm_first(e); vm; vm = __rf_engine_vm_next(vm)) {
		struct rf_swap_stats v;

		st->stall_ns += atomic_load_explicit(&vm->stall_ns, memory_order_relaxed);
		st->stall_faults += atomic_load_explicit(&vm->stall_faults, memory_order_relaxed);
		if (!vm->pager)
			continue;
		memset(&v, 0, sizeof(v));
		rf_swap_pager_stats(vm->pager, &v);
		st->file_bytes += v.file_bytes;
		st->tier_bytes += v.tier_bytes;
		st->tier_compressed_bytes += v.tier_compressed_bytes;
		st->swap_outs += v.swap_outs;
		st->zero_outs += v.zero_outs;
		st->swap_ins += v.swap_ins;
		st->zero_fills += v.zero_fills;
		st->prefetched += v.prefetched;
		st->prefetch_hits += v.prefetch_hits;
		st->enospc += v.enospc;
		st->faults += v.faults;
		/* Percentiles do not add up: report the worst VM's. */
		p50 = v.fault_p50_ns > p50 ? v.fault_p50_ns : p50;
		p99 = v.fault_p99_ns > p99 ? v.fault_p99_ns : p99;
		if (v.fault_max_ns > st->fault_max_ns)
			st->fault_max_ns = v.fault_max_ns;
		st->stopped |= v.stopped;
		st->active_bytes += v.active_bytes;
		st->sampled += v.sampled;
		st->sampled_touched += v.sampled_touched;
		st->probed += v.probed;
		st->probed_touched += v.probed_touched;
		st->hot_skips += v.hot_skips;
		st->staged_bytes += v.staged_bytes;
	}
	pthread_mutex_unlock(&e->vms_lock);
	st->fault_p50_ns = p50;
	st->fault_p99_ns = p99;
	if (e->swap) {
		pthread_mutex_lock(&e->swap->lock);
		if (e->swap->store) {
			rf_swap_store_stats(e->swap->store, &ss);
			st->io_errors = ss.io_errors;
			st->csum_errors = ss.csum_errors;
		}
		pthread_mutex_unlock(&e->swap->lock);
	}
	finish_ratio(st);
	return 0;
}

RF_EXPORT int rf_engine_swap_stats(rf_engine *e, struct rf_swap_stats *st)
{
	struct rf_swap_stats full;

	RF_STRUCT_OUT(e, st, full, file_bytes, "rf_swap_stats",
		      rf_engine_swap_stats_full(e, &full));
}
RF_VERSION_0_3(rf_engine_swap_stats);

/* Freed after the VMs: every VM's pager holds the store. */
const struct rf_engine_module rf_swap_module = {
    .name = "swap",
    .free = swap_engine_free,
};
