/* SPDX-License-Identifier: MIT */
/*
 * The QEMU e2e check (issue 15) in `make test` (e2e suite): Linux guests
 * under Debian's qemu-system-x86_64, wrapped in ramfold-run: memcheck clean
 * while merged, the osimage saving in the QEMU process's Pss, QEMU's own
 * virtio-balloon, the control socket, nothing left after SIGTERM and
 * SIGKILL. tests/qemu/e2e.sh does the work and prints each check; this file
 * gives its verdict to cmocka, and skips (saying why) while ramfold-run is
 * not built. qemu.mk installs QEMU and builds the guest image first.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rf_test.h"

static void test_qemu_e2e(void **state)
{
	const char *b = getenv("B");
	char run[512];
	int rc;

	(void)state;
	rf_require(access("/usr/bin/qemu-system-x86_64", X_OK) == 0,
		   "qemu-system-x86_64 is not installed (make qemu-deps)");
	rf_require(access("tests/qemu/e2e.sh", X_OK) == 0,
		   "run from the source tree's top directory");
	snprintf(run, sizeof(run), "%s/ramfold-run", b ? b : "build");
	rf_require(access(run, X_OK) == 0,
		   "ramfold-run is not built yet: the QEMU checks need it (tests/qemu/e2e.sh "
		   "--no-wrapper runs them without)");
	rc = system("tests/qemu/e2e.sh");
	assert_true(WIFEXITED(rc));
	assert_int_equal(WEXITSTATUS(rc), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_qemu_e2e),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
