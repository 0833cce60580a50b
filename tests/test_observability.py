"""Observability of a replica: engine events, Prometheus metrics, probes,
structured logs. In-process replicas on ``memory://`` for the counting;
private Redis and ZooKeeper servers, stopped and started again, for the
readiness probe; a real ``flowbaton replica`` process for the CLI flags.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tenacity import stop_after_attempt

from flowbaton.backends import open_backend
from flowbaton.backends.errors import MissingDriver
from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.states import REVERTED, RUNNING, SUCCESS, TERMINAL_FLOW_STATES
from flowbaton.coordinator import Coordinator
from flowbaton.engine import Flow, Linear, Retry, new_flow_detail, run_flow, task
from flowbaton.engine.events import TASK_OUTCOMES
from flowbaton.observability.logs import JSONFormatter, configure_logging
from flowbaton.observability.observer import metrics_class
from flowbaton.testing.servers import free_port
from tests.backends import backend_params
from tests.coordinator.cluster import REPO, env
from tests.coordinator.inprocess import LocalReplicas, submit_steps
from tests.servers import until

REVERTING = "tests.test_observability:reverting"


# ------------------------------------------------------------------ flows


@task(id="obs-made", provides="made")
def make_thing() -> str:
    return "thing"


@make_thing.revert
def unmake_thing(result: str) -> None:
    pass


@task(id="obs-flaky", retry=Retry(stop=stop_after_attempt(2)))
def always_fails(made: str) -> None:
    raise RuntimeError(f"cannot use {made}")


def reverting() -> Flow:
    """made (ok, revertible) then flaky (fails, retried once, fails again)."""
    return Linear("obs-reverting", make_thing, always_fails)


# ---------------------------------------------------------------- helpers


def get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()
    except OSError:
        return 0, ""  # not listening yet


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a /metrics body, keyed by name and labels."""
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


# ----------------------------------------------------------- engine events


class Recorder:
    def __init__(self) -> None:
        self.tasks: list[tuple[str, str]] = []
        self.flows: list[tuple[str, float]] = []
        self.claims: list[str | None] = []

    def on_flow_claimed(self, flow_id: str, previous_owner: str | None) -> None:
        self.claims.append(previous_owner)

    def on_task_finished(self, flow_id: str, task_id: str, outcome: str, seconds: float) -> None:
        assert seconds >= 0
        self.tasks.append((task_id, outcome))

    def on_flow_finished(self, flow_id: str, state: str, seconds: float) -> None:
        self.flows.append((state, seconds))


def test_the_engine_reports_each_outcome_once_after_writing_it() -> None:
    store = MemoryBackend()
    detail = new_flow_detail(REVERTING)
    store.create_flow(detail)
    token = store.claim(detail.id, "me", 10.0)
    recorder = Recorder()
    report = run_flow(store, token, replica_id="me", allow=["tests."], events=recorder)
    assert report.state == REVERTED
    assert recorder.tasks == [("obs-made", "success"), ("obs-flaky", "retry"), ("obs-flaky", "failure"),
                              ("obs-made", "revert")]
    [(state, seconds)] = recorder.flows
    assert state == REVERTED and 0 <= seconds < 60
    assert recorder.claims == [None]  # nobody held it before: not a takeover


def test_the_engine_names_the_previous_owner_of_a_flow_it_takes_over() -> None:
    store = MemoryBackend()
    detail = new_flow_detail(REVERTING)
    store.create_flow(detail)
    old = store.claim(detail.id, "old", 10.0)
    detail.state, detail.owner = RUNNING, "old"
    store.save_flow(old, detail)  # then "old" died without handing the flow back
    token = store.claim(detail.id, "new", 10.0, force=True)
    recorder = Recorder()
    run_flow(store, token, replica_id="new", allow=["tests."], events=recorder)
    assert recorder.claims == ["old"]


# ------------------------------------------------------------------ metrics


def test_metrics_count_claims_task_outcomes_and_durations(local_replicas: LocalReplicas, tmp_path: Path) -> None:
    coord = local_replicas.add(MemoryBackend(), replica_id="obs-1", lease=0.6)
    port = coord.serve_http(0, "127.0.0.1").port
    coord.start(concurrency=2)
    ok = submit_steps(coord, tmp_path / "ledger", n=3, pause=0.25)  # long enough for a few renewals (every 0.2 s)
    bad = coord.submit(REVERTING)
    assert coord.wait(ok, timeout=20).state == SUCCESS and coord.wait(bad, timeout=20).state == REVERTED
    until(lambda: not coord.running(), 10, "the workers to finish")
    status, body = get(port, "/metrics")
    assert status == 200
    found = samples(body)
    assert value(found, "flowbaton_flows_claimed_total") == 2
    assert value(found, "flowbaton_takeovers_total") == 0
    assert value(found, "flowbaton_tasks_total", outcome="success") == 4
    assert value(found, "flowbaton_tasks_total", outcome="retry") == 1
    assert value(found, "flowbaton_tasks_total", outcome="failure") == 1
    assert value(found, "flowbaton_tasks_total", outcome="revert") == 1
    assert value(found, "flowbaton_task_duration_seconds_count", outcome="success") == 4
    assert value(found, "flowbaton_task_duration_seconds_sum", outcome="success") >= 0.7  # 3 steps of 0.25 s
    assert value(found, "flowbaton_flow_duration_seconds_count", state="SUCCESS") == 1
    assert value(found, "flowbaton_flow_duration_seconds_count", state="REVERTED") == 1
    assert value(found, "flowbaton_lease_renewal_seconds_count") >= 1
    assert value(found, "flowbaton_flows_running") == 0
    assert value(found, "flowbaton_replica_ready") == 1
    assert ("flowbaton_replica_info", frozenset({("replica_id", "obs-1"), ("version", _version())})) in found


