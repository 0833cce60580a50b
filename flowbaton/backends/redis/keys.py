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
ever touches a flow key and an index key together, which is why the indexes
are hints and the flow scripts the truth.

That is the *classic* layout, the one a standalone Redis namespace keeps. On
a Redis Cluster it cannot work: a claim script checks the claimer's lease
key, in another slot (CROSSSLOT), and the one index slot would carry all the
coordination traffic on one primary. A namespace therefore has a ``Layout``
stored once (``<prefix>:index:{<prefix>}:layout``), which every replica
reads: ``shards = 0`` is the classic layout, ``shards = S`` spreads flows
over S hash tags ``<prefix>:<i>``, one per shard, each chosen so that its
slot lies at the centre of the i-th S-th of the slot space (a cluster
created with equal slot ranges puts the shards evenly on its primaries,
``_shard_tag``). A flow's keys, its
shard's indexes (runnable, created, leases) and a replica's lease for that
shard then share one slot: every script stays on one slot, and lease
renewal is one ``PEXPIRE`` per (replica, shard) with claims in it, whatever
the number of flows. The replica registry, the creation counter and the
pub/sub channels stay in the ``{<prefix>}`` slot: they carry one command per
replica per lease interval and one per new flow.

Ids and task ids travel as bytes with ``surrogatepass`` so that any Python
string, even one with a lone surrogate, is a safe key part or hash field.
"""

from __future__ import annotations

import re
import zlib
from binascii import crc_hqx
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from redis.crc import REDIS_CLUSTER_HASH_SLOTS

from ..errors import BadBackendURL

__all__ = [
    "FlowKeys", "IndexKeys", "GlobalKeys", "Layout",
    "escape", "to_bytes", "from_bytes", "as_text", "check_prefix", "lease_key", "mailbox_key",
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
    """The keys of one flow, all in one slot: ``{escaped flow id}``'s in
    the classic layout, its shard's in a sharded one (``Layout.flow``)."""

    flow_id: str
    flow: str
    tasks: str
    claim: str
    epoch: str
    declines: str
    #: the flow's shard (0 in the classic layout): which indexes and lease key go with it
    shard: int = 0

    @classmethod
    def of(cls, prefix: str, flow_id: str) -> FlowKeys:
        """The classic layout's keys."""
        return cls._at(f"{prefix}:{{{escape(flow_id)}}}:", flow_id, 0)

    @classmethod
    def _at(cls, base: str, flow_id: str, shard: int) -> FlowKeys:
        return cls(
            flow_id=flow_id,
            flow=base + "flow",
            tasks=base + "tasks",
            claim=base + "claim",
            epoch=base + "epoch",
            declines=base + "declines",
            shard=shard,
        )

    @property
    def member(self) -> bytes:
        """The flow id as stored in the index sorted sets."""
        return to_bytes(self.flow_id)

    def all(self) -> list[str]:
        return [self.flow, self.tasks, self.claim, self.epoch, self.declines]


@dataclass(frozen=True)
class IndexKeys:
    """The indexes of one shard, in its slot: ``<prefix>:index:{<tag>}:<name>``
    (the classic layout has one shard, whose tag is the prefix).

    ``runnable``: zset flow id -> ms when it may next be taken (0 = unclaimed).
    ``created``: zset flow id -> creation sequence.
    ``seq``: the classic layout's creation counter (a sharded one draws
    sequence numbers from ``GlobalKeys.seq`` and keeps this for repairs).
    ``leases``: zset flow id -> claim expiry ms, for ``list_claims``.
    """

    shard: int
    runnable: str
    created: str
    seq: str
    leases: str

    @classmethod
    def of(cls, prefix: str, tag: str | None = None, shard: int = 0) -> IndexKeys:
        base = f"{prefix}:index:{{{tag or prefix}}}:"
        return cls(shard=shard, runnable=base + "runnable", created=base + "created", seq=base + "seq",
                   leases=base + "leases")


