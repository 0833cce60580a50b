"""``redis://``, ``rediss://``, ``redis+sentinel://``, ``redis+cluster://``: flows and fenced claims in Redis.

Truth lives in the per-flow keys (see keys.py) and changes only inside Lua
scripts that compare the whole claim token. The global indexes live in
another slot and are hints kept in step right after each script; how a
stale hint is repaired is in index.py. Lease time is the server's (``PX``):
local clocks only feed the hints and the ``expires_at`` shown to operators.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
import uuid
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..base import MAX_HANDOVERS, SETTINGS_EVENT, Backend, Capability
from ..errors import BackendUnavailable, ClaimHeld, ClaimLost, CorruptRecord, FlowExists, FlowNotFound
from ..limits import batches, check_new_flow, checked_limit, fitting, sized
from ..mailbox import check_room, read_mailbox
from ..mailbox import mailbox_key as mailbox_field
from ..paging import Entry, check_cursor, fill_page
from ..records import ClaimInfo, ClaimToken, Decline, FlowDetail, Handover, ReplicaInfo, StoredRun, TaskDetail
from ..redact import redact_url
from ..states import RUNNABLE_FLOW_STATES
from ._types import Client
from .checks import cluster_warnings, server_warnings
from .client import REDIS_ERRORS, Connection, execute
from .index import Index
from .keys import FlowKeys, GlobalKeys, Layout, as_text, from_bytes, mailbox_key, to_bytes
from .layout import resolve_layout
from .leases import Leases, LostClaims
from .scripts import Arg, Status, decode_reply, evalsha, run_script
from .url import Target, parse_url
from .waiter import Waiter

__all__ = ["RedisBackend"]

log = logging.getLogger("flowbaton.backends.redis")

_STRIPES = 32
# Claims per pipeline of claim scripts: each script runs alone on the
# server, and one batch's replies are held in memory at once.
_BATCH = 500
# After a lease's end, a beat for the server to expire the key (its clock,
# not ours) before the poll that should find the orphan.
_LAPSE_SLACK = 0.05


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisBackend(Backend):
    """Flows, tasks and claims in one Redis (standalone or behind Sentinel)."""

    schemes = ("redis", "rediss", "redis+sentinel", "redis+cluster", "rediss+cluster")
    # WATCH: submits and releases publish on the signal channel (waiter.py),
    # and a wait ends when the next lease the last poll saw runs out
    # (``wait_for_work``): a lease running out publishes nothing itself.
    capabilities = frozenset({Capability.SHARED, Capability.NOTIFY, Capability.WATCH})

    def __init__(self, url: str, target: Target) -> None:
        self.url = redact_url(url)  # shown in messages and by `check`: no password
        self._conn = Connection(target)
        self._failover = target.service is not None  # behind Sentinel: a replica may be promoted
        self._prefix: str = target.options["prefix"]
        self.max_record_bytes = checked_limit(target.options["max_record_bytes"])
        self._globals = GlobalKeys.of(self._prefix)
        self._shards: int = target.options["shards"]
        # The layout (and what depends on it) is read from the store once,
        # at first contact or else at first use: ``_resolved``.
        self._parts: tuple[Layout, Index, Leases] | None = None
        self._parts_lock = threading.Lock()
        self._waiter = Waiter(self._conn, self._globals.signal)
        self._lost_claims = LostClaims(self._conn, self._globals.lost)
        # Per-flow ordering inside this process: a renewal's index update
        # must not land after a release's (it would hide a free flow).
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._warnings: list[str] | None = None
        try:
            self._first_contact()
        except BaseException:  # a refused layout: nothing is left open
            self._conn.close()
            raise

    @classmethod
    def from_url(cls, url: str, **options: object) -> RedisBackend:
        return cls(url, parse_url(url, dict(options)))

    # ---------------------------------------------------------------- helpers

    def _resolved(self) -> tuple[Layout, Index, Leases]:
        parts = self._parts
        if parts is None:
            with self._parts_lock:
                if self._parts is None:
                    layout = self._conn.run("read the namespace's layout", lambda client, _: resolve_layout(
                        client, self._prefix, self._shards, self._conn.target.cluster, self._conn.where))
                    self._parts = (layout, Index(self._conn, layout), Leases(layout))
                parts = self._parts
        return parts

    @property
    def layout(self) -> Layout:
        """Where this namespace keeps its keys (keys.py), as stored."""
        return self._resolved()[0]

    @property
    def _index(self) -> Index:
        return self._resolved()[1]

    @property
    def _leases(self) -> Leases:
        return self._resolved()[2]

    def _keys(self, flow_id: str) -> FlowKeys:
        return self.layout.flow(flow_id)

    def _where(self, key: str, field: str | None = None) -> str:
        where = f"{self._conn.where} key {key!r}"
        return f"{where} field {field!r}" if field is not None else where

    def _stripe(self, flow_id: str) -> threading.Lock:
        return self._stripes[hash(flow_id) % _STRIPES]

    def _lost(self, token: ClaimToken) -> ClaimLost:
        return ClaimLost(
            f"claim {token.claim_id}@{token.epoch} on flow {token.flow_id!r} "
            f"is not current in {self._conn.where}"
        )

    def _first_contact(self) -> None:
        """Load scripts and read the server settings once, without retrying:
        an unreachable server must not make opening hang; ``warnings()``
        tries again later."""
        if self._conn.try_load_scripts():
            try:
                self._warnings = self._check_server(self._conn.redis, False)
                self._resolved()  # a layout the URL contradicts is refused at open
            except (*REDIS_ERRORS, BackendUnavailable) as err:  # best effort, redone later
                log.debug("server check on %s deferred: %s", self._conn.where, err)

    def _check_server(self, client: Client, retried: bool) -> list[str]:
        if self._conn.target.cluster:
            found = cluster_warnings(client, self._conn.where)
        else:
            found = server_warnings(client, self._conn.where, failover=self._failover)
        for warning in found:
            log.warning("%s", warning, extra={"event": SETTINGS_EVENT})
        return found

    # ------------------------------------------------------------------ flows

    def create_flow(self, flow: FlowDetail) -> None:
        keys, raw = self._keys(flow.id), check_new_flow(flow, self.max_record_bytes).decode()

        def op(client: Client, retried: bool) -> None:
            seq = self._index.new_sequence(client)
            pipe = client.pipeline(transaction=False)
            # Index first: a crash between the two leaves a stale hint (which
            # find_runnable drops), never a stored flow nobody can find.
            self._index.queue_add(pipe, keys, flow.state, seq)
            pipe.set(keys.flow, raw, nx=True)
            self._index.queue_signal(pipe, keys)
            created = execute(pipe)[1]
            # A retry after a lost reply finds our own record: that is success.
            if not created and not (retried and client.get(keys.flow) == raw.encode()):
                raise FlowExists(f"flow {flow.id!r} already exists in {self._conn.where}")

        self._conn.run(f"create flow {flow.id!r}", op)

    def load_flow(self, flow_id: str) -> FlowDetail:
        keys = self._keys(flow_id)
        raw = self._conn.run(f"load flow {flow_id!r}", lambda c, _: c.get(keys.flow))
        if raw is None:
            raise FlowNotFound(f"no flow {flow_id!r} in {self._conn.where}")
        return FlowDetail.from_json(raw, self._where(keys.flow))

    def load_tasks(self, flow_id: str) -> dict[str, TaskDetail]:
        keys = self._keys(flow_id)
        exists, fields = self._read_hash(f"load tasks of {flow_id!r}", keys.flow, keys.tasks)
        if not exists:
            raise FlowNotFound(f"no flow {flow_id!r} in {self._conn.where}")
        return self._tasks_of(keys, fields)

    def load_runs(self, flow_ids: Sequence[str]) -> dict[str, StoredRun]:
        # One pipelined round trip for every flow (a GET and an HGETALL
        # each), instead of two per flow from each worker's thread.
        every = [self._keys(flow_id) for flow_id in flow_ids]

        def op(client: Client, retried: bool) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            for keys in every:
                pipe.get(keys.flow)
                pipe.hgetall(keys.tasks)
            return execute(pipe)

        replies = self._conn.run(f"load {len(flow_ids)} claimed flows", op)
        found: dict[str, StoredRun] = {}
        for i, (flow_id, keys) in enumerate(zip(flow_ids, every, strict=True)):
            raw, fields = replies[2 * i], replies[2 * i + 1]
            if raw is None:
                continue  # gone: the caller's own read says so
            with contextlib.suppress(CorruptRecord):  # likewise: its own read raises it where it is handled
                flow = FlowDetail.from_json(raw, self._where(keys.flow))
                found[flow_id] = StoredRun(flow, self._tasks_of(keys, fields))
        return found

    def _tasks_of(self, keys: FlowKeys, fields: dict[bytes, bytes]) -> dict[str, TaskDetail]:
        tasks = {}
        for field, raw in fields.items():
            task_id = from_bytes(field)
            tasks[task_id] = TaskDetail.from_json(raw, self._where(keys.tasks, task_id), key=task_id)
        return tasks

    def _read_hash(self, what: str, flow_key: str, hash_key: str) -> tuple[bool, dict[bytes, bytes]]:
        def op(client: Client, retried: bool) -> tuple[bool, dict[bytes, bytes]]:
            pipe = client.pipeline(transaction=False)
            pipe.exists(flow_key)
            pipe.hgetall(hash_key)
            exists, fields = execute(pipe)
            return bool(exists), fields

        return self._conn.run(what, op)

    def list_flows(self, states: Collection[str] | None = None) -> list[FlowDetail]:
        flows = []
        for flow_id, raw in self._index.created_records():
            try:
                flow = FlowDetail.from_json(raw, self._where(self._keys(flow_id).flow))
            except CorruptRecord as err:
                log.warning("list_flows skips a corrupt flow: %s", err)
                continue
            if states is None or flow.state in states:
                flows.append(flow)
        return flows

    def page_flows(self, states: Collection[str] | None, after: str | None, limit: int
                   ) -> tuple[list[FlowDetail], str | None]:
        # The cursor is the creation sequence of the last flow shown: pages
        # of the creation index, then their records, a batch per request.
        def fetch(cursor: str | None, count: int) -> tuple[list[Entry], bool]:
            batch, more = self._index.created_page(cursor, count)
            return [(seq, raw, self._where(self._keys(flow_id).flow)) for flow_id, seq, raw in batch], more

        return fill_page(fetch, states, check_cursor(after), limit)

    def flow_ids(self, prefix: str, limit: int) -> list[str]:
        return self._index.created_ids(prefix, limit)

    def delete_flow(self, token: ClaimToken) -> None:
        keys = self._keys(token.flow_id)
        args: list[Arg] = [token.claim_id, token.epoch]
        flow_keys = [keys.claim, keys.flow, keys.tasks, keys.epoch, keys.declines]

        def op(client: Client, retried: bool) -> None:
            reply = run_script(client, "delete_flow", flow_keys, args)
            # Not current and already gone after a lost reply: our delete did it.
            if not reply.ok and not (retried and not reply.fields[0]):
                raise self._lost(token)
            self._index.forget(client, keys)

        with self._stripe(token.flow_id):
            self._conn.run(f"delete flow {token.flow_id!r}", op)

    # ----------------------------------------------------------------- claims

    def claim(self, flow_id: str, owner: str, lease: float, *, force: bool = False) -> ClaimToken:
        keys = self._keys(flow_id)
        # The claim id is fixed before the first attempt: a retry after a lost
        # reply is recognised by the script as ours, never claimed twice.
        claim = _Asked(flow_id, keys, f"{owner}#{uuid.uuid4().hex[:12]}")
        lease_ms, claimed_at = _ms(lease), repr(time.time())

        def op(client: Client, retried: bool) -> ClaimToken:
            lease_key = self._leases.refresh(client, owner, lease_ms, [keys.shard])[keys.shard]
            reply = run_script(client, "claim", [keys.flow, keys.claim, keys.epoch],
                               claim.args(lease_ms, force, claimed_at, lease_key, self._globals.lost))
            if reply.status is Status.NO_FLOW:
                raise FlowNotFound(f"no flow {flow_id!r} in {self._conn.where}")
            if reply.status is Status.HELD:
                raise ClaimHeld(f"flow {flow_id!r} is claimed by {_holder(reply.fields[0])}")
            token, state = self._granted(claim, reply.fields)
            self._index.claimed(client, keys, state, lease_ms)
            return token

        with self._stripe(flow_id):
            return self._conn.run(f"claim flow {flow_id!r}", op)

    def claim_many(self, flow_ids: Sequence[str], owner: str, lease: float) -> list[ClaimToken]:
        """As ``claim`` for each flow, ``_BATCH`` to one pipeline of claim
        scripts (a retried pipeline is answered from the claims it made, as
        a retried ``claim`` is)."""
        granted: list[ClaimToken] = []
        for start in range(0, len(flow_ids), _BATCH):
            granted += self._claim_batch(flow_ids[start : start + _BATCH], owner, _ms(lease))
        return granted

    def _claim_batch(self, flow_ids: Sequence[str], owner: str, lease_ms: int) -> list[ClaimToken]:
        asked = [_Asked(f, self._keys(f), f"{owner}#{uuid.uuid4().hex[:12]}") for f in flow_ids]
        claimed_at = repr(time.time())

        def op(client: Client, retried: bool) -> list[ClaimToken]:
            leases = self._leases.refresh(client, owner, lease_ms, {claim.keys.shard for claim in asked})
            pipe = client.pipeline(transaction=False)
            for claim in asked:
                evalsha(pipe, "claim", [claim.keys.flow, claim.keys.claim, claim.keys.epoch],
                        claim.args(lease_ms, False, claimed_at, leases[claim.keys.shard], self._globals.lost))
            granted, fresh = [], []
            for claim, raw in zip(asked, execute(pipe), strict=True):
                reply = decode_reply("claim", raw)
                if reply.ok:
                    token, state = self._granted(claim, reply.fields)
                    granted.append(token)
                    fresh.append((claim.keys, state, lease_ms))
            self._index.claimed_each(client, fresh)
            return granted

        with self._stripes_of(flow_ids):
            return self._conn.run(f"claim {len(flow_ids)} flow(s)", op)

    def _granted(self, claim: _Asked, fields: tuple[Any, ...]) -> tuple[ClaimToken, str]:
        """The token of a claim script's OK, noting the lease it names."""
        epoch, _, state, lease_key = fields
        if isinstance(lease_key, bytes) and lease_key:
            self._leases.used_by(claim.claim_id, as_text(lease_key))
        return ClaimToken(claim.flow_id, claim.claim_id, int(epoch)), as_text(state)

    def renew(self, token: ClaimToken, lease: float) -> None:
        if self._check_each([token], _ms(lease)):
            raise self._lost(token)

    def renew_claims(self, tokens: Sequence[ClaimToken], lease: float) -> list[ClaimToken]:
        """One ``PEXPIRE`` per lease (a replica has one) and one index
        pipeline, whatever the number of claims; claims announced as taken
        by force are lost. Claims this object did not make, and all of them
        when announcements may have been missed, are checked one by one."""
        lease_ms = _ms(lease)
        announced, missed = self._lost_claims.take()
        lost: list[ClaimToken] = []
        each: list[ClaimToken] = []
        shared: list[ClaimToken] = []
        leased: dict[ClaimToken, str | None] = {}
        for token in tokens:
            leased[token] = self._leases.of(token.claim_id)
            if token.claim_id in announced:
                lost.append(token)
            elif missed or leased[token] is None:
                each.append(token)
            else:
                shared.append(token)
        if shared:
            lost += self._renew_leases(shared, leased, lease_ms)
        if each:
            lost += self._check_each(each, lease_ms)
        self._leases.forget(token.claim_id for token in lost)
        return lost

    def _renew_leases(self, tokens: list[ClaimToken], leased: dict[ClaimToken, str | None],
                      lease_ms: int) -> list[ClaimToken]:
        lease_keys = sorted({lease for lease in leased.values() if lease})

        def op(client: Client, retried: bool) -> list[ClaimToken]:
            dead = self._leases.extend(client, lease_keys, lease_ms)
            kept = [self._keys(t.flow_id) for t in tokens if leased[t] not in dead]
            self._index.renewed(client, kept, lease_ms)
            return [token for token in tokens if leased[token] in dead]

        with self._stripes_of(token.flow_id for token in tokens):
            return self._conn.run(f"renew {len(tokens)} claim(s)", op)

    def _check_each(self, tokens: Sequence[ClaimToken], lease_ms: int) -> list[ClaimToken]:
        """Renew claims one by one (``renew.lua``: each still this token,
        its lease running, then extended), in one pipeline; those not current."""
        keys = [self._keys(token.flow_id) for token in tokens]

        def op(client: Client, retried: bool) -> list[ClaimToken]:
            pipe = client.pipeline(transaction=False)
            for token, flow in zip(tokens, keys, strict=True):
                evalsha(pipe, "renew", [flow.claim, flow.flow], [token.claim_id, token.epoch, lease_ms])
            replies = [decode_reply("renew", raw) for raw in execute(pipe)]
            renewed, lost = [], []
            for token, flow, reply in zip(tokens, keys, replies, strict=True):
                if not reply.ok:
                    lost.append(token)
                    continue
                state, lease_key = (as_text(field) for field in reply.fields)
                if lease_key:
                    self._leases.used_by(token.claim_id, lease_key)
                renewed.append((flow, state, lease_ms))
            self._index.claimed_each(client, renewed)
            return lost

        what = f"renew claim on {tokens[0].flow_id!r}" if len(tokens) == 1 else f"check {len(tokens)} claims"
        with self._stripes_of(token.flow_id for token in tokens):
            return self._conn.run(what, op)

    def _stripes_of(self, flow_ids: Iterable[str]) -> contextlib.ExitStack:
        """The stripe locks of several flows, taken in one order (no
        deadlock with another batch), held together."""
        stack = contextlib.ExitStack()
        for number in sorted({hash(flow_id) % _STRIPES for flow_id in flow_ids}):
            stack.enter_context(self._stripes[number])
        return stack

    def release(self, token: ClaimToken) -> None:
        keys = self._keys(token.flow_id)

        def op(client: Client, retried: bool) -> None:
            reply = run_script(client, "release", [keys.claim, keys.flow], [token.claim_id, token.epoch])
            # After a lost reply the claim key is gone because we deleted it.
            if not reply.ok and not (retried and not reply.fields[0]):
                raise self._lost(token)
            self._index.released(client, keys, as_text(reply.fields[-1]))

        with self._stripe(token.flow_id):
            self._conn.run(f"release claim on {token.flow_id!r}", op)
        self._leases.forget([token.claim_id])

    def current_claim(self, flow_id: str) -> ClaimInfo | None:
        keys = self._keys(flow_id)

        def op(client: Client, retried: bool) -> tuple[bytes | None, int]:
            pipe = client.pipeline(transaction=False)
            pipe.get(keys.claim)
            pipe.pttl(keys.claim)
            raw, pttl = execute(pipe)
            return raw, self._index.lives(client, [(raw, int(pttl))])[0]

        raw, pttl = self._conn.run(f"read claim of {flow_id!r}", op)
        return self.claim_info(flow_id, raw, pttl)

    def claim_info(self, flow_id: str, raw: bytes | None, pttl: int) -> ClaimInfo | None:
        """Decode a claim key's value; None when there is no live claim
        (``pttl``: the claim's life left, its lease's: ``Index.lives``)."""
        if raw is None or pttl == -2:
            return None
        where = self._where(self._keys(flow_id).claim)
        expires = time.time() + pttl / 1000 if pttl >= 0 else None
        return ClaimInfo.from_json(raw, where, flow_id=flow_id, expires_at=expires)

    def list_claims(self) -> list[ClaimInfo]:
        found = []
        for flow_id, raw, pttl in self._index.lease_records():
            try:
                info = self.claim_info(flow_id, raw, pttl)
            except CorruptRecord as err:
                log.warning("list_claims skips a corrupt claim: %s", err)
                continue
            if info is not None:
                found.append(info)
        return found

    # ---------------------------------------------------------- fenced writes

    def save_tasks(self, token: ClaimToken, tasks: Sequence[TaskDetail]) -> None:
        """One fenced round trip for one or more task details; several, in
        order, when together they would pass ``max_record_bytes`` (a script
        call holds all its arguments in the server's memory at once)."""
        pairs = self._task_pairs(token, tasks)
        for part in batches(pairs, [len(k) + len(v) for k, v in pairs], self.max_record_bytes):
            what = f"task {tasks[0].task_id!r}" if len(tasks) == 1 else f"{len(part)} of {len(tasks)} tasks"
            self._save_tasks(token, part, what)

    def _task_pairs(self, token: ClaimToken, tasks: Sequence[TaskDetail]) -> list[tuple[bytes, bytes]]:
        """(hash field, record) of each task, each within ``max_record_bytes``."""
        return [(to_bytes(t.task_id), sized(t.to_json(), self.max_record_bytes,
                                            f"task {t.task_id!r} of flow {token.flow_id!r}")) for t in tasks]

    def _save_tasks(self, token: ClaimToken, pairs: list[tuple[bytes, bytes]], what: str) -> None:
        keys = self._keys(token.flow_id)
        args: list[Arg] = [token.claim_id, token.epoch]
        for task_id, raw in pairs:
            args += [task_id, raw]

        def op(client: Client, retried: bool) -> None:
            if not run_script(client, "save_tasks", [keys.claim, keys.tasks], args).ok:
                raise self._lost(token)

        self._conn.run(f"save {what} of {token.flow_id!r}", op)

    def save_flow(self, token: ClaimToken, flow: FlowDetail) -> None:
        raw = sized(flow.to_json(), self.max_record_bytes, f"flow {token.flow_id!r}")
        self._save_flow(token, [], raw, flow.state in RUNNABLE_FLOW_STATES)

    def save_flows(self, writes: Sequence[tuple[ClaimToken, FlowDetail]]) -> list[bool]:
        # One pipeline of save_flow scripts per ``max_record_bytes`` of
        # records, each script fenced by its own token. Runnable states only
        # (what counting a fresh claim writes); others go one by one, where
        # the index update waits for the write to be confirmed.
        if any(flow.state not in RUNNABLE_FLOW_STATES for _, flow in writes):
            return super().save_flows(writes)
        items = [(token, self._keys(token.flow_id), sized(flow.to_json(), self.max_record_bytes,
                                                           f"flow {token.flow_id!r}")) for token, flow in writes]
        parts = batches(items, [len(raw) for _, _, raw in items], self.max_record_bytes)
        return [ok for part in parts for ok in self._save_flows(part)]

    def _save_flows(self, part: list[tuple[ClaimToken, FlowKeys, bytes]]) -> list[bool]:
        def op(client: Client, retried: bool) -> list[bool]:
            pipe = client.pipeline(transaction=False)
            at = []
            for token, keys, raw in part:
                at.append(len(pipe))
                evalsha(pipe, "save_flow", [keys.claim, keys.flow], [token.claim_id, token.epoch, raw])
                self._index.queue_runnable(pipe, keys)  # as save_flow does for a runnable state
            replies = execute(pipe)
            return [decode_reply("save_flow", replies[i]).ok for i in at]

        with self._stripes_of(token.flow_id for token, _, _ in part):
            return self._conn.run(f"save {len(part)} flows", op)

    def save_run(self, token: ClaimToken, tasks: Sequence[TaskDetail], flow: FlowDetail) -> None:
        # Both scripts in one pipeline: one round trip. Not one transaction,
        # but in order, and each fenced: if the claim is lost between them,
        # the flow record is refused as it would be on its own.
        pairs = self._task_pairs(token, tasks)
        raw = sized(flow.to_json(), self.max_record_bytes, f"flow {token.flow_id!r}")
        if len(batches(pairs, [len(k) + len(v) for k, v in pairs], self.max_record_bytes)) > 1:
            super().save_run(token, tasks, flow)  # too big for one script call: one after the other
            return
        self._save_flow(token, pairs, raw, flow.state in RUNNABLE_FLOW_STATES)

    def _save_flow(self, token: ClaimToken, pairs: list[tuple[bytes, bytes]], raw: bytes, runnable: bool) -> None:
        """The flow record ``raw``, after the task records ``pairs`` (if any)
        in the same pipeline."""
        keys = self._keys(token.flow_id)
        args: list[Arg] = [token.claim_id, token.epoch, raw]
        task_args: list[Arg] = [token.claim_id, token.epoch, *(item for pair in pairs for item in pair)]

        def op(client: Client, retried: bool) -> None:
            pipe = client.pipeline(transaction=False)
            if pairs:
                evalsha(pipe, "save_tasks", [keys.claim, keys.tasks], task_args)
            evalsha(pipe, "save_flow", [keys.claim, keys.flow], args)
            if runnable:
                # Safe even if the script refuses us: at worst a stale hint.
                self._index.queue_runnable(pipe, keys)
            replies = execute(pipe)
            if pairs and not decode_reply("save_tasks", replies[0]).ok:
                raise self._lost(token)
            if not decode_reply("save_flow", replies[1 if pairs else 0]).ok:
                raise self._lost(token)
            if not runnable:
                # Only after the write is confirmed: dropping the hint of a
                # flow whose state did not change would lose it for good.
                self._index.not_runnable(client, keys)

        with self._stripe(token.flow_id):
            self._conn.run(f"save flow {token.flow_id!r}", op)

    # -------------------------------------------------------------- discovery

    def find_runnable(self, limit: int) -> list[str]:
        return self._index.find_runnable(limit)

    def count_backlog(self) -> int:
        return self._index.count_takeable()

    def backlog(self, limit: int) -> list[str]:
        return self._index.takeable(limit)

    def wait_for_work(self, timeout: float) -> bool:
        """Sleep on the signal channel, but no later than the end of the
        next lease the last ``find_runnable`` saw: an orphan may appear
        then (True, as for news). Claims granted since that poll are seen
        by the next one, a poll interval later at most."""
        lapse = self._index.seconds_to_lapse()
        if lapse is None or lapse + _LAPSE_SLACK >= timeout:
            return self._waiter.wait(timeout)
        self._waiter.wait(lapse + _LAPSE_SLACK)
        return True  # news, or the lease's end: news either way

    # --------------------------------------------------------------- declines

    def record_decline(self, flow_id: str, decline: Decline) -> None:
        keys = self._keys(flow_id)
        raw = sized(decline.to_json(), self.max_record_bytes, f"decline of flow {flow_id!r}")
        args: list[Arg] = [to_bytes(decline.replica_id), raw]

        def op(client: Client, retried: bool) -> None:
            if not run_script(client, "record_decline", [keys.flow, keys.declines], args).ok:
                raise FlowNotFound(f"no flow {flow_id!r} in {self._conn.where}")

        self._conn.run(f"record decline of {flow_id!r}", op)

    def load_declines(self, flow_id: str) -> list[Decline]:
        keys = self._keys(flow_id)
        exists, fields = self._read_hash(f"load declines of {flow_id!r}", keys.flow, keys.declines)
        if not exists:
            raise FlowNotFound(f"no flow {flow_id!r} in {self._conn.where}")
        return [
            Decline.from_json(raw, self._where(keys.declines, from_bytes(field)))
            for field, raw in fields.items()
        ]

    # --------------------------------------------------------------- replicas

    def register_replica(self, info: ReplicaInfo, lease: float) -> None:
        info.seen_at = time.time()
        raw = fitting(info.to_json(), self.max_record_bytes, f"replica {info.replica_id!r}")
        self._index.register_replica(to_bytes(info.replica_id), raw, _ms(lease))

    def heartbeat_replica(self, replica_id: str, lease: float) -> None:
        self._index.heartbeat_replica(to_bytes(replica_id), _ms(lease))

    def unregister_replica(self, replica_id: str) -> None:
        self._index.unregister_replica(to_bytes(replica_id))

    def list_replicas(self) -> list[ReplicaInfo]:
        found = []
        for replica_id, raw in self._index.replica_records():
            try:
                found.append(ReplicaInfo.from_json(raw, self._where(self._globals.replicas, replica_id)))
            except CorruptRecord as err:
                log.warning("list_replicas skips a corrupt record: %s", err)
        return found

    # -------------------------------------------------------------- handovers

    def request_handover(self, request: Handover) -> None:
        key = mailbox_key(self._prefix, request.replica_id)
        raw = sized(request.to_json(), self.max_record_bytes, f"handover request to replica {request.replica_id!r}")
        args: list[Arg] = [to_bytes(mailbox_field(request.flow_id)), raw, MAX_HANDOVERS]

        def op(client: Client, retried: bool) -> None:
            reply = run_script(client, "mailbox_put", [key], args)
            if reply.status is Status.FULL:
                check_room(int(reply.fields[0]), False, MAX_HANDOVERS, request.replica_id)

        self._conn.run(f"request handover from {request.replica_id!r}", op)

    def load_handovers(self, replica_id: str) -> list[Handover]:
        key = mailbox_key(self._prefix, replica_id)
        fields: dict[Any, Any] = self._conn.run(f"load handovers of {replica_id!r}",
                                                lambda client, _: client.hgetall(key))
        items = [(from_bytes(field), raw) for field, raw in list(fields.items())[:MAX_HANDOVERS]]
        return read_mailbox(replica_id, items, lambda field: self._where(key, field))

    def clear_handover(self, replica_id: str, flow_id: str | None) -> None:
        key, field = mailbox_key(self._prefix, replica_id), to_bytes(mailbox_field(flow_id))
        self._conn.run(f"clear handover of {replica_id!r}", lambda client, _: client.hdel(key, field))

    # -------------------------------------------------------------- lifecycle

    def warnings(self) -> list[str]:
        if self._warnings is None:
            self._warnings = self._conn.run("check server settings", self._check_server)
        return list(self._warnings)

    def close(self) -> None:
        self._waiter.close()
        self._lost_claims.close()
        self._conn.close()


@dataclass(frozen=True)
class _Asked:
    """One claim being asked for, its id fixed before the first attempt."""

    flow_id: str
    keys: FlowKeys
    claim_id: str

    def args(self, lease_ms: int, force: bool, claimed_at: str, lease_key: str, channel: str) -> list[Arg]:
        return [self.claim_id, lease_ms, "1" if force else "0", claimed_at, lease_key, channel]


def _holder(raw: Any) -> str:
    try:
        return ClaimInfo.from_json(raw, "claim", flow_id="").claim_id
    except CorruptRecord:
        return "an unreadable claim"
