/* SPDX-License-Identifier: MIT */
/*
 * The per-VM userfaultfd and its fault thread: see uffd.h for the protocol.
 *
 * The thread waits in ppoll() on the descriptor and on an eventfd that
 * rf_uffd_put uses to stop it. It reads messages in batches and dispatches
 * each by kind. A handler that cannot finish now (a page lock is busy)
 * returns -EAGAIN; the message goes on a small pending list that is retried
 * every millisecond, so the fault thread itself never blocks on a module's lock.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "compat_linux.h"
#include "fault_stall.h"
#include "uffd.h"

#define PENDING_MAX 256
#define READ_BATCH  32
#define OWN_MAX	    16 /* discards in flight at once, per VM */

struct rf_uffd {
	rf_vm *vm;
	int fd;
	int stop_fd;
	int kick_fd; /* rf_uffd_sync wakes the fault thread through it */
	uint64_t features;
	/* Held across reading the base mode and registering with it, so that
	 * once rf_uffd_add_base_mode returns, no registration made with the
	 * old base can land after it. */
	pthread_mutex_t reg_lock;
	_Atomic uint64_t base_mode;
	unsigned int users; /* under uffd_create_lock */
	pthread_t thread;

	struct {
		_Atomic(rf_uffd_handler) fn;
		void *_Atomic arg;
	} handlers[RF_UFFD_NKINDS];

	struct uffd_msg pending[PENDING_MAX];
	uint64_t pending_t0[PENDING_MAX]; /* when each was first read */
	unsigned int npending;
	unsigned int pending_removes; /* REMOVE events among them */

	/* Fault stall (fault_stall.h). cur_t0: when the message being
	 * dispatched was first read; cur_parked: its handler left it parked
	 * for the holder's wake. Both fault thread only. */
	uint64_t cur_t0;
	bool cur_parked;
	struct rf_stall_parked parked;

	_Atomic uint64_t msgs[RF_UFFD_NKINDS];
	_Atomic uint64_t retried;
	_Atomic uint64_t eagain;
	/* REMOVE events read and not yet dispatched to the end (a handler
	 * that asked for a retry keeps its event counted): a discard whose
	 * zap may still be to come and whose handler has not yet looked at
	 * its pages (rf_uffd_remove_pending). */
	_Atomic unsigned int removes_unhandled;

	/* rf_uffd_sync: a caller takes ticket sync_req + 1 and waits until
	 * sync_done reaches it; the fault thread sets sync_done to the sync_req it
	 * saw before its last round of reading and dispatching. */
	_Atomic uint64_t sync_req, sync_done;
	pthread_mutex_t sync_lock;
	pthread_cond_t sync_cond;

	/* Discards the library is making of this VM's RAM right now
	 * (rf_vm_discard_locked), from before their madvise until their
	 * REMOVE event has been dispatched; under own_lock, a leaf. */
	pthread_mutex_t own_lock;
	pthread_cond_t own_free;
	struct {
		uintptr_t lo, hi;
	} own[OWN_MAX];

	/* The embedder's fault handler and its foreign pages (uffd.h): one
	 * bitmap per region it covers, under foreign_lock. foreign_on says a
	 * handler is installed, so that a VM without one takes no lock. */
	bool embedder; /* the embedder holds a reference (under uffd_create_lock) */
	pthread_mutex_t foreign_lock;
	_Atomic bool foreign_on;
	rf_vm_fault_fn foreign_fn;
	void *foreign_arg;
	struct {
		const struct rf_region *r;
		uint64_t *bits;
	} foreign[RF_MAX_REGIONS];
	_Atomic uint64_t foreign_fills, foreign_zero, foreign_errors;
	_Atomic uint64_t foreign_wp, foreign_minor;
	struct rf_ratelimit rl;
};

void (*rf_test_point)(const char *where, void *arg);

/* Creation and the users count: rare, so one lock for all VMs. */
static pthread_mutex_t uffd_create_lock = PTHREAD_MUTEX_INITIALIZER;

static enum rf_uffd_kind msg_kind(const struct uffd_msg *m)
{
	switch (m->event) {
	case UFFD_EVENT_PAGEFAULT:
		if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WP)
			return RF_UFFD_FAULT_WP;
		if (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_MINOR)
			return RF_UFFD_FAULT_MINOR;
		return RF_UFFD_FAULT_MISSING;
	case UFFD_EVENT_REMOVE:
		return RF_UFFD_EV_REMOVE;
	case UFFD_EVENT_UNMAP:
		return RF_UFFD_EV_UNMAP;
	case UFFD_EVENT_REMAP:
		return RF_UFFD_EV_REMAP;
	default:
		return RF_UFFD_EV_FORK;
	}
}

/* ioctl with the EAGAIN rule of uffd.h. */
static int uffd_ioctl(struct rf_uffd *u, unsigned long req, void *arg);

/* Lift a protection nobody claims (waking its writers): 0, or -EAGAIN for
 * the handler to be retried once the pending event is read. */
static int unprotect_page(struct rf_uffd *u, uint64_t page)
{
	int err = rf_uffd_writeprotect(u, (void *)page, RF_PAGE_SIZE, false, false);

	if (err == -EAGAIN)
		return -EAGAIN;
	/* Not registered any more (remapped): just wake. */
	if (err)
		rf_uffd_wake(u, (void *)page, RF_PAGE_SIZE);
	return 0;
}

/*
 * Hands a fault the embedder owns to its handler (@flags as rf_vm_fault_fn
 * gets them, @what names the kind in the message). 0: handled; -EAGAIN:
 * call again; 1: the handler failed, which is counted and logged, and the
 * faulting thread stays blocked until the embedder resolves the fault
 * itself. No handler installed: 0 (nothing to wait for).
 */
static int call_handler(struct rf_uffd *u, uint64_t gpa, uint64_t page, unsigned int flags,
			const char *what)
{
	rf_vm *vm = u->vm;
	int ret = 0;

	pthread_mutex_lock(&u->foreign_lock);
	if (u->foreign_fn)
		ret = u->foreign_fn(vm, gpa, (void *)(uintptr_t)page, flags, u->foreign_arg);
	pthread_mutex_unlock(&u->foreign_lock);
	if (ret == 0 || ret == -EAGAIN)
		return ret;
	atomic_fetch_add(&u->foreign_errors, 1);
	rf_log_ratelimited(vm->e, &u->rl, RF_LOG_ERR,
			   "%s: fault handler: %s fault at hva 0x%llx (gpa 0x%llx): %s: the "
			   "faulting thread stays blocked",
			   vm->name, what, (unsigned long long)page, (unsigned long long)gpa,
			   strerror(ret < 0 ? -ret : EINVAL));
	return 1;
}

/*
 * A write to a page the embedder protected (RF_PTE_F_UWP, page @v locked by
 * the caller): its handler saves the content first, then the protection
 * is lifted and the writer woken; *@nv is what the page is unlocked with.
 * A handler removed while the protection stands: lifted unreported (the
 * writer cannot wait for nobody). 0 or -EAGAIN (the handler's, or the
 * ioctl met a pending event: the handler is then called again).
 */
