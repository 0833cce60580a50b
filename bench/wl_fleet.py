"""Workload 5, fleet scale: coordination requests per replica, mass
takeover, fairness (``fleet_coord.py``, ``fleet_takeover.py``).

Per pair, flowbaton then TaskFlow (a non-blocking conductor, the stock one
that runs many jobs at once), on the run's shared servers:

1. requests/s of one replica, idle and holding ``--fleet-flows`` running
   flows, on ZooKeeper and Redis (TaskFlow: its ZooKeeper jobboard, and
   its Redis jobboard with ZooKeeper persistence);
2. mass takeover of ``--takeover-flows`` flows by two survivors after
   kill -9 of the replica holding them all, lease 4 s, on ZooKeeper and
   Redis (TaskFlow: its ZooKeeper jobboard, measured once a pair and
   paired with both rows);
3. fairness: ``--fair-flows`` flows submitted at once to three ready
   replicas (TaskFlow: its ZooKeeper jobboard, paired with both rows).

SQLite has no server to count at and no replicas on other hosts: skipped.
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Callable
from typing import Any

from . import fleet_coord, fleet_takeover
from .context import Context
from .fleet_sides import FleetSide, FlowbatonFleet, TaskflowFleet
from .stats import Figure, Target

__all__ = ["run"]

BACKENDS = {"zookeeper": "ZooKeeper", "redis": "Redis"}
TF_COORD = {"zookeeper": "TaskFlow: conductor on its ZooKeeper jobboard + ZooKeeper persistence",
            "redis": "TaskFlow: conductor on its Redis jobboard (claim expiry 10 s renewed every third of it) "
                     "+ ZooKeeper persistence"}
TF_BOARD = "zookeeper"  # TaskFlow's takeover and fairness run on its ZooKeeper jobboard
Value = float | None


def _coord_figures(flows: int) -> dict[str, Figure]:
    figures = {}
    for backend, name in BACKENDS.items():
        figures[f"idle.{backend}"] = Figure(
            f"fleet.coord.idle.{backend}", f"coordination requests/s at the server, idle replica (no flows, "
            f"lease 10 s), {name} ({TF_COORD[backend]})", "req/s", Target("fb<=", 2))
        figures[f"busy.{backend}"] = Figure(
            f"fleet.coord.busy.{backend}", f"coordination requests/s at the server, replica holding {flows:,} "
            f"running flows (TaskFlow: {flows:,} claimed jobs), {name}", "req/s", Target("fb<=", 5))
    return figures


def _takeover_figures(flows: int) -> dict[str, Figure]:
    lease = fleet_takeover.TAKEOVER_LEASE
    figures = {}
    for backend, name in BACKENDS.items():
        where = f"{name}, lease {lease:g} s" + ("" if backend == TF_BOARD else " (TaskFlow: ZooKeeper jobboard)")
        label = f"mass takeover of {flows:,} flows by 2 survivors, kill -9 → each flow's first task, {where}"
        figures[f"median.{backend}"] = Figure(f"fleet.takeover.{backend}.median", f"{label}: median", "s")
        figures[f"p95.{backend}"] = Figure(f"fleet.takeover.{backend}.p95", f"{label}: p95", "s",
                                           Target("fb<=", lease + 1))
        figures[f"last.{backend}"] = Figure(f"fleet.takeover.{backend}.last", f"{label}: last", "s",
                                            Target("fb<=", lease + 2))
        figures[f"resumed.{backend}"] = Figure(
            f"fleet.takeover.{backend}.resumed", f"mass takeover, {where}: the victim's flows resumed within "
            f"lease + {fleet_takeover.TAKEOVER_CAP:g} s", "flows", Target("fb==", flows))
        figures[f"share.{backend}"] = Figure(
            f"fleet.takeover.{backend}.share", f"mass takeover, {where}: flows taken by the survivor that took "
            "fewer", "flows")
    return figures


def _fair_figures(flows: int) -> dict[str, Figure]:
    even = flows / 3
    figures = {}
    for backend, name in BACKENDS.items():
        where = name + ("" if backend == TF_BOARD else " (TaskFlow: ZooKeeper jobboard)")
        label = f"fairness, 3 replicas, {flows:,} flows submitted at once, {where}"
        figures[f"min.{backend}"] = Figure(f"fleet.fair.{backend}.min", f"{label}: fewest flows on a replica",
                                           "flows")
        figures[f"max.{backend}"] = Figure(f"fleet.fair.{backend}.max", f"{label}: most flows on a replica",
                                           "flows")
        figures[f"off.{backend}"] = Figure(
            f"fleet.fair.{backend}.off", f"{label}: largest distance from an even share ({even:g})", "flows",
            Target("fb<=", round(even * 0.2)))
    return figures


def _attempt(ctx: Context, what: str, errors: list[str], action: Callable[[], Any]) -> Any:
    """``action()``, or None with its error noted: one failed experiment
    leaves its rows empty (with the reason) and the others still run."""
    try:
        return action()
    except Exception as err:  # reported in the row's errors
        ctx.say(f"fleet: {what} failed: {type(err).__name__}: {err}")
        errors.append(f"{what}: {type(err).__name__}: {err}")
        return None


def _nearest_rank(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[max(math.ceil(share * len(ordered)) - 1, 0)]


def _finite(value: float) -> Value:
    return value if math.isfinite(value) else None


def _takeover_values(result: fleet_takeover.Takeover | None) -> dict[str, Value]:
    if result is None or not result.delays:
        return dict.fromkeys(("median", "p95", "last", "resumed", "share"))
    delays = [math.inf if d is None else d for d in result.delays]
    return {"median": _finite(_nearest_rank(delays, 0.5)), "p95": _finite(_nearest_rank(delays, 0.95)),
            "last": _finite(max(delays)), "resumed": float(sum(d is not None for d in result.delays)),
            "share": float(result.shares[0]) if result.shares else None}


def _fair_values(counts: list[int] | None, flows: int) -> dict[str, Value]:
    if not counts:
        return dict.fromkeys(("min", "max", "off"))
    return {"min": float(min(counts)), "max": float(max(counts)),
            "off": max(abs(n - flows / 3) for n in counts)}


class _Pair:
    """One pair's measurements of one side: value per figure key, errors."""

    def __init__(self, ctx: Context, side: FleetSide) -> None:
        self.ctx = ctx
        self.side = side
        self.values: dict[str, Value] = {}
        self.errors: dict[str, list[str]] = {}

    def coord(self, state: str, flows: int) -> None:
        errors: list[str] = []
        readings = _attempt(self.ctx, f"{self.side.name} {state}", errors, lambda: fleet_coord.measure(
            self.side, self.ctx.servers, list(BACKENDS), flows, float(self.ctx.args.fleet_window)))
        for backend in BACKENDS:
            reading = (readings or {}).get(backend)
            self.values[f"{state}.{backend}"] = None if reading is None else reading.rate
            self.errors[f"{state}.{backend}"] = errors
            if reading is not None:
                top = ", ".join(f"{cmd} {n}" for cmd, n in reading.redis.most_common(4))
                self.ctx.say(f"fleet: {self.side.name} {state} {backend}: {reading.rate:.2f} req/s "
                             f"({reading.requests:.0f} in {reading.seconds:.1f} s; ZooKeeper packets "
                             f"{reading.zookeeper:.0f}; Redis: {top or '-'}; other Redis clients "
                             f"{reading.strangers})")
                if reading.strangers:
                    errors.append(f"{reading.strangers} other Redis client(s) connected in the window")
                if reading.reconnected:
                    errors.append(f"{backend}: the replica's ZooKeeper connections changed in the window")

    def takeover(self, backend: str, flows: int) -> None:
        errors: list[str] = []
        result = _attempt(self.ctx, f"{self.side.name} takeover {backend}", errors,
                          lambda: fleet_takeover.takeover(self.side, self.ctx.servers, backend, flows))
        values = _takeover_values(result)
        for key, value in values.items():
            self.values[f"{key}.{backend}"] = value
            self.errors[f"{key}.{backend}"] = errors
        if result is not None and None in result.delays and result.folder is not None:
            kept = self.ctx.logs / result.folder.name
            shutil.copytree(result.folder, kept, dirs_exist_ok=True)
            errors.append(f"{result.delays.count(None)} flows never resumed; ledger and logs kept in {kept}")
        if result is not None:
            shown = ", ".join(f"{key} {'never' if v is None else f'{v:.2f}'}" for key, v in values.items())
            self.ctx.say(f"fleet: {self.side.name} takeover {backend}: {shown}; shares {result.shares}")

    def fairness(self, backend: str, flows: int) -> None:
        errors: list[str] = []
        counts = _attempt(self.ctx, f"{self.side.name} fairness {backend}", errors,
                          lambda: fleet_takeover.fairness(self.side, self.ctx.servers, backend, flows))
        for key, value in _fair_values(counts, flows).items():
            self.values[f"{key}.{backend}"] = value
            self.errors[f"{key}.{backend}"] = errors
        if counts is not None:
            self.ctx.say(f"fleet: {self.side.name} fairness {backend}: flows per replica {counts}")


