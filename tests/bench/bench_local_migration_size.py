#!/usr/bin/python3
"""Benchmark: how the time of a local migration grows with the guest's
RAM, for the path without the series' feature and for three ways of
using migration parameter 'local' (TAP fds passed at the switchover).

    tests/bench/bench_local_migration_size.py      (as root; a report only)

Why: passing the TAP fds removes the network re-plug from the switchover,
but an ordinary precopy still copies every RAM page through the UNIX
socket, so its total time (and, with a dirtying guest, the last dirty
set in the downtime) grows with the guest.  Keeping the RAM in place
should make both independent of the size; this measures whether it does.

For each guest size (BENCH_SIZES, default 256M,2G,8G) and each method, a
guest (TCG, BENCH_SMP vCPUs, default 1, queues=1, a TAP that QEMU creates
in a bridge of a private network namespace, 198.18.0.0/24) is booted and
migrated BENCH_RUNS times (default 3), each time from its QEMU process to
a new one:

  new-TAP    precopy without 'local': the destination opens a second TAP,
             which is swapped into the bridge between completion and
             `cont`, as tests/bench/bench_tap_local_migration.py does;
  local      'local' precopy, anonymous guest RAM (-m);
  shared     'local' + capability x-ignore-shared, guest RAM on
             memory-backend-file,share=on in /dev/shm (one file, mapped
             by both QEMUs; upstream ignores only shared RAM that is a
             named file, so a memfd would still be copied here);
  cpr        'local' + mode cpr-transfer, guest RAM on
             memory-backend-memfd,share=on with aux-ram-share=on: the
             memfds go to the new QEMU over a second (cpr) UNIX socket.

The destination is started, connected and given migrate-incoming before
the timed part, except for cpr-transfer: there the new QEMU reads the
cpr channel before it creates its devices and opens its monitor, so it
is started, the source's `migrate` (both channels) goes out as soon as
the cpr socket exists, and the destination's device creation runs inside
the migration's total time.  Column "dst up" is that part, `migrate` to
the destination's QMP greeting (for the other methods: the launch of the
destination up to its greeting, before the timed part).  The source
stops its vCPUs only once the main channel is connected, i.e. after
the destination's devices exist and it got migrate-incoming; the script
prints how long after the greeting the STOP came.  The destination is
resumed with `cont` on its MIGRATION "completed" event.

While the guest migrates, the namespace sends ICMP echo requests
(BENCH_ICMP_RATE, 1000/s) and a numbered UDP stream (BENCH_UDP_RATE,
200/s) with the generator of tests/system/test_tap_local_migration.py,
and a shell loop in the guest keeps rewriting a BENCH_DIRTY_MIB (64) MiB
file on the guest's tmpfs with dd conv=notrunc, in 8 MiB chunks of
random data (not zeros, which precopy would send as zero pages), paced
on /proc/uptime to BENCH_DIRTY_RATE (100) MiB/s.  It starts after boot,
before the first migration, and runs through all of them.  The rate is
checked two ways and printed: in the guest, the loop counts its chunks
and the script reads the counter and the guest's uptime before each
migration (MiB written / guest seconds since the previous reading); from
the host, once per boot, QMP calc-dirty-rate (page-sampling, 4096 pages
per GiB, 500 ms) estimates how much RAM changed content, which is the
write rate as long as a window covers less than the whole buffer (each
pass of the loop writes other data, so that a rewrite is a change).
Its dirty-bitmap mode counts only what KVM's dirty log reports and says
0 under TCG.

Migration parameters on every source: downtime-limit BENCH_DOWNTIME_LIMIT
(300 ms, QEMU's default) and max-bandwidth BENCH_MAX_BANDWIDTH (0, no
limit: QEMU's default of 128 MiB/s is a throttle for a shared network;
on a local socket it would measure the throttle, with the writer's
100 MiB/s close to it).

Printed per size and method, median and (max) over the runs: total
migration time (source query-migrate total-time), STOP -> RESUME (QMP
event timestamps of the source's STOP and the destination's RESUME),
QEMU's downtime, packets lost (ICMP + UDP), blackout (longest gap
without ICMP replies), the VmRSS, RssAnon and RssShmem of the source and
of the destination from /proc/PID/status, sampled on the destination's
"completed" event (before `cont`; a destination with shared RAM has
mapped none of it yet), the destination's RssShmem again 0.5 s after
`cont`, the space the shared RAM backing occupies (st_blocks of the
/dev/shm file or of the memfd: what the host is charged, once, however
many QEMUs map it and count it in their RssShmem), RAM bytes transferred
(query-migrate ram transferred) and the destination's start-up.  The
first run of a boot migrates the QEMU that booted the guest, the later
ones a QEMU that was a destination, whose RSS holds only what was sent
or touched since: the max column is mostly that first run.  Then
ratios against 'local' precopy at the same size and of the largest
size against the smallest, and the targets for 'shared' and 'cpr' at
the largest size (STOP -> RESUME within 2x of the smallest size, total
time under 1 s in every run, no packet lost in any run), printed as met
or not met.  Nothing is asserted; the script exits 0 unless it cannot
run at all (then it says why and exits 1).

Memory: the guests touch little of their RAM, but before every boot the
host must have the guest's size plus BENCH_RESERVE (2 GiB) available, and
before every migration of anonymous RAM as well (the worst case, a
destination that fills its RAM; shared RAM is not duplicated, so there
the reserve is enough), and /dev/shm must have room for the whole file;
otherwise that boot or run is skipped, saying why.  `free -g` and the
host's swap counters are printed at the start and at the end, and a
line from /proc/meminfo after every boot and run.  QEMU processes, TAPs
(they live in the namespace), the namespace and the /dev/shm files are
removed in `finally` blocks, also on failure or SIGTERM.

Environment: BENCH_SIZES (256M,2G,8G), BENCH_RUNS (3), BENCH_METHODS
(new-TAP,local,shared,cpr), BENCH_SMP (1), BENCH_ICMP_RATE (1000),
BENCH_UDP_RATE (200), BENCH_DIRTY_MIB (64), BENCH_DIRTY_RATE (100),
BENCH_DOWNTIME_LIMIT (300), BENCH_MAX_BANDWIDTH (0), BENCH_RESERVE (2G);
the QEMU binary and the guest come from tests/lib/serieslib/paths.py
(QEMU_BINARY, GUEST_DIR, ...).
"""

