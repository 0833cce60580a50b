"""``zookeeper://``: flows, fenced claims and discovery on a ZooKeeper ensemble.

Fencing. ``epochs/<flow>`` is persistent; every claim bumps its version in
the same ``multi`` that creates the ephemeral ``claims/<flow>`` and the
ephemeral holder marker ``epochs/<flow>/<claim id>``, so the version is the
epoch. Every fenced write is a ``multi`` that starts with
``check(epochs/<flow>, version=epoch)`` (nobody claimed since) and
``check(epochs/<flow>/<claim id>)`` (this very claim id still holds: not
released, not forced out, not expired with our session). The pair compares
the whole token inside ZooKeeper, which a ``check`` on data cannot do. A
flow purged and re-submitted under the same id restarts its epoch at 1, but
its holder markers carry fresh claim ids, so a stale token never matches.
The claim znode's own version is never checked (a re-created node restarts
at 0).

The lease is the session: ``lease`` arguments are ignored; ``from_url(...,
lease=)`` sets the session timeout unless the URL gives ``session_timeout``.
Renewing is proving the session alive: ``renew_claims`` sends one request
whatever the number of claims, and a data watch on each claim znode reports
the claims taken away meanwhile (``held.py``).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Collection, Sequence
from typing import Any

from ..base import CONNECTED, LOST, MAX_HANDOVERS, SETTINGS_EVENT, SUSPENDED, Backend, Capability, StateListener
from ..errors import (
    BackendUnavailable,
    ClaimLost,
    CorruptRecord,
    FlowbatonError,
    FlowExists,
    FlowNotFound,
)
from ..limits import batches, check_new_flow
from ..mailbox import check_room, mailbox_key, read_mailbox
from ..paging import Entry, fill_page
from ..records import ClaimInfo, ClaimToken, Decline, FlowDetail, Handover, ReplicaInfo, StoredRun, TaskDetail
from ..redact import redact_url
from ..states import RUNNABLE_FLOW_STATES
from .acl import enforce
from .client import Again, Node, Op, Outcome, Session
from .codec import claim_holder, parse_claim, sized
from .created import CreationIndex
from .events import EventDispatcher
from .held import HeldClaims, names_token
from .layout import Layout, decode_name, encode_name
from .settings import Settings
from .taking import ClaimStates, ClaimTaker, new_claim_id
from .watch import WorkSignal

__all__ = ["ZooKeeperBackend"]

log = logging.getLogger(__name__)

# What one op of a multi costs besides its data and path (type, version,
# flags, ACL list), counted generously when cutting a batch into requests.
_OP_BYTES = 256
#: Flow records one ``multi`` of ``save_flows`` writes at most: a lost claim
#: fails its whole multi (then each flow goes alone), so multis stay modest.
_FLOWS_PER_MULTI = 50


def _op_sizes(items: Sequence[tuple[str, bytes]]) -> list[int]:
    """What each (path, data) write adds to a multi, for ``limits.batches``."""
    return [len(path) + len(data) + _OP_BYTES for path, data in items]


def _check(path: str, version: int = -1) -> Op:
    return Op("check", path, version=version)


def _create(path: str, data: bytes = b"", *, ephemeral: bool = False) -> Op:
    return Op("create", path, data, ephemeral=ephemeral)


def _set(path: str, data: bytes, version: int = -1) -> Op:
    return Op("set", path, data, version=version)


def _delete(path: str) -> Op:
    return Op("delete", path)


class ZooKeeperBackend(Backend):
    """Records and claims in one chroot of a ZooKeeper ensemble."""

    schemes = ("zookeeper",)
    capabilities = frozenset({Capability.SHARED, Capability.SESSION, Capability.WATCH})

    _FENCE_OPS = 2  # every fenced multi starts with the two checks of _fence()

    def __init__(self, url: str, settings: Settings) -> None:
        self.url = redact_url(url)
        self._settings = settings
        self.max_record_bytes = settings.max_record_bytes
        self._paths = Layout(settings.chroot)
        self._lock = threading.Lock()
        self._known_tasks: dict[str, set[str]] = {}  # flow -> task znodes known to exist
        self._in_doubt: dict[str, str] = {}  # flow -> claim id whose claim call failed
        self._replicas: dict[str, bytes] = {}  # registered here: re-created after a LOST
        self._marker_czxid: dict[str, int] = {}  # runnable marker -> creation zxid
        self._held = HeldClaims()  # claims granted here, vouched for by watches
        self._events = EventDispatcher(f"flowbaton-zk-events-{settings.chroot}")
        self._events.add_hook(self._on_session_event)
        self._zk = Session(settings, self._events.kazoo_state)
        self._created = CreationIndex(self._zk, self._paths)
        self._taker = ClaimTaker(self._zk, self._paths, self._held, self.url, self._where, self._forget_flow)
        self._work = WorkSignal(self._zk.client, self._paths.claims, self._paths.signal)
        try:
            self._zk.start()
            self._session_problems = self._granted_session()
            # ACLs first: a tree someone else created must not receive our folders.
            self._acl_problems = enforce(self._zk.policy, self._zk.run("read the ACLs", self._acl_check))
            self._zk.run("create the layout", self._ensure_layout)
        except BaseException:
            self.close()
            raise

    @classmethod
    def from_url(cls, url: str, **options: object) -> ZooKeeperBackend:
        return cls(url, Settings.from_url(url, dict(options)))

    @property
    def kazoo(self) -> Any:
        """The underlying KazooClient, for tests and tools (fault injection)."""
        return self._zk.client

    @property
    def session(self) -> Session:
        """The retrying session every request goes through (``run``,
        ``get_many`` ...), for tests and tools that read znodes in bulk."""
        return self._zk

    @property
    def layout(self) -> Layout:
        """Where each record lives under the chroot (``layout.py``)."""
        return self._paths

    @property
    def held_claims(self) -> HeldClaims:
        """The claims granted here and what their watches say (``held.py``),
        for tests and tools."""
        return self._held

    @property
    def claims_in_doubt(self) -> dict[str, str]:
        """Flow id -> claim id of claim calls that gave up (``BackendUnavailable``)
        but may have landed; the next ``claim`` or ``find_runnable`` releases
        each one that did. A copy, for tests and tools."""
        with self._lock:
            return dict(self._in_doubt)

    @property
    def requests(self) -> Counter[str]:
        """Requests this backend object sent, by kind (``commit``,
        ``get_many``, ``exists_many``, ``children_many``, ``create``,
        ``set``, ``delete``); each is one round trip (the paths of one
        ``get_many`` travel pipelined). ``watch`` counts the data watches
        set on claims taken (one read each, sent and never waited for). A
        copy, for tests and tools."""
        return self._zk.requests

    def _acl_check(self, again: bool) -> list[str]:
        paths = self._paths
        acls = self._zk.acls_many([paths.root, *paths.folders(), paths.signal])
        return self._zk.policy.problems(paths.root, acls)

    def _ensure_layout(self, again: bool) -> None:
        if self._zk.exists_many([self._paths.signal])[0] is not None:
            return
        self._zk.ensure_paths([self._paths.root, *self._paths.folders()])
        self._created.mark_new_store()  # before the signal: a store with a signal is ready for use
        self._zk.create(self._paths.signal, b"")

    # ------------------------------------------------------------ helpers

    def _where(self, what: str, path: str) -> str:
        """Names a record for CorruptRecord: by its ids and its znode path."""
        return f"{what} (znode {path} on {self._settings.hosts})"

    def _fence(self, token: ClaimToken) -> list[Op]:
        """The two checks that make a ``multi`` conditional on ``token``."""
        paths = self._paths
        return [
            _check(paths.epoch(token.flow_id), token.epoch),
            _check(paths.holder(token.flow_id, token.claim_id)),
        ]

    def _fenced(self, token: ClaimToken, ops: list[Op]) -> Outcome:
        """Commit ``fence + ops``; ClaimLost if the fence failed. Other
        failures are returned, indexed within ``ops``."""
        outcome = self._zk.commit(self._fence(token) + ops)
        if not outcome.ok and outcome.failed < self._FENCE_OPS:
            self._forget_flow(token.flow_id)
            self._held.forget(token)
            raise ClaimLost(
                f"claim {token.claim_id}@{token.epoch} on flow {token.flow_id} is not current"
            )
        if outcome.ok:
            return outcome
        return Outcome(False, outcome.failed - self._FENCE_OPS, outcome.error)

    def _forget_flow(self, flow_id: str) -> None:
        with self._lock:
            self._known_tasks.pop(flow_id, None)

    def _on_session_event(self, state: str) -> None:
        """Worker-thread housekeeping. LOST: our ephemerals (claims, presence)
        are gone, and so is any claim whose outcome was in doubt. SUSPENDED:
        the claims' watches may be gone; the next ``renew_claims`` reads."""
        if state == LOST:
            self._held.clear()
            with self._lock:
                self._known_tasks.clear()
                self._in_doubt.clear()
        if state == SUSPENDED:
            self._held.doubt_all()  # kazoo drops every watch with the connection
        if state in (LOST, CONNECTED):
            self._work.wake()  # watches may have been missed: rescan

    # -------------------------------------------------------------- flows

    def create_flow(self, flow: FlowDetail) -> None:
        data = check_new_flow(flow, self.max_record_bytes)
        self._zk.run(f"create flow {flow.id}", lambda again: self._create_flow(flow, data, again))

    def _create_flow(self, flow: FlowDetail, data: bytes, again: bool) -> None:
        # One multi, O(1) in the number of stored flows. Setting /signal wakes
        # idle replicas through one data watch, not a re-listing of flows.
        paths = self._paths
        if again and self._flow_data_is(flow.id, data):
            return  # an ambiguous earlier attempt did create it
        ops = [
            _create(paths.flow(flow.id), data),
            _create(paths.tasks(flow.id)),
            _create(paths.declines(flow.id)),
            _create(paths.epoch(flow.id)),
            _set(paths.signal, b""),
        ]
        if flow.state in RUNNABLE_FLOW_STATES:
            ops.append(_create(paths.runnable_marker(flow.id)))
        self._created.ensure_folders(flow.created_at)
        ops.append(self._created.create_op(flow))  # last: a folder removed meanwhile is made again below
        outcome = self._zk.commit(ops)
        if outcome.failed_at(len(ops) - 1, "no_node"):
            self._created.ensure_folders(flow.created_at, again=True)
            outcome = self._zk.commit(ops)
        if outcome.failed_at(0, "node_exists"):
            raise FlowExists(f"flow {flow.id!r} already exists in {self.url}")
        if outcome.failed_at(3, "node_exists"):
            # An epoch znode outlived its flow (hand-edited tree): keep
            # counting up from it rather than restart epochs at 0.
            ops[3] = _set(paths.epoch(flow.id), b"")
            outcome = self._zk.commit(ops)
        if not outcome.ok:
            where = self._where(f"flow {flow.id!r}", ops[outcome.failed].path)
            raise CorruptRecord(where, f"layout is inconsistent, cannot create: {outcome.error}")

    def _flow_data_is(self, flow_id: str, data: bytes) -> bool:
        node = self._zk.get(self._paths.flow(flow_id))
        return node is not None and node.data == data

    def load_flow(self, flow_id: str) -> FlowDetail:
        path = self._paths.flow(flow_id)
        node = self._zk.run(f"load flow {flow_id}", lambda again: self._zk.get(path))
        if node is None:
            raise FlowNotFound(f"no flow {flow_id!r} in {self.url}")
        return FlowDetail.from_json(node.data, self._where(f"flow {flow_id!r}", path))

    def load_tasks(self, flow_id: str) -> dict[str, TaskDetail]:
        folder = self._paths.tasks(flow_id)
        names, nodes = self._zk.run(f"load tasks of {flow_id}", lambda again: self._read_folder(folder))
        if names is None:
            raise FlowNotFound(f"no flow {flow_id!r} in {self.url}")
        return self._tasks_read(flow_id, names, nodes)

    def _tasks_read(self, flow_id: str, names: list[str], nodes: Sequence[Node | None]) -> dict[str, TaskDetail]:
        """Decode a flow's task znodes; remember which exist (``_commit``
        sets those and creates the others)."""
        folder = self._paths.tasks(flow_id)
        tasks: dict[str, TaskDetail] = {}
        for name, node in zip(names, nodes, strict=True):
            if node is not None:
                task_id = decode_name(name)
                where = self._where(f"task {task_id!r} of flow {flow_id!r}", f"{folder}/{name}")
                tasks[task_id] = TaskDetail.from_json(node.data, where, key=task_id)
        with self._lock:
            self._known_tasks[flow_id] = {f"{folder}/{name}" for name in names}
        return tasks

    def load_runs(self, flow_ids: Sequence[str]) -> dict[str, StoredRun]:
        # Three batched reads (records, task folders, task records) whatever
        # the number of flows: a survivor that just took 500 orphans over
        # sends ~10 requests instead of 1,500 (kazoo's per-request cost
        # made reading them one flow at a time the bulk of a mass takeover).
        paths = self._paths

        def read(again: bool) -> tuple[list[Node | None], list[list[str] | None], list[Node | None]]:
            flows = self._zk.get_many([paths.flow(flow_id) for flow_id in flow_ids])
            folders = self._zk.children_many([paths.tasks(flow_id) for flow_id in flow_ids])
            tasks = self._zk.get_many([f"{paths.tasks(flow_id)}/{name}"
                                       for flow_id, names in zip(flow_ids, folders, strict=True)
                                       for name in names or []])
            return flows, folders, tasks

        flows, folders, task_nodes = self._zk.run(f"load {len(flow_ids)} claimed flows", read)
        found: dict[str, StoredRun] = {}
        at = 0
        for flow_id, node, names in zip(flow_ids, flows, folders, strict=True):
            nodes, at = task_nodes[at : at + len(names or [])], at + len(names or [])
            if node is None or names is None:
                continue  # gone: the caller's own read says so
            with contextlib.suppress(CorruptRecord):  # likewise: its own read raises it where it is handled
                flow = FlowDetail.from_json(node.data, self._where(f"flow {flow_id!r}", paths.flow(flow_id)))
                found[flow_id] = StoredRun(flow, self._tasks_read(flow_id, names, nodes))
        return found

    def _read_folder(self, folder: str) -> tuple[list[str] | None, list[Node | None]]:
        names = self._zk.children_many([folder])[0]
        if names is None:
            return None, []
        return names, self._zk.get_many([f"{folder}/{name}" for name in names])

    def list_flows(self, states: Collection[str] | None = None) -> list[FlowDetail]:
        folder = self._paths.flows
        if states is not None and set(states) <= RUNNABLE_FLOW_STATES:
            # A runnable flow has a marker in runnable/, created and deleted in
            # the same multi that writes its state: asked for runnable states
            # only, read the marked flows' records, not every stored flow's.
            listing = self._zk.run("list runnable flows", lambda again: self._read_marked(folder))
        else:
            listing = self._zk.run("list flows", lambda again: self._read_folder(folder))
        names, nodes = listing
        found: list[tuple[int, FlowDetail]] = []
        for name, node in zip(names or [], nodes, strict=True):
            where = self._where(f"flow {decode_name(name)!r}", f"{folder}/{name}")
            flow = self._readable(FlowDetail, where, node)
            if flow is not None and node is not None and (states is None or flow.state in states):
                found.append((node.stat.czxid, flow))
        # Oldest first by the store's own order (creation zxid), not by the
        # records' created_at: replicas' clocks differ.
        found.sort(key=lambda item: item[0])
        return [flow for _, flow in found]

    def _read_marked(self, folder: str) -> tuple[list[str] | None, list[Node | None]]:
        names = self._zk.children_many([self._paths.runnable])[0] or []
        return names, self._zk.get_many([f"{folder}/{name}" for name in names])

    @staticmethod
    def _readable(kind: Any, where: str, node: Node | None) -> Any:
        """A record from a listing; a corrupt one is logged and skipped."""
        if node is None:
            return None  # deleted between the listing and the read
        try:
            return kind.from_json(node.data, where)
        except CorruptRecord as err:
            log.warning("skipping %s", err)
            return None

    def page_flows(self, states: Collection[str] | None, after: str | None, limit: int
                   ) -> tuple[list[FlowDetail], str | None]:
        # From the creation index (created.py), a page of records per request.
        self._zk.run("index flows by creation", lambda again: self._created.ensure_indexed())

        def fetch(cursor: str | None, count: int) -> tuple[list[Entry], bool]:
            def read(again: bool) -> tuple[list[Entry], bool]:
                listed, more = self._created.page(cursor, count)
                paths = [self._paths.flow(flow_id) for _, flow_id in listed]
                nodes = self._zk.get_many(paths)
                return [(entry_cursor, node.data if node is not None else None,
                         self._where(f"flow {flow_id!r}", path))
                        for (entry_cursor, flow_id), node, path in zip(listed, nodes, paths, strict=True)], more

            return self._zk.run("list a page of flows", read)

        return fill_page(fetch, states, after, limit)

    def flow_ids(self, prefix: str, limit: int) -> list[str]:
        folder = self._paths.flows
        names = self._zk.run("list flow ids", lambda again: self._zk.children_many([folder])[0]) or []
        return [flow_id for flow_id in map(decode_name, names) if flow_id.startswith(prefix)][:limit]

    def delete_flow(self, token: ClaimToken) -> None:
        self._zk.run(f"delete flow {token.flow_id}", lambda again: self._delete_flow(token, again))
        self._forget_flow(token.flow_id)
        self._held.forget(token)

    def _delete_flow(self, token: ClaimToken, again: bool) -> None:
        paths, flow_id = self._paths, token.flow_id
        record = self._zk.get(paths.flow(flow_id))
        if again and record is None:
            return  # an ambiguous earlier attempt did delete it
        entry = self._created.entry_of(record.data, flow_id) if record is not None else None
        folders = [paths.tasks(flow_id), paths.declines(flow_id), paths.epoch(flow_id)]
        listings = self._zk.children_many(folders)
        marker, indexed = self._zk.exists_many([paths.runnable_marker(flow_id), entry or paths.flow(flow_id)])
        ops = [_delete(f"{folder}/{name}") for folder, names in zip(folders, listings, strict=True)
               for name in names or []]
        ops += [_delete(folder) for folder, names in zip(folders, listings, strict=True) if names is not None]
        ops += [_delete(paths.flow(flow_id)), _delete(paths.claim(flow_id))]
        ops += [_delete(paths.runnable_marker(flow_id))] if marker is not None else []
        ops += [_delete(entry)] if entry is not None and indexed is not None else []
        if not self._fenced(token, ops).ok:
            raise Again("flow changed while being deleted (a decline arrived?)")
        if entry is not None:
            self._created.drop_empty(entry)

    # ------------------------------------------------------------- claims

    def claim(self, flow_id: str, owner: str, lease: float, *, force: bool = False) -> ClaimToken:
        self._settle_in_doubt()
        claim_id = new_claim_id(owner)
        try:
            return self._zk.run(
                f"claim flow {flow_id}", lambda again: self._taker.one(flow_id, claim_id, owner, force)
            )
        except BackendUnavailable:
            # The multi may have landed, or may still land (kazoo sends queued
            # requests on reconnect): remember it, release it later if so.
            with self._lock:
                self._in_doubt[flow_id] = claim_id
            raise

    def _settle_in_doubt(self) -> None:
        """Release claims we may hold without knowing it (see ``claim``)."""
        with self._lock:
            pending = dict(self._in_doubt)
        for flow_id, claim_id in pending.items():
            self._settle_one(flow_id, claim_id)

    def _settle_one(self, flow_id: str, claim_id: str) -> None:
        try:
            self._zk.run("settle an in-doubt claim", lambda again: self._settle(flow_id, claim_id))
        except FlowbatonError as err:
            log.warning("cannot settle in-doubt claim %s on %s yet: %s", claim_id, flow_id, err)
            return
        with self._lock:
            if self._in_doubt.get(flow_id) == claim_id:
                del self._in_doubt[flow_id]

    def _settle(self, flow_id: str, claim_id: str) -> None:
        node = self._zk.get(self._paths.claim(flow_id))
        if node is None or claim_holder(node.data) != claim_id:
            return
        where = self._where(f"claim of flow {flow_id!r}", self._paths.claim(flow_id))
        token = ClaimToken(flow_id, claim_id, parse_claim(flow_id, node.data, where).epoch)
        self._zk.commit([*self._fence(token), *self._unclaim(token)])
        self._held.forget(token)  # claim_many may have taken and watched it before giving up

    def renew(self, token: ClaimToken, lease: float) -> None:
        # The session is the lease; renewing = proving, in one read, that the
        # claim znode still exists, names this token and belongs to our session.
        path = self._paths.claim(token.flow_id)
        node = self._zk.run(f"renew claim on {token.flow_id}", lambda again: self._zk.get(path))
        if not names_token(token, node, self._zk.session_id):
            self._held.forget(token)  # lost for good: its watch, if any, is of no more use
        if node is None or node.stat.ephemeral_owner != self._zk.session_id:
            raise ClaimLost(f"claim {token.claim_id}@{token.epoch} on flow {token.flow_id} is gone")
        info = parse_claim(token.flow_id, node.data, self._where(f"claim of flow {token.flow_id!r}", path))
        if (info.claim_id, info.epoch) != (token.claim_id, token.epoch):
            raise ClaimLost(f"flow {token.flow_id} is now claimed by {info.token}, not {token.claim_id}")

    def renew_claims(self, tokens: Sequence[ClaimToken], lease: float) -> list[ClaimToken]:
        # One request whatever the number of claims (held.py): a read of the
        # claims no watch vouches for, or else one cheap read that proves the
        # session alive now. Per-claim requests only for watches to re-arm
        # (a claim granted elsewhere on this session, or after a reconnect).
        if not tokens:
            return []
        lost = self._zk.run(f"renew {len(tokens)} claims", lambda again: self._renew_claims(tokens))
        return [token for token in tokens if token in lost]

    def _renew_claims(self, tokens: Sequence[ClaimToken]) -> set[ClaimToken]:
        session = self._zk.session_id
        unsure = self._held.unsure(tokens, session)
        nodes = self._read_claims(unsure) if unsure else self._prove_session()
        self._zk.flush_callbacks()  # a watch that fired before that reply is heard now
        if self._zk.session_id != session:
            raise Again("the session changed during the renewal")
        asked = set(unsure)
        late = [t for t in tokens if t not in asked and not self._held.vouches(t, session)]
        if late:  # a watch fired while the request was out: read those too
            unsure, nodes = unsure + late, nodes + self._read_claims(late)
        lost: set[ClaimToken] = set()
        for token, node in zip(unsure, nodes, strict=True):
            if not names_token(token, node, session):
                self._held.forget(token)
                lost.add(token)
            elif (arm := self._held.confirm(token, session)) is not None:
                self._taker.watch(token, arm)  # current, and no watch of ours stands on it
        return lost

    def _read_claims(self, tokens: Sequence[ClaimToken]) -> list[Node | None]:
        return self._zk.get_many([self._paths.claim(token.flow_id) for token in tokens])

    def _prove_session(self) -> list[Node | None]:
        """One cheap read: its reply proves the session alive after it was sent."""
        self._zk.exists_many([self._paths.root])
        return []

    def claim_many(self, flow_ids: Sequence[str], owner: str, lease: float) -> list[ClaimToken]:
        # One batched read of every claim and epoch znode, then one multi per
        # batch of free flows (all or nothing: a flow raced away costs a
        # re-read and another multi for its batch).
        wanted = list(dict.fromkeys(flow_ids))
        if not wanted:
            return []
        self._settle_in_doubt()
        claim_ids = {flow_id: new_claim_id(owner) for flow_id in wanted}
        states = self._zk.run(f"read {len(wanted)} claims", lambda again: self._taker.states(wanted))
        granted: dict[str, ClaimToken] = {}
        for batch in self._taker.batches(wanted, claim_ids, self.max_record_bytes):
            try:
                granted.update(self._claim_batch(batch, claim_ids, owner, {f: states[f] for f in batch}))
            except BackendUnavailable:
                with self._lock:  # as claim(): released later if it landed
                    self._in_doubt.update({flow_id: claim_ids[flow_id] for flow_id in batch})
                if not granted:
                    raise
                log.warning("claimed %d of %d flows; the rest is in doubt", len(granted), len(wanted))
                break
        return [granted[flow_id] for flow_id in wanted if flow_id in granted]

    def _claim_batch(
        self, batch: list[str], claim_ids: dict[str, str], owner: str, first: ClaimStates
    ) -> dict[str, ClaimToken]:
        # Retried after an ambiguous multi: read back, never claim twice.
        return self._zk.run(
            f"claim {len(batch)} flows",
            lambda again: self._taker.batch(batch, claim_ids, owner, None if again else first),
        )

    def release(self, token: ClaimToken) -> None:
        try:
            self._zk.run(f"release flow {token.flow_id}", lambda again: self._release(token, again))
        finally:  # released, lost, or in doubt: renew_claims reads it again if asked
            self._held.forget(token)
        self._forget_flow(token.flow_id)

    def _release(self, token: ClaimToken, again: bool) -> None:
        if again:
            node = self._zk.get(self._paths.claim(token.flow_id))
            if node is None or claim_holder(node.data) != token.claim_id:
                return  # an ambiguous earlier attempt did release it
        self._fenced(token, self._unclaim(token))

    def _unclaim(self, token: ClaimToken) -> list[Op]:
        return [_delete(self._paths.claim(token.flow_id)), _delete(self._paths.holder(token.flow_id, token.claim_id))]

    def current_claim(self, flow_id: str) -> ClaimInfo | None:
        path = self._paths.claim(flow_id)
        node = self._zk.run(f"read claim of {flow_id}", lambda again: self._zk.get(path))
        if node is None:
            return None
        return parse_claim(flow_id, node.data, self._where(f"claim of flow {flow_id!r}", path))

    def list_claims(self) -> list[ClaimInfo]:
        folder = self._paths.claims
        names, nodes = self._zk.run("list claims", lambda again: self._read_folder(folder))
        claims: list[ClaimInfo] = []
        for name, node in zip(names or [], nodes, strict=True):
            if node is None:
                continue
            try:
                flow_id = decode_name(name)
                where = self._where(f"claim of flow {flow_id!r}", f"{folder}/{name}")
                claims.append(parse_claim(flow_id, node.data, where))
            except CorruptRecord as err:
                log.warning("skipping %s", err)
        return claims

    # ------------------------------------------------------- fenced writes

    def save_tasks(self, token: ClaimToken, tasks: Sequence[TaskDetail]) -> None:
        """One fenced round trip for one or more task details; several, in
        order, when together they would pass ``max_record_bytes``: the server
        drops the connection on a request over its jute.maxbuffer, and a
        multi is one request (two 700 KB results did that)."""
        items = self._task_items(token, tasks)
        for part in batches(items, _op_sizes(items), self.max_record_bytes):
            what = f"task {tasks[0].task_id!r}" if len(tasks) == 1 else f"{len(part)} of {len(tasks)} tasks"
            self._save_part(token, part, what)

    def _task_items(self, token: ClaimToken, tasks: Sequence[TaskDetail]) -> list[tuple[str, bytes]]:
        """(znode path, record) of each task, each within ``max_record_bytes``."""
        return [(self._paths.task(token.flow_id, t.task_id),
                 sized(t.to_json(), self.max_record_bytes, f"task {t.task_id!r} of flow {token.flow_id!r}"))
                for t in tasks]

    def _save_part(self, token: ClaimToken, items: list[tuple[str, bytes]], what: str) -> None:
        self._zk.run(f"save {what} of flow {token.flow_id}", lambda again: self._commit(token, items, None))

    def save_flow(self, token: ClaimToken, flow: FlowDetail) -> None:
        data = sized(flow.to_json(), self.max_record_bytes, f"flow {token.flow_id!r}")
        runnable = flow.state in RUNNABLE_FLOW_STATES
        self._zk.run(f"save flow {token.flow_id}", lambda again: self._commit(token, [], (data, runnable)))

    def save_flows(self, writes: Sequence[tuple[ClaimToken, FlowDetail]]) -> list[bool]:
        # One multi for up to ``_FLOWS_PER_MULTI`` records (each with its own
        # fence), on the first guess about each runnable marker; a multi that
        # fails (a claim lost, a marker not as guessed) is all or nothing,
        # so its flows then go one by one.
        limit = self.max_record_bytes
        items = [(token, sized(flow.to_json(), limit, f"flow {token.flow_id!r}"), flow) for token, flow in writes]
        done: list[bool] = []
        for part in batches(items, [len(data) + 4 * _OP_BYTES for _, data, _ in items], limit):
            for i in range(0, len(part), _FLOWS_PER_MULTI):
                done += self._save_flows(part[i : i + _FLOWS_PER_MULTI])
        return done

    def _save_flows(self, part: list[tuple[ClaimToken, bytes, FlowDetail]]) -> list[bool]:
        ops = [op for token, data, flow in part for op in
               self._fence(token) + self._flow_ops(token.flow_id, data, flow.state in RUNNABLE_FLOW_STATES)[0]]
        outcome = self._zk.run(f"save {len(part)} flows", lambda again: self._zk.commit(ops))
        if outcome.ok:
            return [True] * len(part)
        return super().save_flows([(token, flow) for token, _, flow in part])

    def save_run(self, token: ClaimToken, tasks: Sequence[TaskDetail], flow: FlowDetail) -> None:
        data = sized(flow.to_json(), self.max_record_bytes, f"flow {token.flow_id!r}")
        items = self._task_items(token, tasks)
        every = [*items, (self._paths.flow(token.flow_id), data)]
        if len(batches(every, _op_sizes(every), self.max_record_bytes)) > 1:
            super().save_run(token, tasks, flow)  # too big for one request: in order, one after the other
            return
        runnable = flow.state in RUNNABLE_FLOW_STATES
        self._zk.run(f"save {len(items)} tasks and flow {token.flow_id}",
                     lambda again: self._commit(token, items, (data, runnable)))

    def _commit(self, token: ClaimToken, items: list[tuple[str, bytes]], flow: tuple[bytes, bool] | None) -> None:
        """One fenced ``multi``: the task records (a set or a create each,
        by what we know exists), then the flow record (data, runnable) with
        its runnable marker in step. A wrong guess about a task znode's
        existence flips that guess, one about the marker tries its other
        variant; each costs one more ``multi``."""
        with self._lock:
            known = self._known_tasks.get(token.flow_id, set())
            exists = [path in known for path, _ in items]
        tails: list[list[Op]] = [[]] if flow is None else self._flow_ops(token.flow_id, *flow)
        tail = 0
        for _ in range(len(items) + len(tails)):
            ops = [_set(p, d) if e else _create(p, d) for (p, d), e in zip(items, exists, strict=True)]
            outcome = self._fenced(token, ops + tails[tail])
            if outcome.ok:
                with self._lock:
                    self._known_tasks.setdefault(token.flow_id, set()).update(p for p, _ in items)
                return
            at = outcome.failed
            if 0 <= at < len(items) and outcome.error in ("no_node", "node_exists"):
                if outcome.error == "no_node" and not exists[at]:
                    folder = items[at][0].rsplit("/", 1)[0]
                    raise CorruptRecord(self._where(f"flow {token.flow_id!r}", folder), "tasks folder is missing")
                exists[at] = outcome.error == "node_exists"
            elif flow is not None and at == len(items):
                raise FlowNotFound(f"no flow {token.flow_id!r} in {self.url}")
            elif flow is not None and at > len(items) and tail + 1 < len(tails):
                tail += 1
            else:
                break
        raise Again(f"task znodes or runnable marker of flow {token.flow_id} keep changing")

    def _flow_ops(self, flow_id: str, data: bytes, runnable: bool) -> list[list[Op]]:
        """The ops that write a flow record, in the variants to try: the
        runnable marker follows the state in the same multi. First guess: it
        is there when runnable (check), and goes when not (delete); on "no
        node", the other variant (create + signal, or nothing)."""
        paths = self._paths
        marker = paths.runnable_marker(flow_id)
        record = _set(paths.flow(flow_id), data)
        if runnable:
            return [[record, _check(marker)], [record, _create(marker), _set(paths.signal, b"")]]
        return [[record, _delete(marker)], [record]]

    # ---------------------------------------------------------- discovery

    def find_runnable(self, limit: int) -> list[str]:
        # Runnable markers minus live claims: two listings, whatever the
        # number of finished flows. Oldest first = by the marker's creation
        # zxid (cached per marker, so a poll only stats markers it has not seen).
        self._settle_in_doubt()
        self._work.clear()
        self._work.arm()
        alive, candidates = self._markers("find runnable flows")
        order = self._zk.run("order runnable flows", lambda again: self._oldest_first(candidates))
        with self._lock:  # keep the cache to markers that still exist
            self._marker_czxid = {n: z for n, z in self._marker_czxid.items() if n in alive}
        return [decode_name(name) for name in order[: max(limit, 0)]]

    def count_backlog(self) -> int:
        return len(self._markers("count the backlog")[1])

    def backlog(self, limit: int) -> list[str]:
        return [decode_name(name) for name in sorted(self._markers("list the backlog")[1])[: max(limit, 0)]]

    def _markers(self, what: str) -> tuple[set[str], set[str]]:
        """Runnable markers, and those of them no live claim holds: two
        listings, whatever the number of finished flows."""
        folders = [self._paths.runnable, self._paths.claims]
        runnable, claimed = self._zk.run(what, lambda again: self._zk.children_many(folders))
        return set(runnable or []), set(runnable or []) - set(claimed or [])

    def _oldest_first(self, names: set[str]) -> list[str]:
        with self._lock:
            unseen = [name for name in names if name not in self._marker_czxid]
        # Markers are empty znodes, so reading them costs what a stat does, and
        # reads travel batched (multiRead): a fresh replica facing 10,000
        # runnable flows sends ~40 requests, not 10,000.
        nodes = self._zk.get_many([f"{self._paths.runnable}/{name}" for name in unseen])
        with self._lock:
            self._marker_czxid.update(
                {n: node.stat.czxid for n, node in zip(unseen, nodes, strict=True) if node is not None}
            )
            known = {n: self._marker_czxid[n] for n in names if n in self._marker_czxid}
        return sorted(known, key=known.__getitem__)

    def wait_for_work(self, timeout: float) -> bool:
        return self._work.wait(timeout)

    # ----------------------------------------------------------- declines

    def record_decline(self, flow_id: str, decline: Decline) -> None:
        path = self._paths.decline(flow_id, decline.replica_id)
        data = sized(decline.to_json(), self.max_record_bytes, f"decline of {flow_id}")
        self._zk.run(f"record decline of {flow_id}", lambda again: self._upsert(path, data, flow_id))

    def _upsert(self, path: str, data: bytes, flow_id: str) -> None:
        outcome = self._zk.commit([_create(path, data)])
        if outcome.failed_at(0, "node_exists") and self._zk.set(path, data):
            return
        if outcome.failed_at(0, "no_node"):
            raise FlowNotFound(f"no flow {flow_id!r} in {self.url}")
        if not outcome.ok:
            raise Again(f"{path} vanished while being replaced")

    def load_declines(self, flow_id: str) -> list[Decline]:
        folder = self._paths.declines(flow_id)
        names, nodes = self._zk.run(f"load declines of {flow_id}", lambda again: self._read_folder(folder))
        if names is None:
            raise FlowNotFound(f"no flow {flow_id!r} in {self.url}")
        found = [
            Decline.from_json(node.data, self._where(f"decline of flow {flow_id!r}", f"{folder}/{name}"))
            for name, node in zip(names, nodes, strict=True)
            if node is not None
        ]
        return sorted(found, key=lambda decline: decline.at)

    # ----------------------------------------------------------- replicas

    def register_replica(self, info: ReplicaInfo, lease: float) -> None:
        info.seen_at = time.time()
        data = sized(info.to_json(), self.max_record_bytes, f"replica {info.replica_id!r}")
        with self._lock:
            self._replicas[info.replica_id] = data
        path = self._paths.replica(info.replica_id)
        self._zk.run(f"register replica {info.replica_id}", lambda again: self._present(path, data))

    def _present(self, path: str, data: bytes) -> None:
        """Our ephemeral presence znode with ``data``. A node left by an older
        session of the same replica id is replaced, else it would vanish
        with that session and take our presence with it."""
        node = self._zk.get(path)
        if node is None:
            ops = [_create(path, data, ephemeral=True)]
        elif node.stat.ephemeral_owner == self._zk.session_id:
            ops = [_set(path, data)]
        else:
            ops = [_delete(path), _create(path, data, ephemeral=True)]
        if not self._zk.commit(ops).ok:
            raise Again(f"{path} changed while being registered")

    def heartbeat_replica(self, replica_id: str, lease: float) -> None:
        # Presence is the session; a heartbeat only re-creates the znode
        # after a session loss took it away.
        path = self._paths.replica(replica_id)
        with self._lock:
            data = self._replicas.get(replica_id)
        stat = self._zk.run(f"heartbeat {replica_id}", lambda again: self._zk.exists_many([path])[0])
        if stat is None and data is not None:
            self._zk.run(f"re-register {replica_id}", lambda again: self._present(path, data))

    def unregister_replica(self, replica_id: str) -> None:
        with self._lock:
            self._replicas.pop(replica_id, None)
        path = self._paths.replica(replica_id)
        self._zk.run(f"unregister {replica_id}", lambda again: self._zk.delete(path))

    def list_replicas(self) -> list[ReplicaInfo]:
        folder = self._paths.replicas
        names, nodes = self._zk.run("list replicas", lambda again: self._read_folder(folder))
        pairs = zip(names or [], nodes, strict=True)
        found = [
            self._readable(ReplicaInfo, self._where(f"replica {decode_name(name)!r}", f"{folder}/{name}"), node)
            for name, node in pairs
        ]
        return [info for info in found if info is not None]

    # ---------------------------------------------------------- handovers

    def request_handover(self, request: Handover) -> None:
        folder = self._paths.mailbox(request.replica_id)
        path = f"{folder}/{encode_name(mailbox_key(request.flow_id))}"
        data = sized(request.to_json(), self.max_record_bytes, f"handover request to replica {request.replica_id!r}")

        def op(again: bool) -> None:
            box, present = self._zk.exists_many([folder, path])
            if box is None:  # the first request to this replica (or the first of this store)
                self._zk.ensure_paths([folder])
            check_room(box.children if box is not None else 0, present is not None, MAX_HANDOVERS,
                       request.replica_id)
            if self._zk.create(path, data) or self._zk.set(path, data):
                return
            raise Again(f"{path} vanished while being replaced")

        self._zk.run(f"request handover from {request.replica_id}", op)

    def load_handovers(self, replica_id: str) -> list[Handover]:
        folder = self._paths.mailbox(replica_id)
        names, nodes = self._zk.run(f"load handovers of {replica_id}", lambda again: self._read_folder(folder))
        items = [(decode_name(name), node.data) for name, node in zip(names or [], nodes, strict=True)
                 if node is not None]
        return read_mailbox(replica_id, items[:MAX_HANDOVERS],
                            lambda key: self._where(f"handover request to {replica_id!r}",
                                                    f"{folder}/{encode_name(key)}"))

    def clear_handover(self, replica_id: str, flow_id: str | None) -> None:
        path = f"{self._paths.mailbox(replica_id)}/{encode_name(mailbox_key(flow_id))}"
        self._zk.run(f"clear handover of {replica_id}", lambda again: self._zk.delete(path))

    # ---------------------------------------------------------- lifecycle

    def warnings(self) -> list[str]:
        """ACL problems found at open (see acl.py); they refused the open
        unless ``?insecure_acl=warn`` or the URL has no credentials. And a
        session timeout the server did not grant as asked."""
        return list(self._acl_problems) + list(self._session_problems)

    def _granted_session(self) -> list[str]:
        """The truth about the lease: a server grants a session timeout
        within its minSessionTimeout..maxSessionTimeout, whatever was asked.
        The claims then live as long as the granted one, so a lease outside
        that range is not what the replica gets: said loudly, at open and
        in ``warnings()`` (``check``, ``replicas``)."""
        asked, granted = self._settings.session_timeout, self._zk.granted_timeout
        if granted is None or abs(granted - asked) < 0.001:
            return []
        problem = (f"ZooKeeper granted a session of {granted:g}s, not the {asked:g}s asked for (the lease): "
                   f"the server bounds sessions by its minSessionTimeout and maxSessionTimeout, so a dead "
                   f"replica's flows are taken over {granted:g}s after it last spoke; choose a lease in range")
        log.warning("%s", problem, extra={"event": SETTINGS_EVENT})
        return [problem]

    def add_state_listener(self, listener: StateListener) -> None:
        self._events.add_listener(listener)

    def close(self) -> None:
        """Claims are not released: the session is left to time out, exactly
        as if this process had crashed (release() first for a hand-over)."""
        self._work.close()
        self._events.close()
        self._zk.abandon()
