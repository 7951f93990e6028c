/* SPDX-License-Identifier: MIT */
/*
 * The system calls libramfold makes (x86-64 names), in one place: the seccomp
 * test (tests/kvm/test_seccomp.c) installs exactly this list as its allowlist,
 * and docs/embedding.md lists the same names between its "syscalls:begin" and
 * "syscalls:end" markers (the test checks both ways). An embedder that jails
 * its VMM with a seccomp filter allows these on the threads that call the
 * library and on the library's own threads.
 *
 * RF_SYSCALLS(X) calls X(name, why) once per call. Found by reading the code
 * and confirmed under `strace -f -c` with dedup, swap and the balloon running
 * under a real vCPU; glibc's and liburcu's calls on the library's behalf
 * (thread creation, locks, allocation) count as the library's.
 */
#ifndef RF_SYSCALLS_H
#define RF_SYSCALLS_H

#define RF_SYSCALLS(X)                                                                             \
	/* memory: guest RAM, store pages, remaps, discards, thread stacks */                      \
	X(mmap, "guest RAM, store windows, swap staging, thread stacks")                           \
	X(munmap, "unmap RAM and staging areas")                                                   \
	X(mremap, "dedup: a store page moved over a guest page")                                   \
	X(madvise, "discards (MADV_DONTNEED), THP off, thread stacks")                             \
	X(mprotect, "thread stack guard pages")                                                    \
	X(mbind, "store pages on the VM's node (numa_node set, several nodes)")                    \
	X(get_mempolicy, "libnuma's numa_available at engine start")                               \
	/* userfaultfd and the fault thread */                                                     \
	X(userfaultfd, "the VM's userfaultfd (refused without CAP_SYS_PTRACE)")                    \
	X(ioctl, "UFFDIO_*, USERFAULTFD_IOC_NEW, PAGEMAP_SCAN")                                    \
	X(eventfd2, "the fault thread's kick")                                                     \
	X(ppoll, "the fault thread waits on its userfaultfd and kick")                             \
	/* files: pagemap, /proc and /sys, the swap file, the dedup store */                       \
	X(openat, "/proc/self/pagemap, /proc and /sys, /dev/userfaultfd, swap file")               \
	X(close, "descriptors the library opened")                                                 \
	X(read, "/proc and /sys files, userfaultfd messages")                                      \
	X(write, "the fault thread's kick (eventfd)")                                              \
	X(pread64, "pagemap entries, swap file slots")                                             \
	X(preadv, "swap file slots read in a batch")                                               \
	X(pwritev, "swap file writes")                                                             \
	X(newfstatat, "stat and fstat: features, the store's size")                                \
	X(fstatfs, "the swap directory's file system (tmpfs warning)")                             \
	X(memfd_create, "the dedup store")                                                         \
	X(fallocate, "the dedup store: grow, punch freed pages")                                   \
	X(ftruncate, "the dedup store's size")                                                     \
	X(unlink, "the swap file, when the file system refuses O_TMPFILE")                         \
	X(getrandom, "mkostemp's name, on the same path")                                          \
	X(rename, "the metrics file (rf_metrics_write_file)")                                      \
	X(uname, "the kernel release at engine start")                                             \
	/* threads, locks, time */                                                                 \
	X(clone3, "library threads (pthread_create)")                                              \
	X(set_robust_list, "each new thread (glibc)")                                              \
	X(rseq, "each new thread (glibc)")                                                         \
	X(rt_sigprocmask, "thread creation (glibc)")                                               \
	X(rt_sigaction, "glibc's first pthread_create (SIGSETXID)")                                \
	X(futex, "locks, condition variables, joins")                                              \
	X(membarrier, "liburcu's memb flavour (the scanner's RCU readers)")                        \
	X(poll, "liburcu's call_rcu thread sleeps (poll(NULL, 0, 10))")                            \
	X(sched_yield, "page lock and fault retries")                                              \
	X(clock_gettime, "timestamps (the vDSO answers most)")                                     \
	X(clock_nanosleep, "scanner and swapper pacing")                                           \
	X(prctl, "thread names (PR_SET_NAME)")                                                     \
	X(exit, "a library thread ends")                                                           \
	X(exit_group, "the process ends")

#endif
