"""The documents the operator queries return: typed, each with its JSON.

``flowbaton ... --json`` prints ``to_json()`` of these, so the shapes of
``flows``, ``claims`` and ``show`` live here, in the API that builds them,
and only ever gain keys (docs/design.md, "Operator output"). Every
``to_json`` spells its keys out in their documented order: a script that
reads the output sees the same bytes release after release. Documents are
pure values built from records; reading the records is ``ops.query``'s job,
rendering them as tables the CLI's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..backends.records import ClaimInfo, Decline, FlowDetail, ReplicaInfo, TaskDetail
from ..engine.attempts import history_of
from ..engine.meta import FlowMeta
from .builds import unset_builds

__all__ = ["FlowRow", "FlowPage", "ClaimRow", "ReplicaRow", "ReplicasReport", "TaskRow", "FlowShow", "FlowPlan"]

JSON = Any


@dataclass(frozen=True)
class FlowRow:
    """One stored flow in a listing: the documented keys, plus ``reason``
    (why HELD, failed or cancelled) and, in a stranded listing only,
    ``stranded`` (why no live replica will run it)."""

    id: str
    name: str
    state: str
    factory: str
    owner: str | None  # the live claim's owner, not the record's
    created_at: float
    updated_at: float
    reason: str | None
    stranded: str | None = None

    @classmethod
    def of(cls, flow: FlowDetail, owner: str | None, stranded: str | None = None) -> FlowRow:
        """The row of a flow record. ``owner``: the owner of the flow's live
        claim, None when unclaimed (not the record's ``owner``, which may name
        a dead replica); ``stranded``: why no live replica will run it, in a
        stranded listing."""
        return cls(flow.id, flow.name, flow.state, flow.factory, owner, flow.created_at, flow.updated_at,
                   flow.reason, stranded)

    def to_json(self) -> dict[str, JSON]:
        """One row of ``flows --json``: id, name, state, factory, owner,
        created_at, updated_at, reason, and ``stranded`` in a stranded
        listing only; keys in this order, later releases only append keys
        (docs/design.md, "Operator output")."""
        row = {
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "factory": self.factory,
            "owner": self.owner,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "reason": self.reason,
        }
        return row if self.stranded is None else {**row, "stranded": self.stranded}


@dataclass(frozen=True)
class FlowPage:
    """A page of a listing (``query.flows_page``) and the cursor of the next
    page (None: this was the last)."""

    rows: list[FlowRow]
    next: str | None

    def to_json(self) -> dict[str, JSON]:
        """The page for scripts: ``flows`` (its rows as ``flows --json`` prints
        them) and ``next``, the cursor of the next page (None on the last).
        The CLI prints only the rows, and the cursor on stderr."""
        return {"flows": [row.to_json() for row in self.rows], "next": self.next}


@dataclass(frozen=True)
class ClaimRow:
    """One live claim: the claim's documented keys, plus where its owner
    runs (``host``/``pid`` from its presence; None when the owner is no live
    replica, which makes the claim ``stale``), the flow's ``state``, ``age``
    and ``lease_left`` in seconds (``lease_left`` None and ``lease``
    "session" where the session is the lease), and ``last_progress``: the
    latest task start or end."""

    claim: ClaimInfo
    replica: ReplicaInfo | None  # the owner's presence; None: no live replica
    state: str | None  # the flow's; None when it could not be read
    age: float
    lease_left: float | None
    last_progress: float | None

    @classmethod
    def of(cls, claim: ClaimInfo, replica: ReplicaInfo | None = None, flow: FlowDetail | None = None,
           progress: float | None = None, now: float | None = None) -> ClaimRow:
        """The row of a live claim as of ``now`` (default: the clock):
        ``replica`` is its owner's presence (None: no live replica, so the
        claim is stale), ``flow`` the record its state is read from,
        ``progress`` the flow's latest task start or end. Age and lease left
        are rounded to the millisecond."""
        current = time.time() if now is None else now
        left = None if claim.expires_at is None else round(claim.expires_at - current, 3)
        return cls(claim, replica, flow.state if flow else None, round(current - claim.claimed_at, 3), left,
                   progress)

    @property
    def host(self) -> str | None:
        """The host the owner runs on, from its presence; None when the owner is
        no live replica."""
        return self.replica.host if self.replica else None

    @property
    def pid(self) -> int | None:
        """The owner's process id on ``host``, from its presence; None when the
        owner is no live replica."""
        return self.replica.pid if self.replica else None

    @property
    def lease(self) -> str:
        """What bounds the claim: a "lease" that runs out, or the holder's "session"."""
        return "session" if self.claim.expires_at is None else "lease"

    @property
    def stale(self) -> bool:
        """Held by no live replica: a dead process whose lease has not run
        out yet, a zombie, an interrupted operator command."""
        return self.replica is None

    def to_json(self) -> dict[str, JSON]:
        """One claim in ``claims --json``: the claim's own keys
        (``ClaimInfo.to_dict``), then host, pid, state, age, lease,
        lease_left, last_progress and stale; keys in this order, later
        releases only append keys."""
        return {
            **self.claim.to_dict(),
            "host": self.host,
            "pid": self.pid,
            "state": self.state,
            "age": self.age,
            "lease": self.lease,
            "lease_left": self.lease_left,
            "last_progress": self.last_progress,
            "stale": self.stale,
        }


