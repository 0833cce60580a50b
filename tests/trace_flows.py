"""Flows for the tracing tests: each task notes the span current while it
runs (in-process replicas share this module), so a test can check that a
task's own spans would nest under its attempt span."""

from __future__ import annotations

import asyncio

from opentelemetry import trace

from flowbaton.engine import Flow, Linear, current_task, task

#: task id -> span id current inside the task
SEEN: dict[str, int] = {}


@task(id="sync")
def sync_step() -> None:
    SEEN[current_task().task_id] = trace.get_current_span().get_span_context().span_id


@task(id="async")
async def async_step() -> None:
    await asyncio.sleep(0)
    SEEN[current_task().task_id] = trace.get_current_span().get_span_context().span_id


def traced() -> Flow:
    return Linear("traced", sync_step, async_step)
