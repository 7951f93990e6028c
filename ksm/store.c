/* SPDX-License-Identifier: MIT */
/*
 * The canonical page store: one memfd per NUMA node holding one copy of each
 * shared content. Guest pages map store pages MAP_PRIVATE, so a guest write
 * gets a private copy from the kernel and the store page stays intact.
 *
 * Each store page has a reference count: the guest pages that map it, plus
 * a merger holding it for a moment. When the count falls to zero no guest
 * page maps it any more, so its memory is returned at once with
 * fallocate(PUNCH_HOLE). Its index entry may still be found by a scanner
 * inside an RCU read-side section, so the page number is only reused after
 * the entry is removed and a grace period has passed (store_reap). A stale
 * reader that races a reuse at worst finds different bytes: every merge
 * compares bytes first.
 *
 * Page numbers come from a bump allocator, so pages filled one after another
 * (a run of first-time duplicates) are adjacent in the memfd and a run of
 * guest pages can map them with one mapping.
 *
 * The window is a MAP_SHARED view of the whole memfd used to fill and
 * compare store pages; with a NUMA node set it carries an mbind policy, which
 * for shmem is the file's policy, so store pages are allocated on that node.
 *
 * A sharing domain's store across processes belongs to the broker
 * (broker_client.c, store_init_remote): the same structure over the
 * read-only memfd the broker sent. Its page numbers are the broker's; the
 * reference counts here are still this process's guest pages, and the last
 * one, instead of punching, gives the broker back our hold on the page when
 * the page is reaped: the broker punches it once no process holds it.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <numa.h>
#include <numaif.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dedup_internal.h"

int store_init(struct rf_store *s, rf_engine *e, int node, uint64_t cap_pages)
{
	char name[32];
	int err;

	memset(s, 0, sizeof(*s));
	s->e = e;
	s->node = node;
	s->cap = cap_pages;
	snprintf(name, sizeof(name), "ramfold-store-n%d", node);
	s->fd = memfd_create(name, MFD_CLOEXEC);
	if (s->fd < 0) {
		err = -errno;
		rf_log(e, RF_LOG_ERR, "dedup: store: memfd_create: %s", strerror(errno));
		return err;
	}
	if (ftruncate(s->fd, (off_t)(cap_pages << RF_PAGE_SHIFT)) != 0) {
		err = -errno;
		rf_log(e, RF_LOG_ERR, "dedup: store: ftruncate to %llu pages: %s",
		       (unsigned long long)cap_pages, strerror(errno));
		goto err_fd;
	}
	s->win = mmap(NULL, cap_pages << RF_PAGE_SHIFT, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_NORESERVE, s->fd, 0);
	s->pages = mmap(NULL, cap_pages * sizeof(*s->pages), PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	s->nodes = mmap(NULL, cap_pages * sizeof(*s->nodes), PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	s->free_pgs = mmap(NULL, cap_pages * sizeof(uint32_t) * 2, PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->win == MAP_FAILED || s->pages == MAP_FAILED || s->nodes == MAP_FAILED ||
	    s->free_pgs == MAP_FAILED) {
		err = -ENOMEM;
		rf_log(e, RF_LOG_ERR, "dedup: store: mapping the store window: %s",
		       strerror(errno));
		goto err_map;
	}
	s->zombies = s->free_pgs + cap_pages;
	if (node >= 0 && numa_available() >= 0 && numa_num_configured_nodes() > 1) {
		unsigned long mask = 1ul << node;

		if (mbind(s->win, cap_pages << RF_PAGE_SHIFT, MPOL_BIND, &mask, sizeof(mask) * 8,
			  0) != 0)
			rf_log(e, RF_LOG_WARN, "dedup: store: mbind to node %d: %s", node,
			       strerror(errno));
	}
	pthread_mutex_init(&s->lock, NULL);
	return 0;

err_map:
	if (s->win != MAP_FAILED)
		munmap(s->win, cap_pages << RF_PAGE_SHIFT);
	if (s->pages != MAP_FAILED)
		munmap(s->pages, cap_pages * sizeof(*s->pages));
	if (s->nodes != MAP_FAILED)
		munmap(s->nodes, cap_pages * sizeof(*s->nodes));
	if (s->free_pgs != MAP_FAILED)
		munmap(s->free_pgs, cap_pages * sizeof(uint32_t) * 2);
	s->nodes = NULL;
err_fd:
	close(s->fd);
	s->fd = -1;
	return err;
}

int store_init_remote(struct rf_store *s, rf_engine *e, int fd, uint64_t cap_pages,
		      struct broker_conn *bc)
{
	memset(s, 0, sizeof(*s));
	s->e = e;
	s->node = -1;
	s->cap = cap_pages;
	s->fd = fd;
	s->remote = bc;
	/* Read-only: the broker alone writes its store. Our guest pages map
	 * it MAP_PRIVATE and writable, which a read-only descriptor allows. */
	s->win =
	    mmap(NULL, cap_pages << RF_PAGE_SHIFT, PROT_READ, MAP_SHARED | MAP_NORESERVE, fd, 0);
	s->pages = mmap(NULL, cap_pages * sizeof(*s->pages), PROT_READ | PROT_WRITE,
			MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	s->free_pgs = mmap(NULL, cap_pages * sizeof(uint32_t), PROT_READ | PROT_WRITE,
			   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (s->win == MAP_FAILED || s->pages == MAP_FAILED || s->free_pgs == MAP_FAILED) {
		int err = -errno;

		rf_log(e, RF_LOG_ERR, "dedup: broker store: mapping %llu pages: %s",
		       (unsigned long long)cap_pages, strerror(errno));
		if (s->win != MAP_FAILED)
			munmap(s->win, cap_pages << RF_PAGE_SHIFT);
		if (s->pages != MAP_FAILED)
			munmap(s->pages, cap_pages * sizeof(*s->pages));
		if (s->free_pgs != MAP_FAILED)
			munmap(s->free_pgs, cap_pages * sizeof(uint32_t));
		s->win = NULL;
		s->fd = -1;
		close(fd);
		return err ? err : -ENOMEM;
	}
	/* Only zombies: pages come from the broker, never from a free list. */
	s->zombies = s->free_pgs;
	pthread_mutex_init(&s->lock, NULL);
	return 0;
}

void store_destroy(struct rf_store *s)
{
	if (s->fd < 0 || !s->win)
		return;
	/* Recycling callbacks queued by store_reap read s->pages. */
	urcu_memb_barrier();
	munmap(s->win, s->cap << RF_PAGE_SHIFT);
	munmap(s->pages, s->cap * sizeof(*s->pages));
	if (s->nodes)
		munmap(s->nodes, s->cap * sizeof(*s->nodes));
	munmap(s->free_pgs, s->cap * sizeof(uint32_t) * (s->remote ? 1 : 2));
	close(s->fd);
	pthread_mutex_destroy(&s->lock);
	s->fd = -1;
	s->win = NULL;
}

/*
 * A single page comes from the free list first; a run from the bump
 * allocator, whose pages are adjacent. With @exact, all @n or none; else as
 * many adjacent pages as the bump allocator has left, or one page of the free
 * list once it has none.
 */
static int alloc_pages(struct rf_store *s, unsigned int n, bool exact, uint32_t *first)
{
	int got = -ENOSPC;

	if (n == 0)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	if (n == 1 && s->nfree) {
		*first = s->free_pgs[--s->nfree];
		got = 1;
	} else if (s->next + n <= s->cap || (!exact && s->next < s->cap)) {
		got = (int)(s->next + n <= s->cap ? n : s->cap - s->next);
		*first = (uint32_t)s->next;
		s->next += (unsigned int)got;
	} else if (!exact && s->nfree) {
		*first = s->free_pgs[--s->nfree];
		got = 1;
	}
	pthread_mutex_unlock(&s->lock);
	if (got > 0) {
		atomic_fetch_add(&s->live, (uint64_t)got);
		for (int i = 0; i < got; i++) {
			atomic_store(&s->pages[*first + i].ref, 0);
			if (s->nodes)
				s->nodes[*first + i] = NULL;
		}
	}
	return got;
}

int store_alloc(struct rf_store *s, unsigned int n, uint32_t *first)
{
	int got = alloc_pages(s, n, true, first);

	return got < 0 ? got : 0;
}

int store_alloc_upto(struct rf_store *s, unsigned int n, uint32_t *first)
{
	return alloc_pages(s, n, false, first);
}

void store_full(struct rf_store *s)
{
	char node[32] = "";

	if (atomic_exchange(&s->full_logged, true))
		return;
	if (s->node >= 0)
		snprintf(node, sizeof(node), " of node %d", s->node);
	rf_log(s->e, RF_LOG_WARN,
	       "dedup: store%s full: %" PRIu64 " pages (%" PRIu64
	       " MiB, the host capacity): pages with no store page yet stay private, "
	       "merges onto existing store pages go on",
	       node, s->cap, s->cap >> (20 - RF_PAGE_SHIFT));
}

static void punch(struct rf_store *s, uint32_t pg, unsigned int n)
{
	if (fallocate(s->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)store_off(pg),
		      (off_t)n << RF_PAGE_SHIFT) != 0)
		rf_log(s->e, RF_LOG_ERR, "dedup: store: punching page %u: %s", pg, strerror(errno));
	else
		atomic_fetch_add(&s->punched, n);
}