def _version() -> str:
    import flowbaton

    return flowbaton.__version__


def test_every_outcome_series_exists_before_any_event(local_replicas: LocalReplicas) -> None:
    found = samples(local_replicas.add(MemoryBackend()).enable_metrics().exposition()[0].decode())
    for outcome in TASK_OUTCOMES:
        assert value(found, "flowbaton_tasks_total", outcome=outcome) == 0
    assert value(found, "flowbaton_backend_errors_total", operation="find_runnable") == 0


def test_each_replica_has_its_own_registry(local_replicas: LocalReplicas) -> None:
    store = MemoryBackend()
    a, b = local_replicas.add(store).enable_metrics(), local_replicas.add(store).enable_metrics()
    a.claimed(takeover=True)
    assert value(samples(a.exposition()[0].decode()), "flowbaton_takeovers_total") == 1
    assert value(samples(b.exposition()[0].decode()), "flowbaton_takeovers_total") == 0


def test_takeovers_declines_and_lost_claims_are_counted_and_logged(
    local_replicas: LocalReplicas, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="flowbaton")
    store = MemoryBackend()
    picky = local_replicas.add(store, replica_id="picky", allow=["elsewhere."])
    able = local_replicas.add(store, replica_id="able")
    metrics = {c.replica_id: c.enable_metrics() for c in (picky, able)}
    orphan = submit_steps(able, tmp_path / "ledger")
    dead = store.claim(orphan, "dead-replica", 0.3)  # its owner "dies": the lease runs out
    flow = store.load_flow(orphan)
    flow.owner, flow.epoch, flow.state = "dead-replica", dead.epoch, RUNNING
    store.save_flow(dead, flow)
    picky.start()
    until(lambda: store.load_declines(orphan), 10, "a decline")
    able.start()
    assert able.wait(orphan, timeout=20).state == SUCCESS
    slow = submit_steps(able, tmp_path / "ledger", n=20, pause=0.1)
    until(lambda: (c := store.current_claim(slow)) and c.owner == "able", 10, "able to claim the slow flow")
    store.claim(slow, "operator", 30.0, force=True)  # `flowbaton release` does this: the owner is fenced
    until(lambda: value(samples(metrics["able"].exposition()[0].decode()), "flowbaton_claims_lost_total") == 1,
          10, "the lost claim to be counted")
    got = {rid: samples(m.exposition()[0].decode()) for rid, m in metrics.items()}
    assert value(got["picky"], "flowbaton_declines_total") >= 1
    assert value(got["picky"], "flowbaton_flows_claimed_total") >= 1
    assert value(got["able"], "flowbaton_takeovers_total") == 1
    assert value(got["able"], "flowbaton_flows_claimed_total") == 2
    docs = [json.loads(JSONFormatter().format(r)) for r in caplog.records]
    events = {(d.get("event"), d.get("replica_id"), d.get("flow_id")): d for d in docs}
    for event, rid, fid in [("decline", "picky", orphan), ("takeover", "able", orphan), ("resume", "able", orphan),
                            ("release", "able", orphan), ("claim", "able", slow), ("claim_lost", "able", slow)]:
        doc = events[(event, rid, fid)]
        assert isinstance(doc["epoch"], int) and doc["epoch"] >= 1, doc
    assert events[("takeover", "able", orphan)]["previous_owner"] == "dead-replica"
    assert events[("resume", "able", orphan)]["diff"] == {"added": [], "unmatched": [], "version_changed": []}


def test_metrics_without_prometheus_client_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if not installed
    monkeypatch.delitem(sys.modules, "flowbaton.observability.metrics", raising=False)
    with pytest.raises(MissingDriver, match=r"pip install 'flowbaton\[metrics\]'"):
        metrics_class()


# ------------------------------------------------------------------- probes


def test_probes_follow_the_replica_lifecycle(local_replicas: LocalReplicas) -> None:
    coord = local_replicas.add(MemoryBackend(), replica_id="life")
    port = coord.serve_http(0, "127.0.0.1", metrics=False).port
    assert get(port, "/healthz")[0] == 200
    status, body = get(port, "/readyz")
    assert status == 503 and json.loads(body)["reason"] == "replica starting"
    coord.start()
    status, body = get(port, "/readyz")
    doc = json.loads(body)
    assert status == 200 and doc["ok"] is True and doc["replica_id"] == "life" and doc["reason"] == "ready"
    assert get(port, "/metrics")[0] == 404  # metrics=False
    coord.stop()
    assert get(port, "/readyz")[0] == 503
    status, body = get(port, "/healthz")
    assert status == 503 and "stopped" in json.loads(body)["reason"]


