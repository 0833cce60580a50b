"""Key layout: every key of one flow shares a hash tag, indexes share another.

A flow ``f`` under prefix ``fb`` lives in ``fb:{f}:flow``, ``fb:{f}:tasks``,
``fb:{f}:claim``, ``fb:{f}:epoch`` and ``fb:{f}:declines``. Redis Cluster
hashes only the text between the first ``{`` and the next ``}``, so all of
them map to one slot and a Lua script may touch them together. Flow ids are
escaped inside the braces: a ``}`` in an id would otherwise end the tag early
and scatter the flow over slots.

A replica's lease is one key of its own slot, ``fb:lease:{<lease id>}``
(``lease_key``): its claims name it, and it expires when the replica stops
renewing it, which ends all those claims at once.

The global indexes (runnable flows, creation order, live leases, replicas)
share the tag ``{<prefix>}`` and so live in one slot of their own; no script
ever touches a flow key and an index key together (that would be CROSSSLOT on
a cluster), which is why the indexes are hints and the flow scripts the truth.

Ids and task ids travel as bytes with ``surrogatepass`` so that any Python
string, even one with a lone surrogate, is a safe key part or hash field.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import BadBackendURL

__all__ = [
    "FlowKeys", "IndexKeys", "escape", "to_bytes", "from_bytes", "as_text", "check_prefix", "lease_key", "mailbox_key",
]

# Characters that would break the hash tag or the escaping itself.
_ESCAPED = {"%": "%25", "{": "%7B", "}": "%7D"}
# Any character ``escape`` changes; most ids have none (a listing of 10,000
# flows builds keys for every one of them, so the common case is one scan).
_NEEDS_ESCAPE = re.compile("[%{}\ud800-\udfff]")


def to_bytes(text: str) -> bytes:
    """Encode an id or task id for Redis; total over every Python string."""
    return text.encode("utf-8", "surrogatepass")


def from_bytes(raw: bytes) -> str:
    """Inverse of ``to_bytes``; never raises. Bytes no ``to_bytes`` made
    (invalid UTF-8, planted by hand) keep their bad bytes as lone surrogates
    (``surrogateescape``): such an id names no stored key, so an index entry
    for it is dropped as stale and a task record under it is corrupt
    (``TaskDetail.from_json(key=...)``), instead of a UnicodeDecodeError
    that one bad member would raise in every listing."""
    try:
        return raw.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "surrogateescape")


def as_text(raw: Any) -> str:
    """A reply field as text: bytes decoded like ``from_bytes``, else ``str``."""
    return from_bytes(raw) if isinstance(raw, bytes) else str(raw)


def escape(flow_id: str) -> str:
    """Injective escaping of a flow id for use inside a hash tag.

    ``%``, ``{`` and ``}`` become ``%XX``; a lone surrogate (which UTF-8
    cannot carry) becomes ``%uXXXX``. An empty id becomes ``%`` followed by
    nothing else, so the tag is never empty (an empty ``{}`` is no tag at all).
    """
    if not flow_id:
        return "%"
    if not _NEEDS_ESCAPE.search(flow_id):
        return flow_id
    return "".join(_escape_char(ch) for ch in flow_id)


def _escape_char(ch: str) -> str:
    if ch in _ESCAPED:
        return _ESCAPED[ch]
    if 0xD800 <= ord(ch) <= 0xDFFF:
        return f"%u{ord(ch):04X}"
    return ch


def check_prefix(prefix: str) -> str:
    """A prefix must not contain braces: it would become the hash tag."""
    if not prefix or "{" in prefix or "}" in prefix:
        raise BadBackendURL(f"option 'prefix': {prefix!r} must be non-empty and without braces")
    return prefix


@dataclass(frozen=True)
class FlowKeys:
    """The keys of one flow, all in the slot of ``{escaped flow id}``."""

    flow_id: str
    flow: str
    tasks: str
    claim: str
    epoch: str
    declines: str

    @classmethod
    def of(cls, prefix: str, flow_id: str) -> FlowKeys:
        base = f"{prefix}:{{{escape(flow_id)}}}:"
        return cls(
            flow_id=flow_id,
            flow=base + "flow",
            tasks=base + "tasks",
            claim=base + "claim",
            epoch=base + "epoch",
            declines=base + "declines",
        )

    @property
    def member(self) -> bytes:
        """The flow id as stored in the index sorted sets."""
        return to_bytes(self.flow_id)

    def all(self) -> list[str]:
        return [self.flow, self.tasks, self.claim, self.epoch, self.declines]


@dataclass(frozen=True)
class IndexKeys:
    """Global indexes, one slot: ``<prefix>:index:{<prefix>}:<name>``.

    ``runnable``: zset flow id -> ms when it may next be taken (0 = unclaimed).
    ``created``: zset flow id -> creation sequence (from ``seq``).
    ``leases``: zset flow id -> claim expiry ms, for ``list_claims``.
    ``replicas``: hash replica id -> JSON; ``replica_expiry``: zset id -> ms.
    ``signal``: pub/sub channel announcing new work.
    ``lost``: pub/sub channel announcing claims taken away by force (their
    holders stop starting tasks at once instead of at their next write).
    """

    runnable: str
    created: str
    seq: str
    leases: str
    replicas: str
    replica_expiry: str
    signal: str
    lost: str

    @classmethod
    def of(cls, prefix: str) -> IndexKeys:
        base = f"{prefix}:index:{{{prefix}}}:"
        return cls(
            runnable=base + "runnable",
            created=base + "created",
            seq=base + "seq",
            leases=base + "leases",
            replicas=base + "replicas",
            replica_expiry=base + "replica_expiry",
            signal=base + "signal",
            lost=base + "lost",
        )


def mailbox_key(prefix: str, replica_id: str) -> str:
    """The hash of one replica's handover requests (field: flow id, '' for a drain), in a slot of its own."""
    return f"{prefix}:mailbox:{{{escape(replica_id)}}}"


def lease_key(prefix: str, lease_id: str) -> str:
    """The key of one replica lease, in a slot of its own."""
    return f"{prefix}:lease:{{{escape(lease_id)}}}"
