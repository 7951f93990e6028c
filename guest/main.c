/* SPDX-License-Identifier: MIT */
/*
 * The guest's main: check the boot-info page, bring up the memory manager
 * and the drivers, run the workload, then either exit or stay idle (polling
 * the drivers) so the host can keep working on its memory.
 */
#include "bootinfo.h"
#include "drivers.h"
#include "lib.h"
#include "mm.h"
#include "workloads.h"

static bool ready_printed;
static struct rf_bootinfo *boot_info; /* set first thing in guest_main */

void wl_ready(void)
{
	if (!ready_printed)
		console_printf("READY");
	ready_printed = true;
}

void wl_count_work(uint64_t bytes)
{
	/* This vCPU is the only writer, so a plain read is current; the
	 * store is atomic so the VMM, reading concurrently, never sees a torn
	 * value (see work_bytes in bootinfo.h). */
	__atomic_store_n(&boot_info->work_bytes, boot_info->work_bytes + bytes, __ATOMIC_RELAXED);
}

void wl_pause_ms(uint64_t ms)
{
	uint64_t end = time_ns() + ms * 1000000ull;

	do {
		drivers_poll();
		sleep_us(10000);
	} while (time_ns() < end);
}

static const char *workload_name(uint32_t w)
{
	static const char *const names[] = {
	    [RF_WL_IDLE] = "idle",	 [RF_WL_DUP] = "dup",
	    [RF_WL_OSIMAGE] = "osimage", [RF_WL_MEMCHECK] = "memcheck",
	    [RF_WL_CHURN] = "churn",	 [RF_WL_HOTCOLD] = "hotcold",
	    [RF_WL_CRASH] = "crash",	 [RF_WL_SELFTEST] = "selftest",
	};

	return w < sizeof(names) / sizeof(names[0]) && names[w] ? names[w] : "?";
}

/* One line with the memory manager's figures (tests compare them with the host's). */
static void report_mm(void)
{
	struct mm_stats st;

	mm_get_stats(&st);
	console_printf("mm: managed_pages=%lu free_pages=%lu reported_blocks=%lu oom_calls=%lu "
		       "failed_allocs=%lu",
		       st.managed_pages, st.free_pages, st.reported_blocks, st.oom_calls,
		       st.failed_allocs);
}

__attribute__((noreturn)) void guest_main(struct rf_bootinfo *bi);

void guest_main(struct rf_bootinfo *bi)
{
	struct mm_stats st;
	int rc;

	boot_info = bi;
	if (bi->magic != RF_BOOTINFO_MAGIC || bi->version != RF_BOOTINFO_VERSION) {
		console_printf("boot: bad boot-info page (magic 0x%lx version %u)", bi->magic,
			       bi->version);
		guest_exit(2);
	}
	if (mm_init(bi->free_start, bi->ram_bytes)) {
		console_printf("boot: no memory to manage (free from 0x%lx, RAM 0x%lx)",
			       bi->free_start, bi->ram_bytes);
		guest_exit(2);
	}
	mm_get_stats(&st);
	console_printf("boot: %s: %lu MiB RAM, %lu MiB free, workload %s", bi->name,
		       bi->ram_bytes >> 20, st.free_pages >> 8, workload_name(bi->workload));
	drivers_init(bi);

	switch (bi->workload) {
	case RF_WL_IDLE:
		rc = wl_idle(bi);
		break;
	case RF_WL_DUP:
		rc = wl_dup(bi);
		break;
	case RF_WL_OSIMAGE:
		rc = wl_osimage(bi);
		break;
	case RF_WL_MEMCHECK:
		rc = wl_memcheck(bi);
		break;
	case RF_WL_CHURN:
		rc = wl_churn(bi);
		break;
	case RF_WL_HOTCOLD:
		rc = wl_hotcold(bi);
		break;
	case RF_WL_CRASH:
		rc = wl_crash(bi);
		break;
	case RF_WL_SELFTEST:
		rc = wl_selftest(bi);
		break;
	default:
		console_printf("boot: unknown workload %u", bi->workload);
		guest_exit(2);
	}
	if (bi->p.then_exit || rc)
		guest_exit(rc);
	console_printf("done: idle");
	for (;;) {
		wl_pause_ms(bi->p.report_s ? bi->p.report_s * 1000 : 1000);
		if (bi->p.report_s)
			report_mm();
	}
}
