/* SPDX-License-Identifier: MIT */
/*
 * Shared test helpers: an engine whose log is captured (so tests assert the
 * reason, not just the errno), the kernel's own numbers (smaps_rollup), and
 * feature checks that skip with a reason instead of passing silently.
 */
#ifndef RF_TEST_H
#define RF_TEST_H

#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ramfold/ramfold.h>

struct rf_test_log {
	char last[512];
	unsigned int count;
};

/* An engine with default config whose messages land in @log (may be NULL). */
rf_engine *rf_test_engine(struct rf_test_log *log);
/* The same with a chosen host capacity (0: the default, from /proc/meminfo). */
rf_engine *rf_test_engine_cap(uint64_t capacity, struct rf_test_log *log);

/*
 * An engine for the swap tests (rf_test_engine, then its swap store in
 * /var/tmp with a file limit, 0: the default, and a compressed tier of
 * @tier_limit bytes). Skips the test, with the reason, unless the kernel has
 * userfaultfd with write-protect, and /dev/kvm when @need_kvm.
 */
rf_engine *rf_test_swap_engine(struct rf_test_log *log, bool need_kvm, uint64_t file_limit,
			       uint64_t tier_limit);

/* A VM named @name with @ram_bytes promised and none of it mapped. */
rf_vm *rf_test_vm_unmapped(rf_engine *e, const char *name, uint64_t ram_bytes);

/* Are the @len bytes at @p all zero? */
bool rf_test_all_zero(const void *p, size_t len);

/* At the library's test point @where, @arg: is it "swap.moved" for a move
 * (its struct uffdio_move) that took the page at @page out, whole run moved? */
bool rf_test_moved_out(const char *where, void *arg, const void *page);

/*
 * Guest RAM @ram (@npages >= 36 pages of @vm at gpa 0, any backing dedup
 * and swap take) with a page in every state: 0-7 private (content
 * rf_test_every_state_seed(i), dedup_fill_page), 8-15 merged (two
 * templates, four copies each), 16-23 swapped out, 24-31 zero-discarded,
 * 32 ballooned, 33 excluded (private), the rest private. Starts dedup
 * (intra-VM) on @e, which needs a swap store (rf_test_swap_engine).
 */
void rf_test_every_state(rf_engine *e, rf_vm *vm, uint8_t *ram, unsigned int npages);
uint64_t rf_test_every_state_seed(unsigned int i);

/* A VM named @name with @ram_bytes promised and all of it mapped at gpa 0. */
rf_vm *rf_test_vm(rf_engine *e, const char *name, uint64_t ram_bytes, void **hva);

/* Force the page-state table entry of @gpa to @s (tests that fake a table;
 * not a transition, so a debug build does not check it). */
void rf_test_set_state(rf_vm *vm, uint64_t gpa, enum rf_page_state s);

/* Monotonic milliseconds, and a sleep in them. */
uint64_t rf_test_now_ms(void);
void rf_test_sleep_ms(unsigned int ms);

/* Ask the demo VMM @p for {"execute":@cmd,"arguments":{"vm":@vm}} (a
 * query-balloon, query-swap, ...); fails the test unless it answers with a
 * "return". */
struct vmm_proc;
void rf_test_vm_query(struct vmm_proc *p, const char *cmd, const char *vm, char *reply, size_t len);

/* The integer after "KEY": in a JSON reply; fails the test if there is none. */
int64_t rf_test_json_num(const char *reply, const char *key);

/* The threads of process @pid whose name starts with @prefix ("rf-scan/"):
 * how many there are; fails the test if one of them is not at nice @nice. */
unsigned int rf_test_threads_at_nice(int pid, const char *prefix, int nice);

/* Field of /proc/self/smaps_rollup ("Rss", "Pss", "Anonymous", ...) in bytes. */
uint64_t rf_test_smaps_rollup(const char *field);

/* Field of /proc/meminfo in bytes. */
uint64_t rf_test_meminfo(const char *field);

/* Log substring assertion with a readable failure. */
#define assert_log_contains(log, s)                                                                \
	do {                                                                                       \
		if (!strstr((log)->last, (s)))                                                     \
			fail_msg("log \"%s\" does not contain \"%s\"", (log)->last, (s));          \
	} while (0)

/* Skip the current test (with the reason printed) unless @cond holds. */
#define rf_require(cond, reason)                                                                   \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			print_message("[   SKIP   ] %s: %s\n", __func__, (reason));                \
			skip();                                                                    \
		}                                                                                  \
	} while (0)

/* The library's ring of recent transitions of the page at @gpa, to stderr
 * (builds with RF_DEBUG_TRANSITIONS; a no-op in others). */
void rf_debug_page_history(rf_vm *vm, uint64_t gpa);

#endif
