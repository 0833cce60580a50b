"""Contract: claims, epochs, leases, and what operators see of them."""

from __future__ import annotations

import time

import pytest

from flowbaton.backends import Backend
from flowbaton.backends.errors import ClaimHeld

from .faults import claim_reply_lost, lose_claim
from .helpers import LEASE, SHORT_LEASE, make_flow, make_task, second_backend, wait_past


@pytest.fixture(autouse=True)
def _flow(backend: Backend) -> None:
    backend.create_flow(make_flow("f"))


def test_token_names_owner_flow_and_epoch(backend: Backend) -> None:
    token = backend.claim("f", "replica-a", LEASE)
    assert token.flow_id == "f"
    assert token.claim_id.startswith("replica-a#") and len(token.claim_id) > len("replica-a#")
    assert token.owner == "replica-a"
    assert token.epoch >= 1


def test_owner_with_hash_survives(backend: Backend) -> None:
    token = backend.claim("f", "host#7", LEASE)
    info = backend.current_claim("f")
    assert info is not None and info.owner == "host#7" and token.owner == "host#7"


def test_epoch_grows_across_release_and_force(backend: Backend) -> None:
    epochs = []
    for owner in ("r1", "r2", "r1"):
        token = backend.claim("f", owner, LEASE)
        epochs.append(token.epoch)
        backend.release(token)
    held = backend.claim("f", "r1", LEASE)
    forced = backend.claim("f", "operator", LEASE, force=True)
    epochs += [held.epoch, forced.epoch]
    assert epochs == sorted(set(epochs)), epochs


def test_claim_ids_are_unique_per_claim(backend: Backend) -> None:
    first = backend.claim("f", "r1", LEASE)
    backend.release(first)
    second = backend.claim("f", "r1", LEASE)
    assert first.claim_id != second.claim_id


def test_live_claim_is_held_even_for_the_same_owner(backend: Backend) -> None:
    backend.claim("f", "r1", LEASE)
    for owner in ("r2", "r1"):
        with pytest.raises(ClaimHeld):
            backend.claim("f", owner, LEASE)


def test_claim_after_lease_expiry_succeeds(backend: Backend) -> None:
    old = backend.claim("f", "r1", SHORT_LEASE)
    lose_claim(backend, "f")
    new = backend.claim("f", "r2", LEASE)
    assert new.epoch > old.epoch
    info = backend.current_claim("f")
    assert info is not None and info.claim_id == new.claim_id


def test_renew_extends_the_lease(backend: Backend) -> None:
    token = backend.claim("f", "r1", SHORT_LEASE)
    backend.renew(token, LEASE)
    wait_past(time.time() + 2 * SHORT_LEASE)
    with pytest.raises(ClaimHeld):
        backend.claim("f", "r2", LEASE)
    backend.renew(token, LEASE)  # still ours
    backend.save_task(token, make_task("t"))


def test_renew_moves_expiry_forward(backend: Backend) -> None:
    token = backend.claim("f", "r1", 5.0)
    before = backend.current_claim("f")
    backend.renew(token, LEASE)
    after = backend.current_claim("f")
    assert before is not None and after is not None
    if before.expires_at is not None:  # None where the lease is a session
        assert after.expires_at is not None and after.expires_at > before.expires_at + 10


def test_release_frees_the_flow_at_once(backend: Backend) -> None:
    token = backend.claim("f", "r1", LEASE)
    backend.release(token)
    assert backend.current_claim("f") is None
    assert backend.find_runnable(10) == ["f"]
    assert backend.claim("f", "r2", LEASE).epoch > token.epoch


def test_current_claim_contents(backend: Backend) -> None:
    assert backend.current_claim("f") is None
    before = time.time()
    token = backend.claim("f", "r1", LEASE)
    info = backend.current_claim("f")
    assert info is not None
    assert (info.flow_id, info.owner, info.claim_id, info.epoch) == (
        "f", "r1", token.claim_id, token.epoch)
    assert before - 5 <= info.claimed_at <= time.time() + 5  # wall clock, some skew allowed
    if info.expires_at is not None:
        assert info.expires_at > info.claimed_at
    assert info.token == f"{token.claim_id}@{token.epoch}"


def test_current_claim_of_unknown_flow_is_none(backend: Backend) -> None:
    assert backend.current_claim("nope") is None


def test_list_claims_lists_live_claims_only(backend: Backend) -> None:
    for flow_id in ("g", "h"):
        backend.create_flow(make_flow(flow_id))
    token_g = backend.claim("g", "r1", LEASE)
    token_h = backend.claim("h", "r2", LEASE)
    found = {c.flow_id: (c.owner, c.claim_id, c.epoch) for c in backend.list_claims()}
    assert found == {"g": ("r1", token_g.claim_id, token_g.epoch),
                     "h": ("r2", token_h.claim_id, token_h.epoch)}
    backend.release(token_g)
    assert [c.flow_id for c in backend.list_claims()] == ["h"]


def test_expired_claim_is_not_listed(backend: Backend) -> None:
    backend.claim("f", "r1", SHORT_LEASE)
    lose_claim(backend, "f")
    assert backend.list_claims() == []


def test_claims_are_seen_by_other_clients(backend_url: str, backend: Backend) -> None:
    token = backend.claim("f", "r1", LEASE)
    with second_backend(backend_url, backend) as other:
        info = other.current_claim("f")
        assert info is not None and info.claim_id == token.claim_id
        with pytest.raises(ClaimHeld):
            other.claim("f", "r2", LEASE)
        assert other.load_flow("f").id == "f"


def test_a_claim_whose_reply_was_lost_is_granted_once(backend_url: str, backend: Backend) -> None:
    """``claim`` is safe to retry after a lost reply: the driver's retry
    reads back the claim its first attempt made. So the flow is neither
    stranded (the token returned is the live claim, and works) nor granted
    twice (one epoch step, and nobody else gets it)."""
    backend.create_flow(make_flow("twin"))
    one_grant = backend.claim("twin", "r1", LEASE).epoch  # the epoch one claim gives a fresh flow
    with claim_reply_lost(backend):
        token = backend.claim("f", "r1", LEASE)
    assert token.epoch == one_grant, "the retry claimed the flow a second time"
    info = backend.current_claim("f")
    assert info is not None and (info.claim_id, info.epoch) == (token.claim_id, token.epoch)
    with second_backend(backend_url, backend) as other, pytest.raises(ClaimHeld):
        other.claim("f", "r2", LEASE)
    backend.save_task(token, make_task("t"))
    backend.renew(token, LEASE)
    backend.release(token)
    assert backend.find_runnable(10) == ["f"]
    assert backend.claim("f", "r2", LEASE).epoch > token.epoch
