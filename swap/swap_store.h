/* SPDX-License-Identifier: MIT */
/*
 * The swap store: where swapped-out guest pages live, one store per engine,
 * shared by every VM's pager.
 *
 * Two tiers. A page that lz4 shrinks to at most compress_max bytes goes to
 * the compressed in-memory tier (one jemalloc allocation per page, so memory
 * follows the compressed size); any other page goes to the swap file, in a
 * 4 KiB slot. Pages are handed over in batches: the file pages of a batch
 * get a run of consecutive slots and are written with one pwritev.
 *
 * Every stored page keeps the XXH3-64 checksum of its content beside its
 * slot, and every read verifies it: a read error is -EIO, a mismatch
 * -EBADMSG, and the caller decides (the pager retries, then stops the VM).
 * A failed write (ENOSPC from the limit or the filesystem, EIO) stores
 * nothing for the pages it concerned: they are reported as not stored and
 * the caller keeps them. No page is ever half-stored.
 *
 * A handle names a stored page: bit 31 set is a tier entry, clear a file
 * slot; RF_SWAP_NONE names nothing.
 *
 * Concurrency: every function may be called from any thread. One mutex
 * guards the allocators and the tables; compression, checksums and file I/O
 * run outside it. A handle is owned by one caller (the page's lock holder):
 * get and drop of the same handle are never concurrent.
 */
#ifndef RF_SWAP_STORE_H
#define RF_SWAP_STORE_H

#include <stdatomic.h>
#include <stdint.h>

#include <ramfold/swap.h>

#include "internal.h"

#define RF_SWAP_NONE	  UINT32_MAX
#define RF_SWAP_H_TIER	  (1u << 31)
#define RF_SWAP_MAX_BATCH 64

struct rf_swap_store;

static inline bool rf_swap_handle_in_tier(uint32_t h)
{
	return h != RF_SWAP_NONE && (h & RF_SWAP_H_TIER);
}

/* Create the store (its file unlinked from the start). */
int rf_swap_store_new(rf_engine *e, const struct rf_swap_config *cfg, struct rf_swap_store **out);
void rf_swap_store_free(struct rf_swap_store *s);

/*
 * Store @n (<= RF_SWAP_MAX_BATCH) pages. handles[i] is set for each page,
 * RF_SWAP_NONE for one not stored. Returns 0 if all were stored, else the
 * first error: -ENOSPC (file limit or filesystem full), -EIO (write error),
 * -ENOMEM. Pages not stored are untouched and still the caller's.
 * @tier_ok false sends every page to the file (used when a VM's share of
 * the tier is spent).
 */
int rf_swap_store_put(struct rf_swap_store *s, void *const pages[], unsigned int n, bool tier_ok,
		      uint32_t handles[]);

/*
 * Read the page named by @h into @dst (4 KiB) and verify its checksum.
 * Returns 0, -EIO (read error, short read), -EBADMSG (checksum mismatch or
 * undecodable tier entry), -EINVAL (@h names nothing stored). The page stays
 * stored: drop it once it is mapped back.
 */
int rf_swap_store_get(struct rf_swap_store *s, uint32_t h, void *dst);

/*
 * Read @n pages stored in consecutive file slots from @first into @bufs
 * (page-aligned buffers), with one read, and verify each: res[i] is 0,
 * -EIO, -EBADMSG or -EINVAL (slot not in use) for page i.
 */
void rf_swap_store_get_run(struct rf_swap_store *s, uint32_t first, unsigned int n,
			   void *const bufs[], int res[]);

/* Release the page named by @h. */
void rf_swap_store_drop(struct rf_swap_store *s, uint32_t h);

/* Bytes the entry @h occupies in memory (compressed size; 0 for the file). */
uint32_t rf_swap_store_mem_bytes(struct rf_swap_store *s, uint32_t h);

struct rf_swap_store_stats {
	uint64_t file_pages;
	uint64_t tier_pages;
	uint64_t tier_bytes; /* compressed bytes */
	uint64_t enospc, io_errors, csum_errors;
};
void rf_swap_store_stats(struct rf_swap_store *s, struct rf_swap_store_stats *st);

/*
 * Fault injection for tests: the next @count operations of @kind fail.
 * RF_SWAP_INJ_CORRUPT flips one byte of what the next reads return, as a
 * bad disk would; the checksum must catch it.
 */
enum rf_swap_inject {
	RF_SWAP_INJ_NONE = 0,
	RF_SWAP_INJ_WRITE_ENOSPC,
	RF_SWAP_INJ_WRITE_EIO,
	RF_SWAP_INJ_READ_EIO,
	RF_SWAP_INJ_CORRUPT,
};
void rf_swap_store_inject(struct rf_swap_store *s, enum rf_swap_inject kind, unsigned int count);

/* The swap file's descriptor (tests corrupt it directly). */
int rf_swap_store_fd(const struct rf_swap_store *s);

#endif
