/* SPDX-License-Identifier: MIT */
/*
 * libramfold-preload.so: ramfold in place of the kernel's KSM for a program
 * that does not know about it (a VMM such as QEMU), preloaded by ramfold-run.
 *
 * The program declares its guest RAM the way it would for KSM: it advises a
 * private anonymous range MADV_MERGEABLE (QEMU does for every RAM block when
 * mem-merge=on), or asks prctl(PR_SET_MEMORY_MERGE) for all of its memory.
 * The interposers below adopt such a range into the process's one rf_vm
 * (rf_vm_adopt_ram, gpa = host address) instead of passing the advice on,
 * and from then on keep the program's own calls on that range coherent with
 * the library:
 *
 *   program's call                           here
 *   madvise MERGEABLE                        adopt (a backing the library
 *                                            refuses: passed to the kernel, one
 *                                            log line with the library's reason)
 *   madvise UNMERGEABLE                      release, then the kernel
 *   madvise DONTNEED/REMOVE/FREE             rf_vm_discard on the adopted part
 *   munmap, mmap(MAP_FIXED), mremap          release first (remaining parts
 *                                            of a region are adopted again)
 *   ioctl UFFDIO_REGISTER, VFIO_IOMMU_MAP_DMA release; the range stays the
 *                                            kernel's for good (logged)
 *   prctl PR_SET/GET_MEMORY_MERGE            adopt every anonymous range of at
 *                                            least --min-size, now and later
 *
 * fallocate(PUNCH_HOLE) is not interposed: it names a file, and the library
 * adopts private anonymous memory only, so a hole can never land in adopted
 * RAM (memfd RAM is left to the kernel, holes and all).
 *
 * The library calls the same functions on guest RAM (merging maps store
 * pages over it, swap discards it). Those calls must reach the kernel: a call
 * whose return address lies in the text of libramfold or of this preload
 * passes straight through, and so does any call made on a thread while the
 * preload itself is inside the library (rr_lib_enter: the library's calls
 * into libc or jemalloc, whose text is not ours). The check on the
 * program's side is lock-free (the adopted ranges are kept in atomics), so a
 * library thread that reaches an interposer never waits for rr.lock, which
 * the preload may hold while it waits for that thread.
 *
 * Only in the process ramfold-run exec'd: its pid is in the environment, and
 * every RAMFOLD_RUN_* variable and the preload's LD_PRELOAD entry are removed
 * at start, so children the program execs run without ramfold. After fork the
 * child passes everything through (the library's threads did not follow).
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <link.h>
#include <linux/userfaultfd.h>
#include <linux/vfio.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "core/util.h"
#include "preload.h"

#define EXPORT __attribute__((visibility("default")))

struct rf_run rr = {.lock = PTHREAD_MUTEX_INITIALIZER};

static atomic_bool active;
static pid_t owner_pid;
static int log_fd = -1;
static bool merge_all; /* PR_SET_MEMORY_MERGE 1 */
static __thread int in_lib;
static __thread char *capture; /* the library's last message, while adopting */

/* ---- the real functions -------------------------------------------------- */

static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static int (*real_munmap)(void *, size_t);
static void *(*real_mremap)(void *, size_t, size_t, int, ...);
static int (*real_madvise)(void *, size_t, int);
static int (*real_ioctl)(int, unsigned long, ...);
static int (*real_prctl)(int, ...);

/* Resolved on first use: other libraries' constructors may map memory
 * before this one's runs. */
#define REAL(fn) (real_##fn ? real_##fn : (*(void **)&real_##fn = dlsym(RTLD_NEXT, #fn), real_##fn))

/* ---- whose call is it ---------------------------------------------------- */

static struct {
	uintptr_t lo, hi;
} text[16];
static unsigned int nr_text;

static int note_text(struct dl_phdr_info *info, size_t size, void *arg)
{
	uintptr_t self = (uintptr_t)arg;
	bool lib = info->dlpi_name && strstr(info->dlpi_name, "libramfold.so");

	(void)size;
	if (!lib && info->dlpi_addr != self)
		return 0;
	for (int i = 0; i < info->dlpi_phnum && nr_text < 16; i++) {
		const ElfW(Phdr) *ph = &info->dlpi_phdr[i];

		if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X)) {
			text[nr_text].lo = info->dlpi_addr + ph->p_vaddr;
			text[nr_text].hi = text[nr_text].lo + ph->p_memsz;
			nr_text++;
		}
	}
	return 0;
}

static void cache_text(void)
{
	Dl_info di;

	if (dladdr((void *)cache_text, &di))
		dl_iterate_phdr(note_text, di.dli_fbase);
}

static bool library_call(const void *ra)
{
	if (in_lib)
		return true;
	for (unsigned int i = 0; i < nr_text; i++)
		if ((uintptr_t)ra >= text[i].lo && (uintptr_t)ra < text[i].hi)
			return true;
	return false;
}

