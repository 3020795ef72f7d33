#!/usr/bin/python3
"""Benchmark: the upgrade path, patched 10.0.13 -> patched 10.2.2 on one
host, against a migration between two QEMUs of the same package.

    tests/bench/bench_upgrade_from_10_0.py      (as root; a report only)

One guest (TCG, queues=1, machine pc-q35-10.0, a QEMU-created TAP with
x-local-migration-supported=on in a bridge, own network namespace) boots
on the patched 10.0.13 and, RUNS times (default 8), migrates with the TAP
fds handed over (migration parameter 'local'):

    10.0.13 -> 10.2.2   the upgrade
    10.2.2  -> 10.2.2   the same package, the new one
    10.2.2  -> 10.0.13  the way back (a package rolled back)
    10.0.13 -> 10.0.13  the same package, the old one

under the traffic of bench_tap_local_migration.py (1000 ICMP echo
requests/s, 200 numbered UDP datagrams/s).  Then RUNS / 2 ordinary
upgrades (a TAP of its own for each destination, re-plugged into the
bridge on completion) give the path without the series' hand-over.
Printed per path (median / mean / max): packets lost, the blackout, QEMU's
downtime and total time, and STOP -> RESUME; then the ratios upgrade /
same package (10.2.2) and ordinary / hand-over upgrade of the medians.
Nothing is asserted.  Binaries as in tests/system/test_upgrade_from_10_0.py
(UPGRADE_OLD_QEMU, UPGRADE_NEW_QEMU); BENCH_RUNS (8).
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))
sys.path.insert(0, os.path.join(HERE, "..", "system"))
sys.path.insert(0, HERE)

# pylint: disable=wrong-import-position
import bench_tap_local_migration as blm  # noqa: E402
import test_tap_local_migration as tlm  # noqa: E402
import test_upgrade_from_10_0 as upg  # noqa: E402

RUNS = int(os.environ.get("BENCH_RUNS", "8"))
NETDEV = f"{blm.NETDEV},x-local-migration-supported=on"
OLD, NEW = "10.0.13", "10.2.2"
PATHS = [(OLD, NEW), (NEW, NEW), (NEW, OLD), (OLD, OLD)]
BINARY = {OLD: upg.OLD_QEMU, NEW: upg.NEW_QEMU}
METRICS = [("ICMP + UDP lost (packets)", "lost"),
           ("blackout (ms)", "blackout_ms"),
           ("QEMU downtime (ms)", "downtime"),
           ("total migration time (ms)", "total-time"),
           ("STOP -> RESUME (ms)", "STOP -> RESUME")]


def label(pair):
    return f"{pair[0]} -> {pair[1]}"


def run():
    # pylint: disable=import-outside-toplevel,too-many-locals
    from serieslib import Netns
    ns = Netns("upbench")
    guest = None
    results = {label(p): [] for p in PATHS}
    ordinary = f"ordinary {label((OLD, NEW))}"
    results[ordinary] = []
    try:
        ns.add_bridge("br0", tlm.HOST_IP)
        ns.ip("link", "set", "br0", "address", tlm.BRIDGE_MAC)
        guest = blm.boot_guest(ns, "upbench", NETDEV, "upb0",
                               machine=upg.MACHINE, binary=upg.OLD_QEMU)
        print(f"machine={upg.MACHINE} accel={guest.accel} runs={RUNS} "
              f"icmp={blm.ICMP_RATE}/s udp={blm.UDP_RATE}/s, queues=1, "
              "TAP in a bridge, downtime-limit 300 ms")
        for i in range(RUNS):
            for pair in PATHS:
                report, guest = blm.migrate_once(
                    ns, guest, True, NETDEV, "upb0", "", 300,
                    binary=BINARY[pair[1]])
                report["lost"] = report["icmp_lost"] + report["udp_lost"]
                results[label(pair)].append(report)
                print(f"  {label(pair):18} {i + 1:2}: lost {report['lost']}"
                      f" blackout {report.get('blackout_ms')} ms downtime "
                      f"{report['downtime']} ms", flush=True)
        # ordinary migrations on a TAP of their own: up, then back down
        old_tap, n = "upb0", 0
        for i in range(max(1, RUNS // 2)):
            for binary in (upg.NEW_QEMU, upg.OLD_QEMU):
                n += 1
                new_tap = f"upb{1 + n % 2}"
                report, guest = blm.migrate_once(ns, guest, False, NETDEV,
                                                 old_tap, new_tap, 300,
                                                 binary=binary)
                old_tap = new_tap
                if binary != upg.NEW_QEMU:
                    continue
                report["lost"] = report["icmp_lost"] + report["udp_lost"]
                results[ordinary].append(report)
                print(f"  {ordinary} {i + 1:2}: lost {report['lost']} "
                      f"blackout {report.get('blackout_ms')} ms", flush=True)
    finally:
        if guest is not None:
            guest.shutdown()
        ns.cleanup()

    print()
    print(f"{'':28} {'path':28} {'median':>9} {'mean':>9} {'max':>9}")
    for title, key in METRICS:
        for name, reports in results.items():
            print(f"{title:28} {name:28} "
                  f"{blm.summary([r.get(key) for r in reports])}")
    print()

    def ratio(a, b, key):
        x = blm.median([r.get(key) for r in results[a]])
        y = blm.median([r.get(key) for r in results[b]])
        if not y:
            return "n/a (0)" if not x else "inf"
        return f"{x / y:.2f}"
    up, same = label((OLD, NEW)), label((NEW, NEW))
    print(f"ratio upgrade ({up}) / same package ({same}), medians:")
    for title, key in METRICS[1:]:
        print(f"  {title:28} {ratio(up, same, key)}")
    print("ratio ordinary / hand-over upgrade, medians:")
    for title, key in METRICS[1:]:
        print(f"  {title:28} {ratio(ordinary, up, key)}")
    lost = max(r["lost"] for p in PATHS for r in results[label(p)])
    print(f"packets lost with the hand-over, any path: max {lost}")


def main():
    if os.geteuid() != 0 or not os.path.exists("/dev/net/tun"):
        print("skipped: needs root and /dev/net/tun")
        return
    missing = [p for p in (upg.OLD_QEMU, upg.NEW_QEMU)
               if not os.access(p, os.X_OK)]
    if missing:
        print(f"skipped: {missing[0]} missing (make BASE=10.0.13 builds "
              "the 10.0.13 one)")
        return
    run()


if __name__ == "__main__":
    main()
