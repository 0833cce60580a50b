"""The stored records: plain dataclasses that round-trip through JSON.

Backends know these records and nothing about tasks or flows. Every reader
goes through ``*.from_json`` so a damaged record becomes a ``CorruptRecord``
naming where it was found, never a ``KeyError`` deep in a replica.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from .errors import CorruptRecord
from .states import FLOW_STATES, PENDING, TASK_STATES

__all__ = [
    "nests_deeper",
    "SCHEMA_VERSION",
    "FlowDetail",
    "TaskDetail",
    "ClaimToken",
    "ClaimInfo",
    "StoredRun",
    "ReplicaInfo",
    "Decline",
    "Handover",
    "MAX_DEPTH",
    "dumps",
    "load_json",
    "owner_of",
]

SCHEMA_VERSION = 1

JSON = Any  # a plain JSON value; the engine's codec guarantees it


def dumps(value: JSON) -> str:
    """Compact, deterministic JSON; records are meant to be read by people too."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)


#: The deepest nesting a record may have. Far more than any result needs,
#: far from Python's recursion limit: readers of a decoded value (the codec,
#: ``json.dumps``) recurse once per level, and a record nested 100,000 deep
#: would raise ``RecursionError`` deep inside a replica or the CLI.
MAX_DEPTH = 256

def nests_deeper(value: Any, limit: int) -> bool:
    """Whether ``value``'s lists and dicts nest deeper than ``limit``;
    level by level, so it is linear in the number of containers and never
    recurses (a hostile value cannot exhaust the stack being measured)."""
    level = [value]
    for _ in range(limit):
        level = [item for node in level if isinstance(node, (list, dict))
                 for item in (node.values() if isinstance(node, dict) else node)]
        if not level:
            return False
    return any(isinstance(node, (list, dict)) for node in level)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


