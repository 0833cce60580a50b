"""Real Redis servers on loopback, with fault injectors.

Where a server comes from (``start_best_server``), in order: the URL in
``FLOWBATON_TEST_REDIS`` (no fault injection); a testcontainers container
when a Docker engine answers (checked quickly, never waited on); else the
local ``redis-server`` binary on a free loopback port in a temporary
directory. A server that cannot be started raises ``ServerError`` with the
reason (the test fixtures turn it into a failure, never a skip).

``LocalRedis``: one server we own (kill, pause, restart with or without its
data). ``SentinelCluster``: primary + replica + 3 sentinels with a fast
failover (``kill_primary`` then ``wait_for_failover``).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import redis

from flowbaton.testing.servers import ServerError, docker_reachable, fail, free_port

__all__ = [
    "BASE_CONFIG",
    "ENV_URL",
    "ContainerRedis",
    "ExternalRedis",
    "LocalRedis",
    "SentinelCluster",
    "ServerError",
    "docker_reachable",
    "free_port",
    "redis_binary",
    "start_best_server",
    "with_query",
]

ENV_URL = "FLOWBATON_TEST_REDIS"
IMAGE = "redis:7"
# Claims must never be evicted, and a restart keeps data unless wiped.
BASE_CONFIG = {"appendonly": "yes", "maxmemory-policy": "noeviction", "save": '""'}


def with_query(url: str, **params: object) -> str:
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    query.update({key: str(value) for key, value in params.items()})
    return urlunsplit(parts._replace(query=urlencode(query)))


def _wait_ping(host: str, port: int, deadline: float, alive: Callable[[], str | None]) -> None:
    """PING until the server answers; fail early if its process died."""
    problem = _await_ping(host, port, deadline, alive)
    if problem:
        fail(problem or "redis-server did not start")


def _await_ping(host: str, port: int, deadline: float, alive: Callable[[], str | None],
                pid: int | None = None) -> str | None:
    """None once the server answers PING, else what went wrong. With
    ``pid``, the answer must come from that process: two servers started
    together can be handed the same free port, and the one that lost the
    bind exits while the other answers for it."""
    last: Exception | None = None
    while time.monotonic() < deadline:
        problem = alive()
        if problem:
            return problem
        client = redis.Redis(host=host, port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            if client.ping():
                if pid is not None and int(client.info("server")["process_id"]) != pid:
                    return f"Address already in use: another redis-server answers on {host}:{port}"
                return None
        except redis.RedisError as err:
            last = err
        finally:
            client.close()
        time.sleep(0.05)
    return f"redis on {host}:{port} did not answer PING in time: {last}"


class LocalRedis:
    """A ``redis-server`` process we own: same port and data dir across restarts."""

    def __init__(self, binary: str, home: Path, config: dict[str, str] | None = None) -> None:
        self.binary = binary
        self.home = home
        self.home.mkdir(parents=True, exist_ok=True)
        self.config = {**BASE_CONFIG, **(config or {})}
        self.port = free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self._paused = False
        self._started_once = False

    # ----------------------------------------------------------- lifecycle

    def _write_config(self, extra_args: list[str]) -> Path:
        lines = [
            f"port {self.port}",
            "bind 127.0.0.1",
            f"dir {self.home}",
            "daemonize no",
            "logfile server.log",
            "repl-diskless-sync yes",
            "repl-diskless-sync-delay 0",
        ]
        lines += [f"{key} {value}" for key, value in self.config.items()]
        path = self.home / "redis.conf"
        path.write_text("\n".join(lines) + "\n")
        return path

    def start(self, deadline: float = 15.0, extra_args: list[str] | None = None) -> None:
        """Start (no-op if running). The first start moves to another free
        port if another process took ours in between; restarts never move."""
        if self.running():
            return
        for _ in range(3 if not self._started_once else 1):
            self._spawn(extra_args or [])
            assert self.proc is not None
            problem = _await_ping(self.host, self.port, time.monotonic() + deadline, self._died, self.proc.pid)
            if problem is None:
                self._started_once = True
                return
            if "Address already in use" not in problem or self._started_once:
                break
            self.proc.kill()  # it lost the bind and is exiting: reap it before trying another port
            self.proc.wait()
            self.port = free_port()
        fail(problem or "redis-server did not start")

    def _spawn(self, extra_args: list[str]) -> None:
        conf = self._write_config(extra_args)
        self.proc = subprocess.Popen(
            [self.binary, str(conf), *extra_args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _died(self) -> str | None:
        if self.proc is not None and self.proc.poll() is not None:
            log = self.home / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
            return f"redis-server on port {self.port} exited ({self.proc.returncode}):\n{tail}"
        return None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _signal(self, sig: signal.Signals) -> None:
        if self.proc is None or self.proc.poll() is not None:
            raise AssertionError(f"redis on port {self.port} is not running")
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync (appendfsync everysec may lose 1 s)."""
        self._signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(timeout=10)

    def stop(self) -> None:
        """SIGTERM: a clean shutdown that flushes the append-only file."""
        self.resume_if_paused()
        self._signal(signal.SIGTERM)
        assert self.proc is not None
        self.proc.wait(timeout=20)

    def restart(self, *, wipe: bool = False) -> None:
        """Stop (if running) and start on the same port; ``wipe`` starts empty."""
        if self.running():
            self.stop()
        if wipe:
            for item in self.home.iterdir():
                if item.name not in ("redis.conf", "server.log"):
                    shutil.rmtree(item) if item.is_dir() else item.unlink()
        self.start()

    def pause(self) -> None:
        self._signal(signal.SIGSTOP)
        self._paused = True

    def resume(self) -> None:
        self._signal(signal.SIGCONT)
        self._paused = False

    def resume_if_paused(self) -> None:
        if self._paused:
            self.resume()

    def close(self) -> None:
        if self.running():
            assert self.proc is not None
            self.resume_if_paused()
            self.proc.kill()
            self.proc.wait(timeout=10)

    # -------------------------------------------------------------- access

    def url(self, namespace: str = "fb", **options: object) -> str:
        return with_query(f"redis://{self.host}:{self.port}/0", prefix=namespace, **options)

    def client(self) -> redis.Redis:
        """A raw client for test set-up (close it, or use ``with``)."""
        return redis.Redis(host=self.host, port=self.port, socket_timeout=5)

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()


