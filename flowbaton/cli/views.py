"""What the CLI prints: the documented JSON shapes, and the same as tables.

Views are pure functions of records, so they are easy to test and the JSON
shapes live in one place. The shapes of ``flows``, ``claims`` and ``show``
only ever gain keys (docs/design.md, "Operator output"); tables for the
newer operator commands are in ``ops_views``. Text output passes every stored string
through ``terminal.printable`` (table cells, and each line as a whole);
JSON output is exact.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from typing import Any

from ..backends.records import ClaimInfo, Decline, FlowDetail, ReplicaInfo, TaskDetail
from .terminal import printable, printable_lines

__all__ = [
    "flow_row",
    "claim_row",
    "show_doc",
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


def render_json(doc: JSON) -> str:
    return json.dumps(doc, indent=2, sort_keys=False)


# ------------------------------------------------------------------ shapes


def flow_row(flow: FlowDetail, owner: str | None) -> dict[str, JSON]:
    """Documented keys, plus ``reason`` (why HELD, failed or cancelled)."""
    return {
        "id": flow.id,
        "name": flow.name,
        "state": flow.state,
        "factory": flow.factory,
        "owner": owner,
        "created_at": flow.created_at,
        "updated_at": flow.updated_at,
        "reason": flow.reason,
    }


def claim_row(
    claim: ClaimInfo,
    replica: ReplicaInfo | None = None,
    flow: FlowDetail | None = None,
    progress: float | None = None,
    now: float | None = None,
) -> dict[str, JSON]:
    """Documented keys, plus where the owner runs (``host``/``pid`` from its
    presence; None when the owner is no live replica, which makes the claim
    ``stale``), the flow's ``state``, ``age`` and ``lease_left`` in seconds
    (``lease_left`` None and ``lease`` "session" where the session is the
    lease), and ``last_progress``: the latest task start or end."""
    current = time.time() if now is None else now
    return {
        **claim.to_dict(),
        "host": replica.host if replica else None,
        "pid": replica.pid if replica else None,
        "state": flow.state if flow else None,
        "age": round(current - claim.claimed_at, 3),
        "lease": "session" if claim.expires_at is None else "lease",
        "lease_left": None if claim.expires_at is None else round(claim.expires_at - current, 3),
        "last_progress": progress,
        "stale": replica is None,
    }


def task_row(task_id: str, detail: TaskDetail | None) -> dict[str, JSON]:
    if detail is None:  # in the flow, never started
        return {"id": task_id, "state": "PENDING", "version": None, "attempts": 0,
                "result": None, "failure": None, "owner": None}
    return {
        "id": task_id,
        "state": detail.state,
        "version": detail.version,
        "attempts": detail.attempts,
        "result": detail.result,
        "failure": detail.failure,
        "owner": detail.owner,
    }


def _task_order(flow: FlowDetail, tasks: Mapping[str, TaskDetail]) -> list[str]:
    """The flow's own order (stored by the engine at the last run), then any
    stored task it no longer has."""
    known = [str(t) for t in flow.meta.get("tasks", [])]
    return known + sorted(t for t in tasks if t not in known)


def _list(value: JSON) -> list[JSON]:
    return list(value) if isinstance(value, list) else []


def show_doc(
    flow: FlowDetail,
    tasks: Mapping[str, TaskDetail],
    owner: str | None,
    declines: Sequence[Decline],
    claim: ClaimInfo | None = None,
) -> dict[str, JSON]:
    """The documented ``show`` object, plus ``reason`` (why HELD or failed),
    ``declines`` (which replica refused the flow, and why), ``claim`` (the
    live claim), ``resumes`` (each resume: who, when, epoch, takeover or not,
    and the diff between stored and rebuilt flow), ``operations`` (operator
    actions) and ``decisions`` (operator choices on version changes)."""
    return {
        "id": flow.id,
        "name": flow.name,
        "state": flow.state,
        "factory": flow.factory,
        "args": flow.args,
        "kwargs": flow.kwargs,
        "inputs": flow.inputs,
        "owner": owner,
        "tasks": [task_row(t, tasks.get(t)) for t in _task_order(flow, tasks)],
        "unmatched": [str(u) for u in flow.meta.get("unmatched", [])],
        "reason": flow.reason,
        "declines": [{"replica_id": d.replica_id, "reason": d.reason, "at": d.at} for d in declines],
        "created_at": flow.created_at,
        "updated_at": flow.updated_at,
        "epoch": flow.epoch,
        "claim": claim.to_dict() if claim else None,
        "resumes": _list(flow.meta.get("resumes")),
        "operations": _list(flow.meta.get("operations")),
        "decisions": flow.meta.get("version_decisions") or {},
    }


# ------------------------------------------------------------------ tables


def when(stamp: float | None) -> str:
    if stamp is None:
        return "-"
    try:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(stamp))
    except (OverflowError, OSError, ValueError, TypeError):  # a stored stamp no calendar holds
        return printable(repr(stamp))


def seconds(value: float | None) -> str:
    """A span for people: 4.2s, 12m, 3.5h, 2.0d."""
    if value is None:
        return "-"
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        return printable(repr(value))
    for unit, size in (("d", 86400.0), ("h", 3600.0), ("m", 60.0)):
        if abs(value) >= size:
            return f"{value / size:.1f}{unit}"
    return f"{value:.1f}s"


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


def render_flows(rows: Sequence[Mapping[str, JSON]]) -> str:
    if not rows:
        return "no flows"
    cells = [[r["id"], r["state"], short(r["name"], 30), r["factory"], r["owner"] or "-",
              when(r["updated_at"]), _why(r)] for r in rows]
    return table(["ID", "STATE", "NAME", "FACTORY", "OWNER", "UPDATED", "WHY"], cells)


def _why(row: Mapping[str, JSON]) -> str:
    text = row.get("stranded") or row.get("reason") or ""
    return short(text, 100) if text else ""


def render_claims(rows: Sequence[Mapping[str, JSON]], now: float) -> str:
    if not rows:
        return "no claims"
    cells = [[r["flow_id"], r["owner"] + (" (stale)" if r.get("stale") else ""), r.get("host") or "-",
              str(r.get("pid") or "-"), str(r["epoch"]), r.get("state") or "-",
              seconds(now - r["claimed_at"]), _lease_left(r["expires_at"], now), _ago(r.get("last_progress"), now)]
             for r in rows]
    return table(["FLOW", "OWNER", "HOST", "PID", "EPOCH", "STATE", "AGE", "LEASE LEFT", "LAST PROGRESS"], cells)


def _lease_left(at: float | None, now: float) -> str:
    return "session" if at is None else seconds(at - now)


def _ago(stamp: float | None, now: float) -> str:
    return "-" if stamp is None else f"{seconds(now - stamp)} ago"


def render_show(doc: Mapping[str, JSON], is_stranded: bool) -> str:
    lines = [
        f"flow      {doc['id']}  ({doc['name']})",
        f"state     {doc['state']}" + (f": {doc['reason']}" if doc["reason"] else ""),
        f"factory   {doc['factory']}  args={short(doc['args'])}  kwargs={short(doc['kwargs'])}",
        f"inputs    {short(doc['inputs'], 80)}",
        f"owner     {doc['owner'] or '-'}" + _claim_text(doc.get("claim")),
        f"updated   {when(doc.get('updated_at'))}  (created {when(doc.get('created_at'))})",
    ]
    lines += [f"declined  by {d['replica_id']} at {when(d['at'])}: {d['reason']}" for d in doc["declines"]]
    if is_stranded:
        lines.append("STRANDED  " + (doc.get("stranded_reason") or "no live owner, and every live replica "
                                     "declined it: start a replica that can import its factory"))
    lines += [f"decision  {task}: {choice}" for task, choice in (doc.get("decisions") or {}).items()]
    cells = [[t["id"], t["state"], t["version"] or "-", str(t["attempts"]), t["owner"] or "-",
              short(t["failure"]["message"] if t["failure"] else t["result"])] for t in doc["tasks"]]
    tasks = table(["TASK", "STATE", "VERSION", "ATTEMPTS", "OWNER", "RESULT / FAILURE"], cells) if cells \
        else "no tasks"
    tail = ["unmatched (stored, no longer in the flow): " + ", ".join(doc["unmatched"])] if doc["unmatched"] else []
    tail += _history(doc)
    return "\n".join([printable_lines(lines), "", tasks, *([printable_lines(tail)] if tail else [])])


def _claim_text(claim: Mapping[str, JSON] | None) -> str:
    return f"  (claim {claim['token']})" if claim else ""


def _history(doc: Mapping[str, JSON]) -> list[str]:
    lines = []
    for entry in doc.get("resumes") or []:
        kind = f"took over from {entry.get('previous_owner')}" if entry.get("takeover") else "resumed"
        lines.append(f"{when(entry.get('at'))}  epoch {entry.get('epoch')}  {entry.get('owner')} {kind}"
                     + _diff_text(entry))
    for entry in doc.get("operations") or []:
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
