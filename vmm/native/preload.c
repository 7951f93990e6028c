/* SPDX-License-Identifier: MIT */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/vmm.h"
#include "native/preload.h"

#define PAGE 4096ull

struct file_list {
	char **names;
	size_t n;
};

static int cmp_names(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_list(struct file_list *fl)
{
	for (size_t i = 0; i < fl->n; i++)
		free(fl->names[i]);
	free(fl->names);
}

/* Regular files only (symlinks to them are skipped: a page cache holds a
 * file once, whatever the number of names). */
static int list_files(const char *who, const char *dir, const char *glob, struct file_list *fl)
{
	DIR *d = opendir(dir);
	struct dirent *de;
	size_t cap = 0;

	fl->names = NULL;
	fl->n = 0;
	if (!d) {
		vmm_errorf("%s: preload directory %s: %s", who, dir, strerror(errno));
		return -1;
	}
	while ((de = readdir(d))) {
		struct stat st;

		if (fnmatch(glob, de->d_name, 0) ||
		    fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) ||
		    !S_ISREG(st.st_mode) || !st.st_size)
			continue;
		if (fl->n == cap) {
			char **nn =
			    realloc(fl->names, (cap = cap ? cap * 2 : 256) * sizeof(char *));

			if (!nn)
				goto oom;
			fl->names = nn;
		}
		if (!(fl->names[fl->n] = strdup(de->d_name)))
			goto oom;
		fl->n++;
	}
	closedir(d);
	if (!fl->n) {
		vmm_errorf("%s: preload directory %s has no regular file matching \"%s\"", who, dir,
			   glob);
		free_list(fl);
		return -1;
	}
	qsort(fl->names, fl->n, sizeof(char *), cmp_names);
	return 0;
oom:
	closedir(d);
	free_list(fl);
	vmm_errorf("%s: preload: out of memory", who);
	return -1;
}

int preload_check(const char *who, const char *dir, const char *glob)
{
	struct file_list fl;

	if (list_files(who, dir, glob, &fl))
		return -1;
	free_list(&fl);
	return 0;
}

int preload_fill(const char *who, const char *dir, const char *glob, uint8_t *dst, uint64_t limit,
		 struct preload_result *res)
{
	struct file_list fl;
	uint64_t off = 0;
	int dfd;

	memset(res, 0, sizeof(*res));
	if (list_files(who, dir, glob, &fl))
		return -1;
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	for (size_t i = 0; i < fl.n && off < limit && dfd >= 0; i++) {
		int fd = openat(dfd, fl.names[i], O_RDONLY | O_CLOEXEC);
		uint64_t got = 0;
		ssize_t n;

		if (fd < 0)
			continue; /* unreadable files are skipped, as a page cache would */
		while (off + got < limit &&
		       (n = read(fd, dst + off + got, (size_t)(limit - off - got))) > 0)
			got += (uint64_t)n;
		close(fd);
		if (!got)
			continue;
		res->files++;
		res->data_bytes += got;
		off += (got + PAGE - 1) & ~(PAGE - 1);
	}
	if (dfd >= 0)
		close(dfd);
	free_list(&fl);
	if (off > limit)
		off = limit;
	res->bytes = off;
	return 0;
}