static int embedder_wp_fault(struct rf_uffd *u, const struct rf_region *r, uint64_t page,
			     uint64_t v, uint64_t *nv)
{
	uint64_t gpa = r->gpa + (page - (uintptr_t)r->hva);
	int ret = call_handler(u, gpa, page, RF_VM_FAULT_WRITE | RF_VM_FAULT_WP, "write-protect");
	int err;

	if (ret)
		return ret == -EAGAIN ? -EAGAIN : 0;
	/* Counted when forwarded: a lift that must be retried (-EAGAIN) calls
	 * the handler again, and the count follows its calls. */
	atomic_fetch_add(&u->foreign_wp, 1);
	err = unprotect_page(u, page);
	if (err)
		return err;
	*nv = v & ~RF_PTE_F_UWP;
	return 0;
}

/*
 * A minor fault: only the embedder registers MINOR mode, so it is its
 * (UFFDIO_CONTINUE). Without a handler the thread is woken and faults
 * again, which is all the library can do.
 */
static int minor_fault(struct rf_uffd *u, uint64_t page)
{
	rf_vm *vm = u->vm;
	struct rf_region *r;
	uint64_t gpa = RF_VM_GPA_NONE;
	int ret;

	if (!atomic_load(&u->foreign_on)) {
		rf_uffd_wake(u, (void *)page, RF_PAGE_SIZE);
		return 0;
	}
	if (rf_vm_regions_tryrdlock(vm) != 0)
		return -EAGAIN;
	r = __rf_vm_find_region_hva(vm, page);
	if (r)
		gpa = r->gpa + (page - (uintptr_t)r->hva);
	ret = call_handler(u, gpa, page, RF_VM_FAULT_MINOR, "minor");
	rf_vm_regions_unlock(vm);
	if (ret)
		return ret == -EAGAIN ? -EAGAIN : 0;
	atomic_fetch_add(&u->foreign_minor, 1);
	rf_uffd_wake(u, (void *)page, RF_PAGE_SIZE);
	return 0;
}

/*
 * A write-protect fault left to the holder of the page's protection (@pte
 * has RF_PTE_F_WP): its wait ends at the holder's wake, so it is parked
 * there (fault_stall.h). Looked at again once parked: a holder that
 * cleared F_WP meanwhile may have woken the page before the park, and then
 * nobody else ends the wait.
 */
static void park_wp_fault(struct rf_uffd *u, rf_pte_t *pte, uint64_t page)
{
	int slot = rf_stall_park(&u->parked, page, u->cur_t0);

	if (slot < 0)
		return; /* full: ended when the handler returns */
	u->cur_parked = true;
	if (!(rf_pte_peek(pte) & RF_PTE_F_WP) && rf_stall_unpark(&u->parked, slot, page, u->cur_t0))
		u->cur_parked = false;
}

/*
 * A write-protect fault: a module holding the protection (RF_PTE_F_WP)
 * wakes the writer itself once it is done (uffd.h), so the fault is left to
 * it. A protection nobody claims (one left behind by the fault thread's own
 * answer to a read, say) is lifted here, holding the page's lock: a module
 * protects a page only under its lock, so without the lock the fault thread could
 * lift a protection a module had just set, and a write would slip past a
 * comparison that the module then acts on (a zero discard over fresh data).
 * The lock is only try-locked (the fault thread never waits for one): a busy page
 * is retried. -EAGAIN while the region list changes.
 */
static int wp_fault(struct rf_uffd *u, uint64_t page)
{
	rf_vm *vm = u->vm;
	struct rf_region *r;
	rf_pte_t *pte;
	uint64_t v, nv;
	int err;

	if (pthread_rwlock_tryrdlock(&vm->regions_lock) != 0)
		return -EAGAIN;
	r = __rf_vm_find_region_hva(vm, page);
	if (!r) {
		/* Not guest RAM: nobody else protects it. */
		rf_vm_regions_unlock(vm);
		return unprotect_page(u, page);
	}
	pte = &r->pte[(page - (uintptr_t)r->hva) >> RF_PAGE_SHIFT];
	if (rf_pte_peek(pte) & RF_PTE_F_WP) {
		park_wp_fault(u, pte, page);
		rf_vm_regions_unlock(vm);
		return 0; /* its holder wakes the writer */
	}
	if (!rf_pte_trylock(pte, &v)) {
		rf_vm_regions_unlock(vm);
		return -EAGAIN;
	}
	nv = v;
	if (v & RF_PTE_F_WP)
		err = 0;
	else if (v & RF_PTE_F_UWP)
		err = embedder_wp_fault(u, r, page, v, &nv);
	else
		err = unprotect_page(u, page);
	rf_pte_unlock(vm, pte, v, nv);
	rf_vm_regions_unlock(vm);
	return err;
}

static int default_handler(struct rf_uffd *u, const struct uffd_msg *m)
{
	uint64_t page = m->arg.pagefault.address & ~(uint64_t)(RF_PAGE_SIZE - 1);

	switch (msg_kind(m)) {
	case RF_UFFD_FAULT_WP:
		return wp_fault(u, page);
	case RF_UFFD_FAULT_MISSING: {
		struct uffdio_zeropage z = {.range = {page, RF_PAGE_SIZE}};
		int err = rf_uffd_foreign_fault(u, m);

		if (err != 1)
			return err;
		err = uffd_ioctl(u, UFFDIO_ZEROPAGE, &z);
		if (err == -EAGAIN)
			return -EAGAIN;
		/* EEXIST: a racing fill won, which is success. Anything else:
		 * the range changed under us; waking makes the thread retry. */
		if (err)
			rf_uffd_wake(u, (void *)page, RF_PAGE_SIZE);
		return 0;
	}
	case RF_UFFD_FAULT_MINOR:
		return minor_fault(u, page);
	default:
		return 0;
	}
}

static void foreign_forget(struct rf_uffd *u, uint64_t start, uint64_t end);

static int dispatch_kind(struct rf_uffd *u, const struct uffd_msg *m, enum rf_uffd_kind k)
{
	rf_uffd_handler fn = atomic_load(&u->handlers[k].fn);

	RF_TEST_POINT("uffd.dispatch", (void *)m);
	/* A discarded page reads as zeros, whoever discarded it: it is no
	 * longer the embedder's to fill. Before the module's handler, which
	 * may ask for a retry: forgetting twice is harmless. */
	if (k == RF_UFFD_EV_REMOVE && atomic_load(&u->foreign_on))
		foreign_forget(u, m->arg.remove.start, m->arg.remove.end);
	if (fn)
		return fn(u, m, atomic_load(&u->handlers[k].arg));
	return default_handler(u, m);
}

/*
 * Dispatch @m, first read at @t0. A fault whose handler is done with it
 * (not -EAGAIN) has released its thread, unless it was parked for a
 * holder's wake: its wait ends now (fault_stall.h). Events are not waits.
 */
static int dispatch(struct rf_uffd *u, const struct uffd_msg *m, uint64_t t0)
{
	enum rf_uffd_kind k = msg_kind(m);
	int ret;

	u->cur_t0 = t0;
	u->cur_parked = false;
	ret = dispatch_kind(u, m, k);
	if (k == RF_UFFD_EV_REMOVE && ret != -EAGAIN)
		atomic_fetch_sub(&u->removes_unhandled, 1);
	if (ret != -EAGAIN && !u->cur_parked &&
	    (k == RF_UFFD_FAULT_WP || k == RF_UFFD_FAULT_MISSING || k == RF_UFFD_FAULT_MINOR))
		rf_stall_end(u->vm, t0, rf_stall_now());
	return ret;
}

