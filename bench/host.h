/* SPDX-License-Identifier: MIT */
/*
 * A peer comparison is only as fair as its host (docs/dedup.md, "Fair
 * measurement"): every bench that compares ramfold with KSM says at its
 * start what it ran on, and records the load average at each run's start
 * (a ratio from a run started at load 1 or more is "noisy", not a result).
 */
#ifndef BENCH_HOST_H
#define BENCH_HOST_H

#include <stdbool.h>
#include <stddef.h>

/* The first line of @path, without its newline, in @out; false if it
 * cannot be read. */
bool bench_file_line(const char *path, char *out, size_t cap);
/* The 1-minute load average (/proc/loadavg), -1 if unreadable. */
double bench_loadavg(void);
/* "host: N CPUs online, cpu0 frequency policy: GOVERNOR, load average L"
 * into @out (GOVERNOR: "no cpufreq" without cpufreq). */
void bench_host_describe(char *out, size_t cap);
/* "BENCH: " and that, "at start", on stdout. */
void bench_host_line(const char *bench);
/* The guests of a bench's run before leave the load average above 1 for a
 * minute or more: wait, up to @max_s seconds, until it is below 0.9 again,
 * so that each run starts on a quiet machine (and say how long it took). */
void bench_wait_quiet(const char *bench, int max_s);

#endif
