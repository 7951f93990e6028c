/* SPDX-License-Identifier: MIT */
/*
 * A VMM that runs without privileges (issue 14). KVM touches guest RAM from
 * the kernel, so the library's userfaultfd must take kernel-mode faults; a
 * process that cannot have such a descriptor gets -EPERM and one message
 * naming what it lacks, never a user-mode-only descriptor that breaks at
 * the first fault KVM takes. A process allowed to open /dev/userfaultfd
 * gets a kernel-mode descriptor without CAP_SYS_PTRACE.
 *
 * Each case runs in a child that drops to uid/gid 65534 (no capabilities)
 * with vm.unprivileged_userfaultfd = 0; the parent sets the mode of
 * /dev/userfaultfd for the case and puts it back.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rf_test.h"
#include "swap_pager.h"

#define PG     4096ull
#define NPG    64
#define NOBODY 65534

static bool sysctl_zero(void)
{
	char buf[8] = "";
	int fd = open("/proc/sys/vm/unprivileged_userfaultfd", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;

	if (fd >= 0)
		close(fd);
	return n > 0 && buf[0] == '0';
}

static void drop_privileges(bool dumpable)
{
	if (setgroups(0, NULL) != 0 || setresgid(NOBODY, NOBODY, NOBODY) != 0 ||
	    setresuid(NOBODY, NOBODY, NOBODY) != 0) {
		perror("drop privileges");
		_exit(90);
	}
	/* A uid change leaves the process not dumpable, and its /proc/self
	 * files root's; a VMM started as its user (or that execs after the
	 * change, as Firecracker's jailer does) is dumpable. */
	if (dumpable && prctl(PR_SET_DUMPABLE, 1) != 0)
		_exit(91);
}

/* Run @fn in an unprivileged child with /dev/userfaultfd at @mode; its exit
 * status (0: passed; otherwise the failed check's number). */
