#!/bin/bash
# Benchmarks of the series: reports, never pass/fail.  Each benchmark is
# an executable tests/bench/bench_*.py or bench_*.sh; none is timed
# against a threshold.  With no benchmark yet this says so and succeeds.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
export PYTHONPATH="$top/tests/lib:$top/build/qemu/python"
found=0
for b in "$here"/bench_*; do
    [ -x "$b" ] || continue
    found=1
    echo "=== $(basename "$b")"
    "$b" || echo "(benchmark $(basename "$b") failed with status $?)"
done
[ $found = 1 ] || echo "no benchmarks in this series yet"
exit 0
