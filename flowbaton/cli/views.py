"""What the CLI prints: the operator API's documents as JSON or as tables.

The documents and their JSON shapes belong to ``flowbaton.ops.documents``;
views only render them, as pure functions, so they are easy to test.
Tables for the newer operator commands are in ``ops_views``. Text output
passes every stored string through ``terminal.printable`` (table cells, and
each line as a whole); JSON output is exact.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from ..ops import times
from ..ops.documents import ClaimRow, FlowRow, FlowShow, TaskRow
from .terminal import printable, printable_lines

__all__ = [
    "Document",
    "render_json",
    "render_flows",
    "render_claims",
    "render_show",
    "table",
    "when",
    "short",
    "seconds",
]

JSON = Any


class Document(Protocol):
    """What ``--json`` prints: an operator API document (``ops.documents``)."""

    def to_json(self) -> dict[str, JSON]: ...


def render_json(doc: Document | Sequence[Document]) -> str:
    """The document (or list of them) as the documented JSON, exactly."""
    value = [d.to_json() for d in doc] if isinstance(doc, Sequence) else doc.to_json()
    return json.dumps(value, indent=2, sort_keys=False)


# ------------------------------------------------------------------ tables


def when(stamp: float | None) -> str:
    """A stored time, local, to the second (``ops.times.when``), safe to print."""
    return printable(times.when(stamp))


def seconds(value: float | None) -> str:
    """A span for people: 4.2s, 12m, 3.5h, 2.0d (``ops.times.span``), safe to print."""
    return printable(times.span(value))


def short(value: JSON, width: int = 40) -> str:
    """One cell: a string escaped, anything else as JSON (which escapes
    control characters itself), cut to ``width``."""
    text = printable(value) if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to their widest cell; the last one is not padded.
    Cells are made printable here, so no table prints a stored string raw."""
    headers = [printable(h) for h in headers]
    rows = [[printable(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    lines = [headers, *rows]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines)


def render_flows(rows: Sequence[FlowRow]) -> str:
    if not rows:
        return "no flows"
    cells = [[r.id, r.state, short(r.name, 30), r.factory, r.owner or "-", when(r.updated_at), _why(r)]
             for r in rows]
    return table(["ID", "STATE", "NAME", "FACTORY", "OWNER", "UPDATED", "WHY"], cells)


def _why(row: FlowRow) -> str:
    text = row.stranded or row.reason or ""
    return short(text, 100) if text else ""


def render_claims(rows: Sequence[ClaimRow], now: float) -> str:
    if not rows:
        return "no claims"
    cells = [_claim_cells(r, now) for r in rows]
    return table(["FLOW", "OWNER", "HOST", "PID", "EPOCH", "STATE", "AGE", "LEASE LEFT", "LAST PROGRESS"], cells)


def _claim_cells(row: ClaimRow, now: float) -> list[str]:
    claim = row.claim
    return [claim.flow_id, claim.owner + (" (stale)" if row.stale else ""), row.host or "-",
            str(row.pid or "-"), str(claim.epoch), row.state or "-", seconds(now - claim.claimed_at),
            _lease_left(claim.expires_at, now), _ago(row.last_progress, now)]


def _lease_left(at: float | None, now: float) -> str:
    return "session" if at is None else seconds(at - now)


def _ago(stamp: float | None, now: float) -> str:
    return printable(times.ago(stamp, now))


def render_show(show: FlowShow) -> str:
    lines = _show_head(show)
    cells = [_task_cells(t) for t in show.tasks]
    tasks = table(["TASK", "STATE", "VERSION", "ATTEMPTS", "OWNER", "RESULT / FAILURE"], cells) if cells \
        else "no tasks"
    unmatched = show.meta.unmatched
    tail = ["unmatched (stored, no longer in the flow): " + ", ".join(unmatched)] if unmatched else []
    tail += _history(show)
    return "\n".join([printable_lines(lines), "", tasks, *([printable_lines(tail)] if tail else [])])


def _show_head(show: FlowShow) -> list[str]:
    flow = show.flow
    lines = [
        f"flow      {flow.id}  ({flow.name})",
        f"state     {flow.state}" + (f": {flow.reason}" if flow.reason else ""),
        f"factory   {flow.factory}  args={short(flow.args)}  kwargs={short(flow.kwargs)}",
        f"inputs    {short(flow.inputs, 80)}",
        f"owner     {show.owner or '-'}" + (f"  (claim {show.claim.token})" if show.claim else ""),
        f"updated   {when(flow.updated_at)}  (created {when(flow.created_at)})",
    ]
    lines += _build_lines(show)
    lines += [f"declined  by {d.replica_id} at {when(d.at)}: {d.reason}" for d in show.declines]
    if show.stranded:
        lines.append("STRANDED  " + (show.stranded_reason or "no live owner, and every live replica "
                                     "declined it: start a replica that can import its factory"))
    return lines + [f"decision  {task}: {choice}" for task, choice in show.meta.decisions.items()]


def _build_lines(show: FlowShow) -> list[str]:
    """The newest build the flow ran on, and an operator's allowance (``engine.builds``)."""
    meta = show.meta
    if meta.build is None and meta.allowed_build is None:
        return []  # a flow from before builds, or from code that says none
    allowed = f"  (an operator allowed build {meta.allowed_build} or newer)" if meta.allowed_build else ""
    return [f"build     {meta.build or '-'}{allowed}"]


def _task_cells(task: TaskRow) -> list[str]:
    shown = task.failure["message"] if task.failure else task.result
    return [task.id, task.state, task.version or "-", str(task.attempts), task.owner or "-", short(shown)]


def _history(show: FlowShow) -> list[str]:
    lines = []
    for entry in show.meta.resumes:
        kind = f"took over from {entry.get('previous_owner')}" if entry.get("takeover") else "resumed"
        lines.append(f"{when(entry.get('at'))}  epoch {entry.get('epoch')}  {entry.get('owner')} {kind}"
                     + _diff_text(entry))
    for entry in show.meta.claims:  # how each claim ended (engine.meta: "Attempt and claim history")
        live = show.claim is not None and show.claim.epoch == entry.get("epoch")
        ended = entry.get("ended") or ("holds it" if live else "end not recorded")
        at = f" at {when(entry['ended_at'])}" if entry.get("ended_at") is not None else ""
        lines.append(f"{when(entry.get('claimed_at'))}  epoch {entry.get('epoch')}  {entry.get('owner')} claimed "
                     f"it: {ended}{at}")
    for entry in show.meta.operations:
        fenced = f", fenced {entry['fenced']}" if entry.get("fenced") else ""
        lines.append(f"{when(entry.get('at'))}  epoch {entry.get('epoch')}  {entry.get('action')} by "
                     f"{entry.get('by')}{fenced}")
    return ["", "history:", *sorted(lines)] if lines else []


def _diff_text(entry: Mapping[str, JSON]) -> str:
    parts = [f"{key} {', '.join(str(t) for t in entry.get(key) or [])}" for key in ("added", "unmatched")
             if entry.get(key)]
    parts += [f"version {c.get('task')} {c.get('stored')}->{c.get('current')} ({c.get('policy')})"
              for c in entry.get("version_changed") or []]
    return ("; " + "; ".join(parts)) if parts else ""
