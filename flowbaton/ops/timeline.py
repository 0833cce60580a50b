"""A flow's timeline: who ran which attempt of each task when, and where the flow changed hands.

``flowbaton show --timeline`` (``cli.timeline``), ``show --svg``
(``ops.timeline_svg``) and the web view draw this one model, so they agree on
what happened: each task's attempts (the current one is the task record
itself, earlier ones its ``meta["history"]``, a revert its ``meta["revert"]``),
the flow's claims (``meta["claims"]``; from ``meta["resumes"]`` on records
older than that list) and the takeovers between them, with how long the flow
stood still. The record format is the engine's (``engine.attempts``,
``engine.meta``; docs/design.md, "Attempt and claim history").

Records are untrusted: anyone who can write to the store can put anything in
``meta``. Every field is read defensively (a time is a finite positive number
a calendar holds, else unknown; text is cut to ``TEXT_CHARS``), an entry that
is not an object is skipped, and the lists read are bounded, so a hostile
record can make a timeline wrong but never make it crash or grow without
bound. Escaping for output is each renderer's job: the model keeps the text.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from ..backends.records import ClaimInfo, TaskDetail
from ..backends.states import FAILURE, PENDING, REVERT_FAILURE, REVERTED, REVERTING, RUNNING, SUCCESS
from ..engine.attempts import CANCELLED_TYPE, history_of
from ..engine.attempts import REVERT as _REVERT_KEY
from ..engine.meta import CLAIMS as _CLAIMS
from .documents import FlowShow

__all__ = ["Attempt", "ClaimSpan", "Takeover", "TaskLine", "Timeline", "timeline", "EXECUTE", "REVERT", "IN_DOUBT",
           "RUNNING_OUTCOME"]

JSON = Any

EXECUTE = "execute"
REVERT = "revert"
IN_DOUBT = "in doubt"  # its owner's claim ended while it ran: it may or may not have done its work
RUNNING_OUTCOME = "running"  # under the live claim, not finished yet

#: Earlier attempts read per task. The engine keeps 5; a newer one may keep
#: more, a hostile record 10,000: only the newest this many are read.
ATTEMPTS_READ = 20
#: Claims read from the claim history (the engine keeps 10), resumes from
#: the resume history of older records (it keeps 20).
CLAIMS_READ = 50
RESUMES_READ = 50
#: The longest text kept from a record (an id, an outcome, an error).
TEXT_CHARS = 200
#: 10000-01-01T00:00:00Z: a later "time" is none a calendar (or a drawing) can use.
LAST_TIME = 253402300800.0


_OUTCOMES = {SUCCESS: "success", FAILURE: "failure", REVERTING: "reverting", REVERTED: "reverted",
             REVERT_FAILURE: "revert failure"}


@dataclass(frozen=True)
class Attempt:
    """One run of a task's execute (or of its revert: ``kind``).

    ``finished_at`` None: it has not ended (``outcome`` "running"), or nobody
    knows when it did (``in_doubt``: its owner's claim ended while it ran).
    ``until`` is where a drawing ends it: ``finished_at`` when known, else the
    start of the task's next attempt, else ``now``. ``number`` is 0 and
    ``epoch`` 0 where the record does not say."""

    task_id: str
    number: int
    started_at: float
    finished_at: float | None
    outcome: str
    replica: str | None
    epoch: int
    in_doubt: bool
    error: str | None
    kind: str
    until: float

    @property
    def open(self) -> bool:
        """Its end is not known: drawn open-ended, up to ``until``."""
        return self.finished_at is None

    def to_json(self) -> dict[str, JSON]:
        """One attempt in ``show --timeline --json``: task_id, number, kind,
        started_at, finished_at, until, outcome, replica, epoch, in_doubt and
        error (times in wall-clock seconds); keys in this order, later
        releases only append keys."""
        return {"task_id": self.task_id, "number": self.number, "kind": self.kind, "started_at": self.started_at,
                "finished_at": self.finished_at, "until": self.until, "outcome": self.outcome,
                "replica": self.replica, "epoch": self.epoch, "in_doubt": self.in_doubt, "error": self.error}


@dataclass(frozen=True)
class ClaimSpan:
    """One claim of the flow: ``ended`` says how it ended (None: it is the
    live claim, or nobody wrote its end), ``ended_at`` when (None: unknown).
    ``until`` is where a drawing ends it: ``ended_at``, else the next claim,
    else ``now``."""

    epoch: int
    owner: str
    claimed_at: float
    ended_at: float | None
    ended: str | None
    until: float

    def to_json(self) -> dict[str, JSON]:
        """One claim in ``show --timeline --json``: epoch, owner, claimed_at,
        ended_at, ended and until; keys in this order, later releases only
        append keys."""
        return {"epoch": self.epoch, "owner": self.owner, "claimed_at": self.claimed_at, "ended_at": self.ended_at,
                "ended": self.ended, "until": self.until}


@dataclass(frozen=True)
class Takeover:
    """A claim that took the flow from an owner who never handed it back
    (it died, hung or was cut off). ``stood_still``: seconds from that
    owner's last recorded activity to the new claim (None: no activity of
    it is recorded), which is what a failover cost the flow."""

    at: float
    epoch: int
    from_owner: str | None
    to_owner: str
    stood_still: float | None

    def to_json(self) -> dict[str, JSON]:
        """One takeover in ``show --timeline --json``: at, epoch, from_owner,
        to_owner and stood_still; keys in this order, later releases only
        append keys."""
        return {"at": self.at, "epoch": self.epoch, "from_owner": self.from_owner, "to_owner": self.to_owner,
                "stood_still": self.stood_still}


@dataclass(frozen=True)
class TaskLine:
    """One task's row: its state now and its attempts, oldest first (none
    for a task that never started)."""

    task_id: str
    state: str
    attempts: list[Attempt]

    def to_json(self) -> dict[str, JSON]:
        """One task in ``show --timeline --json``: task_id, state and its
        attempts (``Attempt.to_json`` each, oldest first); keys in this
        order, later releases only append keys."""
        return {"task_id": self.task_id, "state": self.state, "attempts": [a.to_json() for a in self.attempts]}


@dataclass(frozen=True)
class Timeline:
    """``show --timeline``: the flow's tasks in its own order, its claims
    and takeovers, between ``start`` (the first claim or attempt) and
    ``end`` (the last thing recorded, or ``now`` while something is open).
    ``replicas``: every replica named, in order of first appearance, so a
    replica keeps its colour wherever it is drawn."""

    flow_id: str
    name: str
    state: str
    start: float
    end: float
    now: float
    tasks: list[TaskLine]
    claims: list[ClaimSpan]
    takeovers: list[Takeover]
    replicas: list[str]

    @property
    def span(self) -> float:
        """Seconds from ``start`` to ``end``: what a drawing scales to its width
        (0 when no claim or attempt is recorded)."""
        return self.end - self.start

    def attempts(self) -> Iterable[Attempt]:
        """Every attempt of every task, task by task in the flow's order, each
        task's oldest first: a fresh iterator on each call."""
        return (a for line in self.tasks for a in line.attempts)

    def to_json(self) -> dict[str, JSON]:
        """What ``show --timeline --json`` prints, the model every drawing is
        made from: flow_id, name, state, start, end, now, replicas, then its
        tasks, claims and takeovers (each their own ``to_json``); keys in
        this order, later releases only append keys."""
        return {"flow_id": self.flow_id, "name": self.name, "state": self.state, "start": self.start,
                "end": self.end, "now": self.now, "replicas": self.replicas,
                "tasks": [t.to_json() for t in self.tasks], "claims": [c.to_json() for c in self.claims],
                "takeovers": [t.to_json() for t in self.takeovers]}