void rr_lib_enter(void)
{
	in_lib++;
}

void rr_lib_leave(void)
{
	in_lib--;
}

/* ---- logging ------------------------------------------------------------- */

void rr_log(const char *fmt, ...)
{
	char line[768];
	va_list ap;
	int n;

	if (log_fd < 0)
		return;
	n = snprintf(line, sizeof(line), "ramfold[%d]: ", (int)owner_pid);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	n = (int)strlen(line);
	line[n++] = '\n';
	(void)!write(log_fd, line, (size_t)n);
}

static void lib_log(void *arg, enum rf_log_level level, const char *msg)
{
	(void)arg;
	/* While adopting, the refusal is kept for the line that says where the
	 * range went; the promise's own notes are logged as they come. */
	if (capture && level <= RF_LOG_WARN) {
		snprintf(capture, 512, "%s", msg);
		return;
	}
	rr_log("%s", msg);
}

/* ---- adopted ranges ------------------------------------------------------ */

/*
 * The adopted regions, readable without the lock (interposers on the
 * program's hot paths, and library threads that must never wait for it);
 * written under rr.lock. A slot is free when its end is 0. "kept" ranges
 * were taken back for the program's own userfaultfd or for device DMA:
 * they are never adopted again.
 */
enum { NSLOTS = RF_VM_MAX_REGIONS, NKEPT = 64 };
static _Atomic uintptr_t slot_lo[NSLOTS], slot_hi[NSLOTS];
static bool slot_all[NSLOTS]; /* adopted by PR_SET_MEMORY_MERGE */
static atomic_uint nr_adopted;
static uintptr_t kept_lo[NKEPT], kept_hi[NKEPT];
static unsigned int nr_kept;

static bool overlaps_adopted(uintptr_t a, uintptr_t b)
{
	if (!atomic_load_explicit(&nr_adopted, memory_order_acquire))
		return false;
	for (int i = 0; i < NSLOTS; i++) {
		uintptr_t hi = atomic_load_explicit(&slot_hi[i], memory_order_acquire);

		if (hi && a < hi && atomic_load_explicit(&slot_lo[i], memory_order_relaxed) < b)
			return true;
	}
	return false;
}

static void slot_add(uintptr_t a, uintptr_t b, bool all)
{
	for (int i = 0; i < NSLOTS; i++) {
		if (!atomic_load(&slot_hi[i])) {
			atomic_store(&slot_lo[i], a);
			atomic_store_explicit(&slot_hi[i], b, memory_order_release);
			slot_all[i] = all;
			atomic_fetch_add(&nr_adopted, 1);
			rr.adopted_bytes += b - a;
			return;
		}
	}
}

static void slot_del(int i)
{
	rr.adopted_bytes -= atomic_load(&slot_hi[i]) - atomic_load(&slot_lo[i]);
	atomic_store(&slot_hi[i], 0);
	atomic_store(&slot_lo[i], 0);
	atomic_fetch_sub(&nr_adopted, 1);
}

static bool is_kept(uintptr_t a, uintptr_t b)
{
	for (unsigned int i = 0; i < nr_kept; i++)
		if (a < kept_hi[i] && kept_lo[i] < b)
			return true;
	return false;
}

static void keep(uintptr_t a, uintptr_t b)
{
	if (nr_kept < NKEPT) {
		kept_lo[nr_kept] = a;
		kept_hi[nr_kept++] = b;
	}
}

static uintptr_t page_up(uintptr_t x)
{
	return (x + RF_PAGE_SIZE - 1) & ~(uintptr_t)(RF_PAGE_SIZE - 1);
}

/*
 * Promise the VM @bytes, what is adopted: grown before a range is adopted,
 * shrunk after one is released, so the ledger's promised figures (the
 * host's overcommit, query-memory's "promised") are what the program gave.
 * A VM is promised at least a page, while nothing is adopted. Caller holds
 * rr.lock and is inside the library (rr_lib_enter).
 */
static int promise(uint64_t bytes)
{
	return rf_vm_set_ram_bytes(rr.vm, bytes ? bytes : RF_PAGE_SIZE);
}

/* Adopt [a, b), which overlaps no region. Caller holds rr.lock. On refusal
 * (the library's, the ledger's on the larger promise, or --max-ram's) the
 * range goes to the kernel's KSM, with the reason. */
