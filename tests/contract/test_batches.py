"""Contract: renewing a replica's claims and claiming many flows in one call.

``renew_claims`` and ``claim_many`` are what keep a replica's coordination
traffic flat (one call per interval whatever it runs) and let a survivor
take many orphans over at once. They must mean exactly what ``renew`` and
``claim`` mean, flow by flow: the same fencing, the same epochs.
"""

from __future__ import annotations

import time

import pytest

from flowbaton.backends import Backend
from flowbaton.backends.errors import ClaimHeld, ClaimLost

from .faults import lose_claim
from .helpers import LEASE, SHORT_LEASE, make_flow, make_task, wait_past

FLOWS = [f"b{i}" for i in range(5)]


@pytest.fixture(autouse=True)
def _flows(backend: Backend) -> None:
    for flow_id in FLOWS:
        backend.create_flow(make_flow(flow_id))


def test_renew_claims_of_nothing_is_nothing(backend: Backend) -> None:
    assert backend.renew_claims([], LEASE) == []


def test_renew_claims_keeps_every_claim(backend: Backend) -> None:
    tokens = [backend.claim(f, "r1", SHORT_LEASE) for f in FLOWS]
    assert backend.renew_claims(tokens, LEASE) == []
    wait_past(time.time() + 2 * SHORT_LEASE)
    for token in tokens:
        with pytest.raises(ClaimHeld):
            backend.claim(token.flow_id, "r2", LEASE)
        backend.save_task(token, make_task("t"))  # still current


def test_renew_claims_returns_only_those_taken_away(backend: Backend) -> None:
    tokens = [backend.claim(f, "r1", LEASE) for f in FLOWS]
    forced = backend.claim(FLOWS[1], "operator", LEASE, force=True)
    released = tokens[3]
    backend.release(released)
    lost = backend.renew_claims(tokens, LEASE)
    assert sorted(t.flow_id for t in lost) == [FLOWS[1], FLOWS[3]]
    info = backend.current_claim(FLOWS[1])
    assert info is not None and info.claim_id == forced.claim_id  # nothing of the lost one changed
    assert backend.current_claim(FLOWS[3]) is None
    backend.save_task(tokens[0], make_task("t"))


def test_a_claim_that_expired_is_not_renewed(backend: Backend) -> None:
    old = backend.claim(FLOWS[0], "r1", SHORT_LEASE)
    kept = backend.claim(FLOWS[1], "r1", LEASE)
    lose_claim(backend, FLOWS[0])
    if "session" in backend.capabilities:
        # The session went with it: every claim of this backend object is gone.
        assert {t.flow_id for t in backend.renew_claims([old, kept], LEASE)} >= {FLOWS[0]}
    else:
        assert backend.renew_claims([old, kept], LEASE) == [old]
    new = backend.claim(FLOWS[0], "r2", LEASE)
    assert new.epoch > old.epoch
    with pytest.raises(ClaimLost):
        backend.save_task(old, make_task("t"))


def test_claim_many_grants_free_flows_in_order(backend: Backend) -> None:
    tokens = backend.claim_many(FLOWS, "r1", LEASE)
    assert [t.flow_id for t in tokens] == FLOWS
    assert all(t.owner == "r1" and t.epoch >= 1 for t in tokens)
    assert len({t.claim_id for t in tokens}) == len(FLOWS)
    for token in tokens:
        info = backend.current_claim(token.flow_id)
        assert info is not None and (info.claim_id, info.epoch) == (token.claim_id, token.epoch)
        backend.save_task(token, make_task("t"))
    assert backend.find_runnable(10) == []


def test_claim_many_leaves_out_held_and_missing_flows(backend: Backend) -> None:
    held = backend.claim(FLOWS[2], "r2", LEASE)
    tokens = backend.claim_many([FLOWS[0], "no-such-flow", FLOWS[2], FLOWS[4]], "r1", LEASE)
    assert [t.flow_id for t in tokens] == [FLOWS[0], FLOWS[4]]
    info = backend.current_claim(FLOWS[2])
    assert info is not None and info.claim_id == held.claim_id


def test_claim_many_takes_orphans_with_a_newer_epoch(backend: Backend) -> None:
    old = [backend.claim(f, "dead", SHORT_LEASE) for f in FLOWS[:3]]
    for token in old:
        lose_claim(backend, token.flow_id)
    tokens = backend.claim_many(FLOWS[:3], "r1", LEASE)
    assert [t.flow_id for t in tokens] == FLOWS[:3]
    for before, after in zip(old, tokens, strict=True):
        assert after.epoch > before.epoch
    assert backend.renew_claims(tokens, LEASE) == []


def test_claim_many_of_nothing_is_nothing(backend: Backend) -> None:
    assert backend.claim_many([], "r1", LEASE) == []
