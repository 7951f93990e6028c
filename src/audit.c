/* SPDX-License-Identifier: MIT */
/*
 * The audit: compare the page-state table with what the kernel maps.
 *
 * For each page we know from /proc/self/pagemap whether it is present, and
 * whether the present page is anonymous, a file (store) page, or the zero
 * page; from /proc/self/maps we know whether the VMA over it is anonymous or
 * a file (the store's memfd). The rules:
 *
 *   state                    contradiction (mismatch)          drift (guest acted since)
 *   PRIVATE                  a store page is mapped             -
 *   ZERO/BALLOONED/REPORTED  a store page is mapped             an anonymous page is present
 *   MERGED                   the VMA is anonymous               an anonymous page (CoW break)
 *   SWAPPED/COMPRESSED       any page present                   -
 *
 * Drift is legal: guests write whenever they like, and the module that owns
 * the state notices on its next pass. With RF_AUDIT_FIX the audit itself
 * moves ZERO and FREE_REPORTED pages the guest has written back to PRIVATE
 * (both are the guest's own memory); MERGED drift is left to the dedup
 * engine, which must also drop its store reference.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "compat_linux.h"
#include "internal.h"

#define AUDIT_CHUNK 4096

struct vma {
	uintptr_t start, end;
	bool file;
};

/* File-backed VMAs overlapping [lo, hi), in address order, in *@vp (grown as needed). */
static int read_file_vmas(rf_engine *e, uintptr_t lo, uintptr_t hi, struct vma **vp,
			  unsigned int *cap, unsigned int *n)
{
	char line[512];
	FILE *f = fopen("/proc/self/maps", "re");
	struct vma *v = *vp;

	*n = 0;
	if (!f)
		return -errno;
	while (fgets(line, sizeof(line), f)) {
		unsigned long long s, end, ino;
		char perms[8];
		unsigned int maj, min;
		unsigned long long off;

		if (sscanf(line, "%llx-%llx %7s %llx %x:%x %llu", &s, &end, perms, &off, &maj, &min,
			   &ino) != 7)
			continue;
		if (end <= lo || s >= hi || ino == 0)
			continue;
		if (*n == *cap) {
			struct vma *nv = rf_zalloc(e, 2 * *cap * sizeof(*nv));

			if (!nv) {
				fclose(f);
				return -ENOMEM;
			}
			memcpy(nv, v, *n * sizeof(*nv));
			rf_free(e, v);
			*vp = v = nv;
			*cap *= 2;
		}
		v[*n].start = (uintptr_t)s;
		v[*n].end = (uintptr_t)end;
		v[*n].file = true;
		(*n)++;
	}
	fclose(f);
	return 0;
}

static bool in_file_vma(const struct vma *v, unsigned int n, unsigned int *cursor, uintptr_t a)
{
	while (*cursor < n && v[*cursor].end <= a)
		(*cursor)++;
	return *cursor < n && v[*cursor].start <= a;
}

static void note_mismatch(rf_vm *vm, struct rf_audit_report *rep, uint64_t gpa, const char *what,
			  uint64_t *counter)
{
	static struct rf_ratelimit rl = RF_RATELIMIT_INIT(5);

	(*counter)++;
	rep->mismatches++;
	if (rep->first_bad_gpa == UINT64_MAX)
		rep->first_bad_gpa = gpa;
	rf_log_ratelimited(vm->e, &rl, RF_LOG_WARN, "%s: audit: gpa 0x%" PRIx64 ": %s", vm->name,
			   gpa, what);
}

