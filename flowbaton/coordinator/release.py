"""Handing a claim back: one fenced release, retried while the backend cannot take it.

A release is fenced like every write: it frees the claim only if it is
still ours. ``ClaimLost`` means there was nothing of ours left to free
(the lease ran out, an operator or another replica took it): nothing to do.
``BackendUnavailable`` is retried for ``patience`` seconds: on ZooKeeper a
claim lives as long as its session, which can outlive an outage, so a
release given up at once would strand the flow until the process dies
(docs/chaos-bugs.md #4). What a release that still fails means is the
caller's to say: a replica logs it and lets the lease run out;
``flowbaton.run`` tells its caller.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager

from tenacity import Retrying, retry_if_exception_type, stop_before_delay, wait_exponential

from ..backends.base import Backend
from ..backends.errors import BackendUnavailable, ClaimLost
from ..backends.records import ClaimToken
from ..observability.observer import ReplicaObserver

__all__ = ["release_claim"]


def release_claim(
    backend: Backend, token: ClaimToken, *, patience: float, observer: ReplicaObserver | None = None
) -> ClaimLost | None:
    """Release ``token``'s claim. Returns None once it is freed, or the
    backend's ``ClaimLost`` when there was nothing of ours to free. Raises
    ``BackendUnavailable`` once ``patience`` seconds of retries are spent
    (0: after one attempt), and any other error at once. ``observer`` hears
    of each attempt (health, metrics)."""
    retrying = Retrying(
        retry=retry_if_exception_type(BackendUnavailable),
        wait=wait_exponential(multiplier=0.2, max=2.0),
        stop=stop_before_delay(patience),
        reraise=True,
    )
    try:
        for attempt in retrying:
            with attempt, _observed(observer):
                backend.release(token)
    except ClaimLost as gone:
        return gone
    return None


def _observed(observer: ReplicaObserver | None) -> AbstractContextManager[None]:
    return contextlib.nullcontext() if observer is None else observer.backend_call("release")