def load_json(raw: str | bytes, where: str, what: str = "record") -> Any:
    """Decode one stored JSON value, or raise ``CorruptRecord`` naming
    ``where``: not UTF-8, not JSON, nested deeper than ``MAX_DEPTH``, or
    holding NaN/Infinity or a number no float can hold (a record that read
    back could never be written again, ``dumps`` refuses them)."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, (bytes, bytearray, memoryview)) else raw
        if not isinstance(text, str):
            raise TypeError(f"stored as {type(raw).__name__}, not text")
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite)
    except RecursionError:  # json's decoder guards its own recursion: far past MAX_DEPTH
        raise CorruptRecord(where, f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, TypeError, UnicodeDecodeError) as err:
        raise CorruptRecord(where, f"{what} is not JSON ({_short(err)})") from err
    if nests_deeper(value, MAX_DEPTH):
        raise CorruptRecord(where, f"{what} nests deeper than {MAX_DEPTH} levels")
    return value


def _short(err: BaseException) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= 120 else text[:117] + "..."


#: How much of an unreadable record a ``CorruptRecord`` keeps (``raw``).
PREVIEW_CHARS = 2000


def _preview(raw: str | bytes) -> str:
    head = raw[:PREVIEW_CHARS]
    text = head if isinstance(head, str) else bytes(head).decode("utf-8", "backslashreplace")
    return text + ("..." if len(raw) > PREVIEW_CHARS else "")


def _load_object(raw: str | bytes, where: str) -> dict[str, Any]:
    value = load_json(raw, where)
    if not isinstance(value, dict):
        raise CorruptRecord(where, f"expected a JSON object, got {_kind(value)}")
    return value


def _kind(value: Any) -> str:
    """A JSON type name for messages (never the value: it may be huge)."""
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object", type(None): "null"}.get(type(value), type(value).__name__)


class _Kind:
    """One field type: what ``isinstance`` accepts, what it is called, and
    an optional check of the elements (lists of text, text-valued objects)."""

    def __init__(self, name: str, check: Callable[[Any], bool]) -> None:
        self.name = name
        self.check = check


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # True is no epoch


def _is_number(value: Any) -> bool:
    # Finite (an SQL column can hold what JSON cannot), and an integer small
    # enough for float(): 1e400 written as digits is not a time.
    if isinstance(value, float):
        return math.isfinite(value)
    return _is_int(value) and abs(value) < 2**1023


TEXT = _Kind("a string", lambda v: isinstance(v, str))
INT = _Kind("an integer", _is_int)
NUMBER = _Kind("a number", _is_number)
ARRAY = _Kind("an array", lambda v: isinstance(v, list))
OBJECT = _Kind("an object", lambda v: isinstance(v, dict))
TEXTS = _Kind("an array of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
COUNT = _Kind("a non-negative integer", lambda v: _is_int(v) and v >= 0)
TEXT_MAP = _Kind("an object of strings",
                 lambda v: isinstance(v, dict) and all(isinstance(x, str) for x in v.values()))


def _bad(where: str, name: str, kind: _Kind, value: Any) -> CorruptRecord:
    return CorruptRecord(where, f"field {name!r} must be {kind.name}, got {_kind(value)}")


def _require(data: dict[str, Any], where: str, name: str, kind: _Kind) -> Any:
    if name not in data:
        raise CorruptRecord(where, f"field {name!r} is missing")
    value = data[name]
    if not kind.check(value):
        raise _bad(where, name, kind, value)
    return value


def _optional(data: dict[str, Any], where: str, name: str, kind: _Kind, default: Any) -> Any:
    """``default`` when absent or null."""
    value = data.get(name)
    if value is None:
        return default
    if not kind.check(value):
        raise _bad(where, name, kind, value)
    return value


def _meta(data: dict[str, Any], where: str, known: dict[str, _Kind]) -> dict[str, Any]:
    """``meta``, with the keys the engine and the CLI read by name checked
    (an unknown key is kept as it is: a newer version may have written it)."""
    meta: dict[str, Any] = _optional(data, where, "meta", OBJECT, {})
    for name, kind in known.items():
        value = meta.get(name)
        if value is not None and not kind.check(value):
            raise _bad(where, f"meta.{name}", kind, value)
    return meta


# flow.meta keys with the type their owner (engine.meta.FlowMeta) reads them
# as; tests/engine/test_meta.py keeps this list equal to the owner's keys.
_FLOW_META = {
    "takeovers": INT,
    "progress_mark": INT,
    "tasks": TEXTS,
    "unmatched": TEXTS,
    "resumes": ARRAY,
    "operations": ARRAY,
    "claims": ARRAY,
    "diff": OBJECT,
    "version_decisions": TEXT_MAP,
    "build": TEXT,
    "allowed_build": TEXT,
}
_TASK_META = {"first_started": NUMBER, "history": ARRAY, "revert": OBJECT}
# A task failure as the runner writes it; the named parts are read as text.
FAILURE_INFO = _Kind("an object of type, message and traceback strings", lambda v: isinstance(v, dict) and all(
    isinstance(v.get(part, ""), str) for part in ("type", "message", "traceback")))


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


@dataclass
class FlowDetail:
    """One record per flow. ``owner`` is the replica that claimed it last and
    has not released it (None after a graceful release): a claim that finds an
    owner here is a takeover."""

    id: str
    name: str
    factory: str
    args: list[JSON] = field(default_factory=list)
    kwargs: dict[str, JSON] = field(default_factory=dict)
    inputs: dict[str, JSON] = field(default_factory=dict)
    state: str = PENDING
    created_at: float = 0.0
    updated_at: float = 0.0
    owner: str | None = None
    epoch: int = 0
    reason: str | None = None
    meta: dict[str, JSON] = field(default_factory=dict)
    schema: int = SCHEMA_VERSION

    def to_json(self) -> str:
        """The record as stored: compact JSON with sorted keys, so one record is
        always the same bytes. ``ValueError`` or ``TypeError`` for a value
        that is not plain JSON (the engine's codec keeps those out)."""
        # Fields hold only JSON values already, so no deep copy (asdict) is needed.
        return dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | bytes, where: str) -> FlowDetail:
        """A stored flow record read back (text or UTF-8 bytes). Anything wrong
        with it (not a JSON object, a field missing or of the wrong type, an
        unknown state) raises ``CorruptRecord`` naming ``where``, with the
        start of ``raw`` kept in ``err.raw`` so whoever replaces the record
        can see what it was. Keys a newer version added to ``meta`` are kept."""
        try:
            return cls._decode(_load_object(raw, where), where)
        except CorruptRecord as err:
            err.raw = _preview(raw)  # whoever replaces the record keeps what it was
            raise

    @classmethod
    def _decode(cls, data: dict[str, Any], where: str) -> FlowDetail:
        state = _require(data, where, "state", TEXT)
        if state not in FLOW_STATES:
            raise CorruptRecord(where, f"unknown flow state {state[:40]!r}")
        return cls(
            id=_require(data, where, "id", TEXT),
            name=_require(data, where, "name", TEXT),
            factory=_require(data, where, "factory", TEXT),
            args=_require(data, where, "args", ARRAY),
            kwargs=_require(data, where, "kwargs", OBJECT),
            inputs=_require(data, where, "inputs", OBJECT),
            state=state,
            created_at=float(_require(data, where, "created_at", NUMBER)),
            updated_at=float(_require(data, where, "updated_at", NUMBER)),
            owner=_optional(data, where, "owner", TEXT, None),
            epoch=_optional(data, where, "epoch", INT, 0),
            reason=_optional(data, where, "reason", TEXT, None),
            meta=_meta(data, where, _FLOW_META),
            schema=_optional(data, where, "schema", INT, SCHEMA_VERSION),
        )


