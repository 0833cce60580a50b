"""Workload 6, Redis Cluster: flowbaton on a local cluster of 3 primaries +
3 replicas (``redis+cluster://``, the sharded layout: flows spread over 16
hash-tagged shards) against flowbaton on the run's one Redis, as pairs.

1. No-op tasks/s of one linear flow run by ``flowbaton.run`` (the
   persistence workload's driver, ``fb_persistence.py``, with its round
   trips counted), cluster and one Redis back to back, each run in a fresh
   namespace.
2. Aggregate throughput of ``cluster_fleet.REPLICAS`` replica processes
   running ``CONCURRENCY`` flows each, one group per backend kept for the
   whole workload, fed one batch per side and pair; commands read per
   primary (``INFO commandstats``) and CPU per process (``/proc``) around
   each batch (``cluster_probe.py``), so the table says how evenly the
   primaries shared the work and what the time was spent on.

The order within a pair alternates, so neither side always runs on a
machine warmed (or tired) by the other.
"""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import redis

from flowbaton.testing.servers import ServerError
from flowbaton.testing.servers.redis_cluster import ExternalRedisCluster, LocalRedisCluster, start_best_cluster

from .cluster_fleet import CONCURRENCY, REPLICAS, TASKS, Fleet
from .cluster_probe import Server
from .cluster_rows import bottleneck, fleet_figures, fleet_values, noop_figures
from .context import Context
from .stats import Figure
from .workers import Worker, flowbaton_argv

__all__ = ["run"]

Cluster = LocalRedisCluster | ExternalRedisCluster
SIDES = ("cluster", "single")
WARM_UP = 50  # flows per fleet before the first pair


def _namespace(kind: str) -> str:
    return f"cl{kind}{uuid.uuid4().hex[:8]}"


def _in_turn(pair: int) -> tuple[str, ...]:
    return SIDES if pair % 2 == 0 else SIDES[::-1]


def _noop(ctx: Context, cluster: Cluster, figures: dict[str, Figure]) -> None:
    tasks = int(ctx.args.cluster_tasks)
    driver = Worker(flowbaton_argv("bench.fb_persistence"), ctx.logs / "cluster-noop.log")

    def run_flow(side: str, count: int) -> dict[str, Any]:
        url = cluster.url(_namespace("n")) if side == "cluster" else ctx.servers.redis_url(_namespace("n"))
        return driver.ask({"op": "run", "url": url, "tasks": count})

    try:
        for side in SIDES:  # warm-up: imports, the scripts loaded on every node
            run_flow(side, 10)
        for pair in range(ctx.pairs):
            answers = {side: run_flow(side, tasks) for side in _in_turn(pair)}
            rates = {side: tasks / answers[side]["seconds"] for side in SIDES}
            figures["rate"].add(rates["cluster"], rates["single"])
            figures["slowdown"].add(rates["single"] / rates["cluster"], None)
            figures["wire"].add(answers["cluster"]["wire"] / tasks, answers["single"]["wire"] / tasks)
            ctx.say(f"cluster: no-op pair {pair + 1}/{ctx.pairs}: cluster {rates['cluster']:,.0f} tasks/s, "
                    f"one Redis {rates['single']:,.0f} (one Redis / cluster {rates['single'] / rates['cluster']:.2f}x)")
    finally:
        driver.close()


def _servers(ctx: Context, cluster: Cluster) -> dict[str, list[Server]]:
    primaries = [Server.open(f"primary {n + 1}", "primary", *node) for n, node in enumerate(cluster.primaries())]
    replicas = [Server.open(f"replica {n + 1}", "replica", *node) for n, node in enumerate(cluster.replicas())]
    return {"cluster": primaries + replicas, "single": [Server.open("one Redis", "single", *ctx.servers.redis_address)]}


def _batches(ctx: Context, fleets: dict[str, Fleet], figures: dict[str, Figure]) -> None:
    for fleet in fleets.values():
        fleet.start()
    for fleet in fleets.values():
        fleet.wait_ready()
    for fleet in fleets.values():  # warm-up: every replica imports the factory, the nodes load the scripts
        fleet.batch(WARM_UP)
    for pair in range(ctx.pairs):
        values = {}
        for side in _in_turn(pair):
            fleet = fleets[side]
            batch = fleet.batch(int(ctx.args.cluster_flows))
            values[side] = fleet_values(batch, [s.name for s in fleet.servers if s.role != "replica"])
            shown = ", ".join(f"{key} {value:.1f}" for key, value in values[side].items() if value is not None)
            top = sum(batch.usage.commands.values(), Counter[str]()).most_common(6)
            ctx.say(f"cluster: fleet pair {pair + 1}/{ctx.pairs}, {side}: {shown}; commands: "
                    + ", ".join(f"{name} {calls}" for name, calls in top))
        for key, figure in figures.items():
            figure.add(values["cluster"].get(key), values["single"].get(key))


