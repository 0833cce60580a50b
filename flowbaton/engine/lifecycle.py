"""Entry points the coordinator calls: create a flow record, run a claimed
flow, and plan a resume without acting."""

from __future__ import annotations

import contextlib
import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ..backends.base import Backend
from ..backends.errors import CorruptRecord, DefinitionError
from ..backends.records import FlowDetail, TaskDetail
from ..backends.states import HELD, PENDING, RUNNABLE_FLOW_STATES, RUNNING
from .builds import check_build, checked_build
from .claim import Claim
from .codec import decode, encode
from .compiler import CompiledFlow, compile_flow
from .counting import Found, claim_fields, counted_meta
from .errors import FactoryError
from .events import NO_EVENTS, Events
from .factory import build_flow, check_allowed, check_arguments, check_factory_syntax, factory_name, load_factory
from .gate import Gate
from .meta import FlowMeta
from .poison import DEFAULT_RULE, PoisonRule
from .report import FlowReport
from .resume import ResumePlan, plan_resume
from .runner import FlowRun, Halt
from .timeouts import BuildTimeout, call_within
from .tracing import TRACE_META, tracing

__all__ = ["new_flow_detail", "run_flow", "plan_flow", "FLOW_ID_PATTERN"]

log = logging.getLogger("flowbaton.engine")

FLOW_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def new_flow_detail(
    factory: str | Callable[..., Any],
    args: Sequence[Any] = (),
    kwargs: Mapping[str, Any] | None = None,
    inputs: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    flow_id: str | None = None,
    clock: Callable[[], float] = time.time,
    allow: Sequence[str] | None = None,
    build: str | None = None,
    by_name: bool = False,
) -> FlowDetail:
    """Validate everything a replica will need, now, and return the unsaved
    record: the factory is saveable and builds a valid flow from these
    arguments and inputs, and every value is plain JSON. A factory given by
    name is checked against ``allow`` (when given) before anything is
    imported: a service that submits names it was sent applies the same
    allow-list as its replicas. ``build`` is the submitter's (PEP 440):
    the flow was built by that code, so no older replica may resume it
    (``engine.builds``).

    ``by_name``: the code is not here (an ops host submitting for a
    service): only the form of the name and the JSON of the values are
    checked, nothing is imported, and the replicas validate the rest when
    they build the flow (one that cannot is declined, and listed by
    ``flowbaton flows --stranded``)."""
    checked_build(build, "build")
    if allow is not None and isinstance(factory, str):
        check_allowed(factory, allow)
    if by_name and not isinstance(factory, str):
        raise DefinitionError("by_name needs the factory's name, 'package.module:function'")
    fname = check_factory_syntax(factory) if isinstance(factory, str) and by_name else factory_name(factory)
    plain_args, plain_kwargs = check_arguments(args, dict(kwargs or {}), fname)
    plain_inputs = encode(dict(inputs or {}), "flow inputs")
    if flow_id is not None and not FLOW_ID_PATTERN.fullmatch(flow_id):
        raise DefinitionError(f"flow id {flow_id!r} must match {FLOW_ID_PATTERN.pattern}")
    meta = FlowMeta()
    if by_name:
        default_name = fname.rpartition(":")[2]
    else:
        built = build_flow(load_factory(fname, None), fname, *stored_arguments(plain_args, plain_kwargs, fname))
        meta = meta.built(compile_flow(built, initial_values(plain_kwargs, plain_inputs)).order, [])
        default_name = built.name
    now = clock()
    return FlowDetail(
        id=flow_id or uuid.uuid4().hex,
        name=name or default_name,
        factory=fname,
        args=plain_args,
        kwargs=plain_kwargs,
        inputs=plain_inputs,
        state=PENDING,
        created_at=now,
        updated_at=now,
        # A first claim's build then writes nothing; the build is the submitter's.
        meta=_with_trace(meta.touched_by(build).to_dict()),
    )


def _with_trace(meta: dict[str, Any]) -> dict[str, Any]:
    """The submitter's trace context rides with the flow (``engine.tracing``)."""
    carrier = tracing().carrier()
    return {**meta, TRACE_META: carrier} if carrier else meta


def initial_values(kwargs: Mapping[str, Any], inputs: Mapping[str, Any]) -> dict[str, Any]:
    """What tasks can require before any task ran: the factory's keyword
    arguments (a factory's ``network`` is its tasks' ``network`` too) and the
    flow inputs, which win on a clash."""
    return {**kwargs, **inputs}


def stored_arguments(args: list[Any], kwargs: dict[str, Any], name: str) -> tuple[list[Any], dict[str, Any]]:
    """The factory's arguments as the submitter gave them, from their stored
    form: a value of a registered codec type as itself (a ``datetime``, not
    its tagged JSON), a plain dict that looked like a tag unescaped. Tasks
    get their inputs decoded the same way (``runner``). A codec that fails
    on its stored value is a ``FactoryError``: the flow is declined."""
    try:
        return decode(args), decode(kwargs)
    except Exception as err:
        raise FactoryError(f"factory {name!r}: its stored arguments cannot be decoded "
                           f"({type(err).__name__}: {err})") from err


