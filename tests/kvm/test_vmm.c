/* SPDX-License-Identifier: MIT */
/*
 * The demo VMM with its freestanding guests under real KVM: every workload
 * runs and reports its result, memcheck reports clean rounds (and notices a
 * corrupted word, so it can fail), four VMs run at once in one process, a
 * faulting guest ends alone, and bad input is refused with one clear line,
 * a non-zero exit and nothing left behind.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rf_test.h"
#include "vmm_proc.h"

#define require_kvm() rf_require(access("/dev/kvm", R_OK | W_OK) == 0, "/dev/kvm not accessible")

static void dump_on_failure(struct vmm_proc *p, int rc, const char *what)
{
	if (rc)
		print_message("---- VMM output (%s: %d) ----\n%s\n----\n", what, rc,
			      p->out ? p->out : "");
}

static uint64_t result_u64(struct vmm_proc *p, const char *needle, const char *key)
{
	char line[512];
	uint64_t v = ~0ull;

	if (vmm_proc_find_line(p, needle, line, sizeof(line)) || vmm_line_u64(line, key, &v))
		fail_msg("no %s= in a line with \"%s\"", key, needle);
	return v;
}

static void test_workloads_report_results(void **state)
{
	const char *args[] = {
	    "--vm", "name=idle,mem=32M,workload=idle,then=exit",
	    "--vm", "name=dup,mem=128M,workload=dup,mib=64,dup=50,zero=20,seed=7,then=exit",
	    "--vm", "name=os,mem=128M,workload=osimage,mib=48,then=exit",
	    "--vm", "name=mc,mem=96M,workload=memcheck,mib=64,rounds=3,then=exit",
	    "--vm", "name=churn,mem=96M,workload=churn,mib=48,rounds=2,pause=10,then=exit",
	    "--vm", "name=hc,mem=96M,workload=hotcold,mib=32,hot=8,rounds=1,then=exit",
	    "--vm", "name=st,mem=96M,workload=selftest,then=exit",
	    NULL};
	struct vmm_proc p;
	uint64_t pages, d, u, z;
	int rc;

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	rc = vmm_proc_wait_exit(&p, 60000);
	dump_on_failure(&p, rc, "exit status");
	assert_int_equal(rc, 0);

	assert_non_null(strstr(p.out, "idle: RESULT idle base_mib=4"));

	pages = result_u64(&p, "dup: RESULT dup", "pages");
	d = result_u64(&p, "dup: RESULT dup", "dup");
	u = result_u64(&p, "dup: RESULT dup", "unique");
	z = result_u64(&p, "dup: RESULT dup", "zero");
	assert_int_equal(pages, 64 * 256);
	assert_int_equal(d + u + z, pages);
	/* 50/30/20 percent, within a few percent for 16384 draws */
	assert_in_range(d, pages * 45 / 100, pages * 55 / 100);
	assert_in_range(z, pages * 15 / 100, pages * 25 / 100);

	assert_true(result_u64(&p, "os: RESULT osimage", "files") > 0);
	assert_in_range(result_u64(&p, "os: RESULT osimage", "pages"), 1, 48 * 256);

	assert_non_null(strstr(p.out, "mc: RESULT memcheck rounds=3 clean=3 bad_rounds=0 "
				      "first_bad=none"));
	assert_non_null(strstr(p.out, "churn: RESULT churn waves=2 mib=48"));
	assert_true(result_u64(&p, "hc: RESULT hotcold", "hot_MBps") > 0);
	/* The guest memory manager's own contract checks. */
	assert_true(result_u64(&p, "st: RESULT selftest", "checks") > 1000);
	assert_int_equal(result_u64(&p, "st: RESULT selftest", "failed"), 0);
	for (const char *vm = "idle\0dup\0os\0mc\0churn\0hc\0st\0"; *vm; vm += strlen(vm) + 1) {
		char needle[64];

		snprintf(needle, sizeof(needle), "%s: guest exited with status 0", vm);
		assert_non_null(strstr(p.out, needle));
	}
	vmm_proc_stop(&p);
	vmm_proc_free(&p);
}

