#!/bin/bash
# The series on top of Debian's own patches, as a Debian package applies
# it (TAP): for each base with a series and a Debian packaging in
# scripts/lib.sh, fetch the .debian.tar.xz through apt (cached, sha256
# checked), apply debian/patches in order to the pristine base, then the
# series with quilt: no fuzz, no offsets, no rejects.  A base whose tree
# is not prepared or whose tarball cannot be fetched is skipped with the
# reason.
set -uo pipefail
. "$(dirname "$0")/../../scripts/lib.sh"

. "$(dirname "$0")/tap-lib.sh"

# .debian.tar.xz of @1 (a base version) into $CACHE_DIR; prints its path
fetch_debian() {
    local v=$1 rev=${DEBIAN_REVISION[$1]} sha=${DEBIAN_TAR_SHA256[$1]} name url out
    name="qemu_${rev#*:}.debian.tar.xz"
    out="$CACHE_DIR/$name"
    if [ -f "$out" ] && echo "$sha  $out" | sha256sum -c --status; then
        echo "$out"; return 0
    fi
    url=$(apt-get source --print-uris "qemu=$rev" 2>/dev/null |
          awk -v n="$name" '$2 == n { gsub("\x27", "", $1); print $1; exit }') || true
    [ -n "$url" ] || url="$(debian_mirror)/pool/main/q/qemu/$(echo "$name" | sed 's/+/%2b/g')"
    local sandbox=()
    [ "$(id -u)" = 0 ] && sandbox=(-o APT::Sandbox::User=root)
    mkdir -p "$CACHE_DIR"
    /usr/lib/apt/apt-helper "${sandbox[@]}" download-file "$url" "$out.part" "SHA256:$sha" >/dev/null 2>&1 ||
        { rm -f "$out.part"; return 1; }
    mv "$out.part" "$out" && echo "$out"
}

# Files a patch touches, -p1 (git or quilt format)
touched() { sed -n -e 's|^+++ [^/]*/\([^[:space:]]*\).*|\1|p' -e 's|^--- [^/]*/\([^[:space:]]*\).*|\1|p' "$@" | grep -v '^dev/null$' | sort -u; }

for v in "${!DEBIAN_REVISION[@]}"; do
    mm=$(echo "$v" | cut -d. -f1-2)
    series=series
    [ -f "$TOP/series-$mm" ] && series=series-$mm
    if [ "$v" = 10.2.2 ]; then tree=$TOP/build/qemu; else tree=$TOP/build/base-$v/qemu; fi
    what="$series on Debian's ${DEBIAN_REVISION[$v]} patches"
    if ! git -C "$tree" rev-parse -q --verify base >/dev/null 2>&1 ||
       [ "$(git -C "$tree" show base:VERSION 2>/dev/null)" != "$v" ]; then
        skip "$what" "no prepared $v tree (make BASE=$v prepare, or make check-bases)"
        continue
    fi
    if ! deb=$(fetch_debian "$v"); then
        skip "$what" "qemu_${DEBIAN_REVISION[$v]#*:}.debian.tar.xz cannot be fetched through apt"
        continue
    fi
    d=$work/$v
    mkdir -p "$d/debian-src"
    tar -C "$d/debian-src" -xf "$deb"
    dp=$d/debian-src/debian/patches
    mapfile -t dpatches < <([ -f "$dp/series" ] && sed -e 's/#.*//' "$dp/series" | awk 'NF {print $1}')
    mapfile -t ours < <(awk '!/^#/ && NF {print $1}' "$TOP/$series")
    # The pristine base, as far as both patch sets are concerned
    mapfile -t files < <({ for p in "${dpatches[@]}"; do touched "$dp/$p"; done
                           for p in "${ours[@]}"; do touched "$TOP/patches/$p"; done; } | sort -u)
    mapfile -t present < <(git -C "$tree" ls-tree -r --name-only base -- "${files[@]}")
    mkdir -p "$d/src"
    [ ${#present[@]} -eq 0 ] || git -C "$tree" archive base -- "${present[@]}" | tar -C "$d/src" -xf -
    problems=()
    for p in "${dpatches[@]}"; do
        patch -d "$d/src" -p1 -s -f --no-backup-if-mismatch < "$dp/$p" > "$d/log" 2>&1 ||
            problems+=("Debian's $p does not apply to the base: $(head -n 3 "$d/log")")
    done
    if [ ${#problems[@]} -gt 0 ]; then
        notok "$what" "${problems[@]}"
        continue
    fi
    out=$(cd "$d/src" && QUILT_PATCHES="$TOP/patches" QUILT_SERIES="$TOP/$series" \
          QUILTRC=/dev/null quilt push -a 2>&1)
    rc=$?
    bad=$(echo "$out" | grep -E '^Hunk #|rejects|can.t find file|Reversed' || true)
    common=$(comm -12 <(for p in "${dpatches[@]}"; do touched "$dp/$p"; done | sort -u) \
                      <(for p in "${ours[@]}"; do touched "$TOP/patches/$p"; done | sort -u) | wc -l)
    if [ $rc = 0 ] && [ -z "$bad" ]; then
        ok "$what: ${#dpatches[@]} Debian patches, then ${#ours[@]} of ours without fuzz or offsets ($common files touched by both)"
    else
        notok "$what" "rc=$rc" ${bad:+"$bad"} "$(echo "$out" | tail -n 5)"
    fi
done

echo "1..$n"
exit $((failed > 0))
