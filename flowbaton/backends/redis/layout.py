"""Which ``Layout`` a namespace has: read once from the store, agreed by every replica.

The layout record (``GlobalKeys.layout``, JSON ``{"shards": S}``) is
written by the first process that opens the namespace, with ``SET NX``, and
read back: two processes opening it at once agree on whichever wrote
first, and one that opens a namespace some other process already uses in
the classic layout finds that written down too (else a later ``shards=4``
opener of a still empty namespace would start a second layout beside the
first one's flows). A namespace without the record and with flows has the
classic layout (every namespace made before layouts existed); it gets the
record ``{"shards": 0}`` and is never rewritten: moving flows between
layouts under running replicas would let a replica of each layout claim
the same flow.

The record is untrusted input like every other: anything but a shard count
in range is ``CorruptRecord`` naming the key, never a guess.
"""

from __future__ import annotations

import json

from ..errors import BadBackendURL, CorruptRecord
from ..records import load_json
from ._types import Client
from .keys import GlobalKeys, IndexKeys, Layout

__all__ = ["AUTO", "CLUSTER_SHARDS", "MAX_SHARDS", "check_shards", "resolve_layout"]

#: the ``shards`` option's default: the stored layout, else the default of the server's kind
AUTO = -1
#: shards of a new namespace on a Redis Cluster: several per primary of a
#: 3- to 8-primary cluster, few enough that an idle poll (one script per
#: shard) stays cheap
CLUSTER_SHARDS = 16
#: every poll for work sends one script per shard: past a few per primary
#: of the largest clusters, more shards only cost
MAX_SHARDS = 256


def check_shards(value: int) -> int:
    """The ``shards`` URL option: AUTO, 0 (classic) or 1..MAX_SHARDS."""
    if value != AUTO and not 0 <= value <= MAX_SHARDS:
        raise BadBackendURL(f"option 'shards': {value} is not between 0 and {MAX_SHARDS}")
    return value


def resolve_layout(client: Client, prefix: str, wanted: int, cluster: bool, where: str) -> Layout:
    """The namespace's layout, written first if it has none yet; ``wanted``
    is the URL's ``shards`` option."""
    key = GlobalKeys.of(prefix).layout
    raw = client.get(key)
    if raw is None:
        shards = wanted if wanted != AUTO else (CLUSTER_SHARDS if cluster else 0)
        if shards and _holds_classic_flows(client, prefix):
            if wanted != AUTO:
                raise BadBackendURL(
                    f"option 'shards': namespace {prefix!r} in {where} holds flows in the classic layout "
                    "(no shards); open it without 'shards' or use a new prefix"
                )
            shards = 0  # a standalone namespace from before layouts, opened on a cluster: refused below
        if shards == 0:
            _refuse_classic_on_cluster(cluster, prefix, where)
        client.set(key, json.dumps({"shards": shards}), nx=True)
        raw = client.get(key)
    stored = _stored_shards(raw, f"{where} key {key!r}")
    if wanted != AUTO and wanted != stored:
        has = f"{stored}" if stored else "0 (the classic layout)"
        raise BadBackendURL(f"option 'shards': {wanted}, but namespace {prefix!r} in {where} has {has}")
    if stored == 0:
        _refuse_classic_on_cluster(cluster, prefix, where)
    return Layout(prefix, stored)


def _stored_shards(raw: bytes | str | None, where: str) -> int:
    record = load_json(raw, where) if raw is not None else None
    shards = record.get("shards") if isinstance(record, dict) else None
    if type(shards) is not int or not 0 <= shards <= MAX_SHARDS:
        raise CorruptRecord(where, f'not a layout record ({{"shards": 0..{MAX_SHARDS}}})')
    return shards


def _holds_classic_flows(client: Client, prefix: str) -> bool:
    return bool(client.exists(IndexKeys.of(prefix).created))


def _refuse_classic_on_cluster(cluster: bool, prefix: str, where: str) -> None:
    if cluster:
        raise BadBackendURL(
            f"option 'shards': namespace {prefix!r} in {where} would have the classic layout, whose "
            "scripts cross slots on a Redis Cluster; use 'shards' of 1 or more (default 16)"
        )
