#!/bin/bash
# Fetches and unpacks, under DIR, the Debian packages the Linux guest image is
# made of, without installing anything: the kernel linux-image-amd64 depends
# on, and busybox-static.  `apt-get update` runs only when a download fails
# (the package lists are missing or stale).
#   fetch-debs.sh DIR     -> DIR/kpkg (kernel), DIR/bb (busybox), DIR/vmlinuz
set -euo pipefail
dir=$1
mkdir -p "$dir/deb"
kpkg=$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -1)
if [ -z "$kpkg" ]; then
	apt-get update -qq >/dev/null
	kpkg=$(apt-cache depends linux-image-amd64 | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)/\1/p' | head -1)
fi
[ -n "$kpkg" ] || { echo "fetch-debs.sh: cannot tell which kernel linux-image-amd64 depends on" >&2; exit 1; }
cd "$dir/deb"
for p in "$kpkg" busybox-static; do
	ls "${p}"_*.deb >/dev/null 2>&1 && continue
	echo "fetch-debs.sh: downloading $p" >&2
	# apt-get download drops privileges to _apt, which cannot write here.
	apt-get download -o APT::Sandbox::User=root "$p" >/dev/null 2>&1 || {
		apt-get update -qq >/dev/null
		apt-get download -o APT::Sandbox::User=root "$p" >/dev/null
	}
done
cd ..
if [ ! -e kpkg/.done-"$kpkg" ]; then
	rm -rf kpkg && dpkg-deb -x deb/"$kpkg"_*.deb kpkg && touch kpkg/.done-"$kpkg"
fi
if [ ! -x bb/bin/busybox ]; then
	rm -rf bb && dpkg-deb -x deb/busybox-static_*.deb bb
fi
ln -sf "$(ls kpkg/boot/vmlinuz-*)" vmlinuz
