/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/userfaultfd.h>
#include <xxhash.h>

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
	struct rf_dedup_stats st = {.size = sizeof(st)};

	for (unsigned int t = 0; t < timeout_ms; t += 10) {
		if (rf_dedup_counters(e, &st) == 0 && st.converged && st.scan_passes >= min_passes)
			return true;
		usleep(10000);
	}
	return false;
}

uint64_t dedup_wait_sharing(rf_engine *e, uint64_t want, unsigned int timeout_ms)
{
	struct rf_dedup_stats st = {.size = sizeof(st)};

	for (unsigned int t = 0;; t += 10) {
		if (rf_dedup_counters(e, &st) != 0 || st.pages_sharing >= want || t >= timeout_ms)
			return st.pages_sharing;
		rf_dedup_scan_now(e);
		usleep(10000);
	}
}

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* The names the preload takes, sorted as it sorts them; symlinks are left
 * out as it leaves them out (a page cache holds a file once). */
static int list_names(const char *dir, const char *glob, char ***names, size_t *n)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t cap = 0;

	*names = NULL;
	*n = 0;
	if (!d)
		return -errno;
	while ((de = readdir(d))) {
		struct stat st;
		char **nn;

		if (fnmatch(glob, de->d_name, 0) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(st.st_mode) || !st.st_size)
			continue;
		if (*n == cap) {
			cap = cap ? 2 * cap : 256;
			if (!(nn = realloc(*names, cap * sizeof(*nn))))
				break;
			*names = nn;
		}
		if (!((*names)[*n] = strdup(de->d_name)))
			break;
		(*n)++;
	}
	closedir(d);
	if (de) { /* stopped early: out of memory */
		for (size_t i = 0; i < *n; i++)
			free((*names)[i]);
		free(*names);
		return -ENOMEM;
	}
	qsort(*names, *n, sizeof(**names), cmp_name);
	return 0;
}

int dedup_osimage_pages(const char *dir, const char *glob, uint64_t limit,
			struct osimage_pages *out)
{
	static uint8_t page[4096], zpage[4096];
	uint64_t *hashes, off = 0, nh = 0;
	char **names;
	size_t n;
	int dfd, err;

	memset(out, 0, sizeof(*out));
	if ((err = list_names(dir, glob, &names, &n)))
		return err;
	hashes = calloc(limit / 4096 + 1, sizeof(*hashes));
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (!hashes || dfd < 0) {
		err = hashes ? -errno : -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < n && off < limit; i++) {
		int fd = openat(dfd, names[i], O_RDONLY | O_CLOEXEC);

		if (fd < 0)
			continue;
		for (;;) {
			uint64_t want = limit - off < 4096 ? limit - off : 4096;
			ssize_t r;

			memset(page, 0, sizeof(page));
			r = read(fd, page, (size_t)want);
			if (r <= 0)
				break;
			/* A short read ends the file: the rest of its page is
			 * zero, and the next file starts on a new page. */
			if (!memcmp(page, zpage, sizeof(page)))
				out->zero++;
			else
				hashes[nh++] = XXH3_64bits(page, sizeof(page));
			off += 4096;
			if (r < (ssize_t)want || off >= limit)
				break;
		}
		close(fd);
	}
	qsort(hashes, nh, sizeof(*hashes), cmp_u64);
	for (uint64_t i = 0; i < nh; i++)
		if (i == 0 || hashes[i] != hashes[i - 1])
			out->distinct++;
	out->total = off / 4096;
out:
	if (dfd >= 0)
		close(dfd);
	free(hashes);
	for (size_t i = 0; i < n; i++)
		free(names[i]);
	free(names);
	return err;
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