/* Queue @m, first read at @t0, for a retry (fault thread; room known). */
static void queue_retry(struct rf_uffd *u, const struct uffd_msg *m, uint64_t t0)
{
	u->pending_removes += msg_kind(m) == RF_UFFD_EV_REMOVE;
	u->pending_t0[u->npending] = t0;
	u->pending[u->npending++] = *m;
}

static void retry_pending(struct rf_uffd *u)
{
	struct uffd_msg batch[PENDING_MAX];
	uint64_t t0[PENDING_MAX];
	unsigned int n = u->npending;

	/* Work on a copy: a handler that asks for a retry is queued again. */
	memcpy(batch, u->pending, n * sizeof(batch[0]));
	memcpy(t0, u->pending_t0, n * sizeof(t0[0]));
	u->npending = 0;
	u->pending_removes = 0;
	for (unsigned int i = 0; i < n; i++) {
		if (dispatch(u, &batch[i], t0[i]) != -EAGAIN)
			continue;
		atomic_fetch_add(&u->retried, 1);
		if (u->npending < PENDING_MAX) {
			queue_retry(u, &batch[i], t0[i]);
		} else {
			if (msg_kind(&batch[i]) == RF_UFFD_EV_REMOVE)
				atomic_fetch_sub(&u->removes_unhandled, 1);
			rf_log(u->vm->e, RF_LOG_ERR,
			       "%s: fault thread: retry list full, fault at 0x%llx dropped (its "
			       "thread "
			       "stays blocked until woken)",
			       u->vm->name, (unsigned long long)batch[i].arg.pagefault.address);
		}
	}
}

/* Read and dispatch what is readable now. Returns messages read. */
static unsigned int process_ready(struct rf_uffd *u)
{
	struct uffd_msg msgs[READ_BATCH];
	unsigned int total = 0;

	for (;;) {
		ssize_t n = read(u->fd, msgs, sizeof(msgs));
		uint64_t t0;

		if (n <= 0)
			return total;
		/* One clock read for the batch: where each fault's wait starts. */
		t0 = rf_stall_now();
		/* Counted before any is dispatched: from the read on, the
		 * discarder's zap may come at any time. */
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++)
			if (msg_kind(&msgs[i]) == RF_UFFD_EV_REMOVE)
				atomic_fetch_add(&u->removes_unhandled, 1);
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			atomic_fetch_add_explicit(&u->msgs[msg_kind(&msgs[i])], 1,
						  memory_order_relaxed);
			if (dispatch(u, &msgs[i], t0) != -EAGAIN)
				continue;
			atomic_fetch_add(&u->retried, 1);
			while (u->npending == PENDING_MAX) {
				/* Full: the pending ones must move first. */
				sched_yield();
				retry_pending(u);
			}
			queue_retry(u, &msgs[i], t0);
		}
		total += (unsigned int)((size_t)n / sizeof(msgs[0]));
	}
}

static void *fault_thread_main(void *arg)
{
	struct rf_uffd *u = arg;
	struct pollfd pfd[3] = {{.fd = u->fd, .events = POLLIN},
				{.fd = u->stop_fd, .events = POLLIN},
				{.fd = u->kick_fd, .events = POLLIN}};
	const struct timespec retry = {0, 1000000}, now = {0, 0};

	rf_thread_name(u->vm->e, "fault", u->vm->name);
	for (;;) {
		/* Every message read before a caller took its ticket is read
		 * before this load (see rf_uffd_sync), so once this round has
		 * dispatched what it read, the tickets up to @seen are done. */
		uint64_t seen = atomic_load(&u->sync_req);
		bool owed = seen != atomic_load(&u->sync_done);
		int n = ppoll(pfd, 3, owed ? &now : u->npending ? &retry : NULL, NULL);
		uint64_t kicks;

		if (n < 0 && errno != EINTR)
			break;
		if (pfd[1].revents & POLLIN)
			break;
		/* Drain the kicks; the round below is what they asked for. */
		if ((pfd[2].revents & POLLIN) && read(u->kick_fd, &kicks, sizeof(kicks)) < 0 &&
		    errno != EAGAIN)
			rf_log(u->vm->e, RF_LOG_ERR,
			       "%s: fault thread: reading its kick eventfd: %s", u->vm->name,
			       strerror(errno));
		process_ready(u);
		if (u->npending)
			retry_pending(u);
		if (owed) {
			pthread_mutex_lock(&u->sync_lock);
			atomic_store(&u->sync_done, seen);
			pthread_cond_broadcast(&u->sync_cond);
			pthread_mutex_unlock(&u->sync_lock);
		}
	}
	/* Stopping: nobody waits for a round that will not come. */
	pthread_mutex_lock(&u->sync_lock);
	atomic_store(&u->sync_done, UINT64_MAX);
	pthread_cond_broadcast(&u->sync_cond);
	pthread_mutex_unlock(&u->sync_lock);
	return NULL;
}

/*
 * The ordering argument: a discarder's madvise returns only after the
 * fault thread's read() has dequeued its UFFD_EVENT_REMOVE. Its ticket is taken
 * after that, so the fault thread's load of sync_req that sees the ticket comes
 * after the read; that read belongs to an earlier round (a round loads
 * sync_req before reading anything), and a round dispatches everything it
 * read, retried faults aside, before the next one starts. REMOVE handlers
 * ask for a retry only while guest RAM is being mapped or unmapped (the
 * regions lock held for writing), never during one of our discards, which
 * hold it for reading.
 */
int rf_uffd_sync(struct rf_uffd *u)
{
	uint64_t one = 1, t;

	if (!u || !(u->features & UFFD_FEATURE_EVENT_REMOVE) || rf_uffd_on_fault_thread(u))
		return 0;
	t = atomic_fetch_add(&u->sync_req, 1) + 1;
	if (write(u->kick_fd, &one, sizeof(one)) != sizeof(one))
		return -errno;
	pthread_mutex_lock(&u->sync_lock);
	while (atomic_load(&u->sync_done) < t)
		pthread_cond_wait(&u->sync_cond, &u->sync_lock);
	pthread_mutex_unlock(&u->sync_lock);
	return 0;
}

unsigned int rf_uffd_own_add(struct rf_uffd *u, uintptr_t lo, uintptr_t hi)
{
	unsigned int i;

	pthread_mutex_lock(&u->own_lock);
	for (;;) {
		for (i = 0; i < OWN_MAX; i++)
			if (u->own[i].hi == 0)
				break;
		if (i < OWN_MAX)
			break;
		pthread_cond_wait(&u->own_free, &u->own_lock);
	}
	u->own[i].lo = lo;
	u->own[i].hi = hi;
	pthread_mutex_unlock(&u->own_lock);
	return i;
}

void rf_uffd_own_del(struct rf_uffd *u, unsigned int i)
{
	pthread_mutex_lock(&u->own_lock);
	u->own[i].lo = u->own[i].hi = 0;
	pthread_cond_signal(&u->own_free);
	pthread_mutex_unlock(&u->own_lock);
}

bool rf_uffd_remove_pending(struct rf_uffd *u)
{
	return atomic_load(&u->removes_unhandled) != 0;
}

bool rf_uffd_remove_ahead(const struct rf_uffd *u)
{
	return u->pending_removes != 0;
}

