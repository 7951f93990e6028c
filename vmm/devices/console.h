/* SPDX-License-Identifier: MIT */
/*
 * The guest console (console.c): lines from the debug device (native guests)
 * or the UART (Linux guests), to the VM's log file and, when asked, stdout.
 */
#ifndef VMM_DEVICES_CONSOLE_H
#define VMM_DEVICES_CONSOLE_H

struct vmm_vm;

/* The per-VM log file, --log-dir/NAME.log. 0 or -1 (message printed). */
int vm_open_console(struct vmm_vm *vm);
/* Close and delete it (setup failed). */
void vm_remove_console(struct vmm_vm *vm);
/* One console line from the guest or the VMM, to the log and maybe stdout.
 * The VM's vCPU thread only. */
void console_line(struct vmm_vm *vm, const char *line);

#endif
