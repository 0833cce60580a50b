"""The run's verdict: one JSON document, and a short table for people."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

from flowbaton.testing.chaos.checks import Outcome, check_all
from flowbaton.testing.chaos.evidence import Evidence, Index
from flowbaton.testing.chaos.recovery import check_orphans, check_recovery, recovery_stats

__all__ = ["build_report", "table", "write_report"]


def build_report(ev: Evidence, run: dict[str, Any], slack: float) -> dict[str, Any]:
    ix = Index.build(ev)
    outcomes = check_all(ix)
    recovery, per_fault = check_recovery(ix, slack)
    orphans = check_orphans(ix, slack, recovery)
    outcomes = sorted([*outcomes, recovery], key=lambda o: o.number)
    return {
        "ok": all(o.violations == 0 for o in outcomes),
        "run": run,
        "invariants": {str(o.number): o.to_dict() for o in outcomes},
        "recovery": {"by_kind": recovery_stats(per_fault, ev.lease), "per_fault": per_fault,
                     "orphans": _orphan_summary(orphans)},
        "totals": _totals(ev, outcomes),
        "faults": ev.faults,
    }


def _totals(ev: Evidence, outcomes: list[Outcome]) -> dict[str, Any]:
    counts: Counter[str] = Counter()
    for outcome in outcomes:
        if outcome.number not in (1, 7):  # flow states and fault kinds are given on their own
            counts.update(outcome.counts)
    return {
        "flows": len(ev.submitted),
        "flow_states": dict(outcomes[0].counts),
        "executions": len(ev.executions),
        "backend_calls_recorded": len(ev.ops),
        "faults": len(ev.faults),
        "ledger": ev.ledger_used,
        **_resume_diffs(ev),
        **{key: value for key, value in sorted(counts.items())},
    }


def _resume_diffs(ev: Evidence) -> dict[str, int]:
    """Resumes that met changed code (a deploy between a crash and its
    resume), from the diffs flows keep in their meta."""
    found: Counter[str] = Counter()
    for flow in ev.final_flows.values():
        for entry in (flow.meta.get("resumes") or []) if flow else []:
            for part in ("added", "unmatched", "version_changed"):
                if entry.get(part):
                    found[f"resumes with tasks {part.replace('_', ' ')}"] += 1
    return dict(found)


def _orphan_summary(orphans: list[dict[str, Any]]) -> dict[str, Any]:
    times = sorted(item["orphaned_s"] for item in orphans)
    worst = max(orphans, key=lambda item: item["orphaned_s"]) if orphans else None
    return {"claims_not_handed_back": len(times),
            "median_s": round(times[len(times) // 2], 3) if times else None,
            "max_s": round(times[-1], 3) if times else None, "worst": worst}


def write_report(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")


def table(report: dict[str, Any]) -> str:
    """Markdown: one row per invariant, then recovery per fault kind."""
    run = report["run"]
    lines = [
        f"chaos run: {run['backend']}, {run['flows']} flows, {run['replicas']} replicas, seed {run['seed']}, "
        f"lease {run['lease']:g}s, {report['totals']['faults']} faults, {run['wall_seconds']:.0f}s "
        f"-> {'PASS' if report['ok'] else 'FAIL'}",
        "",
        "| # | invariant | checked | violations | counted |",
        "|---|---|---:|---:|---|",
    ]
    for number, item in report["invariants"].items():
        counted = ", ".join(f"{k}: {v}" for k, v in sorted(item["counts"].items()))
        lines.append(f"| {number} | {item['title']} | {item['checked']} | {item['violations']} | {counted} |")
    lines += ["", "| fault | count | recovery median (s) | max (s) | max / lease | outside outages: median / max (s) |",
              "|---|---:|---:|---:|---:|---:|"]
    by_kind = report["recovery"]["by_kind"]
    for kind, stats in sorted(by_kind.items(), key=lambda item: (item[0] == "all", item[0])):
        healed = (f"{stats['after_heal_median_s']:.2f} / {stats['after_heal_max_s']:.2f}"
                  if "after_heal_max_s" in stats else "")
        lines.append(f"| {kind} | {stats['faults']} | {stats['median_s']:.2f} | {stats['max_s']:.2f} | "
                     f"{stats['max_leases']:.2f} | {healed} |")
    for item in report["invariants"].values():
        lines += [f"  ! {example}" for example in item["examples"]]
    return "\n".join(lines)
