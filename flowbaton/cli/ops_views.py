"""Readable output of the operator commands (``replicas``, ``plan``,
``check``, ``purge``); their JSON is the query functions' own documents.
Stored strings are made printable (``terminal``) cell by cell and line by line."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..ops.actions import PurgeReport
from ..ops.check import CheckReport
from .terminal import printable_lines
from .views import seconds, short, table, when

__all__ = ["render_replicas", "render_plan", "render_check", "render_purge"]

JSON = Any


def render_replicas(doc: Mapping[str, JSON], now: float) -> str:
    rows = doc["replicas"]
    head = (table(["REPLICA", "HOST", "PID", "VERSION", "UP", "ALLOW", "CLAIMS"],
                  [[r["replica_id"], r["host"], str(r["pid"]), r["version"], seconds(now - r["started_at"]),
                    ",".join(r["allow"]) or "-", _claims_cell(r["claims"])] for r in rows])
            if rows else "no live replicas")
    lines = [f"claimed by no live replica: {c['flow_id']} (owner {c['owner']}, epoch {c['epoch']})"
             for c in doc["other_claims"]]
    lines += [f"warning: {w}" for w in doc["warnings"]]
    return "\n".join([head, printable_lines(lines)]) if lines else head


def _claims_cell(flow_ids: list[str]) -> str:
    if not flow_ids:
        return "-"
    return f"{len(flow_ids)}: " + short(", ".join(flow_ids), 60)


def render_plan(doc: Mapping[str, JSON]) -> str:
    lines = [f"plan for flow {doc['flow_id']} ({doc['state']}, factory {doc['factory']}); nothing is changed"]
    for label, key in (("reuse", "reuse"), ("run", "run"), ("in doubt", "in_doubt"), ("failed", "failed"),
                       ("added", "added"), ("unmatched", "unmatched")):
        if doc.get(key):
            lines.append(f"  {label:<10}{', '.join(doc[key])}")
    for change in doc.get("version_changed") or []:
        lines.append(f"  version   {change['task']}: {change['stored']} -> {change['current']}, "
                     f"policy {change['policy']}")
    lines += [f"  HELD      {reason}" for reason in doc.get("held") or []]
    if len(lines) == 1:
        lines.append("  nothing to do")
    return printable_lines(lines)


def render_check(report: CheckReport) -> str:
    lines = [f"note     {note}" for note in report.notes]
    lines += [f"PROBLEM  {problem}" for problem in report.problems]
    verdict = "check: OK" if report.ok else f"check: {len(report.problems)} problem(s)"
    return printable_lines([*lines, verdict])


def render_purge(report: PurgeReport) -> str:
    verb = "would purge" if report.dry_run else "purged"
    lines = [f"{verb} {f.id} ({f.state}, last updated {when(f.updated_at)})" for f in report.flows]
    lines += [f"skipped {flow_id}: {why}" for flow_id, why in report.skipped]
    lines.append(f"{verb} {len(report.flows)} flow(s) last updated before {when(report.cutoff)}"
                 + (f"; skipped {len(report.skipped)}" if report.skipped else ""))
    return printable_lines(lines)