@dataclass(frozen=True)
class GlobalKeys:
    """What every layout keeps in the ``{<prefix>}`` slot.

    ``replicas``: hash replica id -> JSON; ``replica_expiry``: zset id -> ms.
    ``seq``: the creation counter. ``layout``: the namespace's ``Layout``.
    ``signal``: pub/sub channel announcing new work.
    ``lost``: pub/sub channel announcing claims taken away by force (their
    holders stop starting tasks at once instead of at their next write).
    """

    seq: str
    replicas: str
    replica_expiry: str
    layout: str
    signal: str
    lost: str

    @classmethod
    def of(cls, prefix: str) -> GlobalKeys:
        base = f"{prefix}:index:{{{prefix}}}:"
        return cls(seq=base + "seq", replicas=base + "replicas", replica_expiry=base + "replica_expiry",
                   layout=base + "layout", signal=base + "signal", lost=base + "lost")


@dataclass(frozen=True)
class Layout:
    """Where a namespace keeps its keys: the classic layout (``shards`` 0)
    or ``shards`` hash-tagged shards (module doc)."""

    prefix: str
    shards: int = 0
    _tags: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_tags", tuple(_shard_tag(self.prefix, i, self.shards) for i in range(self.shards)))

    @property
    def sharded(self) -> bool:
        return self.shards > 0

    def shard_of(self, flow_id: str) -> int:
        """A flow's shard: a CRC-32 of its id, the same in every process and version."""
        return zlib.crc32(to_bytes(flow_id)) % self.shards if self.shards else 0

    def flow(self, flow_id: str) -> FlowKeys:
        if not self.shards:
            return FlowKeys.of(self.prefix, flow_id)
        shard = self.shard_of(flow_id)
        return FlowKeys._at(f"{self.prefix}:{{{self._tags[shard]}}}:{escape(flow_id)}:", flow_id, shard)

    def index(self, shard: int) -> IndexKeys:
        if not self.shards:
            return IndexKeys.of(self.prefix)
        return IndexKeys.of(self.prefix, self._tags[shard], shard)

    @cached_property
    def indexes(self) -> tuple[IndexKeys, ...]:
        """Every shard's indexes, in shard order."""
        return tuple(self.index(shard) for shard in range(max(self.shards, 1)))

    def lease(self, lease_id: str, shard: int) -> str:
        """The key of one replica lease: in a slot of its own in the classic
        layout, in the shard's slot in a sharded one (its claims' slot)."""
        if not self.shards:
            return lease_key(self.prefix, lease_id)
        return f"{self.prefix}:lease:{{{self._tags[shard]}}}:{escape(lease_id)}"


#: slots either side of a shard's centre its tag's slot may lie in
_TAG_WINDOW = 16


def _shard_tag(prefix: str, shard: int, shards: int) -> str:
    """The hash tag of a shard: ``<prefix>:<shard>``, or the first
    ``<prefix>:<shard>.<n>`` whose slot lies within ``_TAG_WINDOW`` slots of
    the centre of the shard's share of the slot space (or in its share,
    when that is narrower). Centred, not anywhere in the share: a share
    that straddles the boundary between two primaries' slot ranges would
    otherwise land on either, and the shards per primary would vary by
    prefix (16 shards on 3, 4, 5 or 6 equal primaries: the centres lie at
    least 100 slots from every boundary, so 3 primaries always get 5, 6
    and 5). The slot is Redis Cluster's CRC-16 (``crc_hqx``), computed here
    without the key-parsing wrapper: about 500 tags are tried per shard."""
    low = shard * REDIS_CLUSTER_HASH_SLOTS // shards
    high = (shard + 1) * REDIS_CLUSTER_HASH_SLOTS // shards
    centre = (low + high) // 2
    low, high = max(low, centre - _TAG_WINDOW), min(high, centre + _TAG_WINDOW)
    tag, attempt = f"{prefix}:{shard}", 0
    while not low <= crc_hqx(to_bytes(tag), 0) % REDIS_CLUSTER_HASH_SLOTS < high:
        attempt += 1
        tag = f"{prefix}:{shard}.{attempt}"
    return tag


def mailbox_key(prefix: str, replica_id: str) -> str:
    """The hash of one replica's handover requests (field: flow id, '' for a drain), in a slot of its own."""
    return f"{prefix}:mailbox:{{{escape(replica_id)}}}"


def lease_key(prefix: str, lease_id: str) -> str:
    """The key of one replica lease, in a slot of its own."""
    return f"{prefix}:lease:{{{escape(lease_id)}}}"
