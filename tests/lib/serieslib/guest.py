"""A test guest: QEMU running the offline guest (kernel + initramfs).

Guest wraps qemu.machine.QEMUMachine (QMP and process handling come from
QEMU's own python library).  It adds:

  * the command line for the offline guest (-kernel/-initrd/-append with
    guest.ip=/guest.mac=, -nodefaults, -no-reboot, machine type, memory),
  * running QEMU inside a Netns (QEMUMachine's wrapper= argument),
  * a drained serial console with wait_console() and cmd(),
  * accelerator selection (SERIES_ACCEL, or KVM only if it is known to
    really boot guests on this host -- see select_accel()),
  * a shutdown that always ends with the process gone.

The guest's init prints GUEST-READY (or "GUEST-NET-FAILED: reason") on the
serial console once the interface with guest.mac has guest.ip, then runs an
interactive busybox shell there.
"""

import itertools
import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from . import paths
from .console import ConsoleReader, ConsoleTimeout
from .netns import Netns

LOG = logging.getLogger("serieslib.guest")

READY = "GUEST-READY"
NET_FAILED = "GUEST-NET-FAILED"

# Boot timeouts (seconds).  TCG boots of the small guest take ~10-40 s.
BOOT_TIMEOUT_TCG = float(os.environ.get("SERIES_BOOT_TIMEOUT", 180))
BOOT_TIMEOUT_KVM = 30.0      # a working KVM boots in a few seconds
KVM_PROBE_TIMEOUT = 30.0

_cmd_counter = itertools.count()
_name_counter = itertools.count()


class GuestError(Exception):
    """The guest did not behave (failed boot, failed command...)."""


class GuestCommandError(GuestError):
    def __init__(self, command: str, status: int, output: str):
        super().__init__(f"guest command {command!r} exited {status}:\n"
                         f"{output}")
        self.command = command
        self.status = status
        self.output = output


# ---------------------------------------------------------------------------
# Accelerator selection

def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as f:
            return f.read().strip()
    except OSError:
        return "unknown-boot"


def _accel_cache_files() -> List[Path]:
    """Candidate cache files for the KVM verdict, keyed by boot id (the
    verdict is about this host kernel, so it holds until reboot)."""
    name = f"accel-{_boot_id()}"
    return [Path("/run/qemu-series") / name,
            paths.qemu_build_dir() / ".series-accel" / name]


def _read_cached_accel() -> Optional[str]:
    for path in _accel_cache_files():
        try:
            verdict = path.read_text(encoding="ascii").strip()
        except OSError:
            continue
        if verdict in ("kvm", "tcg"):
            return verdict
    return None


def _write_cached_accel(verdict: str) -> None:
    for path in _accel_cache_files():
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(verdict + "\n", encoding="ascii")
            tmp.rename(path)
            return
        except OSError:
            continue


def probe_kvm(timeout: float = KVM_PROBE_TIMEOUT) -> bool:
    """Boot the guest once under KVM and report whether it reached
    userspace within timeout seconds.

    Some CI hosts expose a paravirtualised nested /dev/kvm on which guest
    kernels hang right after decompression; the only reliable test is to
    try.  The probe guest gets a NIC on an unconnected hub port, so it needs
    neither root nor a namespace, and touches no host networking."""
    probe = Guest(name="kvm-probe", accel="kvm", ip="198.18.255.2/24",
                  mac="52:54:00:fe:ff:01",
                  netdevs=["hubport,id=probe0,hubid=0"],
                  devices=["virtio-net-pci,netdev=probe0,"
                           "mac=52:54:00:fe:ff:01"])
    try:
        probe.launch()
        probe.wait_console(f"{READY}|{NET_FAILED}", timeout=timeout)
        return True
    except Exception as exc:  # pylint: disable=broad-except
        LOG.warning("KVM probe failed, falling back to TCG: %s",
                    str(exc).splitlines()[0] if str(exc) else exc)
        return False
    finally:
        probe.shutdown(timeout=5)


