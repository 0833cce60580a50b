"""Replica leases: one key per replica (per shard) keeps all of its claims alive.

A claim key has no expiry of its own: it names its holder's *lease*, a key
``Layout.lease(lease id, shard)`` with a ``PX`` expiry, and is live exactly
as long as that key exists. Renewing a replica's claims is then one
``PEXPIRE`` per interval (per shard it holds claims in, in a sharded
layout, where the lease must share its claims' slot) whatever the number
of flows it runs, instead of one script per claim, each of which reads and
rewrites a key.

Rules that keep this as safe as a per-claim expiry:

* a renewal only extends a lease (``PEXPIRE``), never creates one: a lease
  that ran out stays gone, with every claim naming it, and its replica
  learns so from that very renewal (all those claims are lost);
* a new lease gets a new id, so claims of a lapsed lease never come back;
* every script judges a claim by its lease (``live_claim`` and
  ``is_current`` in ``_prelude.lua``): a claim whose lease ran out is
  nobody's, so ``claim.lua`` replaces it and fenced writes refuse it;
* before claiming, the claimer refreshes (or makes) its own lease, so the
  lease outlives the claim's first lease period as the replica measures it.

Claims taken away while their lease lives (an operator's forced claim) are
announced on the ``lost`` channel; ``LostClaims`` hears them, so the holder
stops starting tasks at once. Its fenced writes would fail anyway: this is
about stopping early, not about safety. A broken subscription may have
missed announcements, so the claims are then checked one by one, once.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import uuid
from collections.abc import Iterable

import redis.exceptions as rex
from redis.client import PubSub

from ..errors import CorruptRecord
from ..records import load_json
from ._types import Client
from .client import REDIS_ERRORS, Connection, execute
from .keys import Layout, as_text

__all__ = ["Leases", "LostClaims", "claim_lease"]

log = logging.getLogger("flowbaton.backends.redis")

#: messages read per renewal at most: announcements are rare
_DRAIN = 10_000


def claim_lease(raw: bytes | None) -> tuple[str, str]:
    """(claim id, lease key) of a stored claim; '' for what it lacks (a
    claim from an older version has no lease but an expiry of its own).
    The record is untrusted: anything unreadable names no lease, and the
    claim script treats an unreadable claim as none anyway."""
    try:
        claim = load_json(raw, "claim") if raw is not None else None
    except CorruptRecord:
        return "", ""
    if not isinstance(claim, dict):
        return "", ""
    claim_id, lease = claim.get("claim_id"), claim.get("lease_key")
    return (claim_id if isinstance(claim_id, str) else "", lease if isinstance(lease, str) else "")


class Leases:
    """The lease keys this backend object holds, and which claim names which."""

    def __init__(self, layout: Layout) -> None:
        self._layout = layout
        self._lock = threading.Lock()
        self._held: dict[tuple[str, int, int], str] = {}  # (owner, lease ms, shard) -> lease key
        self._of_claim: dict[str, str] = {}  # claim id -> lease key, for claims made here

    def refresh(self, client: Client, owner: str, lease_ms: int, shards: Iterable[int]) -> dict[int, str]:
        """The lease key new claims of ``owner`` in each shard name: the
        current lease, extended now, or a new one if it ran out (or there
        was none). Two pipelines at most, however many shards."""
        wanted = sorted(set(shards))
        with self._lock:
            held = {shard: self._held.get((owner, lease_ms, shard)) for shard in wanted}
        known = {shard: key for shard, key in held.items() if key is not None}
        dead = self.extend(client, list(known.values()), lease_ms) if known else set()
        found = {shard: key for shard, key in known.items() if key not in dead}
        missing = [shard for shard in wanted if shard not in found]
        if missing:
            lease_id = f"{owner}#{uuid.uuid4().hex[:12]}"
            fresh = {shard: self._layout.lease(lease_id, shard) for shard in missing}
            pipe = client.pipeline(transaction=False)
            for key in fresh.values():
                # NX: a fresh key is never taken, unless a retry after a lost reply made it.
                pipe.set(key, owner, px=lease_ms, nx=True)
            execute(pipe)
            with self._lock:
                self._held.update({(owner, lease_ms, shard): key for shard, key in fresh.items()})
            found.update(fresh)
        return found

    def used_by(self, claim_id: str, key: str) -> None:
        with self._lock:
            self._of_claim[claim_id] = key

    def of(self, claim_id: str) -> str | None:
        with self._lock:
            return self._of_claim.get(claim_id)

    def forget(self, claim_ids: Iterable[str]) -> None:
        with self._lock:
            for claim_id in claim_ids:
                self._of_claim.pop(claim_id, None)

    def extend(self, client: Client, keys: list[str], lease_ms: int) -> set[str]:
        """``PEXPIRE`` each lease, in one pipeline; the ones that had run
        out (never recreated: their claims are gone for good)."""
        pipe = client.pipeline(transaction=False)
        for key in keys:
            pipe.pexpire(key, lease_ms)
        dead = {key for key, alive in zip(keys, execute(pipe), strict=True) if not alive}
        if dead:
            with self._lock:
                self._held = {k: v for k, v in self._held.items() if v not in dead}
        return dead


class LostClaims:
    """A subscription to the claims announced as taken by force.

    Read by the renewing thread only, without blocking: each renewal takes
    what arrived since the last one. ``take`` also says whether the
    subscription was (re)opened since, in which case announcements may
    have been missed and the caller checks its claims one by one."""

    def __init__(self, conn: Connection, channel: str) -> None:
        self._conn = conn
        self._channel = channel
        self._pubsub: PubSub | None = None
        self._lock = threading.Lock()

    def take(self) -> tuple[set[str], bool]:
        """(claim ids announced lost since the last call, True if some may
        have been missed)."""
        with self._lock:
            fresh = self._pubsub is None
            try:
                if self._pubsub is None:
                    self._pubsub = self._conn.redis.pubsub(ignore_subscribe_messages=True)
                    self._pubsub.subscribe(self._channel)
                return self._drain(self._pubsub), fresh
            except (*REDIS_ERRORS, OSError) as err:
                log.info("lost-claim subscription broken, claims will be checked one by one: %s", err)
                self._drop()
                return set(), True

    @staticmethod
    def _drain(pubsub: PubSub) -> set[str]:
        found: set[str] = set()
        for _ in range(_DRAIN):
            message = pubsub.get_message(timeout=0.0)
            if message is None:
                break
            if message.get("type") == "message":
                found.add(as_text(message["data"]))
        return found

    def _drop(self) -> None:
        if self._pubsub is not None:
            with contextlib.suppress(rex.RedisError, OSError):
                self._pubsub.close()
            self._pubsub = None

    def close(self) -> None:
        with self._lock:
            self._drop()
