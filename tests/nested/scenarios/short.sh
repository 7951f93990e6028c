# Short scenario (make test): one 256 MiB Linux guest boots to READY under
# ramfold-vmm, its virtio-mmio devices are found through ACPI and the
# balloon driver binds when the VMM offers a balloon; memcheck runs clean;
# the guest powers off, a second one reboots, and the VMM reports clean exits.
# Sourced by /init (l1-init.sh): check() and up() are defined there.
L=${RF_LOGS:-/tmp/logs}
t0=$(up)
ramfold-vmm --kernel "$RF_KERNEL" --initrd "$RF_INITRD" --no-table --console \
	--log-dir "$L" \
	--vm name=l2a,mem=256M,workload=memcheck,mib=32,rounds=3,then=exit \
	--vm name=l2b,mem=128M,workload=idle,linux-then=reboot
rc=$?
echo "RF-NESTED: ramfold-vmm ended with status $rc after $(awk "BEGIN {print $(up) - $t0}")s"
check vmm-exit test "$rc" = 0
check l2-ready grep -q '^ *[0-9.]* READY$' "$L"/l2a.log
check l2-memcheck-clean grep -q 'RESULT memcheck rounds=3 clean=3 bad_rounds=0' "$L"/l2a.log
check l2-poweroff grep -q 'guest powered off' "$L"/l2a.log
check l2-reboot grep -q 'guest rebooted' "$L"/l2b.log
if grep -q 'virtio virtio' "$L"/l2a.log; then
	check l2-balloon-bound grep -q 'BALLOON bound' "$L"/l2a.log
else
	echo "RF-CHECK l2-balloon-bound SKIP (the VMM offers no virtio device yet)"
fi
