"""Who a replica is: its id and the presence record operators see."""

from __future__ import annotations

import os
import secrets
import socket
import time
from collections.abc import Sequence

from .._version import __version__
from ..backends.records import ReplicaInfo

__all__ = ["default_replica_id", "replica_info", "flowbaton_version"]


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
    )
