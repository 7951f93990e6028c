/* SPDX-License-Identifier: MIT */
/*
 * Regression tests for the races between mechanisms acting on the same page
 * (issue 12), each forcing its interleaving through the library's test
 * points (rf_test_point, internal.h) rather than waiting for the timing:
 *
 *   - copy-mode swap-out of a victim another module discarded between the
 *     pagemap reading that chose it and its lock (it hung every thread);
 *   - copy-mode swap-out of a victim discarded from outside the library while
 *     the swapper holds it (the copy faulted to the fault thread, which cannot
 *     take the lock: the same hang);
 *   - a read, in copy mode, of a page the swapper has stored and discarded
 *     but not yet published (it was answered with zeros);
 *   - a deflate's UFFD_EVENT_REMOVE dispatched after the pages went back to
 *     the guest (it wiped pages the guest wrote and the swapper moved out);
 *   - a discard's UFFD_EVENT_REMOVE dispatched after the discard published
 *     the page's new state (a late event, retried, wiped a page swapped out
 *     again since);
 *   - a discard from outside the library meeting a page whose lock is held
 *     (it must still take effect, once the holder lets go);
 *   - a page the dedup engine is comparing, discarded from outside the
 *     library (the comparison faulted to the fault thread, which cannot take
 *     the lock);
 *   - a writer faulting on the protection of a page the swap pager's fault
 *     handler mapped for a reader while the dedup engine held it (between its
 *     zero discard and its publication): its fault was left to the engine,
 *     which had woken the page's writers already (every thread touching the
 *     page hung);
 *   - the fault thread lifting a write protection nobody claimed while a
 *     module was taking the page to protect it itself (a write slipped past the
 *     module's zero comparison, and its discard lost the write);
 *   - a page written after it was reported free staying FREE_REPORTED;
 *   - the audit reporting a page caught in the middle of a transition;
 *   - the debug build's transition check catching a contradiction.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "compat_linux.h"
#include "internal.h"
#include "rf_test.h"
#include "swap_pager.h"
#include "uffd.h"
#include "virtq_mock.h"

#define MiB	(1ull << 20)
#define PG	RF_PAGE_SIZE
#define NPAGES	16
#define HANG_MS 10000

/* An engine with a swap store, on the paths of @hide ("" for none). */
static rf_engine *engine(const char *hide)
{
	struct rf_engine_config cfg;
	struct rf_swap_config sc;
	struct rf_features f = {.size = sizeof(f)};
	rf_engine *e = NULL;

	rf_engine_config_init(&cfg);
	if (hide[0])
		assert_int_equal(rf_engine_config_hide(&cfg, hide), 0);
	assert_int_equal(rf_engine_new(&cfg, &e), 0);
	rf_engine_features(e, &f);
	if (!f.uffd || !f.uffd_wp) {
		rf_engine_free(e);
		rf_require(false, "userfaultfd with write-protect needed");
	}
	rf_swap_config_init(&sc);
	sc.dir = "/var/tmp";
	sc.tier_limit_bytes = 4 * MiB;
	assert_int_equal(rf_engine_set_swap(e, &sc), 0);
	return e;
}

static void fill(uint8_t *p, uint64_t i, uint32_t gen)
{
	for (unsigned int k = 0; k < PG; k += 8) {
		uint64_t x = (i + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)gen << 32) ^ k;

		memcpy(p + k, &x, 8);
	}
}

static bool check(const uint8_t *p, uint64_t i, uint32_t gen)
{
	uint8_t want[PG];

	fill(want, i, gen);
	return memcmp(p, want, PG) == 0;
}

static bool all_zero(const uint8_t *p)
{
	for (unsigned int k = 0; k < PG; k++)
		if (p[k])
			return false;
	return true;
}

static bool swapped_out(int s)
{
	return s == RF_PAGE_SWAPPED || s == RF_PAGE_COMPRESSED;
}

static rf_pte_t *pte_of(rf_vm *vm, uint64_t gpa)
{
	struct rf_region *r = __rf_vm_find_region(vm, gpa);

	assert_non_null(r);
	return &r->pte[rf_region_index(r, gpa)];
}

/* ---- a swap-out in a thread, with a deadline ---------------------------- */

struct swap_job {
	struct rf_pager *p;
	uint64_t npages, done;
	int err;
	_Atomic bool finished;
};

static void *swap_job_main(void *arg)
{
	struct swap_job *j = arg;

	j->err = rf_swap_pager_swap_out(j->p, 0, j->npages, &j->done);
	atomic_store(&j->finished, true);
	return NULL;
}

/* Run the swap-out; a hang is a failure, reported before the process is
 * taken down (its threads cannot be joined). */
static void swap_out_or_die(struct swap_job *j, const char *what)
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, swap_job_main, j), 0);
	for (unsigned int ms = 0; !atomic_load(&j->finished); ms += 10) {
		if (ms > HANG_MS) {
			fprintf(stderr, "[  FAILED  ] %s: swap-out hung for %u ms\n", what, ms);
			fflush(stderr);
			abort();
		}
		rf_test_sleep_ms(10);
	}
	pthread_join(t, NULL);
}

/* ---- the test points ---------------------------------------------------- */

static struct {
	rf_vm *vm;
	uint64_t gpa; /* the page the hook acts on */
	uint8_t *ram;
	_Atomic int fired;
	/* uffd.dispatch: REMOVE events over @gpa */
	unsigned int delay_ms;
	_Atomic uint64_t dispatched_ns;
	_Atomic int removes;
	_Atomic bool audit_waiting;
	_Atomic int woken; /* 1: the writer was woken by the publication, -1: not */
} tp;

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* swap.victim-picked: the swapper has chosen @tp.gpa from pagemap and is
 * about to lock it. Another module discards it first, as the dedup engine
 * does to a page it finds zero. */