def timeline(show: FlowShow, now: float | None = None) -> Timeline:
    """The timeline of the flow ``show`` describes, as of ``now`` (default:
    the clock): what is still open is drawn up to it."""
    current = now if now is not None and math.isfinite(now) else time.time()
    lines = [_task_line(row.id, row.state, show.details.get(row.id), show.claim, current) for row in show.tasks]
    resumes = [r for r in show.meta.resumes[-RESUMES_READ:] if isinstance(r, dict)]
    claims = _claims(show.flow.meta.get(_CLAIMS), resumes, show.claim, current)
    attempts = [a for line in lines for a in line.attempts]
    takeovers = _takeovers(claims, resumes, attempts)
    stamps = [*(s for a in attempts for s in (a.started_at, a.until)),
              *(s for c in claims for s in (c.claimed_at, c.until))]
    start = min(stamps, default=_stamp(show.flow.created_at) or current)  # nothing ran: when it was made
    return Timeline(show.flow.id, show.flow.name, show.flow.state, start, max([start, *stamps]), current, lines,
                    claims, takeovers, _replicas(claims, attempts))


# -------------------------------------------------------------------- tasks


def _task_line(task_id: str, state: str, detail: TaskDetail | None, live: ClaimInfo | None,
               now: float) -> TaskLine:
    if detail is None:
        return TaskLine(task_id, state, [])
    found = [_earlier(task_id, entry) for entry in history_of(detail)[-ATTEMPTS_READ:]]
    found += [_current(detail, live), _revert(detail, live)]
    ordered = sorted((a for a in found if a is not None), key=lambda a: a.started_at)
    return TaskLine(task_id, state, _bounded(ordered, now))


