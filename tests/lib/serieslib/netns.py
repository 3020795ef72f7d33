"""Throw-away network namespaces and the devices tests put in them.

A Netns creates a uniquely named namespace ("qs-<pid>-<counter>") and
remembers everything it creates.  cleanup() -- called by the context
manager, by unittest's addCleanup, and as a last resort at interpreter exit
-- kills every process still living in the namespace, deletes its links and
then the namespace itself.  It is idempotent and never raises.

Tests must only use addresses from 198.18.0.0/15 (RFC 2544 benchmarking
range) and only inside these namespaces.

Typical use::

    ns = Netns()
    self.addCleanup(ns.cleanup)
    ns.add_bridge("br0", "198.18.0.1/24")
    ns.add_tap("tap0", master="br0")
    ns.run("busybox", "ping", "-c1", "198.18.0.2")
"""

import atexit
import itertools
import os
import re
import signal
import stat
import subprocess
import tempfile
import threading
import time
from typing import Dict, List, Optional

NAME_PREFIX = "qs-"

_counter = itertools.count()
_live: Dict[str, "Netns"] = {}        # namespaces not cleaned up yet
_live_lock = threading.Lock()


class NetnsError(Exception):
    """A namespace/device command failed."""


def _ip(*args: str, check: bool = True, timeout: float = 30
        ) -> subprocess.CompletedProcess:
    """Run the ip(8) tool; raise NetnsError with its stderr on failure."""
    cmd = ["ip", *args]
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True,
                          timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise NetnsError(f"{' '.join(cmd)} failed ({proc.returncode}): "
                         f"{proc.stderr.strip()}")
    return proc


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> None:
    """Delete namespaces left behind by earlier runs that were SIGKILLed.

    Only namespaces named qs-<pid>-<n> whose creating process is gone are
    touched, so concurrently running test processes are left alone.
    """
    proc = _ip("netns", "list", check=False)
    for line in proc.stdout.splitlines():
        # "qs-<pid>-<n>[-tag]", possibly followed by " (id: N)"
        match = re.match(rf"^({NAME_PREFIX}(\d+)-\d+(?:-\S*)?)(\s|$)",
                         line)
        if not match:
            continue
        name, pid = match.group(1), int(match.group(2))
        if pid != os.getpid() and not _pid_alive(pid):
            _destroy_namespace(name)


def _kill_namespace_pids(name: str, grace: float = 3.0) -> None:
    """SIGTERM, then SIGKILL, every process in the namespace."""
    def pids() -> List[int]:
        proc = _ip("netns", "pids", name, check=False)
        return [int(p) for p in proc.stdout.split() if p.isdigit()]

    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        victims = pids()
        if not victims:
            return
        for pid in victims:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and pids():
            time.sleep(0.1)


def _destroy_namespace(name: str) -> None:
    """Kill the namespace's processes, delete its links, then itself."""
    _kill_namespace_pids(name)
    proc = _ip("-n", name, "-o", "link", "show", check=False)
    for line in proc.stdout.splitlines():
        # "5: tap0: <...>" or "7: veth0@if6: <...>"
        match = re.match(r"^\d+:\s+([^:@\s]+)", line)
        if match and match.group(1) != "lo":
            _ip("-n", name, "link", "del", match.group(1), check=False)
    _ip("netns", "del", name, check=False)


def _cleanup_all_at_exit() -> None:
    with _live_lock:
        remaining = list(_live.values())
    for ns in remaining:
        ns.cleanup()


atexit.register(_cleanup_all_at_exit)