bool rf_uffd_own_discard(struct rf_uffd *u, uint64_t addr)
{
	bool own = false;

	pthread_mutex_lock(&u->own_lock);
	for (unsigned int i = 0; i < OWN_MAX && !own; i++)
		own = addr >= u->own[i].lo && addr < u->own[i].hi;
	pthread_mutex_unlock(&u->own_lock);
	return own;
}

struct rf_uffd *rf_uffd_of(rf_vm *vm)
{
	struct rf_uffd *u;

	/* The VM's descriptor exists for as long as a module that registered
	 * guest RAM with it does: no event can come from RAM registered with
	 * none, and none is freed under a module's running discard. */
	pthread_mutex_lock(&uffd_create_lock);
	u = vm->uffd;
	pthread_mutex_unlock(&uffd_create_lock);
	return u;
}

bool rf_uffd_on_fault_thread(const struct rf_uffd *u)
{
	return u && pthread_equal(pthread_self(), u->thread);
}

static int uffd_ioctl(struct rf_uffd *u, unsigned long req, void *arg)
{
	for (unsigned long tries = 0;; tries++) {
		if (ioctl(u->fd, req, arg) == 0)
			return 0;
		if (errno != EAGAIN)
			return -errno;
		/* An event (remove, unmap) is pending: the fault thread must read it
		 * before the kernel lets this through. On the fault thread the
		 * caller is a handler: it is retried after the next read. It
		 * must not read and dispatch here: messages read now would be
		 * dispatched ahead of the rest of the batch in hand, and a
		 * REMOVE event of that batch could then run after faults that
		 * came later and wipe a page swapped out since. */
		atomic_fetch_add_explicit(&u->eagain, 1, memory_order_relaxed);
		if (rf_uffd_on_fault_thread(u))
			return -EAGAIN;
		if (tries > 16)
			sched_yield();
		if (tries > 10000000)
			return -EAGAIN;
		/* UFFDIO_COPY & co. report partial progress; the callers here
		 * use whole-range operations that are safe to repeat. */
	}
}

int rf_uffd_register(struct rf_uffd *u, void *addr, uint64_t len, uint64_t mode)
{
	struct uffdio_register r = {.range = {(uintptr_t)addr, len}};
	int err = 0;

	pthread_mutex_lock(&u->reg_lock);
	r.mode = mode | atomic_load(&u->base_mode);
	if (ioctl(u->fd, UFFDIO_REGISTER, &r) != 0)
		err = -errno;
	pthread_mutex_unlock(&u->reg_lock);
	return err;
}

int rf_uffd_unregister(struct rf_uffd *u, void *addr, uint64_t len)
{
	struct uffdio_range r = {(uintptr_t)addr, len};

	if (ioctl(u->fd, UFFDIO_UNREGISTER, &r) != 0)
		return -errno;
	return 0;
}

static int writeprotect_once(struct rf_uffd *u, uint64_t addr, uint64_t len, bool wp, bool dontwake)
{
	struct uffdio_writeprotect w = {
	    .range = {addr, len},
	    .mode = (wp ? UFFDIO_WRITEPROTECT_MODE_WP : 0) |
		    (dontwake ? UFFDIO_WRITEPROTECT_MODE_DONTWAKE : 0),
	};

	return uffd_ioctl(u, UFFDIO_WRITEPROTECT, &w);
}

/*
 * Before Linux 6.5 UFFDIO_WRITEPROTECT takes a range inside one VMA only and
 * answers ENOENT for one that crosses into the next, which guest RAM does
 * once dedup has mapped store pages or swap has registered chunks. On
 * ENOENT the range is split in halves until each piece lies in one VMA; a
 * piece that still fails (really not registered) fails the whole call.
 * Newer kernels take the whole range at once, so this costs them nothing.
 */
static int writeprotect_split(struct rf_uffd *u, uint64_t addr, uint64_t len, bool wp,
			      bool dontwake)
{
	uint64_t half;
	int err = writeprotect_once(u, addr, len, wp, dontwake), err2;

	if (err != -ENOENT || len <= RF_PAGE_SIZE)
		return err;
	/* Both halves, even if the first fails: un-protecting is best effort. */
	half = (len >> RF_PAGE_SHIFT) / 2 << RF_PAGE_SHIFT;
	err = writeprotect_split(u, addr, half, wp, dontwake);
	err2 = writeprotect_split(u, addr + half, len - half, wp, dontwake);
	return err ? err : err2;
}

int rf_uffd_writeprotect(struct rf_uffd *u, void *addr, uint64_t len, bool wp, bool dontwake)
{
	int err = writeprotect_split(u, (uintptr_t)addr, len, wp, dontwake);

	/* Un-protecting woke the writers parked there (fault_stall.h). */
	if (!wp && !dontwake)
		rf_stall_woken(u->vm, &u->parked, (uintptr_t)addr, len);
	/* A failed protect may have protected part of the range (the kernel
	 * goes VMA by VMA): lift it again, so that failure means none. */
	if (err && wp)
		writeprotect_split(u, (uintptr_t)addr, len, false, false);
	return err;
}

int rf_uffd_wake(struct rf_uffd *u, void *addr, uint64_t len)
{
	struct uffdio_range r = {(uintptr_t)addr, len};
	int err = ioctl(u->fd, UFFDIO_WAKE, &r) != 0 ? -errno : 0;

	rf_stall_woken(u->vm, &u->parked, (uintptr_t)addr, len);
	return err;
}

void rf_uffd_set_handler(struct rf_uffd *u, enum rf_uffd_kind kind, rf_uffd_handler fn, void *arg)
{
	if ((unsigned int)kind >= RF_UFFD_NKINDS)
		return;
	/* Argument first: the fault thread loads fn, then arg. */
	atomic_store(&u->handlers[kind].arg, arg);
	atomic_store(&u->handlers[kind].fn, fn);
}

void rf_uffd_add_base_mode(struct rf_uffd *u, uint64_t mode)
{
	pthread_mutex_lock(&u->reg_lock);
	atomic_fetch_or(&u->base_mode, mode);
	pthread_mutex_unlock(&u->reg_lock);
}

uint64_t rf_uffd_features(const struct rf_uffd *u)
{
	return u->features;
}

int rf_uffd_fd(const struct rf_uffd *u)
{
	return u->fd;
}

rf_vm *rf_uffd_vm(const struct rf_uffd *u)
{
	return u->vm;
}

