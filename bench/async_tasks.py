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
3. **Loop blocking**: a host asyncio loop drives ``flowbaton.aio``
   (connect, start, submit and wait for ``--blocking-flows`` flows of five
   async no-op tasks), while flowbaton's task loop runs every task; every
   callback of either loop timed, wall and CPU, as asyncio's slow-callback
   detection times them (target: no host-loop callback over 20 ms because
   of flowbaton). Run with asyncio's debug mode off (how a service runs)
   and on (where asyncio's own detection lives): debug mode keeps the
   scheduling stack of every callback, and the larger heap makes each full
   garbage collection, which pauses every thread, slower.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from flowbaton import aio, connect
from flowbaton.backends import open_backend
from flowbaton.engine import Claim, new_flow_detail, run_flow
from flowbaton.engine.asyncloop import call_on_task_loop, event_loop
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


class _Callbacks:
    """Every loop callback's wall and CPU time (``Handle._run`` timed), by
    loop: the host's (the main thread) and flowbaton's task loop (any other
    thread). Wall time is what asyncio's slow-callback detection reports;
    CPU time (``time.thread_time``) tells a callback that ran code from one
    that waited for the interpreter lock while other threads held it."""

    def __init__(self) -> None:
        self.host: list[tuple[float, float]] = []  # (wall, cpu) of callbacks over SLOW
        self.host_cpu = 0.0  # the most CPU any host callback took
        self.tasks: list[float] = []  # wall of task-loop callbacks over SLOW
        self._run = asyncio.events.Handle._run

    def __enter__(self) -> _Callbacks:
        run, main = self._run, threading.main_thread()

        def timed(handle: asyncio.events.Handle) -> None:
            wall, cpu = time.perf_counter(), time.thread_time()
            run(handle)
            wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
            if threading.current_thread() is main:
                self.host_cpu = max(self.host_cpu, cpu)
                if wall > SLOW:
                    self.host.append((wall, cpu))
            elif wall > SLOW:
                self.tasks.append(wall)

        asyncio.events.Handle._run = timed  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.events.Handle._run = self._run  # type: ignore[method-assign]


async def _drive(flows: int, debug: bool) -> None:
    asyncio.get_running_loop().set_debug(debug)
    async with aio.connect("memory://", allow=["bench."], lease=10.0) as coord:
        await coord.start(concurrency=flows)
        ids = [await coord.submit("bench.flows:noop_linear_async", kwargs={"count": 5}) for _ in range(flows)]
        for flow_id in ids:
            report = await coord.wait(flow_id, timeout=300)
            assert report.state == "SUCCESS", report.reason
        await coord.stop()


def loop_blocking(flows: int, debug: bool = False) -> dict[str, Any]:
    """The host loop's and the task loop's callbacks over 20 ms while
    ``flows`` run; ``debug``: both loops in asyncio's debug mode (each
    callback keeps the stack that scheduled it, a heap that makes every
    full garbage collection, which pauses every thread, slower)."""
    call_on_task_loop(event_loop().set_debug, debug)
    with _Callbacks() as seen:
        started = time.perf_counter()
        asyncio.run(_drive(flows, debug))
        elapsed = time.perf_counter() - started
    return {"flows": flows, "seconds": elapsed, "debug": debug,
            "host_slow": len(seen.host), "host_slowest": max((w for w, _ in seen.host), default=0.0),
            "host_slowest_cpu_of_slow": max((c for _, c in seen.host), default=0.0),
            "host_max_cpu": seen.host_cpu,
            "tasks_slow": len(seen.tasks), "tasks_slowest": max(seen.tasks, default=0.0)}


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
    results["blocking"] = []
    for debug in (False, True):
        row = loop_blocking(args.blocking_flows, debug=debug)
        results["blocking"].append(row)
        print(f"\nloop blocking, {row['flows']} flows of 5 async tasks in {row['seconds']:.1f} s, asyncio debug mode "
              f"{'on' if debug else 'off'}: host loop {row['host_slow']} callbacks over {SLOW * 1000:.0f} ms "
              f"(slowest {row['host_slowest'] * 1000:.1f} ms wall, of it "
              f"{row['host_slowest_cpu_of_slow'] * 1000:.1f} ms CPU; most CPU of any callback "
              f"{row['host_max_cpu'] * 1000:.1f} ms); task loop {row['tasks_slow']} "
              f"over {SLOW * 1000:.0f} ms (slowest {row['tasks_slowest'] * 1000:.1f} ms)", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
