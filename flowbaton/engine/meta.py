"""The flow record's ``meta``: one owner for every key anyone reads or writes.

``FlowDetail.meta`` is a JSON object that the engine, the runtime and the
operator API all keep facts in (the poison counter, the task list the flow
was last built with, the resume history, operator notes, version
decisions). Each of them reads and writes it through ``FlowMeta`` here, so
a key is spelled once and read with one type. The backends check the same
keys' types when a record is decoded (``backends.records``, a corrupt value
is a ``CorruptRecord`` at the boundary); ``tests/engine/test_meta.py`` keeps
the two lists equal.

``FlowMeta`` wraps a copy of the dict and never drops a key it does not
know (a newer release may have written it); every change returns a new
``FlowMeta``, and ``to_dict`` gives back exactly the keys that are set, in
the order they were first written, so a record read and written unchanged
stays byte for byte the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "FlowMeta",
    "TAKEOVERS",
    "PROGRESS_MARK",
    "TASKS",
    "UNMATCHED",
    "RESUMES",
    "DIFF",
    "DECISIONS",
    "OPERATIONS",
    "CORRUPT",
    "BUILD",
    "ALLOWED_BUILD",
    "HISTORY",
    "CLAIMS",
    "CLAIMS_KEPT",
]

TAKEOVERS = "takeovers"  # claims in a row that ended without handing back and without progress
PROGRESS_MARK = "progress_mark"  # finished tasks when the counter was last set
TASKS = "tasks"  # task ids of the flow as last built (tells added tasks from unreached ones)
UNMATCHED = "unmatched"  # stored task ids today's code no longer has
RESUMES = "resumes"  # the last resumes: who, when, epoch, takeover, diff
DIFF = "diff"  # the last resume's diff between stored and rebuilt flow
DECISIONS = "version_decisions"  # an operator's rerun/reuse choice per task ("*": all)
OPERATIONS = "operations"  # the last operator actions, oldest first
CORRUPT = "corrupt_record"  # a HELD placeholder's: where, what, raw, by, at
BUILD = "build"  # the newest build that submitted or claimed the flow (engine.builds)
ALLOWED_BUILD = "allowed_build"  # an operator let builds this old or newer run it (a rollback)
CLAIMS = "claims"  # the last claims: epoch, owner, claimed at, how and when each ended
#: entries kept in each history list (resumes, operations)
HISTORY = 20
#: claims kept in the claim history (about 110 bytes each)
CLAIMS_KEPT = 10


class FlowMeta:
    """A typed view of one flow record's ``meta``."""

    __slots__ = ("_raw",)

    def __init__(self, raw: Mapping[str, Any] | None = None) -> None:
        self._raw: dict[str, Any] = dict(raw or {})

    def to_dict(self) -> dict[str, Any]:
        """The JSON object to store (a copy)."""
        return dict(self._raw)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FlowMeta) and self._raw == other._raw

    def __repr__(self) -> str:
        return f"FlowMeta({self._raw!r})"

    def _with(self, **changes: Any) -> FlowMeta:
        """A copy with keys set (a value of ``None`` removes the key)."""
        raw = dict(self._raw)
        for key, value in changes.items():
            if value is None:
                raw.pop(key, None)
            else:
                raw[key] = value
        return FlowMeta(raw)

    # ------------------------------------------------------- poison counter

    @property
    def takeovers(self) -> int:
        return int(self._raw.get(TAKEOVERS, 0))

    @property
    def progress_mark(self) -> int | None:
        mark = self._raw.get(PROGRESS_MARK)
        return None if mark is None else int(mark)

    def counted(self, takeovers: int, progress: int) -> FlowMeta:
        """The poison counter as a new claim sets it (``engine.lifecycle``)."""
        return self._with(**{TAKEOVERS: takeovers, PROGRESS_MARK: progress})

    def counter_reset(self) -> FlowMeta:
        """A fresh start for the poison guard (an operator's retry)."""
        return self._with(**{TAKEOVERS: 0, PROGRESS_MARK: None})

    # ------------------------------------------------------------ the build

    @property
    def tasks(self) -> list[str] | None:
        """Task ids of the flow as last built, or None when never stored
        (or trimmed away to fit the record)."""
        tasks = self._raw.get(TASKS)
        return [str(t) for t in tasks] if isinstance(tasks, list) else None

    @property
    def unmatched(self) -> list[str]:
        return [str(u) for u in self._raw.get(UNMATCHED) or []]

    def built(self, tasks: Sequence[str], unmatched: Sequence[str]) -> FlowMeta:
        """What a build found: today's task list, and the stored tasks it no
        longer has (written when there are any, or to clear earlier ones)."""
        changes: dict[str, Any] = {}
        if unmatched or UNMATCHED in self._raw:
            changes[UNMATCHED] = list(unmatched)
        changes[TASKS] = list(tasks)
        return self._with(**changes)

    def without_build(self) -> FlowMeta:
        """Drop the task list (the last thing trimmed to fit a record:
        every reader copes without it)."""
        raw = dict(self._raw)
        raw.pop(TASKS, None)
        raw.pop(UNMATCHED, None)
        return FlowMeta(raw)

    # ------------------------------------------------------------- resumes

    @property
    def resumes(self) -> list[Any]:
        resumes = self._raw.get(RESUMES)
        return list(resumes) if isinstance(resumes, list) else []

    @property
    def diff(self) -> dict[str, Any] | None:
        diff = self._raw.get(DIFF)
        return dict(diff) if isinstance(diff, dict) else None

    def resumed(self, entry: Mapping[str, Any], diff: Mapping[str, Any]) -> FlowMeta:
        """One more resume in the history (the oldest beyond ``HISTORY`` go)."""
        history = self.resumes[-(HISTORY - 1):]
        return self._with(**{RESUMES: [*history, dict(entry)], DIFF: dict(diff)})

    def undecided_versions(self) -> list[dict[str, Any]]:
        """The last resume's major version changes under policy "fail": each
        ``{"task", "stored", "current", "policy"}``; an operator must choose."""
        changes = (self.diff or {}).get("version_changed") or []
        return [c for c in changes if isinstance(c, dict) and c.get("policy") == "fail"]

    # -------------------------------------------------------------- claims

    @property
    def claims(self) -> list[dict[str, Any]]:
        """The claim history, oldest first (entries that are no object are
        left out: a reader never trusts a record's shape)."""
        claims = self._raw.get(CLAIMS)
        return [dict(c) for c in claims if isinstance(c, dict)] if isinstance(claims, list) else []

    def claimed(self, epoch: int, owner: str, at: float, found_owner: str | None) -> FlowMeta:
        """One more claim in the history. A previous claim whose end nobody
        wrote ended "expired" when the record still named its owner (it
        died, hung or was cut off), else "released"."""
        claims = self.claims
        if claims and claims[-1].get("ended") is None:
            claims[-1] = {**claims[-1], "ended": "expired" if found_owner is not None else "released"}
        entry = {"epoch": epoch, "owner": owner, "claimed_at": at, "ended_at": None, "ended": None}
        return self._with(**{CLAIMS: [*claims[-(CLAIMS_KEPT - 1):], entry]})

    def claim_ended(self, epoch: int, how: str, at: float | None) -> FlowMeta:
        """The claim of ``epoch`` ended ``how`` at ``at`` (unchanged when
        the history has no open claim of that epoch)."""
        last = self.claims[-1:]
        return self.open_claim_ended(how, at) if last and last[0].get("epoch") == epoch else self

    def open_claim_ended(self, how: str, at: float | None) -> FlowMeta:
        """Whatever claim is still open in the history ended ``how`` (an
        operator fenced it, or found its owner gone)."""
        claims = self.claims
        if not claims or claims[-1].get("ended") is not None:
            return self
        claims[-1] = {**claims[-1], "ended_at": at, "ended": how}
        return self._with(**{CLAIMS: claims})

    # --------------------------------------------------------- operators

    @property
    def decisions(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self._raw.get(DECISIONS) or {}).items()}

    def decided(self, added: Mapping[str, str]) -> FlowMeta:
        return self._with(**{DECISIONS: {**(self._raw.get(DECISIONS) or {}), **added}}) if added else self

    @property
    def operations(self) -> list[Any]:
        operations = self._raw.get(OPERATIONS)
        return list(operations) if isinstance(operations, list) else []

    def operated(self, entry: Mapping[str, Any]) -> FlowMeta:
        """One more operator note (the oldest beyond ``HISTORY`` go)."""
        return self._with(**{OPERATIONS: [*self.operations[-(HISTORY - 1):], dict(entry)]})

    # -------------------------------------------------------------- builds

    @property
    def build(self) -> str | None:
        build = self._raw.get(BUILD)
        return None if build is None else str(build)

    @property
    def allowed_build(self) -> str | None:
        allowed = self._raw.get(ALLOWED_BUILD)
        return None if allowed is None else str(allowed)

    def touched_by(self, build: str | None) -> FlowMeta:
        """With ``build`` as the newest build (the caller compares: see
        ``engine.builds.newest_build``); unchanged when None."""
        return self if build is None or build == self.build else self._with(**{BUILD: build})

    def allowing_build(self, build: str) -> FlowMeta:
        return self._with(**{ALLOWED_BUILD: build})

    # ---------------------------------------------------- corrupt records

    @property
    def corrupt(self) -> dict[str, Any] | None:
        """Set on a placeholder written over an unreadable flow record."""
        corrupt = self._raw.get(CORRUPT)
        return dict(corrupt) if isinstance(corrupt, dict) else None

    @property
    def is_placeholder(self) -> bool:
        """The record stands in for an unreadable one (whatever the key holds)."""
        return CORRUPT in self._raw

    @classmethod
    def placeholder(cls, where: str, what: str, raw: str | None, by: str, at: float) -> FlowMeta:
        return cls({CORRUPT: {"where": where, "what": what, "raw": raw, "by": by, "at": at}})
