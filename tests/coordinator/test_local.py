"""``flowbaton.run``: one flow here and now, claimed and renewed like any other."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

import flowbaton
from flowbaton.backends import open_backend
from flowbaton.backends.errors import BackendUnavailable, ClaimHeld, ClaimLost
from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.records import ClaimToken
from flowbaton.backends.states import REVERTED, SUCCESS
from flowbaton.engine.errors import FactoryError, FactoryNotAllowed
from tests import coord_flows
from tests.servers import until

from .cluster import REPO, env, read_runs

STEPS = "tests.coord_flows:steps"


def test_run_creates_runs_and_releases(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    ledger = tmp_path / "ledger"
    report = flowbaton.run(STEPS, kwargs={"n": 2}, inputs={"ledger": str(ledger)}, backend=url, name="local")
    assert report.state == SUCCESS and report.results == {"s0": 1, "s1": 1} and report.name == "local"
    with open_backend(url) as backend:
        assert backend.list_claims() == []
        assert backend.load_flow(report.id).owner is None


def test_run_takes_the_callable_and_a_backend_object(tmp_path: Path) -> None:
    with open_backend("memory://") as backend:
        report = flowbaton.run(coord_flows.steps, kwargs={"n": 1}, inputs={"ledger": str(tmp_path / "l")},
                               backend=backend, flow_id="my-flow")
        assert (report.id, report.state) == ("my-flow", SUCCESS)
        again = flowbaton.run(coord_flows.steps, backend=backend, flow_id="my-flow")  # done: just the report
        assert again.state == SUCCESS and (tmp_path / "l").read_text().count("\n") == 1


def test_a_failing_flow_is_reverted_and_reported(tmp_path: Path) -> None:
    report = flowbaton.run("tests.coord_flows:fails", backend=f"sqlite:///{tmp_path / 'f.db'}")
    assert report.state == REVERTED and "always fails" in (report.reason or "")


def test_resume_needs_the_same_factory(tmp_path: Path) -> None:
    with open_backend("memory://") as backend:
        flowbaton.run(STEPS, inputs={"ledger": str(tmp_path / "l")}, backend=backend, flow_id="f1")
        with pytest.raises(FactoryError, match=r"was created by factory 'tests\.coord_flows:steps'"):
            flowbaton.run("tests.coord_flows:poison", backend=backend, flow_id="f1")


def test_allow_is_checked_before_anything_runs(tmp_path: Path) -> None:
    with open_backend("memory://") as backend:
        with pytest.raises(FactoryNotAllowed):
            flowbaton.run(STEPS, inputs={"ledger": str(tmp_path / "l")}, backend=backend, flow_id="f1",
                          allow=["elsewhere."])
        assert backend.list_claims() == [] and not (tmp_path / "l").exists()


def test_a_second_run_is_refused_while_the_lease_lives_then_resumes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    ledger = tmp_path / "ledger"
    code = (f"import flowbaton; flowbaton.run({STEPS!r}, kwargs={{'n': 4}}, "
            f"inputs={{'ledger': {str(ledger)!r}, 'pause': 0.5}}, backend={url!r}, flow_id='f1', lease=1.5)")
    first = subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env())
    try:
        until(lambda: ledger.exists() and ledger.read_text().count("\n") >= 2, 20, "s1 to start")
        with pytest.raises(ClaimHeld, match="being run elsewhere"):
            flowbaton.run(STEPS, backend=url, flow_id="f1")
        first.send_signal(signal.SIGKILL)
        first.wait()
        report = until(lambda: _try_resume(url), 10, "the lease to run out")
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert report.state == SUCCESS
    runs = [run.task for run in read_runs(ledger)]
    assert runs.count("s0") == 1 and runs.count("s1") == 2 and runs.count("s3") == 1


def _try_resume(url: str) -> flowbaton.FlowReport | None:
    try:
        return flowbaton.run(STEPS, backend=url, flow_id="f1")
    except ClaimHeld:
        return None


class _RenewalsFail(MemoryBackend):
    """Renewals never get through (nor releases, if ``releases_fail``);
    every release is recorded."""

    def __init__(self, renewals_fail: bool = True, releases_fail: bool = False) -> None:
        super().__init__()
        self.renewals_fail, self.releases_fail = renewals_fail, releases_fail
        self.released: list[ClaimToken] = []

    def renew(self, token: ClaimToken, lease: float) -> None:
        if self.renewals_fail:
            raise BackendUnavailable("renewals are not getting through")
        super().renew(token, lease)

    def release(self, token: ClaimToken) -> None:
        self.released.append(token)
        if self.releases_fail:
            raise BackendUnavailable("releases are not getting through")
        super().release(token)


def test_a_claim_given_up_mid_run_is_still_released(tmp_path: Path) -> None:
    """The run gives the claim up when renewals fail; it still sends the
    fenced release, which frees a claim that outlives the giving up (on
    ZooKeeper it lives as long as the session: docs/chaos-bugs.md #1)."""
    backend = _RenewalsFail()
    with pytest.raises(ClaimLost):
        flowbaton.run(STEPS, kwargs={"n": 2}, inputs={"ledger": str(tmp_path / "l"), "pause": 1.5},
                      backend=backend, flow_id="f1", lease=0.6)
    assert [token.flow_id for token in backend.released] == ["f1"]


def test_a_release_that_fails_after_a_run_that_kept_its_claim_is_reported(tmp_path: Path) -> None:
    """The flow is done but its claim may still be held: the caller hears of
    it at once (one attempt) instead of a report that hides it."""
    backend = _RenewalsFail(renewals_fail=False, releases_fail=True)
    with pytest.raises(BackendUnavailable, match="releases are not getting through"):
        flowbaton.run(STEPS, kwargs={"n": 1}, inputs={"ledger": str(tmp_path / "l")}, backend=backend, flow_id="f1")
    assert [token.flow_id for token in backend.released] == ["f1"]


def test_a_release_that_fails_after_giving_the_claim_up_is_left_to_expire(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    backend = _RenewalsFail(releases_fail=True)
    with pytest.raises(ClaimLost):  # the news that matters, not the failed release
        flowbaton.run(STEPS, kwargs={"n": 2}, inputs={"ledger": str(tmp_path / "l"), "pause": 1.5},
                      backend=backend, flow_id="f1", lease=0.6)
    assert [token.flow_id for token in backend.released] == ["f1"]
    assert "flow f1: release failed, the lease will expire" in caplog.text
