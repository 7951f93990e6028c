#!/bin/bash
# The nested rig's host side: boots build/nested/l1-initramfs.gz (L1: Debian's
# kernel, KVM, ramfold-vmm, the L2 Linux guest image) under QEMU TCG with
# emulated SVM, runs one scenario in it, and judges the serial log.
#   tests/nested/run.sh SCENARIO [TIMEOUT_S]
# QEMU runs at nice 19, bounded by the timeout. Passing means: the completion
# marker arrived, at least one RF-CHECK passed and none failed. QEMU's exit
# status is not used (with -no-reboot it is 0 after a triple fault as well).
set -u
B=${B:-build}
sc=${1:?usage: run.sh SCENARIO [TIMEOUT_S]}
limit=${2:-600}
N=$B/nested
LG=$B/linux-guest
log=$N/$sc.log
mkdir -p "$N"
command -v qemu-system-x86_64 >/dev/null || {
	echo "nested: qemu-system-x86_64 missing (scripts/deps.sh qemu-system-x86)" >&2
	exit 2
}
# The qemu scenario boots its own, larger image (QEMU and bash in it) with
# room for three 256 MiB guests.
img=$N/l1-initramfs.gz mem=${NESTED_L1_MEM:-1G}
[ "$sc" = qemu ] && img=$N/l1-qemu-initramfs.gz mem=${NESTED_L1_MEM:-2G}
for f in "$LG/vmlinuz" "$img"; do
	[ -e "$f" ] || { echo "nested: $f missing (make test-linux builds it)" >&2; exit 2; }
done

# The host's TSC frequency: L1 must not calibrate it against emulated timers
# (scripts/tsc-khz.sh).
khz=$(scripts/tsc-khz.sh) || exit 2

pidf=$N/$sc.qemu-pid
watchdog=$N/$sc.watchdog
rm -f "$pidf" "$watchdog"
start=$EPOCHREALTIME
echo "nested $sc: booting L1 (QEMU TCG, -cpu max,-xsave, $mem, tsc_early_khz=$khz), log $log"
nice -n 19 timeout -k 5 "$limit" qemu-system-x86_64 -M microvm -accel tcg -cpu max,-xsave \
	-m "$mem" -smp 1 -nodefaults -no-user-config -display none -serial stdio \
	-no-reboot -pidfile "$pidf" -kernel "$LG/vmlinuz" -initrd "$img" \
	-append "console=ttyS0 quiet panic=-1 tsc_early_khz=$khz rf.scenario=$sc" \
	</dev/null 2>&1 | while IFS= read -r line; do
	now=$EPOCHREALTIME
	printf '%8.2f %s\n' "$(awk "BEGIN {print $now - $start}")" "${line%$'\r'}"
	# Everything is in once the marker is: L1 reboots next, which ends
	# QEMU (-no-reboot). Once that reset hung instead ("reboot: Restarting
	# system", then nothing until the timeout, 12 minutes later), so QEMU
	# gets 20 s to end by itself.
	case $line in
	*RF-NESTED-DONE*)
		{ sleep 20; kill "$(cat "$pidf")"; } </dev/null >/dev/null 2>&1 &
		echo $! >"$watchdog"
		;;
	esac
done >"$log"
qemu_rc=${PIPESTATUS[0]}
if [ -s "$watchdog" ]; then
	pkill -P "$(cat "$watchdog")" sleep 2>/dev/null
	kill "$(cat "$watchdog")" 2>/dev/null
fi
rm -f "$pidf" "$watchdog"
end=$EPOCHREALTIME
whole=$(awk "BEGIN {printf \"%.1f\", $end - $start}")

grep -E 'RF-|READY after|ramfold-vmm:|Kernel panic|BUG|guest fault' "$log" | sed 's/^/  /'
l1=$(sed -n 's/^ *\([0-9.]*\) RF-NESTED: L1 up.*/\1/p' "$log" | head -1)
kvm=$(sed -n 's/^ *\([0-9.]*\) RF-NESTED: KVM ready.*/\1/p' "$log" | head -1)
ready=$(sed -n 's/.*: READY after \([0-9.]*\) ms.*/\1/p' "$log" | tr '\n' ' ')
ok=$(grep -c 'RF-CHECK [^ ]* ok' "$log")
bad=$(grep -c 'RF-CHECK [^ ]* FAIL' "$log")
done_marker=$(grep -c 'RF-NESTED-DONE' "$log")
echo "nested $sc: L1 boot to /init ${l1:-?} s, KVM loaded at ${kvm:-?} s, L2 READY after ${ready:-? }ms, whole run $whole s (QEMU status $qemu_rc)"
echo "nested $sc: checks: $ok ok, $bad failed; completion marker: $([ "$done_marker" -gt 0 ] && echo yes || echo MISSING)"
[ "$done_marker" -gt 0 ] && [ "$ok" -gt 0 ] && [ "$bad" -eq 0 ]
