/* SPDX-License-Identifier: MIT */
/*
 * --vm specs. Each key is known to apply to some workloads only; a key that
 * does not apply is an error rather than silently ignored, so a typo in an
 * experiment does not go unnoticed. Keys declared by modules (vmm_module
 * vm_keys) are accepted for every workload and read by those modules.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "core/module.h"
#include "core/options.h"
#include "core/util.h"
#include "native/preload.h"

#define W(x)  (1u << (x))
#define W_ALL (~0u)

static const struct {
	const char *name;
	enum rf_workload wl;
} workloads[] = {
    {"idle", RF_WL_IDLE},	  {"dup", RF_WL_DUP},		{"osimage", RF_WL_OSIMAGE},
    {"memcheck", RF_WL_MEMCHECK}, {"churn", RF_WL_CHURN},	{"hotcold", RF_WL_HOTCOLD},
    {"crash", RF_WL_CRASH},	  {"selftest", RF_WL_SELFTEST},
};

const char *workload_to_name(enum rf_workload w)
{
	for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
		if (workloads[i].wl == w)
			return workloads[i].name;
	return "?";
}

enum key_kind { K_U64, K_SIZE_MIB, K_PCT };

static const struct param_key {
	const char *name;
	size_t off; /* in struct rf_wl_params */
	enum key_kind kind;
	unsigned int workloads;
	const char *help;
} param_keys[] = {
    {"mib", offsetof(struct rf_wl_params, mib), K_SIZE_MIB,
     W(RF_WL_IDLE) | W(RF_WL_DUP) | W(RF_WL_OSIMAGE) | W(RF_WL_MEMCHECK) | W(RF_WL_CHURN) |
	 W(RF_WL_HOTCOLD),
     "MiB the workload works on (hotcold: the cold set; osimage: files to load)"},
    {"seed", offsetof(struct rf_wl_params, seed), K_U64, W_ALL, "seed of the content"},
    {"dup", offsetof(struct rf_wl_params, dup_pct), K_PCT, W(RF_WL_DUP),
     "percent of pages that copy a template"},
    {"zero", offsetof(struct rf_wl_params, zero_pct), K_PCT, W(RF_WL_DUP),
     "percent of all-zero pages (the rest is unique)"},
    {"templates", offsetof(struct rf_wl_params, templates), K_U64, W(RF_WL_DUP),
     "distinct duplicate contents"},
    {"rounds", offsetof(struct rf_wl_params, rounds), K_U64,
     W(RF_WL_MEMCHECK) | W(RF_WL_HOTCOLD) | W(RF_WL_CHURN),
     "memcheck rounds, churn waves, hotcold reports; 0 = forever"},
    {"hot", offsetof(struct rf_wl_params, hot_mib), K_SIZE_MIB, W(RF_WL_HOTCOLD),
     "MiB of the hot set"},
    {"ro", offsetof(struct rf_wl_params, hot_ro), K_U64, W(RF_WL_HOTCOLD),
     "hotcold: 1 = the hot set is only read (filled once, never written)"},
    {"stream", offsetof(struct rf_wl_params, stream), K_U64, W(RF_WL_HOTCOLD),
     "hotcold: cold pages read after each pass over the hot set, in order"},
    {"pause", offsetof(struct rf_wl_params, pause_ms), K_U64,
     W(RF_WL_CHURN) | W(RF_WL_OSIMAGE) | W(RF_WL_IDLE),
     "ms between churn waves, osimage checksum passes (0: one), idle wake-ups (0: none)"},
    {"status", offsetof(struct rf_wl_params, arg), K_U64, W(RF_WL_CRASH),
     "crash=exit: the exit status"},
    {"report", offsetof(struct rf_wl_params, report_s), K_U64, W_ALL,
     "when done: print the guest memory manager's figures every N s"},
};

