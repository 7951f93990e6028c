/* SPDX-License-Identifier: MIT */
/*
 * The nested rig's short scenario as part of `make test` (e2e suite): a
 * Linux guest under ramfold-vmm, inside a Linux guest under QEMU TCG with
 * emulated SVM, boots to READY, the virtio_balloon driver binds to
 * ramfold's balloon, memcheck runs clean and the guest powers off cleanly.
 * tests/nested/run.sh does the work (and prints the timings); this file
 * only gives its verdict to cmocka. Needs qemu-system-x86_64, which
 * nested.mk installs before the e2e suite runs.
 */
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rf_test.h"

static void test_nested_linux_short(void **state)
{
	int rc;

	(void)state;
	rf_require(access("/usr/bin/qemu-system-x86_64", X_OK) == 0,
		   "qemu-system-x86_64 is not installed (make nested-deps)");
	rf_require(access("tests/nested/run.sh", X_OK) == 0,
		   "run from the source tree's top directory");
	rc = system("tests/nested/run.sh short 420");
	assert_true(WIFEXITED(rc));
	assert_int_equal(WEXITSTATUS(rc), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_nested_linux_short),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
