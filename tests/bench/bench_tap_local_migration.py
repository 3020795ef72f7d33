#!/usr/bin/python3
"""Benchmark: local migration of a TAP backend with fd passing versus the
path management uses today (a second TAP on the destination, plugged into
the bridge between completion and `cont`).

    tests/bench/bench_tap_local_migration.py      (as root; a report only)

One guest (TCG, queues=1, QEMU-created TAP in a bridge, own network
namespace) migrates RUNS times (default 20) with each method, from one new
QEMU process to the next, while the namespace sends 1000 ICMP echo
requests/s and a sequence-numbered UDP stream of 200 datagrams/s (see
tests/system/test_tap_local_migration.py for the traffic generator).
The destination is resumed on its MIGRATION "completed" event, as
management does.  This runs with vhost=off, then with vhost=on (which
says why it is skipped when /dev/vhost-net is missing), each with QEMU's
default downtime-limit (300 ms) and with 5 ms, a value a management may
pick for a migration at memory speed on one host.

Printed per method (median / mean / max over the runs): ICMP and UDP
packets lost, the longest gap without ICMP replies (blackout), QEMU's
downtime and total migration time, then the ratio new-TAP / fd transfer
of the medians, and the targets of the issue.

The blackout is then broken down with the QMP event timestamps: last
reply -> source STOP, STOP -> destination RESUME (the switchover: the
source's downtime, the destination's load, for the new-TAP path also the
re-plug, and `cont`), RESUME -> first reply (the guest's reaction).  Under
TCG a new QEMU process starts with an empty translation cache, so the
guest's first packets after RESUME cost thousands of fresh translations;
to show how much of the blackout that is, the same guest is stopped and
resumed (`stop`, 15 ms, `cont`) WARM_RUNS times in its own process and
the reaction time with a warm cache is printed.  The "warm-cache
estimate" replaces each run's reaction time by that median; it is an
estimate of the blackout on an accelerator without translation, labelled
as such, not a measurement.  Nothing is asserted.  Environment:
BENCH_RUNS (20), BENCH_WARM_RUNS (10), BENCH_ICMP_RATE (1000),
BENCH_UDP_RATE (200), BENCH_DOWNTIME_LIMITS (300,5).
"""

import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "system"))

# pylint: disable=wrong-import-position
import test_tap_local_migration as tlm  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "20"))
WARM_RUNS = int(os.environ.get("BENCH_WARM_RUNS", "10"))
ICMP_RATE = int(os.environ.get("BENCH_ICMP_RATE", "1000"))
UDP_RATE = int(os.environ.get("BENCH_UDP_RATE", "200"))
NETDEV = "tap,id=n0,script=no,downscript=no"
# QEMU's default, then a limit a management may choose for a migration
# over a UNIX socket on the same host (memory-speed bandwidth)
DOWNTIME_LIMITS = [int(v) for v in
                   os.environ.get("BENCH_DOWNTIME_LIMITS", "300,5").split(",")]
NIC = f"virtio-net-pci,netdev=n0,mac={tlm.MAC}"


def event_times(guest, names):
    """Wall-clock time of the first of each of @names among the QMP
    events @guest received so far ("MIGRATION:<status>" for MIGRATION)"""
    times = {}
    for ev in guest.vm.get_qmp_events(wait=False):
        name = ev["event"]
        if name == "MIGRATION":
            name += ":" + ev["data"]["status"]
        if name in names and name not in times:
            stamp = ev["timestamp"]
            times[name] = stamp["seconds"] + stamp["microseconds"] / 1e6
    return times


def breakdown(report, stop, resume):
    """The gap without replies around the source's STOP (the longest
    gap is another one when the migration's is shorter than the jitter),
    split at STOP and at the destination's RESUME (ms)"""
    if stop is None or resume is None:
        return {}
    for gap_from, gap_to in report.get("gaps_wall", []):
        if gap_from <= stop <= gap_to:
            break
    else:
        return {}
    return {"migration gap": (gap_to - gap_from) * 1000,
            "last reply -> STOP": (stop - gap_from) * 1000,
            "STOP -> RESUME": (resume - stop) * 1000,
            "RESUME -> first reply": (gap_to - resume) * 1000}


