"""The Backend contract: storage of flow/task records plus fenced claims.

Every driver (memory, sqlite, zookeeper, redis) implements this ABC and passes
the one contract suite in ``tests/contract``. The docstrings here are the
contract; drivers do not repeat them.

Fencing in one paragraph: ``claim`` returns a ``ClaimToken`` (claim id plus an
epoch larger than any earlier epoch of that flow). ``save_task(s)``,
``save_flow``, ``renew`` and ``release`` succeed only while that exact token
is the flow's current claim, checked atomically inside the backend; otherwise
they raise ``ClaimLost`` and change nothing.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import Callable, Collection, Sequence
from typing import ClassVar

from .errors import ClaimHeld, ClaimLost, FlowNotFound
from .limits import DEFAULT_MAX_RECORD_BYTES
from .paging import check_cursor
from .records import ClaimInfo, ClaimToken, Decline, FlowDetail, Handover, ReplicaInfo, StoredRun, TaskDetail

__all__ = [
    "Backend", "Capability", "MAX_HANDOVERS", "StateListener", "SUSPENDED", "LOST", "CONNECTED", "SETTINGS_EVENT",
]

#: ``event`` of the log records a driver writes about unsafe server settings
#: when it opens (``warnings()`` returns the same): a replica logs them at
#: start; the CLI leaves them to ``check`` and ``replicas`` instead of
#: repeating them after every command.
SETTINGS_EVENT = "backend_settings"

# Connection events a session-based backend reports to its listeners.
SUSPENDED = "suspended"  # connection in doubt: start no new task
LOST = "lost"  # session gone: every claim of this backend object is gone
CONNECTED = "connected"  # back to normal (claims must be re-verified)

StateListener = Callable[[str], None]

#: How many handover requests one replica's mailbox holds (one per flow
#: plus a drain): more than any replica claims, so a bulk release fits, and
#: the read a replica makes of its mailbox every lease interval stays bounded.
MAX_HANDOVERS = 10_000


class Capability(str, enum.Enum):
    """What a driver offers beyond the contract; the runtime adapts to it."""

    #: several processes or hosts may use one store (else: one process only)
    SHARED = "shared"
    #: claims die with the client session, and listeners hear SUSPENDED/LOST
    SESSION = "session"
    #: ``wait_for_work`` wakes on every change that makes a flow runnable,
    #: including a claim ending (with its session, or when its lease runs
    #: out), so replicas may poll rarely
    WATCH = "watch"
    #: ``wait_for_work`` wakes on submits and releases but not on a lease
    #: running out, which polling must still find
    NOTIFY = "notify"


class Backend(abc.ABC):
    """Stored records and claims of flows, behind one URL.

    Every method may raise ``BackendUnavailable`` once the driver's retry
    budget for transient errors is spent, and ``CorruptRecord`` when a stored
    record cannot be decoded (naming its path or key). No client library
    exception ever leaves a driver.
    """

    #: URL scheme(s) this driver serves.
    schemes: ClassVar[tuple[str, ...]] = ()
    #: Optional features (``Capability``).
    capabilities: ClassVar[frozenset[Capability]] = frozenset()

    url: str
    #: Largest record, in UTF-8 bytes of its JSON, this backend stores in one
    #: piece (the ``max_record_bytes`` URL option; see ``limits``). Writes
    #: over it raise ``ResultTooLarge`` before anything is written; the
    #: engine reads it to fail a task whose result would not fit, instead of
    #: losing the write and running the task again.
    max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES

    @classmethod
    @abc.abstractmethod
    def from_url(cls, url: str, **options: object) -> Backend:
        """Open the backend ``url`` names. Query options are parsed with
        ``options.parse_options`` (a bad key or value names itself); keyword
        ``options`` override the URL's."""

    # ---------------------------------------------------------------- flows

    @abc.abstractmethod
    def create_flow(self, flow: FlowDetail) -> None:
        """Store a new flow and make it findable by ``find_runnable``.

        One round trip where the backend allows it; O(1) in the number of
        stored flows. Raises ``FlowExists`` if the id is taken (nothing changes),
        ``FlowTooLarge`` if the record takes more than half of
        ``max_record_bytes`` (``limits.check_new_flow``: the rest is kept for
        what a run adds to it).
        """

    @abc.abstractmethod
    def load_flow(self, flow_id: str) -> FlowDetail:
        """Return the flow record. Raises ``FlowNotFound``."""

    @abc.abstractmethod
    def load_tasks(self, flow_id: str) -> dict[str, TaskDetail]:
        """Return every stored task detail of the flow, keyed by task id
        (any string; drivers encode ids into safe key/znode names)."""

    def load_runs(self, flow_ids: Sequence[str]) -> dict[str, StoredRun]:
        """The records and task details of flows this replica just claimed,
        in a few round trips for any number of flows: a survivor that takes
        hundreds of orphans over must not pay two reads per flow before each
        can start. A flow that is gone, or whose records cannot be decoded,
        is left out: its worker reads it on its own and meets the error
        where errors are handled. Drivers whose reads are cheap one by one
        (SQLite, memory) return nothing and let each worker read."""
        return {}

    @abc.abstractmethod
    def list_flows(self, states: Collection[str] | None = None) -> list[FlowDetail]:
        """Every stored flow (optionally only those in ``states``), oldest first.

        For operators; replicas never call it on their hot path. A corrupt
        flow record is skipped with a logged warning, not raised, so one bad
        record does not hide the others.
        """

    def page_flows(self, states: Collection[str] | None, after: str | None, limit: int
                   ) -> tuple[list[FlowDetail], str | None]:
        """One page of ``list_flows``: up to ``limit`` flows (in ``states``),
        oldest first, from the one after the opaque cursor ``after`` (None:
        from the start); and the cursor of the next page (None: no more).
        Drivers read a page's worth of records per request, never the whole
        store (a listing of 100,000 flows in pages of 50 stays small); this
        default pages over ``list_flows`` for drivers that cannot."""
        flows = self.list_flows(states)
        start = int(check_cursor(after) or 0)
        end = start + limit
        return flows[start:end], (str(end) if end < len(flows) else None)

    def flow_ids(self, prefix: str, limit: int) -> list[str]:
        """Up to ``limit`` ids of stored flows that start with ``prefix``,
        in no promised order: how an operator's short id is resolved. Drivers
        answer from an index of ids, never by reading the records."""
        return [f.id for f in self.list_flows() if f.id.startswith(prefix)][:limit]

    @abc.abstractmethod
    def delete_flow(self, token: ClaimToken) -> None:
        """Remove the flow, its tasks, declines and claim. Fenced: ``token``
        must be current. Used by purge."""

    # --------------------------------------------------------------- claims

    @abc.abstractmethod
    def claim(self, flow_id: str, owner: str, lease: float, *, force: bool = False) -> ClaimToken:
        """Claim the flow for replica ``owner`` for ``lease`` seconds.

        Returns a token whose claim id is ``f"{owner}#<unique>"`` and whose
        epoch is larger than every earlier epoch of the flow. Raises
        ``ClaimHeld`` if another live claim exists, unless ``force`` (operator
        release/cancel): then the old claim is replaced and its holder fenced.
        Raises ``FlowNotFound``. Safe to retry after a connection loss: an
        ambiguous attempt is resolved by reading back, never by claiming twice.
        Session backends ignore ``lease`` (the session is the lease).
        A claim record that cannot be read is nobody's (no token is current
        for it): ``force`` always replaces it, and drivers whose claims have
        no session may treat it as absent.
        """

    @abc.abstractmethod
    def renew(self, token: ClaimToken, lease: float) -> None:
        """Extend the claim to ``lease`` seconds from now. ``ClaimLost`` if
        ``token`` is not current (expired and taken, released, or forced)."""

    def renew_claims(self, tokens: Sequence[ClaimToken], lease: float) -> list[ClaimToken]:
        """Renew every claim in ``tokens`` (one replica's), as ``renew`` each;
        returns those no longer current (nothing of them changed).

        One round trip however many claims where the backend allows (a
        replica's coordination traffic then does not grow with its running
        flows). Session backends answer from the session: while it lives,
        only claims taken away (forced, or found gone after a reconnect)
        are returned. Raises ``BackendUnavailable`` for the whole call: the
        caller then knows nothing new of any claim.
        """
        lost = []
        for token in tokens:
            try:
                self.renew(token, lease)
            except ClaimLost:
                lost.append(token)
        return lost

    def claim_many(self, flow_ids: Sequence[str], owner: str, lease: float) -> list[ClaimToken]:
        """Claim each flow as ``claim`` would (no force); the tokens of those
        granted, in the order asked. Flows held by others or gone are left
        out, never raised. One round trip for the batch where the backend
        allows (a replica taking over many orphans at once). On
        ``BackendUnavailable`` some claims may have been granted: drivers
        resolve that as ``claim`` does (read back, never claim twice)."""
        granted = []
        for flow_id in flow_ids:
            try:
                granted.append(self.claim(flow_id, owner, lease))
            except (ClaimHeld, FlowNotFound):
                continue
        return granted

    @abc.abstractmethod
    def release(self, token: ClaimToken) -> None:
        """Drop the claim at once so another replica can take the flow
        without waiting for the lease. ``ClaimLost`` if not current."""

    @abc.abstractmethod
    def current_claim(self, flow_id: str) -> ClaimInfo | None:
        """The live claim of the flow, or None."""

    @abc.abstractmethod
    def list_claims(self) -> list[ClaimInfo]:
        """Every live claim. Cost grows with the number of claims, not flows."""

    # -------------------------------------------------------- fenced writes

    def save_task(self, token: ClaimToken, task: TaskDetail) -> None:
        """One task detail: ``save_tasks`` with a list of one, so drivers
        implement the one write. Called through the class, not the instance:
        a wrapper put on an instance's two methods (tests and benchmarks
        count writes that way) then sees each call once, not twice."""
        type(self).save_tasks(self, token, [task])

    @abc.abstractmethod
    def save_tasks(self, token: ClaimToken, tasks: Sequence[TaskDetail]) -> None:
        """Create or replace task details, atomically conditional on
        ``token`` being current: all or none, in one round trip (one
        transaction). The runner stores one task's result together with the
        next task's start this way. ``ClaimLost`` if the token is not
        current; ``ResultTooLarge`` (before writing anything) for a record
        over ``max_record_bytes``. A driver whose server caps a request
        splits a batch larger than that limit into several fenced writes,
        in order (``limits.batches``). An empty list writes nothing."""

    @abc.abstractmethod
    def save_flow(self, token: ClaimToken, flow: FlowDetail) -> None:
        """Replace the flow record, conditional on ``token``. Keeps the
        runnable index in step with ``flow.state``: a flow in a state outside
        ``RUNNABLE_FLOW_STATES`` is no longer returned by ``find_runnable``.
        ``ResultTooLarge`` (before writing) for a record over ``max_record_bytes``."""

    def save_flows(self, writes: Sequence[tuple[ClaimToken, FlowDetail]]) -> list[bool]:
        """``save_flow`` of many claimed flows, each conditional on its own
        token, in a few round trips where the backend allows (a replica
        counting a batch of fresh claims on their records:
        ``engine.counting``). One answer per write: True once stored, False
        when its claim is not current or its flow is gone. Other errors are
        raised, and some of the records may then have been written. This
        default makes one call per flow."""
        done = []
        for token, flow in writes:
            try:
                self.save_flow(token, flow)
            except (ClaimLost, FlowNotFound):
                done.append(False)
            else:
                done.append(True)
        return done

    def save_run(self, token: ClaimToken, tasks: Sequence[TaskDetail], flow: FlowDetail) -> None:
        """``save_tasks`` then ``save_flow``, each conditional on ``token``,
        in one round trip where the backend allows (ZooKeeper: one
        ``multi``; Redis: one pipeline). A resumed flow's record (its resume
        history) travels with its first task start this way, so a survivor
        taking hundreds of orphans over pays one write fewer per flow. The
        task details are stored first: a failure leaves the flow record as
        it was, never ahead of its tasks. This default makes the two calls."""
        self.save_tasks(token, tasks)
        self.save_flow(token, flow)

    # ------------------------------------------------------------ discovery

    @abc.abstractmethod
    def find_runnable(self, limit: int) -> list[str]:
        """Up to ``limit`` ids of flows in a runnable state with no live
        claim (new flows and orphans), without scanning every stored flow."""

    def count_backlog(self) -> int:
        """How many runnable flows nobody holds now (unclaimed, or their
        lease ran out): the backlog gauge. Counted from the index
        ``find_runnable`` walks, never by reading records, and without its
        side effects (a watch re-armed, stale entries dropped): a hint, like
        ``find_runnable``'s answer."""
        return len(self.backlog(1_000_000))

    def backlog(self, limit: int) -> list[str]:
        """Up to ``limit`` ids of the backlog ``count_backlog`` counts, oldest
        first where the index keeps an order; side-effect free like it (for
        gauges and operators, from any thread)."""
        return self.find_runnable(limit)

    def wait_for_work(self, timeout: float) -> bool:
        """Block until ``find_runnable`` may have something new, or
        ``timeout`` seconds pass. Returns True if woken by a change (which
        changes: ``Capability.WATCH`` and ``NOTIFY``), False after the
        timeout. Drivers with neither capability wait out the timeout (or
        less, once closed) and return False."""
        return False

    # ------------------------------------------------------------- declines

    @abc.abstractmethod
    def record_decline(self, flow_id: str, decline: Decline) -> None:
        """Note that a replica cannot run the flow, and why. Not fenced: a
        decliner holds no claim, and declines never touch flow state."""

    @abc.abstractmethod
    def load_declines(self, flow_id: str) -> list[Decline]:
        """Every decline recorded for the flow, one per replica (latest wins)."""

    # ------------------------------------------------------------- replicas

    @abc.abstractmethod
    def register_replica(self, info: ReplicaInfo, lease: float) -> None:
        """Announce a live replica; it disappears ``lease`` seconds after its
        last heartbeat (or with its session)."""

    @abc.abstractmethod
    def heartbeat_replica(self, replica_id: str, lease: float) -> None:
        """Keep the replica's presence alive."""

    @abc.abstractmethod
    def unregister_replica(self, replica_id: str) -> None:
        """Remove the replica's presence now (graceful stop)."""

    @abc.abstractmethod
    def list_replicas(self) -> list[ReplicaInfo]:
        """Every live replica."""

    # ------------------------------------------------------------ handovers

    @abc.abstractmethod
    def request_handover(self, request: Handover) -> None:
        """Put ``request`` in its replica's mailbox, replacing one about the
        same flow (or the replica's drain). Not fenced: it asks, the owner
        decides. ``LimitExceeded`` when the mailbox holds ``MAX_HANDOVERS``."""

    @abc.abstractmethod
    def load_handovers(self, replica_id: str) -> list[Handover]:
        """The replica's mailbox, in one round trip: its owner reads it every
        lease interval. A corrupt request is skipped with a logged warning."""

    @abc.abstractmethod
    def clear_handover(self, replica_id: str, flow_id: str | None) -> None:
        """Remove the request about ``flow_id`` (None: the drain) from the
        replica's mailbox; nothing if there is none."""

    # ------------------------------------------------------------ lifecycle

    def add_state_listener(self, listener: StateListener) -> None:
        """Call ``listener(SUSPENDED|LOST|CONNECTED)`` on connection events.
        Only drivers with the "session" capability ever call it."""
        return None  # no connection events without sessions

    def warnings(self) -> list[str]:
        """Settings of the server that can lose claims or data, or let others
        read or change the records (e.g. open ZooKeeper ACLs accepted with
        ``?insecure_acl=warn``), in words; ``flowbaton check`` reports each as
        a problem. Found at open or on the first call, not on every call."""
        return []

    def close(self) -> None:
        """Release connections. Claims held are not released (a crash is
        the same as a close without release)."""
        return None  # nothing to close by default

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
