"""What operators read: flows, claims, replicas, one flow, a resume plan.

Each function returns a typed document (``ops.documents``: its ``to_json``
is the documented ``--json`` shape) and is what the CLI calls, so scripts and the bench (``bench/ops_scale.py``)
measure exactly what an operator waits for. Costs: listings read the flow
index once (``list_flows``) plus the live claims and replicas; per-flow
reads happen only for claims (their flow and tasks, for state and last
progress) and for stranded candidates (their declines), in parallel.
"""

from __future__ import annotations

import fnmatch
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..backends.base import Backend
from ..backends.errors import CorruptRecord, FlowNotFound
from ..backends.records import ClaimInfo, FlowDetail, ReplicaInfo, TaskDetail
from ..backends.states import RUNNABLE_FLOW_STATES
from ..engine.builds import AUTO_BUILD, resolve_build
from ..engine.lifecycle import plan_flow
from .actions import current_claim, load_flow
from .builds import would_decline
from .documents import ClaimRow, FlowPage, FlowPlan, FlowRow, FlowShow, ReplicaRow, ReplicasReport
from .stranded import find_stranded, gather, stranded_reason

__all__ = ["Fleet", "flows", "flows_page", "claims", "replicas", "show", "plan", "last_progress"]

log = logging.getLogger("flowbaton.coordinator.ops")


@dataclass(frozen=True)
class Fleet:
    """The live replicas and live claims, read once per command."""

    replicas: list[ReplicaInfo]
    claims: list[ClaimInfo]

    @classmethod
    def read(cls, backend: Backend) -> Fleet:
        return cls(backend.list_replicas(), backend.list_claims())

    def replica(self, replica_id: str) -> ReplicaInfo | None:
        return next((r for r in self.replicas if r.replica_id == replica_id), None)


# -------------------------------------------------------------------- flows


