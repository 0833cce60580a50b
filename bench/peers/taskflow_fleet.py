"""TaskFlow conductors and a poster for the fleet workload.

    taskflow_fleet.py conduct --name c1 --ready FILE --jobs N BOARD-OPTIONS
    taskflow_fleet.py post                   # line-protocol worker

``conduct`` runs TaskFlow's stock non-blocking conductor (serial engines on
a thread pool) with ``max_simultaneous_jobs=N``: the blocking conductor of
the failover workload runs one job at a time, and holding N claimed jobs,
as a flowbaton replica holds N flows, needs N at once. SIGTERM asks it to
stop. ``post`` answers ``{"op": "post", BOARD-OPTIONS, "count": N,
"tasks": T, "seconds": S, "ledger": ..., "prefix": ...}`` by posting N
``holds`` jobs (tags ``PREFIX0000``...), each the way TaskFlow submits a
flow (``taskflow_common.post``). BOARD-OPTIONS are those of
``taskflow_common.add_options``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from typing import Any

import taskflow_fleet_flows
from common import serve_lines
from taskflow_common import add_options, jobboard, persistence, post
from taskflow_common import conduct as run_conductor

BOARD_KEYS = ("board", "zk_hosts", "root", "redis", "timeout")


def conduct(args: argparse.Namespace) -> None:
    run_conductor(args, "nonblocking", max_simultaneous_jobs=args.jobs)


def post_many(command: dict[str, Any]) -> dict[str, Any]:
    """Post ``count`` jobs on one board, then close it (so no connection of
    the poster lingers while the servers' counters are read)."""
    args = argparse.Namespace(**{key: command[key] for key in BOARD_KEYS})
    backend = persistence(args)
    board = jobboard(args, "poster", backend)
    started = time.monotonic()
    try:
        for n in range(command["count"]):
            kwargs = {"tag": f"{command['prefix']}{n:04d}", "count": command["tasks"],
                      "seconds": command["seconds"], "ledger": command["ledger"]}
            post(board, backend, taskflow_fleet_flows.holds, kwargs, "holds")
    finally:
        board.close()
        backend.close()
    return {"posted": command["count"], "seconds": time.monotonic() - started}


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    if sys.argv[1:] == ["post"]:
        serve_lines(post_many)
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("conduct",))
    parser.add_argument("--name", default="conductor")
    parser.add_argument("--ready", required=True)
    parser.add_argument("--jobs", type=int, required=True, help="max_simultaneous_jobs")
    add_options(parser)
    conduct(parser.parse_args())


if __name__ == "__main__":
    main()