def migrate_once(ns, src, local: bool, netdev: str, old_tap: str,
                 new_tap: str, downtime_limit: int, binary=None):
    """One migration under traffic, to a new QEMU of @binary (default:
    the source's); returns (metrics, new guest)."""
    # pylint: disable=too-many-arguments
    src.qmp("migrate-set-parameters", local=local,
            downtime_limit=downtime_limit)
    src.vm.get_qmp_events(wait=False)
    gen = tlm.Traffic(ns, icmp_rate=ICMP_RATE, udp_rate=UDP_RATE)
    dst = None
    try:
        time.sleep(0.5)
        dst_netdev = netdev if local else \
            netdev.replace(",x-local-migration-supported=on", "") + \
            f",ifname={new_tap}"
        dst = src.clone(netdevs=[dst_netdev])
        if binary:
            dst.binary = binary
        dst.launch()
        # Resume the destination on its MIGRATION event, as management
        # does, rather than after polling query-migrate: the blackout then
        # measures QEMU and the path under test, not the poll interval.
        dst.qmp("migrate-set-capabilities",
                capabilities=[{"capability": "events", "state": True}])
        if local:
            dst.qmp("migrate-set-parameters", local=True)
        uri = f"unix:{ns.tmpdir}/bench-{time.time_ns()}.sock"
        dst.qmp("migrate-incoming", uri=uri)
        src.qmp("migrate", uri=uri)
        ev = dst.vm.events_wait(
            [("MIGRATION", {"data": {"status": st}})
             for st in ("completed", "failed", "cancelled")], timeout=120)
        if ev is None or ev["data"]["status"] != "completed":
            raise RuntimeError(f"migration did not complete: {ev}")
        if not local:
            # Re-plug: the old TAP leaves the bridge, the new one joins
            ns.ip("link", "set", old_tap, "nomaster")
            ns.set_up(new_tap, master="br0")
        dst.qmp("cont")
        s, d = tlm.wait_migration(src, dst)
        if s.get("status") != "completed" or d.get("status") != "completed":
            raise RuntimeError(f"migration failed: {s} {d}")
        stop = event_times(src, {"STOP"}).get("STOP")
        src.shutdown()
        time.sleep(0.5)
        report = gen.stop()
        resume = event_times(dst, {"RESUME"}).get("RESUME")
    except BaseException:
        gen.kill()
        if dst is not None:
            dst.shutdown()
        raise
    report["downtime"] = s.get("downtime")
    report["total-time"] = s.get("total-time")
    report.update(breakdown(report, stop, resume))
    return report, dst


def warm_reaction(ns, guest):
    """RESUME -> first reply (ms) after `stop`, 15 ms, `cont` of @guest
    in its own process: the guest's reaction with a warm TCG cache"""
    values = []
    for _ in range(WARM_RUNS):
        guest.vm.get_qmp_events(wait=False)
        gen = tlm.Traffic(ns, icmp_rate=ICMP_RATE, udp_rate=UDP_RATE)
        try:
            time.sleep(0.5)
            guest.qmp("stop")
            time.sleep(0.015)
            guest.qmp("cont")
            time.sleep(0.5)
            report = gen.stop()
        except BaseException:
            gen.kill()
            raise
        times = event_times(guest, {"STOP", "RESUME"})
        parts = breakdown(report, times.get("STOP"), times.get("RESUME"))
        if parts:
            values.append(parts["RESUME -> first reply"])
    return values


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return (f"{statistics.median(values):9.1f} {statistics.mean(values):9.1f}"
            f" {max(values):9.1f}")


def boot_guest(ns, name, netdev, tap, **guest_args):
    """The bench guest in @ns, whose br0 exists: a QEMU created TAP @tap
    plugged into br0, the guest booted and answering, with the ICMP rate
    limits off (see Traffic); @guest_args go to Guest."""
    # pylint: disable=import-outside-toplevel
    from serieslib import Guest
    guest = Guest(ns, name=name, ip=f"{tlm.GUEST_IP}/24", mac=tlm.MAC,
                  netdevs=[f"{netdev},ifname={tap}"], devices=[NIC],
                  **guest_args)
    try:
        guest.launch()
        ns.set_up(tap, master="br0")
        guest.wait_ready()
        ns.ping(tlm.GUEST_IP, timeout=60)
        guest.cmd("echo 0 > /proc/sys/net/ipv4/icmp_ratelimit; "
                  "echo 0 > /proc/sys/net/ipv4/icmp_ratemask; "
                  "echo 100000 > /proc/sys/net/ipv4/icmp_msgs_per_sec")
    except BaseException:
        guest.shutdown()
        raise
    return guest