void rf_uffd_stats(struct rf_uffd *u, struct rf_uffd_stats *st)
{
	clockid_t cid;
	struct timespec ts;

	memset(st, 0, sizeof(*st));
	for (int k = 0; k < RF_UFFD_NKINDS; k++)
		st->msgs[k] = atomic_load(&u->msgs[k]);
	st->retried = atomic_load(&u->retried);
	st->eagain = atomic_load(&u->eagain);
	st->foreign_fills = atomic_load(&u->foreign_fills);
	st->foreign_zero = atomic_load(&u->foreign_zero);
	st->foreign_errors = atomic_load(&u->foreign_errors);
	st->foreign_wp = atomic_load(&u->foreign_wp);
	st->foreign_minor = atomic_load(&u->foreign_minor);
	if (pthread_getcpuclockid(u->thread, &cid) == 0 && clock_gettime(cid, &ts) == 0)
		st->cpu_ns = (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/*
 * A userfaultfd that also gets the faults the kernel takes on the user's
 * behalf: never UFFD_USER_MODE_ONLY. KVM touches guest RAM from the kernel
 * (get_user_pages for a vCPU's fault, copy_to_user when it emulates), and a
 * user-mode-only descriptor answers those with SIGBUS, which the vCPU sees
 * as an MMIO exit or -EFAULT: a setup that seems to work and breaks at the
 * first fault. So without a kernel-mode descriptor the call fails.
 *
 * userfaultfd(2) gives one to a process with CAP_SYS_PTRACE, or to anyone
 * when vm.unprivileged_userfaultfd is 1; /dev/userfaultfd (Linux 6.1+)
 * gives one to whoever may open it (USERFAULTFD_IOC_NEW), whatever the
 * sysctl: the way an unprivileged VMM is given the right (a udev rule, a
 * group, or the descriptor passed in by its jailer).
 */
int rf_uffd_from_device(void)
{
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC), fd, err;

	if (dev < 0)
		return -errno;
	fd = ioctl(dev, USERFAULTFD_IOC_NEW, O_CLOEXEC | O_NONBLOCK);
	err = errno;
	close(dev);
	return fd >= 0 ? fd : -err;
}

int rf_uffd_open_kernel(rf_engine *e, const char *who, int *out)
{
	int fd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK), sys_err, dev_err;

	if (fd >= 0) {
		*out = fd;
		return 0;
	}
	sys_err = errno;
	if (sys_err != EPERM) {
		rf_log(e, RF_LOG_ERR, "%s: userfaultfd(): %s", who, strerror(sys_err));
		return -sys_err;
	}
	fd = rf_uffd_from_device();
	if (fd >= 0) {
		*out = fd;
		return 0;
	}
	dev_err = -fd;
	rf_log(e, RF_LOG_ERR,
	       "%s: userfaultfd: KVM needs kernel-mode faults, and this process may not "
	       "have them: it needs CAP_SYS_PTRACE, vm.unprivileged_userfaultfd=1, or "
	       "read-write access to /dev/userfaultfd (%s)",
	       who, strerror(dev_err));
	return -EPERM;
}

/*
 * Open the VM's descriptor, or take @given (the embedder's, already
 * duplicated: rf_vm_adopt_uffd; -1 for a new one), negotiate the features
 * and start the fault thread. @given is closed on failure.
 */
static int uffd_open(rf_vm *vm, int given, struct rf_uffd **out)
{
	rf_engine *e = vm->e;
	uint64_t want = UFFD_FEATURE_PAGEFAULT_FLAG_WP | UFFD_FEATURE_WP_HUGETLBFS_SHMEM |
			UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_MISSING_SHMEM;
	struct uffdio_api api = {.api = UFFD_API};
	struct rf_uffd *u;
	int err;

	if (given < 0 && (!e->feat.uffd || !e->feat.uffd_wp)) {
		rf_log(e, RF_LOG_ERR, "%s: userfaultfd: %s", vm->name,
		       !e->feat.uffd ? "not available (see vm.unprivileged_userfaultfd)"
				     : "write-protect mode not supported by this kernel");
		return -ENODEV;
	}
	u = rf_zalloc(e, sizeof(*u));
	if (!u) {
		if (given >= 0)
			close(given);
		return -ENOMEM;
	}
	u->vm = vm;
	u->fd = given;
	u->stop_fd = -1;
	u->kick_fd = -1;
	pthread_mutex_init(&u->reg_lock, NULL);
	pthread_mutex_init(&u->sync_lock, NULL);
	pthread_cond_init(&u->sync_cond, NULL);
	pthread_mutex_init(&u->own_lock, NULL);
	pthread_cond_init(&u->own_free, NULL);
	pthread_mutex_init(&u->foreign_lock, NULL);
	rf_stall_parked_init(&u->parked);
	u->rl.burst = 5;
	if (given < 0) {
		err = rf_uffd_open_kernel(e, vm->name, &u->fd);
		if (err)
			goto err_free;
	}
	/* An embedder's descriptor may come to a process whose own probe could
	 * open none (a jailed VMM given one by its jailer): ask for all. */
	api.features = e->feat.uffd_features ? want & e->feat.uffd_features : want;
	if (ioctl(u->fd, UFFDIO_API, &api) != 0) {
		err = -errno;
		if (given >= 0)
			rf_log(e, RF_LOG_ERR,
			       "%s: adopt userfaultfd: UFFDIO_API(features 0x%llx): %s%s", vm->name,
			       (unsigned long long)api.features, strerror(errno),
			       errno == ENOTTY	 ? " (not a userfaultfd)"
			       : errno == EINVAL ? " (UFFDIO_API was already called on it, or the "
						   "kernel lacks these features)"
						 : "");
		else
			rf_log(e, RF_LOG_ERR, "%s: UFFDIO_API(features 0x%llx): %s", vm->name,
			       (unsigned long long)api.features, strerror(errno));
		if (err == -ENOTTY)
			err = -EINVAL;
		goto err_close;
	}
	u->features = api.features;
	u->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	u->kick_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (u->stop_fd < 0 || u->kick_fd < 0) {
		err = -errno;
		goto err_close;
	}
	err = -pthread_create(&u->thread, NULL, fault_thread_main, u);
	if (err) {
		rf_log(e, RF_LOG_ERR, "%s: fault thread: %s", vm->name, strerror(-err));
		goto err_close;
	}
	*out = u;
	return 0;

err_close:
	if (u->stop_fd >= 0)
		close(u->stop_fd);
	if (u->kick_fd >= 0)
		close(u->kick_fd);
	close(u->fd);
err_free:
	pthread_mutex_destroy(&u->reg_lock);
	pthread_mutex_destroy(&u->sync_lock);
	pthread_cond_destroy(&u->sync_cond);
	pthread_mutex_destroy(&u->own_lock);
	pthread_cond_destroy(&u->own_free);
	pthread_mutex_destroy(&u->foreign_lock);
	rf_stall_parked_destroy(&u->parked);
	rf_free(e, u);
	return err;
}

int rf_uffd_get(rf_vm *vm, struct rf_uffd **out)
{
	int err = 0;

	pthread_mutex_lock(&uffd_create_lock);
	if (!vm->uffd)
		err = uffd_open(vm, -1, &vm->uffd);
	if (!err) {
		vm->uffd->users++;
		*out = vm->uffd;
	}
	pthread_mutex_unlock(&uffd_create_lock);
	return err;
}

void rf_uffd_put(rf_vm *vm)
{
	struct rf_uffd *u;
	uint64_t one = 1;

	pthread_mutex_lock(&uffd_create_lock);
	u = vm->uffd;
	if (!u || --u->users > 0) {
		pthread_mutex_unlock(&uffd_create_lock);
		return;
	}
	vm->uffd = NULL;
	pthread_mutex_unlock(&uffd_create_lock);
	if (write(u->stop_fd, &one, sizeof(one)) != sizeof(one))
		rf_log(vm->e, RF_LOG_ERR, "%s: fault thread: cannot signal stop: %s", vm->name,
		       strerror(errno));
	pthread_join(u->thread, NULL);
	/* Closing the descriptor wakes any thread still waiting on it and
	 * drops every registration. */
	close(u->fd);
	close(u->stop_fd);
	close(u->kick_fd);
	pthread_mutex_destroy(&u->reg_lock);
	pthread_mutex_destroy(&u->sync_lock);
	pthread_cond_destroy(&u->sync_cond);
	pthread_mutex_destroy(&u->own_lock);
	pthread_cond_destroy(&u->own_free);
	for (unsigned int i = 0; i < RF_MAX_REGIONS; i++)
		rf_free(vm->e, u->foreign[i].bits);
	pthread_mutex_destroy(&u->foreign_lock);
	rf_stall_parked_destroy(&u->parked);
	rf_free(vm->e, u);
}

