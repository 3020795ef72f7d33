#!/usr/bin/python3
"""ivshmem with real guests: shared memory and the legacy front end.

    python3 tests/system/test_ivshmem_guests.py            (prints TAP)

No network, no root: the guests have no NIC and the shared memory lives
in /dev/shm.

IvshmemPlainGuests (two guests booted once for the class):

    /dev/shm/ivshmem-guests-<pid>-<rand> (1 MiB, share=on)
      +-- guest A: ivshmem-plain,memdev=...                   (rev 1, 64-bit)
      +-- guest B: ivshmem-plain,memdev=...                   (rev 1, 64-bit)
      |            ivshmem,shm=<same>,size=1M,use64=0,msi=off (legacy,
      |                                                        rev 0, 32-bit)
      +-- the host (reads and writes the file)

  * test_a_to_b_and_host: A writes words into its BAR2 with busybox
    `devmem` (physical address from /sys/bus/pci/devices/*/resource);
    B reads them through its BAR2 and the host reads them from the file.
  * test_b_and_host_to_a: the host and B write, A reads.
  * test_legacy_device_in_guest: B's legacy device shows revision 0,
    interrupt pin 1 and a 32-bit BAR2 in sysfs, and it sees the same
    memory as the plain devices; its QEMU warned that the device is
    deprecated and printed the modern equivalent.

Doorbell guests (ivshmem-server + ivshmem-client + interrupts counted in
the guests) are in IvshmemDoorbellGuests, see its docstring.

Skips (TAP "ok ... # SKIP reason") when the QEMU binary, its python
library or the guest image is missing.  Environment: see
tests/lib/serieslib/__init__.py (QEMU_BUILD_DIR, GUEST_DIR, ...).
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


class IvshmemPlainGuests(GuestMixin, unittest.TestCase):
    """Two guests and the host on one ivshmem-plain backing file."""

    guests = []
    shm_path = None
    bar2 = {}

    @classmethod
    def setUpClass(cls):
        require_basics()
        cls.guests = []
        name = shm_name()
        cls.shm_path = f"/dev/shm/{name}"
        backend = (f"memory-backend-file,id=shm0,size={SHM_SIZE},"
                   f"mem-path={cls.shm_path},share=on")
        try:
            cls.a = Guest(name="ivs-a", extra_args=["-object", backend],
                          devices=["ivshmem-plain,memdev=shm0,id=plain-a"])
            cls.b = Guest(name="ivs-b", extra_args=["-object", backend],
                          devices=["ivshmem-plain,memdev=shm0,id=plain-b",
                                   f"ivshmem,shm={name},size=1M,use64=0,"
                                   "msi=off,id=legacy-b"])
            t0 = time.monotonic()
            cls.start_guests(cls.a, cls.b)
            print(f"two TCG guests booted in {time.monotonic() - t0:.1f}s")
            for guest in (cls.a, cls.b):
                load_funcs(guest)
            cls.bar2 = {"a": int(cls.a.cmd("ivs_bar2 1"), 16),
                        "b": int(cls.b.cmd("ivs_bar2 1"), 16),
                        "b-legacy": int(cls.b.cmd("ivs_bar2 0"), 16)}
            print("BAR2 addresses: "
                  + " ".join(f"{k}={v:#x}" for k, v in cls.bar2.items()))
        except BaseException:
            cls.dump_consoles()
            cls.tearDownClass()
            raise

    @classmethod
    def tearDownClass(cls):
        cls.stop_guests()
        if cls.shm_path and os.path.exists(cls.shm_path):
            os.unlink(cls.shm_path)

    # -- helpers ---------------------------------------------------------
    def devmem_write(self, guest: Guest, bar: str, offset: int,
                     value: int) -> None:
        guest.cmd(f"devmem {self.bar2[bar] + offset:#x} 32 {value:#x}")

    def devmem_read(self, guest: Guest, bar: str, offset: int) -> int:
        return int(guest.cmd(f"devmem {self.bar2[bar] + offset:#x} 32"), 16)

    def host_read(self, offset: int) -> int:
        with open(self.shm_path, "rb") as f:
            f.seek(offset)
            return int.from_bytes(f.read(4), "little")

    def host_write(self, offset: int, value: int) -> None:
        with open(self.shm_path, "r+b") as f:
            f.seek(offset)
            f.write(value.to_bytes(4, "little"))

    # -- tests -----------------------------------------------------------
    def test_a_to_b_and_host(self):
        def scenario():
            words = {0x0: 0x12345678, 0x1000: 0xdeadbeef,
                     SHM_SIZE - 4: 0xa5a55a5a}
            for off, val in words.items():
                self.devmem_write(self.a, "a", off, val)
            for off, val in words.items():
                self.assertEqual(self.devmem_read(self.b, "b", off), val,
                                 f"guest B, offset {off:#x}")
                self.assertEqual(self.host_read(off), val,
                                 f"host file, offset {off:#x}")
        self.run_checked(scenario)

    def test_b_and_host_to_a(self):
        def scenario():
            self.host_write(0x2000, 0x686f7374)           # "host"
            self.devmem_write(self.b, "b", 0x2004, 0x42424242)
            self.assertEqual(self.devmem_read(self.a, "a", 0x2000),
                             0x686f7374)
            self.assertEqual(self.devmem_read(self.a, "a", 0x2004),
                             0x42424242)
            self.assertEqual(self.host_read(0x2004), 0x42424242)
        self.run_checked(scenario)

    def test_legacy_device_in_guest(self):
        def scenario():
            # BDF rev pin flags: revision 0, interrupt pin 1, BAR2 flags
            # without IORESOURCE_MEM_64 (0x00100000)
            info = self.b.cmd("ivs_info 0").split()
            self.assertEqual(info[1], "0x00", info)
            self.assertEqual(info[2], "1", info)
            flags = int(info[3], 16)
            self.assertFalse(flags & 0x00100000, f"64-bit BAR2: {info}")
            self.assertLess(self.bar2["b-legacy"] + SHM_SIZE, 1 << 32)
            plain = self.b.cmd("ivs_info 1").split()
            self.assertEqual(plain[1], "0x01", plain)
            self.assertEqual(plain[2], "0", plain)
            self.assertTrue(int(plain[3], 16) & 0x00100000, plain)

            # The legacy device's shm= is the same file
            self.devmem_write(self.b, "b-legacy", 0x3000, 0x1e6ac100)
            self.assertEqual(self.devmem_read(self.a, "a", 0x3000),
                             0x1e6ac100)
            self.assertEqual(self.host_read(0x3000), 0x1e6ac100)
            self.devmem_write(self.a, "a", 0x3004, 0x0a0a0a0a)
            self.assertEqual(self.devmem_read(self.b, "b-legacy", 0x3004),
                             0x0a0a0a0a)
        self.run_checked(scenario)

    def test_z_deprecation_warning(self):
        """Runs last (name order): shuts guest B down to read its log."""
        def scenario():
            self.b.shutdown()
            log = self.b.qemu_log()
            self.assertIn("'ivshmem' (id 'legacy-b'): the legacy ivshmem "
                          "device is deprecated; use: -object "
                          "memory-backend-file,id=legacy-b-shm,"
                          f"mem-path={self.shm_path},size=1M,share=on "
                          "-device ivshmem-plain,memdev=legacy-b-shm,"
                          "master=on,id=legacy-b", log)
            self.assertIn("a 64-bit BAR2", log)
            self.assertIsNone(re.search(r"'ivshmem-plain'.*not shared", log),
                              log)
        self.run_checked(scenario)


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