@dataclass(frozen=True)
class ReplicaRow:
    """One live replica and the flows it holds (sorted ids); ``build`` is
    the release of its code, None when it says none (``engine.builds``);
    ``draining``: a drain of this incarnation was asked for."""

    info: ReplicaInfo
    claims: list[str]
    draining: bool = False  # an operator asked it to hand everything back (``flowbaton drain``)

    def to_json(self) -> dict[str, JSON]:
        """One replica in ``replicas --json``: replica_id, host, pid, version,
        allow, started_at, seen_at, the flows it holds (``claims``), build
        and draining; keys in this order, later releases only append keys.
        The presence's process identity (boot id, pid namespace, start time)
        is left out."""
        info = self.info
        return {"replica_id": info.replica_id, "host": info.host, "pid": info.pid, "version": info.version,
                "allow": info.allow, "started_at": info.started_at, "seen_at": info.seen_at,
                "claims": self.claims, "build": info.build, "draining": self.draining}


@dataclass(frozen=True)
class ReplicasReport:
    """``flowbaton replicas``: live replicas oldest first, claims held by no
    live replica (``other_claims``), the backend's warnings about its
    server, and the live replicas that say no build (``unset_builds``)."""

    replicas: list[ReplicaRow]
    other_claims: list[ClaimInfo]
    warnings: list[str]

    @property
    def unset_builds(self) -> list[str]:
        """Ids of the live replicas that say no build, oldest first: each may
        resume a flow that newer code already ran (``flowbaton check`` warns)."""
        return unset_builds([r.info for r in self.replicas])

    def to_json(self) -> dict[str, JSON]:
        """What ``replicas --json`` prints: ``replicas`` (``ReplicaRow.to_json``
        each), ``other_claims`` (claims no live replica holds, as
        ``ClaimInfo.to_dict``), ``warnings`` and ``unset_builds``; keys in
        this order, later releases only append keys."""
        return {"replicas": [r.to_json() for r in self.replicas],
                "other_claims": [c.to_dict() for c in self.other_claims], "warnings": self.warnings,
                "unset_builds": self.unset_builds}


@dataclass(frozen=True)
class TaskRow:
    """One task of a flow as ``show`` lists it; a task of today's flow that
    never started has no record and shows as PENDING, attempt 0. The latest
    attempt's times and epoch, and ``history``: the earlier attempts the
    record keeps (``engine.attempts``; entries that are no object left out)."""

    id: str
    state: str
    version: str | None
    attempts: int
    result: JSON
    failure: dict[str, str] | None
    owner: str | None
    started_at: float | None = None
    finished_at: float | None = None
    epoch: int = 0
    history: list[dict[str, JSON]] = field(default_factory=list)

    @classmethod
    def of(cls, task_id: str, detail: TaskDetail | None) -> TaskRow:
        """The row of a task from its record; ``detail`` None (a task of
        today's flow that never started) gives PENDING, attempt 0."""
        if detail is None:  # in the flow, never started
            return cls(task_id, "PENDING", None, 0, None, None, None)
        return cls(task_id, detail.state, detail.version, detail.attempts, detail.result, detail.failure,
                   detail.owner, detail.started_at, detail.finished_at, detail.epoch, history_of(detail))

    def to_json(self) -> dict[str, JSON]:
        """One task in ``show --json``: id, state, version, attempts, result
        (as stored: codec values still tagged), failure, owner, started_at,
        finished_at, epoch and history; keys in this order, later releases
        only append keys."""
        return {"id": self.id, "state": self.state, "version": self.version, "attempts": self.attempts,
                "result": self.result, "failure": self.failure, "owner": self.owner,
                "started_at": self.started_at, "finished_at": self.finished_at, "epoch": self.epoch,
                "history": self.history}


def _task_order(flow: FlowDetail, tasks: Mapping[str, TaskDetail]) -> list[str]:
    """The flow's own order (stored by the engine at the last run), then any
    stored task it no longer has."""
    known = FlowMeta(flow.meta).tasks or []
    return known + sorted(t for t in tasks if t not in known)


