#!/usr/bin/python3
"""virtio-net failover with a real Linux guest (net_failover).

    python3 tests/system/test_failover_guest.py        (as root, prints TAP)

Linux's net_failover refuses a virtio primary, so the primary is an e1000e
on a pcie-root-port with the standby's MAC (romfile='' so that no option
ROM RAMBlock has to be migrated).  Everything runs in a private network
namespace (198.18.0.0/24); every QEMU generation gets two new TAPs on br0:

    ns: br0 198.18.0.1/24 --+-- tapNs -- virtio-net-pci standby0 (failover=on)
                            +-- tapNp -- e1000e primary0 (failover_pair_id)

One guest is booted once and carried along by the migrations; the test
methods run in order (test_01 ... test_07) and each needs the previous
ones:

  01  the guest has the failover master with the standby and the primary
      as slaves; the primary came after the STANDBY negotiation
      (FAILOVER_PRIMARY_STATE plugged/negotiated, dmesg order)
  02  the failover group id capabilities are readable from inside the
      guest (config space via sysfs) on the standby and on the root port
  03  precopy migration: the source unplugs the primary, it returns on
      the destination
  04  postcopy migration, same checks (skips without userfaultfd)
  05  migrate_cancel during wait-unplug: the primary returns on the source
  06  migrate_cancel during active: the primary returns on the source
  07  system_reset with x-failover-rehide-on-reset=on: the primary is
      hidden until the rebooted guest negotiates STANDBY again

A ping (busybox, every 0.1 s) from the namespace to the address on the
failover master runs during each migration; lost packets are reported.
Skips when not root, without /dev/net/tun, or when QEMU, its python
library or the guest image is missing.  Environment: see
tests/lib/serieslib/__init__.py.
"""

import os
import re
import signal
import subprocess
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

# pylint: disable=wrong-import-position
from serieslib import (main, Guest, GuestError, Netns,  # noqa: E402
                       require_binary, require_guest, require_qemu_python,
                       require_root, require_tun, start_destination)

MAC = "52:54:00:fa:11:01"
HOST_IP = "198.18.0.1/24"
GUEST_IP = "198.18.0.2"
GROUP_ID = 0x1234
PING_INTERVAL = 0.1

DEVICES = [
    "pcie-root-port,id=root0,bus=pcie.0,addr=0x3,chassis=1",
    f"pcie-root-port,id=root1,bus=pcie.0,addr=0x4,chassis=2,"
    f"x-failover-group-id={GROUP_ID}",
    f"virtio-net-pci,netdev=n0,id=standby0,bus=root0,mac={MAC},failover=on,"
    f"x-failover-group-id={GROUP_ID},x-failover-rehide-on-reset=on",
    f"e1000e,netdev=n1,id=primary0,bus=root1,mac={MAC},"
    "failover_pair_id=standby0,rombar=0,romfile=",
]


def netdevs(gen: int):
    return [f"tap,id=n0,ifname=tap{gen}s,script=no,downscript=no",
            f"tap,id=n1,ifname=tap{gen}p,script=no,downscript=no"]


