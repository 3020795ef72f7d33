#!/usr/bin/python3
"""Live migration between the unpatched base and the patched build.

    python3 tests/compat/test_migration_compat.py   (as root; prints TAP)

"Do no harm": a guest that does not opt in to anything the series adds
must migrate from the unpatched base to the patched build and back.
Every configuration has ONE guest, booted once and carried along:

  test_<cfg>_1_unpatched_to_patched   boot on unpatched A, migrate to
                                      patched B
  test_<cfg>_2_patched_to_unpatched   migrate B to a fresh unpatched C

(if step 1 failed, step 2 boots a fresh guest on the patched build).
After each hop the destination is resumed, the source quits, and the
guest must answer pings from the namespace and its console shell; for
virtio-net the guest features (x-query-virtio-status on the host side,
/sys/bus/virtio/devices/*/features in the guest) must be unchanged.

Configurations (see CONFIGS):
  a_<machine>    virtio-net-pci on a TAP (the base's newest q35, i.e.
                 pc-q35-10.2 on 10.2.2 and pc-q35-10.0 on 10.0.13;
                 pc-q35-5.2, pc-i440fx-5.2)
  b_macvtap      virtio-net-pci on a macvtap passed as fd= (pc-q35-5.2)
  c_e1000e       e1000e on a TAP (q35)
  d_standby      virtio-net-pci,failover=on on a pcie-root-port, no primary
  e_ivshmem_plain   ivshmem-plain master on a memory-backend-file
                 (share=on, one file per QEMU in the tmpdir): a pattern the
                 host writes into A's file and words the guest writes into
                 BAR2 (busybox devmem) must arrive in B's and C's files
  f_ivshmem_doorbell  ivshmem-doorbell master (vectors=2) on an
                 ivshmem-server of the destination's own build

Opt-ins (g_*): boot on the patched build with the opt-in on, then

  test_g_<optin>_1_patched_to_patched   migrate to patched (opt-in on)
  test_g_<optin>_2_patched_to_unpatched migrate to unpatched (started
                                        without the unknown property)

with the return-path capability on both sides, so that a source whose
destination fails to load learns about it and keeps running.  Where the
expectation (EXPECT_TO_UNPATCHED) is "fails", the test asserts that the
destination reports a load error, that the source is running again and
that the guest still answers.  tests/compat/README.md has the table.

Everything runs in one private network namespace (198.18.0.0/24 on br0,
198.18.1.0/24 on the veth below the macvtap); each QEMU gets its own
TAP.  Guests are launched ahead of their tests, up to COMPAT_MAX_BOOTING
(default 6) booting at a time, so that TCG boots overlap with the
migrations of earlier tests; the guest kernel gets no_timer_check (a TCG
guest on a loaded host can fail the IO-APIC timer check and panic).  If a
binary is being rebuilt (missing or "exec ... failed"), a launch waits for
it up to 5 minutes.  Cleanup (guests, servers, TAPs, the namespace) runs
even on failure.

Binaries: COMPAT_PATCHED_QEMU / COMPAT_UNPATCHED_QEMU and the
ivshmem-servers next to them (see compatlib.py).  Skips when not root,
without /dev/net/tun, busybox, a binary, QEMU's python library or the
guest.  COMPAT_ONLY=regex limits the configurations that are booted.
"""

import os
import re
import subprocess
import sys
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

# pylint: disable=wrong-import-position
import compatlib  # noqa: E402
from compatlib import PATCHED, UNPATCHED  # noqa: E402
from serieslib import (main, Guest, GuestError, Netns, NetnsError,  # noqa: E402
                       require_binary, require_guest, require_qemu_python,
                       require_root, require_tun)

