"""Where every record lives under the chroot, and how ids become znode names.

::

    <chroot>/flows/<flow>                  FlowDetail JSON
    <chroot>/flows/<flow>/tasks/<task>     TaskDetail JSON
    <chroot>/flows/<flow>/declines/<rep>   Decline JSON
    <chroot>/epochs/<flow>                 persistent; its *version* is the epoch,
                                           its data the current claim id
    <chroot>/epochs/<flow>/<claim id>      ephemeral holder marker (see driver: fencing)
    <chroot>/claims/<flow>                 ephemeral; {claim_id, epoch, owner, claimed_at}
    <chroot>/runnable/<flow>               present while the flow is runnable
    <chroot>/replicas/<replica>            ephemeral ReplicaInfo JSON
    <chroot>/mailboxes/<replica>/<flow>    Handover JSON (``%``, the empty
                                           name: the replica's drain); the
                                           folders are made on first use
    <chroot>/signal                        data bumped by every submit (wakes waiters)
    <chroot>/created/<day>/<bucket>/<ms>-<flow>   empty; the creation index pages
                                           read (created.py)
    <chroot>/created-indexed               present once every flow is indexed

Ids are arbitrary strings; znode names may not contain ``/``, control or
surrogate characters, nor be ``.`` or ``..``. Every id goes through
``encode_name``: characters outside a small safe set become ``%XX`` of their
UTF-8 bytes (so ``%`` itself is escaped), dots of ``.``/``..`` are escaped,
and the empty string is the lone ``%`` (which no other id encodes to).
"""

from __future__ import annotations

import functools
import string
from urllib.parse import quote, unquote

from ..errors import BadBackendURL

__all__ = ["Layout", "encode_name", "decode_name", "normalize_chroot"]

_SAFE = string.ascii_letters + string.digits + "-_.:@+=,~"
_EMPTY = "%"


@functools.lru_cache(maxsize=16384)  # the same flow ids are encoded on every path built for them
def encode_name(value: str) -> str:
    """A znode name for any string; ``decode_name`` gives the string back."""
    if value == "":
        return _EMPTY
    if value in (".", ".."):
        return "%2E" * len(value)
    return quote(value, safe=_SAFE, encoding="utf-8", errors="surrogatepass")


def decode_name(name: str) -> str:
    """Inverse of ``encode_name``; never raises. A name it did not make
    (``%FF``: invalid UTF-8 once decoded) keeps its bad bytes as lone
    surrogates, like ``redis.keys.from_bytes``: it names no stored record, and
    a task record under it is corrupt (``TaskDetail.from_json(key=...)``)."""
    if name == _EMPTY:
        return ""
    try:
        return unquote(name, encoding="utf-8", errors="surrogatepass")
    except UnicodeDecodeError:
        return unquote(name, encoding="utf-8", errors="surrogateescape")


def normalize_chroot(path: str) -> str:
    """``/a/b`` from a URL path; the root itself is refused (we own what we create)."""
    parts = [unquote(p) for p in path.split("/") if p]
    if not parts:
        raise BadBackendURL("zookeeper:// URL needs a chroot path, e.g. zookeeper://host:2181/flowbaton")
    for part in parts:
        if part in (".", "..") or any(ord(c) < 0x20 for c in part):
            raise BadBackendURL(f"zookeeper chroot component {part!r} is not a valid znode name")
    return "/" + "/".join(parts)


class Layout:
    """Absolute znode paths under one chroot (we prefix paths ourselves
    rather than use kazoo's chroot, so that creating the chroot is plain)."""

    def __init__(self, chroot: str) -> None:
        self.root = chroot
        self.flows = f"{chroot}/flows"
        self.epochs = f"{chroot}/epochs"
        self.claims = f"{chroot}/claims"
        self.runnable = f"{chroot}/runnable"
        self.replicas = f"{chroot}/replicas"
        self.signal = f"{chroot}/signal"
        self.mailboxes = f"{chroot}/mailboxes"

    def folders(self) -> list[str]:
        """Every persistent folder, created once at start."""
        return [self.flows, self.epochs, self.claims, self.runnable, self.replicas]

    def flow(self, flow_id: str) -> str:
        return f"{self.flows}/{encode_name(flow_id)}"

    def tasks(self, flow_id: str) -> str:
        return f"{self.flow(flow_id)}/tasks"

    def task(self, flow_id: str, task_id: str) -> str:
        return f"{self.tasks(flow_id)}/{encode_name(task_id)}"

    def declines(self, flow_id: str) -> str:
        return f"{self.flow(flow_id)}/declines"

    def decline(self, flow_id: str, replica_id: str) -> str:
        return f"{self.declines(flow_id)}/{encode_name(replica_id)}"

    def epoch(self, flow_id: str) -> str:
        return f"{self.epochs}/{encode_name(flow_id)}"

    def holder(self, flow_id: str, claim_id: str) -> str:
        return f"{self.epoch(flow_id)}/{encode_name(claim_id)}"

    def claim(self, flow_id: str) -> str:
        return f"{self.claims}/{encode_name(flow_id)}"

    def runnable_marker(self, flow_id: str) -> str:
        return f"{self.runnable}/{encode_name(flow_id)}"

    def mailbox(self, replica_id: str) -> str:
        return f"{self.mailboxes}/{encode_name(replica_id)}"

    def replica(self, replica_id: str) -> str:
        return f"{self.replicas}/{encode_name(replica_id)}"