def select_accel() -> str:
    """Return "kvm" or "tcg".

    SERIES_ACCEL=kvm|tcg wins; without /dev/kvm it is TCG; otherwise the
    result of probe_kvm(), computed once per host boot and cached."""
    forced = os.environ.get("SERIES_ACCEL", "").strip().lower()
    if forced:
        if forced not in ("kvm", "tcg"):
            raise ValueError(f"SERIES_ACCEL={forced!r}: use kvm or tcg")
        return forced
    if not os.path.exists("/dev/kvm"):
        return "tcg"
    cached = _read_cached_accel()
    if cached:
        return cached
    verdict = "kvm" if probe_kvm() else "tcg"
    _write_cached_accel(verdict)
    return verdict


# ---------------------------------------------------------------------------

class Guest:
    """One QEMU process running the offline guest.

    netdevs/devices are lists of -netdev/-device option strings; they are
    kept apart from extra_args so that clone() can swap the backend of a
    migration destination.  ip ("IP/PREFIX") and mac end up on the kernel
    command line for the guest's init.
    """

    # pylint: disable=too-many-instance-attributes,too-many-arguments
    def __init__(self, netns: Optional[Netns] = None, name: str = "guest",
                 ip: Optional[str] = None, mac: Optional[str] = None,
                 netdevs: Sequence[str] = (), devices: Sequence[str] = (),
                 extra_args: Sequence[str] = (), machine: str = "q35",
                 memory: str = "256M", smp: int = 1,
                 accel: Optional[str] = None,
                 incoming: Optional[str] = None, paused: bool = False,
                 append: str = "", log_dir: Optional[str] = None,
                 binary: Optional[str] = None):
        self.netns = netns
        self.name = f"{name}-{next(_name_counter)}"
        self.ip = ip
        self.mac = mac
        self.netdevs = list(netdevs)
        self.devices = list(devices)
        self.extra_args = list(extra_args)
        self.machine = machine
        self.memory = memory
        self.smp = smp
        self._accel = accel
        self.incoming = incoming
        self.paused = paused
        self.append = append
        self.binary = binary or str(paths.qemu_binary())
        self.kernel = str(paths.guest_kernel())
        self.initrd = str(paths.guest_initrd())

        self._own_log_dir = False
        if log_dir is None:
            log_dir = os.environ.get("SERIES_LOG_DIR") or None
            if log_dir:
                os.makedirs(log_dir, exist_ok=True)
        if log_dir is None and netns is not None:
            log_dir = netns.tmpdir
        if log_dir is None:
            log_dir = tempfile.mkdtemp(prefix=f"serieslib-{self.name}-")
            self._own_log_dir = True
        self.log_dir = log_dir

        self.vm = None            # qemu.machine.QEMUMachine once launched
        self.console: Optional[ConsoleReader] = None

    # -- configuration ---------------------------------------------------
    @property
    def accel(self) -> str:
        if self._accel is None:
            self._accel = select_accel()
        return self._accel

    def kernel_cmdline(self) -> str:
        parts = ["console=ttyS0", "panic=-1", "quiet"]
        if self.ip:
            parts.append(f"guest.ip={self.ip}")
        if self.mac:
            parts.append(f"guest.mac={self.mac}")
        if self.append:
            parts.append(self.append)
        return " ".join(parts)

    def qemu_args(self) -> List[str]:
        """Arguments for QEMU on top of what QEMUMachine adds itself
        (-display none, QMP monitor, -machine, serial console chardev)."""
        args = ["-nodefaults", "-no-reboot",
                "-accel", self.accel,
                "-m", str(self.memory), "-smp", str(self.smp),
                "-kernel", self.kernel, "-initrd", self.initrd,
                "-append", self.kernel_cmdline()]
        for netdev in self.netdevs:
            args += ["-netdev", netdev]
        for device in self.devices:
            args += ["-device", device]
        args += self.extra_args
        if self.paused:
            args.append("-S")
        if self.incoming:
            args += ["-incoming", self.incoming]
        return args

    def clone(self, name: Optional[str] = None,
              netns: Optional[Netns] = None,
              netdevs: Optional[Sequence[str]] = None,
              devices: Optional[Sequence[str]] = None,
              incoming: Optional[str] = "defer", paused: bool = True
              ) -> "Guest":
        """A not yet launched Guest with this guest's configuration (same
        accelerator, machine, devices, kernel command line), optionally
        with other -netdev/-device lists: the usual migration destination.
        paused adds -S so the destination stays stopped until `cont`."""
        return Guest(netns=netns or self.netns,
                     name=name or self.name.rsplit("-", 1)[0] + "-dst",
                     ip=self.ip, mac=self.mac,
                     netdevs=self.netdevs if netdevs is None else netdevs,
                     devices=self.devices if devices is None else devices,
                     extra_args=self.extra_args, machine=self.machine,
                     memory=self.memory, smp=self.smp, accel=self.accel,
                     incoming=incoming, paused=paused, append=self.append,
                     log_dir=None if self._own_log_dir else self.log_dir,
                     binary=self.binary)

    # -- lifecycle -------------------------------------------------------
    def launch(self) -> "Guest":
        """Start QEMU (and the console reader); do not wait for the guest.
        """
        paths.ensure_qemu_python()
        # pylint: disable=import-outside-toplevel
        from qemu.machine import QEMUMachine

        if self.vm is not None:
            raise GuestError(f"{self.name} already launched")
        wrapper = self.netns.wrapper if self.netns else []
        self.vm = QEMUMachine(self.binary, args=self.qemu_args(),
                              wrapper=wrapper, name=self.name,
                              log_dir=self.log_dir,
                              base_temp_dir=self.log_dir, qmp_timer=30)
        self.vm.set_machine(self.machine)
        self.vm.set_console()          # -serial chardev:console (ttyS0)
        LOG.debug("launching %s: %s", self.name, " ".join(self.qemu_args()))
        try:
            self.vm.launch()
        except Exception as exc:
            # VMLaunchFailure's message already has QEMU's output.
            self.vm = None
            raise GuestError(f"{self.name}: QEMU failed to start: {exc}") \
                from exc
        # QMP commands must not block forever if QEMU wedges.  QEMUMachine
        # only exposes an accept timeout, so set it on the connection.
        conn = getattr(self.vm, "_qmp_connection", None)
        if conn is not None:
            conn.settimeout(60)
        self.console = ConsoleReader(
            self.vm.console_socket,
            logfile=os.path.join(self.log_dir, f"{self.name}-console.log"))
        return self

    def boot(self, timeout: Optional[float] = None) -> "Guest":
        """launch() and wait for GUEST-READY."""
        self.launch()
        self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout: Optional[float] = None) -> None:
        if timeout is None:
            timeout = BOOT_TIMEOUT_KVM if self.accel == "kvm" \
                else BOOT_TIMEOUT_TCG
        match = self.wait_console(rf"{READY}|{NET_FAILED}[^\r\n]*\r?\n",
                                  timeout=timeout)
        if match.group(0).startswith(NET_FAILED.encode()):
            raise GuestError(f"{self.name}: "
                             f"{match.group(0).decode(errors='replace')}"
                             f"console:\n{self.console.tail()}")

    def is_running(self) -> bool:
        return self.vm is not None and self.vm.is_running()

    def get_pid(self) -> Optional[int]:
        return self.vm.get_pid() if self.vm is not None else None

    def shutdown(self, timeout: float = 10) -> None:
        """Stop QEMU: `quit` over QMP, wait up to timeout seconds, then
        SIGKILL.  Safe to call repeatedly and after failures."""
        if self.console is not None:
            self.console.stop()
        vm, self.vm = self.vm, None
        if vm is not None:
            popen = getattr(vm, "_popen", None)
            try:
                vm.shutdown(timeout=int(max(1, timeout)))
            except Exception as exc:  # pylint: disable=broad-except
                LOG.info("%s: graceful shutdown failed (%s), killing",
                         self.name, exc)
                try:
                    vm.kill()
                except Exception:  # pylint: disable=broad-except
                    pass
            # Whatever happened above, the process must be gone.
            if popen is not None and popen.poll() is None:
                popen.kill()
                try:
                    popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    LOG.error("%s: QEMU pid %d does not die", self.name,
                              popen.pid)
            self._qemu_log = vm.get_log()
        if self._own_log_dir and not os.environ.get("SERIES_LOG_DIR"):
            shutil.rmtree(self.log_dir, ignore_errors=True)

    def __enter__(self) -> "Guest":
        return self

    def __exit__(self, *exc_info) -> None:
        self.shutdown()

    def qemu_log(self) -> str:
        """QEMU's stdout/stderr (available after shutdown)."""
        return getattr(self, "_qemu_log", None) or ""

    # -- console ---------------------------------------------------------
    def _require_console(self) -> ConsoleReader:
        if self.console is None:
            raise GuestError(f"{self.name} is not running")
        return self.console

    def wait_console(self, pattern: str, timeout: float = 60):
        """Wait for regex pattern in new console output (see ConsoleReader
        .wait); returns the re.Match (bytes)."""
        try:
            return self._require_console().wait(pattern, timeout)
        except ConsoleTimeout as exc:
            raise GuestError(f"{self.name}: {exc}") from exc

    def console_text(self) -> str:
        return self.console.text() if self.console else ""

    def write_console(self, text: str) -> None:
        """Type text into the serial console."""
        sock: socket.socket = self.vm.console_socket
        data = text.encode()
        deadline = time.monotonic() + 10
        while data:
            try:
                sent = sock.send(data)
                data = data[sent:]
            except socket.timeout:
                if time.monotonic() > deadline:
                    raise GuestError(f"{self.name}: console not accepting "
                                     "input") from None

    def cmd(self, command: str, timeout: float = 30,
            check: bool = True) -> str:
        """Run a shell command on the guest's serial console and return its
        output (stdout+stderr, \\r removed, without the final newline).

        The command is bracketed by two echo commands printing unique
        markers.  In the typed line the markers are split by '' (empty
        shell quotes), so the terminal's echo of the line can never match;
        only the shell's output can.  The end marker carries $?; a nonzero
        status raises GuestCommandError if check."""
        console = self._require_console()
        token = f"{os.getpid()}x{next(_cmd_counter)}x{secrets.token_hex(4)}"
        start = console.position
        self.write_console(f"echo @B''{token}; {command}; "
                           f"echo @E''{token} $?\n")
        pattern = re.compile(
            rb"@B" + token.encode() + rb"\r?\n(.*?)@E" + token.encode()
            + rb" (\d+)", re.S)
        try:
            match = console.wait(pattern, timeout, start=start)
        except ConsoleTimeout as exc:
            raise GuestError(f"{self.name}: command {command!r}: {exc}") \
                from exc
        output = match.group(1).decode(errors="replace").replace("\r", "")
        if output.endswith("\n"):
            output = output[:-1]
        status = int(match.group(2))
        if check and status != 0:
            raise GuestCommandError(command, status, output)
        return output

    # -- QMP -------------------------------------------------------------
    def qmp(self, command: str, **args: Any) -> Any:
        """Execute a QMP command and return its "return" value; raises
        qemu.qmp.ExecuteError on an error response.  Underscores in
        argument names become dashes (QEMUMachine.cmd convention); the
        command name is passed as is."""
        if self.vm is None:
            raise GuestError(f"{self.name} is not running")
        return self.vm.cmd(command, **args)

    def qmp_raw(self, command: str, args: Optional[Dict[str, Any]] = None
                ) -> Dict[str, Any]:
        """Execute a QMP command; return the whole response dict (with
        "return" or "error"), arguments passed verbatim."""
        if self.vm is None:
            raise GuestError(f"{self.name} is not running")
        return self.vm.qmp(command, args_dict=args or {})

    def runstate(self) -> str:
        return self.qmp("query-status")["status"]
