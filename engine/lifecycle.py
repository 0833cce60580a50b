"""Entry points the coordinator calls: create a flow record, run a claimed
flow, and plan a resume without acting."""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..backends.base import Backend
from ..backends.errors import CorruptRecord, DefinitionError, FactoryError
from ..backends.records import ClaimToken, FlowDetail
from ..backends.states import FAILURE, HELD, PENDING, REVERTED, RUNNABLE_FLOW_STATES, RUNNING, SUCCESS
from .codec import encode
from .compiler import CompiledFlow, compile_flow
from .events import NO_EVENTS, Events
from .factory import build_flow, check_arguments, factory_name, load_factory
from .gate import Gate
from .report import FlowReport
from .resume import ResumePlan, plan_resume
from .runner import FlowRun, Halt

__all__ = ["new_flow_detail", "run_flow", "plan_flow", "FLOW_ID_PATTERN"]

log = logging.getLogger("flowbaton.engine")

FLOW_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_HISTORY = 20  # resume entries kept in a flow's meta


def new_flow_detail(
    factory: str | Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    flow_id: str | None = None,
    clock: Callable[[], float] = time.time,
) -> FlowDetail:
    """Validate everything a replica will need, now, and return the unsaved
    record: the factory is saveable and builds a valid flow from these
    arguments and inputs, and every value is plain JSON."""
    fname = factory_name(factory)
    plain_args, plain_kwargs = check_arguments(args, dict(kwargs or {}), fname)
    plain_inputs = encode(dict(inputs or {}), "flow inputs")
    if flow_id is not None and not FLOW_ID_PATTERN.fullmatch(flow_id):
        raise DefinitionError(f"flow id {flow_id!r} must match {FLOW_ID_PATTERN.pattern}")
    built = build_flow(load_factory(fname, None), fname, plain_args, plain_kwargs)
    compile_flow(built, initial_values(plain_kwargs, plain_inputs))
    now = clock()
    return FlowDetail(
        id=flow_id or uuid.uuid4().hex,
        name=name or built.name,
        factory=fname,
        args=plain_args,
        kwargs=plain_kwargs,
        inputs=plain_inputs,
        state=PENDING,
        created_at=now,
        updated_at=now,
    )


def initial_values(kwargs: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What tasks can require before any task ran: the factory's keyword
    arguments (a factory's ``network`` is its tasks' ``network`` too) and the
    flow inputs, which win on a clash."""
    return {**kwargs, **inputs}


def rebuild(flow: FlowDetail, allow: Sequence[str] | None) -> CompiledFlow:
    """Today's flow for a stored record. Raises ``FactoryNotAllowed`` or
    ``FactoryError`` (a reason to decline) before anything is written."""
    factory = load_factory(flow.factory, allow)
    built = build_flow(factory, flow.factory, flow.args, flow.kwargs)
    try:
        return compile_flow(built, initial_values(flow.kwargs, flow.inputs))
    except DefinitionError as err:
        raise FactoryError(f"factory {flow.factory!r} built an invalid flow: {err}") from err


def plan_flow(backend: Backend, flow_id: str, *, allow: Sequence[str] | None = None) -> dict[str, Any]:
    """What resuming the flow with today's code would do. Writes nothing."""
    flow = backend.load_flow(flow_id)
    plan = plan_resume(rebuild(flow, allow), flow, backend.load_tasks(flow_id))
    return {"flow_id": flow.id, "state": flow.state, "factory": flow.factory, **plan.to_dict()}


def run_flow(
    backend: Backend,
    token: ClaimToken,
    *,
    replica_id: str,
    allow: Sequence[str] | None = None,
    gate: Gate | None = None,
    max_workers: int = 8,
    max_takeovers: int | None = 3,
    clock: Callable[[], float] = time.time,
    events: Events = NO_EVENTS,
) -> FlowReport:
    """Run a flow we hold ``token`` for, from wherever it stopped;
    ``events`` hears of every task and flow outcome (metrics)."""
    flow = backend.load_flow(token.flow_id)
    events.on_flow_claimed(flow.id, flow.owner)
    if flow.state not in RUNNABLE_FLOW_STATES:
        return FlowReport.of(flow, backend.load_tasks(flow.id))
    compiled = rebuild(flow, allow)
    run = FlowRun(backend, token, flow, compiled, {}, replica_id=replica_id,
                  gate=gate or Gate(), max_workers=max_workers, clock=clock, events=events)
    try:
        plan = _plan(run)
        if plan is not None and _start(run, plan, max_takeovers):
            run.run(plan)
    except Halt as halt:
        log.warning("flow %s: claim lost before it started (%s)", flow.id, halt, extra=run.log_fields())
    return FlowReport.of(run.flow, run.details)


def _plan(run: FlowRun) -> ResumePlan | None:
    """Match stored details; a corrupt record or a failing migration holds
    the flow for an operator instead of crashing the replica."""
    try:
        run.details = run.backend.load_tasks(run.flow.id)
    except CorruptRecord as err:
        _hold(run, f"cannot resume: {err}")
        return None
    try:
        return plan_resume(run.compiled, run.flow, run.details)
    except Exception as err:  # a user's migrate callable
        _hold(run, f"cannot resume: version migration failed: {type(err).__name__}: {err}")
        return None


def _hold(run: FlowRun, reason: str) -> None:
    log.error("flow %s held: %s", run.flow.id, reason, extra={**run.log_fields(), "event": "hold"})
    run.finish(HELD, reason)


def _start(run: FlowRun, plan: ResumePlan, max_takeovers: int | None) -> bool:
    """Write the claim's first flow record (owner, epoch, resume diff),
    or hold the flow; False when it must not run."""
    flow, meta = run.flow, dict(run.flow.meta)
    takeover = flow.owner is not None
    progress = sum(1 for d in run.details.values() if d.state in (SUCCESS, FAILURE, REVERTED))
    count = int(meta.get("takeovers", 0))
    if progress != meta.get("progress_mark"):
        count = 0
    elif takeover:
        count += 1
    meta.update(takeovers=count, progress_mark=progress, unmatched=plan.unmatched, tasks=run.compiled.order)
    if run.details or flow.state != PENDING:
        _record_resume(run, meta, plan, takeover)
    run.flow.meta = meta
    if max_takeovers is not None and count > max_takeovers:
        _hold(run, f"taken over {count} times without any task finishing (limit {max_takeovers}): "
                   "a task may be crashing its replica")
        return False
    if plan.held:
        _hold(run, "; ".join(plan.held))
        return False
    state = RUNNING if flow.state == PENDING else flow.state
    run.write_flow(state=state, owner=run.replica_id)
    return True


def _record_resume(run: FlowRun, meta: dict[str, Any], plan: ResumePlan, takeover: bool) -> None:
    entry = {
        "at": run.clock(),
        "epoch": run.token.epoch,
        "owner": run.replica_id,
        "previous_owner": run.flow.owner,
        "takeover": takeover,
        **plan.diff(),
    }
    history = list(meta.get("resumes", []))[-(_HISTORY - 1):]
    meta["resumes"] = [*history, entry]
    meta["diff"] = plan.diff()
    log.info("flow %s resumed by %s at epoch %d: %s", run.flow.id, run.replica_id, run.token.epoch, meta["diff"],
             extra={**run.log_fields(), "event": "resume", "takeover": takeover, "diff": meta["diff"]})


