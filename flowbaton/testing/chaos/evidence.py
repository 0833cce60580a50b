"""Everything the checker reads, gathered and indexed once.

Three independent records of a run: the *history* (every claim, fenced
write and resume read each replica attempted, from ``RecordingBackend``),
the *ledger* (every task execution, written by the tasks themselves) and the
*final store* (read once faults healed and replicas stopped). Plus the
nemesis log, to say which fault explains what.

All times are ``time.monotonic()`` of the one host the run used.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flowbaton.backends.base import Backend
from flowbaton.backends.errors import FlowbatonError
from flowbaton.backends.records import FlowDetail, TaskDetail
from flowbaton.testing.ledger import read_ledger
from flowbaton.testing.recorder import digest, read_history, result_digest

__all__ = ["BUILD_DECLINE", "Evidence", "Execution", "Index", "Observation", "Op", "load_evidence", "load_saved",
           "read_final", "save_final"]

# Errors that prove a call changed nothing. A ClaimLost does not: a driver
# may have applied a first attempt whose reply was lost, then found the
# claim gone on its retry.
_CHANGED_NOTHING = {"FlowNotFound", "FlowExists", "ClaimHeld", "ResultTooLarge", "NotJSONError"}
WRITES = ("save_task", "save_flow", "create_flow")
#: how a decline for an older build reads (engine.builds.BuildTooOld's wording)
BUILD_DECLINE = "this replica runs"
FENCED = ("save_task", "save_flow", "renew", "release", "delete_flow")


@dataclass
class Op:
    """One backend call from the history: invoked at ``t0``, ended at ``t1``."""

    id: str
    op: str
    flow: str
    t0: float
    t1: float | None = None
    outcome: str = "open"  # ok | fail | open (the process died first)
    err: str | None = None
    claim: str | None = None
    epoch: int | None = None
    owner: str | None = None
    task: str | None = None
    state: str | None = None
    attempts: int | None = None
    digest: str | None = None
    result: str | None = None
    tasks: dict[str, str] | None = None
    build: str | None = None  # a flow record's newest build (engine.builds)
    reason: str | None = None  # a decline's

    @property
    def acked(self) -> bool:
        return self.outcome == "ok"

    @property
    def maybe_landed(self) -> bool:
        return self.outcome != "fail" or self.err not in _CHANGED_NOTHING

    @property
    def key(self) -> tuple[str, str]:
        """The record a write changes: (flow, task id), task "" for the flow record."""
        return (self.flow, self.task or "")

    @property
    def replica(self) -> str:
        if self.owner is not None:
            return self.owner
        return (self.claim or "").rsplit("#", 1)[0]


@dataclass
class Execution:
    """One task execution from the ledger (start line, and how it ended)."""

    flow: str
    task: str
    attempt: int
    epoch: int
    replica: str
    t: float
    end: str | None = None  # "end", "fail" or None (cut short)

    @property
    def token(self) -> tuple[str, int]:
        return (self.replica, self.epoch)


@dataclass
class Observation:
    """What one read (or the final store) showed of one flow's records."""

    flow: str
    t: float
    records: dict[str, str | None]  # task id ("" = flow record) -> digest, None = absent
    source: str  # "load_tasks", "load_flow", "final"


@dataclass
class Evidence:
    ops: list[Op]
    executions: list[Execution]
    faults: list[dict[str, Any]]
    final_flows: dict[str, FlowDetail | None]
    final_tasks: dict[str, dict[str, TaskDetail]]
    submitted: dict[str, str]  # flow id -> workload kind ("user" for your own factory)
    lease: float
    backend: str
    end: float  # when the final store was read
    ledger_used: bool = True
    builds: dict[str, str] = field(default_factory=dict)  # replica id -> the build it ran
    lives: dict[str, list[float | None]] = field(default_factory=dict)  # replica id -> [started, ended or None]


# -------------------------------------------------------------- loading