static void discard_on_pick(const char *where, void *arg)
{
	if (strcmp(where, "swap.victim-picked") != 0 || arg != pte_of(tp.vm, tp.gpa) ||
	    atomic_exchange(&tp.fired, 1))
		return;
	assert_int_equal(rf_vm_discard_as(tp.vm, tp.gpa, 1, RF_PAGE_ZERO, NULL), 0);
}

/* swap.victims-locked: the swapper holds its victims. Someone outside the
 * library (the VMM's own madvise) discards one of them. */
static void discard_outside_when_locked(const char *where, void *arg)
{
	(void)arg;
	if (strcmp(where, "swap.victims-locked") != 0 || atomic_exchange(&tp.fired, 1))
		return;
	assert_int_equal(madvise(tp.ram + tp.gpa, PG, MADV_DONTNEED), 0);
}

/* A thread that touches a page, as a vCPU would: a write of one byte, or a
 * read of the whole page (kept in @copy). */
struct toucher {
	volatile uint8_t *page;
	bool write;
	uint8_t copy[PG];
	_Atomic bool done;
};

static struct toucher rdr, wtr;

static void *touch_main(void *arg)
{
	struct toucher *t = arg;

	if (t->write)
		t->page[100] = 0x5a;
	else
		memcpy(t->copy, (const uint8_t *)t->page, PG);
	atomic_store(&t->done, true);
	return NULL;
}

static uint64_t faults(rf_vm *vm, enum rf_uffd_kind kind)
{
	struct rf_uffd_stats us;

	rf_uffd_stats(vm->uffd, &us);
	return us.msgs[kind];
}

/* Start @t on @page, and return once a fault of @kind it caused has reached the
 * fault thread and had time to be dealt with (or the page needed no fault). */
static void touch(struct toucher *t, uint8_t *page, bool write, enum rf_uffd_kind kind)
{
	uint64_t before = faults(tp.vm, kind);
	pthread_t th;

	t->page = page;
	t->write = write;
	atomic_store(&t->done, false);
	assert_int_equal(pthread_create(&th, NULL, touch_main, t), 0);
	pthread_detach(th);
	for (unsigned int ms = 0;
	     faults(tp.vm, kind) == before && !atomic_load(&t->done) && ms < 2000; ms++)
		rf_test_sleep_ms(1);
	rf_test_sleep_ms(20);
}

/* swap.discarded: copy mode has stored and discarded a run, and not yet
 * published it swapped. A reader (a vCPU) touches a page of it now, and its
 * fault reaches the fault thread before the swapper goes on. */
static void read_when_discarded(const char *where, void *arg)
{
	if (strcmp(where, "swap.discarded") != 0 || (uint8_t *)arg > tp.ram + tp.gpa ||
	    atomic_exchange(&tp.fired, 1))
		return;
	touch(&rdr, tp.ram + tp.gpa, false, RF_UFFD_FAULT_MISSING);
}

/* uffd.dispatch: note when a REMOVE event over @tp.gpa is dispatched,
 * after holding the fault thread back for @tp.delay_ms. */
static void note_remove_dispatch(const char *where, void *arg)
{
	const struct uffd_msg *m = arg;
	uint64_t a = (uintptr_t)(tp.ram + tp.gpa);

	if (strcmp(where, "uffd.dispatch") != 0 || m->event != UFFD_EVENT_REMOVE ||
	    m->arg.remove.start > a || m->arg.remove.end <= a)
		return;
	rf_test_sleep_ms(tp.delay_ms);
	atomic_fetch_add(&tp.removes, 1);
	atomic_store(&tp.dispatched_ns, now_ns());
}

/* dedup.compare: the merger holds its run write-protected and is about to
 * compare it. The VMM discards the page behind its back. */
static void discard_outside_when_comparing(const char *where, void *arg)
{
	if (strcmp(where, "dedup.compare") != 0 || arg != tp.ram + tp.gpa ||
	    atomic_exchange(&tp.fired, 1))
		return;
	assert_int_equal(madvise(arg, PG, MADV_DONTNEED), 0);
}

/* dedup.zero-discarded: the engine has discarded a zero run and not yet
 * published it. A reader touches the page (the swap pager's handler maps it for
 * the read, write-protected), then a writer, whose protection fault reaches the
 * fault thread while the engine still holds the page. */
static void read_then_write_when_zero_discarded(const char *where, void *arg)
{
	/* Once the run is published: the writer must have been woken by now.
	 * The scanner waits here, so no later pass can wake it instead. */
	if (strcmp(where, "dedup.zero-published") == 0 && atomic_load(&tp.fired) == 1) {
		for (unsigned int ms = 0; !atomic_load(&wtr.done) && ms < 2000; ms++)
			rf_test_sleep_ms(1);
		atomic_store(&tp.woken, atomic_load(&wtr.done) ? 1 : -1);
		atomic_store(&tp.fired, 2);
		return;
	}
	if (strcmp(where, "dedup.zero-discarded") != 0 || (uint8_t *)arg > tp.ram + tp.gpa ||
	    atomic_exchange(&tp.fired, 1))
		return;
	touch(&rdr, tp.ram + tp.gpa, false, RF_UFFD_FAULT_MISSING);
	for (unsigned int ms = 0; !atomic_load(&rdr.done) && ms < HANG_MS; ms++)
		rf_test_sleep_ms(1);
	touch(&wtr, tp.ram + tp.gpa, true, RF_UFFD_FAULT_WP);
}

