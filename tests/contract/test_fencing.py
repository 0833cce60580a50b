"""Contract: every write of a claimed flow is fenced by the whole token."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from flowbaton.backends import Backend, ClaimToken
from flowbaton.backends.errors import ClaimLost
from flowbaton.backends.states import RUNNING, SUCCESS

from .faults import lose_claim
from .helpers import LEASE, SHORT_LEASE, make_flow, make_task, second_backend

Write = Callable[[Backend, ClaimToken], None]

WRITES: dict[str, Write] = {
    "save_task": lambda b, t: b.save_task(t, make_task("t", state=SUCCESS, result="stale")),
    "save_tasks": lambda b, t: b.save_tasks(
        t, [make_task("t", state=SUCCESS, result="stale"), make_task("new", state=RUNNING)]
    ),
    "save_flow": lambda b, t: b.save_flow(t, make_flow("f", state=SUCCESS, reason="stale")),
    "save_run": lambda b, t: b.save_run(
        t, [make_task("t", state=SUCCESS, result="stale"), make_task("new", state=RUNNING)],
        make_flow("f", state=RUNNING, reason="stale"),
    ),
    "renew": lambda b, t: b.renew(t, LEASE),
    "release": lambda b, t: b.release(t),
    "delete_flow": lambda b, t: b.delete_flow(t),
}


def _seed(backend: Backend) -> ClaimToken:
    """A claimed flow with one task."""
    backend.create_flow(make_flow("f"))
    token = backend.claim("f", "r1", LEASE)
    backend.save_task(token, make_task("t", state=RUNNING, result="good"))
    return token


def _snapshot(backend: Backend) -> dict[str, object]:
    claim = backend.current_claim("f")
    return {
        "flow": backend.load_flow("f"),
        "tasks": backend.load_tasks("f"),
        "claim": (claim.claim_id, claim.epoch) if claim else None,
    }


def _assert_rejected(backend: Backend, write: str, token: ClaimToken) -> None:
    before = _snapshot(backend)
    with pytest.raises(ClaimLost):
        WRITES[write](backend, token)
    assert _snapshot(backend) == before


@pytest.mark.parametrize("write", WRITES)
def test_released_token_is_rejected(backend: Backend, write: str) -> None:
    token = _seed(backend)
    backend.release(token)
    _assert_rejected(backend, write, token)


@pytest.mark.parametrize("write", WRITES)
def test_right_epoch_wrong_claim_id_is_rejected(backend: Backend, write: str) -> None:
    token = _seed(backend)
    forged = replace(token, claim_id=f"r1#{'0' * 12}")
    _assert_rejected(backend, write, forged)


@pytest.mark.parametrize("write", WRITES)
def test_right_claim_id_wrong_epoch_is_rejected(backend: Backend, write: str) -> None:
    token = _seed(backend)
    for epoch in (token.epoch - 1, token.epoch + 1):
        _assert_rejected(backend, write, replace(token, epoch=epoch))


@pytest.mark.parametrize("write", WRITES)
def test_token_of_another_flow_is_rejected(backend: Backend, write: str) -> None:
    token = _seed(backend)
    backend.create_flow(make_flow("g"))
    backend.claim("g", "r1", LEASE)
    _assert_rejected(backend, write, replace(token, flow_id="g"))
    assert backend.load_tasks("g") == {}


@pytest.mark.parametrize("write", WRITES)
def test_force_claim_fences_the_old_holder(backend: Backend, write: str) -> None:
    old = _seed(backend)
    new = backend.claim("f", "operator", LEASE, force=True)
    assert new.epoch > old.epoch
    _assert_rejected(backend, write, old)
    backend.save_task(new, make_task("t", state=SUCCESS, result="new"))
    assert backend.load_tasks("f")["t"].result == "new"


@pytest.mark.parametrize("write", WRITES)
def test_token_of_a_deleted_flow_is_rejected(backend: Backend, write: str) -> None:
    token = _seed(backend)
    backend.delete_flow(token)
    with pytest.raises(ClaimLost):
        WRITES[write](backend, token)


def test_expired_token_is_rejected_before_anyone_takes_over(backend: Backend) -> None:
    """A lease that ran out is lost even if nobody claimed the flow since:
    the holder cannot know whether someone did. (On session backends the
    lease runs out with the session, which ``lose_claim`` expires.)"""
    backend.create_flow(make_flow("f"))
    token = backend.claim("f", "r1", SHORT_LEASE)
    backend.save_task(token, make_task("t", state=RUNNING, result="good"))
    lose_claim(backend, "f")
    for write in WRITES:
        _assert_rejected(backend, write, token)


def test_stale_writer_after_takeover(backend_url: str, backend: Backend) -> None:
    """A claims, stalls past its lease, B takes over: A's late writes fail
    and B's data stays as B wrote it."""
    backend.create_flow(make_flow("f"))
    stale = backend.claim("f", "replica-a", SHORT_LEASE)
    lose_claim(backend, "f")
    with second_backend(backend_url, backend) as b_side:
        fresh = b_side.claim("f", "replica-b", LEASE)
        b_side.save_task(fresh, make_task("t", state=SUCCESS, result="by b"))
        b_side.save_flow(fresh, make_flow("f", state=RUNNING, owner="replica-b"))
        for write in ("save_task", "save_flow", "renew", "release", "delete_flow"):
            with pytest.raises(ClaimLost):
                WRITES[write](backend, stale)
        assert b_side.load_tasks("f")["t"].result == "by b"
        assert b_side.load_flow("f").owner == "replica-b"
        info = b_side.current_claim("f")
        assert info is not None and info.claim_id == fresh.claim_id