@dataclass
class TaskDetail:
    """One record per task id of a flow. A task with no record is PENDING."""

    task_id: str
    state: str = PENDING
    result: JSON = None
    failure: dict[str, str] | None = None  # {"type", "message", "traceback"}
    version: str = "1.0"
    attempts: int = 0
    started_at: float | None = None
    finished_at: float | None = None
    owner: str | None = None
    claim_id: str | None = None
    epoch: int = 0
    meta: dict[str, JSON] = field(default_factory=dict)

    def to_json(self) -> str:
        """The record as stored: compact JSON with sorted keys, so one record is
        always the same bytes. ``ValueError`` or ``TypeError`` for a result
        that is not plain JSON (the engine's codec keeps those out)."""
        # Fields hold only JSON values already, so no deep copy (asdict) is needed.
        return dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | bytes, where: str, *, key: object = None) -> TaskDetail:
        """``key``: the task id the record is stored under, where the driver
        has one; a record for another task (or a key that is no task id, such
        as undecodable bytes) is corrupt, not a task the engine would match."""
        task = cls._decode(_load_object(raw, where), where)
        if key is not None and key != task.task_id:
            raise CorruptRecord(where, f"record is for task {task.task_id[:200]!r}, stored under {key!r:.200}")
        return task

    @classmethod
    def _decode(cls, data: dict[str, Any], where: str) -> TaskDetail:
        state = _require(data, where, "state", TEXT)
        if state not in TASK_STATES:
            raise CorruptRecord(where, f"unknown task state {state[:40]!r}")
        return cls(
            task_id=_require(data, where, "task_id", TEXT),
            state=state,
            result=data.get("result"),
            failure=_optional(data, where, "failure", FAILURE_INFO, None),
            version=_require(data, where, "version", TEXT),
            attempts=_require(data, where, "attempts", INT),
            started_at=_float_or_none(_optional(data, where, "started_at", NUMBER, None)),
            finished_at=_float_or_none(_optional(data, where, "finished_at", NUMBER, None)),
            owner=_optional(data, where, "owner", TEXT, None),
            claim_id=_optional(data, where, "claim_id", TEXT, None),
            epoch=_optional(data, where, "epoch", INT, 0),
            meta=_meta(data, where, _TASK_META),
        )


