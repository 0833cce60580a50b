"""Workload 1, persistence overhead: a linear flow of no-op tasks (200 by
default) on memory, SQLite, ZooKeeper and Redis.

Each pair runs one flow on flowbaton and then one on TaskFlow, backend by
backend, in two long-lived driver processes (``fb_persistence.py``,
``peers/taskflow_persistence.py``); every run uses a fresh SQLite file or
namespace. TaskFlow has no Redis persistence, so flowbaton on Redis is
paired with that round's TaskFlow-on-ZooKeeper run.
"""

from __future__ import annotations

from typing import Any

from .context import Context
from .stats import Figure, Target
from .workers import Worker, flowbaton_argv, taskflow_argv

__all__ = ["run"]

# backend -> (label, TaskFlow's backend paired with it, tasks/s target ratio)
BACKENDS: dict[str, tuple[str, str, float | None]] = {
    "memory": ("memory", "memory", 30.0),
    "sqlite": ("SQLite", "sqlite", 50.0),
    "zookeeper": ("ZooKeeper", "zookeeper", 10.0),
    "redis": ("flowbaton Redis vs TaskFlow ZooKeeper", "zookeeper", None),
}
WIRE = {"sqlite": "SQL statements", "zookeeper": "ZooKeeper requests",
        "redis": "Redis round trips (TaskFlow: ZooKeeper requests)"}


def _figures() -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    for kind, (label, _, ratio) in BACKENDS.items():
        target = Target("ratio>=", ratio) if ratio else None
        figures[f"{kind}.rate"] = Figure(f"persistence.{kind}.tasks_per_s", f"no-op flow, {label}", "tasks/s",
                                         target)
        figures[f"{kind}.logical"] = Figure(f"persistence.{kind}.store_calls_per_task",
                                            f"store calls per task, {label}", "calls/task")
        if kind in WIRE:
            figures[f"{kind}.wire"] = Figure(f"persistence.{kind}.round_trips_per_task",
                                             f"{WIRE[kind]} per task", "ops/task")
    return figures


class _Drivers:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tasks = int(ctx.args.tasks)
        self.fb = Worker(flowbaton_argv("bench.fb_persistence"), ctx.logs / "persistence-flowbaton.log")
        self.tf = Worker(taskflow_argv(ctx.taskflow_python, "taskflow_persistence.py"),
                         ctx.logs / "persistence-taskflow.log")
        self.runs = 0

    def flowbaton(self, kind: str, tasks: int | None = None) -> dict[str, Any]:
        self.runs += 1
        servers, name = self.ctx.servers, f"p{self.runs}"
        url = {"memory": "memory://", "sqlite": f"sqlite:///{servers.scratch('sqlite')}/fb.db",
               "zookeeper": servers.zk_url(name), "redis": servers.redis_url(name)}[kind]
        return self.fb.ask({"op": "run", "url": url, "tasks": tasks or self.tasks})

    def taskflow(self, kind: str, tasks: int | None = None) -> dict[str, Any]:
        self.runs += 1
        servers = self.ctx.servers
        return self.tf.ask({"op": "run", "kind": kind, "tasks": tasks or self.tasks,
                            "sqlite_path": str(servers.scratch("sqlite") / "tf.db"),
                            "zk_hosts": servers.zk_hosts, "zk_path": f"/tf-p{self.runs}"}, wait=900)

    def close(self) -> None:
        self.fb.close()
        self.tf.close()


def _record(figures: dict[str, Figure], kind: str, tasks: int, fb: dict[str, Any], tf: dict[str, Any]) -> None:
    figures[f"{kind}.rate"].add(tasks / fb["seconds"], tasks / tf["seconds"])
    figures[f"{kind}.logical"].add(fb["logical"] / tasks, tf["logical"] / tasks)
    if kind in WIRE:
        figures[f"{kind}.wire"].add(fb["wire"] / tasks, tf["wire"] / tasks)


def run(ctx: Context) -> list[Figure]:
    figures = _figures()
    drivers = _Drivers(ctx)
    try:
        for kind in ("memory", "sqlite", "zookeeper", "redis"):  # warm-up: imports, first compile
            drivers.flowbaton(kind, 10)
            if kind != "redis":
                drivers.taskflow(kind, 10)
        for pair in range(ctx.pairs):
            ctx.say(f"persistence: pair {pair + 1}/{ctx.pairs}")
            answers: dict[str, dict[str, Any]] = {}
            for kind in ("memory", "sqlite", "zookeeper"):
                fb = drivers.flowbaton(kind)
                answers[kind] = drivers.taskflow(kind)
                _record(figures, kind, drivers.tasks, fb, answers[kind])
            _record(figures, "redis", drivers.tasks, drivers.flowbaton("redis"), answers["zookeeper"])
    finally:
        drivers.close()
    ctx.notes.append(
        f"persistence: one flow of {drivers.tasks} no-op tasks per run, whole life (create, claim, run, "
        "release / engines.load + run); TaskFlow has no Redis persistence, so flowbaton on Redis is paired "
        "with TaskFlow on ZooKeeper. Store calls: Backend contract calls (flowbaton), persistence "
        "connection data-method calls (TaskFlow); round trips counted in the client libraries.")
    return list(figures.values())
