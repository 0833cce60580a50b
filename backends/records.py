"""The stored records: plain dataclasses that round-trip through JSON.

Backends know these records and nothing about tasks or flows. Every reader
goes through ``*.from_json`` so a damaged record becomes a ``CorruptRecord``
naming where it was found, never a ``KeyError`` deep in a replica.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .errors import CorruptRecord
from .states import FLOW_STATES, PENDING, TASK_STATES

__all__ = [
    "SCHEMA_VERSION",
    "FlowDetail",
    "TaskDetail",
    "ClaimToken",
    "ClaimInfo",
    "ReplicaInfo",
    "Decline",
    "dumps",
    "owner_of",
]

SCHEMA_VERSION = 1

JSON = Any  # a plain JSON value; the engine's codec guarantees it


def dumps(value: JSON) -> str:
    """Compact, deterministic JSON; records are meant to be read by people too."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)


def _load_object(raw: str | bytes, where: str) -> dict[str, Any]:
    try:
        value = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise CorruptRecord(where, f"not JSON ({err})") from err
    if not isinstance(value, dict):
        raise CorruptRecord(where, f"expected a JSON object, got {type(value).__name__}")
    return value


def _require(data: dict[str, Any], where: str, name: str, kind: type | tuple[type, ...]) -> Any:
    if name not in data:
        raise CorruptRecord(where, f"field {name!r} is missing")
    value = data[name]
    if not isinstance(value, kind):
        raise CorruptRecord(where, f"field {name!r} has type {type(value).__name__}")
    return value


def _optional(data: dict[str, Any], where: str, name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = data.get(name, default)
    if value is not default and value is not None and not isinstance(value, kind):
        raise CorruptRecord(where, f"field {name!r} has type {type(value).__name__}")
    return value


_NUMBER = (int, float)


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
        # Fields hold only JSON values already, so no deep copy (asdict) is needed.
        return dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | bytes, where: str) -> FlowDetail:
        data = _load_object(raw, where)
        state = _require(data, where, "state", str)
        if state not in FLOW_STATES:
            raise CorruptRecord(where, f"unknown flow state {state!r}")
        return cls(
            id=_require(data, where, "id", str),
            name=_require(data, where, "name", str),
            factory=_require(data, where, "factory", str),
            args=_require(data, where, "args", list),
            kwargs=_require(data, where, "kwargs", dict),
            inputs=_require(data, where, "inputs", dict),
            state=state,
            created_at=float(_require(data, where, "created_at", _NUMBER)),
            updated_at=float(_require(data, where, "updated_at", _NUMBER)),
            owner=_optional(data, where, "owner", str, None),
            epoch=int(_optional(data, where, "epoch", int, 0)),
            reason=_optional(data, where, "reason", str, None),
            meta=_optional(data, where, "meta", dict, {}) or {},
            schema=int(_optional(data, where, "schema", int, SCHEMA_VERSION)),
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
        # Fields hold only JSON values already, so no deep copy (asdict) is needed.
        return dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | bytes, where: str) -> TaskDetail:
        data = _load_object(raw, where)
        state = _require(data, where, "state", str)
        if state not in TASK_STATES:
            raise CorruptRecord(where, f"unknown task state {state!r}")
        failure = _optional(data, where, "failure", dict, None)
        return cls(
            task_id=_require(data, where, "task_id", str),
            state=state,
            result=data.get("result"),
            failure=failure,
            version=_require(data, where, "version", str),
            attempts=int(_require(data, where, "attempts", int)),
            started_at=_optional(data, where, "started_at", _NUMBER, None),
            finished_at=_optional(data, where, "finished_at", _NUMBER, None),
            owner=_optional(data, where, "owner", str, None),
            claim_id=_optional(data, where, "claim_id", str, None),
            epoch=int(_optional(data, where, "epoch", int, 0)),
            meta=_optional(data, where, "meta", dict, {}) or {},
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
        return f"{self.claim_id}@{self.epoch}"

    def to_dict(self) -> dict[str, JSON]:
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
    """Presence of a live replica."""

    replica_id: str
    host: str
    pid: int
    started_at: float
    version: str
    allow: list[str] = field(default_factory=list)
    seen_at: float = 0.0

    def to_json(self) -> str:
        # Fields hold only JSON values already, so no deep copy (asdict) is needed.
        return dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | bytes, where: str) -> ReplicaInfo:
        data = _load_object(raw, where)
        return cls(
            replica_id=_require(data, where, "replica_id", str),
            host=_require(data, where, "host", str),
            pid=int(_require(data, where, "pid", int)),
            started_at=float(_require(data, where, "started_at", _NUMBER)),
            version=_require(data, where, "version", str),
            allow=_optional(data, where, "allow", list, []) or [],
            seen_at=float(_optional(data, where, "seen_at", _NUMBER, 0.0)),
        )


@dataclass
class Decline:
    """Why one replica refused to run a flow (its code is missing or not allowed)."""

    replica_id: str
    reason: str
    at: float

    def to_json(self) -> str:
        # Fields hold only JSON values already, so no deep copy (asdict) is needed.
        return dumps(self.__dict__)

    @classmethod
    def from_json(cls, raw: str | bytes, where: str) -> Decline:
        data = _load_object(raw, where)
        return cls(
            replica_id=_require(data, where, "replica_id", str),
            reason=_require(data, where, "reason", str),
            at=float(_require(data, where, "at", _NUMBER)),
        )
