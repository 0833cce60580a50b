"""Operator actions on stored flows: release, cancel, retry, purge.

Each action writes the way a replica does, so it is safe while replicas
run: it claims the flow first and every write carries the operator's claim
token. ``release``, ``cancel`` and ``retry`` claim with ``force``, which
bumps the epoch: the previous holder's next write (the RUNNING record of
the task it would start next, a result, a renewal) fails with ``ClaimLost``
and its runner stops. So there is never a moment when an operator and a
replica both write one flow. ``purge`` claims without force and skips flows
someone holds.

Every action re-reads the flow *after* claiming it (the fenced owner may
have written in between) and checks again that it applies; a refusal
(``OpRefused``) changes nothing. Each action leaves a note in
the flow's operator history (``FlowMeta.operated``: who, when, what, which
claim it fenced).

All of it is callable from Python::

    from flowbaton.ops import actions as ops
    ops.cancel(backend, flow_id)
"""

from __future__ import annotations

import getpass
import logging
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ..backends.base import Backend
from ..backends.errors import ClaimHeld, CorruptRecord, FlowbatonError, FlowNotFound
from ..backends.records import ClaimInfo, ClaimToken, FlowDetail, TaskDetail
from ..backends.states import (
    CANCELLED,
    FAILURE,
    HELD,
    PENDING,
    REVERT_FAILURE,
    REVERTED,
    REVERTING,
    RUNNABLE_FLOW_STATES,
    RUNNING,
    TERMINAL_FLOW_STATES,
)
from ..engine.attempts import CANCELLED_TYPE, HISTORY, earlier_attempts
from ..engine.meta import OPERATIONS, FlowMeta
from .builds import check_allowance

__all__ = [
    "OpRefused",
    "ActionResult",
    "PurgeReport",
    "OPERATIONS_KEY",
    "operator_id",
    "release",
    "cancel",
    "retry",
    "purge",
    "claimed",
    "current_claim",
    "load_flow",
    "MIN_PURGE_AGE",
]

# The logger keeps the name it had before the operator API left the
# coordinator package: log filters and alerts match on it.
log = logging.getLogger("flowbaton.coordinator.ops")

OPERATIONS_KEY = OPERATIONS  # flow.meta: the last operator actions (kept for scripts that read it)
# How long an operator's claim lives if the command dies mid-action (on
# ZooKeeper: until the command's session ends). Actions take milliseconds.
OP_LEASE = 30.0
CANCELLABLE = RUNNABLE_FLOW_STATES | {HELD}
RETRYABLE = frozenset({FAILURE, REVERTED, HELD})
# Task states a retry puts back to PENDING: the work failed, or was undone.
RESETTABLE = frozenset({FAILURE, REVERTED, REVERT_FAILURE, REVERTING})
DECISIONS = ("rerun", "reuse")
# The youngest a flow may be for purge without force (see ``purge``).
MIN_PURGE_AGE = 3600.0


class OpRefused(FlowbatonError, ValueError):
    """The action does not apply to the flow as it is now (its state, an
    unknown task, a missing choice). Nothing was changed."""


