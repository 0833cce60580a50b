"""flowbaton side of workload 4 (board scale), run once per step:

    python -m bench.fb_board submit URL COUNT    # {"seconds": ...}
    python -m bench.fb_board replica URL         # {"first_claim": ..., "rss_mib": ..., ...}

``submit`` stores COUNT flows through ``Coordinator.submit`` one after the
other (what a service does), timed from the first to the last. ``replica``
is a fresh process: from ``connect`` to its first claim (measured where the
replica's claim loop calls ``Backend.claim``), its resident memory half a
second later, then a fresh client's ``list_claims`` and ``list_flows``
(connection included). Its flows hold their claim for two minutes; the
process exits as soon as it has answered.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from flowbaton import connect
from flowbaton.backends import Backend, open_backend

from .peers.common import rss_mib

HOLD = {"seconds": 120.0}


def submit(url: str, count: int) -> dict[str, Any]:
    coord = connect(url, allow=["bench."])
    try:
        started = time.perf_counter()
        for _ in range(count):
            coord.submit("bench.flows:hold", kwargs=HOLD)
        return {"seconds": time.perf_counter() - started}
    finally:
        coord.close()


def _timed(step: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = step()
    return time.perf_counter() - started, value


def _listing(url: str, method: str) -> tuple[float, int]:
    def step() -> int:
        with open_backend(url) as backend:
            return len(getattr(backend, method)())

    return _timed(step)


def _watch_claims(backend: Backend, claimed: threading.Event) -> None:
    original = backend.claim

    def claim(*args: Any, **kwargs: Any) -> Any:
        token = original(*args, **kwargs)
        claimed.set()
        return token

    backend.claim = claim  # type: ignore[method-assign]


def replica(url: str) -> dict[str, Any]:
    claimed = threading.Event()
    started = time.perf_counter()
    backend = open_backend(url)
    _watch_claims(backend, claimed)
    connect(backend, allow=["bench."], lease=10.0).start(concurrency=1)
    if not claimed.wait(120):
        raise RuntimeError("no claim within 120 s")
    first_claim = time.perf_counter() - started
    time.sleep(0.5)
    rss = rss_mib()
    list_claims, claims = _listing(url, "list_claims")
    list_flows, flows = _listing(url, "list_flows")
    return {"first_claim": first_claim, "rss_mib": rss, "list_claims": list_claims, "claims": claims,
            "list_flows": list_flows, "flows": flows}


def main() -> None:
    mode, url = sys.argv[1], sys.argv[2]
    answer = submit(url, int(sys.argv[3])) if mode == "submit" else replica(url)
    print(json.dumps(answer), flush=True)
    os._exit(0)  # the replica's flows hold their claims; nothing to wait for


if __name__ == "__main__":
    main()
