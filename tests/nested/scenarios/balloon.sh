# Balloon against Linux's own virtio_balloon driver (issue 8, "must hold"):
#  1. inflate to half the guest's RAM: actual reaches it, MemTotal drops by it
#     (DEFLATE_ON_OOM off: with it Linux keeps MemTotal), the VMM's resident
#     memory in L1 drops by >= 90% of it; stats match /proc/meminfo;
#     deflate gives the memory back to the guest;
#  2. free page reporting: the guest frees 100 MiB it had written, host
#     memory drops by >= 80% of it.
. "$RF_SCENARIOS/lib.sh"
MiB=1048576

# -- 1. inflate / deflate ------------------------------------------------
ramfold-vmm --kernel "$RF_KERNEL" --initrd "$RF_INITRD" --no-table --ctl "$S" --log-dir "$L" \
	--vm name=lb,mem=512M,workload=churn,mib=384,rounds=1,pause=100,balloon-oom=off,balloon-stats=1000,meminfo=1000 &
vmm=$!
check lb-ready wait_log lb 'READY' 180
check lb-churn-done wait_log lb 'RESULT churn' 120
grep -q 'BALLOON bound' "$L/lb.log" && note "lb: $(grep -o 'BALLOON bound.*' "$L/lb.log")"
sleep 3
rss0=$(rss_kib $vmm)
tot0=$(meminfo lb total_kib)
note "lb before inflate: VMM Rss ${rss0} KiB, guest MemTotal ${tot0} KiB"
t0=$(cut -d' ' -f1 /proc/uptime)
ctl set-balloon vm=lb balloon=256M >/dev/null
check balloon-inflated wait_actual lb $((256 * MiB)) 90
t1=$(cut -d' ' -f1 /proc/uptime)
sleep 3
rss1=$(rss_kib $vmm)
tot1=$(meminfo lb total_kib)
qb=$(ctl query-balloon vm=lb)
note "lb inflated 256 MiB in $(awk "BEGIN {print $t1 - $t0}") s: VMM Rss ${rss1} KiB (-$((rss0 - rss1)) KiB), MemTotal ${tot1} KiB (-$((tot0 - tot1)) KiB)"
check balloon-rss-drop-90pct ge $((rss0 - rss1)) $((256 * 1024 * 90 / 100))
check balloon-memtotal-drop ge $((tot0 - tot1)) $((256 * 1024 * 95 / 100))
# Stats (bytes) against the guest's own /proc/meminfo (KiB), printed each second.
st_tot=$(echo "$qb" | jnum stat-total-memory)
st_free=$(echo "$qb" | jnum stat-free-memory)
mi_free=$(meminfo lb free_kib)
note "lb stats: stat-total-memory ${st_tot} B vs MemTotal ${tot1} KiB; stat-free-memory ${st_free} B vs MemFree ${mi_free} KiB"
check stats-total-match test "$((${st_tot:-0} / 1024))" = "${tot1:-x}"
d=$((${st_free:-0} / 1024 - ${mi_free:-0}))
[ "$d" -lt 0 ] && d=$((-d))
check stats-free-match ge $((16 * 1024)) "$d"
ctl set-balloon vm=lb balloon=0 >/dev/null
check balloon-deflated wait_actual lb 0 90
sleep 3
tot2=$(meminfo lb total_kib)
note "lb deflated: MemTotal ${tot2} KiB"
check balloon-memtotal-back test "$tot2" = "$tot0"
check lb-clean-exit ctl quit
wait $vmm
check lb-vmm-status test $? = 0

# -- 2. free page reporting ------------------------------------------------
ramfold-vmm --kernel "$RF_KERNEL" --initrd "$RF_INITRD" --no-table --ctl "$S" --log-dir "$L" \
	--vm name=lr,mem=512M,workload=idle,linux-wl=holdfree,linux-args=mib=100:hold_ms=15000,balloon-report=on,meminfo=2000 &
vmm=$!
check lr-holding wait_log lr 'holdfree: holding' 180
grep -o 'BALLOON bound.*' "$L/lr.log" | sed 's/^/RF-NESTED: lr: /'
sleep 6
rss1=$(rss_kib $vmm)
check lr-freed wait_log lr 'holdfree: freed' 60
min=$rss1
i=0
while [ $i -lt 20 ]; do
	sleep 1
	r=$(rss_kib $vmm)
	[ "$r" -lt "$min" ] && min=$r
	i=$((i + 1))
done
rep=$(ctl query-balloon vm=lr | jnum free-reported)
note "lr: VMM Rss ${rss1} KiB while holding 100 MiB, ${min} KiB after the guest freed it (-$((rss1 - min)) KiB); free-reported ${rep} B"
check reporting-rss-drop-80pct ge $((rss1 - min)) $((100 * 1024 * 80 / 100))
check lr-clean-exit ctl quit
wait $vmm
check lr-vmm-status test $? = 0