/*
 * The embedder's share of the descriptor: its fault handler and the pages
 * still its to fill ("foreign", uffd.h). A page is foreign from the moment
 * the handler is installed (if it is PRIVATE then) until the first of: the
 * handler fills it, the handler asks for zeros, a REMOVE event covers it.
 * Foreign pages are absent (a present page would have faulted to get
 * there), so the modules that act on present pages never meet one; the
 * missing-fault handlers and the fill-ahead ask here.
 */

static uint64_t *foreign_bits(struct rf_uffd *u, const struct rf_region *r)
{
	for (unsigned int i = 0; i < RF_MAX_REGIONS; i++)
		if (u->foreign[i].r == r)
			return u->foreign[i].bits;
	return NULL;
}

static bool bit_test(const uint64_t *bits, uint64_t idx)
{
	return bits && (bits[idx / 64] >> (idx % 64)) & 1;
}

static void bit_clear(uint64_t *bits, uint64_t idx)
{
	bits[idx / 64] &= ~(1ull << (idx % 64));
}

bool rf_uffd_foreign_page(struct rf_uffd *u, const struct rf_region *r, uint64_t idx)
{
	bool on;

	if (!u || !atomic_load(&u->foreign_on))
		return false;
	pthread_mutex_lock(&u->foreign_lock);
	on = bit_test(foreign_bits(u, r), idx);
	pthread_mutex_unlock(&u->foreign_lock);
	return on;
}

/* A REMOVE event over [@start, @end): those pages read as zeros now. The
 * bitmaps are found by address, without the regions lock (the fault thread
 * may not wait for it): a region is dropped from the table under
 * foreign_lock (region_unmap hook) before it is unmapped. */
static void foreign_forget(struct rf_uffd *u, uint64_t start, uint64_t end)
{
	pthread_mutex_lock(&u->foreign_lock);
	for (unsigned int i = 0; i < RF_MAX_REGIONS; i++) {
		const struct rf_region *r = u->foreign[i].r;
		uint64_t a, b, lo, hi;

		if (!r)
			continue;
		a = (uintptr_t)r->hva;
		b = a + r->size;
		lo = start > a ? start : a;
		hi = end < b ? end : b;
		for (uint64_t pg = lo & ~(uint64_t)(RF_PAGE_SIZE - 1); pg < hi; pg += RF_PAGE_SIZE)
			bit_clear(u->foreign[i].bits, (pg - a) >> RF_PAGE_SHIFT);
	}
	pthread_mutex_unlock(&u->foreign_lock);
}

/* Is the page at @hva there? The handler's UFFDIO_COPY must have put it. */
static bool page_present(uint64_t hva)
{
	unsigned char vec = 0;

	return mincore((void *)(uintptr_t)hva, RF_PAGE_SIZE, &vec) != 0 || (vec & 1);
}

/* The handler's answer for a page outside guest RAM (a range the embedder
 * registered itself). foreign_lock held. */
static int foreign_outside(struct rf_uffd *u, uint64_t page, unsigned int flags)
{
	int ret =
	    u->foreign_fn(u->vm, RF_VM_GPA_NONE, (void *)(uintptr_t)page, flags, u->foreign_arg);

	if (ret == -EAGAIN)
		return -EAGAIN;
	if (ret == RF_VM_FAULT_ZERO) {
		struct uffdio_zeropage z = {.range = {page, RF_PAGE_SIZE}};

		if (uffd_ioctl(u, UFFDIO_ZEROPAGE, &z) == -EAGAIN)
			return -EAGAIN;
		ret = 0;
	}
	if (ret) {
		atomic_fetch_add(&u->foreign_errors, 1);
		rf_log_ratelimited(u->vm->e, &u->rl, RF_LOG_ERR,
				   "%s: fault handler: hva 0x%llx (not guest RAM): %s: the "
				   "faulting thread stays blocked",
				   u->vm->name, (unsigned long long)page, strerror(-ret));
		return 0;
	}
	rf_uffd_wake(u, (void *)(uintptr_t)page, RF_PAGE_SIZE);
	return 0;
}

int rf_uffd_foreign_fault(struct rf_uffd *u, const struct uffd_msg *m)
{
	rf_vm *vm = u->vm;
	uint64_t page = m->arg.pagefault.address & ~(uint64_t)(RF_PAGE_SIZE - 1), idx, gpa, v;
	unsigned int flags =
	    (m->arg.pagefault.flags & UFFD_PAGEFAULT_FLAG_WRITE) ? RF_VM_FAULT_WRITE : 0;
	struct rf_region *r;
	uint64_t *bits;
	rf_pte_t *pte;
	int ret;

	if (!atomic_load(&u->foreign_on))
		return 1;
	if (rf_vm_regions_tryrdlock(vm) != 0)
		return -EAGAIN;
	r = __rf_vm_find_region_hva(vm, page);
	pthread_mutex_lock(&u->foreign_lock);
	if (!u->foreign_fn) {
		ret = 1;
		goto out;
	}
	if (!r) {
		ret = foreign_outside(u, page, flags);
		goto out;
	}
	idx = (page - (uintptr_t)r->hva) >> RF_PAGE_SHIFT;
	bits = foreign_bits(u, r);
	if (!bit_test(bits, idx)) {
		ret = 1;
		goto out;
	}
	pte = &r->pte[idx];
	if (!rf_pte_trylock(pte, &v)) {
		ret = -EAGAIN;
		goto out;
	}
	if (rf_pte_state(v) != RF_PAGE_PRIVATE) {
		/* Not PRIVATE any more without a REMOVE event: a state only a
		 * discard gives (ZERO, BALLOONED, ...) or one of a present page. */
		bit_clear(bits, idx);
		rf_pte_unlock(vm, pte, v, v);
		ret = 1;
		goto out;
	}
	gpa = r->gpa + (idx << RF_PAGE_SHIFT);
	ret = u->foreign_fn(vm, gpa, (void *)(uintptr_t)page, flags, u->foreign_arg);
	if (ret == 0 && !page_present(page)) {
		atomic_fetch_add(&u->foreign_errors, 1);
		rf_log_ratelimited(vm->e, &u->rl, RF_LOG_ERR,
				   "%s: fault handler: gpa 0x%llx: returned 0 but did not fill "
				   "the page: the faulting thread stays blocked",
				   vm->name, (unsigned long long)gpa);
		ret = -EFAULT;
	} else if (ret == 0 || ret == RF_VM_FAULT_ZERO) {
		bit_clear(bits, idx);
		rf_debug_note(vm, (void *)(uintptr_t)page, RF_PAGE_SIZE,
			      ret ? "embedder: zeros" : "embedder: filled");
		atomic_fetch_add(ret ? &u->foreign_zero : &u->foreign_fills, 1);
	} else if (ret != -EAGAIN) {
		atomic_fetch_add(&u->foreign_errors, 1);
		rf_log_ratelimited(vm->e, &u->rl, RF_LOG_ERR,
				   "%s: fault handler: gpa 0x%llx: %s: the faulting thread stays "
				   "blocked",
				   vm->name, (unsigned long long)gpa,
				   strerror(ret < 0 ? -ret : EINVAL));
	}
	rf_pte_unlock(vm, pte, v, v);
	if (ret == 0)
		rf_uffd_wake(u, (void *)(uintptr_t)page, RF_PAGE_SIZE);
	else if (ret != RF_VM_FAULT_ZERO && ret != -EAGAIN)
		ret = 0; /* left unanswered for good */
out:
	pthread_mutex_unlock(&u->foreign_lock);
	rf_vm_regions_unlock(vm);
	return ret;
}

