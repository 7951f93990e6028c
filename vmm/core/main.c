/* SPDX-License-Identifier: MIT */
/*
 * ramfold-vmm: the demo VMM. Options, the order of setup, the main loop
 * (control socket, table, module ticks) and teardown. Every error before
 * the guests start is one line on stderr and a non-zero exit, with nothing
 * left behind: log files, the CSV and the control socket are created only
 * once every VM is set up.
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <linux/kvm.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/module.h"
#include "core/options.h"
#include "core/util.h"
#include "core/vm_internal.h"
#include "ctl/ctl.h"
#include "ctl/table.h"
#include "devices/console.h"
#include "native/guest_image.h"

static struct vmm the_vmm;
static int lib_log_level = RF_LOG_WARN;

static void on_signal(int sig)
{
	(void)sig;
	atomic_store(&the_vmm.quit, true);
	vmm_wake(&the_vmm);
}

static void lib_log(void *arg, enum rf_log_level level, const char *msg)
{
	(void)arg;
	if ((int)level <= lib_log_level)
		vmm_errorf("libramfold: %s", msg);
}

static void usage(FILE *f)
{
	fprintf(
	    f,
	    "usage: ramfold-vmm [OPTIONS] --vm name=NAME,mem=SIZE,workload=W[,key=value...] ...\n"
	    "       ramfold-vmm ctl SOCKET COMMAND [key=value...|JSON]\n"
	    "\n"
	    "Runs freestanding guests in KVM VMs whose RAM comes from libramfold, one vCPU\n"
	    "thread per VM, and shows their memory as the kernel measures it.\n"
	    "\n"
	    "options:\n"
	    "  --vm SPEC            a VM (repeatable); keys below\n"
	    "  --scenario FILE      one VM spec per line ('#' starts a comment)\n"
	    "  --guest PATH         guest image (default: guest/ramfold-guest next to the binary)\n"
	    "  --kvm PATH           KVM device (default /dev/kvm)\n"
	    "  --ctl PATH           control socket (JSON lines; see docs/vmm.md)\n"
	    "  --log-dir DIR        per-VM console logs DIR/NAME.log (created if missing)\n"
	    "  --console            echo guest console lines on stdout, prefixed \"NAME: \"\n"
	    "  --stats-csv FILE     memory rows every second, as CSV\n"
	    "  --table, --no-table  live memory table (default: when stdout is a terminal)\n"
	    "  --duration SEC       stop the guests after SEC seconds (default: run until\n"
	    "                       every guest has ended, quit, or SIGINT/SIGTERM)\n"
	    "  --preload-dir DIR    default directory of osimage files\n"
	    "  --hide-features LIST don't use these kernel features although present\n"
	    "                       (uffd-move,pagemap-scan): the paths of Linux < 6.7\n"
	    "  --quiet              no status lines (READY times, exits)\n"
	    "  --verbose            library messages down to info\n"
	    "  --help, --version\n");
	for (const struct vmm_module *const *m = vmm_modules; *m; m++)
		for (const struct vmm_option *o = (*m)->options; o && o->name; o++) {
			char left[80];

			snprintf(left, sizeof(left), "--%s%s%s", o->name, o->arg ? " " : "",
				 o->arg ? o->arg : "");
			fprintf(f, "  %-22s %s\n", left, o->help);
		}
	fprintf(f, "\n");
	vm_spec_help(f);
	fprintf(f, "\nexit status: 0 when every guest ended cleanly (or was stopped), 1 when one\n"
		   "faulted or exited non-zero, 2 on bad arguments or setup errors.\n");
}

static const struct vmm_option *find_module_option(const char *name)
{
	for (const struct vmm_module *const *m = vmm_modules; *m; m++)
		for (const struct vmm_option *o = (*m)->options; o && o->name; o++)
			if (!strcmp(o->name, name))
				return o;
	return NULL;
}

static int read_scenario(struct vmm *vmm, const char *path)
{
	char line[4096];
	FILE *f = fopen(path, "re");

	if (!f) {
		vmm_errorf("--scenario %s: %s", path, strerror(errno));
		return -1;
	}
	while (fgets(line, sizeof(line), f)) {
		char *s = line, *e;

		if ((e = strchr(s, '#')))
			*e = 0;
		while (*s == ' ' || *s == '\t')
			s++;
		e = s + strlen(s);
		while (e > s && (e[-1] == '\n' || e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
			*--e = 0;
		if (!*s)
			continue;
		if (vm_spec_parse(vmm, s)) {
			fclose(f);
			return -1;
		}
	}
	fclose(f);
	return 0;
}

/* Built-in options: 1 if it takes a value, 0 for a flag, -1 if unknown. */
static int builtin_option(const char *name)
{
	static const char *const with_value[] = {
	    "vm",      "scenario",  "guest",	   "kvm",      "ctl",
	    "log-dir", "stats-csv", "preload-dir", "duration", "hide-features"};
	static const char *const flags[] = {"console", "table", "no-table", "quiet", "verbose"};

	for (size_t i = 0; i < sizeof(with_value) / sizeof(with_value[0]); i++)
		if (!strcmp(name, with_value[i]))
			return 1;
	for (size_t i = 0; i < sizeof(flags) / sizeof(flags[0]); i++)
		if (!strcmp(name, flags[i]))
			return 0;
	return -1;
}

