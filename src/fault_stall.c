/* SPDX-License-Identifier: MIT */
/* Fault stall accounting: see fault_stall.h. */
#include <time.h>

#include "fault_stall.h"

uint64_t rf_stall_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void rf_stall_end(rf_vm *vm, uint64_t t0, uint64_t now)
{
	/* Relaxed: readers want a sum, not an order with anything else. */
	atomic_fetch_add_explicit(&vm->stall_ns, now > t0 ? now - t0 : 0, memory_order_relaxed);
	atomic_fetch_add_explicit(&vm->stall_faults, 1, memory_order_relaxed);
}

void rf_stall_parked_init(struct rf_stall_parked *pk)
{
	pthread_mutex_init(&pk->lock, NULL);
	atomic_store(&pk->n, 0);
	for (unsigned int i = 0; i < RF_STALL_PARKED_MAX; i++)
		pk->e[i].page = 0;
}

void rf_stall_parked_destroy(struct rf_stall_parked *pk)
{
	pthread_mutex_destroy(&pk->lock);
}

int rf_stall_park(struct rf_stall_parked *pk, uint64_t page, uint64_t t0)
{
	int slot = -1;

	pthread_mutex_lock(&pk->lock);
	for (int i = 0; i < RF_STALL_PARKED_MAX && slot < 0; i++)
		if (pk->e[i].page == 0)
			slot = i;
	if (slot >= 0) {
		pk->e[slot].page = page;
		pk->e[slot].t0 = t0;
		atomic_fetch_add(&pk->n, 1);
	}
	pthread_mutex_unlock(&pk->lock);
	/* Pairs with the fence in rf_stall_woken: either the caller's next
	 * look at F_WP sees the holder's clear, or the holder's wake sees n. */
	atomic_thread_fence(memory_order_seq_cst);
	return slot;
}

bool rf_stall_unpark(struct rf_stall_parked *pk, int slot, uint64_t page, uint64_t t0)
{
	bool taken = false;

	pthread_mutex_lock(&pk->lock);
	if (pk->e[slot].page == page && pk->e[slot].t0 == t0) {
		pk->e[slot].page = 0;
		atomic_fetch_sub(&pk->n, 1);
		taken = true;
	}
	pthread_mutex_unlock(&pk->lock);
	return taken;
}

void rf_stall_woken(rf_vm *vm, struct rf_stall_parked *pk, uint64_t addr, uint64_t len)
{
	uint64_t now = 0;

	/* The holder cleared F_WP before this wake (uffd.h); see rf_stall_park. */
	atomic_thread_fence(memory_order_seq_cst);
	if (atomic_load_explicit(&pk->n, memory_order_relaxed) == 0)
		return;
	pthread_mutex_lock(&pk->lock);
	for (unsigned int i = 0; i < RF_STALL_PARKED_MAX; i++) {
		uint64_t pg = pk->e[i].page;

		if (pg == 0 || pg < addr || pg - addr >= len)
			continue;
		if (!now)
			now = rf_stall_now();
		rf_stall_end(vm, pk->e[i].t0, now);
		pk->e[i].page = 0;
		atomic_fetch_sub(&pk->n, 1);
	}
	pthread_mutex_unlock(&pk->lock);
}
