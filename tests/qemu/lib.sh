#!/bin/bash
# tests/qemu/lib.sh: boots the project's Linux guest image under Debian's
# qemu-system-x86_64 (TCG), for the QEMU e2e test and bench-qemu. Sourced:
#
#   . tests/qemu/lib.sh
#   qemu_boot NAME WORKLOAD [ARGS [APPEND]]   start a guest in the background
#   qemu_wait NAME REGEX [TIMEOUT_S]          wait for a line in its serial log
#   qemu_pid NAME                             QEMU's pid
#   qemu_pss_kb PID                           Pss of a process (smaps_rollup), kB
#   qemu_qmp NAME COMMAND [JSON]              one QMP command, prints the reply
#   qemu_stop NAME [SIGNAL]                   signal QEMU, wait for it to end
#   qemu_cleanup                              stop every guest started here
#
# Each guest is its own QEMU process: microvm (the image's virtio_mmio and
# virtio_balloon drivers bind to its virtio-mmio transports, and it boots
# fastest), one vCPU, QEMU_MEM (256M), -machine mem-merge=QEMU_MERGE (on,
# QEMU's default: it marks guest RAM MADV_MERGEABLE), QEMU's own
# virtio-balloon, a QMP socket, the serial console in a log file, at nice 19
# and bounded by QEMU_TIMEOUT seconds. ARGS are rfwork's key=value
# parameters separated by commas (guest/linux/init.sh's rf.args); APPEND is
# added to the kernel command line. RUN_WRAPPER, when set, is put in front
# of QEMU's command line (RUN_WRAPPER="$B/ramfold-run --ctl S --").
#
# Files under QEMU_DIR ($B/qemu): NAME.log (serial), NAME.qmp, NAME.pid,
# NAME.out (QEMU's and the wrapper's own stdout and stderr).
# The caller installs the trap: trap qemu_cleanup EXIT (and INT TERM).
B=${B:-build}
QEMU_DIR=${QEMU_DIR:-$B/qemu}
QEMU_MEM=${QEMU_MEM:-256M}
QEMU_MERGE=${QEMU_MERGE:-on}
QEMU_TIMEOUT=${QEMU_TIMEOUT:-600}
QEMU_LG=${QEMU_LG:-$B/linux-guest}
# TCG here (this host's KVM cannot run a guest kernel); the nested rig's L1
# sets QEMU_ACCEL=kvm and QEMU_CPU=host: hardware-virtualised guests.
QEMU_ACCEL=${QEMU_ACCEL:-tcg}
QEMU_CPU=${QEMU_CPU:-}
QEMU_QMP_BIN=${QEMU_QMP_BIN:-$B/tests/qemu/qmp}
QEMU_NAMES=()

qemu_check() {
	command -v qemu-system-x86_64 >/dev/null || {
		echo "qemu: qemu-system-x86_64 missing (scripts/deps.sh qemu-system-x86)" >&2
		return 2
	}
	for f in "$QEMU_LG/vmlinuz" "$QEMU_LG/initramfs.gz" "$QEMU_QMP_BIN"; do
		[ -e "$f" ] || { echo "qemu: $f missing (make linux-guest $QEMU_QMP_BIN)" >&2; return 2; }
	done
	QEMU_KHZ=${QEMU_KHZ:-$(scripts/tsc-khz.sh)} || return 2
	mkdir -p "$QEMU_DIR"
}

qemu_boot() {
	local name=$1 wl=$2 args=${3:-} append=${4:-} d=$QEMU_DIR
	[ -n "${QEMU_KHZ:-}" ] || qemu_check || return
	rm -f "$d/$name.log" "$d/$name.qmp" "$d/$name.pid" "$d/$name.out"
	# In a subshell, so that this shell has no job to report "Killed" for.
	# shellcheck disable=SC2086
	(nice -n 19 timeout -k 5 "$QEMU_TIMEOUT" ${RUN_WRAPPER:-} qemu-system-x86_64 \
		-machine microvm,mem-merge="$QEMU_MERGE" -accel "$QEMU_ACCEL" ${QEMU_CPU:+-cpu "$QEMU_CPU"} -m "$QEMU_MEM" -smp 1 \
		-nodefaults -no-user-config -display none -no-reboot \
		-serial "file:$d/$name.log" -qmp "unix:$d/$name.qmp,server=on,wait=off" \
		-pidfile "$d/$name.pid" -device virtio-balloon-device \
		-kernel "$QEMU_LG/vmlinuz" -initrd "$QEMU_LG/initramfs.gz" \
		-append "console=ttyS0 quiet panic=-1 tsc_early_khz=$QEMU_KHZ rf.wl=$wl rf.args=$args rf.name=$name $append" \
		</dev/null >"$d/$name.out" 2>&1 &
	echo $! >"$d/$name.job")
	QEMU_NAMES+=("$name")
}

# The job (timeout, and the wrapper or QEMU under it) still runs.
qemu_running() {
	kill -0 "$(cat "$QEMU_DIR/$1.job" 2>/dev/null)" 2>/dev/null
}

qemu_wait() {
	local name=$1 re=$2 limit=${3:-120} t=0
	while [ "$t" -lt $((limit * 5)) ]; do
		grep -qE "$re" "$QEMU_DIR/$name.log" 2>/dev/null && return 0
		if ! qemu_running "$name"; then
			echo "qemu $name: ended before /$re/; its output:" >&2
			tail -5 "$QEMU_DIR/$name.out" "$QEMU_DIR/$name.log" 2>/dev/null | sed 's/^/  /' >&2
			return 1
		fi
		sleep 0.2
		t=$((t + 1))
	done
	echo "qemu $name: no /$re/ in its serial log after $limit s" >&2
	return 1
}

qemu_pid() {
	local t=0
	while [ ! -s "$QEMU_DIR/$1.pid" ] && [ $t -lt 100 ]; do
		sleep 0.1
		t=$((t + 1))
	done
	cat "$QEMU_DIR/$1.pid" 2>/dev/null
}

qemu_pss_kb() {
	awk '/^Pss:/ {print $2; found = 1} END {if (!found) exit 1}' "/proc/$1/smaps_rollup"
}

qemu_qmp() {
	"$QEMU_QMP_BIN" "$QEMU_DIR/$1.qmp" "$2" ${3:+"$3"}
}

# Signal QEMU and wait (up to 30 s) for the whole job, wrapper included.
qemu_stop() {
	local name=$1 sig=${2:-TERM} pid job t=0
	pid=$(cat "$QEMU_DIR/$name.pid" 2>/dev/null)
	job=$(cat "$QEMU_DIR/$name.job" 2>/dev/null)
	[ -n "$pid" ] && kill -"$sig" "$pid" 2>/dev/null
	while [ -n "$job" ] && kill -0 "$job" 2>/dev/null && [ $t -lt 300 ]; do
		sleep 0.1
		t=$((t + 1))
	done
	if [ -n "$job" ] && kill -0 "$job" 2>/dev/null; then
		echo "qemu $name: still running 30 s after SIG$sig; killing it" >&2
		kill -KILL "$pid" "$job" 2>/dev/null
		return 1
	fi
	return 0
}

qemu_cleanup() {
	local n pid job
	for n in "${QEMU_NAMES[@]}"; do
		pid=$(cat "$QEMU_DIR/$n.pid" 2>/dev/null)
		job=$(cat "$QEMU_DIR/$n.job" 2>/dev/null)
		[ -n "$pid" ] && kill -KILL "$pid" 2>/dev/null
		[ -n "$job" ] && kill -TERM "$job" 2>/dev/null
	done
	QEMU_NAMES=()
}
