"""Stranded flows: runnable, no live claim, and no live replica will run them.

A flow is stranded when every live replica either may not import its
factory (its ``--allow`` prefixes exclude the module), runs a build older
than the newest the flow already ran on (``ops.builds``: it would decline
it, unless an operator allowed that build), or declined it since it
started (it tried and failed: module missing, today's code does not
build). With no live replica at all, every unclaimed runnable flow is
stranded too: nothing will run it until a replica starts.

Deciding needs the flow's declines only when some live replica's prefixes
admit the factory, so a listing reads declines for those flows alone, a few
at a time in parallel (each read is one round trip to the backend).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from ..backends.base import Backend
from ..backends.errors import CorruptRecord, FlowNotFound
from ..backends.records import Decline, FlowDetail, ReplicaInfo
from ..backends.states import RUNNABLE_FLOW_STATES
from ..engine.errors import FactoryError
from ..engine.factory import check_allowed, factory_module
from .builds import build_stranded

__all__ = ["gather", "may_import", "stranded_reason", "stranded_by_build", "find_stranded"]

log = logging.getLogger("flowbaton.coordinator.ops")

T = TypeVar("T")
R = TypeVar("R")

_WORKERS = 8  # parallel reads of per-flow records (claims, declines)


def gather(read: Callable[[T], R], items: Sequence[T]) -> list[R]:
    """``[read(item) for item in items]``, up to ``_WORKERS`` at a time: the
    drivers are thread-safe and each read waits on one round trip."""
    if len(items) < 2:
        return [read(item) for item in items]
    with ThreadPoolExecutor(min(_WORKERS, len(items)), thread_name_prefix="flowbaton-ops") as pool:
        return list(pool.map(read, items))


def may_import(replica: ReplicaInfo, factory: str) -> bool:
    """Whether the replica's allowed prefixes admit the factory's module."""
    try:
        check_allowed(factory, replica.allow)
    except FactoryError:  # not allowed, or a malformed stored name
        return False
    return True


def _needs_declines(flow: FlowDetail, claimed: bool, replicas: Sequence[ReplicaInfo]) -> bool:
    runnable = flow.state in RUNNABLE_FLOW_STATES and not claimed
    return runnable and any(may_import(r, flow.factory) for r in replicas)


def stranded_reason(
    flow: FlowDetail, claimed: bool, declines: Sequence[Decline], replicas: Sequence[ReplicaInfo]
) -> str | None:
    """Why no live replica will run the flow, or None if one may."""
    if flow.state not in RUNNABLE_FLOW_STATES or claimed:
        return None
    if not replicas:
        return "no live replica: start one that may import its factory"
    able = [r for r in replicas if may_import(r, flow.factory)]
    if not able:
        module = factory_module(flow.factory)
        prefixes = "; ".join(f"{r.replica_id}: {', '.join(r.allow) or 'none'}" for r in replicas)
        return f"no live replica may import {module!r} (allowed prefixes: {prefixes})"
    by_build = build_stranded(flow, able)
    if by_build is not None:
        return by_build
    latest = {d.replica_id: d for d in declines}
    # A decline counts only if made since the replica started: a restarted
    # replica with the same id may have the code by now.
    refused = [latest[r.replica_id] for r in able if r.replica_id in latest
               and latest[r.replica_id].at >= r.started_at]
    if len(refused) < len(able):
        return None
    return "declined by every live replica that may import it: " + "; ".join(
        f"{d.replica_id}: {d.reason}" for d in refused)


def stranded_by_build(flow: FlowDetail, claimed: bool, replicas: Sequence[ReplicaInfo]) -> str | None:
    """The reason when the flow is stranded because of builds alone: runnable,
    unclaimed, some live replica may import it, but none of those runs a
    build new enough (what ``retry --allow-build`` can settle)."""
    if flow.state not in RUNNABLE_FLOW_STATES or claimed:
        return None
    return build_stranded(flow, [r for r in replicas if may_import(r, flow.factory)])


def find_stranded(
    backend: Backend, flows: Sequence[FlowDetail], claimed: set[str], replicas: Sequence[ReplicaInfo]
) -> dict[str, str]:
    """Flow id -> reason, for the stranded ones among ``flows``."""
    need = [f for f in flows if _needs_declines(f, f.id in claimed, replicas)]
    declines = dict(zip([f.id for f in need], gather(lambda f: _declines(backend, f.id), need), strict=True))
    found: dict[str, str] = {}
    for flow in flows:
        reason = stranded_reason(flow, flow.id in claimed, declines.get(flow.id, []), replicas)
        if reason is not None:
            found[flow.id] = reason
    return found


#: How many backlog flows ``count_stranded`` looks at: the oldest, where a
#: stranded flow sits (it waits for ever); bounded, since a gauge reads it.
STRANDED_SCAN = 500


def count_stranded(backend: Backend, limit: int = STRANDED_SCAN) -> int:
    """How many of the ``limit`` oldest backlog flows no live replica will
    run: the stranded gauge. Reads the backlog index, those flows' records
    and (for candidates) their declines; nothing else of the store."""
    ids = backend.backlog(limit)
    flows = [f for f in gather(lambda flow_id: _flow_or_none(backend, flow_id), ids) if f is not None]
    return len(find_stranded(backend, flows, set(), backend.list_replicas()))


def _flow_or_none(backend: Backend, flow_id: str) -> FlowDetail | None:
    try:
        return backend.load_flow(flow_id)
    except (FlowNotFound, CorruptRecord):  # gone since, or held by whoever meets it
        return None


def _declines(backend: Backend, flow_id: str) -> list[Decline]:
    try:
        return backend.load_declines(flow_id)
    except FlowNotFound:  # purged since the listing
        return []
    except CorruptRecord as err:  # one bad record must not hide the listing
        log.warning("stranded: declines of flow %s not read: %s", flow_id, err)
        return []