def rebuild(flow: FlowDetail, allow: Sequence[str] | None) -> CompiledFlow:
    """Today's flow for a stored record. Raises ``FactoryNotAllowed`` or
    ``FactoryError`` (a reason to decline) before anything is written."""
    factory = load_factory(flow.factory, allow)
    built = build_flow(factory, flow.factory, *stored_arguments(flow.args, flow.kwargs, flow.factory))
    try:
        return compile_flow(built, initial_values(flow.kwargs, flow.inputs))
    except DefinitionError as err:
        raise FactoryError(f"factory {flow.factory!r} built an invalid flow: {err}") from err


def plan_flow(
    backend: Backend, flow_id: str, *, allow: Sequence[str] | None = None, flow: FlowDetail | None = None
) -> dict[str, Any]:
    """What resuming the flow with today's code would do. Writes nothing.
    ``flow`` is its record if the caller read it already (and reads more
    of it, as ``ops.query.plan`` does for builds), else it is read here."""
    if flow is None:
        flow = backend.load_flow(flow_id)
    plan = plan_resume(rebuild(flow, allow), flow, backend.load_tasks(flow_id))
    return {"flow_id": flow.id, "state": flow.state, "factory": flow.factory, **plan.to_dict()}


def run_flow(
    backend: Backend,
    claim: Claim[Gate],
    *,
    flow: FlowDetail | None = None,
    tasks: Mapping[str, TaskDetail] | None = None,
    found: Found | None = None,
    replica_id: str,
    allow: Sequence[str] | None = None,
    max_workers: int = 8,
    poison: PoisonRule | None = DEFAULT_RULE,
    clock: Callable[[], float] = time.time,
    events: Events = NO_EVENTS,
    task_timeout: float | None = None,
    build_timeout: float | None = None,
    build: str | None = None,
) -> FlowReport:
    """Run a flow we hold ``claim`` on, from wherever it stopped: every
    write is fenced with its token, every task start asks its gate first.
    ``flow`` is the flow's record if the caller read it after claiming (a
    replica does, to log whether the claim is a takeover), else it is read
    here; ``tasks`` likewise, its task details read with it (a replica
    reads a batch of claimed flows at once); ``found`` when the claim was
    counted on ``flow`` in that batch already (``counting.count_claims``:
    ``flow`` is the record as written, ``found`` as it was before, and
    ``tasks`` must be given). ``events`` hears of every task
    and flow outcome (metrics).

    Building is an attempt: before the factory is imported, the claim is
    counted on the flow record (owner, takeovers), so a factory that kills
    its process trips the ``poison`` rule like a task that does; a flow over
    its limit is HELD without being built (``None``: counted, never held).
    A factory that cannot be loaded here (``FactoryError``: a decline,
    another replica may have the code) leaves the record as it found it. ``build_timeout``
    bounds import and build (``BuildTimeout``, a ``FactoryError``, but it
    counts: the abandoned build may be hanging every replica in turn).
    ``task_timeout`` is the default bound of a task call (see ``FlowRun``).
    ``build`` is this replica's: a flow that already ran on a newer one is
    declined (``BuildTooOld``, nothing written), and every claim leaves the
    newest build on the record, in the write that counts it.
    """
    if flow is None:
        flow = backend.load_flow(claim.flow_id)
    if flow.state not in RUNNABLE_FLOW_STATES:
        return FlowReport.of(flow, backend.load_tasks(flow.id))
    check_allowed(flow.factory, allow)  # a plain decline: nothing written, nothing imported
    check_build(flow.id, FlowMeta(flow.meta), build)  # likewise
    run = FlowRun(backend, claim, flow, CompiledFlow(flow.name), {}, replica_id=replica_id,  # built below
                  max_workers=max_workers, clock=clock, events=events, task_timeout=task_timeout)
    try:
        found = _attempt(run, poison, build, tasks, found)
        if found is not None:
            run.compiled = _build(run, allow, build_timeout, found)
            plan = _plan(run)
            if plan is not None and _start(run, plan, found):
                run.run(plan)
    except Halt as halt:
        log.warning("flow %s: claim lost before it started (%s)", flow.id, halt, extra=run.log_fields())
    return FlowReport.of(run.flow, run.details)


