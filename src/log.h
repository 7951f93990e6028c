/* SPDX-License-Identifier: MIT */
/*
 * Logging through the embedder's callback. Messages name the object and the
 * cause; the library never prints. Guest-triggered messages go through a rate
 * limit so a hostile guest cannot flood the log.
 */
#ifndef RF_LOG_H
#define RF_LOG_H

#include <stdatomic.h>
#include <stdint.h>

#include <ramfold/engine.h>

void rf_log(rf_engine *e, enum rf_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* At most @burst messages per second; the rest are counted in @suppressed and
 * summarised in the next message that gets through. */
struct rf_ratelimit {
	_Atomic uint64_t window_start_ns;
	_Atomic uint32_t printed;
	_Atomic uint64_t suppressed;
	uint32_t burst;
};

#define RF_RATELIMIT_INIT(b)                                                                       \
	{                                                                                          \
		.burst = (b)                                                                       \
	}

void rf_log_ratelimited(rf_engine *e, struct rf_ratelimit *rl, enum rf_log_level level,
			const char *fmt, ...) __attribute__((format(printf, 4, 5)));

uint64_t rf_now_ns(void);

#endif
