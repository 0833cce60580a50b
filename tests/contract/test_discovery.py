"""Contract: find_runnable (new flows and orphans) and wait_for_work."""

from __future__ import annotations

import time

import pytest

from flowbaton.backends import Backend, Capability, ClaimToken
from flowbaton.backends.states import FLOW_STATES, RUNNABLE_FLOW_STATES, SUCCESS

from .faults import lose_claim
from .helpers import DEADLINE, LEASE, SHORT_LEASE, make_flow, second_backend, woken_by


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


def _wakes(backend: Backend) -> bool:
    """Whether ``wait_for_work`` wakes on submits and releases."""
    return bool({Capability.WATCH, Capability.NOTIFY} & backend.capabilities)


def test_wait_for_work_without_a_change_returns_false_after_the_timeout(backend: Backend) -> None:
    started = time.monotonic()
    assert backend.wait_for_work(0.3) is False
    assert 0.25 <= time.monotonic() - started < DEADLINE


def test_a_new_flow_from_another_client_wakes_a_waiter(backend_url: str, backend: Backend) -> None:
    """A "watch" or "notify" backend wakes the waiter promptly; any other
    waits out its timeout and answers False."""
    timeout = 30.0 if _wakes(backend) else 1.0
    with second_backend(backend_url, backend) as other:
        woken, took = woken_by(backend, lambda n: other.create_flow(make_flow(f"f{n}")), timeout)
    if _wakes(backend):
        assert woken is True and took < DEADLINE
    else:
        assert woken is False and took >= timeout - 0.05


def test_a_release_by_another_client_wakes_a_waiter(backend_url: str, backend: Backend) -> None:
    _create(backend, "f")
    timeout = 30.0 if _wakes(backend) else 1.0
    with second_backend(backend_url, backend) as other:
        held: list[ClaimToken] = []

        def claim_then_release(n: int) -> None:  # a claim lives 50 ms, then goes
            if held:
                other.release(held.pop())
            else:
                held.append(other.claim("f", "r2", LEASE))

        woken, took = woken_by(backend, claim_then_release, timeout)
    if _wakes(backend):
        assert woken is True and took < DEADLINE
    else:
        assert woken is False and took >= timeout - 0.05


def test_count_backlog(backend: Backend) -> None:
    """The backlog gauge: runnable flows nobody holds, from the index."""
    assert backend.count_backlog() == 0
    for flow_id in ("free-1", "free-2", "held", "done", "released"):
        backend.create_flow(make_flow(flow_id))
    assert backend.count_backlog() == 5
    backend.claim("held", "r1", LEASE)
    done = backend.claim("done", "r1", LEASE)
    backend.save_flow(done, make_flow("done", state="SUCCESS"))
    backend.release(done)
    backend.release(backend.claim("released", "r1", LEASE))
    assert backend.count_backlog() == 3  # free-1, free-2, released
    assert backend.count_backlog() == len(backend.find_runnable(100))
    assert sorted(backend.backlog(10)) == ["free-1", "free-2", "released"] and len(backend.backlog(2)) == 2