/* dedup.compare on @tp.gpa: the page is write-protected for the
 * comparison. A writer faults on it (left to the engine, which holds it),
 * and the comparison takes @tp.delay_ms longer: the writer waits for both. */
#define HOLD_MS 50
static void write_when_comparing(const char *where, void *arg)
{
	if (strcmp(where, "dedup.compare") != 0 || arg != tp.ram + tp.gpa ||
	    atomic_exchange(&tp.fired, 1))
		return;
	atomic_store(&tp.dispatched_ns, now_ns()); /* the writer's start */
	touch(&wtr, tp.ram + tp.gpa, true, RF_UFFD_FAULT_WP);
	rf_test_sleep_ms(HOLD_MS);
}

static void audit_recheck_point(const char *where, void *arg)
{
	(void)arg;
	if (strcmp(where, "audit.recheck") == 0)
		atomic_store(&tp.audit_waiting, true);
}

/* swap.moved: a move over @tp.gpa did move the page, and the kernel says
 * it failed there with EEXIST, having moved only the pages before it: what
 * Linux 6.18 was seen to report for a page it had moved. */
static void miscount_move(const char *where, void *arg)
{
	struct uffdio_move *mv = arg;
	uint64_t a = (uintptr_t)(tp.ram + tp.gpa);

	if (!rf_test_moved_out(where, arg, tp.ram + tp.gpa) || atomic_exchange(&tp.fired, 1))
		return;
	mv->move = a > mv->src ? (int64_t)(a - mv->src) : -EEXIST;
}

/* swap.moved: the run over @tp.gpa has just left guest RAM, still locked
 * and not yet published. The VMM discards the page now (madvise from this
 * thread; it waits for the fault thread to read the event): what the kernel
 * allows between reading a REMOVE event and zapping its range, where a move
 * finds the page still there. */
static void discard_outside_when_moved(const char *where, void *arg)
{
	if (!rf_test_moved_out(where, arg, tp.ram + tp.gpa) || atomic_exchange(&tp.fired, 1))
		return;
	assert_int_equal(madvise(tp.ram + tp.gpa, PG, MADV_DONTNEED), 0);
}

static int teardown_points(void **state)
{
	(void)state;
	rf_test_point = NULL;
	memset(&tp, 0, sizeof(tp));
	return 0;
}

/* ---- tests -------------------------------------------------------------- */

/* Every page but @except holds what vm_with_pages wrote. */
static void others_intact(const uint8_t *ram, uint64_t except)
{
	for (uint64_t i = 0; i < NPAGES; i++)
		if (i != except)
			assert_true(check(ram + i * PG, i, 1));
}

static rf_vm *vm_with_pages(rf_engine *e, uint8_t **ram)
{
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)ram);

	for (uint64_t i = 0; i < NPAGES; i++)
		fill(*ram + i * PG, i, 1);
	return vm;
}

/* Swap out every page of @vm with @point set on @gpa; one page (the one
 * @point acts on) is expected to stay. */
static void swap_all_with_point(rf_vm *vm, uint8_t *ram, uint64_t gpa,
				void (*point)(const char *, void *), const char *what)
{
	struct swap_job j = {0};

	tp.vm = vm;
	tp.ram = ram;
	tp.gpa = gpa;
	rf_test_point = point;
	assert_int_equal(rf_swap_pager_get(vm, &j.p), 0);
	j.npages = NPAGES;
	swap_out_or_die(&j, what);
	rf_test_point = NULL;
	assert_int_equal(atomic_load(&tp.fired), 1);
	assert_int_equal(j.err, 0);
	assert_int_equal(j.done, NPAGES - 1);
}

/* Copy mode: the victim was found resident, then discarded (ZERO) before
 * the swapper locked it. Before the fix the swapper copied the absent page
 * with memcpy: the read faulted to the fault thread, which could never take
 * the lock the swapper held, and every thread of the VM hung. */
static void test_copy_mode_victim_discarded_before_lock(void **state)
{
	rf_engine *e = engine("uffd-move,pagemap-scan");
	uint8_t *ram;
	rf_vm *vm = vm_with_pages(e, &ram);

	(void)state;
	swap_all_with_point(vm, ram, 3 * PG, discard_on_pick,
			    "copy mode, victim discarded before its lock");
	assert_int_equal(rf_vm_page_state(vm, 3 * PG), RF_PAGE_ZERO);
	assert_true(all_zero(ram + 3 * PG));
	for (uint64_t i = 0; i < NPAGES; i++) {
		if (i == 3)
			continue;
		assert_int_not_equal(rf_vm_page_state(vm, i * PG), RF_PAGE_PRIVATE);
		assert_true(check(ram + i * PG, i, 1));
	}
	rf_engine_free(e);
}

/* Copy mode: a victim is discarded by the VMM itself (madvise outside the
 * library) while the swapper holds it. The copy must not fault on it; the
 * page stays PRIVATE and reads as the discard left it: zeros. */
static void test_copy_mode_victim_discarded_outside(void **state)
{
	rf_engine *e = engine("uffd-move,pagemap-scan");
	uint8_t *ram;
	rf_vm *vm = vm_with_pages(e, &ram);

	(void)state;
	swap_all_with_point(vm, ram, 5 * PG, discard_outside_when_locked,
			    "copy mode, victim discarded from outside while locked");
	assert_int_equal(rf_vm_page_state(vm, 5 * PG), RF_PAGE_PRIVATE);
	assert_true(all_zero(ram + 5 * PG));
	others_intact(ram, 5);
	rf_engine_free(e);
}

