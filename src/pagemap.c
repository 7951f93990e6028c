/* SPDX-License-Identifier: MIT */
/*
 * Reading /proc/self/pagemap: one 64-bit entry per virtual page. The
 * measured side of every number ramfold reports (stats, audit) comes from
 * here, so a VM's "resident" is what the kernel maps, not what we believe.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "compat_linux.h"
#include "internal.h"

int rf_pagemap_read(rf_engine *e, const void *addr, size_t npages, uint64_t *out)
{
	off_t off = (off_t)(((uintptr_t)addr >> RF_PAGE_SHIFT) * sizeof(uint64_t));
	size_t want = npages * sizeof(uint64_t), got = 0;

	if (e->pagemap_fd < 0)
		return -ENOSYS;
	while (got < want) {
		ssize_t n = pread(e->pagemap_fd, (char *)out + got, want - got, off + (off_t)got);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		got += (size_t)n;
	}
	return 0;
}

int rf_pagemap_need(rf_engine *e, const char *who)
{
	if (e->pagemap_fd >= 0)
		return 0;
	rf_log(e, RF_LOG_ERR,
	       "%s: needs /proc/self/pagemap, which this process cannot open (%s): a process "
	       "that changed its uid without exec is not dumpable until it calls "
	       "prctl(PR_SET_DUMPABLE, 1)",
	       who, strerror(e->pagemap_errno));
	return -EPERM;
}

uint64_t rf_pagemap_own(const struct rf_region *r, uint64_t ent)
{
	if (rf_region_backing(r) == RF_BACKING_ANON || !(ent & PM_FILE))
		return ent;
	/* Read as the guest's own page. PM_MMAP_EXCLUSIVE keeps it resident
	 * for rf_pagemap_resident without PFNs (a shared page the backend
	 * maps too is not exclusive, yet never the zero page). */
	return (ent & ~PM_FILE) | PM_MMAP_EXCLUSIVE;
}

bool rf_pagemap_resident(const rf_engine *e, uint64_t ent)
{
	if (!(ent & PM_PRESENT))
		return false;
	/* The shared zero page is mapped but not counted in RSS. Without
	 * CAP_SYS_ADMIN the PFN reads as 0; then a zero-page mapping is told
	 * apart by being neither exclusive anonymous nor file. */
	if (e->zero_pfn)
		return (ent & PM_PFN_MASK) != e->zero_pfn;
	return (ent & (PM_MMAP_EXCLUSIVE | PM_FILE)) != 0;
}