class ExternalRedis:
    """A server named by ``FLOWBATON_TEST_REDIS``: usable, not breakable."""

    def __init__(self, url: str) -> None:
        self._url = url

    def url(self, namespace: str = "fb", **options: object) -> str:
        return with_query(self._url, prefix=namespace, **options)

    def client(self) -> redis.Redis:
        client: redis.Redis = redis.Redis.from_url(self._url.split("?")[0])
        return client

    def flushall(self) -> None:
        with self.client() as client:
            client.flushall()

    def _no_faults(self, *args: Any, **kwargs: Any) -> None:
        fail(f"fault injection needs a local redis-server, not {ENV_URL}={self._url}")

    kill = stop = start = restart = pause = resume = _no_faults

    def close(self) -> None:
        pass


class ContainerRedis(LocalRedis):
    """``redis:7`` in Docker via testcontainers, on a fixed host port so
    that restarts keep the URL."""

    def __init__(self) -> None:
        from testcontainers.core.container import DockerContainer

        self._paused = False
        self.host = "127.0.0.1"
        self.port = free_port()
        command = " ".join(f"--{key} {value}" for key, value in BASE_CONFIG.items())
        self.container = (
            DockerContainer(IMAGE)
            .with_command(f"redis-server {command}")
            .with_bind_ports(6379, self.port)
        )
        self.container.start()
        self.host = self.container.get_container_host_ip()
        self.start()

    def _docker(self) -> Any:
        return self.container.get_wrapped_container()

    def start(self, deadline: float = 30.0, extra_args: list[str] | None = None) -> None:
        self._docker().reload()
        if self._docker().status != "running":
            self._docker().start()
        _wait_ping(self.host, self.port, time.monotonic() + deadline, lambda: None)

    def running(self) -> bool:
        self._docker().reload()
        return bool(self._docker().status == "running")

    def kill(self) -> None:
        self._docker().kill(signal="SIGKILL")

    def stop(self) -> None:
        self._docker().stop(timeout=10)

    def restart(self, *, wipe: bool = False) -> None:
        if wipe:
            fail("restart(wipe=True) is not supported on a container; use flushall()")
        self.stop()
        self.start()

    def pause(self) -> None:
        self._docker().pause()
        self._paused = True

    def resume(self) -> None:
        self._docker().unpause()
        self._paused = False

    def close(self) -> None:
        self.container.stop()


def redis_binary() -> str:
    binary = shutil.which("redis-server")
    if binary is None:
        fail(
            "no Redis server: set FLOWBATON_TEST_REDIS, run a Docker engine, "
            "or install redis-server (Debian package redis-server)"
        )
    return binary


