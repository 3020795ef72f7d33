#!/bin/bash
# Install what building and testing the series needs, from Debian's
# mirror.  Idempotent and quiet when everything is present.  Adds a
# sources file of its own (deb-src for the suites carrying QEMU's orig
# tarballs, and bookworm-backports for meson >= 1.5 and pycotap).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

PKGS=(build-essential gcc-multilib pkg-config ninja-build git quilt ccache bison flex
      libglib2.0-dev libpixman-1-dev libslirp-dev libcap-ng-dev zlib1g-dev libbpf-dev
      python3-venv bzip2 xz-utils
      python3-sphinx python3-sphinx-rtd-theme
      seabios ipxe-qemu
      busybox-static cpio kmod
      iproute2 socat iperf3 procps)
BPO_PKGS=(meson python3-pycotap)
SOURCES=/etc/apt/sources.list.d/qemu-series.sources

missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
meson_ok=0
if "$SYS_PYTHON" - <<'PY' 2>/dev/null
import sys, mesonbuild.coredata as c, pycotap
v = tuple(int(x) for x in c.version.split('.')[:2])
sys.exit(0 if v >= (1, 5) else 1)
PY
then meson_ok=1; fi

# Our sources file names the mirror of the system's own apt
# configuration; it is written again when that mirror changes.
mirror=$(debian_mirror)
want_sources="# Added by the QEMU net series build (scripts/install-deps.sh).
Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: $mirror
Suites: sid trixie trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
need_sources=0
[ "$(cat "$SOURCES" 2>/dev/null)" = "$want_sources" ] || need_sources=1
if [ ${#missing[@]} -eq 0 ] && [ $meson_ok = 1 ] && [ $need_sources = 0 ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    [ ${#missing[@]} -eq 0 ] && [ $meson_ok = 1 ] && exit 0
    die "missing build dependencies (${missing[*]} meson>=1.5/pycotap: $meson_ok); run 'make deps' as root"
fi

if [ $need_sources = 1 ]; then
    info "writing $SOURCES (mirror $mirror)"
    printf '%s\n' "$want_sources" > "$SOURCES"
fi
export DEBIAN_FRONTEND=noninteractive
info "apt-get update"
apt-get update -qq >&2
if [ $meson_ok = 0 ]; then
    info "installing ${BPO_PKGS[*]} from bookworm-backports"
    apt-get install -y -qq -t bookworm-backports "${BPO_PKGS[@]}" >&2
fi
if [ ${#missing[@]} -gt 0 ]; then
    info "installing ${missing[*]}"
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi
