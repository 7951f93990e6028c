/* SPDX-License-Identifier: MIT */
/*
 * Binary compatibility with 0.1/0.2: the functions whose structs gained a
 * leading `size_t size` in 0.3 keep their old symbol version
 * (name@RAMFOLD_0.1, which a binary linked against 0.1 or 0.2 asks for)
 * beside the new default (name@@RAMFOLD_0.3, src/libramfold.map). Each old
 * version converts by the fixed offset of that member: the 0.2 layout of
 * every such struct is the 0.3 layout from byte 8 on, so an input is copied
 * to (char *)&new + 8 with size = 8 + its 0.2 size (members added after 0.2
 * keep their defaults: a 0.2 engine config gets no thread_start hook), and
 * an output is filled in the new layout and copied back from byte 8.
 *
 * The 0.2 sizes are fixed (x86_64, as tests/abi/0.2/ramfold/ has them); the
 * asserts below stop a change to a 0.3 struct that would move a 0.2 member.
 * A binary built against 0.2 that registered a policy callback or filled
 * rf_balloon_ops / rf_policy_actuators in the 0.2 layout goes through here
 * too: the ops are converted at registration, the policy's reading at each
 * call (overcommit/policy_runner.c, call_v02).
 */
#include <errno.h>
#include <stddef.h>
#include <string.h>

#include "../overcommit/policy.h"
#include "internal.h"

#include <ramfold/ramfold.h>

/* Size of each struct in 0.2, without the size member 0.3 put first. */
#define V02_rf_engine_config	   64
#define V02_rf_features		   112
#define V02_rf_vm_config	   48
#define V02_rf_vm_stats		   104
#define V02_rf_audit_report	   56
#define V02_rf_balloon_ops	   32
#define V02_rf_balloon_config	   32
#define V02_rf_balloon_info	   80
#define V02_rf_balloon_stats	   152
#define V02_rf_balloon_counters	   344
#define V02_rf_dedup_config	   56
#define V02_rf_dedup_vm_stats	   64
#define V02_rf_dedup_stats	   128
#define V02_rf_ledger_config	   24
#define V02_rf_vm_breakdown	   216
#define V02_rf_host_stats	   192
#define V02_rf_ledger_audit_report 320
#define V02_rf_policy_vm	   104
#define V02_rf_policy_reading	   40
#define V02_rf_policy_config	   72
#define V02_rf_policy_actuators	   32
#define V02_rf_policy_counters	   120
#define V02_rf_swap_config	   40
#define V02_rf_swap_stats	   144

#define OFF sizeof(size_t)

/* The 0.2 members sit at their 0.2 offsets + 8 and nothing new is between
 * them: for a struct that did not grow, the whole size; for the engine
 * config, up to its first 0.3 member. */
#define SAME_LAYOUT(t) _Static_assert(sizeof(struct t) == OFF + V02_##t, #t ": 0.2 layout moved")
SAME_LAYOUT(rf_features);
SAME_LAYOUT(rf_vm_config);
SAME_LAYOUT(rf_vm_stats);
SAME_LAYOUT(rf_audit_report);
SAME_LAYOUT(rf_balloon_ops);
SAME_LAYOUT(rf_balloon_info);
SAME_LAYOUT(rf_balloon_stats);
SAME_LAYOUT(rf_dedup_vm_stats);
SAME_LAYOUT(rf_ledger_config);
SAME_LAYOUT(rf_host_stats);
SAME_LAYOUT(rf_ledger_audit_report);
SAME_LAYOUT(rf_policy_reading);
SAME_LAYOUT(rf_policy_actuators);
SAME_LAYOUT(rf_swap_config);
_Static_assert(offsetof(struct rf_engine_config, thread_start) == OFF + V02_rf_engine_config,
	       "rf_engine_config: 0.2 layout moved");
/* Grown in 0.4 (the broker): the 0.2 members end where the new ones start. */
_Static_assert(offsetof(struct rf_dedup_config, broker) == OFF + V02_rf_dedup_config,
	       "rf_dedup_config: 0.2 layout moved");
_Static_assert(offsetof(struct rf_dedup_stats, broker_domains) == OFF + V02_rf_dedup_stats,
	       "rf_dedup_stats: 0.2 layout moved");
/* Grown in 0.4 (working-set sampling's active figure): likewise. */
_Static_assert(offsetof(struct rf_vm_breakdown, active_bytes) == OFF + V02_rf_vm_breakdown,
	       "rf_vm_breakdown: 0.2 layout moved");
/* Grown in 0.4 (the fault stall): likewise. */
_Static_assert(offsetof(struct rf_swap_stats, stall_ns) == OFF + V02_rf_swap_stats,
	       "rf_swap_stats: 0.2 layout moved");
/* Grown in 0.4 (free page reporting that keeps what the guest takes back):
 * likewise. */
_Static_assert(offsetof(struct rf_balloon_config, report_reuse_ms) == OFF + V02_rf_balloon_config,
	       "rf_balloon_config: 0.2 layout moved");
