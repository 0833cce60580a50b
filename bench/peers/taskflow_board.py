"""TaskFlow side of workload 4 (board scale) on the ZooKeeper jobboard:

    taskflow_board.py submit --zk-hosts H --root /R --count N   # {"seconds": ...}
    taskflow_board.py probe --zk-hosts H --root /R               # {"first_claim": ..., ...}

``submit`` posts N jobs the way TaskFlow submits a flow (logbook, flow
detail and factory details saved to ZooKeeper persistence, then the job),
timed from the first to the last. ``probe`` is a fresh process: from
connecting persistence and board to a stock blocking conductor's first
successful claim, its resident memory half a second later, then a fresh board's
listing of every job with its claim state (``iterjobs(ensure_fresh=True)``
and ``job.state``, connection included).
"""

from __future__ import annotations

import argparse
import json
import os
import threading
import time
from typing import Any

import taskflow_flows
from common import rss_mib
from taskflow import states
from taskflow.conductors import backends as conductor_backends
from taskflow_common import jobboard, persistence, post

HOLD = {"seconds": 120.0}


def _args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("submit", "probe"))
    parser.add_argument("--zk-hosts", required=True)
    parser.add_argument("--root", required=True)
    parser.add_argument("--count", type=int, default=0)
    args = parser.parse_args(argv)
    args.board, args.redis, args.timeout = "zookeeper", "", 10.0
    return args


def submit(args: argparse.Namespace) -> dict[str, Any]:
    backend = persistence(args)
    board = jobboard(args, "poster", backend)
    try:
        started = time.perf_counter()
        for _ in range(args.count):
            post(board, backend, taskflow_flows.hold, HOLD, "hold")
        return {"seconds": time.perf_counter() - started}
    finally:
        board.close()
        backend.close()


def _watch_claims(board: Any, claimed: threading.Event) -> None:
    original = board.claim

    def claim(*call: Any, **kwargs: Any) -> Any:
        result = original(*call, **kwargs)
        claimed.set()
        return result

    board.claim = claim


def _list_claims(args: argparse.Namespace) -> tuple[float, int, int]:
    started = time.perf_counter()
    backend = persistence(args)
    board = jobboard(args, "lister", backend)
    try:
        jobs = list(board.iterjobs(ensure_fresh=True))
        claimed = sum(1 for job in jobs if job.state == states.CLAIMED)
        return time.perf_counter() - started, claimed, len(jobs)
    finally:
        board.close()
        backend.close()


def probe(args: argparse.Namespace) -> dict[str, Any]:
    claimed = threading.Event()
    started = time.perf_counter()
    backend = persistence(args)
    board = jobboard(args, "fresh", backend)
    _watch_claims(board, claimed)
    conductor = conductor_backends.fetch("blocking", "fresh", board, persistence=backend, engine="serial")
    threading.Thread(target=conductor.run, daemon=True).start()
    if not claimed.wait(300):
        raise RuntimeError("no claim within 300 s")
    first_claim = time.perf_counter() - started
    time.sleep(0.5)
    rss = rss_mib()
    list_seconds, claims, jobs = _list_claims(args)
    return {"first_claim": first_claim, "rss_mib": rss, "list_claims": list_seconds, "claims": claims,
            "jobs": jobs}


def main() -> None:
    args = _args()
    answer = submit(args) if args.mode == "submit" else probe(args)
    print(json.dumps(answer), flush=True)
    os._exit(0)  # the conductor's job holds its claim; nothing to wait for


if __name__ == "__main__":
    main()
