"""Readable output of the operator commands (``replicas``, ``plan``,
``check``, ``purge``): each renders a report the operator API owns
(``ops.documents``, ``ops.check``, ``ops.actions``), whose ``to_json`` is
the JSON. Stored strings are made printable (``terminal``) cell by cell and
line by line."""

from __future__ import annotations

from ..ops.actions import PurgeReport
from ..ops.builds import unset_warning
from ..ops.check import CheckReport
from ..ops.documents import FlowPlan, ReplicaRow, ReplicasReport
from ..ops.rollback import RollbackReport
from .terminal import printable_lines
from .views import seconds, short, table, when

__all__ = ["render_replicas", "render_plan", "render_check", "render_purge", "render_rollback"]


def render_replicas(report: ReplicasReport, now: float) -> str:
    head = (table(["REPLICA", "HOST", "PID", "VERSION", "BUILD", "UP", "ALLOW", "CLAIMS", "DRAINING"],
                  [_replica_cells(r, now) for r in report.replicas])
            if report.replicas else "no live replicas")
    lines = [f"claimed by no live replica: {c.flow_id} (owner {c.owner}, epoch {c.epoch})"
             for c in report.other_claims]
    lines += [f"warning: {w}" for w in report.warnings]
    unset = unset_warning([r.info for r in report.replicas])
    lines += [f"warning: {unset}"] if unset else []
    return "\n".join([head, printable_lines(lines)]) if lines else head


def _replica_cells(row: ReplicaRow, now: float) -> list[str]:
    info = row.info
    return [info.replica_id, info.host, str(info.pid), info.version, info.build or "unset",
            seconds(now - info.started_at),
            ",".join(info.allow) or "-", _claims_cell(row.claims), "yes" if row.draining else "-"]


def _claims_cell(flow_ids: list[str]) -> str:
    if not flow_ids:
        return "-"
    return f"{len(flow_ids)}: " + short(", ".join(flow_ids), 60)


def render_plan(plan: FlowPlan) -> str:
    lines = [f"plan for flow {plan.flow_id} ({plan.state}, factory {plan.factory}); nothing is changed"]
    for label, tasks in (("reuse", plan.reuse), ("run", plan.run), ("in doubt", plan.in_doubt),
                         ("failed", plan.failed), ("added", plan.added), ("unmatched", plan.unmatched)):
        if tasks:
            lines.append(f"  {label:<10}{', '.join(tasks)}")
    for change in plan.version_changed:
        lines.append(f"  version   {change['task']}: {change['stored']} -> {change['current']}, "
                     f"policy {change['policy']}")
    lines += [f"  HELD      {reason}" for reason in plan.held]
    if len(lines) == 1:
        lines.append("  nothing to do")
    return printable_lines(lines + _plan_builds(plan))


def _plan_builds(plan: FlowPlan) -> list[str]:
    """The build lines of a plan; none when neither the flow nor the code here has a build."""
    if plan.build is None and plan.allowed_build is None and plan.this_build is None:
        return []
    allowed = f", an operator allowed build {plan.allowed_build} or newer" if plan.allowed_build else ""
    here = plan.this_build or "unset (it runs any flow)"
    lines = [f"  build     the flow ran on {plan.build or 'no build'}{allowed}; this code is {here}"]
    return lines + ([f"  would decline: {plan.decline}"] if plan.decline else [])


def render_check(report: CheckReport) -> str:
    lines = [f"note     {note}" for note in report.notes]
    lines += [f"warning  {warning}" for warning in report.warnings]
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


def render_rollback(report: RollbackReport) -> str:
    """``retry --stranded --allow-build``: one line per flow, then the count."""
    lines = [result.describe() for result in report.allowed]
    lines += [f"skipped {flow_id}: {why}" for flow_id, why in report.skipped]
    lines.append(f"build {report.build} or newer may now run {len(report.allowed)} flow(s) stranded for their "
                 "build" + (f"; skipped {len(report.skipped)}" if report.skipped else ""))
    return printable_lines(lines)
