"""The indexes: hints beside the truth, repaired where they go stale.

A namespace's indexes are one set in the classic layout (in a slot of their
own) or one set per shard (in the shard's slot, with its flows; keys.py).
Either way no script touches a flow's keys and an index together, so each
index change follows the flow script that justifies it, and queries over
all flows ask every shard in one pipeline and merge by creation order.
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
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from ..states import RUNNABLE_FLOW_STATES
from ._types import Client, Pipe
from .client import Connection, execute
from .keys import FlowKeys, GlobalKeys, IndexKeys, Layout, as_text, from_bytes, to_bytes
from .leases import claim_lease
from .scripts import decode_reply, evalsha, run_script

__all__ = ["Index", "now_ms"]

_T = TypeVar("_T")

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
    """Runnable flows, creation order, leases and replicas of one namespace,
    over the shards of its ``Layout`` (one in the classic layout)."""

    def __init__(self, conn: Connection, layout: Layout) -> None:
        self._conn = conn
        self.layout = layout
        self.globals = GlobalKeys.of(layout.prefix)
        self._missing: dict[bytes, float] = {}
        self._lock = threading.Lock()
        #: the earliest lease end (ms) the last ``find_runnable`` saw ahead,
        #: 0 if none: when the next orphan may appear (``seconds_to_lapse``)
        self.next_lapse_ms = 0

    def _of(self, keys: FlowKeys) -> IndexKeys:
        return self.layout.index(keys.shard)

    def _by_shard(self, flows: Iterable[tuple[FlowKeys, _T]]) -> dict[IndexKeys, list[tuple[FlowKeys, _T]]]:
        grouped: dict[IndexKeys, list[tuple[FlowKeys, _T]]] = {}
        for keys, value in flows:
            grouped.setdefault(self._of(keys), []).append((keys, value))
        return grouped

    # ------------------------------------------------------- after a script

    def _queue_free(self, pipe: Pipe, keys: FlowKeys, mode: str, seq: int | None = None) -> None:
        index = self._of(keys)
        evalsha(pipe, "index_free", [index.runnable, index.created, index.seq],
                [keys.member, mode, "" if seq is None else seq])

    def new_sequence(self, client: Client) -> int | None:
        """A creation sequence number for a new flow, in a sharded layout
        (its counter lives in another slot than the flow's indexes); None in
        the classic one, whose ``index_free`` draws it in the same script."""
        return int(client.incr(self.globals.seq)) if self.layout.sharded else None

    def queue_add(self, pipe: Pipe, keys: FlowKeys, state: str, seq: int | None) -> None:
        """A new flow: listable, and findable if its state is runnable."""
        self._queue_free(pipe, keys, "nx" if state in RUNNABLE_FLOW_STATES else "none", seq)

    def queue_runnable(self, pipe: Pipe, keys: FlowKeys) -> None:
        """Back in a runnable state (an operator retried a held flow)."""
        self._queue_free(pipe, keys, "nx")

    def queue_signal(self, pipe: Pipe, keys: FlowKeys) -> None:
        """Announce new work (``waiter.py``), from inside a pipeline."""
        evalsha(pipe, "publish", [self.globals.signal], [keys.member])

    def claimed(self, client: Client, keys: FlowKeys, state: str, pttl: int) -> None:
        """A claim or renewal succeeded; its script saw ``state``."""
        self.claimed_each(client, [(keys, state, pttl)])

    def claimed_each(self, client: Client, claims: list[tuple[FlowKeys, str, int]]) -> None:
        """``claimed`` for several claims (keys, state seen, PTTL), in one pipeline."""
        now = now_ms()
        self._refresh(client, [(keys, (state, now + max(pttl, 0))) for keys, state, pttl in claims])

    def renewed(self, client: Client, flows: list[FlowKeys], lease_ms: int) -> None:
        """Leases renewed: two commands per shard however many flows. ``XX``
        on the runnable index: a flow whose entry is gone (it finished) is
        not put back by a renewal that raced with its end."""
        if not flows:
            return
        expires = now_ms() + lease_ms
        pipe = client.pipeline(transaction=False)
        for index, entries in self._by_shard((keys, None) for keys in flows).items():
            scores = {keys.member: expires for keys, _ in entries}
            pipe.zadd(index.leases, scores)
            pipe.zadd(index.runnable, scores, xx=True)
        execute(pipe)

    def _refresh(self, client: Client, entries: list[tuple[FlowKeys, tuple[str, int]]]) -> None:
        """Three commands per shard however many flows: their lease entries,
        and their runnable entries (a score = lease end) or their removal."""
        if not entries:
            return
        pipe = client.pipeline(transaction=False)
        for index, flows in self._by_shard(entries).items():
            keep = {keys.member: expires for keys, (state, expires) in flows if state in _KEEP}
            gone = [keys.member for keys, (state, _) in flows if state not in _KEEP]
            pipe.zadd(index.leases, {keys.member: expires for keys, (_, expires) in flows})
            if keep:
                pipe.zadd(index.runnable, keep)
            if gone:
                pipe.zrem(index.runnable, *gone)
        execute(pipe)

    def released(self, client: Client, keys: FlowKeys, state: str) -> None:
        index = self._of(keys)
        pipe = client.pipeline(transaction=False)
        pipe.zrem(index.leases, keys.member)
        if state in _KEEP:
            self._queue_free(pipe, keys, "set")
            self.queue_signal(pipe, keys)
        else:
            pipe.zrem(index.runnable, keys.member)
        execute(pipe)

    def not_runnable(self, client: Client, keys: FlowKeys) -> None:
        client.zrem(self._of(keys).runnable, keys.member)

    def forget(self, client: Client, keys: FlowKeys) -> None:
        index = self._of(keys)
        pipe = client.pipeline(transaction=True)  # one slot: MULTI is fine on a cluster
        for key in (index.runnable, index.created, index.leases):
            pipe.zrem(key, keys.member)
        execute(pipe)

    # ------------------------------------------------------------ discovery

    def find_runnable(self, limit: int) -> list[str]:
        if limit <= 0:
            return []
        return self._conn.run("find runnable flows", lambda c, _: self._find(c, limit))

    def _find(self, client: Client, limit: int) -> list[str]:
        now = now_ms()
        # One query per shard over the hint, in one pipeline, merged by
        # creation order; twice the limit leaves room for entries the probe
        # below turns away.
        replies = self._each_shard(client, lambda pipe, index: evalsha(
            pipe, "candidates", [index.runnable, index.created], [now, 2 * limit, _FIRST_TIME_SCORE]))
        lapses: list[int] = []
        found_in: list[tuple[float, bytes, bytes, IndexKeys]] = []
        for index, raw in zip(self.layout.indexes, replies, strict=True):
            upcoming, *reply = decode_reply("candidates", raw).fields
            if lapse := int(float(upcoming)):
                lapses.append(lapse)
            found_in += [(float(order), member, score, index)
                         for member, score, order in zip(reply[::3], reply[1::3], reply[2::3], strict=True)]
        self.next_lapse_ms = min(lapses, default=0)
        entries = sorted(found_in, key=lambda entry: entry[0])[: 2 * limit]
        if not entries:
            return []
        pipe = client.pipeline(transaction=False)
        for _, member, _, _ in entries:
            keys = self.layout.flow(from_bytes(member))
            evalsha(pipe, "probe", [keys.flow, keys.claim], [])
        found: list[str] = []
        changes: dict[IndexKeys, list[Any]] = {}
        probes = [decode_reply("probe", raw).fields for raw in execute(pipe)]
        for (_, member, score, index), (state, pttl) in zip(entries, probes, strict=True):
            change = self._judge(member, as_text(state), int(pttl), now)
            if change is None:
                found.append(from_bytes(member))
            elif change != "keep":
                changes.setdefault(index, []).extend([member, score, change])
        if changes:
            pipe = client.pipeline(transaction=False)
            for index, triples in changes.items():
                evalsha(pipe, "reindex", [index.runnable], triples)
            execute(pipe)
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

    def _each_shard(self, client: Client, query: Callable[[Pipe, IndexKeys], object]) -> list[Any]:
        """``query`` queues its commands for each shard, all in one pipeline;
        the replies in shard order."""
        pipe = client.pipeline(transaction=False)
        for index in self.layout.indexes:
            query(pipe, index)
        return execute(pipe)

    def created_records(self) -> list[tuple[str, bytes]]:
        """(flow id, record) of every stored flow, oldest first."""
        def op(client: Client, retried: bool) -> list[tuple[str, bytes]]:
            replies = self._each_shard(client, lambda pipe, index: pipe.zrange(index.created, 0, -1, withscores=True))
            members = [member for member, _ in _merged(replies)]
            records: list[tuple[str, bytes]] = []
            for chunk in _chunks(members):
                pipe = client.pipeline(transaction=False)
                for member in chunk:
                    pipe.get(self.layout.flow(from_bytes(member)).flow)
                pairs = list(zip(chunk, execute(pipe), strict=True))
                records += [(from_bytes(m), raw) for m, raw in pairs if raw is not None]
                self._drop_leftovers(client, [m for m, raw in pairs if raw is None])
            return records

        return self._conn.run("list flows", op)

    def count_takeable(self) -> int:
        """Entries of the runnable index takeable now: unclaimed (a creation
        sequence below ``_FIRST_TIME_SCORE``) or a lease ended by now. One ZCOUNT per shard."""
        def op(client: Client, retried: bool) -> int:
            now = now_ms()
            return sum(int(n) for n in self._each_shard(client, lambda p, i: p.zcount(i.runnable, "-inf", now)))

        return self._conn.run("count the backlog", op)

    def takeable(self, limit: int) -> list[str]:
        """Up to ``limit`` members of the runnable index takeable now (no probe)."""
        def op(client: Client, retried: bool) -> list[str]:
            now = now_ms()
            replies = self._each_shard(client, lambda pipe, index: pipe.zrangebyscore(
                index.runnable, "-inf", now, start=0, num=limit, withscores=True))
            return [from_bytes(member) for member, _ in _merged(replies)[:limit]]

        return self._conn.run("list the backlog", op) if limit > 0 else []

    def created_page(self, after: str | None, count: int) -> tuple[list[tuple[str, str, bytes]], bool]:
        """Up to ``count`` (flow id, creation sequence, record) after the
        sequence ``after``, oldest first (index entries whose record is gone
        are left out), and whether more entries follow."""
        low = f"({after}" if after is not None else "-inf"

        def op(client: Client, retried: bool) -> tuple[list[tuple[str, str, bytes]], bool]:
            replies = self._each_shard(client, lambda pipe, index: pipe.zrangebyscore(
                index.created, low, "+inf", start=0, num=count + 1, withscores=True))
            entries = _merged(replies)
            more, entries = len(entries) > count, entries[:count]
            pipe = client.pipeline(transaction=False)
            for member, _ in entries:
                pipe.get(self.layout.flow(from_bytes(member)).flow)
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
            for index in self.layout.indexes:
                for member, _ in client.zscan_iter(index.created, match=to_bytes(pattern), count=1000):
                    found.append(from_bytes(member))
                    if len(found) >= limit:
                        return found
            return found

        return self._conn.run("list flow ids", op)

    def _drop_leftovers(self, client: Client, members: list[bytes]) -> None:
        """Creation entries whose flow stayed missing past the grace period
        (a delete whose index clean-up was lost)."""
        pipe = client.pipeline(transaction=False)
        for member in members:
            if self._missing_long(member):
                pipe.zrem(self.layout.index(self.layout.shard_of(from_bytes(member))).created, member)
        if len(pipe):
            execute(pipe)

    def lease_records(self) -> list[tuple[str, bytes | None, int]]:
        """(flow id, claim value, PTTL) of every flow that may hold a claim."""
        def op(client: Client, retried: bool) -> list[tuple[str, bytes | None, int]]:
            now = now_ms()

            def query(pipe: Pipe, index: IndexKeys) -> None:
                pipe.zremrangebyscore(index.leases, "-inf", now - _LEASE_TRIM_MS)
                pipe.zrangebyscore(index.leases, now - _LEASE_SLACK_MS, "+inf")

            members: list[bytes] = [m for reply in self._each_shard(client, query)[1::2] for m in reply]
            found: list[tuple[str, bytes | None, int]] = []
            for chunk in _chunks(members):
                found += self._claims_of(client, chunk)
            return found

        return self._conn.run("list claims", op)

    def _claims_of(self, client: Client, members: list[bytes]) -> list[tuple[str, bytes | None, int]]:
        pipe = client.pipeline(transaction=False)
        for member in members:
            key = self.layout.flow(from_bytes(member)).claim
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
            pipe.hset(self.globals.replicas, member, raw)
            pipe.zadd(self.globals.replica_expiry, {member: now_ms() + lease_ms})
            execute(pipe)

        self._conn.run("register replica", op)

    def heartbeat_replica(self, member: bytes, lease_ms: int) -> None:
        self._conn.run(
            "heartbeat replica",
            lambda c, _: c.zadd(self.globals.replica_expiry, {member: now_ms() + lease_ms}, xx=True),
        )

    def unregister_replica(self, member: bytes) -> None:
        def op(client: Client, retried: bool) -> None:
            pipe = client.pipeline(transaction=True)
            pipe.hdel(self.globals.replicas, member)
            pipe.zrem(self.globals.replica_expiry, member)
            execute(pipe)

        self._conn.run("unregister replica", op)

    def replica_records(self) -> list[tuple[str, bytes]]:
        """(replica id, record) of every live replica."""
        keys = [self.globals.replicas, self.globals.replica_expiry]
        reply = self._conn.run(
            "list replicas", lambda c, _: run_script(c, "replicas", keys, [now_ms()]).fields
        )
        return [(from_bytes(member), raw) for member, raw in zip(reply[::2], reply[1::2], strict=True)]


def _merged(replies: list[Any]) -> list[tuple[bytes, float]]:
    """Several shards' (member, score) lists as one, by score (creation
    sequences are drawn from one counter, so the order is the namespace's)."""
    if len(replies) == 1:
        return list(replies[0])
    return sorted((entry for reply in replies for entry in reply), key=lambda entry: entry[1])


def _chunks(members: list[bytes]) -> Iterable[list[bytes]]:
    for start in range(0, len(members), _CHUNK):
        yield members[start : start + _CHUNK]
