"""``python -m bench``: flowbaton and OpenStack TaskFlow, side by side in one run.

Builds TaskFlow's virtualenv if needed (``bench/.venvs/taskflow``), starts a
ZooKeeper and a Redis the way the test fixtures do, runs every workload as
pairs (flowbaton, then TaskFlow, repeated), and prints one table: each
side's median and the median of the per-pair ratios. ``--json PATH`` writes
the same for machines. See ``bench/README.md``.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from . import report, wl_board, wl_cluster, wl_dbos, wl_failover, wl_fleet, wl_persistence
from .context import Context
from .servers import Servers
from .stats import Figure
from .venv import ensure_taskflow, taskflow_version

WORKLOADS: dict[str, Callable[[Context], list[Figure]]] = {
    "persistence": wl_persistence.run,
    "failover": wl_failover.run,
    "board": wl_board.run,
    "fleet": wl_fleet.run,
    "dbos": wl_dbos.run,
    "cluster": wl_cluster.run,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5, help="flowbaton/TaskFlow pairs per figure (default 5)")
    parser.add_argument("--only", default=",".join(WORKLOADS),
                        help=f"comma-separated workloads to run (default all: {','.join(WORKLOADS)})")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument("--tasks", type=int, default=200, help="persistence: no-op tasks per flow (default 200)")
    parser.add_argument("--leases", default="4,10", help="failover: leases / session timeouts in seconds")
    parser.add_argument("--zombies", type=int, default=2, help="zombie: trials per backend per pair (default 2)")
    parser.add_argument("--flows", type=int, default=10_000, help="board scale: flowbaton flows (default 10,000)")
    parser.add_argument("--taskflow-jobs", type=int, default=2_000,
                        help="board scale: TaskFlow jobs (default 2,000: posting 10,000 takes too long)")
    parser.add_argument("--fleet-flows", type=int, default=500,
                        help="fleet: running flows held by the busy replica (default 500)")
    parser.add_argument("--fleet-window", type=float, default=25.0,
                        help="fleet: seconds over which requests are counted (default 25)")
    parser.add_argument("--takeover-flows", type=int, default=1000,
                        help="fleet: flows taken over after kill -9 (default 1,000)")
    parser.add_argument("--fair-flows", type=int, default=300,
                        help="fleet: flows shared by 3 replicas (default 300)")
    parser.add_argument("--fleet-pairs", type=int, default=1,
                        help="fleet: at most this many pairs (default 1: a pair takes 5 to 7 minutes)")
    parser.add_argument("--cluster-tasks", type=int, default=1000,
                        help="cluster: no-op tasks of the one-flow run (default 1,000)")
    parser.add_argument("--cluster-flows", type=int, default=800,
                        help="cluster: flows per batch of the 4-replica run (default 800)")
    parser.add_argument("--logs", default=os.path.join(tempfile.gettempdir(), "flowbaton-bench-logs"),
                        help="folder for the drivers' logs")
    return parser


def _workloads(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in WORKLOADS]
    if unknown:
        raise SystemExit(f"python -m bench: unknown workload(s) {', '.join(unknown)}; use {', '.join(WORKLOADS)}")
    return names


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.pairs < 1:
        raise SystemExit("python -m bench: --pairs must be at least 1")
    names = _workloads(args.only)
    python = ensure_taskflow()
    env = report.environment(taskflow_version())
    figures: list[Figure] = []
    with Servers() as servers:
        ctx = Context(servers, python, args)
        for name in names:
            ctx.say(f"{name}: starting")
            figures += WORKLOADS[name](ctx)
    env.update(pairs=args.pairs, wall_seconds=time.monotonic() - ctx.started, load_at_end=os.getloadavg()[0])
    print(report.render(figures, env, ctx.notes))
    if args.json:
        report.write_json(Path(args.json), figures, env, ctx.notes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
