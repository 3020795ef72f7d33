#!/usr/bin/python3
"""Benchmark: does the series cost userspace virtio-net TAP throughput?

    tests/bench/bench_datapath_iperf.py      (as root; a report only)

iperf3 TCP through a TAP with userspace virtio-net (vhost=off), the
patched build against the unpatched base built with the same configure
options, each once with a plain TAP and once with
x-local-migration-supported=on.  The unpatched build does not know that
option, so the "with option" comparison is patched+option against an
unpatched plain TAP.  That gives four guests:

    P      patched,   plain TAP
    U      unpatched, plain TAP           (baseline of P)
    P+opt  patched,   x-local-migration-supported=on
    U#2    unpatched, plain TAP           (baseline of P+opt)

Each guest (TCG, q35, 1 vCPU, 256 MiB, virtio-net-pci) sits on its own
TAP (created by QEMU, then put into the bridge; see boot_all() for why
not a persistent one) in one bridge (198.18.0.1/24) inside a private
network namespace, where one iperf3 server runs.  The four guests are
booted once and all their runs happen in that process; iperf3 (the host's, packed into
a second initramfs archive as bench_macvtap_iperf.py does) is the client
in the guest, guest -> host and host -> guest (-R).  Runs alternate
patched, unpatched, patched, unpatched (P, U, P+opt, U#2, both directions
per round), so drift of the host's load hits both sides alike.  The
guests not being measured are paused (QMP stop) so that their idle vCPUs
do not compete with the one measured (BENCH_PAUSE_IDLE=0 keeps them
running).  One short unreported warm-up run per guest and direction fills
the TCG translation cache first.

Printed: per guest and direction the Mbit/s of every run (the receiver's
figure), the median, the ratio patched/unpatched of the medians and a
verdict (within 2 %, or not; symmetric, |ratio - 1| <= 0.02), the ratio
of each patched run to the unpatched run right after it, the CPU QEMU
used during the runs and the Mbit per QEMU CPU second, the CPU everything
else on the host used meanwhile, the U#2/U ratio (same binary, same
setup: the noise floor of this run), and the command to reproduce.

Under TCG the throughput is bound by the CPU the guest gets, so other
load on the host (a build, another test suite: with the kernel's
autogroup scheduling each session gets an equal share, whatever the
niceness inside it) spreads the runs far wider than 2 %; compare the
noise floor line and the "other processes" CPU before reading a ratio.  Nothing is
asserted and the exit status is always 0; when something is missing it
prints "skipped: <why>".

Environment: BENCH_RUNS (5 per guest and direction), BENCH_SECONDS (5 per
run), BENCH_WARMUP_SECONDS (1; 0 = none), BENCH_PAUSE_IDLE (1),
BENCH_PIN (0; 1 = each guest's vCPU thread on the last host CPU, QEMU's
other threads and the iperf3 server on the others), BENCH_ORDER (pu:
P, U, P+opt, U#2 in each round; up: U, P, U#2, P+opt, to check that the
position in the round does not matter),
BENCH_ACCEL (tcg), BENCH_PATCHED_QEMU (default: the serieslib binary,
build/qemu/build/qemu-system-x86_64 or $QEMU_BINARY),
BENCH_UNPATCHED_QEMU (build/unpatched/build/qemu-system-x86_64).
"""

import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True      # no __pycache__ in tests/bench

# pylint: disable=wrong-import-position
from serieslib import Guest, Netns, paths  # noqa: E402
from bench_macvtap_iperf import build_iperf_cpio, parse_iperf  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "5"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "5"))
WARMUP = int(os.environ.get("BENCH_WARMUP_SECONDS", "1"))
PAUSE_IDLE = os.environ.get("BENCH_PAUSE_IDLE", "1") != "0"
PIN = os.environ.get("BENCH_PIN", "0") != "0"
# pu: P, U, P+opt, U#2 in every round; up: U, P, U#2, P+opt
ORDER = os.environ.get("BENCH_ORDER", "pu")
ACCEL = os.environ.get("BENCH_ACCEL", "tcg")
PATCHED = os.environ.get("BENCH_PATCHED_QEMU") or str(paths.qemu_binary())
UNPATCHED = os.environ.get("BENCH_UNPATCHED_QEMU") or str(
    paths.REPO_ROOT / "build" / "unpatched" / "build" / "qemu-system-x86_64")
