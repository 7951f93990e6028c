# QEMU scenario (issue 15): Debian's stock qemu-system-x86_64 inside L1, with
# KVM (L1's kvm_amd: hardware-virtualised Linux guests, as on a production
# host), wrapped in ramfold-run. It runs the host's QEMU e2e check
# (tests/qemu/e2e.sh: memcheck clean while merged and ballooned, osimage's
# saving from QEMU's Pss, QEMU's own balloon over QMP, the control socket,
# nothing left after SIGTERM and SIGKILL) from a build-tree layout under /rf,
# with QEMU_ACCEL=kvm instead of TCG. Each of its CHECK lines becomes an
# RF-CHECK line. Sourced by /init (l1-init.sh).
. "$RF_SCENARIOS/lib.sh"
mkdir -p "$L" /rf/build/linux-guest /rf/build/qemu
# The swap file must be on a file system that takes fallocate: tmpfs, not
# the initramfs root.
mount -t tmpfs tmpfs /rf/build/qemu
ln -sf /l2/vmlinuz /rf/build/linux-guest/vmlinuz
ln -sf /l2/initramfs.gz /rf/build/linux-guest/initramfs.gz
ln -sf /bin/ramfold-vmm /rf/build/ramfold-vmm
note "qemu: $(qemu-system-x86_64 --version | head -1)"
t0=$(up)
# With KVM the guest's TSC is the CPU's: no tsc_early_khz needed, but the
# script passes one, so give it L1's.
khz=$(awk -F: '/cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
(cd /rf && B=build QEMU_ACCEL=kvm QEMU_CPU=host QEMU_KHZ=$khz QEMU_TIMEOUT=600 \
	bash tests/qemu/e2e.sh) >"$L/qemu-e2e.out" 2>&1
rc=$?
cat "$L/qemu-e2e.out"
note "qemu: e2e.sh ended with status $rc after $(awk "BEGIN {print $(up) - $t0}")s"
check qemu-e2e test "$rc" = 0
sed -n 's/^qemu-e2e: CHECK \([^ ]*\) ok.*/RF-CHECK qemu-\1 ok/p; s/^qemu-e2e: CHECK \([^ ]*\) FAIL\(.*\)/RF-CHECK qemu-\1 FAIL\2/p' "$L/qemu-e2e.out"
grep -q '^qemu-e2e: CHECK' "$L/qemu-e2e.out" || echo "RF-CHECK qemu-checks FAIL (e2e.sh printed no CHECK line)"
