"""Contract: among concurrent claimers exactly one wins."""

from __future__ import annotations

import multiprocessing
import queue
import threading
from contextlib import ExitStack

import pytest

from flowbaton.backends import Backend, ClaimToken, open_backend
from flowbaton.backends.errors import ClaimHeld

from .helpers import LEASE, make_flow
from .racer import race_for_claim

THREADS = 8
PROCESSES = 4


def test_one_winner_among_threads(backend_url: str, backend: Backend) -> None:
    """Each thread has its own client where the store allows it."""
    backend.create_flow(make_flow("f"))
    barrier = threading.Barrier(THREADS)
    outcomes: list[object] = []

    def race(client: Backend, owner: str) -> None:
        barrier.wait(timeout=30)
        try:
            outcomes.append(client.claim("f", owner, LEASE))
        except ClaimHeld as err:
            outcomes.append(err)
        except BaseException as err:  # surfaced by the asserts below
            outcomes.append(err)

    with ExitStack() as stack:
        clients = [_client(backend_url, backend, stack) for _ in range(THREADS)]
        threads = [threading.Thread(target=race, args=(c, f"r{n}")) for n, c in enumerate(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    winners = [o for o in outcomes if isinstance(o, ClaimToken)]
    assert len(outcomes) == THREADS
    assert len(winners) == 1, outcomes
    assert all(isinstance(o, ClaimHeld) for o in outcomes if o is not winners[0]), outcomes
    info = backend.current_claim("f")
    assert info is not None and info.claim_id == winners[0].claim_id


def _client(url: str, backend: Backend, stack: ExitStack) -> Backend:
    if "shared" not in backend.capabilities:
        return backend
    return stack.enter_context(open_backend(url))


@pytest.mark.slow
def test_one_winner_among_processes(shared_backend_url: str) -> None:
    with open_backend(shared_backend_url) as backend:
        backend.create_flow(make_flow("f"))
        results = _race_processes(shared_backend_url)
        winners = [r for r in results if r[1] == "won"]
        assert len(winners) == 1, results
        assert sorted(r[1] for r in results) == ["held"] * (PROCESSES - 1) + ["won"], results
        info = backend.current_claim("f")
        assert info is not None and info.claim_id == winners[0][2]


def _race_processes(url: str) -> list[tuple[str, str, str | None]]:
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    procs = [
        ctx.Process(target=race_for_claim, args=(url, "f", f"proc{n}", barrier, results))
        for n in range(PROCESSES)
    ]
    for proc in procs:
        proc.start()
    try:
        return [results.get(timeout=60) for _ in procs]
    except queue.Empty:
        raise AssertionError("a racing process did not report within 60 s") from None
    finally:
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
