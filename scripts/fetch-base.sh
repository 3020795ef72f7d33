#!/bin/bash
# Fetch Debian's orig tarball for QEMU $BASE through apt, verify its
# sha256 and print its path.  Downloads are cached in $CACHE_DIR.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

sha=${BASE_SHA256[$BASE]:-}
[ -n "$sha" ] || die "BASE=$BASE: no known sha256 (known: ${!BASE_SHA256[*]}); use QEMU_TARBALL= instead"
name="qemu_${BASE}+ds.orig.tar.xz"
mkdir -p "$CACHE_DIR"
out="$CACHE_DIR/$name"

verify() { echo "$sha  $1" | sha256sum -c --status; }

if [ -f "$out" ] && verify "$out"; then
    echo "$out"; exit 0
fi
rm -f "$out"

# Ask apt where the tarball lives (needs a deb-src entry, see
# install-deps.sh); fall back to the pool path on the configured mirror,
# since older versions drop out of the Sources index but stay in the pool
# (the mirror of the apt configuration, see debian_mirror in lib.sh).
url=$(apt-get source --print-uris "qemu=1:${BASE}+ds-*" 2>/dev/null |
      awk -v n="$name" '$2 == n { gsub("\x27", "", $1); print $1; exit }') || true
if [ -z "$url" ]; then
    url="$(debian_mirror)/pool/main/q/qemu/qemu_${BASE}%2bds.orig.tar.xz"
fi
info "fetching $name from $url"
tmp="$out.part"
rm -f "$tmp"
# As root apt would drop to the _apt user, which cannot write to the
# root-owned cache, and warns before falling back to root: skip the try.
sandbox=()
[ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
/usr/lib/apt/apt-helper "${sandbox[@]}" download-file "$url" "$tmp" "SHA256:$sha" >&2 ||
    die "download of $url failed"
verify "$tmp" || { rm -f "$tmp"; die "$name: sha256 mismatch (want $sha)"; }
mv "$tmp" "$out"
echo "$out"