HOST_IP = "198.18.0.1/24"
MVT_HOST_IP = "198.18.1.1/24"
BOOT_TIMEOUT = float(os.environ.get("COMPAT_BOOT_TIMEOUT", 600))
MIGRATE_TIMEOUT = 120
NIC_PATH = "/machine/peripheral/nic0/virtio-backend"
SHM_SIZE = 1 << 20
GUEST_MEMORY = "256M"
# A TCG guest on a loaded host can fail Linux's IO-APIC timer check
# ("Kernel panic - not syncing: IO-APIC + timer doesn't work!").
KERNEL_APPEND = "no_timer_check"
# Guests launched but not yet booted at any time (TCG boots overlap, but
# too many at once on 2 cores only make each one slow).
MAX_BOOTING = int(os.environ.get("COMPAT_MAX_BOOTING", 6))
# The patched binary may be relinked under us: wait that long for it.
BINARY_WAIT = 300
GROUP_ID = "0x1234"
PATTERN = [(0x0, 0x600dc0de), (0x800, 0x12345678), (SHM_SIZE - 4, 0xa5a55a5a)]
GUEST_WORDS = [(0x100, 0xfeedf00d), (0x2000, 0x0badcafe)]

# the base's own newest machine type (the one "q35" stands for)
NEWEST_Q35 = compatlib.newest_q35()
ROOT_PORT = "pcie-root-port,id=rp0,bus=pcie.0,addr=0x3,chassis=1"
ROOT_PORT1 = "pcie-root-port,id=rp1,bus=pcie.0,addr=0x4,chassis=2"


class Config:
    """One guest configuration.

    Options in *_patched are added only on patched QEMUs (the opt-ins);
    an unpatched destination gets the same command line without them."""

    # pylint: disable=too-many-instance-attributes,too-many-arguments
    def __init__(self, key, machine=NEWEST_Q35, boot=UNPATCHED,
                 nic="virtio", backend="tap", nic_patched="",
                 netdev_patched="", devices=(), ivshmem=None,
                 ivshmem_patched="", return_path=False, local_param=False,
                 optin=None):
        self.key = key
        self.machine = machine
        self.boot = boot
        self.nic = nic                  # virtio | e1000e | standby
        self.backend = backend          # tap | macvtap
        self.nic_patched = nic_patched
        self.netdev_patched = netdev_patched
        self.devices = list(devices)    # (device, patched-only suffix)
        self.ivshmem = ivshmem          # None | plain | doorbell
        self.ivshmem_patched = ivshmem_patched
        self.return_path = return_path
        self.local_param = local_param
        self.optin = optin              # text for the report
        # runtime state
        self.index = 0
        self.ip = self.mac = None
        self.guest = None               # the QEMU running the guest now
        self.build = None               # its build
        self.resources = {}             # Guest.name -> [release callables]
        self.features = None            # (host guest-features, guest sysfs)
        self.bar2 = None
        self.written = []               # ivshmem words expected in the file
        self.backing = {}               # Guest.name -> backing file

    @property
    def virtio(self) -> bool:
        return self.nic in ("virtio", "standby")


CONFIGS = [
    Config("a_" + NEWEST_Q35.replace("-", "_").replace(".", "_"),
           machine=NEWEST_Q35),
    Config("a_pc_q35_5_2", machine="pc-q35-5.2"),
    Config("a_pc_i440fx_5_2", machine="pc-i440fx-5.2"),
    Config("b_macvtap", machine="pc-q35-5.2", backend="macvtap"),
    Config("c_e1000e", nic="e1000e"),
    Config("d_standby", nic="standby"),
    Config("e_ivshmem_plain", ivshmem="plain"),
    Config("f_ivshmem_doorbell", ivshmem="doorbell"),
    # -- opt-ins, booted on the patched build
    Config("g_macvtap_mrg_rxbuf_compat", boot=PATCHED,
           nic_patched=",x-macvtap=on,x-macvtap-mrg-rxbuf-compat=on",
           return_path=True,
           optin="virtio-net-pci x-macvtap=on,x-macvtap-mrg-rxbuf-compat=on "
                 "(TAP backend, q35)"),
    Config("g_tap_local_migration_supported", boot=PATCHED,
           netdev_patched=",x-local-migration-supported=on",
           local_param=True, return_path=True,
           optin="-netdev tap,x-local-migration-supported=on, migration "
                 "parameter local=off"),
    Config("g_failover_block_unplug", boot=PATCHED, nic="standby",
           nic_patched=",x-failover-block-unplug=on", return_path=True,
           optin="standby x-failover-block-unplug=on (no primary)"),
    Config("g_failover_rehide_on_reset", boot=PATCHED, nic="standby",
           nic_patched=",x-failover-rehide-on-reset=on", return_path=True,
           optin="standby x-failover-rehide-on-reset=on (no primary)"),
    Config("g_failover_hide_existing", boot=PATCHED, nic="standby",
           nic_patched=",x-failover-hide-existing=on", return_path=True,
           optin="standby x-failover-hide-existing=on (no primary)"),
    Config("g_failover_group_id_standby", boot=PATCHED, nic="standby",
           nic_patched=f",x-failover-group-id={GROUP_ID}", return_path=True,
           optin=f"standby virtio-net-pci x-failover-group-id={GROUP_ID}"),
    Config("g_failover_group_id_root_port", boot=PATCHED, nic="standby",
           devices=[(ROOT_PORT1, f",x-failover-group-id={GROUP_ID}")],
           return_path=True,
           optin=f"pcie-root-port x-failover-group-id={GROUP_ID} (empty "
                 "port beside the standby's)"),
    Config("g_ivshmem_require_shared", boot=PATCHED, ivshmem="plain",
           ivshmem_patched=",x-require-shared=on", return_path=True,
           optin="ivshmem-plain,master=on x-require-shared=on"),
    Config("g_ivshmem_master_lock", boot=PATCHED, ivshmem="plain",
           ivshmem_patched=",x-master-lock=on", return_path=True,
           optin="ivshmem-plain,master=on x-master-lock=on (one backing "
                 "file per QEMU)"),
]