/* Copy mode: between the discard of a stored run and its publication as
 * swapped, its pages are absent and locked, marked write-protected. A read
 * fault then must wait for the swap-out and get the page's content back.
 * Before the fix the swap pager took the absent protected page for one
 * discarded from outside and answered with zeros, and the page was then
 * published swapped with zeros mapped over it (a guest's page tables read
 * as zeros: a triple fault). */
static void test_copy_mode_read_between_discard_and_publish(void **state)
{
	rf_engine *e = engine("uffd-move,pagemap-scan");
	struct swap_job j = {0};
	uint8_t *ram;
	rf_vm *vm = vm_with_pages(e, &ram);

	(void)state;
	assert_int_equal(rf_swap_pager_get(vm, &j.p), 0);
	tp.vm = vm;
	tp.ram = ram;
	tp.gpa = 10 * PG;
	memset(&rdr, 0, sizeof(rdr));
	rf_test_point = read_when_discarded;
	j.npages = NPAGES;
	swap_out_or_die(&j, "copy mode, read between discard and publication");
	rf_test_point = NULL;
	assert_int_equal(atomic_load(&tp.fired), 1);
	for (unsigned int ms = 0; !atomic_load(&rdr.done) && ms < HANG_MS; ms++)
		rf_test_sleep_ms(1);
	assert_true(atomic_load(&rdr.done));
	assert_true(check(rdr.copy, 10, 1));
	for (uint64_t i = 0; i < NPAGES; i++)
		assert_true(check(ram + i * PG, i, 1));
	rf_engine_free(e);
}

/* Move mode (skips the test where the kernel has no UFFDIO_MOVE): swap out
 * every page of a new VM with @point set on @gpa. */
static void move_out_with_point(rf_engine *e, rf_vm *vm, uint8_t *ram, uint64_t gpa,
				void (*point)(const char *, void *), const char *what,
				struct swap_job *j)
{
	struct rf_features f = {.size = sizeof(f)};

	assert_int_equal(rf_engine_features(e, &f), 0);
	if (!f.uffd_move) {
		rf_engine_free(e);
		skip();
	}
	tp.ram = ram;
	tp.gpa = gpa;
	rf_test_point = point;
	assert_int_equal(rf_swap_pager_get(vm, &j->p), 0);
	j->npages = NPAGES;
	swap_out_or_die(j, what);
	rf_test_point = NULL;
	assert_int_equal(atomic_load(&tp.fired), 1);
	assert_int_equal(j->err, 0);
}

/* Move mode: the kernel moves a page out of guest RAM and reports that it
 * did not (the count UFFDIO_MOVE gives is short). The swap pager follows
 * the page tables: the page is in the staging buffer, so it is stored and
 * published swapped. Before the fix it trusted the count, published the
 * page PRIVATE and dropped its content with the staging buffer, and the
 * guest read zeros (the stress test's lost writes in move mode). */
static void test_move_miscounted_by_kernel(void **state)
{
	rf_engine *e = engine("");
	struct swap_job j = {0};
	uint8_t *ram;
	rf_vm *vm = vm_with_pages(e, &ram);

	(void)state;
	move_out_with_point(e, vm, ram, 5 * PG, miscount_move, "move miscounted by the kernel", &j);
	for (uint64_t i = 0; i < NPAGES; i++) {
		if (!check(ram + i * PG, i, 1)) {
			fprintf(stderr,
				"[  FAILED  ] page %" PRIu64 " lost after a miscounted move\n", i);
			fflush(stderr);
		}
		assert_true(check(ram + i * PG, i, 1));
	}
	assert_int_equal(j.done, NPAGES); /* all of them went out */
	rf_engine_free(e);
}

/* Move mode: a page is discarded from outside while a swap-out that took
 * its bytes out of the mapping still holds it. The REMOVE handler finds it
 * locked and not yet swapped; it may not wait (the holder may need the
 * fault thread), so it marks it, and the swap-out publishes it swapped
 * with the mark: the next touch reads zeros, and its slot is freed. Before
 * the fix the handler passed over a page that was not swapped yet, and the
 * page came back from the store with the bytes the VMM had discarded. */
static void test_move_out_discarded_outside(void **state)
{
	rf_engine *e = engine("");
	struct rf_swap_stats st = {.size = sizeof(st)};
	struct swap_job j = {0};
	uint8_t *ram;
	rf_vm *vm = vm_with_pages(e, &ram);

	(void)state;
	move_out_with_point(e, vm, ram, 7 * PG, discard_outside_when_moved,
			    "move out, discarded from outside before publication", &j);
	assert_true(all_zero(ram + 7 * PG));
	assert_int_equal(rf_vm_page_state(vm, 7 * PG), RF_PAGE_ZERO);
	others_intact(ram, 7);
	/* Every page is back in memory: no slot is left behind. */
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_int_equal(st.file_bytes + st.tier_bytes, 0);
	rf_engine_free(e);
}

/* A discard's REMOVE event is dispatched before the discard lets go of the
 * page, however slow the fault thread is. Before the fix rf_vm_discard_as returned
 * as soon as the event was read; its handler then ran against whatever the page
 * had become (retried, it wiped a page swapped out again since). */
