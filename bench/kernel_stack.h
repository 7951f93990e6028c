/* SPDX-License-Identifier: MIT */
/*
 * The kernel's own reclaim stack, set up on the host for one experiment run
 * and put back afterwards: KSM (run, pages_to_scan, sleep_millisecs), a
 * swap file, zswap (enabled, compressor) and a memory cgroup limited to the
 * budget (v2 memory.max and memory.high where the host has the v2 memory
 * controller, else v1 memory.limit_in_bytes).
 *
 * Every change is written down in a journal file before it is made: the
 * host's own values and what the run adds. kstack_restore() puts back what
 * the journal holds and removes it, so a runner stopped by a signal restores
 * on its way out, and one that was killed (SIGKILL) leaves the journal for
 * the next start (kstack_restore_journal(), `overcommit-run --restore`).
 * Restoring is idempotent: a change journaled but never made undoes to
 * nothing.
 *
 * Each setup call returns 0 or a negative errno, with one line saying what
 * could not be set up in @why; the run goes on without it, incomplete.
 * Single-threaded: the runner's main thread (and its signal handler, after
 * the VMM is gone) only.
 */
#ifndef BENCH_KERNEL_STACK_H
#define BENCH_KERNEL_STACK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct kstack {
	char journal[600]; /* path of the journal file */
	/* What the journal holds (empty strings: not changed). */
	char ksm_run[32], ksm_pages[32], ksm_sleep[32];
	char zswap_enabled[32], zswap_compressor[32];
	char swap_file[600]; /* swapped on by the run: swapped off and unlinked */
	char cgroup[600];    /* made by the run: its tasks killed, then removed */
	int cgroup_version;  /* 1 or 2 */
};

/* Start with nothing changed; the journal at @journal_path. */
void kstack_init(struct kstack *ks, const char *journal_path);

/* KSM at @pages per wake-up, @sleep_ms between (0 = no sleep), run=1. */
int kstack_ksm_on(struct kstack *ks, unsigned int pages, unsigned int sleep_ms, char *why,
		  size_t cap);
/* A swap file of @bytes at @path (made with mkswap), swapped on. */
int kstack_swap_on(struct kstack *ks, const char *path, uint64_t bytes, char *why, size_t cap);
/* zswap on with @compressor; if the kernel has no such compressor, zswap is
 * still turned on with the host's, and @why says so (-ENOENT). */
int kstack_zswap_on(struct kstack *ks, const char *compressor, char *why, size_t cap);
/* A memory cgroup named @name limited to @limit bytes. */
int kstack_cgroup_make(struct kstack *ks, const char *name, uint64_t limit, char *why, size_t cap);

/* Put the calling process into the cgroup (between fork and exec: open,
 * write and close only). 0 when there is none. */
int kstack_cgroup_join(const struct kstack *ks);

/* Memory pressure stall so far, in microseconds (PSI "some" total): the
 * cgroup's (v2) or the host's (/proc/pressure/memory); @source names which.
 * -1 when the kernel has no PSI. */
int64_t kstack_stall_us(const struct kstack *ks, const char **source);
/* The cgroup's charged memory (v1 usage_in_bytes, v2 memory.current), 0
 * without a cgroup. */
uint64_t kstack_cgroup_usage(const struct kstack *ks);
/* Processes the cgroup's OOM killer killed so far (0 without a cgroup). */
uint64_t kstack_cgroup_oom_kills(const struct kstack *ks);

/* Put back everything the journal holds, in reverse order of setup (the
 * cgroup's tasks killed first, so swapoff does not race them), one line per
 * item on @log (NULL: quiet), and remove the journal. Returns the number of
 * items that could not be put back. */
int kstack_restore(struct kstack *ks, FILE *log);
/* Read the journal at @path, if there is one, and restore from it. 0 when
 * there was none or all was put back; else the number of failures. */
int kstack_restore_journal(const char *path, FILE *log);

#endif
