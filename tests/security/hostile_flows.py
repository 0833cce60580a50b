"""Factories and tasks that misbehave as docs/security.md, "Code that does not return", describes:
killing or hanging their process while building, hanging while running.
Importable by replica subprocesses (under the ``tests.`` prefix).

In-process tests let hung calls go through ``GATE`` (reset per test by the
``gate`` fixture); subprocesses simply hang until they are killed.
"""

from __future__ import annotations

import math
import os
import threading
import time

from tenacity import stop_after_attempt

from flowbaton.engine import Flow, Linear, Retry, current_task, task
from tests.coord_flows import record

GATE = threading.Event()  # set: hung calls in this process return
CALLS: list[tuple[str, int, float, float]] = []  # (task, attempt, started, ended), monotonic


def _mark(marker: str) -> None:
    with open(marker, "a") as out:
        out.write(f"{os.getpid()}\n")


def dies_while_building(marker: str) -> Flow:
    """Kills its process while building, like a segfaulting import or OOM."""
    _mark(marker)
    os._exit(23)


class ProcessDeath(BaseException):
    """In-process stand-in for a process death: nothing above catches it."""


def crashes_while_building(marker: str) -> Flow:
    _mark(marker)
    raise ProcessDeath("the replica died while building")


def hangs_while_building(marker: str) -> Flow:
    """A factory (or the import it triggers) that never returns here."""
    _mark(marker)
    GATE.wait(30)
    return Linear("never", quick)


@task(id="quick")
def quick() -> int:
    return 1


def _hang(limit: float) -> None:
    """Hang until ``GATE`` is set, at most ``limit`` seconds."""
    GATE.wait(limit)


def _timed(name: str, body: float) -> int:
    attempt = current_task().attempt
    began = time.monotonic()
    try:
        if attempt == 1:
            _hang(body)
    finally:
        CALLS.append((name, attempt, began, time.monotonic()))
    return attempt


@task(id="slow-once", timeout=0.3, retry=Retry(stop=stop_after_attempt(2)))
def slow_once() -> int:
    """Attempt 1 runs past its timeout (returns after 1 s); attempt 2 is quick."""
    return _timed("slow-once", 1.0)


def retried_after_timeout() -> Flow:
    return Linear("retried-after-timeout", slow_once)


@task(id="made")
def made() -> str:
    return "made"


@made.revert
def unmake(result: str) -> None:
    CALLS.append(("unmake", 1, time.monotonic(), time.monotonic()))


@task(id="slow-no-retry", timeout=0.3)
def slow_no_retry() -> int:
    return _timed("slow-no-retry", 0.8)


def reverted_after_timeout() -> Flow:
    return Linear("reverted-after-timeout", made, slow_no_retry)


@task(id="sleeps")
def sleeps(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task(id="sleeps-unbounded", timeout=math.inf)
def sleeps_unbounded(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


def default_bound() -> Flow:
    return Linear("default-bound", sleeps)


def opted_out() -> Flow:
    return Linear("opted-out", sleeps_unbounded)


@task(id="hangs", timeout=0.3, retry=Retry(stop=stop_after_attempt(2)))
def hangs() -> int:
    """Attempt 1 hangs until ``GATE`` (30 s at most); attempt 2 returns."""
    return _timed("hangs", 30.0)


def hang_until_released() -> Flow:
    return Linear("hang-until-released", hangs)


@task(id="hangs-once")
def hangs_once(ledger: str) -> int:
    """Hangs for good on attempt 1 (no timeout: only a stop ends it); the
    in-doubt re-run by the next owner returns at once."""
    record(ledger)
    if current_task().attempt == 1:
        _hang(3600)
    return current_task().attempt


def hang_once() -> Flow:
    return Linear("hang-once", hangs_once)
