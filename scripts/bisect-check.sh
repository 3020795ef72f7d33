#!/bin/bash
# Build the tree after each patch of the series, incrementally, in a
# separate worktree (build/bisect) so the main tree and its build stay as
# they are.  Builds the emulator, the tools and every listed qtest whose
# source exists at that point of the series, with -Werror.
#
# Then runs qtests of tests/qtests.list through meson (quick setup, no
# slow cases):
#   BISECT_QTESTS=touched (default)  after each patch, the listed qtests
#                          whose source the patch changes; after the last
#                          patch of each group (the headings in `series`),
#                          every listed qtest that exists there
#   BISECT_QTESTS=all      after each patch, every listed qtest that
#                          exists there (about 45 minutes more)
#   BISECT_QTESTS=none     build only
set -euo pipefail
. "$(dirname "$0")/lib.sh"

mode=${BISECT_QTESTS:-touched}
case "$mode" in touched|all|none) ;; *) die "BISECT_QTESTS must be touched, all or none" ;; esac

wt=$BUILD_ROOT/bisect
git -C "$SRC" rev-parse -q --verify series >/dev/null || die "no prepared tree; run make prepare"
worktree_at "$wt" overlay
commits=$(git -C "$SRC" rev-list --reverse overlay..series)
total=$(echo "$commits" | grep -c . || true)

# Patch numbers (1-based, series order) that end a group: `series` heads
# each group with a comment line (export-series.sh), so a patch ends its
# group when a heading or the end of the file follows it.
series_file=$TOP/$(series_name)
group_ends=" $(awk '/\.patch$/ { n++; last = n; next }
                   /^# / && last { print last; last = 0 }
                   END { if (last) print last }' "$series_file" | tr '\n' ' ')"
[ "$(grep -c '\.patch$' "$series_file")" = "$total" ] ||
    die "$(basename "$series_file") and the series branch differ in length: run make export"

listed=()
while read -r t _; do
    case "$t" in ''|\#*) continue ;; esac
    listed+=("$t")
done < "$TOP/tests/qtests.list"

mapfile -t clist < <(echo "$commits")
i=0
ran=0
for c in overlay "${clist[@]}"; do
    git -C "$wt" checkout -q --detach "$c"
    targets=(all)
    present=()
    for t in "${listed[@]}"; do
        if [ -f "$wt/tests/qtest/$t.c" ]; then
            targets+=("tests/qtest/$t")
            present+=("$t")
        fi
    done
    subject=$(git -C "$wt" log -1 --format=%s "$c")
    info "[$i/$total] $subject"
    # -Werror after every patch, as the main build; the docs only there.
    if ! SRC=$wt OBJ=$wt/build CONFIGURE_SUBST="--enable-docs=--disable-docs" \
        "$TOP/scripts/build.sh" "${targets[@]}" > "$BUILD_ROOT/bisect.log" 2>&1; then
        tail -n 30 "$BUILD_ROOT/bisect.log" >&2
        die "build broken after [$i/$total] $subject (log: $BUILD_ROOT/bisect.log)"
    fi

    run=()
    if [ "$c" != overlay ] && [ "$mode" != none ]; then
        last_of_group=0
        [[ "$group_ends" == *" $i "* ]] && last_of_group=1
        changed=$(git -C "$wt" diff --name-only "$c~1" "$c")
        for t in "${present[@]}"; do
            # the test's source, its directory (migration/), or libqos
            if [ "$mode" = all ] || [ "$last_of_group" = 1 ] ||
               grep -qxE "tests/qtest/$t\.c|tests/qtest/${t%-test}/.*|tests/qtest/libqos/.*" <<< "$changed"; then
                run+=(--only "qtest $t")
            fi
        done
    fi
    if [ ${#run[@]} -gt 0 ]; then
        info "    qtests: $(printf '%s ' "${run[@]}" | sed 's/--only qtest //g')"
        if ! BUILD_ROOT=$BUILD_ROOT/bisect-tests SRC=$wt OBJ=$wt/build CHECK_SETUP=quick \
            "$TOP/tests/run-checks.py" qtest "${run[@]}" > "$BUILD_ROOT/bisect-qtests.log" 2>&1; then
            tail -n 30 "$BUILD_ROOT/bisect-qtests.log" >&2
            die "qtests fail after [$i/$total] $subject (log: $BUILD_ROOT/bisect-qtests.log)"
        fi
        info "    $(tail -n1 "$BUILD_ROOT/bisect-qtests.log")"
        ran=$((ran + 1))
    fi
    i=$((i + 1))
done
info "all $total patches build on their own; qtests ran after $ran of them ($mode)"
