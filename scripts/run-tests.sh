#!/bin/bash
# Runs cmocka test binaries and adds up their summaries.
#   run-tests.sh SUITE BIN...   run one suite (exit 1 on any failure, unless
#                               inside a --begin/--end run, which reports at the end)
#   run-tests.sh --begin        start an aggregated run (make test)
#   run-tests.sh --end          print the totals; exit 1 if anything failed
# A test binary that crashes or times out counts as one failed test.
set -u
B=${B:-build}
# The summary file of an aggregated run: only `make test` sets it.
SUM=${RF_TEST_SUMMARY:-$B/test-summary}
TIMEOUT=${RF_TEST_TIMEOUT:-900}

case "${1:-}" in
--begin)
	mkdir -p "$B"
	: >"$SUM"
	rm -f "$B/failed-tests"
	date +%s >"$SUM.start"
	exit 0
	;;
--end)
	p=0 f=0 s=0
	while read -r suite np nf ns; do
		p=$((p + np)) f=$((f + nf)) s=$((s + ns))
	done <"$SUM"
	echo
	echo "==== ramfold test summary ($(($(date +%s) - $(cat "$SUM.start")))s) ===="
	while read -r suite np nf ns; do
		printf '  %-8s %4d passed %3d failed %3d skipped\n' "$suite" "$np" "$nf" "$ns"
	done <"$SUM"
	[ -s "$B/failed-tests" ] && { echo "failed:"; sed 's/^/  /' "$B/failed-tests"; }
	echo "tests: $p passed, $f failed, $s skipped"
	[ "$f" -eq 0 ]
	exit
	;;
esac

suite=$1
shift
np=0 nf=0 ns=0
mkdir -p "$B/logs"
for t in "$@"; do
	name=$(basename "$t")
	log="$B/logs/$suite-$name.log"
	echo "---- $suite/$name"
	# shellcheck disable=SC2086
	timeout -k 10 "$TIMEOUT" ${RF_TEST_WRAP:-} "$t" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	tp=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
	tf=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
	ts=$(sed -n 's/^\[  SKIPPED \] \([0-9]*\) test.*/\1/p' "$log" | tail -1)
	tp=${tp:-0} tf=${tf:-0} ts=${ts:-0}
	if [ "$rc" -ne 0 ] && [ "$tf" -eq 0 ]; then
		echo "[  FAILED  ] $name exited with status $rc (crash, sanitizer report or timeout)"
		tf=1
	fi
	[ "$tf" -gt 0 ] && echo "$suite/$name" >>"$B/failed-tests"
	np=$((np + tp)) nf=$((nf + tf)) ns=$((ns + ts))
done
echo "$suite: $np passed, $nf failed, $ns skipped"
if [ -n "${RF_TEST_SUMMARY:-}" ]; then
	echo "$suite $np $nf $ns" >>"$SUM"
	exit 0
fi
[ "$nf" -eq 0 ]
