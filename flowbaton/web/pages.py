"""What each page shows, read through the operator API (``flowbaton.ops``).

One function per page returns a view model: the API's own documents plus
what the page adds (the flow's timeline, ``ops.timeline``, with its SVG and
each task's attempts; the flow's history as one list; the plan or why there
is none). The templates only lay them out; nothing here formats or escapes.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup

from ..backends.errors import BackendUnavailable, FlowbatonError
from ..backends.states import FLOW_STATES
from ..ops import Ops
from ..ops.documents import ClaimRow, FlowPage, FlowPlan, FlowShow, ReplicasReport, TaskRow
from ..ops.timeline import TaskLine, Timeline, timeline
from .drawing import inline_svg

__all__ = ["BadFilter", "Filters", "ReplicasView", "FlowsView", "Event", "FlowView",
           "replicas_view", "flows_view", "flow_view", "PAGE_SIZE"]

log = logging.getLogger("flowbaton.web")

PAGE_SIZE = 50
_LONGEST_FILTER = 200


class BadFilter(ValueError):
    """A listing's filter no listing accepts (an unknown state)."""


# ----------------------------------------------------------------- replicas


@dataclass(frozen=True)
class ReplicasView:
    report: ReplicasReport
    claims: list[ClaimRow]
    now: float


def replicas_view(ops: Ops) -> ReplicasView:
    return ReplicasView(ops.replicas(), ops.claims(), time.time())


# -------------------------------------------------------------------- flows


@dataclass(frozen=True)
class Filters:
    """The flows page's filters, as its query string carries them."""

    state: str | None = None
    factory: str | None = None
    name: str | None = None
    owner: str | None = None

    @classmethod
    def of(cls, query: Mapping[str, str]) -> Filters:
        state = query.get("state", "").strip().upper() or None
        if state is not None and state not in FLOW_STATES:
            raise BadFilter(f"unknown state {state[:40]!r} (one of {', '.join(sorted(FLOW_STATES))})")
        texts = [query.get(key, "").strip() or None for key in ("factory", "name", "owner")]
        if any(text is not None and len(text) > _LONGEST_FILTER for text in texts):
            raise BadFilter(f"a filter longer than {_LONGEST_FILTER} characters")
        return cls(state, *texts)

    def as_query(self, after: str | None = None) -> str:
        """The query string of these filters (and a page cursor)."""
        pairs = {"state": self.state, "factory": self.factory, "name": self.name, "owner": self.owner,
                 "after": after}
        return urlencode({key: value for key, value in pairs.items() if value is not None})

    @property
    def states(self) -> list[str]:
        return sorted(FLOW_STATES)


@dataclass(frozen=True)
class FlowsView:
    filters: Filters
    page: FlowPage
    after: str | None  # this page's cursor (None: the first page)
    now: float

    @property
    def next_query(self) -> str | None:
        return None if self.page.next is None else self.filters.as_query(self.page.next)


def flows_view(ops: Ops, query: Mapping[str, str]) -> FlowsView:
    """A page of flows; ``BadFilter`` or ``BadCursor`` for a query no page answers."""
    filters, after = Filters.of(query), query.get("after")
    page = ops.flows_page(limit=PAGE_SIZE, after=after, state=filters.state, factory=filters.factory,
                          name=filters.name, owner=filters.owner)
    return FlowsView(filters, page, after, time.time())


# --------------------------------------------------------------------- flow


@dataclass(frozen=True)
class Event:
    """One line of the flow's history: a resume (takeover or not) or an operator action."""

    at: float | None
    epoch: Any
    who: Any
    what: str
    details: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class FlowView:
    show: FlowShow
    history: list[Event]
    timeline: Timeline | None  # None: the records could not be drawn (``timeline_note``)
    svg: Markup | None  # our own drawing of it, every text in it already escaped
    timeline_note: str | None
    plan: FlowPlan | None
    plan_note: str | None  # why there is no plan: none asked for (no --allow), or it failed
    now: float

    @property
    def failures(self) -> list[TaskRow]:
        return [row for row in self.show.tasks if row.failure]

    @property
    def retried(self) -> list[TaskLine]:
        """The tasks that ran more than once (or reverted): their attempts, oldest first."""
        return [line for line in self.timeline.tasks if len(line.attempts) > 1] if self.timeline else []


def flow_view(ops: Ops, flow_id: str, allow: Sequence[str]) -> FlowView:
    """``FlowNotFound`` for no such flow; the plan only with an ``allow`` list
    (it imports the flow's factory, as ``flowbaton plan`` does)."""
    show = ops.show(flow_id)
    now = time.time()
    drawn, svg, note = _timeline(show, now)
    plan, plan_note = _plan(ops, show, allow)
    return FlowView(show, _history(show), drawn, svg, note, plan, plan_note, now)


def _timeline(show: FlowShow, now: float) -> tuple[Timeline | None, Markup | None, str | None]:
    try:
        drawn = timeline(show, now)
        return drawn, inline_svg(drawn), None
    except Exception as err:  # records it cannot draw must not hide the rest of the flow
        log.exception("timeline of flow %s failed", show.flow.id)
        return None, None, f"the timeline could not be drawn: {type(err).__name__}"


def _plan(ops: Ops, show: FlowShow, allow: Sequence[str]) -> tuple[FlowPlan | None, str | None]:
    if not allow:
        return None, (f"start the server with --allow PREFIX (the factories it may import) to see it here, "
                      f"or run: flowbaton plan --allow PREFIX {show.flow.id}")
    try:
        return ops.plan(show.flow.id, allow), None
    except BackendUnavailable:
        raise
    except FlowbatonError as err:  # not allowed, not importable, the factory raised
        return None, f"no plan: {err}"


def _history(show: FlowShow) -> list[Event]:
    """Resumes and operator actions, oldest first (entries that are no object skipped)."""
    meta = show.meta
    events = [_resume(entry) for entry in meta.resumes if isinstance(entry, Mapping)]
    events += [_operation(entry) for entry in meta.operations if isinstance(entry, Mapping)]
    return sorted(events, key=lambda e: e.at if isinstance(e.at, (int, float)) else 0.0)


def _stamp(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _resume(entry: Mapping[str, Any]) -> Event:
    what = f"took over from {entry.get('previous_owner')}" if entry.get("takeover") else "resumed"
    details = [f"{key}: {', '.join(map(str, entry.get(key) or []))}" for key in ("added", "unmatched")
               if isinstance(entry.get(key), list) and entry.get(key)]
    changes = entry.get("version_changed")
    details += [f"version of {c.get('task')}: {c.get('stored')} -> {c.get('current')} ({c.get('policy')})"
                for c in (changes if isinstance(changes, list) else []) if isinstance(c, Mapping)]
    return Event(_stamp(entry.get("at")), entry.get("epoch"), entry.get("owner"), what, details)


def _operation(entry: Mapping[str, Any]) -> Event:
    fenced = [f"fenced {entry.get('fenced')}"] if entry.get("fenced") else []
    return Event(_stamp(entry.get("at")), entry.get("epoch"), entry.get("by"), str(entry.get("action")), fenced)
