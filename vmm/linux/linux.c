/* SPDX-License-Identifier: MIT */
/*
 * Linux guests in the demo VMM: `--kernel bzImage [--initrd FILE]
 * [--append "..."]` makes every --vm a Linux guest instead of a freestanding
 * one. The VM's workload and its keys become the guest's command line
 * (rf.wl=, rf.args=, rf.name=, read by guest/linux/init.sh), so the same
 * --vm specs and scenario files drive both kinds of guest.
 *
 * Per VM, on top of the VMM's usual setup (library RAM, KVM VM, MMIO bus,
 * devices): the in-kernel irqchip (PIC, IOAPIC, LAPIC) and PIT, created
 * before the vCPU as KVM requires; the kernel, initramfs, boot_params and
 * page tables (boot.c); ACPI tables describing each virtio-mmio device
 * of the VM with its window and interrupt (acpi_tables.c); an irqfd per
 * device on GSI 16 + its index (KVM's default GSI routing sends GSIs 0-23 to
 * the IOAPIC pins of the same number); the vCPU in 64-bit mode at the
 * kernel's entry with a filtered CPUID; and port I/O: the 8250 UART on
 * 0x3f8 (devices/uart_8250.c, IRQ 4, console lines to the VM's log), the ACPI sleep
 * and reset registers (poweroff and reboot end the VM like a guest exit),
 * every other port reading as all ones (nothing there) with writes ignored.
 *
 * On kvm_pvm (this project's CI hosts) guest ring 0 is emulated instruction by
 * instruction and a kernel never gets far: --kernel refuses to start there,
 * with the reason, instead of hanging.
 *
 * Threads: everything per VM is touched by its vCPU thread, except
 * linux_guest_irq(), which devices call from any thread (an eventfd write).
 */
#include <cpuid.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/module.h"
#include "core/options.h"
#include "core/util.h"
#include "core/vm_internal.h"
#include "devices/console.h"
#include "devices/uart_8250.h"
#include "linux/acpi_tables.h"
#include "linux/boot.h"
#include "linux/linux.h"
#include "native/x86_setup.h"

#define LINUX_FIRST_GSI 16
#define LINUX_EXT_SLOT	0 /* vm->ext[] slot of the per-VM state */

static struct linux_cfg {
	const char *kernel_path, *initrd_path, *append;
	uint8_t *kernel, *initrd;
	size_t kernel_len, initrd_len;
	struct linux_bzimage bz;
	bool no_xsave;
} cfg;

struct linux_vm {
	struct vmm_vm *vm;
	struct uart8250 uart;
	int irqfd[ACPI_MAX_MMIO_DEVS];
	uint64_t irq_base[ACPI_MAX_MMIO_DEVS];
	unsigned nirq;
	uint64_t entry;		/* the kernel's 64-bit entry point */
	uint64_t unknown_ports; /* accesses to ports with nothing behind them */
	uint16_t last_unknown_port;
};

static struct linux_vm *lvm(struct vmm_vm *vm)
{
	return vm->ext[LINUX_EXT_SLOT];
}

static int read_file(const char *opt, const char *path, uint8_t **out, size_t *len)
{
	struct stat st;
	uint8_t *buf;
	size_t got = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 || fstat(fd, &st)) {
		vmm_errorf("--%s %s: %s", opt, path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st.st_mode) || st.st_size == 0) {
		vmm_errorf("--%s %s: not a regular, non-empty file", opt, path);
		close(fd);
		return -1;
	}
	buf = malloc((size_t)st.st_size);
	if (!buf) {
		vmm_errorf("--%s %s: out of memory", opt, path);
		close(fd);
		return -1;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n <= 0) {
			vmm_errorf("--%s %s: read: %s", opt, path, n ? strerror(errno) : "short");
			free(buf);
			close(fd);
			return -1;
		}
		got += (size_t)n;
	}
	close(fd);
	*out = buf;
	*len = got;
	return 0;
}

/*
 * Under QEMU's TCG emulation of SVM, XSETBV is not intercepted: a nested
 * guest promised XSAVE finds XCR0 inconsistent ("XSAVE consistency
 * problem") and a boot is at best slower. So no XSAVE for the guest when
 * this host lacks it or is itself a TCG guest.
 */
