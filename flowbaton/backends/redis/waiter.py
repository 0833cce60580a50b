# mypy: disable-error-code="no-untyped-call"
# (redis-py leaves a few entry points unannotated; types-redis annotates them.)
"""``wait_for_work``: sleep on a pub/sub channel instead of polling.

``create_flow`` and a release of a runnable flow publish the flow id on the
prefix's signal channel; a waiting replica wakes at once. Orphans whose lease
simply ran out publish nothing, so callers still poll ``find_runnable`` every
interval; the idle cost is one blocked socket read per interval.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time

import redis.exceptions as rex
from redis.client import PubSub

from .client import Connection

__all__ = ["Waiter"]

log = logging.getLogger("flowbaton.backends.redis")


class Waiter:
    """One lazily opened subscription; used by one waiting thread at a time."""

    def __init__(self, conn: Connection, channel: str) -> None:
        self._conn = conn
        self._channel = channel
        self._pubsub: PubSub | None = None
        self._lock = threading.Lock()

    def wait(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            try:
                return self._wait_until(deadline)
            except rex.RedisError as err:
                # Redis away: behave like a plain poll interval; the next
                # call subscribes again (find_runnable reports the outage).
                log.debug("wait_for_work on %s: %s", self._conn.where, err)
                self._reset()
        time.sleep(max(0.0, deadline - time.monotonic()))
        return False

    def _wait_until(self, deadline: float) -> bool:
        pubsub = self._subscribed()
        while (left := deadline - time.monotonic()) > 0:
            if pubsub.get_message(ignore_subscribe_messages=True, timeout=left) is not None:
                return True
        return False

    def _subscribed(self) -> PubSub:
        if self._pubsub is None:
            pubsub = self._conn.redis.pubsub(ignore_subscribe_messages=True)
            pubsub.subscribe(self._channel)
            self._pubsub = pubsub
        return self._pubsub

    def _reset(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(rex.RedisError):
                self._pubsub.close()
            self._pubsub = None

    def close(self) -> None:
        with self._lock:
            self._reset()
