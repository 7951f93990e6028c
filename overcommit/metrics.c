/* SPDX-License-Identifier: MIT */
/*
 * Prometheus text exposition (format 0.0.4) of the ledger: host gauges, one
 * gauge family per VM with a category label for each breakdown category,
 * saved bytes by mechanism, and the policy's counters. The text is built in
 * the caller's buffer; the VMM serves it on a loopback port or writes it to
 * a file that node_exporter's textfile collector picks up.
 *
 * VM names are printable without spaces (rf_vm_new checks), but may hold
 * '"' or '\'; they are escaped as the format requires.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"
#include "ledger.h"
#include "policy.h"

struct out {
	char *buf;
	size_t len, pos; /* pos counts what the full text needs */
};

static void emit(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(struct out *o, const char *fmt, ...)
{
	va_list ap;
	size_t room = o->pos < o->len ? o->len - o->pos : 0;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(room ? o->buf + o->pos : NULL, room, fmt, ap);
	va_end(ap);
	if (n > 0)
		o->pos += (size_t)n;
}

static void label_escape(const char *in, char *out, size_t len)
{
	size_t j = 0;

	for (size_t i = 0; in[i] && j + 3 < len; i++) {
		if (in[i] == '"' || in[i] == '\\')
			out[j++] = '\\';
		out[j++] = in[i];
	}
	out[j] = '\0';
}

static void host_gauge(struct out *o, const char *name, const char *help, uint64_t v)
{
	emit(o,
	     "# HELP ramfold_host_%s %s\n# TYPE ramfold_host_%s gauge\nramfold_host_%s %" PRIu64
	     "\n",
	     name, help, name, name, v);
}

RF_EXPORT long rf_metrics_format(rf_engine *e, char *buf, size_t len)
{
	struct rf_ledger_snap s;
	struct rf_policy_counters pc = {.size = sizeof(pc)};
	struct out o = {.buf = buf, .len = len, .pos = 0};
	const struct rf_host_stats *h;
	int err;

	if (!e || (!buf && len))
		return -EINVAL;
	err = rf_ledger_snapshot(e, &s);
	if (err)
		return err;
	err = rf_policy_counters(e, &pc);
	if (err) {
		rf_ledger_snap_free(e, &s);
		return err;
	}
	h = &s.host;
	host_gauge(&o, "capacity_bytes", "Host memory ramfold may hand to guests.",
		   h->capacity_bytes);
	host_gauge(&o, "reserved_bytes", "Sum of the VMs' reservations.", h->reserved_bytes);
	host_gauge(&o, "promised_bytes", "Sum of the VMs' sizes.", h->promised_bytes);
	host_gauge(&o, "overcommit_ratio_permille", "Promised over capacity, in thousandths.",
		   h->overcommit_permille);
	host_gauge(&o, "used_bytes", "Measured host cost of all guests.", h->used_bytes);
	host_gauge(&o, "free_bytes", "Capacity minus measured use.", h->free_bytes);
	host_gauge(&o, "store_pages_resident", "Distinct store pages mapped by guests.",
		   h->store_pages_resident);
	host_gauge(&o, "process_rss_bytes", "smaps_rollup Rss of the process.",
		   h->process_rss_bytes);
	host_gauge(&o, "process_pss_bytes", "smaps_rollup Pss of the process.",
		   h->process_pss_bytes);
	host_gauge(&o, "admissions_refused", "VMs or reservations refused.", h->admissions_refused);
	emit(&o,
	     "# HELP ramfold_host_state Free-memory state (0 high, 1 soft, 2 hard, 3 low).\n"
	     "# TYPE ramfold_host_state gauge\nramfold_host_state %d\n",
	     (int)h->state);
	emit(&o, "# HELP ramfold_host_saved_bytes Bytes saved by mechanism.\n"
		 "# TYPE ramfold_host_saved_bytes gauge\n");
	emit(&o, "ramfold_host_saved_bytes{mechanism=\"dedup\"} %" PRIu64 "\n", h->saved.dedup);
	emit(&o, "ramfold_host_saved_bytes{mechanism=\"zero\"} %" PRIu64 "\n", h->saved.zero);
	emit(&o, "ramfold_host_saved_bytes{mechanism=\"balloon\"} %" PRIu64 "\n", h->saved.balloon);
	emit(&o, "ramfold_host_saved_bytes{mechanism=\"free_report\"} %" PRIu64 "\n",
	     h->saved.free_report);
	emit(&o, "ramfold_host_saved_bytes{mechanism=\"swap\"} %" PRIu64 "\n", h->saved.swap);

	emit(&o, "# HELP ramfold_vm_bytes Where each VM's promised memory is, and what it costs.\n"
		 "# TYPE ramfold_vm_bytes gauge\n");
	for (unsigned int i = 0; i < s.nr; i++) {
		const struct rf_vm_breakdown *b = &s.vms[i].bd;
		const struct {
			const char *cat;
			uint64_t v;
		} rows[] = {
		    {"promised", b->promised_bytes},
		    {"reservation", b->reservation_bytes},
		    {"limit", b->limit_bytes == UINT64_MAX ? 0 : b->limit_bytes},
		    {"private", b->private_bytes},
		    {"untouched", b->untouched_bytes},
		    {"shared", b->shared_bytes},
		    {"shared_fair", b->shared_fair_bytes},
		    {"zero", b->zero_bytes},
		    {"ballooned", b->ballooned_bytes},
		    {"free_reported", b->free_reported_bytes},
		    {"swapped_file", b->swapped_file_bytes},
		    {"swapped_compressed", b->swapped_compressed_bytes},
		    {"compressed_host", b->compressed_host_bytes},
		    {"drift", b->drift_bytes},
		    {"metadata", b->metadata_bytes},
		    {"host", b->host_bytes},
		    {"balloon_target", b->balloon_target_bytes},
		    {"resident_target",
		     b->resident_target_bytes == UINT64_MAX ? 0 : b->resident_target_bytes},
		    /* Working-set sampling's estimate (0: off), like ESX's active. */
		    {"active", b->active_bytes},
		};
		char name[80];

		label_escape(s.vms[i].name, name, sizeof(name));
		for (size_t k = 0; k < sizeof(rows) / sizeof(rows[0]); k++)
			emit(&o, "ramfold_vm_bytes{vm=\"%s\",category=\"%s\"} %" PRIu64 "\n", name,
			     rows[k].cat, rows[k].v);
	}
	emit(&o, "# HELP ramfold_vm_saved_bytes Bytes a VM saved, by mechanism.\n"
		 "# TYPE ramfold_vm_saved_bytes gauge\n");
	for (unsigned int i = 0; i < s.nr; i++) {
		const struct rf_saved *sv = &s.vms[i].bd.saved;
		char name[80];

		label_escape(s.vms[i].name, name, sizeof(name));
		emit(&o,
		     "ramfold_vm_saved_bytes{vm=\"%s\",mechanism=\"dedup\"} %" PRIu64 "\n"
		     "ramfold_vm_saved_bytes{vm=\"%s\",mechanism=\"zero\"} %" PRIu64 "\n"
		     "ramfold_vm_saved_bytes{vm=\"%s\",mechanism=\"balloon\"} %" PRIu64 "\n"
		     "ramfold_vm_saved_bytes{vm=\"%s\",mechanism=\"free_report\"} %" PRIu64 "\n"
		     "ramfold_vm_saved_bytes{vm=\"%s\",mechanism=\"swap\"} %" PRIu64 "\n",
		     name, sv->dedup, name, sv->zero, name, sv->balloon, name, sv->free_report,
		     name, sv->swap);
	}
	emit(&o,
	     "# HELP ramfold_vm_fault_stall_seconds_total Time threads waited in the VM's fault "
	     "handling, summed over faults (vCPU-seconds, like PSI some).\n"
	     "# TYPE ramfold_vm_fault_stall_seconds_total counter\n");
	for (unsigned int i = 0; i < s.nr; i++) {
		char name[80];

		label_escape(s.vms[i].name, name, sizeof(name));
		emit(&o, "ramfold_vm_fault_stall_seconds_total{vm=\"%s\"} %.9f\n", name,
		     (double)s.vms[i].stall_ns / 1e9);
	}
	emit(&o, "# HELP ramfold_vm_fault_stall_faults_total Faults the stall covers.\n"
		 "# TYPE ramfold_vm_fault_stall_faults_total counter\n");
	for (unsigned int i = 0; i < s.nr; i++) {
		char name[80];

		label_escape(s.vms[i].name, name, sizeof(name));
		emit(&o, "ramfold_vm_fault_stall_faults_total{vm=\"%s\"} %" PRIu64 "\n", name,
		     s.vms[i].stall_faults);
	}
	emit(&o,
	     "# HELP ramfold_policy_ticks_total Policy ticks.\n"
	     "# TYPE ramfold_policy_ticks_total counter\nramfold_policy_ticks_total %" PRIu64 "\n",
	     pc.ticks);
	emit(&o,
	     "# HELP ramfold_policy_transitions_total Free-memory state changes.\n"
	     "# TYPE ramfold_policy_transitions_total counter\n"
	     "ramfold_policy_transitions_total %" PRIu64 "\n",
	     pc.transitions);
	emit(&o,
	     "# HELP ramfold_policy_actions_total Actions by kind.\n"
	     "# TYPE ramfold_policy_actions_total counter\n"
	     "ramfold_policy_actions_total{action=\"balloon\"} %" PRIu64 "\n"
	     "ramfold_policy_actions_total{action=\"swap\"} %" PRIu64 "\n"
	     "ramfold_policy_actions_total{action=\"scan_rate\"} %" PRIu64 "\n",
	     pc.actions[RF_POLICY_SET_BALLOON], pc.actions[RF_POLICY_SET_SWAP],
	     pc.actions[RF_POLICY_SET_SCAN_RATE]);
	emit(&o,
	     "# HELP ramfold_policy_proactive_total Resident targets the proactive mode "
	     "lowered (shrink) and raised (grow).\n"
	     "# TYPE ramfold_policy_proactive_total counter\n"
	     "ramfold_policy_proactive_total{direction=\"shrink\"} %" PRIu64 "\n"
	     "ramfold_policy_proactive_total{direction=\"grow\"} %" PRIu64 "\n",
	     pc.proactive_shrinks, pc.proactive_grows);
	rf_ledger_snap_free(e, &s);
	if (len)
		buf[o.pos < len ? o.pos : len - 1] = '\0';
	return (long)o.pos;
}

RF_EXPORT int rf_metrics_write_file(rf_engine *e, const char *path)
{
	char tmp[4096];
	char *buf = NULL;
	long need;
	size_t len = 64 * 1024;
	FILE *f;
	int err = 0;

	if (!e || !path || snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		return -EINVAL;
	for (;;) {
		buf = rf_zalloc(e, len);
		if (!buf)
			return -ENOMEM;
		need = rf_metrics_format(e, buf, len);
		if (need < 0) {
			rf_free(e, buf);
			return (int)need;
		}
		if ((size_t)need < len)
			break;
		rf_free(e, buf);
		len = (size_t)need + 1;
	}
	f = fopen(tmp, "we");
	if (!f) {
		err = -errno;
		goto out;
	}
	if (fwrite(buf, 1, (size_t)need, f) != (size_t)need)
		err = -EIO;
	if (fclose(f) != 0 && !err)
		err = -errno;
	if (!err && rename(tmp, path) != 0)
		err = -errno;
	if (err)
		unlink(tmp);
out:
	if (err)
		rf_log(e, RF_LOG_ERR, "ramfold: metrics: writing %s: %s", path, strerror(-err));
	rf_free(e, buf);
	return err;
}