static int adopt(uintptr_t a, uintptr_t b, bool all)
{
	char why[512] = "";
	int err;

	if (is_kept(a, b)) {
		rr_log("0x%" PRIxPTR "-0x%" PRIxPTR ": left to the kernel's KSM: registered "
		       "earlier for the program's own userfaultfd or device DMA",
		       a, b);
		return REAL(madvise)((void *)a, b - a, MADV_MERGEABLE);
	}
	if (rr.opts.max_ram && rr.adopted_bytes + (b - a) > rr.opts.max_ram) {
		rr.kernel_ranges++;
		rr.kernel_bytes += b - a;
		rr_log("0x%" PRIxPTR "-0x%" PRIxPTR ": left to the kernel's KSM: %" PRIu64
		       " KiB adopted, --max-ram %" PRIu64 " KiB",
		       a, b, rr.adopted_bytes >> 10, rr.opts.max_ram >> 10);
		return REAL(madvise)((void *)a, b - a, MADV_MERGEABLE);
	}
	rr_lib_enter();
	capture = why;
	err = promise(rr.adopted_bytes + (b - a));
	if (!err) {
		err = rf_vm_adopt_ram(rr.vm, a, (void *)a, b - a, 0);
		if (err)
			promise(rr.adopted_bytes); /* only shrinks: cannot fail */
	}
	capture = NULL;
	rr_lib_leave();
	if (!err) {
		slot_add(a, b, all);
		rr_debug("0x%" PRIxPTR "-0x%" PRIxPTR ": adopted (%" PRIuPTR " KiB)", a, b,
			 (b - a) >> 10);
		return 0;
	}
	rr.kernel_ranges++;
	rr.kernel_bytes += b - a;
	rr_log("0x%" PRIxPTR "-0x%" PRIxPTR ": left to the kernel's KSM: %s", a, b,
	       why[0] ? why : strerror(-err));
	return REAL(madvise)((void *)a, b - a, MADV_MERGEABLE);
}

/*
 * The piece of [a, b) that starts at @a and is either all adopted (returns
 * true) or all not: *@end is where it stops. Caller holds rr.lock.
 */
static bool next_piece(uintptr_t a, uintptr_t b, uintptr_t *end)
{
	*end = b;
	for (int i = 0; i < NSLOTS; i++) {
		uintptr_t lo = atomic_load(&slot_lo[i]), hi = atomic_load(&slot_hi[i]);

		if (!hi)
			continue;
		if (lo <= a && a < hi) {
			*end = b < hi ? b : hi;
			return true;
		}
		if (lo > a && lo < *end)
			*end = lo;
	}
	return false;
}

/* Adopt the parts of [a, b) not adopted yet. Caller holds rr.lock. */
static int adopt_gaps(uintptr_t a, uintptr_t b, bool all)
{
	int ret = 0;

	while (a < b) {
		uintptr_t end;

		if (!next_piece(a, b, &end) && adopt(a, end, all))
			ret = -1;
		a = end;
	}
	return ret;
}

/*
 * Give back every region overlapping [a, b) before the program changes that
 * memory itself. @discard: the content of [a, b) dies anyway (munmap, a
 * fixed mapping over it): discard it first, so the release has nothing
 * there to copy back. The parts of a region outside [a, b) are adopted
 * again: the program still has them as guest RAM, merged as before (their
 * merged pages were copied back by the release and are merged again on the
 * next pass). Caller holds rr.lock.
 */
static void release_range(uintptr_t a, uintptr_t b, bool discard, const char *why)
{
	for (int i = 0; i < NSLOTS; i++) {
		uintptr_t lo = atomic_load(&slot_lo[i]), hi = atomic_load(&slot_hi[i]);
		uintptr_t x, y;
		bool all = slot_all[i];
		int err;

		if (!hi || !(a < hi && lo < b))
			continue;
		x = a > lo ? a : lo;
		y = b < hi ? b : hi;
		rr_lib_enter();
		if (discard)
			rf_vm_discard(rr.vm, x, y - x, NULL);
		err = rf_vm_release_ram(rr.vm, lo);
		if (err == -EIO || err == -EBUSY)
			err = rf_vm_release_ram(rr.vm, lo);
		rr_lib_leave();
		if (err) {
			rr_log("0x%" PRIxPTR "-0x%" PRIxPTR ": release before %s failed: %s; the "
			       "region stays adopted",
			       lo, hi, why, strerror(-err));
			continue;
		}
		atomic_fetch_add(&rr.releases, 1);
		slot_del(i);
		rr_lib_enter();
		err = promise(rr.adopted_bytes);
		rr_lib_leave();
		if (err) /* only shrinks to what is still adopted: not expected */
			rr_log("promised RAM stays above the %" PRIu64 " KiB adopted: %s",
			       rr.adopted_bytes >> 10, strerror(-err));
		rr_debug("0x%" PRIxPTR "-0x%" PRIxPTR ": released (%s)", lo, hi, why);
		if (lo < x)
			adopt(lo, x, all);
		if (y < hi)
			adopt(y, hi, all);
	}
}

/* ---- interposers --------------------------------------------------------- */

static bool ours(const void *ra)
{
	return atomic_load_explicit(&active, memory_order_acquire) && !library_call(ra);
}

/* Discard the adopted parts of [a, b) through the library, the rest with
 * the kernel's @advice. */
