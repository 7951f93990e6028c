#!/usr/bin/env bash
# Check the library's include graph against its layers (docs/design.md):
#
#   0 core         src/                        engine.h vm.h version.h
#   1 mechanisms   ksm/  balloon/  swap/       dedup.h  balloon.h  swap.h
#   2 accounting   overcommit/                 ledger.h policy.h
#   3 assembly     lib/                        ramfold.h (the umbrella)
#
# A file may include its own folder's headers and the headers of lower
# layers, never a higher layer's and never a sibling mechanism's. Public
# headers (include/ramfold/) belong to the layer that implements them.
# Inside balloon/, the generic virtio layer (virtqueue, virtio_dev,
# virtio_mmio: balloon/virt*) knows nothing of the balloon device.
# Prints every offending include and exits 1 if there is one.
set -u
cd "$(dirname "$0")/.."

declare -A rank=([src]=0 [ksm]=1 [balloon]=1 [swap]=1 [overcommit]=2 [lib]=3)
declare -A public=([engine.h]=src [vm.h]=src [version.h]=src [dedup.h]=ksm
	[balloon.h]=balloon [swap.h]=swap [ledger.h]=overcommit [policy.h]=overcommit
	[ramfold.h]=lib)

# The folder a file belongs to (include/ramfold/X.h: the layer implementing X).
folder_of() {
	case "$1" in
	include/ramfold/*) echo "${public[$(basename "$1")]:-?}" ;;
	*/*) echo "${1%%/*}" ;;
	*) echo "?" ;;
	esac
}

# Resolve a quoted include from file $1 the way the compiler does for the
# library: the file's own folder first, then -Isrc (the library's only
# private include path), then -Iinclude.
resolve_quoted() {
	local dir name=$2
	dir=$(dirname "$1")
	for cand in "$dir/$name" "src/$name" "include/$name"; do
		if [ -f "$cand" ]; then
			realpath --relative-to=. "$cand"
			return
		fi
	done
	echo ""
}

fail=0
checked=0
files=$(git ls-files 'src/*.[ch]' 'ksm/*.[ch]' 'balloon/*.[ch]' 'swap/*.[ch]' \
	'overcommit/*.[ch]' 'lib/*.[ch]' 'include/ramfold/*.h' 2>/dev/null)
[ -n "$files" ] || files=$(ls src/*.[ch] ksm/*.[ch] balloon/*.[ch] swap/*.[ch] \
	overcommit/*.[ch] lib/*.[ch] include/ramfold/*.h 2>/dev/null)
for f in $files; do
	from=$(folder_of "$f")
	while IFS=: read -r line text; do
		target=""
		if [[ $text =~ \#include[[:space:]]*\<ramfold/([a-z_]+\.h)\> ]]; then
			target="include/ramfold/${BASH_REMATCH[1]}"
		elif [[ $text =~ \#include[[:space:]]*\"([^\"]+)\" ]]; then
			name=${BASH_REMATCH[1]}
			if [[ $f == include/ramfold/* ]]; then
				target="include/ramfold/$name"
			else
				target=$(resolve_quoted "$f" "$name")
			fi
			if [ -z "$target" ]; then
				echo "$f:$line: includes \"$name\", which is not a file of the library"
				fail=1
				continue
			fi
		else
			continue # a system header
		fi
		checked=$((checked + 1))
		if [[ $f == balloon/virt* ]] && [[ $target == include/ramfold/balloon.h ||
			($target == balloon/* && $target != balloon/virt*) ]]; then
			echo "$f:$line: includes $target: the virtio layer may not know the balloon device"
			fail=1
			continue
		fi
		to=$(folder_of "$target")
		[ "$to" = "$from" ] && continue
		if [ -z "${rank[$to]:-}" ] || [ -z "${rank[$from]:-}" ]; then
			echo "$f:$line: includes $target, outside the layer table"
			fail=1
		elif [ "${rank[$to]}" -ge "${rank[$from]}" ]; then
			echo "$f:$line: includes $target: $from/ (layer ${rank[$from]}) may not" \
				"include $to/ (layer ${rank[$to]}); see docs/design.md, Layers"
			fail=1
		fi
	done < <(grep -n '^[[:space:]]*#[[:space:]]*include' "$f")
done

[ $fail -ne 0 ] || echo "$checked includes in $(echo "$files" | wc -w) files follow the layers"
exec "$(dirname "$0")/report-result.sh" layers $((1 - fail)) $fail
