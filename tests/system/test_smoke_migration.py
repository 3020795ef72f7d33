#!/usr/bin/python3
"""Smoke test: virtio-net guest on a TAP behind a bridge, live-migrated over
a UNIX socket to a second QEMU on another TAP of the same bridge.

    python3 tests/system/test_smoke_migration.py        (as root, prints TAP)

Everything runs in a private network namespace (198.18.0.0/24):

    ns: br0 198.18.0.1/24 --+-- tap0 -- QEMU A (q35, virtio-net 52:54:00:12:34:56)
                            +-- tap1 -- QEMU B (-incoming defer, -S)

Steps: boot A (guest 198.18.0.2/24), ping it from the namespace, migrate
A -> B, `cont` B, quit A, ping again (now answered by B) and check that B's
serial console shell still responds.

Skips (TAP "ok ... # SKIP reason") when not root, without /dev/net/tun, or
when the QEMU binary, its python library or the guest image is missing.
Missing firmware (bios-256k.bin, linuxboot_dma.bin) is an error: `make`
wires it into the build tree.
Environment: see tests/lib/serieslib/__init__.py (SERIES_ACCEL,
SERIES_LOG_DIR, QEMU_BUILD_DIR, GUEST_DIR, ...).  SMOKE_INJECT_FAILURE=1
makes the test fail after the migration, to check that cleanup works.
"""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

# pylint: disable=wrong-import-position
from serieslib import (main, Guest, Netns, migrate, require_binary,  # noqa: E402
                       require_guest, require_qemu_python, require_root,
                       require_tun, start_destination)

MAC = "52:54:00:12:34:56"
HOST_IP = "198.18.0.1/24"
GUEST_IP = "198.18.0.2"
NIC = f"virtio-net-pci,netdev=n0,mac={MAC}"


def tap_netdev(ifname: str) -> str:
    return f"tap,id=n0,ifname={ifname},script=no,downscript=no"


class SmokeMigration(unittest.TestCase):
    """Boot, ping, migrate over unix:, ping again."""

    def setUp(self):
        require_root()
        require_tun()
        require_binary()               # the QEMU binary
        require_binary("busybox")      # host-side ping
        require_qemu_python()
        require_guest()
        self.guests = []
        self.ns = Netns("smoke")
        # Cleanups run last-in first-out: the namespace goes after the
        # guests, and also kills anything they left behind.
        self.addCleanup(self.ns.cleanup)

    def add_guest(self, guest: Guest) -> Guest:
        self.guests.append(guest)
        self.addCleanup(guest.shutdown)
        return guest

    def dump_consoles(self):
        """Print every guest's console tail (shows up as TAP diagnostics)."""
        for guest in self.guests:
            if guest.console is not None:
                print(f"--- console of {guest.name} (tail) ---")
                print(guest.console.tail(1500))
            if guest.qemu_log():
                print(f"--- QEMU output of {guest.name} ---")
                print(guest.qemu_log())

    def test_tap_bridge_migration(self):
        try:
            self._run_scenario()
        except BaseException:
            self.dump_consoles()
            raise

    def _run_scenario(self):
        ns = self.ns
        t_start = time.monotonic()
        ns.add_bridge("br0", HOST_IP)
        ns.add_tap("tap0", master="br0")
        ns.add_tap("tap1", master="br0")

        src = self.add_guest(Guest(ns, name="A", ip=f"{GUEST_IP}/24",
                                   mac=MAC, netdevs=[tap_netdev("tap0")],
                                   devices=[NIC]))
        t0 = time.monotonic()
        src.boot()
        t_boot = time.monotonic() - t0
        t_ping1 = ns.ping(GUEST_IP, timeout=30)
        self.assertEqual(src.cmd("echo hi"), "hi")

        dst = self.add_guest(start_destination(
            src, netdevs=[tap_netdev("tap1")]))
        self.assertEqual(dst.runstate(), "inmigrate")

        uri = f"unix:{os.path.join(ns.tmpdir, 'migrate.sock')}"
        t0 = time.monotonic()
        info = migrate(src, dst, uri, timeout=120)
        t_migrate = time.monotonic() - t0
        self.assertEqual(src.runstate(), "postmigrate")
        self.assertEqual(dst.runstate(), "paused")

        dst.qmp("cont")
        self.assertEqual(dst.runstate(), "running")
        src.shutdown()                 # quit A: only B can answer now
        self.assertFalse(src.is_running())

        if os.environ.get("SMOKE_INJECT_FAILURE"):
            self.fail("deliberate failure (SMOKE_INJECT_FAILURE is set)")

        t_ping2 = ns.ping(GUEST_IP, timeout=30)
        self.assertEqual(dst.cmd("echo hi"), "hi")
        # The guest still has its address (state came across intact).
        self.assertIn(GUEST_IP, dst.cmd("ip -o -4 addr show"))

        print(f"accel={src.accel} boot={t_boot:.1f}s first-ping={t_ping1:.1f}s"
              f" migrate-wall={t_migrate:.2f}s"
              f" qemu-total-time={info.get('total-time')}ms"
              f" downtime={info.get('downtime')}ms"
              f" ram-transferred={info.get('ram', {}).get('transferred')}"
              f" ping-after-migration={t_ping2:.2f}s"
              f" test-total={time.monotonic() - t_start:.1f}s")


if __name__ == "__main__":
    main()