def _measure(ctx: Context, side: FleetSide, backends: list[str]) -> _Pair:
    """Every fleet figure of one side, once (``backends``: where takeover
    and fairness run)."""
    pair = _Pair(ctx, side)
    for state, flows in (("idle", 0), ("busy", int(ctx.args.fleet_flows))):
        ctx.say(f"fleet: {side.name} coordination, {state}")
        pair.coord(state, flows)
    for backend in backends:
        ctx.say(f"fleet: {side.name} mass takeover, {backend}")
        pair.takeover(backend, int(ctx.args.takeover_flows))
    for backend in backends:
        ctx.say(f"fleet: {side.name} fairness, {backend}")
        pair.fairness(backend, int(ctx.args.fair_flows))
    return pair


def _taskflow_key(key: str) -> str:
    """TaskFlow's takeover and fairness ran on its ZooKeeper jobboard only."""
    kind = key.split(".")[0]
    return key if kind in ("idle", "busy") else f"{kind}.{TF_BOARD}"


def _record(figures: dict[str, Figure], fb: _Pair, tf: _Pair) -> None:
    for key, figure in figures.items():
        tf_key = _taskflow_key(key)
        figure.add(fb.values.get(key), tf.values.get(tf_key))
        figure.errors += [f"flowbaton: {err}" for err in fb.errors.get(key, [])]
        figure.errors += [f"taskflow: {err}" for err in tf.errors.get(tf_key, [])]


