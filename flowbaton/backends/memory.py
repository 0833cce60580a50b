"""``memory://``: the reference driver, one process, for tests and examples.

Records are kept as JSON text, exactly as shared drivers store them, so that
a value that would not survive a real backend does not survive here either.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .base import MAX_HANDOVERS, Backend, Capability
from .errors import ClaimHeld, ClaimLost, CorruptRecord, FlowExists, FlowNotFound
from .limits import DEFAULT_MAX_RECORD_BYTES, check_new_flow, checked_limit, fitting, option
from .mailbox import check_room, mailbox_key, read_mailbox
from .options import parse_options
from .paging import check_cursor
from .records import ClaimInfo, ClaimToken, Decline, FlowDetail, Handover, ReplicaInfo, TaskDetail, owner_of
from .states import RUNNABLE_FLOW_STATES

__all__ = ["MemoryBackend"]

_LOG = logging.getLogger("flowbaton.backends.memory")

_OPTIONS = {"max_record_bytes": option(DEFAULT_MAX_RECORD_BYTES)}


@dataclass
class _Claim:
    claim_id: str
    epoch: int
    claimed_at: float
    expires_at: float


@dataclass
class _Stored:
    flow: str
    tasks: dict[str, str]
    declines: dict[str, str]
    runnable: bool  # the index shared drivers keep: discovery never decodes records
    epoch: int = 0
    claim: _Claim | None = None
    seq: int = 0  # creation order, the page cursor (as the shared drivers' sequence)


class MemoryBackend(Backend):
    """All state in one dict behind one lock."""

    schemes = ("memory",)
    capabilities = frozenset({Capability.WATCH})

    def __init__(
        self,
        url: str = "memory://",
        *,
        clock: Callable[[], float] = time.time,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        self.url = url
        self.max_record_bytes = checked_limit(max_record_bytes)
        self._clock = clock
        self._lock = threading.Condition()
        self._flows: dict[str, _Stored] = {}
        self._replicas: dict[str, tuple[str, float]] = {}
        self._mailboxes: dict[str, dict[str, str]] = {}
        self._seq = 0

    @classmethod
    def from_url(cls, url: str, **options: object) -> MemoryBackend:
        parsed = parse_options(urlsplit(url).query, _OPTIONS, options)
        return cls(url, max_record_bytes=parsed["max_record_bytes"])

    # ---------------------------------------------------------------- helpers

    def _get(self, flow_id: str) -> _Stored:
        try:
            return self._flows[flow_id]
        except KeyError:
            raise FlowNotFound(f"no flow {flow_id!r} in {self.url}") from None

    def _live_claim(self, stored: _Stored) -> _Claim | None:
        claim = stored.claim
        if claim is not None and claim.expires_at <= self._clock():
            return None
        return claim

    def _sized(self, raw: str, what: str) -> str:
        return fitting(raw, self.max_record_bytes, what)

    def _check(self, token: ClaimToken) -> _Stored:
        stored = self._flows.get(token.flow_id)
        claim = self._live_claim(stored) if stored else None
        if claim is None or (claim.claim_id, claim.epoch) != (token.claim_id, token.epoch):
            raise ClaimLost(f"claim {token.claim_id}@{token.epoch} on flow {token.flow_id} is not current")
        assert stored is not None
        return stored

    # ------------------------------------------------------------------ flows

    def create_flow(self, flow: FlowDetail) -> None:
        raw = check_new_flow(flow, self.max_record_bytes).decode()
        with self._lock:
            if flow.id in self._flows:
                raise FlowExists(f"flow {flow.id!r} already exists in {self.url}")
            runnable = flow.state in RUNNABLE_FLOW_STATES
            self._seq += 1
            self._flows[flow.id] = _Stored(raw, {}, {}, runnable, seq=self._seq)
            self._lock.notify_all()

    def load_flow(self, flow_id: str) -> FlowDetail:
        with self._lock:
            raw = self._get(flow_id).flow
        return FlowDetail.from_json(raw, f"{self.url} flow {flow_id}")

    def load_tasks(self, flow_id: str) -> dict[str, TaskDetail]:
        with self._lock:
            tasks = dict(self._get(flow_id).tasks)
        return {
            task_id: TaskDetail.from_json(raw, f"{self.url} flow {flow_id} task {task_id}", key=task_id)
            for task_id, raw in tasks.items()
        }

    def list_flows(self, states: Collection[str] | None = None) -> list[FlowDetail]:
        with self._lock:
            raws = [(i, stored.flow) for i, stored in self._flows.items()]  # dicts keep creation order
        flows = []
        for flow_id, raw in raws:
            try:
                flows.append(FlowDetail.from_json(raw, f"{self.url} flow {flow_id}"))
            except CorruptRecord as err:
                _LOG.warning("list_flows skips flow %r: %s", flow_id, err)
        return [f for f in flows if states is None or f.state in states]

    def page_flows(self, states: Collection[str] | None, after: str | None, limit: int
                   ) -> tuple[list[FlowDetail], str | None]:
        start = int(check_cursor(after) or 0)
        with self._lock:  # dicts keep creation order, which is seq order
            rows = [(stored.seq, flow_id, stored.flow) for flow_id, stored in self._flows.items() if stored.seq > start]
        page: list[FlowDetail] = []
        for position, (seq, flow_id, raw) in enumerate(rows):
            try:
                flow = FlowDetail.from_json(raw, f"{self.url} flow {flow_id}")
            except CorruptRecord as err:
                _LOG.warning("page_flows skips flow %r: %s", flow_id, err)
                continue
            if states is None or flow.state in states:
                page.append(flow)
            if len(page) == limit:
                return page, str(seq) if position < len(rows) - 1 else None
        return page, None

    def flow_ids(self, prefix: str, limit: int) -> list[str]:
        with self._lock:
            return [flow_id for flow_id in self._flows if flow_id.startswith(prefix)][:limit]

    def delete_flow(self, token: ClaimToken) -> None:
        with self._lock:
            self._check(token)
            del self._flows[token.flow_id]

    # ----------------------------------------------------------------- claims

    def claim(self, flow_id: str, owner: str, lease: float, *, force: bool = False) -> ClaimToken:
        with self._lock:
            stored = self._get(flow_id)
            live = self._live_claim(stored)
            if live is not None and not force:
                raise ClaimHeld(f"flow {flow_id} is claimed by {live.claim_id}")
            stored.epoch += 1
            now = self._clock()
            claim_id = f"{owner}#{uuid.uuid4().hex[:12]}"
            stored.claim = _Claim(claim_id, stored.epoch, now, now + lease)
            return ClaimToken(flow_id, claim_id, stored.epoch)

    def renew(self, token: ClaimToken, lease: float) -> None:
        with self._lock:
            claim = self._check(token).claim
            assert claim is not None
            claim.expires_at = self._clock() + lease

    def release(self, token: ClaimToken) -> None:
        with self._lock:
            self._check(token).claim = None
            self._lock.notify_all()

    def current_claim(self, flow_id: str) -> ClaimInfo | None:
        with self._lock:
            stored = self._flows.get(flow_id)
            claim = self._live_claim(stored) if stored else None
            return self._info(flow_id, claim) if claim else None

    def list_claims(self) -> list[ClaimInfo]:
        with self._lock:
            pairs = [(i, self._live_claim(s)) for i, s in self._flows.items()]
            return [self._info(i, c) for i, c in pairs if c is not None]

    @staticmethod
    def _info(flow_id: str, claim: _Claim) -> ClaimInfo:
        owner = owner_of(claim.claim_id)
        return ClaimInfo(flow_id, owner, claim.claim_id, claim.epoch, claim.claimed_at, claim.expires_at)

    # ---------------------------------------------------------- fenced writes

    def save_tasks(self, token: ClaimToken, tasks: Sequence[TaskDetail]) -> None:
        raws = [(t.task_id, self._sized(t.to_json(), f"task {t.task_id!r} of flow {token.flow_id!r}"))
                for t in tasks]
        with self._lock:
            self._check(token).tasks.update(raws)

    def save_flow(self, token: ClaimToken, flow: FlowDetail) -> None:
        raw = self._sized(flow.to_json(), f"flow {token.flow_id!r}")
        with self._lock:
            stored = self._check(token)
            stored.flow = raw
            stored.runnable = flow.state in RUNNABLE_FLOW_STATES

    # -------------------------------------------------------------- discovery

    def find_runnable(self, limit: int) -> list[str]:
        found: list[str] = []
        with self._lock:
            for flow_id in self._flows:  # creation order: a dict keeps insertion order
                if len(found) >= limit:
                    break
                if self._takeable(self._flows[flow_id]):
                    found.append(flow_id)
        return found

    def count_backlog(self) -> int:
        with self._lock:
            return sum(1 for stored in self._flows.values() if self._takeable(stored))

    def _takeable(self, stored: _Stored) -> bool:
        """Runnable and held by nobody: ``find_runnable``'s rule, the backlog's."""
        return stored.runnable and self._live_claim(stored) is None

    def wait_for_work(self, timeout: float) -> bool:
        """Woken by every change (the lock's condition), and no later than
        the next live lease's end: an orphan appears then (``WATCH``)."""
        with self._lock:
            now = self._clock()
            ends = [c.expires_at for s in self._flows.values() if (c := self._live_claim(s)) is not None]
            lapse = min(ends) - now if ends else None
            if lapse is None or lapse >= timeout:
                return self._lock.wait(timeout)
            self._lock.wait(max(0.0, lapse))
            return True

    # --------------------------------------------------------------- declines

    def record_decline(self, flow_id: str, decline: Decline) -> None:
        raw = self._sized(decline.to_json(), f"decline of flow {flow_id!r}")
        with self._lock:
            self._get(flow_id).declines[decline.replica_id] = raw

    def load_declines(self, flow_id: str) -> list[Decline]:
        with self._lock:
            raws = list(self._get(flow_id).declines.values())
        return [Decline.from_json(raw, f"{self.url} flow {flow_id} declines") for raw in raws]

    # --------------------------------------------------------------- replicas

    def register_replica(self, info: ReplicaInfo, lease: float) -> None:
        with self._lock:
            info.seen_at = self._clock()
            raw = self._sized(info.to_json(), f"replica {info.replica_id!r}")
            self._replicas[info.replica_id] = (raw, info.seen_at + lease)

    def heartbeat_replica(self, replica_id: str, lease: float) -> None:
        with self._lock:
            raw, _ = self._replicas.get(replica_id, (None, 0.0))
            if raw is not None:
                self._replicas[replica_id] = (raw, self._clock() + lease)

    def unregister_replica(self, replica_id: str) -> None:
        with self._lock:
            self._replicas.pop(replica_id, None)

    def list_replicas(self) -> list[ReplicaInfo]:
        now = self._clock()
        with self._lock:
            live = [(rid, raw) for rid, (raw, expires) in self._replicas.items() if expires > now]
        found = []
        for replica_id, raw in live:
            try:
                found.append(ReplicaInfo.from_json(raw, f"{self.url} replica {replica_id}"))
            except CorruptRecord as err:  # one bad record must not hide the others
                _LOG.warning("skipping %s", err)
        return found

    # -------------------------------------------------------------- handovers

    def request_handover(self, request: Handover) -> None:
        raw = self._sized(request.to_json(), f"handover request to replica {request.replica_id!r}")
        key = mailbox_key(request.flow_id)
        with self._lock:
            box = self._mailboxes.setdefault(request.replica_id, {})
            check_room(len(box), key in box, MAX_HANDOVERS, request.replica_id)
            box[key] = raw

    def load_handovers(self, replica_id: str) -> list[Handover]:
        with self._lock:
            items = list(self._mailboxes.get(replica_id, {}).items())
        return read_mailbox(replica_id, items, lambda key: f"{self.url} mailbox of {replica_id} at {key!r}")

    def clear_handover(self, replica_id: str, flow_id: str | None) -> None:
        with self._lock:
            box = self._mailboxes.get(replica_id, {})
            box.pop(mailbox_key(flow_id), None)
            if not box:
                self._mailboxes.pop(replica_id, None)

    # -------------------------------------------------------------- test seam

    def overwrite_record(self, flow_id: str, text: str, *, task_id: str | None = None) -> None:
        """Store ``text`` as the flow's record (or as task ``task_id``'s),
        unchecked: what a hand edit does to a shared store, for tests of
        damaged records. ``FlowNotFound`` if there is no such flow."""
        with self._lock:
            stored = self._get(flow_id)
            if task_id is None:
                stored.flow = text
            else:
                stored.tasks[task_id] = text

    def plant_replica(self, replica_id: str, text: str, lease: float) -> None:
        """A presence of ``replica_id`` live for ``lease`` seconds whose
        record is ``text``, unchecked (tests of damaged records)."""
        with self._lock:
            self._replicas[replica_id] = (text, self._clock() + lease)
