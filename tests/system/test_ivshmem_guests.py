#!/usr/bin/python3
"""ivshmem-doorbell MSI-X interrupts counted per vector in real guests.

    python3 tests/system/test_ivshmem_guests.py            (prints TAP)

Stays here rather than in tests/functional: ivshmem-doorbell signals
only with MSI-X, and counting MSI-X per vector in a guest needs the
test-only module tests/guest/ivshmem-irq built against the guest
kernel's headers, which has no place in a QEMU tree.  Shared memory,
the legacy device and INTx doorbells are covered in-tree by
tests/functional/x86_64/test_ivshmem_guests.py.

No network, no root: the guests have no NIC and the shared memory lives
in /dev/shm.  Skips (TAP "ok ... # SKIP reason") when the QEMU binary,
its python library, the guest image or the module cannot be had.
Environment: see tests/lib/serieslib/__init__.py (QEMU_BUILD_DIR,
GUEST_DIR, ...).
"""

import base64
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "lib"))

# pylint: disable=wrong-import-position
from serieslib import (main, Guest, paths, require_binary,  # noqa: E402
                       require_guest, require_qemu_python)

SHM_SIZE = 1 << 20
IVSHMEM_VENDOR = "0x1af4"
IVSHMEM_DEVICE = "0x1110"

# Shell helper typed into the guests once: ivs_bar2 REV prints the
# physical address of BAR2 of the ivshmem device with PCI revision REV
# (1: ivshmem-plain/-doorbell, 0: legacy ivshmem) and enables the device
# (memory decoding), ivs_info REV prints "BDF rev pin bar2-flags".
GUEST_FUNCS = r"""
ivs_dev() {
  for d in /sys/bus/pci/devices/*; do
    [ "$(cat $d/vendor)" = 0x1af4 ] && [ "$(cat $d/device)" = 0x1110 ] \
      && [ "$(cat $d/revision)" = "$(printf 0x%02x $1)" ] && { echo $d; return 0; }
  done
  return 1
}
ivs_bar2() { d=$(ivs_dev $1) || return 1; { echo 1 > $d/enable; } 2>/dev/null;
  sed -n 3p $d/resource | cut -d' ' -f1; }
ivs_bar0() { d=$(ivs_dev $1) || return 1; { echo 1 > $d/enable; } 2>/dev/null;
  sed -n 1p $d/resource | cut -d' ' -f1; }
ivs_counts() { d=$(ivs_dev $1) || return 1; cat $d/irq_counts; }
ivs_info() { d=$(ivs_dev $1) || return 1;
  echo ${d##*/} $(cat $d/revision) $(od -An -tu1 -j61 -N1 $d/config) \
    $(sed -n 3p $d/resource | cut -d' ' -f3); }
"""


def load_funcs(guest: Guest) -> None:
    """Define GUEST_FUNCS in the guest's console shell."""
    blob = base64.b64encode(GUEST_FUNCS.encode()).decode()
    guest.cmd(f"echo {blob} | base64 -d > /tmp/ivs-funcs.sh")
    guest.cmd(". /tmp/ivs-funcs.sh")


def shm_name() -> str:
    return f"ivshmem-guests-{os.getpid()}-{secrets.token_hex(4)}"


class GuestMixin:
    """Shared helpers: booting guests for a class, console dumps."""

    guests = []

    @classmethod
    def start_guests(cls, *guests: Guest) -> None:
        """Launch all guests, then wait for all (TCG boots overlap)."""
        for guest in guests:
            cls.guests.append(guest)
            guest.launch()
        for guest in guests:
            guest.wait_ready()

    @classmethod
    def stop_guests(cls) -> None:
        for guest in cls.guests:
            guest.shutdown()

    @classmethod
    def dump_consoles(cls) -> None:
        for guest in cls.guests:
            if guest.console is not None:
                print(f"--- console of {guest.name} (tail) ---")
                print(guest.console.tail(1500))

    def run_checked(self, func):
        try:
            func()
        except BaseException:
            self.dump_consoles()
            raise