static int discard(uintptr_t a, uintptr_t b, int advice)
{
	int ret = 0;

	pthread_mutex_lock(&rr.lock);
	while (a < b) {
		uintptr_t end;

		if (next_piece(a, b, &end)) {
			int err;

			rr_lib_enter();
			err = rf_vm_discard(rr.vm, a, end - a, NULL);
			rr_lib_leave();
			if (err) {
				rr_log("0x%" PRIxPTR "-0x%" PRIxPTR ": discard: %s", a, end,
				       strerror(-err));
				errno = -err;
				ret = -1;
			} else {
				atomic_fetch_add(&rr.discards, 1);
				atomic_fetch_add(&rr.discarded_bytes, end - a);
			}
		} else if (REAL(madvise)((void *)a, end - a, advice)) {
			ret = -1;
		}
		a = end;
	}
	pthread_mutex_unlock(&rr.lock);
	return ret;
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	uintptr_t a = (uintptr_t)addr, b = page_up(a + len);
	int ret;

	if (!ours(__builtin_return_address(0)) || (a & (RF_PAGE_SIZE - 1)) || !len || b < a)
		return REAL(madvise)(addr, len, advice);
	switch (advice) {
	case MADV_MERGEABLE:
		pthread_mutex_lock(&rr.lock);
		ret = adopt_gaps(a, b, false);
		pthread_mutex_unlock(&rr.lock);
		return ret;
	case MADV_UNMERGEABLE:
		if (overlaps_adopted(a, b)) {
			pthread_mutex_lock(&rr.lock);
			release_range(a, b, false, "MADV_UNMERGEABLE");
			pthread_mutex_unlock(&rr.lock);
		}
		break;
	case MADV_DONTNEED:
	case MADV_REMOVE:
	case MADV_FREE:
		if (overlaps_adopted(a, b))
			return discard(a, b, advice);
		break;
	}
	return REAL(madvise)(addr, len, advice);
}

/*
 * Anonymous mappings of at least --min-size the program made: what
 * PR_SET_MEMORY_MERGE adopts. Only the program's own mmap calls are
 * candidates (never the library's, whose store and metadata are anonymous
 * too, nor its threads', "rf-*", allocating through libc or jemalloc), so
 * the list is kept from the start rather than read from /proc/self/maps.
 */
enum { NPROG = 64 };
static uintptr_t prog_lo[NPROG], prog_hi[NPROG];

static bool library_thread(void)
{
	char name[16] = "";

	pthread_getname_np(pthread_self(), name, sizeof(name));
	return !strncmp(name, "rf-", 3);
}

static void note_mapping(void *p, size_t len, int prot, int flags)
{
	uintptr_t a = (uintptr_t)p;

	if (p == MAP_FAILED || len < rr.opts.min_size || (flags & MAP_SHARED) ||
	    !(flags & MAP_ANONYMOUS) || (flags & (MAP_HUGETLB | MAP_STACK)) ||
	    (prot & (PROT_READ | PROT_WRITE)) != (PROT_READ | PROT_WRITE) || library_thread())
		return;
	pthread_mutex_lock(&rr.lock);
	if (merge_all) {
		adopt_gaps(a, page_up(a + len), true);
	} else {
		for (int i = 0; i < NPROG; i++)
			if (!prog_hi[i]) {
				prog_lo[i] = a;
				prog_hi[i] = page_up(a + len);
				break;
			}
	}
	pthread_mutex_unlock(&rr.lock);
}

/* The program unmaps [a, b): forget its candidates there. Caller holds rr.lock. */
static void forget_mappings(uintptr_t a, uintptr_t b)
{
	for (int i = 0; i < NPROG; i++)
		if (prog_hi[i] && a < prog_hi[i] && prog_lo[i] < b)
			prog_hi[i] = prog_lo[i] = 0;
}

static void *mmap_common(void *addr, size_t len, int prot, int flags, int fd, off_t off,
			 const void *ra)
{
	uintptr_t a = (uintptr_t)addr;
	void *p;

	if (!ours(ra))
		return REAL(mmap)(addr, len, prot, flags, fd, off);
	if ((flags & MAP_FIXED) && overlaps_adopted(a, a + len)) {
		pthread_mutex_lock(&rr.lock);
		release_range(a, page_up(a + len), true, "mmap(MAP_FIXED)");
		pthread_mutex_unlock(&rr.lock);
	}
	p = REAL(mmap)(addr, len, prot, flags, fd, off);
	note_mapping(p, len, prot, flags);
	return p;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap_common(addr, len, prot, flags, fd, off, __builtin_return_address(0));
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return mmap_common(addr, len, prot, flags, fd, off, __builtin_return_address(0));
}

EXPORT int munmap(void *addr, size_t len)
{
	uintptr_t a = (uintptr_t)addr;

	if (!ours(__builtin_return_address(0)))
		return REAL(munmap)(addr, len);
	pthread_mutex_lock(&rr.lock);
	if (overlaps_adopted(a, a + len))
		release_range(a, page_up(a + len), true, "munmap");
	forget_mappings(a, page_up(a + len));
	pthread_mutex_unlock(&rr.lock);
	return REAL(munmap)(addr, len);
}

