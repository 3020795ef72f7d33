"""serieslib: helpers for the patch series' system tests.

Put <repo>/tests/lib on sys.path, then::

    from serieslib import (Netns, Guest, migrate, start_destination,
                           require_root, require_tun, require_binary,
                           require_guest)

Modules:
  paths      locations of QEMU build/binary/python lib and of the guest
             (env overrides QEMU_BUILD_DIR, QEMU_BINARY, QEMU_PYTHON_DIR,
             GUEST_DIR, GUEST_KERNEL, GUEST_INITRD)
  skip       require_*() helpers raising unittest.SkipTest
  netns      Netns: throw-away network namespace with bridge/veth/TAP/macvtap
             helpers and guaranteed cleanup
  console    ConsoleReader: drained serial console with pattern waiting
  guest      Guest: QEMUMachine-based guest, accelerator selection
  migration  migrate(), start_destination()
  runner     main(): run a test module's tests with TAP output

Environment knobs: SERIES_ACCEL=kvm|tcg (force the accelerator),
SERIES_BOOT_TIMEOUT (TCG boot timeout, default 180 s), SERIES_LOG_DIR (keep
QEMU and console logs there instead of a temporary directory).
"""

from . import paths
from .console import ConsoleReader, ConsoleTimeout
from .guest import (Guest, GuestCommandError, GuestError, probe_kvm,
                    select_accel)
from .migration import MigrationError, migrate, start_destination
from .netns import Netns, NetnsError, cleanup_stale
from .runner import main
from .skip import (require_binary, require_firmware, require_guest,
                   require_qemu_python,
                   require_root, require_tun, require_vhost_net)

__all__ = [
    "paths", "ConsoleReader", "ConsoleTimeout", "Guest",
    "GuestCommandError", "GuestError", "probe_kvm", "select_accel",
    "MigrationError", "migrate", "start_destination", "Netns", "NetnsError",
    "cleanup_stale", "main", "require_binary", "require_firmware", "require_guest",
    "require_qemu_python", "require_root", "require_tun",
    "require_vhost_net",
]