# What patched -> unpatched does with the opt-in on: "works", or
# "fails" (destination refuses the stream; source keeps running).
EXPECT_TO_UNPATCHED = {
    "g_macvtap_mrg_rxbuf_compat": "works",
    "g_tap_local_migration_supported": "works",
    "g_failover_block_unplug": "works",
    "g_failover_rehide_on_reset": "works",
    "g_failover_hide_existing": "works",
    # guest-visible vendor capability in config space the unpatched
    # device does not have
    "g_failover_group_id_standby": "fails",
    "g_failover_group_id_root_port": "fails",
    "g_ivshmem_require_shared": "works",
    "g_ivshmem_master_lock": "works",
}

IVS_FUNCS = (
    "ivs_bar2() { for d in /sys/bus/pci/devices/*; do "
    "[ $(cat $d/vendor) = 0x1af4 ] && [ $(cat $d/device) = 0x1110 ] && "
    "{ echo 1 > $d/enable; } 2>/dev/null && "
    "{ sed -n 3p $d/resource | cut -d' ' -f1; return 0; }; done; "
    "return 1; }")


class HopFailed(Exception):
    """A migration failed: dst_error is the destination's error-desc,
    src_status the source's final migration status."""

    def __init__(self, message, dst_error="", src_status=""):
        super().__init__(message)
        self.dst_error = dst_error
        self.src_status = src_status


def _select_configs():
    only = os.environ.get("COMPAT_ONLY")
    if not only:
        return CONFIGS
    return [c for c in CONFIGS if re.search(only, c.key)]


