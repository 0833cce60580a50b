"""Real ZooKeeper servers for the test suites, with fault injectors.

Where a server comes from, in order of preference:

1. ``FLOWBATON_TEST_ZOOKEEPER=h1:2181,h2:2181``: an existing server or
   ensemble (fault injection is then unavailable: those tests fail saying so);
2. testcontainers, when a Docker engine answers a ping within two seconds;
3. the Debian package ``zookeeper`` (``/usr/share/java/zookeeper.jar``; its
   manifest names its dependency jars), run directly with ``java`` on free
   ports in a temporary folder. Ready in about a second.

A server that cannot be started FAILS the tests that need it (never a skip):
a CI run without ZooKeeper must not look green. No four-letter-word command
is used anywhere; readiness is a real client session.
"""

from __future__ import annotations

import importlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

__all__ = [
    "LocalZooKeeper",
    "ZooKeeperEnsemble",
    "expire_session",
    "wait_until",
]

ZK_JAR = Path("/usr/share/java/zookeeper.jar")
LOG_JAR = Path("/usr/share/java/slf4j-simple.jar")
ENV_VAR = "FLOWBATON_TEST_ZOOKEEPER"
START_DEADLINE = 60.0


def wait_until(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:.1f}s waiting for {what}")
        time.sleep(interval)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _session_works(hosts: str, timeout: float) -> bool:
    """True when a client session can be opened and a read answered."""
    from kazoo.client import KazooClient

    client = KazooClient(hosts=hosts, timeout=4.0)
    try:
        client.start(timeout=timeout)
        client.exists("/")
        return True
    except Exception:
        return False
    finally:
        client.stop()
        client.close()


# ---------------------------------------------------------------- local java


def _java_command(cfg: Path) -> list[str]:
    java = shutil.which("java")
    if java is None or not ZK_JAR.exists():
        pytest.fail(
            "no ZooKeeper server: set FLOWBATON_TEST_ZOOKEEPER=host:port, run a Docker "
            "engine, or install the Debian packages 'zookeeper' and a Java runtime"
        )
    classpath = [str(ZK_JAR)] + ([str(LOG_JAR)] if LOG_JAR.exists() else [])
    return [
        java,
        "-Xmx256m",
        "-XX:+UseSerialGC",
        "-XX:TieredStopAtLevel=1",
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
        "-Dzookeeper.admin.enableServer=false",
        "-cp",
        ":".join(classpath),
        "org.apache.zookeeper.server.quorum.QuorumPeerMain",
        str(cfg),
    ]


def _config(member: LocalZooKeeper, peers: list[LocalZooKeeper]) -> str:
    lines = [
        "tickTime=500",
        "initLimit=20",
        "syncLimit=10",
        f"dataDir={member.data_dir}",
        f"clientPort={member.port}",
        "clientPortAddress=127.0.0.1",
        "admin.enableServer=false",
        "minSessionTimeout=1000",
        "maxSessionTimeout=60000",
        "maxClientCnxns=0",
        "reconfigEnabled=false",
    ]
    if len(peers) > 1:
        lines += [f"server.{p.myid}=127.0.0.1:{p.quorum_port}:{p.election_port}" for p in peers]
    return "\n".join(lines) + "\n"


