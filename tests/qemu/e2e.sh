#!/bin/bash
# The QEMU e2e check (issue 15): Linux guests under Debian's
# qemu-system-x86_64 (TCG) wrapped in ramfold-run, three at once:
#   mc   memcheck (64 MiB, forever) after holdfree (160 MiB written and freed:
#        free pages of distinct content, which the balloon then takes; with
#        page_poison=1 they would all hold the poison pattern, ramfold would
#        merge them first and the balloon would find nothing left to save), under ramfold-run with a control socket and a swap
#        target of the whole guest (a swap file, but nothing swapped that
#        would blur the balloon's Pss fall)
#   os1  osimage under ramfold-run (intra-VM dedup)
#   os0  osimage, plain QEMU (kernel KSM off): the baseline
# Checks, each printed as "qemu-e2e: CHECK name ok|FAIL (...)":
#   ctl        the control socket answers query-memory and query-dedup
#   dedup      os1's Pss falls at least QEMU_E2E_MIN_SAVED_MIB below os0's
#   balloon    QEMU's virtio-balloon inflated over QMP (to 128 MiB) makes mc's
#              Pss fall by at least 64 MiB, and QEMU's discards went through
#              rf_vm_discard (query-memory's "discarded", at least 64 MiB: the
#              one path after which a page reads as zeros, tests/run);
#              deflated, the guest gets its memory back
#   memcheck   mc's rounds, through merging, swap, inflate and deflate, are
#              all clean, and the guest kernel reports no bad page
#   exit-term  SIGTERM: QEMU and the wrapper end, no ramfold thread, the
#              control socket and the swap files are gone
#   exit-kill  the same after SIGKILL
#
#   tests/qemu/e2e.sh [--no-wrapper]
# --no-wrapper (or no $B/ramfold-run) runs the same guests and steps without
# ramfold, to debug the boot, QMP and Pss parts; the checks that need ramfold
# are then reported as skipped. Exit status: 0 all checks passed, 1 one
# failed, 77 ramfold-run missing (without --no-wrapper).
set -u
B=${B:-build}
cd "$(dirname "$0")/../.." || exit 2
QEMU_DIR=$B/qemu/e2e
. tests/qemu/lib.sh
RUN=${RAMFOLD_RUN:-$B/ramfold-run}
MIN_SAVED_MIB=${QEMU_E2E_MIN_SAVED_MIB:-8}
wrap=1
[ "${1:-}" = --no-wrapper ] && wrap=0
if [ $wrap = 1 ] && [ ! -x "$RUN" ]; then
	echo "qemu-e2e: SKIP: $RUN is not built (the ramfold-run branch); tests/qemu/e2e.sh --no-wrapper runs the steps without it"
	exit 77
fi
qemu_check || exit 2
rm -rf "$QEMU_DIR" && mkdir -p "$QEMU_DIR/swap"
trap qemu_cleanup EXIT
trap 'exit 130' INT TERM
fails=0
check() { # name verdict(0/1) detail
	if [ "$2" = 0 ]; then echo "qemu-e2e: CHECK $1 ok ($3)"; else
		echo "qemu-e2e: CHECK $1 FAIL ($3)"
		fails=$((fails + 1))
	fi
}
skip() { echo "qemu-e2e: CHECK $1 skipped ($2)"; }
wrapper() { # NAME: the wrapper line for that guest
	[ $wrap = 1 ] || return 0
	echo "$RUN --dedup intra --ctl $QEMU_DIR/$1.sock ${2:-} --"
}
ctl() { "$B/ramfold-vmm" ctl "$QEMU_DIR/$1.sock" "$2"; }
mib() { awk "BEGIN {printf \"%.1f\", $1 / 1024}"; }
# Threads named rf-* in the processes of guest NAME (their command line names
# its files).
rf_threads() {
	local t c
	for t in /proc/[0-9]*/task/[0-9]*; do
		read -r c 2>/dev/null <"$t/comm" || continue
		case $c in rf-*)
			tr '\0' ' ' 2>/dev/null <"${t%/task/*}/cmdline" | grep -q "$QEMU_DIR/$1\." && echo "${t#/proc/}:$c" ;;
		esac
	done
}

