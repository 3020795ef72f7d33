"""Shared helpers of the compatibility suite (tests/compat/).

The suite compares two builds of the same base and configure options:

  COMPAT_PATCHED_QEMU     the patched build
                          (default <BUILD_ROOT>/qemu/build/qemu-system-x86_64;
                          BUILD_ROOT is <repo>/build, or the Makefile's
                          build/base-<version> for another base)
  COMPAT_UNPATCHED_QEMU   the unpatched base, a worktree at tag "overlay"
                          built by scripts/build-unpatched.sh
                          (default <BUILD_ROOT>/unpatched/build/qemu-system-x86_64)
  COMPAT_PATCHED_IVSHMEM_SERVER, COMPAT_UNPATCHED_IVSHMEM_SERVER
                          the ivshmem-server of each build (default
                          <build>/contrib/ivshmem-server/ivshmem-server next
                          to the binary)
  COMPAT_CHECKER          QEMU's scripts/vmstate-static-checker.py
                          (default <BUILD_ROOT>/qemu/scripts/...)

Every test skips, naming the path, when one of the two binaries is
missing.
"""

import json
import os
import subprocess
import sys
import unittest
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests" / "lib"))

# pylint: disable=wrong-import-position
from serieslib import paths  # noqa: E402

PATCHED = "patched"
UNPATCHED = "unpatched"


def _env(name: str, default: Path) -> str:
    return os.environ.get(name) or str(default)


def qemu(build: str) -> str:
    """Path of qemu-system-x86_64 of build PATCHED or UNPATCHED."""
    if build == PATCHED:
        return _env("COMPAT_PATCHED_QEMU",
                    paths.build_root() / "qemu/build/qemu-system-x86_64")
    return _env("COMPAT_UNPATCHED_QEMU",
                paths.build_root() / "unpatched/build/qemu-system-x86_64")


def newest_q35(build: str = UNPATCHED) -> str:
    """The versioned machine type behind "q35" in that build (pc-q35-10.2
    on 10.2.2, pc-q35-10.0 on 10.0.13); pc-q35-10.2 when the binary is
    missing (the tests skip then)."""
    try:
        out = subprocess.run([qemu(build), "-machine", "help"],
                             capture_output=True, text=True, timeout=30,
                             check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return "pc-q35-10.2"
    for line in out.splitlines():
        if line.startswith("q35 ") and "(alias of " in line:
            return line.split("(alias of ", 1)[1].rstrip(")")
    return "pc-q35-10.2"


def ivshmem_server(build: str) -> str:
    var = f"COMPAT_{build.upper()}_IVSHMEM_SERVER"
    return _env(var, Path(qemu(build)).parent
                / "contrib/ivshmem-server/ivshmem-server")


def checker() -> str:
    return _env("COMPAT_CHECKER",
                paths.build_root() / "qemu/scripts/vmstate-static-checker.py")


def _executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def missing_binaries():
    """Reason string if a binary is missing, else None."""
    for build in (UNPATCHED, PATCHED):
        path = qemu(build)
        if not _executable(path):
            var = f"COMPAT_{build.upper()}_QEMU"
            hint = " (scripts/build-unpatched.sh)" if build == UNPATCHED \
                else " (make)"
            return f"{build} QEMU {path} missing{hint}; set {var}"
    return None


def require_binaries() -> None:
    reason = missing_binaries()
    if reason:
        raise unittest.SkipTest(reason)


def require_ivshmem_servers() -> None:
    for build in (UNPATCHED, PATCHED):
        path = ivshmem_server(build)
        if not _executable(path):
            raise unittest.SkipTest(f"{build} ivshmem-server {path} missing")


def run_qemu(build: str, *args: str, timeout: float = 60
             ) -> subprocess.CompletedProcess:
    return subprocess.run([qemu(build), *args], capture_output=True,
                          text=True, timeout=timeout, check=False,
                          stdin=subprocess.DEVNULL)


def machine_types(build: str):
    """Machine type names of `-machine help`: no aliases, no "none"."""
    proc = run_qemu(build, "-machine", "help")
    if proc.returncode != 0:
        raise RuntimeError(f"{qemu(build)} -machine help failed: "
                           f"{proc.stderr.strip()}")
    names = []
    for line in proc.stdout.splitlines()[1:]:
        words = line.split()
        if not words or words[0] == "none" or "(alias of" in line:
            continue
        names.append(words[0])
    return names


class QMPProbe:
    """A QEMU without a guest (-machine none by default, qtest accel) to
    ask over QMP, through QEMU's python library (qemu.machine)."""

    def __init__(self, build: str, machine: str = "none",
                 args=(), base_dir=None):
        paths.ensure_qemu_python()
        # pylint: disable=import-outside-toplevel
        from qemu.machine import QEMUMachine
        self.build = build
        self.vm = QEMUMachine(qemu(build),
                              args=["-nodefaults", "-accel", "qtest",
                                    *args],
                              base_temp_dir=base_dir or "/tmp",
                              log_dir=base_dir)
        self.vm.set_machine(machine)

    def __enter__(self):
        self.vm.launch()
        return self

    def __exit__(self, *exc):
        self.vm.shutdown()

    def cmd(self, command: str, **args):
        return self.vm.cmd(command, **args)

    def qmp_raw(self, command: str, args=None):
        return self.vm.qmp(command, args_dict=args or {})


def json_type(value) -> str:
    """The JSON type name of a decoded value."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    if value is None:
        return "null"
    return type(value).__name__


def dumps(value) -> str:
    return json.dumps(value, sort_keys=True)
