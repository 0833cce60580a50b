"""``redis://``, ``rediss://``, ``redis+sentinel://``: flows and fenced claims in Redis.

Truth lives in the per-flow keys (see keys.py) and changes only inside Lua
scripts that compare the whole claim token. The global indexes live in
another slot and are hints kept in step right after each script; how a
stale hint is repaired is in index.py. Lease time is the server's (``PX``):
local clocks only feed the hints and the ``expires_at`` shown to operators.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Collection, Sequence
from typing import Any

import redis.exceptions as rex

from ..base import Backend, Capability
from ..errors import ClaimHeld, ClaimLost, CorruptRecord, FlowExists, FlowNotFound
from ..limits import batches, check_new_flow, checked_limit, fitting, sized
from ..records import ClaimInfo, ClaimToken, Decline, FlowDetail, ReplicaInfo, TaskDetail
from ..redact import redact_url
from ..states import RUNNABLE_FLOW_STATES
from ._types import Client
from .checks import server_warnings
from .client import Connection, execute
from .index import Index
from .keys import FlowKeys, as_text, from_bytes, to_bytes
from .scripts import Arg, Status, decode_reply, evalsha, run_script
from .url import Target, parse_url
from .waiter import Waiter

__all__ = ["RedisBackend"]

log = logging.getLogger("flowbaton.backends.redis")

_STRIPES = 32


def _ms(seconds: float) -> int:
    return max(1, round(seconds * 1000))


class RedisBackend(Backend):
    """Flows, tasks and claims in one Redis (standalone or behind Sentinel)."""

    schemes = ("redis", "rediss", "redis+sentinel")
    # NOTIFY, not WATCH: submits and releases publish on the signal channel
    # (waiter.py), but a lease running out in the server publishes nothing.
    capabilities = frozenset({Capability.SHARED, Capability.NOTIFY})

    def __init__(self, url: str, target: Target) -> None:
        self.url = redact_url(url)  # shown in messages and by `check`: no password
        self._conn = Connection(target)
        self._failover = target.service is not None  # behind Sentinel: a replica may be promoted
        self._prefix: str = target.options["prefix"]
        self.max_record_bytes = checked_limit(target.options["max_record_bytes"])
        self._index = Index(self._conn, self._prefix)
        self._waiter = Waiter(self._conn, self._index.keys.signal)
        # Per-flow ordering inside this process: a renewal's index update
        # must not land after a release's (it would hide a free flow).
        self._stripes = [threading.Lock() for _ in range(_STRIPES)]
        self._warnings: list[str] | None = None
        self._first_contact()

    @classmethod
    def from_url(cls, url: str, **options: object) -> RedisBackend:
        return cls(url, parse_url(url, dict(options)))

    # ---------------------------------------------------------------- helpers

    def _keys(self, flow_id: str) -> FlowKeys:
        return FlowKeys.of(self._prefix, flow_id)

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
            except rex.RedisError as err:  # best effort, redone in warnings()
                log.debug("server check on %s deferred: %s", self._conn.where, err)

    def _check_server(self, client: Client, retried: bool) -> list[str]:
        found = server_warnings(client, self._conn.where, failover=self._failover)
        for warning in found:
            log.warning("%s", warning)
        return found

    # ------------------------------------------------------------------ flows

    def create_flow(self, flow: FlowDetail) -> None:
        keys, raw = self._keys(flow.id), check_new_flow(flow, self.max_record_bytes).decode()

        def op(client: Client, retried: bool) -> None:
            pipe = client.pipeline(transaction=False)
            # Index first: a crash between the two leaves a stale hint (which
            # find_runnable drops), never a stored flow nobody can find.
            self._index.queue_add(pipe, keys, flow.state)
            pipe.set(keys.flow, raw, nx=True)
            pipe.publish(self._index.keys.signal, keys.member)
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
        claim_id = f"{owner}#{uuid.uuid4().hex[:12]}"
        # The claim id is fixed before the first attempt: a retry after a lost
        # reply is recognised by the script as ours, never claimed twice.
        args: list[Arg] = [claim_id, _ms(lease), "1" if force else "0", repr(time.time())]

        def op(client: Client, retried: bool) -> ClaimToken:
            reply = run_script(client, "claim", [keys.flow, keys.claim, keys.epoch], args)
            if reply.status is Status.NO_FLOW:
                raise FlowNotFound(f"no flow {flow_id!r} in {self._conn.where}")
            if reply.status is Status.HELD:
                raise ClaimHeld(f"flow {flow_id!r} is claimed by {_holder(reply.fields[0])}")
            epoch, pttl, state = reply.fields
            self._index.claimed(client, keys, as_text(state), int(pttl))
            return ClaimToken(flow_id, claim_id, int(epoch))

        with self._stripe(flow_id):
            return self._conn.run(f"claim flow {flow_id!r}", op)

    def renew(self, token: ClaimToken, lease: float) -> None:
        keys = self._keys(token.flow_id)
        lease_ms = _ms(lease)
        args: list[Arg] = [token.claim_id, token.epoch, lease_ms]

        def op(client: Client, retried: bool) -> None:
            reply = run_script(client, "renew", [keys.claim, keys.flow], args)
            if not reply.ok:
                raise self._lost(token)
            self._index.claimed(client, keys, as_text(reply.fields[0]), lease_ms)

        with self._stripe(token.flow_id):
            self._conn.run(f"renew claim on {token.flow_id!r}", op)

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

    def current_claim(self, flow_id: str) -> ClaimInfo | None:
        keys = self._keys(flow_id)

        def op(client: Client, retried: bool) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.get(keys.claim)
            pipe.pttl(keys.claim)
            return execute(pipe)

        raw, pttl = self._conn.run(f"read claim of {flow_id!r}", op)
        return self.claim_info(flow_id, raw, pttl)

    def claim_info(self, flow_id: str, raw: bytes | None, pttl: int) -> ClaimInfo | None:
        """Decode a claim key's value; None when there is no live claim."""
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
        pairs = [(to_bytes(t.task_id), sized(t.to_json(), self.max_record_bytes,
                                              f"task {t.task_id!r} of flow {token.flow_id!r}")) for t in tasks]
        for part in batches(pairs, [len(k) + len(v) for k, v in pairs], self.max_record_bytes):
            what = f"task {tasks[0].task_id!r}" if len(tasks) == 1 else f"{len(part)} of {len(tasks)} tasks"
            self._save_tasks(token, part, what)

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
        keys = self._keys(token.flow_id)
        raw = sized(flow.to_json(), self.max_record_bytes, f"flow {token.flow_id!r}")
        args: list[Arg] = [token.claim_id, token.epoch, raw]
        runnable = flow.state in RUNNABLE_FLOW_STATES

        def op(client: Client, retried: bool) -> None:
            pipe = client.pipeline(transaction=False)
            evalsha(pipe, "save_flow", [keys.claim, keys.flow], args)
            if runnable:
                # Safe even if the script refuses us: at worst a stale hint.
                self._index.queue_runnable(pipe, keys)
            if not decode_reply("save_flow", execute(pipe)[0]).ok:
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

    def wait_for_work(self, timeout: float) -> bool:
        return self._waiter.wait(timeout)

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
                found.append(ReplicaInfo.from_json(raw, self._where(self._index.keys.replicas, replica_id)))
            except CorruptRecord as err:
                log.warning("list_replicas skips a corrupt record: %s", err)
        return found

    # -------------------------------------------------------------- lifecycle

    def warnings(self) -> list[str]:
        if self._warnings is None:
            self._warnings = self._conn.run("check server settings", self._check_server)
        return list(self._warnings)

    def close(self) -> None:
        self._waiter.close()
        self._conn.close()


def _holder(raw: Any) -> str:
    try:
        return ClaimInfo.from_json(raw, "claim", flow_id="").claim_id
    except CorruptRecord:
        return "an unreadable claim"
