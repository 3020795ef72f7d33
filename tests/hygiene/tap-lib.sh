# TAP output for the hygiene checks (sourced): ok/notok/skip number the
# results; $work is a scratch directory removed on exit.
n=0
failed=0
ok() { n=$((n + 1)); echo "ok $n - $*"; }
notok() { n=$((n + 1)); failed=$((failed + 1)); echo "not ok $n - $1"; shift; for l in "$@"; do echo "# $l"; done; }
skip() { n=$((n + 1)); echo "ok $n - $1 # SKIP $2"; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
