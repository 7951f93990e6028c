/* SPDX-License-Identifier: MIT */
/*
 * What the dedup benchmarks share: a time series of saved bytes and CPU per
 * engine, the summary (time and CPU to 95% of the achievable saving, idle
 * CPU share once converged), the table on stdout, and the CSV and SVG files.
 */
#ifndef BENCH_DEDUP_REPORT_H
#define BENCH_DEDUP_REPORT_H

#include <stdbool.h>
#include <stdint.h>

struct sample {
	double t, saved, cpu;
};

struct result {
	const char *name;
	struct sample *s;
	unsigned int n, cap;
	double t95, cpu95, idle_cpu_share, final_saved, final_host_saved;
	double metadata; /* engine metadata outside this process (KSM's rmap items) */
	bool reached;
	bool ran;
	char note[128];
};

double bench_now_s(void);
void result_add(struct result *r, double t, double saved, double cpu);
/* Time and CPU to 95% of the best saving (or of @ideal if the engine never
 * got within 90% of it). */
void result_summarise(struct result *r, uint64_t ideal);
/* The table and the ramfold-vs-ksm-fastest line (rs[0] ramfold, rs[1] ksm-fastest). */
void results_print(struct result *rs, unsigned int n, uint64_t ideal);
/* DIR/PREFIX.csv, DIR/PREFIX_summary.csv, DIR/PREFIX.svg (titled @title). */
void results_write(struct result *rs, unsigned int n, uint64_t ideal, const char *dir,
		   const char *prefix, const char *title);

#endif
