/* SPDX-License-Identifier: MIT */
/*
 * Guest console lines: each goes to the VM's log file (with the time since
 * the VM started) and, when asked, to stdout prefixed with the VM name. The
 * line "READY" marks the workload's steady state: its time is recorded and
 * announced.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "core/util.h"
#include "core/vmm.h"
#include "devices/console.h"

static void log_path(struct vmm_vm *vm, char *path, size_t len)
{
	snprintf(path, len, "%s/%s.log", vm->vmm->log_dir, vm->name);
}

void vm_remove_console(struct vmm_vm *vm)
{
	char path[4096];

	if (!vm->console_log)
		return;
	fclose(vm->console_log);
	vm->console_log = NULL;
	log_path(vm, path, sizeof(path));
	unlink(path);
}

int vm_open_console(struct vmm_vm *vm)
{
	char path[4096];

	if (!vm->vmm->log_dir)
		return 0;
	log_path(vm, path, sizeof(path));
	vm->console_log = fopen(path, "we");
	if (!vm->console_log) {
		vmm_errorf("%s: console log %s: %s", vm->name, path, strerror(errno));
		return -1;
	}
	setvbuf(vm->console_log, NULL, _IOLBF, 0);
	return 0;
}

void console_line(struct vmm_vm *vm, const char *line)
{
	uint64_t t = now_ns() - vm->start_ns;
	bool ready = !strcmp(line, "READY") && !atomic_load(&vm->ready_ns);

	/* The state changes before the line is shown, so whoever sees the line
	 * (a test, a script) finds the VM ready when it asks. */
	if (ready) {
		atomic_store(&vm->ready_ns, now_ns());
		atomic_store(&vm->state, VMM_VM_READY);
	}
	atomic_fetch_add(&vm->console_lines, 1);
	if (vm->console_log)
		fprintf(vm->console_log, "%8.3f %s\n", t / 1e9, line);
	if (vm->console_stdout)
		vmm_printf("%s: %s", vm->name, line);
	if (ready && !vm->vmm->quiet)
		vmm_printf("%s: READY after %.1f ms", vm->name, t / 1e6);
}
