#!/usr/bin/env bash
# Build the offline test guest: a Debian kernel + a busybox initramfs.
#
# Usage: tests/guest/build.sh [OUTDIR]      (default: <repo>/build/guest)
#
# Outputs OUTDIR/vmlinuz and OUTDIR/initramfs.cpio.gz and prints those two
# paths on stdout, one per line; all logging goes to stderr.  OUTDIR/guest.info
# records the kernel that was used.
#
# Inputs: the Debian packages busybox-static and the versioned kernel image
# that linux-image-amd64 depends on (override the meta package with
# KERNEL_META=...), plus tests/guest/{init,modules.list}.  The .debs are
# downloaded with `apt-get download` into ${CACHE_DIR:-/var/cache/qemu-series}/debs
# and reused.  The result is a pure function of this script, init,
# modules.list and the exact package versions; a hash of those is kept in
# OUTDIR/.stamp and a re-run with nothing changed does nothing.
#
# The host's own kernel is never used.  Missing host tools are apt-get
# installed when running as root.

set -euo pipefail
export LC_ALL=C
umask 022

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
self="$here/$(basename "${BASH_SOURCE[0]}")"
init_src="$here/init"
list_src="$here/modules.list"
outdir=${1:-$here/../../build/guest}
cache=${CACHE_DIR:-/var/cache/qemu-series}/debs
kernel_meta=${KERNEL_META:-linux-image-amd64}
# Fixed timestamp for every file in the initramfs (reproducible archive).
epoch=946684800

log() { printf 'guest-build: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

# Make sure command $1 exists, installing Debian package $2 if we can.
need() {
    command -v "$1" >/dev/null 2>&1 && return 0
    [ "$(id -u)" = 0 ] || die "'$1' missing (install package $2)"
    log "installing $2 (for $1)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$2" >&2 \
        || die "apt-get install $2 failed"
    command -v "$1" >/dev/null 2>&1 || die "'$1' still missing after installing $2"
}

need apt-get apt
need apt-cache apt
need dpkg-deb dpkg
need sha256sum coreutils
need flock util-linux
need cpio cpio
need gzip gzip
need depmod kmod
need modinfo kmod

mkdir -p "$outdir"
outdir=$(cd "$outdir" && pwd)
exec 9>"$outdir/.lock"
flock 9

# --- Resolve exact package versions (apt candidates) -----------------------

# This host's apt config disables apt's binary package cache, which makes
# every apt-cache call re-parse all package lists (seconds).  Keep our own
# cache next to the .debs; apt revalidates it against the lists itself.
apt_cache_opts=()
mkdir -p "$cache/../apt" 2>/dev/null || true
if [ -w "$cache/../apt" ]; then
    apt_cache_opts=(-o "Dir::Cache::pkgcache=$(cd "$cache/../apt" && pwd)/pkgcache.bin")
fi

# Print "package version depends" for the candidate of each package given.
apt_candidates() {
    apt-cache "${apt_cache_opts[@]}" show --no-all-versions "$@" 2>/dev/null | awk '
        /^Package: / { p = $2 }
        /^Version: / { v = $2 }
        /^Depends: / { sub(/^Depends: /, ""); d = $0 }
        /^$/ { if (p != "") print p, v, d; p = v = d = "" }
        END  { if (p != "") print p, v, d }'
}

# The kernel meta package depends on the real image package, normally with
# an exact version: "linux-image-6.1.0-NN-amd64 (= 6.1.x-y)".
kpkg='' kpkg_ver='' bb_ver=''
while read -r p v d; do
    case "$p" in
        busybox-static) bb_ver=$v ;;
        "$kernel_meta")
            kpkg=$(tr ',|' '\n' <<<"$d" | awk '$1 ~ /^linux-image-[0-9]/ { print $1; exit }')
            kpkg_ver=$(tr ',|' '\n' <<<"$d" \
                | awk -v k="$kpkg" '$1 == k && $2 == "(=" { sub(/\)$/, "", $3); print $3; exit }')
            ;;
    esac
done < <(apt_candidates "$kernel_meta" busybox-static)
[ -n "$kpkg" ] || die "cannot resolve the kernel image package behind $kernel_meta"
[ -n "$bb_ver" ] || die "no candidate version for busybox-static"
if [ -z "$kpkg_ver" ]; then
    # Unversioned dependency: take the image package's own candidate.
    read -r _ kpkg_ver _ < <(apt_candidates "$kpkg") || true
    [ -n "$kpkg_ver" ] || die "no candidate version for $kpkg"