def _fleet(ctx: Context, cluster: Cluster, figures: dict[str, Figure]) -> None:
    """Both fleets, their batches, and everything stopped and closed after."""
    servers = _servers(ctx, cluster)
    folder = ctx.servers.scratch("cluster-fleet")
    urls = {"cluster": cluster.url(_namespace("f")), "single": ctx.servers.redis_url(_namespace("f"))}
    fleets = {side: Fleet(side, urls[side], folder, ctx.logs, servers[side]) for side in SIDES}
    try:
        _batches(ctx, fleets, figures)
    finally:
        for fleet in fleets.values():
            fleet.close()
        for server in [*servers["cluster"], *servers["single"]]:
            server.client.close()


def _notes(ctx: Context, figures: dict[str, Figure]) -> None:
    ctx.notes.append(
        "cluster: flowbaton on a Redis Cluster of 3 primaries + 3 replicas (local redis-servers, appendfsync "
        "everysec, min-replicas-to-write 1 as flowbaton recommends, a namespace in the sharded layout: 16 "
        "hash-tagged shards) vs flowbaton on the run's one Redis (appendfsync everysec, no replica); the "
        "flowbaton column is the cluster, the peer's is one Redis. "
        f"No-op: one flow of {int(ctx.args.cluster_tasks):,} no-op tasks per run, fresh namespace. Fleet: "
        f"{REPLICAS} `flowbaton replica` processes per backend (--concurrency {CONCURRENCY}, log level WARNING), "
        f"started once; per pair a batch of {int(ctx.args.cluster_flows):,} flows of {TASKS} no-op tasks "
        "submitted by one client, timed from the first submission to the last flow's last task; commands: "
        "INFO commandstats of each primary (without INFO) from just before the batch to 0.5 s after it; CPU: "
        "/proc of each redis-server (cluster replicas included), of the replicas, and of the machine.")
    for side, where in (("flowbaton", "cluster, fleet"), ("taskflow", "one Redis, fleet")):
        ctx.notes.append(bottleneck(figures, side, where))


def _as_recommended(cluster: Cluster) -> None:
    """Each primary of a cluster we started refuses writes no replica has
    seen (what flowbaton warns about otherwise, on every open): measured
    as it should be deployed, and the run's output stays quiet. An external
    cluster is not ours to reconfigure."""
    if not isinstance(cluster, LocalRedisCluster):
        return
    for node in cluster.primaries():
        with redis.Redis(host=node.host, port=node.port, socket_timeout=5) as client:
            client.config_set("min-replicas-to-write", 1)
            client.config_set("min-replicas-max-lag", 10)


def _failed(figures: dict[str, Figure], what: str, err: Exception) -> None:
    for figure in figures.values():
        figure.errors.append(f"{what}: {type(err).__name__}: {err}")


def run(ctx: Context) -> list[Figure]:
    noop = noop_figures(int(ctx.args.cluster_tasks))
    try:
        cluster = start_best_cluster(ctx.servers.scratch("redis-cluster"))
    except ServerError as err:
        ctx.say(f"cluster: no Redis Cluster: {err}")
        fleet = fleet_figures(3, int(ctx.args.cluster_flows), TASKS)
        _failed({**noop, **fleet}, "no Redis Cluster", err)
        return [*noop.values(), *fleet.values()]
    try:
        ctx.say(f"cluster: Redis Cluster up, primaries {', '.join(map(str, cluster.primaries()))}")
        _as_recommended(cluster)
        fleet = fleet_figures(len(cluster.primaries()), int(ctx.args.cluster_flows), TASKS)
        _noop(ctx, cluster, noop)
        try:
            _fleet(ctx, cluster, fleet)
        except Exception as err:  # the no-op rows stand; the fleet rows say why they are empty
            ctx.say(f"cluster: fleet failed: {type(err).__name__}: {err}")
            _failed(fleet, "fleet", err)
        _notes(ctx, fleet)
    finally:
        cluster.close()
    return [*noop.values(), *fleet.values()]
