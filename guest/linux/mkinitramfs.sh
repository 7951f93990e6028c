#!/bin/bash
# Builds a gzip-compressed cpio (newc) initramfs from the pieces extracted out
# of Debian packages, with no tool beyond busybox, binutils and gzip:
#   mkinitramfs.sh -o OUT -k KPKG -b BUSYBOX -i INIT [-m MODULE]... [-f SRC:DEST]...
#     -k KPKG    the extracted linux-image package (holds lib/modules/VERSION)
#     -m MODULE  a module name (virtio_balloon); its dependencies (read from the
#                module's own depends= tag) are added too, and modules.dep is
#                generated with busybox's depmod, as the package ships none
#     -f SRC:DEST  a file (or directory, copied whole) placed at DEST
# Everything in the archive is owned by root; the staging directory is OUT.d.
set -euo pipefail
out="" kpkg="" bb="" init="" mods=() files=()
while getopts o:k:b:i:m:f: opt; do
	case $opt in
	o) out=$OPTARG ;;
	k) kpkg=$OPTARG ;;
	b) bb=$OPTARG ;;
	i) init=$OPTARG ;;
	m) mods+=("$OPTARG") ;;
	f) files+=("$OPTARG") ;;
	*) exit 64 ;;
	esac
done
[ -n "$out" ] && [ -d "$kpkg" ] && [ -x "$bb" ] && [ -f "$init" ] || {
	echo "mkinitramfs.sh: need -o OUT -k KPKG -b BUSYBOX -i INIT" >&2
	exit 64
}
bb=$(realpath "$bb")
kver=$(basename "$(ls -d "$kpkg"/lib/modules/*/)")
kmods=$kpkg/lib/modules/$kver
stage=$out.d
rm -rf "$stage"
mkdir -p "$stage"/{bin,dev,proc,sys,tmp,lib/modules/"$kver"}
cp "$bb" "$stage/bin/busybox"
cp "$init" "$stage/init"
chmod 755 "$stage/init"

# Modules with their dependency closure, at their packaged paths.
declare -A seen=()
add_module() {
	local name=$1 path dep
	[ -n "${seen[$name]:-}" ] && return
	seen[$name]=1
	path=$(find "$kmods/kernel" -name "$name.ko" -o -name "${name//_/-}.ko" | head -1)
	[ -n "$path" ] || { echo "mkinitramfs.sh: module $name not in $kmods" >&2; exit 1; }
	mkdir -p "$stage/lib/modules/$kver/$(dirname "${path#"$kmods"/}")"
	cp "$path" "$stage/lib/modules/$kver/${path#"$kmods"/}"
	for dep in $(strings -a "$path" | sed -n 's/^depends=//p' | tr , ' '); do
		add_module "$dep"
	done
}
for m in "${mods[@]}"; do add_module "$m"; done
cp "$kmods"/modules.builtin "$kmods"/modules.order "$stage/lib/modules/$kver/" 2>/dev/null || true
"$bb" depmod -b "$stage" "$kver"

for f in "${files[@]}"; do
	src=${f%%:*} dest=${f#*:}
	mkdir -p "$stage/$(dirname "$dest")"
	cp -RL "$src" "$stage/$dest"
done

# Sorted names and fixed times make the archive reproducible.
find "$stage" -exec touch -h -d @0 {} +
(cd "$stage" && find . -mindepth 1 | LC_ALL=C sort | "$bb" cpio -o -H newc -R 0:0 2>/dev/null) |
	gzip -n -6 >"$out.tmp"
mv "$out.tmp" "$out"
echo "mkinitramfs.sh: $out: $(du -k "$out" | cut -f1) KiB, modules: ${!seen[*]}"
