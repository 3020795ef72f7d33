#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0-or-later
"""Seed QEMU's functional-test asset cache with the Debian packages that
the series' guest tests pin (tests/functional/debian_busybox.py in the
patched tree), so that `make check-functional` needs no download.

    scripts/seed-assets.py QEMU_SRC

Each package is taken from this repo's .deb cache ($CACHE_DIR/debs), or
fetched into it with `apt-get download NAME=VERSION` (the host's apt
configuration names the mirror), verified against the pinned sha256 and
copied to $QEMU_TEST_CACHE_DIR/download/<sha256> (default
~/.cache/qemu/download, read-only with a time stamp, as qemu_test's
Asset leaves a download), where Asset looks first.  A package that
cannot be had is reported and left out, and the script still succeeds:
the tests then download it themselves where the network allows, or
skip (debian_busybox.guest() turns a failed fetch into a skip).
"""

import ast
import glob
import hashlib
import os
import shutil
import stat
import subprocess
import sys
import time


def sha256(path):
    digest = hashlib.sha256()
    with open(path, 'rb') as src:
        for block in iter(lambda: src.read(1 << 20), b''):
            digest.update(block)
    return digest.hexdigest()


def cached(debs, pkg):
    """The .deb of @pkg in @debs, found by its sha256: apt names the file
    with the epoch's ':' as '%3a'"""
    for path in glob.glob(os.path.join(debs, f'{pkg.name}_*.deb')):
        if sha256(path) == pkg.sha256:
            return path
    return None


class Pin:
    """A Package(name, version, filename, sha256) of debian_busybox.py"""

    def __init__(self, name, version, filename, sha256sum):
        self.name = name
        self.version = version
        self.filename = filename
        self.sha256 = sha256sum


def pins(module):
    """The packages that @module pins, read from its source without
    importing it (it needs qemu_test and its dependencies)"""
    with open(module, encoding='utf-8') as src:
        tree = ast.parse(src.read(), module)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and \
                getattr(node.func, 'id', None) == 'Package' and \
                len(node.args) == 4 and \
                all(isinstance(a, ast.Constant) for a in node.args):
            found.append(Pin(*(a.value for a in node.args)))
    if not found:
        sys.exit(f'seed-assets: no Package(...) pins in {module}')
    return found


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip().split('\n\n')[1])
    module = os.path.join(sys.argv[1], 'tests', 'functional',
                          'debian_busybox.py')
    if not os.path.exists(module):
        print(f'seed-assets: nothing to seed (no {module})')
        return 0
    packages = pins(module)
    # the Makefile passes the one that scripts/lib.sh chose
    cache = os.environ.get('CACHE_DIR')
    if not cache:
        sys.exit('seed-assets: CACHE_DIR is not set (run it as make assets)')
    debs = os.path.join(cache, 'debs')
    os.makedirs(debs, exist_ok=True)
    qemu_cache = os.environ.get('QEMU_TEST_CACHE_DIR')
    dest = os.path.join(qemu_cache, 'download') if qemu_cache else \
        os.path.expanduser('~/.cache/qemu/download')
    os.makedirs(dest, exist_ok=True)
    missing = 0
    for pkg in packages:
        target = os.path.join(dest, pkg.sha256)
        if os.path.exists(target) and sha256(target) == pkg.sha256:
            continue
        local = cached(debs, pkg)
        if local is None:
            opts = ['-o', 'APT::Sandbox::User=root'] if os.geteuid() == 0 \
                else []
            res = subprocess.run(['apt-get', '-q', *opts, 'download',
                                  f'{pkg.name}={pkg.version}'], cwd=debs,
                                 capture_output=True, text=True, check=False)
            local = cached(debs, pkg)
            if local is None:
                why = (res.stderr.strip().splitlines() or ['no output'])[-1]
                print(f'seed-assets: {pkg.name}={pkg.version}: not in {debs}, '
                      f'and apt-get download failed: {why}')
                missing += 1
                continue
        shutil.copyfile(local, target + '.seed')
        os.chmod(target + '.seed', stat.S_IRUSR | stat.S_IRGRP)
        os.replace(target + '.seed', target)
        with open(target + '.stamp', 'w', encoding='utf-8') as stamp:
            stamp.write(str(int(time.time())))
        print(f'seed-assets: {pkg.name}={pkg.version} -> {target}')
    if missing:
        print(f'seed-assets: {missing} package(s) not seeded; the tests '
              'that need them download them or skip')
    return 0


if __name__ == '__main__':
    sys.exit(main())
