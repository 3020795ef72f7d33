#!/usr/bin/python3
"""Local migration of a TAP backend: the open TAP queue fds travel to the
new QEMU in the migration stream (migration parameter 'local', netdev
option x-local-migration-supported=on), so the guest keeps the very same
TAP device.

    python3 tests/system/test_tap_local_migration.py   (as root, prints TAP)

Everything runs in a private network namespace (198.18.0.0/24):

    ns: br0 198.18.0.1/24 --- TAP --- QEMU A  ==local migration==> QEMU B
                                                                ==> QEMU C ...

The guest boots once per class (TCG) and then migrates ping-pong from one
new QEMU process to the next.  Each migration case runs ITERATIONS (5)
times.  During the migrations the namespace sends a ping flood (1000/s,
raw ICMP) and a sequence-numbered UDP stream (200/s) to a closed port of
the guest, whose kernel answers every datagram with an ICMP port
unreachable quoting it (the guest's ICMP rate limits are switched off),
so the host sees exactly which sequence numbers made the round trip.
With fd passing, packets that arrive during the switchover wait in the
tun queue and are delivered by the destination, and a packet the source
had already read while the guest's receive ring was full (parked in
QEMU, not in the kernel) travels in the migration stream: no loss and
no duplicate is allowed.

Classes:
  LocalMigrationQ1  queues=1 on a TAP that QEMU creates (non-persistent):
                    local ping-pong with multifd, 'local' off on the
                    destination (the TAP is opened at migrate-incoming,
                    here: busy, error naming the netdev).  The other
                    queues=1 cases (ping-pong, cancel, destination killed,
                    failed load, 'local' on one side, the new-TAP path)
                    and the queues=4 and vhost=on ones are in the in-tree
                    functional test.

Checks besides traffic: source and destination runstates, the TAP stays
in the bridge with the guest's MAC learnt on it, the TAP survives the
source quitting, its kernel state (offloads, vnet_hdr, queue attach
state) is unchanged by failed migrations, and the fd count of the QEMU
processes (/proc/PID/fd) does not grow.

Skips (TAP "ok ... # SKIP reason") when not root, without /dev/net/tun,
or when the QEMU binary, its python library or the guest are missing.
The traffic generator is this file run with --traffic inside the
namespace (tests/bench/bench_tap_local_migration.py uses it too).
"""

import argparse
import array
import fcntl
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

ITERATIONS = int(os.environ.get("TAP_LOCAL_MIGRATION_ITERATIONS", "5"))
MAC = "52:54:00:12:34:56"
BRIDGE_MAC = "02:00:00:00:00:01"
HOST_IP = "198.18.0.1/24"
GUEST_IP = "198.18.0.2"
UDP_PORT = 5000
ICMP_RATE = 1000
UDP_RATE = 200
SYSTEM_PYTHON = "/usr/bin/python3"


# ---------------------------------------------------------------------------
# Traffic generator (runs inside the namespace, as root)

def _icmp_checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    total = (total >> 16) + (total & 0xffff)
    total += total >> 16
    return ~total & 0xffff


