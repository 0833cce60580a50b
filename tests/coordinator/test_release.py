"""The one release rule a replica's workers and ``flowbaton.run`` share."""

from __future__ import annotations

import pytest

from flowbaton.backends.errors import BackendUnavailable, ClaimLost
from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.records import ClaimToken, FlowDetail
from flowbaton.coordinator.release import release_claim
from flowbaton.observability.observer import ReplicaObserver


class _Unavailable(MemoryBackend):
    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    def release(self, token: ClaimToken) -> None:
        self.attempts += 1
        raise BackendUnavailable("quorum lost")


def test_a_claim_is_freed_once_and_then_is_nothing_of_ours() -> None:
    store = MemoryBackend()
    store.create_flow(FlowDetail(id="f1", name="f1", factory="m:f"))
    token = store.claim("f1", "r1", 10.0)
    assert release_claim(store, token, patience=0.0) is None and store.current_claim("f1") is None
    assert isinstance(release_claim(store, token, patience=0.0), ClaimLost)


def test_without_patience_an_unavailable_backend_is_tried_once_and_reported() -> None:
    store = _Unavailable()
    observer = ReplicaObserver()
    with pytest.raises(BackendUnavailable):
        release_claim(store, ClaimToken("f1", "r1#x", 1), patience=0.0, observer=observer)
    assert store.attempts == 1
    assert "release: quorum lost" in str(observer.health.readiness().checks["backend_error"])