def owner_of(claim_id: str) -> str:
    """The replica id in a claim id: claim ids are ``<replica_id>#<random>``."""
    return claim_id.rsplit("#", 1)[0]


@dataclass(frozen=True)
class ClaimToken:
    """Proof of a claim. Writes compare the whole token (claim id and epoch):
    an epoch alone can repeat after a Redis failover."""

    flow_id: str
    claim_id: str
    epoch: int

    @property
    def owner(self) -> str:
        """The replica id: claim ids are ``<replica_id>#<random>``."""
        return owner_of(self.claim_id)


class StoredRun(NamedTuple):
    """A flow's record and its task details, read together for a replica
    that just claimed the flow (``Backend.load_runs``)."""

    flow: FlowDetail
    tasks: dict[str, TaskDetail]


@dataclass
class ClaimInfo:
    """A live claim as listed for operators. ``expires_at`` is wall-clock
    seconds, or None where the lease is a session (ZooKeeper)."""

    flow_id: str
    owner: str
    claim_id: str
    epoch: int
    claimed_at: float
    expires_at: float | None

    @property
    def token(self) -> str:
        """The claim's name for operators, ``"<claim id>@<epoch>"``: the
        ``token`` of ``claims --json``, and how a flow's operator history
        names the claim an action fenced."""
        return f"{self.claim_id}@{self.epoch}"

    @classmethod
    def from_json(cls, raw: str | bytes, where: str, *, flow_id: str,
                  expires_at: float | None = None) -> ClaimInfo:
        """A claim stored as JSON (``claim_id``, ``epoch``, ``claimed_at``
        and, where the driver keeps it, ``owner``) by a key-value driver."""
        data = _load_object(raw, where)
        claim_id = _require(data, where, "claim_id", TEXT)
        return cls(
            flow_id=flow_id,
            owner=_optional(data, where, "owner", TEXT, None) or owner_of(claim_id),
            claim_id=claim_id,
            epoch=_require(data, where, "epoch", INT),
            claimed_at=float(_optional(data, where, "claimed_at", NUMBER, 0.0)),
            expires_at=expires_at,
        )

    @classmethod
    def from_row(cls, row: Sequence[Any], where: str) -> ClaimInfo:
        """A claim stored as a row ``(flow_id, claim_id, epoch, claimed_at,
        expires_at)``: SQL columns take any type a hand-edit gives them."""
        names = ("flow_id", "claim_id", "epoch", "claimed_at", "expires_at")
        data = dict(zip(names, row, strict=True))
        for name, kind in zip(names, (TEXT, TEXT, INT, NUMBER, NUMBER), strict=True):
            _require(data, where, name, kind)
        return cls(data["flow_id"], owner_of(data["claim_id"]), data["claim_id"], data["epoch"],
                   float(data["claimed_at"]), float(data["expires_at"]))

    def to_dict(self) -> dict[str, JSON]:
        """The claim wherever operators see one (``claims --json``, ``show``'s
        ``claim``, the claim an action fenced): flow_id, owner, token, epoch,
        claimed_at and expires_at (None where the session is the lease);
        keys in this order, later releases only append keys."""
        return {
            "flow_id": self.flow_id,
            "owner": self.owner,
            "token": self.token,
            "epoch": self.epoch,
            "claimed_at": self.claimed_at,
            "expires_at": self.expires_at,
        }


