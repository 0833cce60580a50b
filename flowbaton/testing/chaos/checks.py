"""Invariants 1-6 and 8: what must hold whatever the faults were (7 is ``recovery``).

Each check returns an ``Outcome``: how many things it checked, how many
violated the invariant (the run fails on any), counts that explain the run
(duplicates by cause, stale writes refused...) and a few examples with the
evidence, enough to find the flow in the run folder.

Time comparisons are strict real-time orders (one call *ended* before
another *began*), so calls that overlapped are never called out of order.

Where a Redis failover (or a Redis restart) lies between an acknowledged
write and a later read, the write may have been lost with the unreplicated
tail of the old primary: such losses are allowed there, and counted, as long
as the task simply ran again. Nowhere else is a lost write allowed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Any

from packaging.version import Version

from flowbaton.backends.states import TERMINAL_FLOW_STATES
from flowbaton.engine.meta import FlowMeta
from flowbaton.testing.chaos.evidence import BUILD_DECLINE, FENCED, Execution, Index, Observation, Op
from flowbaton.testing.chaos.workload import KINDS, expected_state

__all__ = ["Outcome", "check_all"]

_MAX_EXAMPLES = 10
# Faults after which Redis may lose acknowledged writes (a cut shard's
# primary paused past cluster-node-timeout is failed over like a dead one).
_LOSSY = ("failover", "restart-backend", "cut-shard")
_DONE = ("SUCCESS", "REVERTING", "REVERTED", "REVERT_FAILURE")  # states that keep a stored result


@dataclass
class Outcome:
    number: int
    title: str
    checked: int = 0
    violations: int = 0
    counts: Counter[str] = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def violate(self, what: str) -> None:
        self.violations += 1
        if len(self.examples) < _MAX_EXAMPLES:
            self.examples.append(what)

    def to_dict(self) -> dict[str, Any]:
        return {"title": self.title, "checked": self.checked, "violations": self.violations,
                "counts": dict(self.counts), "examples": self.examples}


def _lossy(ix: Index, start: float, end: float) -> bool:
    return ix.ev.backend == "redis" and ix.backend_fault_between(start, end, _LOSSY)


# ------------------------------------------------------------ 1 terminal


def check_terminal(ix: Index) -> Outcome:
    out = Outcome(1, "every flow ends in a terminal state once faults heal (none stranded)")
    for flow_id, kind in ix.ev.submitted.items():
        out.checked += 1
        flow = ix.ev.final_flows.get(flow_id)
        state = flow.state if flow else "MISSING"
        out.counts[state] += 1
        if state not in TERMINAL_FLOW_STATES:
            reason = f" ({flow.reason})" if flow and flow.reason else ""
            out.violate(f"flow {flow_id} ({kind}) ended {state}{reason}")
        elif kind in KINDS and state != expected_state(kind):
            out.violate(f"flow {flow_id} ({kind}) ended {state}, expected {expected_state(kind)}")
    return out


# --------------------------------------------------------------- 2 fencing


def check_fencing(ix: Index) -> Outcome:
    out = Outcome(2, "after a newer claim (epoch e+1) wrote anything, no write of an older claim landed")
    for op in ix.ev.ops:
        if op.op in FENCED and op.flow in ix.ev.submitted:
            _check_stale(ix, op, out)
    _check_epochs(ix, out)
    _check_starts(ix, out)
    return out


def _check_stale(ix: Index, op: Op, out: Outcome) -> None:
    out.checked += 1
    newer = ix.first_newer_grant(op.claim)
    if newer is None or op.t0 <= newer:
        return
    where = f"{op.op} of flow {op.flow} {op.task or ''} by {op.claim}@{op.epoch}"
    if op.op == "release":
        # A release writes nothing when the claim is no longer ours; drivers
        # may answer such a retried release with success (it is already gone).
        out.counts["stale release (changes nothing)"] += 1
    elif op.acked:
        out.violate(f"{where}: acknowledged, invoked {op.t0 - newer:.3f}s after a newer claim was granted")
    elif op.digest and op.digest in ix.seen:
        out.violate(f"{where}: refused or cut short, yet its record was read later")
    else:
        out.counts[f"stale {op.op} refused"] += 1


def _check_epochs(ix: Index, out: Outcome) -> None:
    """Along claims that certainly followed each other, epochs only grow."""
    for flow, grants in ix.grants.items():
        for before, after in pairwise(grants):
            out.counts["claims"] += 1
            if after.t0 <= (before.t1 or 0.0) or (after.epoch or 0) > (before.epoch or 0):
                continue
            if _lossy(ix, before.t1 or 0.0, after.t1 or 0.0):
                out.counts["epoch reused after a Redis failover"] += 1
            else:
                out.violate(f"flow {flow}: epoch {after.epoch} granted after epoch {before.epoch}")
    out.counts["takeovers"] = sum(max(0, len(g) - 1) for g in ix.grants.values())


def _check_starts(ix: Index, out: Outcome) -> None:
    """A task starts only after its RUNNING record was accepted, and that
    acceptance came while the owner's lease lasted: at most ``lease`` after
    the last claim or renewal the owner sent and had accepted. The replica
    decides to start right when that write returns, so its time is compared
    (not the task's own first line, which a busy machine may delay): a
    replica must not start a task once it cannot be sure of its claim."""
    for run in ix.ev.executions:
        out.checked += 1
        write = ix.running_write(run)
        if write is None:
            out.violate(f"flow {run.flow} task {run.task} attempt {run.attempt} started by {run.replica}"
                        f"@{run.epoch} without an accepted RUNNING record")
            continue
        late = _after_lease(ix, write)
        if late is not None:
            out.violate(f"flow {run.flow} task {run.task} attempt {run.attempt} started by {run.replica}"
                        f"@{run.epoch}: its RUNNING record was accepted {late:.2f}s after its lease ran out")


def _after_lease(ix: Index, write: Op) -> float | None:
    """Seconds past the end of its owner's lease at which ``write`` was
    answered, or None if it was answered in time."""
    grant = ix.grant_of.get(write.claim or "")
    if grant is None or write.t1 is None:
        return None
    sent = [grant.t0] + [o.t0 for o in ix.by_claim.get(grant.claim or "", [])
                         if o.op == "renew" and o.acked and (o.t1 or 0.0) <= write.t1]
    late = write.t1 - (max(sent) + ix.ev.lease)
    return late if late > 0 else None


# ------------------------------------------------- 3 no rerun after success


def _first_success(ix: Index, key: tuple[str, str]) -> Op | None:
    done = [w for w in ix.writes.get(key, []) if w.op == "save_task" and w.state == "SUCCESS" and w.acked]
    return min(done, key=lambda w: w.t1 or 0.0) if done else None


def check_no_rerun(ix: Index) -> Outcome:
    out = Outcome(3, "a task whose SUCCESS was stored before a takeover never ran after it")
    for key, runs in ix.runs.items():
        success = _first_success(ix, key)
        if success is None or success.t1 is None:
            continue
        out.checked += 1
        for run in runs:
            if run.t <= success.t1:
                continue
            if _lossy(ix, success.t1, run.t):
                out.counts["ran again after its SUCCESS was lost in a Redis failover"] += 1
            else:
                out.violate(f"flow {key[0]} task {key[1]}: SUCCESS stored by {success.claim}@{success.epoch}, "
                            f"then attempt {run.attempt} started by {run.replica}@{run.epoch} "
                            f"{run.t - success.t1:.3f}s later")
    return out


# ------------------------------------------------------ 4 results are stable


def check_results(ix: Index) -> Outcome:
    out = Outcome(4, "a stored SUCCESS result never changes")
    for key in list(ix.writes):
        success = _first_success(ix, key)
        if success is None or success.t1 is None:
            continue
        out.checked += 1
        for write in ix.writes[key]:
            if write.acked and write.state == "SUCCESS" and write.result != success.result:
                _changed(ix, out, key, success, write.t0, f"rewritten by {write.claim}@{write.epoch}")
        for obs in ix.seen_by_flow.get(key[0], []):
            if obs.t > success.t1 and key[1] in obs.records:
                _check_seen_result(ix, out, key, success, obs)
    return out


def _check_seen_result(ix: Index, out: Outcome, key: tuple[str, str], success: Op, obs: Observation) -> None:
    seen = obs.records[key[1]]
    writer = ix.by_digest.get(seen or "")
    if writer is None or writer.state not in _DONE:
        return  # a lost write: invariant 5 reports it
    if writer.result != success.result:
        _changed(ix, out, key, success, obs.t, f"{obs.source} read showed another result")


def _changed(ix: Index, out: Outcome, key: tuple[str, str], success: Op, when: float, how: str) -> None:
    if _lossy(ix, success.t1 or 0.0, when):
        out.counts["result replaced after a Redis failover lost it"] += 1
    else:
        out.violate(f"flow {key[0]} task {key[1]}: result stored by {success.claim}@{success.epoch} {how}")


# ------------------------------------------------- 5 acknowledged writes kept


def check_acknowledged(ix: Index) -> Outcome:
    out = Outcome(5, "no acknowledged write is missing from what later reads and the final store show")
    keys_by_flow: dict[str, list[tuple[str, str]]] = {}
    for key in ix.writes:
        keys_by_flow.setdefault(key[0], []).append(key)
    for obs in ix.observations:
        for key in keys_by_flow.get(obs.flow, []):
            if obs.source == "final" or (key[1] == "") == (obs.source == "load_flow"):
                _check_kept(ix, out, key, obs)
    return out


def _check_kept(ix: Index, out: Outcome, key: tuple[str, str], obs: Observation) -> None:
    acked = [w for w in ix.writes[key] if w.acked and (w.t1 or 0.0) < obs.t]
    if not acked:
        return
    out.checked += 1
    last = max(acked, key=lambda w: w.t0)
    seen = obs.records.get(key[1])
    writer = ix.by_digest.get(seen or "")
    if seen is not None and writer is None:
        out.violate(f"{obs.source} of flow {key[0]} {key[1] or 'record'}: a record no recorded write produced")
    elif writer is not None and writer.key == key and writer.t0 >= last.t0:
        return
    elif _lossy(ix, last.t1 or 0.0, obs.t):
        out.counts[f"acknowledged {last.op} lost in a Redis failover"] += 1
        if _dropped_since(ix, key):
            # The flow was resumed on code whose flow no longer has the task
            # (a deploy), after the loss: nothing exists to run it again.
            out.counts["lost with a task the newer code's flow no longer has"] += 1
        elif not _ran_again(ix, key, obs.t):
            out.violate(f"flow {key[0]} {key[1] or 'record'}: write lost in a failover and not redone")
    else:
        shown = f"{writer.op} by {writer.claim}@{writer.epoch}" if writer else "nothing"
        out.violate(f"{obs.source} of flow {key[0]} {key[1] or 'record'} showed {shown}, not the "
                    f"acknowledged {last.op} ({last.state}) by {last.claim}@{last.epoch}")


def _dropped_since(ix: Index, key: tuple[str, str]) -> bool:
    """The task of ``key`` is not in the flow as last built (the final
    record's task list): the flow was resumed by code that dropped it."""
    flow = ix.ev.final_flows.get(key[0])
    built = FlowMeta(flow.meta).tasks if flow is not None else None
    return bool(key[1]) and built is not None and key[1] not in built


def _ran_again(ix: Index, key: tuple[str, str], after: float) -> bool:
    """The lost record was written again later (the task re-ran, or the flow
    record was saved again by its next owner)."""
    return any(w.acked and w.t0 >= after for w in ix.writes[key]) or after >= ix.ev.end


# ---------------------------------------------------------- 6 duplicates


def check_duplicates(ix: Index) -> Outcome:
    out = Outcome(6, "duplicate executions only for tasks running when their owner died (counted)")
    for key, runs in ix.runs.items():
        out.checked += 1
        for before, after in pairwise(runs):
            _check_pair(ix, out, key, before, after)
    return out


def _check_pair(ix: Index, out: Outcome, key: tuple[str, str], before: Execution, after: Execution) -> None:
    if before.token == after.token:
        if before.end == "fail":
            out.counts["retries after a failed attempt"] += 1
        elif _regranted(ix, key[0], before, after) and _lossy(ix, before.t, after.t):
            # A Redis failover lost the claim, its epoch and the task's
            # records; the same replica claimed the flow again under the
            # same epoch number and, finding no SUCCESS, ran the task again.
            out.counts["duplicates"] += 1
            out.counts["cause: failover (same replica, epoch reused)"] += 1
        else:
            out.violate(f"flow {key[0]} task {key[1]}: {before.replica}@{before.epoch} ran it twice")
        return
    takeover = _takeover_between(ix, key[0], before, after)
    if takeover is None:
        out.violate(f"flow {key[0]} task {key[1]}: run again by {after.replica}@{after.epoch} without a "
                    f"takeover from {before.replica}@{before.epoch}")
        return
    out.counts["duplicates"] += 1
    if before.end == "fail":
        out.counts["cause: retry after a failed attempt"] += 1
    else:
        out.counts[f"cause: {_cause(ix, before, takeover)}"] += 1


def _regranted(ix: Index, flow: str, before: Execution, after: Execution) -> bool:
    """The flow was claimed again, under any token, between the two runs."""
    return any(g.t1 is not None and before.t < g.t1 <= after.t for g in ix.grants.get(flow, []))


def _takeover_between(ix: Index, flow: str, before: Execution, after: Execution) -> float | None:
    times = [g.t1 for g in ix.grants.get(flow, []) if g.t1 is not None and before.t < g.t1 <= after.t
             and (g.replica, g.epoch) != before.token]
    return min(times) if times else None


def _cause(ix: Index, run: Execution, takeover: float) -> str:
    """The fault that took the owner away while the task ran."""
    for fault in ix.ev.faults:
        if fault["start"] > takeover or fault["heal"] + 2 * ix.ev.lease + 5.0 < run.t:
            continue
        if fault.get("replica") == run.replica or fault.get("target") is None:
            return str(fault["kind"])
    return "claim lost with no fault injected on its owner"


# -------------------------------------------------------------- 8 builds


@dataclass(frozen=True)
class _Touch:
    """A flow met a build: submitted by it, or a task run on it. ``t0`` to
    ``t1`` is the accepted write that did it (the RUNNING record for a run)."""

    t0: float
    t1: float
    build: Version
    what: str


def check_builds(ix: Index) -> Outcome:
    out = Outcome(8, "no flow ran on a build older than one it was submitted by or had already run on")
    for op in ix.ev.ops:
        if op.op == "decline" and op.acked and op.flow in ix.ev.submitted:
            out.counts["declines: build too old" if BUILD_DECLINE in (op.reason or "") else "declines: other"] += 1
    if not ix.ev.builds:
        return out  # replicas of unknown builds: nothing to compare
    for flow in ix.ev.submitted:
        touches = _touches(ix, flow, ix.flow_runs.get(flow, []))
        if len({t.build for t in touches}) > 1:
            out.counts["flows that met more than one build"] += 1
        for later in touches:
            if later.what != "submitted":
                out.checked += 1
                _check_touch(ix, out, flow, later, touches)
    return out



def _touches(ix: Index, flow: str, runs: list[Execution]) -> list[_Touch]:
    found = [_Touch(op.t0, op.t1, Version(op.build), "submitted") for op in ix.flow_writes.get(flow, [])
             if op.op == "create_flow" and op.acked and op.build and op.t1 is not None]
    for run in runs:
        build = ix.ev.builds.get(run.replica)
        if build is None:
            continue
        write = ix.running_write(run)
        t0, t1 = (write.t0, write.t1 or write.t0) if write else (run.t, run.t)
        found.append(_Touch(t0, t1, Version(build), f"task {run.task} attempt {run.attempt} by "
                                                     f"{run.replica}@{run.epoch}"))
    return found


def _check_touch(ix: Index, out: Outcome, flow: str, later: _Touch, touches: list[_Touch]) -> None:
    """``later`` must not run on a build older than any that certainly came first."""
    newer = [t for t in touches if t.t1 < later.t0 and t.build > later.build]
    if not newer:
        return
    first = max(newer, key=lambda t: t.build)
    if _lossy(ix, first.t1, later.t0):
        out.counts["ran on an older build after a Redis failover lost the flow's build"] += 1
    else:
        out.violate(f"flow {flow}: {later.what} ran on build {later.build} after {first.what} on build "
                    f"{first.build} ({later.t0 - first.t1:.3f}s later)")


def check_all(ix: Index) -> list[Outcome]:
    return [check_terminal(ix), check_fencing(ix), check_no_rerun(ix), check_results(ix),
            check_acknowledged(ix), check_duplicates(ix), check_builds(ix)]
