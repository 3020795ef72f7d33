"""Live migration helpers for Guest objects."""

import time
from typing import Any, Dict, Optional, Sequence

from .guest import Guest, GuestError
from .netns import Netns


class MigrationError(GuestError):
    """Migration failed or did not finish in time."""


def start_destination(src: Guest, netdevs: Optional[Sequence[str]] = None,
                      devices: Optional[Sequence[str]] = None,
                      netns: Optional[Netns] = None,
                      name: Optional[str] = None,
                      paused: bool = True) -> Guest:
    """Launch a migration destination for src: same configuration, started
    with `-incoming defer` (and -S unless paused=False), optionally with a
    different -netdev list (e.g. another TAP) or in another namespace.
    The caller owns the returned Guest and must shut it down."""
    dst = src.clone(name=name, netns=netns, netdevs=netdevs,
                    devices=devices, incoming="defer", paused=paused)
    dst.launch()
    return dst


def migrate(src: Guest, dst: Guest, uri: str, timeout: float = 120,
            poll: float = 0.1) -> Dict[str, Any]:
    """Migrate src to dst, which must have been started with
    `-incoming defer`.

    Issues migrate-incoming on dst and migrate on src, then polls
    query-migrate on both until both report "completed".  Returns the
    source's final query-migrate result (total-time, downtime, ram stats,
    in milliseconds/bytes as QEMU reports them).  Raises MigrationError
    with QEMU's error-desc if either side fails, or on timeout (after
    cancelling the migration)."""
    dst.qmp("migrate-incoming", uri=uri)
    src.qmp("migrate", uri=uri)
    deadline = time.monotonic() + timeout
    src_info: Dict[str, Any] = {}
    dst_info: Dict[str, Any] = {}
    while True:
        src_info = src.qmp("query-migrate")
        dst_info = dst.qmp("query-migrate")
        for side, info in (("source", src_info), ("destination", dst_info)):
            if info.get("status") in ("failed", "cancelled"):
                raise MigrationError(
                    f"migration {info['status']} on the {side}: "
                    f"{info.get('error-desc', '(no error-desc)')}; "
                    f"source: {src_info}; destination: {dst_info}")
        if src_info.get("status") == "completed" and \
                dst_info.get("status") == "completed":
            return src_info
        if time.monotonic() > deadline:
            try:
                src.qmp("migrate_cancel")
            except Exception:  # pylint: disable=broad-except
                pass
            raise MigrationError(
                f"migration did not complete within {timeout}s; "
                f"source: {src_info}; destination: {dst_info}")
        time.sleep(poll)
