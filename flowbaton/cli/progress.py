"""``submit --wait`` on a terminal: one line of progress, redrawn in place.

A person waiting on a flow wants to see it move: its state, how many of its
tasks are done out of how many, and which run now. Read with the same
backoff as any waiter (``coordinator.waiting.Polls``); scripts (stderr not a
terminal) get no progress line, only the final one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TextIO

from ..backends.base import Backend
from ..backends.records import FlowDetail, TaskDetail
from ..backends.states import REVERTING, RUNNING, SUCCESS
from ..coordinator.waiting import SETTLED_STATES, Polls
from ..engine import FlowReport
from ..engine.meta import FlowMeta
from .terminal import printable

__all__ = ["progress_line", "wait_with_progress"]

_SHOWN = 3  # running tasks named on the line


def progress_line(flow: FlowDetail, tasks: Mapping[str, TaskDetail]) -> str:
    """``flow 3f2a9c1e0b7d: RUNNING, 2/5 tasks done, running s2``."""
    order = FlowMeta(flow.meta).tasks or sorted(tasks)  # a flow submitted by name lists its tasks once built
    done = sum(1 for t in order if t in tasks and tasks[t].state == SUCCESS)
    running = [t for t in order if t in tasks and tasks[t].state in (RUNNING, REVERTING)]
    now = f", running {', '.join(running[:_SHOWN])}" + (", ..." if len(running) > _SHOWN else "") if running else ""
    return f"flow {flow.id[:12]}: {flow.state}, {done}/{len(order) or '?'} tasks done{now}"


def wait_with_progress(backend: Backend, flow_id: str, timeout: float | None, stream: TextIO) -> FlowReport:
    """``coordinator.waiting.wait_for_flow``, drawing ``progress_line`` on
    ``stream`` whenever it changes; ``TimeoutError`` after ``timeout``."""
    polls = Polls(flow_id, timeout, time.monotonic)
    shown = ""
    try:
        while True:
            flow, tasks = backend.load_flow(flow_id), backend.load_tasks(flow_id)
            line = printable(progress_line(flow, tasks))
            if line != shown:
                stream.write("\r\033[K" + line)
                stream.flush()
                shown = line
            if flow.state in SETTLED_STATES:
                return FlowReport.of(flow, tasks)
            time.sleep(polls.pause(flow.state))
    finally:
        stream.write("\n")
        stream.flush()
