/* SPDX-License-Identifier: MIT */
/*
 * An embedder as it was built against ramfold 0.2: compiled with the 0.2
 * headers (tests/abi/0.2/ramfold/, frozen verbatim) and linked against a
 * stub of the 0.2 library, so it binds to the symbol versions a binary of
 * that time has; tests/abi/run-abi.sh then runs it on the new library.
 * It calls every function that takes a struct whose layout changed in 0.3
 * (configs, stats, the balloon's ops, the policy's actuators and callback)
 * and checks the values land in the members the 0.2 layout has them in: a
 * struct read or written 8 bytes off shows up as a wrong number here.
 * Exit 0 passed, 1 failed, 77 skipped (no userfaultfd).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <ramfold/ramfold.h>

#define RAM (16u << 20)

static int failures;

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "old_api: %s:%d: %s\n", __FILE__, __LINE__, #cond);        \
			failures++;                                                                \
		}                                                                                  \
	} while (0)

static unsigned int irqs, balloon_calls, policy_calls;
static uint64_t balloon_asked;

static void on_irq(void *arg, unsigned int reason)
{
	(void)reason;
	CHECK(arg == &irqs);
	irqs++;
}

static int act_balloon(void *arg, rf_vm *vm, uint64_t bytes)
{
	CHECK(arg == &balloon_calls);
	CHECK(strcmp(rf_vm_name(vm), "vm0") == 0);
	balloon_calls++;
	balloon_asked = bytes;
	return 0;
}

/* The policy sees the 0.2 reading: one VM, its numbers where 0.2 had them. */
static int policy(void *arg, const struct rf_policy_reading *in, struct rf_policy_action *acts,
		  unsigned int max, unsigned int *n, enum rf_mem_state *state)
{
	CHECK(arg == &policy_calls);
	policy_calls++;
	CHECK(in->capacity_bytes == 1ull << 30);
	CHECK(in->nr_vms == 1);
	*n = 0;
	if (in->nr_vms != 1 || max < 1)
		return 0;
	CHECK(strcmp(in->vms[0].name, "vm0") == 0);
	CHECK(strcmp(rf_vm_name(in->vms[0].vm), "vm0") == 0);
	CHECK(in->vms[0].promised_bytes == RAM);
	CHECK(in->vms[0].reservation_bytes == 4u << 20);
	CHECK(in->vms[0].shares == 700);
	CHECK(in->vms[0].has_balloon == 0);
	acts[0].kind = RF_POLICY_SET_BALLOON;
	acts[0].vm = 0;
	acts[0].value = 1u << 20;
	snprintf(acts[0].why, sizeof(acts[0].why), "old_api test");
	*n = 1;
	*state = RF_MEM_SOFT;
	return 0;
}

