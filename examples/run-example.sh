#!/bin/bash
# Installs ramfold into a scratch prefix (DESTDIR), builds examples/embedder.c
# against it through pkg-config alone, as a VMM's build would, and runs it
# with a real vCPU as a process without capabilities (bounding, inheritable
# and ambient sets cleared, so even uid 0 gets none at exec; no_new_privs).
# Reports as the suite "examples". Skipped where the example cannot run (no
# /dev/kvm, no /dev/userfaultfd: it exits 77 and says why).
set -u
B=${B:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
here=$(cd "$(dirname "$0")" && pwd)
report() {
	rm -rf "$tmp"
	exec "$here/../scripts/report-result.sh" examples "$@"
}
prefix=/opt/ramfold-example
make -s --no-print-directory install PREFIX=$prefix DESTDIR="$tmp" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; report 0 1; }
root=$tmp$prefix
export PKG_CONFIG_PATH=$root/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$tmp
flags=$(pkg-config --cflags --libs ramfold) || report 0 1
# $flags is a list of words.
# shellcheck disable=SC2086
${CC:-gcc} -std=c11 -Wall -Wextra -Werror -o "$tmp/embedder" "$here/embedder.c" $flags ||
	report 0 1
drop=()
if [ "$(id -u)" -eq 0 ]; then
	drop=(setpriv --inh-caps=-all --ambient-caps=-all --bounding-set=-all --no-new-privs)
fi
LD_LIBRARY_PATH=$root/lib "${drop[@]}" "$tmp/embedder"
rc=$?
case $rc in
0) report 1 0 ;;
77) report 0 0 1 ;;
*) echo "examples: embedder failed ($rc)"; report 0 1 ;;
esac
