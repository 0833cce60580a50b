"""When a flow could be taken over at all: once a replica new enough for it runs.

During a rolling deploy (the ``deploy`` fault) only some replicas run the
newest build, and a flow that was submitted by it or already ran on it may
be resumed by those only: older replicas decline it (never downgrade). If a
fault takes those replicas away, the flow waits, as it must, until one is
back. The recovery and orphan clocks (``recovery``) therefore leave out
the time when no replica new enough for the flow was running (between its
start and its end, as the harness recorded them) and
neither stopped (``zombie``) nor cut off (``cut``): ``build_wait`` is the
time within a wait during which no such replica was there.
"""

from __future__ import annotations

import math

from packaging.version import InvalidVersion, Version

from flowbaton.testing.chaos.evidence import Index

__all__ = ["build_wait"]

_AWAY = ("zombie", "cut")  # faults during which a running replica cannot take anything over


def _version(text: str | None) -> Version | None:
    try:
        return Version(text) if text else None
    except InvalidVersion:
        return None


def _required(ix: Index, flow: str, before: float) -> Version | None:
    """The newest build the flow met before ``before``: its submitter's, or
    one a task of it ran on."""
    met = [_version(op.build) for op in ix.flow_writes.get(flow, [])
           if op.op == "create_flow" and op.acked and op.t0 < before]
    met += [_version(ix.ev.builds.get(run.replica)) for run in ix.flow_runs.get(flow, []) if run.t < before]
    known = [version for version in met if version is not None]
    return max(known) if known else None


def _available(ix: Index, replica: str) -> list[tuple[float, float]]:
    """When ``replica`` ran and was neither stopped nor cut off."""
    started, ended = ix.ev.lives.get(replica, [None, None])
    if started is None:
        return []
    spans, moment = [], started
    end = math.inf if ended is None else ended
    for begin, heal in sorted((f["start"], f["heal"]) for f in ix.ev.faults
                              if f.get("replica") == replica and f["kind"] in _AWAY):
        if begin > moment:
            spans.append((moment, min(begin, end)))
        moment = max(moment, heal)
    if moment < end:
        spans.append((moment, end))
    return [(a, b) for a, b in spans if b > a]


def build_wait(ix: Index, flow: str, start: float, end: float) -> float:
    """Seconds between ``start`` and ``end`` during which no replica new
    enough for ``flow`` could take it over (0 when builds are unknown: runs
    without builds, or your own flows)."""
    required = _required(ix, flow, start)
    if required is None or not ix.ev.lives or end <= start:
        return 0.0
    spans = sorted(span for replica, build in ix.ev.builds.items()
                   if (version := _version(build)) is not None and version >= required
                   for span in _available(ix, replica))
    covered, reach = 0.0, start
    for begin, finish in spans:
        begin, finish = max(begin, reach), min(finish, end)
        if finish > begin:
            covered += finish - begin
            reach = finish
    return (end - start) - covered
