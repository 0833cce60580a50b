"""Async tasks against sync tasks, measured side by side in one run.

    python bench/async_tasks.py                      # every backend, 10,000 concurrent flows
    python bench/async_tasks.py --concurrent 2000    # a quicker look

1. **No-op tasks/s** of one flow of ``--tasks`` no-op tasks, sync and
   ``async def``, on memory, SQLite, Redis and ZooKeeper (servers started
   like the tests'), median of ``--repeat`` runs; the ratio sync / async
   (target: async within 1.5x of sync on every backend).
2. **Concurrent flows**: one replica (memory backend, concurrency = the
   flows) runs ``--concurrent`` flows of one task that sleeps 30 s, async
   (``asyncio.sleep``) and sync (``time.sleep``), each in a fresh process:
   tasks started per second, and RSS per flow in flight (VmRSS once all
   started, minus VmRSS before the replica started, over the flows).
3. **Loop blocking**: a host asyncio loop (debug mode, slow-callback
   threshold 20 ms) drives ``flowbaton.aio`` (connect, start, submit and
   wait for ``--blocking-flows`` flows of five async no-op tasks), while
   flowbaton's task loop runs every task; the slowest callback each loop
   reported (target: none over 20 ms on the host loop because of
   flowbaton).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowbaton import aio, connect
from flowbaton.backends import open_backend
from flowbaton.engine import Claim, new_flow_detail, run_flow
from flowbaton.engine.asyncloop import event_loop
from flowbaton.engine.gate import Gate

SLOW = 0.02  # seconds: a callback slower than this blocked its loop


def noop_rate(url: str, factory: str, size: int) -> float:
    """Tasks per second of one flow of ``size`` no-op tasks."""
    backend = open_backend(url)
    try:
        detail = new_flow_detail(factory, kwargs={"count": size})
        backend.create_flow(detail)
        token = backend.claim(detail.id, "bench", 3600.0)
        started = time.perf_counter()
        report = run_flow(backend, Claim(token, Gate(), time.monotonic()), replica_id="bench", max_workers=1)
        elapsed = time.perf_counter() - started
        assert report.state == "SUCCESS", report.reason
        backend.release(token)
        return size / elapsed
    finally:
        backend.close()


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def one_concurrent(kind: str, flows: int) -> dict[str, float]:
    """In this process: ``flows`` flows of one 30 s task on one replica."""
    from bench import flows as bench_flows

    coord = connect("memory://", allow=["bench."], lease=60.0)
    ids = [coord.submit("bench.flows:sleeper", kwargs={"seconds": 30.0, "kind": kind}) for _ in range(flows)]
    before = rss_kib()
    started = time.perf_counter()
    coord.start(concurrency=flows)
    deadline = started + 120
    while bench_flows.STARTED[0] < flows and time.perf_counter() < deadline:
        time.sleep(0.01)
    elapsed = time.perf_counter() - started
    after = rss_kib()
    done = bench_flows.STARTED[0]
    os._exit(0 if print(json.dumps({"kind": kind, "flows": flows, "started": done, "seconds": elapsed,
                                    "per_second": done / elapsed, "rss_kib_per_flow": (after - before) / flows,
                                    "ids": len(ids)}), flush=True) is None else 1)


def concurrent(kind: str, flows: int) -> dict[str, Any]:
    out = subprocess.run([sys.executable, __file__, "--one-concurrent", kind, "--concurrent", str(flows)],
                         capture_output=True, text=True, timeout=600)
    line = [x for x in out.stdout.splitlines() if x.startswith("{")]
    if not line:
        raise RuntimeError(f"concurrent {kind} run failed: {out.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(line[-1])
    return result


class _Slow(logging.Handler):
    """asyncio's debug-mode reports of callbacks slower than the threshold."""

    def __init__(self) -> None:
        super().__init__()
        self.took: list[float] = []

    def emit(self, record: logging.LogRecord) -> None:
        found = re.search(r"took ([0-9.]+) seconds", record.getMessage())
        if found:
            self.took.append(float(found.group(1)))


