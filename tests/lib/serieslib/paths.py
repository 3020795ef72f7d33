"""Locations of the QEMU build, QEMU's python library and the test guest.

Everything is found relative to the repository root (this file lives in
<repo>/tests/lib/serieslib/), and every location can be overridden through
the environment:

  BUILD_ROOT       the build tree of a base (default <repo>/build; the
                   Makefile sets <repo>/build/base-<version> for another
                   base, e.g. make BASE=10.0.13 check)
  QEMU_BUILD_DIR   QEMU build directory     (default <BUILD_ROOT>/qemu/build)
  QEMU_BINARY      qemu-system-x86_64 path  (default <QEMU_BUILD_DIR>/qemu-system-x86_64)
  QEMU_PYTHON_DIR  QEMU's python library    (default <BUILD_ROOT>/qemu/python)
  GUEST_DIR        offline guest output     (default <repo>/build/guest)
  GUEST_KERNEL     guest kernel             (default <GUEST_DIR>/vmlinuz)
  GUEST_INITRD     guest initramfs          (default <GUEST_DIR>/initramfs.cpio.gz)
"""

import os
import re
import sys
from pathlib import Path

# <repo>/tests/lib/serieslib/paths.py -> parents[3] is <repo>
REPO_ROOT = Path(__file__).resolve().parents[3]


def _env_path(name: str, default: Path) -> Path:
    """Return $name as a Path if it is set and non-empty, else default."""
    value = os.environ.get(name)
    return Path(value) if value else default


def build_root() -> Path:
    return _env_path("BUILD_ROOT", REPO_ROOT / "build")


def qemu_build_dir() -> Path:
    return _env_path("QEMU_BUILD_DIR", build_root() / "qemu" / "build")


def qemu_binary() -> Path:
    return _env_path("QEMU_BINARY", qemu_build_dir() / "qemu-system-x86_64")


def qemu_python_dir() -> Path:
    return _env_path("QEMU_PYTHON_DIR", build_root() / "qemu" / "python")


def guest_dir() -> Path:
    return _env_path("GUEST_DIR", REPO_ROOT / "build" / "guest")


def guest_kernel() -> Path:
    return _env_path("GUEST_KERNEL", guest_dir() / "vmlinuz")


def guest_initrd() -> Path:
    return _env_path("GUEST_INITRD", guest_dir() / "initramfs.cpio.gz")


def firmware_dirs() -> list:
    """Directories the QEMU under test searches for firmware.

    A QEMU run from its build tree relocates its data directory and its
    configured firmware path (--firmwarepath) below <build>/qemu-bundle/;
    scripts/build.sh links the distribution's seabios/ipxe firmware and
    the option ROMs it built in there, so no -L is needed.  Listed here
    only to check that the firmware is present."""
    bundle = qemu_build_dir() / "qemu-bundle"
    dirs = []
    try:
        config = (qemu_build_dir() / "config-host.h").read_text()
    except OSError:
        return dirs
    for key in ("CONFIG_QEMU_FIRMWAREPATH", "CONFIG_QEMU_DATADIR"):
        match = re.search(rf"#define {key} (.*)", config)
        if match:
            dirs += [str(bundle) + d for d in re.findall(r'"([^"]*)"',
                                                         match.group(1))]
    return [d for d in dirs if os.path.isdir(d)]


def find_firmware(name: str):
    """Path of firmware file name in firmware_dirs(), or
    None."""
    for directory in firmware_dirs():
        candidate = os.path.join(directory, name)
        if os.path.isfile(candidate):
            return candidate
    return None


def ensure_qemu_python() -> None:
    """Make QEMU's in-tree python package (qemu.machine, qemu.qmp) importable.

    Raises ImportError if it cannot be found.
    """
    pydir = str(qemu_python_dir())
    if pydir not in sys.path:
        sys.path.insert(0, pydir)
    # Import here so that a missing or broken library shows up immediately.
    import qemu.machine  # noqa: F401  pylint: disable=import-outside-toplevel
    import qemu.qmp      # noqa: F401  pylint: disable=import-outside-toplevel
