/* SPDX-License-Identifier: MIT */
/*
 * The page-state table: one 64-bit entry per 4 KiB guest page, the single
 * source of truth for what the library has done to that page.
 *
 *   bits 0-2    state (enum rf_page_state)
 *   bit  3      lock: held by the one thread changing the page's mapping
 *   bit  4      excluded by the embedder (never merged, swapped, ballooned)
 *   bits 5-15   module flags (RF_PTE_F_*), changed only under the lock
 *               (but F_DISCARD, see rf_pte_mark_discard)
 *   bits 32-63  payload: store page for MERGED, swap slot for SWAPPED, ...
 *
 * A state transition is: lock the entry (rf_pte_lock), change the mapping
 * (madvise, mmap, UFFDIO_COPY), then publish the new entry and drop the lock
 * in one release store (rf_pte_unlock), which also moves the VM's per-state
 * counter. Because only the lock holder may change a mapping, two modules
 * (say the balloon and the merger) can never act on one page at once.
 * Readers that only want a hint (the scanner skipping non-PRIVATE pages) may
 * read an entry without the lock; they must re-check under it before acting.
 *
 * Every transition, the module that makes it, the locks it holds, the
 * kernel's mapping before and after and what other threads may see in
 * between: docs/design.md. Debug builds (RF_DEBUG_TRANSITIONS) check each
 * transition against pagemap when it is published (page_table.c).
 */
#ifndef RF_PAGE_TABLE_H
#define RF_PAGE_TABLE_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <ramfold/vm.h>

typedef _Atomic uint64_t rf_pte_t;

#define RF_PTE_STATE_MASK 0x7ull
#define RF_PTE_LOCKED	  (1ull << 3)
#define RF_PTE_EXCLUDED	  (1ull << 4)
/* Module flags. */
#define RF_PTE_F_VOLATILE    (1ull << 5)  /* ksm: content changed since last pass */
#define RF_PTE_F_NOMERGE     (1ull << 6)  /* ksm: failed to merge, skip until written */
#define RF_PTE_F_WP	     (1ull << 7)  /* write-protected by the library right now */
#define RF_PTE_F_COLD	     (1ull << 8)  /* swap: not accessed in the last period */
#define RF_PTE_F_OUT	     (1ull << 9)  /* swap: content out of guest RAM, not yet published */
#define RF_PTE_F_UWP	     (1ull << 10) /* write-protected by the embedder (rf_vm_write_protect) */
#define RF_PTE_F_HOT	     (1ull << 11) /* swap: staged by sampling, touched: laps to skip, bit 0 */
#define RF_PTE_F_HOT2	     (1ull << 12) /* swap: the same count, bit 1 (swap_sample.c) */
#define RF_PTE_F_DISCARD     (1ull << 13) /* swap: an outside discard covers it (swap_in.c) */
#define RF_PTE_FLAGS_MASK    0xfff0ull
#define RF_PTE_PAYLOAD_SHIFT 32

static inline enum rf_page_state rf_pte_state(uint64_t v)
{
	return (enum rf_page_state)(v & RF_PTE_STATE_MASK);
}

static inline uint32_t rf_pte_payload(uint64_t v)
{
	return (uint32_t)(v >> RF_PTE_PAYLOAD_SHIFT);
}

static inline uint64_t rf_pte_with_state(uint64_t v, enum rf_page_state s)
{
	return (v & ~RF_PTE_STATE_MASK) | (uint64_t)s;
}

static inline uint64_t rf_pte_with_payload(uint64_t v, uint32_t payload)
{
	return (v & 0xffffffffull) | ((uint64_t)payload << RF_PTE_PAYLOAD_SHIFT);
}

/* Unlocked read: a hint only. */
static inline uint64_t rf_pte_peek(rf_pte_t *p)
{
	return atomic_load_explicit(p, memory_order_relaxed) & ~RF_PTE_LOCKED;
}

/* Take the entry's lock, spinning (then yielding) while another holds it.
 * Returns the entry's value without the lock bit. */
uint64_t rf_pte_lock(rf_pte_t *p);

/*
 * Set RF_PTE_F_DISCARD, locked or not, and return the entry as it was (the
 * lock bit included): the one flag set without the lock, by the swap
 * pager's REMOVE handler, which may not wait for a holder (swap_in.c). The
 * holder's rf_pte_unlock keeps it; the entry as returned says whether the
 * holder had already published.
 */
uint64_t rf_pte_mark_discard(rf_pte_t *p);

/* Drop the lock of an entry taken as @old, publishing @new with no state
 * change to count (rf_pte_unlock's store, for a holder without its VM at
 * hand): keeps an F_DISCARD set meanwhile. */
void rf_pte_publish(rf_pte_t *p, uint64_t old, uint64_t new);

/* Take the lock if free: true and *@v set, or false. */
bool rf_pte_trylock(rf_pte_t *p, uint64_t *v);

/*
 * Publish @new (lock bit ignored) and release the lock. @old is the value
 * rf_pte_lock returned; if the state differs, the VM's counters move. The
 * release store orders every mapping change made under the lock before the
 * new state is visible to an unlocked reader.
 */
void rf_pte_unlock(rf_vm *vm, rf_pte_t *p, uint64_t old, uint64_t new);

#endif
