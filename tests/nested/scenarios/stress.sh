# Dedup, balloon and swap under Linux guests (issues 8 and 12, "must hold"):
#  - two Linux guests running osimage on the same files: ramfold's dedup saves
#    at least 90% of the ideal (the second copy of the osimage buffer);
#  - memcheck in a third guest stays clean while it is merged, ballooned
#    (and reports free pages) and swapped, all at once on the same guest RAM
#    (copy mode under L1's 6.1), and keeps making rounds;
#  - the audit of that guest, taken while all of it runs, finds no mismatch.
# Dedup and swap run only when this ramfold-vmm has them (--dedup, --swap-dir
# in --help); otherwise those checks say SKIP and the balloon part still runs.
. "$RF_SCENARIOS/lib.sh"
MiB=1048576
help=$(ramfold-vmm --help 2>&1)
opts="" dkeys="" skeys=""
if echo "$help" | grep -q -- '--dedup '; then
	opts="$opts --dedup domains"
	dkeys=",domain=d1"
	has_dedup=1
fi
# Under L1's 6.1 kernel (no UFFDIO_MOVE) the swap pager swaps out in copy mode
# (write-protect, copy, discard); query-swap says which mode ran.
if ! echo "$help" | grep -q -- '--swap-dir'; then
	no_swap="no --swap-dir in this ramfold-vmm"
else
	swapdir=${RF_SWAPDIR:-/swap}
	mkdir -p "$swapdir"
	[ -z "${RF_SWAPDIR:-}" ] && mount -t tmpfs -o size=256m tmpfs "$swapdir"
	opts="$opts --swap-dir $swapdir --swap-tier 32M"
	has_swap=1
fi
note "stress: dedup ${has_dedup:-absent}, swap ${has_swap:-absent} in this ramfold-vmm"
# shellcheck disable=SC2086
ramfold-vmm --kernel "$RF_KERNEL" --initrd "$RF_INITRD" --no-table --ctl "$S" --log-dir "$L" $opts \
	--vm name=os0,mem=256M,workload=osimage$dkeys \
	--vm name=os1,mem=256M,workload=osimage$dkeys \
	--vm name=mc,mem=256M,workload=memcheck,mib=48,rounds=0,balloon-oom=off$dkeys &
vmm=$!
for v in os0 os1 mc; do check "$v-ready" wait_log $v 'READY' 240; done
pages=$(sed -n 's/.*RESULT osimage .*pages=\([0-9]*\).*/\1/p' "$L/os0.log" | head -1)
c0=$(sed -n 's/.*RESULT osimage .*checksum=\([0-9a-fx]*\).*/\1/p' "$L/os0.log" | head -1)
c1=$(sed -n 's/.*RESULT osimage .*checksum=\([0-9a-fx]*\).*/\1/p' "$L/os1.log" | head -1)
check osimage-same-content test -n "$c0" -a "$c0" = "$c1"

# -- dedup ----------------------------------------------------------------
if [ -n "${has_dedup:-}" ]; then
	# memcheck rewrites its pages all the time, so the engine never calls
	# itself converged: wait until os1's shared pages stop growing instead.
	i=0 prev=-1
	while [ $i -lt 300 ]; do
		sh1=$(ctl query-dedup vm=os1 | jnum pages-sharing)
		[ "${sh1:-0}" -gt 0 ] && [ "$sh1" = "$prev" ] && break
		note "dedup after ${i} s: os1 pages-sharing ${sh1:-?}"
		prev=${sh1:-0}
		sleep 15
		i=$((i + 15))
	done
	qd=$(ctl query-dedup)
	z1=$(ctl query-dedup vm=os1 | jnum pages-zero)
	note "dedup: os1 shares ${sh1} pages with others (plus ${z1} zero pages); the osimage buffer is ${pages} pages; engine saved $(echo "$qd" | jnum saved-bytes) B in $(echo "$qd" | jnum scan-passes) passes"
	# Ideal: every page of os1's osimage buffer maps the copy os0 (or os1's own
	# page cache) holds. Zero pages are not counted.
	check dedup-90pct-of-ideal ge "${sh1:-0}" $((${pages:-0} * 9 / 10))
