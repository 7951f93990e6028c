#!/bin/bash
# Installs ramfold into a scratch prefix with DESTDIR, then builds and runs a
# tiny embedder against the installed copy through pkg-config alone: once
# linked with libramfold.so, once with libramfold.a and the flags of
# `pkg-config --static` (the system's libraries stay shared, as a distro
# build links them; a fully static binary is not supported: Debian's
# libjemalloc.a would replace the embedder's malloc).
set -u
B=${B:-build}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
here=$(cd "$(dirname "$0")" && pwd)
prefix=/opt/ramfold-test
report() {
	rm -rf "$tmp"
	exec "$here/report-result.sh" install "$1" "$2"
}
make -s --no-print-directory install PREFIX=$prefix DESTDIR="$tmp" >"$tmp/install.log" 2>&1 ||
	{ cat "$tmp/install.log"; report 0 1; }
root=$tmp$prefix
# The .pc file names the final prefix; point pkg-config at the staged copy.
export PKG_CONFIG_PATH=$root/lib/pkgconfig PKG_CONFIG_SYSROOT_DIR=$tmp
cat >"$tmp/embed.c" <<'C'
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ramfold/ramfold.h>

int main(void)
{
	struct rf_engine_config ec;
	struct rf_vm_config vc;
	struct rf_vm_stats st = {.size = sizeof(st)};
	rf_engine *e;
	rf_vm *vm;
	Dl_info di;
	char *ram;

	rf_engine_config_init(&ec);
	rf_vm_config_init(&vc);
	vc.ram_bytes = 16 << 20;
	if (rf_engine_new(&ec, &e) || rf_vm_new(e, "embed0", &vc, &vm) ||
	    rf_vm_map_ram(vm, 0, vc.ram_bytes, (void **)&ram))
		return 1;
	memset(ram, 1, 4096 * 10);
	if (rf_vm_stats(vm, &st) || st.resident_bytes != 4096 * 10)
		return 2;
	/* The library must not impose its allocator: malloc stays libc's. */
	if (!dladdr((void *)malloc, &di) || !strstr(di.dli_fname, "libc.so"))
		return 3;
	printf("embed: ramfold %s, %s resident %llu bytes, malloc from %s\n", rf_version(),
	       rf_vm_name(vm), (unsigned long long)st.resident_bytes, di.dli_fname);
	rf_engine_free(e);
	return 0;
}
C
flags=$(pkg-config --cflags --libs ramfold) || report 0 1
${CC:-gcc} -std=c11 -Wall -Wextra -Werror -o "$tmp/embed" "$tmp/embed.c" $flags -ldl ||
	report 0 1
LD_LIBRARY_PATH=$root/lib "$tmp/embed" || { echo "install-test: embedder failed ($?)"; report 0 1; }
# Static: every library libramfold.a needs must come from Libs.private.
# -l:libramfold.a picks the archive where -lramfold would pick the .so.
sflags=$(pkg-config --static --cflags --libs ramfold) || report 0 1
sflags=${sflags/-lramfold/-l:libramfold.a}
${CC:-gcc} -std=c11 -Wall -Wextra -Werror -o "$tmp/embed-static" "$tmp/embed.c" $sflags -ldl ||
	{ echo "install-test: static link failed: $sflags"; report 0 1; }
readelf -d "$tmp/embed-static" | grep -q "NEEDED.*libramfold" &&
	{ echo "install-test: embed-static links libramfold.so"; report 0 1; }
"$tmp/embed-static" || { echo "install-test: static embedder failed ($?)"; report 0 1; }
# The library itself must be found through its SONAME.
readelf -d "$root/lib/libramfold.so" | grep -q "SONAME.*libramfold.so.0" || report 0 1
# ramfold-run and its preload: installed, and the installed ramfold-run runs
# a program with the installed preload (found from its own path), which finds
# the installed libramfold.so.
preload=$(find "$root" -name libramfold-preload.so | head -1)
[ -x "$root/bin/ramfold-run" ] || { echo "install-test: ramfold-run not installed"; report 0 1; }
[ -n "$preload" ] || { echo "install-test: libramfold-preload.so not installed"; report 0 1; }
"$root/bin/ramfold-run" -- true || { echo "install-test: ramfold-run -- true failed"; report 0 1; }
maps=$("$root/bin/ramfold-run" -v -- grep -E 'libramfold(-preload)?\.so' /proc/self/maps 2>&1) ||
	{ echo "install-test: ramfold-run: $maps"; report 0 1; }
for f in "$preload" "$root/lib/libramfold.so"; do
	grep -q "$(readlink -f "$f")" <<<"$maps" ||
		{ echo "install-test: $f not the one mapped: $maps"; report 0 1; }
done
grep -q "started" <<<"$maps" || { echo "install-test: the preload did not start: $maps"; report 0 1; }
# ramfoldd and its systemd units, the service naming the installed binary.
"$root/bin/ramfoldd" --help >/dev/null || { echo "install-test: ramfoldd --help failed"; report 0 1; }
for u in ramfoldd.service ramfoldd.socket; do
	[ -f "$root/lib/systemd/system/$u" ] || { echo "install-test: $u not installed"; report 0 1; }
done
grep -q "^ExecStart=$prefix/bin/ramfoldd " "$root/lib/systemd/system/ramfoldd.service" ||
	{ echo "install-test: ramfoldd.service does not start $prefix/bin/ramfoldd (the installed path, without DESTDIR)"; report 0 1; }
report 1 0
