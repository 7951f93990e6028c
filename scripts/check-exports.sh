#!/bin/bash
# The shared library must export exactly the symbols of its version script,
# and each of them must be declared in a public header. A symbol listed in
# two nodes changed its struct layout in the later one: it must be exported
# twice, the later node as its default (name@@NODE) and the earlier as the
# compatibility version (name@NODE, lib/abi_0_2.c).
set -eu
so=$1 map=$2
want=$(sed -n 's/^[[:space:]]*\(rf_[a-z0-9_]*\);.*/\1/p' "$map" | sort -u)
have=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRV]$/ {print $3}' | sed 's/@.*//' | sort -u)
fail=0
extra=$(comm -13 <(echo "$want") <(echo "$have"))
missing=$(comm -23 <(echo "$want") <(echo "$have"))
[ -z "$extra" ] || { echo "exported but not in $map: $extra"; fail=1; }
[ -z "$missing" ] || { echo "in $map but not defined: $missing"; fail=1; }
for s in $want; do
	grep -qw "$s" include/ramfold/*.h || { echo "$s is exported but declared in no public header"; fail=1; }
done
# name -> the nodes listing it, in map order; then what the library exports.
ncompat=0
while read -r name nodes; do
	set -- $nodes
	[ $# -ge 2 ] || continue
	old=$1 new=${!#}
	vers=$(nm -D --defined-only "$so" | awk -v s="$name" '{split($3, a, "@"); if (a[1] == s) print $3}')
	echo "$vers" | grep -qx "$name@@$new" ||
		{ echo "$name: listed in $old and $new, but $name@@$new is not its default"; fail=1; }
	echo "$vers" | grep -qx "$name@$old" ||
		{ echo "$name: listed in $old and $new, but $name@$old (lib/abi_0_2.c) is missing"; fail=1; }
	ncompat=$((ncompat + 1))
done < <(awk '/^RAMFOLD_[0-9.]+ \{/ {node = $1} /^[[:space:]]*rf_[a-z0-9_]*;/ {sub(/;.*/, "", $1); n[$1] = n[$1] " " node} END {for (s in n) print s, n[s]}' "$map")
echo "$ncompat symbols with a 0.2 compatibility version beside their new default"
n=$(echo "$want" | wc -w)
echo "$n public symbols exported, all in include/ramfold/ and $map"
exec "$(dirname "$0")/report-result.sh" exports $((1 - fail)) $fail