static void test_discard_waits_for_its_event(void **state)
{
	rf_engine *e = engine("");
	struct swap_job j = {0};
	uint64_t returned;
	uint8_t *ram;
	rf_vm *vm = vm_with_pages(e, &ram);

	(void)state;
	assert_int_equal(rf_swap_pager_get(vm, &j.p), 0);
	j.npages = NPAGES;
	swap_out_or_die(&j, "swap-out before the discard");
	assert_true(swapped_out(rf_vm_page_state(vm, 7 * PG)));
	tp.ram = ram;
	tp.gpa = 7 * PG;
	tp.delay_ms = 100;
	rf_test_point = note_remove_dispatch;
	assert_int_equal(rf_vm_discard_as(vm, 7 * PG, 1, RF_PAGE_FREE_REPORTED, NULL), 0);
	returned = now_ns();
	rf_test_point = NULL;
	assert_int_equal(atomic_load(&tp.removes), 1);
	assert_true(atomic_load(&tp.dispatched_ns) < returned);
	/* The page is the guest's again: written, swapped out anew, and intact
	 * however late any event runs. */
	fill(ram + 7 * PG, 7, 2);
	assert_int_equal(rf_vm_page_state(vm, 7 * PG), RF_PAGE_PRIVATE);
	j.finished = false;
	swap_out_or_die(&j, "swap-out after the discard");
	assert_true(swapped_out(rf_vm_page_state(vm, 7 * PG)));
	assert_int_equal(rf_uffd_sync(vm->uffd), 0);
	assert_true(check(ram + 7 * PG, 7, 2));
	rf_engine_free(e);
}

/* A deflate discards its pages once more (a page the guest wrote while
 * ballooned still comes back as zero). Its REMOVE event, like every
 * discard's, is dispatched before the pages are the guest's again, however
 * slow the fault thread is. Before the fix the deflate used a plain madvise and
 * returned once the event was read; handled late, the event wiped pages
 * the guest had written and the swapper had moved out since (the stress
 * test's lost writes: every lost page had been deflated shortly before). */
static void test_deflate_waits_for_its_event(void **state)
{
	struct rf_swap_config sc;
	uint32_t pfns[4] = {500, 501, 502, 503};
	uint64_t returned;
	struct bdrv d;

	(void)state;
	assert_int_equal(bdrv_setup(&d, 4 * MiB, RF_BALLOON_FEATURES_DEFAULT, NULL, true), 0);
	rf_swap_config_init(&sc);
	sc.dir = "/var/tmp";
	assert_int_equal(rf_engine_set_swap(d.e, &sc), 0);
	/* A target: the VM's swap pager registers its RAM and handles REMOVE. */
	assert_int_equal(rf_vm_set_swap_target(d.vm, 2 * MiB), 0);
	for (unsigned int i = 0; i < 4; i++)
		bdrv_fill_page(&d, pfns[i], 3);
	bdrv_send_pfns(&d, d.inflate_q, pfns, 4);
	assert_int_equal(rf_vm_page_state(d.vm, 500ull << 12), RF_PAGE_BALLOONED);
	tp.ram = d.ram;
	tp.gpa = 500ull << 12;
	tp.delay_ms = 100;
	rf_test_point = note_remove_dispatch;
	bdrv_send_pfns(&d, d.deflate_q, pfns, 4);
	returned = now_ns();
	rf_test_point = NULL;
	assert_int_equal(rf_vm_page_state(d.vm, 500ull << 12), RF_PAGE_PRIVATE);
	assert_int_equal(atomic_load(&tp.removes), 1);
	assert_true(atomic_load(&tp.dispatched_ns) < returned);
	bdrv_teardown(&d);
}

struct madv_job {
	void *addr;
	_Atomic bool done;
};

static void *madv_main(void *arg)
{
	struct madv_job *m = arg;

	madvise(m->addr, PG, MADV_DONTNEED);
	atomic_store(&m->done, true);
	return NULL;
}

/* A discard from outside the library on a swapped page whose lock another
 * thread holds (an audit looking again): it takes effect once the holder
 * lets go. The page reads as zeros and its slot is freed. */
static void test_outside_discard_waits_for_holder(void **state)
{
	rf_engine *e = engine("");
	struct swap_job j = {0};
	struct madv_job mj = {0};
	struct rf_swap_stats st = {.size = sizeof(st)};
	uint64_t v, slots;
	rf_pte_t *pte;
	pthread_t t;
	uint8_t *ram;
	rf_vm *vm = vm_with_pages(e, &ram);

	(void)state;
	assert_int_equal(rf_swap_pager_get(vm, &j.p), 0);
	j.npages = NPAGES;
	swap_out_or_die(&j, "swap-out");
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	slots = st.file_bytes + st.tier_bytes;
	rf_vm_regions_rdlock(vm);
	pte = pte_of(vm, 9 * PG);
	rf_vm_regions_unlock(vm);
	v = rf_pte_lock(pte);
	assert_true(swapped_out(rf_pte_state(v)));
	mj.addr = ram + 9 * PG;
	assert_int_equal(pthread_create(&t, NULL, madv_main, &mj), 0);
	for (unsigned int ms = 0; !atomic_load(&mj.done) && ms < HANG_MS; ms += 5)
		rf_test_sleep_ms(5);
	assert_true(atomic_load(&mj.done));
	rf_test_sleep_ms(20);
	rf_pte_unlock(vm, pte, v, v);
	pthread_join(t, NULL);
	assert_int_equal(rf_uffd_sync(vm->uffd), 0);
	assert_int_equal(rf_vm_page_state(vm, 9 * PG), RF_PAGE_ZERO);
	assert_true(all_zero(ram + 9 * PG));
	assert_int_equal(rf_vm_swap_stats(vm, &st), 0);
	assert_int_equal(st.file_bytes + st.tier_bytes, slots - PG);
	others_intact(ram, 9);
	rf_engine_free(e);
}