import asyncio
import glob
import os
import re
import signal
import stat
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "system"))
sys.path.insert(0, HERE)

# pylint: disable=wrong-import-position
import test_tap_local_migration as tlm  # noqa: E402
from bench_tap_local_migration import boot_guest, event_times  # noqa: E402

MiB = 1 << 20
GiB = 1 << 30


def _size(text: str) -> int:
    match = re.fullmatch(r"(\d+)([MG])", text.strip().upper())
    if not match:
        raise ValueError(f"size {text!r}: use e.g. 256M or 8G")
    return int(match.group(1)) * (MiB if match.group(2) == "M" else GiB)


SIZES = [s.strip().upper() for s in
         os.environ.get("BENCH_SIZES", "256M,2G,8G").split(",")]
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
SMP = int(os.environ.get("BENCH_SMP", "1"))
ICMP_RATE = int(os.environ.get("BENCH_ICMP_RATE", "1000"))
UDP_RATE = int(os.environ.get("BENCH_UDP_RATE", "200"))
DIRTY_MIB = int(os.environ.get("BENCH_DIRTY_MIB", "64"))
DIRTY_RATE = int(os.environ.get("BENCH_DIRTY_RATE", "100"))
DOWNTIME_LIMIT = int(os.environ.get("BENCH_DOWNTIME_LIMIT", "300"))
MAX_BANDWIDTH = int(os.environ.get("BENCH_MAX_BANDWIDTH", "0"))
RESERVE = _size(os.environ.get("BENCH_RESERVE", "2G"))

METHODS = {
    "new-TAP": "precopy, second TAP re-plugged",
    "local": "precopy with 'local', anonymous RAM",
    "shared": "'local' + x-ignore-shared, /dev/shm file",
    "cpr": "'local' + cpr-transfer, memfd",
}
CHOSEN = [m for m in os.environ.get("BENCH_METHODS",
                                    ",".join(METHODS)).split(",")
          if m in METHODS]
NETDEV = "tap,id=n0,script=no,downscript=no,x-local-migration-supported=on"
NIC = f"virtio-net-pci,netdev=n0,mac={tlm.MAC}"
SHM_PREFIX = "/dev/shm/bench-lmsize-"
CHUNK_MIB = 8
FINAL = ("completed", "failed", "cancelled")

