#!/bin/bash
# Series hygiene, as TAP:
#  - series and patches/ name the same files; every patch has git
#    format-patch headers, a why-message, Signed-off-by and the DEP-3
#    fields Forwarded and Last-Update;
#  - the series applies with `quilt push -a` to the pristine base without
#    fuzz or offsets;
#  - the series applies with `git am` to a git-initialised base, and
#    exporting that branch again reproduces patches/ + series exactly;
#  - QEMU's scripts/checkpatch.pl accepts every patch.
# Needs a prepared tree (scripts/prepare-tree.sh) for the base and for
# checkpatch.pl.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"
# The series to check (default: this repo's); the self-test points it at
# deliberately broken copies.  SERIES_NAME=series-10.0 checks the series
# of another base against a tree of that base ($SRC prepared with
# BASE=10.0.x); its patches live in patches/ and patches/10.0/.
PT=${SERIES_TOP:-$TOP}
SERIES_NAME=${SERIES_NAME:-series}
other=
[ "$SERIES_NAME" = series ] || other=${SERIES_NAME#series-}

. "$(dirname "$0")/tap-lib.sh"

mapfile -t patches < <(awk '!/^#/ && NF {print $1}' "$PT/$SERIES_NAME")

# 1. series <-> patches/
problems=()
for p in "${patches[@]}"; do
    [ -f "$PT/patches/$p" ] || problems+=("series names $p, not in patches/")
done
# Every patch of the main series, or of the base's own directory, is
# listed (another base may leave out a patch of the main series)
for f in "$PT"/patches/${other:+$other/}*.patch; do
    [ -e "$f" ] || continue
    name=${f#"$PT/patches/"}
    # not a pipe: with pipefail, grep -q leaving early fails printf (SIGPIPE)
    grep -qxF "$name" <<< "$(printf '%s\n' "${patches[@]}")" || problems+=("$name is not in $SERIES_NAME")
done
if [ ${#problems[@]} -eq 0 ]; then ok "$SERIES_NAME and patches/ agree (${#patches[@]} patches)"
else notok "$SERIES_NAME and patches/ agree" "${problems[@]}"; fi

# 2. headers of each patch
for p in "${patches[@]}"; do
    f="$PT/patches/$p"
    [ -f "$f" ] || continue
    problems=()
    head -n1 "$f" | grep -q '^From [0-9a-f]\{40\} ' || problems+=("no git format-patch 'From <sha>' line")
    for h in From Subject Date Signed-off-by Forwarded Last-Update; do
        grep -q "^$h: " "$f" || problems+=("no $h:")
    done
    grep -q '^Last-Update: [0-9]\{4\}-[0-9]\{2\}-[0-9]\{2\}$' "$f" || problems+=("Last-Update is not YYYY-MM-DD")
    grep -Eq '^Forwarded: (no|not-needed|yes|https?://[^ ]+)( \(.*)?$' "$f" || problems+=("Forwarded is not no/not-needed/yes/URL")
    # the author signs the patch off
    author=$(sed -n 's/^From: //p' "$f" | head -n1)
    grep -qxF "Signed-off-by: $author" "$f" || problems+=("no Signed-off-by from the author ($author)")
    # the why-message: body text between the headers and the trailers
    body=$(awk '/^$/ && !hdr_done {hdr_done=1; next} hdr_done && /^---$/ {exit} hdr_done' "$f" |
           grep -Ev '^(Signed-off-by|Forwarded|Last-Update|Reviewed-by|Acked-by|Bug|Origin|Applied-Upstream|Author|Cc):' |
           grep -c '[a-z]')
    [ "$body" -ge 2 ] || problems+=("commit message has no explanation (why)")
    if [ ${#problems[@]} -eq 0 ]; then ok "headers: $p"; else notok "headers: $p" "${problems[@]}"; fi
done

if ! git -C "$SRC" rev-parse -q --verify base >/dev/null 2>&1; then
    why="no prepared tree${other:+ of the $other base (make BASE=$other.x prepare, or make check-bases)}"
    skip "quilt push -a" "$why"
    skip "git am + export round trip" "$why"
    skip "checkpatch.pl" "$why"
    echo "1..$n"; exit $((failed > 0))
fi
if [ -n "$other" ] && [ "$(cut -d. -f1-2 "$SRC/VERSION")" != "$other" ]; then
    notok "$SERIES_NAME against a $other tree" "$SRC is QEMU $(cat "$SRC/VERSION")"
    echo "1..$n"; exit 1
fi

# The base, as far as the series is concerned: only the files its
# patches touch.  Applying a patch reads nothing else, and git's blob ids
# (hence the exported "index" lines) depend only on file contents, so
# this checks exactly what a full tree would, in a fraction of the time.
mapfile -t touched < <(for p in "${patches[@]}"; do
                           [ -f "$PT/patches/$p" ] || continue
                           sed -n 's|^diff --git a/\([^ ]*\) b/.*|\1|p' "$PT/patches/$p"
                       done | sort -u)
present=()
if [ ${#touched[@]} -gt 0 ]; then
    # .gitattributes too: they pick the diff drivers (e.g. diff=python)
    # that write the function names in the exported hunk headers.
    mapfile -t present < <({ git -C "$SRC" ls-tree -r --name-only base -- "${touched[@]}"
                             git -C "$SRC" ls-tree -r --name-only base |
                                 grep -E '(^|/)\.gitattributes$'; } | sort -u)
fi
extract_base() {
    mkdir -p "$1"
    if [ ${#present[@]} -gt 0 ]; then
        git -C "$SRC" archive base -- "${present[@]}" | tar -C "$1" -xf -
    fi
}

# 3. quilt on the pristine base
extract_base "$work/quilt"
if [ ${#patches[@]} -eq 0 ]; then
    skip "quilt push -a without fuzz or offsets" "empty series"
else
    out=$(cd "$work/quilt" && QUILT_PATCHES="$PT/patches" QUILT_SERIES="$PT/$SERIES_NAME" \
          QUILTRC=/dev/null quilt push -a 2>&1)
    rc=$?
    bad=$(echo "$out" | grep -E '^Hunk #|rejects|can.t find file|Reversed' || true)
    if [ $rc = 0 ] && [ -z "$bad" ]; then ok "quilt push -a without fuzz or offsets"
    else notok "quilt push -a without fuzz or offsets" "rc=$rc" ${bad:+"$bad"} "$(echo "$out" | tail -n 5)"; fi
fi

# 4. git am on a git-initialised base, then export and compare
g=(git -C "$work/quilt-git" "${GIT_ID[@]}")
extract_base "$work/quilt-git"
git -C "$work/quilt-git" init -q -b main
"${g[@]}" add -A -f . && "${g[@]}" commit -q --allow-empty -m base && "${g[@]}" tag overlay
amlog=""
amrc=0
for p in "${patches[@]}"; do
    amlog=$("${g[@]}" am -q "$PT/patches/$p" 2>&1) || { amrc=1; amlog="$p: $amlog"; break; }
done
if [ $amrc = 0 ]; then ok "git am of the whole series"
else notok "git am of the whole series" "$amlog"; fi
if [ $amrc = 0 ] && [ -n "$other" ]; then
    # Exported against a copy of the main series, as make export does
    mkdir -p "$work/export/patches"
    cp "$PT/series" "$work/export/"
    cp "$PT"/patches/*.patch "$work/export/patches/" 2>/dev/null
    if "$TOP/scripts/export-series.sh" "$work/quilt-git" "$work/export" "$other" >/dev/null 2>&1 &&
       diff -r "$PT/patches/$other" "$work/export/patches/$other" >/dev/null 2>&1 &&
       diff "$PT/$SERIES_NAME" "$work/export/$SERIES_NAME" >/dev/null; then
        ok "export-series.sh reproduces patches/$other/ and $SERIES_NAME"
    else
        notok "export-series.sh reproduces patches/$other/ and $SERIES_NAME" \
            "$(diff -r "$PT/patches/$other" "$work/export/patches/$other" 2>&1 | head -n 10)" \
            "$(diff "$PT/$SERIES_NAME" "$work/export/$SERIES_NAME" 2>&1 | head -n 5)"
    fi
elif [ $amrc = 0 ]; then
    # patches/<major.minor>/ belong to the series of other bases
    if "$TOP/scripts/export-series.sh" "$work/quilt-git" "$work/export" >/dev/null 2>&1 &&
       diff -r -x '[0-9]*.[0-9]*' "$PT/patches" "$work/export/patches" >/dev/null 2>&1 &&
       diff "$PT/series" "$work/export/series" >/dev/null; then
        ok "export-series.sh reproduces patches/ and series"
    else
        notok "export-series.sh reproduces patches/ and series" \
            "$(diff -r -x '[0-9]*.[0-9]*' "$PT/patches" "$work/export/patches" 2>&1 | head -n 10)"
    fi
else
    skip "export-series.sh reproduces patches/ and series" "git am failed"
fi

# 5. checkpatch
for p in "${patches[@]}"; do
    out=$(cd "$SRC" && perl scripts/checkpatch.pl --no-color "$PT/patches/$p" 2>&1)
    rc=$?
    if [ $rc = 0 ]; then ok "checkpatch.pl: $p"
    else notok "checkpatch.pl: $p" "$(echo "$out" | grep -E '^(ERROR|WARNING)' | head -n 8)"; fi
done

echo "1..$n"
exit $((failed > 0))
