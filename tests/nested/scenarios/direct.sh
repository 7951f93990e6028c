# Direct scenario: `make demo-linux`'s runner, tests/nested/run-direct.sh, as a
# user runs it on a host whose KVM runs guest ring 0 natively, which L1 is
# (kvm_amd with nested SVM). It is given the layout of a build tree (the
# binary, the Linux guest image and the scenarios where make puts them) and
# runs through it the scenarios `make demo-linux` runs (short, balloon,
# stress); their RF-CHECK lines are this one's. Sourced by /init (l1-init.sh).
mkdir -p /rf/build/linux-guest /rf/tests/nested
ln -sf /l2/vmlinuz /rf/build/linux-guest/vmlinuz
ln -sf /l2/initramfs.gz /rf/build/linux-guest/initramfs.gz
ln -sf /bin/ramfold-vmm /rf/build/ramfold-vmm
ln -sf /scenarios /rf/tests/nested/scenarios
ln -sf /run-direct.sh /rf/tests/nested/run-direct.sh
for d in short balloon stress; do
	(cd /rf && sh tests/nested/run-direct.sh "$d")
	check "demo-linux-direct-$d" test $? = 0
done
