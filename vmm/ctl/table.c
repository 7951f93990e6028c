/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/host_mem.h"
#include "core/options.h"
#include "core/util.h"
#include "core/vmm.h"
#include "ctl/table.h"

static struct {
	FILE *csv;
	bool show, redraw;
} tb;

int table_open(struct vmm *vmm)
{
	tb.show = vmm->table_mode == 1 || (vmm->table_mode < 0 && isatty(STDOUT_FILENO));
	tb.redraw = tb.show && isatty(STDOUT_FILENO);
	if (tb.redraw)
		vmm_out_keep_recent();
	if (!vmm->csv_path)
		return 0;
	tb.csv = fopen(vmm->csv_path, "we");
	if (!tb.csv) {
		vmm_errorf("--stats-csv %s: %s", vmm->csv_path, strerror(errno));
		return -1;
	}
	fprintf(tb.csv, "time_s,vm,state,promised_bytes,resident_bytes,shared_bytes,zero_bytes,"
			"ballooned_bytes,free_reported_bytes,swapped_bytes,vmm_rss_bytes,"
			"vmm_pss_bytes,vmm_anon_bytes\n");
	fflush(tb.csv);
	return 0;
}

struct row {
	uint64_t promised, resident, shared, zero, ballooned, reported, swapped;
};

static void row_of(const struct rf_vm_stats *st, struct row *r)
{
	r->promised = st->promised_bytes;
	r->resident = st->resident_bytes;
	r->shared = st->state_bytes[RF_PAGE_MERGED];
	r->zero = st->state_bytes[RF_PAGE_ZERO];
	r->ballooned = st->state_bytes[RF_PAGE_BALLOONED];
	r->reported = st->state_bytes[RF_PAGE_FREE_REPORTED];
	r->swapped = st->state_bytes[RF_PAGE_SWAPPED] + st->state_bytes[RF_PAGE_COMPRESSED];
}

static void print_row(FILE *f, const char *name, const char *state, const char *wl,
		      const struct row *r)
{
	char a[16], b[16], c[16], d[16], e[16], g[16], h[16];

	fprintf(f, "%-12s %-8s %-9s %9s %9s %9s %9s %9s %9s %9s\n", name, state, wl,
		fmt_size(a, sizeof(a), r->promised), fmt_size(b, sizeof(b), r->resident),
		fmt_size(c, sizeof(c), r->shared), fmt_size(d, sizeof(d), r->zero),
		fmt_size(e, sizeof(e), r->ballooned), fmt_size(g, sizeof(g), r->reported),
		fmt_size(h, sizeof(h), r->swapped));
}

static void csv_row(const char *name, const char *state, double t, const struct row *r,
		    const struct host_mem *hm)
{
	fprintf(tb.csv, "%.3f,%s,%s,%llu,%llu,%llu,%llu,%llu,%llu,%llu", t, name, state,
		(unsigned long long)r->promised, (unsigned long long)r->resident,
		(unsigned long long)r->shared, (unsigned long long)r->zero,
		(unsigned long long)r->ballooned, (unsigned long long)r->reported,
		(unsigned long long)r->swapped);
	if (hm)
		fprintf(tb.csv, ",%llu,%llu,%llu\n", (unsigned long long)hm->rss,
			(unsigned long long)hm->pss, (unsigned long long)hm->anon);
	else
		fprintf(tb.csv, ",,,\n");
}

void table_tick(struct vmm *vmm, bool final)
{
	struct row rows[VMM_MAX_VMS], total = {0};
	double t = (now_ns() - vmm->start_ns) / 1e9;
	struct host_mem hm;
	char a[16], b[16], c[16], d[16];

	if (!tb.show && !tb.csv)
		return;
	for (unsigned int i = 0; i < vmm->nr_vms; i++) {
		struct rf_vm_stats st = {.size = sizeof(st)};

		memset(&rows[i], 0, sizeof(rows[i]));
		if (rf_vm_stats(vmm->vms[i]->rf, &st) == 0)
			row_of(&st, &rows[i]);
		total.promised += rows[i].promised;
		total.resident += rows[i].resident;
		total.shared += rows[i].shared;
		total.zero += rows[i].zero;
		total.ballooned += rows[i].ballooned;
		total.reported += rows[i].reported;
		total.swapped += rows[i].swapped;
	}
	host_mem_read(0, &hm);
	if (tb.csv) {
		for (unsigned int i = 0; i < vmm->nr_vms; i++)
			csv_row(vmm->vms[i]->name,
				vmm_vm_state_name(atomic_load(&vmm->vms[i]->state)), t, &rows[i],
				NULL);
		csv_row("host", "-", t, &total, &hm);
		fflush(tb.csv);
	}
	if (!tb.show)
		return;
	vmm_out_lock();
	if (tb.redraw)
		fputs("\033[H\033[J", stdout);
	else
		fputs("\n", stdout);
	printf("ramfold-vmm %s: %.0f s, %u VMs%s\n", RF_VERSION_STRING, t, vmm->nr_vms,
	       final ? " (final)" : "");
	printf("%-12s %-8s %-9s %9s %9s %9s %9s %9s %9s %9s\n", "VM", "STATE", "WORKLOAD",
	       "PROMISED", "RESIDENT", "SHARED", "ZERO", "BALLOONED", "REPORTED", "SWAPPED");
	for (unsigned int i = 0; i < vmm->nr_vms; i++)
		print_row(stdout, vmm->vms[i]->name,
			  vmm_vm_state_name(atomic_load(&vmm->vms[i]->state)),
			  workload_to_name(vmm->vms[i]->workload), &rows[i]);
	print_row(stdout, "all guests", "", "", &total);
	printf("host: VMM RSS %s, PSS %s, anonymous %s; host MemAvailable %s\n",
	       fmt_size(a, sizeof(a), hm.rss), fmt_size(b, sizeof(b), hm.pss),
	       fmt_size(c, sizeof(c), hm.anon), fmt_size(d, sizeof(d), hm.mem_available));
	if (tb.redraw)
		vmm_out_print_recent(stdout);
	fflush(stdout);
	vmm_out_unlock();
}

void table_close(void)
{
	if (tb.csv)
		fclose(tb.csv);
	tb.csv = NULL;
}
