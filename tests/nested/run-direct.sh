#!/bin/bash
# Runs a nested-rig scenario directly on this host (make demo-linux), for
# hosts whose KVM runs guest ring 0 natively (VMX or SVM): the same scripts
# and checks as inside the rig's L1, with build/ramfold-vmm and the Linux
# guest image from build/linux-guest.
#   tests/nested/run-direct.sh SCENARIO
set -u
B=${B:-build}
sc=${1:?usage: run-direct.sh SCENARIO}
if [ -e /sys/module/kvm_pvm ]; then
	echo "demo-linux: this host's KVM is kvm_pvm, which cannot run a guest kernel;" \
		"run the same scenarios nested under QEMU with make test-linux" >&2
	exit 2
fi
[ -f "tests/nested/scenarios/$sc.sh" ] || { echo "demo-linux: no scenario $sc" >&2; exit 2; }
out=$B/demo-linux
mkdir -p "$out/$sc"
export RF_KERNEL=$B/linux-guest/vmlinuz RF_INITRD=$B/linux-guest/initramfs.gz
export RF_SCENARIOS=tests/nested/scenarios RF_LOGS=$out/$sc RF_CTL=$out/$sc.sock
export RF_SWAPDIR=$out/swap
export PATH=$PWD/$B:$PATH
up() { cut -d' ' -f1 /proc/uptime; }
check() {
	name=$1
	shift
	if "$@" >/dev/null 2>&1; then echo "RF-CHECK $name ok"; else echo "RF-CHECK $name FAIL ($*)"; fi
}
scenario=$sc
start=$(up)
# shellcheck disable=SC1090
. "tests/nested/scenarios/$sc.sh" 2>&1 | tee "$out/$sc.log"
ok=$(grep -c 'RF-CHECK [^ ]* ok' "$out/$sc.log")
bad=$(grep -c 'RF-CHECK [^ ]* FAIL' "$out/$sc.log")
echo "demo-linux $sc: $ok checks ok, $bad failed, $(awk "BEGIN {print $(up) - $start}") s; logs in $out/$sc/"
[ "$ok" -gt 0 ] && [ "$bad" -eq 0 ]