@dataclass
class LocalZooKeeper:
    """One ``QuorumPeerMain`` process; standalone, or a member of an ensemble."""

    root: Path
    myid: int = 1
    port: int = field(default_factory=_free_port)
    quorum_port: int = field(default_factory=_free_port)
    election_port: int = field(default_factory=_free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def data_dir(self) -> Path:
        return self.root / f"zk{self.myid}"

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def configure(self, peers: list[LocalZooKeeper]) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        (self.data_dir / "myid").write_text(f"{self.myid}\n")
        (self.data_dir / "zoo.cfg").write_text(_config(self, peers))

    def url(self, namespace: str = "flowbaton") -> str:
        return f"zookeeper://{self.hosts}/{namespace}"

    # -- fault injectors ---------------------------------------------------

    def start(self) -> None:
        """Start the process (no-op if running); does not wait for service."""
        if self.running:
            return
        log = (self.data_dir / "server.log").open("ab")
        self.process = subprocess.Popen(
            _java_command(self.data_dir / "zoo.cfg"),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        log.close()

    def stop(self) -> None:
        """Graceful stop (SIGTERM), waiting for the process to exit."""
        self._signal_and_wait(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the server dies without a word to its clients."""
        self._signal_and_wait(signal.SIGKILL)

    def restart(self) -> None:
        self.stop()
        self.start()
        self.wait_serving()

    def pause(self) -> None:
        """SIGSTOP: the socket stays open but nothing answers."""
        if self.process is not None:
            self.process.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            self.process.send_signal(signal.SIGCONT)

    def _signal_and_wait(self, sig: signal.Signals) -> None:
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGCONT)  # a paused JVM cannot handle SIGTERM
        process.send_signal(sig)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=15)

    def wait_serving(self, timeout: float = START_DEADLINE) -> None:
        """Block until this member serves client sessions (it is in a quorum)."""
        deadline = time.monotonic() + timeout
        while not _session_works(self.hosts, timeout=2.0):
            if not self.running:
                pytest.fail(f"ZooKeeper on port {self.port} exited: {self.log_tail()}")
            if time.monotonic() >= deadline:
                pytest.fail(f"ZooKeeper on port {self.port} not serving: {self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, lines: int = 20) -> str:
        log = self.data_dir / "server.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])


class ZooKeeperEnsemble:
    """Several local members forming one quorum; ``members[i]`` has the
    per-server injectors (stop, kill, start, restart, pause, resume)."""

    def __init__(self, root: Path, size: int = 3) -> None:
        self.members = [LocalZooKeeper(root, myid=i + 1) for i in range(size)]
        for member in self.members:
            member.configure(self.members)

    @property
    def hosts(self) -> str:
        return ",".join(m.hosts for m in self.members)

    def url(self, namespace: str = "flowbaton") -> str:
        return f"zookeeper://{self.hosts}/{namespace}"

    def start(self) -> None:
        for member in self.members:
            member.start()
        for member in self.members:
            member.wait_serving()

    def heal(self) -> None:
        """Every member running and serving again (test teardown)."""
        for member in self.members:
            member.resume()
            member.start()
        for member in self.members:
            member.wait_serving()

    def shutdown(self) -> None:
        for member in self.members:
            member.kill()


# ----------------------------------------------------------- other sources


class ExternalZooKeeper:
    """A server given by ``FLOWBATON_TEST_ZOOKEEPER``; no fault injection."""

    def __init__(self, hosts: str) -> None:
        self.hosts = hosts

    def url(self, namespace: str = "flowbaton") -> str:
        return f"zookeeper://{self.hosts}/{namespace}"

    def __getattr__(self, name: str) -> Any:
        if name in {"stop", "kill", "start", "restart", "pause", "resume", "members"}:
            pytest.fail(f"{name}() needs a local ZooKeeper; unset {ENV_VAR} to get one")
        raise AttributeError(name)


def _docker_reachable() -> bool:
    """A quick ping (2 s at most): never hang a run on a missing engine."""
    if not (os.environ.get("DOCKER_HOST") or Path("/var/run/docker.sock").exists()):
        return False
    try:
        docker = importlib.import_module("docker")
        client = docker.from_env(timeout=2)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


class ContainerZooKeeper:
    """A ``zookeeper`` image run by testcontainers; pause/resume/kill/start
    act on the container. (Untested on the development machine: no Docker.)"""

    IMAGE = "zookeeper:3.8"

    def __init__(self) -> None:
        from testcontainers.core.container import DockerContainer

        self.container = (
            DockerContainer(self.IMAGE)
            .with_env("ZOO_ADMINSERVER_ENABLED", "false")
            .with_env("ZOO_CFG_EXTRA", "minSessionTimeout=1000")
            .with_bind_ports(2181, _free_port())
        )
        self.container.start()
        port = self.container.get_exposed_port(2181)
        self.hosts = f"{self.container.get_container_host_ip()}:{port}"
        wait_until(lambda: _session_works(self.hosts, 2.0), START_DEADLINE, "container ZooKeeper")

    def url(self, namespace: str = "flowbaton") -> str:
        return f"zookeeper://{self.hosts}/{namespace}"

    def _wrapped(self) -> Any:
        return self.container.get_wrapped_container()

    def kill(self) -> None:
        self._wrapped().kill()

    def stop(self) -> None:
        self._wrapped().stop(timeout=10)

    def start(self) -> None:
        self._wrapped().start()

    def restart(self) -> None:
        self.stop()
        self.start()
        wait_until(lambda: _session_works(self.hosts, 2.0), START_DEADLINE, "ZooKeeper restart")

    def pause(self) -> None:
        self._wrapped().pause()

    def resume(self) -> None:
        self._wrapped().unpause()

    def shutdown(self) -> None:
        self.container.stop()


# -------------------------------------------------------------- injectors


def expire_session(target: Any, timeout: float = 20.0) -> None:
    """Force the session of ``target`` (a KazooClient, or a backend exposing
    ``.kazoo``) to expire now, without waiting out its timeout.

    A second client joins the same session (id + password) and closes it: the
    server then ends the session, deletes its ephemeral znodes, and the first
    client learns on its next contact that its session is gone (LOST). Waits
    until the first client has a new session.
    """
    from kazoo.client import KazooClient

    client = getattr(target, "kazoo", target)
    session_id, password = client.client_id
    hosts = ",".join(f"{host}:{port}" for host, port in client.hosts)
    twin = KazooClient(hosts=hosts, client_id=(session_id, password), timeout=4.0)
    twin.start(timeout=10)
    twin.stop()
    twin.close()
    wait_until(
        lambda: client.connected and client.client_id[0] != session_id,
        timeout,
        f"client to notice the expiry of session {session_id:#x}",
    )


# ---------------------------------------------------------------- fixtures


def _start_local(root: Path) -> LocalZooKeeper:
    server = LocalZooKeeper(root)
    server.configure([server])
    server.start()
    server.wait_serving()
    return server


def start_best_server(root: Path) -> Any:
    """The preferred available single server (see the module docstring)."""
    external = os.environ.get(ENV_VAR)
    if external:
        if not _session_works(external, timeout=10.0):
            pytest.fail(f"{ENV_VAR}={external!r}: cannot open a ZooKeeper session there")
        return ExternalZooKeeper(external)
    if _docker_reachable():
        return ContainerZooKeeper()
    return _start_local(root)


@pytest.fixture(scope="session")
def zookeeper_server() -> Iterator[Any]:
    """One server for the whole run; each test takes its own namespace via
    ``.url(namespace)``. Tests that kill or pause it must leave it running."""
    root = Path(tempfile.mkdtemp(prefix="flowbaton-zk-"))
    server = start_best_server(root)
    try:
        yield server
    finally:
        if hasattr(server, "shutdown"):
            server.shutdown()
        elif isinstance(server, LocalZooKeeper):
            server.kill()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def zookeeper_private_server(tmp_path: Path) -> Iterator[LocalZooKeeper]:
    """A local standalone server of this test alone, free to kill and restart."""
    server = _start_local(tmp_path)
    try:
        yield server
    finally:
        server.kill()


@pytest.fixture(scope="session")
def zookeeper_ensemble() -> Iterator[ZooKeeperEnsemble]:
    """Three local members in one quorum, for quorum-loss tests."""
    root = Path(tempfile.mkdtemp(prefix="flowbaton-zk3-"))
    ensemble = ZooKeeperEnsemble(root)
    try:
        ensemble.start()
        yield ensemble
    finally:
        ensemble.shutdown()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def zookeeper_namespace() -> str:
    return f"t{uuid.uuid4().hex[:10]}"