class Pinger:
    """busybox ping running in the namespace until stop()."""

    def __init__(self, ns: Netns, address: str):
        self.proc = ns.popen("busybox", "ping", "-i", str(PING_INTERVAL),
                             address, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)

    def stop(self):
        """Return (transmitted, received)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            out, _ = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        match = re.search(r"(\d+) packets transmitted, (\d+) packets "
                          r"received", out or "")
        if not match:
            return 0, 0
        return int(match.group(1)), int(match.group(2))


class FailoverGuest(unittest.TestCase):
    """One guest, carried through migrations, in test method order."""

    ns = None
    guest = None          # the QEMU currently running the guest
    gen = 0               # TAP generation
    report = []

    @classmethod
    def setUpClass(cls):
        require_root()
        require_tun()
        require_binary()
        require_binary("busybox")
        require_qemu_python()
        require_guest()
        cls.ns = Netns("failover")
        cls.ns.add_bridge("br0", HOST_IP)
        cls.guests = []
        try:
            cls.guest = cls._new_guest()
            t0 = time.monotonic()
            cls.guest.boot()
            cls.report.append(f"boot={time.monotonic() - t0:.1f}s")
        except BaseException:
            cls._cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        cls._cleanup()

    def note(self, text):
        self.report.append(text)
        print(text)

    @classmethod
    def _cleanup(cls):
        for guest in cls.guests:
            guest.shutdown()
        if cls.ns is not None:
            cls.ns.cleanup()

    @classmethod
    def _add_taps(cls) -> int:
        cls.gen += 1
        cls.ns.add_tap(f"tap{cls.gen}s", master="br0")
        cls.ns.add_tap(f"tap{cls.gen}p", master="br0")
        return cls.gen

    @classmethod
    def _new_guest(cls) -> Guest:
        gen = cls._add_taps()
        guest = Guest(cls.ns, name="fo", ip=f"{GUEST_IP}/24", mac=MAC,
                      netdevs=netdevs(gen), devices=DEVICES,
                      extra_args=["-action", "reboot=reset"])
        cls.guests.append(guest)
        return guest

    @classmethod
    def _new_destination(cls) -> Guest:
        gen = cls._add_taps()
        dst = start_destination(cls.guest, netdevs=netdevs(gen))
        cls.guests.append(dst)
        return dst

    # -- helpers -----------------------------------------------------------
    def dump(self, guest=None):
        guest = guest or self.guest
        if guest.console is not None:
            print("--- console (tail) ---")
            print(guest.console.tail(2000))

    def slaves(self):
        """{name: driver} of the slaves of the failover master."""
        out = self.guest.cmd(
            "for d in /sys/class/net/*; do [ -e $d/master ] || continue; "
            "m=$(basename $(readlink $d/master)); "
            "drv=$(basename $(readlink $d/device/driver) 2>/dev/null); "
            "echo ${d##*/} $m $drv; done")
        result = {}
        for line in out.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                result[parts[0]] = (parts[1],
                                    parts[2] if len(parts) > 2 else "")
        return result

    def wait_slaves(self, want_primary: bool, timeout: float = 90):
        deadline = time.monotonic() + timeout
        while True:
            slaves = self.slaves()
            drivers = sorted(d for _, d in slaves.values())
            have = "e1000e" in drivers
            if have == want_primary and "virtio_net" in drivers:
                return slaves
            if time.monotonic() > deadline:
                self.dump()
                self.fail(f"slaves {slaves}: primary "
                          f"{'missing' if want_primary else 'still there'}")
            time.sleep(1)

    def query(self, guest=None):
        info = (guest or self.guest).qmp("x-query-failover")
        for entry in info:
            if entry["device-id"] == "standby0":
                return entry
        self.fail(f"standby0 not in x-query-failover: {info}")
        return None

    def state_events(self, guest=None):
        guest = guest or self.guest
        guest.qmp("query-status")       # pulls pending events off QMP
        return [(e["data"]["state"], e["data"]["reason"])
                for e in guest.vm.get_qmp_events(wait=False)
                if e["event"] == "FAILOVER_PRIMARY_STATE"]

    def migrate(self, dst, uri, postcopy=False, cancel_in=None,
                timeout=300):
        """Migrate self.guest to dst (or cancel it in status cancel_in);
        returns (source query-migrate, statuses seen)."""
        src = self.guest
        if postcopy:
            for side in (src, dst):
                side.qmp("migrate-set-capabilities", capabilities=[
                    {"capability": "postcopy-ram", "state": True}])
        dst.qmp("migrate-incoming", uri=uri)
        src.qmp("migrate", uri=uri)
        seen = []
        started_postcopy = False
        deadline = time.monotonic() + timeout
        while True:
            info = src.qmp("query-migrate")
            status = info.get("status")
            if not seen or seen[-1] != status:
                seen.append(status)
            if cancel_in and status == cancel_in:
                src.qmp("migrate_cancel")
                cancel_in = None
            if postcopy and status == "active" and not started_postcopy:
                src.qmp("migrate-start-postcopy")
                started_postcopy = True
            if status in ("completed", "failed", "cancelled"):
                return info, seen
            if time.monotonic() > deadline:
                src.qmp("migrate_cancel")
                self.fail(f"migration stuck: {seen} {info}")
            time.sleep(0.05)

    # -- tests -------------------------------------------------------------
    def test_01_failover_master(self):
        slaves = self.wait_slaves(True)
        masters = {m for m, _ in slaves.values()}
        self.assertEqual(len(slaves), 2, slaves)
        self.assertEqual(len(masters), 1, slaves)
        master = masters.pop()
        self.assertIn(GUEST_IP, self.guest.cmd(f"ip -o -4 addr show {master}"))
        sby = [n for n, (_, d) in slaves.items() if d == "virtio_net"][0]
        self.assertEqual(self.guest.cmd(
            f"cat /sys/class/net/{sby}/phys_port_name"), "sby")
        # the primary was plugged by the negotiation, after the standby
        self.assertIn(("plugged", "negotiated"), self.state_events())
        dmesg = self.guest.cmd("dmesg")
        sby_at = dmesg.find("failover standby slave")
        pri_at = dmesg.find("failover primary slave")
        self.assertTrue(0 <= sby_at < pri_at, dmesg[-3000:])
        info = self.query()
        self.assertEqual(info["primary-state"], "plugged")
        self.assertTrue(info["standby-negotiated"])
        self.assertEqual(info["group-id"], GROUP_ID)
        self.note(f"accel={self.guest.accel} {' '.join(self.report)} "
                  f"master={master} "
                  f"slaves={sorted(slaves)}")

    def _find_cap(self, vendor, device, want):
        """Find the device vendor:device in sysfs, read its config space
        and return the 16 bytes of the first vendor capability (0x09) for
        which want(cap bytes) is true."""
        out = self.guest.cmd(
            "for d in /sys/bus/pci/devices/*; do "
            f"[ $(cat $d/vendor) = {vendor} ] && "
            f"[ $(cat $d/device) = {device} ] && "
            "echo $(od -An -tx1 -v $d/config); done; true")
        self.assertTrue(out.strip(), f"no {vendor}:{device} in the guest")
        for line in out.splitlines():
            cfg = bytes(int(x, 16) for x in line.split())
            self.assertGreaterEqual(len(cfg), 64, line)
            pos = cfg[0x34]
            while pos:
                cap = cfg[pos:pos + 16]
                if cap[0] == 0x09 and want(cap):
                    return cap
                pos = cfg[pos + 1]
        return None

    def test_02_group_id_capability(self):
        cap = self._find_cap("0x1af4", "0x1041",
                             lambda c: c[3] == 9 and
                             int.from_bytes(c[4:6], "little") == 0x1b36)
        self.assertIsNotNone(cap, "no QEMU vendor cap on virtio-net-pci")
        self.assertEqual(cap[2], 16)
        self.assertEqual(int.from_bytes(cap[6:8], "little"), 1)
        self.assertEqual(int.from_bytes(cap[8:16], "little"), GROUP_ID)
        cap = self._find_cap("0x1b36", "0x000c", lambda c: c[3] == 2)
        self.assertIsNotNone(cap, "no failover group cap on the root port")
        self.assertEqual(int.from_bytes(cap[8:16], "little"), GROUP_ID)

    def _migrate_and_check(self, label, postcopy=False):
        dst = self._new_destination()
        uri = f"unix:{os.path.join(self.ns.tmpdir, f'{label}.sock')}"
        ping = Pinger(self.ns, GUEST_IP)
        t0 = time.monotonic()
        try:
            info, seen = self.migrate(dst, uri, postcopy=postcopy)
            self.assertEqual(info["status"], "completed",
                             f"{seen} {info.get('error-desc')}")
            events = self.state_events()
            # The guest lives on in dst from here: switch to it before any
            # further check, so that a failed check does not leave the
            # following tests with a stopped source.
            dst.qmp("cont")
            if postcopy:
                dst.qmp("migrate-set-capabilities", capabilities=[
                    {"capability": "postcopy-ram", "state": False}])
            self.guests.remove(self.guest)
            self.guest.shutdown()
            type(self).guest = dst
            self.assertIn("wait-unplug", seen)
            if postcopy:
                # Polling may miss the short postcopy-active phase; any
                # postcopy state shows that the switchover happened.
                self.assertTrue(any(st.startswith("postcopy-")
                                    for st in seen), seen)
            self.assertIn(("unplug-requested", "migration"), events)
            self.wait_slaves(True)
            t_back = time.monotonic() - t0
            self.assertEqual(self.query()["primary-state"], "plugged")
            time.sleep(1)
        finally:
            sent, received = ping.stop()
        self.note(
            f"{label}: statuses={'>'.join(seen)} "
            f"total={info.get('total-time')}ms "
            f"downtime={info.get('downtime')}ms primary-back={t_back:.1f}s "
            f"ping sent={sent} lost={sent - received}")
        self.assertGreater(received, 0)

    def test_03_precopy(self):
        self._migrate_and_check("precopy")

    def test_04_postcopy(self):
        probe = self._new_destination()
        try:
            probe.qmp("migrate-set-capabilities", capabilities=[
                {"capability": "postcopy-ram", "state": True}])
        except Exception as exc:  # pylint: disable=broad-except
            raise unittest.SkipTest(f"postcopy not available: {exc}")
        finally:
            self.guests.remove(probe)
            probe.shutdown()
        self._migrate_and_check("postcopy", postcopy=True)

    def _cancel_and_check(self, label, cancel_in):
        dst = self._new_destination()
        uri = f"unix:{os.path.join(self.ns.tmpdir, f'{label}.sock')}"
        ping = Pinger(self.ns, GUEST_IP)
        self.state_events()             # drop older events
        try:
            if cancel_in == "active":
                self.guest.qmp("migrate-set-parameters",
                               max_bandwidth=4 * 1024 * 1024)
            info, seen = self.migrate(dst, uri, cancel_in=cancel_in)
            self.guest.qmp("migrate-set-parameters",
                           max_bandwidth=128 * 1024 * 1024)
            if cancel_in not in seen:
                raise unittest.SkipTest(f"never saw {cancel_in}: {seen} "
                                        f"{info.get('error-desc')}")
            self.assertEqual(info["status"], "cancelled", seen)
            t0 = time.monotonic()
            self.wait_slaves(True)
            t_back = time.monotonic() - t0
            self.assertEqual(self.query()["primary-state"], "plugged")
            self.assertIn(("plugged", "migration-failed"),
                          self.state_events())
            time.sleep(1)
        finally:
            sent, received = ping.stop()
            self.guests.remove(dst)
            dst.shutdown()
        self.note(f"{label}: statuses={'>'.join(seen)} "
                           f"primary-back={t_back:.1f}s "
                           f"ping sent={sent} lost={sent - received}")

    def test_05_cancel_wait_unplug(self):
        self._cancel_and_check("cancel-wait-unplug", "wait-unplug")

    def test_06_cancel_active(self):
        self._cancel_and_check("cancel-active", "active")

    def test_07_reset_rehides(self):
        self.state_events()
        start = self.guest.console.position
        self.guest.qmp("system_reset")
        self.guest.wait_console(r"GUEST-READY", timeout=240)
        events = self.state_events()
        self.assertIn(("hidden", "reset"), events)
        self.wait_slaves(True)
        events += self.state_events()
        self.assertIn(("plugged", "negotiated"), events)
        self.assertLess(events.index(("hidden", "reset")),
                        events.index(("plugged", "negotiated")))
        # after the reboot, e1000e was probed only after the failover
        # master existed: it was hot-plugged by the negotiation
        dmesg = self.guest.cmd("dmesg")
        master_at = dmesg.find("failover master")
        e1000e_at = dmesg.find("e1000e 0000:")
        self.assertTrue(0 <= master_at < e1000e_at, dmesg[-3000:])
        self.assertGreater(len(self.guest.console.text(start)), 0)
        self.note(f"reset: events={events}")


if __name__ == "__main__":
    main()
