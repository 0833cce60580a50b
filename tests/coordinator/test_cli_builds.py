"""``--build`` on the commands that run code: ``replica`` hands it to
``connect``, ``submit`` leaves it on the flow; the environment fills it in,
an empty value unsets it, a version PEP 440 cannot order is a usage error."""

from __future__ import annotations

from typing import Any

import pytest

from flowbaton.backends.base import Backend
from flowbaton.cli.main import main
from flowbaton.coordinator.replica import AUTO_BUILD
from flowbaton.engine.meta import FlowMeta

from .ops_helpers import STEPS, bad_input, run_cli


class _Connected(Exception):
    """Raised by the stand-in ``connect``: the replica got this far."""


def _replica_build(monkeypatch: pytest.MonkeyPatch, *argv: str) -> Any:
    """The ``build`` that ``flowbaton replica ARGV`` passes to ``connect``."""
    seen: dict[str, Any] = {}

    def connect(url: object, **kwargs: Any) -> Any:
        seen.update(kwargs)
        raise _Connected

    monkeypatch.setattr("flowbaton.cli.replica.connect", connect)
    monkeypatch.setattr("flowbaton.cli.replica.configure_logging", lambda *a: None)
    with pytest.raises(_Connected):
        main(["--backend", "memory://", "replica", "--allow", "tests.", *argv])
    return seen["build"]


def test_the_replica_passes_its_build_to_connect(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWBATON_BUILD", raising=False)
    assert _replica_build(monkeypatch) == AUTO_BUILD  # connect's default
    assert _replica_build(monkeypatch, "--build", "2.1.0rc1") == "2.1.0rc1"
    assert _replica_build(monkeypatch, "--build", "") is None  # unset on purpose
    monkeypatch.setenv("FLOWBATON_BUILD", "3.0")
    assert _replica_build(monkeypatch) == "3.0"
    assert _replica_build(monkeypatch, "--build", "3.1") == "3.1"  # the flag wins
    monkeypatch.setenv("FLOWBATON_BUILD", "")
    assert _replica_build(monkeypatch) is None


@pytest.mark.parametrize("argv", [
    ("replica", "--allow", "tests.", "--build", "two"),
    ("replica", "--allow", "tests.", "--build", "2.1-final!"),
    ("submit", STEPS, "--build", "<script>"),
])
def test_a_build_that_is_not_a_version_is_a_usage_error(
    argv: tuple[str, ...], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWBATON_BUILD", raising=False)
    out = run_cli(capsys, "memory://", *argv)
    assert bad_input(out) and "argument --build:" in out.stderr and "not a PEP 440 version" in out.stderr


def test_a_bad_build_in_the_environment_is_a_usage_error(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FLOWBATON_BUILD", "latest")
    out = run_cli(capsys, "memory://", "replica", "--allow", "tests.")
    assert bad_input(out) and "'latest' is not a PEP 440 version" in out.stderr


def _submitted_build(backend: Backend, capsys: pytest.CaptureFixture[str], *argv: str) -> str | None:
    out = run_cli(capsys, backend, "submit", STEPS, "--inputs", '{"ledger": "/nonexistent"}', *argv)
    assert out.code == 0, out
    return FlowMeta(backend.load_flow(out.stdout.strip()).meta).build


def test_submit_leaves_the_submitters_build_on_the_flow(
    backend: Backend, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOWBATON_BUILD", raising=False)
    assert _submitted_build(backend, capsys, "--build", "2.1") == "2.1"
    assert _submitted_build(backend, capsys) is None  # auto, tests. is no distribution: as before builds
    monkeypatch.setenv("FLOWBATON_BUILD", "2.2")
    assert _submitted_build(backend, capsys) == "2.2"
    assert _submitted_build(backend, capsys, "--build", "") is None
    monkeypatch.setenv("FLOWBATON_BUILD", "")
    assert _submitted_build(backend, capsys) is None


def test_submit_auto_is_the_distribution_of_the_allowed_factory(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from flowbaton import __version__
    from flowbaton.backends.memory import MemoryBackend

    monkeypatch.delenv("FLOWBATON_BUILD", raising=False)
    backend = MemoryBackend()
    out = run_cli(capsys, backend, "submit", "flowbaton.demo.flows:provision", "--allow", "flowbaton.demo",
                  "--inputs", '{"ledger": "/nonexistent"}')
    assert out.code == 0, out
    assert FlowMeta(backend.load_flow(out.stdout.strip()).meta).build == __version__
