/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <time.h>
#include <string.h>

#include "compat_linux.h"
#include "dedup_util.h"
#include "internal.h"
#include "rf_test.h"
#include "swap_pager.h"
#include "vmm_proc.h"

static void capture(void *arg, enum rf_log_level level, const char *msg)
{
	struct rf_test_log *log = arg;

	(void)level;
	snprintf(log->last, sizeof(log->last), "%s", msg);
	log->count++;
}

rf_engine *rf_test_engine(struct rf_test_log *log)
{
	return rf_test_engine_cap(0, log);
}

rf_engine *rf_test_engine_cap(uint64_t capacity, struct rf_test_log *log)
{
	struct rf_engine_config cfg;
	rf_engine *e = NULL;

	rf_engine_config_init(&cfg);
	if (capacity)
		cfg.host_capacity_bytes = capacity;
	/* RF_TEST_HIDE=uffd-move,...: run the suite on the paths of an older
	 * kernel (the Makefile's compat run). */
	if (getenv("RF_TEST_HIDE"))
		assert_int_equal(rf_engine_config_hide(&cfg, getenv("RF_TEST_HIDE")), 0);
	if (log) {
		memset(log, 0, sizeof(*log));
		cfg.log = capture;
		cfg.log_arg = log;
		cfg.log_level = RF_LOG_DEBUG;
	}
	assert_int_equal(rf_engine_new(&cfg, &e), 0);
	return e;
}

rf_engine *rf_test_swap_engine(struct rf_test_log *log, bool need_kvm, uint64_t file_limit,
			       uint64_t tier_limit)
{
	rf_engine *e = rf_test_engine(log);
	struct rf_swap_config c;
	struct rf_features f = {.size = sizeof(f)};

	rf_engine_features(e, &f);
	if ((need_kvm && !f.kvm) || !f.uffd || !f.uffd_wp) {
		rf_engine_free(e);
		rf_require(false, need_kvm && !f.kvm ? "/dev/kvm not available"
						     : "userfaultfd with write-protect needed");
	}
	rf_swap_config_init(&c);
	c.dir = "/var/tmp";
	if (file_limit)
		c.file_limit_bytes = file_limit;
	c.tier_limit_bytes = tier_limit;
	assert_int_equal(rf_engine_set_swap(e, &c), 0);
	return e;
}

rf_vm *rf_test_vm_unmapped(rf_engine *e, const char *name, uint64_t ram_bytes)
{
	struct rf_vm_config vc;
	rf_vm *vm = NULL;

	rf_vm_config_init(&vc);
	vc.ram_bytes = ram_bytes;
	assert_int_equal(rf_vm_new(e, name, &vc, &vm), 0);
	return vm;
}

rf_vm *rf_test_vm(rf_engine *e, const char *name, uint64_t ram_bytes, void **hva)
{
	rf_vm *vm = rf_test_vm_unmapped(e, name, ram_bytes);
	void *p = NULL;

	assert_int_equal(rf_vm_map_ram(vm, 0, ram_bytes, &p), 0);
	if (hva)
		*hva = p;
	return vm;
}

bool rf_test_all_zero(const void *p, size_t len)
{
	const uint8_t *b = p;

	for (size_t k = 0; k < len; k++)
		if (b[k])
			return false;
	return true;
}

uint64_t rf_test_every_state_seed(unsigned int i)
{
	return i >= 8 && i < 16 ? (i < 12 ? 1 : 2) : 1000 + i;
}

void rf_test_every_state(rf_engine *e, rf_vm *vm, uint8_t *ram, unsigned int npages)
{
	struct rf_dedup_config dc;
	struct rf_pager *p;
	uint64_t done = 0;

	assert_true(npages >= 36);
	for (unsigned int i = 0; i < npages; i++)
		dedup_fill_page(ram + (uint64_t)i * 4096, rf_test_every_state_seed(i));
	memset(ram + 24 * 4096, 0, 8 * 4096);
	assert_int_equal(rf_vm_exclude_range(vm, 33 * 4096, 4096, true), 0);
	assert_int_equal(rf_swap_pager_get(vm, &p), 0);
	assert_int_equal(rf_swap_pager_swap_out(p, 16 * 4096, 8, &done), 0);
	assert_int_equal(done, 8);
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_INTRA_VM;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	assert_true(dedup_wait_converged(e, 3, 20000));
	/* Pages 8-11 and 12-15 are two sets of four copies: 8 pages shared. */
	dedup_wait_sharing(e, 8, 10000);
	for (unsigned int i = 8; i < 16; i++)
		assert_int_equal(rf_vm_page_state(vm, i * 4096), RF_PAGE_MERGED);
	for (unsigned int i = 16; i < 24; i++)
		assert_true(rf_vm_page_state(vm, i * 4096) == RF_PAGE_SWAPPED ||
			    rf_vm_page_state(vm, i * 4096) == RF_PAGE_COMPRESSED);
	assert_int_equal(rf_vm_page_state(vm, 24 * 4096), RF_PAGE_ZERO);
	assert_int_equal(rf_vm_discard_as(vm, 32 * 4096, 1, RF_PAGE_BALLOONED, NULL), 0);
}