@dataclass(frozen=True)
class ActionResult:
    """What one action did, for people (``describe``) and scripts."""

    action: str
    flow_id: str
    state_before: str
    state: str
    epoch: int  # the operator's claim; every later claim is larger
    fenced: ClaimInfo | None  # the live claim the action took away, if any
    tasks: list[str] = field(default_factory=list)  # task details put back to PENDING
    decisions: dict[str, str] = field(default_factory=dict)
    allowed_build: str | None = None  # retry --allow-build: the oldest build now allowed to run it
    stopped: list[str] = field(default_factory=list)  # cancel: tasks that were running when it was cancelled

    def describe(self) -> str:
        """The one line the CLI prints for people: what the action did to the
        flow and whose claim it fenced (that owner's next write fails), then
        what else it changed: tasks put back to PENDING, tasks that were
        running, version decisions, the build now allowed."""
        fenced = (f"fenced {self.fenced.owner}'s claim (epoch {self.fenced.epoch}): its next write fails"
                  if self.fenced else "no live claim to fence")
        if self.action == "retry" and self.state_before in RUNNABLE_FLOW_STATES:  # an allowance alone
            return (f"flow {self.flow_id} ({self.state}): build {self.allowed_build} or newer may run it now; "
                    f"{fenced}")
        head = {
            "release": f"released flow {self.flow_id} ({self.state}): {fenced}"
                       + ("; any replica may resume it" if self.state in RUNNABLE_FLOW_STATES else ""),
            "cancel": (f"cancelled flow {self.flow_id} (was {self.state_before}): {fenced}; "
                       + ("a replica now reverts what finished (REVERTED when done)" if self.state == REVERTING
                          else "no task starts again, nothing is reverted")),
            "retry": f"flow {self.flow_id} is {self.state} again (was {self.state_before}): {fenced}",
            "delete": f"deleted flow {self.flow_id} (was {self.state_before}) with its tasks and declines: {fenced}",
        }[self.action]
        extra = [f"tasks back to PENDING: {', '.join(self.tasks)}"] if self.tasks else []
        extra += [f"running when cancelled (may or may not have done their work): {', '.join(self.stopped)}"
                  ] if self.stopped else []
        extra += [f"version decision: {t}={d}" for t, d in self.decisions.items()]
        extra += [f"build {self.allowed_build} or newer may run it"] if self.allowed_build else []
        return "; ".join([head, *extra])

    def to_json(self) -> dict[str, Any]:
        """What ``--json`` of an action prints."""
        return {"action": self.action, "flow_id": self.flow_id, "state_before": self.state_before,
                "state": self.state, "epoch": self.epoch,
                "fenced": self.fenced.to_dict() if self.fenced else None, "tasks": self.tasks,
                "decisions": self.decisions, "allowed_build": self.allowed_build, "stopped": self.stopped}


@dataclass
class PurgeReport:
    """Flows purged (or, with ``dry_run``, that would be) and flows skipped."""

    dry_run: bool
    cutoff: float  # flows last updated before this wall-clock time qualify
    flows: list[FlowDetail] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (flow id, why)

    def to_json(self) -> dict[str, Any]:
        """What ``purge --json`` prints: ``dry_run``, ``cutoff`` (wall-clock
        seconds), ``flows`` (id, state and updated_at of each flow purged, or
        to be purged) and ``skipped`` (id and why); keys in this order,
        later releases only append keys."""
        return {"dry_run": self.dry_run, "cutoff": self.cutoff,
                "flows": [{"id": f.id, "state": f.state, "updated_at": f.updated_at} for f in self.flows],
                "skipped": [{"id": flow_id, "why": why} for flow_id, why in self.skipped]}


