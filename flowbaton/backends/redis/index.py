"""The global indexes: hints in their own slot, repaired where they go stale.

No script can touch a flow's keys and an index together (different slots on
a cluster), so each index change follows the flow script that justifies it.
Rules that keep a flow from ever being lost:

* a flow enters ``runnable`` before its record is written (create);
* it leaves only after a script confirmed a non-runnable state, or when
  ``find_runnable`` probes it and finds it finished or long gone, via a
  compare-and-set (``reindex.lua``) that loses to any concurrent update;
* claims and renewals refresh the entry from what their script saw.

A stale entry therefore costs at most a failed claim or a probe, and a lost
index update is redone by the next renewal of that flow.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable
from typing import Any

from ..states import RUNNABLE_FLOW_STATES
from ._types import Client, Pipe
from .client import Connection, execute
from .keys import FlowKeys, IndexKeys, as_text, from_bytes, to_bytes
from .leases import claim_lease
from .scripts import decode_reply, evalsha, run_script

__all__ = ["Index", "now_ms"]

# A probed flow record missing for this long is a leftover, not a flow being
# created (index_add and SET travel in one pipeline, microseconds apart).
_MISSING_GRACE = 5.0
# list_claims looks this far back for entries whose refresh was lost.
_LEASE_SLACK_MS = 60_000
_LEASE_TRIM_MS = 3_600_000
_CHUNK = 500
# Runnable-index scores below this are creation sequence numbers (unclaimed
# flows), from it up lease expiry times in ms (year 1973 onwards).
_FIRST_TIME_SCORE = 100_000_000_000
# '?': the record is unreadable; keep offering it so a replica can mark it.
_KEEP = RUNNABLE_FLOW_STATES | {"?"}


def now_ms() -> int:
    return int(time.time() * 1000)


class Index:
    """Runnable flows, creation order, leases and replicas of one prefix."""

    def __init__(self, conn: Connection, prefix: str) -> None:
        self._conn = conn
        self._prefix = prefix
        self.keys = IndexKeys.of(prefix)
        self._missing: dict[bytes, float] = {}
        self._lock = threading.Lock()
        #: the earliest lease end (ms) the last ``find_runnable`` saw ahead,
        #: 0 if none: when the next orphan may appear (``seconds_to_lapse``)
        self.next_lapse_ms = 0

    # ------------------------------------------------------- after a script

    def _queue_free(self, pipe: Pipe, keys: FlowKeys, mode: str) -> None:
        index = [self.keys.runnable, self.keys.created, self.keys.seq]
        evalsha(pipe, "index_free", index, [keys.member, mode])

    def queue_add(self, pipe: Pipe, keys: FlowKeys, state: str) -> None:
        """A new flow: listable, and findable if its state is runnable."""
        self._queue_free(pipe, keys, "nx" if state in RUNNABLE_FLOW_STATES else "none")

    def queue_runnable(self, pipe: Pipe, keys: FlowKeys) -> None:
        """Back in a runnable state (an operator retried a held flow)."""
        self._queue_free(pipe, keys, "nx")

    def claimed(self, client: Client, keys: FlowKeys, state: str, pttl: int) -> None:
        """A claim or renewal succeeded; its script saw ``state``."""
        self.claimed_each(client, [(keys, state, pttl)])

    def claimed_each(self, client: Client, claims: list[tuple[FlowKeys, str, int]]) -> None:
        """``claimed`` for several claims (keys, state seen, PTTL), in one pipeline."""
        now = now_ms()
        self._refresh(client, [(keys, state, now + max(pttl, 0)) for keys, state, pttl in claims])

    def renewed(self, client: Client, flows: list[FlowKeys], lease_ms: int) -> None:
        """Leases renewed: two commands however many flows. ``XX`` on the
        runnable index: a flow whose entry is gone (it finished) is not
        put back by a renewal that raced with its end."""
        if not flows:
            return
        expires = now_ms() + lease_ms
        scores = {keys.member: expires for keys in flows}
        pipe = client.pipeline(transaction=False)
        pipe.zadd(self.keys.leases, scores)
        pipe.zadd(self.keys.runnable, scores, xx=True)
        execute(pipe)

    def _refresh(self, client: Client, entries: list[tuple[FlowKeys, str, int]]) -> None:
        """Three commands however many flows: their lease entries, and their
        runnable entries (a score = lease end) or their removal."""
        if not entries:
            return
        keep = {keys.member: expires for keys, state, expires in entries if state in _KEEP}
        gone = [keys.member for keys, state, _ in entries if state not in _KEEP]
        pipe = client.pipeline(transaction=False)
        pipe.zadd(self.keys.leases, {keys.member: expires for keys, _, expires in entries})
        if keep:
            pipe.zadd(self.keys.runnable, keep)
        if gone:
            pipe.zrem(self.keys.runnable, *gone)
        execute(pipe)

    def released(self, client: Client, keys: FlowKeys, state: str) -> None:
        pipe = client.pipeline(transaction=False)
        pipe.zrem(self.keys.leases, keys.member)
        if state in _KEEP:
            self._queue_free(pipe, keys, "set")
            pipe.publish(self.keys.signal, keys.member)
        else:
            pipe.zrem(self.keys.runnable, keys.member)
        execute(pipe)

    def not_runnable(self, client: Client, keys: FlowKeys) -> None:
        client.zrem(self.keys.runnable, keys.member)

    def forget(self, client: Client, keys: FlowKeys) -> None:
        pipe = client.pipeline(transaction=True)  # one slot: MULTI is fine on a cluster
        for key in (self.keys.runnable, self.keys.created, self.keys.leases):
            pipe.zrem(key, keys.member)
        execute(pipe)

    # ------------------------------------------------------------ discovery

    def find_runnable(self, limit: int) -> list[str]:
        if limit <= 0:
            return []
        return self._conn.run("find runnable flows", lambda c, _: self._find(c, limit))

    def _find(self, client: Client, limit: int) -> list[str]:
        now = now_ms()
        # One query over the hint; twice the limit leaves room for entries
        # the probe below turns away.
        upcoming, *reply = run_script(client, "candidates", [self.keys.runnable, self.keys.created],
                                      [now, 2 * limit, _FIRST_TIME_SCORE]).fields
        self.next_lapse_ms = int(float(upcoming))
        entries = list(zip(reply[::2], reply[1::2], strict=True))
        if not entries:
            return []
        pipe = client.pipeline(transaction=False)
        for member, _ in entries:
            keys = FlowKeys.of(self._prefix, from_bytes(member))
            evalsha(pipe, "probe", [keys.flow, keys.claim], [])
        found: list[str] = []
        changes: list[Any] = []
        probes = [decode_reply("probe", raw).fields for raw in execute(pipe)]
        for (member, score), (state, pttl) in zip(entries, probes, strict=True):
            change = self._judge(member, as_text(state), int(pttl), now)
            if change is None:
                found.append(from_bytes(member))
            elif change != "keep":
                changes += [member, score, change]
        if changes:
            run_script(client, "reindex", [self.keys.runnable], changes)
        return found[:limit]

    def lives(self, client: Client, claims: list[tuple[bytes | None, int]]) -> list[int]:
        """The life left (ms, as PTTL answers: -2 gone) of each claim given
        as (stored value, its key's PTTL): its lease key's when it names
        one (read in one pipeline), as the scripts judge it (``lease_runs``)."""
        named = [claim_lease(raw)[1] for raw, _ in claims]
        unique = sorted({lease for lease in named if lease})
        leases: dict[str, int] = {}
        if unique:
            pipe = client.pipeline(transaction=False)
            for lease in unique:
                pipe.pttl(lease)
            leases = {lease: int(pttl) for lease, pttl in zip(unique, execute(pipe), strict=True)}
        return [leases[lease] if lease else pttl for lease, (_, pttl) in zip(named, claims, strict=True)]

    def seconds_to_lapse(self) -> float | None:
        """Seconds until the next lease the last poll saw ends; None if it
        saw none (claims made since are found by the next poll)."""
        if not self.next_lapse_ms:
            return None
        return max(0.0, (self.next_lapse_ms - now_ms()) / 1000)

    def _judge(self, member: bytes, state: str, pttl: int, now: int) -> str | None:
        """None: offer the flow. Else the new score ('' = drop, 'keep' = leave)."""
        if state == "":
            return "" if self._missing_long(member) else "keep"
        self._forget_missing(member)
        if state not in _KEEP:
            return ""  # finished or held; the terminal write's own removal was lost
        if pttl > 0:
            return str(now + pttl)  # live claim whose renewal did not reach the hint
        if pttl == -1:
            return "keep"  # a claim without expiry: someone else's key, not ours to fix
        return None

    def _missing_long(self, member: bytes) -> bool:
        with self._lock:
            if len(self._missing) > 10_000:
                self._missing.clear()
            first = self._missing.setdefault(member, time.monotonic())
        return time.monotonic() - first > _MISSING_GRACE

    def _forget_missing(self, member: bytes) -> None:
        with self._lock:
            self._missing.pop(member, None)

    # ----------------------------------------------------------- for listing

    def created_records(self) -> list[tuple[str, bytes]]:
        """(flow id, record) of every stored flow, oldest first."""
        def op(client: Client, retried: bool) -> list[tuple[str, bytes]]:
            reply: Any = client.zrange(self.keys.created, 0, -1)
            members: list[bytes] = reply
            records: list[tuple[str, bytes]] = []
            for chunk in _chunks(members):
                pipe = client.pipeline(transaction=False)
                for member in chunk:
                    pipe.get(FlowKeys.of(self._prefix, from_bytes(member)).flow)
                pairs = list(zip(chunk, execute(pipe), strict=True))
                records += [(from_bytes(m), raw) for m, raw in pairs if raw is not None]
                self._drop_leftovers(client, [m for m, raw in pairs if raw is None])
            return records

        return self._conn.run("list flows", op)

    def count_takeable(self) -> int:
        """Entries of the runnable index takeable now: unclaimed (a creation
        sequence below ``_FIRST_TIME_SCORE``) or a lease ended by now. One ZCOUNT."""
        return int(self._conn.run("count the backlog",
                                  lambda client, _: client.zcount(self.keys.runnable, "-inf", now_ms())))

    def takeable(self, limit: int) -> list[str]:
        """Up to ``limit`` members of the runnable index takeable now (no probe)."""
        def op(client: Client, retried: bool) -> list[str]:
            members: Any = client.zrangebyscore(self.keys.runnable, "-inf", now_ms(), start=0, num=limit)
            return [from_bytes(member) for member in members]

        return self._conn.run("list the backlog", op) if limit > 0 else []

    def created_page(self, after: str | None, count: int) -> tuple[list[tuple[str, str, bytes]], bool]:
        """Up to ``count`` (flow id, creation sequence, record) after the
        sequence ``after``, oldest first (index entries whose record is gone
        are left out), and whether more entries follow."""
        low = f"({after}" if after is not None else "-inf"

        def op(client: Client, retried: bool) -> tuple[list[tuple[str, str, bytes]], bool]:
            reply: Any = client.zrangebyscore(self.keys.created, low, "+inf", start=0, num=count + 1,
                                              withscores=True)
            entries: list[tuple[bytes, float]] = reply
            more, entries = len(entries) > count, entries[:count]
            pipe = client.pipeline(transaction=False)
            for member, _ in entries:
                pipe.get(FlowKeys.of(self._prefix, from_bytes(member)).flow)
            records = execute(pipe) if entries else []
            return [(from_bytes(m), f"{score:.0f}", raw) for (m, score), raw in zip(entries, records, strict=True)
                    if raw is not None], more

        return self._conn.run("list a page of flows", op)

    def created_ids(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` flow ids of the creation index that start with
        ``prefix``: the server matches them (ZSCAN), no record is read."""
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", prefix) + "*"

        def op(client: Client, retried: bool) -> list[str]:
            found: list[str] = []
            for member, _ in client.zscan_iter(self.keys.created, match=to_bytes(pattern), count=1000):
                found.append(from_bytes(member))
                if len(found) >= limit:
                    break
            return found

        return self._conn.run("list flow ids", op)

    def _drop_leftovers(self, client: Client, members: list[bytes]) -> None:
        """Creation entries whose flow stayed missing past the grace period
        (a delete whose index clean-up was lost)."""
        pipe = client.pipeline(transaction=False)
        for member in members:
            if self._missing_long(member):
                pipe.zrem(self.keys.created, member)
        if len(pipe):
            execute(pipe)

    def lease_records(self) -> list[tuple[str, bytes | None, int]]:
        """(flow id, claim value, PTTL) of every flow that may hold a claim."""
        def op(client: Client, retried: bool) -> list[tuple[str, bytes | None, int]]:
            now = now_ms()
            pipe = client.pipeline(transaction=False)
            pipe.zremrangebyscore(self.keys.leases, "-inf", now - _LEASE_TRIM_MS)
            pipe.zrangebyscore(self.keys.leases, now - _LEASE_SLACK_MS, "+inf")
            members: list[bytes] = execute(pipe)[1]
            found: list[tuple[str, bytes | None, int]] = []
            for chunk in _chunks(members):
                found += self._claims_of(client, chunk)
            return found

        return self._conn.run("list claims", op)

    def _claims_of(self, client: Client, members: list[bytes]) -> list[tuple[str, bytes | None, int]]:
        pipe = client.pipeline(transaction=False)
        for member in members:
            key = FlowKeys.of(self._prefix, from_bytes(member)).claim
            pipe.get(key)
            pipe.pttl(key)
        replies = execute(pipe)
        claims = [(replies[2 * i], int(replies[2 * i + 1])) for i in range(len(members))]
        lives = self.lives(client, claims)
        return [(from_bytes(m), raw, life) for m, (raw, _), life in zip(members, claims, lives, strict=True)]

    # -------------------------------------------------------------- replicas

    def register_replica(self, member: bytes, raw: str, lease_ms: int) -> None:
        def op(client: Client, retried: bool) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.hset(self.keys.replicas, member, raw)
            pipe.zadd(self.keys.replica_expiry, {member: now_ms() + lease_ms})
            execute(pipe)

        self._conn.run("register replica", op)

    def heartbeat_replica(self, member: bytes, lease_ms: int) -> None:
        self._conn.run(
            "heartbeat replica",
            lambda c, _: c.zadd(self.keys.replica_expiry, {member: now_ms() + lease_ms}, xx=True),
        )

    def unregister_replica(self, member: bytes) -> None:
        def op(client: Client, retried: bool) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.hdel(self.keys.replicas, member)
            pipe.zrem(self.keys.replica_expiry, member)
            execute(pipe)

        self._conn.run("unregister replica", op)

    def replica_records(self) -> list[tuple[str, bytes]]:
        """(replica id, record) of every live replica."""
        keys = [self.keys.replicas, self.keys.replica_expiry]
        reply = self._conn.run(
            "list replicas", lambda c, _: run_script(c, "replicas", keys, [now_ms()]).fields
        )
        return [(from_bytes(member), raw) for member, raw in zip(reply[::2], reply[1::2], strict=True)]


def _chunks(members: list[bytes]) -> Iterable[list[bytes]]:
    for start in range(0, len(members), _CHUNK):
        yield members[start : start + _CHUNK]
