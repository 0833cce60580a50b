"""The FastAPI example (deploy/example/example_service/api.py) on real
servers: a copy of the service started with uvicorn takes a request and
starts the flow; it is killed with SIGKILL mid-flow; a second copy, started
after, finishes it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.states import RUNNING, SUCCESS
from flowbaton.engine.meta import FlowMeta
from flowbaton.testing.servers import free_port
from tests.servers import until

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "deploy" / "example"


class Service:
    """One copy of the example service: a uvicorn process on a free port."""

    def __init__(self, url: str, log: Path) -> None:
        self.port = free_port()
        env = dict(os.environ, FLOWBATON_BACKEND=url, FLOWBATON_LEASE="2",
                   PYTHONPATH=os.pathsep.join([str(EXAMPLE), str(REPO), os.environ.get("PYTHONPATH", "")]))
        with log.open("ab") as sink:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "uvicorn", "example_service.api:app", "--host", "127.0.0.1",
                 "--port", str(self.port)], env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            until(self._healthy, 60, "the example service answering /health")
        except BaseException:
            self.stop()  # never leave a process behind a failed start
            raise

    def _healthy(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"the example service exited with {self.process.returncode}")
        try:
            return self.call("GET", "/health")["status"] == "ok"
        except OSError:
            return False

    def call(self, method: str, path: str) -> dict[str, object]:
        request = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        with urllib.request.urlopen(request, timeout=10) as answer:
            body: dict[str, object] = json.load(answer)
        return body

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[list[Service]]:
    made: list[Service] = []
    yield made
    for service in made:
        service.stop()


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["redis", "zookeeper"])
def test_a_flow_submitted_over_http_survives_a_sigkill_of_its_service(
    kind: str, request: pytest.FixtureRequest, services: list[Service], tmp_path: Path
) -> None:
    from tests.conftest import make_url

    url = make_url(kind, request, tmp_path)
    first = Service(url, tmp_path / "first.log")
    services.append(first)
    flow_id = str(first.call("POST", "/machines/vm-1?steps=8&pause=0.4")["flow_id"])
    store = open_backend(url)
    try:
        def some_steps_done() -> bool:
            tasks = store.load_tasks(flow_id)
            return tasks.get("configure-1") is not None and tasks["configure-1"].state == SUCCESS

        until(some_steps_done, 30, "two configuration steps done on the first copy")
        first.process.send_signal(signal.SIGKILL)
        first.process.wait(10)
        assert store.load_flow(flow_id).state == RUNNING  # mid-flow

        second = Service(url, tmp_path / "second.log")
        services.append(second)
        until(lambda: second.call("GET", f"/flows/{flow_id}")["state"] == SUCCESS, 60,
              "the second copy finishing the flow")
        report = second.call("GET", f"/flows/{flow_id}")
        assert report["results"]["mark-ready"] == {"name": "vm-1", "address": report["results"]["reserve-address"],
                                                   "state": "ready"}
        resumes = FlowMeta(store.load_flow(flow_id).meta).resumes
        assert resumes and resumes[-1]["takeover"] is True  # the second copy took it over from the dead one
    finally:
        store.close()


def test_the_service_refuses_a_hostile_name_before_anything_is_stored(
    request: pytest.FixtureRequest, services: list[Service], tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    service = Service(url, tmp_path / "service.log")
    services.append(service)
    for path, codes in (("/machines/..%2F..%2Fetc?steps=1", (404, 422)), ("/machines/vm-1?steps=100000", (422,))):
        with pytest.raises(urllib.error.HTTPError) as refused:
            service.call("POST", path)
        refused.value.close()  # an HTTPError holds the response's socket until closed
        assert refused.value.code in codes, path
    store = open_backend(url)
    try:
        assert store.list_flows() == []
    finally:
        store.close()