def bench(vhost: bool, downtime_limit: int):
    # pylint: disable=import-outside-toplevel,too-many-locals
    from serieslib import Netns
    netdev = f"{NETDEV},x-local-migration-supported=on"
    if vhost:
        netdev += ",vhost=on"
    ns = Netns("lmbench")
    guest = None
    results = {"fd transfer": [], "new TAP": []}
    try:
        ns.add_bridge("br0", tlm.HOST_IP)
        ns.ip("link", "set", "br0", "address", tlm.BRIDGE_MAC)
        guest = boot_guest(ns, "bench", netdev, "lmb0")
        print(f"vhost={'on' if vhost else 'off'} "
              f"downtime-limit={downtime_limit} ms accel={guest.accel} "
              f"runs={RUNS} icmp={ICMP_RATE}/s udp={UDP_RATE}/s, guest "
              "queues=1, TAP in a bridge")
        # fd transfer first: the new-TAP runs move the guest to other TAPs
        for i in range(RUNS):
            report, guest = migrate_once(ns, guest, True, netdev, "lmb0", "",
                                         downtime_limit)
            results["fd transfer"].append(report)
            print(f"  fd transfer {i + 1:2}: {report}", flush=True)
        old_tap = "lmb0"
        for i in range(RUNS):
            new_tap = f"lmb{1 + i % 2}"
            report, guest = migrate_once(ns, guest, False, netdev, old_tap,
                                         new_tap, downtime_limit)
            old_tap = new_tap
            results["new TAP"].append(report)
            print(f"  new TAP     {i + 1:2}: {report}", flush=True)
        warm = warm_reaction(ns, guest)
        print(f"  warm stop/cont, RESUME -> first reply (ms): "
              f"{[round(v, 1) for v in warm]}")
    finally:
        if guest is not None:
            guest.shutdown()
        ns.cleanup()
    report_results(results, median(warm))


def report_results(results, warm):
    # pylint: disable=too-many-locals
    metrics = [("ICMP lost (packets)", "icmp_lost"),
               ("UDP lost (packets)", "udp_lost"),
               ("blackout (ms)", "blackout_ms"),
               ("QEMU downtime (ms)", "downtime"),
               ("total migration time (ms)", "total-time"),
               ("gap around STOP (ms)", "migration gap"),
               ("  last reply -> STOP", "last reply -> STOP"),
               ("  STOP -> RESUME", "STOP -> RESUME"),
               ("  RESUME -> first reply", "RESUME -> first reply")]
    if warm is not None:
        for reports in results.values():
            for r in reports:
                if "RESUME -> first reply" in r:
                    r["warm"] = (r["migration gap"] -
                                 r["RESUME -> first reply"] + warm)
        metrics.append(("  warm-cache estimate", "warm"))
    print()
    print(f"{'':28} {'method':12} {'median':>9} {'mean':>9} {'max':>9}")
    for title, key in metrics:
        for method, reports in results.items():
            print(f"{title:28} {method:12} "
                  f"{summary([r.get(key) for r in reports])}")
    print()
    print("ratio new TAP / fd transfer (medians):")
    for title, key in metrics:
        local = median([r.get(key) for r in results["fd transfer"]]) or 0
        new = median([r.get(key) for r in results["new TAP"]]) or 0
        ratio = f"{new / local:.2f}" if local else \
            ("inf (fd transfer: 0)" if new else "1 (both 0)")
        print(f"  {title.strip():28} {ratio}")
    if warm is not None:
        print(f"\nguest reaction with a warm TCG cache (stop/cont in one "
              f"process, median): {warm:.1f} ms")

    fd = results["fd transfer"]
    new = results["new TAP"]
    print("\ntargets (fd transfer, medians):")
    lost = max((r.get("icmp_lost", 0) + r.get("udp_lost", 0)) for r in fd)
    print(f"  0 packets lost:                  max {lost} "
          f"-> {'met' if lost == 0 else 'NOT met'}")
    for label, key in (("measured", "blackout_ms"),
                       ("warm-cache estimate", "warm")):
        black = median([r.get(key) for r in fd])
        down = median([r.get("downtime") for r in fd])
        other = median([r.get(key) for r in new])
        if black is None or down is None or not other:
            continue
        print(f"  blackout <= downtime + 5 ms ({label}): {black:.1f} vs "
              f"{down + 5:.1f} -> "
              f"{'met' if black <= down + 5 else 'NOT met'}")
        print(f"  blackout <= 50% of new TAP ({label}): {black:.1f} vs "
              f"{other / 2:.1f} ({100 * black / other:.0f}%) -> "
              f"{'met' if black <= other / 2 else 'NOT met'}")


def main():
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        print("skipped: needs root and /dev/net/tun")
        return
    # pylint: disable=import-outside-toplevel
    from serieslib import paths
    if not paths.qemu_binary().exists() or \
            not paths.guest_kernel().exists():
        print("skipped: QEMU build or test guest missing")
        return
    for vhost in (False, True):
        if vhost and not os.path.exists("/dev/vhost-net"):
            print("vhost=on: skipped: /dev/vhost-net missing")
            continue
        for downtime_limit in DOWNTIME_LIMITS:
            bench(vhost, downtime_limit)
            print()


if __name__ == "__main__":
    main()