static bool host_needs_no_xsave(void)
{
	unsigned a, b, c, d;
	char sig[13] = {0};

	if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 26)))
		return true;
	__cpuid(0x40000000, a, b, c, d);
	memcpy(sig, &b, 4);
	memcpy(sig + 4, &c, 4);
	memcpy(sig + 8, &d, 4);
	return !strcmp(sig, "TCGTCGTCGTCG");
}

/* ---- options ---------------------------------------------------------- */

static const struct vmm_boot_ops linux_boot_ops;

static int opt_kernel(struct vmm *vmm, const char *v)
{
	cfg.kernel_path = v;
	vmm->boot = &linux_boot_ops;
	return 0;
}

static int opt_initrd(struct vmm *vmm, const char *v)
{
	(void)vmm;
	cfg.initrd_path = v;
	return 0;
}

static int opt_append(struct vmm *vmm, const char *v)
{
	(void)vmm;
	cfg.append = v;
	return 0;
}

static const struct vmm_option linux_options[] = {
    {"kernel", "BZIMAGE", "boot every VM's guest as Linux from this bzImage (before --vm)",
     opt_kernel},
    {"initrd", "FILE", "Linux guests: the initramfs", opt_initrd},
    {"append", "CMDLINE", "Linux guests: kernel command line (default \"console=ttyS0 quiet\")",
     opt_append},
    {NULL},
};

/*
 * meminfo=MS     the guest prints a MEMINFO line every MS ms;
 * linux-wl=W     a workload of the Linux guest's own (rfwork: hold,
 *                holdfree, ...) instead of the VM's workload=;
 * linux-args=k=v:k=v  its parameters (':' separated, as ',' separates keys);
 * linux-then=poweroff|reboot|hold  what /init does after the workload
 *                (then=exit means poweroff).
 */
static const char *const linux_vm_keys[] = {"meminfo", "linux-wl", "linux-args", "linux-then",
					    NULL};

/* ---- start: checks before any VM exists -------------------------------- */

/* A value that goes on the kernel command line as one word. */
static bool cmdline_word(const char *s)
{
	for (; s && *s; s++)
		if (*s <= ' ' || *s > '~' || *s == '"')
			return false;
	return true;
}

static int linux_start(struct vmm *vmm)
{
	struct rf_features f = {.size = sizeof(f)};
	char err[256];

	if (!cfg.kernel_path) {
		if (cfg.initrd_path || cfg.append) {
			vmm_errorf("--initrd and --append need --kernel");
			return -1;
		}
		return 0;
	}
	if (rf_engine_features(vmm->engine, &f) == 0 && f.kvm_pvm) {
		vmm_errorf("--kernel: this host's KVM is kvm_pvm, which emulates guest ring 0 "
			   "instruction by instruction: a Linux kernel cannot run here (it would "
			   "not get past early boot). Run Linux guests on a host whose KVM uses "
			   "VMX or SVM, or nested under QEMU (make test-linux)");
		return -1;
	}
	if (read_file("kernel", cfg.kernel_path, &cfg.kernel, &cfg.kernel_len))
		return -1;
	if (linux_bzimage_parse(cfg.kernel, cfg.kernel_len, &cfg.bz, err, sizeof(err))) {
		vmm_errorf("--kernel %s: %s", cfg.kernel_path, err);
		return -1;
	}
	if (cfg.initrd_path && read_file("initrd", cfg.initrd_path, &cfg.initrd, &cfg.initrd_len))
		return -1;
	for (unsigned i = 0; i < vmm->nr_vms; i++) {
		struct vmm_vm *vm = vmm->vms[i];

		for (const char *const *k = linux_vm_keys; *k; k++)
			if (!cmdline_word(vmm_vm_key(vm, *k))) {
				vmm_errorf("%s: %s=%s: must be one word of printable characters "
					   "(it goes on the kernel command line)",
					   vm->name, *k, vmm_vm_key(vm, *k));
				return -1;
			}
		if (vmm_vm_key(vm, "linux-then") &&
		    strcmp(vmm_vm_key(vm, "linux-then"), "poweroff") &&
		    strcmp(vmm_vm_key(vm, "linux-then"), "reboot") &&
		    strcmp(vmm_vm_key(vm, "linux-then"), "hold")) {
			vmm_errorf("%s: linux-then=%s: expected poweroff, reboot or hold", vm->name,
				   vmm_vm_key(vm, "linux-then"));
			return -1;
		}
		if (!vmm_vm_key(vm, "linux-wl") &&
		    (vm->workload == RF_WL_HOTCOLD || vm->workload == RF_WL_CRASH ||
		     vm->workload == RF_WL_SELFTEST)) {
			vmm_errorf("%s: workload %s has no Linux version (idle, dup, osimage, "
				   "memcheck, churn)",
				   vm->name, workload_to_name(vm->workload));
			return -1;
		}
	}
	cfg.no_xsave = host_needs_no_xsave();
	return 0;
}

