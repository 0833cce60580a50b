"""The cluster workload's rows: the figures, the values one batch gives
them, and the sentence that says where a batch's time went.

Every figure pairs the Redis Cluster (the "flowbaton" column) with one
Redis (the peer's), so the ratio column reads cluster / one Redis. The
issue's no-op target is the other way round (one Redis at most 1.3 times
the cluster), so that ratio has a row of its own, per pair.
"""

from __future__ import annotations

import os

from .cluster_fleet import CONCURRENCY, REPLICAS, Batch
from .stats import Figure, Target

__all__ = ["PEER", "noop_figures", "fleet_figures", "fleet_values", "bottleneck"]

PEER = "one Redis"
CORES = os.cpu_count() or 1
SATURATED = 85.0  # % busy from which a core (one server) or the machine is the bottleneck

Value = float | None


def noop_figures(tasks: int) -> dict[str, Figure]:
    where = f"no-op flow of {tasks:,} tasks (flowbaton.run, one process)"
    return {
        "rate": Figure("cluster.noop.tasks_per_s", f"{where}, Redis Cluster 3+3 vs one Redis", "tasks/s", peer=PEER),
        "slowdown": Figure("cluster.noop.single_over_cluster",
                           f"{where}: one Redis's tasks/s ÷ the cluster's, per pair", "x", Target("fb<=", 1.3),
                           peer=""),
        "wire": Figure("cluster.noop.round_trips_per_task", f"{where}: round trips per task (commands or pipelines "
                       "sent)", "ops/task", peer=PEER),
    }


def fleet_figures(primaries: int, flows: int, tasks: int) -> dict[str, Figure]:
    size = f"{REPLICAS} replicas x {CONCURRENCY} flows at once, {flows:,} flows of {tasks} no-op tasks"
    rows = {
        "flows": (f"{size}: flows/s", "flows/s"),
        "tasks": (f"{size}: tasks/s", "tasks/s"),
        "commands": ("same run: commands the servers ran per flow (INFO commandstats, so the calls inside scripts "
                     "too; cluster: its primaries together)", "cmds/flow"),
        "busiest": ("same run: busiest primary's share of all commands (one Redis: all of them)", "%"),
        **{f"share.{n}": (f"same run: primary {n + 1} (slot order)'s share of all commands", "%")
           for n in range(primaries)},
        "cpu.replicas": (f"same run: CPU of the {REPLICAS} replica processes per flow", "ms/flow"),
        "cpu.servers": ("same run: CPU of the redis-servers per flow (cluster: primaries and replicas)", "ms/flow"),
        "cpu.replicas_share": ("same run: replica processes' share of the machine's busy CPU", "%"),
        "cpu.servers_share": ("same run: redis-servers' share of the machine's busy CPU", "%"),
        "cpu.bench_share": ("same run: the bench process's share (submitting, reading the ledger)", "%"),
        "cpu.busiest_server": ("same run: busiest redis-server's CPU, % of one core (one thread runs commands)", "%"),
        "cpu.machine": (f"same run: machine CPU busy, % of its {CORES} cores", "%"),
    }
    figures = {key: Figure(f"cluster.fleet.{key}", label, unit, peer=PEER) for key, (label, unit) in rows.items()}
    figures["busiest"].target = Target("fb<=", 50)
    return figures


def _ms_per_flow(seconds: Value, flows: int) -> Value:
    return None if seconds is None else 1000 * seconds / flows


def _percent(part: Value, whole: float) -> Value:
    return None if part is None or not whole else 100 * part / whole


def _sum(values: list[Value]) -> Value:
    return None if any(v is None for v in values) else sum(v for v in values if v is not None)


def fleet_values(batch: Batch, primaries: list[str]) -> dict[str, Value]:
    """The fleet figures' values from one batch; ``primaries``: the names of
    the servers that took commands, in slot order (one name for one Redis)."""
    usage = batch.usage
    total = usage.total_commands()
    shares = [100 * sum(usage.commands[name].values()) / total for name in primaries]
    busy, whole = usage.machine
    servers = _sum(list(usage.server_cpu.values()))
    busiest_cpu = max((v for v in usage.server_cpu.values() if v is not None), default=None)
    values: dict[str, Value] = {
        "flows": batch.flows / batch.seconds, "tasks": batch.flows * batch.tasks / batch.seconds,
        "commands": total / batch.flows, "busiest": max(shares),
        "cpu.replicas": _ms_per_flow(usage.replica_cpu, batch.flows),
        "cpu.servers": _ms_per_flow(servers, batch.flows),
        "cpu.replicas_share": _percent(usage.replica_cpu, busy), "cpu.servers_share": _percent(servers, busy),
        "cpu.bench_share": _percent(usage.bench_cpu, busy),
        "cpu.busiest_server": _percent(busiest_cpu, whole / CORES), "cpu.machine": _percent(busy, whole),
    }
    if len(primaries) > 1:
        values.update({f"share.{n}": share for n, share in enumerate(shares)})
    return values


def bottleneck(figures: dict[str, Figure], side: str, where: str) -> str:
    """Where the batches' time went, from the medians of one side's CPU rows."""
    def median(key: str) -> Value:
        return figures[key].median(side)

    server, machine = median("cpu.busiest_server"), median("cpu.machine")
    replicas, servers, bench = median("cpu.replicas_share"), median("cpu.servers_share"), median("cpu.bench_share")
    if server is None or machine is None or replicas is None or servers is None or bench is None:
        return f"{where}: CPU not read (a server that is not a local process)"
    if server >= SATURATED:
        return (f"{where}: bottleneck: one redis-server, the busiest at {server:.0f} % of its one core "
                f"(machine {machine:.0f} % busy)")
    if machine >= SATURATED:
        return (f"{where}: bottleneck: the machine's CPU ({machine:.0f} % of {CORES} cores busy); of that CPU "
                f"the replica processes used {replicas:.0f} %, the redis-servers {servers:.0f} %, the bench "
                f"submitting {bench:.0f} %, everything else (the other fleet idling, the kernel) "
                f"{max(100 - replicas - servers - bench, 0):.0f} %; the busiest "
                f"redis-server ran at {server:.0f} % of one core, so no server is the limit")
    return (f"{where}: nothing saturated (machine {machine:.0f} % busy, busiest redis-server {server:.0f} % of "
            f"a core; replica processes {replicas:.0f} % of the busy CPU): waits bound it, round trips and "
            "each replica's one interpreter lock over its flows' threads")
