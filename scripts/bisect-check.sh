#!/bin/bash
# Build the tree after each patch of the series, incrementally, in a
# separate worktree (build/bisect) so the main tree and its build stay as
# they are.  Builds the emulator, the tools and every listed qtest whose
# source exists at that point of the series.
set -euo pipefail
. "$(dirname "$0")/lib.sh"

wt=$BUILD_ROOT/bisect
git -C "$SRC" rev-parse -q --verify series >/dev/null || die "no prepared tree; run make prepare"
worktree_at "$wt" overlay
commits=$(git -C "$SRC" rev-list --reverse overlay..series)
total=$(echo "$commits" | grep -c . || true)
i=0
for c in overlay $commits; do
    git -C "$wt" checkout -q --detach "$c"
    targets=(all)
    while read -r t _; do
        case "$t" in ''|\#*) continue ;; esac
        [ -f "$wt/tests/qtest/$t.c" ] && targets+=("tests/qtest/$t")
    done < "$TOP/tests/qtests.list"
    subject=$(git -C "$wt" log -1 --format=%s "$c")
    info "[$i/$total] $subject"
    if ! SRC=$wt OBJ=$wt/build "$TOP/scripts/build.sh" "${targets[@]}" > "$BUILD_ROOT/bisect.log" 2>&1; then
        tail -n 30 "$BUILD_ROOT/bisect.log" >&2
        die "build broken after [$i/$total] $subject (log: $BUILD_ROOT/bisect.log)"
    fi
    i=$((i + 1))
done
info "all $total patches build on their own"