static void linux_stop(struct vmm *vmm)
{
	(void)vmm;
	free(cfg.kernel);
	free(cfg.initrd);
	cfg.kernel = cfg.initrd = NULL;
}

/* ---- per-VM setup ----------------------------------------------------- */

/* The guest's command line: --append, then what /init reads. */
static int build_cmdline(struct vmm_vm *vm, char *buf, size_t len)
{
	const struct rf_wl_params *p = &vm->params;
	const char *meminfo = vmm_vm_key(vm, "meminfo");
	const char *wl = vmm_vm_key(vm, "linux-wl"), *wl_args = vmm_vm_key(vm, "linux-args");
	const char *then = vmm_vm_key(vm, "linux-then");
	char args[256] = "";
	int n;

	switch (vm->workload) {
	case RF_WL_DUP:
		snprintf(args, sizeof(args),
			 "mib=%llu,seed=%llu,dup_pct=%llu,zero_pct=%llu,"
			 "templates=%llu",
			 (unsigned long long)p->mib, (unsigned long long)p->seed,
			 (unsigned long long)p->dup_pct, (unsigned long long)p->zero_pct,
			 (unsigned long long)p->templates);
		break;
	case RF_WL_MEMCHECK:
		snprintf(args, sizeof(args), "mib=%llu,seed=%llu,rounds=%llu",
			 (unsigned long long)p->mib, (unsigned long long)p->seed,
			 (unsigned long long)p->rounds);
		break;
	case RF_WL_CHURN:
		snprintf(args, sizeof(args), "mib=%llu,seed=%llu,rounds=%llu,pause_ms=%llu",
			 (unsigned long long)p->mib, (unsigned long long)p->seed,
			 (unsigned long long)p->rounds, (unsigned long long)p->pause_ms);
		break;
	default:
		break;
	}
	if (wl) {
		snprintf(args, sizeof(args), "%s", wl_args ? wl_args : "");
		for (char *c = args; *c; c++)
			if (*c == ':')
				*c = ',';
	}
	/*
	 * What the machine is, first: no PCI bus (saves probing it through
	 * port I/O, a VM exit each), one UART, reboot through the ACPI reset
	 * register (with a hardware-reduced FADT Linux would otherwise pick EFI,
	 * find none, and jump to a BIOS reset vector there is no BIOS behind).
	 * Then --append, then /init's keys.
	 */
	n = snprintf(buf, len,
		     "pci=off 8250.nr_uarts=1 reboot=acpi %s rf.name=%s rf.wl=%s%s%s%s%s%s%s",
		     cfg.append ? cfg.append : "console=ttyS0 quiet", vm->name,
		     wl ? wl : workload_to_name(vm->workload), *args ? " rf.args=" : "", args,
		     meminfo ? " rf.meminfo=" : "", meminfo ? meminfo : "",
		     then	    ? " rf.then="
		     : p->then_exit ? " rf.then=poweroff"
				    : "",
		     then ? then : "");
	return n < 0 || (size_t)n >= len ? -1 : n;
}

