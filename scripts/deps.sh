#!/bin/sh
# Installs the Debian packages ramfold builds and tests with, when any is missing.
# Idempotent and quiet when everything is present; runs `apt-get update` once,
# only when something has to be installed.  Usage: scripts/deps.sh [extra-pkg...]
set -e
pkgs="liburcu-dev libxxhash-dev libnuma-dev libjemalloc-dev libcmocka-dev pkg-config liblz4-dev clang libclang-rt-14-dev libseccomp-dev zlib1g-dev $*"
missing=""
for p in $pkgs; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "deps: installing$missing" >&2
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
# shellcheck disable=SC2086
$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