fi

# --- Up to date? ------------------------------------------------------------

stamp=$( {
    sha256sum "$self" "$init_src" "$list_src" | awk '{ print $1 }'
    echo "$kpkg=$kpkg_ver"
    echo "busybox-static=$bb_ver"
} | sha256sum | awk '{ print $1 }')

if [ -f "$outdir/vmlinuz" ] && [ -f "$outdir/initramfs.cpio.gz" ] \
   && [ "$(cat "$outdir/.stamp" 2>/dev/null)" = "$stamp" ]; then
    log "up to date ($kpkg $kpkg_ver)"
    printf '%s\n' "$outdir/vmlinuz" "$outdir/initramfs.cpio.gz"
    exit 0
fi

# --- Fetch .debs into the cache ---------------------------------------------

mkdir -p "$cache" || die "cannot create $cache"

# Print the cached .deb of package $1 at version $2, downloading it if needed.
# apt-get download verifies the archive checksums; the file name mangles the
# epoch (':' -> '%3a'), so match on the control fields instead.
find_deb() {
    local f
    for f in "$cache/$1"_*.deb; do
        [ -f "$f" ] || continue
        if [ "$(dpkg-deb -f "$f" Package)" = "$1" ] \
           && [ "$(dpkg-deb -f "$f" Version)" = "$2" ]; then
            echo "$f"
            return 0
        fi
    done
    return 1
}
fetch_deb() {
    local apt_opts=()
    find_deb "$1" "$2" && return 0
    log "downloading $1=$2 into $cache"
    # As root apt drops privileges to _apt, which cannot write to a root-owned
    # cache dir; it then falls back to root with a warning.  Skip the attempt.
    [ "$(id -u)" = 0 ] && apt_opts=(-o APT::Sandbox::User=root)
    (cd "$cache" && apt-get -q "${apt_cache_opts[@]}" "${apt_opts[@]}" download "$1=$2" >&2) \
        || die "apt-get download $1=$2 failed"
    find_deb "$1" "$2" || die "downloaded $1=$2 but cannot find it in $cache"
}

kdeb=$(fetch_deb "$kpkg" "$kpkg_ver")
bbdeb=$(fetch_deb busybox-static "$bb_ver")

# --- Extract ----------------------------------------------------------------

tmp=$(mktemp -d "${TMPDIR:-/tmp}/qemu-guest.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

log "extracting $(basename "$kdeb")"
dpkg-deb -x "$kdeb" "$tmp/kernel"
dpkg-deb -x "$bbdeb" "$tmp/busybox"

kvers=("$tmp"/kernel/lib/modules/*)
if [ "${#kvers[@]}" != 1 ] || [ ! -d "${kvers[0]}" ]; then
    die "expected exactly one module tree in $kpkg"
fi
kver=${kvers[0]##*/}
kimage="$tmp/kernel/boot/vmlinuz-$kver"
[ -f "$kimage" ] || die "no /boot/vmlinuz-$kver in $kpkg"
ksrc="$tmp/kernel/lib/modules/$kver"
bbbin="$tmp/busybox/bin/busybox"
[ -x "$bbbin" ] || die "no /bin/busybox in busybox-static"

# --- Stage the initramfs tree -----------------------------------------------

root="$tmp/root"
kdst="$root/lib/modules/$kver"
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,run,root,etc} "$kdst"