/* Two osimage VMs on the same files report the same checksum. */
static void test_osimage_identical_across_vms(void **state)
{
	const char *args[] = {"--vm", "name=a,mem=96M,workload=osimage,mib=40,then=exit", "--vm",
			      "name=b,mem=128M,workload=osimage,mib=40,then=exit", NULL};
	char la[512], lb[512];
	struct vmm_proc p;

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	assert_int_equal(vmm_proc_wait_exit(&p, 30000), 0);
	assert_int_equal(vmm_proc_find_line(&p, "a: RESULT osimage", la, sizeof(la)), 0);
	assert_int_equal(vmm_proc_find_line(&p, "b: RESULT osimage", lb, sizeof(lb)), 0);
	assert_string_equal(strstr(la, "files="), strstr(lb, "files="));
	vmm_proc_stop(&p);
	vmm_proc_free(&p);
}

static void test_memcheck_detects_corruption(void **state)
{
	const char *args[] = {"--debug-ctl", "--vm", "name=mc,mem=64M,workload=memcheck,mib=48",
			      NULL};
	const uint64_t gpa = 32ull << 20;
	char req[256], reply[512], line[512];
	struct vmm_proc p;
	uint64_t bad_gpa;
	int rc;

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	rc = vmm_proc_wait_output(&p, "mc: memcheck: rounds=", 20000);
	dump_on_failure(&p, rc, "first rounds");
	assert_int_equal(rc, 0);
	assert_int_equal(vmm_proc_count(&p, "BAD"), 0);
	snprintf(req, sizeof(req),
		 "{\"execute\":\"debug-poke\",\"arguments\":{\"vm\":\"mc\",\"gpa\":%llu,"
		 "\"value\":12345}}",
		 (unsigned long long)gpa);
	assert_int_equal(vmm_proc_ctl(&p, req, reply, sizeof(reply), 5000), 0);
	assert_string_equal(reply, "{\"return\":{}}");
	rc = vmm_proc_wait_output(&p, "mc: memcheck: round", 100);
	rc = vmm_proc_wait_output(&p, "BAD: 1 bad words", 20000);
	dump_on_failure(&p, rc, "BAD line");
	assert_int_equal(rc, 0);
	assert_int_equal(vmm_proc_find_line(&p, "BAD: 1 bad words", line, sizeof(line)), 0);
	assert_int_equal(vmm_line_u64(line, "(gpa", &bad_gpa), -ENOENT);
	assert_non_null(strstr(line, "(gpa 0x2000000)"));
	assert_non_null(strstr(line, "got 0x3039"));
	/* The next rounds are clean again: the word was rewritten. */
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

static void test_four_vms_concurrently(void **state)
{
	const char *args[] = {"--vm", "name=v0,mem=256M,workload=memcheck,mib=128",
			      "--vm", "name=v1,mem=256M,workload=memcheck,mib=128",
			      "--vm", "name=v2,mem=256M,workload=memcheck,mib=128",
			      "--vm", "name=v3,mem=256M,workload=memcheck,mib=128",
			      NULL};
	char reply[4096], line[256];
	struct vmm_proc p;
	unsigned int before[4];

	(void)state;
	require_kvm();
	assert_int_equal(vmm_proc_start(&p, args), 0);
	for (int i = 0; i < 4; i++) {
		char vm[32];
		int rc;

		snprintf(vm, sizeof(vm), "v%d", i);
		rc = vmm_proc_wait_ready(&p, vm, 30000);
		dump_on_failure(&p, rc, vm);
		assert_int_equal(rc, 0);
		snprintf(vm, sizeof(vm), "v%d: READY after", i);
		if (vmm_proc_wait_output(&p, vm, 2000) == 0 &&
		    vmm_proc_find_line(&p, vm, line, sizeof(line)) == 0)
			print_message("%s\n", line);
	}
	assert_int_equal(
	    vmm_proc_ctl(&p, "{\"execute\":\"query-vms\"}", reply, sizeof(reply), 5000), 0);
	assert_int_equal(vmm_proc_count(&p, "guest fault"), 0);
	for (int i = 0; i < 4; i++) {
		char needle[64];

		snprintf(needle, sizeof(needle), "{\"name\":\"v%d\",\"state\":\"ready\"", i);
		assert_non_null(strstr(reply, needle));
		snprintf(needle, sizeof(needle), "v%d: memcheck: rounds=", i);
		before[i] = vmm_proc_count(&p, needle);
	}
	/* All four keep making progress at the same time. */
	for (int i = 0; i < 4; i++) {
		char needle[64];

		snprintf(needle, sizeof(needle), "v%d: memcheck: rounds=", i);
		for (int t = 0; t < 300 && vmm_proc_count(&p, needle) <= before[i]; t++)
			vmm_proc_wait_output(&p, "\x01never", 20);
		assert_true(vmm_proc_count(&p, needle) > before[i]);
	}
	assert_int_equal(vmm_proc_count(&p, "BAD"), 0);
	assert_int_equal(vmm_proc_stop(&p), 0);
	vmm_proc_free(&p);
}

static void check_fault_alone(const char *kind, const char *expect)
{
	char spec[128], reply[4096];
	const char *args[] = {"--vm", "name=good,mem=32M,workload=idle", "--vm", spec, NULL};
	struct vmm_proc p;
	int rc;

	snprintf(spec, sizeof(spec), "name=bad,mem=32M,workload=crash,crash=%s", kind);
	assert_int_equal(vmm_proc_start(&p, args), 0);
	rc = vmm_proc_wait_output(&p, "bad: guest fault: ", 20000);
	dump_on_failure(&p, rc, kind);
	assert_int_equal(rc, 0);
	assert_int_equal(vmm_proc_wait_output(&p, expect, 1000), 0);
	assert_int_equal(vmm_proc_wait_output(&p, "the others keep running", 1000), 0);
	assert_int_equal(vmm_proc_wait_ready(&p, "good", 20000), 0);
	/* The other VM is still running and answering. */
	assert_int_equal(
	    vmm_proc_ctl(&p, "{\"execute\":\"query-vms\"}", reply, sizeof(reply), 5000), 0);
	if (!strstr(reply, "{\"name\":\"good\",\"state\":\"ready\"") ||
	    !strstr(reply, "{\"name\":\"bad\",\"state\":\"faulted\""))
		fail_msg("%s: query-vms: %s\n%s", kind, reply, p.out);
	/* Exit status 1: a VM faulted. */
	assert_int_equal(vmm_proc_stop(&p), 1);
	vmm_proc_free(&p);
}

static void test_fault_ends_vm_alone(void **state)
{
	(void)state;
	require_kvm();
	check_fault_alone("pagefault", "triple fault");
	check_fault_alone("ud", "triple fault");
	check_fault_alone("badmmio", "unknown MMIO address 0x100003f000");
}

/* Console lines are guest input: addresses outside RAM are refused, a line
 * running into the end of RAM is cut there, control bytes are replaced;
 * the VM keeps running and exits cleanly. */
static void test_bad_console_lines(void **state)
{
	const char *args[] = {"--vm", "name=h,mem=32M,workload=crash,crash=badconsole", NULL};
	struct vmm_proc p;
	int rc;

	(void)state;
	require_kvm();
	/* The guest is done in milliseconds: the VMM may have exited before
	 * its control socket was first asked (-ESRCH), which is fine here. */
	rc = vmm_proc_start(&p, args);
	assert_true(rc == 0 || rc == -ESRCH);
	assert_int_equal(vmm_proc_wait_exit(&p, 20000), 0);
	assert_int_equal(vmm_proc_count(&p, "h: (console: line address outside guest RAM)\n"), 2);
	assert_non_null(strstr(p.out, "h: 12345678\n"));
	assert_non_null(strstr(p.out, "h: bell? esc?[2J tab? del? high? end\n"));
	assert_non_null(strstr(p.out, "h: crash: still alive after bad console lines"));
	assert_non_null(strstr(p.out, "h: guest exited with status 0"));
	vmm_proc_stop(&p);
	vmm_proc_free(&p);
}

/* Run the VMM with @args, expect exit status 2 and @expect on its output,
 * and nothing created in a scratch directory passed as log dir/CSV/socket. */
static void expect_refused(const char *const *extra, const char *expect)
{
	char dir[] = "/tmp/rf-vmm-refuse.XXXXXX", logdir[96], csv[96], sock[96];
	const char *args[64];
	struct vmm_proc p;
	struct stat st;
	int n = 0, rc;

	assert_non_null(mkdtemp(dir));
	snprintf(logdir, sizeof(logdir), "%s/logs", dir);
	snprintf(csv, sizeof(csv), "%s/stats.csv", dir);
	snprintf(sock, sizeof(sock), "%s/ctl.sock", dir);
	args[n++] = "--no-table";
	args[n++] = "--log-dir";
	args[n++] = logdir;
	args[n++] = "--stats-csv";
	args[n++] = csv;
	args[n++] = "--ctl";
	args[n++] = sock;
	for (int i = 0; extra[i]; i++)
		args[n++] = extra[i];
	args[n] = NULL;
	assert_int_equal(vmm_proc_spawn(&p, args), 0);
	rc = vmm_proc_wait_exit(&p, 20000);
	if (rc != 2 || !strstr(p.out, expect))
		fail_msg("expected exit 2 and \"%s\", got %d and:\n%s", expect, rc, p.out);
	/* One clear line. */
	assert_int_equal(vmm_proc_count(&p, "\n"), 1);
	assert_int_equal(strncmp(p.out, "ramfold-vmm: ", 13), 0);
	/* Nothing left behind. */
	assert_int_equal(stat(logdir, &st), -1);
	assert_int_equal(stat(csv, &st), -1);
	assert_int_equal(stat(sock, &st), -1);
	assert_int_equal(rmdir(dir), 0);
	vmm_proc_free(&p);
}

static void test_bad_images_refused(void **state)
{
	char notelf[] = "/tmp/rf-vmm-notelf.XXXXXX", trunc[] = "/tmp/rf-vmm-trunc.XXXXXX";
	char hdr[512];
	int fd, in;

	(void)state;
	require_kvm();
	{
		const char *a[] = {"--guest", "/nonexistent/guest", "--vm", "mem=32M", NULL};

		expect_refused(a, "guest image /nonexistent/guest: No such file or directory");
	}
	fd = mkstemp(notelf);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, "#!/bin/sh\necho not a guest\n", 27), 27);
	for (int i = 0; i < 8; i++)
		assert_int_equal(write(fd, "padding padding ", 16), 16);
	close(fd);
	{
		const char *a[] = {"--guest", notelf, "--vm", "mem=32M", NULL};

		expect_refused(a, "not an ELF file");
	}
	{
		const char *a[] = {"--guest", "/bin/sh", "--vm", "mem=32M", NULL};

		expect_refused(a, "not a static x86-64 ELF executable");
	}
	/* The real guest cut short: first inside its program headers, then
	 * after them (its segments then lie outside the file). */
	in = open(vmm_guest_path(), O_RDONLY);
	assert_true(in >= 0);
	assert_int_equal(read(in, hdr, sizeof(hdr)), sizeof(hdr));
	close(in);
	for (int cut = 0; cut < 2; cut++) {
		const char *a[] = {"--guest", trunc, "--vm", "mem=32M", NULL};
		size_t len = cut ? sizeof(hdr) : 80;

		strcpy(trunc, "/tmp/rf-vmm-trunc.XXXXXX");
		fd = mkstemp(trunc);
		assert_true(fd >= 0);
		assert_int_equal(write(fd, hdr, len), (ssize_t)len);
		close(fd);
		expect_refused(a,
			       cut ? "lies outside the file" : "program headers out of the file");
		unlink(trunc);
	}
	unlink(notelf);
}