def traffic_main(argv) -> None:
    """Send ICMP echo requests and UDP datagrams to --dst at fixed rates
    until SIGTERM, wait --linger seconds for late replies, and write a
    JSON report to --out."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--dst", required=True)
    parser.add_argument("--icmp-rate", type=float, default=ICMP_RATE)
    parser.add_argument("--udp-rate", type=float, default=UDP_RATE)
    parser.add_argument("--udp-port", type=int, default=UDP_PORT)
    parser.add_argument("--linger", type=float, default=1.5)
    parser.add_argument("--out", required=True)
    args = parser.parse_args(argv)

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    icmp = socket.socket(socket.AF_INET, socket.SOCK_RAW,
                         socket.IPPROTO_ICMP)
    icmp.settimeout(0.2)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    ident = os.getpid() & 0xffff
    received = {}
    udp_received = set()
    dups = [0, 0]
    done = threading.Event()

    def udp_quoted(data, ihl):
        """Sequence number of our datagram quoted by a port unreachable"""
        inner = data[ihl + 8:]
        if len(inner) < 20 or inner[9] != socket.IPPROTO_UDP:
            return None
        iihl = (inner[0] & 0xf) * 4
        dport = struct.unpack("!H", inner[iihl + 2:iihl + 4])[0]
        if dport != args.udp_port:
            return None
        payload = inner[iihl + 8:].split(b"\n", 1)[0]
        return int(payload) if payload.isdigit() else None

    def receiver():
        while not done.is_set():
            try:
                data = icmp.recv(2048)
            except socket.timeout:
                continue
            except OSError:
                break
            ihl = (data[0] & 0xf) * 4
            if len(data) >= ihl + 8 and data[ihl] == 3 and \
                    data[ihl + 1] == 3:
                seq = udp_quoted(data, ihl)
                if seq is not None:
                    if seq in udp_received:
                        dups[1] += 1
                    udp_received.add(seq)
                continue
            if len(data) < ihl + 16 or data[ihl] != 0:
                continue
            rid = struct.unpack("!H", data[ihl + 4:ihl + 6])[0]
            if rid != ident:
                continue
            seq = struct.unpack("!Q", data[ihl + 8:ihl + 16])[0]
            if seq in received:
                dups[0] += 1
            else:
                received[seq] = time.monotonic()

    thread = threading.Thread(target=receiver, daemon=True)
    thread.start()

    sent_icmp = sent_udp = send_errors = 0
    start = time.monotonic()
    while not stop.is_set():
        now = time.monotonic() - start
        while sent_icmp < now * args.icmp_rate:
            payload = struct.pack("!Q", sent_icmp) + b"lm" * 12
            header = struct.pack("!BBHHH", 8, 0, 0, ident, sent_icmp & 0xffff)
            csum = _icmp_checksum(header + payload)
            header = struct.pack("!BBHHH", 8, 0, csum, ident,
                                 sent_icmp & 0xffff)
            try:
                icmp.sendto(header + payload, (args.dst, 0))
            except OSError:
                send_errors += 1
            sent_icmp += 1
        while sent_udp < now * args.udp_rate:
            try:
                udp.sendto(f"{sent_udp}\n".encode(),
                           (args.dst, args.udp_port))
            except OSError:
                send_errors += 1
            sent_udp += 1
        time.sleep(0.0005)
    end = time.monotonic()
    time.sleep(args.linger)
    done.set()
    thread.join(2)

    # Longest time without a reply while sending (also at either end)
    arrivals = [start] + sorted(received.values()) + [end]
    gaps = [(b - a, a, b) for a, b in zip(arrivals, arrivals[1:])]
    blackout, gap_from, gap_to = max(gaps)
    # The same gap in wall-clock time, to line it up with QMP event
    # timestamps (bench_tap_local_migration.py breaks the blackout down)
    to_wall = time.time() - time.monotonic()
    # Where the lost echo requests were sent (ms after start), as ranges
    lost_ranges = []
    for seq in range(sent_icmp):
        if seq in received:
            continue
        if lost_ranges and lost_ranges[-1][1] == seq - 1:
            lost_ranges[-1][1] = seq
        else:
            lost_ranges.append([seq, seq])
    report = {
        "duration": end - start,
        "icmp_lost_ms": [f"{a * 1000 / args.icmp_rate:.0f}+"
                         f"{(b - a + 1) * 1000 / args.icmp_rate:.0f}"
                         for a, b in lost_ranges[:5]],
        "icmp_sent": sent_icmp,
        "icmp_received": len(received),
        "icmp_lost": sent_icmp - len(received),
        "icmp_duplicates": dups[0],
        "blackout_ms": round(blackout * 1000, 1),
        "blackout_wall": [gap_from + to_wall, gap_to + to_wall],
        # Every gap over 3 ms (at most 50, longest first), wall clock
        "gaps_wall": [[a + to_wall, b + to_wall]
                      for d, a, b in sorted(gaps, reverse=True)[:50]
                      if d > 0.003],
        "udp_sent": sent_udp,
        "udp_received": len(udp_received),
        "udp_lost": sent_udp - len(udp_received),
        "udp_duplicates": dups[1],
        "send_errors": send_errors,
    }
    with open(args.out, "w", encoding="ascii") as f:
        json.dump(report, f)


class Traffic:
    """The generator above, running in the namespace."""

    def __init__(self, ns, dst: str = GUEST_IP, icmp_rate=ICMP_RATE,
                 udp_rate=UDP_RATE):
        self.out = os.path.join(ns.tmpdir, f"traffic-{time.time_ns()}.json")
        self.proc = ns.popen(SYSTEM_PYTHON, os.path.abspath(__file__),
                             "--traffic", "--dst", dst,
                             "--icmp-rate", str(icmp_rate),
                             "--udp-rate", str(udp_rate),
                             "--out", self.out,
                             stdin=subprocess.DEVNULL)

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        with open(self.out, encoding="ascii") as f:
            return json.load(f)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


# ---------------------------------------------------------------------------
# Kernel state of a TAP, read from inside the namespace

ETHTOOL_CMDS = {"tx-csum": 0x16, "sg": 0x18, "tso": 0x1e, "ufo": 0x21,
                "gso": 0x23}


def offloads_main(argv) -> None:
    """Print the ethtool offload flags of a link as JSON."""
    name = argv[0]
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    result = {}
    for key, cmd in ETHTOOL_CMDS.items():
        buf = array.array("B", struct.pack("II", cmd, 0))
        ifr = struct.pack("16sP", name.encode(), buf.buffer_info()[0])
        try:
            fcntl.ioctl(sock.fileno(), 0x8946, ifr)     # SIOCETHTOOL
            result[key] = struct.unpack("II", buf.tobytes())[1]
        except OSError as exc:
            result[key] = f"error {exc.errno}"
    print(json.dumps(result))


def tap_state(ns, tap: str) -> dict:
    """Offloads plus the tun attributes of `ip -d link` (vnet_hdr,
    multi_queue, numqueues, numdisabled) and the bridge it is in."""
    out = ns.run(SYSTEM_PYTHON, os.path.abspath(__file__), "--offloads",
                 tap).stdout
    state = json.loads(out)
    link = ns.ip("-d", "-j", "link", "show", tap).stdout
    info = json.loads(link)[0]
    state["master"] = info.get("master")
    data = info.get("linkinfo", {}).get("info_data", {})
    for key in ("vnet_hdr", "multi_queue", "numqueues", "numdisabled",
                "pi", "persist"):
        state[key] = data.get(key)
    return state


# ---------------------------------------------------------------------------

def fd_count(guest) -> int:
    return len(os.listdir(f"/proc/{guest.get_pid()}/fd"))


def tun_fds(guest) -> int:
    """How many fds of the QEMU process are TAP queues."""
    pid = guest.get_pid()
    count = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "/dev/net/tun":
                count += 1
        except OSError:
            pass
    return count


def qmp_or_none(guest, command, **args):
    """A QMP command on a QEMU that may be exiting: None if it is gone."""
    try:
        return guest.qmp(command, **args)
    except Exception:  # pylint: disable=broad-except
        return None


def wait_migration(src, dst, timeout: float = 120):
    """Poll both sides until neither is in progress; return their
    query-migrate results (None for a QEMU that exited)."""
    deadline = time.monotonic() + timeout
    final = ("completed", "failed", "cancelled")
    while True:
        s = qmp_or_none(src, "query-migrate")
        d = qmp_or_none(dst, "query-migrate") if dst is not None else None
        s_done = s is None or s.get("status") in final
        d_done = d is None or d.get("status") in final
        if s_done and d_done:
            return s, d
        if time.monotonic() > deadline:
            raise AssertionError(f"migration did not finish: {s} {d}")
        time.sleep(0.05)


class TapLocalMigrationBase(unittest.TestCase):
    """One guest per class, migrated from QEMU to QEMU by the tests."""

    QUEUES = 1
    SMP = 1
    PERSISTENT = False
    VHOST = False
    TAP = "lmtap"
    LOCAL_OPTION = True    # x-local-migration-supported=on on the netdev
    MACHINE = "q35"
    BINARY = None          # the guest's first QEMU (None: the build's)
    DST_BINARY = None      # the destinations' (None: the source's)

    ns = None
    guest = None
    tap = None

    @classmethod
    def netdev_opts(cls, queues=None):
        queues = queues or cls.QUEUES
        opts = "tap,id=n0,script=no,downscript=no"
        if cls.LOCAL_OPTION:
            opts += ",x-local-migration-supported=on"
        if queues > 1:
            opts += f",queues={queues}"
        if cls.VHOST:
            opts += ",vhost=on"
        return opts

    @classmethod
    def nic(cls):
        nic = f"virtio-net-pci,netdev=n0,mac={MAC}"
        if cls.QUEUES > 1:
            nic += f",mq=on,vectors={2 * cls.QUEUES + 2}"
        return nic

    @classmethod
    def setUpClass(cls):
        # pylint: disable=import-outside-toplevel
        from serieslib import (Guest, Netns, require_binary, require_guest,
                               require_qemu_python, require_root,
                               require_tun)
        require_root()
        require_tun()
        if cls.VHOST:
            # pylint: disable=import-outside-toplevel
            from serieslib import require_vhost_net
            require_vhost_net()
        require_binary(cls.BINARY)
        if cls.DST_BINARY:
            require_binary(cls.DST_BINARY)
        require_qemu_python()
        require_guest()
        cls.ns = Netns(f"lm{cls.QUEUES}")
        try:
            cls.ns.add_bridge("br0", HOST_IP)
            # A fixed MAC: otherwise the bridge takes the lowest MAC of
            # its ports, which changes when the new-TAP path re-plugs
            cls.ns.ip("link", "set", "br0", "address", BRIDGE_MAC)
            cls.tap = cls.TAP
            if cls.PERSISTENT:
                cls.ns.add_tap(cls.tap, master="br0",
                               multi_queue=cls.QUEUES > 1)
            cls.guest = Guest(cls.ns, name=f"q{cls.QUEUES}", ip=f"{GUEST_IP}/24",
                              mac=MAC, smp=cls.SMP,
                              netdevs=[cls.netdev_opts() +
                                       f",ifname={cls.tap}"],
                              devices=[cls.nic()], machine=cls.MACHINE,
                              binary=cls.BINARY)
            cls.guest.launch()
            if not cls.PERSISTENT:
                # QEMU created the TAP; plug it like a management would
                cls.ns.set_up(cls.tap, master="br0")
            cls.guest.wait_ready()
            cls.ns.ping(GUEST_IP, timeout=60)
        except BaseException:
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        if cls.guest is not None:
            cls.guest.shutdown()
            cls.guest = None
        if cls.ns is not None:
            cls.ns.cleanup()
            cls.ns = None

    def setUp(self):
        if self.guest is None or not self.guest.is_running():
            self.skipTest("the guest did not survive an earlier test")
        self.extra = []        # QEMUs to kill at the end of the test
        self.addCleanup(self._kill_extra)

    def _kill_extra(self):
        for guest in self.extra:
            if guest is not self.__class__.guest:
                guest.shutdown()

    def run(self, result=None):
        # Show the QEMU output of failed tests as TAP diagnostics
        before = len(result.failures) + len(result.errors) if result else 0
        ret = super().run(result)
        if result and len(result.failures) + len(result.errors) > before:
            guest = self.__class__.guest
            if guest is not None and guest.console is not None:
                print("--- console of the guest (tail) ---")
                print(guest.console.tail(1500))
        return ret

    # -- helpers ---------------------------------------------------------
    def start_dst(self, netdev=None, local=True):
        dst = self.guest.clone(netdevs=[netdev or self.netdev_opts()])
        if self.DST_BINARY:
            dst.binary = self.DST_BINARY
        self.extra.append(dst)
        dst.launch()
        self.assertEqual(dst.runstate(), "inmigrate")
        if local:
            dst.qmp("migrate-set-parameters", local=True)
        return dst

    def uri(self, tag="m"):
        return f"unix:{self.ns.tmpdir}/{tag}-{time.time_ns()}.sock"

    def start_udp_receiver(self):
        """The guest answers each datagram to the closed UDP_PORT with a
        port unreachable, unthrottled (this state migrates with it)."""
        self.guest.cmd("echo 0 > /proc/sys/net/ipv4/icmp_ratelimit; "
                       "echo 0 > /proc/sys/net/ipv4/icmp_ratemask; "
                       "echo 100000 > /proc/sys/net/ipv4/icmp_msgs_per_sec")

    def assert_network(self, guest):
        self.ns.ping(GUEST_IP, timeout=20)
        self.assertEqual(guest.cmd("echo alive"), "alive")

    def assert_tap_plugged(self):
        state = tap_state(self.ns, self.tap)
        self.assertEqual(state["master"], "br0", state)
        fdb = self.ns.run("bridge", "fdb", "show", "br", "br0").stdout
        self.assertRegex(fdb, rf"(?m)^{MAC} dev {self.tap} ",
                         "guest MAC not learnt on the TAP")
        return state

    def complete_migration(self, src, dst):
        """migrate-incoming on @dst, migrate on @src over a new UNIX
        socket; both must complete.  Returns the source's query-migrate."""
        uri = self.uri()
        dst.qmp("migrate-incoming", uri=uri)
        src.qmp("migrate", uri=uri)
        s, d = wait_migration(src, dst)
        self.assertEqual(s["status"], "completed", s)
        self.assertEqual(d["status"], "completed", d)
        return s

    def local_migrate(self, traffic=True, multifd=False):
        """Migrate the guest to a new QEMU with fd passing; cont the
        destination, quit the source.  Returns (traffic report, source
        query-migrate)."""
        caps = [{"capability": "multifd", "state": multifd}]
        src = self.guest
        src.qmp("migrate-set-parameters", local=True)
        src.qmp("migrate-set-capabilities", capabilities=caps)
        if traffic:
            self.start_udp_receiver()
            gen = Traffic(self.ns)
            time.sleep(0.5)
        try:
            dst = self.start_dst()
            dst.qmp("migrate-set-capabilities", capabilities=caps)
            s = self.complete_migration(src, dst)
            self.assertEqual(src.runstate(), "postmigrate")
            self.assertEqual(dst.runstate(), "paused")
            dst.qmp("cont")
            self.__class__.guest = self.guest = dst
            src.shutdown()
            # The TAP survives the source (it may be QEMU-created)
            self.assertIn(self.tap, self.ns.links())
            report = None
            if traffic:
                time.sleep(0.5)
                report = gen.stop()
            return report, s
        finally:
            if traffic:
                gen.kill()

    # -- test bodies -----------------------------------------------------
    def check_local_pingpong(self, multifd=False):
        counts = []
        for i in range(ITERATIONS):
            report, info = self.local_migrate(multifd=multifd)
            print(f"# iteration {i}: downtime={info.get('downtime')}ms "
                  f"total={info.get('total-time')}ms {report}")
            # Nothing is lost, not even the packets parked in QEMU
            self.assertEqual(report["icmp_lost"], 0, report)
            self.assertEqual(report["udp_lost"], 0, report)
            self.assertEqual(report["icmp_duplicates"], 0, report)
            self.assertEqual(report["udp_duplicates"], 0, report)
            self.assert_tap_plugged()
            self.assert_network(self.guest)
            counts.append(fd_count(self.guest))
        print(f"# fd counts of the destinations: {counts}")
        self.assertLessEqual(max(counts), counts[0], counts)