class Netns:
    """A private network namespace (with loopback up)."""

    def __init__(self, tag: str = ""):
        cleanup_stale()
        self.name = f"{NAME_PREFIX}{os.getpid()}-{next(_counter)}"
        if tag:
            # Namespace names end up as file names; keep them short/simple.
            self.name += "-" + re.sub(r"[^A-Za-z0-9_.-]", "", tag)[:16]
        self._root_links: List[str] = []   # links we put in the root netns
        self._dev_nodes: List[str] = []    # macvtap nodes we mknod'ed
        self._tmpdir: Optional[str] = None
        self._closed = False
        _ip("netns", "add", self.name)
        with _live_lock:
            _live[self.name] = self
        try:
            self.ip("link", "set", "lo", "up")
        except BaseException:
            self.cleanup()
            raise

    # -- context manager -------------------------------------------------
    def __enter__(self) -> "Netns":
        return self

    def __exit__(self, *exc_info) -> None:
        self.cleanup()

    def __repr__(self) -> str:
        return f"<Netns {self.name}>"

    # -- running things --------------------------------------------------
    @property
    def wrapper(self) -> List[str]:
        """Command prefix that runs a program inside the namespace."""
        return ["ip", "netns", "exec", self.name]

    def run(self, *cmd: str, check: bool = True, timeout: float = 60,
            input: Optional[str] = None) -> subprocess.CompletedProcess:
        """Run cmd inside the namespace; returns the CompletedProcess with
        text stdout/stderr.  Raises NetnsError when check and it fails."""
        full = self.wrapper + list(cmd)
        proc = subprocess.run(full, capture_output=True, text=True,
                              input=input, timeout=timeout, check=False,
                              stdin=None if input is not None
                              else subprocess.DEVNULL)
        if check and proc.returncode != 0:
            raise NetnsError(f"[{self.name}] {' '.join(cmd)} failed "
                             f"({proc.returncode}): {proc.stdout.strip()} "
                             f"{proc.stderr.strip()}")
        return proc

    def popen(self, *cmd: str, **kwargs) -> subprocess.Popen:
        """Start cmd in the background inside the namespace.  It is killed
        by cleanup() at the latest."""
        return subprocess.Popen(self.wrapper + list(cmd), **kwargs)

    def ip(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run `ip -n <ns> args...`."""
        return _ip("-n", self.name, *args, check=check)

    def ping(self, address: str, timeout: float = 30,
             interval: float = 0.2) -> float:
        """Ping address (busybox ping) from the namespace until one reply
        arrives; return the number of seconds it took.  Raises NetnsError
        after timeout seconds without a reply."""
        start = time.monotonic()
        deadline = start + timeout
        last = None
        while True:
            last = self.run("busybox", "ping", "-c", "1", "-W", "1", address,
                            check=False, timeout=10)
            if last.returncode == 0:
                return time.monotonic() - start
            if time.monotonic() >= deadline:
                raise NetnsError(
                    f"[{self.name}] no ping reply from {address} within "
                    f"{timeout}s: {last.stdout.strip()} {last.stderr.strip()}")
            time.sleep(interval)

    @property
    def tmpdir(self) -> str:
        """A private directory removed by cleanup()."""
        if self._tmpdir is None:
            self._tmpdir = tempfile.mkdtemp(prefix=self.name + "-")
        return self._tmpdir

    # -- devices ---------------------------------------------------------
    def add_bridge(self, name: str = "br0", address: Optional[str] = None
                   ) -> str:
        """Create a bridge (up), optionally with address "IP/PREFIX"."""
        self.ip("link", "add", name, "type", "bridge")
        if address:
            self.ip("addr", "add", address, "dev", name)
        self.ip("link", "set", name, "up")
        return name

    def add_address(self, dev: str, address: str) -> None:
        self.ip("addr", "add", address, "dev", dev)

    def add_veth(self, name: str, peer: str, master: Optional[str] = None,
                 peer_ns: Optional["Netns"] = None,
                 peer_in_root: bool = False,
                 peer_master: Optional[str] = None) -> str:
        """Create a veth pair name<->peer, both up.

        The peer stays in this namespace unless peer_ns (another Netns) is
        given or peer_in_root is set.  master/peer_master enslave the ends
        to a bridge in their respective namespaces."""
        args = ["link", "add", name, "type", "veth", "peer", "name", peer]
        if peer_ns is not None:
            args += ["netns", peer_ns.name]
        elif peer_in_root:
            args += ["netns", "1"]     # pid 1 lives in the root namespace
        self.ip(*args)
        if peer_in_root:
            self._root_links.append(peer)
        self.set_up(name, master=master)
        if peer_ns is not None:
            peer_ns.set_up(peer, master=peer_master)
        elif peer_in_root:
            _ip("link", "set", peer, "up")
            if peer_master:
                _ip("link", "set", peer, "master", peer_master)
        else:
            self.set_up(peer, master=peer_master)
        return name

    def add_tap(self, name: str, master: Optional[str] = None,
                multi_queue: bool = False, vnet_hdr: bool = False) -> str:
        """Create a persistent TAP device (up) for QEMU's -netdev tap,ifname=.
        """
        args = ["tuntap", "add", "dev", name, "mode", "tap"]
        if multi_queue:
            args.append("multi_queue")
        if vnet_hdr:
            args.append("vnet_hdr")
        self.ip(*args)
        self.set_up(name, master=master)
        return name

    def add_macvtap(self, name: str, lower: str, mode: str = "bridge",
                    mac: Optional[str] = None) -> str:
        """Create a macvtap on top of link `lower` and return the path of
        its character device (/dev/tapN, or a private node with the same
        device number if /dev/tapN is missing or belongs to another
        namespace)."""
        # ip(8) takes link attributes such as "address" only before
        # "type"; everything after "type macvtap" is macvtap's own.
        args = ["link", "add", "link", lower, "name", name]
        if mac:
            args += ["address", mac]
        args += ["type", "macvtap", "mode", mode]
        self.ip(*args)
        self.set_up(name)
        # sysfs is remounted for the namespace by `ip netns exec`.
        out = self.run("sh", "-c",
                       f"cd /sys/class/net/{name}/macvtap && "
                       f"for t in tap*; do echo $t $(cat $t/dev); done"
                       ).stdout.split()
        node, majmin = out[0], out[1]
        major, minor = (int(x) for x in majmin.split(":"))
        rdev = os.makedev(major, minor)
        devpath = f"/dev/{node}"
        try:
            st = os.stat(devpath)
            if stat.S_ISCHR(st.st_mode) and st.st_rdev == rdev:
                return devpath
        except FileNotFoundError:
            pass
        devpath = os.path.join(self.tmpdir, node)
        os.mknod(devpath, 0o600 | stat.S_IFCHR, rdev)
        self._dev_nodes.append(devpath)
        return devpath

    def set_up(self, dev: str, master: Optional[str] = None) -> None:
        if master:
            self.ip("link", "set", dev, "master", master)
        self.ip("link", "set", dev, "up")

    def links(self) -> List[str]:
        """Names of the links in the namespace."""
        out = self.ip("-o", "link", "show").stdout
        return [m.group(1) for m in
                re.finditer(r"^\d+:\s+([^:@\s]+)", out, re.M)]

    def pids(self) -> List[int]:
        out = _ip("netns", "pids", self.name, check=False).stdout
        return [int(p) for p in out.split() if p.isdigit()]

    # -- teardown --------------------------------------------------------
    def cleanup(self) -> None:
        """Kill processes, delete devices and the namespace.  Idempotent,
        never raises (errors would mask the test's own failure)."""
        if self._closed:
            return
        self._closed = True
        try:
            _destroy_namespace(self.name)
            for link in self._root_links:
                _ip("link", "del", link, check=False)
            if self._tmpdir is not None:
                subprocess.run(["rm", "-rf", "--one-file-system",
                                self._tmpdir], check=False)
        except Exception as exc:  # pylint: disable=broad-except
            print(f"warning: cleanup of {self.name} failed: {exc}")
        finally:
            with _live_lock:
                _live.pop(self.name, None)