else
	echo "RF-CHECK dedup-90pct-of-ideal SKIP (no --dedup in this ramfold-vmm)"
fi

# -- memcheck while ballooned (and swapped) ----------------------------------
# Rounds memcheck has completed (each verifies every page of the last one).
mc_rounds() { grep 'memcheck: rounds=' "$L/mc.log" | tail -1 | sed 's/.*memcheck: rounds=\([0-9]*\).*/\1/'; }
m0=$(mc_rounds)
ctl set-balloon vm=mc balloon=64M >/dev/null
check mc-ballooned wait_actual mc $((64 * MiB)) 90
if [ -n "${has_swap:-}" ]; then
	# A resident target 32 MiB under what mc holds now: part of memcheck's
	# working set goes to swap and comes back on every round.
	res=$(ctl query-memory | tr '{' '\n' | grep -A3 '"mc"' | jnum resident)
	ctl set-swap vm=mc resident=$(((${res:-134217728} - 32 * MiB) / MiB))M >/dev/null
	sleep 10
	# Two whole rounds under swap (each verifies every page), however long
	# the machine's load makes them take, up to 3 minutes.
	s0=$(mc_rounds) i=0
	while [ $i -lt 180 ]; do
		sleep 5
		i=$((i + 5))
		s1=$(mc_rounds)
		[ $((${s1:-0} - ${s0:-0})) -ge 2 ] && break
	done
	qs=$(ctl query-swap vm=mc)
	qd=$(ctl query-dedup vm=mc)
	note "swap: $(echo "$qs" | head -c 400)"
	note "while swapped: memcheck rounds $s0 -> $s1 in ${i} s; mc dedup: pages-sharing $(echo "$qd" | jnum pages-sharing), pages-zero $(echo "$qd" | jnum pages-zero)"
	# 32 MiB out at least once, and memcheck's rounds bring pages back.
	check mc-swapped ge "$(echo "$qs" | jnum swap-outs)" 8192
	check mc-swapped-in ge "$(echo "$qs" | jnum swap-ins)" 1
	check mc-swap-not-stopped has "$qs" '"stopped":false'
	check mc-swap-no-csum-errors has "$qs" '"csum-errors":0'
	check mc-rounds-while-swapped ge $((${s1:-0} - ${s0:-0})) 2
	# Under 6.1 the swap pager has no UFFDIO_MOVE: this is the copy mode that
	# hung with dedup on the same guest (issue 12). On a newer L1 it says so.
	mode=$(echo "$qs" | sed -n 's/.*"swap-out":"\([a-z]*\)".*/\1/p')
	note "swap-out mode: ${mode:-?} (L1 kernel $(uname -r))"
	# The audit during the run: dedup, balloon and swap all acting on mc.
	qa=$(ctl audit vm=mc)
	note "audit while running: $qa"
	check mc-audit-clean has "$qa" '"mismatches":0'
	[ -n "${has_dedup:-}" ] && check mc-merged ge $(($(echo "$qd" | jnum pages-sharing) + $(echo "$qd" | jnum pages-zero))) 1
	ctl set-swap vm=mc resident=none >/dev/null
else
	echo "RF-CHECK mc-swapped SKIP ($no_swap)"
fi
# Two more rounds since the balloon went in, however slow the machine's load
# makes them (memcheck prints its round count every few seconds at most).
i=0
while [ $i -lt 180 ]; do
	m1=$(mc_rounds)
	[ $((${m1:-0} - ${m0:-0})) -ge 2 ] && break
	sleep 5
	i=$((i + 5))
done
note "memcheck rounds: ${m0:-?} before the balloon, ${m1:-?} now; last: $(grep 'memcheck: rounds=' "$L/mc.log" | tail -1)"
check mc-kept-running ge $((${m1:-0} - ${m0:-0})) 2
check mc-clean sh -c "! grep -q 'BAD' $L/mc.log"
check stress-clean-exit ctl quit
wait $vmm
rc=$?
check stress-vmm-status test $rc = 0
# A guest ended early (the VMM says so with its status): the guests' last
# console lines, where an oops would be.
if [ "$rc" != 0 ]; then
	for v in os0 os1 mc; do tail -n 40 "$L/$v.log" | sed "s/^/RF-LOG $v: /"; done
fi
