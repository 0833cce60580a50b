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
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from tenacity import stop_after_attempt

from flowbaton.backends import open_backend
from flowbaton.backends.errors import MissingDriver
from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.records import ClaimToken, FlowDetail
from flowbaton.backends.states import REVERTED, RUNNING, SUCCESS, TERMINAL_FLOW_STATES
from flowbaton.coordinator import Coordinator
from flowbaton.coordinator.lease import LeasedGate, LeaseKeeper
from flowbaton.coordinator.skiplist import SkipList
from flowbaton.coordinator.worker import FlowWorker, WorkerSettings
from flowbaton.engine import Claim, Flow, Linear, Retry, new_flow_detail, run_flow, task
from flowbaton.engine.events import TASK_OUTCOMES
from flowbaton.observability.logs import JSONFormatter, configure_logging
from flowbaton.observability.observer import ReplicaObserver, metrics_class
from flowbaton.testing.servers import free_port
from tests.backends import backend_params
from tests.coordinator.cluster import REPO, env
from tests.coordinator.inprocess import LocalReplicas, submit_steps
from tests.engine.helpers import claim_of
from tests.servers import until

if TYPE_CHECKING:
    from flowbaton.observability.metrics import ReplicaMetrics

REVERTING = "tests.test_observability:reverting"
SLOW = "tests.test_observability:slow"
SLOW_SECONDS = 0.2


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


@task(id="obs-slow")
def slow_step() -> None:
    time.sleep(SLOW_SECONDS)  # the work a duration must show


def slow() -> Flow:
    return Linear("obs-slow", slow_step)


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
        self.tasks: list[tuple[str, str, float]] = []
        self.flows: list[tuple[str, float]] = []

    def on_task_finished(self, flow_id: str, task_id: str, outcome: str, seconds: float) -> None:
        self.tasks.append((task_id, outcome, seconds))

    def on_flow_finished(self, flow_id: str, state: str, seconds: float) -> None:
        self.flows.append((state, seconds))

    def on_stuck(self, flow_id: str, task_id: str | None, timeout: float) -> None:
        pass

    def on_unstuck(self, flow_id: str, task_id: str | None) -> None:
        pass


def test_the_engine_reports_each_outcome_once_after_writing_it() -> None:
    store = MemoryBackend()
    detail = new_flow_detail(REVERTING)
    store.create_flow(detail)
    token = store.claim(detail.id, "me", 10.0)
    recorder = Recorder()
    report = run_flow(store, claim_of(token), replica_id="me", allow=["tests."], events=recorder)
    assert report.state == REVERTED
    assert [(tid, outcome) for tid, outcome, _ in recorder.tasks] == [
        ("obs-made", "success"), ("obs-flaky", "retry"), ("obs-flaky", "failure"), ("obs-made", "revert")]
    [(state, seconds)] = recorder.flows
    assert state == REVERTED and seconds == report.flow.updated_at - report.flow.created_at
    assert all(took <= seconds for _, _, took in recorder.tasks)  # every call happened within the flow's life


def test_durations_are_measured_on_the_records_own_timestamps() -> None:
    store = MemoryBackend()
    detail = new_flow_detail(SLOW)
    store.create_flow(detail)
    recorder = Recorder()
    report = run_flow(store, claim_of(store.claim(detail.id, "me", 10.0)), replica_id="me", allow=["tests."],
                      events=recorder)
    [(task_id, outcome, seconds)] = recorder.tasks
    stored = store.load_tasks(detail.id)[task_id]
    assert (task_id, outcome) == ("obs-slow", "success")
    assert stored.started_at is not None and stored.finished_at is not None
    assert seconds == stored.finished_at - stored.started_at and seconds >= SLOW_SECONDS
    [(_, flow_seconds)] = recorder.flows
    assert flow_seconds == report.flow.updated_at - report.flow.created_at and flow_seconds >= seconds


# --------------------------------------------------- claims and takeovers


