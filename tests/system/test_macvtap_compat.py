#!/usr/bin/python3
"""virtio-net macvtap mrg_rxbuf compat on real macvtap and tun devices.

    python3 tests/system/test_macvtap_compat.py        (as root, prints TAP)

Everything runs in a private network namespace (198.18.0.0/24):

    ns: v1 198.18.0.1/24 ==veth== v0 --+-- mvt0 (macvtap, bridge mode)
                                        |     -> QEMU, fd= or ifname=
        tap0 (tun/tap, no link)        -> QEMU, ifname= / fd=

Detection (QEMU under -accel qtest, no guest): x-tap-backend-kind of the
virtio-net device is "macvtap" for the macvtap passed as fd=, as fds=
(two queues) and by ifname=, and "tun" for a tun TAP by ifname= and fd=.
With the policy on (x-macvtap-mrg-rxbuf-compat=on) mrg_rxbuf is cleared
on the macvtap only, and without it nothing changes, also on pc-q35-5.2;
x-macvtap-compat-vhost-only=on keeps it without vhost-net and clears it
with vhost=on (skipped without /dev/vhost-net).  ipvtap is not covered.

Guests (TCG, one at a time): the same macvtap with the policy (machine
type pc-q35-5.2, the policy set on the device, macvtap passed as fd=,
detected automatically) and without it (q35, ifname=).  The guest's
/sys/bus/virtio/devices/*/features has bit 15 (VIRTIO_NET_F_MRG_RXBUF)
clear, resp. set, and pings flow both ways, also with large packets.

Skips when not root, without /dev/net/tun, without macvtap support or
when the QEMU binary, its python library or the guest is missing.
"""

import os
import sys
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

# pylint: disable=wrong-import-position
from serieslib import (main, Guest, Netns, NetnsError, paths,  # noqa: E402
                       require_binary, require_guest, require_qemu_python,
                       require_root, require_tun, require_vhost_net)

MAC = "52:54:00:4d:56:01"
HOST_IP = "198.18.0.1"
GUEST_IP = "198.18.0.2"
NIC_PATH = "/machine/peripheral/nic0"
OLD_MACHINE = "pc-q35-5.2"       # the oldest machine types still there
POLICY = ",x-macvtap-mrg-rxbuf-compat=on"
FIXED_FD = 100                   # where the tun helper puts its fd

# Opens /dev/net/tun inside the namespace, attaches it to argv[1] and
# execs the rest of argv with the fd at FIXED_FD.
TUN_HELPER = f"""
import fcntl, os, struct, sys
fd = os.open("/dev/net/tun", os.O_RDWR)
ifr = struct.pack("16sH", sys.argv[1].encode(), 0x0002 | 0x1000 | 0x4000)
fcntl.ioctl(fd, 0x400454ca, ifr)
os.dup2(fd, {FIXED_FD})
os.execvp(sys.argv[2], sys.argv[2:])
"""


def features_bit(features: str, bit: int) -> str:
    """Character `bit` of a virtio sysfs features string ('0' or '1')."""
    return features.strip()[bit]


