/* SPDX-License-Identifier: MIT */
/* Small helpers of the demo VMM: sizes, time, formatting. */
#ifndef VMM_UTIL_H
#define VMM_UTIL_H

#include <stdint.h>
#include <stddef.h>

#include <ramfold/dedup.h>

/* "256M", "1G", "4096", "2k": bytes. Suffixes K/M/G/T are powers of 1024,
 * optionally followed by "iB" or "B". 0, or -EINVAL (also on overflow). */
int parse_size(const char *s, uint64_t *out);
/* A non-negative decimal integer: 0 or -EINVAL. */
int parse_u64(const char *s, uint64_t *out);
/* A nice value, -20 to 19: 0 or -EINVAL. */
int parse_nice(const char *s, int *out);
/* A huge-page mode by the library's own names (rf_dedup_huge_name), for
 * --dedup-huge of ramfold-vmm and ramfold-run and ramfold-run's set-dedup:
 * 0 or -EINVAL. DEDUP_HUGE_NAMES is the list for a message. */
#define DEDUP_HUGE_NAMES "split, keep or split-cold"
int parse_dedup_huge(const char *s, enum rf_dedup_huge *out);
/* Human size: "256.0M", "1.50G", "12K", into @buf. */
const char *fmt_size(char *buf, size_t len, uint64_t bytes);
uint64_t now_ns(void);
/*
 * A broker (ramfoldd) answering at @path: if none does, start a private one
 * there (ramfoldd --private, found next to this program or in PATH), which
 * ends with the thread that started it. 0, or -errno with @why filled.
 */
int broker_ensure(const char *path, char *why, size_t len);

/*
 * For an rf_engine_config.thread_start hook (--dedup-nice of ramfold-vmm and
 * ramfold-run, the dedup bench): if @thread_name is a dedup scanner's
 * ("rf-scan/N"), set the calling thread's nice to @nice, so that a scanner
 * can run at the nice of the kernel's ksmd (5) in a comparison, whatever
 * the process runs at. Only the scanners: the fault threads serve vCPUs
 * waiting on a write. 0 (done, or not a scanner), or -errno of setpriority
 * (a nice below the thread's own needs CAP_SYS_NICE).
 */
int scan_thread_set_nice(const char *thread_name, int nice);

#endif
