#!/bin/bash
# Build the unpatched base beside the patched tree, for the compatibility
# suite and the benchmarks that compare against it.
#
# The tree is a worktree of $SRC at tag "overlay" (the pristine base plus
# configure-overlay/, no series patch) in $BUILD_ROOT/unpatched, built with
# exactly the configure options of the patched build.  ccache shares the
# objects of every file the series does not touch, so this is cheap after
# the patched build.  Prints nothing but the ninja progress on stderr.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

wt=${UNPATCHED_SRC:-$BUILD_ROOT/unpatched}
git -C "$SRC" rev-parse -q --verify overlay >/dev/null ||
    die "no prepared tree; run make prepare"
# also moves it when configure-overlay/ changed since it was made
worktree_at "$wt" overlay
info "unpatched base at $(git -C "$wt" rev-parse --short HEAD) in $wt"
# No docs and no -Werror: this build only serves as the reference QEMU.
SRC=$wt OBJ=$wt/build \
    CONFIGURE_SUBST="$REFERENCE_BUILD_SUBST" \
    "$TOP/scripts/build.sh" qemu-system-x86_64 \
    contrib/ivshmem-server/ivshmem-server
