/* SPDX-License-Identifier: MIT */
/*
 * A jailed VMM (issue 14, "No root"): a forked child drops every capability
 * (CAP_SYS_PTRACE and CAP_SYS_ADMIN among them; uid 0 is kept so that the
 * root-owned /dev/kvm and /dev/userfaultfd open as their owner's, as they
 * would for a VMM user given access to them), sets no_new_privs, installs a
 * seccomp allowlist of exactly the system calls the library makes
 * (tests/helpers/rf_syscalls.h, listed in docs/embedding.md) and then runs a
 * real vCPU under dedup (intra-VM), a swap target and the balloon (own
 * transport) at once. The guest rewrites a word in 128 twin pages round
 * after round (tests/helpers/kvm_mini.h); every round every page must hold
 * the value just written, and every page the balloon thread owns its
 * content: 0 lost writes.
 *
 * The filter's default action is SCMP_ACT_TRAP, not SCMP_ACT_ERRNO(EPERM):
 * several callers treat a failed call as "feature missing" and carry on
 * (glibc when rseq or set_robust_list fail, liburcu when membarrier fails,
 * the library itself when userfaultfd(2) says EPERM and it tries
 * /dev/userfaultfd), so an errno would let an incomplete list pass with a
 * silent fallback, which is exactly what this test must catch. The trap
 * stops the child at the first call not on the list and names it (the
 * SIGSYS handler records si_syscall), which a kill would not.
 *
 * RF_SECCOMP_OFF=1 in the environment runs the same scenario without the
 * filter, to see what it calls (strace -f -c); RF_SECCOMP_OMIT=NAME runs it
 * with NAME left off the list, to see whether the scenario needs NAME.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "kvm_mini.h"
#include "rf_syscalls.h"
#include "rf_test.h"
#include "swap_pager.h"
#include "virtq_mock.h"

#define PG	   4096u
#define RAM	   (4u << 20)
#define NPAGES	   RF_KVM_WRITER_NPAGES
#define FIRST_PAGE RF_KVM_WRITER_FIRST_PAGE
#define WORD_OFF   RF_KVM_WRITER_WORD_OFF
#define POOL_LO	   0x100u /* pages the balloon thread owns: [POOL_LO, POOL_HI) */
#define POOL_HI	   0x300u
#define RING_PAGES 16u /* three queues of 64 entries, 4 pages each, at the top */
#define QSIZE	   64u
#define QPAGES	   4u
#define CHUNK	   16u /* pages per inflate / report */

/* What the child reports to the parent (a shared mapping). */
struct shared {
	int trapped_nr; /* the first system call not on the list, or -1 */
	int step;	/* the check that failed (0: none) */
	char log[512];	/* the library's last message */
	uint64_t writes, bad, pool_bad, rounds;
	uint64_t merged, unmerged, swap_outs, swap_ins, inflated, deflated, reported;
	bool dev_uffd; /* userfaultfd(2) refused: the library had to use the device */
};

static struct shared *sh;
static _Atomic bool stop;

static void on_sigsys(int sig, siginfo_t *si, void *uc)
{
	static const char msg[] = "test_seccomp: a system call not on the list: see the parent\n";

	(void)sig;
	(void)uc;
	sh->trapped_nr = si->si_syscall;
	if (write(2, msg, sizeof(msg) - 1) < 0) {
	}
	_exit(97);
}

static void on_log(void *arg, enum rf_log_level level, const char *msg)
{
	(void)arg;
	(void)level;
	snprintf(sh->log, sizeof(sh->log), "%s", msg);
}

/* Every capability gone (bounding, inheritable, permitted, effective,
 * ambient), uid 0 kept, no_new_privs: what a jailer leaves a VMM. */
