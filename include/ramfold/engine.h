/* SPDX-License-Identifier: MIT */
/*
 * The ramfold engine: one per host process. It holds the host-wide
 * configuration, the embedder's log callback, the kernel features detected at
 * start, and the metadata arena. VMs (vm.h) hang off it.
 *
 * Every call returns 0 or a negative errno; on failure the reason is passed
 * once to the log callback. Nothing in the library exits, aborts or prints.
 *
 * Concurrency: rf_engine_new/rf_engine_free are called by the embedder alone,
 * with no other call on the engine in flight. rf_engine_features and
 * rf_engine_last_error may be called from any thread.
 */
#ifndef RAMFOLD_ENGINE_H
#define RAMFOLD_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct rf_engine rf_engine;

enum rf_log_level {
	RF_LOG_ERR = 3,
	RF_LOG_WARN = 4,
	RF_LOG_INFO = 6,
	RF_LOG_DEBUG = 7,
};

/*
 * Log callback: @msg is one line without a trailing newline, naming the
 * object and the cause ("vm0: map_ram: gpa 0x1001 not 4 KiB aligned").
 * Called from whichever thread hit the condition; must not call back into
 * the library.
 */
typedef void (*rf_log_fn)(void *arg, enum rf_log_level level, const char *msg);

/* Engine flags: features the embedder requires; missing ones fail rf_engine_new. */
#define RF_ENGINE_REQUIRE_KVM	  (1u << 0) /* /dev/kvm present and usable */
#define RF_ENGINE_REQUIRE_UFFD_WP (1u << 1) /* userfaultfd write-protect (anon) */
#define RF_ENGINE_REQUIRE_KSM	  (1u << 2) /* kernel KSM at the sysfs path */
#define RF_ENGINE_REQUIRE_UFFD	  (1u << 3) /* userfaultfd missing mode */

/* Kernel features to treat as missing even where the kernel has them: the
 * library then takes the path an older kernel makes it take. Tests use it
 * to run the Linux 6.1 paths on a newer host; embedders can use it to pin
 * one behaviour across a fleet of mixed kernels. */
#define RF_HIDE_UFFD_MOVE    (1u << 0) /* swap-out by write-protect + copy (before 6.8) */
#define RF_HIDE_PAGEMAP_SCAN (1u << 1) /* resident counts from pagemap reads (before 6.7) */

/* The most scanner threads scan_threads 0 starts: scanning is bound by
 * memory bandwidth well before a large host's cores run out. */
#define RF_SCAN_THREADS_AUTO_MAX 8

struct rf_engine_config {
	/* sizeof(struct rf_engine_config), set by rf_engine_config_init: the library reads only
	 * what this size covers (docs/embedding.md, "ABI and versions"). */
	size_t size;
	/* Host memory ramfold may hand to guests, in bytes. Must not be 0. */
	uint64_t host_capacity_bytes;
	/* Scanner threads of the dedup engine, 1..64; 0 (rf_engine_config_init's
	 * default) = one per CPU the process may run on when dedup starts
	 * (sched_getaffinity), at most RF_SCAN_THREADS_AUTO_MAX. */
	unsigned int scan_threads;
	/* RF_ENGINE_REQUIRE_* */
	unsigned int flags;
	/* Messages at or below this level are passed to @log. */
	enum rf_log_level log_level;
	rf_log_fn log;
	void *log_arg;
	/* Paths of kernel interfaces; NULL means the standard one. Tests point
	 * them elsewhere to check the behaviour when a feature is missing. */
	const char *dev_kvm_path;  /* "/dev/kvm" */
	const char *ksm_sysfs_dir; /* "/sys/kernel/mm/ksm" */
	/* RF_HIDE_*: features detected but not used (0: use all). */
	unsigned int hide_features;
	/* Since 0.3. Called first thing in every thread the library starts,
	 * in that thread, with its name: "rf-scan/N", "rf-fault/VM",
	 * "rf-swap/VM", "rf-policy", and "rf-rcu" (liburcu's call_rcu worker
	 * of the dedup engine, reached through a callback queued on it). For
	 * the embedder to place the thread: pin it, move it into a cgroup,
	 * install a seccomp filter. It must not call into the library and
	 * should return soon (the thread's work waits). NULL: none. A struct
	 * from a 0.2 header (no such member) gets none. */
	void (*thread_start)(void *arg, const char *name);
	void *thread_arg;
};

/*
 * Fill @cfg with defaults: capacity = MemTotal of /proc/meminfo (or the memory
 * cgroup's limit if lower), one scanner thread, no required features, warnings
 * and errors logged, no log callback (messages are kept only as last error).
 */
void rf_engine_config_init(struct rf_engine_config *cfg);

/*
 * Add the features named in @names (comma-separated: "uffd-move",
 * "pagemap-scan") to cfg->hide_features. Returns 0, or -EINVAL for an
 * unknown name (cfg unchanged).
 */
int rf_engine_config_hide(struct rf_engine_config *cfg, const char *names);

/*
 * Create an engine. Returns 0 and sets *@out, or:
 *   -EINVAL  @cfg or @out NULL, capacity 0, scan_threads > 64;
 *   -ENODEV  a feature named in cfg->flags is missing (the log names it);
 *   -ENOMEM.
 * Pairs with rf_engine_free().
 */
int rf_engine_new(const struct rf_engine_config *cfg, rf_engine **out);

/*
 * Free an engine and every VM still attached to it (their RAM is unmapped).
 * NULL is accepted.
 */
void rf_engine_free(rf_engine *e);

/* Kernel features found by rf_engine_new(); all detected at run time. */
struct rf_features {
	/* Set by the caller to sizeof(struct rf_features) before the call; the
	 * library fills that much at most and sets it to what it filled. */
	size_t size;
	bool kvm;		  /* /dev/kvm opens and answers KVM_GET_API_VERSION */
	bool kvm_pvm;		  /* the KVM module is kvm_pvm (ring 0 is emulated) */
	bool uffd;		  /* userfaultfd(2) works (missing mode, anon) */
	bool uffd_wp;		  /* write-protect mode on anonymous memory */
	bool uffd_wp_unpopulated; /* WP of not-yet-populated ptes (6.4+) */
	bool uffd_wp_async;	  /* asynchronous write-protect (6.7+) */
	bool uffd_missing_shmem;  /* missing mode on shmem/memfd */
	bool uffd_event_remove;	  /* UFFD_EVENT_REMOVE */
	bool uffd_move;		  /* UFFDIO_MOVE (6.8+) */
	bool pagemap_scan;	  /* PAGEMAP_SCAN ioctl on /proc/self/pagemap (6.7+) */
	bool pagemap_pfn;	  /* pagemap shows PFNs (CAP_SYS_ADMIN) */
	bool ksm;		  /* kernel KSM sysfs present */
	bool thp;		  /* transparent huge pages available */
	int numa_nodes;		  /* configured NUMA nodes, 1 without NUMA */
	uint64_t uffd_features;	  /* raw UFFDIO_API feature mask */
	uint64_t max_map_count;	  /* vm.max_map_count */
	char kernel_release[65];
};

/* Copy the features found at start into @out. */
int rf_engine_features(const rf_engine *e, struct rf_features *out);

/* Capacity in bytes the engine was configured with. */
uint64_t rf_engine_capacity(const rf_engine *e);

/*
 * The last message logged at RF_LOG_WARN or worse by any thread, in @buf
 * (always NUL-terminated). Returns the length of the message, 0 if none.
 */
size_t rf_engine_last_error(rf_engine *e, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