static int in_child(mode_t mode, bool dumpable, int (*fn)(void))
{
	struct stat st;
	int status = -1;
	pid_t pid;

	if (stat("/dev/userfaultfd", &st) != 0 || chmod("/dev/userfaultfd", mode) != 0)
		return -2;
	fflush(NULL);
	pid = fork();
	if (pid == 0) {
		drop_privileges(dumpable);
		_exit(fn());
	}
	if (pid > 0)
		waitpid(pid, &status, 0);
	chmod("/dev/userfaultfd", st.st_mode & 07777); /* put back, whatever happened */
	return pid > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void fill(uint8_t *p, unsigned int i)
{
	for (unsigned int k = 0; k < PG; k++)
		p[k] = (uint8_t)(i * 31 + k * 7 + 1);
}

static bool intact(const uint8_t *p, unsigned int i)
{
	for (unsigned int k = 0; k < PG; k++)
		if (p[k] != (uint8_t)(i * 31 + k * 7 + 1))
			return false;
	return true;
}

/* Without a way to kernel-mode faults: -EPERM from every mechanism that
 * needs userfaultfd, with the message, and the VM is unharmed. */
static int refused(void)
{
	struct rf_test_log log = {0};
	struct rf_dedup_config dc;
	rf_engine *e = rf_test_engine(&log);
	uint8_t *ram;
	rf_vm *vm;

	if (!e)
		return 10;
	vm = rf_test_vm(e, "vm0", NPG * PG, (void **)&ram);
	for (unsigned int i = 0; i < NPG; i++)
		fill(ram + i * PG, i);
	if (rf_vm_set_swap_target(vm, 16 * PG) != -EPERM)
		return 11;
	if (!strstr(log.last, "vm0: userfaultfd") || !strstr(log.last, "CAP_SYS_PTRACE") ||
	    !strstr(log.last, "/dev/userfaultfd"))
		return 12;
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_INTRA_VM;
	if (rf_dedup_start(e, &dc) != 0)
		return 13;
	if (rf_dedup_add_vm(vm) != -EPERM)
		return 14;
	for (unsigned int i = 0; i < NPG; i++)
		if (!intact(ram + i * PG, i))
			return 15;
	rf_engine_free(e);
	return 0;
}

/* With /dev/userfaultfd open to it: the swap pager works, and a fault the
 * kernel takes for the process (read(2) into a swapped-out page: a
 * copy_to_user, as KVM's accesses are) is served, not refused. */
static int through_the_device(void)
{
	struct rf_test_log log = {0};
	struct rf_pager *p;
	rf_engine *e = rf_test_engine(&log);
	uint64_t done = 0;
	uint8_t *ram, msg[64];
	int pfd[2];
	rf_vm *vm;

	if (!e)
		return 20;
	vm = rf_test_vm(e, "vm0", NPG * PG, (void **)&ram);
	for (unsigned int i = 0; i < NPG; i++)
		fill(ram + i * PG, i);
	if (rf_vm_set_swap_target(vm, RF_SWAP_NO_TARGET) != 0)
		return 21;
	if (rf_swap_pager_get(vm, &p) != 0 || rf_swap_pager_swap_out(p, 0, NPG, &done) != 0 ||
	    done == 0) {
		fprintf(stderr, "swap-out: %llu pages out; last message: %s\n",
			(unsigned long long)done, log.last);
		return 22;
	}
	if (rf_vm_page_state(vm, 5 * PG) != RF_PAGE_SWAPPED &&
	    rf_vm_page_state(vm, 5 * PG) != RF_PAGE_COMPRESSED)
		return 23;
	/* The kernel writes into the swapped-out page 5. */
	memset(msg, 0xa5, sizeof(msg));
	if (pipe(pfd) != 0 || write(pfd[1], msg, sizeof(msg)) != (ssize_t)sizeof(msg))
		return 24;
	if (read(pfd[0], ram + 5 * PG + 100, sizeof(msg)) != (ssize_t)sizeof(msg))
		return 25; /* EFAULT: a user-mode-only descriptor */
	if (memcmp(ram + 5 * PG + 100, msg, sizeof(msg)) != 0)
		return 26;
	for (unsigned int i = 0; i < NPG; i++) {
		if (i == 5)
			continue;
		if (!intact(ram + i * PG, i))
			return 27;
	}
	close(pfd[0]);
	close(pfd[1]);
	rf_engine_free(e);
	return 0;
}

/* Not dumpable (uid changed, no exec, no PR_SET_DUMPABLE): no pagemap, so
 * no swap target and no dedup, each refused with the reason. */
static int no_pagemap(void)
{
	struct rf_test_log log = {0};
	struct rf_dedup_config dc;
	rf_engine *e = rf_test_engine(&log);
	uint8_t *ram;
	rf_vm *vm;

	if (!e)
		return 30;
	vm = rf_test_vm(e, "vm0", NPG * PG, (void **)&ram);
	if (rf_vm_set_swap_target(vm, 16 * PG) != -EPERM)
		return 31;
	if (!strstr(log.last, "vm0: needs /proc/self/pagemap") ||
	    !strstr(log.last, "PR_SET_DUMPABLE"))
		return 32;
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_INTRA_VM;
	if (rf_dedup_start(e, &dc) != 0 || rf_dedup_add_vm(vm) != -EPERM)
		return 33;
	rf_engine_free(e);
	return 0;
}

/* Run @fn as an unprivileged child (see in_child) and fail with @what and
 * the number of the check that failed. @sysctl_off: the case needs
 * vm.unprivileged_userfaultfd = 0 (the syscall must refuse it). */
static void run_case(mode_t mode, bool dumpable, bool sysctl_off, int (*fn)(void), const char *what)
{
	int rc;

	rf_require(geteuid() == 0, "needs root to drop privileges and set /dev/userfaultfd's mode");
	rf_require(!sysctl_off || sysctl_zero(), "vm.unprivileged_userfaultfd is not 0");
	rf_require(access("/dev/userfaultfd", F_OK) == 0, "no /dev/userfaultfd (Linux < 6.1)");
	rc = in_child(mode, dumpable, fn);
	if (rc != 0)
		fail_msg("%s: check %d failed", what, rc);
}

static void test_refused_without_pagemap(void **state)
{
	(void)state;
	run_case(0666, false, false, no_pagemap, "child that is not dumpable");
}

static void test_refused_without_privilege(void **state)
{
	(void)state;
	run_case(0600, true, true, refused, "unprivileged child without /dev/userfaultfd");
}

static void test_kernel_faults_through_dev_userfaultfd(void **state)
{
	(void)state;
	run_case(0666, true, true, through_the_device, "unprivileged child with /dev/userfaultfd");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_refused_without_privilege),
	    cmocka_unit_test(test_kernel_faults_through_dev_userfaultfd),
	    cmocka_unit_test(test_refused_without_pagemap),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