class Lab:
    """The namespace, the devices on the host side and all guests."""

    def __init__(self, configs):
        self.configs = configs
        self.ns = Netns("compat")
        self.gen = 0
        self.servers = []
        self.fds = []
        self.all_guests = []
        ns = self.ns
        ns.add_bridge("br0", HOST_IP)
        for i, cfg in enumerate(configs):
            cfg.index = i
            cfg.mac = f"52:54:00:c0:00:{0x10 + i:02x}"
            if cfg.backend == "macvtap":
                cfg.ip = f"198.18.1.{0x10 + i}"
            else:
                cfg.ip = f"198.18.0.{0x10 + i}"
        self.macvtap_dev = None
        mvt = [c for c in configs if c.backend == "macvtap"]
        if mvt:
            ns.add_veth("v0", "v1")
            ns.add_address("v1", MVT_HOST_IP)
            try:
                self.macvtap_dev = ns.add_macvtap("mvt0", "v0", mode="bridge",
                                                  mac=mvt[0].mac)
            except (NetnsError, OSError) as exc:
                self.macvtap_error = f"no macvtap support: {exc}"

    # -- QEMU instances ------------------------------------------------
    def instance_args(self, cfg, build):
        """-netdev/-device/extra args for a new QEMU of cfg on build, the
        callables that release its host-side resources and the ivshmem
        backing file (or None)."""
        self.gen += 1
        gen = self.gen
        patched = build == PATCHED
        releases = []
        extra = []
        backing = None
        if cfg.backend == "macvtap":
            if self.macvtap_dev is None:
                raise unittest.SkipTest(getattr(self, "macvtap_error",
                                                "no macvtap"))
            fd = os.open(self.macvtap_dev, os.O_RDWR)
            os.set_inheritable(fd, True)
            self.fds.append(fd)
            netdev = f"tap,id=n0,fd={fd}"
            # Our copy must go once QEMU has its own (see launch()), or
            # the macvtap keeps a queue nobody reads.
            releases.append(("after-launch", lambda fd=fd: self._close(fd)))
        else:
            tap = f"c{cfg.index}t{gen}"
            self.ns.add_tap(tap, master="br0")
            netdev = f"tap,id=n0,ifname={tap},script=no,downscript=no"
            releases.append(("after-quit", lambda tap=tap: self.ns.ip(
                "link", "del", tap, check=False)))
        if patched:
            netdev += cfg.netdev_patched
        nic_patched = cfg.nic_patched if patched else ""
        devices = []
        if cfg.nic == "virtio":
            devices.append(f"virtio-net-pci,netdev=n0,id=nic0,mac={cfg.mac}"
                           + nic_patched)
        elif cfg.nic == "e1000e":
            devices.append(f"e1000e,netdev=n0,id=nic0,mac={cfg.mac}"
                           + nic_patched)
        elif cfg.nic == "standby":
            devices.append(ROOT_PORT)
            devices.append(f"virtio-net-pci,netdev=n0,id=nic0,bus=rp0,"
                           f"mac={cfg.mac},failover=on" + nic_patched)
        for dev, suffix in cfg.devices:
            devices.append(dev + (suffix if patched else ""))
        ivs_patched = cfg.ivshmem_patched if patched else ""
        if cfg.ivshmem == "plain":
            path = os.path.join(self.ns.tmpdir, f"ivs-{cfg.key}-{gen}")
            with open(path, "wb") as f:
                f.truncate(SHM_SIZE)
            if not os.environ.get("COMPAT_NO_RAM_WORKAROUND"):
                # Upstream 10.2.2 bug, unpatched base too: under TCG,
                # physical_memory_sync_dirty_bitmap() (migration/ram.c)
                # hands the block-relative start, not rb->offset + start,
                # to physical_memory_dirty_bits_cleared(), so a source
                # whose first RAM block (ram_addr 0) is not the machine
                # RAM aborts in tlb_reset_dirty_range_all ("Assertion
                # `block == qemu_get_ram_block(end - 1)' failed") when
                # it syncs the machine RAM.  -object memory-backend-file
                # is created before the machine RAM and gets ram_addr 0;
                # an explicit machine RAM backend created first avoids
                # it (same command line on both sides).
                extra += ["-object", "memory-backend-ram,id=pc.ram,"
                          f"size={GUEST_MEMORY}",
                          "-machine", "memory-backend=pc.ram"]
            extra += ["-object", f"memory-backend-file,id=shm0,"
                      f"size={SHM_SIZE},mem-path={path},share=on"]
            devices.append("ivshmem-plain,id=ivs0,memdev=shm0,master=on"
                           + ivs_patched)
            backing = path
        elif cfg.ivshmem == "doorbell":
            sock = os.path.join(self.ns.tmpdir, f"ivs-{gen}.sock")
            server = self.start_server(build, sock, gen)
            releases.append(("after-quit",
                             lambda s=server: self._stop_server(s)))
            extra += ["-chardev", f"socket,path={sock},id=ivsc"]
            devices.append("ivshmem-doorbell,id=ivs0,chardev=ivsc,"
                           "master=on,vectors=2" + ivs_patched)
        return [netdev], devices, extra, releases, backing

    def start_server(self, build, sock, gen):
        shmdir = os.path.join(self.ns.tmpdir, f"ivs-srv-{gen}")
        os.makedirs(shmdir, exist_ok=True)
        log = open(os.path.join(self.ns.tmpdir,  # noqa: SIM115
                                f"ivshmem-server-{gen}.log"), "wb")
        proc = self.ns.popen(compatlib.ivshmem_server(build), "-F", "-v",
                             "-S", sock, "-m", shmdir, "-l", str(SHM_SIZE),
                             "-n", "2", stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        log.close()
        self.servers.append(proc)
        deadline = time.monotonic() + 10
        while not os.path.exists(sock):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{build} ivshmem-server did not start "
                                   f"(status {proc.poll()})")
            time.sleep(0.05)
        return proc

    def macvtap_holders(self):
        """pid, fd and command of every open file of the macvtap."""
        rdev = os.stat(self.macvtap_dev).st_rdev
        rows = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    st = os.stat(f"/proc/{pid}/fd/{fd}")
                except OSError:
                    continue
                if st.st_rdev == rdev and (st.st_mode & 0o170000) == 0o020000:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        cmd = f.read().replace(b"\0", b" ")[:120]
                    rows.append(f"pid {pid} fd {fd}: {cmd.decode()}")
        return "\n".join(rows) or "(nobody)"

    @staticmethod
    def _stop_server(proc):
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)

    def _close(self, fd):
        if fd in self.fds:
            self.fds.remove(fd)
            os.close(fd)

    def new_guest(self, cfg, build, src=None):
        """A launched (not yet booted) QEMU of cfg on build: the first
        one (src None) boots the guest, the others are migration
        destinations cloned from src (-incoming defer -S)."""
        name = f"{cfg.key[:20]}-{build[0]}"
        netdevs, devices, extra, releases, backing = self.instance_args(
            cfg, build)
        if src is None:
            guest = Guest(self.ns, name=name, machine=cfg.machine,
                          memory=GUEST_MEMORY,
                          ip=f"{cfg.ip}/24", mac=cfg.mac, netdevs=netdevs,
                          devices=devices, extra_args=extra,
                          append=KERNEL_APPEND,
                          binary=compatlib.qemu(build))
        else:
            guest = src.clone(name=name, netdevs=netdevs, devices=devices,
                              incoming="defer", paused=True)
            guest.extra_args = extra
            guest.binary = compatlib.qemu(build)
        if backing:
            cfg.backing[guest.name] = backing
        guest.build = build
        self.all_guests.append(guest)
        cfg.resources[guest.name] = [fn for when, fn in releases
                                     if when == "after-quit"]
        try:
            self._launch(guest)
        finally:
            for when, fn in releases:
                if when == "after-launch":
                    fn()
        return guest

    @staticmethod
    def _launch(guest):
        """guest.launch(), waiting for the binary if it is being rebuilt
        (missing, or not executable while it is linked)."""
        deadline = time.monotonic() + BINARY_WAIT
        while True:
            try:
                guest.launch()
                return
            except GuestError as exc:
                text = str(exc)
                rebuilding = ("exec of" in text and "failed" in text) or \
                    not os.access(guest.binary, os.X_OK)
                if not rebuilding or time.monotonic() > deadline:
                    raise
                print(f"{guest.binary} not usable ({text.splitlines()[-1]})"
                      "; waiting for the rebuild")
                time.sleep(10)

    def quit(self, cfg, guest):
        guest.shutdown()
        for fn in cfg.resources.pop(guest.name, []):
            fn()

    def cleanup(self):
        for guest in self.all_guests:
            try:
                guest.shutdown(timeout=3)
            except Exception:  # pylint: disable=broad-except
                pass
        for proc in self.servers:
            self._stop_server(proc)
        for fd in list(self.fds):
            self._close(fd)
        self.ns.cleanup()


