"""Invariant 7: how long flows stood still after each fault.

For every fault, the *affected* flows are those in progress when it struck:
claimed (and not released or finished) by the replica it hit, or, for a
backend fault, by anyone. A flow has *recovered* when a write on it that was
sent after the fault struck is acknowledged. Each fault's recovery is its
slowest affected flow, measured from the fault, and for backend faults also
from the heal (a server that is down cannot be recovered from sooner). The
report gives median and max per kind against the lease (the session timeout
on ZooKeeper). A recovery slower than lease + slack, not counting the
backend outages it spans (its own fault's, and a later fault's that struck
before it was over), is a violation: the slack absorbs a loaded machine, not
a missing takeover.

Recovering once is not enough: a flow must never be left without a live
owner. For every claim that ended without handing the flow back (no release,
no final state written), the flow is *orphaned* from the claim's last
acknowledged call (a write or a renewal) until the next claim is granted.
An orphan time over lease + slack (not counting backend outages in between)
is a violation too: some replica kept a claim it no longer served.

Neither clock counts the time a flow waited, as it must, for a replica new
enough to run it (``eligible``): during a rolling deploy the only replicas
on the flow's build may be the ones a fault took away, and the others
decline it (never downgrade). Such waits are counted, not blamed.
"""

from __future__ import annotations

import math
import statistics
from typing import Any

from flowbaton.backends.states import TERMINAL_FLOW_STATES
from flowbaton.testing.chaos.checks import Outcome
from flowbaton.testing.chaos.eligible import build_wait
from flowbaton.testing.chaos.evidence import Index, Op
from flowbaton.testing.chaos.nemesis import REPLICA_FAULTS

__all__ = ["check_orphans", "check_recovery", "orphan_times", "recovery_stats"]


def _holder_at(ix: Index, flow: str, when: float) -> Op | None:
    """The last claim granted on ``flow`` before ``when``, if still held then."""
    before = [g for g in ix.grants.get(flow, []) if (g.t1 or 0.0) < when]
    if not before:
        return None
    grant = before[-1]
    # Handed back or finished by a call sent before ``when``: not held then.
    return None if _handed_back(ix.by_claim.get(grant.claim or "", []), before=when) else grant


def _affected(ix: Index, fault: dict[str, Any]) -> list[str]:
    start = fault["start"]
    found = []
    for flow in ix.grants:
        holder = _holder_at(ix, flow, start)
        if holder is None:
            continue
        if fault["kind"] not in REPLICA_FAULTS or holder.replica == fault.get("replica"):
            found.append(flow)
    return found


def _progress_after(ix: Index, flow: str, origin: float) -> float | None:
    times = [(w.t1 or 0.0) - origin for w in ix.flow_writes.get(flow, [])
             if w.acked and w.t0 >= origin and w.op != "create_flow"]
    return min(times) if times else None


def check_recovery(ix: Index, slack: float) -> tuple[Outcome, list[dict[str, Any]]]:
    lease = ix.ev.lease
    out = Outcome(7, f"recovery after each fault, and every orphaned flow taken over, within lease + slack "
                     f"({lease:g}s + {slack:g}s)")
    per_fault = []
    for fault in ix.ev.faults:
        item = _recovery(ix, fault)
        per_fault.append(item)
        out.checked += 1
        out.counts[fault["kind"]] += 1
        if item["waited_for_build"]:
            out.counts["recoveries that waited for a replica new enough"] += 1
        judged = None if item["recovery"] is None else item["recovery"] - item["outage"] - item["waited_for_build"]
        if judged is not None and judged > lease + slack:
            waited = item["waited_for_build"]
            out.violate(f"fault {fault['index']} ({fault['kind']}): flow {item['slowest_flow']} stood still "
                        f"{item['recovery']:.1f}s after the fault (backend outages meanwhile {item['outage']:.1f}s)"
                        + (f", {waited:.1f}s of it with no replica new enough" if waited else ""))
    return out, per_fault