class SentinelCluster:
    """Primary + replica(s) + three sentinels on loopback, fast failover.

    ``replicas`` and ``node_config`` (settings of every data node, e.g. the
    ``min-replicas-to-write`` deploy/README.md recommends) default to the
    test suite's small cluster: one replica, base settings."""

    SERVICE = "mymaster"

    def __init__(self, binary: str, home: Path, *, replicas: int = 1,
                 node_config: dict[str, str] | None = None, down_after_ms: int = 1000) -> None:
        self.nodes = [LocalRedis(binary, home / f"node{i}", node_config) for i in range(1 + replicas)]
        self.sentinels = [LocalRedis(binary, home / f"sentinel{i}", {}) for i in range(3)]
        self.down_after_ms = down_after_ms
        self.nodes[0].start()
        for node in self.nodes[1:]:
            node.config["replicaof"] = f"127.0.0.1 {self.nodes[0].port}"
            node.start()
        for sentinel in self.sentinels:
            sentinel.config = self._sentinel_config()
            sentinel.start(extra_args=["--sentinel"])
        self._wait_ready(time.monotonic() + 40)

    def _sentinel_config(self) -> dict[str, str]:
        name, primary = self.SERVICE, self.nodes[0].port
        return {
            f"sentinel monitor {name}": f"127.0.0.1 {primary} 2",
            f"sentinel down-after-milliseconds {name}": str(self.down_after_ms),
            f"sentinel failover-timeout {name}": "3000",
            f"sentinel parallel-syncs {name}": "1",
        }

    def _sentinel_client(self, sentinel: LocalRedis) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=sentinel.port, socket_timeout=2,
                           decode_responses=True)

    def _wait_ready(self, deadline: float) -> None:
        """Every sentinel knows the replica and the two other sentinels, and
        the replica is in sync: only then can a failover happen."""
        while time.monotonic() < deadline:
            if all(self._sentinel_ready(s) for s in self.sentinels) and self._replica_synced():
                return
            time.sleep(0.2)
        fail("sentinel cluster did not become ready (see sentinel*/server.log)")

    def _sentinel_ready(self, sentinel: LocalRedis) -> bool:
        with self._sentinel_client(sentinel) as client:
            try:
                state = client.execute_command("SENTINEL", "MASTER", self.SERVICE)
            except redis.RedisError:
                return False
        info = dict(zip(state[::2], state[1::2], strict=True)) if isinstance(state, list) else state
        return int(info["num-slaves"]) >= len(self.nodes) - 1 and int(info["num-other-sentinels"]) >= 2

    def _replica_synced(self) -> bool:
        for node in self.nodes[1:]:
            with node.client() as client:
                if client.info("replication").get("master_link_status") != "up":
                    return False
        return True

    def url(self, namespace: str = "fb", **options: object) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return with_query(f"redis+sentinel://{hosts}/{self.SERVICE}/0", prefix=namespace, **options)

    def primary_port(self) -> int:
        for sentinel in self.sentinels:
            with self._sentinel_client(sentinel) as client:
                try:
                    _, port = client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.SERVICE)
                    return int(port)
                except redis.RedisError:
                    continue
        fail("no sentinel answers")

    def primary(self) -> LocalRedis:
        port = self.primary_port()
        return next(node for node in self.nodes if node.port == port)

    def wait_replicated(self, timeout: float = 5.0) -> None:
        """Block until a replica has every write the primary has so far:
        its acknowledged offset reaches the primary's. (``WAIT`` would not
        do: it counts only the asking connection's own writes, and a fresh
        connection has none, so it answers at once.)"""
        with self.primary().client() as client:
            target = int(client.info("replication")["master_repl_offset"])
            end = time.monotonic() + timeout
            while True:
                info = client.info("replication")
                acked = [int(v.get("offset", -1)) for k, v in info.items()
                         if k.startswith("slave") and isinstance(v, dict)]
                if any(offset >= target for offset in acked):
                    return
                if time.monotonic() > end:
                    fail(f"no replica reached replication offset {target} within {timeout}s (at {acked})")
                time.sleep(0.01)

    def kill_primary(self) -> int:
        """SIGKILL the current primary; returns its port."""
        primary = self.primary()
        primary.kill()
        return primary.port

    def wait_for_failover(self, old_port: int, deadline: float = 30.0) -> int:
        """Wait until the sentinels name a new primary that says it is one."""
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            port = self.primary_port()
            if port != old_port and self._is_primary(port):
                return port
            time.sleep(0.1)
        fail(f"no failover away from port {old_port} within {deadline}s")

    def _is_primary(self, port: int) -> bool:
        client = redis.Redis(host="127.0.0.1", port=port, socket_timeout=1)
        try:
            return bool(client.execute_command("ROLE")[0] == b"master")  # type: ignore[no-untyped-call]
        except redis.RedisError:
            return False
        finally:
            client.close()

    def close(self) -> None:
        for process in [*self.sentinels, *self.nodes]:
            process.close()


def start_best_server(home: Path) -> Any:
    """The preferred available single server (see the module docstring)."""
    external = os.environ.get(ENV_URL)
    if external:
        return ExternalRedis(external)
    if docker_reachable():
        return ContainerRedis()
    server = LocalRedis(redis_binary(), home)
    server.start()
    return server
