#!/usr/bin/env bash
# Build the test-only guest driver tests/guest/ivshmem-irq/ (counts the
# MSI-X interrupts of ivshmem-doorbell devices) for the offline guest's
# kernel, packed as an initramfs overlay.
#
# Usage: tests/guest/build-ivshmem-irq.sh [GUEST_DIR]   (default: <repo>/build/guest)
#
# Reads GUEST_DIR/guest.info (written by tests/guest/build.sh) for the
# kernel release and package version; needs the matching
# linux-headers-<release> (apt-get installed when running as root).
# Writes GUEST_DIR/ivshmem-irq.cpio.gz containing
# lib/modules/<release>/extra/ivshmem_irqcount.ko and prints its path on
# stdout.  Concatenate it after initramfs.cpio.gz to get an initrd with
# the module (the kernel accepts concatenated archives).  Does nothing
# when the overlay is up to date.
set -euo pipefail
export LC_ALL=C
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src="$here/ivshmem-irq"
gdir=${1:-${GUEST_DIR:-$here/../../build/guest}}
epoch=946684800

log() { printf 'ivshmem-irq-build: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[ -f "$gdir/guest.info" ] || die "$gdir/guest.info missing (run tests/guest/build.sh)"
kver=$(sed -n 's/^kernel_release=//p' "$gdir/guest.info")
kpkg_ver=$(sed -n 's/^kernel_package_version=//p' "$gdir/guest.info")
[ -n "$kver" ] || die "no kernel_release in $gdir/guest.info"
out="$gdir/ivshmem-irq.cpio.gz"

stamp=$( { cat "${BASH_SOURCE[0]}" "$src"/*; echo "$kver $kpkg_ver"; } | sha256sum | cut -d' ' -f1)
if [ -f "$out" ] && [ "$(cat "$gdir/.ivshmem-irq.stamp" 2>/dev/null)" = "$stamp" ]; then
    echo "$out"
    exit 0
fi

kdir=/usr/src/linux-headers-$kver
if [ ! -f "$kdir/Makefile" ]; then
    [ "$(id -u)" = 0 ] || die "$kdir missing (install linux-headers-$kver)"
    log "installing linux-headers-$kver=$kpkg_ver"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \
        "linux-headers-$kver=$kpkg_ver" >&2 || die "cannot install linux-headers-$kver"
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/ivshmem-irq.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
cp "$src"/* "$tmp/"
make -s -C "$kdir" M="$tmp" modules >&2 2> >(grep -v "Skipping BTF" >&2) \
    || die "module build failed"
mkdir -p "$tmp/root/lib/modules/$kver/extra"
install -m 0644 "$tmp/ivshmem_irqcount.ko" "$tmp/root/lib/modules/$kver/extra/"
find "$tmp/root" -exec touch -h -d "@$epoch" {} +
(cd "$tmp/root" && find . -mindepth 1 -printf '%P\n' | sort \
    | cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -9 -n >"$out.tmp"
mv -f "$out.tmp" "$out"
echo "$stamp" >"$gdir/.ivshmem-irq.stamp"
log "built $out for $kver"
echo "$out"