void vm_spec_help(FILE *f)
{
	fprintf(f, "  --vm keys: name=NAME mem=SIZE workload=W then=idle|exit console=on|off "
		   "thp=on|off\n");
	for (size_t i = 0; i < sizeof(param_keys) / sizeof(param_keys[0]); i++)
		fprintf(f, "    %-10s %s\n", param_keys[i].name, param_keys[i].help);
	fprintf(f, "    %-10s %s\n", "dir", "osimage: directory of the files to preload");
	fprintf(f, "    %-10s %s\n", "files", "osimage: glob of the file names (default *.so*)");
	fprintf(f, "    %-10s %s\n", "crash", "crash: pagefault|badmmio|ud|exit|badconsole");
	fprintf(f, "  workloads: idle dup osimage memcheck churn hotcold crash selftest\n");
	for (const struct vmm_module *const *m = vmm_modules; *m; m++) {
		const char *const *k = (*m)->vm_keys;

		if (!k || !*k)
			continue;
		fprintf(f, "  --vm keys of %s:", (*m)->name);
		for (; *k; k++)
			fprintf(f, " %s", *k);
		fprintf(f, "\n");
	}
}

static bool module_key(const char *key)
{
	for (const struct vmm_module *const *m = vmm_modules; *m; m++) {
		const char *const *k = (*m)->vm_keys;

		for (; k && *k; k++)
			if (!strcmp(*k, key))
				return true;
	}
	return false;
}

static int add_key(struct vmm_vm *vm, const char *k, size_t klen, const char *v, size_t vlen)
{
	if (vm->nr_keys == VMM_MAX_KEYS) {
		vmm_errorf("--vm: more than %d keys", VMM_MAX_KEYS);
		return -1;
	}
	vm->keys[vm->nr_keys].key = strndup(k, klen);
	vm->keys[vm->nr_keys].val = strndup(v, vlen);
	if (!vm->keys[vm->nr_keys].key || !vm->keys[vm->nr_keys].val) {
		vmm_errorf("out of memory");
		return -1;
	}
	for (unsigned int i = 0; i < vm->nr_keys; i++)
		if (!strcmp(vm->keys[i].key, vm->keys[vm->nr_keys].key)) {
			vmm_errorf("--vm: key %s given twice", vm->keys[i].key);
			vm->nr_keys++;
			return -1;
		}
	vm->nr_keys++;
	return 0;
}

static void set_defaults(struct vmm *vmm, struct vmm_vm *vm)
{
	struct rf_wl_params *p = &vm->params;

	if (!p->seed)
		p->seed = 1;
	switch (vm->workload) {
	case RF_WL_IDLE:
		if (!p->mib)
			p->mib = 4;
		break;
	case RF_WL_DUP:
		if (!p->mib)
			p->mib = 64;
		if (!vmm_vm_key(vm, "dup"))
			p->dup_pct = 50;
		if (!vmm_vm_key(vm, "zero"))
			p->zero_pct = 20;
		if (!p->templates)
			p->templates = 16;
		break;
	case RF_WL_OSIMAGE:
		if (!p->mib)
			p->mib = 64;
		if (!vm->preload_dir)
			vm->preload_dir = strdup(vmm->preload_dir ? vmm->preload_dir
								  : "/usr/lib/x86_64-linux-gnu");
		if (!vm->preload_glob)
			vm->preload_glob = strdup("*.so*");
		break;
	case RF_WL_MEMCHECK:
	case RF_WL_CHURN:
	case RF_WL_HOTCOLD:
		if (!p->mib)
			p->mib = 64;
		if (vm->workload == RF_WL_CHURN && !vmm_vm_key(vm, "pause"))
			p->pause_ms = 500;
		if (vm->workload == RF_WL_HOTCOLD && !p->hot_mib)
			p->hot_mib = 16;
		break;
	case RF_WL_SELFTEST:
		break;
	case RF_WL_CRASH:
		if (!p->crash)
			p->crash = RF_CRASH_PAGEFAULT;
		break;
	}
}

/* Key @k=@v of @vm, "on" or "off", into *@out: 0 or -1 (said). */
static int parse_on_off(const struct vmm_vm *vm, const char *k, const char *v, bool *out)
{
	if (strcmp(v, "on") && strcmp(v, "off")) {
		vmm_errorf("%s: %s=%s: expected on or off", vm->name, k, v);
		return -1;
	}
	*out = !strcmp(v, "on");
	return 0;
}

