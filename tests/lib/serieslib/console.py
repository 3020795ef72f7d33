"""Background reader for a guest's serial console.

QEMUMachine hands us a socket connected to the serial port's chardev.  A
thread keeps draining it (so the guest never blocks on a full socket),
appends everything to an in-memory buffer and to a log file, and wakes up
whoever waits for a pattern.

Matching works with a cursor: wait() searches the text received after the
cursor and moves the cursor past the match, so a later wait() never matches
the same output twice.
"""

import re
import socket
import threading
import time
from typing import Optional, Pattern, Union


class ConsoleTimeout(Exception):
    """The expected console output did not arrive in time."""


class ConsoleReader:
    def __init__(self, sock: socket.socket, logfile: Optional[str] = None):
        self._sock = sock
        self._buf = bytearray()
        self._cursor = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._eof = False
        self._log = open(logfile, "ab") if logfile else None  # noqa: SIM115
        # A short timeout lets the thread notice stop() promptly.
        sock.settimeout(0.2)
        self._thread = threading.Thread(target=self._run, daemon=True,
                                        name="console-reader")
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except socket.timeout:
                continue
            except OSError:
                data = b""
            with self._cond:
                if not data:
                    self._eof = True
                    self._cond.notify_all()
                    return
                self._buf += data
                if self._log:
                    self._log.write(data)
                    self._log.flush()
                self._cond.notify_all()

    def stop(self) -> None:
        """Stop the reader thread (the socket itself is owned by QEMUMachine
        and closed there)."""
        self._stop.set()
        self._thread.join(timeout=5)
        with self._cond:
            if self._log:
                self._log.close()
                self._log = None

    # -- reading ---------------------------------------------------------
    def text(self, start: int = 0) -> str:
        """Everything received so far (from byte offset start), decoded."""
        with self._cond:
            return self._buf[start:].decode("utf-8", errors="replace")

    def tail(self, nbytes: int = 3000) -> str:
        with self._cond:
            return self._buf[-nbytes:].decode("utf-8", errors="replace")

    @property
    def position(self) -> int:
        """Current length of the buffer (usable as wait(start=...))."""
        with self._cond:
            return len(self._buf)

    def wait(self, pattern: Union[str, bytes, Pattern], timeout: float,
             start: Optional[int] = None, advance: bool = True
             ) -> "re.Match[bytes]":
        """Wait until pattern (regex; str is utf-8 encoded) shows up after
        the cursor (or after byte offset start) and return the bytes match.
        Raises ConsoleTimeout with the console's tail on timeout or EOF."""
        if isinstance(pattern, str):
            pattern = pattern.encode()
        if isinstance(pattern, bytes):
            pattern = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            pos = self._cursor if start is None else start
            while True:
                match = pattern.search(self._buf, pos)
                if match:
                    if advance:
                        self._cursor = match.end()
                    return match
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._eof:
                    why = "console closed" if self._eof else \
                        f"timeout after {timeout:.0f}s"
                    raise ConsoleTimeout(
                        f"{why} waiting for {pattern.pattern!r}; console "
                        f"tail:\n{self._buf[-2000:].decode(errors='replace')}")
                self._cond.wait(min(remaining, 1.0))