start=$EPOCHREALTIME
RUN_WRAPPER=$(wrapper mc "--swap-resident 256M --swap-dir $QEMU_DIR/swap") \
	qemu_boot mc memcheck mib=64 "rf.pre=holdfree rf.pre_args=mib=160,hold_ms=0"
RUN_WRAPPER=$(wrapper os1) qemu_boot os1 osimage
RUN_WRAPPER='' qemu_boot os0 osimage
for n in mc os1 os0; do
	qemu_wait "$n" '^READY' 240 || { echo "qemu-e2e: FAIL: $n did not boot"; exit 1; }
done
echo "qemu-e2e: 3 guests READY after $(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $start}") s$([ $wrap = 0 ] && echo ', without ramfold-run')"
qemu_wait mc 'memcheck: wrote' 120 || { echo "qemu-e2e: FAIL: memcheck did not start"; exit 1; }
mc=$(qemu_pid mc) os1=$(qemu_pid os1) os0=$(qemu_pid os0)

# ctl
if [ $wrap = 1 ]; then
	a=$(ctl mc query-memory 2>&1) b=$(ctl mc query-dedup 2>&1)
	case "$a$b" in *'"error"'*) r=1 ;; *'"return"'*'"return"'*) r=0 ;; *) r=1 ;; esac
	check ctl $r "query-memory: ${a:0:160}; query-dedup: ${b:0:160}"
else
	skip ctl "no ramfold-run"
fi

# dedup: os1 against os0, until the saving holds or 90 s pass.
saved=0 t=0
while [ $t -lt 90 ]; do
	p0=$(qemu_pss_kb "$os0") p1=$(qemu_pss_kb "$os1")
	saved=$((p0 - p1))
	[ $wrap = 1 ] && [ $saved -ge $((MIN_SAVED_MIB * 1024)) ] && break
	[ $wrap = 0 ] && [ $t -ge 10 ] && break
	sleep 2
	t=$((t + 2))
done
detail="Pss os0 $(mib "$p0") MiB, os1 $(mib "$p1") MiB: saved $(mib $saved) MiB after $t s, want >= $MIN_SAVED_MIB"
if [ $wrap = 1 ]; then check dedup $([ $saved -ge $((MIN_SAVED_MIB * 1024)) ]; echo $?) "$detail"; else skip dedup "no ramfold-run; $detail"; fi

# balloon: inflate mc to 128 MiB (memcheck, the kernel and the initramfs keep
# about 100), then give it all back.
before=$(qemu_pss_kb "$mc")
qemu_qmp mc balloon '{"value": 134217728}' >/dev/null
# The guest gives what it can: stop at the target, or once the balloon has not
# grown for 10 s.
act=0 prev=0 same=0 t=0
while [ $t -lt 120 ] && [ $same -lt 10 ]; do
	act=$(qemu_qmp mc query-balloon | sed -n 's/.*"actual": *\([0-9]*\).*/\1/p')
	[ "${act:-0}" -le $((144 << 20)) ] && break
	if [ "${act:-0}" = "$prev" ]; then same=$((same + 1)); else same=0; fi
	prev=${act:-0}
	sleep 1
	t=$((t + 1))
done
sleep 2
inflated=$(qemu_pss_kb "$mc")
disc=0
[ $wrap = 1 ] && disc=$(ctl mc query-memory | sed -n 's/.*"discarded": *\([0-9]*\).*/\1/p')
qemu_qmp mc balloon '{"value": 268435456}' >/dev/null
t=0
while [ $t -lt 120 ]; do
	back=$(qemu_qmp mc query-balloon | sed -n 's/.*"actual": *\([0-9]*\).*/\1/p')
	[ "${back:-0}" -ge $((256 << 20)) ] && break
	sleep 1
	t=$((t + 1))