/* Options with values accept "--opt value" and "--opt=value". */
static int parse_args(struct vmm *vmm, int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		char *a = argv[i], *val = NULL, name[64];
		const char *eq;
		const struct vmm_option *mo;
		bool needs;

		if (strncmp(a, "--", 2)) {
			vmm_errorf("unexpected argument \"%s\" (see --help)", a);
			return -1;
		}
		eq = strchr(a, '=');
		snprintf(name, sizeof(name), "%.*s", (int)(eq ? eq - a - 2 : (long)strlen(a) - 2),
			 a + 2);
		if (!strcmp(name, "help")) {
			usage(stdout);
			exit(0);
		}
		if (!strcmp(name, "version")) {
			printf("ramfold-vmm %s (libramfold %s)\n", RF_VERSION_STRING, rf_version());
			exit(0);
		}
		mo = find_module_option(name);
		if (mo) {
			needs = mo->arg != NULL;
		} else {
			int b = builtin_option(name);

			if (b < 0) {
				vmm_errorf("unknown option --%s (see --help)", name);
				return -1;
			}
			needs = b;
		}
		if (needs) {
			if (eq)
				val = (char *)eq + 1;
			else if (i + 1 < argc)
				val = argv[++i];
			else {
				vmm_errorf("--%s needs a value", name);
				return -1;
			}
		} else if (eq) {
			vmm_errorf("--%s takes no value", name);
			return -1;
		}
		if (mo) {
			if (mo->parse(vmm, val))
				return -1;
		} else if (!strcmp(name, "vm")) {
			if (vm_spec_parse(vmm, val))
				return -1;
		} else if (!strcmp(name, "scenario")) {
			if (read_scenario(vmm, val))
				return -1;
		} else if (!strcmp(name, "guest")) {
			vmm->guest_path = val;
		} else if (!strcmp(name, "kvm")) {
			vmm->kvm_path = val;
		} else if (!strcmp(name, "ctl")) {
			vmm->ctl_path = val;
		} else if (!strcmp(name, "log-dir")) {
			vmm->log_dir = val;
		} else if (!strcmp(name, "stats-csv")) {
			vmm->csv_path = val;
		} else if (!strcmp(name, "hide-features")) {
			vmm->hide_features = val;
		} else if (!strcmp(name, "preload-dir")) {
			vmm->preload_dir = val;
		} else if (!strcmp(name, "duration")) {
			char *end;

			vmm->duration_s = strtod(val, &end);
			if (*end || !(vmm->duration_s > 0)) {
				vmm_errorf("--duration %s: expected seconds > 0", val);
				return -1;
			}
		} else if (!strcmp(name, "console")) {
			vmm->console_stdout = true;
			for (unsigned int k = 0; k < vmm->nr_vms; k++)
				if (!vmm_vm_key(vmm->vms[k], "console"))
					vmm->vms[k]->console_stdout = true;
		} else if (!strcmp(name, "table")) {
			vmm->table_mode = 1;
		} else if (!strcmp(name, "no-table")) {
			vmm->table_mode = 0;
		} else if (!strcmp(name, "quiet")) {
			vmm->quiet = true;
		} else if (!strcmp(name, "verbose")) {
			lib_log_level = RF_LOG_INFO;
		} else {
			vmm_errorf("unknown option --%s (see --help)", name);
			return -1;
		}
	}
	return 0;
}

static char *default_guest_path(void)
{
	static char path[PATH_MAX + 32];
	char exe[PATH_MAX];
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);

	if (n <= 0)
		return "build/guest/ramfold-guest";
	exe[n] = 0;
	snprintf(path, sizeof(path), "%s/guest/ramfold-guest", dirname(exe));
	return path;
}

