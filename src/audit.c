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
 *
 * Concurrency: the first pass reads maps, pagemap and the table without
 * any lock, so a page caught in the middle of a transition (remapped, its
 * new state not yet published) can look like a contradiction. Every page
 * that does is looked at again holding its page lock, when no transition
 * can be under way, and reported only if it still contradicts: a reported
 * mismatch is always real, whatever runs beside the audit.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "abi.h"
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

/* What the rules say of a page in state @s, given its pagemap entry @pm and
 * whether a file (store) VMA maps it. */
enum verdict {
	V_OK,
	V_DRIFT,
	V_PRIVATE_FILE,
	V_DISCARDED_FILE,
	V_MERGED_ANON,
	V_SWAPPED_PRESENT,
	V_INVALID
};

static enum verdict judge(const rf_engine *e, enum rf_page_state s, uint64_t pm, bool file_vma)
{
	bool present = pm & PM_PRESENT, file = present && (pm & PM_FILE);
	bool anon = rf_pagemap_resident(e, pm) && !(pm & PM_FILE);

	switch (s) {
	case RF_PAGE_PRIVATE:
		return file ? V_PRIVATE_FILE : V_OK;
	case RF_PAGE_ZERO:
	case RF_PAGE_BALLOONED:
	case RF_PAGE_FREE_REPORTED:
		return file ? V_DISCARDED_FILE : anon ? V_DRIFT : V_OK;
	case RF_PAGE_MERGED:
		return !file_vma ? V_MERGED_ANON : anon ? V_DRIFT : V_OK;
	case RF_PAGE_SWAPPED:
	case RF_PAGE_COMPRESSED:
		return present ? V_SWAPPED_PRESENT : V_OK;
	default:
		return V_INVALID;
	}
}

/* The file-backed VMAs over a region, as last read from /proc/self/maps. */
struct vma_list {
	struct vma **v; /* grown as needed */
	unsigned int *cap;
	unsigned int n, cursor;
	uintptr_t lo, hi;
};

static int vma_list_read(rf_engine *e, struct vma_list *l)
{
	l->cursor = 0;
	return read_file_vmas(e, l->lo, l->hi, l->v, l->cap, &l->n);
}

/*
 * Is @a inside a file VMA now? The list is read again (under the caller's
 * page lock) only when the copy at hand says no: a page merged after the
 * list was read is in a VMA it does not know, while a VMA it knows as a
 * file one over a MERGED page is still one (remapping a MERGED page takes
 * its lock, and leaves it another state). One read serves all the pages
 * merged before it, so a busy engine costs the audit a few reads, not one
 * per page.
 */
static bool in_list(const struct vma_list *l, uintptr_t a)
{
	unsigned int lo = 0, hi = l->n;

	while (lo < hi) { /* the first VMA ending above @a */
		unsigned int mid = lo + (hi - lo) / 2;

		if ((*l->v)[mid].end <= a)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < l->n && (*l->v)[lo].start <= a;
}

static bool file_vma_now(rf_engine *e, struct vma_list *l, uintptr_t a)
{
	if (in_list(l, a))
		return true;
	return vma_list_read(e, l) == 0 && in_list(l, a);
}

/*
 * A page the unlocked pass found contradicting the table: the page may
 * simply have been in the middle of a transition (its mapping changed, its
 * new state not yet published). Look again holding its lock, when no
 * transition can be under way: the verdict then is the truth. With
 * RF_AUDIT_FIX, drift of a ZERO or FREE_REPORTED page the guest wrote is
 * resolved here too (to PRIVATE).
 */
static enum verdict recheck(rf_vm *vm, struct rf_region *r, uint64_t idx, unsigned int flags,
			    struct vma_list *l)
{
	rf_pte_t *pte = &r->pte[idx];
	uintptr_t a = (uintptr_t)rf_region_page(r, idx);
	uint64_t v, nv, pm;
	enum rf_page_state s;
	enum verdict vd = V_OK;

	RF_TEST_POINT("audit.recheck", pte);
	v = nv = rf_pte_lock(pte);
	s = rf_pte_state(v);

	if (rf_pagemap_read(vm->e, (void *)a, 1, &pm) == 0) {
		vd = judge(vm->e, s, rf_pagemap_own(r, pm),
			   s == RF_PAGE_MERGED && file_vma_now(vm->e, l, a));
		if (vd == V_DRIFT && (flags & RF_AUDIT_FIX) &&
		    (s == RF_PAGE_ZERO || s == RF_PAGE_FREE_REPORTED))
			nv = rf_pte_with_state(v, RF_PAGE_PRIVATE);
	}
	rf_pte_unlock(vm, pte, v, nv);
	return vd;
}

static int audit_region(rf_vm *vm, struct rf_region *r, struct rf_audit_report *rep,
			unsigned int flags, uint64_t *ents, struct vma **vmap, unsigned int *cap)
{
	static const char *const what[] = {
	    [V_PRIVATE_FILE] = "private, but a store page is mapped",
	    [V_DISCARDED_FILE] = "discarded, but a store page is mapped",
	    [V_MERGED_ANON] = "merged, but the mapping is anonymous",
	    [V_SWAPPED_PRESENT] = "swapped out, but a page is present",
	    [V_INVALID] = "invalid state",
	};
	struct vma_list l = {vmap, cap, 0, 0, (uintptr_t)r->hva, (uintptr_t)r->hva + r->size};
	int err;

	err = vma_list_read(vm->e, &l);
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
			enum rf_page_state s = rf_pte_state(rf_pte_peek(&r->pte[idx]));
			bool file_vma = in_file_vma(*l.v, l.n, &l.cursor, a);
			enum verdict vd = judge(vm->e, s, rf_pagemap_own(r, ents[k]), file_vma);

			rep->pages_checked++;
			if (vd == V_OK)
				continue;
			/* Drift without a fix to make is counted as seen;
			 * anything else is looked at again under the lock. */
			if (vd != V_DRIFT || (flags & RF_AUDIT_FIX))
				vd = recheck(vm, r, idx, flags, &l);
			switch (vd) {
			case V_OK:
				break;
			case V_DRIFT:
				rep->drift++;
				break;
			case V_PRIVATE_FILE:
			case V_DISCARDED_FILE:
				note_mismatch(vm, rep, gpa, what[vd], &rep->private_file);
				break;
			case V_MERGED_ANON:
				note_mismatch(vm, rep, gpa, what[vd], &rep->merged_not_file);
				break;
			case V_SWAPPED_PRESENT:
				note_mismatch(vm, rep, gpa, what[vd], &rep->discarded_present);
				break;
			case V_INVALID: {
				uint64_t ignored = 0;

				note_mismatch(vm, rep, gpa, what[vd], &ignored);
				break;
			}
			}
		}
	}
	return 0;
}

static int rf_vm_audit_full(rf_vm *vm, struct rf_audit_report *rep, unsigned int flags)
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

RF_EXPORT int rf_vm_audit(rf_vm *vm, struct rf_audit_report *rep, unsigned int flags)
{
	struct rf_audit_report full;

	RF_STRUCT_OUT(vm ? vm->e : NULL, rep, full, pages_checked, "rf_audit_report",
		      rf_vm_audit_full(vm, &full, flags));
}
RF_VERSION_0_3(rf_vm_audit);
