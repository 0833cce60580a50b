"""The chaos workload: flows whose every execution leaves evidence.

``chaos_flow(seed, index, kind, work)`` is the factory the harness submits (as
``flowbaton.testing.chaos.workload:chaos_flow``)::

    Linear("chaos", prepare, Unordered("fan", b, c[, extra]), finish)

Each task appends start/end lines to the ledger (``flowbaton.testing.ledger``),
sleeps a time fixed by (seed, index, task) (0.1-0.8 s, times ``work``), and returns who ran it (attempt,
epoch, replica): a re-execution therefore always changes the result, which
is how the checker sees a stored result being replaced. ``finish`` requires
``prepare``'s result, so a resume must feed stored results downstream.

``kind``: ``plain`` ends SUCCESS; ``flaky`` fails ``b`` on its first
attempt (it is retried); ``doomed`` fails ``finish`` for good, so the flow
reverts (every revert leaves a ``revert`` line) and ends REVERTED.

A *deploy* changes the code replicas rebuild flows from. Each replica
process runs one deploy *generation* for its whole life, read from
``FLOWBATON_CHAOS_DEPLOY`` (an integer; absent means 0), with the build
``generation_build(g)`` (``1.g``, PEP 440) as its ``--build``: a deploy
restarts part of the fleet on a newer generation, so old and new code run
side by side as in a rolling upgrade. The generation changes the flow:
``extra`` exists in odd generations (task added, then removed again), ``c``
is absent in generations 2, 5, 8... (task removed: its stored detail becomes
unmatched), and ``b``'s version is ``f"{1 + g // 2}.{g % 2}"`` (minor and
major bumps; major ones apply its policy ``reuse``, so no flow is held).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from tenacity import stop_after_attempt

from flowbaton.engine import Flow, Linear, Retry, Task, Unordered, current_task, task
from flowbaton.testing.ledger import record, recorded

__all__ = ["DEPLOY_ENV", "KINDS", "chaos_flow", "deploy_generation", "expected_state", "generation_build"]

DEPLOY_ENV = "FLOWBATON_CHAOS_DEPLOY"
KINDS = ("plain", "flaky", "doomed")
_PAUSE = (0.1, 0.8)  # seconds a task works (times ``work``): long enough to be caught mid-task


def deploy_generation() -> int:
    """This process's deploy generation (0 without ``FLOWBATON_CHAOS_DEPLOY``)."""
    try:
        return int(os.environ.get(DEPLOY_ENV) or 0)
    except ValueError:
        return 0


def generation_build(generation: int) -> str:
    """The build (PEP 440) of replicas that run ``generation``: ordered as
    the generations are (``1.10`` is newer than ``1.9``)."""
    return f"1.{generation}"


def expected_state(kind: str) -> str:
    return "REVERTED" if kind == "doomed" else "SUCCESS"


def _work(seed: int, index: int, work: float) -> dict[str, Any]:
    ctx = current_task()
    pause = random.Random(f"{seed}/{index}/{ctx.task_id}").uniform(*_PAUSE) * work
    time.sleep(pause)
    return {"task": ctx.task_id, "attempt": ctx.attempt, "epoch": ctx.epoch, "replica": ctx.replica_id}


@task(id="prepare", provides="ticket")
@recorded
def prepare(seed: int, index: int, work: float = 1.0) -> dict[str, Any]:
    return _work(seed, index, work)


@task(id="b", retry=Retry(stop=stop_after_attempt(3)), on_version_change="reuse")
@recorded
def work_b(seed: int, index: int, kind: str, work: float = 1.0) -> dict[str, Any]:
    result = _work(seed, index, work)
    if kind == "flaky" and current_task().attempt == 1:
        raise RuntimeError("flaky: the first attempt of b always fails")
    return result


@task(id="c")
@recorded
def work_c(seed: int, index: int, work: float = 1.0) -> dict[str, Any]:
    return _work(seed, index, work)


@task(id="extra")
@recorded
def extra(seed: int, index: int, work: float = 1.0) -> dict[str, Any]:
    return _work(seed, index, work)


@task(id="finish")
@recorded
def finish(seed: int, index: int, kind: str, ticket: dict[str, Any], work: float = 1.0) -> dict[str, Any]:
    if ticket.get("task") != "prepare":
        raise RuntimeError(f"finish got a wrong ticket: {ticket!r}")
    result = _work(seed, index, work)
    if kind == "doomed":
        raise RuntimeError("doomed: finish always fails, so the flow reverts")
    return result


def _undo(result: Any) -> None:
    record("revert")


for _undoable in (prepare, work_b, work_c, extra):
    _undoable.revert(_undo)


def chaos_flow(seed: int, index: int, kind: str = "plain", work: float = 1.0) -> Flow:
    """One workload flow, shaped by today's deploy generation; ``work``
    scales how long its tasks take."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, not {kind!r}")
    generation = deploy_generation()
    fan: list[Task] = [work_b.clone(version=f"{1 + generation // 2}.{generation % 2}")]
    if generation % 3 != 2:
        fan.append(work_c)
    if generation % 2 == 1:
        fan.append(extra)
    return Linear("chaos", prepare, Unordered("fan", *fan), finish)
