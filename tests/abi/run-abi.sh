#!/bin/bash
# The "abi" suite: a binary built in 0.2 days runs on this library.
#
# The 0.2 headers, version script and example embedder are frozen verbatim
# under tests/abi/0.2/ (git show df5b2d8:...). Two programs are built
# against those headers and linked against a stub libramfold.so.0 made from
# the frozen map (every symbol an empty function, under the 0.2 version
# nodes), so they bind to the symbol versions a binary linked against 0.2
# has (checked with objdump -T); then they run on the new library
# ($B/libramfold.so.0) through LD_LIBRARY_PATH:
#   old_api   every function taking a struct whose layout changed in 0.3,
#             with values checked member by member (tests/abi/old_api.c)
#   embedder  the 0.2 examples/embedder.c: a real vCPU under dedup, swap and
#             the balloon, as a process without capabilities, as
#             examples/run-example.sh runs the current one
# Then the constants through bindgen (tests/abi/check-bindgen.sh).
set -u
B=${B:-build}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0 skipped=0
ok() { echo "abi: $1: ok"; passed=$((passed + 1)); }
bad() { echo "abi: $1: FAILED"; failed=$((failed + 1)); }
skip() { echo "abi: $1: skipped"; skipped=$((skipped + 1)); }
cc=${CC:-gcc}
case $B in /*) lib=$B ;; *) lib=$root/$B ;; esac
old=$here/0.2

# The stub: the 0.2 library's symbol table and nothing else.
mkdir -p "$tmp/stub"
sed -n 's/^[[:space:]]*\(rf_[a-z0-9_]*\);.*/void \1(void) {}/p' "$old/libramfold.map" >"$tmp/stub.c"
if $cc -shared -fPIC -o "$tmp/stub/libramfold.so.0" "$tmp/stub.c" \
	-Wl,-soname,libramfold.so.0 -Wl,--version-script="$old/libramfold.map" &&
	ln -s libramfold.so.0 "$tmp/stub/libramfold.so"; then
	ok "stub libramfold.so.0 from the 0.2 map"
else
	bad "stub libramfold.so.0 from the 0.2 map"
fi

build() { # name source
	$cc -std=c11 -Wall -Wextra -Werror -I"$old" -o "$tmp/$1" "$2" \
		-L"$tmp/stub" -lramfold
}
for p in old_api:$here/old_api.c embedder:$old/embedder.c; do
	name=${p%%:*} src=${p#*:}
	if ! build "$name" "$src"; then
		bad "$name: build against the 0.2 headers"
		continue
	fi
	# Every rf_ symbol it needs is a 0.1 or 0.2 version, and the changed
	# functions are the 0.1 ones.
	refs=$(objdump -T "$tmp/$name" | awk '$NF ~ /^rf_/ && /\*UND\*/ {v = $(NF-1); gsub(/[()]/, "", v); print v, $NF}')
	if echo "$refs" | awk '$1 != "RAMFOLD_0.1" && $1 != "RAMFOLD_0.2" {bad = 1} END {exit bad}' &&
		echo "$refs" | grep -qx "RAMFOLD_0.1 rf_engine_new" &&
		echo "$refs" | grep -qx "RAMFOLD_0.1 rf_engine_config_init"; then
		ok "$name: binds to RAMFOLD_0.1/0.2 ($(echo "$refs" | wc -l) symbols)"
	else
		echo "$refs"
		bad "$name: binds to RAMFOLD_0.1/0.2"
	fi
done

run() { # name [wrapper...]
	local name=$1
	shift
	[ -x "$tmp/$name" ] || return
	LD_LIBRARY_PATH=$lib "$@" "$tmp/$name" >"$tmp/$name.log" 2>&1
	local rc=$?
	sed "s/^/  $name: /" "$tmp/$name.log" | tail -n 20
	case $rc in
	0) ok "$name: runs on the new library" ;;
	77) skip "$name: runs on the new library" ;;
	*) bad "$name: runs on the new library (exit $rc)" ;;
	esac
}
[ -e "$lib/libramfold.so.0" ] || bad "no $lib/libramfold.so.0 (make lib)"
run old_api
drop=()
if [ "$(id -u)" -eq 0 ]; then
	drop=(setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs)
fi
run embedder "${drop[@]}"

"$here/check-bindgen.sh" "$root/include/ramfold" >"$tmp/bindgen.log" 2>&1
rc=$?
sed 's/^/  bindgen: /' "$tmp/bindgen.log" | tail -n 30
case $rc in
0) ok "bindgen: every public constant" ;;
77) skip "bindgen: every public constant" ;;
*) bad "bindgen: every public constant" ;;
esac

rm -rf "$tmp"
exec "$root/scripts/report-result.sh" abi $passed $failed $skipped