_Static_assert(offsetof(struct rf_balloon_counters, report_reused_pages) ==
		   OFF + V02_rf_balloon_counters,
	       "rf_balloon_counters: 0.2 layout moved");
/* Grown in 0.4 (the proactive mode): likewise. */
_Static_assert(offsetof(struct rf_policy_vm, resident_bytes) == OFF + V02_rf_policy_vm,
	       "rf_policy_vm: 0.2 layout moved");
_Static_assert(offsetof(struct rf_policy_config, proactive_floor_bytes) ==
		   OFF + V02_rf_policy_config,
	       "rf_policy_config: 0.2 layout moved");
_Static_assert(offsetof(struct rf_policy_counters, proactive_shrinks) ==
		   OFF + V02_rf_policy_counters,
	       "rf_policy_counters: 0.2 layout moved");

/* The old symbol: name@RAMFOLD_0.1, exported (the map's local: * hides the
 * _v02 name itself). A .symver directive rather than GCC's symver attribute,
 * which clang (the fuzz build) does not know. */
#define V02(name)                                                                                  \
	__asm__(".symver " #name "_v02, " #name "@RAMFOLD_0.1");                                   \
	__attribute__((visibility("default")))

/* An input in the 0.2 layout, as a 0.3 struct of size 8 + its 0.2 size. */
#define IN(t, n, old)                                                                              \
	struct t n##_buf, *n = NULL;                                                               \
	if (old) {                                                                                 \
		memset(&n##_buf, 0, sizeof(n##_buf));                                              \
		n##_buf.size = OFF + V02_##t;                                                      \
		memcpy((char *)&n##_buf + OFF, (old), V02_##t);                                    \
		n = &n##_buf;                                                                      \
	}

/* An output: call @call with @n sized for 0.2, copy back into @old. */
#define OUT(t, old, call)                                                                          \
	do {                                                                                       \
		struct t n = {.size = OFF + V02_##t};                                              \
		int rc_;                                                                           \
		if (!(old))                                                                        \
			return -EINVAL;                                                            \
		rc_ = (call);                                                                      \
		memcpy((old), (char *)&n + OFF, V02_##t);                                          \
		return rc_;                                                                        \
	} while (0)

/* A 0.2 _init: the 0.3 defaults, copied back without the size. */
#define INIT(t, init, old)                                                                         \
	do {                                                                                       \
		struct t n;                                                                        \
		if (!(old))                                                                        \
			return;                                                                    \
		init(&n);                                                                          \
		memcpy((old), (char *)&n + OFF, V02_##t);                                          \
	} while (0)

/* ---- engine ---- */

V02(rf_engine_config_init) void rf_engine_config_init_v02(void *cfg)
{
	INIT(rf_engine_config, rf_engine_config_init, cfg);
	/* 0.2 had no "0 = one per CPU": its callers keep one thread. */
	if (cfg) {
		unsigned int one = 1;

		memcpy((char *)cfg + offsetof(struct rf_engine_config, scan_threads) - OFF, &one,
		       sizeof(one));
	}
}

V02(rf_engine_config_hide) int rf_engine_config_hide_v02(void *cfg, const char *names)
{
	int err;

	IN(rf_engine_config, n, cfg);
	err = rf_engine_config_hide(n, names);
	if (!err)
		memcpy(cfg, (char *)n + OFF, V02_rf_engine_config);
	return err;
}

V02(rf_engine_new) int rf_engine_new_v02(const void *cfg, rf_engine **out)
{
	IN(rf_engine_config, n, cfg);
	return rf_engine_new(n, out);
}

V02(rf_engine_features) int rf_engine_features_v02(const rf_engine *e, void *out)
{
	OUT(rf_features, out, rf_engine_features(e, &n));
}

/* ---- vm ---- */

V02(rf_vm_config_init) void rf_vm_config_init_v02(void *cfg)
{
	INIT(rf_vm_config, rf_vm_config_init, cfg);
}

V02(rf_vm_new) int rf_vm_new_v02(rf_engine *e, const char *name, const void *cfg, rf_vm **out)
{
	IN(rf_vm_config, n, cfg);
	return rf_vm_new(e, name, n, out);
}

V02(rf_vm_stats) int rf_vm_stats_v02(rf_vm *vm, void *st)
{
	OUT(rf_vm_stats, st, rf_vm_stats(vm, &n));
}

V02(rf_vm_audit) int rf_vm_audit_v02(rf_vm *vm, void *rep, unsigned int flags)
{
	OUT(rf_audit_report, rep, rf_vm_audit(vm, &n, flags));
}

/* ---- balloon ---- */

V02(rf_balloon_config_init) void rf_balloon_config_init_v02(void *cfg)
{
	INIT(rf_balloon_config, rf_balloon_config_init, cfg);
}

V02(rf_balloon_new)
int rf_balloon_new_v02(rf_vm *vm, const void *ops, const void *cfg, rf_balloon **out)
{
	IN(rf_balloon_ops, o, ops);
	IN(rf_balloon_config, c, cfg);
	return rf_balloon_new(vm, o, c, out);
}

V02(rf_balloon_info) int rf_balloon_info_v02(rf_balloon *b, void *out)
{
	OUT(rf_balloon_info, out, rf_balloon_info(b, &n));
}

V02(rf_balloon_stats) int rf_balloon_stats_v02(rf_balloon *b, void *out)
{
	OUT(rf_balloon_stats, out, rf_balloon_stats(b, &n));
}

V02(rf_balloon_counters) int rf_balloon_counters_v02(rf_balloon *b, void *out)
{
	OUT(rf_balloon_counters, out, rf_balloon_counters(b, &n));
}

V02(rf_balloon_rejected_total) uint64_t rf_balloon_rejected_total_v02(const void *c)
{
	IN(rf_balloon_counters, n, c);
	return n ? rf_balloon_rejected_total(n) : 0;
}

/* ---- dedup ---- */

V02(rf_dedup_config_init) void rf_dedup_config_init_v02(void *cfg)
{
	INIT(rf_dedup_config, rf_dedup_config_init, cfg);
}

V02(rf_dedup_start) int rf_dedup_start_v02(rf_engine *e, const void *cfg)
{
	IN(rf_dedup_config, n, cfg);
	return rf_dedup_start(e, n);
}

V02(rf_dedup_stats) int rf_dedup_stats_v02(rf_engine *e, void *st)
{
	OUT(rf_dedup_stats, st, rf_dedup_stats(e, &n));
}

V02(rf_dedup_counters) int rf_dedup_counters_v02(rf_engine *e, void *st)
{
	OUT(rf_dedup_stats, st, rf_dedup_counters(e, &n));
}

V02(rf_dedup_vm_stats) int rf_dedup_vm_stats_v02(rf_vm *vm, void *st)
{
	OUT(rf_dedup_vm_stats, st, rf_dedup_vm_stats(vm, &n));
}

/* ---- ledger ---- */

V02(rf_ledger_config_init) void rf_ledger_config_init_v02(void *cfg)
{
	INIT(rf_ledger_config, rf_ledger_config_init, cfg);
}

V02(rf_ledger_configure) int rf_ledger_configure_v02(rf_engine *e, const void *cfg)
{
	IN(rf_ledger_config, n, cfg);
	return rf_ledger_configure(e, n);
}

V02(rf_vm_breakdown) int rf_vm_breakdown_v02(rf_vm *vm, void *out)
{
	OUT(rf_vm_breakdown, out, rf_vm_breakdown(vm, &n));
}

V02(rf_host_stats) int rf_host_stats_v02(rf_engine *e, void *out)
{
	OUT(rf_host_stats, out, rf_host_stats(e, &n));
}

V02(rf_ledger_audit) int rf_ledger_audit_v02(rf_engine *e, void *rep)
{
	OUT(rf_ledger_audit_report, rep, rf_ledger_audit(e, &n));
}

/* ---- policy ---- */

V02(rf_policy_set) int rf_policy_set_v02(rf_engine *e, rf_policy_fn fn, void *arg)
{
	return rf_policy_set_abi(e, fn, arg, true);
}

V02(rf_policy_config_init) void rf_policy_config_init_v02(void *cfg)
{
	INIT(rf_policy_config, rf_policy_config_init, cfg);
}

V02(rf_policy_configure) int rf_policy_configure_v02(rf_engine *e, const void *cfg)
{
	IN(rf_policy_config, n, cfg);
	return rf_policy_configure(e, n);
}

V02(rf_policy_set_actuators) int rf_policy_set_actuators_v02(rf_engine *e, const void *acts)
{
	IN(rf_policy_actuators, n, acts);
	return rf_policy_set_actuators(e, n);
}

V02(rf_policy_counters) int rf_policy_counters_v02(rf_engine *e, void *out)
{
	OUT(rf_policy_counters, out, rf_policy_counters(e, &n));
}

/* ---- swap ---- */

V02(rf_swap_config_init) void rf_swap_config_init_v02(void *cfg)
{
	INIT(rf_swap_config, rf_swap_config_init, cfg);
}

V02(rf_engine_set_swap) int rf_engine_set_swap_v02(rf_engine *e, const void *cfg)
{
	IN(rf_swap_config, n, cfg);
	return rf_engine_set_swap(e, n);
}

V02(rf_vm_swap_stats) int rf_vm_swap_stats_v02(rf_vm *vm, void *st)
{
	OUT(rf_swap_stats, st, rf_vm_swap_stats(vm, &n));
}

V02(rf_engine_swap_stats) int rf_engine_swap_stats_v02(rf_engine *e, void *st)
{
	OUT(rf_swap_stats, st, rf_engine_swap_stats(e, &n));
}