install -m 0755 "$bbbin" "$root/bin/busybox"
# One symlink per applet at the path busybox itself suggests (bin/sh,
# sbin/ip, usr/bin/nc, ...).  Absolute targets resolve inside the guest.
while read -r applet; do
    [ -e "$root/$applet" ] || [ -L "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done < <("$bbbin" --list-full)
for a in sh ip ping mount insmod modprobe cat echo sleep nc devmem ifconfig setsid cttyhack usleep; do
    [ -L "$root/bin/$a" ] || [ -L "$root/sbin/$a" ] || [ -L "$root/usr/bin/$a" ] \
        || [ -L "$root/usr/sbin/$a" ] || die "busybox-static lacks applet '$a'"
done

install -m 0755 "$init_src" "$root/init"

# Index the package's modules by normalised name ('-' and '_' are equivalent
# in module names) and note which ones are built in.
declare -A modfile=() builtin=() staged=()
# Normalised module name of path $1, in $mod (no subshell: ~4000 calls).
modname() { mod=${1##*/}; mod=${mod%%.ko*}; mod=${mod//-/_}; }
while read -r f; do
    modname "$f"
    modfile[$mod]=${f#"$ksrc"/}
done < <(find "$ksrc/kernel" -type f \( -name '*.ko' -o -name '*.ko.*' \))
if [ -f "$ksrc/modules.builtin" ]; then
    while read -r f; do modname "$f"; builtin[$mod]=1; done <"$ksrc/modules.builtin"
fi

load_order=()
# Copy module $1 (decompressed) and, first, everything it depends on, so
# load_order ends up in a valid insmod order.
stage_module() {
    local name=$1 rel dst dep deps
    [ -n "${staged[$name]:-}" ] && return 0
    staged[$name]=1
    rel=${modfile[$name]:-}
    [ -n "$rel" ] || die "module $name not found in $kpkg"
    # busybox insmod cannot read compressed modules, so store plain .ko.
    dst="${rel%%.ko*}.ko"
    mkdir -p "$(dirname "$kdst/$dst")"
    case "$rel" in
        *.ko)     cp "$ksrc/$rel" "$kdst/$dst" ;;
        *.ko.xz)  need xz xz-utils; xz -dc "$ksrc/$rel" >"$kdst/$dst" ;;
        *.ko.zst) need zstd zstd;   zstd -q -dc "$ksrc/$rel" >"$kdst/$dst" ;;
        *.ko.gz)  gzip -dc "$ksrc/$rel" >"$kdst/$dst" ;;
        *)        die "unknown module format: $rel" ;;
    esac
    deps=$(modinfo -F depends "$kdst/$dst")
    for dep in ${deps//,/ }; do
        stage_module "${dep//-/_}"
    done
    load_order+=("$name $dst")
}

while read -r line; do
    line=${line%%#*}
    read -r name _ <<<"$line" || true
    [ -n "${name:-}" ] || continue
    name=${name//-/_}
    if [ -z "${modfile[$name]:-}" ] && [ -n "${builtin[$name]:-}" ]; then
        log "note: $name is built into $kver, skipping"
        continue
    fi
    stage_module "$name"
done <"$list_src"

printf '%s\n' "${load_order[@]}" >"$root/etc/modules.load"
cp "$list_src" "$root/etc/modules.list"
for f in modules.builtin modules.builtin.modinfo; do
    if [ -f "$ksrc/$f" ]; then cp "$ksrc/$f" "$kdst/$f"; fi
done
# modules.order (used by depmod for ordering) restricted to what we ship.
printf '%s\n' "${load_order[@]}" | awk '{ print $2 }' | sort >"$tmp/shipped"
if [ -f "$ksrc/modules.order" ]; then
    awk 'NR == FNR { ship[$0] = 1; next } ($0 in ship)' "$tmp/shipped" "$ksrc/modules.order" \
        >"$kdst/modules.order"
fi
# modules.dep & co. for the staged subset, so `modprobe` works interactively.
depmod -b "$root" "$kver"
log "kernel $kver, modules: $(printf '%s\n' "${load_order[@]}" | awk '{ print $1 }' | paste -sd' ')"

# --- Pack -------------------------------------------------------------------

find "$root" -exec touch -h -d "@$epoch" {} +
(cd "$root" && find . -mindepth 1 -printf '%P\n' | sort \
    | cpio -o -H newc -R 0:0 --reproducible --quiet) \
    | gzip -9 -n >"$outdir/initramfs.cpio.gz.tmp"
cp "$kimage" "$outdir/vmlinuz.tmp"
mv -f "$outdir/vmlinuz.tmp" "$outdir/vmlinuz"
mv -f "$outdir/initramfs.cpio.gz.tmp" "$outdir/initramfs.cpio.gz"
cat >"$outdir/guest.info" <<EOF
kernel_package=$kpkg
kernel_package_version=$kpkg_ver
kernel_release=$kver
busybox_static_version=$bb_ver
modules=$(printf '%s\n' "${load_order[@]}" | awk '{ print $1 }' | paste -sd' ')
EOF
echo "$stamp" >"$outdir/.stamp"
log "built $outdir ($(du -k "$outdir/initramfs.cpio.gz" | cut -f1) KiB initramfs)"

printf '%s\n' "$outdir/vmlinuz" "$outdir/initramfs.cpio.gz"