int main(void)
{
	struct rf_engine_config ec;
	struct rf_features f;
	struct rf_vm_config vc;
	struct rf_vm_stats vs;
	struct rf_audit_report ar;
	struct rf_balloon_ops bo = {.irq = on_irq, .arg = &irqs};
	struct rf_balloon_config bc;
	struct rf_balloon_info bi;
	struct rf_balloon_stats bs;
	struct rf_balloon_counters bk;
	struct rf_dedup_config dc;
	struct rf_dedup_stats ds;
	struct rf_dedup_vm_stats dv;
	struct rf_ledger_config lc;
	struct rf_vm_breakdown bd;
	struct rf_host_stats hs;
	struct rf_ledger_audit_report lr;
	struct rf_policy_config pc;
	struct rf_policy_actuators pa = {.set_balloon = act_balloon, .arg = &balloon_calls};
	struct rf_policy_counters pk;
	struct rf_swap_config sc;
	struct rf_swap_stats ss;
	rf_engine *e = NULL;
	rf_balloon *b = NULL;
	rf_vm *vm = NULL;
	void *hva;
	int err;

	printf("old_api: built against %s, running on %s\n", RF_VERSION_STRING, rf_version());
	rf_engine_config_init(&ec);
	CHECK(ec.scan_threads == 1 && ec.log_level == RF_LOG_WARN && ec.host_capacity_bytes > 0);
	CHECK(rf_engine_config_hide(&ec, "pagemap-scan") == 0);
	CHECK(ec.hide_features == RF_HIDE_PAGEMAP_SCAN);
	ec.hide_features = 0;
	ec.host_capacity_bytes = 1ull << 30;
	CHECK(rf_engine_new(&ec, &e) == 0);
	if (!e)
		return 1;
	CHECK(rf_engine_capacity(e) == 1ull << 30);
	memset(&f, 0xa5, sizeof(f));
	CHECK(rf_engine_features(e, &f) == 0);
	CHECK(f.kernel_release[0] >= '1' && f.kernel_release[0] <= '9');
	CHECK(f.numa_nodes >= 1);
	if (!f.uffd || !f.uffd_wp) {
		printf("old_api: skipped: userfaultfd with write-protect needed\n");
		rf_engine_free(e);
		return 77;
	}

	rf_vm_config_init(&vc);
	CHECK(vc.numa_node == -1 && vc.ram_bytes == 0 && vc.domain == NULL);
	vc.ram_bytes = RAM;
	vc.reservation_bytes = 4u << 20;
	vc.shares = 700;
	CHECK(rf_vm_new(e, "vm0", &vc, &vm) == 0);
	if (!vm)
		return 1;
	CHECK(rf_vm_map_ram(vm, 0, RAM, &hva) == 0);
	memset(hva, 0x5a, 1u << 20);
	memset(&vs, 0xa5, sizeof(vs));
	CHECK(rf_vm_stats(vm, &vs) == 0);
	CHECK(vs.promised_bytes == RAM && vs.mapped_bytes == RAM);
	CHECK(vs.state_bytes[RF_PAGE_PRIVATE] == RAM);
	CHECK(vs.resident_bytes >= 1u << 20 && vs.metadata_bytes > 0);
	memset(&ar, 0xa5, sizeof(ar));
	CHECK(rf_vm_audit(vm, &ar, 0) == 0);
	CHECK(ar.pages_checked == RAM / 4096 && ar.mismatches == 0 &&
	      ar.first_bad_gpa == UINT64_MAX);

	rf_balloon_config_init(&bc);
	CHECK(bc.features == RF_BALLOON_FEATURES_DEFAULT && bc.queue_size_max == 256);
	CHECK(bc.max_pfns_per_buffer == 256 && bc.max_report_bytes == 128ull << 20);
	bc.queue_size_max = 64;
	CHECK(rf_balloon_new(vm, &bo, &bc, &b) == 0);
	if (!b)
		return 1;
	CHECK(rf_balloon_queue_size_max(b) == 64);
	CHECK(rf_balloon_set_target(b, 2u << 20) == 0);
	/* (The 0.2 ops table's interrupts: the embedder run counts them.) */
	memset(&bi, 0xa5, sizeof(bi));
	CHECK(rf_balloon_info(b, &bi) == 0);
	CHECK(bi.guest_ram_bytes == RAM && bi.target_bytes == 2u << 20 && bi.actual_bytes == 0);
	CHECK(bi.features_offered == RF_BALLOON_FEATURES_DEFAULT && bi.status == 0);
	memset(&bs, 0xa5, sizeof(bs));
	CHECK(rf_balloon_stats(b, &bs) == 0);
	CHECK(bs.value[RF_BALLOON_S_MEMFREE] == RF_BALLOON_STAT_UNSET && bs.updates == 0);
	CHECK(rf_balloon_queue_notify(b, 0) == 0); /* before DRIVER_OK: counted */
	memset(&bk, 0xa5, sizeof(bk));
	CHECK(rf_balloon_counters(b, &bk) == 0);
	CHECK(bk.notify_before_driver_ok + bk.notify_invalid == 1);
	CHECK(bk.inflate_buffers == 0 && bk.resets == 0 && bk.actual_implausible == 0);
	CHECK(rf_balloon_rejected_total(&bk) == 1);
	CHECK(rf_balloon_set_target(b, 0) == 0);

	rf_swap_config_init(&sc);
	CHECK(sc.file_limit_bytes == 64ull << 30 && sc.tier_limit_bytes == 512ull << 20);
	CHECK(sc.compress_max_bytes == 2048 && sc.prefetch_pages == 8 && !sc.direct_io);
	sc.dir = "/var/tmp";
	sc.prefetch_pages = 65; /* out of range: the check must see it */
	CHECK(rf_engine_set_swap(e, &sc) == -EINVAL);
	sc.prefetch_pages = 4;
	CHECK(rf_engine_set_swap(e, &sc) == 0);
	memset(&ss, 0xa5, sizeof(ss));
	CHECK(rf_vm_swap_stats(vm, &ss) == 0);
	CHECK(ss.swap_outs == 0 && ss.file_bytes == 0 && !ss.stopped);
	memset(&ss, 0xa5, sizeof(ss));
	CHECK(rf_engine_swap_stats(e, &ss) == 0);
	CHECK(ss.swap_ins == 0 && ss.compression_ratio == 0.0);

	rf_dedup_config_init(&dc);
	CHECK(dc.mode == RF_DEDUP_INTRA_VM && dc.backoff_max == 12 && dc.fastest);
	dc.mode = RF_DEDUP_ZERO;
	dc.scan_threads = 65; /* out of range */
	CHECK(rf_dedup_start(e, &dc) == -EINVAL);
	dc.scan_threads = 1;
	CHECK(rf_dedup_start(e, &dc) == 0);
	CHECK(rf_dedup_add_vm(vm) == 0);
	memset(&ds, 0xa5, sizeof(ds));
	CHECK(rf_dedup_counters(e, &ds) == 0);
	CHECK(ds.mode == RF_DEDUP_ZERO && ds.saved_bytes == 0);
	memset(&ds, 0xa5, sizeof(ds));
	CHECK(rf_dedup_stats(e, &ds) == 0);
	CHECK(ds.mode == RF_DEDUP_ZERO && ds.hash_collisions == 0 && ds.vmas >= 1);
	memset(&dv, 0xa5, sizeof(dv));
	CHECK(rf_dedup_vm_stats(vm, &dv) == 0);
	CHECK(dv.pages_merged == 0 && dv.merge_races == 0);

	rf_ledger_config_init(&lc);
	CHECK(lc.audit_pct == 2 && lc.audit_slack_bytes == 1u << 20);
	lc.audit_pct = 51; /* out of range */
	CHECK(rf_ledger_configure(e, &lc) == -EINVAL);
	lc.audit_pct = 5;
	CHECK(rf_ledger_configure(e, &lc) == 0);
	memset(&bd, 0xa5, sizeof(bd));
	CHECK(rf_vm_breakdown(vm, &bd) == 0);
	CHECK(bd.promised_bytes == RAM && bd.reservation_bytes == 4u << 20 && bd.shares == 700);
	CHECK(bd.private_bytes + bd.untouched_bytes + bd.shared_bytes + bd.zero_bytes +
		  bd.ballooned_bytes + bd.free_reported_bytes + bd.swapped_file_bytes +
		  bd.swapped_compressed_bytes + bd.drift_bytes + bd.unmapped_bytes ==
	      RAM);
	memset(&hs, 0xa5, sizeof(hs));
	CHECK(rf_host_stats(e, &hs) == 0);
	CHECK(hs.capacity_bytes == 1ull << 30 && hs.promised_bytes == RAM && hs.nr_vms == 1);
	CHECK(hs.reserved_bytes == 4u << 20 && hs.process_rss_bytes > 0);
	memset(&lr, 0xa5, sizeof(lr));
	err = rf_ledger_audit(e, &lr);
	CHECK(err == 0);
	CHECK(lr.vms_checked == 1 && lr.vms_disagreeing == 0 && lr.first_reason[0] == 0);

	rf_policy_config_init(&pc);
	CHECK(pc.high_bp == 600 && pc.low_bp == 100 && pc.scan_rate_pressure == 200000 && pc.swap);
	pc.low_bp = 700; /* not below high */
	CHECK(rf_policy_configure(e, &pc) == -EINVAL);
	pc.low_bp = 100;
	CHECK(rf_policy_configure(e, &pc) == 0);
	CHECK(rf_policy_set_actuators(e, &pa) == 0);
	CHECK(rf_policy_set(e, policy, &policy_calls) == 0);
	CHECK(rf_policy_tick(e) == 0);
	CHECK(policy_calls == 1);
	CHECK(balloon_calls == 1 && balloon_asked == 1u << 20);
	memset(&pk, 0xa5, sizeof(pk));
	CHECK(rf_policy_counters(e, &pk) == 0);
	CHECK(pk.ticks == 1 && pk.actions[RF_POLICY_SET_BALLOON] == 1);
	CHECK(pk.failed[RF_POLICY_SET_BALLOON] == 0 && pk.state == RF_MEM_SOFT);
	CHECK(pk.entered[RF_MEM_SOFT] == 1);

	rf_dedup_stop(e);
	rf_balloon_free(b);
	rf_engine_free(e);
	printf("old_api: %s\n", failures ? "FAILED" : "passed");
	return failures ? 1 : 0;
}
