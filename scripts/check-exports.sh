#!/bin/bash
# The shared library must export exactly the symbols of its version script,
# and each of them must be declared in a public header.
set -eu
so=$1 map=$2
want=$(sed -n 's/^[[:space:]]*\(rf_[a-z0-9_]*\);.*/\1/p' "$map" | sort)
have=$(nm -D --defined-only "$so" | awk '$2 ~ /^[TDBRV]$/ {print $3}' | sed 's/@.*//' | sort)
fail=0
extra=$(comm -13 <(echo "$want") <(echo "$have"))
missing=$(comm -23 <(echo "$want") <(echo "$have"))
[ -z "$extra" ] || { echo "exported but not in $map: $extra"; fail=1; }
[ -z "$missing" ] || { echo "in $map but not defined: $missing"; fail=1; }
for s in $want; do
	grep -qw "$s" include/ramfold/*.h || { echo "$s is exported but declared in no public header"; fail=1; }
done
n=$(echo "$want" | wc -w)
echo "$n public symbols exported, all in include/ramfold/ and $map"
exec "$(dirname "$0")/report-result.sh" exports $((1 - fail)) $fail
