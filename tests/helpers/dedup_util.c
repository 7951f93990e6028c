/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>

#include "dedup_util.h"

int dedup_mem_read(struct dedup_mem *m)
{
	char line[256];
	unsigned long long kb;
	FILE *f = fopen("/proc/self/smaps_rollup", "re");

	memset(m, 0, sizeof(*m));
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "Rss: %llu kB", &kb) == 1)
			m->rss = kb << 10;
		else if (sscanf(line, "Pss: %llu kB", &kb) == 1)
			m->pss = kb << 10;
		else if (sscanf(line, "Anonymous: %llu kB", &kb) == 1)
			m->anon = kb << 10;
		else if (sscanf(line, "Pss_Shmem: %llu kB", &kb) == 1)
			m->shmem = kb << 10;
	}
	fclose(f);
	return 0;
}

void dedup_fill_page(void *page, uint64_t seed)
{
	uint64_t *w = page, x = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;

	for (unsigned int i = 0; i < 4096 / 8; i++) {
		/* xorshift64*: cheap, deterministic, never all zero */
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		w[i] = x * 0x2545f4914f6cdd1dull;
	}
	w[0] |= 1;
}

bool dedup_wait_converged(rf_engine *e, unsigned int min_passes, unsigned int timeout_ms)
{
	struct rf_dedup_stats st;

	for (unsigned int t = 0; t < timeout_ms; t += 10) {
		if (rf_dedup_counters(e, &st) == 0 && st.converged && st.scan_passes >= min_passes)
			return true;
		usleep(10000);
	}
	return false;
}

bool dedup_supported(const char **why)
{
	struct uffdio_api api = {.api = UFFD_API};
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | 1);
	bool ok;

	if (fd < 0) {
		*why = "userfaultfd not available";
		return false;
	}
	ok = ioctl(fd, UFFDIO_API, &api) == 0 && (api.features & UFFD_FEATURE_PAGEFAULT_FLAG_WP) &&
	     (api.features & (1 << 12) /* UFFD_FEATURE_WP_HUGETLBFS_SHMEM */);
	close(fd);
	if (!ok)
		*why = "userfaultfd write-protect on anonymous and shmem memory not supported";
	return ok;
}

void dedup_test_log(void *arg, enum rf_log_level level, const char *msg)
{
	(void)arg;
	fprintf(stderr, "  [ramfold %s] %s\n",
		level <= RF_LOG_ERR    ? "err"
		: level <= RF_LOG_WARN ? "warn"
				       : "info",
		msg);
}