async def _drive(flows: int) -> None:
    loop = asyncio.get_running_loop()
    loop.set_debug(True)
    loop.slow_callback_duration = SLOW
    async with aio.connect("memory://", allow=["bench."], lease=10.0) as coord:
        await coord.start(concurrency=flows)
        ids = [await coord.submit("bench.flows:noop_linear_async", kwargs={"count": 5}) for _ in range(flows)]
        for flow_id in ids:
            report = await coord.wait(flow_id, timeout=300)
            assert report.state == "SUCCESS", report.reason
        await coord.stop()


def loop_blocking(flows: int) -> dict[str, Any]:
    handler = _Slow()
    logging.getLogger("asyncio").addHandler(handler)
    tasks_loop = event_loop()
    tasks_loop.call_soon_threadsafe(tasks_loop.set_debug, True)
    tasks_loop.slow_callback_duration = SLOW
    started = time.perf_counter()
    asyncio.run(_drive(flows))
    elapsed = time.perf_counter() - started
    logging.getLogger("asyncio").removeHandler(handler)
    return {"flows": flows, "seconds": elapsed, "slow_callbacks": len(handler.took),
            "slowest": max(handler.took, default=0.0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=500, help="no-op tasks per flow (default 500)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is printed")
    parser.add_argument("--concurrent", type=int, default=10_000, help="concurrent flows (default 10,000)")
    parser.add_argument("--blocking-flows", type=int, default=1000, help="flows in the loop-blocking run")
    parser.add_argument("--one-concurrent", choices=["sync", "async"], help=argparse.SUPPRESS)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    if args.one_concurrent:
        one_concurrent(args.one_concurrent, args.concurrent)
        return
    from bench.servers import Servers

    results: dict[str, Any] = {"noop": [], "concurrent": [], "blocking": None}
    tmp = tempfile.mkdtemp(prefix="fb-async-")
    with Servers() as servers:
        urls = {"memory": "memory://", "sqlite": f"sqlite:///{os.path.join(tmp, 'bench.db')}",
                "redis": servers.redis_url("asyncbench"), "zookeeper": servers.zk_url("asyncbench")}
        print(f"{'backend':<10} {'sync tasks/s':>13} {'async tasks/s':>14} {'sync/async':>11}  (target <= 1.5)")
        for name, url in urls.items():
            sync = statistics.median(noop_rate(url, "bench.flows:noop_linear", args.tasks) for _ in range(args.repeat))
            asyn = statistics.median(noop_rate(url, "bench.flows:noop_linear_async", args.tasks)
                                     for _ in range(args.repeat))
            results["noop"].append({"backend": name, "sync": sync, "async": asyn, "ratio": sync / asyn})
            print(f"{name:<10} {sync:>13.0f} {asyn:>14.0f} {sync / asyn:>11.2f}", flush=True)
    print(f"\n{'tasks':<6} {'flows':>7} {'started':>8} {'started/s':>10} {'RSS KiB/flow':>13}")
    for kind in ("async", "sync"):
        row = concurrent(kind, args.concurrent)
        results["concurrent"].append(row)
        print(f"{kind:<6} {row['flows']:>7} {row['started']:>8} {row['per_second']:>10.0f} "
              f"{row['rss_kib_per_flow']:>13.1f}", flush=True)
    blocking = loop_blocking(args.blocking_flows)
    results["blocking"] = blocking
    print(f"\nloop blocking, {blocking['flows']} flows of 5 async tasks in {blocking['seconds']:.1f} s: "
          f"{blocking['slow_callbacks']} callbacks over {SLOW * 1000:.0f} ms, slowest "
          f"{blocking['slowest'] * 1000:.1f} ms (target: none over 20 ms)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