@dataclass
class ReplicaInfo:
    """Presence of a live replica.

    ``boot_id``, ``pid_namespace`` and ``process_start`` say which process
    this is, beyond its pid (which a later process may get again): a
    replica restarted under the same id reads them to prove this one dead
    (``coordinator.restart``). None where the system does not tell, and in
    records of older versions."""

    replica_id: str
    host: str
    pid: int
    started_at: float
    version: str
    allow: list[str] = field(default_factory=list)
    seen_at: float = 0.0
    build: str | None = None  # the release of its code (PEP 440), if it says
    boot_id: str | None = None  # Linux: /proc/sys/kernel/random/boot_id
    pid_namespace: str | None = None  # Linux: /proc/self/ns/pid, "pid:[4026531836]"
    process_start: int | None = None  # Linux: /proc/<pid>/stat starttime, clock ticks since boot
    #: the ``at`` of the drain request this incarnation obeys (it claims
    #: nothing more), None while it claims: how ``drain --wait`` knows the
    #: request was read, not just that the replica holds nothing right now
    draining_since: float | None = None

    def to_json(self) -> str:
        """The presence as stored: compact JSON with sorted keys."""
        # Fields hold only JSON values already, so no deep copy (asdict) is needed.
        return dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | bytes, where: str) -> ReplicaInfo:
        """A stored presence read back; ``CorruptRecord`` naming ``where`` when
        it is no JSON object or a field is missing or of the wrong type.
        Fields older versions did not write come back as their defaults."""
        data = _load_object(raw, where)
        return cls(
            replica_id=_require(data, where, "replica_id", TEXT),
            host=_require(data, where, "host", TEXT),
            pid=_require(data, where, "pid", INT),
            started_at=float(_require(data, where, "started_at", NUMBER)),
            version=_require(data, where, "version", TEXT),
            allow=_optional(data, where, "allow", TEXTS, []),
            seen_at=float(_optional(data, where, "seen_at", NUMBER, 0.0)),
            build=_optional(data, where, "build", TEXT, None),
            boot_id=_optional(data, where, "boot_id", TEXT, None),
            pid_namespace=_optional(data, where, "pid_namespace", TEXT, None),
            process_start=_optional(data, where, "process_start", COUNT, None),
            draining_since=_float_or_none(_optional(data, where, "draining_since", NUMBER, None)),
        )


@dataclass
class Decline:
    """Why one replica refused to run a flow (its code is missing or not allowed)."""

    replica_id: str
    reason: str
    at: float

    def to_json(self) -> str:
        """The decline as stored: compact JSON with sorted keys."""
        # Fields hold only JSON values already, so no deep copy (asdict) is needed.
        return dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | bytes, where: str) -> Decline:
        """A stored decline read back; ``CorruptRecord`` naming ``where`` when it
        is no JSON object with a text ``replica_id`` and ``reason`` and a
        number ``at``."""
        data = _load_object(raw, where)
        return cls(
            replica_id=_require(data, where, "replica_id", TEXT),
            reason=_require(data, where, "reason", TEXT),
            at=float(_require(data, where, "at", NUMBER)),
        )


@dataclass
class Handover:
    """An operator's request to one live replica: hand flow ``flow_id`` back
    at its next task boundary, or (``flow_id`` None: a drain) hand back
    everything and claim nothing more.

    A request names what it is about so that it never outlives it: a flow
    request the claim of ``epoch`` (a later claim of the flow, even by the
    same replica, is not asked), a drain the incarnation that was running
    (``started_at`` of its presence: the replica restarted under the same
    id is not drained). ``by`` and ``at`` say who asked, and when."""

    replica_id: str
    flow_id: str | None
    epoch: int
    started_at: float
    by: str
    at: float

    @property
    def drain(self) -> bool:
        return self.flow_id is None

    def to_json(self) -> str:
        return dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | bytes, where: str) -> Handover:
        data = _load_object(raw, where)
        return cls(
            replica_id=_require(data, where, "replica_id", TEXT),
            flow_id=_optional(data, where, "flow_id", TEXT, None),
            epoch=_require(data, where, "epoch", COUNT),
            started_at=float(_require(data, where, "started_at", NUMBER)),
            by=_require(data, where, "by", TEXT),
            at=float(_require(data, where, "at", NUMBER)),
        )
