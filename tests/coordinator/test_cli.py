"""The CLI as users run it (``python -m flowbaton``): JSON output parsed for
each command, readable tables, and exit status 2 on bad input."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from flowbaton.cli.common import CLI_PATIENCE
from tests.servers import until

from .cluster import REPO, Cluster, env
from .ops_helpers import Out, bad_input


def cli(url: str | None, *argv: str, timeout: float = 60) -> Out:
    backend = ["--backend", url] if url else []
    done = subprocess.run([sys.executable, "-m", "flowbaton", *backend, *argv], cwd=REPO, env=env(),
                          capture_output=True, text=True, timeout=timeout)
    return Out(done.returncode, done.stdout, done.stderr)


FLOW_KEYS = {"id", "name", "state", "factory", "owner", "created_at", "updated_at"}
CLAIM_KEYS = {"flow_id", "owner", "token", "epoch", "claimed_at", "expires_at"}
SHOW_KEYS = {"id", "name", "state", "factory", "args", "kwargs", "inputs", "owner", "tasks", "unmatched"}
TASK_KEYS = {"id", "state", "version", "attempts", "result", "failure", "owner", "started_at", "finished_at", "epoch",
             "history"}


@pytest.mark.slow
def test_json_output_of_every_command(cluster: Cluster) -> None:
    url = cluster.url
    hold = cluster.ledger.with_name("hold")  # the first step waits while it exists
    hold.touch()
    inputs = json.dumps({"ledger": str(cluster.ledger), "pause": 0.5, "hold": str(hold)})
    sub = cli(url, "submit", "tests.coord_flows:steps", "--kwargs", '{"n": 3}', "--inputs", inputs, "--name", "cli")
    assert sub.code == 0, sub.stderr
    flow_id = sub.stdout.strip()
    [row] = cli(url, "flows", "--json").json()
    assert set(row) >= FLOW_KEYS and (row["id"], row["name"], row["state"], row["owner"]) == (
        flow_id, "cli", "PENDING", None)

    cluster.spawn("r1")
    until(lambda: cluster.backend.current_claim(flow_id), 20, "the claim")
    [claim] = cli(url, "claims", "--json").json()
    assert set(claim) >= CLAIM_KEYS and (claim["flow_id"], claim["owner"]) == (flow_id, "r1")
    assert claim["token"].startswith("r1#") and claim["token"].endswith(f"@{claim['epoch']}")
    running = cli(url, "flows", "--json").json()[0]
    assert (running["state"], running["owner"]) == ("RUNNING", "r1")
    assert "r1" in cli(url, "claims").stdout

    hold.unlink()
    cluster.wait_done(flow_id)
    doc = cli(url, "show", flow_id, "--json").json()
    assert set(doc) >= SHOW_KEYS and doc["state"] == "SUCCESS" and doc["kwargs"] == {"n": 3}
    assert [t["id"] for t in doc["tasks"]] == ["s0", "s1", "s2"]
    assert all(set(t) == TASK_KEYS and t["owner"] == "r1" and t["attempts"] == 1 for t in doc["tasks"])
    assert doc["unmatched"] == [] and doc["owner"] is None
    assert cli(url, "claims", "--json").json() == []
    assert [f["id"] for f in cli(url, "flows", "--state", "success", "--json").json()] == [flow_id]
    assert cli(url, "flows", "--state", "PENDING", "--json").json() == []
    table = cli(url, "show", flow_id).stdout
    assert "SUCCESS" in table and "s2" in table


@pytest.mark.slow
def test_submit_wait_exit_status(cluster: Cluster) -> None:
    cluster.spawn("r1")
    ok = cli(cluster.url, "submit", "tests.coord_flows:steps", "--inputs",
             json.dumps({"ledger": str(cluster.ledger)}), "--wait", "--timeout", "30")
    assert ok.code == 0 and "SUCCESS" in ok.stderr
    failed = cli(cluster.url, "submit", "tests.coord_flows:fails", "--wait", "--timeout", "30")
    assert failed.code == 1 and "REVERTED" in failed.stderr and len(failed.stdout.split()) == 1


def test_bad_input_is_one_line_and_exit_2(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    cases = [
        (url, "show", "no-such-flow"),
        (url, "submit", "tests.coord_flows:steps", "--kwargs", "{n: 3"),
        (url, "submit", "tests.coord_flows:steps", "--args", '{"n": 3}'),
        (url, "submit", "tests.coord_flows:nothing_here"),
        (url, "submit", "no_such_module:factory"),
        (url, "flows", "--state", "SLEEPY"),
        ("nosuch://host/x", "flows"),
        (f"sqlite:///{tmp_path / 'missing' / 'dir' / 'flows.db'}", "flows"),
        (f"sqlite:///{tmp_path / 'flows.db'}?busy_timeout=soon", "claims"),
        (url, "replica"),  # --allow is required
        ("redis://127.0.0.1:1/0?retry_deadline=1", "claims"),  # unreachable: retries, then one line
    ]
    for argv in cases:
        result = cli(*argv)
        assert bad_input(result), (argv, result)


@pytest.mark.slow
def test_replica_stops_gracefully_on_sigint(cluster: Cluster) -> None:
    replica = cluster.spawn("r1")
    cluster.wait_registered("r1")
    replica.signal(signal.SIGINT)
    assert replica.proc.wait(timeout=10) == 0
    assert cluster.backend.list_replicas() == []


def test_version_is_printed_without_a_backend(tmp_path: Path) -> None:
    """``flowbaton --version`` says which release runs, opening nothing (no
    ``./flowbaton.db`` appears in the working directory)."""
    import flowbaton

    done = subprocess.run([sys.executable, "-m", "flowbaton", "--version"], capture_output=True, text=True,
                          cwd=tmp_path, env=env(), timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, f"flowbaton {flowbaton.__version__}")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("argv", [["flows"], ["claims"], ["check"], ["show", "abcdef"]])
def test_without_a_backend_an_operator_command_creates_no_store(tmp_path: Path, argv: list[str]) -> None:
    """With neither --backend nor FLOWBATON_BACKEND, a command that reads
    stored flows refuses (exit 2, one line) instead of creating an empty
    ./flowbaton.db and reporting on it."""
    environment = {k: v for k, v in env().items() if k != "FLOWBATON_BACKEND"}
    done = subprocess.run([sys.executable, "-m", "flowbaton", *argv], capture_output=True, text=True,
                          cwd=tmp_path, env=environment, timeout=60)
    assert done.returncode == 2 and "FLOWBATON_BACKEND" in done.stderr and len(done.stderr.splitlines()) == 1
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_backend_is_one_line_without_driver_chatter() -> None:
    """kazoo's per-attempt "Connection dropped" lines are not shown before
    the command's own error; a refused Redis and a ZooKeeper without a
    session are reported after the CLI's patience (``CLI_PATIENCE``, so the
    line comes within 2 s), not after a replica's 10 s of retries."""
    zk = cli("zookeeper://127.0.0.1:1/nowhere", "flows")
    assert bad_input(zk) and "Connection dropped" not in zk.stderr, zk.stderr
    assert f"within {CLI_PATIENCE:g}s" in zk.stderr, zk.stderr
    redis = cli("redis://127.0.0.1:1/0", "claims")
    assert bad_input(redis) and f"unavailable for {CLI_PATIENCE:g}s" in redis.stderr, redis.stderr
