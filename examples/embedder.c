/* SPDX-License-Identifier: MIT */
/*
 * A complete small embedder of libramfold, the one docs/embedding.md walks
 * through. Build it against an installed copy as a VMM would:
 *
 *	cc -std=c11 -o embedder embedder.c $(pkg-config --cflags --libs ramfold)
 *
 * It creates an engine and one VM, maps the VM's guest RAM through the
 * library, creates a KVM VM with one memory slot over that RAM and one vCPU,
 * and runs a tiny real-mode guest that keeps rewriting a counter in 128
 * otherwise identical pages. Meanwhile the library merges those pages
 * (dedup), keeps the VM under a resident target (swap), and a balloon device
 * driven over our own "transport" takes back a few hundred pages the guest
 * gave up. Every round of the guest is checked: no write may be lost. At the
 * end it prints what the library saved and tears down in the right order:
 * the memory slot goes before the RAM.
 *
 * It needs no capability: access to /dev/kvm and /dev/userfaultfd (or
 * CAP_SYS_PTRACE, or vm.unprivileged_userfaultfd=1), and a dumpable process.
 * `make test` runs it with every capability dropped.
 *
 * Exit status: 0 if every guest write was found and the library saved
 * memory, 1 otherwise, 77 if this machine cannot run it (no KVM, no
 * userfaultfd), which the log line says.
 */
#define _GNU_SOURCE
#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ramfold/ramfold.h>

#define PG	  4096u
#define RAM_BYTES (8u << 20)
#define RUN_MS	  3000

/* Guest layout (guest-physical addresses). */
#define CODE_GPA    0x1000u  /* the guest's code; real mode starts at 0:0x1000 */
#define COUNTER_GPA 0x10000u /* 128 pages the guest rewrites */
#define NCOUNTER    128u
#define WORD_OFF    64u	      /* the word it writes in each */
#define DATA_GPA    0x100000u /* 512 pages the guest wrote once: half twins */
#define NDATA	    512u
#define FREE_GPA    0x400000u /* pages the "guest" gives to the balloon */
#define NFREE	    256u
#define RING_GPA    (RAM_BYTES - 16 * PG) /* the balloon's virtqueues */
#define QSIZE	    64u

/*
 * The guest, 38 bytes of 16-bit code. Round r writes r & 3 into the word at
 * offset 64 of each of the 128 pages from 0x10000, then writes the low byte
 * of r+1 to I/O port 0x10 (a KVM_EXIT_IO for us) and starts the next round:
 *
 *	xor  %ebx,%ebx
 * round: mov  %ebx,%eax ; and $3,%eax
 *	mov  $0x1000,%cx ; mov $128,%dx
 * inner: mov  %cx,%es ; mov %eax,%es:64
 *	add  $0x100,%cx ; dec %dx ; jnz inner
 *	inc  %ebx ; mov %bl,%al ; out %al,$0x10 ; jmp round
 */
static const uint8_t guest_code[] = {
    0x66, 0x31, 0xdb, 0x66, 0x89, 0xd8, 0x66, 0x83, 0xe0, 0x03, 0xb9, 0x00, 0x10,
    0xba, 0x80, 0x00, 0x8e, 0xc1, 0x26, 0x66, 0xa3, 0x40, 0x00, 0x81, 0xc1, 0x00,
    0x01, 0x4a, 0x75, 0xf2, 0x66, 0x43, 0x88, 0xd8, 0xe6, 0x10, 0xeb, 0xdd,
};

static void on_log(void *arg, enum rf_log_level level, const char *msg)
{
	(void)arg;
	fprintf(stderr, "ramfold[%d]: %s\n", (int)level, msg);
}

/* The content of data page @i: pages below NDATA / 2 repeat eight
 * patterns (what dedup merges), the others are unique (what swap takes). */