# The guest's writer: a background subshell that rewrites /tmp/wl.buf in
# CHUNK_MIB pieces copied from a random file, every other pass from 1 MiB
# further in it (so that each pass changes the content, which is what
# calc-dirty-rate's page sampling sees), chunk k no earlier than
# k * PERIOD centiseconds of guest uptime after the start (if it falls
# behind by more than 0.5 s it does not try to catch up).  /tmp/wl.n is
# the number of chunks written so far.
WORKLOAD = (
    "dd if=/dev/urandom of=/tmp/wl.src bs=1M count=$(({chunk} + 1)) "
    "2>/dev/null; "
    "echo 0 >/tmp/wl.n; "
    "( k=0; read up _ </proc/uptime; t0=${{up%.*}}${{up#*.}}; "
    "while :; do "
    "dd if=/tmp/wl.src of=/tmp/wl.buf bs=1M count={chunk} "
    "skip=$((k / {chunks} % 2)) seek=$((k % {chunks} * {chunk})) "
    "conv=notrunc 2>/dev/null; "
    "k=$((k + 1)); echo $k >/tmp/wl.n; "
    "while read up _ </proc/uptime; now=${{up%.*}}${{up#*.}}; "
    "[ $now -lt $((t0 + k * {period})) ]; do usleep 5000; done; "
    "[ $now -gt $((t0 + k * {period} + 50)) ] && t0=$((now - k * {period})); "
    "done ) >/dev/null 2>&1 </dev/null & :"
)


# ---------------------------------------------------------------------------
# Host memory

def meminfo() -> dict:
    """/proc/meminfo in bytes (what free(1) reads), plus the swap-in and
    swap-out counters of /proc/vmstat"""
    info = {}
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            key, rest = line.split(":", 1)
            info[key] = int(rest.split()[0]) * 1024
    with open("/proc/vmstat", encoding="ascii") as f:
        for line in f:
            key, value = line.split()
            if key in ("pswpin", "pswpout"):
                info[key] = int(value)
    return info


def memory_line() -> str:
    m = meminfo()
    return (f"host: available {m['MemAvailable'] / GiB:.1f} GiB, shmem "
            f"{m['Shmem'] / GiB:.2f} GiB, swap used "
            f"{(m['SwapTotal'] - m['SwapFree']) / MiB:.0f} MiB "
            f"(pswpin {m['pswpin']}, pswpout {m['pswpout']})")


def swap_report(title: str) -> None:
    m = meminfo()
    print(f"--- {title}: free -g")
    print(subprocess.run(["free", "-g"], capture_output=True, text=True,
                         check=False).stdout.rstrip())
    swap = (f"swap: total {m['SwapTotal'] / MiB:.0f} MiB, used "
            f"{(m['SwapTotal'] - m['SwapFree']) / MiB:.0f} MiB, "
            f"pswpin {m['pswpin']}, pswpout {m['pswpout']}")
    if not m["SwapTotal"]:
        swap += " (no swap configured: running out would be OOM)"
    print(swap)


def room_for(extra: int) -> str:
    """'' if the host has @extra bytes plus the reserve available, else
    why not"""
    avail = meminfo()["MemAvailable"]
    if avail >= extra + RESERVE:
        return ""
    return (f"host has {avail / GiB:.1f} GiB available, needs "
            f"{(extra + RESERVE) / GiB:.1f} GiB")


def shm_room(size: int) -> str:
    st = os.statvfs("/dev/shm")
    free = st.f_bavail * st.f_frsize
    if free >= size:
        return ""
    return (f"/dev/shm has {free / GiB:.1f} GiB free of "
            f"{st.f_blocks * st.f_frsize / GiB:.1f} GiB, the file needs "
            f"{size / GiB:.1f} GiB")


def remove_stale_shm() -> None:
    """Backing files of earlier runs whose process is gone"""
    for path in glob.glob(SHM_PREFIX + "*"):
        match = re.match(re.escape(SHM_PREFIX) + r"(\d+)-", path)
        if match and not os.path.exists(f"/proc/{match.group(1)}"):
            os.unlink(path)


def proc_memory(pid) -> dict:
    """VmRSS, RssAnon and RssShmem of @pid in MiB"""
    found = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in ("VmRSS", "RssAnon", "RssShmem"):
                    found[key] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return found


def backing_mib(guest, method: str, shm_path: str):
    """MiB allocated to the shared guest RAM: the /dev/shm file, or the
    memfd of memory-backend-memfd that QEMU @guest holds"""
    if method == "shared":
        return os.stat(shm_path).st_blocks * 512 / MiB
    if method != "cpr":
        return None
    fd_dir = f"/proc/{guest.get_pid()}/fd"
    for fd in os.listdir(fd_dir):
        try:
            if os.readlink(f"{fd_dir}/{fd}").startswith(
                    "/memfd:memory-backend-memfd"):
                return os.stat(f"{fd_dir}/{fd}").st_blocks * 512 / MiB
        except OSError:
            continue
    return None


# ---------------------------------------------------------------------------
# The guest

def memory_args(method: str, size: str, shm_path: str) -> list:
    if method == "shared":
        return ["-object", f"memory-backend-file,id=ram0,size={size},"
                f"mem-path={shm_path},share=on",
                "-machine", "memory-backend=ram0"]
    if method == "cpr":
        return ["-object", f"memory-backend-memfd,id=ram0,size={size},"
                "share=on",
                "-machine", "memory-backend=ram0,aux-ram-share=on"]
    return []


