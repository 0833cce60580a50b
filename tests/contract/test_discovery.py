"""Contract: find_runnable (new flows and orphans) and wait_for_work."""

from __future__ import annotations

import threading
import time

import pytest

from flowbaton.backends import Backend
from flowbaton.backends.states import FLOW_STATES, RUNNABLE_FLOW_STATES, SUCCESS

from .faults import lose_claim
from .helpers import LEASE, SHORT_LEASE, make_flow, second_backend


def _create(backend: Backend, *ids: str) -> None:
    for flow_id in ids:
        backend.create_flow(make_flow(flow_id))


def test_new_flows_are_found_oldest_first(backend: Backend) -> None:
    ids = ["z", "a", "m", "b"]
    _create(backend, *ids)
    assert backend.find_runnable(10) == ids


def test_limit_is_respected(backend: Backend) -> None:
    _create(backend, "a", "b", "c", "d", "e")
    assert backend.find_runnable(2) == ["a", "b"]
    assert backend.find_runnable(1) == ["a"]
    assert backend.find_runnable(5) == ["a", "b", "c", "d", "e"]


def test_claimed_flows_are_not_found(backend: Backend) -> None:
    _create(backend, "a", "b", "c")
    backend.claim("a", "r1", LEASE)
    backend.claim("c", "r1", LEASE)
    assert backend.find_runnable(10) == ["b"]
    assert backend.find_runnable(1) == ["b"]


def test_orphan_with_expired_claim_is_found_again(backend_url: str, backend: Backend) -> None:
    _create(backend, "a", "b")
    with second_backend(backend_url, backend) as other:
        other.claim("b", "r2", LEASE)  # another client: a session backend loses only "a"
        backend.claim("a", "r1", SHORT_LEASE)
        assert backend.find_runnable(10) == []
        lose_claim(backend, "a")
        assert backend.find_runnable(10) == ["a"]


@pytest.mark.parametrize("state", sorted(FLOW_STATES))
def test_saved_state_decides_runnable(backend: Backend, state: str) -> None:
    _create(backend, "f")
    token = backend.claim("f", "r1", LEASE)
    backend.save_flow(token, make_flow("f", state=state))
    backend.release(token)
    expected = ["f"] if state in RUNNABLE_FLOW_STATES else []
    assert backend.find_runnable(10) == expected


def test_back_to_runnable_after_operator_retry(backend: Backend) -> None:
    _create(backend, "f")
    token = backend.claim("f", "r1", LEASE)
    backend.save_flow(token, make_flow("f", state="HELD", reason="version policy"))
    backend.release(token)
    token = backend.claim("f", "operator", LEASE)
    backend.save_flow(token, make_flow("f", state="RUNNING"))
    backend.release(token)
    assert backend.find_runnable(10) == ["f"]


def test_flow_created_in_terminal_state_is_not_found(backend: Backend) -> None:
    backend.create_flow(make_flow("done", state=SUCCESS))
    _create(backend, "new")
    assert backend.find_runnable(10) == ["new"]


def test_wait_for_work_returns_within_timeout(backend: Backend) -> None:
    start = time.monotonic()
    woken = backend.wait_for_work(0.2)
    assert isinstance(woken, bool)
    assert time.monotonic() - start < 5


def test_watch_backends_wake_on_new_flow(backend: Backend) -> None:
    """A "watch" backend wakes a waiter on a new flow; any other backend may
    wake early or wait out its timeout, never longer."""
    watch = "watch" in backend.capabilities
    timeout = 10 if watch else 1
    woken: list[bool] = []
    waiter = threading.Thread(target=lambda: woken.append(backend.wait_for_work(timeout)))
    waiter.start()
    n = 0
    deadline = time.monotonic() + 5
    while waiter.is_alive() and time.monotonic() < deadline:
        _create(backend, f"f{n}")  # until the waiter has certainly started waiting
        n += 1
        waiter.join(timeout=0.05)
    waiter.join(timeout=timeout + 2)
    assert not waiter.is_alive()
    assert woken == [True] if watch else woken in ([True], [False])
