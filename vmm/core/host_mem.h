/* SPDX-License-Identifier: MIT */
/* What the kernel says this process occupies (/proc/PID/smaps_rollup). */
#ifndef VMM_HOST_MEM_H
#define VMM_HOST_MEM_H

#include <stdint.h>
#include <sys/types.h>

struct host_mem {
	uint64_t rss, pss, anon, pss_anon, pss_file; /* bytes */
	uint64_t mem_available;			     /* host MemAvailable, bytes */
};

/* @pid 0 = this process. 0 or -errno. */
int host_mem_read(pid_t pid, struct host_mem *hm);

#endif