def boot(ns, method: str, size: str, shm_path: str, tap: str):
    guest = boot_guest(ns, f"sz{size}-{method}", NETDEV, tap, accel="tcg",
                       memory=size, smp=SMP,
                       extra_args=memory_args(method, size, shm_path))
    try:
        chunks = max(1, DIRTY_MIB // CHUNK_MIB)
        period = max(1, round(CHUNK_MIB * 100 / DIRTY_RATE))
        guest.cmd(WORKLOAD.format(chunk=CHUNK_MIB, chunks=chunks,
                                  period=period), timeout=120)
    except BaseException:
        guest.shutdown()
        raise
    return guest


def workload_mark(guest):
    """(chunks written, guest uptime in s) of the guest's writer"""
    out = guest.cmd("cat /tmp/wl.n /proc/uptime").split()
    return int(out[0]), float(out[1])


def workload_rate(before, after):
    """MiB/s written by the guest between two workload_mark()s"""
    if before is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) * CHUNK_MIB / (after[1] - before[1])


def dirty_rate(guest):
    """MiB/s of guest RAM whose content changed within 500 ms, estimated by
    QEMU from hashes of sampled pages (4096 per GiB).  The dirty-bitmap
    mode would count every write, but it only counts what KVM's dirty log
    reports: under TCG it always says 0."""
    try:
        guest.qmp("calc-dirty-rate", calc_time=500,
                  calc_time_unit="millisecond", mode="page-sampling",
                  sample_pages=4096)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            info = guest.qmp("query-dirty-rate")
            if info.get("status") == "measured":
                return info.get("dirty-rate")
            time.sleep(0.1)
    except Exception as exc:  # pylint: disable=broad-except
        print(f"  calc-dirty-rate failed: {exc}")
    return None


# ---------------------------------------------------------------------------
# One migration

def main_channel(sock: str) -> dict:
    return {"channel-type": "main",
            "addr": {"transport": "socket", "type": "unix", "path": sock}}


def cpr_channel(sock: str) -> dict:
    return {"channel-type": "cpr",
            "addr": {"transport": "socket", "type": "unix", "path": sock}}


class Launch(threading.Thread):
    """Guest.launch() of a cpr-transfer destination, which returns only
    when the new QEMU has read the cpr channel and opened its monitor"""

    def __init__(self, guest):
        super().__init__(daemon=True)
        self.guest = guest
        self.error = None
        self.done_at = None

    def run(self):
        try:
            self.guest.launch()
        except BaseException as exc:  # pylint: disable=broad-except
            self.error = exc
        self.done_at = time.monotonic()

    def abort(self):
        """Kill the QEMU this thread is waiting for, by its pid"""
        vm = self.guest.vm
        popen = getattr(vm, "_popen", None) if vm is not None else None
        if popen is not None and popen.poll() is None:
            popen.kill()
        self.join(30)