static uint64_t read_kb_field(const char *path, const char *field)
{
	char line[256], key[64];
	unsigned long long kb;
	FILE *f = fopen(path, "re");
	uint64_t v = UINT64_MAX;

	if (!f)
		return v;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%63[^:]: %llu kB", key, &kb) == 2 && strcmp(key, field) == 0) {
			v = (uint64_t)kb * 1024;
			break;
		}
	}
	fclose(f);
	return v;
}

uint64_t rf_test_smaps_rollup(const char *field)
{
	return read_kb_field("/proc/self/smaps_rollup", field);
}

uint64_t rf_test_meminfo(const char *field)
{
	return read_kb_field("/proc/meminfo", field);
}

void rf_test_set_state(rf_vm *vm, uint64_t gpa, enum rf_page_state s)
{
	struct rf_region *r = __rf_vm_find_region(vm, gpa);
	rf_pte_t *p;
	uint64_t v;

	assert_non_null(r);
	p = &r->pte[rf_region_index(r, gpa)];
	v = rf_pte_lock(p);
	/* Behind the table's back, not as a transition: a faked state often
	 * contradicts the kernel on purpose, which a debug build's transition
	 * check (RF_DEBUG_TRANSITIONS) would stop. The counters move as
	 * rf_pte_unlock would move them. */
	atomic_fetch_sub(&vm->state_pages[rf_pte_state(v)], 1);
	atomic_fetch_add(&vm->state_pages[s], 1);
	atomic_store_explicit(p, rf_pte_with_state(v, s), memory_order_release);
}

uint64_t rf_test_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void rf_test_sleep_ms(unsigned int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

void rf_test_vm_query(struct vmm_proc *p, const char *cmd, const char *vm, char *reply, size_t len)
{
	char req[160];

	snprintf(req, sizeof(req), "{\"execute\":\"%s\",\"arguments\":{\"vm\":\"%s\"}}", cmd, vm);
	assert_int_equal(vmm_proc_ctl(p, req, reply, len, 5000), 0);
	if (!strstr(reply, "\"return\""))
		fail_msg("%s: %s", cmd, reply);
}

int64_t rf_test_json_num(const char *reply, const char *key)
{
	char pat[80];
	const char *p;

	snprintf(pat, sizeof(pat), "\"%s\":", key);
	p = strstr(reply, pat);
	if (!p)
		fail_msg("no %s in %s", key, reply);
	return strtoll(p + strlen(pat), NULL, 10);
}

struct at_nice {
	int nice;
	unsigned int n;
};

static bool check_nice(pid_t pid, int tid, void *arg)
{
	struct at_nice *a = arg;
	int v;

	errno = 0;
	v = getpriority(PRIO_PROCESS, (id_t)tid);
	if (errno || v != a->nice)
		fail_msg("thread %d of %d at nice %d, not %d", tid, (int)pid, v, a->nice);
	a->n++;
	return true;
}

unsigned int rf_test_threads_at_nice(int pid, const char *prefix, int nice)
{
	struct at_nice a = {nice, 0};

	vmm_threads_named(pid, prefix, check_nice, &a);
	return a.n;
}

bool rf_test_moved_out(const char *where, void *arg, const void *page)
{
	const struct uffdio_move *mv = arg;
	uint64_t a = (uintptr_t)page;

	return strcmp(where, "swap.moved") == 0 && mv->src <= a && a < mv->src + mv->len &&
	       mv->move == (int64_t)mv->len;
}
