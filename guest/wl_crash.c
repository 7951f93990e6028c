/* SPDX-License-Identifier: MIT */
/* crash: fail on purpose, so tests can check that a faulting VM ends alone. */
#include "hw.h"
#include "lib.h"
#include "workloads.h"

int wl_crash(const struct rf_bootinfo *bi)
{
	console_printf("crash: failing on purpose (kind %lu)", bi->p.crash);
	switch (bi->p.crash) {
	case RF_CRASH_PAGEFAULT: {
		/* Page 0 is not mapped: #PF, no IDT to deliver it, triple fault.
		 * The empty asm hides the constant address from the compiler. */
		uint64_t addr = 8;

		__asm__ volatile("" : "+r"(addr));
		*(volatile uint64_t *)(uintptr_t)addr = 1;
		break;
	}
	case RF_CRASH_BADMMIO:
		mmio_write64(RF_MMIO_BASE + (RF_MMIO_SLOTS - 1) * RF_MMIO_SLOT_SIZE, 1);
		break;
	case RF_CRASH_UD:
		__asm__ volatile("ud2");
		break;
	case RF_CRASH_EXIT:
		guest_exit(bi->p.arg);
	case RF_CRASH_BADCONSOLE: {
		/* Line addresses outside RAM (the VMM must not read them), a
		 * line running to the very end of RAM without a NUL, and one
		 * with control characters; the VM must survive all of them. */
		static char ctl[] = "bell\a esc\033[2J tab\t del\177 high\xff end";
		char *last = (char *)(uintptr_t)(bi->ram_bytes - 8);

		mmio_write64(RF_DEBUG_DEV_GPA + RF_DBG_CONSOLE, bi->ram_bytes);
		mmio_write64(RF_DEBUG_DEV_GPA + RF_DBG_CONSOLE, ~0ull);
		memcpy(last, "12345678", 8);
		mmio_write64(RF_DEBUG_DEV_GPA + RF_DBG_CONSOLE, bi->ram_bytes - 8);
		mmio_write64(RF_DEBUG_DEV_GPA + RF_DBG_CONSOLE, (uint64_t)(uintptr_t)ctl);
		console_printf("crash: still alive after bad console lines");
		guest_exit(0);
	}
	}
	console_printf("crash: still alive after kind %lu", bi->p.crash);
	return 4;
}
