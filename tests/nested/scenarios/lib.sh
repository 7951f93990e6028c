# Helpers for the scenarios (sourced by them inside L1; busybox tools only).
L=${RF_LOGS:-/tmp/logs}
S=${RF_CTL:-/tmp/ctl.sock}
# wait_log VM REGEX SECONDS: until the VM's console log has a matching line.
wait_log() {
	_i=0
	while [ "$_i" -lt "$3" ]; do
		grep -q "$2" "$L/$1.log" 2>/dev/null && return 0
		sleep 1
		_i=$((_i + 1))
	done
	return 1
}
# Resident memory of a process as the kernel counts it (smaps_rollup), KiB.
rss_kib() { awk '/^Rss:/ {print $2}' "/proc/$1/smaps_rollup"; }
ctl() { ramfold-vmm ctl "$S" "$@"; }
# jnum KEY: the first integer value of "KEY" in the JSON on stdin.
jnum() { tr ',{}' '\n\n\n' | sed -n "s/^ *\"$1\": *\([0-9]*\).*/\1/p" | head -1; }
# meminfo VM FIELD: FIELD (total_kib, free_kib, ...) of the VM's last MEMINFO line.
meminfo() { grep 'MEMINFO' "$L/$1.log" | tail -1 | sed -n "s/.* $2=\([0-9]*\).*/\1/p"; }
# has TEXT STRING: TEXT contains STRING
has() { case "$1" in *"$2"*) return 0 ;; esac; return 1; }
# ge A B: A >= B (integers)
ge() { [ "$1" -ge "$2" ]; }
# Wait until `ctl query-balloon vm=VM` reports actual == BYTES, up to SECONDS.
wait_actual() {
	_i=0
	while [ "$_i" -lt "$3" ]; do
		[ "$(ctl query-balloon vm="$1" | jnum actual)" = "$2" ] && return 0
		sleep 1
		_i=$((_i + 1))
	done
	return 1
}
note() { echo "RF-NESTED: $*"; }