/* KVM VM created, no vCPU yet: the in-kernel interrupt controllers and timer. */
static int linux_vm_created(struct vmm_vm *vm)
{
	struct kvm_pit_config pit = {.flags = 0};

	if (ioctl(vm->vmfd, KVM_SET_TSS_ADDR, 0xfffbd000ul) && errno != ENOTTY)
		vmm_errorf("%s: KVM_SET_TSS_ADDR: %s (ignored)", vm->name, strerror(errno));
	if (ioctl(vm->vmfd, KVM_CREATE_IRQCHIP, 0)) {
		vmm_errorf("%s: KVM_CREATE_IRQCHIP: %s", vm->name, strerror(errno));
		return -1;
	}
	if (ioctl(vm->vmfd, KVM_CREATE_PIT2, &pit)) {
		vmm_errorf("%s: KVM_CREATE_PIT2: %s", vm->name, strerror(errno));
		return -1;
	}
	return 0;
}

static void uart_line(void *opaque, const char *line)
{
	struct linux_vm *l = opaque;
	char clean[UART_LINE_MAX + 1];
	size_t i;

	for (i = 0; line[i] && i < UART_LINE_MAX; i++)
		clean[i] = (line[i] >= 0x20 && line[i] < 0x7f) || line[i] == '\t' ? line[i] : '?';
	clean[i] = 0;
	console_line(l->vm, clean);
}

static void uart_irq(void *opaque, int level)
{
	struct linux_vm *l = opaque;
	struct kvm_irq_level irq = {.irq = UART_COM1_IRQ, .level = (uint32_t)level};

	if (ioctl(l->vm->vmfd, KVM_IRQ_LINE, &irq))
		vmm_errorf("%s: KVM_IRQ_LINE: %s", l->vm->name, strerror(errno));
}

/* One irqfd per virtio-mmio device, and the ACPI tables that describe them. */
static int setup_devices(struct vmm_vm *vm, struct linux_vm *l, uint64_t *rsdp)
{
	struct acpi_mmio_dev devs[ACPI_MAX_MMIO_DEVS];
	struct acpi_config ac = {.ncpus = 1, .devs = devs};
	const struct rf_bootinfo *bi = vm->bootinfo;
	size_t used;
	int rc;

	for (unsigned i = 0; i < bi->nr_devices; i++) {
		const struct rf_bootinfo_device *d = &bi->devices[i];
		struct kvm_irqfd irqfd = {.gsi = LINUX_FIRST_GSI + ac.ndevs};
		int fd;

		if (d->kind != RF_DEV_VIRTIO_MMIO)
			continue;
		if (ac.ndevs == ACPI_IOAPIC_PINS - LINUX_FIRST_GSI) {
			vmm_errorf("%s: more than %d virtio-mmio devices for a Linux guest",
				   vm->name, ACPI_IOAPIC_PINS - LINUX_FIRST_GSI);
			return -1;
		}
		fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (fd < 0) {
			vmm_errorf("%s: eventfd: %s", vm->name, strerror(errno));
			return -1;
		}
		irqfd.fd = (uint32_t)fd;
		if (ioctl(vm->vmfd, KVM_IRQFD, &irqfd)) {
			vmm_errorf("%s: KVM_IRQFD (GSI %u): %s", vm->name, irqfd.gsi,
				   strerror(errno));
			close(fd);
			return -1;
		}
		l->irqfd[ac.ndevs] = fd;
		l->irq_base[ac.ndevs] = d->base;
		devs[ac.ndevs] = (struct acpi_mmio_dev){
		    .base = d->base, .size = (uint32_t)d->size, .gsi = irqfd.gsi};
		ac.ndevs++;
		l->nirq = ac.ndevs;
	}
	rc = acpi_tables_build(&ac, LINUX_ACPI_GPA, vm->ram + LINUX_ACPI_GPA, LINUX_ACPI_MAX, &used,
			       rsdp);
	if (rc) {
		vmm_errorf("%s: ACPI tables: %s", vm->name, strerror(-rc));
		return -1;
	}
	return 0;
}

