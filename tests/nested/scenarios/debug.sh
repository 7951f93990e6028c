# Debugging aid (not run by make test-linux unless named): one guest with the
# kernel's messages at full verbosity, stopped after 90 s whatever happens.
ramfold-vmm --kernel "$RF_KERNEL" --initrd "$RF_INITRD" --no-table --console \
	--append "console=ttyS0 loglevel=4 ${RF_DEBUG_APPEND:-}" --duration 90 --log-dir "${RF_LOGS:-/tmp/logs}" \
	--vm name=dbg,mem=256M,workload=memcheck,mib=16,rounds=2,then=exit
echo "RF-CHECK debug-ran ok (status $?)"
cat "${RF_LOGS:-/tmp/logs}/dbg.log" | grep vmm
