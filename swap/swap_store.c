/* SPDX-License-Identifier: MIT */
/* The swap store: compressed tier in front of a swap file. See swap_store.h. */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <lz4.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/vfs.h>
#include <unistd.h>
#include <xxhash.h>

#include "swap_slots.h"
#include "swap_store.h"

struct tier_ent {
	void *data;
	uint64_t csum;
	uint32_t len;
};

struct rf_swap_store {
	rf_engine *e;
	pthread_mutex_t lock;
	int fd;
	char dir[256];
	uint32_t compress_max;

	/* File slots and the checksum of each slot's content. */
	struct rf_slots file;
	uint64_t *file_csum;
	size_t file_bits_bytes, file_csum_bytes;

	/* Compressed tier. */
	struct rf_slots tier;
	struct tier_ent *tier_ent;
	size_t tier_bits_bytes, tier_ent_bytes;
	uint64_t tier_limit, tier_bytes;

	_Atomic uint64_t enospc, io_errors, csum_errors;
	_Atomic int inj_kind;
	_Atomic unsigned int inj_count;
};

static void *table_map(size_t bytes)
{
	void *p;

	if (bytes == 0)
		return NULL;
	/* Mapped, not allocated: a 64 GiB file limit costs 16 Mi checksums,
	 * and only the pages of the table that are written cost memory. */
	p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
		 -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static void table_unmap(void *p, size_t bytes)
{
	if (p)
		munmap(p, bytes);
}

/* Open an unlinked file in @dir: O_TMPFILE where the filesystem has it, else
 * create and unlink at once, so a crash never leaves a file behind. */
static int open_unlinked(rf_engine *e, const char *dir, bool direct)
{
	int flags = O_RDWR | O_CLOEXEC | (direct ? O_DIRECT : 0);
	char path[300];
	int fd;

	fd = open(dir, flags | O_TMPFILE | O_EXCL, 0600);
	if (fd >= 0)
		return fd;
	if (errno != EOPNOTSUPP && errno != EISDIR && errno != EINVAL)
		return -errno;
	snprintf(path, sizeof(path), "%s/ramfold-swap-XXXXXX", dir);
	fd = mkostemp(path, O_CLOEXEC | (direct ? O_DIRECT : 0));
	if (fd < 0)
		return -errno;
	if (unlink(path) != 0)
		rf_log(e, RF_LOG_WARN, "swap: unlink %s: %s (the file may outlive the process)",
		       path, strerror(errno));
	return fd;
}

int rf_swap_store_new(rf_engine *e, const struct rf_swap_config *cfg, struct rf_swap_store **out)
{
	struct rf_swap_store *s;
	const char *dir = cfg->dir;
	uint64_t nfile = cfg->file_limit_bytes >> RF_PAGE_SHIFT, ntier;
	struct statfs sfs;
	int err;

	*out = NULL;
	if (!dir)
		dir = getenv("RAMFOLD_SWAP_DIR");
	if (!dir || !*dir)
		dir = "/var/tmp";
	if (nfile == 0 || nfile >= RF_SWAP_H_TIER)
		return -EINVAL;
	/* Tier entries: enough for pages compressed to 128 bytes on average;
	 * beyond that, pages go to the file. */
	ntier = cfg->tier_limit_bytes / 128;
	if (ntier >= RF_SWAP_H_TIER - 1)
		ntier = RF_SWAP_H_TIER - 2;
	s = rf_zalloc(e, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->e = e;
	s->fd = -1;
	s->compress_max = cfg->compress_max_bytes;
	s->tier_limit = cfg->tier_limit_bytes;
	snprintf(s->dir, sizeof(s->dir), "%s", dir);
	pthread_mutex_init(&s->lock, NULL);

	s->file_bits_bytes = rf_slots_bitmap_bytes((uint32_t)nfile);
	s->file_csum_bytes = nfile * sizeof(uint64_t);
	s->tier_bits_bytes = rf_slots_bitmap_bytes((uint32_t)ntier);
	s->tier_ent_bytes = ntier * sizeof(struct tier_ent);
	rf_slots_init(&s->file, table_map(s->file_bits_bytes), (uint32_t)nfile);
	s->file_csum = table_map(s->file_csum_bytes);
	rf_slots_init(&s->tier, table_map(s->tier_bits_bytes), (uint32_t)ntier);
	s->tier_ent = table_map(s->tier_ent_bytes);
	if (!s->file.bits || !s->file_csum || (ntier && (!s->tier.bits || !s->tier_ent))) {
		err = -ENOMEM;
		goto err_free;
	}

	s->fd = open_unlinked(e, dir, cfg->direct_io);
	if (s->fd == -EINVAL && cfg->direct_io) {
		rf_log(e, RF_LOG_WARN, "swap: %s refuses O_DIRECT, using buffered I/O", dir);
		s->fd = open_unlinked(e, dir, false);
	}
	if (s->fd < 0) {
		err = s->fd;
		rf_log(e, RF_LOG_ERR, "swap: cannot create the swap file in %s: %s", dir,
		       strerror(-err));
		goto err_free;
	}
	if (fstatfs(s->fd, &sfs) == 0 && sfs.f_type == TMPFS_MAGIC)
		rf_log(e, RF_LOG_WARN,
		       "swap: %s is tmpfs: swapped pages stay in memory (set a disk directory)",
		       dir);
	*out = s;
	return 0;

err_free:
	rf_swap_store_free(s);
	return err;
}

void rf_swap_store_free(struct rf_swap_store *s)
{
	if (!s)
		return;
	if (s->tier_ent)
		for (uint32_t i = 0; i < s->tier.nslots; i++)
			if (rf_slots_in_use(&s->tier, i))
				rf_free(s->e, s->tier_ent[i].data);
	if (s->fd >= 0)
		close(s->fd);
	table_unmap(s->file.bits, s->file_bits_bytes);
	table_unmap(s->file_csum, s->file_csum_bytes);
	table_unmap(s->tier.bits, s->tier_bits_bytes);
	table_unmap(s->tier_ent, s->tier_ent_bytes);
	pthread_mutex_destroy(&s->lock);
	rf_free(s->e, s);
}

void rf_swap_store_inject(struct rf_swap_store *s, enum rf_swap_inject kind, unsigned int count)
{
	atomic_store(&s->inj_count, 0);
	atomic_store(&s->inj_kind, (int)kind);
	atomic_store(&s->inj_count, count);
}

/* True if an injected failure of @kind is due now (and consumes it). */
static bool injected(struct rf_swap_store *s, enum rf_swap_inject kind)
{
	unsigned int c;

	if (atomic_load_explicit(&s->inj_kind, memory_order_relaxed) != (int)kind)
		return false;
	c = atomic_load(&s->inj_count);
	while (c > 0)
		if (atomic_compare_exchange_weak(&s->inj_count, &c, c - 1))
			return true;
	return false;
}

int rf_swap_store_fd(const struct rf_swap_store *s)
{
	return s->fd;
}

/* Try the tier for one page. Returns the handle, or RF_SWAP_NONE (does not
 * compress well enough, or the tier is full). */
static uint32_t tier_put(struct rf_swap_store *s, const void *page, uint64_t csum)
{
	char buf[LZ4_COMPRESSBOUND(RF_PAGE_SIZE)];
	uint32_t got, h = RF_SWAP_NONE;
	int64_t idx;
	void *data;
	int len;

	if (s->tier.nslots == 0)
		return RF_SWAP_NONE;
	len = LZ4_compress_default(page, buf, RF_PAGE_SIZE, (int)sizeof(buf));
	if (len <= 0 || (uint32_t)len > s->compress_max)
		return RF_SWAP_NONE;
	data = rf_zalloc(s->e, (size_t)len);
	if (!data)
		return RF_SWAP_NONE;
	memcpy(data, buf, (size_t)len);
	pthread_mutex_lock(&s->lock);
	if (s->tier_bytes + (uint64_t)len <= s->tier_limit) {
		idx = rf_slots_alloc(&s->tier, 1, &got);
		if (idx >= 0) {
			s->tier_ent[idx].data = data;
			s->tier_ent[idx].len = (uint32_t)len;
			s->tier_ent[idx].csum = csum;
			s->tier_bytes += (uint64_t)len;
			h = RF_SWAP_H_TIER | (uint32_t)idx;
			data = NULL;
		}
	}
	pthread_mutex_unlock(&s->lock);
	rf_free(s->e, data);
	return h;
}

static void file_free_slots(struct rf_swap_store *s, uint32_t first, uint32_t n)
{
	bool ok;

	pthread_mutex_lock(&s->lock);
	ok = rf_slots_free(&s->file, first, n);
	pthread_mutex_unlock(&s->lock);
	if (!ok)
		rf_log(s->e, RF_LOG_ERR, "swap: freeing free file slots %u+%u (bug)", first, n);
}

/* Write pages @idx[0..n) of @pages to a run of slots starting at @first. */
static int file_write_run(struct rf_swap_store *s, void *const pages[], const unsigned int idx[],
			  unsigned int n, uint32_t first)
{
	struct iovec iov[RF_SWAP_MAX_BATCH];
	size_t want = (size_t)n << RF_PAGE_SHIFT;
	off_t off = (off_t)first << RF_PAGE_SHIFT;
	size_t done = 0;
	ssize_t w;

	for (unsigned int i = 0; i < n; i++) {
		iov[i].iov_base = pages[idx[i]];
		iov[i].iov_len = RF_PAGE_SIZE;
	}
	if (injected(s, RF_SWAP_INJ_WRITE_ENOSPC))
		return -ENOSPC;
	if (injected(s, RF_SWAP_INJ_WRITE_EIO))
		return -EIO;
	while (done < want) {
		unsigned int skip = (unsigned int)(done >> RF_PAGE_SHIFT);

		/* Short writes resume at a page boundary (O_DIRECT needs it;
		 * a partial page is rewritten whole). */
		done &= ~(size_t)(RF_PAGE_SIZE - 1);
		w = pwritev(s->fd, iov + skip, (int)(n - skip), off + (off_t)done);
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (w == 0)
			return -EIO;
		done += (size_t)w;
	}
	return 0;
}

int rf_swap_store_put(struct rf_swap_store *s, void *const pages[], unsigned int n, bool tier_ok,
		      uint32_t handles[])
{
	unsigned int fidx[RF_SWAP_MAX_BATCH], nf = 0, k = 0;
	uint64_t csum[RF_SWAP_MAX_BATCH];
	int err = 0;

	if (n > RF_SWAP_MAX_BATCH)
		return -EINVAL;
	for (unsigned int i = 0; i < n; i++) {
		csum[i] = XXH3_64bits(pages[i], RF_PAGE_SIZE);
		handles[i] = tier_ok ? tier_put(s, pages[i], csum[i]) : RF_SWAP_NONE;
		if (handles[i] == RF_SWAP_NONE)
			fidx[nf++] = i;
	}
	/* File pages: runs of consecutive slots, one pwritev each. */
	while (k < nf) {
		uint32_t got = 0;
		int64_t first;
		int werr;

		pthread_mutex_lock(&s->lock);
		first = rf_slots_alloc(&s->file, nf - k, &got);
		pthread_mutex_unlock(&s->lock);
		if (first < 0) {
			/* The file limit: the caller logs it, once per episode. */
			atomic_fetch_add(&s->enospc, 1);
			err = err ? err : -ENOSPC;
			break;
		}
		werr = file_write_run(s, pages, fidx + k, got, (uint32_t)first);
		if (werr) {
			file_free_slots(s, (uint32_t)first, got);
			if (werr == -ENOSPC)
				atomic_fetch_add(&s->enospc, 1);
			else
				atomic_fetch_add(&s->io_errors, 1);
			rf_log(s->e, RF_LOG_ERR,
			       "swap: writing %u pages at slot %lld of the swap file in %s: %s; "
			       "they stay in memory",
			       got, (long long)first, s->dir, strerror(-werr));
			err = err ? err : werr;
			break;
		}
		for (uint32_t j = 0; j < got; j++) {
			s->file_csum[first + j] = csum[fidx[k + j]];
			handles[fidx[k + j]] = (uint32_t)first + j;
		}
		k += got;
	}
	return err;
}

static int verify(struct rf_swap_store *s, uint32_t h, void *dst, uint64_t csum)
{
	if (injected(s, RF_SWAP_INJ_CORRUPT))
		((unsigned char *)dst)[h % RF_PAGE_SIZE] ^= 0x5a;
	if (XXH3_64bits(dst, RF_PAGE_SIZE) == csum)
		return 0;
	atomic_fetch_add(&s->csum_errors, 1);
	rf_log(s->e, RF_LOG_ERR, "swap: %s %u: checksum mismatch on read back",
	       rf_swap_handle_in_tier(h) ? "tier entry" : "file slot", h & ~RF_SWAP_H_TIER);
	return -EBADMSG;
}

int rf_swap_store_get(struct rf_swap_store *s, uint32_t h, void *dst)
{
	uint32_t idx = h & ~RF_SWAP_H_TIER;
	struct tier_ent ent;
	uint64_t csum;
	ssize_t r;

	if (h == RF_SWAP_NONE)
		return -EINVAL;
	if (h & RF_SWAP_H_TIER) {
		pthread_mutex_lock(&s->lock);
		if (!rf_slots_in_use(&s->tier, idx)) {
			pthread_mutex_unlock(&s->lock);
			return -EINVAL;
		}
		ent = s->tier_ent[idx];
		pthread_mutex_unlock(&s->lock);
		/* The entry cannot go away meanwhile: only the handle's owner,
		 * who is calling us, drops it. */
		if (LZ4_decompress_safe(ent.data, dst, (int)ent.len, RF_PAGE_SIZE) !=
		    RF_PAGE_SIZE) {
			atomic_fetch_add(&s->csum_errors, 1);
			rf_log(s->e, RF_LOG_ERR, "swap: tier entry %u does not decompress", idx);
			return -EBADMSG;
		}
		return verify(s, h, dst, ent.csum);
	}
	pthread_mutex_lock(&s->lock);
	if (!rf_slots_in_use(&s->file, idx)) {
		pthread_mutex_unlock(&s->lock);
		return -EINVAL;
	}
	csum = s->file_csum[idx];
	pthread_mutex_unlock(&s->lock);
	if (injected(s, RF_SWAP_INJ_READ_EIO)) {
		r = -1;
		errno = EIO;
	} else {
		do
			r = pread(s->fd, dst, RF_PAGE_SIZE, (off_t)idx << RF_PAGE_SHIFT);
		while (r < 0 && errno == EINTR);
	}
	if (r != RF_PAGE_SIZE) {
		atomic_fetch_add(&s->io_errors, 1);
		rf_log(s->e, RF_LOG_ERR, "swap: reading file slot %u of the swap file in %s: %s",
		       idx, s->dir, r < 0 ? strerror(errno) : "short read");
		return -EIO;
	}
	return verify(s, h, dst, csum);
}

void rf_swap_store_get_run(struct rf_swap_store *s, uint32_t first, unsigned int n,
			   void *const bufs[], int res[])
{
	struct iovec iov[RF_SWAP_MAX_BATCH];
	uint64_t csum[RF_SWAP_MAX_BATCH];
	unsigned int ok = 0;
	ssize_t r;

	if (n > RF_SWAP_MAX_BATCH)
		n = RF_SWAP_MAX_BATCH;
	/* Only the leading slots that are in use: the run ends at a hole. */
	pthread_mutex_lock(&s->lock);
	while (ok < n && !(first & RF_SWAP_H_TIER) && rf_slots_in_use(&s->file, first + ok)) {
		csum[ok] = s->file_csum[first + ok];
		ok++;
	}
	pthread_mutex_unlock(&s->lock);
	for (unsigned int i = ok; i < n; i++)
		res[i] = -EINVAL;
	if (!ok)
		return;
	for (unsigned int i = 0; i < ok; i++) {
		iov[i].iov_base = bufs[i];
		iov[i].iov_len = RF_PAGE_SIZE;
	}
	if (injected(s, RF_SWAP_INJ_READ_EIO)) {
		r = -1;
		errno = EIO;
	} else {
		do
			r = preadv(s->fd, iov, (int)ok, (off_t)first << RF_PAGE_SHIFT);
		while (r < 0 && errno == EINTR);
	}
	for (unsigned int i = 0; i < ok; i++) {
		if (r < (ssize_t)(((size_t)i + 1) << RF_PAGE_SHIFT)) {
			res[i] = -EIO;
			continue;
		}
		res[i] = verify(s, first + i, bufs[i], csum[i]);
	}
	if (r < (ssize_t)((size_t)ok << RF_PAGE_SHIFT)) {
		atomic_fetch_add(&s->io_errors, 1);
		rf_log(s->e, RF_LOG_ERR,
		       "swap: reading file slots %u+%u of the swap file in %s: %s", first, ok,
		       s->dir, r < 0 ? strerror(errno) : "short read");
	}
}

void rf_swap_store_drop(struct rf_swap_store *s, uint32_t h)
{
	uint32_t idx = h & ~RF_SWAP_H_TIER;
	void *data = NULL;
	bool ok;

	if (h == RF_SWAP_NONE)
		return;
	pthread_mutex_lock(&s->lock);
	if (h & RF_SWAP_H_TIER) {
		ok = rf_slots_free(&s->tier, idx, 1);
		if (ok) {
			data = s->tier_ent[idx].data;
			s->tier_bytes -= s->tier_ent[idx].len;
			s->tier_ent[idx].data = NULL;
		}
	} else {
		ok = rf_slots_free(&s->file, idx, 1);
	}
	pthread_mutex_unlock(&s->lock);
	rf_free(s->e, data);
	if (!ok)
		rf_log(s->e, RF_LOG_ERR, "swap: dropping handle 0x%x that holds nothing (bug)", h);
}

uint32_t rf_swap_store_mem_bytes(struct rf_swap_store *s, uint32_t h)
{
	uint32_t len = 0;

	if (!rf_swap_handle_in_tier(h))
		return 0;
	pthread_mutex_lock(&s->lock);
	if (rf_slots_in_use(&s->tier, h & ~RF_SWAP_H_TIER))
		len = s->tier_ent[h & ~RF_SWAP_H_TIER].len;
	pthread_mutex_unlock(&s->lock);
	return len;
}

void rf_swap_store_stats(struct rf_swap_store *s, struct rf_swap_store_stats *st)
{
	pthread_mutex_lock(&s->lock);
	st->file_pages = s->file.used;
	st->tier_pages = s->tier.used;
	st->tier_bytes = s->tier_bytes;
	pthread_mutex_unlock(&s->lock);
	st->enospc = atomic_load(&s->enospc);
	st->io_errors = atomic_load(&s->io_errors);
	st->csum_errors = atomic_load(&s->csum_errors);
}