/* The dedup engine compares a page (locked, write-protected) that someone
 * outside the library discards just then, on a VM whose RAM is registered for
 * missing faults (it has a swap target). The comparison's read faults; before
 * the fix the fault thread waited for the lock the comparing thread held,
 * forever. Now the read sees zeros, the merge is abandoned, and the page is
 * what the discard left: zeros, PRIVATE. */
static void test_dedup_compare_page_discarded_outside(void **state)
{
	rf_engine *e = engine("");
	struct rf_dedup_config dc;
	struct rf_dedup_stats ds = {.size = sizeof(ds)};
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);

	(void)state;
	fill(ram + 8 * PG, 8, 5);
	/* A twin: 8 and 12 pair up. Both are seen on the first pass (12
	 * finds the key seen: its Bloom bit is set); on the next, 8 is filed
	 * and 12 finds it, and is the page compared (8 seeds the store page). */
	memcpy(ram + 12 * PG, ram + 8 * PG, PG);
	assert_int_equal(rf_vm_set_swap_target(vm, 2 * MiB), 0);
	rf_dedup_config_init(&dc);
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	tp.ram = ram;
	tp.gpa = 12 * PG;
	rf_test_point = discard_outside_when_comparing;
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	for (unsigned int ms = 0; !atomic_load(&tp.fired) && ms < HANG_MS; ms += 10)
		rf_test_sleep_ms(10);
	assert_int_equal(atomic_load(&tp.fired), 1);
	/* The scanner gets past the comparison: two more passes end. */
	assert_int_equal(rf_dedup_counters(e, &ds), 0);
	for (uint64_t passes = ds.scan_passes, ms = 0; ms < HANG_MS; ms += 10) {
		assert_int_equal(rf_dedup_counters(e, &ds), 0);
		if (ds.scan_passes >= passes + 2)
			break;
		rf_dedup_scan_now(e);
		rf_test_sleep_ms(10);
	}
	if (ds.merge_races == 0) {
		fprintf(stderr, "[  FAILED  ] dedup comparison hung on a page discarded outside\n");
		fflush(stderr);
		abort();
	}
	rf_test_point = NULL;
	assert_int_not_equal(rf_vm_page_state(vm, 12 * PG), RF_PAGE_MERGED);
	assert_true(all_zero(ram + 12 * PG));
	assert_true(check(ram + 8 * PG, 8, 5));
	rf_engine_free(e);
}

/* A zero run between its discard and its publication: a reader is answered with
 * a write-protected zeroed page (the engine holds the page), and a writer then
 * faults on that protection. Its fault reaches the fault thread while the page
 * is still marked F_WP, so the fault thread leaves it to the engine; the engine
 * must wake it after clearing the flag. Before the fix it woke the page's
 * writers before publishing, and this writer slept forever. */
static void test_writer_after_read_of_zero_run(void **state)
{
	rf_engine *e = engine("");
	struct rf_dedup_config dc;
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);

	(void)state;
	memset(ram + 6 * PG, 0, PG); /* present, all zero: a zero run of one */
	ram[7 * PG] = 1;
	assert_int_equal(rf_vm_set_swap_target(vm, 2 * MiB), 0);
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_ZERO;
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	tp.vm = vm;
	tp.ram = ram;
	tp.gpa = 6 * PG;
	rf_test_point = read_then_write_when_zero_discarded;
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	for (unsigned int ms = 0; atomic_load(&tp.fired) != 2 && ms < HANG_MS; ms += 10)
		rf_test_sleep_ms(10);
	assert_int_equal(atomic_load(&tp.fired), 2);
	if (atomic_load(&tp.woken) != 1) {
		fprintf(stderr, "[  FAILED  ] a writer of a zero run's page was never woken\n");
		fflush(stderr);
		abort();
	}
	rf_test_point = NULL;
	assert_true(atomic_load(&rdr.done));
	assert_int_equal(ram[6 * PG + 100], 0x5a);
	rf_engine_free(e);
}

/* A writer that faults on a page the dedup engine holds write-protected is
 * left to the engine (uffd.h), which wakes it once the merge is published:
 * the VM's fault stall holds that whole wait (the fault parked until the
 * engine's wake, src/fault_stall.h), not just the fault thread's part. */
static void test_stall_of_writer_held_by_merge(void **state)
{
	rf_engine *e = engine("");
	struct rf_dedup_config dc;
	struct rf_swap_stats a = {.size = sizeof(a)}, b = {.size = sizeof(b)};
	uint8_t *ram;
	rf_vm *vm = rf_test_vm(e, "vm0", 4 * MiB, (void **)&ram);
	uint64_t waited;

	(void)state;
	fill(ram + 8 * PG, 8, 5);
	memcpy(ram + 12 * PG, ram + 8 * PG, PG); /* a twin: 12 is compared */
	assert_int_equal(rf_vm_swap_stats(vm, &a), 0);
	assert_int_equal(a.stall_faults, 0);
	rf_dedup_config_init(&dc);
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	tp.vm = vm;
	tp.ram = ram;
	tp.gpa = 12 * PG;
	memset(&wtr, 0, sizeof(wtr));
	rf_test_point = write_when_comparing;
	assert_int_equal(rf_dedup_add_vm(vm), 0);
	for (unsigned int ms = 0; !atomic_load(&wtr.done) && ms < HANG_MS; ms += 10)
		rf_test_sleep_ms(10);
	assert_true(atomic_load(&wtr.done));
	waited = now_ns() - atomic_load(&tp.dispatched_ns);
	rf_test_point = NULL;
	assert_int_equal(rf_vm_swap_stats(vm, &b), 0);
	print_message("writer held by a merge: %llu faults, stall %.2f ms (held >= %d ms, %.2f ms "
		      "since it started)\n",
		      (unsigned long long)b.stall_faults, (double)b.stall_ns / 1e6, HOLD_MS,
		      (double)waited / 1e6);
	/* Its one fault, and nothing else faulted: the VM has no missing mode. */
	assert_int_equal(b.stall_faults, 1);
	assert_true(b.stall_ns >= HOLD_MS * 1000000ull);
	assert_true(b.stall_ns <= waited);
	assert_int_equal(ram[12 * PG + 100], 0x5a);
	assert_true(check(ram + 8 * PG, 8, 5));
	rf_engine_free(e);
}