/*
 * The kernel's VMAs over [a, b), in order: *@n pieces, their starts in
 * @lo and ends in @hi (arrays of @max). Read with read(2) into a buffer of
 * the real mmap: nothing here may reach malloc, whose mmap would come back
 * to the interposers while rr.lock is held. -errno, or -E2BIG past @max.
 */
static int vmas_in(uintptr_t a, uintptr_t b, uintptr_t *lo, uintptr_t *hi, size_t max, size_t *n)
{
	size_t cap = 1 << 20, len = 0;
	char *buf =
	    REAL(mmap)(NULL, cap, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC), err = 0;
	ssize_t r;

	*n = 0;
	if (buf == MAP_FAILED || fd < 0) {
		err = -errno;
		goto out;
	}
	while ((r = read(fd, buf + len, cap - len - 1)) > 0) {
		len += (size_t)r;
		if (len + 4096 > cap) {
			char *nb = REAL(mremap)(buf, cap, 2 * cap, MREMAP_MAYMOVE);

			if (nb == MAP_FAILED) {
				err = -errno;
				goto out;
			}
			buf = nb;
			cap *= 2;
		}
	}
	buf[len] = 0;
	for (char *l = buf; l && *l; l = strchr(l, '\n') ? strchr(l, '\n') + 1 : NULL) {
		unsigned long x, y;

		if (sscanf(l, "%lx-%lx", &x, &y) != 2 || y <= a || x >= b)
			continue;
		if (*n == max) {
			err = -E2BIG;
			break;
		}
		lo[*n] = x > a ? x : a;
		hi[(*n)++] = y < b ? y : b;
	}
out:
	if (fd >= 0)
		close(fd);
	if (buf != MAP_FAILED)
		REAL(munmap)(buf, cap);
	return err;
}

/*
 * mremap of released guest RAM that the kernel refused with EFAULT: the
 * range is several VMAs (each page dedup merged and then copied back on
 * release is a VMA of its own), and mremap moves one. Done as the kernel
 * would for one VMA: growing in place maps zeros after the end if that
 * room is free; a move maps zeros at the new place and moves each VMA
 * there (page tables moved, no copy, so no write is lost); what was not
 * moved is unmapped. Caller holds rr.lock; returns as mremap does.
 */
