#!/bin/busybox sh
# /init of the Linux guest image (guest/linux): mounts the pseudo file systems,
# loads the virtio-mmio and virtio-balloon drivers, reports what bound, then
# runs one workload chosen on the kernel command line:
#   rf.wl=WORKLOAD         idle dup osimage memcheck churn hold (see rfwork.c)
#   rf.args=k=v,k=v        the workload's parameters (commas become spaces)
#   rf.name=NAME           the VM's name (dup's unique pages depend on it)
#   rf.meminfo=MS          print a MEMINFO line every MS milliseconds
#   rf.then=poweroff|reboot|hold   when the workload returns (default hold)
#   rf.pre=WORKLOAD        run this one to its end first (exit=1), e.g. holdfree
#                          to leave freed pages the host has backed, for a balloon
#   rf.pre_args=k=v,k=v    its parameters
# Every line it prints starts with "rf-init:" so a log reader can tell it apart
# from the kernel's and the workload's.
/bin/busybox mkdir -p /proc /sys /dev /tmp /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null

up() { cut -d' ' -f1 /proc/uptime; }
say() { echo "rf-init: $*"; }

say "up $(up)s, kernel $(uname -r)"
for m in virtio_mmio virtio_balloon; do
	modprobe "$m" || say "modprobe $m failed"
done
n=0
for d in /sys/bus/virtio/devices/*; do
	[ -e "$d/device" ] || continue
	n=$((n + 1))
	drv=none
	[ -e "$d/driver" ] && drv=$(basename "$(readlink "$d/driver")")
	say "virtio $(basename "$d") device=$(cat "$d/device") driver=$drv features=$(cat "$d/features")"
	[ "$drv" = virtio_balloon ] && say "BALLOON bound $(basename "$d") features=$(cat "$d/features")"
done
say "modules loaded: $(cut -d' ' -f1 /proc/modules | tr '\n' ' ')virtio devices: $n, up $(up)s"

wl=idle args="" name=vm meminfo=0 then=hold pre="" pre_args=""
for a in $(cat /proc/cmdline); do
	case "$a" in
	rf.wl=*) wl=${a#rf.wl=} ;;
	rf.args=*) args=$(echo "${a#rf.args=}" | tr , ' ') ;;
	rf.name=*) name=${a#rf.name=} ;;
	rf.meminfo=*) meminfo=${a#rf.meminfo=} ;;
	rf.then=*) then=${a#rf.then=} ;;
	rf.pre=*) pre=${a#rf.pre=} ;;
	rf.pre_args=*) pre_args=$(echo "${a#rf.pre_args=}" | tr , ' ') ;;
	esac
done
[ "$meminfo" != 0 ] && rfwork meminfo interval_ms="$meminfo" &
if [ -n "$pre" ]; then
	say "first workload $pre $pre_args, up $(up)s"
	# shellcheck disable=SC2086
	rfwork "$pre" name="$name" exit=1 $pre_args
	say "first workload $pre ended with status $?, up $(up)s"
fi
say "workload $wl $args (name $name), up $(up)s"
if [ "$then" = hold ]; then
	# shellcheck disable=SC2086
	rfwork "$wl" name="$name" $args
else
	# shellcheck disable=SC2086
	rfwork "$wl" name="$name" exit=1 $args
fi
say "workload $wl ended with status $?, up $(up)s"
case "$then" in
poweroff) sync; poweroff -f ;;
reboot) sync; reboot -f ;;
esac
while :; do sleep 3600; done
