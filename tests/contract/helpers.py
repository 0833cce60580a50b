"""Shared pieces of the contract suite: record factories and waits with deadlines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from flowbaton.backends import Backend, open_backend
from flowbaton.backends.records import FlowDetail, TaskDetail

LEASE = 30.0  # a claim that outlives any test
SHORT_LEASE = 0.3  # a claim a test waits out
DEADLINE = 5.0  # how long a test waits for a condition before failing

# JSON values that break naive storage: unicode outside the BMP, escapes,
# NUL, integers beyond 2**53, tiny and huge floats, empty containers.
AWKWARD_JSON: dict[str, Any] = {
    "unicode": "héllo ✓ 𝄞 中文",
    "escapes": 'quote " backslash \\ newline \n tab \t nul \x00',
    "big_int": 2**63 + 1,
    "neg": -(2**70),
    "floats": [0.1, 1e-300, 1e300, -2.5],
    "flags": [True, False, None],
    "empty": {"list": [], "dict": {}, "str": ""},
    "nested": {"a": [{"b": [1, [2, [3]]]}]},
    "keys with / and : and {}": 1,
}


def make_flow(flow_id: str = "flow-1", **fields: Any) -> FlowDetail:
    fields.setdefault("created_at", time.time())
    fields.setdefault("updated_at", fields["created_at"])
    return FlowDetail(id=flow_id, name=f"name of {flow_id}", factory="pkg.mod:build", **fields)


def make_task(task_id: str = "pkg.mod.task", **fields: Any) -> TaskDetail:
    return TaskDetail(task_id=task_id, **fields)


def wait_until(
    condition: Callable[[], object], what: str, timeout: float = DEADLINE
) -> None:
    """Poll ``condition`` until true; fail naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def woken_by(backend: Backend, change: Callable[[int], object], timeout: float) -> tuple[bool, float]:
    """Call ``backend.wait_for_work(timeout)`` in a thread while making
    ``change(n)`` (n = 0, 1, ...) every 50 ms until it returns, so a change
    made before the waiter was ready is followed by one it sees. Returns
    what it returned and how long it took; fails if it outlives
    ``timeout + DEADLINE``."""
    answers: list[bool] = []
    started = time.monotonic()
    waiter = threading.Thread(target=lambda: answers.append(backend.wait_for_work(timeout)), daemon=True)
    waiter.start()
    end = started + timeout + DEADLINE
    n = 0
    while waiter.is_alive() and time.monotonic() < end:
        change(n)
        n += 1
        waiter.join(timeout=0.05)
    waiter.join(timeout=max(0.0, end - time.monotonic()))
    if waiter.is_alive() or not answers:
        raise AssertionError(f"wait_for_work({timeout}) did not return within {timeout + DEADLINE}s")
    return answers[0], time.monotonic() - started


def woken_by_a_submit(url: str, **options: object) -> tuple[bool, float]:
    """``woken_by`` with two backend objects opened on ``url``: one waits,
    the other submits new flows; both are closed afterwards."""
    waiting, submitting = open_backend(url, **options), open_backend(url, **options)
    try:
        return woken_by(waiting, lambda n: submitting.create_flow(make_flow(f"f{n}")), timeout=30)
    finally:
        waiting.close()
        submitting.close()


def wait_past(wall_time: float) -> None:
    """Wait until the wall clock passes ``wall_time``: used only to prove
    that something did NOT expire by then."""
    wait_until(lambda: time.time() > wall_time, f"wall clock past {wall_time}")


@contextmanager
def second_backend(url: str, backend: Backend) -> Iterator[Backend]:
    """Another client of the same store: a new object where the store is
    shared between objects, else the same object (memory:// lives in one)."""
    if "shared" not in backend.capabilities:
        yield backend
        return
    other = open_backend(url)
    try:
        yield other
    finally:
        other.close()