/* The embedder's reference: dropped when the VM goes (before its regions). */
static void embedder_vm_free(rf_vm *vm, void *arg)
{
	(void)arg;
	pthread_mutex_lock(&uffd_create_lock);
	if (vm->uffd && vm->uffd->embedder) {
		vm->uffd->embedder = false;
		atomic_store(&vm->uffd->foreign_on, false);
		pthread_mutex_unlock(&uffd_create_lock);
		rf_uffd_put(vm);
		return;
	}
	pthread_mutex_unlock(&uffd_create_lock);
}

/* A region goes (regions lock held for writing): drop its bitmap, so that a
 * region mapped later at the same address is not taken for it. */
static void embedder_region_unmap(rf_vm *vm, struct rf_region *r, void *arg)
{
	struct rf_uffd *u;

	(void)arg;
	pthread_mutex_lock(&uffd_create_lock);
	u = vm->uffd;
	if (u) {
		pthread_mutex_lock(&u->foreign_lock);
		for (unsigned int i = 0; i < RF_MAX_REGIONS; i++)
			if (u->foreign[i].r == r) {
				rf_free(vm->e, u->foreign[i].bits);
				u->foreign[i].r = NULL;
				u->foreign[i].bits = NULL;
			}
		pthread_mutex_unlock(&u->foreign_lock);
	}
	pthread_mutex_unlock(&uffd_create_lock);
}

/*
 * The embedder's reference to the VM's descriptor, taken once (opening it,
 * or adopting @given when >= 0), with the hooks that drop it. Then guest
 * RAM is registered for missing faults: a restore needs a fault on every
 * page not loaded yet, not only in the chunks swap registered.
 */
static int embedder_get(rf_vm *vm, int given, struct rf_uffd **out)
{
	const struct rf_vm_hooks h = {.vm_free = embedder_vm_free,
				      .region_unmap = embedder_region_unmap};
	struct rf_uffd *u;
	struct rf_region *r;
	int err = 0;

	pthread_mutex_lock(&uffd_create_lock);
	if (given >= 0 && vm->uffd) {
		pthread_mutex_unlock(&uffd_create_lock);
		close(given);
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: adopt userfaultfd: the VM has its userfaultfd already (dedup, swap "
		       "or an earlier call opened it): adopt before any of them",
		       vm->name);
		return -EBUSY;
	}
	if (!vm->uffd)
		err = uffd_open(vm, given, &vm->uffd);
	if (!err && !vm->uffd->embedder) {
		if (!rf_vm_hooks_registered(vm, embedder_vm_free))
			err = rf_vm_add_hooks(vm, &h);
		if (!err) {
			vm->uffd->embedder = true;
			vm->uffd->users++;
		} else if (vm->uffd->users == 0) {
			/* Opened for nobody: close it again (as the last put). */
			vm->uffd->users = 1;
			pthread_mutex_unlock(&uffd_create_lock);
			rf_uffd_put(vm);
			rf_log(vm->e, RF_LOG_ERR, "%s: userfaultfd: no room for its hooks",
			       vm->name);
			return err;
		}
	}
	u = vm->uffd;
	pthread_mutex_unlock(&uffd_create_lock);
	if (err)
		return err;
	if (!(u->features & UFFD_FEATURE_EVENT_REMOVE)) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: fault handler: the kernel's userfaultfd has no UFFD_EVENT_REMOVE: "
		       "a page discarded later could not be told from one still to restore",
		       vm->name);
		return -EOPNOTSUPP;
	}
	rf_uffd_add_base_mode(u, UFFDIO_REGISTER_MODE_MISSING);
	rf_vm_regions_rdlock(vm);
	for (unsigned int i = 0; !err && (r = __rf_vm_region(vm, i)); i++) {
		err = rf_uffd_register(u, r->hva, r->size, UFFDIO_REGISTER_MODE_MISSING);
		if (err)
			rf_log(
			    vm->e, RF_LOG_ERR,
			    "%s: userfaultfd: registering gpa 0x%llx+0x%llx for missing faults: %s",
			    vm->name, (unsigned long long)r->gpa, (unsigned long long)r->size,
			    strerror(-err));
	}
	rf_vm_regions_unlock(vm);
	if (!err)
		*out = u;
	return err;
}

RF_EXPORT int rf_vm_uffd_fd(rf_vm *vm)
{
	struct rf_uffd *u;
	int err;

	if (!vm)
		return -EINVAL;
	err = embedder_get(vm, -1, &u);
	return err ? err : u->fd;
}

RF_EXPORT int rf_vm_adopt_uffd(rf_vm *vm, int fd)
{
	struct rf_uffd *u;
	int dup_fd, fl;

	if (!vm || fd < 0)
		return -EINVAL;
	dup_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	if (dup_fd < 0) {
		int err = errno;

		rf_log(vm->e, RF_LOG_ERR, "%s: adopt userfaultfd: fd %d: %s", vm->name, fd,
		       strerror(err));
		return err == EBADF ? -EINVAL : -err;
	}
	/* The fault thread reads until the descriptor is empty. */
	fl = fcntl(dup_fd, F_GETFL);
	if (fl < 0 || fcntl(dup_fd, F_SETFL, fl | O_NONBLOCK) != 0) {
		int err = errno;

		close(dup_fd);
		rf_log(vm->e, RF_LOG_ERR, "%s: adopt userfaultfd: O_NONBLOCK: %s", vm->name,
		       strerror(err));
		return -err;
	}
	return embedder_get(vm, dup_fd, &u);
}