def operator_id() -> str:
    """The claim owner name of operator actions: who, where, which process."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (some containers)
        user = f"uid{os.getuid()}"
    return f"operator-{user}@{socket.gethostname()}-{os.getpid()}"


# ------------------------------------------------------------------ helpers


@contextmanager
def claimed(backend: Backend, flow_id: str, who: str, *, release_after: bool = True,
            force: bool = True) -> Iterator[tuple[ClaimToken, ClaimInfo | None]]:
    """Force-claim the flow for the block; release at the end (unless
    ``release_after`` is False: the block deleted the flow, claim included), and
    on an error. The claim read first only names who is fenced (it may
    change in between). ``force=False``: ``ClaimHeld`` if someone holds it."""
    held = current_claim(backend, flow_id) if force else None
    token = backend.claim(flow_id, who, OP_LEASE, force=force)
    log.info("operator %s claimed flow %s at epoch %d (fencing %s)", who, flow_id, token.epoch,
             held.token if held else "nobody", extra={"flow_id": flow_id, "epoch": token.epoch})
    try:
        yield token, held
    except BaseException:
        _release_quietly(backend, token)
        raise
    if release_after:
        backend.release(token)


def current_claim(backend: Backend, flow_id: str) -> ClaimInfo | None:
    """The flow's live claim, or None; an unreadable claim is named in a
    warning and counts as none: a forced claim replaces it (nobody can
    prove they hold it, so nobody's writes depend on it)."""
    try:
        return backend.current_claim(flow_id)
    except CorruptRecord as err:
        log.warning("flow %s: its claim is unreadable, so it counts as none (a forced claim replaces it): %s",
                    flow_id, err)
        return None


def load_flow(backend: Backend, flow_id: str) -> FlowDetail:
    """The flow record, or ``OpRefused`` saying how to remove an unreadable one."""
    try:
        return backend.load_flow(flow_id)
    except CorruptRecord as err:
        raise OpRefused(f"{err}; `flowbaton delete {flow_id} --force` removes the flow") from err


def _release_quietly(backend: Backend, token: ClaimToken) -> None:
    """Release on the way out of a failed action; the original error wins."""
    try:
        backend.release(token)
    except FlowbatonError as err:
        log.warning("operator claim on flow %s not released (its lease will end it): %s", token.flow_id, err)


def _save(backend: Backend, token: ClaimToken, flow: FlowDetail) -> None:
    flow.updated_at = time.time()
    flow.epoch = token.epoch
    backend.save_flow(token, flow)


def _note(flow: FlowDetail, action: str, who: str, token: ClaimToken, held: ClaimInfo | None,
          **extra: Any) -> None:
    now = time.time()
    entry = {"action": action, "by": who, "at": now, "epoch": token.epoch,
             "fenced": held.token if held else None, **extra}
    meta = FlowMeta(flow.meta).operated(entry)
    # Our own claim replaced whatever claim the history has open: a live one
    # was fenced now; one nobody held any more had lost its owner earlier.
    if held is not None:
        meta = meta.open_claim_ended("cancelled" if action == "cancel" else "forced", now)
    else:
        meta = meta.open_claim_ended("expired", None)
    flow.meta = meta.to_dict()


def _require(flow: FlowDetail, allowed: frozenset[str], action: str) -> None:
    if flow.state not in allowed:
        raise OpRefused(f"cannot {action} flow {flow.id}: it is {flow.state}; {action} applies to "
                        f"{', '.join(sorted(allowed))} flows")


def _when(stamp: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z", time.localtime(stamp))


# ------------------------------------------------------------------ actions


def release(backend: Backend, flow_id: str, *, who: str | None = None) -> ActionResult:
    """Take the flow's claim away (bumping the epoch, so its holder is fenced)
    and leave the flow unowned: any replica may resume it at once."""
    who = who or operator_id()
    with claimed(backend, flow_id, who) as (token, held):
        flow = load_flow(backend, flow_id)
        before = flow.state
        _note(flow, "release", who, token, held)
        flow.owner = None  # a hand-over, not a crash: the next claim is no takeover
        _save(backend, token, flow)
    return ActionResult("release", flow_id, before, flow.state, token.epoch, held)


def cancel(backend: Backend, flow_id: str, *, who: str | None = None, revert: bool = False) -> ActionResult:
    """Stop the flow: no task starts again anywhere (its owner is fenced).

    Plainly, the flow becomes CANCELLED (not runnable) and nothing is
    reverted: what finished stays done. A task that was running goes on in
    its fenced owner, but its result is never written: its record becomes
    FAILURE with a failure of type ``flowbaton.Cancelled`` (it may or may not
    have done its work), so no task of a cancelled flow is left RUNNING.

    ``revert``: the flow becomes REVERTING instead, and a replica reverts
    every task that finished or may have (running ones included), newest
    first, as after a failure: resumable like any revert, REVERTED at the
    end (FAILURE if a revert fails)."""
    who = who or operator_id()
    _require(load_flow(backend, flow_id), CANCELLABLE, "cancel")  # refuse before fencing anyone
    with claimed(backend, flow_id, who) as (token, held):
        flow = load_flow(backend, flow_id)
        _require(flow, CANCELLABLE, "cancel")  # it may have ended meanwhile
        tasks = backend.load_tasks(flow_id)
        running = sorted(t for t, d in tasks.items() if d.state == RUNNING)
        before = flow.state
        _note(flow, "cancel", who, token, held, revert=revert)
        flow.owner = None
        flow.reason = f"cancelled by operator {who} at {_when(time.time())}"
        if revert:  # the in-doubt tasks stay RUNNING: the revert undoes them too
            flow.state, flow.reason = REVERTING, flow.reason + "; reverting what finished"
        else:
            flow.state = CANCELLED
            backend.save_tasks(token, [_cancelled(tasks[t], token, who) for t in running])
        _save(backend, token, flow)
    return ActionResult("cancel", flow_id, before, flow.state, token.epoch, held, stopped=running)


def _cancelled(detail: TaskDetail, token: ClaimToken, who: str) -> TaskDetail:
    """A running task's record as a plain cancel leaves it: FAILURE, in doubt."""
    failure = {"type": CANCELLED_TYPE,
               "message": f"the flow was cancelled by {who} while this task ran: it may or may not have "
                          "done its work, and nothing was reverted",
               "traceback": ""}
    return TaskDetail(detail.task_id, FAILURE, None, failure, detail.version, detail.attempts, detail.started_at,
                      time.time(), who, token.claim_id, token.epoch, detail.meta)


def retry(
    backend: Backend,
    flow_id: str,
    task: str | None = None,
    decision: str | None = None,
    *,
    who: str | None = None,
    allow_build: str | None = None,
    force: bool = True,
) -> ActionResult:
    """Put a FAILURE/REVERTED flow back to run: its failed and reverted task
    details (or just ``task``) become PENDING again (attempt counts kept, so
    idempotency keys and attempt numbers go on), the flow RUNNING and
    unowned, its takeover count reset. A HELD flow runs again too;
    ``decision`` ("rerun" or "reuse") settles a major version change, for
    ``task`` or for every task.

    ``allow_build`` (a rollback on purpose) lets replicas of that build or
    newer run the flow although it already ran on a newer one
    (``FlowMeta.allowed_build``); it may not be newer than that build. On a
    runnable flow (PENDING, RUNNING) it is all the retry does: no task is
    reset, the state stays, the holder (if any) is fenced and the flow left
    unowned for any replica. ``force=False`` claims without fencing:
    ``ClaimHeld`` if someone holds the flow (the bulk ``allow_stranded``)."""
    if decision not in (None, *DECISIONS):
        raise OpRefused(f"decision must be one of {', '.join(DECISIONS)}, not {decision!r}")
    who = who or operator_id()
    _retry_plan(load_flow(backend, flow_id), backend.load_tasks(flow_id), task, decision, allow_build)
    with claimed(backend, flow_id, who, force=force) as (token, held):
        flow, tasks = load_flow(backend, flow_id), backend.load_tasks(flow_id)
        reset = _retry_plan(flow, tasks, task, decision, allow_build)
        for tid in reset:
            backend.save_task(token, _pending(tasks[tid], token, who))
        before = flow.state
        if before in RUNNABLE_FLOW_STATES:  # only an allowance: the run goes on where it is
            decisions: dict[str, str] = {}
            flow.owner = None  # its holder is fenced: a hand-over, not a crash (as release)
        else:
            decisions = _reopen(flow, task, decision)
        if allow_build is not None:
            flow.meta = FlowMeta(flow.meta).allowing_build(allow_build).to_dict()
        _note(flow, "retry", who, token, held, tasks=reset, decisions=decisions,
              **({"allowed_build": allow_build} if allow_build is not None else {}))
        _save(backend, token, flow)
    return ActionResult("retry", flow_id, before, flow.state, token.epoch, held, reset, decisions, allow_build)


def _retry_plan(flow: FlowDetail, tasks: dict[str, TaskDetail], task: str | None, decision: str | None,
                allow_build: str | None = None) -> list[str]:
    """The task ids a retry puts back to PENDING, or ``OpRefused``."""
    if allow_build is not None:
        _check_allowance(flow, task, decision, allow_build)
        if flow.state in RUNNABLE_FLOW_STATES:
            return []
    _require(flow, RETRYABLE, "retry")
    if FlowMeta(flow.meta).is_placeholder:
        raise OpRefused(f"flow {flow.id} is a placeholder for a record nobody could read: nothing to "
                        f"run; `flowbaton delete {flow.id} --force` removes it")
    if flow.state == HELD:
        _check_held(flow, tasks, task, decision)
        return []
    resettable = sorted(t for t, d in tasks.items() if d.state in RESETTABLE)
    if task is None:
        return resettable
    if task not in tasks:
        raise OpRefused(f"flow {flow.id} has no stored task {task!r} (stored: {', '.join(sorted(tasks)) or 'none'})")
    if task not in resettable:
        raise OpRefused(f"task {task!r} of flow {flow.id} is {tasks[task].state}; retry resets "
                        f"{', '.join(sorted(RESETTABLE))} tasks (here: {', '.join(resettable) or 'none'})")
    return [task]


def _check_allowance(flow: FlowDetail, task: str | None, decision: str | None, allow_build: str) -> None:
    _require(flow, RETRYABLE | RUNNABLE_FLOW_STATES, "retry --allow-build")
    why = check_allowance(flow, allow_build)
    if why is not None:
        raise OpRefused(why)
    if flow.state in RUNNABLE_FLOW_STATES and (task is not None or decision is not None):
        raise OpRefused(f"flow {flow.id} is {flow.state}: nothing to retry, only --allow-build applies "
                        "(--task, --rerun and --reuse are for a flow that stopped)")


def _check_held(flow: FlowDetail, tasks: dict[str, TaskDetail], task: str | None, decision: str | None) -> None:
    if task is not None and decision is None:
        raise OpRefused("on a HELD flow, --task names the task a --rerun/--reuse choice is for; add one of them")
    if task is not None and task not in tasks and task not in (FlowMeta(flow.meta).tasks or []):
        raise OpRefused(f"flow {flow.id} has no task {task!r}")
    undecided = _undecided_versions(flow)
    if undecided and decision is None:
        raise OpRefused(f"flow {flow.id} is held because {'; '.join(undecided)}: choose --rerun "
                        "(run those tasks again) or --reuse (keep their stored results)")


def _undecided_versions(flow: FlowDetail) -> list[str]:
    """Major version changes the last resume held the flow for (policy 'fail')."""
    return [f"task {c.get('task')!r} changed major version {c.get('stored')} -> {c.get('current')}"
            for c in FlowMeta(flow.meta).undecided_versions()]


def _pending(detail: TaskDetail, token: ClaimToken, who: str) -> TaskDetail:
    """The task detail as a retry writes it: PENDING, attempts kept, the
    failure moved into meta, written under the operator's token."""
    meta = {k: v for k, v in detail.meta.items() if k != "first_started"}  # a fresh retry window
    meta["retried"] = {"at": time.time(), "by": who, "from_state": detail.state, "failure": detail.failure}
    meta[HISTORY] = earlier_attempts(detail)  # the attempt an operator retries stays in the history
    return TaskDetail(detail.task_id, PENDING, None, None, detail.version, detail.attempts, None, None,
                      who, token.claim_id, token.epoch, meta)


def _reopen(flow: FlowDetail, task: str | None, decision: str | None) -> dict[str, str]:
    """Flow fields of a retry; returns the version decision it added."""
    added = {task or "*": decision} if decision else {}
    meta = FlowMeta(flow.meta).counter_reset().decided(added)  # a fresh start for the poison-flow guard
    flow.meta, flow.state, flow.reason, flow.owner = meta.to_dict(), RUNNING, None, None
    return added


# -------------------------------------------------------------------- purge


def purge(backend: Backend, finished_before: float, dry_run: bool = False, *, who: str | None = None,
          now: float | None = None, include_failed: bool = False, force: bool = False) -> PurgeReport:
    """Delete finished flows (SUCCESS, REVERTED, CANCELLED; FAILURE only with
    ``include_failed``) last updated more than ``finished_before`` seconds
    ago, with their tasks and declines. Each is claimed first (without force:
    a flow someone holds is skipped) and deleted under that claim.

    FAILURE is kept by default: it records a revert that failed, whose side
    effects still need someone's cleanup. An age under ``MIN_PURGE_AGE`` is
    refused (dry run too: it shows what the real run would do) unless
    ``force``: a flow that finished a moment ago may still be read by its
    submitter, and ``0`` or ``10s`` for ``10d`` is a typo that deletes everything."""
    if not force and not finished_before >= MIN_PURGE_AGE:
        raise OpRefused(f"purging flows finished less than {MIN_PURGE_AGE / 3600:g}h ago "
                        f"({finished_before:g}s) needs --force (force=True)")
    states = TERMINAL_FLOW_STATES if include_failed else TERMINAL_FLOW_STATES - {FAILURE}
    cutoff = (time.time() if now is None else now) - finished_before
    report = PurgeReport(dry_run, cutoff)
    old = [f for f in backend.list_flows(states) if f.updated_at < cutoff]
    if dry_run:
        report.flows = old
        return report
    who = who or operator_id()
    for flow in old:
        why = _purge_one(backend, flow.id, cutoff, who, states)
        if why is None:
            report.flows.append(flow)
        else:
            report.skipped.append((flow.id, why))
    return report


def _purge_one(backend: Backend, flow_id: str, cutoff: float, who: str, states: frozenset[str]) -> str | None:
    """Delete one flow; None when done, else why it was skipped."""
    try:
        token = backend.claim(flow_id, who, OP_LEASE)
    except ClaimHeld as err:
        return f"claimed: {err}"
    except FlowNotFound:
        return "already gone"
    try:
        flow = backend.load_flow(flow_id)
        changed = flow.state not in states or flow.updated_at >= cutoff
        if not changed:
            backend.delete_flow(token)
            return None
    except BaseException:
        _release_quietly(backend, token)
        raise
    backend.release(token)
    return f"changed since the listing (now {flow.state})"
