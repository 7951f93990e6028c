#!/bin/busybox sh
# /init of the nested rig's L1 guest (tests/nested): a Debian kernel under
# QEMU TCG with emulated AMD SVM. Loads KVM (irqbypass, kvm, ccp, kvm-amd,
# in that order), then runs the scenario named by rf.scenario= on the kernel
# command line (/scenarios/NAME.sh, sourced), which starts ramfold-vmm with
# Linux guests ("L2") and prints one "RF-CHECK <name> ok|FAIL <detail>" line
# per check. Ends with the completion marker "RF-NESTED-DONE" and a reboot,
# which makes QEMU (-no-reboot) exit: the host looks for the marker, not at
# QEMU's exit status (it is 0 after a triple fault too).
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

# Where the scenarios find the L2 image and their helpers (run-direct.sh
# sets these to the build tree instead).
export RF_KERNEL=/l2/vmlinuz RF_INITRD=/l2/initramfs.gz RF_SCENARIOS=/scenarios
up() { cut -d' ' -f1 /proc/uptime; }
check() { # check NAME CONDITION... : runs the condition, prints RF-CHECK
	name=$1
	shift
	if "$@" >/dev/null 2>&1; then echo "RF-CHECK $name ok"; else echo "RF-CHECK $name FAIL ($*)"; fi
}
finish() {
	echo "RF-NESTED-DONE scenario=$scenario l1_uptime=$(up)s"
	sync
	reboot -f
	sleep 10
}

echo "RF-NESTED: L1 up $(up)s, kernel $(uname -r), $(grep MemTotal /proc/meminfo)"
kdir=/lib/modules/$(uname -r)/kernel
for m in virt/lib/irqbypass arch/x86/kvm/kvm drivers/crypto/ccp/ccp arch/x86/kvm/kvm-amd; do
	insmod "$kdir/$m.ko" || echo "RF-NESTED: insmod $m failed"
done
scenario=$(sed -n 's/.*rf\.scenario=\([^ ]*\).*/\1/p' /proc/cmdline)
if [ ! -c /dev/kvm ]; then
	echo "RF-CHECK kvm FAIL (no /dev/kvm after loading kvm-amd: does the CPU model have svm?)"
	finish
fi
echo "RF-NESTED: KVM ready at $(up)s: nested=$(cat /sys/module/kvm_amd/parameters/nested 2>/dev/null) npt=$(cat /sys/module/kvm_amd/parameters/npt 2>/dev/null)"
check kvm test -c /dev/kvm
if [ -f "/scenarios/$scenario.sh" ]; then
	. "/scenarios/$scenario.sh"
else
	echo "RF-CHECK scenario FAIL (no scenario '$scenario')"
fi
finish
