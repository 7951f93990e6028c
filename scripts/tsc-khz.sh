#!/bin/bash
# Prints the host's TSC frequency in kHz, for a Linux guest's tsc_early_khz=
# under QEMU TCG: a guest left to calibrate its TSC against emulated timers
# can spin for minutes (one nested-rig boot did for 11). The kernel's refined
# calibration when dmesg still has it, else its first estimate, else
# /proc/cpuinfo's "cpu MHz".
khz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9]*\)\.\([0-9]*\) MHz.*/\1\2/p' | tail -1)
[ -n "$khz" ] || khz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9]*\)\.\([0-9]*\) MHz.*/\1\2/p' | tail -1)
[ -n "$khz" ] || khz=$(awk -F: '/cpu MHz/ {printf "%d", $2 * 1000; exit}' /proc/cpuinfo)
[ -n "$khz" ] || { echo "tsc-khz: no TSC frequency in dmesg or /proc/cpuinfo" >&2; exit 1; }
echo "$khz"
