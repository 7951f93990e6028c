# Debugging aid (not run by make test-linux unless named): one guest with the
# kernel's messages at full verbosity, stopped after 90 s whatever happens.
ramfold-vmm --kernel /l2/vmlinuz --initrd /l2/initramfs.gz --no-table --console \
	--append "console=ttyS0 loglevel=4 ${RF_DEBUG_APPEND:-}" --duration 90 --log-dir /tmp/logs \
	--vm name=dbg,mem=256M,workload=memcheck,mib=16,rounds=2,then=exit
echo "RF-CHECK debug-ran ok (status $?)"
cat /tmp/logs/dbg.log | grep vmm
