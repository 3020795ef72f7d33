#!/usr/bin/python3
"""Static vmstate comparison of the patched and the unpatched build.

    python3 tests/compat/test_vmstate_static.py     (no root needed; TAP)

For every machine type either build lists in `-machine help` (aliases and
"none" left out), both builds write `-M <type> -nodefaults -display none
-accel tcg -dump-vmstate FILE`, and QEMU's own
scripts/vmstate-static-checker.py compares them in both directions:

  unpatched->patched   -s unpatched.json -d patched.json
  patched->unpatched   -s patched.json   -d unpatched.json

One TAP result per machine type and direction.  Every line the checker
prints is a difference; it fails the result unless an entry of
tests/compat/vmstate-intended.txt matches it (format in that file: the
direction, a machine type glob and the exact checker line).  The
checker's exit status (its count of errors) must agree with the lines
that were read.  A machine type listed by only one build fails in the
direction where it would have to exist on the destination.  Unused
intended entries are reported as notes at the end.

Binaries: COMPAT_PATCHED_QEMU / COMPAT_UNPATCHED_QEMU (see compatlib.py);
the checker: COMPAT_CHECKER.  Skips when a binary is missing.
"""

import concurrent.futures
import fnmatch
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# pylint: disable=wrong-import-position
import compatlib  # noqa: E402
from compatlib import PATCHED, UNPATCHED  # noqa: E402
from serieslib import main  # noqa: E402

INTENDED_FILE = os.path.join(compatlib.HERE, "vmstate-intended.txt")
DIRECTIONS = {"unpatched->patched": (UNPATCHED, PATCHED),
              "patched->unpatched": (PATCHED, UNPATCHED)}


def load_intended(path: str = INTENDED_FILE):
    """Entries of the intended-differences file: a list of dicts with
    direction, machines (glob), line (exact checker output), reason,
    lineno."""
    entries = []
    if not os.path.exists(path):
        return entries
    with open(path, encoding="utf-8") as f:
        for lineno, raw in enumerate(f, 1):
            text = raw.rstrip("\n")
            if not text.strip() or text.lstrip().startswith("#"):
                continue
            parts = [p.strip() for p in text.split(" | ")]
            if len(parts) != 4 or parts[0] not in DIRECTIONS or \
                    not parts[2] or not parts[3]:
                raise ValueError(
                    f"{path}:{lineno}: expected 'DIRECTION | MACHINE-GLOB "
                    f"| CHECKER LINE | REASON', got {text!r}")
            entries.append({"direction": parts[0], "machines": parts[1],
                            "line": parts[2], "reason": parts[3],
                            "lineno": lineno, "used": False})
    return entries


def _machines_or_empty(build):
    if compatlib.missing_binaries():
        return []
    try:
        return compatlib.machine_types(build)
    except Exception:  # pylint: disable=broad-except
        return []


