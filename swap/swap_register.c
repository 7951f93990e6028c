/* SPDX-License-Identifier: MIT */
/*
 * The swap pager's registration of guest RAM for missing faults.
 *
 * A page swapped out must fault to the pager when the guest touches it, so
 * its range is registered on the VM's userfaultfd for missing faults (and
 * for write-protect too in copy mode, swap_out.c) before the page leaves.
 * Registration is kept per 2 MiB chunk of each region, in a bitmap per
 * region (struct chunk_map).
 *
 * A VM whose pager has no target yet is registered lazily, chunk by chunk,
 * as pages there are swapped out: ranges without swapped pages never send
 * faults to the pager, so first touches there cost what the kernel charges
 * (docs/swap.md has the figures). Once it has a target, all of its RAM is
 * registered (pager_register_all), so that a first write, which allocates
 * a page as surely as a swap-in does, comes to the pager and waits for room
 * the same way (swap_in.c).
 *
 * From the pager's start missing mode is part of the VM's base registration
 * mode (uffd.h), so a module that registers a range again after remapping a
 * page there (dedup) keeps it. A range registered before the pager started
 * (dedup's, without missing mode) is registered again, chunk by chunk, by
 * pager_ensure_registered as pages there are swapped out: the pager's chunk
 * maps start empty.
 *
 * Locking: the chunk maps are under the pager's lock; callers hold
 * regions_lock for reading.
 */
#include <errno.h>
#include <string.h>

#include "pager_internal.h"

#define CHUNK_SHIFT 21 /* lazy registration granule: 2 MiB */

/* Missing faults; write-protect too in copy mode. */
uint64_t pager_reg_mode(const struct rf_pager *p)
{
	return UFFDIO_REGISTER_MODE_MISSING | (p->copy_mode ? UFFDIO_REGISTER_MODE_WP : 0);
}

/* The chunk map of @r, made on first use. Called with p->lock held. */
static struct chunk_map *chunk_map_of(struct rf_pager *p, struct rf_region *r)
{
	for (unsigned int i = 0; i < RF_MAX_REGIONS; i++)
		if (p->chunks[i].r == r)
			return &p->chunks[i];
	for (unsigned int i = 0; i < RF_MAX_REGIONS; i++) {
		if (p->chunks[i].r)
			continue;
		p->chunks[i].words = ((r->size >> CHUNK_SHIFT) + 1 + 63) / 64;
		p->chunks[i].bits = rf_zalloc(p->e, p->chunks[i].words * sizeof(uint64_t));
		if (!p->chunks[i].bits)
			return NULL;
		p->chunks[i].r = r;
		return &p->chunks[i];
	}
	return NULL;
}

static bool chunk_done(const struct chunk_map *cm, uint64_t c)
{
	return cm->bits[c / 64] & (1ull << (c % 64));
}

/* Register chunk @c of @cm's region. Called with p->lock held. */
static int register_chunk(struct rf_pager *p, struct chunk_map *cm, uint64_t c)
{
	struct rf_region *r = cm->r;
	uint64_t lo = c << CHUNK_SHIFT, hi = lo + (1ull << CHUNK_SHIFT);
	int err;

	if (chunk_done(cm, c))
		return 0;
	if (hi > r->size)
		hi = r->size;
	err = rf_uffd_register(p->u, r->hva + lo, hi - lo, pager_reg_mode(p));
	if (!err)
		cm->bits[c / 64] |= 1ull << (c % 64);
	return err;
}

/* Register the 2 MiB chunk around page @idx of @r for missing faults.
 * Called with p->lock held. */
int pager_ensure_registered(struct rf_pager *p, struct rf_region *r, uint64_t idx)
{
	struct chunk_map *cm = chunk_map_of(p, r);
	uint64_t c = (idx << RF_PAGE_SHIFT) >> CHUNK_SHIFT;
	int err;

	if (!cm)
		return -ENOMEM;
	err = register_chunk(p, cm, c);
	if (err)
		rf_log_ratelimited(p->e, &p->rl, RF_LOG_WARN,
				   "%s: swap: registering gpa 0x%llx+2M for missing faults: %s",
				   p->vm->name, (unsigned long long)(r->gpa + (c << CHUNK_SHIFT)),
				   strerror(-err));
	return err;
}

/*
 * The VM has a target: register all of its RAM for missing faults, so that
 * first writes come to the pager and wait for room like swap-ins. One ioctl
 * per region where the kernel takes it whole (and keeps one VMA); else chunk
 * by chunk, and a chunk it refuses (another module mapped something there
 * that cannot be registered) stays lazy. Each region is tried once.
 * Called with regions_lock held for reading; takes p->lock.
 */
void pager_register_all(struct rf_pager *p)
{
	rf_vm *vm = p->vm;
	struct rf_region *r;

	pthread_mutex_lock(&p->lock);
	for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++) {
		struct chunk_map *cm = chunk_map_of(p, r);
		uint64_t nchunks = (r->size + (1ull << CHUNK_SHIFT) - 1) >> CHUNK_SHIFT,
			 refused = 0;
		int err = 0;

		if (!cm || cm->all)
			continue;
		cm->all = true;
		if (rf_uffd_register(p->u, r->hva, r->size, pager_reg_mode(p)) == 0) {
			for (uint64_t c = 0; c < nchunks; c++)
				cm->bits[c / 64] |= 1ull << (c % 64);
			continue;
		}
		for (uint64_t c = 0; c < nchunks; c++) {
			int ce = register_chunk(p, cm, c);

			if (ce) {
				refused++;
				err = ce;
			}
		}
		if (refused)
			rf_log(p->e, RF_LOG_WARN,
			       "%s: swap: %llu of %llu chunks at gpa 0x%llx cannot be registered "
			       "(%s): first writes there are not held to the target",
			       vm->name, (unsigned long long)refused, (unsigned long long)nchunks,
			       (unsigned long long)r->gpa, strerror(-err));
	}
	pthread_mutex_unlock(&p->lock);
}

/* Forget the chunk map of @r (the region goes away). Called with p->lock
 * held. */
void pager_chunks_forget(struct rf_pager *p, struct rf_region *r)
{
	for (unsigned int i = 0; i < RF_MAX_REGIONS; i++) {
		if (p->chunks[i].r != r)
			continue;
		rf_free(p->e, p->chunks[i].bits);
		memset(&p->chunks[i], 0, sizeof(p->chunks[i]));
	}
}