static void *mremap_pieces(uintptr_t a, size_t oldlen, size_t newlen, int flags, void *target)
{
	enum { MAXV = 65536 };
	size_t keep = oldlen < newlen ? oldlen : newlen, nv;
	uintptr_t *lo, *hi, d;
	void *p;
	int err;

	if (flags & MREMAP_DONTUNMAP) {
		errno = EFAULT;
		return MAP_FAILED;
	}
	if (!(flags & MREMAP_FIXED) && newlen > oldlen &&
	    REAL(mmap)((void *)(a + oldlen), newlen - oldlen, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != MAP_FAILED)
		return (void *)a;
	if (!(flags & MREMAP_MAYMOVE)) {
		errno = ENOMEM;
		return MAP_FAILED;
	}
	lo = REAL(mmap)(NULL, 2 * MAXV * sizeof(*lo), PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (lo == MAP_FAILED)
		return MAP_FAILED;
	hi = lo + MAXV;
	err = vmas_in(a, a + keep, lo, hi, MAXV, &nv);
	p = err ? MAP_FAILED
		: REAL(mmap)(target, newlen, PROT_READ | PROT_WRITE,
			     MAP_PRIVATE | MAP_ANONYMOUS | (target ? MAP_FIXED : 0), -1, 0);
	if (p == MAP_FAILED) {
		if (err)
			errno = -err;
		REAL(munmap)(lo, 2 * MAXV * sizeof(*lo));
		return MAP_FAILED;
	}
	d = (uintptr_t)p;
	for (size_t i = 0; i < nv; i++)
		if (REAL(mremap)((void *)lo[i], hi[i] - lo[i], hi[i] - lo[i],
				 MREMAP_MAYMOVE | MREMAP_FIXED,
				 (void *)(d + lo[i] - a)) == MAP_FAILED) {
			/* Half moved: nothing sound to return to the program. */
			rr_log("0x%" PRIxPTR "-0x%" PRIxPTR ": mremap: moving 0x%" PRIxPTR
			       " of a range of several VMAs: %s",
			       a, a + oldlen, lo[i], strerror(errno));
			REAL(munmap)(lo, 2 * MAXV * sizeof(*lo));
			return MAP_FAILED;
		}
	REAL(munmap)((void *)a, oldlen);
	REAL(munmap)(lo, 2 * MAXV * sizeof(*lo));
	rr_debug("0x%" PRIxPTR "-0x%" PRIxPTR ": mremap: moved %zu VMAs to 0x%" PRIxPTR, a,
		 a + oldlen, nv, d);
	return p;
}

/*
 * Guest RAM the program moves stays guest RAM (the kernel moves a
 * VM_MERGEABLE flag with the mapping): release the old range, move, adopt
 * the new one.
 */
EXPORT void *mremap(void *old, size_t oldlen, size_t newlen, int flags, ...)
{
	uintptr_t a = (uintptr_t)old;
	void *target = NULL, *p;
	bool moved_ram = false;
	va_list ap;

	if (flags & MREMAP_FIXED) {
		va_start(ap, flags);
		target = va_arg(ap, void *);
		va_end(ap);
	}
	if (!ours(__builtin_return_address(0)))
		return REAL(mremap)(old, oldlen, newlen, flags, target);
	pthread_mutex_lock(&rr.lock);
	if (overlaps_adopted(a, a + oldlen)) {
		release_range(a, page_up(a + oldlen), false, "mremap");
		moved_ram = true;
	}
	if (target && overlaps_adopted((uintptr_t)target, (uintptr_t)target + newlen))
		release_range((uintptr_t)target, page_up((uintptr_t)target + newlen), true,
			      "mremap over it");
	p = REAL(mremap)(old, oldlen, newlen, flags, target);
	if (p == MAP_FAILED && errno == EFAULT && moved_ram)
		p = mremap_pieces(a, oldlen, newlen, flags, target);
	if (moved_ram) {
		if (p != MAP_FAILED)
			adopt_gaps((uintptr_t)p, page_up((uintptr_t)p + newlen), false);
		else
			adopt_gaps(a, page_up(a + oldlen), false);
	}
	pthread_mutex_unlock(&rr.lock);
	return p;
}

/* The program takes [a, b) for itself (its own userfaultfd, device DMA):
 * release it and never adopt it again. */
static void take_back(uintptr_t a, uintptr_t b, const char *why)
{
	pthread_mutex_lock(&rr.lock);
	if (overlaps_adopted(a, b)) {
		release_range(a, b, false, why);
		rr_log("0x%" PRIxPTR "-0x%" PRIxPTR ": released to the kernel: %s", a, b, why);
	}
	keep(a, b);
	pthread_mutex_unlock(&rr.lock);
}

EXPORT int ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	if (arg && ours(__builtin_return_address(0))) {
		if (req == UFFDIO_REGISTER) {
			const struct uffdio_register *r = arg;

			take_back(r->range.start, page_up(r->range.start + r->range.len),
				  "registered with the program's own userfaultfd (postcopy or "
				  "snapshot)");
		} else if (req == VFIO_IOMMU_MAP_DMA) {
			const struct vfio_iommu_type1_dma_map *m = arg;

			take_back(m->vaddr, page_up(m->vaddr + m->size),
				  "mapped for device DMA (VFIO_IOMMU_MAP_DMA): merged pages "
				  "unshared, never remapped under the device");
		}
	}
	return REAL(ioctl)(fd, req, arg);
}

/* Every anonymous mapping of at least --min-size the program made and
 * still has. Caller holds rr.lock. */
static void adopt_all_mappings(void)
{
	for (int i = 0; i < NPROG; i++)
		if (prog_hi[i]) {
			adopt_gaps(prog_lo[i], prog_hi[i], true);
			prog_lo[i] = prog_hi[i] = 0;
		}
}

EXPORT int prctl(int option, ...)
{
	unsigned long a2, a3, a4, a5;
	va_list ap;

	va_start(ap, option);
	a2 = va_arg(ap, unsigned long);
	a3 = va_arg(ap, unsigned long);
	a4 = va_arg(ap, unsigned long);
	a5 = va_arg(ap, unsigned long);
	va_end(ap);
	if (ours(__builtin_return_address(0))) {
		if (option == PR_SET_MEMORY_MERGE && a2 <= 1 && !a3 && !a4 && !a5) {
			pthread_mutex_lock(&rr.lock);
			merge_all = a2;
			if (merge_all) {
				adopt_all_mappings();
			} else {
				for (int i = 0; i < NSLOTS; i++)
					if (slot_all[i] && atomic_load(&slot_hi[i]))
						release_range(atomic_load(&slot_lo[i]),
							      atomic_load(&slot_hi[i]), false,
							      "PR_SET_MEMORY_MERGE 0");
			}
			pthread_mutex_unlock(&rr.lock);
			rr_debug("PR_SET_MEMORY_MERGE %lu", a2);
			return 0;
		}
		if (option == PR_GET_MEMORY_MERGE && !a2 && !a3 && !a4 && !a5)
			return merge_all;
	}
	return REAL(prctl)(option, a2, a3, a4, a5);
}

/* ---- start and exit ------------------------------------------------------ */

static char *env_dup(const char *name)
{
	const char *v = getenv(name);

	return v ? strdup(v) : NULL;
}

/* Remove our variables and our LD_PRELOAD entry: nothing the program
 * starts inherits ramfold. */
static void drop_env(const char *preload)
{
	static const char *const vars[] = {
	    RF_RUN_ENV_PID,	      RF_RUN_ENV_PRELOAD,      RF_RUN_ENV_DEDUP,
	    RF_RUN_ENV_SWAP_RESIDENT, RF_RUN_ENV_SWAP_DIR,     RF_RUN_ENV_CTL,
	    RF_RUN_ENV_METRICS_FILE,  RF_RUN_ENV_METRICS_PORT, RF_RUN_ENV_MIN_SIZE,
	    RF_RUN_ENV_MAX_RAM,	      RF_RUN_ENV_LOG,	       RF_RUN_ENV_VERBOSE,
	    RF_RUN_ENV_CLEANER_FD,    RF_RUN_ENV_DEDUP_PAUSED, RF_RUN_ENV_DEDUP_NICE,
	    RF_RUN_ENV_DEDUP_HUGE,
	};
	const char *ld = getenv("LD_PRELOAD");

	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++)
		unsetenv(vars[i]);
	if (ld && preload) {
		size_t n = strlen(preload);
		char *rest = NULL;

		if (!strncmp(ld, preload, n) && (ld[n] == ':' || ld[n] == ' ' || !ld[n])) {
			rest = strdup(ld[n] ? ld + n + 1 : "");
			if (rest && *rest)
				setenv("LD_PRELOAD", rest, 1);
			else
				unsetenv("LD_PRELOAD");
			free(rest);
		}
	}
}

