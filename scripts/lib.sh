# Shared settings for the series scripts.  Sourced, not run.
# shellcheck shell=bash

TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BASE=${BASE:-10.2.2}
BUILD_ROOT=${BUILD_ROOT:-$TOP/build}
SRC=${SRC:-$BUILD_ROOT/qemu}
OBJ=${OBJ:-$SRC/build}
if [ -z "${CACHE_DIR:-}" ]; then
    if [ -w /var/cache ] || [ -d /var/cache/qemu-series ]; then
        CACHE_DIR=/var/cache/qemu-series
    else
        CACHE_DIR=${XDG_CACHE_HOME:-$HOME/.cache}/qemu-series
    fi
fi
SYS_PYTHON=${SYS_PYTHON:-/usr/bin/python3}
# Builds that only serve as a reference (the unpatched base, the sanitizer
# build) turn the developer's settings of configure-options back off.
REFERENCE_BUILD_SUBST="--enable-docs=--disable-docs --enable-werror=--disable-werror"

# The series file for the base being built: series-<major.minor> when it
# exists (series-10.0 for a 10.0 base, written by export-series.sh from a
# 10.0 tree), the main series otherwise.  A base given as QEMU_TARBALL
# gets the main series.
series_name() {
    local mm=
    if [ -n "${QEMU_SRC:-}" ]; then
        mm=$(git -C "$QEMU_SRC" show "${QEMU_REF:-HEAD}:VERSION" 2>/dev/null | cut -d. -f1-2) || true
    elif [ -z "${QEMU_TARBALL:-}" ]; then
        mm=$(echo "$BASE" | cut -d. -f1-2)
    fi
    if [ -n "$mm" ] && [ -f "$TOP/series-$mm" ]; then
        echo "series-$mm"
    else
        echo series
    fi
}

# Known Debian orig tarballs: version -> sha256
declare -A BASE_SHA256=(
    [10.2.2]=be05230fe47a6937cd29f28f562932c8125f9c93c2a82c625198f7a4aa601dfb
    [10.0.2]=0901da33844a331bf8b3602b9c1fbd178e60b737c8e3ade678255bd090c9b9f1
    [10.0.13]=6a0888e806c2ffc0c5f0733e974f9aea55491950d3c47c98669c8b236dde59ae
)

# Debian's packaging of those bases (its own patches, debian/patches),
# which a packager applies the series on top of: version -> Debian
# revision and sha256 of the .debian.tar.xz
declare -A DEBIAN_REVISION=(
    [10.2.2]=1:10.2.2+ds-1
    [10.0.13]=1:10.0.13+ds-0+deb13u1
)
declare -A DEBIAN_TAR_SHA256=(
    [10.2.2]=ddf75aceab4f8f77374f3cb34fc97b41514895aeb293ce8b2ddd5e072bb0f5c0
    [10.0.13]=da73c092f5684c551b0334d675eb16a3dec91e1edea94759cfb1102fa4a0364e
)

# Identity used for commits made in the unpacked tree (base, overlay).
GIT_ID=(-c user.name="QEMU net series" -c user.email="qemu-net-series@example.org"
        -c commit.gpgsign=false -c core.autocrlf=false -c gc.auto=0
        -c maintenance.auto=false)

die() { echo "error: $*" >&2; exit 1; }
info() { echo ">>> $*" >&2; }

# A worktree of $SRC in $1, detached at revision $2 (created if missing).
worktree_at() {
    local wt=$1 rev=$2
    if [ ! -e "$wt/.git" ]; then
        git -C "$SRC" worktree prune
        git -C "$SRC" worktree add -q -f --detach "$wt" "$rev"
    fi
    if [ "$(git -C "$wt" rev-parse HEAD)" != "$(git -C "$SRC" rev-parse "$rev")" ]; then
        git -C "$wt" checkout -q -f --detach "$rev"
    fi
}

# The Debian mirror this machine's apt uses for its main suites: the
# first URI of a deb822 .sources file or a one-line sources.list entry
# that is not a security archive.  Never a host written into this code:
# DEBIAN_MIRROR overrides it.
debian_mirror() {
    local f uri=${DEBIAN_MIRROR:-}
    if [ -z "$uri" ]; then
        for f in /etc/apt/sources.list.d/*.sources; do
            [ -f "$f" ] && ! grep -q 'QEMU net series' "$f" || continue
            uri=$(awk 'tolower($1) == "uris:" && $2 !~ /security/ { print $2; exit }' "$f")
            [ -n "$uri" ] && break
        done
    fi
    if [ -z "$uri" ]; then
        uri=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
              awk '$1 == "deb" && $0 !~ /security/ {
                       for (i = 2; i <= NF; i++) if ($i ~ /:\/\//) { print $i; exit } }')
    fi
    [ -n "$uri" ] || die "no Debian mirror in the apt configuration (set DEBIAN_MIRROR)"
    echo "${uri%/}"
}
