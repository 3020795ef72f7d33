#!/bin/bash
# Make $SRC a git tree: base commit (tag "base"), configure-overlay commit
# (tag "overlay"), then the series applied with git am on branch "series".
#
# The base is, in order of preference: $QEMU_SRC (a git tree of the user;
# $QEMU_REF, a tag or branch of it, else its HEAD),
# $QEMU_TARBALL (any QEMU source tarball), or Debian's orig tarball of
# $BASE fetched and verified by fetch-base.sh.
#
# Re-running it with an unchanged base only re-applies the series when
# patches/ or series changed, keeping unchanged files untouched so the
# build stays incremental.  It refuses to throw away commits made on the
# series branch that are not exported yet (scripts/export-series.sh).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

if [ -n "${QEMU_SRC:-}" ]; then
    [ -d "$QEMU_SRC/.git" ] || [ -f "$QEMU_SRC/.git" ] || die "QEMU_SRC=$QEMU_SRC is not a git tree"
    base_id="git:$(cd "$QEMU_SRC" && pwd):$(git -C "$QEMU_SRC" rev-parse "${QEMU_REF:-HEAD}^{commit}")"
elif [ -n "${QEMU_TARBALL:-}" ]; then
    [ -f "$QEMU_TARBALL" ] || die "QEMU_TARBALL=$QEMU_TARBALL does not exist"
    QEMU_TARBALL=$(cd "$(dirname "$QEMU_TARBALL")" && pwd)/$(basename "$QEMU_TARBALL")
    base_id="tar:$QEMU_TARBALL:$(sha256sum < "$QEMU_TARBALL" | cut -c1-64)"
else
    base_id="debian:$BASE:${BASE_SHA256[$BASE]:-unknown}"
fi