void store_unalloc(struct rf_store *s, uint32_t first, unsigned int n)
{
	/* Never mapped by a guest and never in the index: free at once. */
	punch(s, first, n);
	pthread_mutex_lock(&s->lock);
	for (unsigned int i = 0; i < n; i++)
		s->free_pgs[s->nfree++] = first + i;
	pthread_mutex_unlock(&s->lock);
	atomic_fetch_sub(&s->live, n);
}

bool store_get_unless_zero(struct rf_store *s, uint32_t pg)
{
	uint32_t r = atomic_load(&s->pages[pg].ref);

	while ((r & STORE_REF_COUNT) != 0 && (r & STORE_REF_COUNT) != STORE_REF_COUNT &&
	       !(r & STORE_REF_DYING))
		if (atomic_compare_exchange_weak(&s->pages[pg].ref, &r, r + 1)) {
			if (s->remote)
				atomic_fetch_add(&s->refs, 1);
			return true;
		}
	return false;
}

void store_get(struct rf_store *s, uint32_t pg)
{
	atomic_fetch_add(&s->pages[pg].ref, 1);
	if (s->remote)
		atomic_fetch_add(&s->refs, 1);
}

void store_put(struct rf_store *s, uint32_t pg)
{
	uint32_t r = atomic_load(&s->pages[pg].ref);

	/* The last reference goes straight to DYING (see STORE_REF_DYING),
	 * keeping HELD for the reap. */
	do {
		if ((r & STORE_REF_COUNT) == 0 || (r & STORE_REF_DYING)) {
			rf_log(s->e, RF_LOG_ERR, "dedup: store: page %u released once too often",
			       pg);
			return;
		}
	} while (!atomic_compare_exchange_weak(
	    &s->pages[pg].ref, &r,
	    (r & STORE_REF_COUNT) == 1 ? STORE_REF_DYING | (r & STORE_REF_HELD) : r - 1));
	if (s->remote)
		atomic_fetch_sub(&s->refs, 1);
	if ((r & STORE_REF_COUNT) != 1)
		return;
	/* Last reference: nobody maps it. Give the memory back now (the
	 * broker does for its store, once no process holds the page); the
	 * number waits for store_reap. */
	if (!s->remote)
		punch(s, pg, 1);
	atomic_fetch_sub(&s->live, 1);
	pthread_mutex_lock(&s->lock);
	s->zombies[s->nzombies++] = pg;
	pthread_mutex_unlock(&s->lock);
}

