"""Bounds on code we cannot interrupt: task calls and factory builds.

Python cannot stop a thread. A call that runs past its bound is *abandoned*,
not killed: the run stops waiting for it, counts it as failed, and reports
the thread as stuck until it returns (``Events.on_stuck``/``on_unstuck``),
so a supervisor can restart the process. What may happen meanwhile is
decided where the call was made (runner: no second call of the same task,
no hand-back of the claim; lifecycle: the build counts as an attempt).

Calls run on daemon threads: a stuck call must never keep a stopping
process alive (``concurrent.futures`` joins its workers at exit).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Collection
from concurrent.futures import FIRST_COMPLETED, Future, wait
from concurrent.futures import TimeoutError as FutureTimeout
from typing import Any, TypeVar

from ..backends.errors import DefinitionError, FlowbatonError
from .errors import FactoryError

__all__ = ["TaskTimeout", "BuildTimeout", "spawn", "first_done", "call_within", "check_timeout", "bound"]

_T = TypeVar("_T")


class TaskTimeout(FlowbatonError):
    """A task's execute (or revert) ran past its ``timeout``. The attempt
    counts as failed (the task's retry policy decides what comes next);
    its thread may still be running."""


class BuildTimeout(FactoryError):
    """Importing the factory and building the flow took longer than the
    replica's ``build_timeout``; the build's thread may still be running."""


def check_timeout(value: object, where: str) -> float | None:
    """``None`` (no bound) or a positive number of seconds; ``math.inf``
    also means no bound (a task's way to opt out of a replica default)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) or value <= 0:
        raise DefinitionError(f"{where}: timeout must be a positive number of seconds or None, not {value!r}")
    return float(value)


def bound(timeout: float | None) -> float | None:
    """The seconds to wait for a call, or None for no bound: ``None``,
    ``math.inf``, and anything a thread cannot wait for (past
    ``threading.TIMEOUT_MAX``, about 292 years, waits raise OverflowError)."""
    return None if timeout is None or timeout >= threading.TIMEOUT_MAX else timeout


def spawn(fn: Callable[..., _T], *args: Any, name: str) -> Future[_T]:
    """Run ``fn(*args)`` on a new daemon thread; its outcome is the future's."""
    future: Future[_T] = Future()

    def body() -> None:
        if not future.set_running_or_notify_cancel():
            return
        try:
            result = fn(*args)
        except BaseException as err:  # the future carries it to whoever waits
            future.set_exception(err)
        else:
            future.set_result(result)

    threading.Thread(target=body, name=name, daemon=True).start()
    return future


def first_done(futures: Collection[Future[Any]], timeout: float | None) -> set[Future[Any]]:
    """The futures that are done, once one is or ``timeout`` passed. One
    future (a linear flow's case) is waited on alone: ``wait`` installs and
    removes a waiter on every future, a cost each task would pay."""
    if len(futures) == 1:
        (only,) = futures
        try:
            only.exception(timeout)
        except FutureTimeout:
            return set()
        return {only}
    finished, _ = wait(futures, timeout=timeout, return_when=FIRST_COMPLETED)
    return finished


def call_within(fn: Callable[[], _T], timeout: float | None, *, name: str,
                on_stuck: Callable[[], None], on_unstuck: Callable[[], None]) -> _T:
    """``fn()``, waited for at most ``timeout`` seconds (``None``: inline, no
    bound). Past it: ``on_stuck()``, then ``BuildTimeout``; ``on_unstuck()``
    follows once the abandoned call returns, whatever it returned."""
    timeout = bound(timeout)
    if timeout is None:
        return fn()
    future = spawn(fn, name=name)
    try:
        return future.result(timeout)
    except FutureTimeout:
        on_stuck()
        future.add_done_callback(lambda _: on_unstuck())  # at once if it has just returned
        raise BuildTimeout(f"{name} did not finish within {timeout:g}s (build_timeout); "
                           "its thread is abandoned, not stopped") from None