def require_basics() -> None:
    require_binary()               # the QEMU binary
    require_qemu_python()
    require_guest()
    if not os.path.isdir("/dev/shm"):
        raise unittest.SkipTest("/dev/shm missing")


class IvshmemDoorbellGuests(GuestMixin, unittest.TestCase):
    """Interrupts between two doorbell guests and the host.

        ivshmem-server -F -S <tmp>/ivs.sock -M <shm> -l 1M -n 2
          +-- guest A: ivshmem-doorbell,vectors=2     (peer id a)
          +-- guest B: ivshmem-doorbell,vectors=2     (peer id b)
          +-- ivshmem-client -S <tmp>/ivs.sock        (peer id c, host)

    Inside the guests, the test-only driver tests/guest/ivshmem-irq
    (built by tests/guest/build-ivshmem-irq.sh, loaded from an initramfs
    overlay) counts MSI-X interrupts per vector in sysfs; the guests ring
    doorbells by writing BAR0 through /dev/mem.  Each interrupt is waited
    for before the next doorbell, so the counts are exact (eventfds
    would merge back-to-back rings into one interrupt).
    Skips when the driver cannot be built (no linux-headers for the
    guest kernel) or the contrib tools are not built.
    """

    guests = []

    @classmethod
    def setUpClass(cls):
        require_basics()
        build_dir = paths.qemu_build_dir()
        cls.server_bin = build_dir / "contrib/ivshmem-server/ivshmem-server"
        cls.client_bin = build_dir / "contrib/ivshmem-client/ivshmem-client"
        for tool in (cls.server_bin, cls.client_bin):
            require_binary(tool)
        require_binary("stdbuf")
        cls.guests = []
        cls.server = cls.client = None
        cls.tmpdir = tempfile.mkdtemp(prefix="ivshmem-guests-")
        try:
            overlay = build_overlay()
            cls.initrd = os.path.join(cls.tmpdir, "initrd-ivshmem.cpio.gz")
            with open(cls.initrd, "wb") as out:
                for part in (paths.guest_initrd(), overlay):
                    with open(part, "rb") as f:
                        shutil.copyfileobj(f, out)
            cls.sock = os.path.join(cls.tmpdir, "ivs.sock")
            cls.shm = shm_name()
            cls.server = subprocess.Popen(
                [str(cls.server_bin), "-F", "-S", cls.sock, "-M", cls.shm,
                 "-l", "1M", "-n", "2"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            deadline = time.monotonic() + 10
            while not os.path.exists(cls.sock):
                if cls.server.poll() is not None or \
                        time.monotonic() > deadline:
                    raise RuntimeError("ivshmem-server did not start: " +
                                       cls.server.stderr.read().decode())
                time.sleep(0.05)

            dev = ("ivshmem-doorbell,chardev=ivs,vectors=2,id=db")
            chardev = f"socket,id=ivs,path={cls.sock}"
            cls.a = Guest(name="ivs-db-a", devices=[dev],
                          extra_args=["-chardev", chardev])
            cls.b = Guest(name="ivs-db-b", devices=[dev],
                          extra_args=["-chardev", chardev])
            for guest in (cls.a, cls.b):
                guest.initrd = cls.initrd
            t0 = time.monotonic()
            cls.start_guests(cls.a, cls.b)
            print(f"two TCG guests booted in {time.monotonic() - t0:.1f}s")

            cls.client = HostClient(cls.client_bin, cls.sock)
            cls.ids = {}
            cls.bar0 = {}
            for key, guest in (("a", cls.a), ("b", cls.b)):
                load_funcs(guest)
                kver = guest.cmd("uname -r")
                guest.cmd(f"insmod /lib/modules/{kver}/extra/"
                          "ivshmem_irqcount.ko")
                cls.bar0[key] = int(guest.cmd("ivs_bar0 1"), 16)
                cls.ids[key] = int(guest.cmd(
                    f"devmem {cls.bar0[key] + 8:#x} 32"), 16)
            cls.ids["c"] = cls.client.our_id()
            print("peer ids: " +
                  " ".join(f"{k}={v}" for k, v in cls.ids.items()))
        except BaseException:
            cls.dump_consoles()
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stop_guests()
        if cls.client is not None:
            cls.client.close()
        if cls.server is not None:
            cls.server.terminate()
            try:
                cls.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                cls.server.kill()
                cls.server.wait()
        shutil.rmtree(getattr(cls, "tmpdir", ""), ignore_errors=True)
        if getattr(cls, "shm", None) and \
                os.path.exists(f"/dev/shm/{cls.shm}"):
            os.unlink(f"/dev/shm/{cls.shm}")

    def counts(self, guest: Guest) -> list:
        return [int(x) for x in guest.cmd("ivs_counts 1").split()]

    def wait_counts(self, guest: Guest, want: list,
                    timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while True:
            got = self.counts(guest)
            if got == want or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(got, want, f"interrupt counts of {guest.name}")

    def ring(self, guest: Guest, key: str, peer: str, vector: int) -> None:
        value = self.ids[peer] << 16 | vector
        guest.cmd(f"devmem {self.bar0[key] + 12:#x} 32 {value:#x}")

    def test_interrupts(self):
        def scenario():
            a, b, ids = self.a, self.b, self.ids
            self.assertEqual(len(set(ids.values())), 3, ids)
            self.assertEqual(self.counts(a), [0, 0])
            self.assertEqual(self.counts(b), [0, 0])

            # host client -> A vector 1, -> B vector 0
            self.client.send(f"int {ids['a']} 1")
            self.wait_counts(a, [0, 1])
            self.client.send(f"int {ids['b']} 0")
            self.wait_counts(b, [1, 0])

            # A -> B vector 1, three times; B -> A vector 0, twice
            for n in range(1, 4):
                self.ring(a, "a", "b", 1)
                self.wait_counts(b, [1, n])
            for n in range(1, 3):
                self.ring(b, "b", "a", 0)
                self.wait_counts(a, [n, 1])

            # guests -> host client
            self.ring(a, "a", "c", 1)
            self.client.wait_for(r"receive notification .*vector=1")
            self.ring(b, "b", "c", 0)
            self.client.wait_for(r"receive notification .*vector=0")

            # nothing else arrived, and the kernel saw the same counts
            self.assertEqual(self.counts(a), [2, 1])
            self.assertEqual(self.counts(b), [1, 3])
            for guest, want in ((a, [2, 1]), (b, [1, 3])):
                lines = guest.cmd("grep ivshmem- /proc/interrupts")
                got = [sum(int(x) for x in line.split()[1:-3]
                           if x.isdigit())
                       for line in lines.splitlines()]
                self.assertEqual(got, want, lines)
        self.run_checked(scenario)


class HostClient:
    """contrib/ivshmem-client as a host peer, driven through stdin."""

    def __init__(self, binary, sock: str):
        self.proc = subprocess.Popen(
            ["stdbuf", "-oL", str(binary), "-S", sock],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT, text=True, bufsize=1)
        self.output = []
        self.lock = threading.Lock()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.lock:
                self.output.append(line.rstrip("\n"))

    def send(self, command: str) -> None:
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()

    def wait_for(self, pattern: str, timeout: float = 30) -> str:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                for line in self.output:
                    if regex.search(line):
                        self.output.remove(line)
                        return line
            time.sleep(0.05)
        with self.lock:
            text = "\n".join(self.output)
        raise AssertionError(f"ivshmem-client: no {pattern!r} in:\n{text}")

    def our_id(self) -> int:
        self.send("dump")
        line = self.wait_for(r"our_id = \d+")
        return int(line.split("=")[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def build_overlay() -> str:
    """Build (or reuse) the ivshmem_irqcount initramfs overlay; skip the
    test with the script's reason if that is not possible."""
    script = os.path.join(HERE, "..", "guest", "build-ivshmem-irq.sh")
    proc = subprocess.run([script, str(paths.guest_dir())],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, check=False, timeout=600)
    if proc.returncode != 0:
        raise unittest.SkipTest("cannot build the guest interrupt-counting "
                                "driver: " +
                                (proc.stderr.strip().splitlines() or
                                 ["?"])[-1])
    return proc.stdout.strip().splitlines()[-1]


if __name__ == "__main__":
    main()
