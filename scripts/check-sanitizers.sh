#!/bin/bash
# ASan + UBSan build of the patched tree, and the series' qtests
# (tests/qtests.list, the ones `make check` runs) against it; fails on any
# sanitizer report.
#
# The tree is a worktree of $SRC at branch "series" in
# $BUILD_ROOT/sanitizers/qemu, built in its build/ with the configure
# options of scripts/build.sh plus --enable-asan --enable-ubsan, so the
# main tree and its build are never touched.  Only the emulator and the
# listed qtests are built (ivshmem-test links the ivshmem server in).
# Logs: $BUILD_ROOT/sanitizers/test-logs/ (one per qtest, as run-checks.py
# writes them) and test-logs/reports/ (one file per process that reported).
#
#   scripts/check-sanitizers.sh [run-checks.py options, e.g. --only ivshmem]
#
# SANITIZERS_REV selects another revision of $SRC (default: series).
set -euo pipefail
. "$(dirname "$0")/lib.sh"

rev=${SANITIZERS_REV:-series}
root=$BUILD_ROOT/sanitizers
wt=$root/qemu
logs=$root/test-logs
git -C "$SRC" rev-parse -q --verify "$rev" >/dev/null ||
    die "no $rev in $SRC; run make prepare"
# Local changes in the worktree (a fix being tried) are built and tested
# with it, and never thrown away: worktree_at would check $rev out over
# them once $rev has moved.
if [ -e "$wt/.git" ] && [ -n "$(git -C "$wt" status --porcelain --untracked-files=no)" ]; then
    if [ "$(git -C "$wt" rev-parse HEAD)" != "$(git -C "$SRC" rev-parse "$rev")" ]; then
        git -C "$wt" status --short --untracked-files=no >&2
        die "$wt has local changes and $rev moved on; commit or drop them there, or set SANITIZERS_REV=$(git -C "$wt" rev-parse --short HEAD)"
    fi
    echo "warning: $wt has local changes; they are built and tested too:" >&2
    git -C "$wt" status --short --untracked-files=no >&2
fi
worktree_at "$wt" "$rev"
info "sanitizer build of $rev ($(git -C "$wt" rev-parse --short HEAD)) in $wt"

targets=(qemu-system-x86_64)
while read -r t _; do
    case "$t" in ''|\#*) continue ;; esac
    targets+=("tests/qtest/$t")
done < "$TOP/tests/qtests.list"
# BUILD_ROOT=$root keeps configure.log out of the main build's way.
# Niced: the machine has 2 cores and the main build may run beside it.
start=$SECONDS
# No docs, and no -Werror: gcc's sanitizer instrumentation brings
# false -Wmaybe-uninitialized warnings; the main build has -Werror.
SRC=$wt OBJ=$wt/build BUILD_ROOT=$root \
    CONFIGURE_SUBST="$REFERENCE_BUILD_SUBST" \
    EXTRA_CONFIGURE="--enable-asan --enable-ubsan ${EXTRA_CONFIGURE:-}" \
    nice -n 10 "$TOP/scripts/build.sh" "${targets[@]}"
built=$((SECONDS - start))

# The runtime options mirror what upstream's qtests get from `meson test`
# (ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:print_summary=1 and the
# same plus print_stacktrace=1 for UBSan, set when the variables are
# unset), with leak detection on where upstream's tests/docker/test-debug
# turns it off, and fast_unwind_on_malloc=0 as upstream's fuzzing CI job
# sets it: QEMU is built without frame pointers, and a leak report needs
# the full allocation stack.  Reports go to files (log_path), because
# some qtests send QEMU's stderr to /dev/null (the migration framework's
# hide_stderr); the UBSan runtime of gcc 12 still prints its report on
# stderr, so the test logs are searched too.
rm -rf "$logs"
mkdir -p "$logs/reports"
common=halt_on_error=1:abort_on_error=1:print_summary=1
export ASAN_OPTIONS="$common:detect_leaks=1:fast_unwind_on_malloc=0:log_path=$logs/reports/asan${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
export UBSAN_OPTIONS="$common:print_stacktrace=1:log_path=$logs/reports/ubsan${UBSAN_OPTIONS:+:$UBSAN_OPTIONS}"
supp=$TOP/tests/sanitizers/lsan.supp
if [ -f "$supp" ]; then
    export LSAN_OPTIONS="suppressions=$supp:print_suppressions=0${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
fi

rc=0
BUILD_ROOT=$root SRC=$wt OBJ=$wt/build \
    nice -n 10 "$TOP/tests/run-checks.py" qtest "$@" || rc=$?
info "build ${built}s, qtests $((SECONDS - start - built))s"

# One report per process and kind: halt_on_error stops at the first.
# Every QEMU writes a file for ASan's warning about swapcontext (the
# coroutines; QEMU annotates them): keep only the files with a report.
shopt -s nullglob
for f in "$logs"/reports/*; do
    grep -qE 'ERROR: |SUMMARY: ' "$f" || rm -f "$f"
done
files=("$logs"/reports/*)
asan=$(cat /dev/null "${files[@]}" "$logs"/*.log |
       grep -cE 'ERROR: (AddressSanitizer|LeakSanitizer)' || true)
ubsan_log=$(cat /dev/null "$logs"/*.log | grep -c 'runtime error:' || true)
ubsan_file=$(cat /dev/null "${files[@]}" |
             grep -c 'SUMMARY: UndefinedBehaviorSanitizer' || true)
ubsan=$((ubsan_log > ubsan_file ? ubsan_log : ubsan_file))
for f in "${files[@]}"; do
    echo "--- $f"
    cat "$f"
done
grep -l -E 'ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:' \
    /dev/null "$logs"/*.log | sed 's/^/--- report in /' || true
echo "sanitizer reports: $((asan + ubsan)) (ASan/LSan $asan, UBSan $ubsan)"
[ $((asan + ubsan)) -eq 0 ] || rc=1
exit $rc