static void read_opts(struct rf_run_opts *o)
{
	char *v;
	uint64_t n;

	rf_run_opts_init(o);
	if ((v = env_dup(RF_RUN_ENV_DEDUP)))
		rf_run_parse_dedup(o, v); /* checked by ramfold-run; v stays (domain) */
	if ((v = env_dup(RF_RUN_ENV_SWAP_RESIDENT)) && !parse_u64(v, &n))
		o->swap_resident = n;
	o->swap_dir = env_dup(RF_RUN_ENV_SWAP_DIR);
	o->ctl = env_dup(RF_RUN_ENV_CTL);
	o->metrics_file = env_dup(RF_RUN_ENV_METRICS_FILE);
	if ((v = env_dup(RF_RUN_ENV_METRICS_PORT)) && !parse_u64(v, &n))
		o->metrics_port = (int)n;
	if ((v = env_dup(RF_RUN_ENV_MIN_SIZE)) && !parse_u64(v, &n))
		o->min_size = n;
	if ((v = env_dup(RF_RUN_ENV_MAX_RAM)) && !parse_u64(v, &n))
		o->max_ram = n;
	if ((v = env_dup(RF_RUN_ENV_LOG)))
		o->log = v;
	o->verbose = getenv(RF_RUN_ENV_VERBOSE) != NULL;
	o->dedup_paused = getenv(RF_RUN_ENV_DEDUP_PAUSED) != NULL;
	/* Checked by ramfold-run, with the trial engine's scanner. */
	o->dedup_nice_set = (v = getenv(RF_RUN_ENV_DEDUP_NICE)) && !parse_nice(v, &o->dedup_nice);
	/* Checked by ramfold-run, with the trial engine. */
	if ((v = getenv(RF_RUN_ENV_DEDUP_HUGE)))
		parse_dedup_huge(v, &o->huge);
}

static void forked_child(void)
{
	/* The library's threads stayed in the parent: pass everything through. */
	atomic_store(&active, false);
}

/* The VM's name: the program's, cut to what rf_vm_new takes. */
static void vm_name(char *out, size_t len)
{
	snprintf(out, len, "%.31s", program_invocation_short_name);
	for (char *p = out; *p; p++)
		if (*p <= ' ' || *p > '~')
			*p = '_';
	if (!out[0])
		snprintf(out, len, "vm");
}

/* The engine's thread_start hook with --dedup-nice: each scanner thread
 * sets its own nice as it starts, before it scans. */
static void scanner_nice(void *arg, const char *name)
{
	int err = scan_thread_set_nice(name, rr.opts.dedup_nice);

	(void)arg;
	if (err)
		rr_log("--dedup-nice %d: %s stays at the program's nice: %s", rr.opts.dedup_nice,
		       name, strerror(-err));
}