struct recycle {
	struct rcu_head rcu;
	struct rf_store *s;
	uint64_t n;
	uint32_t pgs[];
};

static void recycle_cb(struct rcu_head *head)
{
	struct recycle *rc = caa_container_of(head, struct recycle, rcu);
	struct rf_store *s = rc->s;

	pthread_mutex_lock(&s->lock);
	for (uint64_t i = 0; i < rc->n; i++) {
		/* No reader of the index can still hold the page's old entry:
		 * it is free. A broker's page numbers are the broker's to give. */
		atomic_store(&s->pages[rc->pgs[i]].ref, 0);
		if (!s->remote)
			s->free_pgs[s->nfree++] = rc->pgs[i];
	}
	pthread_mutex_unlock(&s->lock);
	rf_free(s->e, rc);
}

void store_reap(struct rf_store *s, struct cds_lfht *ht)
{
	struct recycle *rc;
	uint64_t n;

	pthread_mutex_lock(&s->lock);
	n = s->nzombies;
	if (n == 0) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	rc = rf_zalloc(s->e, sizeof(*rc) + n * sizeof(uint32_t));
	if (!rc) {
		pthread_mutex_unlock(&s->lock);
		return;
	}
	memcpy(rc->pgs, s->zombies, n * sizeof(uint32_t));
	s->nzombies = 0;
	pthread_mutex_unlock(&s->lock);
	rc->s = s;
	rc->n = n;
	urcu_memb_read_lock();
	for (uint64_t i = 0; i < n; i++) {
		struct index_node *node = s->nodes ? s->nodes[rc->pgs[i]] : NULL;

		if (node) {
			s->nodes[rc->pgs[i]] = NULL;
			index_del(ht, node);
		}
	}
	urcu_memb_read_unlock();
	/* No guest page of ours maps them: the broker may have them back
	 * (a reader still holding an old entry sees DYING and leaves it). */
	if (s->remote)
		broker_release(s->remote, s, rc->pgs, n);
	dedup_call_rcu(&rc->rcu, recycle_cb);
}

uint64_t store_resident_bytes(const struct rf_store *s)
{
	struct stat st;

	if (s->fd < 0 || fstat(s->fd, &st) != 0)
		return 0;
	return (uint64_t)st.st_blocks * 512;
}
