"""Who a replica is: its id and the presence record operators see.

The record also says which process this is, beyond its pid: the host's
boot, the pid namespace and the process's start time. A pid alone names no
process for long (pids are reused, and every container's first process is
pid 1); the three together do, and a replica restarted under the same id
reads them to prove its previous incarnation dead (``restart``).
"""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Sequence

from .._version import __version__
from ..backends.records import ReplicaInfo

__all__ = [
    "boot_id",
    "default_replica_id",
    "flowbaton_version",
    "pid_namespace",
    "process_start",
    "replica_info",
    "start_ticks",
]

#: Linux names the running kernel's boot with a random UUID, new at every boot.
BOOT_ID_FILE = "/proc/sys/kernel/random/boot_id"


def flowbaton_version() -> str:
    return __version__


def default_replica_id() -> str:
    """``host-pid-random4``: unique enough that a restarted process on the
    same host (same pid after a reboot) never reuses a live replica's id."""
    return f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(2)}"


def replica_info(replica_id: str, allow: Sequence[str] | None, build: str | None = None) -> ReplicaInfo:
    return ReplicaInfo(
        replica_id=replica_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        started_at=time.time(),
        version=flowbaton_version(),
        allow=list(allow) if allow is not None else [],
        build=build,
        boot_id=boot_id(),
        pid_namespace=pid_namespace(),
        process_start=process_start("self"),
    )


def boot_id() -> str | None:
    """This boot of the host (Linux), None where the system does not say."""
    try:
        with open(BOOT_ID_FILE, encoding="ascii") as file:
            return file.read().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def pid_namespace() -> str | None:
    """The pid namespace we see processes in (Linux: ``"pid:[4026531836]"``).
    Pids mean something only within one: a restarted container gets a new
    one, where its first process is pid 1 again."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


def process_start(pid: int | str) -> int | None:
    """When process ``pid`` (or ``"self"``) started, in clock ticks since
    boot (Linux); None if it cannot be read (gone, hidden, not Linux).
    Within one boot, a pid and this number name one process for ever."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            # latin-1 decodes any byte: the command name is whatever the process chose
            return start_ticks(file.read().decode("latin-1"))
    except OSError:
        return None


def start_ticks(stat: str) -> int | None:
    """Field 22 (``starttime``) of a ``/proc/<pid>/stat`` line, or None if
    the line is not one. Field 2 is the command name in parentheses, and
    that name may itself hold spaces and parentheses (``"1 (a) b) S ..."``),
    so fields are counted from its *last* closing parenthesis."""
    _, paren, rest = stat.rpartition(")")
    fields = rest.split()
    if not paren or len(fields) < 20:
        return None
    value = fields[19]  # field 3 (state) is fields[0]
    return int(value) if value.isascii() and value.isdigit() else None
