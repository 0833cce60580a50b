"""``sqlite:///relative.db`` or ``sqlite:////abs/path.db``: flows on one host.

Several processes and threads of one host share the file. The path follows the
SQLAlchemy convention: the part after ``sqlite:///`` is the path, so a fourth
slash makes it absolute. Options: ``busy_timeout`` (seconds a write waits for
another process's transaction, default 5) and ``synchronous`` (``NORMAL``, the
default: with WAL a power loss or OS crash may undo the commits made since
the last checkpoint, never corrupts, and a process crash loses nothing;
``FULL``: every commit is fsynced before it returns; docs/design.md has the
numbers). ``EXTRA`` is not offered: it differs from FULL only for rollback
journals, never in WAL mode.

Why it is built this way:

- WAL journal: readers never wait for a writer, so loads and operator reads go
  on while another process writes.
- Two connections per backend object, a writer and a reader, each behind its
  own lock. Threads of one process queue on a Python lock (microseconds)
  rather than in SQLite's busy handler, which sleeps in millisecond steps; the
  busy handler only arbitrates between processes, and when it gives up the
  caller gets ``BackendUnavailable`` instead of a hang.
- A fenced write that touches one table is ONE statement whose WHERE clause
  checks the claim. A write statement in autocommit mode takes the write lock
  before it reads anything, so the check and the write form one IMMEDIATE
  transaction without extra round trips. Writes over several tables (claim,
  delete) use an explicit ``BEGIN IMMEDIATE``. Every transaction is tiny: a
  process stopped inside one blocks every writer on the host.
- Batches (``renew_claims``, ``claim_many``) are one transaction of a fixed
  number of statements, the batch passed as one JSON parameter read with
  ``json_each``: a replica's renewals cost one commit per interval however
  many flows it runs. Needs SQLite's JSON functions (built in since 3.38,
  compiled into nearly every earlier build).
- Idle replicas watch ``PRAGMA data_version`` (``sqlite_watch``): no disk
  I/O while nothing changes, a wake-up within a tick of a submit, a release
  or a lease running out.
- Expiry is wall-clock ``time.time()`` (injectable): processes compare it.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from tenacity import wait_random

from . import limits
from .base import MAX_HANDOVERS, Backend, Capability
from .errors import (
    BackendUnavailable,
    BadBackendURL,
    ClaimHeld,
    ClaimLost,
    CorruptRecord,
    FlowExists,
    FlowNotFound,
)
from .mailbox import check_room, mailbox_key, read_mailbox
from .options import Option, parse_options
from .paging import check_cursor
from .records import ClaimInfo, ClaimToken, Decline, FlowDetail, Handover, ReplicaInfo, TaskDetail
from .redact import redact_url
from .retrying import RetryPolicy
from .sqlite_watch import WorkWatch
from .states import RUNNABLE_FLOW_STATES

__all__ = ["SCHEMA_VERSION", "SQLiteBackend"]

_LOG = logging.getLogger("flowbaton.backends.sqlite")

T = TypeVar("T")

#: Stored in ``PRAGMA user_version``; a newer file is refused, not guessed at.
SCHEMA_VERSION = 1

_OPTIONS = {
    "busy_timeout": Option(float, 5.0, "seconds a write waits for another process's lock"),
    "synchronous": Option(
        str, "NORMAL", "NORMAL (WAL, no fsync per commit) or FULL", ("NORMAL", "FULL")
    ),
    "max_record_bytes": limits.option(limits.DEFAULT_MAX_RECORD_BYTES),
}

# flows.seq (AUTOINCREMENT) orders "oldest first" and never reuses a number;
# flows.last_epoch outlives released claims so every claim gets a larger epoch.
# Added after version 1 without a version bump: a table older versions never
# read, created in files of version 1 when it is missing (``_prepare_file``).
_HANDOVERS_TABLE = """CREATE TABLE IF NOT EXISTS handovers (
        replica_id TEXT NOT NULL, key TEXT NOT NULL, record TEXT NOT NULL,
        PRIMARY KEY (replica_id, key)) WITHOUT ROWID"""
_HAS_HANDOVERS = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'handovers'"
_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS flows (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        state TEXT NOT NULL,
        runnable INTEGER NOT NULL,
        last_epoch INTEGER NOT NULL DEFAULT 0,
        record TEXT NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS flows_by_state ON flows (state)",
    "CREATE INDEX IF NOT EXISTS flows_runnable ON flows (runnable)",
    """CREATE TABLE IF NOT EXISTS tasks (
        flow_id TEXT NOT NULL, task_id TEXT NOT NULL, record TEXT NOT NULL,
        PRIMARY KEY (flow_id, task_id)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS claims (
        flow_id TEXT PRIMARY KEY, claim_id TEXT NOT NULL, epoch INTEGER NOT NULL,
        claimed_at REAL NOT NULL, expires_at REAL NOT NULL) WITHOUT ROWID""",
    "CREATE INDEX IF NOT EXISTS claims_by_expiry ON claims (expires_at)",
    """CREATE TABLE IF NOT EXISTS declines (
        flow_id TEXT NOT NULL, replica_id TEXT NOT NULL, record TEXT NOT NULL,
        PRIMARY KEY (flow_id, replica_id)) WITHOUT ROWID""",
    """CREATE TABLE IF NOT EXISTS replicas (
        replica_id TEXT PRIMARY KEY, record TEXT NOT NULL,
        expires_at REAL NOT NULL) WITHOUT ROWID""",
    _HANDOVERS_TABLE,
    f"PRAGMA user_version = {SCHEMA_VERSION}",
)

# A claim lives while its expiry is a number in the future. A hand-edited
# expiry that is text (which SQLite sorts above every number) counts as
# expired, not as a claim that never ends.
_LIVE = "(typeof({0}) IN ('integer', 'real') AND {0} > :now)"
_CURRENT = (
    "flow_id = :flow_id AND claim_id = :claim_id AND epoch = :epoch AND "
    + _LIVE.format("expires_at")
)
_CLAIM_IS_CURRENT = f"EXISTS (SELECT 1 FROM claims WHERE {_CURRENT})"

_INSERT_FLOW = (
    "INSERT INTO flows (id, state, runnable, record) VALUES (:id, :state, :runnable, :record)"
)
_SELECT_FLOW = "SELECT record FROM flows WHERE id = :flow_id"
_FLOW_IDS = "SELECT id FROM flows WHERE id >= :low AND id < :high ORDER BY id LIMIT :limit"
_SELECT_TASKS = (
    "SELECT t.task_id, t.record FROM flows f LEFT JOIN tasks t ON t.flow_id = f.id"
    " WHERE f.id = :flow_id"
)
_SAVE_TASK = (
    "INSERT OR REPLACE INTO tasks (flow_id, task_id, record)"
    f" SELECT :flow_id, :task_id, :record WHERE {_CLAIM_IS_CURRENT}"
)
_SAVE_FLOW = (
    "UPDATE flows SET record = :record, state = :state, runnable = :runnable"
    f" WHERE id = :flow_id AND {_CLAIM_IS_CURRENT}"
)
_RENEW = f"UPDATE claims SET expires_at = :expires_at WHERE {_CURRENT}"
_RELEASE = f"DELETE FROM claims WHERE {_CURRENT}"
_CHECK_CLAIM = f"SELECT {_CLAIM_IS_CURRENT}"
_DELETE_FLOW = tuple(
    f"DELETE FROM {table} WHERE {column} = :flow_id"
    for table, column in (("tasks", "flow_id"), ("declines", "flow_id"),
                          ("claims", "flow_id"), ("flows", "id"))
)
_SELECT_FOR_CLAIM = (
    "SELECT f.last_epoch, c.claim_id, c.expires_at FROM flows f"
    " LEFT JOIN claims c ON c.flow_id = f.id WHERE f.id = :flow_id"
)
_BUMP_EPOCH = "UPDATE flows SET last_epoch = :epoch WHERE id = :flow_id"
_PUT_CLAIM = (
    "INSERT OR REPLACE INTO claims (flow_id, claim_id, epoch, claimed_at, expires_at)"
    " VALUES (:flow_id, :claim_id, :epoch, :now, :expires_at)"
)
# Batches travel as one JSON parameter read by json_each (no limit on the
# number of bound variables, one statement whatever the batch size).
_TOKENS = (
    "SELECT json_extract(value, '$[0]') AS flow_id, json_extract(value, '$[1]') AS claim_id,"
    " json_extract(value, '$[2]') AS epoch FROM json_each(:tokens)"
)
_RENEW_MANY = (
    "UPDATE claims SET expires_at = :expires_at"
    f" WHERE (flow_id, claim_id, epoch) IN ({_TOKENS}) AND {_LIVE.format('expires_at')}"
)
# Read inside the same transaction: the rows that now carry this call's
# expiry are the ones just renewed (an unrenewed row of one of these exact
# tokens cannot hold a value computed a moment ago by this call).
_RENEWED = (
    "SELECT flow_id, claim_id, epoch FROM claims"
    f" WHERE (flow_id, claim_id, epoch) IN ({_TOKENS}) AND expires_at = :expires_at"
)
_SELECT_MANY_FOR_CLAIM = (
    "SELECT f.id, f.last_epoch, c.claim_id, c.expires_at FROM json_each(:flow_ids) j"
    " JOIN flows f ON f.id = j.value LEFT JOIN claims c ON c.flow_id = f.id"
)
_BUMP_EPOCHS = (
    "UPDATE flows SET last_epoch = last_epoch + 1"
    " WHERE id IN (SELECT json_extract(value, '$[0]') FROM json_each(:tokens))"
)
_PUT_CLAIMS = (
    "INSERT OR REPLACE INTO claims (flow_id, claim_id, epoch, claimed_at, expires_at)"
    f" SELECT flow_id, claim_id, epoch, :now, :expires_at FROM ({_TOKENS})"
)
_CLAIM_COLUMNS = "flow_id, claim_id, epoch, claimed_at, expires_at"
_SELECT_CLAIM = (
    f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE flow_id = :flow_id AND {_LIVE.format('expires_at')}"
)
_SELECT_CLAIMS = (
    f"SELECT {_CLAIM_COLUMNS} FROM claims WHERE {_LIVE.format('expires_at')} ORDER BY flow_id"
)
# Walks the runnable index in creation order and probes the claims primary
# key: terminal flows are never read, and no record is decoded.
_BACKLOG = (
    "FROM flows f LEFT JOIN claims c ON c.flow_id = f.id"
    f" WHERE f.runnable = 1 AND (c.flow_id IS NULL OR NOT {_LIVE.format('c.expires_at')})"
)
_FIND_RUNNABLE = f"SELECT f.id {_BACKLOG} ORDER BY f.seq LIMIT :limit"
_COUNT_BACKLOG = f"SELECT count(*) {_BACKLOG}"
_RECORD_DECLINE = (
    "INSERT OR REPLACE INTO declines (flow_id, replica_id, record)"
    " SELECT :flow_id, :replica_id, :record WHERE EXISTS (SELECT 1 FROM flows WHERE id = :flow_id)"
)
_SELECT_DECLINES = (
    "SELECT d.replica_id, d.record FROM flows f LEFT JOIN declines d ON d.flow_id = f.id"
    " WHERE f.id = :flow_id ORDER BY d.replica_id"
)
_PUT_REPLICA = (
    "INSERT OR REPLACE INTO replicas (replica_id, record, expires_at)"
    " VALUES (:replica_id, :record, :expires_at)"
)
_HEARTBEAT = "UPDATE replicas SET expires_at = :expires_at WHERE replica_id = :replica_id"
_UNREGISTER = "DELETE FROM replicas WHERE replica_id = :replica_id"
_PUT_HANDOVER = "INSERT OR REPLACE INTO handovers (replica_id, key, record) VALUES (:replica_id, :key, :record)"
_ROOM_FOR_HANDOVER = (
    "SELECT count(*), coalesce(max(key = :key), 0) FROM handovers WHERE replica_id = :replica_id"
)
_SELECT_HANDOVERS = f"SELECT key, record FROM handovers WHERE replica_id = :replica_id LIMIT {MAX_HANDOVERS}"
_CLEAR_HANDOVER = "DELETE FROM handovers WHERE replica_id = :replica_id AND key = :key"
_SELECT_REPLICAS = (
    "SELECT replica_id, record FROM replicas WHERE expires_at > :now ORDER BY replica_id"
)

# Messages of a file that is damaged or not SQLite at all: data to look at,
# not an outage to retry.
_CORRUPT_MARKERS = ("malformed", "not a database", "file is encrypted")


def _path_from_url(url: str) -> str:
    """The database file a URL names, made absolute now so a later chdir
    cannot move it."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite" or parts.netloc:
        raise BadBackendURL(
            f"{redact_url(url)!r}: expected sqlite:///relative.db or sqlite:////absolute/path.db (no host)"
        )
    path = unquote(parts.path[1:])
    if not path or path == ":memory:" or path.startswith("file:"):
        raise BadBackendURL(
            f"{redact_url(url)!r}: name a database file; an in-memory SQLite database cannot be "
            "shared between connections (use memory:// instead)"
        )
    return os.path.abspath(path)


def _create_private(path: str) -> None:
    """Create the database file readable by its owner only (0600): records
    hold arguments and results. SQLite gives the -wal and -shm files the
    database file's mode. An existing file keeps its mode (the operator's
    choice); any other failure is left for SQLite's open to report."""
    with suppress(OSError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _is_busy(err: BaseException) -> bool:
    return isinstance(err, sqlite3.OperationalError) and "locked" in str(err)


def _runnable(state: str) -> int:
    return int(state in RUNNABLE_FLOW_STATES)


def _text(raw: bytes) -> str | bytes:
    """A TEXT value as ``str``; one that is not UTF-8 (written by hand) as
    the bytes stored, which the record decoders report as ``CorruptRecord``
    naming the row. sqlite3's default raises OperationalError for the whole
    query instead: one bad row would fail a listing, as BackendUnavailable."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw


def _is_live(expires_at: Any, now: float) -> bool:
    """``_LIVE`` in Python: a number in the future."""
    return isinstance(expires_at, (int, float)) and expires_at > now


def _new_claim_id(owner: str) -> str:
    return f"{owner}#{uuid.uuid4().hex[:12]}"


def _json(value: object) -> str:
    # ensure_ascii=False: ids go to SQLite as UTF-8, not as \u escapes
    # (older SQLite JSON parsers mishandle escaped surrogate pairs).
    return json.dumps(value, ensure_ascii=False)


def _tokens_json(tokens: Sequence[ClaimToken]) -> str:
    """Tokens as the JSON array of ``[flow_id, claim_id, epoch]`` ``_TOKENS`` reads."""
    return _json([[t.flow_id, t.claim_id, t.epoch] for t in tokens])


class SQLiteBackend(Backend):
    """Records and claims in one SQLite file (WAL), shared by the host's processes.

    ``Capability.WATCH``: ``wait_for_work`` wakes on every change that can
    make a flow runnable. Each is a commit (a submit, a release, a delete)
    that changes the flows or claims summary the watch compares, or a lease
    running out, which the watch finds at the earliest live expiry it
    read. The replicas' claim loops therefore poll rarely (1 s) and wait
    on the watch in between.
    """

    schemes = ("sqlite",)
    capabilities = frozenset({Capability.SHARED, Capability.WATCH})

    def __init__(
        self,
        url: str,
        *,
        busy_timeout: float = 5.0,
        synchronous: str = "NORMAL",
        clock: Callable[[], float] = time.time,
        max_record_bytes: int = limits.DEFAULT_MAX_RECORD_BYTES,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise BadBackendURL(f"option 'synchronous': {synchronous!r} is not one of NORMAL, FULL")
        self.url = url
        self.path = _path_from_url(url)
        self._busy_timeout = busy_timeout
        self._synchronous = synchronous
        self.max_record_bytes = limits.checked_limit(max_record_bytes)
        self._clock = clock
        self._closed = threading.Event()
        _create_private(self.path)
        self._setup_connections()
        self._prepare_file()
        self._watch = WorkWatch(self._read_row, clock, self._closed)

    @classmethod
    def from_url(cls, url: str, **options: object) -> SQLiteBackend:
        parsed = parse_options(urlsplit(url).query, _OPTIONS, options)
        return cls(url, busy_timeout=parsed["busy_timeout"], synchronous=parsed["synchronous"],
                   max_record_bytes=parsed["max_record_bytes"])

    # ------------------------------------------------------------ connections

    def _setup_connections(self) -> None:
        self._pid = os.getpid()
        self._write_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._writer = self._connect()
        self._reader = self._connect()

    def _connect(self) -> sqlite3.Connection:
        """A connection in autocommit mode (we issue BEGIN ourselves); it is
        used by one thread at a time, under its lock."""
        with self._translated("open"):
            conn = sqlite3.connect(
                self.path, timeout=self._busy_timeout, isolation_level=None,
                check_same_thread=False, cached_statements=64,
            )
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        conn.text_factory = _text
        return conn

    def _prepare_file(self) -> None:
        with self._translated("prepare"):
            self._enable_wal()
            version = self._writer.execute("PRAGMA user_version").fetchone()[0]
            if version != SCHEMA_VERSION or self._writer.execute(_HAS_HANDOVERS).fetchone() is None:
                self._create_schema()

    def _enable_wal(self) -> None:
        """Switch the file to WAL (persistent, so usually a no-op). The switch
        needs a moment of exclusive access; processes opening the file at once
        may see 'locked', so retry it within the busy timeout."""
        policy = RetryPolicy(self._busy_timeout, wait_random(0.005, 0.05), _is_busy)
        mode = policy.run(lambda retried: self._writer.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        if str(mode).lower() != "wal":
            raise BackendUnavailable(f"sqlite {self.path}: cannot use WAL journal (got {mode!r})")

    def _create_schema(self) -> None:
        with self._transaction("create schema") as conn:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise CorruptRecord(
                    self.path, f"schema version {version} is newer than this flowbaton "
                    f"understands ({SCHEMA_VERSION}); upgrade flowbaton",
                )
            for statement in _SCHEMA:
                conn.execute(statement)

    def _check_process(self) -> None:
        """A forked child must not use its parent's connections (SQLite's
        rule) nor locks another thread may have held at fork time: it opens
        its own. The inherited connections are left unclosed on purpose."""
        if self._closed.is_set():
            raise BackendUnavailable(f"sqlite {self.path}: backend is closed")
        if self._pid != os.getpid():
            self._inherited = (self._writer, self._reader)
            self._setup_connections()
            self._watch.reset()

    @contextmanager
    def _translated(self, what: str) -> Iterator[None]:
        """Turn sqlite3 errors into ours, naming the file and the operation."""
        try:
            yield
        except sqlite3.Error as err:
            if any(marker in str(err) for marker in _CORRUPT_MARKERS):
                raise CorruptRecord(self.path, f"{what}: {err}") from err
            hint = f" (busy_timeout={self._busy_timeout}s)" if _is_busy(err) else ""
            raise BackendUnavailable(f"sqlite {self.path}: {what}: {err}{hint}") from err

    @contextmanager
    def _locked(self, lock: threading.Lock, what: str) -> Iterator[None]:
        """Threads queued behind one stuck in SQLite's busy wait give up
        after the same timeout, instead of each adding a full wait of its own."""
        if not lock.acquire(timeout=self._busy_timeout):
            raise BackendUnavailable(
                f"sqlite {self.path}: {what}: another thread of this process has waited "
                f"longer than busy_timeout={self._busy_timeout}s for the database"
            )
        try:
            yield
        finally:
            lock.release()

    @contextmanager
    def _writing(self, what: str) -> Iterator[sqlite3.Connection]:
        self._check_process()
        with self._locked(self._write_lock, what), self._translated(what):
            yield self._writer

    @contextmanager
    def _reading(self, what: str) -> Iterator[sqlite3.Connection]:
        self._check_process()
        with self._locked(self._read_lock, what), self._translated(what):
            yield self._reader

    @contextmanager
    def _transaction(self, what: str) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` takes the write lock first, so nothing read
        inside can be changed by another process before COMMIT. Any failure
        (ours or SQLite's, COMMIT included) rolls back."""
        with self._writing(what) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            finally:
                if conn.in_transaction:
                    with suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")

    def _fence(self, token: ClaimToken, **extra: object) -> dict[str, object]:
        # ``now`` is read before SQLite's busy wait, so a write may pass the
        # expiry check up to busy_timeout late. That is safe: it only passes if
        # the claim row is still ours, i.e. nobody has taken the flow over yet,
        # and a takeover is serialised after it and reads what it wrote.
        now = self._clock()
        return {"flow_id": token.flow_id, "claim_id": token.claim_id,
                "epoch": token.epoch, "now": now, **extra}

    def _fenced(self, sql: str, token: ClaimToken, what: str, **extra: object) -> None:
        """One conditional statement; no row changed means the token is not current."""
        with self._writing(what) as conn:
            changed = conn.execute(sql, self._fence(token, **extra)).rowcount
        if changed == 0:
            raise self._claim_lost(token)

    @staticmethod
    def _claim_lost(token: ClaimToken) -> ClaimLost:
        return ClaimLost(
            f"claim {token.claim_id}@{token.epoch} on flow {token.flow_id} is not current"
        )

    def _where(self, table: str, **key: str) -> str:
        names = " ".join(f"{name}={value!r}" for name, value in key.items())
        return f"{self.path} table {table} {names}"

    # ------------------------------------------------------------------ flows

    def create_flow(self, flow: FlowDetail) -> None:
        record = limits.check_new_flow(flow, self.max_record_bytes).decode()
        row = {"id": flow.id, "state": flow.state, "runnable": _runnable(flow.state), "record": record}
        with self._writing(f"create flow {flow.id!r}") as conn:
            try:
                conn.execute(_INSERT_FLOW, row)
            except sqlite3.IntegrityError:
                raise FlowExists(f"flow {flow.id!r} already exists in {self.path}") from None

    def load_flow(self, flow_id: str) -> FlowDetail:
        with self._reading(f"load flow {flow_id!r}") as conn:
            row = conn.execute(_SELECT_FLOW, {"flow_id": flow_id}).fetchone()
        if row is None:
            raise FlowNotFound(f"no flow {flow_id!r} in {self.path}")
        return FlowDetail.from_json(row[0], self._where("flows", id=flow_id))

    def load_tasks(self, flow_id: str) -> dict[str, TaskDetail]:
        with self._reading(f"load tasks of {flow_id!r}") as conn:
            rows = conn.execute(_SELECT_TASKS, {"flow_id": flow_id}).fetchall()
        if not rows:
            raise FlowNotFound(f"no flow {flow_id!r} in {self.path}")
        where = self._where
        return {
            task_id: TaskDetail.from_json(raw, where("tasks", flow_id=flow_id, task_id=task_id), key=task_id)
            for task_id, raw in rows
            if task_id is not None
        }

    def list_flows(self, states: Collection[str] | None = None) -> list[FlowDetail]:
        rows = self._flow_rows(states)
        flows: list[FlowDetail] = []
        for flow_id, raw in rows:
            try:
                flows.append(FlowDetail.from_json(raw, self._where("flows", id=flow_id)))
            except CorruptRecord as err:
                _LOG.warning("list_flows skips flow %r: %s", flow_id, err)
        return flows

    def _flow_rows(self, states: Collection[str] | None) -> list[Any]:
        wanted = sorted(states) if states is not None else []
        where = f"WHERE state IN ({', '.join('?' * len(wanted))})" if states is not None else ""
        sql = f"SELECT id, record FROM flows {where} ORDER BY seq"
        with self._reading("list flows") as conn:
            return conn.execute(sql, wanted).fetchall()

    def page_flows(self, states: Collection[str] | None, after: str | None, limit: int
                   ) -> tuple[list[FlowDetail], str | None]:
        # The cursor is the last row's seq: one indexed range per page.
        wanted = sorted(states) if states is not None else []
        where = f"AND state IN ({', '.join('?' * len(wanted))})" if states is not None else ""
        sql = f"SELECT seq, id, record FROM flows WHERE seq > ? {where} ORDER BY seq LIMIT ?"
        start = int(check_cursor(after) or 0)
        with self._reading("list a page of flows") as conn:
            rows = conn.execute(sql, [start, *wanted, limit + 1]).fetchall()
        more, rows = len(rows) > limit, rows[:limit]
        flows = self._readable(rows, lambda row: FlowDetail.from_json(row[2], self._where("flows", id=row[1])))
        return flows, (str(rows[-1][0]) if more and rows else None)

    def flow_ids(self, prefix: str, limit: int) -> list[str]:
        # A range on the unique index of ids (BINARY order): every id with the
        # prefix sorts at or after it and before it + the largest character.
        with self._reading("list flow ids") as conn:
            rows = conn.execute(_FLOW_IDS, {"low": prefix, "high": prefix + "\U0010ffff", "limit": limit})
            return [row[0] for row in rows.fetchall()]

    def delete_flow(self, token: ClaimToken) -> None:
        with self._transaction(f"delete flow {token.flow_id!r}") as conn:
            if not conn.execute(_CHECK_CLAIM, self._fence(token)).fetchone()[0]:
                raise self._claim_lost(token)
            for statement in _DELETE_FLOW:
                conn.execute(statement, {"flow_id": token.flow_id})

    # ----------------------------------------------------------------- claims

    def claim(self, flow_id: str, owner: str, lease: float, *, force: bool = False) -> ClaimToken:
        claim_id = _new_claim_id(owner)
        with self._transaction(f"claim flow {flow_id!r}") as conn:
            now = self._clock()  # read under the write lock: the wait is not counted
            row = conn.execute(_SELECT_FOR_CLAIM, {"flow_id": flow_id}).fetchone()
            if row is None:
                raise FlowNotFound(f"no flow {flow_id!r} in {self.path}")
            last_epoch, holder, expires_at = row
            if holder is not None and _is_live(expires_at, now) and not force:
                raise ClaimHeld(f"flow {flow_id} is claimed by {holder}")
            epoch = self._next_epoch(flow_id, last_epoch)
            conn.execute(_BUMP_EPOCH, {"flow_id": flow_id, "epoch": epoch})
            conn.execute(_PUT_CLAIM, {"flow_id": flow_id, "claim_id": claim_id, "epoch": epoch,
                                      "now": now, "expires_at": now + lease})
        return ClaimToken(flow_id, claim_id, epoch)

    def claim_many(self, flow_ids: Sequence[str], owner: str, lease: float) -> list[ClaimToken]:
        """One transaction of at most three statements whatever the batch: read
        every asked flow's epoch and claim, then bump the epochs and write
        the claims of the free ones. It commits all or nothing, so there is
        no partly granted batch to resolve."""
        if not flow_ids:
            return []
        with self._transaction(f"claim {len(flow_ids)} flows") as conn:
            now = self._clock()  # under the write lock, as in claim
            rows = conn.execute(_SELECT_MANY_FOR_CLAIM, {"flow_ids": _json(list(flow_ids))}).fetchall()
            granted = self._grantable(flow_ids, rows, owner, now)
            if granted:
                params = {"tokens": _tokens_json(granted), "now": now, "expires_at": now + lease}
                conn.execute(_BUMP_EPOCHS, params)
                conn.execute(_PUT_CLAIMS, params)
        return granted

    def _grantable(self, flow_ids: Sequence[str], rows: list[Any], owner: str, now: float) -> list[ClaimToken]:
        """The tokens ``claim`` would grant, in the order asked, each flow
        once: not those gone or held by a live claim."""
        found = {row[0]: row for row in rows}
        granted = []
        for flow_id in dict.fromkeys(flow_ids):
            if flow_id not in found:
                continue
            _, last_epoch, holder, expires_at = found[flow_id]
            if holder is None or not _is_live(expires_at, now):
                granted.append(ClaimToken(flow_id, _new_claim_id(owner), self._next_epoch(flow_id, last_epoch)))
        return granted

    def _next_epoch(self, flow_id: str, last_epoch: Any) -> int:
        if not isinstance(last_epoch, int):
            raise CorruptRecord(self._where("flows", id=flow_id), "last_epoch is not an integer")
        return last_epoch + 1

    def renew(self, token: ClaimToken, lease: float) -> None:
        expires_at = self._clock() + lease
        self._fenced(_RENEW, token, f"renew claim on {token.flow_id!r}", expires_at=expires_at)

    def renew_claims(self, tokens: Sequence[ClaimToken], lease: float) -> list[ClaimToken]:
        """One transaction of two statements whatever the number: renew
        every current token, then read back which rows carry the new
        expiry (``_RENEWED``); the others were not current."""
        if not tokens:
            return []
        with self._transaction(f"renew {len(tokens)} claims") as conn:
            now = self._clock()
            params = {"tokens": _tokens_json(tokens), "now": now, "expires_at": now + lease}
            conn.execute(_RENEW_MANY, params)
            renewed = set(conn.execute(_RENEWED, params).fetchall())
        return [t for t in tokens if (t.flow_id, t.claim_id, t.epoch) not in renewed]

    def release(self, token: ClaimToken) -> None:
        self._fenced(_RELEASE, token, f"release claim on {token.flow_id!r}")

    def current_claim(self, flow_id: str) -> ClaimInfo | None:
        params = {"flow_id": flow_id, "now": self._clock()}
        with self._reading(f"read claim on {flow_id!r}") as conn:
            row = conn.execute(_SELECT_CLAIM, params).fetchone()
        return ClaimInfo.from_row(row, self._where("claims", flow_id=flow_id)) if row else None

    def list_claims(self) -> list[ClaimInfo]:
        with self._reading("list claims") as conn:
            rows = conn.execute(_SELECT_CLAIMS, {"now": self._clock()}).fetchall()
        return self._readable(rows, lambda row: ClaimInfo.from_row(row, self._where("claims", flow_id=row[0])))

    @staticmethod
    def _readable(rows: list[Any], decode: Callable[[Any], T]) -> list[T]:
        """Decoded rows of a listing; a corrupt one is logged and skipped."""
        found: list[T] = []
        for row in rows:
            try:
                found.append(decode(row))
            except CorruptRecord as err:
                _LOG.warning("skipping %s", err)
        return found

    # ---------------------------------------------------------- fenced writes

    def _sized(self, record: str, what: str) -> str:
        return limits.fitting(record, self.max_record_bytes, what)

    def _task_record(self, token: ClaimToken, task: TaskDetail) -> str:
        return self._sized(task.to_json(), f"task {task.task_id!r} of flow {token.flow_id!r}")

    def save_tasks(self, token: ClaimToken, tasks: Sequence[TaskDetail]) -> None:
        if len(tasks) == 1:
            self._save_one(token, tasks[0])
        elif tasks:
            self._save_several(token, tasks)

    def _save_one(self, token: ClaimToken, task: TaskDetail) -> None:
        """One statement in autocommit mode: no BEGIN/COMMIT round trips."""
        record = self._task_record(token, task)
        self._fenced(_SAVE_TASK, token, f"save task {task.task_id!r} of {token.flow_id!r}",
                     task_id=task.task_id, record=record)

    def _save_several(self, token: ClaimToken, tasks: Sequence[TaskDetail]) -> None:
        rows = [self._fence(token, task_id=t.task_id, record=self._task_record(token, t)) for t in tasks]
        # One transaction, one commit: every statement re-checks the token,
        # and a refusal rolls back the ones before it.
        with self._transaction(f"save {len(rows)} tasks of {token.flow_id!r}") as conn:
            for row in rows:
                if conn.execute(_SAVE_TASK, row).rowcount == 0:
                    raise self._claim_lost(token)

    def save_flow(self, token: ClaimToken, flow: FlowDetail) -> None:
        record = self._sized(flow.to_json(), f"flow {token.flow_id!r}")
        self._fenced(_SAVE_FLOW, token, f"save flow {token.flow_id!r}", record=record,
                     state=flow.state, runnable=_runnable(flow.state))

    # -------------------------------------------------------------- discovery

    def find_runnable(self, limit: int) -> list[str]:
        params = {"now": self._clock(), "limit": limit}
        with self._reading("find runnable flows") as conn:
            rows = conn.execute(_FIND_RUNNABLE, params).fetchall()
        return [row[0] for row in rows if isinstance(row[0], str)]  # not text: no id we wrote (_text)

    def count_backlog(self) -> int:
        with self._reading("count the backlog") as conn:
            return int(conn.execute(_COUNT_BACKLOG, {"now": self._clock()}).fetchone()[0])

    def wait_for_work(self, timeout: float) -> bool:
        """Wakes on a submit, a claim taken or ended, and a lease running
        out, within ``sqlite_watch.TICK`` (which says how, at what cost)."""
        try:
            self._check_process()  # a forked child resets the watch first
            return self._watch.wait(timeout)
        except BackendUnavailable:
            if self._closed.is_set():
                return False  # closed while looking
            raise

    def _read_row(self, sql: str, params: Mapping[str, object]) -> Any:
        with self._reading("watch for work") as conn:
            return conn.execute(sql, params).fetchone()

    # --------------------------------------------------------------- declines

    def record_decline(self, flow_id: str, decline: Decline) -> None:
        record = self._sized(decline.to_json(), f"decline of flow {flow_id!r}")
        row = {"flow_id": flow_id, "replica_id": decline.replica_id, "record": record}
        with self._writing(f"record decline on {flow_id!r}") as conn:
            changed = conn.execute(_RECORD_DECLINE, row).rowcount
        if changed == 0:
            raise FlowNotFound(f"no flow {flow_id!r} in {self.path}")

    def load_declines(self, flow_id: str) -> list[Decline]:
        with self._reading(f"load declines of {flow_id!r}") as conn:
            rows = conn.execute(_SELECT_DECLINES, {"flow_id": flow_id}).fetchall()
        if not rows:
            raise FlowNotFound(f"no flow {flow_id!r} in {self.path}")
        return [
            Decline.from_json(raw, self._where("declines", flow_id=flow_id, replica_id=replica))
            for replica, raw in rows
            if replica is not None
        ]

    # --------------------------------------------------------------- replicas

    def register_replica(self, info: ReplicaInfo, lease: float) -> None:
        info.seen_at = self._clock()
        row = {"replica_id": info.replica_id, "record": self._sized(info.to_json(), f"replica {info.replica_id!r}"),
               "expires_at": info.seen_at + lease}
        with self._writing(f"register replica {info.replica_id!r}") as conn:
            conn.execute(_PUT_REPLICA, row)

    def heartbeat_replica(self, replica_id: str, lease: float) -> None:
        row = {"replica_id": replica_id, "expires_at": self._clock() + lease}
        with self._writing(f"heartbeat replica {replica_id!r}") as conn:
            conn.execute(_HEARTBEAT, row)

    def unregister_replica(self, replica_id: str) -> None:
        with self._writing(f"unregister replica {replica_id!r}") as conn:
            conn.execute(_UNREGISTER, {"replica_id": replica_id})

    def list_replicas(self) -> list[ReplicaInfo]:
        with self._reading("list replicas") as conn:
            rows = conn.execute(_SELECT_REPLICAS, {"now": self._clock()}).fetchall()
        return self._readable(
            rows, lambda row: ReplicaInfo.from_json(row[1], self._where("replicas", replica_id=row[0])))

    # -------------------------------------------------------------- handovers

    def request_handover(self, request: Handover) -> None:
        row = {"replica_id": request.replica_id, "key": mailbox_key(request.flow_id),
               "record": self._sized(request.to_json(), f"handover request to replica {request.replica_id!r}")}
        with self._transaction(f"request handover from {request.replica_id!r}") as conn:
            held, present = conn.execute(_ROOM_FOR_HANDOVER, row).fetchone()
            check_room(held, bool(present), MAX_HANDOVERS, request.replica_id)
            conn.execute(_PUT_HANDOVER, row)

    def load_handovers(self, replica_id: str) -> list[Handover]:
        with self._reading(f"load handovers of {replica_id!r}") as conn:
            rows = conn.execute(_SELECT_HANDOVERS, {"replica_id": replica_id}).fetchall()
        return read_mailbox(replica_id, rows, lambda key: self._where("handovers", replica_id=replica_id, key=key))

    def clear_handover(self, replica_id: str, flow_id: str | None) -> None:
        with self._writing(f"clear handover of {replica_id!r}") as conn:
            conn.execute(_CLEAR_HANDOVER, {"replica_id": replica_id, "key": mailbox_key(flow_id)})

    # ------------------------------------------------------------- inspection

    def pragma(self, name: str) -> Any:
        """The value of ``PRAGMA <name>`` on the connection that writes: the
        settings in force (``synchronous``, ``busy_timeout``, ...), for
        tools and tests."""
        if not name.isidentifier():
            raise ValueError(f"not a PRAGMA name: {name!r}")
        with self._writing(f"read PRAGMA {name}") as conn:
            return conn.execute(f"PRAGMA {name}").fetchone()[0]

    def trace_statements(self, callback: Callable[[str], object] | None) -> None:
        """Call ``callback(sql)`` for every statement either connection
        runs (BEGIN and COMMIT included); None stops. For tests and tools
        that count what an operation costs."""
        for lock, conn in ((self._write_lock, self._writer), (self._read_lock, self._reader)):
            with lock:
                conn.set_trace_callback(callback)

    def find_runnable_plan(self) -> str:
        """SQLite's ``EXPLAIN QUERY PLAN`` of the ``find_runnable`` query, as
        text: shows that it walks the runnable index, never every flow."""
        with self._reading("explain find_runnable") as conn:
            rows = conn.execute("EXPLAIN QUERY PLAN " + _FIND_RUNNABLE, {"now": 0.0, "limit": 1}).fetchall()
        return str(rows)

    # -------------------------------------------------------------- lifecycle

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for lock, conn in ((self._write_lock, self._writer), (self._read_lock, self._reader)):
            with lock, suppress(sqlite3.Error):
                conn.close()
