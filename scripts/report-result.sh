#!/bin/bash
# report-result.sh SUITE PASSED FAILED [SKIPPED]
# Prints "SUITE: N passed, N failed" for a check that is not a cmocka binary.
# Inside `make test` (RF_TEST_SUMMARY names the summary file) the counts are
# added to the summary and the exit status is 0, so later suites still run and
# the final line decides; run alone, the exit status is 1 on any failure.
suite=$1 passed=$2 failed=$3 skipped=${4:-0}
echo "$suite: $passed passed, $failed failed"
if [ -n "${RF_TEST_SUMMARY:-}" ]; then
	echo "$suite $passed $failed $skipped" >>"$RF_TEST_SUMMARY"
	[ "$failed" -gt 0 ] && echo "$suite" >>"$(dirname "$RF_TEST_SUMMARY")/failed-tests"
	exit 0
fi
[ "$failed" -eq 0 ]
