#!/usr/bin/python3
"""Run every check of the series and summarise.

Each check is a program that prints TAP (ok / not ok / # SKIP) or, if it
prints none, is judged by its exit status (0 pass, 77 skip, else fail).
The qtests and the functional tests run through QEMU's own runner,
`meson test --setup thorough` in the build directory, the way `make
check-qtest` / `make check-functional` run them: their results are read
from meson's JSON test log (build/qemu/build/meson-logs/series-*-thorough.json,
the TAP each test printed on stdout), and meson's own logs are the
ones a QEMU developer reads.  What meson cannot run stays here: the
hygiene checks and the system and compat tests, which need this repo's
harness.  The last line printed is always "N passed, N failed, N
skipped", counting individual TAP results.  Full logs go to
build/test-logs/.

  tests/run-checks.py [--list] [--only SUBSTRING ...] [GROUP ...]

Groups: hygiene, qtest, functional, system, compat (default: all of them).
"""

import argparse
import os
import re
import subprocess
import sys
import time
from pathlib import Path

TOP = Path(__file__).resolve().parent.parent
BUILD_ROOT = Path(os.environ.get("BUILD_ROOT", TOP / "build"))
SRC = Path(os.environ.get("SRC", BUILD_ROOT / "qemu"))
OBJ = Path(os.environ.get("OBJ", SRC / "build"))
LOGS = BUILD_ROOT / "test-logs"
QEMU = OBJ / "qemu-system-x86_64"

TAP_RE = re.compile(r"^(not ok|ok)\b\s*(\d+)?\s*(?:-\s*)?(.*)$")


def tap_result(line):
    """(status, description) of a TAP result line, None for any other."""
    m = TAP_RE.match(line.rstrip("\n"))
    if not m:
        return None
    desc = m.group(3)
    if re.search(r"#\s*(SKIP|skip|TODO)", desc):
        return ("skip", desc)
    return ("pass" if m.group(1) == "ok" else "fail", desc)


class Check:
    def __init__(self, group, name, argv, env=None, timeout=900, cwd=None,
                 testlog=None, filtered=False):
        self.group, self.name, self.argv = group, name, argv
        self.env, self.timeout, self.cwd = env or {}, timeout, cwd
        # meson test: results come from this JSON log, not from stdout
        self.testlog = testlog
        # a -p/-r filter: selecting no test at all is a failure
        self.filtered = filtered


def meson_bin():
    venv = OBJ / "pyvenv/bin/meson"
    return [str(venv)] if venv.exists() else ["meson"]


def meson_check(group, name, tests, test_args=None, env=None, timeout=3600):
    """`meson test --setup thorough` of the named tests (meson names).

    CHECK_SETUP=quick runs the default setup instead (no slow cases), as
    `make bisect-check` does after each patch.
    """
    setup = os.environ.get("CHECK_SETUP", "thorough")
    logbase = "series-" + re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    argv = meson_bin() + ["test", "-C", str(OBJ), "--no-rebuild",
                          "--setup", setup, "--print-errorlogs",
                          "--num-processes", os.environ.get("CHECK_JOBS", "1"),
                          "--logbase", logbase]
    if test_args:
        argv += ["--test-args", " ".join(test_args)]
    argv += tests
    return Check(group, name, argv, env, timeout=timeout, cwd=OBJ,
                 testlog=OBJ / "meson-logs" / f"{logbase}-{setup}.json",
                 filtered=bool(test_args))


