#!/usr/bin/python3
"""Benchmark: what the macvtap mrg_rxbuf compat costs (iperf3, TCP).

    python3 tests/bench/bench_macvtap_iperf.py        (as root)

A guest on a macvtap (bridge mode, on one end of a veth pair inside a
private namespace; the namespace's address 198.18.0.1 sits on the other
end) runs iperf3 against an iperf3 server in the namespace, in both
directions, once with mergeable rx buffers (policy off) and once with
x-macvtap-mrg-rxbuf-compat=on (mrg_rxbuf cleared, auto-detected macvtap).

iperf3 is not part of the busybox guest: the bench packs the host's
iperf3 (Debian packages iperf3 + libiperf0) and the shared libraries it
needs into a second cpio archive and appends it to the guest initramfs
(the kernel unpacks concatenated archives in order).  Guests usually run
under TCG here, so absolute numbers are noisy; compare the two rows.
Prints a report; asserts nothing, and prints why when it cannot run.
"""

import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

# pylint: disable=wrong-import-position
from serieslib import Guest, Netns, paths  # noqa: E402

MAC = "52:54:00:4d:56:02"
HOST_IP = "198.18.0.1"
GUEST_IP = "198.18.0.2"
DURATION = int(os.environ.get("BENCH_MACVTAP_SECONDS", "10"))


def build_iperf_cpio(workdir: str) -> str:
    """cpio.gz with iperf3 and its libraries, at their host paths."""
    iperf = shutil.which("iperf3")
    if not iperf:
        raise RuntimeError("iperf3 not installed (apt-get install iperf3)")
    files = [os.path.realpath(iperf)]
    out = subprocess.run(["ldd", iperf], capture_output=True, text=True,
                         check=True).stdout
    for line in out.splitlines():
        match = re.search(r"(/\S+)", line)
        if match:
            files.append(match.group(1))
    root = os.path.join(workdir, "root")
    for path in files:
        real = os.path.realpath(path)
        for dest in {path, real}:
            target = os.path.join(root, dest.lstrip("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(real, target)
    os.makedirs(os.path.join(root, "usr/bin"), exist_ok=True)
    if not os.path.exists(os.path.join(root, "usr/bin/iperf3")):
        shutil.copy2(os.path.realpath(iperf),
                     os.path.join(root, "usr/bin/iperf3"))
    names = subprocess.run(["find", ".", "-mindepth", "1"], cwd=root,
                           capture_output=True, text=True,
                           check=True).stdout
    extra = os.path.join(workdir, "iperf.cpio")
    with open(extra, "wb") as f:
        subprocess.run(["cpio", "--quiet", "-o", "-H", "newc"], cwd=root,
                       input=names.encode(), stdout=f, check=True)
    # Both archives uncompressed, back to back: the kernel reads on
    # after the first archive's trailer.
    combined = os.path.join(workdir, "initramfs-iperf.cpio")
    with open(combined, "wb") as out_f:
        subprocess.run(["gzip", "-dc", str(paths.guest_initrd())],
                       stdout=out_f, check=True)
        with open(extra, "rb") as in_f:
            shutil.copyfileobj(in_f, out_f)
    return combined


def parse_iperf(output: str):
    """Mbit/s of the receiver summary line of an iperf3 client run."""
    for line in output.splitlines():
        if "receiver" in line:
            match = re.search(r"([\d.]+)\s+([KMG])bits/sec", line)
            if match:
                scale = {"K": 1e-3, "M": 1.0, "G": 1e3}[match.group(2)]
                return float(match.group(1)) * scale
    return None


def run_case(ns: Netns, initrd: str, compat: bool):
    guest = Guest(ns, name="bench-mvt", machine="q35", ip=f"{GUEST_IP}/24",
                  mac=MAC, netdevs=["tap,id=hn0,ifname=mvt0,script=no,"
                                    "downscript=no"],
                  devices=["virtio-net-pci,id=nic0,netdev=hn0,mac=" + MAC
                           + (",x-macvtap-mrg-rxbuf-compat=on" if compat
                              else "")])
    guest.initrd = initrd
    server = None
    try:
        guest.boot()
        mrg = guest.qmp("qom-get", path="/machine/peripheral/nic0",
                        property="mrg_rxbuf")
        features = guest.cmd("cat /sys/bus/virtio/devices/*/features")
        guest.cmd("iperf3 --version", timeout=30)
        ns.ping(GUEST_IP, timeout=30)
        server = ns.popen("iperf3", "-s", stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL)
        results = {}
        for label, extra in (("guest->host", ""), ("host->guest", " -R")):
            out = guest.cmd(f"iperf3 -c {HOST_IP} -t {DURATION} -f m"
                            f"{extra}", timeout=DURATION + 60, check=False)
            results[label] = parse_iperf(out)
        return mrg, features.strip()[15], results, guest.accel
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        guest.shutdown()


def main() -> int:
    print("macvtap mrg_rxbuf compat: iperf3 TCP throughput guest <-> host")
    if os.geteuid() != 0:
        print("not run: needs root (namespaces, macvtap)")
        return 0
    for need in ("iperf3", "ldd", "cpio"):
        if not shutil.which(need):
            print(f"not run: {need} missing")
            return 0
    if not paths.qemu_binary().exists() or not paths.guest_initrd().exists():
        print("not run: QEMU build or guest missing")
        return 0
    workdir = tempfile.mkdtemp(prefix="bench-macvtap-")
    try:
        initrd = build_iperf_cpio(workdir)
        rows = []
        for compat in (False, True):
            with Netns("bench-mvt") as ns:
                ns.add_veth("v0", "v1")
                ns.add_address("v1", f"{HOST_IP}/24")
                ns.add_macvtap("mvt0", "v0", mode="bridge")
                ns.ip("link", "set", "mvt0", "address", MAC)
                mrg, bit, res, accel = run_case(ns, initrd, compat)
                rows.append((compat, mrg, bit, res))
        print(f"{'policy':<8} {'mrg_rxbuf':<10} {'bit15':<6} "
              f"{'guest->host Mbit/s':>19} {'host->guest Mbit/s':>19}")
        for compat, mrg, bit, res in rows:
            def fmt(value):
                return "n/a" if value is None else f"{value:.1f}"
            print(f"{'on' if compat else 'off':<8} {str(mrg):<10} {bit:<6} "
                  f"{fmt(res['guest->host']):>19} "
                  f"{fmt(res['host->guest']):>19}")
        print(f"({DURATION} s per direction, 1 vCPU, userspace virtio-net "
              f"(no vhost-net), accel {accel})")
    except Exception as exc:  # pylint: disable=broad-except
        print(f"benchmark failed: {exc}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
