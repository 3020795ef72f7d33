#!/bin/bash
# Build rsstool (tests/guest/rsstool), the test guest's stand-in for
# ethtool -L/-X/-S, as a static binary in an initramfs fragment that the
# tests append to the guest's initramfs: $GUEST_DIR/rsstool.cpio.gz.
#
#   tests/guest/build-rsstool.sh [GUEST_DIR]     prints the fragment's path
set -euo pipefail
export LC_ALL=C
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/rsstool"
gdir=${1:-${GUEST_DIR:-$here/../../build/guest}}
epoch=946684800
out="$gdir/rsstool.cpio.gz"

log() { printf 'rsstool-build: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

mkdir -p "$gdir"
stamp=$( { cat "${BASH_SOURCE[0]}" "$src"/*; gcc --version | head -n1; } | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(cat "$gdir/.rsstool.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$out"
    exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/rsstool.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/root/bin"
gcc -static -O2 -Wall -Werror -o "$tmp/root/bin/rsstool" "$src/rsstool.c" \
    || die "cannot build rsstool (needs gcc and a static libc, libc6-dev)"
strip "$tmp/root/bin/rsstool"
find "$tmp/root" -exec touch -h -d "@$epoch" {} +
(cd "$tmp/root" && find . -mindepth 1 -printf '%P\n' | sort \
    | cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n >"$out.tmp"
mv -f "$out.tmp" "$out"
echo "$stamp" >"$gdir/.rsstool.stamp"
log "built $out"
echo "$out"