class MacvtapCompat(unittest.TestCase):
    """Detection and guest-visible effect of the macvtap compat."""

    def setUp(self):
        require_root()
        require_tun()
        require_binary()
        require_binary("busybox")
        require_qemu_python()
        self.ns = Netns("macvtap")
        self.addCleanup(self.ns.cleanup)
        self.fds = []
        self.addCleanup(self._close_fds)
        self.guests = []
        ns = self.ns
        ns.add_veth("v0", "v1")
        ns.add_address("v1", f"{HOST_IP}/24")
        try:
            # The guest's MAC must be the macvtap's: it only receives
            # unicast frames for its own address.
            self.tapdev = ns.add_macvtap("mvt0", "v0", mode="bridge",
                                         mac=MAC)
        except (NetnsError, OSError) as exc:
            raise unittest.SkipTest(f"no macvtap support: {exc}") from exc
        ns.add_tap("tap0")

    def _close_fds(self):
        for fd in self.fds:
            os.close(fd)

    def open_macvtap(self) -> int:
        fd = os.open(self.tapdev, os.O_RDWR)
        os.set_inheritable(fd, True)
        self.fds.append(fd)
        return fd

    # -- QEMU without a guest --------------------------------------------
    def probe(self, netdev: str, machine: str = OLD_MACHINE,
              nic_opts: str = POLICY, wrap=()):
        """Start QEMU (qtest accel) with netdev; return the NIC's detected
        kind, mrg_rxbuf and whether the host features of
        x-query-virtio-status list MRG_RXBUF."""
        paths.ensure_qemu_python()
        # pylint: disable=import-outside-toplevel
        from qemu.machine import QEMUMachine

        vm = QEMUMachine(str(paths.qemu_binary()),
                         args=["-accel", "qtest", "-nodefaults",
                               "-netdev", netdev,
                               "-device", "virtio-net-pci,id=nic0,netdev=hn0"
                               + nic_opts],
                         wrapper=self.ns.wrapper + list(wrap),
                         base_temp_dir=self.ns.tmpdir,
                         log_dir=self.ns.tmpdir)
        vm.set_machine(machine)
        self.addCleanup(vm.shutdown)
        vm.launch()
        kind = vm.cmd("qom-get", path=NIC_PATH,
                      property="x-tap-backend-kind")
        mrg = vm.cmd("qom-get", path=NIC_PATH, property="mrg_rxbuf")
        status = vm.cmd("x-query-virtio-status",
                        path=NIC_PATH + "/virtio-backend")
        listed = any(f.startswith("VIRTIO_NET_F_MRG_RXBUF")
                     for f in status["host-features"].get("dev-features",
                                                          []))
        vm.shutdown()
        return kind, mrg, listed

    def test_detect_macvtap_fd(self):
        fd = self.open_macvtap()
        self.assertEqual(self.probe(f"tap,id=hn0,fd={fd}"),
                         ("macvtap", False, False))

    def test_detect_macvtap_fds(self):
        fds = [self.open_macvtap(), self.open_macvtap()]
        self.assertEqual(
            self.probe(f"tap,id=hn0,fds={fds[0]}:{fds[1]}",
                       nic_opts=",mq=on,vectors=6" + POLICY),
            ("macvtap", False, False))

    def test_detect_macvtap_ifname(self):
        self.assertEqual(
            self.probe("tap,id=hn0,ifname=mvt0,script=no,downscript=no"),
            ("macvtap", False, False))

    def test_detect_macvtap_new_machine(self):
        # Current machine type: detected, but the policy is off
        self.assertEqual(
            self.probe("tap,id=hn0,ifname=mvt0,script=no,downscript=no",
                       machine="q35", nic_opts=""),
            ("macvtap", True, True))

    def test_detect_macvtap_old_machine_no_policy(self):
        # No machine type turns the policy on: a 5.2 guest keeps its ABI
        fd = self.open_macvtap()
        self.assertEqual(self.probe(f"tap,id=hn0,fd={fd}", nic_opts=""),
                         ("macvtap", True, True))
        self.assertEqual(
            self.probe("tap,id=hn0,ifname=mvt0,script=no,downscript=no",
                       nic_opts=",__com_redhat_macvtap_compat=on"),
            ("macvtap", True, True))

    def test_detect_macvtap_explicit_off(self):
        self.assertEqual(
            self.probe("tap,id=hn0,ifname=mvt0,script=no,downscript=no",
                       nic_opts=",x-macvtap=off" + POLICY),
            ("macvtap", True, True))

    def test_vhost_only_without_vhost(self):
        # RHEL's rule: without vhost-net the policy does not apply
        self.assertEqual(
            self.probe("tap,id=hn0,ifname=mvt0,script=no,downscript=no",
                       nic_opts=",x-macvtap-compat-vhost-only=on" + POLICY),
            ("macvtap", True, True))

    def test_vhost_only_with_vhost(self):
        require_vhost_net()
        self.assertEqual(
            self.probe("tap,id=hn0,ifname=mvt0,script=no,downscript=no,"
                       "vhost=on",
                       nic_opts=",x-macvtap-compat-vhost-only=on" + POLICY),
            ("macvtap", False, False))

    def test_detect_tun_ifname(self):
        self.assertEqual(
            self.probe("tap,id=hn0,ifname=tap0,script=no,downscript=no"),
            ("tun", True, True))

    def test_detect_tun_fd(self):
        self.assertEqual(
            self.probe(f"tap,id=hn0,fd={FIXED_FD}",
                       wrap=[sys.executable, "-c", TUN_HELPER, "tap0"]),
            ("tun", True, True))

    # -- guests ----------------------------------------------------------
    def boot_guest(self, machine: str, netdev: str,
                   nic_opts: str = "") -> Guest:
        require_guest()
        guest = Guest(self.ns, name=f"mvt-{machine}", machine=machine,
                      ip=f"{GUEST_IP}/24", mac=MAC, netdevs=[netdev],
                      devices=[f"virtio-net-pci,id=nic0,netdev=hn0,"
                               f"mac={MAC}{nic_opts}"])
        self.guests.append(guest)
        self.addCleanup(guest.shutdown)
        try:
            guest.boot()
        except BaseException:
            self.dump(guest)
            raise
        return guest

    def dump(self, guest: Guest):
        if guest.console is not None:
            print(f"--- console of {guest.name} (tail) ---")
            print(guest.console.tail(1500))

    def check_guest(self, guest: Guest, mrg_expected: bool):
        try:
            features = guest.cmd("cat /sys/bus/virtio/devices/*/features")
            self.assertEqual(features_bit(features, 15),
                             "1" if mrg_expected else "0", features)
            self.assertEqual(guest.qmp("qom-get", path=NIC_PATH,
                                       property="x-tap-backend-kind"),
                             "macvtap")
            self.assertEqual(guest.qmp("qom-get", path=NIC_PATH,
                                       property="mrg_rxbuf"), mrg_expected)
            self.ns.ping(GUEST_IP, timeout=30)
            guest.cmd(f"ping -c 3 -W 2 {HOST_IP}", timeout=30)
            # Large packets: several fragments per datagram into the guest
            self.ns.run("busybox", "ping", "-c", "3", "-s", "8000",
                        GUEST_IP, timeout=30)
            guest.cmd(f"ping -c 3 -s 8000 -W 2 {HOST_IP}", timeout=30)
            print(f"{guest.name}: features={features.strip()[:20]}... "
                  f"mrg_rxbuf={mrg_expected}")
        except BaseException:
            self.dump(guest)
            raise

    def test_guest_policy_on_fd(self):
        fd = self.open_macvtap()
        guest = self.boot_guest(OLD_MACHINE, f"tap,id=hn0,fd={fd}", POLICY)
        self.check_guest(guest, mrg_expected=False)

    def test_guest_policy_off_ifname(self):
        guest = self.boot_guest(
            "q35", "tap,id=hn0,ifname=mvt0,script=no,downscript=no")
        self.check_guest(guest, mrg_expected=True)


if __name__ == "__main__":
    main()
