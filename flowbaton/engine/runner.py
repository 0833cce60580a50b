"""The thin loop that acts: persist a transition, call a task, persist again.

Decisions come from the pure pieces (``resume.plan_resume``, the schedules);
this module owns the only side effects of a run. All writes happen on the
loop's thread, in order, each conditional on the claim token. Task code runs
inline when nothing else could run beside it, else on a bounded pool.
"""

from __future__ import annotations

import heapq
import logging
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, wait
from dataclasses import replace
from typing import Any

from ..backends.base import Backend
from ..backends.errors import BackendUnavailable, ClaimLost, FlowbatonError
from ..backends.records import ClaimToken, FlowDetail, TaskDetail
from ..backends.states import (
    FAILURE,
    HELD,
    REVERT_FAILURE,
    REVERTED,
    REVERTING,
    RUNNING,
    SUCCESS,
)
from .asyncloop import AsyncCall, TaskCancelled, start_call
from .attempts import HISTORY, REVERT, earlier_attempts, revert_finished, revert_started
from .binding import execute_kwargs, provided_values, revert_args
from .claim import Claim
from .codec import decode, encode
from .compiler import CompiledFlow
from .context import TaskContext, task_context
from .events import NO_EVENTS, TASK_FAILURE, TASK_RETRY, TASK_REVERT, TASK_REVERT_FAILURE, TASK_SUCCESS, Events
from .gate import Gate
from .meta import FlowMeta
from .resume import ResumePlan
from .retry import next_delay
from .scheduler import ForwardSchedule, RevertSchedule
from .sizes import fit_flow, fit_task, succeeded
from .timeouts import TaskTimeout, bound, first_done, spawn
from .tracing import NoTracing, traced_attempt, tracing

__all__ = ["FlowRun", "Halt"]

log = logging.getLogger("flowbaton.engine")

Outcome = tuple[str, Any, BaseException | None]  # (task id, result, error)


class Halt(Exception):
    """A write was refused: the claim is gone; stop acting on this flow."""


def failure_of(error: BaseException) -> dict[str, str]:
    return {
        "type": f"{type(error).__module__}.{type(error).__qualname__}",
        "message": str(error),
        "traceback": "".join(traceback.format_exception(type(error), error, error.__traceback__)),
    }