def _bounded(attempts: Sequence[Attempt], now: float) -> list[Attempt]:
    """Each open attempt ends, for a drawing, where the task's next attempt
    began (its owner was gone by then), the last one at ``now``."""
    nexts = _next_starts([a.started_at for a in attempts], now)
    return [a if not a.open else replace(a, until=max(a.started_at, later))
            for a, later in zip(attempts, nexts, strict=True)]


def _next_starts(starts: Sequence[float], now: float) -> list[float]:
    """For each of ``starts``, the one after it (after the last: ``now``)."""
    return [*starts[1:], now][: len(starts)]


def _earlier(task_id: str, entry: Mapping[str, Any]) -> Attempt | None:
    """One ``meta["history"]`` entry (``history_of``), or None when it has no start."""
    started = _stamp(entry.get("started_at"))
    if started is None:
        return None
    finished = _end(started, entry.get("finished_at"))
    outcome = _text(entry.get("outcome")) or "unknown"
    return Attempt(task_id, _count(entry.get("attempt")), started, finished, outcome, _text(entry.get("owner")),
                   _count(entry.get("epoch")), outcome == IN_DOUBT, _text(entry.get("error")), EXECUTE,
                   finished or started)


def _current(detail: TaskDetail, live: ClaimInfo | None) -> Attempt | None:
    """The latest execute: the task record's own fields. RUNNING under
    another claim than the live one (or under none), it is in doubt."""
    started = _stamp(detail.started_at)
    if started is None or detail.state == PENDING:
        return None  # never started, or put back to run by an operator
    running = detail.state == RUNNING
    finished = None if running else _execute_end(detail, started)
    in_doubt = running and not _under(live, detail.owner, detail.epoch)
    outcome = IN_DOUBT if in_doubt else RUNNING_OUTCOME if running else _settled(detail)
    return Attempt(detail.task_id, _count(detail.attempts), started, finished, outcome, _text(detail.owner),
                   _count(detail.epoch), in_doubt, _failure_text(detail.failure), EXECUTE, finished or started)


def _settled(detail: TaskDetail) -> str:
    """A finished attempt's outcome, as the engine names it in the history
    (an operator's cancel is a FAILURE of its own type)."""
    if detail.state == FAILURE and (detail.failure or {}).get("type") == CANCELLED_TYPE:
        return "cancelled"
    return _OUTCOMES.get(detail.state, detail.state.lower())


def _execute_end(detail: TaskDetail, started: float) -> float | None:
    """When the execute ended: a revert stores its own end in ``finished_at``
    and keeps the execute's in ``meta["revert"]``."""
    revert = detail.meta.get(_REVERT_KEY)
    if isinstance(revert, dict) and "execute_finished_at" in revert:
        return _end(started, revert.get("execute_finished_at"))
    return _end(started, detail.finished_at)


def _revert(detail: TaskDetail, live: ClaimInfo | None) -> Attempt | None:
    """The task's revert, from ``meta["revert"]``: open while the task is
    REVERTING, in doubt when not under the live claim."""
    info = detail.meta.get(_REVERT_KEY)
    started = _stamp(info.get("started_at")) if isinstance(info, dict) else None
    if not isinstance(info, dict) or started is None:
        return None
    finished = _end(started, info.get("finished_at"))
    owner, epoch = _text(info.get("owner")), _count(info.get("epoch"))
    running = finished is None and detail.state == REVERTING and _under(live, owner, epoch)
    in_doubt = finished is None and not running
    outcome = ("revert failure" if detail.state == REVERT_FAILURE else "reverted" if finished is not None
               else RUNNING_OUTCOME if running else IN_DOUBT)
    error = _failure_text(detail.meta.get("revert_failure")) if detail.state == REVERT_FAILURE else None
    return Attempt(detail.task_id, _count(detail.attempts), started, finished, outcome, owner, epoch, in_doubt,
                   error, REVERT, finished or started)


def _under(live: ClaimInfo | None, owner: str | None, epoch: int) -> bool:
    """Whether an attempt of ``owner`` at ``epoch`` runs under the live
    claim. The epoch counts too: a replica restarted in place comes back
    under its old id, and what its previous process ran is in doubt."""
    return live is not None and owner == live.owner and epoch in (0, live.epoch)  # 0: a record without epochs


# ------------------------------------------------------------------- claims