static uint8_t data_byte(unsigned int i, unsigned int off)
{
	unsigned int seed = i < NDATA / 2 ? i % 8 : i;

	return (uint8_t)(seed * 131 + off * 7 + (off >> 8));
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- KVM: one VM, one memory slot over the library's RAM, one vCPU -------- */

struct kvm {
	int sys, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
};

static int kvm_setup(struct kvm *k, void *ram, uint64_t size)
{
	struct kvm_userspace_memory_region slot = {
	    .slot = 0, .guest_phys_addr = 0, .memory_size = size, .userspace_addr = (uintptr_t)ram};
	struct kvm_sregs sregs;
	struct kvm_regs regs = {.rip = CODE_GPA, .rflags = 2};
	int n;

	k->sys = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (k->sys < 0)
		return -errno;
	k->vm = ioctl(k->sys, KVM_CREATE_VM, 0);
	if (k->vm < 0 || ioctl(k->vm, KVM_SET_USER_MEMORY_REGION, &slot) != 0)
		return -errno;
	k->vcpu = ioctl(k->vm, KVM_CREATE_VCPU, 0);
	n = ioctl(k->sys, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (k->vcpu < 0 || n <= 0)
		return -errno;
	k->run_size = (size_t)n;
	k->run = mmap(NULL, k->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, k->vcpu, 0);
	if (k->run == MAP_FAILED)
		return -errno;
	/* Real mode, cs:ip = 0:0x1000. */
	if (ioctl(k->vcpu, KVM_GET_SREGS, &sregs) != 0)
		return -errno;
	sregs.cs.base = sregs.cs.selector = 0;
	sregs.ds.base = sregs.ds.selector = 0;
	if (ioctl(k->vcpu, KVM_SET_SREGS, &sregs) != 0 || ioctl(k->vcpu, KVM_SET_REGS, &regs) != 0)
		return -errno;
	return 0;
}

/* Run the vCPU to the guest's next write to port 0x10 (the end of a round). */
static int kvm_run_round(struct kvm *k)
{
	for (;;) {
		if (ioctl(k->vcpu, KVM_RUN, 0) != 0)
			return -errno;
		if (k->run->exit_reason != KVM_EXIT_IO) {
			fprintf(stderr, "embedder: unexpected KVM exit %u\n", k->run->exit_reason);
			return -EIO;
		}
		if (k->run->io.port == 0x10)
			return 0;
	}
}

/* Order matters: the memory slot goes first (deleting it waits until no
 * vCPU uses it), and only then may the library unmap the RAM. */
static void kvm_teardown(struct kvm *k)
{
	struct kvm_userspace_memory_region slot = {.slot = 0, .memory_size = 0};

	ioctl(k->vm, KVM_SET_USER_MEMORY_REGION, &slot);
	munmap(k->run, k->run_size);
	close(k->vcpu);
	close(k->vm);
	close(k->sys);
}

/* ---- the balloon on our own transport -------------------------------------
 * A real VMM forwards the guest driver's register writes (virtio-pci common
 * config, say) to these calls, and the guest's driver fills the rings. Our
 * guest has no balloon driver, so this file plays it: the handshake, and one
 * inflate request written into a split virtqueue in guest RAM.
 */

struct vring_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags, next;
};

static _Atomic unsigned int balloon_irqs;

static void balloon_irq(void *arg, unsigned int reason)
{
	(void)arg;
	(void)reason;
	atomic_fetch_add(&balloon_irqs, 1); /* a VMM raises the device's interrupt here */
}

/* Queue q's three areas: descriptors, avail ring, used ring, a page each. */
static uint64_t ring_area(unsigned int q, unsigned int part)
{
	return RING_GPA + (q * 3 + part) * PG;
}

static int balloon_setup(rf_vm *vm, rf_balloon **out)
{
	static const struct rf_balloon_ops ops = {.size = sizeof(ops), .irq = balloon_irq};
	const uint64_t want = RF_VIRTIO_F_VERSION_1 | RF_BALLOON_F_MUST_TELL_HOST;
	const uint8_t ack = RF_VIRTIO_STATUS_ACKNOWLEDGE | RF_VIRTIO_STATUS_DRIVER;
	rf_balloon *b;
	int err;

	/* The rings are read through our mapping at any time: never merge,
	 * swap or balloon them. */
	err = rf_vm_exclude_range(vm, RING_GPA, RAM_BYTES - RING_GPA, true);
	if (!err)
		err = rf_balloon_new(vm, &ops, NULL, &b);
	if (err)
		return err;
	*out = b;
	if ((rf_balloon_device_features(b) & want) != want)
		return -ENOTSUP;
	if ((err = rf_balloon_set_status(b, RF_VIRTIO_STATUS_ACKNOWLEDGE)) ||
	    (err = rf_balloon_set_status(b, ack)) ||
	    (err = rf_balloon_set_driver_features(b, want)) ||
	    (err = rf_balloon_set_status(b, ack | RF_VIRTIO_STATUS_FEATURES_OK)))
		return err;
	if (!(rf_balloon_get_status(b) & RF_VIRTIO_STATUS_FEATURES_OK))
		return -EINVAL; /* the device refused the features */
	/* Negotiated without STATS_VQ or REPORTING: queue 0 inflates, 1 deflates. */
	for (unsigned int q = 0; q < 2; q++)
		if ((err = rf_balloon_queue_setup(b, q, QSIZE, ring_area(q, 0), ring_area(q, 1),
						  ring_area(q, 2))))
			return err;
	return rf_balloon_set_status(b, ack | RF_VIRTIO_STATUS_FEATURES_OK |
					    RF_VIRTIO_STATUS_DRIVER_OK);
}

/* The guest driver's side: put one buffer of @n page frame numbers on queue
 * @q and kick it; the device processes it in this thread. */
static int balloon_send(rf_vm *vm, rf_balloon *b, unsigned int q, uint64_t first_gpa,
			unsigned int n)
{
	struct vring_desc *desc;
	uint16_t *avail, *used_idx;
	uint32_t *pfns;
	uint16_t idx;
	void *p;

	if (rf_vm_gpa_to_hva(vm, ring_area(q, 0), PG, &p))
		return -EFAULT;
	desc = p;
	if (rf_vm_gpa_to_hva(vm, ring_area(q, 1), PG, &p))
		return -EFAULT;
	avail = p; /* flags, idx, ring[] */
	if (rf_vm_gpa_to_hva(vm, ring_area(q, 2), PG, &p))
		return -EFAULT;
	used_idx = (uint16_t *)p + 1;
	/* The PFNs go in the descriptor page's second half. */
	pfns = (uint32_t *)((uint8_t *)desc + PG / 2);
	for (unsigned int i = 0; i < n; i++)
		pfns[i] = htole32((uint32_t)(first_gpa / PG + i));
	idx = le16toh(avail[1]);
	desc[0] =
	    (struct vring_desc){.addr = htole64(ring_area(q, 0) + PG / 2), .len = htole32(n * 4)};
	avail[2 + idx % QSIZE] = 0;
	__atomic_store_n(&avail[1], htole16(idx + 1), __ATOMIC_RELEASE);
	rf_balloon_queue_notify(b, q);
	if (le16toh(__atomic_load_n(used_idx, __ATOMIC_ACQUIRE)) != (uint16_t)(idx + 1))
		return -EIO; /* the device returns the buffer before the call returns */
	rf_balloon_interrupt_ack(b, rf_balloon_interrupt_status(b));
	return 0;
}

/* ---- main -------------------------------------------------------------------- */

int main(void)
{
	struct rf_engine_config ec;
	struct rf_vm_config vc;
	struct rf_swap_config sc;
	struct rf_dedup_config dc;
	struct rf_vm_stats vs = {.size = sizeof(vs)};
	struct rf_dedup_stats ds = {.size = sizeof(ds)};
	struct rf_swap_stats ss = {.size = sizeof(ss)};
	struct rf_balloon_info bi = {.size = sizeof(bi)};
	struct rf_features f = {.size = sizeof(f)};
	struct kvm k = {.sys = -1, .vm = -1, .vcpu = -1};
	rf_balloon *b = NULL;
	rf_engine *e;
	rf_vm *vm;
	uint8_t *ram;
	uint64_t rounds = 0, lost = 0, t0;
	int err;

	/* 1. The engine, with our log callback, and its swap store. */
	rf_engine_config_init(&ec);
	ec.log = on_log;
	ec.log_level = RF_LOG_WARN;
	if ((err = rf_engine_new(&ec, &e))) {
		fprintf(stderr, "embedder: rf_engine_new: %s\n", strerror(-err));
		return 1;
	}
	rf_engine_features(e, &f);
	if (!f.kvm) {
		fprintf(stderr, "embedder: skipped: /dev/kvm not available\n");
		rf_engine_free(e);
		return 77;
	}
	rf_swap_config_init(&sc);
	sc.tier_limit_bytes = 1 << 20; /* a small compressed tier, then the file */
	rf_engine_set_swap(e, &sc);

	/* 2. One VM and its guest RAM, mapped by the library. */
	rf_vm_config_init(&vc);
	vc.ram_bytes = RAM_BYTES;
	if ((err = rf_vm_new(e, "guest0", &vc, &vm)) ||
	    (err = rf_vm_map_ram(vm, 0, RAM_BYTES, (void **)&ram)))
		goto fail;

	/* 3. The guest's memory: code, 128 twin pages, and pages it will give
	 * to the balloon (here: written once, then given up). */
	memcpy(ram + CODE_GPA, guest_code, sizeof(guest_code));
	for (unsigned int i = 0; i < NCOUNTER; i++)
		memset(ram + COUNTER_GPA + i * PG, 0x5a, PG);
	for (unsigned int i = 0; i < NDATA; i++)
		for (unsigned int off = 0; off < PG; off++)
			ram[DATA_GPA + i * PG + off] = data_byte(i, off);
	for (unsigned int i = 0; i < NFREE; i++)
		memset(ram + FREE_GPA + i * PG, (int)i, PG);

	/* 4. KVM over that RAM: the memory slot's userspace_addr is the hva. */
	if ((err = kvm_setup(&k, ram, RAM_BYTES))) {
		fprintf(stderr, "embedder: KVM setup: %s\n", strerror(-err));
		goto fail;
	}

	/* 5. The balloon, and the guest inflating it by NFREE pages. */
	if ((err = balloon_setup(vm, &b)) || (err = rf_balloon_set_target(b, NFREE * PG)) ||
	    (err = balloon_send(vm, b, 0, FREE_GPA, NFREE)))
		goto fail;

	/* 6. Dedup within the VM, and a resident target of 512 KiB: less than
	 * the guest's own (unmerged) pages, so cold pages go to the swap store.
	 * Merged pages do not count against a target (they cannot be swapped,
	 * and already cost one page for all their copies). */
	rf_dedup_config_init(&dc);
	dc.mode = RF_DEDUP_INTRA_VM;
	err = rf_dedup_start(e, &dc);
	if (!err)
		err = rf_dedup_add_vm(vm);
	/* Give the scanner its first pass before the swapper sees the pages:
	 * merged twins are not swapped, they already cost one page. */
	for (t0 = now_ms(); !err && now_ms() - t0 < 1000; usleep(10000))
		if (rf_dedup_counters(e, &ds) == 0 && ds.converged)
			break;
	if (!err)
		err = rf_vm_set_swap_target(vm, 512u << 10);
	if (err) {
		if (err == -EPERM || err == -ENODEV) {
			/* The log line says what is missing (userfaultfd,
			 * /dev/userfaultfd access, or pagemap). */
			fprintf(stderr,
				"embedder: skipped: this process cannot use "
				"userfaultfd here (%s)\n",
				strerror(-err));
			kvm_teardown(&k);
			rf_balloon_free(b);
			rf_engine_free(e);
			return 77;
		}
		goto fail;
	}

	/* 7. Run the vCPU; after every round each counter page must hold
	 * the round's value and its twin bytes everywhere else. */
	t0 = now_ms();
	while (now_ms() - t0 < RUN_MS) {
		if ((err = kvm_run_round(&k)))
			goto fail;
		for (unsigned int i = 0; i < NCOUNTER; i++) {
			const uint8_t *p = ram + COUNTER_GPA + i * PG;
			uint32_t v;

			memcpy(&v, p + WORD_OFF, 4);
			lost += v != (rounds & 3) || p[0] != 0x5a || p[PG - 1] != 0x5a;
		}
		rounds++;
		if (rounds % 16 == 0)
			usleep(1000); /* let pages sit still long enough to merge */
	}

	/* 8. What the library saved. */
	rf_vm_stats(vm, &vs);
	rf_dedup_stats(e, &ds);
	rf_vm_swap_stats(vm, &ss);
	rf_balloon_info(b, &bi);
	printf("embedder: ramfold %s, %llu guest rounds, %llu writes lost\n", rf_version(),
	       (unsigned long long)rounds, (unsigned long long)lost);
	printf("  guest RAM %llu KiB, resident %llu KiB\n",
	       (unsigned long long)vs.mapped_bytes >> 10,
	       (unsigned long long)vs.resident_bytes >> 10);
	for (int s = 0; s < RF_PAGE_NSTATES; s++)
		if (vs.state_bytes[s])
			printf("  %-14s %8llu KiB\n", rf_page_state_name(s),
			       (unsigned long long)vs.state_bytes[s] >> 10);
	printf("  dedup: %llu merges, %llu broken by guest writes, %llu KiB saved\n",
	       (unsigned long long)ds.pages_merged, (unsigned long long)ds.pages_unmerged,
	       (unsigned long long)ds.saved_bytes >> 10);
	printf("  swap: %llu pages out, %llu back in, fault p99 %llu us\n",
	       (unsigned long long)ss.swap_outs, (unsigned long long)ss.swap_ins,
	       (unsigned long long)ss.fault_p99_ns / 1000);
	printf("  balloon: %llu KiB ballooned, %u interrupts\n",
	       (unsigned long long)bi.ballooned_bytes >> 10, atomic_load(&balloon_irqs));

	/* Every data page as the guest left it, wherever it is now (reading
	 * a swapped page through our mapping brings it back). */
	for (unsigned int i = 0; i < NDATA; i++)
		for (unsigned int off = 0; off < PG; off++)
			if (ram[DATA_GPA + i * PG + off] != data_byte(i, off)) {
				lost++;
				break;
			}

	/* 9. Teardown: the vCPU and the memory slot first, then the device,
	 * then the library (rf_engine_free stops dedup and unmaps the RAM;
	 * rf_vm_unmap_ram would do it for one region). */
	kvm_teardown(&k);
	rf_balloon_free(b);
	rf_dedup_stop(e);
	rf_vm_unmap_ram(vm, 0);
	rf_engine_free(e);
	if (lost || !ds.pages_merged || !ss.swap_outs || bi.ballooned_bytes != NFREE * PG) {
		fprintf(stderr,
			"embedder: FAILED: %llu writes lost, %llu merges, %llu swap-outs, "
			"%llu bytes ballooned\n",
			(unsigned long long)lost, (unsigned long long)ds.pages_merged,
			(unsigned long long)ss.swap_outs, (unsigned long long)bi.ballooned_bytes);
		return 1;
	}
	return 0;

fail:
	fprintf(stderr, "embedder: failed: %s\n", strerror(err < 0 ? -err : err));
	if (k.sys >= 0)
		kvm_teardown(&k);
	rf_balloon_free(b);
	rf_engine_free(e);
	return 1;
}