static void test_ram_too_small_refused(void **state)
{
	(void)state;
	require_kvm();
	{
		const char *a[] = {"--vm", "name=small,mem=16M,workload=memcheck,mib=64", NULL};

		expect_refused(a, "small: RAM too small: mem=16M, workload memcheck with mib=64 "
				  "needs at least");
	}
	{
		const char *a[] = {"--vm", "name=tiny,mem=2M", NULL};

		expect_refused(a, "tiny: RAM too small");
	}
	{
		const char *a[] = {"--vm", "name=odd,mem=3M", NULL};

		expect_refused(a, "odd: mem=3M must be a multiple of 2 MiB");
	}
	{
		const char *a[] = {"--vm", "name=os,mem=64M,workload=osimage,mib=100", NULL};

		expect_refused(a, "os: RAM too small");
	}
}

static void test_kvm_missing_refused(void **state)
{
	const char *a[] = {"--kvm", "/nonexistent/kvm", "--vm", "mem=32M", NULL};

	(void)state;
	expect_refused(a, "/nonexistent/kvm: No such file or directory (KVM is needed to run "
			  "guests)");
}

static void test_bad_arguments_refused(void **state)
{
	static const struct {
		const char *args[6];
		const char *expect;
	} cases[] = {
	    {{"--frobnicate", NULL}, "unknown option --frobnicate"},
	    {{"--vm", "mem=32M,colour=blue", NULL}, "unknown key \"colour\""},
	    {{"--vm", "mem=32M,workload=bogus", NULL}, "unknown workload \"bogus\""},
	    {{"--vm", "mem=lots", NULL}, "mem=lots is not a size"},
	    {{"--vm", "workload=memcheck,dup=5", NULL},
	     "key dup does not apply to workload memcheck"},
	    {{"--vm", "workload=dup,dup=70,zero=40", NULL}, "exceed 100 percent"},
	    {{"--vm", "name=a", "--vm", "name=a", NULL}, "two VMs named a"},
	    {{"--vm", "novalue", NULL}, "expected key=value pairs"},
	    {{"--vm", "workload=osimage,dir=/nonexistent/dir", NULL},
	     "preload directory /nonexistent/dir: No such file or directory"},
	    {{"--vm", "workload=osimage,dir=/etc,files=*.nothing-matches", NULL},
	     "has no regular file matching"},
	    {{"--duration", "-3", "--vm", "mem=32M"}, "--duration -3: expected seconds > 0"},
	    {{"--no-table", NULL}, "no VM given"},
	    {{"--vm", NULL}, "--vm needs a value"},
	    {{"--hide-features", "uffd-move,soft-dirty", "--vm", "mem=32M", NULL},
	     "--hide-features uffd-move,soft-dirty: expected a list of uffd-move, pagemap-scan"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		expect_refused(cases[i].args, cases[i].expect);
}

/* A scenario file, the CSV rows and the per-VM console logs. */
static void test_scenario_csv_and_logs(void **state)
{
	char dir[] = "/tmp/rf-vmm-scen.XXXXXX", scen[96], csv[96], logdir[96], path[160];
	char buf[65536];
	const char *args[] = {"--no-table", "--quiet", "--scenario", scen,  "--stats-csv", csv,
			      "--log-dir",  logdir,    "--duration", "2.5", NULL};
	struct vmm_proc p;
	FILE *f;
	size_t n;
	int rows_a = 0, rows_host = 0;

	(void)state;
	require_kvm();
	assert_non_null(mkdtemp(dir));
	snprintf(scen, sizeof(scen), "%s/scenario", dir);
	snprintf(csv, sizeof(csv), "%s/stats.csv", dir);
	snprintf(logdir, sizeof(logdir), "%s/logs/deeper", dir);
	f = fopen(scen, "w");
	assert_non_null(f);
	fprintf(f, "# two guests\nname=a,mem=64M,workload=dup,mib=16\n\n  name=b,mem=32M,report=1  "
		   "# idle\n");
	fclose(f);
	assert_int_equal(vmm_proc_spawn(&p, args), 0);
	assert_int_equal(vmm_proc_wait_exit(&p, 20000), 0);
	/* --quiet: no status lines at all. */
	assert_int_equal(p.out_len, 0);

	f = fopen(csv, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	assert_int_equal(strncmp(buf, "time_s,vm,state,promised_bytes,resident_bytes,", 46), 0);
	for (char *l = strtok(buf, "\n"); l; l = strtok(NULL, "\n")) {
		rows_a += strstr(l, ",a,") != NULL;
		rows_host += strstr(l, ",host,") != NULL;
	}
	/* One row per VM per second, plus the final one. */
	assert_in_range(rows_a, 3, 5);
	assert_int_equal(rows_a, rows_host);

	snprintf(path, sizeof(path), "%s/a.log", logdir);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	assert_non_null(strstr(buf, " READY\n"));
	assert_non_null(strstr(buf, " RESULT dup pages=4096 "));
	assert_non_null(strstr(buf, "[vmm] stopped by the VMM"));
	snprintf(path, sizeof(path), "%s/b.log", logdir);
	f = fopen(path, "r");
	assert_non_null(f);
	n = fread(buf, 1, sizeof(buf) - 1, f);
	buf[n] = 0;
	fclose(f);
	/* report=1: the guest memory manager's figures once a second. */
	assert_non_null(strstr(buf, " mm: managed_pages="));

	vmm_proc_free(&p);
	snprintf(path, sizeof(path), "rm -rf %s", dir);
	assert_int_equal(system(path), 0);
}

/* Failures after the VMs are set up (socket, CSV) still leave nothing. */
static void test_late_failures_leave_nothing(void **state)
{
	(void)state;
	require_kvm();
	{
		const char *a[] = {"--vm", "mem=32M", "--ctl", "/proc/nonexistent/ctl.sock", NULL};

		expect_refused(a, "control socket /proc/nonexistent/ctl.sock: No such file");
	}
	{
		const char *a[] = {"--vm", "mem=32M", "--stats-csv", "/proc/nonexistent/s.csv",
				   NULL};

		expect_refused(a, "--stats-csv /proc/nonexistent/s.csv: No such file");
	}
}

static void test_help_and_version(void **state)
{
	const char *h[] = {"--help", NULL}, *v[] = {"--version", NULL};
	struct vmm_proc p;

	(void)state;
	assert_int_equal(vmm_proc_spawn(&p, h), 0);
	assert_int_equal(vmm_proc_wait_exit(&p, 5000), 0);
	assert_non_null(strstr(p.out, "usage: ramfold-vmm"));
	assert_non_null(strstr(p.out, "workloads: idle dup osimage memcheck churn hotcold"));
	vmm_proc_free(&p);
	assert_int_equal(vmm_proc_spawn(&p, v), 0);
	assert_int_equal(vmm_proc_wait_exit(&p, 5000), 0);
	assert_non_null(strstr(p.out, "ramfold-vmm 0."));
	vmm_proc_free(&p);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_workloads_report_results),
	    cmocka_unit_test(test_osimage_identical_across_vms),
	    cmocka_unit_test(test_memcheck_detects_corruption),
	    cmocka_unit_test(test_four_vms_concurrently),
	    cmocka_unit_test(test_fault_ends_vm_alone),
	    cmocka_unit_test(test_bad_console_lines),
	    cmocka_unit_test(test_bad_images_refused),
	    cmocka_unit_test(test_ram_too_small_refused),
	    cmocka_unit_test(test_kvm_missing_refused),
	    cmocka_unit_test(test_bad_arguments_refused),
	    cmocka_unit_test(test_scenario_csv_and_logs),
	    cmocka_unit_test(test_late_failures_leave_nothing),
	    cmocka_unit_test(test_help_and_version),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
