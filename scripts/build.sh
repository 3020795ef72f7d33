#!/bin/bash
# Configure (when needed) and build the patched tree in $OBJ with the
# trimmed option set from configure-overlay/.  Extra ninja targets may be
# given as arguments; by default builds the emulator, the tools and the
# qtests the test suite runs.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

[ -e "$SRC/.git" ] || die "$SRC is not prepared; run scripts/prepare-tree.sh"

opts=()
while read -r line; do
    line=${line%%#*}
    line=${line//[[:space:]]/}
    [ -n "$line" ] && opts+=("$line")
done < "$TOP/configure-overlay/configure-options"
# CONFIGURE_SUBST="--from=--to ...": swap options of the list for a build
# that needs other ones (the unpatched base, the sanitizer build, bisect).
for sub in ${CONFIGURE_SUBST:-}; do
    found=0
    for i in "${!opts[@]}"; do
        if [ "${opts[$i]}" = "${sub%%=*}" ]; then opts[$i]=${sub#*=}; found=1; fi
    done
    [ $found = 1 ] || die "CONFIGURE_SUBST: ${sub%%=*} is not in configure-overlay/configure-options"
done
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

# The option ROMs need a 32-bit capable libgcc (gcc-multilib); configure
# decides once, so a later install must trigger a new configure.
multilib=$(ls /usr/lib/gcc/x86_64-linux-gnu/*/32/libgcc.a 2>/dev/null | head -n1)
conf_id=$({ printf '%s\n' "${opts[@]}"; echo "$multilib"; } | sha256sum | cut -c1-64)
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
# The -kernel option ROMs (linuxboot_dma.bin, kvmvapic.bin, ...) are
# built by the top-level Makefile's pc-bios/optionrom subdir, not by ninja.
if [ -f "$OBJ/pc-bios/optionrom/config.mak" ]; then
    make -s -C "$OBJ/pc-bios/optionrom" >/dev/null
fi

# A QEMU run from the build tree resolves its data directories and the
# --firmwarepath entries below $OBJ/qemu-bundle (util/cutils.c,
# get_relocated_path).  Wire the distribution's firmware and the ROMs just
# built in there, so qtests and guests find everything with no -L.
bundle=$OBJ/qemu-bundle
datadir=$(sed -n 's/^#define CONFIG_QEMU_DATADIR "\(.*\)"$/\1/p' "$OBJ/config-host.h")
mkdir -p "$bundle$datadir"
for rom in "$OBJ"/pc-bios/optionrom/*.bin; do
    [ -e "$rom" ] && ln -sfn "$rom" "$bundle$datadir/$(basename "$rom")"
done
while read -r dir; do
    case "$dir" in ''|\#*) continue ;; esac
    [ -d "$dir" ] || continue
    if [ -d "$bundle$dir" ] && [ ! -L "$bundle$dir" ]; then
        # a directory meson populated (e.g. the datadir): link file by file
        for f in "$dir"/*; do
            [ -e "$bundle$dir/$(basename "$f")" ] || ln -s "$f" "$bundle$dir/"
        done
    else
        mkdir -p "$(dirname "$bundle$dir")"
        ln -sfn "$dir" "$bundle$dir"
    fi
done < "$TOP/configure-overlay/firmwarepath"
for need in bios-256k.bin linuxboot_dma.bin kvmvapic.bin efi-virtio.rom; do
    found=
    for d in "$bundle$datadir" $(sed 's|^|'"$bundle"'|' "$TOP/configure-overlay/firmwarepath"); do
        [ -e "$d/$need" ] && found=1 && break
    done
    [ -n "$found" ] || echo "warning: firmware $need not found: guests that need it will fail" >&2
done