static bool uffd_wp_set(rf_vm *vm, const uint8_t *page)
{
	uint64_t pm = 0;

	assert_int_equal(rf_pagemap_read(vm->e, page, 1, &pm), 0);
	return pm & PM_UFFD_WP;
}

/* A write-protect fault on a page whose protection no module claims (no
 * F_WP): the fault thread lifts it, but only holding the page's lock. While a
 * module holds the page (here the test, as a module about to protect it
 * for a comparison), the protection stays and the writer waits. Before
 * the fix the fault thread lifted it at once: a module that had just protected
 * the page for a zero comparison then discarded a page that had been
 * written after all. */
static void test_pager_unprotects_under_page_lock(void **state)
{
	/* Copy mode registers guest RAM for write-protect too. */
	rf_engine *e = engine("uffd-move,pagemap-scan");
	rf_pte_t *pte;
	uint64_t v;
	uint8_t *ram;
	rf_vm *vm = vm_with_pages(e, &ram);

	(void)state;
	assert_int_equal(rf_vm_set_swap_target(vm, 2 * MiB), 0); /* the VM's uffd */
	assert_int_equal(rf_uffd_writeprotect(vm->uffd, ram + 4 * PG, PG, true, false), 0);
	assert_true(uffd_wp_set(vm, ram + 4 * PG));
	rf_vm_regions_rdlock(vm);
	pte = pte_of(vm, 4 * PG);
	rf_vm_regions_unlock(vm);
	v = rf_pte_lock(pte);
	tp.vm = vm;
	touch(&wtr, ram + 4 * PG, true, RF_UFFD_FAULT_WP);
	rf_test_sleep_ms(80);
	assert_false(atomic_load(&wtr.done));
	assert_true(uffd_wp_set(vm, ram + 4 * PG));
	rf_pte_unlock(vm, pte, v, v);
	for (unsigned int ms = 0; !atomic_load(&wtr.done) && ms < HANG_MS; ms++)
		rf_test_sleep_ms(1);
	assert_true(atomic_load(&wtr.done));
	assert_false(uffd_wp_set(vm, ram + 4 * PG));
	assert_int_equal(ram[4 * PG + 100], 0x5a);
	rf_engine_free(e);
}

/* A page reported free and written again is PRIVATE: at once through the
 * fault that brings it back when the VM has a swap target, and by the
 * scanner's next pass when only dedup runs. Before the fix it stayed
 * FREE_REPORTED: never merged, never swapped, charged nothing. */
static void test_reported_page_written_becomes_private(void **state)
{
	rf_engine *e = engine("");
	struct rf_dedup_config dc;
	uint8_t *ram, *ram2;
	rf_vm *vm = vm_with_pages(e, &ram), *vm2;

	(void)state;
	/* The fault: a target registers all of the VM's RAM. */
	assert_int_equal(rf_vm_set_swap_target(vm, 2 * MiB), 0);
	assert_int_equal(rf_vm_discard_as(vm, 2 * PG, 2, RF_PAGE_FREE_REPORTED, NULL), 0);
	assert_int_equal(rf_vm_page_state(vm, 2 * PG), RF_PAGE_FREE_REPORTED);
	ram[2 * PG + 100] = 7;
	assert_int_equal(rf_vm_page_state(vm, 2 * PG), RF_PAGE_PRIVATE);
	assert_int_equal(rf_vm_page_state(vm, 3 * PG), RF_PAGE_FREE_REPORTED);
	assert_int_equal(ram[2 * PG + 100], 7);

	/* The scanner: a VM without a swap pager. */
	rf_dedup_config_init(&dc);
	assert_int_equal(rf_dedup_start(e, &dc), 0);
	vm2 = rf_test_vm(e, "vm2", 4 * MiB, (void **)&ram2);
	for (uint64_t i = 0; i < NPAGES; i++)
		fill(ram2 + i * PG, i, 3);
	assert_int_equal(rf_dedup_add_vm(vm2), 0);
	assert_int_equal(rf_vm_discard_as(vm2, 4 * PG, 1, RF_PAGE_FREE_REPORTED, NULL), 0);
	fill(ram2 + 4 * PG, 4, 4);
	assert_int_equal(rf_dedup_scan_now(e), 0);
	for (unsigned int ms = 0; rf_vm_page_state(vm2, 4 * PG) != RF_PAGE_PRIVATE && ms < 5000;
	     ms += 10)
		rf_test_sleep_ms(10);
	assert_int_equal(rf_vm_page_state(vm2, 4 * PG), RF_PAGE_PRIVATE);
	assert_true(check(ram2 + 4 * PG, 4, 4));
	rf_engine_free(e);
}