def wait_for_socket(path: str, proc_guest, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if stat.S_ISSOCK(os.stat(path).st_mode):
                return
        except FileNotFoundError:
            pass
        vm = proc_guest.vm
        popen = getattr(vm, "_popen", None) if vm is not None else None
        if popen is not None and popen.poll() is not None:
            raise RuntimeError(f"destination exited ({popen.returncode}) "
                               "before opening the cpr socket")
        if time.monotonic() > deadline:
            raise RuntimeError(f"no cpr socket {path} after {timeout}s")
        time.sleep(0.005)


def wait_generator(gen, timeout: float = 20) -> None:
    """Until the traffic generator handles SIGTERM: on a loaded host its
    start can take longer than the warm-up, and stopped before that it
    dies without its report"""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and gen.proc.poll() is None:
        try:
            with open(f"/proc/{gen.proc.pid}/status", encoding="ascii") as f:
                caught = next(int(line.split()[1], 16) for line in f
                              if line.startswith("SigCgt:"))
            if caught & (1 << (signal.SIGTERM - 1)):
                return
        except (OSError, StopIteration):
            pass
        time.sleep(0.01)
    raise RuntimeError("the traffic generator did not start")


def set_source(src, method: str) -> None:
    params = {"downtime_limit": DOWNTIME_LIMIT,
              "max_bandwidth": MAX_BANDWIDTH,
              "local": method != "new-TAP"}
    if method == "cpr":
        params["mode"] = "cpr-transfer"
    src.qmp("migrate-set-parameters", **params)
    if method == "shared":
        src.qmp("migrate-set-capabilities", capabilities=[
            {"capability": "x-ignore-shared", "state": True}])


def prepare_destination(dst, method: str) -> None:
    caps = [{"capability": "events", "state": True}]
    if method == "shared":
        caps.append({"capability": "x-ignore-shared", "state": True})
    dst.qmp("migrate-set-capabilities", capabilities=caps)
    if method != "new-TAP":
        dst.qmp("migrate-set-parameters", local=True)


class Run:
    """One migration of @src to a new QEMU: run() returns the guest that
    runs afterwards, the figures are in .report"""

    # pylint: disable=too-many-instance-attributes,too-many-arguments
    def __init__(self, ns, src, method, old_tap, new_tap, shm_path):
        self.ns = ns
        self.src = src
        self.method = method
        self.old_tap = old_tap
        self.new_tap = new_tap
        self.shm_path = shm_path
        self.dst = None
        self.monitor_up = None      # cpr: wall clock of the dst's monitor
        self.report = {}
        self.sock = f"{ns.tmpdir}/main-{time.time_ns()}.sock"

    def dst_netdevs(self):
        if self.method == "new-TAP":
            plain = NETDEV.replace(",x-local-migration-supported=on", "")
            return [f"{plain},ifname={self.new_tap}"]
        return [NETDEV]

    def start_ahead(self):
        """Methods other than cpr: destination up and listening"""
        self.dst = self.src.clone(netdevs=self.dst_netdevs())
        start = time.monotonic()
        self.dst.launch()
        self.report["dst_start"] = (time.monotonic() - start) * 1000
        prepare_destination(self.dst, self.method)
        self.dst.qmp("migrate-incoming", uri=f"unix:{self.sock}")

    def migrate_cpr(self):
        """Start the destination, `migrate` once its cpr socket exists,
        then its monitor comes up and gets migrate-incoming"""
        cpr_sock = f"{self.ns.tmpdir}/cpr-{time.time_ns()}.sock"
        self.dst = self.src.clone(netdevs=self.dst_netdevs())
        self.dst.extra_args += ["-incoming",
                                '{"channel-type":"cpr","addr":{"transport":'
                                '"socket","type":"unix","path":"'
                                + cpr_sock + '"}}']
        launcher = Launch(self.dst)
        launcher.start()
        try:
            wait_for_socket(cpr_sock, self.dst)
            start = time.monotonic()
            self.cpr_migrate(cpr_sock)
            launcher.join(120)
            if launcher.is_alive():
                raise RuntimeError("cpr destination: no monitor after 120 s")
            if launcher.error is not None:
                raise launcher.error
            self.report["dst_start"] = (launcher.done_at - start) * 1000
            self.monitor_up = time.time() - (time.monotonic() -
                                             launcher.done_at)
            prepare_destination(self.dst, self.method)
            self.dst.qmp("migrate-incoming", uri=f"unix:{self.sock}")
        except BaseException:
            launcher.abort()
            raise

    def cpr_migrate(self, cpr_sock):
        """`migrate` with both channels; the socket file may exist a
        moment before the destination listens on it"""
        # pylint: disable=import-outside-toplevel
        from qemu.qmp import ExecuteError
        for attempt in range(3):
            try:
                self.src.qmp("migrate", channels=[main_channel(self.sock),
                                                  cpr_channel(cpr_sock)])
                return
            except ExecuteError as exc:
                if "refused" not in str(exc) or attempt == 2:
                    raise
                time.sleep(0.05)

    def wait_completed(self):
        """The destination's MIGRATION completed event; then sample the
        memory of both QEMUs"""
        matches = [("MIGRATION", {"data": {"status": st}}) for st in FINAL]
        deadline = time.monotonic() + 300
        while True:
            try:
                event = self.dst.vm.events_wait(matches, timeout=0.5)
                break
            except (asyncio.TimeoutError, TimeoutError):
                # a source that failed never connects or stops sending;
                # one that completed may still wait for the load to end
                info = tlm.qmp_or_none(self.src, "query-migrate")
                if info is None or info.get("status") in FINAL[1:]:
                    raise RuntimeError(f"source: migration {info}") from None
                if time.monotonic() > deadline:
                    raise RuntimeError("no completion after 300 s") from None
        status = event["data"]["status"] if event else None
        pids = {"src": self.src.get_pid(), "dst": self.dst.get_pid()}
        for side, pid in pids.items():
            for key, value in proc_memory(pid).items():
                self.report[f"{side}_{key}"] = value
        if status != "completed":
            raise RuntimeError(f"destination: migration {status}")
        self.report["backing"] = backing_mib(self.src, self.method,
                                             self.shm_path)

    def run(self):
        set_source(self.src, self.method)
        gen = None
        try:
            if self.method != "cpr":
                self.start_ahead()
            self.src.vm.get_qmp_events(wait=False)
            gen = tlm.Traffic(self.ns, icmp_rate=ICMP_RATE,
                              udp_rate=UDP_RATE)
            wait_generator(gen)
            time.sleep(0.5)
            if self.method == "cpr":
                self.migrate_cpr()
            else:
                self.src.qmp("migrate", uri=f"unix:{self.sock}")
            self.wait_completed()
            if self.method == "new-TAP":
                self.ns.ip("link", "set", self.old_tap, "nomaster")
                self.ns.set_up(self.new_tap, master="br0")
            self.dst.qmp("cont")
            s, d = tlm.wait_migration(self.src, self.dst)
            if s.get("status") != "completed" or \
                    d.get("status") != "completed":
                raise RuntimeError(f"migration: source {s}, dest {d}")
            stop = event_times(self.src, {"STOP"}).get("STOP")
            self.src.shutdown()
            time.sleep(0.5)
            self.report["dst_run_RssShmem"] = \
                proc_memory(self.dst.get_pid()).get("RssShmem")
            traffic = gen.stop()
            resume = event_times(self.dst, {"RESUME"}).get("RESUME")
        except BaseException:
            if gen is not None:
                gen.kill()
            if self.dst is not None:
                self.dst.shutdown()
            raise
        self.report.update(
            total=s.get("total-time"), downtime=s.get("downtime"),
            ram=s.get("ram", {}).get("transferred", 0) / MiB,
            lost=traffic["icmp_lost"] + traffic["udp_lost"],
            blackout=traffic["blackout_ms"],
            stop_resume=(resume - stop) * 1000 if stop and resume else None)
        if stop and self.monitor_up:
            self.report["stop_after_up"] = (stop - self.monitor_up) * 1000
        return self.dst


# ---------------------------------------------------------------------------

def run_method(ns, size: str, method: str, index: int, results: dict):
    """Boot a guest of @size for @method and migrate it RUNS times"""
    # pylint: disable=too-many-locals,too-many-statements
    nbytes = _size(size)
    shm_path = f"{SHM_PREFIX}{os.getpid()}-{size}-{index}"
    taps = [f"msz{index}a", f"msz{index}b"]
    reports = results.setdefault((size, method), [])
    notes = results.setdefault("notes", [])
    why = room_for(nbytes)
    if not why and method == "shared":
        why = shm_room(nbytes)
    if why:
        notes.append(f"{size} {method}: skipped, {why}")
        print(f"  {method}: skipped: {why}")
        return
    guest = None
    try:
        start = time.monotonic()
        tap = taps[0]            # the TAP the guest is on
        guest = boot(ns, method, size, shm_path, tap)
        mark = workload_mark(guest)
        rate = dirty_rate(guest)
        print(f"  {method} ({METHODS[method]}): booted in "
              f"{time.monotonic() - start:.1f} s; calc-dirty-rate "
              f"{rate} MiB/s; {memory_line()}", flush=True)
        results.setdefault("dirty-rate", {})[(size, method)] = rate
        for i in range(RUNS):
            why = room_for(0 if method in ("shared", "cpr") else nbytes)
            if why:
                notes.append(f"{size} {method} run {i + 1}: skipped, {why}")
                print(f"    run {i + 1}: skipped: {why}")
                break
            now = workload_mark(guest)
            wl = workload_rate(mark, now)
            mark = now
            new = taps[1] if tap == taps[0] else taps[0]
            run = Run(ns, guest, method, tap, new, shm_path)
            try:
                guest = run.run()
                if method == "new-TAP":
                    tap = new
            except Exception as exc:  # pylint: disable=broad-except
                notes.append(f"{size} {method} run {i + 1}: failed: {exc}")
                print(f"    run {i + 1}: FAILED: {exc}", flush=True)
                if not guest.is_running() or \
                        guest.runstate() not in ("running",):
                    break
                continue
            run.report["workload"] = wl
            reports.append(run.report)
            print(f"    run {i + 1}: {format_run(run.report)}", flush=True)
            print(f"      {memory_line()}", flush=True)
    except Exception as exc:  # pylint: disable=broad-except
        notes.append(f"{size} {method}: failed: {exc}")
        print(f"  {method}: FAILED: {exc}", flush=True)
    finally:
        if guest is not None:
            guest.shutdown()
        if os.path.exists(shm_path):
            os.unlink(shm_path)


def format_run(r: dict) -> str:
    def num(key, fmt="{:.1f}"):
        value = r.get(key)
        return "n/a" if value is None else fmt.format(value)
    return (f"total {num('total', '{}')} ms, STOP->RESUME "
            f"{num('stop_resume')} ms, downtime {num('downtime', '{}')} ms, "
            f"lost {num('lost', '{}')}, blackout {num('blackout')} ms, RAM "
            f"{num('ram')} MiB, src RSS {num('src_VmRSS', '{:.0f}')}/"
            f"{num('src_RssAnon', '{:.0f}')}/{num('src_RssShmem', '{:.0f}')}"
            f" dst RSS {num('dst_VmRSS', '{:.0f}')}/"
            f"{num('dst_RssAnon', '{:.0f}')}/{num('dst_RssShmem', '{:.0f}')}"
            f" MiB (VmRSS/anon/shmem), backing {num('backing', '{:.0f}')} "
            f"MiB, dst start-up {num('dst_start', '{:.0f}')} ms, workload "
            f"{num('workload', '{:.0f}')} MiB/s" +
            (f", source STOP {num('stop_after_up')} ms after the "
             "destination's monitor was up" if "stop_after_up" in r else ""))


# ---------------------------------------------------------------------------
# Report

# (column title, key): cells are "median/max" over the runs
TIME_COLUMNS = [
    ("total ms", "total"), ("STOP>RES ms", "stop_resume"),
    ("downtime", "downtime"), ("lost", "lost"), ("blackout", "blackout"),
    ("RAM MiB", "ram"), ("dst up ms", "dst_start"),
    ("writer MiB/s", "workload"),
]
MEMORY_COLUMNS = [
    ("src RSS", "src_VmRSS"), ("src anon", "src_RssAnon"),
    ("src shmem", "src_RssShmem"), ("dst RSS", "dst_VmRSS"),
    ("dst anon", "dst_RssAnon"), ("dst shmem", "dst_RssShmem"),
    ("dst shm run", "dst_run_RssShmem"), ("backing", "backing"),
]
RATIO_COLUMNS = TIME_COLUMNS[:6]
WIDTH = 13


def values(results, size, method, key):
    return [r[key] for r in results.get((size, method), [])
            if r.get(key) is not None]


def med(results, size, method, key):
    vals = values(results, size, method, key)
    return statistics.median(vals) if vals else None


def number(value) -> str:
    if value is None:
        return "-"
    if abs(value) >= 100 or float(value).is_integer():
        return f"{value:.0f}"
    return f"{value:.1f}"


def cell(vals) -> str:
    if not vals:
        return "-"
    return f"{number(statistics.median(vals))}/{number(max(vals))}"


def ratio(num, den) -> str:
    if num is None or den is None:
        return "-"
    if den == 0:
        return "1 (0/0)" if num == 0 else "inf (x/0)"
    return f"{num / den:.2f}"


def table(title, columns, rows) -> None:
    """@rows: (size, method, [cell text per column])"""
    print(f"\n{title}")
    print(f"  {'size':6}{'method':9}" +
          "".join(f"{c:>{WIDTH}}" for c, _ in columns))
    for size, method, cells in rows:
        print(f"  {size:6}{method:9}" +
              "".join(f"{c:>{WIDTH}}" for c in cells))


def report(results: dict) -> None:
    # pylint: disable=too-many-locals
    pairs = [(s, m) for s in SIZES for m in CHOSEN]
    table("=== per size and method, median/max over the runs: total "
          "migration time, STOP -> RESUME,\n    QEMU downtime (ms), packets "
          "lost (ICMP + UDP), blackout (ms), RAM transferred,\n    "
          "destination start-up (cpr: inside the total), guest writer rate",
          TIME_COLUMNS,
          [(s, m, [cell(values(results, s, m, k)) for _, k in TIME_COLUMNS])
           for s, m in pairs])
    table("=== memory at completion (MiB, median/max): VmRSS, RssAnon, "
          "RssShmem of source and\n    destination; destination RssShmem "
          "0.5 s after cont; shared RAM backing allocated (once)",
          MEMORY_COLUMNS,
          [(s, m, [cell(values(results, s, m, k))
                   for _, k in MEMORY_COLUMNS]) for s, m in pairs])
    rates = results.get("dirty-rate", {})
    print("\n=== host-side check of the writer: calc-dirty-rate, MiB/s "
          "(page sampling, 500 ms, once per boot)")
    for size in SIZES:
        print(f"  {size:6}" + "".join(
            f"  {m} {number(rates.get((size, m)))}" for m in CHOSEN))

    table("=== ratios of medians: method / 'local' at the same size",
          RATIO_COLUMNS,
          [(s, m, [ratio(med(results, s, m, k), med(results, s, "local", k))
                   for _, k in RATIO_COLUMNS]) for s, m in pairs])
    small, large = SIZES[0], SIZES[-1]
    table(f"=== ratios of medians: {large} / {small}, each method against "
          "itself", RATIO_COLUMNS,
          [(f"{large}", m, [ratio(med(results, large, m, k),
                                  med(results, small, m, k))
                            for _, k in RATIO_COLUMNS]) for m in CHOSEN])
    after = [r["stop_after_up"] for key, runs in results.items()
             if isinstance(key, tuple) and key[1] == "cpr"
             for r in runs if "stop_after_up" in r]
    if after:
        print(f"\ncpr-transfer: the source's STOP came "
              f"{number(min(after))} to {number(max(after))} ms after the "
              "destination's QMP greeting\n(all runs): the destination's "
              "device creation is inside the total time, not inside\n"
              "STOP -> RESUME")
    targets(results, small, large)
    if results.get("notes"):
        print("\n=== skipped or failed")
        for note in results["notes"]:
            print(f"  {note}")


def targets(results, small, large) -> None:
    print(f"\n=== targets ('shared' and 'cpr' at {large}; never asserted)")
    for method in ("shared", "cpr"):
        if method not in CHOSEN:
            continue
        runs = results.get((large, method), [])
        if len(SIZES) < 2 or not runs:
            print(f"  {method}: not evaluated (needs runs at two sizes, "
                  f"the largest here is {large})")
            continue
        big = med(results, large, method, "stop_resume")
        ref = med(results, small, method, "stop_resume")
        verdict = "not evaluated" if big is None or ref is None else \
            (f"{big:.1f} vs 2 x {ref:.1f} -> "
             f"{'met' if big <= 2 * ref else 'NOT met'}")
        print(f"  {method}: STOP->RESUME at {large} within 2x of {small} "
              f"(medians): {verdict}")
        totals = [r["total"] for r in runs if r.get("total") is not None]
        worst = max(totals) if totals else None
        met = worst is not None and worst < 1000
        print(f"  {method}: total time under 1 s (every run): max {worst} ms"
              f" -> {'met' if met else 'NOT met'}")
        lost = max(r["lost"] for r in runs)
        print(f"  {method}: 0 packets lost (every run): max {lost} -> "
              f"{'met' if lost == 0 else 'NOT met'}")
        if len(runs) < RUNS:
            print(f"  {method}: only {len(runs)} of {RUNS} runs at {large} "
                  "succeeded")


def cannot_run() -> str:
    """Why the benchmark cannot run here at all, or ''"""
    # pylint: disable=too-many-return-statements
    if os.geteuid() != 0:
        return "needs root (network namespace, TAP)"
    if not os.access("/dev/net/tun", os.R_OK | os.W_OK):
        return "/dev/net/tun missing"
    # pylint: disable=import-outside-toplevel
    from serieslib import paths
    for path in (paths.qemu_binary(), paths.guest_kernel(),
                 paths.guest_initrd()):
        if not path.exists():
            return f"{path} missing (QEMU build or test guest)"
    try:
        paths.ensure_qemu_python()
    except ImportError as exc:
        return f"QEMU python library: {exc}"
    if not CHOSEN or not SIZES:
        return "BENCH_METHODS or BENCH_SIZES selects nothing"
    try:
        for size in SIZES:
            _size(size)
    except ValueError as exc:
        return str(exc)
    return ""


def main():
    why = cannot_run()
    if why:
        # A report, like the other benchmarks: never a failed run
        print(f"skipped: {why}")
        return
    # pylint: disable=import-outside-toplevel
    from serieslib import Netns, paths
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    remove_stale_shm()
    print(f"QEMU {paths.qemu_binary()}, guest {paths.guest_kernel()}")
    print(f"sizes {','.join(SIZES)}, methods {','.join(CHOSEN)}, runs {RUNS},"
          f" TCG, {SMP} vCPU, queues=1, icmp {ICMP_RATE}/s, udp "
          f"{UDP_RATE}/s, writer {DIRTY_MIB} MiB at {DIRTY_RATE} MiB/s, "
          f"downtime-limit {DOWNTIME_LIMIT} ms, max-bandwidth "
          f"{MAX_BANDWIDTH or 'unlimited'}")
    swap_report("before")
    results = {}
    ns = Netns("lmsize")
    try:
        ns.add_bridge("br0", tlm.HOST_IP)
        ns.ip("link", "set", "br0", "address", tlm.BRIDGE_MAC)
        index = 0
        for size in SIZES:
            print(f"\n--- {size}")
            for method in CHOSEN:
                run_method(ns, size, method, index, results)
                index += 1
    finally:
        ns.cleanup()
        remove_stale_shm()
    report(results)
    print()
    swap_report("after")


if __name__ == "__main__":
    main()
