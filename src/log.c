/* SPDX-License-Identifier: MIT */
/* Logging through the embedder's callback, with its rate limit: see log.h. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

uint64_t rf_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void rf_vlog(rf_engine *e, enum rf_log_level level, const char *fmt, va_list ap)
{
	char msg[512];

	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (!e)
		return;
	if (level <= RF_LOG_WARN) {
		pthread_mutex_lock(&e->err_lock);
		memcpy(e->last_error, msg,
		       sizeof(msg) < sizeof(e->last_error) ? sizeof(msg) : sizeof(e->last_error));
		e->last_error[sizeof(e->last_error) - 1] = '\0';
		pthread_mutex_unlock(&e->err_lock);
	}
	if (e->cfg.log && level <= e->cfg.log_level)
		e->cfg.log(e->cfg.log_arg, level, msg);
}

void rf_log(rf_engine *e, enum rf_log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	rf_vlog(e, level, fmt, ap);
	va_end(ap);
}

void rf_log_ratelimited(rf_engine *e, struct rf_ratelimit *rl, enum rf_log_level level,
			const char *fmt, ...)
{
	uint64_t now = rf_now_ns();
	uint64_t start = atomic_load(&rl->window_start_ns);
	uint64_t dropped;
	va_list ap;

	if (now - start > 1000000000ull &&
	    atomic_compare_exchange_strong(&rl->window_start_ns, &start, now))
		atomic_store(&rl->printed, 0);
	if (atomic_fetch_add(&rl->printed, 1) >= (rl->burst ? rl->burst : 10)) {
		atomic_fetch_add(&rl->suppressed, 1);
		return;
	}
	dropped = atomic_exchange(&rl->suppressed, 0);
	if (dropped)
		rf_log(e, level, "(%llu similar messages suppressed)", (unsigned long long)dropped);
	va_start(ap, fmt);
	rf_vlog(e, level, fmt, ap);
	va_end(ap);
}
