#!/bin/bash
# Every public constant comes through bindgen (Debian's package, 0.60) with
# the type a Rust embedder needs: run it over ramfold.h and check each
# `#define RF_*`, `static const ... RF_*` and enumerator of include/ramfold/
# is in its output, the 64-bit ones (feature masks, all-ones sentinels) as
# u64, and RF_VERSION_STRING equal to MAJOR.MINOR.PATCH.
# Exit 0 passed, 1 failed, 77 bindgen not installed (it is no dependency).
set -u
inc=${1:-include/ramfold}
command -v bindgen >/dev/null || { echo "bindgen not installed: skipped (apt-get install bindgen)"; exit 77; }
out=$(bindgen "$inc/ramfold.h" -- -I"$inc/.." 2>&1) || { echo "$out" | tail -5; echo "bindgen failed"; exit 1; }
fail=0
# Names the headers define (macros other than include guards and helpers,
# typed constants, enumerators).
names=$(cat "$inc"/*.h | sed -n \
	-e 's/^#define \(RF_[A-Z0-9_]*\)[[:space:]].*/\1/p' \
	-e 's/^static const [a-z0-9_]* \(RF_[A-Z0-9_]*\) =.*/\1/p' \
	-e 's/^[[:space:]]*\(RF_[A-Z0-9_]*\)\( = [^,]*\)\{0,1\},.*/\1/p' \
	-e 's/^[[:space:]]*\(RF_[A-Z0-9_]*\)\( = [^,]*\)\{0,1\}$/\1/p' \
	-e 's/^enum { \(RF_[A-Z0-9_]*\) = .*/\1/p' | sort -u)
n=0
for c in $names; do
	n=$((n + 1))
	# An enumerator of a named enum comes as ENUMNAME_RF_X (bindgen's
	# default constified enums).
	echo "$out" | grep -Eq "pub const ([a-z_]+_)?$c: " || { echo "missing: $c"; fail=1; }
done
# 64-bit values: every feature mask and sentinel as u64.
for c in $( (echo "$names" | grep -E '^RF_(BALLOON|VIRTIO)_F_|^RF_BALLOON_FEATURES_DEFAULT$'
	cat "$inc"/*.h | sed -n 's/^static const uint64_t \(RF_[A-Z0-9_]*\) =.*/\1/p') | sort -u); do
	echo "$out" | grep -q "pub const $c: u64 = " ||
		{ echo "$c: not u64: $(echo "$out" | grep "pub const $c:")"; fail=1; }
done
for c in RF_SWAP_NO_TARGET RF_BALLOON_STAT_UNSET RF_VM_GPA_NONE; do
	echo "$out" | grep -q "pub const $c: u64 = 18446744073709551615;" ||
		{ echo "$c: not u64::MAX"; fail=1; }
done
v=$(for p in MAJOR MINOR PATCH; do sed -n "s/^#define RF_VERSION_$p \([0-9]*\)/\1/p" "$inc/version.h"; done | paste -sd.)
echo "$out" | grep -q "pub const RF_VERSION_STRING: &\[u8; [0-9]*usize\] = b\"$v\\\\0\";" ||
	{ echo "RF_VERSION_STRING is not \"$v\" in bindgen's output"; fail=1; }
echo "$n public constants checked through $(bindgen --version)"
exit $fail