static int start_engine(void)
{
	struct rf_engine_config ec;
	struct rf_dedup_config dc;
	struct rf_vm_config vc;
	char name[32];
	int err;

	rf_engine_config_init(&ec);
	ec.log = lib_log;
	ec.log_level = rr.opts.verbose ? RF_LOG_INFO : RF_LOG_WARN;
	ec.flags = RF_ENGINE_REQUIRE_UFFD | RF_ENGINE_REQUIRE_UFFD_WP;
	if (rr.opts.dedup_nice_set)
		ec.thread_start = scanner_nice;
	err = rf_engine_new(&ec, &rr.engine);
	if (err)
		return err;
	rf_dedup_config_init(&dc);
	dc.mode = rr.opts.dedup;
	dc.huge = rr.opts.huge;
	err = rf_dedup_start(rr.engine, &dc);
	if (err)
		return err;
	/* The trial found the mode possible; should this process's engine
	 * not (the library logged why), the log says so once more, in
	 * --dedup-huge's words. */
	if (rr.opts.huge != RF_DEDUP_HUGE_SPLIT &&
	    (err = rf_dedup_set_huge(rr.engine, rr.opts.huge)))
		rr_log("--dedup-huge %s: %s: huge pages are merged and split",
		       rf_dedup_huge_name(rr.opts.huge), strerror(-err));
	rf_vm_config_init(&vc);
	/* Promised what is adopted (adopt, release_range): nothing yet, and a
	 * VM is promised at least a page. */
	vc.ram_bytes = RF_PAGE_SIZE;
	vc.domain = rr.opts.domain;
	vm_name(name, sizeof(name));
	err = rf_vm_new(rr.engine, name, &vc, &rr.vm);
	if (err)
		return err;
	/* Paused: the VM is attached when set-dedup releases it (service.c);
	 * the scanner has nothing to scan until then. */
	if (!rr.opts.dedup_paused) {
		err = rf_dedup_add_vm(rr.vm);
		if (err)
			return err;
		rr.dedup_attached = true;
	}
	if (rr.opts.swap_resident) {
		struct rf_swap_config sc;

		rf_swap_config_init(&sc);
		sc.dir = rr.opts.swap_dir;
		err = rf_engine_set_swap(rr.engine, &sc);
		if (!err)
			err = rf_vm_set_swap_target(rr.vm, rr.opts.swap_resident);
		if (err)
			rr_log("swap: cannot start (%s): guest RAM stays resident", strerror(-err));
		else
			rr.swap_on = true;
	}
	return 0;
}

/* The write end of the cleaner's pipe (ramfold-run's main.c), or -1. */
static int cleaner_fd = -1;

void rr_tell_cleaner(char what)
{
	if (cleaner_fd >= 0 && write(cleaner_fd, &what, 1) != 1)
		rr_log("cleaner: %s: it may leave what it should remove", strerror(errno));
}

__attribute__((constructor)) static void rr_init(void)
{
	const char *pid = getenv(RF_RUN_ENV_PID);
	char *preload = env_dup(RF_RUN_ENV_PRELOAD);
	bool mine = pid && strtol(pid, NULL, 10) == (long)getpid();
	char why[512] = "";
	int err;

	if (mine)
		read_opts(&rr.opts);
	/* The cleaner's pipe (ramfold-run's main.c) is for this process only:
	 * a program it execs must not keep the cleaner waiting. */
	if (mine && getenv(RF_RUN_ENV_CLEANER_FD)) {
		int cfd = (int)strtol(getenv(RF_RUN_ENV_CLEANER_FD), NULL, 10);

		if (cfd > 2 && fcntl(cfd, F_SETFD, FD_CLOEXEC) == 0)
			cleaner_fd = cfd;
	}
	drop_env(preload);
	free(preload);
	if (!mine)
		return;
	owner_pid = getpid();
	log_fd = !strcmp(rr.opts.log, "-")
		     ? fcntl(2, F_DUPFD_CLOEXEC, 3)
		     : open(rr.opts.log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	cache_text();
	pthread_atfork(NULL, NULL, forked_child);
	rr_lib_enter();
	capture = why;
	err = start_engine();
	capture = NULL;
	rr_lib_leave();
	if (err) {
		rr_log("cannot start (%s): the program runs with the kernel's KSM",
		       why[0] ? why : strerror(-err));
		rr_lib_enter();
		rf_engine_free(rr.engine);
		rr_lib_leave();
		rr.engine = NULL;
		rr.vm = NULL;
		return;
	}
	rr_service_start();
	rr_debug("started: dedup %s, min-size %" PRIu64 " KiB", rf_dedup_mode_name(rr.opts.dedup),
		 rr.opts.min_size >> 10);
	atomic_store(&active, true);
}

/*
 * At exit (the program's exit(), its own SIGTERM handling included): after
 * the program's destructors, before the library's. Stops the service thread
 * (the socket and metrics file go), then frees the engine: the adopted
 * regions are released (merged pages copied back) and the library's threads
 * joined. Not in a forked child: what is here belongs to the parent.
 */
__attribute__((destructor)) static void rr_fini(void)
{
	if (!rr.engine || getpid() != owner_pid)
		return;
	atomic_store(&active, false);
	rr_service_stop();
	pthread_mutex_lock(&rr.lock);
	rr_lib_enter();
	rf_engine_free(rr.engine);
	rr_lib_leave();
	rr.engine = NULL;
	rr.vm = NULL;
	pthread_mutex_unlock(&rr.lock);
	rr_debug("stopped");
}