@dataclass(frozen=True)
class FlowShow:
    """``flowbaton show``: the documented object, plus ``reason`` (why HELD
    or failed), ``declines`` (which replica refused the flow, and why),
    ``claim`` (the live claim), ``resumes`` (each resume: who, when, epoch,
    takeover or not, and the diff between stored and rebuilt flow),
    ``claims`` (the claim history: who claimed it when, and how each claim
    ended),
    ``operations`` (operator actions), ``decisions`` (operator choices on
    version changes), and whether the flow is stranded (and why)."""

    flow: FlowDetail
    tasks: list[TaskRow]  # today's order, then stored tasks the flow no longer has
    declines: list[Decline]
    claim: ClaimInfo | None
    stranded_reason: str | None
    # The task records the rows were made from: their times, epochs and
    # attempt history are what ``ops.timeline`` draws; not in ``to_json``.
    details: Mapping[str, TaskDetail] = field(default_factory=dict)

    @classmethod
    def of(cls, flow: FlowDetail, tasks: Mapping[str, TaskDetail], declines: Sequence[Decline],
           claim: ClaimInfo | None, stranded_reason: str | None) -> FlowShow:
        """The document of a flow from its records: tasks in the flow's own
        order (as the engine stored it at the last run), then stored tasks
        it no longer has; ``stranded_reason`` None when it is not stranded."""
        rows = [TaskRow.of(t, tasks.get(t)) for t in _task_order(flow, tasks)]
        return cls(flow, rows, list(declines), claim, stranded_reason, dict(tasks))

    @property
    def owner(self) -> str | None:
        """The live claim's owner (the record's ``owner`` may name a dead one)."""
        return self.claim.owner if self.claim else None

    @property
    def meta(self) -> FlowMeta:
        """The record's ``meta`` (the engine's bookkeeping: resumes, operator
        actions, claims, version decisions) through the engine's typed view,
        so no reader spells its keys out."""
        return FlowMeta(self.flow.meta)

    @property
    def stranded(self) -> bool:
        """Whether no live replica will run the flow (``stranded_reason`` says why)."""
        return self.stranded_reason is not None

    def to_json(self) -> dict[str, JSON]:
        """What ``show --json`` prints: the record's fields but ``meta`` and
        ``schema`` (``owner`` is the live claim's), its tasks
        (``TaskRow.to_json`` each), declines, the live ``claim``, the
        histories kept in ``meta``, and whether it is stranded; keys in this
        order, later releases only append keys. ``details`` is not in it."""
        flow, meta = self.flow, self.meta
        return {
            "id": flow.id,
            "name": flow.name,
            "state": flow.state,
            "factory": flow.factory,
            "args": flow.args,
            "kwargs": flow.kwargs,
            "inputs": flow.inputs,
            "owner": self.owner,
            "tasks": [t.to_json() for t in self.tasks],
            "unmatched": meta.unmatched,
            "reason": flow.reason,
            "declines": [{"replica_id": d.replica_id, "reason": d.reason, "at": d.at} for d in self.declines],
            "created_at": flow.created_at,
            "updated_at": flow.updated_at,
            "epoch": flow.epoch,
            "claim": self.claim.to_dict() if self.claim else None,
            "resumes": meta.resumes,
            "operations": meta.operations,
            "decisions": meta.decisions,
            "stranded": self.stranded,
            "stranded_reason": self.stranded_reason,
            "claims": meta.claims,
        }


@dataclass(frozen=True)
class FlowPlan:
    """``flowbaton plan``: what resuming the flow with the code here would
    do (``engine.resume``'s rules), task ids by fate, and the reasons it
    would be HELD; then the builds (``engine.builds``): the newest the flow
    ran on, an operator's allowance, the code here's (``this_build``), and
    why a replica of it would decline the flow (``decline``; in JSON
    ``declines``, true or false)."""

    flow_id: str
    state: str
    factory: str
    added: list[str]
    unmatched: list[str]
    version_changed: list[dict[str, JSON]]
    reuse: list[str]
    run: list[str]
    in_doubt: list[str]
    failed: list[str]
    held: list[str]
    build: str | None = None
    allowed_build: str | None = None
    this_build: str | None = None
    decline: str | None = None

    @classmethod
    def of(cls, plan: Mapping[str, JSON], flow: FlowDetail | None = None, this_build: str | None = None,
           decline: str | None = None) -> FlowPlan:
        """From the engine's plan document (``engine.lifecycle.plan_flow``)
        and the flow record the builds are read from."""
        meta = FlowMeta(flow.meta if flow else {})
        return cls(plan["flow_id"], plan["state"], plan["factory"], plan["added"], plan["unmatched"],
                   plan["version_changed"], plan["reuse"], plan["run"], plan["in_doubt"], plan["failed"],
                   plan["held"], meta.build, meta.allowed_build, this_build, decline)

    @property
    def declines(self) -> bool:
        """Whether a replica of the code here (``this_build``) would decline the
        flow for its build; ``decline`` says why."""
        return self.decline is not None

    def to_json(self) -> dict[str, JSON]:
        """What ``plan --json`` prints: every field in order, except that the
        ``decline`` reason becomes ``declines``, true or false; later
        releases only append keys."""
        return {"flow_id": self.flow_id, "state": self.state, "factory": self.factory, "added": self.added,
                "unmatched": self.unmatched, "version_changed": self.version_changed, "reuse": self.reuse,
                "run": self.run, "in_doubt": self.in_doubt, "failed": self.failed, "held": self.held,
                "build": self.build, "allowed_build": self.allowed_build, "this_build": self.this_build,
                "declines": self.declines}
