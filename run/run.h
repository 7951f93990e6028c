/* SPDX-License-Identifier: MIT */
/*
 * What ramfold-run hands to libramfold-preload.so across exec: the
 * environment variables below, all removed by the preload at start so that
 * the program's children never see them. RF_RUN_ENV_PID holds the pid that
 * ramfold-run exec'd into (exec keeps the pid): the preload acts only in the
 * process whose pid it is, never in a child that inherited the environment
 * before the preload could remove it.
 */
#ifndef RUN_RUN_H
#define RUN_RUN_H

#include <stdbool.h>
#include <stdint.h>

#include <ramfold/dedup.h>

#define RF_RUN_ENV_PID		 "RAMFOLD_RUN_PID"
#define RF_RUN_ENV_PRELOAD	 "RAMFOLD_RUN_PRELOAD" /* path added to LD_PRELOAD */
#define RF_RUN_ENV_DEDUP	 "RAMFOLD_RUN_DEDUP"
#define RF_RUN_ENV_SWAP_RESIDENT "RAMFOLD_RUN_SWAP_RESIDENT"
#define RF_RUN_ENV_SWAP_DIR	 "RAMFOLD_RUN_SWAP_DIR"
#define RF_RUN_ENV_CTL		 "RAMFOLD_RUN_CTL"
#define RF_RUN_ENV_METRICS_FILE	 "RAMFOLD_RUN_METRICS_FILE"
#define RF_RUN_ENV_METRICS_PORT	 "RAMFOLD_RUN_METRICS_PORT"
#define RF_RUN_ENV_MIN_SIZE	 "RAMFOLD_RUN_MIN_SIZE"
#define RF_RUN_ENV_MAX_RAM	 "RAMFOLD_RUN_MAX_RAM"
#define RF_RUN_ENV_LOG		 "RAMFOLD_RUN_LOG"
#define RF_RUN_ENV_VERBOSE	 "RAMFOLD_RUN_VERBOSE"
#define RF_RUN_ENV_DEDUP_PAUSED	 "RAMFOLD_RUN_DEDUP_PAUSED"
#define RF_RUN_ENV_DEDUP_NICE	 "RAMFOLD_RUN_DEDUP_NICE"
#define RF_RUN_ENV_DEDUP_HUGE	 "RAMFOLD_RUN_DEDUP_HUGE" /* rf_dedup_huge_name's */
/*
 * What the program tells ramfold-run's cleaner (run/main.c) over its pipe:
 * it made a path the cleaner must remove if the program is killed. A path
 * it never made (a socket another process holds) is never the cleaner's.
 */
#define RR_MADE_CTL	      'c'		       /* the control socket is bound */
#define RR_MADE_METRICS	      'm'		       /* the metrics file exists */
#define RF_RUN_ENV_CLEANER_FD "RAMFOLD_RUN_CLEANER_FD" /* the pipe the cleaner watches */

/* Linux 6.4's prctl, absent from older headers. */
#ifndef PR_SET_MEMORY_MERGE
#define PR_SET_MEMORY_MERGE 67
#define PR_GET_MEMORY_MERGE 68
#endif

struct rf_run_opts {
	enum rf_dedup_mode dedup;
	const char *domain;	/* --dedup domain=NAME */
	const char *broker;	/* --broker PATH (ramfold-run only: RAMFOLD_BROKER) */
	uint64_t swap_resident; /* 0: no swap */
	const char *swap_dir;
	const char *ctl;
	const char *metrics_file;
	int metrics_port; /* 0: none */
	uint64_t min_size;
	uint64_t max_ram; /* the most that may be adopted; 0: no bound */
	const char *log;  /* path, or "-" for stderr */
	bool verbose;
	/* --dedup-paused: the VM is attached to the dedup engine only when
	 * the control socket's set-dedup releases it. */
	bool dedup_paused;
	/* --dedup-nice N: the scanner threads at nice N (thread_start). */
	bool dedup_nice_set;
	int dedup_nice;
	/* --dedup-huge: huge pages from the first pass (rf_dedup_config.huge;
	 * set-dedup's "huge" changes it later). */
	enum rf_dedup_huge huge;
};

/* Defaults of the options (intra-VM dedup, huge pages split, 64 MiB minimum,
 * log on stderr). */
void rf_run_opts_init(struct rf_run_opts *o);

/* Parse "--dedup" values: zero, intra, domain=NAME. 0 or -EINVAL. */
int rf_run_parse_dedup(struct rf_run_opts *o, const char *s);

#endif