class LocalMigrationQ1(TapLocalMigrationBase):
    """queues=1, QEMU-created (non-persistent) TAP in a bridge.

    The queues=1 ping-pong, cancel, destination-killed, failed-load,
    'local'-on-one-side and new-TAP cases live in the in-tree functional
    test (tests/functional/x86_64/test_tap_local_migration.py).  What
    stays here is what that test does not cover yet: multifd, and a
    destination that opens its own TAP with 'local' off (a netdev setup
    case, not a failure injection)."""

    QUEUES = 1
    SMP = 1
    PERSISTENT = False
    TAP = "lmtap1"

    def test_1b_local_pingpong_multifd(self):
        """multifd: the fds go on the main channel (a UNIX socket)"""
        try:
            self.check_local_pingpong(multifd=True)
        finally:
            if self.guest.is_running():
                self.guest.qmp("migrate-set-capabilities", capabilities=[
                    {"capability": "multifd", "state": False}])

    def test_5b_local_off_opens_tap(self):
        """'local' off on a destination with x-local-migration-supported:
        the TAP is opened at migrate-incoming as without the option, and
        the error names the netdev (the single-queue TAP is busy: the
        source holds it)."""
        from qemu.qmp import ExecuteError  # pylint: disable=import-outside-toplevel
        dst = self.start_dst(netdev=self.netdev_opts() + f",ifname={self.tap}",
                             local=False)
        self.assertEqual(tun_fds(dst), 0)
        with self.assertRaises(ExecuteError) as ctx:
            dst.qmp("migrate-incoming", uri=self.uri())
        print(f"# destination error: {ctx.exception}")
        self.assertIn("netdev 'n0': ", str(ctx.exception))
        self.assertIn("busy", str(ctx.exception))
        self.assertEqual(tun_fds(dst), 0)
        dst.shutdown()
        self.assert_network(self.guest)

def _main():
    if len(sys.argv) > 1 and sys.argv[1] == "--traffic":
        traffic_main(sys.argv[2:])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--offloads":
        offloads_main(sys.argv[2:])
        return
    sys.path.insert(0, os.path.join(HERE, "..", "lib"))
    from serieslib import main  # pylint: disable=import-outside-toplevel
    main()


if __name__ == "__main__":
    _main()