def _notes(ctx: Context, pairs: int) -> None:
    ctx.notes.append(
        f"fleet: {pairs} pair(s) (at most --fleet-pairs). Coordination: requests counted at the server over a "
        f"{float(ctx.args.fleet_window):g} s window, after start-up (or the last claim) settled: ZooKeeper "
        "packets received on the replica's own connections (cons; requests and pings), Redis commands the "
        "whole server ran (INFO commandstats without our INFO; no other client connected) plus the "
        "replica's ZooKeeper packets (TaskFlow on Redis keeps its flow state in ZooKeeper). Busy: flows of "
        "one task sleeping an hour. TaskFlow: the stock non-blocking conductor, max_simultaneous_jobs = the "
        "flows. SQLite: no server, not measured.")
    ctx.notes.append(
        "fleet, mass takeover: one replica (lease 4 s; TaskFlow: ZooKeeper session timeout 4 s) claims "
        "every flow alone, then 2 survivors start and, once ready, the first gets SIGKILL; per flow, "
        "seconds from the kill to the first task a survivor starts (ledger); p95 by nearest rank. TaskFlow "
        "runs on its ZooKeeper jobboard once a pair, paired with both rows.")
    ctx.notes.append(
        "fleet, fairness: 3 ready replicas (concurrency = the flows; TaskFlow: non-blocking conductors on "
        "its ZooKeeper jobboard, paired with both rows), flows of 3 tasks of 0.1 s submitted one after "
        "another as fast as the client goes (TaskFlow posts ~25 ms a job); flows a replica ran = the "
        "process that started the flow's first task.")


def run(ctx: Context) -> list[Figure]:
    figures = {**_coord_figures(int(ctx.args.fleet_flows)), **_takeover_figures(int(ctx.args.takeover_flows)),
               **_fair_figures(int(ctx.args.fair_flows))}
    fb_side = FlowbatonFleet(ctx.servers)
    tf_side = TaskflowFleet(ctx.servers, ctx.taskflow_python, ctx.logs)
    # A pair takes 5-7 minutes (TaskFlow posts 2,300 jobs at ~25 ms each):
    # --fleet-pairs caps them. One pair already gives 1,000 takeover times
    # and request counts over whole windows.
    pairs = max(1, min(ctx.pairs, int(ctx.args.fleet_pairs)))
    for pair in range(pairs):
        ctx.say(f"fleet: pair {pair + 1}/{pairs}")
        fb = _measure(ctx, fb_side, list(BACKENDS))
        tf = _measure(ctx, tf_side, [TF_BOARD])
        _record(figures, fb, tf)
    _notes(ctx, pairs)
    return list(figures.values())