static int audit_region(rf_vm *vm, struct rf_region *r, struct rf_audit_report *rep,
			unsigned int flags, uint64_t *ents, struct vma **vmap, unsigned int *cap)
{
	unsigned int nv, cur = 0;
	struct vma *vmas;
	int err;

	err = read_file_vmas(vm->e, (uintptr_t)r->hva, (uintptr_t)r->hva + r->size, vmap, cap, &nv);
	vmas = *vmap;
	if (err)
		return err;
	for (uint64_t base = 0; base < r->npages; base += AUDIT_CHUNK) {
		size_t n = r->npages - base < AUDIT_CHUNK ? r->npages - base : AUDIT_CHUNK;

		err = rf_pagemap_read(vm->e, rf_region_page(r, base), n, ents);
		if (err)
			return err;
		for (size_t k = 0; k < n; k++) {
			uint64_t idx = base + k, gpa = r->gpa + (idx << RF_PAGE_SHIFT);
			uintptr_t a = (uintptr_t)rf_region_page(r, idx);
			uint64_t pm = ents[k], v = rf_pte_peek(&r->pte[idx]);
			bool present = pm & PM_PRESENT, file = present && (pm & PM_FILE);
			bool anon = rf_pagemap_resident(vm->e, pm) && !(pm & PM_FILE);
			enum rf_page_state s = rf_pte_state(v);

			rep->pages_checked++;
			switch (s) {
			case RF_PAGE_PRIVATE:
				if (file)
					note_mismatch(vm, rep, gpa,
						      "private, but a store page is mapped",
						      &rep->private_file);
				break;
			case RF_PAGE_ZERO:
			case RF_PAGE_BALLOONED:
			case RF_PAGE_FREE_REPORTED:
				if (file) {
					note_mismatch(vm, rep, gpa,
						      "discarded, but a store page is mapped",
						      &rep->private_file);
				} else if (anon) {
					rep->drift++;
					if ((flags & RF_AUDIT_FIX) && s != RF_PAGE_BALLOONED &&
					    rf_pte_trylock(&r->pte[idx], &v)) {
						if (rf_pte_state(v) == s)
							v = rf_pte_with_state(v, RF_PAGE_PRIVATE);
						rf_pte_unlock(vm, &r->pte[idx],
							      rf_pte_with_state(v, s), v);
					}
				}
				break;
			case RF_PAGE_MERGED:
				if (!in_file_vma(vmas, nv, &cur, a))
					note_mismatch(vm, rep, gpa,
						      "merged, but the mapping is anonymous",
						      &rep->merged_not_file);
				else if (anon)
					rep->drift++;
				break;
			case RF_PAGE_SWAPPED:
			case RF_PAGE_COMPRESSED:
				if (present)
					note_mismatch(vm, rep, gpa,
						      "swapped out, but a page is present",
						      &rep->discarded_present);
				break;
			default:
				note_mismatch(vm, rep, gpa, "invalid state", &rep->mismatches);
				break;
			}
		}
	}
	return 0;
}

RF_EXPORT int rf_vm_audit(rf_vm *vm, struct rf_audit_report *rep, unsigned int flags)
{
	unsigned int cap = 256;
	struct vma *vmas;
	uint64_t *ents;
	int err = 0;

	if (!vm || !rep)
		return -EINVAL;
	memset(rep, 0, sizeof(*rep));
	rep->first_bad_gpa = UINT64_MAX;
	ents = rf_zalloc(vm->e, AUDIT_CHUNK * sizeof(*ents));
	vmas = rf_zalloc(vm->e, cap * sizeof(*vmas));
	if (!ents || !vmas) {
		err = -ENOMEM;
		goto out;
	}
	rf_vm_regions_rdlock(vm);
	for (unsigned int i = 0; i < vm->nr_regions && !err; i++)
		err = audit_region(vm, vm->regions[i], rep, flags, ents, &vmas, &cap);
	rf_vm_regions_unlock(vm);
	if (err)
		rf_log(vm->e, RF_LOG_ERR, "%s: audit: cannot read the kernel's view: %s", vm->name,
		       strerror(-err));
	else if (rep->mismatches)
		err = -EIO;
out:
	rf_free(vm->e, vmas);
	rf_free(vm->e, ents);
	return err;
}