def migrate_hop(src, dst, uri, return_path=False, local_param=False):
    """Migrate src -> dst (dst started with -incoming defer -S).  The
    destination runs with exit-on-error=false so that its error can be
    read.  Returns the source's query-migrate; raises HopFailed."""
    for guest in (src, dst):
        if return_path:
            guest.qmp("migrate-set-capabilities", capabilities=[
                {"capability": "return-path", "state": True}])
        if local_param and guest.build == PATCHED:
            guest.qmp("migrate-set-parameters", local=False)
    dst.qmp("migrate-incoming", uri=uri, exit_on_error=False)
    src.qmp("migrate", uri=uri)
    deadline = time.monotonic() + MIGRATE_TIMEOUT
    src_info = dst_info = {}
    while True:
        src_info = src.qmp("query-migrate")
        try:
            dst_info = dst.qmp("query-migrate")
        except Exception as exc:  # pylint: disable=broad-except
            dst_info = {"status": "failed",
                        "error-desc": f"destination QMP gone ({exc})"}
        s_status, d_status = src_info.get("status"), dst_info.get("status")
        if d_status == "failed" and s_status not in ("active", "device",
                                                     "setup"):
            raise HopFailed(
                f"destination failed: {dst_info.get('error-desc')}; "
                f"source status {s_status} "
                f"({src_info.get('error-desc', '')})",
                dst_error=dst_info.get("error-desc", ""),
                src_status=s_status)
        if s_status in ("failed", "cancelled") and d_status != "active":
            raise HopFailed(
                f"source {s_status}: {src_info.get('error-desc')}; "
                f"destination {d_status}: {dst_info.get('error-desc', '')}",
                dst_error=dst_info.get("error-desc", ""),
                src_status=s_status)
        if s_status == "completed" and d_status == "completed":
            return src_info
        if time.monotonic() > deadline:
            try:
                src.qmp("migrate_cancel")
            except Exception:  # pylint: disable=broad-except
                pass
            raise HopFailed(f"no completion within {MIGRATE_TIMEOUT}s: "
                            f"source {src_info}; destination {dst_info}")
        time.sleep(0.05)


