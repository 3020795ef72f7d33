#!/usr/bin/python3
"""The upgrade path: a guest on the patched 10.0.13 (Debian 13's base)
live-migrates to the patched 10.2.2 on the same host, the way a host
moves to a newer package without restarting its guests.

    python3 tests/system/test_upgrade_from_10_0.py   (as root, prints TAP)

Binaries (both built from this repository, each with its own series):

  UPGRADE_OLD_QEMU   default <repo>/build/base-10.0.13/qemu/build/
                     qemu-system-x86_64   (make BASE=10.0.13)
  UPGRADE_NEW_QEMU   default <repo>/build/qemu/build/qemu-system-x86_64
                     (make)

Both sides run machine type pc-q35-10.0, the newest one the old QEMU
knows.  The guest boots once per class on the old QEMU (TCG); the
harness, the traffic and the checks are those of
test_tap_local_migration.py, in a private network namespace
(198.18.0.0/24, the TAP in br0):

  UpgradeLocal     queues=2 on a QEMU-created TAP with
                   x-local-migration-supported=on, migration parameter
                   'local' on: the open TAP fds travel in the stream from
                   10.0.13 to 10.2.2 under a ping flood and a numbered UDP
                   stream; 0 packets lost, 0 duplicated, the same TAP stays
                   in the bridge with its kernel state, no fd leaks.  Then
                   the guest goes on migrating on the new package (10.2.2
                   to 10.2.2).

In both, the virtio-net device's features are the same after each hop:
offered by QEMU, acknowledged by the driver (x-query-virtio-status) and
as the guest sees them (sysfs).
  UpgradeOrdinary  a TAP without the option and an ordinary migration: the
                   destination opens a TAP of its own in the same bridge,
                   the guest keeps its network (the old TAP goes with the
                   old QEMU; the packets of the switchover may be lost and
                   are only reported).  Then back from 10.2.2 to 10.0.13, as a
                   host that rolls the package back does.

Skips when not root, without /dev/net/tun, or when a binary, QEMU's
python library or the guest is missing; the message names the binary
and the make command that builds it.
"""

import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

# pylint: disable=wrong-import-position
from test_tap_local_migration import (TapLocalMigrationBase,  # noqa: E402
                                      Traffic, fd_count, tap_state)

REPO = os.path.abspath(os.path.join(HERE, "..", ".."))
OLD_QEMU = os.environ.get("UPGRADE_OLD_QEMU") or os.path.join(
    REPO, "build/base-10.0.13/qemu/build/qemu-system-x86_64")
NEW_QEMU = os.environ.get("UPGRADE_NEW_QEMU") or os.path.join(
    REPO, "build/qemu/build/qemu-system-x86_64")
MACHINE = "pc-q35-10.0"
HOPS = int(os.environ.get("UPGRADE_HOPS", "3"))


def require_builds():
    for path, how in ((OLD_QEMU, "make BASE=10.0.13"), (NEW_QEMU, "make")):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise unittest.SkipTest(f"{path} missing ({how} builds it)")


def tap_queue_fds(guest) -> int:
    """The TAP queue fds of a QEMU.  QEMU runs in the namespace through
    `ip netns exec`, which gives it a mount namespace of its own: a fd
    opened there, or received over SCM_RIGHTS from a process there,
    reads as /net/tun in /proc/PID/fd rather than /dev/net/tun."""
    pid = guest.get_pid()
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in ("/dev/net/tun",
                                                       "/net/tun"):
                count += 1
        except OSError:
            pass
    return count


def summary(report) -> str:
    keys = ("icmp_sent", "icmp_lost", "icmp_duplicates", "udp_sent",
            "udp_lost", "udp_duplicates", "blackout_ms")
    return " ".join(f"{k}={report.get(k)}" for k in keys)


def virtio_features(guest) -> tuple:
    """The virtio-net device's features as QEMU has them (offered, and
    acknowledged by the driver; x-query-virtio-status) and as the guest
    driver has them (sysfs).  The machine type is the same on both
    sides, so a newer QEMU offers the very same features."""
    path = guest.qmp("x-query-virtio")[0]["path"]
    status = guest.qmp("x-query-virtio-status", path=path)
    return (status["host-features"], status["guest-features"],
            guest.cmd("cat /sys/class/net/eth0/device/features"))


class UpgradeBase(TapLocalMigrationBase):
    """The guest boots on the old QEMU; destinations run the new one."""

    MACHINE = MACHINE
    BINARY = OLD_QEMU
    DST_BINARY = NEW_QEMU

    @classmethod
    def setUpClass(cls):
        require_builds()
        super().setUpClass()

    def binary_of(self, guest) -> str:
        return "10.0.13" if guest.binary == OLD_QEMU else "10.2.2"