OPTION = "x-local-migration-supported=on"
HOST_IP = "198.18.0.1"
TARGET = 0.02
DIRECTIONS = (("guest->host", ""), ("host->guest", " -R"))


class Variant:
    """One guest: a binary, a TAP, a place in the table."""

    # pylint: disable=too-many-instance-attributes,too-many-arguments
    def __init__(self, key, label, binary, patched, option, index):
        self.key = key
        self.label = label
        self.binary = binary
        self.patched = patched
        self.option = option
        self.tap = f"dpt{index}"
        self.ip = f"198.18.0.{11 + index}"
        self.mac = f"52:54:00:44:50:{11 + index:02x}"
        self.guest = None
        self.pid = None
        self.dead = None          # why its runs stopped, if they did
        self.features = None      # the guest's negotiated virtio features
        self.results = {d: [] for d, _ in DIRECTIONS}
        self.cpu = {d: [] for d, _ in DIRECTIONS}

    def make_guest(self, ns, initrd):
        netdev = (f"tap,id=n0,ifname={self.tap},script=no,downscript=no,"
                  "vhost=off" + (f",{OPTION}" if self.option else ""))
        self.guest = Guest(ns, name=f"dp-{self.key}", machine="q35", smp=1,
                           accel=ACCEL, ip=f"{self.ip}/24", mac=self.mac,
                           netdevs=[netdev], binary=self.binary,
                           devices=[f"virtio-net-pci,netdev=n0,"
                                    f"mac={self.mac}"])
        self.guest.initrd = initrd
        return self.guest


def pin(var, server_pid):
    """BENCH_PIN=1: the guest's vCPU thread on the last host CPU, QEMU's
    other threads and the iperf3 server on the others."""
    ncpu = os.cpu_count() or 1
    if ncpu < 2:
        return
    vcpu_cpu, rest = {ncpu - 1}, set(range(ncpu - 1))
    vcpus = {c["thread-id"] for c in var.guest.qmp("query-cpus-fast")}
    for tid in os.listdir(f"/proc/{var.pid}/task"):
        os.sched_setaffinity(int(tid), vcpu_cpu if int(tid) in vcpus
                             else rest)
    for tid in os.listdir(f"/proc/{server_pid}/task"):
        os.sched_setaffinity(int(tid), rest)