/* After the VMM's own setup and the devices: put Linux in RAM. */
static int linux_vm_setup(struct vmm_vm *vm)
{
	struct linux_vm *l;
	struct linux_layout lo;
	char cmdline[LINUX_CMDLINE_MAX], err[256];
	uint64_t rsdp;
	int n;

	if (!vm->vmm->boot)
		return 0;
	l = calloc(1, sizeof(*l));
	if (!l) {
		vmm_errorf("%s: out of memory", vm->name);
		return -1;
	}
	l->vm = vm;
	vm->ext[LINUX_EXT_SLOT] = l;
	uart8250_init(&l->uart, uart_line, uart_irq, l);
	n = build_cmdline(vm, cmdline, sizeof(cmdline));
	if (n < 0) {
		vmm_errorf("%s: kernel command line too long", vm->name);
		return -1;
	}
	if (linux_boot_layout(&cfg.bz, vm->mem_bytes, cfg.initrd_len, (size_t)n, &lo, err,
			      sizeof(err))) {
		vmm_errorf("%s: %s", vm->name, err);
		return -1;
	}
	/* The native guest's tables and boot-info are in low RAM: Linux owns it all now. */
	if (setup_devices(vm, l, &rsdp))
		return -1;
	l->entry = linux_boot_load(vm->ram, &lo, cfg.kernel, &cfg.bz, cfg.initrd, cmdline, rsdp);
	if (vm->console_log)
		fprintf(vm->console_log,
			"[vmm] linux: kernel at 0x%llx, initramfs %zu bytes at "
			"0x%llx, cmdline: %s\n",
			(unsigned long long)lo.kernel_gpa, cfg.initrd_len,
			(unsigned long long)lo.initrd_gpa, cmdline);
	return 0;
}

/* LINT0 delivers ExtINT (the PIC), LINT1 NMI, as firmware leaves them on a PC. */
static int setup_lapic(struct vmm_vm *vm)
{
	struct kvm_lapic_state la;
	uint32_t *lvt0 = (uint32_t *)(la.regs + 0x350), *lvt1 = (uint32_t *)(la.regs + 0x360);

	if (ioctl(vm->vcpufd, KVM_GET_LAPIC, &la))
		return -1;
	*lvt0 = (*lvt0 & ~0x700u & ~0x10000u) | 0x700u;
	*lvt1 = (*lvt1 & ~0x700u & ~0x10000u) | 0x400u;
	return ioctl(vm->vcpufd, KVM_SET_LAPIC, &la);
}

/* Instead of the native guest's CPL-3 setup: ring 0, long mode, the kernel's 64-bit entry. */
static int linux_setup_vcpu(struct vmm_vm *vm)
{
	const struct kvm_cpuid2 *host = vm->vmm->cpuid;
	struct kvm_cpuid2 *c;
	struct kvm_sregs s;
	struct kvm_regs r;
	size_t sz = sizeof(*c) + host->nent * sizeof(c->entries[0]);

	c = malloc(sz);
	if (!c) {
		vmm_errorf("%s: out of memory", vm->name);
		return -1;
	}
	memcpy(c, host, sz);
	c->nent = linux_cpuid_filter(c->entries, host->nent, 0, cfg.no_xsave);
	if (ioctl(vm->vcpufd, KVM_SET_CPUID2, c)) {
		vmm_errorf("%s: KVM_SET_CPUID2: %s", vm->name, strerror(errno));
		free(c);
		return -1;
	}
	free(c);
	if (setup_lapic(vm)) {
		vmm_errorf("%s: local APIC setup: %s", vm->name, strerror(errno));
		return -1;
	}
	if (ioctl(vm->vcpufd, KVM_GET_SREGS, &s)) {
		vmm_errorf("%s: KVM_GET_SREGS: %s", vm->name, strerror(errno));
		return -1;
	}
	s.cr0 = (1u << 0) | (1u << 4) | (1u << 5) | (1u << 31); /* PE, ET, NE, PG */
	s.cr3 = LINUX_PGTABLE_GPA;
	s.cr4 = 1u << 5;		 /* PAE */
	s.efer = (1u << 8) | (1u << 10); /* LME, LMA */
	s.gdt.base = LINUX_GDT_GPA;
	s.gdt.limit = 4 * 8 - 1;
	s.idt.base = 0;
	s.idt.limit = 0;
	s.cs = x86_flat_seg(LINUX_BOOT_CS, 0xb, true, 0);
	s.ds = s.es = s.fs = s.gs = s.ss = x86_flat_seg(LINUX_BOOT_DS, 0x3, false, 0);
	if (ioctl(vm->vcpufd, KVM_SET_SREGS, &s)) {
		vmm_errorf("%s: KVM_SET_SREGS: %s", vm->name, strerror(errno));
		return -1;
	}
	memset(&r, 0, sizeof(r));
	r.rip = lvm(vm)->entry;
	r.rsi = LINUX_BOOT_PARAMS_GPA;
	r.rsp = LINUX_BOOT_PARAMS_GPA - 0x10;
	r.rflags = 0x2; /* interrupts off */
	if (ioctl(vm->vcpufd, KVM_SET_REGS, &r)) {
		vmm_errorf("%s: KVM_SET_REGS: %s", vm->name, strerror(errno));
		return -1;
	}
	return 0;
}