class MigrationCompat(unittest.TestCase):
    """Generated test methods, see the module docstring."""

    lab = None
    skip_reason = None
    configs = {}
    pending = []

    @classmethod
    def setUpClass(cls):
        try:
            require_root()
            require_tun()
            compatlib.require_binaries()
            require_binary("busybox")
            require_qemu_python()
            require_guest()
            if any(c.ivshmem == "doorbell" for c in _select_configs()):
                compatlib.require_ivshmem_servers()
        except unittest.SkipTest as exc:
            cls.skip_reason = str(exc)
            return
        selected = _select_configs()
        cls.configs = {c.key: c for c in selected}
        cls.lab = Lab(selected)
        # Launched in the order the tests run (alphabetical), at most
        # MAX_BOOTING booting at a time; pump() launches more.
        cls.pending = sorted((c for c in selected
                              if not (c.backend == "macvtap"
                                      and cls.lab.macvtap_dev is None)),
                             key=lambda c: c.key)
        try:
            cls.pump()
        except BaseException:
            cls.lab.cleanup()
            raise

    @classmethod
    def pump(cls, need=None):
        """Launch pending guests (need first) while fewer than
        MAX_BOOTING are booting."""
        if need is not None and need in cls.pending:
            cls.pending.remove(need)
            cls.pending.insert(0, need)
        while cls.pending:
            booting = sum(1 for c in cls.configs.values()
                          if c.guest is not None and c.guest.is_running()
                          and not getattr(c.guest, "booted", False)
                          and "GUEST-READY" not in c.guest.console_text())
            if booting >= MAX_BOOTING and cls.pending[0] is not need:
                return
            cfg = cls.pending.pop(0)
            cfg.guest = cls.lab.new_guest(cfg, cfg.boot)
            cfg.build = cfg.boot

    @classmethod
    def tearDownClass(cls):
        if cls.lab is not None:
            cls.lab.cleanup()

    def setUp(self):
        if self.skip_reason:
            self.skipTest(self.skip_reason)

    # -- helpers -------------------------------------------------------
    def dump(self, *guests):
        for guest in guests:
            if guest is None:
                continue
            if guest.console is not None:
                print(f"--- console of {guest.name} (tail) ---")
                print(guest.console.tail(1200))
            log = guest.qemu_log()
            if not log and guest.vm is not None:
                path = getattr(guest.vm, "_qemu_log_path", None)
                if path and os.path.exists(path):
                    with open(path, encoding="utf-8",
                              errors="replace") as f:
                        log = f.read()
            if log:
                print(f"--- QEMU output of {guest.name} ---")
                print(log[-3000:])

    def wait_booted(self, cfg):
        guest = cfg.guest
        if getattr(guest, "booted", False):
            return
        t0 = time.monotonic()
        guest.wait_ready(timeout=BOOT_TIMEOUT)
        guest.booted = True
        print(f"{guest.name}: booted on {cfg.build} "
              f"(waited {time.monotonic() - t0:.1f}s)")
        self.ping(cfg, guest)
        if cfg.virtio:
            cfg.features = self.read_features(guest)
        if cfg.ivshmem == "plain":
            guest.cmd(IVS_FUNCS)
            cfg.bar2 = int(guest.cmd("ivs_bar2"), 16)
            path = cfg.backing[guest.name]
            with open(path, "r+b") as f:
                for off, val in PATTERN:
                    f.seek(off)
                    f.write(val.to_bytes(4, "little"))
            cfg.written = list(PATTERN)
            # The guest sees what the host wrote.
            off, val = PATTERN[0]
            self.assertEqual(int(guest.cmd(f"devmem {cfg.bar2 + off:#x} 32"),
                                 16), val)

    def ping(self, cfg, guest):
        """ns.ping(), printing the host's and the guest's view of the
        link when no reply comes."""
        try:
            return self.ns.ping(cfg.ip, timeout=30)
        except NetnsError:
            print("--- host links and neighbours ---")
            print(self.ns.run("sh", "-c", "ip -s link; ip neigh",
                              check=False).stdout)
            if cfg.backend == "macvtap":
                print(f"--- holders of {self.lab.macvtap_dev} ---")
                print(self.lab.macvtap_holders())
            try:
                print(f"--- {guest.name}: ip addr; /proc/net/dev; arp ---")
                print(guest.cmd("ip addr; cat /proc/net/dev /proc/net/arp",
                                check=False, timeout=10))
            except GuestError as exc:
                print(f"(guest console: {exc})")
            raise

    @property
    def ns(self):
        return self.lab.ns

    def read_features(self, guest):
        host = guest.qmp("x-query-virtio-status", path=NIC_PATH)
        inside = guest.cmd("cat /sys/bus/virtio/devices/*/features")
        return host["guest-features"], inside.strip()

    def ensure_on(self, cfg, build):
        """cfg.guest booted and running on build (boot a new one if the
        previous step left it elsewhere)."""
        guest = cfg.guest
        healthy = False
        if guest is not None and cfg.build == build and guest.is_running():
            if not getattr(guest, "booted", False):
                self.wait_booted(cfg)
            try:
                healthy = guest.runstate() == "running"
            except Exception:  # pylint: disable=broad-except
                healthy = False
        if healthy:
            return guest
        print(f"{cfg.key}: no running guest on {build} (previous step "
              "failed or QEMU gone); booting a fresh one")
        if guest is not None:
            self.lab.quit(cfg, guest)
            if cfg.build == build:
                self.dump(guest)
        cfg.guest = self.lab.new_guest(cfg, build)
        cfg.build = build
        self.wait_booted(cfg)
        return cfg.guest

    def check_guest(self, cfg, guest, where):
        """The guest answers pings and its shell; features unchanged."""
        t_ping = self.ping(cfg, guest)
        self.assertEqual(guest.cmd("echo alive"), "alive")
        notes = [f"ping after {t_ping:.2f}s"]
        if cfg.virtio and cfg.features is not None:
            now = self.read_features(guest)
            self.assertEqual(now[0], cfg.features[0],
                             f"{where}: guest-features changed (host "
                             "side, x-query-virtio-status)")
            self.assertEqual(now[1], cfg.features[1],
                             f"{where}: guest's virtio features changed")
            notes.append(f"features {now[1][:24]}... equal")
        if cfg.ivshmem == "plain":
            path = cfg.backing[guest.name]
            with open(path, "rb") as f:
                data = f.read()
            for off, val in cfg.written:
                got = int.from_bytes(data[off:off + 4], "little")
                self.assertEqual(got, val, f"{where}: backing file word "
                                 f"{off:#x} is {got:#x}, want {val:#x}")
            checked = len(cfg.written)
            # The guest writes, for the next hop to carry.
            for off, val in GUEST_WORDS:
                if (off, val) not in cfg.written:
                    guest.cmd(f"devmem {cfg.bar2 + off:#x} 32 {val:#x}")
                    cfg.written.append((off, val))
            notes.append(f"{checked} ivshmem words in {os.path.basename(path)} ok")
        return notes

    def hop(self, cfg, dst_build, expect="works"):
        """Migrate cfg's guest to a new QEMU of dst_build."""
        src = cfg.guest
        src_build = cfg.build
        dst = None
        t0 = time.monotonic()
        try:
            dst = self.lab.new_guest(cfg, dst_build, src=src)
            self.assertEqual(dst.runstate(), "inmigrate")
            uri = f"unix:{os.path.join(self.ns.tmpdir, f'mig-{dst.name}.sock')}"
            try:
                info = migrate_hop(src, dst, uri, cfg.return_path,
                                   cfg.local_param)
            except HopFailed as exc:
                if expect == "fails":
                    return self.expected_failure(cfg, src, dst, exc)
                self.lab.quit(cfg, dst)
                log = [ln for ln in dst.qemu_log().splitlines()
                       if "is deprecated" not in ln]
                self.fail(f"{src_build} -> {dst_build} migration failed: "
                          f"{exc}\ndestination stderr:\n  "
                          + "\n  ".join(log[-8:]))
            if expect == "fails":
                self.fail(f"{src_build} -> {dst_build} was expected to fail "
                          "but completed")
            self.assertEqual(src.runstate(), "postmigrate")
            dst.qmp("cont")
            self.assertEqual(dst.runstate(), "running")
            self.lab.quit(cfg, src)
            cfg.guest, cfg.build = dst, dst_build
            dst.booted = True
            notes = self.check_guest(cfg, dst, f"{src_build}->{dst_build}")
            print(f"{cfg.key}: {src_build} -> {dst_build} ok in "
                  f"{time.monotonic() - t0:.1f}s (total-time "
                  f"{info.get('total-time')} ms, downtime "
                  f"{info.get('downtime')} ms); " + "; ".join(notes))
            return "works"
        except BaseException:
            self.dump(src, dst)
            raise
        finally:
            if dst is not None and cfg.guest is not dst:
                self.lab.quit(cfg, dst)

    def expected_failure(self, cfg, src, dst, exc):
        """The destination refused the stream: it must say why, and the
        source must be running again with the guest answering."""
        self.assertTrue(exc.dst_error, f"no error on the destination: {exc}")
        deadline = time.monotonic() + 10
        state = src.runstate()
        while state != "running" and time.monotonic() < deadline:
            time.sleep(0.1)
            state = src.runstate()
        self.assertEqual(state, "running",
                         f"source not running after the failed migration "
                         f"({exc})")
        self.lab.quit(cfg, dst)
        dst_log = dst.qemu_log().strip().splitlines()
        notes = self.check_guest(cfg, src, "after failed migration")
        print(f"{cfg.key}: failed as expected; destination: "
              f"{exc.dst_error}; source status {exc.src_status}, runstate "
              f"{state}; " + "; ".join(notes))
        for line in dst_log[-6:]:
            print(f"  destination stderr: {line}")
        return f"fails: {exc.dst_error}"

    def run_step(self, cfg, src_build, dst_build, expect="works"):
        if cfg.guest is None and cfg.backend == "macvtap" and \
                self.lab.macvtap_dev is None:
            self.skipTest(getattr(self.lab, "macvtap_error", "no macvtap"))
        try:
            self.pump(need=cfg)
            self.ensure_on(cfg, src_build)
            self.pump()
        except BaseException:
            self.dump(cfg.guest)
            raise
        result = self.hop(cfg, dst_build, expect)
        if cfg.optin:
            print(f"opt-in {cfg.optin}: {src_build} -> {dst_build}: {result}")


def _make(key, src_build, dst_build, expect):
    def test(self):
        if key not in self.configs:
            self.skipTest(f"{key} not selected by COMPAT_ONLY")
        self.run_step(self.configs[key], src_build, dst_build, expect)
    return test


def _generate():
    for cfg in CONFIGS:
        if cfg.boot == UNPATCHED:
            steps = [("1_unpatched_to_patched", UNPATCHED, PATCHED, "works"),
                     ("2_patched_to_unpatched", PATCHED, UNPATCHED, "works")]
        else:
            steps = [("1_patched_to_patched", PATCHED, PATCHED, "works"),
                     ("2_patched_to_unpatched", PATCHED, UNPATCHED,
                      EXPECT_TO_UNPATCHED[cfg.key])]
        for suffix, src, dst, expect in steps:
            setattr(MigrationCompat, f"test_{cfg.key}_{suffix}",
                    _make(cfg.key, src, dst, expect))


_generate()


if __name__ == "__main__":
    main()
