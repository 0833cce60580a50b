"""Real ZooKeeper and Redis servers on loopback, with fault injectors.

The test suite's fixtures (``tests/servers``), the benchmarks and the chaos
harness (``python -m flowbaton.testing.chaos``) all start their servers with
these classes, so there is one way to start a server. Nothing here imports
pytest: a server that cannot be started raises ``ServerError`` with the
reason, and the test fixtures turn that into a failed test.

``zookeeper``: ``LocalZooKeeper`` (one ``QuorumPeerMain`` from the Debian
``zookeeper`` package), ``ZooKeeperEnsemble`` (three of them in one quorum),
``expire_session``. ``redis``: ``LocalRedis`` (a ``redis-server`` we own) and
``SentinelCluster`` (primary, replica and three sentinels). ``redis_cluster``:
``LocalRedisCluster`` (three primaries with a replica each, joined by
``redis-cli --cluster create``) and ``ExternalRedisCluster``.
"""

from __future__ import annotations

import importlib
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn, TypeVar

__all__ = ["ServerError", "docker_reachable", "fail", "free_port", "wait_until"]

_T = TypeVar("_T")


class ServerError(RuntimeError):
    """A server could not be started, stopped or reached, and why."""


def fail(message: str) -> NoReturn:
    raise ServerError(message)


def free_port() -> int:
    """A loopback TCP port nobody listens on right now (another process may
    still take it before we bind: starters retry on 'Address already in use')."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def wait_until(predicate: Callable[[], _T], timeout: float, what: str, interval: float = 0.05) -> _T:
    """Poll ``predicate`` until it returns something truthy; ``ServerError``
    naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            fail(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def docker_reachable(timeout: float = 3.0) -> bool:
    """A Docker engine answers a ping within ``timeout`` (never hang a run
    on a missing engine): a socket or DOCKER_HOST first, then the ping."""
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        docker = importlib.import_module("docker")  # testcontainers' dependency, optional
        engine = docker.from_env(timeout=timeout)
        try:
            return bool(engine.ping())
        finally:
            engine.close()
    except Exception:
        return False
