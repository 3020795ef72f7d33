#!/bin/bash
# Test of scripts/ci/run-upstream.sh, the script the CI templates in
# scripts/ci/ call: against a local git tree of the base (build/qemu's
# tag "base"), once as it is, where every patch must apply, and once with
# a commit that conflicts with a patch in the middle of the series, where
# the job must fail and name that patch, with git am -3's conflict.  TAP.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/../.." && pwd)
src=${SRC:-$top/build/qemu}
if ! git -C "$src" rev-parse -q --verify base >/dev/null 2>&1; then
    echo "1..0 # SKIP no prepared tree with a 'base' tag ($src): make prepare"
    exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "1..4"

# the "upstream" tree: the base, as a branch and as a tag
git clone -q --no-checkout "$src" "$work/upstream"
git -C "$work/upstream" branch -q -f v-clean base
git -C "$work/upstream" tag -f v-clean-tag base >/dev/null

run() {   # run NAME REF: the job's apply step, output in $work/NAME.out
    env -u SRC -u OBJ BUILD_ROOT=$work/$1 UPSTREAM_DIR=$work/$1/upstream-src \
        "$top/scripts/ci/run-upstream.sh" --apply-only "$work/upstream" "$2" \
        > "$work/$1.out" 2>&1
}

n=$(awk '!/^#/ && NF' "$top/series" | wc -l)
if run clean v-clean && grep -q "applied $n patches" "$work/clean.out"; then
    echo "ok 1 - every patch applies to a branch of the base"
else
    echo "not ok 1 - every patch applies to a branch of the base"
    sed 's/^/# /' "$work/clean.out" | tail -n 20
fi
if run tag v-clean-tag && grep -q "applied $n patches" "$work/tag.out"; then
    echo "ok 2 - every patch applies to a tag of the base"
else
    echo "not ok 2 - every patch applies to a tag of the base"
    sed 's/^/# /' "$work/tag.out" | tail -n 20
fi

# A line that a patch of the series removes, changed upstream: the first
# patch that removes it is the one that must be named.
line='            if (munmap(addr, memory_region_size(s->ivshmem_bar2) == -1)) {'
victim=$(grep -lxF -- "-$line" "$top"/patches/*.patch | head -n1)
victim=${victim##*/}
wt=$work/upstream-wt
git -C "$work/upstream" worktree add -q -b v-conflict "$wt" base
sed -i "s|^$(printf '%s' "$line" | sed 's/[][\\.*^$|]/\\&/g')\$|            if (munmap(addr, memory_region_size(s->ivshmem_bar2)) < 0) {|" \
    "$wt/hw/misc/ivshmem-pci.c"
git -C "$wt" -c user.name=t -c user.email=t@example.org commit -q -am "upstream: a conflicting change"
if run conflict v-conflict; then
    echo "not ok 3 - a conflicting upstream commit fails the job"
else
    echo "ok 3 - a conflicting upstream commit fails the job"
fi
if [ -n "$victim" ] &&
   grep -q "first patch that does not apply: patches/$victim" "$work/conflict.out" &&
   grep -q "^CONFLICT\|^<<<<<<<\|^++<<<<<<<" "$work/conflict.out"; then
    echo "ok 4 - the job names the first patch that does not apply ($victim) and shows the conflict"
else
    echo "not ok 4 - the job names the first patch that does not apply (${victim:-none found}) and shows the conflict"
    sed 's/^/# /' "$work/conflict.out" | tail -n 30
fi