class UpgradeLocal(UpgradeBase):
    """queues=2, the TAP handed over from 10.0.13 to 10.2.2."""

    QUEUES = 2
    SMP = 2
    TAP = "uptap2"

    def check_hop(self, expect_from, expect_to):
        self.assertEqual(self.binary_of(self.guest), expect_from)
        before = tap_state(self.ns, self.tap)
        features = virtio_features(self.guest)
        report, info = self.local_migrate()
        self.assertEqual(virtio_features(self.guest), features)
        self.assertEqual(self.binary_of(self.guest), expect_to)
        print(f"# {expect_from} -> {expect_to}: downtime="
              f"{info.get('downtime')}ms total={info.get('total-time')}ms "
              f"{summary(report)}")
        # The TAP changed owner without losing a packet
        self.assertEqual(report["icmp_lost"], 0, report)
        self.assertEqual(report["udp_lost"], 0, report)
        self.assertEqual(report["icmp_duplicates"], 0, report)
        self.assertEqual(report["udp_duplicates"], 0, report)
        after = self.assert_tap_plugged()
        self.assertEqual(after, before)
        # The destination holds the queues it received, no TAP of its own
        self.assertEqual(tap_queue_fds(self.guest), self.QUEUES)
        self.assert_network(self.guest)
        return fd_count(self.guest)

    def test_1_upgrade_local(self):
        """10.0.13 -> 10.2.2 with the TAP fds handed over: 0 lost"""
        self.check_hop("10.0.13", "10.2.2")

    def test_2_on_the_new_package(self):
        """then 10.2.2 -> 10.2.2, the guest's later local migrations"""
        if self.binary_of(self.guest) != "10.2.2":
            self.skipTest("the upgrade hop did not complete")
        counts = [self.check_hop("10.2.2", "10.2.2") for _ in range(HOPS)]
        print(f"# fd counts of the destinations: {counts}")
        self.assertLessEqual(max(counts), counts[0], counts)


class UpgradeOrdinary(UpgradeBase):
    """queues=1, no option: an ordinary migration, a TAP per QEMU."""

    QUEUES = 1
    SMP = 1
    TAP = "uptap1"
    LOCAL_OPTION = False
    taps = 0

    def ordinary_migrate(self, binary):
        """Migrate to a new QEMU of `binary` on a TAP of its own in br0;
        the old TAP goes with the old QEMU."""
        src = self.guest
        features = virtio_features(src)
        self.__class__.taps += 1
        new_tap = f"uptap1n{self.taps}"
        self.start_udp_receiver()
        gen = Traffic(self.ns)
        time.sleep(0.5)
        try:
            dst = self.guest.clone(netdevs=[self.netdev_opts() +
                                            f",ifname={new_tap}"])
            dst.binary = binary
            self.extra.append(dst)
            dst.launch()
            self.ns.set_up(new_tap, master="br0")
            s = self.complete_migration(src, dst)
            dst.qmp("cont")
            self.__class__.guest = self.guest = dst
            src.shutdown()
            self.__class__.tap = self.tap = new_tap
            time.sleep(0.5)
            report = gen.stop()
        finally:
            gen.kill()
        print(f"# {self.binary_of(src)} -> {self.binary_of(dst)}: downtime="
              f"{s.get('downtime')}ms total={s.get('total-time')}ms "
              f"lost (new TAP, reported only): icmp {report['icmp_lost']} "
              f"udp {report['udp_lost']}")
        self.assertEqual(report["icmp_duplicates"], 0, report)
        self.assertEqual(report["udp_duplicates"], 0, report)
        self.assertEqual(virtio_features(dst), features)
        self.assert_tap_plugged()
        self.assert_network(dst)

    def test_1_upgrade_ordinary(self):
        """10.0.13 -> 10.2.2, ordinary migration on a new TAP"""
        self.assertEqual(self.binary_of(self.guest), "10.0.13")
        self.ordinary_migrate(NEW_QEMU)

    def test_2_roll_back(self):
        """then 10.2.2 -> 10.0.13 (pc-q35-10.0 on both)"""
        if self.binary_of(self.guest) != "10.2.2":
            self.skipTest("the upgrade hop did not complete")
        self.ordinary_migrate(OLD_QEMU)
        self.assertEqual(self.binary_of(self.guest), "10.0.13")


def _main():
    from serieslib import main  # pylint: disable=import-outside-toplevel
    main()


if __name__ == "__main__":
    _main()