RF_EXPORT int rf_vm_set_fault_handler(rf_vm *vm, rf_vm_fault_fn fn, void *arg)
{
	struct rf_uffd *u;
	struct rf_region *r;
	int err;

	if (!vm)
		return -EINVAL;
	u = rf_uffd_of(vm);
	if (u && rf_uffd_on_fault_thread(u))
		return -EDEADLK;
	if (!fn) {
		if (!u)
			return 0;
		/* Waits for a call in progress: it holds foreign_lock. */
		pthread_mutex_lock(&u->foreign_lock);
		atomic_store(&u->foreign_on, false);
		u->foreign_fn = NULL;
		u->foreign_arg = NULL;
		pthread_mutex_unlock(&u->foreign_lock);
		return 0;
	}
	err = embedder_get(vm, -1, &u);
	if (err)
		return err;
	rf_vm_regions_rdlock(vm);
	pthread_mutex_lock(&u->foreign_lock);
	for (unsigned int i = 0; !err && (r = __rf_vm_region(vm, i)); i++) {
		unsigned int slot = RF_MAX_REGIONS;
		uint64_t *bits;

		if (foreign_bits(u, r))
			continue; /* covered by an earlier call: keep what it knows */
		for (unsigned int k = 0; k < RF_MAX_REGIONS && slot == RF_MAX_REGIONS; k++)
			if (!u->foreign[k].r)
				slot = k;
		bits = rf_zalloc(vm->e, (r->npages + 63) / 64 * sizeof(uint64_t));
		if (!bits) {
			err = -ENOMEM;
			break;
		}
		for (uint64_t idx = 0; idx < r->npages; idx++)
			if (rf_pte_state(rf_pte_peek(&r->pte[idx])) == RF_PAGE_PRIVATE)
				bits[idx / 64] |= 1ull << (idx % 64);
		u->foreign[slot].r = r;
		u->foreign[slot].bits = bits;
	}
	if (!err) {
		u->foreign_fn = fn;
		u->foreign_arg = arg;
		atomic_store(&u->foreign_on, true);
	}
	pthread_mutex_unlock(&u->foreign_lock);
	rf_vm_regions_unlock(vm);
	if (err)
		rf_log(vm->e, RF_LOG_ERR, "%s: fault handler: out of memory for its page bitmaps",
		       vm->name);
	return err;
}

/*
 * The embedder's write protections (vm.h), marked RF_PTE_F_UWP so that the
 * fault thread tells them from the library's and the library leaves those
 * pages alone (no merge, no swap-out, no zero discard: each would replace
 * the page and its protection). Protecting goes in three passes, none with
 * a page lock held across a fault: mark every page under its lock (a
 * module that was changing it has finished; none starts again), read every
 * page so that it is present (the kernel protects only present pages; the
 * reads fault through the fault thread, which needs the page locks free),
 * then protect the range. A page discarded between the passes comes out
 * unmarked and absent: it reads as zeros, which is what the embedder is
 * told a discarded page holds. Lifting holds the locks of a chunk across
 * the ioctl, so that it cannot lift a protection a module set meanwhile.
 */
#define UWP_CHUNK 512u

static int uwp_protect(struct rf_uffd *u, struct rf_region *r, uint64_t idx, uint64_t n)
{
	rf_vm *vm = u->vm;
	uint8_t *hva = rf_region_page(r, idx);
	uint64_t len = n << RF_PAGE_SHIFT;
	int err;

	rf_uffd_add_base_mode(u, UFFDIO_REGISTER_MODE_WP);
	err = rf_uffd_register(u, hva, len, UFFDIO_REGISTER_MODE_WP);
	if (err) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: write-protect: registering gpa 0x%llx+0x%llx for write-protect: %s",
		       vm->name, (unsigned long long)(r->gpa + (idx << RF_PAGE_SHIFT)),
		       (unsigned long long)len, strerror(-err));
		return err;
	}
	for (uint64_t k = idx; k < idx + n; k++) {
		uint64_t v = rf_pte_lock(&r->pte[k]);

		rf_pte_unlock(vm, &r->pte[k], v, v | RF_PTE_F_UWP);
	}
	for (uint64_t off = 0; off < len; off += RF_PAGE_SIZE)
		(void)*(volatile uint8_t *)(hva + off);
	err = rf_uffd_writeprotect(u, hva, len, true, false);
	if (err) {
		rf_log(vm->e, RF_LOG_ERR, "%s: write-protect: gpa 0x%llx+0x%llx: %s", vm->name,
		       (unsigned long long)(r->gpa + (idx << RF_PAGE_SHIFT)),
		       (unsigned long long)len, strerror(-err));
		/* A failed protect leaves none of the range protected. */
		for (uint64_t k = idx; k < idx + n; k++) {
			uint64_t v = rf_pte_lock(&r->pte[k]);

			rf_pte_unlock(vm, &r->pte[k], v, v & ~RF_PTE_F_UWP);
		}
	}
	return err;
}

static int uwp_lift(struct rf_uffd *u, struct rf_region *r, uint64_t idx, uint64_t n)
{
	rf_vm *vm = u->vm;
	uint64_t old[UWP_CHUNK];
	int err = 0;

	for (uint64_t c = idx; c < idx + n; c += UWP_CHUNK) {
		uint64_t m = idx + n - c < UWP_CHUNK ? idx + n - c : UWP_CHUNK;
		int e;

		for (uint64_t k = 0; k < m; k++)
			old[k] = rf_pte_lock(&r->pte[c + k]);
		e = rf_uffd_writeprotect(u, rf_region_page(r, c), m << RF_PAGE_SHIFT, false, false);
		/* Not registered for write-protect: nothing there is protected. */
		if (e && e != -ENOENT && !err) {
			err = e;
			rf_log(vm->e, RF_LOG_ERR,
			       "%s: write-protect: lifting gpa 0x%llx+0x%llx: %s", vm->name,
			       (unsigned long long)(r->gpa + (c << RF_PAGE_SHIFT)),
			       (unsigned long long)(m << RF_PAGE_SHIFT), strerror(-e));
		}
		for (uint64_t k = 0; k < m; k++)
			rf_pte_unlock(vm, &r->pte[c + k], old[k],
				      e && e != -ENOENT ? old[k] : old[k] & ~RF_PTE_F_UWP);
	}
	return err;
}

RF_EXPORT int rf_vm_write_protect(rf_vm *vm, uint64_t gpa, uint64_t len, bool protect)
{
	const char *what = protect ? "write-protect" : "lift write-protect";
	struct rf_uffd *u;
	struct rf_region *r;
	int err;

	if (!vm)
		return -EINVAL;
	if (!len || ((gpa | len) & (RF_PAGE_SIZE - 1)) || gpa + len < gpa) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: %s: gpa 0x%llx+0x%llx: empty, not 4 KiB aligned or wrapping", vm->name,
		       what, (unsigned long long)gpa, (unsigned long long)len);
		return -EINVAL;
	}
	u = rf_uffd_of(vm);
	if (u && rf_uffd_on_fault_thread(u))
		return -EDEADLK;
	if (!u || (protect && !atomic_load(&u->foreign_on))) {
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: %s: gpa 0x%llx+0x%llx: no fault handler installed "
		       "(rf_vm_set_fault_handler): a write would have nobody to tell",
		       vm->name, what, (unsigned long long)gpa, (unsigned long long)len);
		return -EINVAL;
	}
	rf_vm_regions_rdlock(vm);
	r = __rf_vm_find_region(vm, gpa);
	if (!r || gpa + len > r->gpa + r->size) {
		rf_vm_regions_unlock(vm);
		rf_log(vm->e, RF_LOG_ERR,
		       "%s: %s: gpa 0x%llx+0x%llx is not inside one region of guest RAM", vm->name,
		       what, (unsigned long long)gpa, (unsigned long long)len);
		return -EINVAL;
	}
	if (protect)
		err = uwp_protect(u, r, rf_region_index(r, gpa), len >> RF_PAGE_SHIFT);
	else
		err = uwp_lift(u, r, rf_region_index(r, gpa), len >> RF_PAGE_SHIFT);
	rf_vm_regions_unlock(vm);
	return err;
}
