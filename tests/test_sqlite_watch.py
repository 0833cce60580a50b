"""SQLite ``wait_for_work``: who wakes an idle replica, and what idling costs.

Two backend objects on one file stand for two processes: one waits, the
other submits, claims, saves and renews.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowbaton.backends import Capability, open_backend
from flowbaton.backends.sqlite import SQLiteBackend
from tests.contract.helpers import (
    DEADLINE,
    LEASE,
    make_flow,
    make_task,
    wait_until,
    woken_by,
    woken_by_a_submit,
)


@pytest.fixture
def url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'flows.db'}"


def _open(url: str) -> SQLiteBackend:
    opened = open_backend(url)
    assert isinstance(opened, SQLiteBackend)
    return opened


@pytest.fixture
def waiting(url: str) -> Iterator[SQLiteBackend]:
    opened = _open(url)
    yield opened
    opened.close()


@pytest.fixture
def other(url: str) -> Iterator[SQLiteBackend]:
    opened = _open(url)
    yield opened
    opened.close()


def test_declares_watch_so_replicas_poll_rarely(waiting: SQLiteBackend) -> None:
    assert Capability.WATCH in waiting.capabilities


def test_a_submit_by_another_backend_object_wakes_the_waiter(url: str) -> None:
    woken, took = woken_by_a_submit(url)
    assert woken is True and took < DEADLINE


def test_a_change_between_two_waits_wakes_the_next_one_at_once(
    waiting: SQLiteBackend, other: SQLiteBackend
) -> None:
    assert waiting.wait_for_work(0.05) is False  # the first wait only looks
    other.create_flow(make_flow("f"))
    started = time.monotonic()
    assert waiting.wait_for_work(30) is True
    assert time.monotonic() - started < DEADLINE
    assert waiting.wait_for_work(0.05) is False  # that change is spent


def test_a_lapsed_lease_wakes_the_waiter_by_its_expiry(waiting: SQLiteBackend, other: SQLiteBackend) -> None:
    """No commit announces an orphan: the watch wakes at the earliest lease
    expiry it read, not at the end of its timeout. A claim row whose lease
    ran out long ago (rows stay until the flow is claimed again) is not the
    earliest expiry to wait for."""
    other.create_flow(make_flow("old"))
    other.claim("old", "dead", 0.05)
    wait_until(lambda: other.current_claim("old") is None, "the old claim to run out")
    other.create_flow(make_flow("f"))
    other.claim("f", "dead", 1.0)
    info = waiting.current_claim("f")
    assert info is not None and info.expires_at is not None
    assert waiting.find_runnable(10) == ["old"]
    started = time.monotonic()
    assert waiting.wait_for_work(30) is True
    assert time.monotonic() - started < 1.0 + DEADLINE  # well before the 30 s timeout
    assert time.time() >= info.expires_at  # woken by the lapse, not before it
    assert waiting.find_runnable(10) == ["old", "f"]


def test_renewals_keep_the_waiter_asleep(waiting: SQLiteBackend, other: SQLiteBackend) -> None:
    """A lease renewed before it ends is no orphan: the watch looks again
    at the old expiry, finds the new one, and sleeps on."""
    other.create_flow(make_flow("f"))
    token = other.claim("f", "alive", 0.4)
    woken, took = woken_by(waiting, lambda n: other.renew(token, 0.4), timeout=1.5)
    assert woken is False and took >= 1.45
    assert waiting.find_runnable(10) == []


def test_task_saves_of_a_busy_host_keep_the_waiter_asleep(waiting: SQLiteBackend, other: SQLiteBackend) -> None:
    other.create_flow(make_flow("f"))
    token = other.claim("f", "busy", LEASE)
    woken, took = woken_by(waiting, lambda n: other.save_task(token, make_task(f"t{n}")), timeout=0.6)
    assert woken is False and took >= 0.55


def test_an_idle_wait_runs_only_the_change_counter(waiting: SQLiteBackend, other: SQLiteBackend) -> None:
    """While nothing commits, each tick is one PRAGMA data_version, which
    SQLite answers from the WAL index in shared memory (no disk write)."""
    other.create_flow(make_flow("f"))
    other.claim("f", "r2", LEASE)
    assert waiting.wait_for_work(0.05) is False  # the first look reads the summary
    statements: list[str] = []
    waiting.trace_statements(statements.append)
    assert waiting.wait_for_work(0.3) is False
    waiting.trace_statements(None)
    assert len(statements) >= 3 and set(statements) == {"PRAGMA data_version"}