def list_file(path):
    """Lines of a list file, comments and blanks dropped, split in words."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].split()
        if line:
            rows.append(line)
    return rows


def collect():
    # The hygiene of both series, each against a tree of its own base
    # (make check prepares both), whichever base the other groups test.
    main_src = str(TOP / "build/qemu")
    checks = [Check("hygiene", "series hygiene",
                    ["bash", str(TOP / "tests/hygiene/check-series.sh")],
                    {"SERIES_NAME": "series", "SRC": main_src},
                    timeout=600),
              # (skipped where a base cannot be prepared)
              Check("hygiene", "series hygiene, 10.0 base",
                    ["bash", str(TOP / "tests/hygiene/check-series.sh")],
                    {"SERIES_NAME": "series-10.0",
                     "SRC": str(TOP / "build/base-10.0.13/qemu")},
                    timeout=600),
              Check("hygiene", "the series on Debian's own patches",
                    ["bash", str(TOP / "tests/hygiene/debian-patches.sh")],
                    timeout=600),
              Check("hygiene", "hygiene self-test",
                    ["bash", str(TOP / "tests/hygiene/selftest.sh")],
                    {"SERIES_NAME": "series", "SRC": main_src},
                    timeout=900),
              Check("hygiene", "CI job script on a local upstream tree",
                    ["bash", str(TOP / "tests/hygiene/ci-upstream.sh")],
                    {"SRC": main_src}, timeout=900)]

    # qtests: one meson run each, with the arguments of its line (a -p/-r
    # filter).  "-m slow" is what the thorough setup already gives
    # (G_TEST_SLOW=1), so it is dropped here.
    for row in list_file(TOP / "tests/qtests.list"):
        name, args = row[0], [a for a in row[1:] if a not in ("-m", "slow")]
        checks.append(meson_check("qtest", f"qtest {name}",
                                  [f"qtest-x86_64/{name}"], args))

    # functional tests, by their meson name func-<arch>-<name>
    # the functional tests are in meson's thorough suites only; their
    # guest comes from QEMU's asset cache (`make assets` seeds it)
    functional = os.environ.get("CHECK_SETUP", "thorough") == "thorough"
    for row in list_file(TOP / "tests/functional.list") if functional else []:
        path = Path(row[0])
        arch, stem = path.parent.name, path.stem[len('test_'):]
        mname = f"func-{arch}-{stem}"
        flat = SRC / "tests/functional" / f"test_{arch}_{stem}.py"
        if not (SRC / path).exists() and flat.exists():
            # a base before the per-target directories (10.0):
            # tests/functional/test_<arch>_<name>.py, meson name
            # func-<arch>-<arch>_<name>
            mname = f"func-{arch}-{arch}_{stem}"
        checks.append(meson_check("functional", f"functional {mname}",
                                  [mname]))

    senv = {"PYTHONPATH": f"{TOP / 'tests/lib'}:{SRC / 'python'}"}
    for t in sorted((TOP / "tests/system").glob("test_*.py")):
        checks.append(Check("system", f"system {t.name}",
                            ["/usr/bin/python3", str(t)], senv, timeout=1800))

    # compat: patched vs the unpatched base (scripts/build-unpatched.sh);
    # the binaries are overridable with COMPAT_PATCHED_QEMU and
    # COMPAT_UNPATCHED_QEMU, see tests/compat/README.md.
    for t in sorted((TOP / "tests/compat").glob("test_*.py")):
        checks.append(Check("compat", f"compat {t.name}",
                            ["/usr/bin/python3", str(t)], senv, timeout=1200))
    return checks


def meson_results(testlog, lf, filtered=False):
    """Per-subtest results of a `meson test` run, from its JSON log.

    Each line is one test: its TAP stdout gives the subtests; a test
    that printed none counts once by meson's verdict, and a test meson
    failed although every subtest passed (a crash after the last one, a
    timeout) adds one failure.
    """
    import json
    results = []
    if not testlog.exists():
        return [("fail", f"no meson test log {testlog}")]
    lf.write(f"meson test log: {testlog}\n")
    for line in testlog.read_text().splitlines():
        if not line.strip():
            continue
        try:
            t = json.loads(line)
        except ValueError:
            results.append(("fail", f"unreadable line in {testlog}"))
            continue
        # "qemu:suite+suite / name": the suites are in meson's own log
        name, verdict = t["name"].split(" / ")[-1], t["result"]
        lf.write(f"\n=== {name}: {verdict} in {t.get('duration', 0):.1f}s\n")
        # the test's own output, so that this log can be searched too
        for stream in ("stdout", "stderr"):
            for out in (t.get(stream) or "").splitlines():
                lf.write(f"{stream}: {out}\n" if stream == "stderr" else out + "\n")
        mine = []
        for out in (t.get("stdout") or "").splitlines():
            r = tap_result(out)
            if r:
                mine.append((r[0], f"{name}: {r[1]}"))
        plan0 = re.search(r"^1\.\.0(.*)$", t.get("stdout") or "", re.M)
        if not mine and filtered and plan0 and \
                not re.search(r"#\s*SKIP", plan0.group(1), re.I):
            # a -p/-r filter that selects nothing: meson says SKIP
            mine.append(("fail", f"{name}: no test was run"))
        elif not mine:
            status = {"OK": "pass", "SKIP": "skip",
                      "EXPECTEDFAIL": "pass"}.get(verdict, "fail")
            mine.append((status, f"{name} ({verdict})"))
        elif verdict not in ("OK", "SKIP", "EXPECTEDFAIL") and \
                not any(st == "fail" for st, _ in mine):
            mine.append(("fail", f"{name}: {verdict}"))
        results += mine
    return results


def run(check, verbose):
    LOGS.mkdir(parents=True, exist_ok=True)
    log = LOGS / (re.sub(r"[^A-Za-z0-9_.-]+", "_", check.name) + ".log")
    env = dict(os.environ)
    env.update(check.env)
    start = time.monotonic()
    results = []          # (status, description)
    plan_zero = None      # the "1..0" line, if the program printed one
    if check.testlog and check.testlog.exists():
        check.testlog.unlink()          # never read an older run's
    with open(log, "w") as lf:
        lf.write(f"$ {' '.join(check.argv)}\n")
        lf.flush()
        try:
            # TAP is read from stdout only: what a program prints on
            # stderr (QEMU's warnings, a stray "ok") goes to the log
            proc = subprocess.Popen(check.argv, env=env, cwd=check.cwd,
                                    stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE,
                                    stdin=subprocess.DEVNULL, text=True,
                                    errors="replace", start_new_session=True)
        except OSError as e:
            lf.write(f"cannot run: {e}\n")
            return [("fail", f"{check.name}: cannot run: {e}")], log, 0.0
        deadline = start + check.timeout
        import selectors
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ, "out")
        sel.register(proc.stderr, selectors.EVENT_READ, "err")
        open_streams = 2
        timed_out = False
        while open_streams:
            if time.monotonic() > deadline:
                timed_out = True
                break
            for key, _ in sel.select(timeout=1.0):
                line = key.fileobj.readline()
                if not line:
                    sel.unregister(key.fileobj)
                    open_streams -= 1
                    continue
                if key.data == "err":
                    lf.write("stderr: " + line)
                    if verbose:
                        sys.stdout.write("    stderr: " + line)
                    continue
                lf.write(line)
                if verbose:
                    sys.stdout.write("    " + line)
                if line.startswith("1..0"):
                    plan_zero = line.strip()
                r = tap_result(line)
                if r:
                    results.append(r)
        if timed_out:
            # meson starts each test in a session of its own: SIGTERM
            # lets it kill them before it goes
            os.killpg(proc.pid, 15)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, 9)
            results.append(("fail", f"{check.name}: timed out after {check.timeout}s"))
        rc = proc.wait()
        lf.write(f"\n[exit status {rc}]\n")
        if check.testlog and not timed_out:
            results = meson_results(check.testlog, lf, check.filtered)
    elapsed = time.monotonic() - start
    if not timed_out:
        if not results and plan_zero is not None and rc == 0:
            # "1..0": nothing ran.  Fine when the program says why it
            # skipped everything; otherwise a filter selected no test.
            if re.search(r"#\s*SKIP", plan_zero, re.I):
                results.append(("skip", f"{check.name}: {plan_zero}"))
            else:
                results.append(("fail", f"{check.name}: no test was run"))
        elif not results:
            status = "pass" if rc == 0 else "skip" if rc == 77 else "fail"
            results.append((status, f"{check.name} (exit status {rc})"))
        elif rc not in (0, 77) and not any(s == "fail" for s, _ in results):
            results.append(("fail", f"{check.name}: exit status {rc}"))
    return results, log, elapsed


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("groups", nargs="*")
    ap.add_argument("--only", action="append", default=[])
    ap.add_argument("--list", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args()

    checks = collect()
    if args.groups:
        checks = [c for c in checks if c.group in args.groups]
    if args.only:
        checks = [c for c in checks if any(o in c.name for o in args.only)]
    if args.list:
        for c in checks:
            print(f"{c.group:10} {c.name}")
        return 0

    totals = {"pass": 0, "fail": 0, "skip": 0}
    failures = []
    for c in checks:
        print(f"--- {c.name}", flush=True)
        results, log, elapsed = run(c, args.verbose)
        counts = {k: sum(1 for s, _ in results if s == k) for k in totals}
        for k in totals:
            totals[k] += counts[k]
        for s, d in results:
            if s == "fail":
                failures.append((c.name, d, log))
                print(f"    FAIL: {d}")
            elif s == "skip":
                print(f"    skip: {d}")
        print(f"    {counts['pass']} passed, {counts['fail']} failed, "
              f"{counts['skip']} skipped in {elapsed:.0f}s (log: {log.relative_to(TOP) if log.is_relative_to(TOP) else log})",
              flush=True)

    if failures:
        print("\nFailures:")
        for name, d, log in failures:
            print(f"  {name}: {d}  [{log}]")
    print(f"{totals['pass']} passed, {totals['fail']} failed, {totals['skip']} skipped")
    return 1 if totals["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
