/* SPDX-License-Identifier: MIT */
/*
 * Kernel feature detection, once at engine start. The installed headers are
 * older than the running kernel, so each feature is asked of the kernel
 * itself (UFFDIO_API's feature mask, a probing PAGEMAP_SCAN ioctl, sysfs),
 * never inferred from a version number.
 */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <linux/kvm.h>

#include "compat_linux.h"
#include "internal.h"
#include "uffd.h"

static bool path_exists(const char *p)
{
	struct stat st;

	return stat(p, &st) == 0;
}

static void detect_kvm(rf_engine *e, struct rf_features *f)
{
	int fd = open(e->dev_kvm_path, O_RDWR | O_CLOEXEC);

	if (fd >= 0) {
		f->kvm = ioctl(fd, KVM_GET_API_VERSION, 0) == KVM_API_VERSION;
		close(fd);
	}
	f->kvm_pvm = path_exists("/sys/module/kvm_pvm");
}

static void detect_uffd(struct rf_features *f)
{
	struct uffdio_api api = {.api = UFFD_API, .features = 0};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK | UFFD_USER_MODE_ONLY);

	/* The syscall may be refused (seccomp) where the device is allowed:
	 * the features are the same. */
	if (fd < 0)
		fd = rf_uffd_from_device();
	if (fd < 0)
		return;
	/* With features = 0 the kernel answers with everything it supports. */
	if (ioctl(fd, UFFDIO_API, &api) == 0) {
		f->uffd = true;
		f->uffd_features = api.features;
		f->uffd_wp = api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP;
		f->uffd_wp_unpopulated = api.features & UFFD_FEATURE_WP_UNPOPULATED;
		f->uffd_wp_async = api.features & UFFD_FEATURE_WP_ASYNC;
		f->uffd_missing_shmem = api.features & UFFD_FEATURE_MISSING_SHMEM;
		f->uffd_event_remove = api.features & UFFD_FEATURE_EVENT_REMOVE;
		f->uffd_move = api.features & UFFD_FEATURE_MOVE;
	}
	close(fd);
}

static void detect_pagemap(rf_engine *e, struct rf_features *f)
{
	struct page_region reg;
	struct pm_scan_arg arg;
	uint64_t ent = 0;
	volatile char *p;

	if (e->pagemap_fd < 0)
		return;
	p = mmap(NULL, RF_PAGE_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (p == MAP_FAILED)
		return;
	/* A read fault maps the shared zero page: learn its PFN, so resident
	 * counts can leave it out as RSS does. */
	(void)p[0];
	if (rf_pagemap_read(e, (const void *)p, 1, &ent) == 0 && (ent & PM_PRESENT) &&
	    (ent & PM_PFN_MASK)) {
		e->zero_pfn = ent & PM_PFN_MASK;
		f->pagemap_pfn = true;
	}
	memset(&arg, 0, sizeof(arg));
	arg.size = sizeof(arg);
	arg.start = (uintptr_t)p;
	arg.end = (uintptr_t)p + RF_PAGE_SIZE;
	arg.vec = (uintptr_t)&reg;
	arg.vec_len = 1;
	arg.category_anyof_mask = PAGE_IS_PRESENT;
	arg.return_mask = PAGE_IS_PRESENT;
	f->pagemap_scan = ioctl(e->pagemap_fd, PAGEMAP_SCAN, &arg) >= 0;
	munmap((void *)p, RF_PAGE_SIZE);
}

static uint64_t read_u64_file(const char *path, uint64_t dflt)
{
	unsigned long long v;
	FILE *f = fopen(path, "re");

	if (!f)
		return dflt;
	if (fscanf(f, "%llu", &v) != 1)
		v = dflt;
	fclose(f);
	return v;
}

int rf_features_detect(rf_engine *e)
{
	struct rf_features *f = &e->feat;
	char path[300];
	struct utsname u;

	memset(f, 0, sizeof(*f));
	e->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	e->pagemap_errno = e->pagemap_fd < 0 ? errno : 0;
	detect_kvm(e, f);
	detect_uffd(f);
	detect_pagemap(e, f);
	snprintf(path, sizeof(path), "%s/run", e->ksm_sysfs_dir);
	f->ksm = path_exists(path);
	f->thp = path_exists("/sys/kernel/mm/transparent_hugepage/enabled");
	f->numa_nodes = numa_available() < 0 ? 1 : numa_num_configured_nodes();
	if (f->numa_nodes < 1)
		f->numa_nodes = 1;
	f->max_map_count = read_u64_file("/proc/sys/vm/max_map_count", 65530);
	if (e->cfg.hide_features & RF_HIDE_UFFD_MOVE) {
		f->uffd_move = false;
		f->uffd_features &= ~(uint64_t)UFFD_FEATURE_MOVE;
	}
	if (e->cfg.hide_features & RF_HIDE_PAGEMAP_SCAN)
		f->pagemap_scan = false;
	if (uname(&u) == 0)
		snprintf(f->kernel_release, sizeof(f->kernel_release), "%s", u.release);

	if ((e->cfg.flags & RF_ENGINE_REQUIRE_KVM) && !f->kvm) {
		rf_log(e, RF_LOG_ERR,
		       "ramfold: feature missing: KVM (%s cannot be opened read-write or does not "
		       "answer KVM_GET_API_VERSION)",
		       e->dev_kvm_path);
		return -ENODEV;
	}
	if ((e->cfg.flags & RF_ENGINE_REQUIRE_UFFD) && !f->uffd) {
		rf_log(e, RF_LOG_ERR,
		       "ramfold: feature missing: userfaultfd (syscall refused; see "
		       "vm.unprivileged_userfaultfd)");
		return -ENODEV;
	}
	if ((e->cfg.flags & RF_ENGINE_REQUIRE_UFFD_WP) && !f->uffd_wp) {
		rf_log(e, RF_LOG_ERR,
		       "ramfold: feature missing: userfaultfd write-protect "
		       "(UFFD_FEATURE_PAGEFAULT_FLAG_WP, Linux 5.7+)");
		return -ENODEV;
	}
	if ((e->cfg.flags & RF_ENGINE_REQUIRE_KSM) && !f->ksm) {
		rf_log(e, RF_LOG_ERR,
		       "ramfold: feature missing: kernel KSM (%s/run not found; CONFIG_KSM)",
		       e->ksm_sysfs_dir);
		return -ENODEV;
	}
	return 0;
}