static int apply_key(struct vmm *vmm, struct vmm_vm *vm, const char *k, const char *v)
{
	uint64_t x;

	(void)vmm;
	if (!strcmp(k, "name") || !strcmp(k, "workload"))
		return 0; /* handled first */
	if (!strcmp(k, "mem")) {
		if (parse_size(v, &vm->mem_bytes)) {
			vmm_errorf("%s: mem=%s is not a size (e.g. 256M, 1G)", vm->name, v);
			return -1;
		}
		return 0;
	}
	if (!strcmp(k, "then")) {
		if (strcmp(v, "idle") && strcmp(v, "exit")) {
			vmm_errorf("%s: then=%s: expected idle or exit", vm->name, v);
			return -1;
		}
		vm->params.then_exit = !strcmp(v, "exit");
		return 0;
	}
	if (!strcmp(k, "thp"))
		return parse_on_off(vm, k, v, &vm->thp);
	if (!strcmp(k, "console"))
		return parse_on_off(vm, k, v, &vm->console_stdout);
	if (!strcmp(k, "dir") || !strcmp(k, "files")) {
		if (vm->workload != RF_WL_OSIMAGE) {
			vmm_errorf("%s: key %s applies to workload osimage only", vm->name, k);
			return -1;
		}
		if (!strcmp(k, "dir"))
			vm->preload_dir = strdup(v);
		else
			vm->preload_glob = strdup(v);
		return 0;
	}
	if (!strcmp(k, "crash")) {
		static const char *const kinds[] = {NULL, "pagefault", "badmmio",
						    "ud", "exit",      "badconsole"};

		if (vm->workload != RF_WL_CRASH) {
			vmm_errorf("%s: key crash applies to workload crash only", vm->name);
			return -1;
		}
		for (unsigned int i = 1; i < 6; i++)
			if (!strcmp(v, kinds[i]))
				vm->params.crash = i;
		if (!vm->params.crash) {
			vmm_errorf(
			    "%s: crash=%s: expected pagefault, badmmio, ud, exit or badconsole",
			    vm->name, v);
			return -1;
		}
		return 0;
	}
	for (size_t i = 0; i < sizeof(param_keys) / sizeof(param_keys[0]); i++) {
		const struct param_key *pk = &param_keys[i];

		if (strcmp(k, pk->name))
			continue;
		if (!(pk->workloads & W(vm->workload))) {
			vmm_errorf("%s: key %s does not apply to workload %s", vm->name, k,
				   workload_to_name(vm->workload));
			return -1;
		}
		if (pk->kind == K_SIZE_MIB) {
			if (parse_size(v, &x) == 0 && strpbrk(v, "kKmMgGtT"))
				x >>= 20;
			else if (parse_u64(v, &x))
				x = UINT64_MAX;
			if (x == 0 || x >= (RF_MAX_RAM >> 20)) {
				vmm_errorf(
				    "%s: %s=%s: expected MiB (e.g. 64) or a size (64M) from 1M "
				    "up to the RAM",
				    vm->name, k, v);
				return -1;
			}
		} else if (parse_u64(v, &x) || (pk->kind == K_PCT && x > 100)) {
			vmm_errorf("%s: %s=%s: expected %s", vm->name, k, v,
				   pk->kind == K_PCT ? "a percentage 0..100"
						     : "a non-negative integer");
			return -1;
		}
		*(uint64_t *)((char *)&vm->params + pk->off) = x;
		return 0;
	}
	if (module_key(k))
		return 0;
	vmm_errorf("%s: unknown key \"%s\" in --vm (see --help)", vm->name, k);
	return -1;
}

