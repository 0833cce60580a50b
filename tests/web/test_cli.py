"""``flowbaton ui`` and ``flowbaton replica --ui`` as an operator runs them:
real processes on real ports, answering real HTTP requests."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest

from flowbaton.backends.base import Backend
from flowbaton.cli.main import build_parser
from flowbaton.cli.ui import NEEDS_JINJA2, UI_TOKEN_ENV
from flowbaton.testing.servers import free_port
from tests.coordinator.cluster import REPO, env
from tests.coordinator.ops_helpers import bad_input, run_cli, store
from tests.servers import until

from .conftest import Fetched, fetch

_NO_JINJA2 = (
    "import sys\n"
    "sys.modules['jinja2'] = None  # as if it were not installed\n"
    "from flowbaton.cli.main import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'flows.db'}"


@contextmanager
def running(argv: list[str], tmp_path: Path, stop: int = signal.SIGINT
            ) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """``python -m flowbaton ARGV`` in the background, its stderr in a file;
    then ``stop`` sent to it (a replica's graceful stop is not under test here)."""
    log = tmp_path / f"{argv[2] if len(argv) > 2 else 'run'}.stderr"
    environment = {k: v for k, v in env().items() if k != UI_TOKEN_ENV}
    with log.open("wb") as err:
        proc = subprocess.Popen([sys.executable, "-m", "flowbaton", *argv], cwd=REPO, stdout=subprocess.DEVNULL,
                                stderr=err, env=environment)
    try:
        yield proc, log
    finally:
        if proc.poll() is None:
            proc.send_signal(stop)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def answered(url: str, proc: subprocess.Popen[bytes], log: Path) -> Fetched:
    """The first answer of the server starting in ``proc``."""
    def attempt() -> Fetched | None:
        assert proc.poll() is None, f"exited {proc.returncode}: {log.read_text()}"
        try:
            return fetch(url, timeout=2.0)
        except OSError:  # not listening yet
            return None

    return until(attempt, 20.0, f"an answer from {url}")


def test_without_jinja2_the_ui_says_what_to_install(tmp_path: Path, sqlite_backend: Backend) -> None:
    for argv in (["ui"], ["replica", "--allow", "tests.", "--metrics-port", "0", "--ui"]):
        done = subprocess.run([sys.executable, "-c", _NO_JINJA2, "--backend", _url(tmp_path), *argv], cwd=REPO,
                              env=env(), capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, done.stderr
        assert done.stderr.splitlines() == [f"flowbaton: {NEEDS_JINJA2}"]
        assert "pip install 'flowbaton[ui]'" in done.stderr


def test_replica_ui_needs_the_metrics_port(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_cli(capsys, "memory://", "replica", "--allow", "tests.", "--ui")
    assert bad_input(out) and "--metrics-port" in out.stderr


def test_a_port_in_use_is_one_line(capsys: pytest.CaptureFixture[str], tmp_path: Path,
                                   sqlite_backend: Backend) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        out = run_cli(capsys, _url(tmp_path), "ui", "--port", str(taken.getsockname()[1]))
    assert bad_input(out) and "cannot serve on 127.0.0.1" in out.stderr


def test_flowbaton_ui_serves_the_pages(tmp_path: Path, sqlite_backend: Backend) -> None:
    flow_id = store(sqlite_backend, "SUCCESS")
    port = free_port()
    with running(["--backend", _url(tmp_path), "ui", "--port", str(port)], tmp_path) as (proc, log):
        home = answered(f"http://127.0.0.1:{port}/", proc, log)
        assert home.status == 200 and "Replicas" in home.body
        assert home.headers["Content-Security-Policy"].startswith("default-src 'self'")
        page = fetch(f"http://127.0.0.1:{port}/flows/{flow_id}")
        assert page.status == 200 and flow_id in page.body and 'method="post"' not in page.body
        assert fetch(f"http://localhost:{port}/flows").status == 200
        assert fetch(f"http://127.0.0.1:{port}/", headers={"Host": f"rebound.example:{port}"}).status == 403
        assert fetch(f"http://127.0.0.1:{port}/flows/{flow_id}/cancel", data=b"").status == 405
        assert f"serving http://127.0.0.1:{port}/ (read-only)" in log.read_text()
    assert proc.returncode == 130  # Ctrl-C


def test_flowbaton_ui_prints_a_login_link_that_lets_an_operator_act(tmp_path: Path, sqlite_backend: Backend) -> None:
    flow_id = store(sqlite_backend, "PENDING")
    port = free_port()
    origin = f"http://127.0.0.1:{port}"
    with running(["--backend", _url(tmp_path), "ui", "--port", str(port), "--allow-actions"], tmp_path) as (proc, log):
        answered(f"{origin}/", proc, log)
        links = re.findall(r"open (http://\S+/login\?token=\S+)", log.read_text())
        assert len(links) == 1, log.read_text()
        login = fetch(links[0])
        assert login.status == 303
        cookie = login.headers["Set-Cookie"].split(";", 1)[0]
        page = fetch(f"{origin}/flows/{flow_id}", headers={"Cookie": cookie})
        csrf = re.findall(r'name="csrf" value="([^"]+)"', page.body)[0]
        done = fetch(f"{origin}/flows/{flow_id}/cancel", data=f"csrf={quote(csrf)}".encode(),
                     headers={"Cookie": cookie, "Origin": origin})
        assert done.status == 303 and sqlite_backend.load_flow(flow_id).state == "CANCELLED"


def test_a_token_file_is_not_printed(tmp_path: Path, sqlite_backend: Backend) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("from-a-file-0123456789\n")
    port = free_port()
    argv = ["--backend", _url(tmp_path), "ui", "--port", str(port), "--allow-actions", "--token-file",
            str(token_file)]
    with running(argv, tmp_path) as (proc, log):
        answered(f"http://127.0.0.1:{port}/", proc, log)
        assert "from-a-file" not in log.read_text() and "log in at" in log.read_text()
        assert fetch(f"http://127.0.0.1:{port}/login?token=from-a-file-0123456789").status == 303
        assert fetch(f"http://127.0.0.1:{port}/login?token=guess").status == 403


def test_a_replica_serves_the_read_only_pages_under_ui(tmp_path: Path, sqlite_backend: Backend) -> None:
    flow_id = store(sqlite_backend, "SUCCESS")
    port = free_port()
    argv = ["--backend", _url(tmp_path), "replica", "--allow", "tests.", "--replica-id", "r-ui",
            "--metrics-port", str(port), "--metrics-host", "127.0.0.1", "--ui"]
    with running(argv, tmp_path, stop=signal.SIGKILL) as (proc, log):
        base = f"http://127.0.0.1:{port}"
        until(lambda: 'data-replica="r-ui"' in answered(f"{base}/ui/", proc, log).body, 20.0,
              "the replica on its own page")
        assert fetch(f"{base}/healthz").status == 200  # the probes still answer
        page = fetch(f"{base}/ui/flows/{flow_id}")
        assert page.status == 200 and 'href="/ui/static/style.css"' in page.body and 'method="post"' not in page.body
        assert fetch(f"{base}/ui").headers["Location"] == "/ui/"
        assert fetch(f"{base}/ui/flows/{flow_id}/cancel", data=b"csrf=x").status == 405
        assert fetch(f"{base}/ui/nothing").status == 404
    assert sqlite_backend.load_flow(flow_id).state == "SUCCESS"


def test_the_environment_turns_the_replica_ui_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWBATON_UI", "1")
    assert build_parser().parse_args(["replica", "--allow", "tests."]).ui is True
    monkeypatch.setenv("FLOWBATON_UI", "0")
    assert build_parser().parse_args(["replica", "--allow", "tests."]).ui is False
