"""Skip helpers: each raises unittest.SkipTest with a readable reason when a
prerequisite of a system test is missing, and returns quietly otherwise."""

import os
import shutil
import unittest
from pathlib import Path
from typing import Optional, Union

from . import paths


def require_root() -> None:
    if os.geteuid() != 0:
        raise unittest.SkipTest("must run as root (network namespaces, TAP)")


def require_tun() -> None:
    if not os.path.exists("/dev/net/tun"):
        raise unittest.SkipTest("/dev/net/tun missing")
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        raise unittest.SkipTest("/dev/net/tun not accessible")


def require_vhost_net() -> None:
    if not os.path.exists("/dev/vhost-net"):
        raise unittest.SkipTest("/dev/vhost-net missing")
    if not os.access("/dev/vhost-net", os.R_OK | os.W_OK):
        raise unittest.SkipTest("/dev/vhost-net not accessible")


def require_binary(binary: Optional[Union[str, Path]] = None) -> str:
    """Skip unless an executable is available; return its path.

    Without an argument this checks the QEMU binary (see paths.qemu_binary).
    A bare name (no '/') is looked up in $PATH.
    """
    if binary is None:
        binary = paths.qemu_binary()
    binary = str(binary)
    if "/" not in binary:
        found = shutil.which(binary)
        if not found:
            raise unittest.SkipTest(f"{binary} not found in PATH")
        return found
    if not os.path.isfile(binary) or not os.access(binary, os.X_OK):
        raise unittest.SkipTest(f"binary {binary} missing (not built yet?)")
    return binary


def require_qemu_python() -> None:
    try:
        paths.ensure_qemu_python()
    except ImportError as exc:
        raise unittest.SkipTest(
            f"QEMU python library not usable from {paths.qemu_python_dir()}: "
            f"{exc}") from exc


def require_guest() -> None:
    """Skip unless the offline guest (kernel + initramfs) has been built and
    the firmware to boot it is there."""
    for path in (paths.guest_kernel(), paths.guest_initrd()):
        if not path.is_file():
            raise unittest.SkipTest(
                f"guest image {path} missing (run tests/guest/build.sh)")
    require_firmware()


def require_firmware(names=("bios-256k.bin", "linuxboot_dma.bin")) -> None:
    """Fail (not skip) unless the firmware needed to boot the x86 guest
    with -kernel is where the QEMU under test looks for it: `make` wires
    it there, so its absence is a build problem, not a missing host
    feature."""
    for name in names:
        if paths.find_firmware(name) is None:
            raise RuntimeError(
                f"firmware {name} not found in {paths.firmware_dirs()}: "
                "the build did not wire it (see scripts/build.sh)")