overlay_id=$(cd "$TOP" && cat configure-overlay/fixups/*/*.patch configure-overlay/devices/* | sha256sum | cut -c1-64)
SERIES_NAME=$(series_name)
series_id=$(cd "$TOP" && { cat "$SERIES_NAME"; awk '!/^#/ && NF {print "patches/" $1}' "$SERIES_NAME" | xargs -r cat; } | sha256sum | cut -c1-64)
stamp="$BUILD_ROOT/prepared"

git_src() { git -C "$SRC" "${GIT_ID[@]}" "$@"; }

# git am -3, as a developer applies a series to a newer tree: a patch whose
# context moved still applies through its blob ids.  The first patch that
# does not apply is named, with git am's output and the conflict.
apply_series() {
    git_src checkout -q -B series overlay
    local p n=0 log
    log=$(mktemp)
    while read -r p _; do
        case "$p" in ''|\#*) continue ;; esac
        if ! git_src am -3 -q --keep-cr "$TOP/patches/$p" > "$log" 2>&1; then
            {
                echo "first patch that does not apply: patches/$p"
                echo "--- git am -3:"
                cat "$log"
                echo "--- conflict (git diff):"
                git -C "$SRC" diff | head -n "${CONFLICT_LINES:-200}"
            } >&2
            git_src am --abort >/dev/null 2>&1 || true
            rm -f "$log"
            die "patches/$p does not apply with git am -3 to $(git -C "$SRC" describe --always --tags base 2>/dev/null || echo the base)"
        fi
        n=$((n + 1))
    done < "$TOP/$SERIES_NAME"
    rm -f "$log"
    info "applied $n patches of $SERIES_NAME on branch series"
}

# Does exporting the tree's branch reproduce patches/ + series exactly?
in_sync_with_patches() {
    local tmp rc=1
    tmp=$(mktemp -d)
    if [ "$SERIES_NAME" != series ]; then
        # Exported against a copy of the main series, which it shares
        mkdir -p "$tmp/patches"
        cp "$TOP/series" "$tmp/"
        cp "$TOP"/patches/*.patch "$tmp/patches/" 2>/dev/null || true
        if "$TOP/scripts/export-series.sh" "$SRC" "$tmp" "${SERIES_NAME#series-}" >/dev/null 2>&1 &&
           diff -r "$TOP/patches/$mm" "$tmp/patches/$mm" >/dev/null 2>&1 &&
           diff "$TOP/$SERIES_NAME" "$tmp/$SERIES_NAME" >/dev/null 2>&1; then
            rc=0
        fi
    elif "$TOP/scripts/export-series.sh" "$SRC" "$tmp" >/dev/null 2>&1 &&
       diff -r -x '[0-9]*.[0-9]*' "$TOP/patches" "$tmp/patches" >/dev/null 2>&1 &&
       diff "$TOP/series" "$tmp/series" >/dev/null 2>&1; then
        rc=0
    fi
    rm -rf "$tmp"
    return $rc
}

# configure-overlay: fixups the stripped +ds tarball needs, and the trimmed
# device set.  One commit on top of "base", tagged "overlay", kept apart
# from the series.
apply_overlay() {
    git_src checkout -q -B base-branch base
    # The fixups are kept per QEMU major.minor (the meson files differ);
    # a base without a set of its own gets the newest one.
    if [ ! -e "$SRC/pc-bios/bios-256k.bin" ]; then
        local mm fixdir f
        mm=$(cut -d. -f1-2 "$SRC/VERSION")
        fixdir="$TOP/configure-overlay/fixups/$mm"
        [ -d "$fixdir" ] || fixdir=$(ls -d "$TOP"/configure-overlay/fixups/*/ | sort -V | tail -n1)
        for f in "${fixdir%/}"/*.patch; do
            info "overlay: ${f#"$TOP"/}"
            patch -s -p1 -f -d "$SRC" --no-backup-if-mismatch < "$f" ||
                die "overlay fixup ${f#"$TOP"/} does not apply to this base ($(cat "$SRC/VERSION"))"
        done
    fi
    install -m 644 "$TOP/configure-overlay/devices/x86_64-softmmu.mak" \
        "$SRC/configs/devices/x86_64-softmmu/series-test.mak"
    git_src add -A .
    git_src commit -q -m "configure-overlay: stripped tarball fixups, trimmed device set"
    git_src tag -f overlay >/dev/null
}

fresh=1
if [ -f "$stamp" ] && [ -d "$SRC/.git" ]; then
    read -r s_base s_overlay s_series s_head < "$stamp" || true
    if [ "$s_base" = "$base_id" ] && [ "$s_overlay" != "$overlay_id" ] &&
       [ "$(git -C "$SRC" rev-parse HEAD)" = "$s_head" ] &&
       [ -z "$(git -C "$SRC" status --porcelain --untracked-files=no)" ]; then
        # Same base, new overlay: redo the overlay commit and the series
        # in place; files that do not change keep their timestamps, so the
        # rebuild stays incremental.
        info "configure-overlay changed: re-applying it and the series"
        apply_overlay
        apply_series
        echo "$base_id $overlay_id $series_id $(git -C "$SRC" rev-parse HEAD)" > "$stamp"
        exit 0
    fi
    if [ "$s_base" = "$base_id" ] && [ "$s_overlay" = "$overlay_id" ]; then
        fresh=0
        if [ "$s_series" = "$series_id" ] && [ "$(git -C "$SRC" rev-parse HEAD)" = "$s_head" ]; then
            exit 0
        fi
        if [ "$(git -C "$SRC" rev-parse HEAD)" != "$s_head" ] && in_sync_with_patches; then
            # The branch moved because its commits were just exported.
            echo "$base_id $overlay_id $series_id $(git -C "$SRC" rev-parse HEAD)" > "$stamp"
            exit 0
        fi
        if [ "$(git -C "$SRC" rev-parse HEAD)" != "$s_head" ]; then
            die "$SRC has commits that are not in patches/ (HEAD moved since it was prepared).
       Export them with scripts/export-series.sh, or drop them with 'make distclean'."
        fi
        if [ -n "$(git -C "$SRC" status --porcelain --untracked-files=no)" ]; then
            die "$SRC has uncommitted changes; commit and export them, or 'make distclean'"
        fi
        info "series changed: re-applying on top of the overlay"
        apply_series
    fi
fi

if [ $fresh = 1 ]; then
    # A new base starts the tree over: never at the cost of commits on
    # its series branch that patches/ does not have.
    if [ -e "$SRC/.git" ] && git -C "$SRC" rev-parse -q --verify series >/dev/null 2>&1 &&
       ! in_sync_with_patches; then
        die "$SRC has commits on branch series that are not in patches/, and the base changed.
       Export them first (scripts/export-series.sh from that tree), or drop them with 'make distclean'."
    fi
    rm -rf "$SRC"
    mkdir -p "$BUILD_ROOT"
    if [ -n "${QEMU_SRC:-}" ]; then
        info "cloning $QEMU_SRC${QEMU_REF:+ at $QEMU_REF}"
        git clone -q ${QEMU_REF:+--branch "$QEMU_REF"} "$QEMU_SRC" "$SRC"
        git_src checkout -q -B base-branch
        git_src tag -f base >/dev/null
    else
        tarball=${QEMU_TARBALL:-}
        if [ -z "$tarball" ]; then
            tarball=$("$TOP/scripts/fetch-base.sh")
        fi
        info "unpacking $tarball"
        tmp=$(mktemp -d "$BUILD_ROOT/unpack.XXXXXX")
        tar -C "$tmp" --no-same-owner --no-same-permissions -xf "$tarball"
        top=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d)
        [ "$(echo "$top" | wc -l)" = 1 ] && [ -f "$top/VERSION" ] || die "$tarball: not a QEMU source tarball"
        mv "$top" "$SRC"
        rmdir "$tmp"
        git -C "$SRC" init -q -b base-branch
        git_src add -A -f .
        git_src commit -q -m "QEMU $(cat "$SRC/VERSION") ($(basename "$tarball"))"
        git_src tag -f base >/dev/null
    fi
    printf '/build/\n' >> "$SRC/.git/info/exclude"
    git -C "$SRC" config gc.auto 0

    apply_overlay
    apply_series
fi

mkdir -p "$BUILD_ROOT"
echo "$base_id $overlay_id $series_id $(git -C "$SRC" rev-parse HEAD)" > "$stamp"
