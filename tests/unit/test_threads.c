/* SPDX-License-Identifier: MIT */
/*
 * Every thread the library starts names itself (issue 14): rf-fault/VM,
 * rf-swap/VM, rf-scan/N, rf-policy; and none of them is left once the
 * engine is freed.
 */
#include <dirent.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "dedup_util.h"
#include "rf_test.h"

/* How many of the process's threads are named @name. */
static unsigned int threads_named(const char *name)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	unsigned int n = 0;

	assert_non_null(d);
	while ((de = readdir(d))) {
		char path[300], comm[32] = "";
		FILE *f;

		if (de->d_name[0] == '.')
			continue;
		snprintf(path, sizeof(path), "/proc/self/task/%s/comm", de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
		n += strcmp(comm, name) == 0;
	}
	closedir(d);
	return n;
}

static void test_threads_named_and_gone(void **state)
{
	static const char *const names[] = {"rf-fault/vm0", "rf-swap/vm0", "rf-scan/0",
					    "rf-policy"};
	struct rf_dedup_config dc;
	rf_engine *e = rf_test_swap_engine(NULL, false, 0, 0);
	void *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 << 20, &ram);

	(void)state;
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_INTRA_VM;
	dc.scan_threads = 1;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_int_equal(rf_vm_set_swap_target(vm, 2 << 20), 0);
	assert_int_equal(rf_policy_start(e, 200), 0);
	/* Each names itself as it starts. */
	for (unsigned int ms = 0; ms < 2000; ms += 10) {
		bool all = true;

		for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			all = all && threads_named(names[i]) == 1;
		if (all)
			break;
		rf_test_sleep_ms(10);
	}
	for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (threads_named(names[i]) != 1)
			fail_msg("no thread named %s", names[i]);
	rf_engine_free(e);
	for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (threads_named(names[i]) != 0)
			fail_msg("%s outlived rf_engine_free", names[i]);
}

static unsigned int nr_threads(void)
{
	DIR *d = opendir("/proc/self/task");
	struct dirent *de;
	unsigned int n = 0;

	assert_non_null(d);
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Pages merged and unmerged (store pages recycled through RCU callbacks,
 * the content index resized), then the engine freed: the process has the
 * threads it had before, liburcu's workers included. */
static void test_no_thread_outlives_the_engine(void **state)
{
	unsigned int before = nr_threads();
	struct rf_dedup_config dc;
	rf_engine *e = rf_test_engine(NULL);
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 32 << 20, (void **)&ram);

	(void)state;
	for (unsigned int i = 0; i < 8192; i++)
		dedup_fill_page(ram + (uint64_t)i * 4096, i % 512);
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_INTRA_VM;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_true(dedup_wait_converged(e, 3, 30000));
	for (unsigned int i = 0; i < 8192; i += 2)
		ram[(uint64_t)i * 4096] ^= 1; /* break half of them */
	assert_true(dedup_wait_converged(e, 3, 30000));
	rf_engine_free(e);
	if (nr_threads() != before)
		fail_msg("%u threads before the engine, %u after rf_engine_free", before,
			 nr_threads());
}

/* ---- the thread_start hook (rf_engine_config) ---- */

#define MAX_CALLS 32

struct hook_log {
	pthread_mutex_t lock;
	unsigned int n;
	struct {
		char name[16]; /* as the hook was given it */
		char comm[16]; /* the calling thread's name, read in the hook */
		pid_t tid;
	} call[MAX_CALLS];
};

static void on_thread_start(void *arg, const char *name)
{
	struct hook_log *h = arg;
	char comm[16] = "";
	FILE *f = fopen("/proc/thread-self/comm", "re");

	if (f) {
		if (fgets(comm, sizeof(comm), f))
			comm[strcspn(comm, "\n")] = 0;
		fclose(f);
	}
	pthread_mutex_lock(&h->lock);
	if (h->n < MAX_CALLS) {
		snprintf(h->call[h->n].name, sizeof(h->call[h->n].name), "%s", name);
		snprintf(h->call[h->n].comm, sizeof(h->call[h->n].comm), "%s", comm);
		h->call[h->n].tid = (pid_t)syscall(SYS_gettid);
	}
	h->n++;
	pthread_mutex_unlock(&h->lock);
}

static unsigned int calls_named(struct hook_log *h, const char *name)
{
	unsigned int n = 0;

	pthread_mutex_lock(&h->lock);
	for (unsigned int i = 0; i < h->n && i < MAX_CALLS; i++)
		n += strcmp(h->call[i].name, name) == 0;
	pthread_mutex_unlock(&h->lock);
	return n;
}