def _parse_ops(entries: list[dict[str, Any]]) -> list[Op]:
    ops: dict[str, Op] = {}
    for entry in entries:
        if entry.get("ph") == "invoke":
            ops[entry["i"]] = Op(entry["i"], entry["op"], entry.get("flow", ""), entry["t"],
                                 claim=entry.get("claim"), epoch=entry.get("epoch"), owner=entry.get("owner"),
                                 task=entry.get("task"), state=entry.get("state"),
                                 attempts=entry.get("attempts"), digest=entry.get("d"), result=entry.get("r"),
                                 build=entry.get("build"), reason=entry.get("reason"))
    for entry in entries:
        op = ops.get(entry.get("i", ""))
        if op is None or entry.get("ph") not in ("ok", "fail"):
            continue
        op.t1, op.outcome, op.err = entry["t"], entry["ph"], entry.get("err")
        if op.op == "claim" and op.acked:
            op.claim, op.epoch = entry["claim"], entry["epoch"]
        if op.op == "load_tasks":
            op.tasks = entry.get("tasks")
        if op.op == "load_flow" and op.acked:
            op.digest, op.state = entry.get("d"), entry.get("state")
    return sorted(ops.values(), key=lambda o: o.t0)


def _parse_executions(entries: list[dict[str, Any]]) -> list[Execution]:
    runs: list[Execution] = []
    open_: dict[tuple[str, str, int, int, str], Execution] = {}
    for entry in sorted(entries, key=lambda e: e["t"]):
        key = (entry["flow"], entry["task"], entry["attempt"], entry["epoch"], entry["replica"])
        if entry["phase"] == "start":
            run = Execution(*key, t=entry["t"])
            runs.append(run)
            open_[key] = run
        elif entry["phase"] in ("end", "fail") and key in open_:
            open_.pop(key).end = entry["phase"]
    return runs


def _runs_from_history(ops: list[Op]) -> list[Execution]:
    """Without a ledger: each acknowledged RUNNING write starts an execution."""
    return [Execution(o.flow, o.task or "", o.attempts or 0, o.epoch or 0, o.replica, o.t1 or o.t0)
            for o in ops if o.op == "save_task" and o.state == "RUNNING" and o.acked]


def read_final(backend: Backend, flow_ids: list[str]) -> tuple[dict[str, FlowDetail | None],
                                                                dict[str, dict[str, TaskDetail]]]:
    flows: dict[str, FlowDetail | None] = {}
    tasks: dict[str, dict[str, TaskDetail]] = {}
    for flow_id in flow_ids:
        try:
            flows[flow_id] = backend.load_flow(flow_id)
            tasks[flow_id] = backend.load_tasks(flow_id)
        except FlowbatonError:
            flows[flow_id], tasks[flow_id] = None, {}
    return flows, tasks


def save_final(folder: Path, run: dict[str, Any], ev: Evidence) -> None:
    """Keep the final store and the run's settings in the run folder, so the
    checker can be run again on the evidence after the servers are gone."""
    flows = {f: (d.to_json() if d else None) for f, d in ev.final_flows.items()}
    tasks = {f: {t: d.to_json() for t, d in ts.items()} for f, ts in ev.final_tasks.items()}
    doc = {"run": run, "submitted": ev.submitted, "lease": ev.lease, "backend": ev.backend, "end": ev.end,
           "flows": flows, "tasks": tasks}
    (folder / "final.json").write_text(json.dumps(doc))


def load_saved(folder: Path) -> tuple[Evidence, dict[str, Any]]:
    """The evidence of a finished run folder (see ``save_final``) and its run settings."""
    doc = json.loads((folder / "final.json").read_text())
    flows = {f: (FlowDetail.from_json(raw, f"final.json flow {f}") if raw else None)
             for f, raw in doc["flows"].items()}
    tasks = {f: {t: TaskDetail.from_json(raw, f"final.json task {f}/{t}") for t, raw in ts.items()}
             for f, ts in doc["tasks"].items()}
    ev = load_evidence(folder, final_flows=flows, final_tasks=tasks, submitted=doc["submitted"],
                       lease=doc["lease"], backend=doc["backend"], end=doc["end"],
                       builds=doc["run"].get("builds", {}), lives=doc["run"].get("lives", {}))
    return ev, doc["run"]


def load_evidence(folder: Path, **fields: Any) -> Evidence:
    """The run folder's history, ledger and nemesis log, plus ``fields``
    (final store, submitted flows, lease, backend, end)."""
    ops = _parse_ops(list(read_history(folder / "history")))
    ledger = [e for e in read_ledger(folder / "ledger") if e.get("flow") in fields["submitted"]]
    nemesis = folder / "nemesis.jsonl"
    faults = [json.loads(line) for line in nemesis.read_text().splitlines()] if nemesis.exists() else []
    executions = _parse_executions(ledger) if ledger else _runs_from_history(ops)
    return Evidence(ops, executions, faults, ledger_used=bool(ledger), **fields)


