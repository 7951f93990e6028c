/* SPDX-License-Identifier: MIT */
/*
 * The RF_DEDUP_KSM backend (dedup_ksm_ops): the same API, with the kernel's
 * KSM doing the work, so a user can compare the two engines on their own
 * guests.
 *
 * Guest RAM is marked MADV_MERGEABLE and ksmd is configured (pages_to_scan
 * and sleep_millisecs, only if the config gives pages_to_scan) and started
 * (run=1) through sysfs. A VM whose marking failed is marked again at each
 * stats call. When a VM is detached its RAM is marked MADV_UNMERGEABLE; on
 * stop, run=2 unmerges what is left, the previous pages_to_scan and
 * sleep_millisecs are written back, and run=0 (the host is left with KSM
 * off, whatever it was). Stats come from /proc/self/ksm_stat (this
 * process's pages, Linux 6.1+), else from sysfs (host-wide); CPU time is
 * ksmd's, from /proc/PID/stat. There is no scan rate to set at run time
 * (-EOPNOTSUPP), and no per-VM measure: KSM's figures are per process.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "dedup_internal.h"

static int ksm_read(struct rf_dedup *d, const char *name, char *buf, size_t len)
{
	char path[320];
	ssize_t n;
	int fd;

	snprintf(path, sizeof(path), "%s/%s", d->e->ksm_sysfs_dir, name);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, len - 1);
	close(fd);
	if (n < 0)
		return -errno;
	buf[n] = '\0';
	buf[strcspn(buf, "\n")] = '\0';
	return 0;
}

static uint64_t ksm_u64(struct rf_dedup *d, const char *name)
{
	char buf[64];

	if (ksm_read(d, name, buf, sizeof(buf)) != 0)
		return 0;
	return strtoull(buf, NULL, 10);
}

static int ksm_write(struct rf_dedup *d, const char *name, const char *val)
{
	char path[320];
	ssize_t n;
	int fd, err = 0;

	snprintf(path, sizeof(path), "%s/%s", d->e->ksm_sysfs_dir, name);
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		err = -errno;
	} else {
		n = write(fd, val, strlen(val));
		if (n < 0)
			err = -errno;
		close(fd);
	}
	if (err)
		rf_log(d->e, RF_LOG_ERR, "dedup: ksm: writing %s to %s: %s", val, path,
		       strerror(-err));
	return err;
}

static int find_ksmd(void)
{
	DIR *dir = opendir("/proc");
	struct dirent *de;
	int pid = -1;

	if (!dir)
		return -1;
	while ((de = readdir(dir)) && pid < 0) {
		char path[300], comm[32] = "";
		FILE *f;

		if (de->d_name[0] < '1' || de->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/comm", de->d_name);
		f = fopen(path, "re");
		if (!f)
			continue;
		if (fgets(comm, sizeof(comm), f) && strcmp(comm, "ksmd\n") == 0)
			pid = atoi(de->d_name);
		fclose(f);
	}
	closedir(dir);
	return pid;
}

/* utime + stime of @pid, in ns. */
static uint64_t proc_cpu_ns(int pid)
{
	unsigned long long ut = 0, st = 0;
	char path[64], buf[1024], *p;
	FILE *f;

	if (pid <= 0)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	f = fopen(path, "re");
	if (!f)
		return 0;
	if (!fgets(buf, sizeof(buf), f)) {
		fclose(f);
		return 0;
	}
	fclose(f);
	p = strrchr(buf, ')');
	if (!p ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
		return 0;
	return (ut + st) * (1000000000ull / (uint64_t)sysconf(_SC_CLK_TCK));
}

static int ksm_start(struct rf_dedup *d)
{
	char v[32];
	int err;

	if (!d->e->feat.ksm) {
		rf_log(d->e, RF_LOG_ERR, "dedup: start: kernel KSM not found at %s",
		       d->e->ksm_sysfs_dir);
		return -ENODEV;
	}
	if (ksm_read(d, "run", d->ksm.run, sizeof(d->ksm.run)) ||
	    ksm_read(d, "pages_to_scan", d->ksm.pages_to_scan, sizeof(d->ksm.pages_to_scan)) ||
	    ksm_read(d, "sleep_millisecs", d->ksm.sleep_ms, sizeof(d->ksm.sleep_ms))) {
		rf_log(d->e, RF_LOG_ERR, "dedup: ksm: cannot read %s", d->e->ksm_sysfs_dir);
		return -ENODEV;
	}
	d->ksm.saved = true;
	/* Both settings are written when pages_to_scan is given (sleep 0
	 * is a valid setting); otherwise the kernel's stay. */
	if (d->cfg.ksm_pages_to_scan) {
		snprintf(v, sizeof(v), "%u", d->cfg.ksm_pages_to_scan);
		if ((err = ksm_write(d, "pages_to_scan", v)))
			return err;
		snprintf(v, sizeof(v), "%u", d->cfg.ksm_sleep_ms);
		if ((err = ksm_write(d, "sleep_millisecs", v)))
			return err;
	}
	d->ksm.ksmd_pid = find_ksmd();
	d->ksm.ksmd_cpu0_ns = proc_cpu_ns(d->ksm.ksmd_pid);
	d->ksm.full_scans0 = ksm_u64(d, "full_scans");
	return ksm_write(d, "run", "1");
}

static int ksm_add_vm(struct rf_dedup *d, struct rf_dedup_vm *dv)
{
	rf_vm *vm = dv->vm;
	struct rf_region *r;
	int err = 0;

	(void)d;
	rf_vm_regions_rdlock(vm);
	for (unsigned int i = 0; !err && (r = __rf_vm_region(vm, i)); i++) {
		if (madvise(r->hva, r->size, MADV_MERGEABLE) != 0) {
			err = -errno;
			rf_log(vm->e, RF_LOG_ERR, "%s: dedup: ksm: madvise(MERGEABLE): %s",
			       vm->name, strerror(errno));
		}
	}
	rf_vm_regions_unlock(vm);
	dv->ksm_marked = !err;
	return err;
}

/* Every VM is detached (its RAM marked MADV_UNMERGEABLE again). */
static void ksm_stop(struct rf_dedup *d)
{
	if (!d->ksm.saved)
		return;
	/* Unmerge whatever KSM still shares, then leave it off. */
	ksm_write(d, "run", "2");
	for (int i = 0; i < 2000 && ksm_u64(d, "pages_shared"); i++)
		usleep(5000);
	ksm_write(d, "pages_to_scan", d->ksm.pages_to_scan);
	ksm_write(d, "sleep_millisecs", d->ksm.sleep_ms);
	ksm_write(d, "run", "0");
	d->ksm.saved = false;
}

/* A field of /proc/self/ksm_stat (this process only), or -1. */
static int64_t self_ksm_stat(const char *field)
{
	char line[128], name[64];
	long long v;
	int64_t out = -1;
	FILE *f = fopen("/proc/self/ksm_stat", "re");

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%63s %lld", name, &v) == 2 && strcmp(name, field) == 0)
			out = v;
	fclose(f);
	return out;
}

static int ksm_stats(struct rf_dedup *d, struct rf_dedup_stats *st, bool measure)
{
	int64_t merging = self_ksm_stat("ksm_merging_pages");
	int64_t zero = self_ksm_stat("ksm_zero_pages");

	(void)measure; /* nothing costs more to measure */
	pthread_mutex_lock(&d->lock);
	for (struct rf_dedup_vm *dv = d->vms; dv; dv = dv->next)
		if (!dv->ksm_marked)
			ksm_add_vm(d, dv);
	pthread_mutex_unlock(&d->lock);
	/* KSM is host-wide: sysfs counts every process's pages (a QEMU with
	 * mergeable RAM, say). This process's own are in /proc/self/ksm_stat
	 * (Linux 6.1+); pages_shared exists only host-wide. */
	if (merging < 0)
		merging = (int64_t)ksm_u64(d, "pages_sharing");
	if (zero < 0)
		zero = (int64_t)ksm_u64(d, "ksm_zero_pages");
	st->pages_sharing = (uint64_t)merging;
	st->store_pages = ksm_u64(d, "pages_shared");
	st->pages_zero = (uint64_t)zero;
	st->scan_passes = ksm_u64(d, "full_scans") - d->ksm.full_scans0;
	st->pages_scanned = 0;
	st->cpu_ns = proc_cpu_ns(d->ksm.ksmd_pid) - d->ksm.ksmd_cpu0_ns;
	{
		int64_t profit = self_ksm_stat("ksm_process_profit");

		/* The kernel's own net: merged pages minus its rmap metadata. */
		st->saved_bytes = profit > 0
				      ? (uint64_t)profit
				      : (st->pages_sharing + st->pages_zero) << RF_PAGE_SHIFT;
	}
	st->converged = false;
	return 0;
}

static void ksm_remove_vm(struct rf_dedup *d, struct rf_dedup_vm *dv, bool unmerge)
{
	rf_vm *vm = dv->vm;
	struct rf_region *r;

	(void)d;
	(void)unmerge; /* MADV_UNMERGEABLE unmerges the VM's pages either way */
	if (!dv->ksm_marked)
		return;
	rf_vm_regions_rdlock(vm);
	for (unsigned int i = 0; (r = __rf_vm_region(vm, i)); i++)
		madvise(r->hva, r->size, MADV_UNMERGEABLE);
	rf_vm_regions_unlock(vm);
}

static int ksm_set_rate(struct rf_dedup *d, uint64_t pages_per_sec)
{
	(void)d;
	(void)pages_per_sec;
	return -EOPNOTSUPP;
}

/* RAM that joins an attached VM later is the kernel's to merge too. */
static int ksm_region_admit(struct rf_dedup_vm *dv, const struct rf_region *r)
{
	int err;

	if (madvise(r->hva, r->size, MADV_MERGEABLE) == 0)
		return 0;
	err = errno;
	rf_log(dv->vm->e, RF_LOG_ERR, "%s: dedup: ksm: madvise(MERGEABLE) at gpa 0x%llx: %s",
	       dv->vm->name, (unsigned long long)r->gpa, strerror(err));
	return -err;
}

const struct dedup_backend_ops dedup_ksm_ops = {
    .name = "ksm",
    .start = ksm_start,
    .stop = ksm_stop,
    .add_vm = ksm_add_vm,
    .region_admit = ksm_region_admit,
    .remove_vm = ksm_remove_vm,
    .set_rate = ksm_set_rate,
    .stats = ksm_stats,
};
