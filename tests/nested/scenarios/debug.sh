# Debugging aid (not run by make test-linux unless named): one guest with the
# kernel's messages at full verbosity, stopped after 90 s whatever happens.
ramfold-vmm --kernel "$RF_KERNEL" --initrd "$RF_INITRD" --no-table --console \
	--append "console=ttyS0 loglevel=8 ${RF_DEBUG_APPEND:-}" --duration 60 --log-dir "${RF_LOGS:-/tmp/logs}" \
	--vm name=dbg,mem=128M,workload=idle,linux-then=reboot
echo "RF-CHECK debug-ran ok (status $?)"
grep vmm "${RF_LOGS:-/tmp/logs}/dbg.log"