def jiffies_busy():
    """Non-idle time of all host CPUs, in seconds."""
    with open("/proc/stat", encoding="ascii") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of a process, in seconds (None if it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def iperf_once(var, flag, seconds):
    """One iperf3 client run in var's guest; (Mbit/s or None, QEMU CPU %,
    the output when it failed)."""
    guest = var.guest
    if PAUSE_IDLE:
        guest.qmp("cont")
    try:
        cpu0, t0 = cpu_seconds(var.pid), time.monotonic()
        out = guest.cmd(f"iperf3 -c {HOST_IP} -t {seconds} -i 0 -f m{flag}",
                        timeout=seconds + 60, check=False)
        cpu1, t1 = cpu_seconds(var.pid), time.monotonic()
    finally:
        if PAUSE_IDLE:
            guest.qmp("stop")
    value = parse_iperf(out)
    cpu = None
    if cpu0 is not None and cpu1 is not None and t1 > t0:
        cpu = 100.0 * (cpu1 - cpu0) / (t1 - t0)
    return value, cpu, (None if value is not None else out.strip())


def fmt(value, width=7, prec=1):
    return f"{'n/a':>{width}}" if value is None else \
        f"{value:>{width}.{prec}f}"


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def ratio(num, den):
    return num / den if num is not None and den else None


def binary_id(path):
    st = os.stat(path)
    return (f"{path} ({time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(st.st_mtime))}, "
            f"{st.st_size} bytes)")


def qemu_version(path):
    proc = subprocess.run([path, "--version"], capture_output=True,
                          text=True, check=False, timeout=30)
    return proc.stdout.splitlines()[0] if proc.stdout else "?"


def loadavg():
    with open("/proc/loadavg", encoding="ascii") as f:
        return " ".join(f.read().split()[:3])


def reproduce_command():
    env = [f"BENCH_RUNS={RUNS}", f"BENCH_SECONDS={SECONDS}",
           f"BENCH_WARMUP_SECONDS={WARMUP}",
           f"BENCH_PAUSE_IDLE={1 if PAUSE_IDLE else 0}",
           f"BENCH_PIN={1 if PIN else 0}", f"BENCH_ORDER={ORDER}",
           f"BENCH_ACCEL={ACCEL}",
           f"BENCH_PATCHED_QEMU={PATCHED}",
           f"BENCH_UNPATCHED_QEMU={UNPATCHED}",
           f"PYTHONPATH={paths.REPO_ROOT}/tests/lib:{paths.qemu_python_dir()}"]
    niceness = os.nice(0)
    nice = f"nice -n {niceness} " if niceness else ""
    return (f"cd {paths.REPO_ROOT} && sudo {nice}env {' '.join(env)} "
            "tests/bench/bench_datapath_iperf.py")


def preflight():
    """None when the bench can run, else why not."""
    if os.geteuid() != 0:
        return "needs root (network namespace, TAP)"
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "/dev/net/tun missing or not accessible"
    if not shutil.which("iperf3"):
        return "iperf3 not installed (Debian package iperf3)"
    for need, pkg in (("ldd", "libc-bin"), ("cpio", "cpio"),
                      ("busybox", "busybox-static"), ("ip", "iproute2")):
        if not shutil.which(need):
            return f"{need} missing (Debian package {pkg})"
    for what, path in (("patched QEMU", PATCHED),
                       ("unpatched QEMU", UNPATCHED)):
        if not os.access(path, os.X_OK):
            return f"{what} {path} missing (not built yet?)"
    for path in (paths.guest_kernel(), paths.guest_initrd()):
        if not path.is_file():
            return f"guest image {path} missing (run tests/guest/build.sh)"
    try:
        paths.ensure_qemu_python()
    except ImportError as exc:
        return f"QEMU python library not usable: {exc}"
    return None


def tap_fds(pid):
    """The character devices QEMU pid has open that are TAPs."""
    found = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target == "/dev/net/tun" or target.startswith("/dev/tap"):
            found.append(target)
    return found


def boot_all(ns, variants, initrd):
    """Launch every guest at once, then wait for each.

    QEMU creates each TAP (ifname= of a link that does not exist yet),
    which is then put into the bridge, as a management does.  A TAP
    created beforehand is not used: for an existing ifname, QEMU's
    tap_open() first tries /dev/tap<ifindex>, the node of a macvtap with
    that ifindex, and /dev is not per namespace, so a macvtap with the
    same ifindex in another namespace (another test's) would be opened
    instead of the TAP."""
    for var in variants:
        var.make_guest(ns, initrd).launch()
        var.pid = var.guest.get_pid()
        ns.set_up(var.tap, master="br0")
        fds = tap_fds(var.pid)
        if fds != ["/dev/net/tun"]:
            raise RuntimeError(f"{var.key}: QEMU has {fds} open instead of "
                               f"one /dev/net/tun for TAP {var.tap}")
    for var in variants:
        var.guest.wait_ready(timeout=400)
        try:
            ns.ping(var.ip, timeout=60)
        except Exception:
            print(f"{var.key}: no ping reply; guest side:\n" + var.guest.cmd(
                "ip addr show eth0; cat /proc/net/dev", check=False))
            print(var.guest.qmp("human-monitor-command",
                                command_line="info network"))
            print(ns.run("ip", "-s", "link", "show", var.tap).stdout)
            raise
        var.guest.cmd("iperf3 --version", timeout=30)
        var.features = var.guest.cmd(
            "cat /sys/bus/virtio/devices/*/features", timeout=30).strip()
        if PAUSE_IDLE:
            var.guest.qmp("stop")
    feats = {v.features for v in variants}
    if len(feats) == 1:
        print(f"virtio-net features negotiated, identical in the 4 guests: "
              f"{feats.pop()}")
    else:
        for var in variants:
            print(f"virtio-net features DIFFER: {var.key}: {var.features}")


def measure(variants, own_pids):
    """All runs; returns the host CPU (% of one CPU) used by everything
    but this bench's processes meanwhile."""
    busy0, t0 = jiffies_busy(), time.monotonic()
    own0 = sum(cpu_seconds(p) or 0 for p in own_pids)
    if WARMUP > 0:
        for var in variants:
            for _, flag in DIRECTIONS:
                iperf_once(var, flag, WARMUP)
    for rnd in range(RUNS):
        for direction, flag in DIRECTIONS:
            line = []
            for var in variants:
                if var.dead:
                    value, cpu, err = None, None, None
                else:
                    try:
                        value, cpu, err = iperf_once(var, flag, SECONDS)
                    except Exception as exc:  # pylint: disable=broad-except
                        # a wedged guest: stop using it, keep the others
                        var.dead = str(exc).splitlines()[0]
                        value, cpu, err = None, None, var.dead
                var.results[direction].append(value)
                var.cpu[direction].append(cpu)
                line.append(f"{var.key} {fmt(value, 0)}")
                if err is not None:
                    tail = err.splitlines()[-3:]
                    print(f"    {var.key} {direction} run {rnd + 1} failed: "
                          f"{' | '.join(tail)}", flush=True)
            print(f"  round {rnd + 1}/{RUNS} {direction:<11}: "
                  + ", ".join(line) + " Mbit/s", flush=True)
    own = sum(cpu_seconds(p) or 0 for p in own_pids) - own0
    return 100.0 * (jiffies_busy() - busy0 - own) / (time.monotonic() - t0)


def report(variants, pairs, others):
    by_key = {v.key: v for v in variants}
    runs_w = max(RUNS, 1) * 6
    lab_w = max(len(v.label) for v in variants)
    print()
    print(f"{'variant':<{lab_w}} {'direction':<11} "
          f"{'Mbit/s per run':<{runs_w}} {'median':>7} {'P/U':>6}")
    verdicts = []
    pairs_txt = []
    for (pkey, ukey, title) in pairs:
        pvar, uvar = by_key[pkey], by_key[ukey]
        for direction, _ in DIRECTIONS:
            pmed = median(pvar.results[direction])
            umed = median(uvar.results[direction])
            rat = ratio(pmed, umed)
            for var, med, rtxt in ((pvar, pmed, fmt(rat, 6, 3)),
                                   (uvar, umed, "")):
                vals = " ".join(fmt(v, 5, 0)
                                for v in var.results[direction])
                print(f"{var.label:<{lab_w}} {direction:<11} "
                      f"{vals:<{runs_w}} {fmt(med, 7, 0)} {rtxt:>6}")
            if rat is None:
                verdict = "no result"
            elif abs(rat - 1.0) <= TARGET:
                verdict = "within 2%"
            else:
                verdict = f"missed 2% target (ratio {rat:.3f})"
            verdicts.append(f"{title}, {direction}: {verdict}")
            paired = [p / u for p, u in zip(pvar.results[direction],
                                            uvar.results[direction])
                      if p and u]
            if paired:
                pairs_txt.append(
                    f"  {title}, {direction}: median "
                    f"{statistics.median(paired):.3f}, runs "
                    + " ".join(f"{r:.3f}" for r in paired))
    print()
    for line in verdicts:
        print(f"verdict: {line}")
    print("ratio of each patched run to the unpatched run next to it "
          f"(order {ORDER}; less sensitive to drift of the host's load):")
    for line in pairs_txt:
        print(line)
    print()
    print("QEMU CPU during the runs (median, % of one host CPU) and "
          "Mbit per QEMU CPU second (median):")
    for var in variants:
        eff = {d: median([v / c * 100 for v, c in
                          zip(var.results[d], var.cpu[d]) if v and c])
               for d, _ in DIRECTIONS}
        print(f"  {var.label:<{lab_w}} " + "  ".join(
            f"{d} {fmt(median(var.cpu[d]), 4, 0)}% {fmt(eff[d], 5, 0)}"
            for d, _ in DIRECTIONS))
    print(f"host CPU used by other processes during the runs: {others:.0f}% "
          f"of one CPU ({os.cpu_count()} CPUs; the kernel's share of the "
          "traffic counts here too)")
    u1, u2 = by_key["U"], by_key["U#2"]
    print("noise floor, U#2/U (same binary, same setup): " + ", ".join(
        f"{d} {fmt(ratio(median(u2.results[d]), median(u1.results[d])), 0, 3)}"
        for d, _ in DIRECTIONS))


def main() -> int:
    print("datapath: iperf3 TCP through a TAP, userspace virtio-net "
          "(vhost=off), patched vs unpatched")
    why = preflight()
    if why:
        print(f"skipped: {why}")
        return 0
    # SIGTERM/SIGHUP (a CI timeout, a closed terminal) unwind through the
    # finally blocks below like ^C does, so nothing is left behind.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _: sys.exit(128 + signum))
    start = time.monotonic()
    ids = (binary_id(PATCHED), binary_id(UNPATCHED))
    print(f"patched:   {qemu_version(PATCHED)}, {ids[0]}")
    print(f"unpatched: {qemu_version(UNPATCHED)}, {ids[1]}")
    print(f"accel {ACCEL}, q35, 1 vCPU, virtio-net-pci, TAP in a bridge, "
          f"order {ORDER}, "
          f"{RUNS} runs x {SECONDS} s per guest and direction, "
          f"warm-up {WARMUP} s, idle guests "
          f"{'paused' if PAUSE_IDLE else 'running'}, "
          f"{'vCPU threads pinned' if PIN else 'no pinning'}; "
          f"host {os.cpu_count()} CPUs, load {loadavg()}, nice {os.nice(0)}")
    variants = [
        Variant("P", "patched, plain TAP", PATCHED, True, False, 0),
        Variant("U", "unpatched, plain TAP", UNPATCHED, False, False, 1),
        Variant("P+opt", f"patched, {OPTION}", PATCHED, True, True, 2),
        Variant("U#2", "unpatched, plain (no such option)", UNPATCHED,
                False, False, 3),
    ]
    pairs = [("P", "U", "plain TAP"),
             ("P+opt", "U#2", OPTION)]
    if ORDER == "up":
        variants = [variants[1], variants[0], variants[3], variants[2]]
    workdir = tempfile.mkdtemp(prefix="bench-datapath-")
    ns = None
    server = None
    try:
        initrd = build_iperf_cpio(workdir)
        ns = Netns("datapath")
        ns.add_bridge("br0", f"{HOST_IP}/24")
        server = ns.popen("iperf3", "-s", stdin=subprocess.DEVNULL,
                          stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        boot_all(ns, variants, initrd)
        if PIN:
            for var in variants:
                pin(var, server.pid)
        print(f"booted 4 guests in {time.monotonic() - start:.0f} s")
        others = measure(variants, [v.pid for v in variants] +
                         [server.pid, os.getpid()])
        report(variants, pairs, others)
    except (KeyboardInterrupt, SystemExit) as exc:
        print(f"benchmark interrupted ({type(exc).__name__} {exc}), "
              "cleaning up")
    except Exception as exc:  # pylint: disable=broad-except
        print(f"benchmark failed: {type(exc).__name__}: {exc}")
        for var in variants:
            if var.guest is not None and var.guest.console is not None:
                print(f"--- {var.key} console tail:\n"
                      f"{var.guest.console.tail(800)}")
    finally:
        for var in variants:
            if var.guest is not None:
                var.guest.shutdown()
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
        if ns is not None:
            ns.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    for what, path, before in (("patched", PATCHED, ids[0]),
                               ("unpatched", UNPATCHED, ids[1])):
        if os.path.exists(path) and binary_id(path) != before:
            print(f"note: the {what} binary changed during the bench "
                  f"(now {binary_id(path)}); the guests ran the one "
                  "listed at the top")
    print(f"load at the end {loadavg()}; total "
          f"{time.monotonic() - start:.0f} s")
    print(f"reproduce: {reproduce_command()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