static int open_kvm(struct vmm *vmm)
{
	struct kvm_cpuid2 *c;
	int ver;

	vmm->kvm_fd = open(vmm->kvm_path, O_RDWR | O_CLOEXEC);
	if (vmm->kvm_fd < 0) {
		vmm_errorf("%s: %s (KVM is needed to run guests)", vmm->kvm_path, strerror(errno));
		return -1;
	}
	ver = ioctl(vmm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (ver != KVM_API_VERSION) {
		vmm_errorf("%s: not a usable KVM device (API version %d, expected %d)",
			   vmm->kvm_path, ver, KVM_API_VERSION);
		return -1;
	}
	vmm->run_size = ioctl(vmm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vmm->run_size <= 0) {
		vmm_errorf("%s: KVM_GET_VCPU_MMAP_SIZE: %s", vmm->kvm_path, strerror(errno));
		return -1;
	}
	c = calloc(1, sizeof(*c) + 256 * sizeof(struct kvm_cpuid_entry2));
	if (!c) {
		vmm_errorf("out of memory");
		return -1;
	}
	c->nent = 256;
	if (ioctl(vmm->kvm_fd, KVM_GET_SUPPORTED_CPUID, c)) {
		vmm_errorf("%s: KVM_GET_SUPPORTED_CPUID: %s", vmm->kvm_path, strerror(errno));
		free(c);
		return -1;
	}
	vmm->cpuid = c;
	return 0;
}

static int make_dirs(const char *dir)
{
	char tmp[PATH_MAX];

	snprintf(tmp, sizeof(tmp), "%s", dir);
	for (char *p = tmp + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = 0;
		if (mkdir(tmp, 0755) && errno != EEXIST)
			return -1;
		*p = '/';
	}
	return mkdir(tmp, 0755) && errno != EEXIST ? -1 : 0;
}

static bool all_ended(struct vmm *vmm)
{
	for (unsigned int i = 0; i < vmm->nr_vms; i++)
		if (atomic_load(&vmm->vms[i]->state) < VMM_VM_EXITED)
			return false;
	return true;
}

static void main_loop(struct vmm *vmm)
{
	uint64_t next_tick = now_ns() + 1000000000ull;
	uint64_t deadline =
	    vmm->duration_s > 0 ? vmm->start_ns + (uint64_t)(vmm->duration_s * 1e9) : UINT64_MAX;

	table_tick(vmm, false);
	while (!atomic_load(&vmm->quit) && !all_ended(vmm)) {
		struct pollfd fds[32];
		uint64_t now = now_ns(), wake = next_tick < deadline ? next_tick : deadline;
		int n = 0, timeout = wake > now ? (int)((wake - now) / 1000000) + 1 : 0;

		if (now >= deadline) {
			if (!vmm->quiet)
				vmm_printf("ramfold-vmm: --duration %.0f s reached, stopping",
					   vmm->duration_s);
			break;
		}
		fds[n++] = (struct pollfd){.fd = vmm->wake_fd, .events = POLLIN};
		n += vmm_ctl_pollfds(fds + n, 31);
		if (poll(fds, (nfds_t)n, timeout) > 0) {
			if (fds[0].revents & POLLIN) {
				uint64_t v;

				if (read(vmm->wake_fd, &v, sizeof(v)) < 0) {
					/* spurious wake-up */
				}
			}
			vmm_ctl_process(vmm);
		}
		if (now_ns() >= next_tick) {
			table_tick(vmm, false);
			for (const struct vmm_module *const *m = vmm_modules; *m; m++)
				if ((*m)->tick)
					(*m)->tick(vmm);
			next_tick += 1000000000ull;
			if (next_tick < now_ns())
				next_tick = now_ns() + 1000000000ull;
		}
	}
}

int main(int argc, char **argv)
{
	struct vmm *vmm = &the_vmm;
	struct rf_engine_config ec;
	int rc = 2, started = 0;
	bool failed = false, made_log_dir = false;

	vmm->wake_fd = -1;
	vmm->kvm_fd = -1;
	vmm->table_mode = -1;
	if (argc >= 2 && !strcmp(argv[1], "ctl"))
		return vmm_ctl_client(argc - 2, argv + 2);
	vmm_ctl_register_builtins();
	if (parse_args(vmm, argc, argv))
		goto out;
	if (!vmm->nr_vms) {
		vmm_errorf("no VM given: add --vm name=NAME,mem=SIZE,workload=W (see --help)");
		goto out;
	}
	if (!vmm->guest_path)
		vmm->guest_path = default_guest_path();
	if (!vmm->kvm_path)
		vmm->kvm_path = "/dev/kvm";
	if (!vmm->boot && guest_image_load(vmm, vmm->guest_path))
		goto out;
	for (unsigned int i = 0; i < vmm->nr_vms; i++)
		if (vm_spec_check_memory(vmm, vmm->vms[i]))
			goto out;
	if (open_kvm(vmm))
		goto out;

	rf_engine_config_init(&ec);
	ec.dev_kvm_path = vmm->kvm_path;
	ec.log = lib_log;
	ec.log_level = RF_LOG_DEBUG;
	if (vmm->hide_features && rf_engine_config_hide(&ec, vmm->hide_features)) {
		vmm_errorf("--hide-features %s: expected a list of uffd-move, pagemap-scan",
			   vmm->hide_features);
		goto out;
	}
	for (const struct vmm_module *const *m = vmm_modules; *m; m++)
		if ((*m)->engine_config && (*m)->engine_config(vmm, &ec))
			goto out;
	if ((rc = rf_engine_new(&ec, &vmm->engine))) {
		vmm_errorf("rf_engine_new: %s", strerror(-rc));
		rc = 2;
		goto out;
	}
	rc = 2;
	for (const struct vmm_module *const *m = vmm_modules; *m; m++)
		if ((*m)->start && (*m)->start(vmm))
			goto out;
	for (unsigned int i = 0; i < vmm->nr_vms; i++)
		if (vm_setup(vmm, vmm->vms[i]))
			goto out;

	/* Everything checked: now create files and start. */
	vmm->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (vmm->wake_fd < 0) {
		vmm_errorf("eventfd: %s", strerror(errno));
		goto out;
	}
	/* Socket first, files after: a failure removes whatever was created. */
	if (vmm->ctl_path && vmm_ctl_listen(vmm, vmm->ctl_path))
		goto out;
	if (vmm->log_dir) {
		struct stat st;

		made_log_dir = stat(vmm->log_dir, &st) != 0;
		if (make_dirs(vmm->log_dir)) {
			vmm_errorf("--log-dir %s: %s", vmm->log_dir, strerror(errno));
			goto out;
		}
	}
	if (table_open(vmm)) {
		if (made_log_dir)
			rmdir(vmm->log_dir);
		goto out;
	}
	for (unsigned int i = 0; i < vmm->nr_vms; i++) {
		if (vm_open_console(vmm->vms[i])) {
			table_close();
			if (vmm->csv_path)
				unlink(vmm->csv_path);
			for (unsigned int k = 0; k < i; k++)
				vm_remove_console(vmm->vms[k]);
			if (made_log_dir)
				rmdir(vmm->log_dir);
			goto out;
		}
	}
	vcpu_signal_init();
	signal(SIGPIPE, SIG_IGN);
	{
		struct sigaction sa = {.sa_handler = on_signal};

		sigemptyset(&sa.sa_mask);
		sigaction(SIGINT, &sa, NULL);
		sigaction(SIGTERM, &sa, NULL);
	}
	vmm->start_ns = now_ns();
	for (unsigned int i = 0; i < vmm->nr_vms; i++, started++)
		if (vm_start(vmm->vms[i]))
			break;
	if (started == (int)vmm->nr_vms)
		main_loop(vmm);
	else
		failed = true;
	for (unsigned int i = 0; i < vmm->nr_vms; i++)
		vmm_vm_request_stop(vmm->vms[i]);
	for (unsigned int i = 0; i < vmm->nr_vms; i++)
		vm_join(vmm->vms[i]);
	table_tick(vmm, true);
	rc = failed ? 2 : 0;
	for (unsigned int i = 0; i < vmm->nr_vms; i++) {
		struct vmm_vm *vm = vmm->vms[i];
		int st = atomic_load(&vm->state);

		if (st == VMM_VM_FAULTED || (st == VMM_VM_EXITED && vm->exit_status))
			rc = rc ? rc : 1;
	}
out:
	/* In table order: core/module_table.c says why. */
	for (const struct vmm_module *const *m = vmm_modules; *m; m++)
		if (vmm->engine && (*m)->stop)
			(*m)->stop(vmm);
	vmm_ctl_close();
	table_close();
	for (unsigned int i = 0; i < vmm->nr_vms; i++)
		vm_destroy(vmm->vms[i]);
	rf_engine_free(vmm->engine);
	guest_image_free(vmm);
	free(vmm->cpuid);
	if (vmm->kvm_fd >= 0)
		close(vmm->kvm_fd);
	if (vmm->wake_fd >= 0)
		close(vmm->wake_fd);
	return rc;
}