def _recovery(ix: Index, fault: dict[str, Any]) -> dict[str, Any]:
    """The slowest affected flow. Its wait is judged without the backend
    outages inside it: this fault's own, and those of later faults that
    struck before the flow recovered (nothing can recover while the servers
    are down, whichever fault took them)."""
    start = fault["start"]
    waits = {flow: _progress_after(ix, flow, start) for flow in _affected(ix, fault)}
    known = {flow: wait for flow, wait in waits.items() if wait is not None}

    def judged(flow: str) -> float:
        return known[flow] - _outage(ix, start, start + known[flow]) - _build_wait(ix, flow, start, known[flow])

    slowest_flow = max(known, key=judged) if known else None
    slowest = known[slowest_flow] if slowest_flow else None
    outage = _outage(ix, start, start + slowest) if slowest is not None else 0.0
    after_heal = None
    if slowest is not None and fault["kind"] not in REPLICA_FAULTS:
        after_heal = max(0.0, slowest - outage)
    waited = _build_wait(ix, slowest_flow, start, slowest) if slowest_flow and slowest is not None else 0.0
    return {"index": fault["index"], "kind": fault["kind"], "affected": len(waits), "recovery": slowest,
            "outage": outage, "after_heal": after_heal, "slowest_flow": slowest_flow,
            "never": len(waits) - len(known), "waited_for_build": waited}


def _build_wait(ix: Index, flow: str, start: float, wait: float) -> float:
    return build_wait(ix, flow, start, start + wait)


def _handed_back(ops: list[Op], before: float = math.inf) -> bool:
    """An accepted release or final flow write, sent before ``before``."""
    return any(op.acked and op.t0 < before
               and (op.op == "release" or (op.op == "save_flow" and op.state in TERMINAL_FLOW_STATES))
               for op in ops)


def _outage(ix: Index, start: float, end: float) -> float:
    """Seconds of backend faults between ``start`` and ``end``."""
    spans = [max(0.0, min(end, float(f["heal"])) - max(start, float(f["start"]))) for f in ix.ev.faults
             if f["kind"] not in REPLICA_FAULTS]
    return sum(spans)


def orphan_times(ix: Index) -> list[dict[str, Any]]:
    """How long each flow went without a live owner after a claim ended
    without handing it back."""
    found = []
    for flow, grants in ix.grants.items():
        for number, grant in enumerate(grants):
            ops = ix.by_claim.get(grant.claim or "", [])
            if _handed_back(ops):
                continue
            last = max([grant.t1 or 0.0] + [op.t1 or 0.0 for op in ops if op.acked])
            following = grants[number + 1].t1 if number + 1 < len(grants) else None
            until = following if following is not None else ix.ev.end
            waited = _build_wait(ix, flow, last, until - last)
            found.append({"flow": flow, "claim": grant.claim, "epoch": grant.epoch, "last_call": last,
                          "next_claim": following, "waited_for_build": waited,
                          "orphaned_s": until - last - _outage(ix, last, until) - waited})
    return found


def check_orphans(ix: Index, slack: float, out: Outcome) -> list[dict[str, Any]]:
    orphans = orphan_times(ix)
    bound = ix.ev.lease + slack
    for item in orphans:
        out.checked += 1
        if item["waited_for_build"]:
            out.counts["orphans that waited for a replica new enough"] += 1
        if item["orphaned_s"] > bound:
            nxt = "no later claim" if item["next_claim"] is None else "the next claim"
            out.violate(f"flow {item['flow']}: no live owner for {item['orphaned_s']:.1f}s between the last call "
                        f"of {item['claim']}@{item['epoch']} and {nxt} (bound {bound:g}s)")
    return orphans


def recovery_stats(per_fault: list[dict[str, Any]], lease: float) -> dict[str, Any]:
    """Median and max recovery per fault kind (from the fault; from the heal
    too for backend faults), and as multiples of the lease."""
    kinds: dict[str, list[dict[str, Any]]] = {}
    for item in per_fault:
        if item["recovery"] is not None:
            kinds.setdefault(item["kind"], []).append(item)
    stats = {kind: _summary(items, lease) for kind, items in sorted(kinds.items())}
    everything = [item for items in kinds.values() for item in items]
    if everything:
        stats["all"] = _summary(everything, lease)
    return stats


def _summary(items: list[dict[str, Any]], lease: float) -> dict[str, Any]:
    values = [item["recovery"] for item in items]
    median, worst = statistics.median(values), max(values)
    summary = {"faults": len(values), "median_s": round(median, 3), "max_s": round(worst, 3),
               "median_leases": round(median / lease, 2), "max_leases": round(worst / lease, 2)}
    healed = [item["after_heal"] for item in items if item["after_heal"] is not None]
    if healed:
        summary.update(after_heal_median_s=round(statistics.median(healed), 3),
                       after_heal_max_s=round(max(healed), 3))
    return summary