def flows(
    backend: Backend,
    *,
    state: str | None = None,
    owner: str | None = None,
    stranded: bool = False,
    since: float | None = None,
    before: float | None = None,
    factory: str | None = None,
    name: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[FlowRow]:
    """Stored flows, oldest first: in ``state``, claimed by ``owner``,
    updated at or after ``since`` and before ``before`` (wall-clock
    seconds), whose factory and name match the shell patterns ``factory``
    and ``name`` (``billing.*``; no wildcard: that exact text), stranded
    (rows then say why, under ``stranded``). ``offset`` rows are skipped and
    at most ``limit`` returned: a page (the stranded rule runs before paging)."""
    if (limit is not None and limit < 0) or offset < 0:
        raise ValueError(f"limit and offset must not be negative, got {limit!r} and {offset!r}")
    if limit is not None and not stranded:  # a page: read page by page, never the whole store
        return flows_page(backend, limit=offset + limit, state=state, owner=owner, since=since, before=before,
                          factory=factory, name=name).rows[offset:]
    if stranded:
        states: Sequence[str] | None = [state] if state else sorted(RUNNABLE_FLOW_STATES)
    else:
        states = [state] if state else None
    owners = {c.flow_id: c.owner for c in backend.list_claims()}
    chosen = _chooser(owners, owner, since, before, factory, name)
    found = [f for f in backend.list_flows(states) if chosen(f)]
    if not stranded:  # every row: a limit pages above
        return [FlowRow.of(f, owners.get(f.id)) for f in found[offset:]]
    reasons = find_stranded(backend, found, set(owners), backend.list_replicas())
    rows = [FlowRow.of(f, owners.get(f.id), reasons[f.id]) for f in found if f.id in reasons]
    return rows[offset:None if limit is None else offset + limit]


def flows_page(
    backend: Backend,
    *,
    limit: int,
    after: str | None = None,
    state: str | None = None,
    owner: str | None = None,
    since: float | None = None,
    before: float | None = None,
    factory: str | None = None,
    name: str | None = None,
) -> FlowPage:
    """One page of ``flows``: up to ``limit`` rows after the cursor
    ``after`` (None: the first page), with the cursor of the next page.
    Reads the store a page at a time (``Backend.page_flows``), so memory and
    time follow ``limit``, not the number of stored flows, except where a
    filter other than ``state`` turns most rows away."""
    if limit < 1:
        raise ValueError(f"a page holds at least one flow, got limit {limit!r}")
    owners = {c.flow_id: c.owner for c in backend.list_claims()}
    chosen = _chooser(owners, owner, since, before, factory, name)
    rows: list[FlowRow] = []
    cursor = after
    while len(rows) < limit:
        page, cursor = backend.page_flows([state] if state else None, cursor, limit - len(rows))
        rows += [FlowRow.of(f, owners.get(f.id)) for f in page if chosen(f)]
        if cursor is None:
            break
    return FlowPage(rows, cursor)


def _chooser(owners: dict[str, str], owner: str | None, since: float | None, before: float | None,
             factory: str | None, name: str | None) -> Callable[[FlowDetail], bool]:
    """The filters of a listing other than its state (which the store applies)."""
    def chosen(flow: FlowDetail) -> bool:
        return ((owner is None or owners.get(flow.id) == owner)
                and (since is None or flow.updated_at >= since) and (before is None or flow.updated_at < before)
                and _matches(factory, flow.factory) and _matches(name, flow.name))

    return chosen


def _matches(pattern: str | None, text: str) -> bool:
    return pattern is None or fnmatch.fnmatchcase(text, pattern)


# ------------------------------------------------------------------- claims


def last_progress(tasks: Sequence[TaskDetail]) -> float | None:
    """The latest task start or end: when the flow last moved."""
    stamps = [t.finished_at or t.started_at for t in tasks]
    known = [s for s in stamps if s is not None]
    return max(known) if known else None


def _claimed_flow(backend: Backend, flow_id: str) -> tuple[FlowDetail | None, float | None]:
    try:
        return backend.load_flow(flow_id), last_progress(list(backend.load_tasks(flow_id).values()))
    except FlowNotFound:  # purged since the claims were listed
        return None, None
    except CorruptRecord as err:  # one bad record must not hide every claim
        log.warning("claims: %s", err)
        return None, None


def claims(backend: Backend, *, owner: str | None = None, stale: bool = False,
           now: float | None = None) -> list[ClaimRow]:
    """Live claims, oldest first; ``stale``: only those whose owner is not a
    live replica (a dead process whose lease has not run out yet, a zombie,
    an interrupted operator command)."""
    fleet = Fleet.read(backend)
    live = {r.replica_id for r in fleet.replicas}
    chosen = [c for c in sorted(fleet.claims, key=lambda c: (c.claimed_at, c.flow_id))
              if (owner is None or c.owner == owner) and (not stale or c.owner not in live)]
    context = gather(lambda c: _claimed_flow(backend, c.flow_id), chosen)
    current = time.time() if now is None else now
    return [ClaimRow.of(c, fleet.replica(c.owner), flow, progress, current)
            for c, (flow, progress) in zip(chosen, context, strict=True)]


# ----------------------------------------------------------------- replicas


def replicas(backend: Backend) -> ReplicasReport:
    """Live replicas with the flows each holds, claims held by anyone else
    (``other_claims``), and the backend's warnings about its server."""
    fleet = Fleet.read(backend)
    held: dict[str, list[str]] = {}
    for claim in fleet.claims:
        held.setdefault(claim.owner, []).append(claim.flow_id)
    rows = [ReplicaRow(r, sorted(held.get(r.replica_id, [])), _draining(backend, r))
            for r in sorted(fleet.replicas, key=lambda r: (r.started_at, r.replica_id))]
    live = {r.replica_id for r in fleet.replicas}
    others = [c for c in fleet.claims if c.owner not in live]
    return ReplicasReport(rows, others, backend.warnings())


def _draining(backend: Backend, replica: ReplicaInfo) -> bool:
    """A drain of this incarnation is asked for (one read of its mailbox)."""
    return any(r.drain and r.started_at == replica.started_at for r in backend.load_handovers(replica.replica_id))


# ------------------------------------------------------------------ one flow


def show(backend: Backend, flow_id: str) -> FlowShow:
    """Everything about one flow: record, tasks, claim, declines, resume and
    operator history, and whether it is stranded (and why)."""
    flow = load_flow(backend, flow_id)
    claim = current_claim(backend, flow_id)
    try:
        declines = backend.load_declines(flow_id)
    except CorruptRecord as err:  # the flow itself is still worth showing
        log.warning("show: declines not shown: %s", err)
        declines = []
    tasks = backend.load_tasks(flow_id)
    why = stranded_reason(flow, claim is not None, declines, backend.list_replicas())
    return FlowShow.of(flow, tasks, declines, claim, why)


def plan(backend: Backend, flow_id: str, allow: Sequence[str], build: str | None = AUTO_BUILD) -> FlowPlan:
    """What resuming the flow with the code importable here would do.
    Writes nothing, but imports and calls the stored factory: the record is
    untrusted, so it gets the replicas' rule and the operator's ``allow``
    list, never its own module's. ``build`` is the code here's (``"auto"``:
    the distribution of the ``allow`` factories, as a replica's default;
    None: unset): whether a replica of it would decline the flow."""
    this_build = resolve_build(build, allow)
    flow = backend.load_flow(flow_id)  # one read: the plan and the builds describe the same record
    document = plan_flow(backend, flow_id, allow=allow, flow=flow)
    return FlowPlan.of(document, flow, this_build, would_decline(flow, this_build))
