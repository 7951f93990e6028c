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
	}
	console_printf("crash: still alive after kind %lu", bi->p.crash);
	return 4;
}
