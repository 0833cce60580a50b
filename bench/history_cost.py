"""What the attempt and claim history costs: writes and stored bytes per task.

The history travels in writes that happen anyway (docs/design.md, "Attempt
and claim history"), so the persistence workload's counts must not move;
only bytes do, and only for tasks that ran more than once. This runs the
persistence workload's flowbaton side (``fb_persistence.run``: one flow of
N no-op tasks, every Backend call and round trip counted) on each backend,
then the same flow with every task failing once and retried, and prints
writes and round trips per task and the stored bytes per task record.

Compare releases by running it against each one's code::

    python -m bench.history_cost                         # this checkout
    PYTHONPATH=/path/to/older/checkout python -m bench.history_cost

(``bench`` is imported from the current folder, ``flowbaton`` from
``PYTHONPATH`` first). ZooKeeper and Redis are started as the benchmarks
start them (``bench/servers.py``).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import flowbaton

from . import fb_persistence
from .servers import Servers

FLOWS = {"once": "bench.flows:noop_linear", "retried": "bench.flows:noop_retried"}


def _measure(url: str, factory: str, tasks: int) -> dict[str, Any]:
    backend = flowbaton.backends.open_backend(url)
    try:
        fb_persistence._counting(backend)
        fb_persistence.CALLS.reset()
        report = flowbaton.run(factory, kwargs={"count": tasks}, backend=backend, allow=["bench."])
        logical, wire = fb_persistence.CALLS.total("logical."), fb_persistence.CALLS.total("wire.")
        writes = sum(n for name, n in fb_persistence.CALLS.counts.items()
                     if name.startswith("logical.save") or name == "logical.create_flow")
        stored = fb_persistence.stored_bytes(backend, report.id)
    finally:
        backend.close()
    if report.state != "SUCCESS":
        raise RuntimeError(f"{factory} on {url} ended {report.state}")
    return {"calls_per_task": logical / tasks, "round_trips_per_task": wire / tasks,
            "writes_per_task": writes / tasks, "bytes_per_task": stored["task_bytes"] / tasks,
            "flow_bytes": stored["flow_bytes"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    fb_persistence._count_clients()
    results: dict[str, dict[str, Any]] = {}
    with Servers() as servers:
        urls = {"memory": "memory://", "sqlite": f"sqlite:///{servers.scratch('sqlite')}/history.db",
                "zookeeper": servers.zk_url("history"), "redis": servers.redis_url("history")}
        for kind, url in urls.items():
            for shape, factory in FLOWS.items():
                results[f"{kind}.{shape}"] = _measure(url, factory, args.tasks)
    print(f"flowbaton {flowbaton.__version__}, {args.tasks} tasks per flow")
    print(f"{'backend.flow':<20}{'calls/task':>11}{'trips/task':>11}{'writes/task':>12}{'bytes/task':>11}"
          f"{'flow bytes':>11}")
    for key, row in results.items():
        print(f"{key:<20}{row['calls_per_task']:>11.2f}{row['round_trips_per_task']:>11.2f}"
              f"{row['writes_per_task']:>12.2f}{row['bytes_per_task']:>11.1f}{row['flow_bytes']:>11}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