static int drop_capabilities(void)
{
	struct __user_cap_header_struct h = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct d[2];
	char line[256];
	bool seen = false;
	FILE *f;

	for (int c = 0; prctl(PR_CAPBSET_READ, c, 0, 0, 0) >= 0; c++)
		if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) != 0)
			return 1;
	if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
		return 2;
	memset(d, 0, sizeof(d));
	if (syscall(SYS_capset, &h, d) != 0)
		return 3;
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0)
		return 4;
	/* The kernel's view, not ours. */
	f = fopen("/proc/self/status", "r");
	if (!f)
		return 5;
	while (fgets(line, sizeof(line), f))
		if (!strncmp(line, "CapEff:", 7) || !strncmp(line, "CapPrm:", 7)) {
			if (strtoull(line + 8, NULL, 16) != 0)
				return 6;
			seen = true;
		}
	fclose(f);
	if (!seen)
		return 7;
	/* Without CAP_SYS_PTRACE the syscall refuses a kernel-mode userfaultfd
	 * (with vm.unprivileged_userfaultfd = 0): the library goes through
	 * /dev/userfaultfd. */
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC);

	sh->dev_uffd = fd < 0 && errno == EPERM;
	if (fd >= 0)
		close(fd);
	return 0;
}

/* The allowlist: RF_SYSCALLS less @omit (NULL: none). */
static int install_filter(const char *omit)
{
	struct sigaction sa = {.sa_sigaction = on_sigsys, .sa_flags = SA_SIGINFO};
	scmp_filter_ctx ctx;
	int rc = 0;

	if (sigaction(SIGSYS, &sa, NULL) != 0)
		return 10;
	ctx = seccomp_init(SCMP_ACT_TRAP);
	if (!ctx)
		return 11;
#define ALLOW(name, why)                                                                           \
	if (!rc && !(omit && !strcmp(omit, #name))) {                                              \
		int nr = seccomp_syscall_resolve_name(#name);                                      \
		if (nr == __NR_SCMP_ERROR || seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) != 0)    \
			rc = 12;                                                                   \
	}
	RF_SYSCALLS(ALLOW)
#undef ALLOW
	if (!rc && seccomp_load(ctx) != 0)
		rc = 13;
	seccomp_release(ctx);
	return rc;
}

static void *swap_thread(void *arg)
{
	struct rf_pager *p = arg;
	uint64_t done;

	/* On top of the target: the vCPU's own pages go out again and again,
	 * so its writes race the swap pager (as in test_swap_kvm). */
	while (!atomic_load(&stop)) {
		rf_swap_pager_swap_out(p, FIRST_PAGE, NPAGES, &done);
		usleep(500);
	}
	return NULL;
}

static void pool_fill(uint8_t *pg, unsigned int i)
{
	for (unsigned int k = 0; k < PG; k += 4) {
		uint32_t v = i * 0x9e3779b9u ^ k;

		memcpy(pg + k, &v, 4);
	}
}

static bool pool_ok(const uint8_t *pg, unsigned int i)
{
	for (unsigned int k = 0; k < PG; k += 4) {
		uint32_t v = i * 0x9e3779b9u ^ k, w;

		memcpy(&w, pg + k, 4);
		if (v != w)
			return false;
	}
	return true;
}

struct bal {
	rf_vm *vm;
	rf_balloon *b;
	uint8_t *ram;
	struct vq_mock q[3];
	uint64_t ops;
	int err;
};

static int balloon_setup(struct bal *d)
{
	const uint64_t want =
	    RF_VIRTIO_F_VERSION_1 | RF_BALLOON_F_MUST_TELL_HOST | RF_BALLOON_F_REPORTING;
	const uint8_t ack = RF_VIRTIO_STATUS_ACKNOWLEDGE | RF_VIRTIO_STATUS_DRIVER;
	const uint64_t base = RAM - RING_PAGES * PG;

	if (rf_balloon_new(d->vm, NULL, NULL, &d->b) || rf_balloon_set_status(d->b, 0) ||
	    rf_balloon_set_status(d->b, RF_VIRTIO_STATUS_ACKNOWLEDGE) ||
	    rf_balloon_set_status(d->b, ack) || rf_balloon_set_driver_features(d->b, want) ||
	    rf_balloon_set_status(d->b, ack | RF_VIRTIO_STATUS_FEATURES_OK) ||
	    !(rf_balloon_get_status(d->b) & RF_VIRTIO_STATUS_FEATURES_OK))
		return 1;
	/* Without STATS_VQ: inflateq, deflateq, reporting_vq. */
	if (rf_balloon_num_queues(d->b) != 3)
		return 2;
	for (unsigned int q = 0; q < 3; q++) {
		struct vq_mock *m = &d->q[q];

		vq_mock_init(m, d->vm, base + q * QPAGES * PG, QSIZE, PG);
		if (rf_balloon_queue_setup(d->b, q, QSIZE, m->desc, m->avail, m->used))
			return 3;
	}
	return rf_balloon_set_status(d->b, ack | RF_VIRTIO_STATUS_FEATURES_OK |
					       RF_VIRTIO_STATUS_DRIVER_OK)
		   ? 4
		   : 0;
}

/* Put the pages [@first, @first+CHUNK) on queue @q (PFNs for inflate and
 * deflate, one range for reporting) and wait for the used buffer. */
static int balloon_send(struct bal *d, unsigned int q, unsigned int first)
{
	uint32_t pfns[CHUNK];
	uint64_t addr = (uint64_t)first * PG;
	uint32_t len = CHUNK * PG;

	if (q == 2) {
		vq_mock_add_chain(&d->q[q], &addr, &len, 1, true);
	} else {
		for (unsigned int k = 0; k < CHUNK; k++)
			pfns[k] = htole32(first + k);
		vq_mock_add(&d->q[q], pfns, sizeof(pfns), false);
	}
	rf_balloon_queue_notify(d->b, q);
	for (unsigned int n = 1; !vq_mock_get_used(&d->q[q], NULL, NULL); n++) {
		if (n > 20000)
			return 1; /* two seconds */
		usleep(100);
	}
	rf_balloon_interrupt_ack(d->b, rf_balloon_interrupt_status(d->b));
	return 0;
}

/* The guest's balloon driver and the owner of the pool pages: inflates a
 * chunk, checks the library took it, deflates it (zeros come back) and
 * writes its content again; reports another chunk free and rewrites it. */
static void *balloon_thread(void *arg)
{
	struct bal *d = arg;
	unsigned int at = POOL_LO;

	while (!atomic_load(&stop) && !d->err) {
		unsigned int q = d->ops % 2 ? 2 : 0;

		if (at + CHUNK > POOL_HI)
			at = POOL_LO;
		if (balloon_send(d, q, at)) {
			d->err = 20 + (int)q;
			break;
		}
		for (unsigned int i = at; i < at + CHUNK; i++) {
			int s = rf_vm_page_state(d->vm, (uint64_t)i * PG);

			if (q == 0 && s != RF_PAGE_BALLOONED)
				d->err = 23;
			if (q == 2 && s != RF_PAGE_FREE_REPORTED)
				d->err = 24;
		}
		if (q == 0 && balloon_send(d, 1, at))
			d->err = 25;
		for (unsigned int i = at; i < at + CHUNK && !d->err; i++) {
			static const uint8_t zero[PG];

			if (memcmp(d->ram + (uint64_t)i * PG, zero, PG) != 0)
				d->err = 26; /* back from the balloon or reporting: zeros */
			pool_fill(d->ram + (uint64_t)i * PG, i);
		}
		at += CHUNK;
		d->ops++;
		usleep(2000);
	}
	return NULL;
}

/* The scenario, in the child: 0 or the number of the failed check. */
static int jailed_vcpu(const char *omit, unsigned int min_ms)
{
	struct rf_engine_config ec;
	struct rf_swap_config sc;
	struct rf_dedup_config dc;
	struct rf_dedup_stats ds = {.size = sizeof(ds)};
	struct rf_swap_stats ss = {.size = sizeof(ss)};
	struct rf_balloon_counters bc = {.size = sizeof(bc)};
	struct rf_vm_config vc;
	struct rf_kvm_mini k;
	struct rf_pager *p;
	static uint8_t tpl[PG];
	struct bal d = {0};
	pthread_t st, bt;
	uint64_t t0, t_end;
	uint8_t *ram;
	rf_engine *e;
	rf_vm *vm;
	int rc;

	if ((rc = drop_capabilities()) != 0)
		return rc;
	if (!getenv("RF_SECCOMP_OFF") && (rc = install_filter(omit)) != 0)
		return rc;

	rf_engine_config_init(&ec);
	ec.log = on_log;
	ec.scan_threads = 1;
	if (rf_engine_new(&ec, &e))
		return 30;
	rf_swap_config_init(&sc);
	sc.tier_limit_bytes = 64 * PG; /* some pages in the tier, the rest in the file */
	if (rf_engine_set_swap(e, &sc))
		return 31;
	rf_vm_config_init(&vc);
	vc.ram_bytes = RAM;
	if (rf_vm_new(e, "jail0", &vc, &vm) || rf_vm_map_ram(vm, 0, RAM, (void **)&ram))
		return 32;
	memcpy(ram + 0x1000, rf_kvm_writer_guest, sizeof(rf_kvm_writer_guest));
	memset(tpl, 0x5a, PG);
	memset(tpl + WORD_OFF, 0, 4);
	for (unsigned int i = 0; i < NPAGES; i++)
		memcpy(ram + FIRST_PAGE + i * PG, tpl, PG);
	for (unsigned int i = POOL_LO; i < POOL_HI; i++)
		pool_fill(ram + (uint64_t)i * PG, i);
	/* The rings are read through the host mapping at any time. */
	if (rf_vm_exclude_range(vm, RAM - RING_PAGES * PG, RING_PAGES * PG, true))
		return 33;
	rf_kvm_mini_setup(&k, ram, RAM);
	d.vm = vm;
	d.ram = ram;
	if ((rc = balloon_setup(&d)) != 0)
		return 40 + rc;

	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_INTRA_VM;
	dc.scan_threads = 1;
	dc.idle_cpu_percent = 100; /* keep scanning while the guest writes */
	dc.backoff_max = 0;	   /* and merge rewritten pages again at once */
	if (rf_dedup_start(e, &dc) || rf_dedup_add_vm(vm))
		return 50;
	/* Half the guest's RAM resident: the pool goes out and comes back. */
	if (rf_vm_set_swap_target(vm, RAM / 2) || rf_swap_pager_get(vm, &p))
		return 51;
	atomic_store(&stop, false);
	if (pthread_create(&st, NULL, swap_thread, p) ||
	    pthread_create(&bt, NULL, balloon_thread, &d))
		return 52;

	t0 = rf_test_now_ms();
	t_end = t0 + 120000;
	for (unsigned int r = 0;; r++) {
		unsigned int n;

		if ((r & 63) == 0 && rf_test_now_ms() - t0 >= min_ms) {
			rf_dedup_counters(e, &ds);
			rf_vm_swap_stats(vm, &ss);
			if ((ds.pages_merged > 100 && ds.pages_unmerged > 100 &&
			     ss.swap_ins > 100 && d.ops > 10) ||
			    rf_test_now_ms() > t_end)
				break;
		}
		rf_kvm_mini_run_to_port(&k, 0x10);
		sh->writes += NPAGES;
		n = rf_kvm_writer_bad_pages(ram, tpl, 0, r);
		sh->bad += n;
		sh->rounds = r + 1;
		if ((r & 7) == 0)
			usleep(300); /* let the pages sit still long enough to merge */
	}
	atomic_store(&stop, true);
	pthread_join(st, NULL);
	pthread_join(bt, NULL);
	if (d.err)
		return d.err;
	/* Every pool page as its owner left it (reads fault swapped pages in). */
	for (unsigned int i = POOL_LO; i < POOL_HI; i++)
		sh->pool_bad += !pool_ok(ram + (uint64_t)i * PG, i);

	rf_dedup_counters(e, &ds);
	rf_vm_swap_stats(vm, &ss);
	rf_balloon_counters(d.b, &bc);
	sh->merged = ds.pages_merged;
	sh->unmerged = ds.pages_unmerged;
	sh->swap_outs = ss.swap_outs;
	sh->swap_ins = ss.swap_ins;
	sh->inflated = bc.inflated_pages;
	sh->deflated = bc.deflated_pages;
	sh->reported = bc.reported_pages;

	/* Teardown in the embedder's order: vCPU and memslot (the KVM VM)
	 * first, then the device, then the library (which unmaps guest RAM). */
	rf_dedup_stop(e);
	rf_kvm_mini_teardown(&k);
	rf_balloon_free(d.b);
	rf_engine_free(e);
	if (ss.stopped)
		return 60;
	return 0;
}

/* Run the scenario in a jailed child; the child's exit status. */
static int in_jail(const char *omit, unsigned int min_ms)
{
	int status = -1;
	pid_t pid;

	memset(sh, 0, sizeof(*sh));
	sh->trapped_nr = -1;
	fflush(NULL);
	pid = fork();
	if (pid == 0)
		_exit(jailed_vcpu(omit, min_ms));
	if (pid < 0 || waitpid(pid, &status, 0) != pid)
		return -1;
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static const char *trapped_name(void)
{
	static char buf[64];
	char *n = seccomp_syscall_resolve_num_arch(SCMP_ARCH_NATIVE, sh->trapped_nr);

	snprintf(buf, sizeof(buf), "%s (%d)", n ? n : "?", sh->trapped_nr);
	free(n);
	return buf;
}

static void require_jail(void)
{
	rf_require(geteuid() == 0, "needs root to drop capabilities while keeping uid 0");
	rf_require(access("/dev/kvm", R_OK | W_OK) == 0, "/dev/kvm not available");
	rf_require(access("/dev/userfaultfd", R_OK | W_OK) == 0,
		   "no /dev/userfaultfd (Linux < 6.1): no kernel-mode userfaultfd without "
		   "CAP_SYS_PTRACE");
}

static void test_vcpu_under_allowlist(void **state)
{
	int rc;

	(void)state;
	require_jail();
	rc = in_jail(getenv("RF_SECCOMP_OMIT"), 3000);
	printf("  %llu guest writes in %llu rounds, %llu lost, %llu pool pages wrong; "
	       "dedup %llu merged, %llu unmerged; swap %llu out, %llu in; balloon %llu "
	       "inflated, %llu deflated, %llu reported; userfaultfd through %s\n",
	       (unsigned long long)sh->writes, (unsigned long long)sh->rounds,
	       (unsigned long long)sh->bad, (unsigned long long)sh->pool_bad,
	       (unsigned long long)sh->merged, (unsigned long long)sh->unmerged,
	       (unsigned long long)sh->swap_outs, (unsigned long long)sh->swap_ins,
	       (unsigned long long)sh->inflated, (unsigned long long)sh->deflated,
	       (unsigned long long)sh->reported,
	       sh->dev_uffd ? "/dev/userfaultfd" : "userfaultfd(2)");
	if (sh->trapped_nr >= 0)
		fail_msg("the library called %s, which is not in tests/helpers/rf_syscalls.h",
			 trapped_name());
	/* A call trapped while SIGSYS is blocked (a thread starting or ending,
	 * inside glibc) kills the child instead of reaching the handler. */
	if (rc == 128 + SIGSYS)
		fail_msg("jailed child killed by SIGSYS: a system call not in "
			 "tests/helpers/rf_syscalls.h, made with SIGSYS blocked (thread start or "
			 "exit: clone3, set_robust_list, rseq, futex, exit?)");
	if (rc != 0)
		fail_msg("jailed child: check %d failed; last message: %s", rc, sh->log);
	assert_int_equal(sh->bad, 0);
	assert_int_equal(sh->pool_bad, 0);
	/* Every mechanism really ran under the vCPU. */
	assert_true(sh->merged > 100 && sh->unmerged > 100);
	assert_true(sh->swap_outs > 100 && sh->swap_ins > 100);
	assert_true(sh->inflated > 0 && sh->deflated == sh->inflated && sh->reported > 0);
}

/* A list one call short fails, and names the call: mremap, which dedup
 * makes for every merge. */
static void test_missing_call_fails(void **state)
{
	int rc;

	(void)state;
	require_jail();
	rc = in_jail("mremap", 0);
	if (sh->trapped_nr != __NR_mremap)
		fail_msg("without mremap on the list: child status %d, trapped %s", rc,
			 sh->trapped_nr >= 0 ? trapped_name() : "nothing");
	assert_int_equal(rc, 97);
}

/* docs/embedding.md lists the same names as rf_syscalls.h, both ways. */
static void test_doc_lists_the_same_calls(void **state)
{
	static const char *const names[] = {
#define NAME(name, why) #name,
	    RF_SYSCALLS(NAME)
#undef NAME
	};
	const size_t nnames = sizeof(names) / sizeof(names[0]);
	char path[512], line[512], *doc = NULL;
	bool in = false;
	size_t len = 0;
	FILE *f;

	(void)state;
	/* This file is tests/kvm/test_seccomp.c from the top of the tree. */
	snprintf(path, sizeof(path), "%.*sdocs/embedding.md",
		 (int)(strlen(__FILE__) - strlen("tests/kvm/test_seccomp.c")), __FILE__);
	f = fopen(path, "r");
	rf_require(f != NULL, "docs/embedding.md not found (run from the top of the tree)");
	while (fgets(line, sizeof(line), f)) {
		if (strstr(line, "<!-- syscalls:begin -->"))
			in = true;
		else if (strstr(line, "<!-- syscalls:end -->"))
			in = false;
		else if (in) {
			doc = realloc(doc, len + strlen(line) + 1);
			assert_non_null(doc);
			strcpy(doc + len, line);
			len += strlen(line);
		}
	}
	fclose(f);
	assert_non_null(doc);
	/* Every name of the header appears as `name` ... */
	for (size_t i = 0; i < nnames; i++) {
		char want[64];

		snprintf(want, sizeof(want), "`%s`", names[i]);
		if (!strstr(doc, want))
			fail_msg("docs/embedding.md does not list %s", want);
	}
	/* ... and every `name` of the doc's list is in the header. */
	for (char *s = strchr(doc, '`'); s; s = strchr(s, '`')) {
		char *end = strchr(s + 1, '`');
		bool found = false;

		assert_non_null(end);
		for (size_t i = 0; i < nnames; i++)
			found |= (size_t)(end - s - 1) == strlen(names[i]) &&
				 !strncmp(s + 1, names[i], strlen(names[i]));
		if (!found)
			fail_msg("docs/embedding.md lists %.*s, not in rf_syscalls.h",
				 (int)(end - s + 1), s);
		s = end + 1;
	}
	free(doc);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_doc_lists_the_same_calls),
	    cmocka_unit_test(test_vcpu_under_allowlist),
	    cmocka_unit_test(test_missing_call_fails),
	};

	sh = mmap(NULL, sizeof(*sh), PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (sh == MAP_FAILED)
		return 1;
	return cmocka_run_group_tests_name("seccomp", tests, NULL, NULL);
}
