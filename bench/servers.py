"""The ZooKeeper and Redis servers the benchmarks run against, started the
way the test fixtures start them (``flowbaton/testing/servers``): an external server
named by ``FLOWBATON_TEST_ZOOKEEPER`` / ``FLOWBATON_TEST_REDIS`` if set, a
container when a Docker engine answers, else the local packages on free
loopback ports. Both systems measured in one run share these servers.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flowbaton.testing.servers import ServerError
from flowbaton.testing.servers import redis as redis_servers
from flowbaton.testing.servers import zookeeper as zk_servers

__all__ = ["Servers", "ServerError"]


@contextmanager
def _as_error(what: str) -> Iterator[None]:
    """Name the server in the reason it could not be started."""
    try:
        yield
    except ServerError as err:
        raise ServerError(f"{what}: {err}") from err


def _local_zookeeper(root: Path) -> zk_servers.LocalZooKeeper:
    """The fixture's local server, plus the one setting TaskFlow needs: its
    ZooKeeper persistence and jobboard check the server version with the
    ``envi`` four-letter command, which ZooKeeper 3.5+ refuses unless listed.
    flowbaton never sends it; the setting changes nothing else. ``cons``
    (each connection's packet counts) is how the fleet workload counts a
    replica's requests at the server."""
    server = zk_servers.LocalZooKeeper(root)
    server.configure([server])
    with (server.data_dir / "zoo.cfg").open("a") as cfg:
        cfg.write("4lw.commands.whitelist=envi,srvr,cons\n")
    server.start()
    server.wait_serving()
    return server


def _start_zookeeper(root: Path) -> Any:
    """``FLOWBATON_TEST_ZOOKEEPER`` if set (it must allow ``envi`` for
    TaskFlow), else a local server as the fixtures start one."""
    if os.environ.get(zk_servers.ENV_VAR):
        return zk_servers.start_best_server(root)
    return _local_zookeeper(root)


class Servers:
    """One ZooKeeper and one Redis for the whole run."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="flowbaton-bench-"))
        try:
            with _as_error("ZooKeeper"):
                self.zookeeper = _start_zookeeper(self.root / "zk")
            with _as_error("Redis"):
                self.redis = redis_servers.start_best_server(self.root / "redis")
        except BaseException:
            self.close()
            raise

    # ------------------------------------------------------------ addresses

    @property
    def zk_hosts(self) -> str:
        return str(self.zookeeper.hosts)

    def zk_url(self, namespace: str) -> str:
        return str(self.zookeeper.url(namespace=namespace))

    def redis_url(self, namespace: str) -> str:
        return str(self.redis.url(namespace=namespace))

    @property
    def redis_address(self) -> tuple[str, int]:
        parts = urlsplit(self.redis.url(namespace="x"))
        return parts.hostname or "127.0.0.1", parts.port or 6379

    def scratch(self, name: str) -> Path:
        """A fresh folder for files of one trial (SQLite databases, ledgers)."""
        path = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=self.root))
        return path

    @contextmanager
    def private_zookeeper(self) -> Iterator[Any]:
        """A ZooKeeper of one trial alone, so 10,000-flow boards do not pile up
        in the shared server's heap; the shared one if it is not ours to start."""
        if not isinstance(self.zookeeper, zk_servers.LocalZooKeeper):
            yield self.zookeeper
            return
        root = self.scratch("zk-private")
        with _as_error("private ZooKeeper"):
            server = _local_zookeeper(root)
        try:
            yield server
        finally:
            server.kill()
            shutil.rmtree(root, ignore_errors=True)

    def close(self) -> None:
        for server in (getattr(self, "redis", None), getattr(self, "zookeeper", None)):
            if server is None:
                continue
            if hasattr(server, "shutdown"):
                server.shutdown()
            elif hasattr(server, "close"):
                server.close()
            elif isinstance(server, zk_servers.LocalZooKeeper):
                server.kill()
        shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self) -> Servers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