def _claims(raw: object, resumes: Sequence[Mapping[str, Any]], live: ClaimInfo | None,
            now: float) -> list[ClaimSpan]:
    """The claim history, or what the resumes of an older record tell;
    the live claim added when the history does not have it yet."""
    spans = ([s for s in map(_claim_span, raw[-CLAIMS_READ:]) if s is not None] if isinstance(raw, list)
             else _claims_from_resumes(resumes))
    live_at = _stamp(live.claimed_at) if live else None
    if live and live_at is not None and not any((s.epoch, s.owner) == (live.epoch, live.owner) for s in spans):
        spans.append(ClaimSpan(live.epoch, _text(live.owner) or "", live_at, None, None, live_at))
    spans.sort(key=lambda s: s.claimed_at)
    nexts = _next_starts([s.claimed_at for s in spans], now)
    return [replace(s, until=max(s.claimed_at, s.ended_at or later)) for s, later in zip(spans, nexts, strict=True)]


def _claim_span(entry: object) -> ClaimSpan | None:
    if not isinstance(entry, dict):
        return None
    owner, claimed = _text(entry.get("owner")), _stamp(entry.get("claimed_at"))
    if owner is None or claimed is None:
        return None
    ended_at = _end(claimed, entry.get("ended_at"))
    return ClaimSpan(_count(entry.get("epoch")), owner, claimed, ended_at, _text(entry.get("ended")), claimed)


def _claims_from_resumes(resumes: Sequence[Mapping[str, Any]]) -> list[ClaimSpan]:
    """Older records: each resume was a claim (a first run is none, so the
    first claim may be missing). One that the next resume took over from,
    still named on the record, ended "expired"."""
    spans = []
    for i, entry in enumerate(resumes):
        owner, at = _text(entry.get("owner")), _stamp(entry.get("at"))
        if owner is None or at is None:
            continue
        after = resumes[i + 1] if i + 1 < len(resumes) else {}
        expired = after.get("takeover") is True and _text(after.get("previous_owner")) == owner
        spans.append(ClaimSpan(_count(entry.get("epoch")), owner, at, None, "expired" if expired else None, at))
    return spans


def _takeovers(claims: Sequence[ClaimSpan], resumes: Sequence[Mapping[str, Any]],
               attempts: Sequence[Attempt]) -> list[Takeover]:
    """Claims whose previous claim ended "expired", or whose resume says it
    was a takeover."""
    by_epoch = {_count(r.get("epoch")): r for r in resumes if r.get("takeover") is True}
    found = []
    for i, claim in enumerate(claims):
        before = claims[i - 1] if i else None
        resume = by_epoch.get(claim.epoch)
        if resume is None and (before is None or before.ended != "expired"):
            continue
        from_owner = _text(resume.get("previous_owner")) if resume else None
        from_owner = from_owner or (before.owner if before else None)
        known = before if before is not None and before.owner == from_owner else None
        last = _last_activity(attempts, from_owner, known, claim.claimed_at)
        stood = None if last is None else round(claim.claimed_at - last, 6)
        found.append(Takeover(claim.claimed_at, claim.epoch, from_owner, claim.owner, stood))
    return found


def _last_activity(attempts: Sequence[Attempt], owner: str | None, claim: ClaimSpan | None,
                   before: float) -> float | None:
    """The latest start or end of an attempt by ``owner`` (under ``claim``'s
    epoch, when that claim is known) up to ``before``, else when it claimed."""
    stamps = [s for a in attempts if a.replica == owner and owner is not None
              and (claim is None or a.epoch == claim.epoch) for s in (a.started_at, a.finished_at)
              if s is not None and s <= before]
    if claim is not None and claim.claimed_at <= before:
        stamps.append(claim.claimed_at)
    return max(stamps, default=None)


def _replicas(claims: Sequence[ClaimSpan], attempts: Sequence[Attempt]) -> list[str]:
    """Every replica named, in order of first appearance (claims first on a tie)."""
    seen = sorted([(c.claimed_at, c.owner) for c in claims] + [(a.started_at, a.replica) for a in attempts
                                                               if a.replica is not None], key=lambda e: e[0])
    return list(dict.fromkeys(owner for _, owner in seen))


# ------------------------------------------------------------------ fields


def _stamp(value: object) -> float | None:
    """A time: a finite number after 1970 and before year 10000, else None."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value) if abs(value) < LAST_TIME else math.nan
    return number if 0 < number < LAST_TIME else None


def _end(started: float, value: object) -> float | None:
    """An end time, never before its start (a skewed or edited clock)."""
    end = _stamp(value)
    return None if end is None else max(end, started)


def _count(value: object) -> int:
    """A non-negative integer (an attempt number, an epoch), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _text(value: object) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= TEXT_CHARS else value[: TEXT_CHARS - 1] + "…"


def _failure_text(failure: object) -> str | None:
    """``type: message``, as the engine writes an earlier attempt's error."""
    if not isinstance(failure, dict):
        return None
    kind, message = (failure.get(part) for part in ("type", "message"))
    return _text(": ".join(p for p in (kind, message) if isinstance(p, str) and p))