done
fell=$((before - inflated))
check balloon $([ $fell -ge $((64 * 1024)) ] && [ "${back:-0}" -ge $((256 << 20)) ] &&
	{ [ $wrap = 0 ] || [ "${disc:-0}" -ge $((64 << 20)) ]; }; echo $?) \
	"Pss $(mib "$before") -> $(mib "$inflated") MiB (fell $(mib $fell), want >= 64) at actual $((${act:-0} >> 20)) MiB; discarded through ramfold $((${disc:-0} >> 20)) MiB; deflated to $((${back:-0} >> 20)) MiB"

# memcheck: two more progress lines after the deflate, then every round clean.
n0=$(grep -c 'memcheck: rounds=' "$QEMU_DIR/mc.log")
t=0
while [ "$(grep -c 'memcheck: rounds=' "$QEMU_DIR/mc.log")" -lt $((n0 + 2)) ] && [ $t -lt 120 ]; do
	sleep 1
	t=$((t + 1))
done
last=$(grep 'memcheck: rounds=' "$QEMU_DIR/mc.log" | tail -1)
# A wrong page or a kernel that noticed one. Not the kernel's lockup
# watchdogs ("BUG: soft lockup", "BUG: workqueue lockup"): under TCG on a
# busy host a vCPU thread may not run for tens of seconds, which says
# nothing of the memory; those lines are shown, not counted.
badre='BAD|bad_rounds=[1-9]|Bad page|memory corruption|BUG|Oops|Kernel panic'
lockre='BUG: (soft|workqueue) lockup'
bad=$(grep -E "$badre" "$QEMU_DIR/mc.log" | grep -cvE "$lockre")
lockups=$(grep -cE "$lockre" "$QEMU_DIR/mc.log")
first_bad=$(grep -E "$badre" "$QEMU_DIR/mc.log" | grep -vE "$lockre" | head -2 | tr '\n' '|')
rounds=$(echo "$last" | sed -n 's/.*memcheck: rounds=\([0-9]*\) .*/\1/p')
check memcheck $([ "$bad" -eq 0 ] && [ "${rounds:-0}" -ge 3 ]; echo $?) \
	"${last:-no progress line}; $bad bad lines in the serial log${first_bad:+ ($first_bad)}; $lockups lockup warnings"

# exit: SIGTERM mc, SIGKILL os1.
for pair in mc:TERM os1:KILL; do
	n=${pair%:*} sig=${pair#*:}
	pid=$(qemu_pid "$n")
	qemu_stop "$n" "$sig"
	# After SIGKILL, ramfold-run's cleaner removes the socket a moment after
	# QEMU's end closes its pipe.
	t=0
	while [ $wrap = 1 ] && [ -e "$QEMU_DIR/$n.sock" ] && [ $t -lt 20 ]; do
		sleep 0.1
		t=$((t + 1))
	done
	left=""
	kill -0 "$pid" 2>/dev/null && left="$left QEMU pid $pid;"
	th=$(rf_threads "$n")
	[ -n "$th" ] && left="$left threads $th;"
	if [ $wrap = 1 ]; then
		[ -e "$QEMU_DIR/$n.sock" ] && left="$left socket $QEMU_DIR/$n.sock;"
		sw=$(ls -A "$QEMU_DIR/swap")
		[ -n "$sw" ] && left="$left swap files: $sw;"
	fi
	e=exit-$(echo "$sig" | tr 'A-Z' 'a-z')
	check "$e" $([ -z "$left" ]; echo $?) "SIG$sig to $n:${left:- nothing left}"
done
qemu_stop os0 TERM

echo "qemu-e2e: $fails failed, whole run $(awk "BEGIN {printf \"%.1f\", $EPOCHREALTIME - $start}") s; logs in $QEMU_DIR/"
[ $fails -eq 0 ]
