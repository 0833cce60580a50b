"""docs/security.md, "What the allow-list guarantees": a stored factory name reaches only what the
service chose.

An attacker with write access to the store plants flow records whose
factory names walk out of the allowed module (through an imported module,
a re-exported function, a private helper, an instance) with a shell command
as argument. Replicas, ``flowbaton.run``, ``submit`` and ``plan`` must refuse
them before calling anything: the marker file the command would create
never appears, the flow is declined with a reason naming why, and other
flows keep running.
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import flowbaton
from flowbaton.backends import open_backend
from flowbaton.backends.base import Backend
from flowbaton.backends.records import FlowDetail
from flowbaton.backends.states import FAILURE, PENDING, SUCCESS
from flowbaton.engine import factory_name, load_factory, new_flow_detail
from flowbaton.engine.errors import FactoryError, FactoryNotAllowed
from tests.coordinator.inprocess import LocalReplicas, submit_steps
from tests.coordinator.ops_helpers import bad_input, run_cli
from tests.security import hostile_service, registered_service
from tests.servers import until

pytestmark = pytest.mark.security

M = "tests.security.hostile_service"
R = "tests.security.registered_service"
PROBE = "tests.security.import_probe"  # imported by nothing: proves plan imported nothing

# Names an attacker writes into a record under an allowed module, and what
# the refusal says. The first is the exact reproduction of item 1.
HOSTILE = [
    (f"{M}:logging.os.system", "module logging, not a class defined in"),
    (f"{M}:os.system", "module os, not a class defined in"),
    (f"{M}:system", "defined in posix, not a function or class defined in"),
    (f"{M}:_private_build", "'_private_build' starts with '_'"),
    (f"{M}:build.__globals__", "'__globals__' starts with '_'"),
    (f"{M}:shell.run", "is Shell, not a class defined in"),
    (f"{M}:log.info", "is Logger, not a class defined in"),
    (f"{M}:Builders.method", "function in class Builders, not a classmethod or staticmethod"),
    (f"{M}:config", "is dict, not a function or class"),
    ("tests.security.__init__:hostile_service", "'__init__' starts with '_'"),
]


@pytest.fixture
def marker(tmp_path: Path) -> Iterator[Path]:
    """Where a hostile command would leave its trace; it must never exist."""
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "a hostile factory name ran its command"


def touch(path: Path) -> list[str]:
    """The stored args of a hostile record: a shell command for os.system."""
    return [f"touch {path}"]


def plant(backend: Backend, factory: str, args: list[str], state: str = PENDING) -> str:
    """Write a flow record the way an attacker with write access would: no
    validation, straight through the backend."""
    now = time.time()
    flow_id = f"evil-{uuid.uuid4().hex[:12]}"
    backend.create_flow(FlowDetail(id=flow_id, name="evil", factory=factory, args=list(args),
                                   state=state, created_at=now, updated_at=now))
    return flow_id


# ------------------------------------------------------------- the rule


@pytest.mark.parametrize(("name", "reason"), HOSTILE)
def test_hostile_names_are_refused_before_anything_is_called(name: str, reason: str, marker: Path) -> None:
    with pytest.raises(FactoryError, match=reason):
        load_factory(name, ["tests."])
    with pytest.raises(FactoryError, match=reason):  # nor can it be submitted
        new_flow_detail(name, args=touch(marker))


@pytest.mark.parametrize(
    "name", [f"{M}:build", f"{M}:Builders.create", f"{M}:Builders.static", f"{M}:callable_builder"]
)
def test_functions_classmethods_and_local_callables_resolve(name: str) -> None:
    assert load_factory(name, ["tests."])().name == "hostile-good"
    assert new_flow_detail(name).factory == name


def test_a_reexported_function_is_refused_even_if_its_home_module_is_allowed(marker: Path) -> None:
    """``from os import system`` in the service: allowing ``os`` (or posix)
    does not make ``svc:system`` a name for it."""
    with pytest.raises(FactoryError, match="defined in posix"):
        load_factory(f"{M}:system", ["tests.", "os", "posix"])


def test_the_allow_list_is_checked_before_the_module_is_imported() -> None:
    with pytest.raises(FactoryNotAllowed, match="allowed prefixes"):
        load_factory(f"{PROBE}:build", ["elsewhere."])
    assert PROBE not in sys.modules


def test_an_exact_name_in_allow_is_a_closed_list() -> None:
    closed = [f"{M}:build", f"{M}:Builders.create"]
    assert load_factory(f"{M}:build", closed) is hostile_service.build
    assert load_factory(f"{M}:Builders.create", closed)().name == "hostile-good"
    with pytest.raises(FactoryNotAllowed, match="allowed prefixes"):
        load_factory(f"{M}:Builders.static", closed)


def test_a_module_that_marks_factories_resolves_only_those() -> None:
    assert load_factory(f"{R}:listed", ["tests."]) is registered_service.listed
    assert load_factory(f"{R}:Kinds.create", ["tests."])().name == "listed"
    assert factory_name(registered_service.listed) == f"{R}:listed"
    with pytest.raises(FactoryNotAllowed, match=r"not marked @flowbaton.factory.*listed"):
        load_factory(f"{R}:unlisted", ["tests."])
    with pytest.raises(FactoryNotAllowed, match="not marked"):
        new_flow_detail(registered_service.unlisted)


def test_the_decorator_refuses_what_cannot_be_found_by_name() -> None:
    with pytest.raises(FactoryError, match="lambda"):
        flowbaton.factory(lambda: None)


def test_flowbaton_run_refuses_a_hostile_name(marker: Path) -> None:
    with pytest.raises(FactoryError, match="module logging"):
        flowbaton.run(f"{M}:logging.os.system", args=touch(marker), backend="memory://")


# ------------------------------------------------------ replicas, every backend


def test_replicas_decline_hostile_records_and_keep_running_others(
    shared_backend_url: str, local_replicas: LocalReplicas, marker: Path, tmp_path: Path
) -> None:
    """Item 1 as reproduced: a replica allowed ``tests.`` (the hostile
    module's prefix) is handed ``tests.security.hostile_service:logging.os.system``
    with a shell command, among other ways out."""
    with open_backend(shared_backend_url) as backend:
        evil = {plant(backend, name, touch(marker)): reason for name, reason in HOSTILE[:6]}
        coord = local_replicas.add(backend, replica_id="victim", allow=["tests."]).start(concurrency=2)
        good = submit_steps(coord, tmp_path / "ledger", n=2)
        assert coord.wait(good, timeout=30).state == SUCCESS
        for flow_id, reason in evil.items():
            [decline] = until(lambda f=flow_id: backend.load_declines(f), 30, f"a decline of {flow_id}")
            assert decline.replica_id == "victim" and "FactoryError" in decline.reason
            assert reason.split(",")[0] in decline.reason
            assert backend.load_flow(flow_id).state == PENDING
        late = submit_steps(coord, tmp_path / "ledger", n=1)  # still serving after the declines
        assert coord.wait(late, timeout=30).state == SUCCESS
        coord.close()  # while its backend is open: stopping on a closed ZooKeeper client waits out timeouts


def test_a_retried_hostile_record_is_still_declined(
    shared_backend_url: str, local_replicas: LocalReplicas, marker: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``retry`` puts a record back to run without resolving its name; the
    replica that picks it up applies the rule."""
    with open_backend(shared_backend_url) as backend:
        evil = plant(backend, f"{M}:logging.os.system", touch(marker), state=FAILURE)
        assert run_cli(capsys, shared_backend_url, "retry", evil, "--yes").code == 0
        coord = local_replicas.add(backend, replica_id="victim", allow=["tests."]).start()
        [decline] = until(lambda: backend.load_declines(evil), 30, "a decline")
        assert "module logging, not a class defined in" in decline.reason
        coord.close()  # while its backend is open (see above)


# ------------------------------------------------------------------ plan


@pytest.fixture
def no_env_allow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLOWBATON_ALLOW", raising=False)


@pytest.mark.usefixtures("no_env_allow")
def test_plan_without_allow_is_one_line_exit_2_and_imports_nothing(
    shared_backend_url: str, capsys: pytest.CaptureFixture[str], marker: Path
) -> None:
    """Item 2 as reproduced: ``flowbaton plan`` on a record naming
    ``os:system`` ran its command on the operator's machine."""
    with open_backend(shared_backend_url) as backend:
        evil = plant(backend, "os:system", touch(marker))
        probe = plant(backend, f"{PROBE}:build", [])
    for flow_id in (evil, probe):
        out = run_cli(capsys, shared_backend_url, "plan", flow_id)
        assert bad_input(out) and "--allow" in out.stderr, out
    assert PROBE not in sys.modules


@pytest.mark.usefixtures("no_env_allow")
def test_plan_applies_the_replicas_rule(
    shared_backend_url: str, capsys: pytest.CaptureFixture[str], marker: Path
) -> None:
    with open_backend(shared_backend_url) as backend:
        os_system = plant(backend, "os:system", touch(marker))
        walk = plant(backend, f"{M}:logging.os.system", touch(marker))
        good = plant(backend, f"{M}:build", [])
    out = run_cli(capsys, shared_backend_url, "plan", os_system, "--allow", "tests.")
    assert bad_input(out) and "allowed prefixes (tests.)" in out.stderr, out
    out = run_cli(capsys, shared_backend_url, "plan", walk, "--allow", "tests.,other.")
    assert bad_input(out) and "module logging" in out.stderr, out
    doc = run_cli(capsys, shared_backend_url, "plan", good, "--allow", "other.", "--allow", "tests.", "--json")
    assert doc.code == 0 and doc.json()["run"] == ["noop"]


def test_plan_takes_the_list_from_flowbaton_allow(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, marker: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    with open_backend(url) as backend:
        good = plant(backend, f"{M}:build", [])
        evil = plant(backend, "os:system", touch(marker))
    monkeypatch.setenv("FLOWBATON_ALLOW", f"other.,{M}:build")  # a closed list of one
    assert run_cli(capsys, url, "plan", good, "--json").json()["run"] == ["noop"]
    assert bad_input(run_cli(capsys, url, "plan", evil))


def test_submit_with_allow_checks_a_received_name_before_importing_it(marker: Path) -> None:
    """A service that submits factory names it was sent (an HTTP endpoint, a
    queue) passes ``allow``: ``subprocess:run`` is a public function defined
    in its own module, so only the allow-list stands between it and the
    shell (submit calls the factory once to validate the flow)."""
    with flowbaton.connect("memory://") as coord:
        with pytest.raises(FactoryNotAllowed, match="allowed prefixes"):
            coord.submit("subprocess:run", args=touch(marker), kwargs={"shell": True}, allow=["tests."])
        assert coord.submit(f"{M}:build", allow=["tests."])  # what it allows still goes in


def test_cli_submit_applies_allow_when_given(
    capsys: pytest.CaptureFixture[str], marker: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``flowbaton submit`` resolves the operator's own name by the rule;
    with ``--allow`` (or ``FLOWBATON_ALLOW``) a script passing a name along
    gets the replicas' allow-list too: nothing imported, nothing stored."""
    url = f"sqlite:///{tmp_path / 'flows.db'}"
    hostile = ["submit", "subprocess:run", "--args", f'["touch {marker}"]', "--kwargs", '{"shell": true}']
    out = run_cli(capsys, url, *hostile, "--allow", "tests.")
    assert bad_input(out) and "allowed prefixes (tests.)" in out.stderr, out
    monkeypatch.setenv("FLOWBATON_ALLOW", "tests.")
    out = run_cli(capsys, url, *hostile)
    assert bad_input(out) and "allowed prefixes (tests.)" in out.stderr, out
    assert run_cli(capsys, url, "submit", f"{M}:build").code == 0  # what it allows still goes in
    with open_backend(url) as backend:
        assert [flow.factory for flow in backend.list_flows()] == [f"{M}:build"]
