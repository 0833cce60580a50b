"""The harness's parts on their own: recorder, ledger, proxy, nemesis plan, workload."""

from __future__ import annotations

import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from packaging.version import Version

from flowbaton.backends.errors import ClaimLost
from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.records import FlowDetail, TaskDetail
from flowbaton.engine import compile_flow
from flowbaton.testing.chaos.nemesis import plan_faults
from flowbaton.testing.chaos.proxy import ProxyHub
from flowbaton.testing.chaos.setups import Setup
from flowbaton.testing.chaos.workload import DEPLOY_ENV, chaos_flow, generation_build
from flowbaton.testing.recorder import HistoryFile, RecordingBackend, digest, read_history


def test_the_recorder_logs_each_call_and_its_outcome(tmp_path: Path) -> None:
    backend = RecordingBackend(MemoryBackend(), HistoryFile(tmp_path, "t"))
    backend.create_flow(FlowDetail("f", "n", "m:f"))
    old = backend.claim("f", "r1", 0.01)
    new = backend.claim("f", "r2", 60.0, force=True)
    task = TaskDetail("a", "SUCCESS", {"x": 1})
    backend.save_tasks(new, [task])
    with pytest.raises(ClaimLost):
        backend.save_task(old, TaskDetail("a"))
    backend.load_tasks("f")

    lines = list(read_history(tmp_path))
    invoked = {line["i"]: line for line in lines if line["ph"] == "invoke"}
    ended = {line["i"]: line for line in lines if line["ph"] != "invoke"}
    assert set(invoked) == set(ended)
    ops = [(invoked[i]["op"], ended[i]["ph"]) for i in invoked]
    assert ops == [("create_flow", "ok"), ("claim", "ok"), ("claim", "ok"), ("save_task", "ok"),
                   ("save_task", "fail"), ("load_tasks", "ok")]
    saved = next(line for line in invoked.values() if line["op"] == "save_task")
    assert saved["d"] == digest(task.to_json()) == digest(backend.load_tasks("f")["a"].to_json())
    assert saved["claim"] == new.claim_id and saved["epoch"] == new.epoch == 2
    assert next(line for line in ended.values() if line["ph"] == "fail")["err"] == "ClaimLost"


def test_the_recorder_answers_with_the_wrapped_capabilities(tmp_path: Path) -> None:
    backend = RecordingBackend(MemoryBackend(), HistoryFile(tmp_path, "t"))
    assert backend.capabilities == MemoryBackend.capabilities and "watch" in backend.capabilities


# ------------------------------------------------------------------ proxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(1024):
            self.request.sendall(data)


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[0], server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def _connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=2)
    sock.settimeout(0.5)
    return sock


def test_a_blackholed_proxy_holds_bytes_and_delivers_them_on_heal(echo: tuple[str, int]) -> None:
    hub = ProxyHub()
    try:
        proxy = hub.add("r1", lambda: echo)
        with _connect(proxy.port) as sock:
            sock.sendall(b"before")
            assert sock.recv(100) == b"before"
            hub.cut("r1", "blackhole")
            sock.sendall(b"late")
            with pytest.raises(TimeoutError):
                sock.recv(100)
            hub.heal("r1")
            sock.settimeout(5)
            assert sock.recv(100) == b"late"  # held, not lost: a delayed write lands after the heal
    finally:
        hub.close()


def _echoes(port: int) -> bool:
    """True if a fresh connection through ``port`` echoes; False if reset."""
    try:
        with _connect(port) as sock:
            sock.settimeout(5)
            sock.sendall(b"ping")
            return sock.recv(10) == b"ping"
    except OSError:
        return False


def test_a_reset_proxy_drops_connections_and_refuses_new_ones(echo: tuple[str, int]) -> None:
    hub = ProxyHub()
    try:
        proxy = hub.add("r1", lambda: echo)
        other = hub.add("r2", lambda: echo)
        with _connect(proxy.port) as sock:
            hub.cut("r1", "reset")
            sock.settimeout(5)
            with pytest.raises(OSError):
                sock.sendall(b"x")
                if not sock.recv(10):
                    raise ConnectionResetError("closed by the proxy")
        assert not _echoes(proxy.port)
        assert _echoes(other.port)  # other replicas are not cut
        hub.heal("r1")
        assert _echoes(proxy.port)
    finally:
        hub.close()


# ----------------------------------------------------------------- nemesis


def test_the_fault_plan_is_a_function_of_the_seed() -> None:
    setup = Setup("sqlite:///x.db")
    kinds = ("kill", "zombie", "deploy", "stall-backend")
    first = plan_faults(7, kinds, 30.0, 2.0, ["r0", "r1", "r2"], setup)
    assert first == plan_faults(7, kinds, 30.0, 2.0, ["r0", "r1", "r2"], setup)
    assert first != plan_faults(8, kinds, 30.0, 2.0, ["r0", "r1", "r2"], setup)
    assert {f.kind for f in first} == set(kinds)
    assert set(kinds) == {f.kind for f in plan_faults(1, kinds, 0.0, 2.0, ["r0"], setup)}  # each at least once


# ---------------------------------------------------------------- workload


def test_deploys_add_remove_and_bump_tasks(monkeypatch: pytest.MonkeyPatch) -> None:
    shapes = {}
    for generation in range(4):
        monkeypatch.setenv(DEPLOY_ENV, str(generation))
        compiled = compile_flow(chaos_flow(1, 0), {"seed": 1, "index": 0, "kind": "plain"})
        shapes[generation] = (sorted(compiled.order), compiled.tasks["b"].task_version)
    assert shapes[0] == (["b", "c", "finish", "prepare"], "1.0")
    assert shapes[1] == (["b", "c", "extra", "finish", "prepare"], "1.1")  # added, minor bump
    assert shapes[2] == (["b", "finish", "prepare"], "2.0")  # extra and c removed, major bump
    assert shapes[3] == (["b", "c", "extra", "finish", "prepare"], "2.1")


def test_each_generation_has_a_newer_build_than_the_last() -> None:
    builds = [Version(generation_build(g)) for g in range(12)]
    assert builds == sorted(builds) and len(set(builds)) == 12  # 1.10 comes after 1.9