int vm_spec_parse(struct vmm *vmm, const char *spec)
{
	struct vmm_vm *vm;
	const char *s = spec, *name, *wl;

	if (vmm->nr_vms == VMM_MAX_VMS) {
		vmm_errorf("--vm: at most %d VMs", VMM_MAX_VMS);
		return -1;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		vmm_errorf("out of memory");
		return -1;
	}
	vm->vmm = vmm;
	vm->idx = vmm->nr_vms;
	vm->vmfd = vm->vcpufd = -1;
	vm->console_stdout = vmm->console_stdout;
	vmm->vms[vmm->nr_vms++] = vm; /* freed with the others on error */
	while (*s) {
		const char *end = strchr(s, ','), *eq;
		size_t len = end ? (size_t)(end - s) : strlen(s);

		eq = memchr(s, '=', len);
		if (!len || !eq || eq == s) {
			vmm_errorf("--vm %s: expected key=value pairs separated by commas", spec);
			return -1;
		}
		if (add_key(vm, s, (size_t)(eq - s), eq + 1, len - (size_t)(eq - s) - 1))
			return -1;
		s += len + (end ? 1 : 0);
	}
	name = vmm_vm_key(vm, "name");
	if (name) {
		if (!*name || strlen(name) >= sizeof(vm->name) || strpbrk(name, " /\t")) {
			vmm_errorf(
			    "--vm: name \"%s\" must be 1..31 characters without spaces or '/'",
			    name);
			return -1;
		}
		snprintf(vm->name, sizeof(vm->name), "%s", name);
	} else {
		snprintf(vm->name, sizeof(vm->name), "vm%u", vm->idx);
	}
	for (unsigned int i = 0; i + 1 < vmm->nr_vms; i++)
		if (!strcmp(vmm->vms[i]->name, vm->name)) {
			vmm_errorf("--vm: two VMs named %s", vm->name);
			return -1;
		}
	wl = vmm_vm_key(vm, "workload");
	vm->workload = RF_WL_IDLE;
	if (wl) {
		vm->workload = 0;
		for (size_t i = 0; i < sizeof(workloads) / sizeof(workloads[0]); i++)
			if (!strcmp(wl, workloads[i].name))
				vm->workload = workloads[i].wl;
		if (!vm->workload) {
			vmm_errorf(
			    "%s: unknown workload \"%s\" (idle, dup, osimage, memcheck, churn, "
			    "hotcold, crash, selftest)",
			    vm->name, wl);
			return -1;
		}
	}
	vm->mem_bytes = 256ull << 20;
	for (unsigned int i = 0; i < vm->nr_keys; i++)
		if (apply_key(vmm, vm, vm->keys[i].key, vm->keys[i].val))
			return -1;
	set_defaults(vmm, vm);
	if (vm->params.dup_pct + vm->params.zero_pct > 100) {
		vmm_errorf("%s: dup=%llu + zero=%llu exceed 100 percent", vm->name,
			   (unsigned long long)vm->params.dup_pct,
			   (unsigned long long)vm->params.zero_pct);
		return -1;
	}
	if (vm->workload == RF_WL_DUP && !vm->params.templates) {
		vmm_errorf("%s: templates must be at least 1", vm->name);
		return -1;
	}
	if (vm->mem_bytes % (2ull << 20) || vm->mem_bytes >= RF_MAX_RAM) {
		vmm_errorf("%s: mem=%s must be a multiple of 2 MiB below 64 GiB", vm->name,
			   vmm_vm_key(vm, "mem"));
		return -1;
	}
	if (vm->workload == RF_WL_OSIMAGE && !vmm->boot &&
	    preload_check(vm->name, vm->preload_dir, vm->preload_glob))
		return -1;
	return 0;
}

int vm_spec_check_memory(struct vmm *vmm, struct vmm_vm *vm)
{
	const struct rf_wl_params *p = &vm->params;
	uint64_t need = (vmm->image_end + (2ull << 20) - 1) & ~((2ull << 20) - 1);
	uint64_t work = 0;

	switch (vm->workload) {
	case RF_WL_HOTCOLD:
		work = (p->mib + p->hot_mib) << 20;
		break;
	case RF_WL_CRASH:
	case RF_WL_SELFTEST:
		break;
	default:
		work = p->mib << 20;
		break;
	}
	/* Memory manager bitmap (a bit per page plus per-block counters), the
	 * workload's page list (8 bytes per page), and 1 MiB to spare. */
	need += work + vm->mem_bytes / 4096 / 8 + 4096 * 2 + work / 512 + (1ull << 20);
	if (need > vm->mem_bytes) {
		vmm_errorf("%s: RAM too small: mem=%lluM, workload %s with mib=%llu needs at least "
			   "%lluM",
			   vm->name, (unsigned long long)(vm->mem_bytes >> 20),
			   workload_to_name(vm->workload), (unsigned long long)p->mib,
			   (unsigned long long)((need + (2ull << 20) - 1) >> 20 & ~1ull));
		return -1;
	}
	return 0;
}