# ---------------------------------------------------------------- index


@dataclass
class Index:
    """Lookups the invariants share, built once from the evidence."""

    ev: Evidence
    grants: dict[str, list[Op]] = field(default_factory=lambda: defaultdict(list))
    grant_of: dict[str, Op] = field(default_factory=dict)
    writes: dict[tuple[str, str], list[Op]] = field(default_factory=lambda: defaultdict(list))
    by_digest: dict[str, Op] = field(default_factory=dict)
    observations: list[Observation] = field(default_factory=list)
    seen_by_flow: dict[str, list[Observation]] = field(default_factory=lambda: defaultdict(list))
    runs: dict[tuple[str, str], list[Execution]] = field(default_factory=lambda: defaultdict(list))
    flow_runs: dict[str, list[Execution]] = field(default_factory=lambda: defaultdict(list))  # by start time
    by_claim: dict[str, list[Op]] = field(default_factory=lambda: defaultdict(list))
    flow_writes: dict[str, list[Op]] = field(default_factory=lambda: defaultdict(list))
    seen: set[str] = field(default_factory=set)  # digests some read or the final store showed
    running: dict[tuple[str, str, int, int, str], Op] = field(default_factory=dict)  # accepted RUNNING writes

    @classmethod
    def build(cls, ev: Evidence) -> Index:
        ix = cls(ev)
        for op in ev.ops:
            ix._add(op)
        for grants in ix.grants.values():
            grants.sort(key=lambda o: o.t1 or 0.0)
        for run in sorted(ev.executions, key=lambda r: r.t):
            ix.runs[(run.flow, run.task)].append(run)
            ix.flow_runs[run.flow].append(run)
        ix.observations.extend(ix._final())
        ix.seen = {d for obs in ix.observations for d in obs.records.values() if d}
        for obs in ix.observations:
            ix.seen_by_flow[obs.flow].append(obs)
        return ix

    def _add(self, op: Op) -> None:
        if op.flow not in self.ev.submitted:
            return
        if op.claim and op.op in FENCED:
            self.by_claim[op.claim].append(op)
        if op.op in WRITES:
            self.flow_writes[op.flow].append(op)
        if op.op == "save_task" and op.state == "RUNNING" and op.acked:
            self.running[(op.flow, op.task or "", op.attempts or 0, op.epoch or 0, op.replica)] = op
        if op.op == "claim" and op.acked and op.claim:
            self.grants[op.flow].append(op)
            self.grant_of[op.claim] = op
        elif op.op in WRITES:
            self.writes[op.key].append(op)
            if op.digest:
                self.by_digest[op.digest] = op
        elif op.op == "load_tasks" and op.acked and op.tasks is not None:
            self.observations.append(Observation(op.flow, op.t0, dict(op.tasks), "load_tasks"))
        elif op.op == "load_flow" and op.acked:
            self.observations.append(Observation(op.flow, op.t0, {"": op.digest}, "load_flow"))

    def _final(self) -> list[Observation]:
        found = []
        for flow_id, flow in self.ev.final_flows.items():
            records: dict[str, str | None] = {"": digest(flow.to_json()) if flow else None}
            records.update({t: digest(d.to_json()) for t, d in self.ev.final_tasks.get(flow_id, {}).items()})
            found.append(Observation(flow_id, self.ev.end, records, "final"))
        return found

    def final_result(self, flow: str, task: str) -> str | None:
        detail = self.ev.final_tasks.get(flow, {}).get(task)
        return result_digest(detail.result) if detail is not None else None

    def running_write(self, run: Execution) -> Op | None:
        """The accepted RUNNING record that let ``run`` start."""
        return self.running.get((run.flow, run.task, run.attempt, run.epoch, run.replica))

    def first_newer_grant(self, claim: str | None) -> float | None:
        """When the first claim that certainly came after ``claim`` (invoked
        once ``claim`` had been granted) was granted; None if there was none."""
        granted = self.grant_of.get(claim or "")
        if granted is None or granted.t1 is None:
            return None
        after = granted.t1
        times = [g.t1 for g in self.grants[granted.flow] if g.t0 > after and g.t1 is not None]
        return min(times) if times else None

    def backend_fault_between(self, start: float, end: float, kinds: tuple[str, ...]) -> bool:
        return any(f["kind"] in kinds and f["start"] <= end and f["heal"] >= start for f in self.ev.faults)
