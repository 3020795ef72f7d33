#!/bin/bash
# Self-test of check-series.sh: it must pass on the real series and fail,
# naming the problem, on deliberately broken copies of it.  TAP output.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
n=0
failed=0

first=$(awk '!/^#/ && NF {print $1; exit}' "$top/series")
if [ -z "$first" ]; then
    echo "1..0 # SKIP empty series"
    exit 0
fi

# copy NAME: a one-patch copy of the series (its first patch) in
# $work/NAME; one patch is enough to see each check fire, and keeps the
# self-test fast however long the series grows.
copy() {
    rm -rf "${work:?}/$1"
    mkdir -p "$work/$1/patches"
    cp "$top/patches/$first" "$work/$1/patches/"
    # the head of series down to its first patch, group heading included
    awk '{ print } /\.patch$/ { exit }' "$top/series" > "$work/$1/series"
}

# expect NAME PATTERN DESCRIPTION: check-series fails on $work/NAME and
# its output matches PATTERN on a "not ok" line or a diagnostic
expect() {
    local out rc
    out=$(SERIES_TOP="$work/$1" bash "$here/check-series.sh" 2>&1)
    rc=$?
    n=$((n + 1))
    if [ $rc != 0 ] && echo "$out" | grep -E '^(not ok|#)' | grep -qE "$2"; then
        echo "ok $n - detects: $3"
    else
        failed=$((failed + 1))
        echo "not ok $n - detects: $3 (rc=$rc)"
        echo "$out" | sed 's/^/# /' | tail -n 15
    fi
}

copy missing-sob
sed -i '/^Signed-off-by: /d' "$work/missing-sob/patches/$first"
expect missing-sob "no Signed-off-by" "a patch without Signed-off-by"

copy missing-dep3
sed -i '/^Forwarded: /d' "$work/missing-dep3/patches/$first"
expect missing-dep3 "no Forwarded" "a patch without the DEP-3 Forwarded field"

copy not-listed
sed -i "/^$first\$/d" "$work/not-listed/series"
expect not-listed "is not in series" "a patch missing from series"

copy no-file
echo "9999-does-not-exist.patch" >> "$work/no-file/series"
expect no-file "not in patches/" "series naming a missing file"

# Shift the first hunk's line numbers: quilt still applies it, with an
# offset, which a distro build would hide and we must not.
copy offset
perl -pe 'if (!$done && s/^@@ -(\d+),(\d+) \+(\d+),(\d+) @@/"@@ -" . ($1 + 3) . ",$2 +" . ($3 + 3) . ",$4 @@"/e) { $done = 1 }' \
    "$top/patches/$first" > "$work/offset/patches/$first"
expect offset "offset|fuzz|export-series" "a hunk that only applies with an offset"

copy style
# a C line with a tab-indent and trailing whitespace, in the first C hunk
awk 'BEGIN { done = 0 }
     { print }
     !done && /^\+\+\+ b\/.*\.c$/ { infile = 1 }
     !done && infile && /^@@ / {
         print "+\tint checkpatch_selftest;   "
         done = 1
     }' "$top/patches/$first" > "$work/style/patches/$first"
# keep the hunk header's line count consistent for patch(1)
perl -0pi -e 's/^(@@ -\d+,\d+ \+\d+,)(\d+)( @@.*\n\+\tint checkpatch_selftest;)/$1.($2+1).$3/me' \
    "$work/style/patches/$first"
expect style "checkpatch" "a coding-style error (checkpatch.pl)"

# The pristine one-patch copy passes (so the failures above are the
# injected ones, not an artefact of copying).
copy pristine
n=$((n + 1))
if out=$(SERIES_TOP="$work/pristine" bash "$here/check-series.sh" 2>&1); then
    echo "ok $n - an unmodified copy passes"
else
    failed=$((failed + 1))
    echo "not ok $n - an unmodified copy passes"
    echo "$out" | grep -E '^(not ok|#)' | sed 's/^/# /'
fi

echo "1..$n"
exit $((failed > 0))
