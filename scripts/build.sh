#!/bin/bash
# Configure (when needed) and build the patched tree in $OBJ with the
# trimmed option set from configure-overlay/.  Extra ninja targets may be
# given as arguments; by default builds the emulator, the tools and the
# qtests the test suite runs.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ -d "$SRC/.git" ] || die "$SRC is not prepared; run scripts/prepare-tree.sh"

opts=()
while read -r line; do
    line=${line%%#*}
    line=${line//[[:space:]]/}
    [ -n "$line" ] && opts+=("$line")
done < "$TOP/configure-overlay/configure-options"
fwpath=$(grep -v '^#' "$TOP/configure-overlay/firmwarepath" | paste -sd: -)
opts+=("--python=$SYS_PYTHON" "--firmwarepath=$fwpath"
       "--with-devices-x86_64=series-test" ${EXTRA_CONFIGURE:-})

# ccache through Debian's masquerade directory: QEMU's configure hands
# meson an explicit compiler, so meson's own ccache detection never fires.
[ -d /usr/lib/ccache ] && export PATH=/usr/lib/ccache:$PATH
export CCACHE_DIR=${CCACHE_DIR:-$CACHE_DIR/ccache}
export CCACHE_BASEDIR=$SRC
export CCACHE_NOHASHDIR=1
export CCACHE_SLOPPINESS=${CCACHE_SLOPPINESS:-time_macros,include_file_mtime,include_file_ctime}
ccache -M 5G >/dev/null 2>&1 || true

conf_id=$(printf '%s\n' "${opts[@]}" | sha256sum | cut -c1-64)
if [ ! -f "$OBJ/build.ninja" ] || [ "$(cat "$OBJ/.series-configure" 2>/dev/null)" != "$conf_id" ]; then
    info "configure ${opts[*]}"
    rm -rf "$OBJ"
    mkdir -p "$OBJ"
    (cd "$OBJ" && ../configure "${opts[@]}") > "$BUILD_ROOT/configure.log" 2>&1 || {
        tail -n 40 "$BUILD_ROOT/configure.log" >&2
        die "configure failed (full log: $BUILD_ROOT/configure.log)"
    }
    echo "$conf_id" > "$OBJ/.series-configure"
fi

if [ $# -gt 0 ]; then
    targets=("$@")
else
    targets=(all)
    # qtests the suite runs: the upstream ones covering our subsystems
    # plus any the series registers (listed in tests/qtests.list).
    while read -r t _; do
        case "$t" in ''|\#*) continue ;; esac
        targets+=("tests/qtest/$t")
    done < "$TOP/tests/qtests.list"
fi
info "ninja ${targets[*]}"
ninja -C "$OBJ" "${targets[@]}"
# The -kernel option roms (linuxboot_dma.bin, kvmvapic.bin) are built by
# the top-level Makefile's pc-bios/optionrom subdir, not by ninja.
if [ -f "$OBJ/pc-bios/optionrom/Makefile" ]; then
    make -s -C "$OBJ/pc-bios/optionrom" >/dev/null
fi