/* ---- port I/O (vCPU thread) -------------------------------------------- */

static bool linux_port_io(struct vmm_vm *vm)
{
	struct kvm_run *run = vm->run;
	struct linux_vm *l = lvm(vm);
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;
	uint16_t port = run->io.port;

	for (uint32_t k = 0; k < run->io.count; k++, data += run->io.size) {
		if (port >= UART_COM1_PORT && port < UART_COM1_PORT + 8 && run->io.size == 1) {
			if (out)
				uart8250_write(&l->uart, port - UART_COM1_PORT, data[0]);
			else
				data[0] = uart8250_read(&l->uart, port - UART_COM1_PORT);
		} else if (port == ACPI_SLEEP_CTL_PORT && out) {
			/* SLP_EN with SLP_TYP 5 (the _S5 package): power off. */
			if ((data[0] & 0x3c) == (ACPI_SLEEP_S5_VALUE & 0x3c) && (data[0] & 0x20)) {
				uart8250_flush(&l->uart);
				vm->exit_status = 0;
				vm_end(vm, VMM_VM_EXITED, "guest powered off (ACPI S5)");
				return false;
			}
		} else if ((port == ACPI_RESET_PORT && out && data[0] == ACPI_RESET_VALUE) ||
			   (port == 0x64 && out && data[0] == 0xfe)) {
			/* The ACPI reset register, or the PC's keyboard-controller reset. */
			uart8250_flush(&l->uart);
			vm->exit_status = 0;
			vm_end(vm, VMM_VM_EXITED, "guest rebooted (ACPI reset register); ended");
			return false;
		} else if (port == 0x71 && !out) {
			/*
			 * CMOS data: 0. The FADT says there is no RTC, but early
			 * code reads it anyway and spins while "update in
			 * progress" (bit 7 of register A) reads as set.
			 */
			memset(data, 0, run->io.size);
		} else {
			if (!out)
				memset(data, 0xff, run->io.size); /* nothing there */
			l->unknown_ports++;
			l->last_unknown_port = port;
		}
	}
	return true;
}

static void linux_vm_teardown(struct vmm_vm *vm)
{
	struct linux_vm *l = lvm(vm);

	if (!l)
		return;
	uart8250_flush(&l->uart);
	if (vm->console_log)
		fprintf(
		    vm->console_log,
		    "[vmm] linux: uart %llu bytes, %llu interrupts; %llu accesses to ports with "
		    "nothing behind them (the last: 0x%x)\n",
		    (unsigned long long)l->uart.tx_bytes, (unsigned long long)l->uart.irqs,
		    (unsigned long long)l->unknown_ports, l->last_unknown_port);
	for (unsigned i = 0; i < l->nirq; i++)
		close(l->irqfd[i]);
	free(l);
	vm->ext[LINUX_EXT_SLOT] = NULL;
}

int linux_guest_irq(struct vmm_vm *vm, uint64_t mmio_base)
{
	struct linux_vm *l = lvm(vm);
	uint64_t one = 1;

	if (!l)
		return 0; /* a native guest polls */
	for (unsigned i = 0; i < l->nirq; i++)
		if (l->irq_base[i] == mmio_base)
			return write(l->irqfd[i], &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
	return -ENOENT;
}

static const struct vmm_boot_ops linux_boot_ops = {
    .vm_created = linux_vm_created,
    .setup_vcpu = linux_setup_vcpu,
    .port_io = linux_port_io,
};

const struct vmm_module linux_module = {
    .name = "linux",
    .options = linux_options,
    .vm_keys = linux_vm_keys,
    .start = linux_start,
    .vm_setup = linux_vm_setup,
    .vm_teardown = linux_vm_teardown,
    .stop = linux_stop,
};