struct audit_job {
	rf_vm *vm;
	struct rf_audit_report rep;
	int err;
	_Atomic bool done;
};

static void *audit_main(void *arg)
{
	struct audit_job *a = arg;

	a->err = rf_vm_audit(a->vm, &a->rep, 0);
	atomic_store(&a->done, true);
	return NULL;
}

/* The audit meets a page in the middle of a swap-in: mapped already, its
 * new state not yet published. Its first look (no locks) sees "swapped,
 * but present"; it must look again under the page lock, where the
 * transition is over, and report nothing. Before the fix it returned -EIO
 * for a contradiction that was never there. A real one is still reported. */
static void test_audit_rechecks_under_lock(void **state)
{
	rf_engine *e = rf_test_engine(NULL);
	struct audit_job a = {.rep.size = sizeof(a.rep)};
	struct rf_audit_report rep = {.size = sizeof(rep)};
	uint64_t v;
	rf_pte_t *pte;
	pthread_t t;
	uint8_t *ram;
	rf_vm *vm = vm_with_pages(e, &ram);

	(void)state;
	rf_vm_regions_rdlock(vm);
	pte = pte_of(vm, 6 * PG);
	rf_vm_regions_unlock(vm);
	v = rf_pte_lock(pte);
	/* Mid-transition: the table says SWAPPED, the page is there. */
	atomic_store(pte, rf_pte_with_state(v, RF_PAGE_SWAPPED) | RF_PTE_LOCKED);
	rf_test_point = audit_recheck_point;
	a.vm = vm;
	assert_int_equal(pthread_create(&t, NULL, audit_main, &a), 0);
	for (unsigned int ms = 0;
	     !atomic_load(&tp.audit_waiting) && !atomic_load(&a.done) && ms < HANG_MS; ms += 1)
		rf_test_sleep_ms(1);
	/* The swap-in publishes PRIVATE. */
	rf_pte_unlock(vm, pte, v, v);
	pthread_join(t, NULL);
	rf_test_point = NULL;
	assert_int_equal(a.err, 0);
	assert_int_equal(a.rep.mismatches, 0);

	/* A real contradiction, nobody holding the page: reported. (Written
	 * behind the table's back: a debug build would stop a transition that
	 * made it.) */
	v = rf_pte_lock(pte);
	atomic_store(pte, rf_pte_with_state(v, RF_PAGE_SWAPPED));
	assert_int_equal(rf_vm_audit(vm, &rep, 0), -EIO);
	assert_int_equal(rep.discarded_present, 1);
	assert_int_equal(rep.first_bad_gpa, 6 * PG);
	atomic_store(pte, v);
	rf_engine_free(e);
}

/* Debug builds check each transition against pagemap under the page lock:
 * a page published SWAPPED while its page is still mapped aborts, with the
 * page's history. (Release builds do not check; skipped there.) */
static void test_debug_transition_check(void **state)
{
#ifdef RF_DEBUG_TRANSITIONS
	int pipefd[2], status;
	char out[8192] = "";
	ssize_t n, got = 0;
	pid_t pid;

	(void)state;
	assert_int_equal(pipe(pipefd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		rf_engine *e = rf_test_engine(NULL);
		uint8_t *ram;
		rf_vm *vm = vm_with_pages(e, &ram);
		rf_pte_t *pte;
		uint64_t v;

		dup2(pipefd[1], 2);
		rf_vm_regions_rdlock(vm);
		pte = pte_of(vm, 2 * PG);
		v = rf_pte_lock(pte);
		rf_pte_unlock(vm, pte, v, rf_pte_with_state(v, RF_PAGE_SWAPPED));
		_exit(0); /* not reached */
	}
	close(pipefd[1]);
	while ((n = read(pipefd[0], out + got, sizeof(out) - 1 - (size_t)got)) > 0)
		got += n;
	close(pipefd[0]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT);
	assert_non_null(strstr(out, "private -> swapped contradicts the kernel"));
	assert_non_null(strstr(out, "history of the page"));
#else
	(void)state;
	skip();
#endif
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_teardown(test_copy_mode_victim_discarded_before_lock, teardown_points),
	    cmocka_unit_test_teardown(test_copy_mode_victim_discarded_outside, teardown_points),
	    cmocka_unit_test_teardown(test_copy_mode_read_between_discard_and_publish,
				      teardown_points),
	    cmocka_unit_test_teardown(test_discard_waits_for_its_event, teardown_points),
	    cmocka_unit_test_teardown(test_deflate_waits_for_its_event, teardown_points),
	    cmocka_unit_test_teardown(test_outside_discard_waits_for_holder, teardown_points),
	    cmocka_unit_test_teardown(test_dedup_compare_page_discarded_outside, teardown_points),
	    cmocka_unit_test_teardown(test_writer_after_read_of_zero_run, teardown_points),
	    cmocka_unit_test_teardown(test_stall_of_writer_held_by_merge, teardown_points),
	    cmocka_unit_test_teardown(test_move_miscounted_by_kernel, teardown_points),
	    cmocka_unit_test_teardown(test_move_out_discarded_outside, teardown_points),
	    cmocka_unit_test_teardown(test_pager_unprotects_under_page_lock, teardown_points),
	    cmocka_unit_test_teardown(test_reported_page_written_becomes_private, teardown_points),
	    cmocka_unit_test_teardown(test_audit_rechecks_under_lock, teardown_points),
	    cmocka_unit_test(test_debug_transition_check),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
