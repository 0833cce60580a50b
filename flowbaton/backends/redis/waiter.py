# mypy: disable-error-code="no-untyped-call"
# (redis-py leaves a few entry points unannotated; types-redis annotates them.)
"""``wait_for_work``: sleep on a pub/sub channel instead of polling.

``create_flow`` and a release of a runnable flow publish the flow id on the
prefix's signal channel; a waiting replica wakes at once (the driver's
``Capability.NOTIFY``). Orphans whose lease simply ran out publish nothing:
the driver ends each wait when the next lease it saw runs out instead
(``RedisBackend.wait_for_work``).

The subscription is one connection of the driver's own pool, so it has the
URL's TLS, user and password, and behind Sentinel it is opened to the
current primary (a replica receives what its primary publishes too). It is
opened by the first wait and kept: messages published between two waits
are buffered on it, so the next wait returns at once. No thread is started:
the waiting thread reads the socket itself, in slices short enough that
``close`` from another thread takes effect within one slice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis.exceptions as rex
from redis.client import PubSub

from .client import REDIS_ERRORS, Connection

__all__ = ["Waiter"]

log = logging.getLogger("flowbaton.backends.redis")

# Longest blocking read: how long close() may wait for a waiting thread.
_SLICE = 0.25
# Messages already buffered after a wake-up are read and dropped: a burst
# of submits wakes a waiter once, not once per flow.
_DRAIN = 1000


class Waiter:
    """One lazily opened subscription; used by one waiting thread at a time."""

    def __init__(self, conn: Connection, channel: str) -> None:
        self._conn = conn
        self._channel = channel
        self._pubsub: PubSub | None = None
        self._lock = threading.Lock()
        self._closed = threading.Event()

    def wait(self, timeout: float) -> bool:
        """True when a publish arrived (or was waiting), False after
        ``timeout`` seconds, at once after ``close``."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not self._closed.is_set():
                try:
                    return self._wait_until(deadline)
                except REDIS_ERRORS as err:
                    # The subscription broke (restart, failover) or cannot be
                    # made (Redis away): subscribe again, which Sentinel sends
                    # to the current primary, a slice later, until the
                    # deadline (find_runnable reports the outage).
                    log.debug("wait_for_work on %s: %s", self._conn.where, err)
                    self._reset()
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._closed.wait(min(left, _SLICE))
        return False

    def _wait_until(self, deadline: float) -> bool:
        pubsub = self._subscribed()
        while not self._closed.is_set() and (left := deadline - time.monotonic()) > 0:
            if pubsub.get_message(ignore_subscribe_messages=True, timeout=min(left, _SLICE)) is not None:
                self._drain(pubsub)
                return True
        return False

    @staticmethod
    def _drain(pubsub: PubSub) -> None:
        for _ in range(_DRAIN):
            if pubsub.get_message(ignore_subscribe_messages=True, timeout=0) is None:
                return

    def _subscribed(self) -> PubSub:
        if self._pubsub is None:
            pubsub = self._conn.redis.pubsub(ignore_subscribe_messages=True)
            self._pubsub = pubsub  # closed by _reset even if subscribing fails
            pubsub.subscribe(self._channel)
        return self._pubsub

    def _reset(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(rex.RedisError):
                self._pubsub.close()
            self._pubsub = None

    def close(self) -> None:
        """Stop waiting (a waiting thread returns False within one slice)
        and hand the subscription's connection back; later waits return
        False at once instead of subscribing again."""
        self._closed.set()
        with self._lock:
            self._reset()