def _attempt(
    run: FlowRun,
    poison: PoisonRule | None,
    build: str | None = None,
    tasks: Mapping[str, TaskDetail] | None = None,
    counted: Found | None = None,
) -> Found | None:
    """Count this claim on the flow record before anything of the flow's
    code runs, or hold the flow (None): too many claims ended without
    handing the flow back and without a task finishing, or a task record is
    corrupt. The record names us as owner from now on: if this process dies
    building or running, the next claim sees a takeover. ``counted``: the
    claim was counted in its batch already (``counting.count_claims``)."""
    flow = run.flow
    if counted is not None and tasks is not None:
        run.details = dict(tasks)
        return counted
    found = Found.of(flow)
    try:
        run.details = dict(tasks) if tasks is not None else run.backend.load_tasks(flow.id)
    except CorruptRecord as err:
        _hold(run, f"cannot resume: {err}")
        return None
    if _count(run, found, poison):
        return None
    run.write_flow(**claim_fields(flow, FlowMeta(flow.meta), found, build, run.replica_id, run.token.epoch,
                                  run.clock()))
    return found


def _count(run: FlowRun, found: Found, poison: PoisonRule | None) -> bool:
    """Set the poison counters in ``run.flow.meta`` (``counting.counted_meta``);
    True (flow held) when the rule says the count is too high."""
    meta, count = counted_meta(run.flow, found, run.details)
    run.flow.meta = meta.to_dict()
    reason = None if poison is None else poison.hold_reason(count)
    if reason is not None:
        _hold(run, reason)
        return True
    return False


def _build(run: FlowRun, allow: Sequence[str] | None, build_timeout: float | None, found: Found) -> CompiledFlow:
    """Today's flow, built within ``build_timeout``. A decline restores the
    record as found (a replica without the code is no crash); a build
    timeout does not (see ``run_flow``)."""
    flow_id, events = run.flow.id, run.events
    try:
        return call_within(lambda: rebuild(run.flow, allow), build_timeout,
                           name=f"building flow {flow_id} ({run.flow.factory})",
                           on_stuck=lambda: events.on_stuck(flow_id, None, build_timeout or 0.0),
                           on_unstuck=lambda: events.on_unstuck(flow_id, None))
    except BuildTimeout:
        log.error("flow %s: factory %s did not build within %gs; its thread is stuck", flow_id,
                  run.flow.factory, build_timeout, extra={**run.log_fields(), "event": "build_stuck"})
        raise
    except DefinitionError:  # FactoryError, FactoryNotAllowed: the worker declines
        with contextlib.suppress(Halt):  # the claim is gone: whoever has it now counts for itself
            run.write_flow(owner=found.owner, state=found.state, meta=found.meta.to_dict())
        raise


def _plan(run: FlowRun) -> ResumePlan | None:
    """Match stored details; a failing migration holds the flow for an
    operator instead of crashing the replica."""
    try:
        return plan_resume(run.compiled, run.flow, run.details)
    except Exception as err:  # a user's migrate callable
        _hold(run, f"cannot resume: version migration failed: {type(err).__name__}: {err}")
        return None


def _hold(run: FlowRun, reason: str) -> None:
    log.error("flow %s held: %s", run.flow.id, reason, extra={**run.log_fields(), "event": "hold"})
    run.finish(HELD, reason)


def _start(run: FlowRun, plan: ResumePlan, found: Found) -> bool:
    """Complete the claim's flow record after the build (task list, resume
    diff), or hold the flow; False when it must not run. ``_attempt`` has
    counted the claim already and stored owner and state, so the rest
    rides with the first task write (one round trip fewer per resumed
    flow: a survivor taking hundreds over starts them that much sooner). A
    first run of a flow built as at submit has nothing to add, so nothing
    is written."""
    built = FlowMeta(run.flow.meta).built(run.compiled.order, plan.unmatched)
    if run.details or found.state != PENDING:
        built = _record_resume(run, built, plan, found.owner)
    meta = built.to_dict()
    if plan.held:
        run.flow.meta = meta
        _hold(run, "; ".join(plan.held))
        return False
    state = RUNNING if run.flow.state == PENDING else run.flow.state
    if (run.flow.state, run.flow.owner, run.flow.meta) != (state, run.replica_id, meta):
        run.write_flow(defer=(run.flow.state, run.flow.owner) == (state, run.replica_id),
                       state=state, owner=run.replica_id, meta=meta)
    return True


def _record_resume(run: FlowRun, meta: FlowMeta, plan: ResumePlan, previous_owner: str | None) -> FlowMeta:
    """``meta`` with this resume in its history and its diff as the last one."""
    takeover = previous_owner is not None
    entry = {
        "at": run.clock(),
        "epoch": run.token.epoch,
        "owner": run.replica_id,
        "previous_owner": previous_owner,
        "takeover": takeover,
        **plan.diff(),
    }
    diff = plan.diff()
    log.info("flow %s resumed by %s at epoch %d: %s", run.flow.id, run.replica_id, run.token.epoch, diff,
             extra={**run.log_fields(), "event": "resume", "takeover": takeover, "diff": diff})
    return meta.resumed(entry, diff)