class FlowRun:
    """One claimed run of one flow, from its prepared plan to an end state.

    Timeouts (``Task.timeout``, else ``task_timeout``): a bounded call runs
    on its own daemon thread. Past its bound the attempt counts as failed
    with ``TaskTimeout`` (stored on the task's record) and the task's retry
    policy decides, as for any failure; but Python cannot stop the thread,
    so until the abandoned call returns: the task is not called again here
    (a due retry waits for it), nothing is reverted and the flow is not
    handed back (the claim stays ours and is renewed), because another call
    or another owner would run the task twice at once. The stuck call is
    reported (``Events.on_stuck``: log, ``/healthz`` unhealthy) so that a
    supervisor restarts the process; then the claim expires and the next
    owner resumes with the task in doubt. If it does return, its outcome is
    discarded and the run goes on.
    """

    def __init__(
        self,
        backend: Backend,
        claim: Claim[Gate],
        flow: FlowDetail,
        compiled: CompiledFlow,
        details: dict[str, TaskDetail],
        *,
        replica_id: str,
        max_workers: int,
        clock: Callable[[], float] = time.time,
        events: Events = NO_EVENTS,
        task_timeout: float | None = None,
    ) -> None:
        self.backend, self.claim, self.flow, self.compiled = backend, claim, flow, compiled
        # The claim's parts, read on every write and task start: plain
        # attributes (a property costs a call per use on the hot path).
        self.token: ClaimToken = claim.token  # what every write is fenced with
        self.gate: Gate = claim.gate  # what every task start asks first
        self.task_timeout = task_timeout  # for tasks without a timeout of their own
        self.events = events
        self.details = details
        self.replica_id, self.clock = replica_id, clock
        self.max_workers = max(1, max_workers)
        self.values: dict[str, Any] = {k: decode(v) for k, v in {**flow.kwargs, **flow.inputs}.items()}
        self.in_doubt: set[str] = set()
        self.failed: str | None = None  # reason of the first final failure
        self._running: dict[Future[Any], str] = {}
        self._deadlines: dict[Future[Any], float] = {}  # bounded calls not yet late (monotonic)
        self._stuck: dict[Future[Any], str] = {}  # calls abandoned at their timeout, still running
        self._parked: dict[str, float] = {}  # retries due once their task's stuck call returns
        self._inline: list[Outcome] = []
        self._delayed: list[tuple[float, str]] = []
        self._unsaved: list[TaskDetail] = []
        self._flow_unsaved = False  # the flow record waits for the next task write
        self._retried: dict[str, float] = {}  # task id -> when its attempt failed, to be retried here
        self._async: dict[Future[Any], AsyncCall] = {}  # async task calls in flight (asyncloop)
        self._trace: Any = None  # the run's span (engine.tracing), parent of its attempts
        self.gate.when_lost(self._cancel_async)

    # ------------------------------------------------------------ writes

    def write_task(self, detail: TaskDetail, *, defer: bool = False) -> None:
        """Store a task detail. ``defer`` holds a finished task's record back
        to travel with the next write (usually the next task's start) as one
        round trip; ``flush`` sends it before the loop waits or the flow
        record changes, so nothing that depends on it can outrun it."""
        detail = fit_task(detail, self.backend.max_record_bytes)  # long failure texts are cut, not refused
        self.details[detail.task_id] = detail
        self._unsaved.append(detail)
        if not defer:
            self.flush()

    def flush(self) -> None:
        """Write every held-back task detail now, and the flow record if it
        was held back too (``write_flow(defer=True)``), in one round trip."""
        batch, self._unsaved = self._unsaved, []
        if self._flow_unsaved:
            self._flow_unsaved = False
            if batch:
                self._guard(lambda token, flow: self.backend.save_run(token, batch, flow), self.flow)
            else:
                self._guard(self.backend.save_flow, self.flow)
        elif len(batch) == 1:
            self._guard(self.backend.save_task, batch[0])
        elif batch:
            self._guard(self.backend.save_tasks, batch)

    def write_flow(self, *, defer: bool = False, **changes: Any) -> None:
        """Store the flow record with ``changes``. ``defer`` holds it back
        to travel with the next task write (``Backend.save_run``): a resumed
        flow's resume history rides with its first task start. Only for a
        record whose state and owner are stored already: until the next
        write, the store has the record as it was."""
        if not defer:
            self._flow_unsaved = False  # this write carries it
            self.flush()
        for key, value in changes.items():
            setattr(self.flow, key, value)
        self.flow.updated_at = self.clock()
        self.flow.epoch = self.token.epoch
        fit_flow(self.flow, self.backend.max_record_bytes)  # trims the engine's history; FlowTooLarge if in vain
        if defer:
            self._flow_unsaved = True
        else:
            self._guard(self.backend.save_flow, self.flow)

    def _guard(self, save: Callable[[ClaimToken, Any], None], record: Any) -> None:
        if self.gate.lost:
            raise Halt(self.gate.lost_reason)
        try:
            save(self.token, record)
        except (ClaimLost, BackendUnavailable) as err:
            # Whether an unavailable backend applied the write is unknown, so
            # the only safe course is the lost-claim one: act no further.
            self.gate.lose(f"{type(err).__name__}: {err}")
            raise Halt(str(err)) from err

    # -------------------------------------------------------------- run

    def run(self, plan: ResumePlan) -> None:
        """Run forward, then revert if a task failed for good; ``Halt``
        (claim lost) ends it early and quietly. Traced as one run, each
        task call as one attempt under it (``engine.tracing``)."""
        try:
            with tracing().run(self.flow, self.replica_id, self.token.epoch) as self._trace:
                self._run(plan)
        except Halt as halt:
            log.warning("flow %s: stopped acting, claim lost (%s)", self.flow.id, halt, extra=self.log_fields())
            self._drain_quietly()
        finally:
            self.gate.forget(self._cancel_async)

    def _run(self, plan: ResumePlan) -> None:
        for detail in plan.rewrite.values():
            self.write_task(detail)
        done = plan.reuse | set(plan.rewrite)
        for tid in done:
            self.values.update(provided_values(self.compiled.tasks[tid], decode(self.details[tid].result)))
        self.in_doubt = set(plan.in_doubt)
        if plan.revert_failed:
            return self.finish(FAILURE, "a revert had failed before this resume")
        if plan.failed:
            self.failed = f"task {sorted(plan.failed)[0]!r} had failed before this resume"
        if self.flow.state != REVERTING and not self.failed:
            complete = self._forward(ForwardSchedule(self.compiled, done))
            if complete:
                return self.finish(SUCCESS, None)
        if self.gate.stopped or self.gate.lost:
            return self._hand_back()
        return self._revert()

    def finish(self, state: str, reason: str | None) -> None:
        """Write the end state, hand the flow back, tell the observer."""
        how = "held" if state == HELD else "finished"
        self.write_flow(state=state, reason=reason, owner=None, meta=self._claim_ended(how))
        self.events.on_flow_finished(self.flow.id, state, max(0.0, self.flow.updated_at - self.flow.created_at))

    def log_fields(self, task_id: str | None = None) -> dict[str, object]:
        """``extra=`` for log records: structured logs name the flow, the
        replica and the claim's epoch on every line about a run."""
        fields: dict[str, object] = {"flow_id": self.flow.id, "replica_id": self.replica_id, "epoch": self.token.epoch}
        if task_id is not None:
            fields["task_id"] = task_id
        return fields

    def _hand_back(self) -> None:
        """Graceful stop: leave the flow runnable and unowned for the next replica."""
        if not self.gate.lost:
            self.write_flow(owner=None, meta=self._claim_ended("handed back" if self.gate.handover else "released"))

    def _claim_ended(self, how: str) -> dict[str, Any]:
        """The flow's meta with this claim's end in its claim history."""
        return FlowMeta(self.flow.meta).claim_ended(self.token.epoch, how, self.clock()).to_dict()

    # ---------------------------------------------------------- forward

    def _forward(self, schedule: ForwardSchedule) -> bool:
        """Run tasks until all have results (True) or something stops us."""
        while True:
            self._start_ready(schedule)
            if not (self._running or self._inline):
                if self.failed or self.gate.stopped or self.gate.lost:
                    return False
                if not (self._delayed or schedule.has_ready()):
                    return True
                self.flush()
                self.gate.wait(self._until_due())  # paused, or a retry is not due yet
                continue
            for tid, result, error in self._collect():
                self._forward_outcome(schedule, tid, result, error)

    def _blocked(self) -> bool:
        return self.failed is not None or not self.gate.may_start()

    def _start_ready(self, schedule: ForwardSchedule) -> None:
        now = self.clock()
        while self._delayed and self._delayed[0][0] <= now and not self._blocked():
            due, tid = heapq.heappop(self._delayed)
            if tid in self._stuck.values():
                self._parked[tid] = due  # never two calls of one task at once
            else:
                self._start(tid, schedule)
        while schedule.has_ready() and self._has_room() and not self._blocked():
            self._start(schedule.pop(), schedule)

    def _start(self, tid: str, schedule: ForwardSchedule) -> None:
        task = self.compiled.tasks[tid]
        previous = self.details.get(tid)
        attempt = (previous.attempts if previous else 0) + 1
        first = previous.meta.get("first_started") if previous else None
        now = self.clock()
        meta: dict[str, Any] = {"first_started": first or now}
        if previous and previous.failure and previous.state == RUNNING:
            meta["last_failure"] = previous.failure
        history = earlier_attempts(previous, retried_at=self._retried.pop(tid, None))
        if history:
            meta[HISTORY] = history
        detail = TaskDetail(
            tid, RUNNING, None, None, task.task_version, attempt, now, None,
            self.replica_id, self.token.claim_id, self.token.epoch, meta,
        )
        self._write_start(detail)
        ctx = TaskContext(self.flow.id, tid, attempt, tid in self.in_doubt, self.replica_id, self.token.epoch)
        kwargs = execute_kwargs(task, self.values)
        call = lambda: task.run_execute(kwargs)  # noqa: E731
        self._launch(tid, ctx, call, inline=not self._running and not schedule.has_ready(),
                     is_async=task.execute_is_async, kind="execute")

    def _write_start(self, detail: TaskDetail) -> None:
        """Store that a task (or its revert) starts, then ask the gate again:
        the write itself may have outlasted the lease (a busy SQLite, driver
        retries), and once the claim may be another replica's nothing may
        start. The record stays in doubt and the next owner runs the task,
        instead of both running it at once (docs/chaos-bugs.md #2). A paused gate
        (ZooKeeper session suspended) holds the start until the claim is
        confirmed (resume) or gone (lose)."""
        self.write_task(detail)
        while not self.gate.may_start():
            if self.gate.lost:
                raise Halt(self.gate.lost_reason)
            if self.gate.stopped:
                return  # a graceful stop, claim still ours: run what is recorded as started
            # Paused (session in doubt): start once it is confirmed ours, never before.
            self.gate.wait_open(0.5)

    def _launch(self, tid: str, ctx: TaskContext | None, call: Callable[[], Any], inline: bool,
                is_async: bool = False, kind: str = "execute") -> None:
        timeout = self._timeout_of(tid)
        call = _traced(call, self._trace, ctx, kind, is_async)
        if is_async:  # on the task loop, never a plain call: a coroutine can be cancelled, a thread cannot
            started = start_call(call, ctx, name=f"flow-{self.flow.id[:8]}-{tid[:32]}")
            if started.outcome is not None:  # over within the loop turns this thread ran (asyncloop)
                self._inline.append((tid, *started.outcome))
                return
            self._async[started.future] = started
            self._running[started.future] = tid
            if timeout is not None:
                self._deadlines[started.future] = time.monotonic() + timeout
            if self.gate.lost:  # lost while it was being started: the hook ran already
                started.cancel()
            return
        if timeout is None and (inline or self.max_workers == 1):
            try:
                self._inline.append((tid, _in_context(ctx, call), None))
            except Exception as error:
                self._inline.append((tid, None, error))
            return
        # Daemon threads, not a pool: a stuck call must not keep the process alive at exit.
        future = spawn(_in_context, ctx, call, name=f"flow-{self.flow.id[:8]}-{tid[:32]}")
        self._running[future] = tid
        if timeout is not None:
            self._deadlines[future] = time.monotonic() + timeout

    def _timeout_of(self, tid: str) -> float | None:
        own = self.compiled.tasks[tid].task_timeout
        return bound(self.task_timeout if own is None else own)

    def _collect(self) -> list[Outcome]:
        if self._inline:
            outcomes, self._inline = self._inline, []
            return outcomes
        self.flush()  # results held back must not wait for a slow task
        finished = first_done(self._running.keys(), self._wait_time())
        self.gate.may_start()  # a gate whose lease ran out closes (and cancels async calls) now
        if self.gate.lost:  # nothing that ended may be recorded: the claim is gone
            raise Halt(self.gate.lost_reason)
        outcomes = []
        for future in finished:
            tid = self._running.pop(future)
            self._deadlines.pop(future, None)
            self._async.pop(future, None)
            if future in self._stuck:
                self._unstick(future, tid)
                continue
            error = future.exception()
            outcomes.append((tid, None if error else future.result(), error))
        return outcomes + self._expire()

    def _wait_time(self) -> float | None:
        """Until the next retry is due or the next bounded call is late."""
        waits = [self._until_due()] if self._delayed else []
        if self._deadlines:
            waits.append(max(0.0, min(self._deadlines.values()) - time.monotonic()))
        expires = self.gate.expires_in() if self._async else None
        if expires is not None:  # wake at the lease's end: its async calls must not outlive it
            waits.append(expires + 0.01)
        return min(waits) if waits else None

    def _expire(self) -> list[Outcome]:
        """Abandon the calls past their deadline: each attempt fails with
        ``TaskTimeout``; the thread stays in ``_running`` (it holds its slot,
        and the loops wait for it before reverting or handing back)."""
        now, outcomes = time.monotonic(), list[Outcome]()
        for future, deadline in list(self._deadlines.items()):
            if deadline > now or future.done():
                continue
            del self._deadlines[future]
            tid = self._stuck[future] = self._running[future]
            timeout = self._timeout_of(tid) or 0.0
            outcome = TaskTimeout(f"task {tid!r} did not return within its timeout of {timeout:g}s")
            if future in self._async:  # cancelled; its slot and retry wait until it has unwound
                self._async[future].cancel()
                log.warning("flow %s task %s: async call cancelled at its timeout of %gs", self.flow.id, tid,
                            timeout, extra={**self.log_fields(tid), "event": "task_cancelled"})
                outcomes.append((tid, None, outcome))
                continue
            log.error("flow %s task %s still running after its timeout of %gs: attempt failed, thread stuck "
                      "(it cannot be stopped; restart the process if it never returns)", self.flow.id, tid,
                      timeout, extra={**self.log_fields(tid), "event": "task_stuck"})
            self.events.on_stuck(self.flow.id, tid, timeout)
            outcomes.append((tid, None, TaskTimeout(f"task {tid!r} did not return within its timeout "
                                                    f"of {timeout:g}s")))
        return outcomes

    def _unstick(self, future: Future[Any], tid: str) -> None:
        """An abandoned call returned at last: drop its outcome, let its retry go."""
        del self._stuck[future]
        if tid in self._parked:
            heapq.heappush(self._delayed, (self._parked.pop(tid), tid))
        if isinstance(future.exception(), TaskCancelled):
            return  # an async call cancelled at its timeout has unwound: nothing was stuck
        log.warning("flow %s task %s: the call abandoned at its timeout returned; outcome discarded",
                    self.flow.id, tid, extra={**self.log_fields(tid), "event": "task_unstuck"})
        self.events.on_unstuck(self.flow.id, tid)

    def _until_due(self) -> float:
        if not self._delayed:
            return 0.5
        return max(0.0, min(0.5, self._delayed[0][0] - self.clock()))

    def _forward_outcome(self, schedule: ForwardSchedule, tid: str, result: Any, error: BaseException | None) -> None:
        task = self.compiled.tasks[tid]
        detail = self.details[tid]
        if error is None:
            try:
                stored = encode(result, f"task {tid!r} result")
                provided = provided_values(task, result)
                finished = self.clock()
                # Measured before writing: a refused write would leave the task RUNNING, run again on every claim.
                done = succeeded(detail, stored, finished, self.backend.max_record_bytes, self.flow.id)
            except FlowbatonError as bad:  # ResultTooLarge fails the task like any error it raised
                error = bad
        if error is None:
            self.write_task(done, defer=True)
            self.events.on_task_finished(self.flow.id, tid, TASK_SUCCESS, _took(detail, finished))
            self.values.update(provided)
            self.in_doubt.discard(tid)
            schedule.finished(tid)
            return
        self._forward_failure(tid, detail, error)

    def _forward_failure(self, tid: str, detail: TaskDetail, error: BaseException) -> None:
        task = self.compiled.tasks[tid]
        first = float(detail.meta.get("first_started") or detail.started_at or self.clock())
        delay = None if self.failed else next_delay(task.task_retry, detail.attempts, error, first)
        failure = failure_of(error)
        if delay is not None:
            # Keep the failure on the RUNNING detail; the next start bumps the attempt.
            # A timed-out call may outlive us: store why, for whoever resumes it.
            if isinstance(error, TaskTimeout):
                self.write_task(replace(detail, failure=failure))
            else:
                self.details[tid] = replace(detail, failure=failure)
            now = self.clock()
            self._retried[tid] = now  # the next start keeps this attempt in its history
            heapq.heappush(self._delayed, (now + delay, tid))
            self.events.on_task_finished(self.flow.id, tid, TASK_RETRY, _took(detail, now))
            log.info("flow %s task %s attempt %d failed, retry in %.2fs", self.flow.id, tid, detail.attempts, delay,
                     extra=self.log_fields(tid))
            return
        finished = self.clock()
        self.write_task(replace(detail, state=FAILURE, failure=failure, finished_at=finished))
        self.events.on_task_finished(self.flow.id, tid, TASK_FAILURE, _took(detail, finished))
        log.warning("flow %s task %s failed for good: %s", self.flow.id, tid, failure["message"],
                    extra=self.log_fields(tid))
        self.failed = self.failed or f"task {tid!r} failed: {failure['type']}: {failure['message']}"
        self._delayed.clear()
        self._parked.clear()

    # ----------------------------------------------------------- revert

    def _revert(self) -> None:
        # RUNNING counts: an in-doubt task may have done its work before its owner died.
        undo_states = (SUCCESS, FAILURE, REVERTING, RUNNING)
        undo = {t for t, d in self.details.items() if t in self.compiled.tasks and d.state in undo_states}
        reason = self.failed or self.flow.reason
        if self.flow.state != REVERTING:
            self.write_flow(state=REVERTING, reason=reason)
        schedule = RevertSchedule(self.compiled, undo)
        broken: list[str] = []
        while True:
            while not broken and schedule.has_ready() and self._has_room() and self.gate.may_start():
                self._start_revert(schedule.pop(), schedule)
            if self._running or self._inline:
                for tid, _, error in self._collect():
                    broken += self._revert_outcome(schedule, tid, error)
            elif broken or not schedule.has_ready() or self.gate.stopped or self.gate.lost:
                break
            else:
                self.gate.wait(0.5)  # paused
        if broken:
            return self.finish(FAILURE, f"{reason}; then revert of {broken[0]!r} failed")
        if schedule.has_ready():
            return self._hand_back()
        return self.finish(REVERTED, reason)

    def _has_room(self) -> bool:
        return len(self._running) < self.max_workers

    def _start_revert(self, tid: str, schedule: RevertSchedule) -> None:
        task = self.compiled.tasks[tid]
        detail = self.details[tid]
        if not task.has_revert:
            self.write_task(replace(detail, state=REVERTED, finished_at=self.clock()))
            schedule.reverted(tid)
            return
        self._write_start(replace(detail, state=REVERTING,
                                  meta=revert_started(detail, self.clock(), self.replica_id, self.token.epoch)))
        args, kwargs = revert_args(task, decode(detail.result), detail.failure, self.values)
        call = lambda: task.run_revert(args, kwargs)  # noqa: E731
        ctx = TaskContext(self.flow.id, tid, detail.attempts, False, self.replica_id, self.token.epoch)
        self._launch(tid, ctx, call, inline=not self._running and not schedule.has_ready(),
                     is_async=task.revert_is_async, kind="revert")

    def _revert_outcome(self, schedule: RevertSchedule, tid: str, error: BaseException | None) -> list[str]:
        detail = self.details[tid]
        finished = self.clock()
        began = (detail.meta.get(REVERT) or {}).get("started_at") or finished
        took = max(0.0, finished - began)
        meta = revert_finished(detail, finished)
        if error is not None:
            meta = {**meta, "revert_failure": failure_of(error)}
            self.write_task(replace(detail, state=REVERT_FAILURE, meta=meta, finished_at=finished))
            self.events.on_task_finished(self.flow.id, tid, TASK_REVERT_FAILURE, took)
            return [tid]
        self.write_task(replace(detail, state=REVERTED, meta=meta, finished_at=finished))
        self.events.on_task_finished(self.flow.id, tid, TASK_REVERT, took)
        schedule.reverted(tid)
        return []

    def _cancel_async(self) -> None:
        """The claim is lost: cancel every async task call (``CancelledError``
        at its next await). Called on the thread that lost the gate."""
        for call in list(self._async.values()):
            call.cancel()

    def _drain_quietly(self) -> None:
        """After losing the claim, let running task calls end (async ones
        are cancelled); write nothing."""
        if self.gate.lost:
            self._cancel_async()
        if self._running:
            wait(list(self._running))
        for tid in self._stuck.values():
            self.events.on_unstuck(self.flow.id, tid)
        self._running.clear()
        self._stuck.clear()


def _traced(call: Callable[[], Any], parent: Any, ctx: TaskContext | None, kind: str,
            is_async: bool) -> Callable[[], Any]:
    """``call`` inside its attempt's span, where it runs (a worker thread, or
    the coroutine on the task loop): spans the task makes nest under it."""
    if isinstance(tracing(), NoTracing):
        return call  # nobody traces: not even a wrapper per task

    if is_async:
        async def traced_coroutine() -> Any:
            with traced_attempt(parent, ctx, kind):
                return await call()

        return traced_coroutine

    def traced_call() -> Any:
        with traced_attempt(parent, ctx, kind):
            return call()

    return traced_call


def _in_context(ctx: TaskContext | None, call: Callable[[], Any]) -> Any:
    with task_context(ctx):
        return call()


def _took(detail: TaskDetail, finished: float) -> float:
    """Seconds of this attempt: from its start as stored to ``finished``."""
    return max(0.0, finished - (detail.started_at or finished))

