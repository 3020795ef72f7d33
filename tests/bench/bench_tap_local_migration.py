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

Printed per method (median / mean / max over the runs): ICMP and UDP
packets lost, the longest gap without ICMP replies (blackout), QEMU's
downtime and total migration time, then the ratio new-TAP / fd transfer
of the medians.  Nothing is asserted.  Environment: BENCH_RUNS (20),
BENCH_ICMP_RATE (1000), BENCH_UDP_RATE (200).
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
ICMP_RATE = int(os.environ.get("BENCH_ICMP_RATE", "1000"))
UDP_RATE = int(os.environ.get("BENCH_UDP_RATE", "200"))
NETDEV = "tap,id=n0,script=no,downscript=no"
LOCAL = NETDEV + ",x-local-migration-supported=on"
NIC = f"virtio-net-pci,netdev=n0,mac={tlm.MAC}"


def migrate_once(ns, src, local: bool, old_tap: str, new_tap: str):
    """One migration under traffic; returns (metrics, new guest)."""
    # pylint: disable=import-outside-toplevel
    from serieslib import start_destination
    src.qmp("migrate-set-parameters", local=local)
    gen = tlm.Traffic(ns, icmp_rate=ICMP_RATE, udp_rate=UDP_RATE)
    dst = None
    try:
        time.sleep(0.5)
        netdev = LOCAL if local else f"{NETDEV},ifname={new_tap}"
        dst = start_destination(src, netdevs=[netdev])
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
        src.shutdown()
        time.sleep(0.5)
        report = gen.stop()
    except BaseException:
        gen.kill()
        if dst is not None:
            dst.shutdown()
        raise
    report["downtime"] = s.get("downtime")
    report["total-time"] = s.get("total-time")
    return report, dst


def summary(values):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return (f"{statistics.median(values):9.1f} {statistics.mean(values):9.1f}"
            f" {max(values):9.1f}")


def main():
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        print("skipped: needs root and /dev/net/tun")
        return
    # pylint: disable=import-outside-toplevel
    from serieslib import Guest, Netns, paths
    if not paths.qemu_binary().exists() or \
            not paths.guest_kernel().exists():
        print("skipped: QEMU build or test guest missing")
        return

    ns = Netns("lmbench")
    guest = None
    results = {"fd transfer": [], "new TAP": []}
    try:
        ns.add_bridge("br0", tlm.HOST_IP)
        ns.ip("link", "set", "br0", "address", tlm.BRIDGE_MAC)
        guest = Guest(ns, name="bench", ip=f"{tlm.GUEST_IP}/24", mac=tlm.MAC,
                      netdevs=[LOCAL + ",ifname=lmb0"], devices=[NIC])
        guest.launch()
        ns.set_up("lmb0", master="br0")
        guest.wait_ready()
        ns.ping(tlm.GUEST_IP, timeout=60)
        guest.cmd("echo 0 > /proc/sys/net/ipv4/icmp_ratelimit; "
                  "echo 0 > /proc/sys/net/ipv4/icmp_ratemask; "
                  "echo 100000 > /proc/sys/net/ipv4/icmp_msgs_per_sec")
        print(f"accel={guest.accel} runs={RUNS} icmp={ICMP_RATE}/s "
              f"udp={UDP_RATE}/s, guest queues=1, TAP in a bridge")
        # fd transfer first: the new-TAP runs move the guest to other TAPs
        for i in range(RUNS):
            report, guest = migrate_once(ns, guest, True, "lmb0", "")
            results["fd transfer"].append(report)
            print(f"  fd transfer {i + 1:2}: {report}", flush=True)
        old_tap = "lmb0"
        for i in range(RUNS):
            new_tap = f"lmb{1 + i % 2}"
            report, guest = migrate_once(ns, guest, False, old_tap, new_tap)
            old_tap = new_tap
            results["new TAP"].append(report)
            print(f"  new TAP     {i + 1:2}: {report}", flush=True)
    finally:
        if guest is not None:
            guest.shutdown()
        ns.cleanup()

    metrics = [("ICMP lost (packets)", "icmp_lost"),
               ("UDP lost (packets)", "udp_lost"),
               ("blackout (ms)", "blackout_ms"),
               ("QEMU downtime (ms)", "downtime"),
               ("total migration time (ms)", "total-time")]
    print()
    print(f"{'':28} {'method':12} {'median':>9} {'mean':>9} {'max':>9}")
    for title, key in metrics:
        for method, reports in results.items():
            print(f"{title:28} {method:12} "
                  f"{summary([r.get(key) for r in reports])}")
    print()
    print("ratio new TAP / fd transfer (medians):")
    for title, key in metrics:
        local = statistics.median([r.get(key) or 0
                                   for r in results["fd transfer"]])
        new = statistics.median([r.get(key) or 0
                                 for r in results["new TAP"]])
        ratio = f"{new / local:.2f}" if local else \
            ("inf (fd transfer: 0)" if new else "1 (both 0)")
        print(f"  {title:28} {ratio}")


if __name__ == "__main__":
    main()
