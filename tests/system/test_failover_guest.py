#!/usr/bin/python3
"""virtio-net failover with a real Linux guest (net_failover).

    python3 tests/system/test_failover_guest.py        (as root, prints TAP)

Linux's net_failover refuses a virtio primary, so the primary is an e1000e
on a pcie-root-port with the standby's MAC (romfile='' so that no option
ROM RAMBlock has to be migrated).  Everything runs in a private network
namespace (198.18.0.0/24); every QEMU generation gets two new TAPs on br0:

    ns: br0 198.18.0.1/24 --+-- tapNs -- virtio-net-pci standby0 (failover=on)
                            +-- tapNp -- e1000e primary0

Three configurations, one test class each.  Each class boots one guest
once and carries it along by the migrations; its test methods run in
order and each needs the previous ones:

  FailoverGuest           primary0 has failover_pair_id=standby0, and
                          the standby and root1 an x-failover-group-id;
                          ACPI PCI hotplug (the q35 default)
  FailoverGuestGroupId    primary0 has no failover_pair_id: it is paired
                          only by the x-failover-group-id of root1, its
                          root port, and of standby0 (01-03, 05-07)
  FailoverGuestNativePcie as FailoverGuest, but with native PCIe hotplug
                          (ICH9-LPC.acpi-pci-hotplug-with-bridge-support
                          =off): the guest's pciehp unplugs the primary
                          (attention button, slot power off ~5 s later)
                          (01, 03, 05-08, each with a kernel log check)

  01  the guest has the failover master with the standby and the primary
      as slaves; the primary came after the STANDBY negotiation
      (FAILOVER_PRIMARY_STATE plugged/negotiated, dmesg order); with the
      group id only, QEMU gave primary0 failover_pair_id=standby0
  02  the failover group id capabilities are readable from inside the
      guest (config space via sysfs) on the standby and on the root port
  03  precopy migration: the source unplugs the primary, it returns on
      the destination
  04  postcopy migration, same checks (skips without userfaultfd)
  05  migrate_cancel during wait-unplug: the primary returns on the source
  06  migrate_cancel during active: the primary returns on the source
  07  system_reset with x-failover-rehide-on-reset=on: the primary is
      hidden until the rebooted guest negotiates STANDBY again (on native
      PCIe it is "parked": the slot keeps presence and link up while
      config reads return ~0)
  08  (native PCIe only) x-failover-unplug-timeout=2000 expires while
      pciehp waits the 5 s of the attention button: the migration fails
      and the primary is plugged back once the guest finished the unplug

With native PCIe hotplug every step also checks the kernel log lines it
added (after 07: the whole log of the new boot) for what pciehp prints
when the slot does not behave like an orderly attention-button unplug
and replug: "Card not present" or "Link Down" (a surprise removal of a
slot it thinks is on), "Already enabled" (a slot that is on although
it found no device), failed link checks, "No device found", timeouts,
devices not responding, ~0 config reads, invalid states, and any PCI,
pciehp or e1000e message of level warning or worse (KLOG_BAD below).
The attention button, "Powering on/off due to button press", "Button
cancel", "Action canceled due to button press", "Card present" and
"Link Up" (a slot that was off) are clean; any other pciehp "Slot(...)"
message is not (KLOG_CLEAN_PCIEHP).  The pciehp lines are printed.

When a step loses the primary for good (QEMU deleted it, state absent),
the next step adds it again with device_add and says so, so that each
step still tests its own case.

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

PRIMARY = (f"e1000e,netdev=n1,id=primary0,bus=root1,mac={MAC},"
           "rombar=0,romfile=")


def devices(pair_id: bool = True):
    """The -device list: standby0 on root0, primary0 on root1; root1 and
    standby0 carry GROUP_ID; pair_id adds failover_pair_id=standby0."""
    return [
        "pcie-root-port,id=root0,bus=pcie.0,addr=0x3,chassis=1",
        f"pcie-root-port,id=root1,bus=pcie.0,addr=0x4,chassis=2,"
        f"x-failover-group-id={GROUP_ID}",
        f"virtio-net-pci,netdev=n0,id=standby0,bus=root0,mac={MAC},"
        f"failover=on,x-failover-group-id={GROUP_ID},"
        "x-failover-rehide-on-reset=on",
        PRIMARY + (",failover_pair_id=standby0" if pair_id else ""),
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
    """One guest, carried through migrations, in test method order.

    Subclasses change the configuration through the class attributes
    below; they get their own namespace, guest and report."""

    DEVICES = devices(pair_id=True)
    EXTRA_ARGS = ["-action", "reboot=reset"]
    APPEND = ""
    TAG = "failover"

    ns = None
    guest = None          # the QEMU currently running the guest
    gen = 0               # TAP generation
    report = []
    qmp_log = []          # QMP events state_events() pulled, for dump()

    @classmethod
    def setUpClass(cls):
        require_root()
        require_tun()
        require_binary()
        require_binary("busybox")
        require_qemu_python()
        require_guest()
        cls.report = []
        cls.qmp_log = []
        cls.gen = 0
        cls.ns = Netns(cls.TAG)
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
        guest = Guest(cls.ns, name=cls.TAG, ip=f"{GUEST_IP}/24", mac=MAC,
                      netdevs=netdevs(gen), devices=cls.DEVICES,
                      extra_args=cls.EXTRA_ARGS, append=cls.APPEND)
        cls.guests.append(guest)
        return guest

    @classmethod
    def _new_destination(cls) -> Guest:
        gen = cls._add_taps()
        dst = start_destination(cls.guest, netdevs=netdevs(gen))
        cls.guests.append(dst)
        return dst

    def setUp(self):
        # A step that lost the primary for good (QEMU deleted it) must not
        # make the following steps fail for the same reason: add it again.
        if self.guest is None or self._testMethodName.startswith("test_01"):
            return
        info = self.query()
        if info["primary-state"] != "absent":
            return
        self.note(f"{self._testMethodName}: primary0 absent "
                  f"({info}), adding it again with device_add")
        self.state_events()
        driver, *props = self.DEVICES[-1].split(",")
        args = {"driver": driver}
        for prop in props:
            key, _, value = prop.partition("=")
            args[key] = int(value) if value.isdigit() else value
        # qmp() would turn failover_pair_id into failover-pair-id
        reply = self.guest.qmp_raw("device_add", args)
        self.assertNotIn("error", reply, f"device_add {args}")
        self.wait_slaves(True)

    # -- helpers -----------------------------------------------------------
    def dump(self, guest=None):
        guest = guest or self.guest
        if guest.console is not None:
            print("--- console (tail) ---")
            print(guest.console.tail(2000))
        try:
            print(f"--- x-query-failover: {guest.qmp('x-query-failover')}")
            self.state_events(guest)
            print("--- QMP events (last 12):")
            for event in [e for e in self.qmp_log if e["event"] in (
                    "FAILOVER_PRIMARY_STATE", "FAILOVER_NEGOTIATED",
                    "DEVICE_DELETED", "UNPLUG_PRIMARY", "RESET")][-12:]:
                print(f"  {event['event']} {event.get('data', {})}")
        except Exception as exc:  # pylint: disable=broad-except
            print(f"--- QMP: {exc}")

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
        events = guest.vm.get_qmp_events(wait=False)
        self.qmp_log.extend(events)
        return [(e["data"]["state"], e["data"]["reason"])
                for e in events if e["event"] == "FAILOVER_PRIMARY_STATE"]

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
        self.assertEqual(info.get("primary-id"), "primary0")
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


class FailoverGuestGroupId(FailoverGuest):
    """Pure group-id pairing: primary0 has no failover_pair_id, root1 and
    standby0 share x-failover-group-id (issue 13 item 8).  Postcopy is
    left to FailoverGuest: the pairing changes nothing in it."""

    DEVICES = devices(pair_id=False)
    TAG = "fo-group"

    test_04_postcopy = None

    def test_01_failover_master(self):
        super().test_01_failover_master()
        # QEMU found the primary by the group id and paired it
        self.assertEqual(self.guest.qmp(
            "qom-get", path="/machine/peripheral/primary0",
            property="failover_pair_id"), "standby0")


# pciehp's messages for the slot of the primary (and PCI/e1000e messages)
# that mean the slot did not behave like an orderly attention-button
# unplug or replug; see the module docstring.
KLOG_RELEVANT = re.compile(r"pciehp|pcieport|\bpci 0000:|pci_bus|e1000e|"
                           r"\bAER\b|\bDPC\b|hotplug", re.I)
KLOG_BAD = re.compile(
    r"Card not present|Link Down|Link Training|link (status|training)|"
    r"No device found|not responding|[Ff]ailed|[Tt]imeout|timed out|"
    r"Cannot |can't|Power fault|Ignoring invalid state|Already enabled|"
    r"Already disabled|No adapter|(?<![0-9a-f])(0x)?ffffffff(?![0-9a-f])|"
    r"config (read|space)|"
    r"not present|[Ee]rror|device .* gone|[Uu]nexpected|Interlock "
    r"(open|close)d")
# the only pciehp slot messages of an orderly cycle; any other is bad too
KLOG_CLEAN_PCIEHP = re.compile(
    r"Attention button pressed|Powering (on|off) due to button press|"
    r"Button cancel|Action canceled due to button press|Card present|"
    r"Link Up")


class FailoverGuestNativePcie(FailoverGuest):
    """Native PCIe hotplug: the Linux guest's pciehp unplugs and replugs the
    primary; a reset parks it with presence and link up (issue 13 item
    7).  Every step checks the kernel log lines it added."""

    EXTRA_ARGS = FailoverGuest.EXTRA_ARGS + [
        "-global", "ICH9-LPC.acpi-pci-hotplug-with-bridge-support=off"]
    # pciehp's debug messages too (pending interrupts, link status...)
    APPEND = "pciehp.dyndbg=+p"
    TAG = "fo-native"

    klog_seen = 0          # lines of `dmesg` already checked

    test_02_group_id_capability = None
    test_04_postcopy = None

    @classmethod
    def setUpClass(cls):
        cls.klog_seen = 0
        super().setUpClass()

    def klog_new(self, label, advance=True, echo=True):
        """PCI related kernel log lines (with their <level>) added since the
        last call; advance=False leaves them for the next call.  echo prints
        the pciehp ones and those KLOG_BAD matches."""
        out = self.guest.cmd(
            f"dmesg -r >/tmp/klog; wc -l </tmp/klog; "
            f"tail -n +{self.klog_seen + 1} /tmp/klog", timeout=120)
        count, _, text = out.partition("\n")
        if advance:
            type(self).klog_seen = int(count.strip())
        lines = [line for line in text.splitlines()
                 if KLOG_RELEVANT.search(line)]
        for line in lines:
            if echo and ("pciehp" in line or KLOG_BAD.search(line)):
                print(f"# klog {label}: {line}")
        return lines

    def klog_check(self, label, step):
        """Run step(), then check the kernel log lines added meanwhile (the
        pciehp messages are noted also when step() fails)."""
        lines = None
        try:
            step()
        finally:
            try:
                lines = self.klog_new(label)
            except Exception as exc:  # pylint: disable=broad-except
                print(f"# klog {label}: cannot read dmesg: {exc}")
            if lines is not None:
                self.note(f"{label}: pciehp: " + (" | ".join(
                    re.sub(r"^<\d>\[[ \d.]+\] pcieport [\d:.]+: pciehp: ",
                           "", line)
                    for line in lines if "pciehp" in line and "Slot(" in line)
                    or "(nothing)"))
        if lines is None:
            self.fail(f"{label}: cannot read the guest's kernel log")
        bad = [line for line in lines
               if KLOG_BAD.search(line) or re.match(r"<[0-4]>", line) or
               ("pciehp: Slot(" in line and
                not KLOG_CLEAN_PCIEHP.search(line))]
        self.assertFalse(bad, f"{label}: the guest kernel complained:\n" +
                         "\n".join(bad))

    def dump(self, guest=None):
        super().dump(guest)
        try:
            print("--- pciehp kernel log (new) ---")
            for line in self.klog_new("dump", advance=False, echo=False):
                if "pciehp" in line and "Slot(" in line:
                    print(line)
        except Exception:  # pylint: disable=broad-except
            pass

    def test_01_failover_master(self):
        self.klog_check("boot", super().test_01_failover_master)

    def test_03_precopy(self):
        self.klog_check("precopy", super().test_03_precopy)

    def test_05_cancel_wait_unplug(self):
        self.klog_check("cancel-wait-unplug",
                        super().test_05_cancel_wait_unplug)

    def test_06_cancel_active(self):
        self.klog_check("cancel-active", super().test_06_cancel_active)

    def test_07_reset_rehides(self):
        def step():
            # the log starts over with the reboot
            type(self).klog_seen = 0
            super(FailoverGuestNativePcie, self).test_07_reset_rehides()
        self.klog_check("reset", step)

    def test_08_unplug_timeout(self):
        """x-failover-unplug-timeout expires while pciehp still waits the
        5 s of the attention button: the migration fails; QEMU waits for
        the guest to finish the unplug, then plugs the primary back."""
        def step():
            dst = self._new_destination()
            uri = f"unix:{os.path.join(self.ns.tmpdir, 'timeout.sock')}"
            ping = Pinger(self.ns, GUEST_IP)
            self.state_events()
            seen = []
            try:
                self.guest.qmp("migrate-set-parameters",
                               x_failover_unplug_timeout=2000)
                info, seen = self.migrate(dst, uri)
                self.guest.qmp("migrate-set-parameters",
                               x_failover_unplug_timeout=0)
                self.assertEqual(info["status"], "failed", seen)
                self.assertIn("did not complete the unplug",
                              info.get("error-desc", ""))
                t0 = time.monotonic()
                events = []
                while ("plugged", "migration-failed") not in events:
                    if time.monotonic() > t0 + 60:
                        self.dump()
                        self.fail(f"primary not plugged back: {events}")
                    time.sleep(0.2)
                    events += self.state_events()
                t_back = time.monotonic() - t0
                self.wait_slaves(True)
                time.sleep(2)
                self.wait_slaves(True, timeout=10)
                self.assertEqual(self.query()["primary-state"], "plugged")
            finally:
                sent, received = ping.stop()
                self.guests.remove(dst)
                dst.shutdown()
            self.note(f"unplug-timeout: statuses={'>'.join(seen)} "
                      f"plugged-back={t_back:.1f}s after the failure, "
                      f"events={events} "
                      f"ping sent={sent} lost={sent - received}")
        self.klog_check("unplug-timeout", step)


if __name__ == "__main__":
    main()