class VmstateStatic(unittest.TestCase):
    """Generated: test_<machine>_<direction>."""

    tmpdir = None
    dumps = {}            # (build, machine) -> path or None
    dump_errors = {}      # (build, machine) -> message
    machines = {PATCHED: [], UNPATCHED: []}
    intended = []
    skip_reason = None

    @classmethod
    def setUpClass(cls):
        # Skips are raised per test (setUp), so that every result says why.
        cls.skip_reason = compatlib.missing_binaries()
        if not cls.skip_reason and not os.path.isfile(compatlib.checker()):
            cls.skip_reason = f"{compatlib.checker()} missing"
        if cls.skip_reason:
            return
        cls.intended = load_intended()
        cls.tmpdir = tempfile.mkdtemp(prefix="compat-vmstate-")
        cls.machines = {b: compatlib.machine_types(b)
                        for b in (PATCHED, UNPATCHED)}
        jobs = [(b, m) for b in (PATCHED, UNPATCHED)
                for m in cls.machines[b]]
        cls.dumps, cls.dump_errors = {}, {}
        with concurrent.futures.ThreadPoolExecutor(4) as pool:
            for (build, machine), result in zip(
                    jobs, pool.map(lambda j: cls._dump(*j), jobs)):
                path, error = result
                cls.dumps[(build, machine)] = path
                if error:
                    cls.dump_errors[(build, machine)] = error

    @classmethod
    def tearDownClass(cls):
        unused = [e for e in cls.intended if not e["used"]]
        for entry in unused:
            print(f"# note: {os.path.basename(INTENDED_FILE)}:"
                  f"{entry['lineno']} matched nothing: {entry['line']!r}")
        if cls.tmpdir:
            shutil.rmtree(cls.tmpdir, ignore_errors=True)

    @classmethod
    def _dump(cls, build, machine):
        path = os.path.join(cls.tmpdir, f"{build}-{machine}.json")
        proc = compatlib.run_qemu(build, "-M", machine, "-nodefaults",
                                  "-display", "none", "-accel", "tcg",
                                  "-dump-vmstate", path)
        if proc.returncode != 0 or not os.path.isfile(path):
            return None, (f"{build} -M {machine} -dump-vmstate failed "
                          f"({proc.returncode}): {proc.stderr.strip()}")
        return path, None

    def setUp(self):
        if self.skip_reason:
            self.skipTest(self.skip_reason)

    def match_intended(self, direction, machine, line):
        for entry in self.intended:
            if entry["direction"] == direction and \
                    fnmatch.fnmatchcase(machine, entry["machines"]) and \
                    entry["line"] == line:
                entry["used"] = True
                return entry
        return None

    def check(self, machine, direction):
        src, dst = DIRECTIONS[direction]
        for build in (src, dst):
            if machine not in self.machines[build]:
                if build == dst:
                    self.fail(f"machine type {machine} exists in the {src} "
                              f"build but not in the {dst} build")
                self.skipTest(f"machine type {machine} only in the {dst} "
                              "build: nothing to migrate from")
        for build in (src, dst):
            if (build, machine) in self.dump_errors:
                self.fail(self.dump_errors[(build, machine)])
        proc = subprocess.run(
            [sys.executable, compatlib.checker(),
             "-s", self.dumps[(src, machine)],
             "-d", self.dumps[(dst, machine)]],
            capture_output=True, text=True, timeout=120, check=False)
        if proc.stderr.strip():
            self.fail(f"checker wrote to stderr (rc {proc.returncode}):\n"
                      f"{proc.stderr}")
        lines = [ln.rstrip() for ln in proc.stdout.splitlines()
                 if ln.strip()]
        errors = [ln for ln in lines if not ln.startswith("Warning:")]
        if proc.returncode != min(len(errors), 255):
            self.fail(f"checker exit status {proc.returncode} does not "
                      f"match the {len(errors)} error lines it printed:\n"
                      + "\n".join(lines))
        unexpected = []
        for line in lines:
            entry = self.match_intended(direction, machine, line)
            if entry:
                print(f"intended ({direction}, {machine}): {line} "
                      f"-- {entry['reason']}")
            else:
                unexpected.append(line)
        if unexpected:
            self.fail(f"{direction} -M {machine}: {len(unexpected)} "
                      "unexpected difference(s) reported by "
                      "vmstate-static-checker.py:\n  "
                      + "\n  ".join(unexpected))


def _make_test(machine, direction):
    def test(self):
        self.check(machine, direction)
    test.__doc__ = None
    return test


def _generate():
    names = sorted(set(_machines_or_empty(PATCHED))
                   | set(_machines_or_empty(UNPATCHED)))
    if not names:
        # Binaries missing: one test per direction that skips with the
        # reason from setUpClass.
        names = ["all-machines"]
    for machine in names:
        for direction in DIRECTIONS:
            tag = direction.replace("->", "_to_")
            ident = machine.replace("-", "_").replace(".", "_")
            setattr(VmstateStatic, f"test_{ident}__{tag}",
                    _make_test(machine, direction))


_generate()


if __name__ == "__main__":
    main()