def work(store: MemoryBackend, token: ClaimToken) -> ReplicaMetrics:
    """Run ``token``'s flow the way a replica's worker does; its metrics."""
    observer = ReplicaObserver()
    metrics = observer.metrics = metrics_class()(token.owner, "test")
    claim = Claim(token, LeasedGate(), time.monotonic())
    keeper = LeaseKeeper(store, token.owner, 10.0)
    keeper.track(claim)  # renewed by nobody: the run is over long before the lease
    FlowWorker(store, keeper, SkipList(), WorkerSettings(token.owner, ["tests."]), run_flow, claim, observer)()
    return metrics


def claim_events(caplog: pytest.LogCaptureFixture, flow_id: str) -> list[dict[str, Any]]:
    docs = [json.loads(JSONFormatter().format(r)) for r in caplog.records]
    return [d for d in docs if d.get("flow_id") == flow_id and d.get("event") in ("claim", "takeover")]


def test_a_claim_of_a_flow_nobody_held_is_no_takeover(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flowbaton")
    store = MemoryBackend()
    detail = new_flow_detail(REVERTING)
    store.create_flow(detail)
    found = samples(work(store, store.claim(detail.id, "me", 10.0)).exposition()[0].decode())
    assert value(found, "flowbaton_flows_claimed_total") == 1 and value(found, "flowbaton_takeovers_total") == 0
    [claimed] = claim_events(caplog, detail.id)
    assert claimed["event"] == "claim" and claimed["message"].startswith(f"claimed flow {detail.id} [replica me")


def held_by_old() -> tuple[MemoryBackend, FlowDetail]:
    """A store with one flow that replica "old" claimed and named itself
    the owner of, RUNNING, never handed back."""
    store = MemoryBackend()
    detail = new_flow_detail(REVERTING)
    store.create_flow(detail)
    old = store.claim(detail.id, "old", 10.0)
    detail.state, detail.owner = RUNNING, "old"
    store.save_flow(old, detail)
    return store, detail


def test_a_worker_names_the_previous_owner_of_a_flow_it_takes_over(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flowbaton")
    store, detail = held_by_old()  # then "old" died without handing the flow back
    found = samples(work(store, store.claim(detail.id, "new", 10.0, force=True)).exposition()[0].decode())
    assert value(found, "flowbaton_flows_claimed_total") == 1 and value(found, "flowbaton_takeovers_total") == 1
    [took] = claim_events(caplog, detail.id)
    assert (took["event"], took["previous_owner"]) == ("takeover", "old")
    assert took["message"].startswith(f"took over flow {detail.id} from old, which never released it [replica new")


def test_a_claim_whose_flow_record_cannot_be_read_is_a_plain_claim(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="flowbaton")
    store, detail = held_by_old()
    store.overwrite_record(detail.id, '{"id": "' + detail.id + '"}')  # unreadable: whether "old" held it is unknown
    found = samples(work(store, store.claim(detail.id, "new", 10.0, force=True)).exposition()[0].decode())
    assert value(found, "flowbaton_flows_claimed_total") == 1 and value(found, "flowbaton_takeovers_total") == 0
    [claimed] = claim_events(caplog, detail.id)  # then the unreadable record is held (event "hold")
    assert claimed["event"] == "claim"


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
    labels = frozenset({("replica_id", "obs-1"), ("version", _version()), ("build", "")})
    assert ("flowbaton_replica_info", labels) in found
    steps = "tests.coord_flows:steps"  # the factory label: which kind of flow succeeds or fails
    assert value(found, "flowbaton_factory_tasks_total", factory=steps, outcome="success") == 3
    assert value(found, "flowbaton_factory_tasks_total", factory=REVERTING, outcome="revert") == 1
    assert value(found, "flowbaton_factory_flows_total", factory=steps, state="SUCCESS") == 1
    assert value(found, "flowbaton_factory_flows_total", factory=REVERTING, state="REVERTED") == 1
    assert value(found, "flowbaton_backlog_flows") == 0


def test_fleet_gauges_read_the_backend_at_most_every_ttl(local_replicas: LocalReplicas, tmp_path: Path) -> None:
    store = MemoryBackend()
    coord = local_replicas.add(store)  # not started: what it submits waits in the backlog
    asked: list[int] = []
    metrics = coord.enable_metrics(stranded=lambda: asked.append(1) or 7)
    submit_steps(coord, tmp_path / "ledger")
    submit_steps(coord, tmp_path / "ledger")
    found = samples(metrics.exposition()[0].decode())
    assert value(found, "flowbaton_backlog_flows") == 2 and value(found, "flowbaton_stranded_flows") == 7
    submit_steps(coord, tmp_path / "ledger")
    found = samples(metrics.exposition()[0].decode())  # within the TTL: the value read before
    assert value(found, "flowbaton_backlog_flows") == 2 and asked == [1]


def test_cached_reads_nan_while_the_read_fails() -> None:
    from flowbaton.observability.metrics import Cached

    now = [0.0]
    answers: list[object] = [3, RuntimeError("backend away"), 5]

    def read() -> float:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return float(answer)  # type: ignore[arg-type]

    cached = Cached(read, ttl=10.0, clock=lambda: now[0])
    assert cached() == 3.0
    now[0] = 10.0
    assert cached() != cached()  # NaN: unknown, and the scrape still works
    now[0] = 20.0
    assert cached() == 5.0


def test_readiness_needs_a_recent_success() -> None:
    from flowbaton.observability.health import ReplicaHealth

    now = [100.0]
    health = ReplicaHealth(quiet_after=2.0, clock=lambda: now[0])
    health.started()
    assert health.readiness().ok
    now[0] = 101.5
    health.backend_ok()
    now[0] = 103.4
    assert health.readiness().ok
    now[0] = 103.6  # 2.1 s since the last success: a call hangs in its driver's retries
    verdict = health.readiness()
    assert not verdict.ok and verdict.reason.startswith("no backend call succeeded for 2.1s")
    health.backend_ok()
    assert health.readiness().ok


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
    """Within the lease of the outage's start (deploy/README.md says so),
    although the Redis driver keeps retrying each call for its 6 s retry
    deadline: no call succeeded for two thirds of the lease is "not ready" too."""
    server, url = _private_server(kind, request)
    coord = local_replicas.add(open_backend(url, lease=2.0), lease=2.0, owns_backend=True)
    port = coord.serve_http(0, "127.0.0.1").port
    coord.start()
    until(lambda: get(port, "/readyz")[0] == 200, 20, "ready")
    server.stop()
    # the bound is the lease (2 s); the deadline adds honest slack for a loaded machine, and stays
    # under the 6 s a failed Redis call alone would take
    _, body = until(lambda: (r := get(port, "/readyz"))[0] == 503 and r, 2.0 + 2.5, "not ready within the lease")
    reason = json.loads(body)["reason"]
    assert reason.startswith(("backend unavailable", "backend session", "no backend call succeeded")), reason
    assert get(port, "/healthz")[0] == 200  # an outage is no reason to restart the replica
    if kind == "redis":  # a call that gave up is counted
        until(lambda: _errors(port) >= 1, 20, "a backend error to be counted")
    _start_again(kind, server)
    until(lambda: get(port, "/readyz")[0] == 200, 60, "ready again")
    coord.close()  # while the server runs: its fixture ends first, and a close then waits out retries


def _errors(port: int) -> float:
    found = samples(get(port, "/metrics")[1])
    return sum(v for (name, _), v in found.items() if name == "flowbaton_backend_errors_total")


def _private_server(kind: str, request: pytest.FixtureRequest) -> tuple[Any, str]:
    if kind == "redis":
        server = request.getfixturevalue("make_redis_server")()
        return server, server.url(namespace="obs", retry_deadline=6, socket_timeout=0.5, socket_connect_timeout=0.5)
    server = request.getfixturevalue("zookeeper_private_server")
    return server, server.url("obs") + "?connect_timeout=5"


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