def test_liveness_fails_when_a_loop_stops_going_round(local_replicas: LocalReplicas) -> None:
    coord = local_replicas.add(MemoryBackend())
    coord.start()
    health = coord.observer.health
    assert health.liveness().ok
    health.stall_after = 0.0  # every round is now "too old": as if the claim loop hung
    until(lambda: not health.liveness().ok, 5, "liveness to fail")
    assert "loop" in health.liveness().reason


@pytest.mark.slow
@pytest.mark.parametrize("kind", backend_params(["redis", "zookeeper"]))
def test_readiness_flips_while_the_backend_is_away(
    kind: str, local_replicas: LocalReplicas, request: pytest.FixtureRequest
) -> None:
    server, url = _private_server(kind, request)
    coord = local_replicas.add(open_backend(url, lease=2.0), lease=2.0, owns_backend=True)
    port = coord.serve_http(0, "127.0.0.1").port
    coord.start()
    until(lambda: get(port, "/readyz")[0] == 200, 20, "ready")
    server.stop()
    _, body = until(lambda: (r := get(port, "/readyz"))[0] == 503 and r, 30, "not ready")
    reason = json.loads(body)["reason"]
    assert reason.startswith(("backend unavailable", "backend session")), reason
    assert get(port, "/healthz")[0] == 200  # an outage is no reason to restart the replica
    _start_again(kind, server)
    until(lambda: get(port, "/readyz")[0] == 200, 60, "ready again")
    errors = samples(get(port, "/metrics")[1])
    assert sum(v for (name, _), v in errors.items() if name == "flowbaton_backend_errors_total") >= (
        1 if kind == "redis" else 0)


def _private_server(kind: str, request: pytest.FixtureRequest) -> tuple[Any, str]:
    if kind == "redis":
        server = request.getfixturevalue("make_redis_server")()
        return server, server.url(namespace="obs", retry_deadline=1, socket_timeout=0.5, socket_connect_timeout=0.5)
    server = request.getfixturevalue("zookeeper_private_server")
    return server, server.url("obs") + "?retry_deadline=1&connect_timeout=5"


def _start_again(kind: str, server: Any) -> None:
    if kind == "redis":
        server.restart()
    else:
        server.start()
        server.wait_serving()


# --------------------------------------------------------------------- logs


def test_json_lines_carry_extra_fields_and_exceptions() -> None:
    record = logging.LogRecord("flowbaton.coordinator", logging.WARNING, __file__, 1, "took over %s", ("f1",),
                               None)
    record.__dict__.update(flow_id="f1", replica_id="r1", epoch=7, event="takeover", diff={"added": ["x"]})
    doc = json.loads(JSONFormatter().format(record))
    assert doc["message"] == "took over f1" and doc["level"] == "WARNING"
    assert (doc["flow_id"], doc["replica_id"], doc["epoch"], doc["event"]) == ("f1", "r1", 7, "takeover")
    assert doc["diff"] == {"added": ["x"]} and "args" not in doc
    try:
        raise ValueError("boom")
    except ValueError:
        record.exc_info = sys.exc_info()
    assert "ValueError: boom" in json.loads(JSONFormatter().format(record))["exception"]


def test_configure_logging_refuses_an_unknown_format() -> None:
    with pytest.raises(ValueError, match="json"):
        configure_logging("xml")


# ----------------------------------------------------------- the CLI replica


@pytest.mark.slow
def test_replica_process_serves_metrics_and_logs_json(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    port = free_port()
    proc_env = dict(env(), FLOWBATON_BACKEND=url, FLOWBATON_ALLOW="tests.", FLOWBATON_LOG_FORMAT="json",
                    FLOWBATON_METRICS_PORT=str(port))
    log_path = tmp_path / "replica.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flowbaton", "replica", "--replica-id", "json-1",
                                 "--lease", "2"], cwd=REPO, env=proc_env, stdout=out, stderr=subprocess.STDOUT)
    try:
        until(lambda: get(port, "/readyz")[0] == 200, 30, "the replica to be ready")
        store = open_backend(url)
        try:
            flow_id = submit_steps(Coordinator(store), tmp_path / "ledger", n=2)
            until(lambda: store.load_flow(flow_id).state in TERMINAL_FLOW_STATES, 30, "the flow to end")
        finally:
            store.close()
        until(lambda: value(samples(get(port, "/metrics")[1]), "flowbaton_tasks_total", outcome="success") == 2,
              10, "the tasks to be counted")
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    about = [doc for doc in lines if doc.get("flow_id") == flow_id]
    events = {doc.get("event"): doc for doc in about}
    assert {"claim", "release"} <= set(events), about
    for doc in (events["claim"], events["release"]):
        assert doc["replica_id"] == "json-1" and doc["epoch"] >= 1
