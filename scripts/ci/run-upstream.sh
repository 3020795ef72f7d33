#!/bin/bash
# CI job: apply the series to an upstream QEMU tree and test it.
#
#   scripts/ci/run-upstream.sh [--apply-only] TREE REF
#
# TREE is a git URL or a local git tree, REF a tag or a branch of it.
# The tree is cloned (shallow for a URL) into $UPSTREAM_DIR (default
# build/upstream-src), the series is applied with git am -3 on top of
# REF (scripts/prepare-tree.sh), and then `make QEMU_SRC=... check` runs.
# When a patch does not apply the job fails at once, naming the first
# such patch and showing git am's output and the conflict.
#
# --apply-only stops after applying the series (exit 0: every patch
# applies).  The GitLab and GitHub templates next to this script call
# it; tests/hygiene/ci-upstream.sh tests it against a local tree.
set -euo pipefail
# The tree is always $BUILD_ROOT/qemu: a SRC or OBJ from the caller's
# environment must not point prepare-tree.sh at someone's work tree.
unset SRC OBJ
. "$(dirname "$0")/../lib.sh"

apply_only=0
if [ "${1:-}" = --apply-only ]; then apply_only=1; shift; fi
[ $# -eq 2 ] || die "usage: $0 [--apply-only] TREE REF"
tree=$1 ref=$2
dest=${UPSTREAM_DIR:-$BUILD_ROOT/upstream-src}
marker=.series-ci-upstream

# This job owns $BUILD_ROOT/qemu and $dest: it replaces neither a tree it
# did not make (a developer's build/qemu, with their build) nor a
# directory it did not clone.
if [ -e "$SRC" ] && [ ! -e "$BUILD_ROOT/$marker" ]; then
    die "$SRC exists and was not made by this job; run it in a fresh clone of this repository, or with BUILD_ROOT= elsewhere"
fi
if [ -e "$dest" ] && [ ! -e "$dest/$marker" ]; then
    die "$dest exists and was not cloned by this job; set UPSTREAM_DIR= elsewhere"
fi
rm -rf "$dest"
mkdir -p "$(dirname "$dest")" "$BUILD_ROOT"
touch "$BUILD_ROOT/$marker"
if [ -d "$tree" ]; then
    info "upstream tree $tree at $ref"
    git clone -q --no-checkout "$tree" "$dest"
else
    info "upstream tree $tree at $ref (shallow clone)"
    git clone -q --depth 1 --branch "$ref" --no-checkout "$tree" "$dest"
    # git am -3 falls back to the blobs a patch names, which are those of
    # the series' base: fetch that release too
    git -C "$dest" fetch -q --depth 1 origin tag "v$BASE" 2>/dev/null ||
        echo "warning: $tree has no tag v$BASE: a conflict cannot be shown as a three-way merge" >&2
fi
touch "$dest/$marker"
# $dest's HEAD, detached at the branch or tag: what prepare-tree.sh clones
git -C "$dest" checkout -q --detach "origin/$ref" 2>/dev/null ||
    git -C "$dest" checkout -q --detach "$ref" 2>/dev/null ||
    die "$tree has no tag or branch '$ref'"

# A fresh build tree for this base: prepare-tree.sh clones $dest and
# applies configure-overlay/ and the series.
export QEMU_SRC=$dest
unset QEMU_REF
if ! "$TOP/scripts/prepare-tree.sh"; then
    echo "the series does not apply to $tree $ref" >&2
    exit 1
fi
info "every patch applies to $tree $ref"
[ $apply_only = 1 ] && exit 0
exec make -C "$TOP" QEMU_SRC="$dest" check