/* Start every kind of library thread on @e (the RCU worker with dedup). */
static void start_all(rf_engine *e, rf_vm **vmp)
{
	struct rf_dedup_config dc;
	struct rf_swap_config sc;
	void *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 << 20, &ram);

	rf_swap_config_init(&sc);
	sc.dir = "/var/tmp";
	assert_int_equal(rf_engine_set_swap(e, &sc), 0);
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_INTRA_VM;
	dc.scan_threads = 1;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_int_equal(rf_vm_set_swap_target(vm, 2 << 20), 0);
	assert_int_equal(rf_policy_start(e, 200), 0);
	*vmp = vm;
}

/* The hook runs once in each library thread, in that thread (its tid is
 * not the caller's, its name is already set), with the thread's name. */
static void test_thread_start_hook(void **state)
{
	static const char *const names[] = {"rf-fault/vm0", "rf-swap/vm0", "rf-scan/0", "rf-policy",
					    "rf-rcu"};
	struct hook_log h = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct rf_engine_config cfg;
	struct rf_features f = {.size = sizeof(f)};
	pid_t me = (pid_t)syscall(SYS_gettid);
	rf_engine *e = NULL;
	rf_vm *vm;

	(void)state;
	rf_engine_config_init(&cfg);
	cfg.thread_start = on_thread_start;
	cfg.thread_arg = &h;
	assert_int_equal(rf_engine_new(&cfg, &e), 0);
	rf_engine_features(e, &f);
	if (!f.uffd || !f.uffd_wp) {
		rf_engine_free(e);
		rf_require(false, "userfaultfd with write-protect needed");
	}
	start_all(e, &vm);
	for (unsigned int ms = 0; ms < 2000; ms += 10) {
		bool all = true;

		for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++)
			all = all && calls_named(&h, names[i]) == 1;
		if (all)
			break;
		rf_test_sleep_ms(10);
	}
	rf_engine_free(e);
	for (unsigned int i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (calls_named(&h, names[i]) != 1)
			fail_msg("thread_start ran %u times for %s", calls_named(&h, names[i]),
				 names[i]);
	assert_int_equal(h.n, sizeof(names) / sizeof(names[0]));
	for (unsigned int i = 0; i < h.n; i++) {
		if (h.call[i].tid == me)
			fail_msg("thread_start for %s ran in the caller's thread", h.call[i].name);
		if (strcmp(h.call[i].comm, h.call[i].name))
			fail_msg("thread_start for %s ran in a thread named %s", h.call[i].name,
				 h.call[i].comm);
		for (unsigned int j = 0; j < i; j++)
			if (h.call[j].tid == h.call[i].tid)
				fail_msg("%s and %s: one thread", h.call[j].name, h.call[i].name);
	}
}

/* The 0.2 version of rf_engine_new (lib/abi_0_2.c), as a binary built
 * against 0.2 calls it. */
int rf_engine_new_v02(const void *cfg, rf_engine **out);

/* A config in the 0.2 layout has no thread_start: none runs, even with the
 * bytes after the 0.2 struct holding what a 0.3 struct would have there. */
static void test_v02_config_gets_no_hook(void **state)
{
	struct hook_log h = {.lock = PTHREAD_MUTEX_INITIALIZER};
	struct rf_engine_config cfg;
	struct rf_features f = {.size = sizeof(f)};
	rf_engine *e = NULL;
	rf_vm *vm;

	(void)state;
	rf_engine_config_init(&cfg);
	cfg.thread_start = on_thread_start;
	cfg.thread_arg = &h;
	/* The 0.2 struct starts where the 0.3 one's size member ends. */
	assert_int_equal(rf_engine_new_v02((const char *)&cfg + sizeof(size_t), &e), 0);
	rf_engine_features(e, &f);
	if (!f.uffd || !f.uffd_wp) {
		rf_engine_free(e);
		rf_require(false, "userfaultfd with write-protect needed");
	}
	start_all(e, &vm);
	/* Threads name themselves once running: under ASan on a busy host
	 * that can take a while. */
	for (unsigned int ms = 0;
	     ms < 5000 && (threads_named("rf-policy") == 0 || threads_named("rf-scan/0") == 0);
	     ms += 10)
		rf_test_sleep_ms(10);
	assert_int_equal(threads_named("rf-scan/0"), 1);
	rf_engine_free(e);
	assert_int_equal(h.n, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_threads_named_and_gone),
	    cmocka_unit_test(test_no_thread_outlives_the_engine),
	    cmocka_unit_test(test_thread_start_hook),
	    cmocka_unit_test(test_v02_config_gets_no_hook),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
