/* SPDX-License-Identifier: MIT */
/* The preload's state, shared by preload.c (interposers, adoption) and
 * service.c (control socket, metrics). */
#ifndef RUN_PRELOAD_H
#define RUN_PRELOAD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <ramfold/ramfold.h>

#include "run.h"

struct rf_run {
	struct rf_run_opts opts;
	rf_engine *engine;
	rf_vm *vm;
	bool swap_on;
	/* rf_dedup_add_vm done (at start, or by set-dedup after
	 * --dedup-paused); under lock. */
	bool dedup_attached;
	/* Serialises adopt, release and the bookkeeping below; never taken by
	 * a call the library itself makes (those pass through first). */
	pthread_mutex_t lock;
	/* Guest RAM the program marked mergeable and the kernel's KSM got
	 * instead (a backing ramfold cannot take), for query-memory. */
	uint64_t kernel_ranges, kernel_bytes;
	uint64_t adopted_bytes;
	atomic_uint_fast64_t discards, discarded_bytes, releases;
};

extern struct rf_run rr;

/* Tell ramfold-run's cleaner it made a path (RR_MADE_*, run.h). */
void rr_tell_cleaner(char what);

/* One log line ("ramfold[PID]: ...") to the --log target. */
void rr_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
#define rr_debug(...)                                                                              \
	do {                                                                                       \
		if (rr.opts.verbose)                                                               \
			rr_log(__VA_ARGS__);                                                       \
	} while (0)

/* Enter and leave the library from the preload's own code: calls the
 * library makes meanwhile on this thread go straight to the kernel. */
void rr_lib_enter(void);
void rr_lib_leave(void);

/* Control socket and metrics (service.c): one thread. Each mechanism that
 * cannot start is logged once and left out; the program runs on. */
void rr_service_start(void);
void rr_service_stop(void);

#endif
