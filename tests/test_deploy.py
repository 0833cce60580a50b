"""The deploy/ files, checked against the code (no Docker here: statically).

Every YAML file parses; every ``flowbaton`` command the files and the
README run parses with the real CLI parser, under the environment the file
gives it; every FLOWBATON_* name exists in the code; ports and probe paths
agree with the replica's; the example service's factory builds and runs.
The image is tagged with the package's version everywhere, the build
context leaves the repository's bulk out, each supervisor's grace period
outlasts the replica's stop timeout, and the restart-in-place settings are
in place. The user-facing pages about them (docs/deploy.md,
docs/backends.md) are held to the same code: their commands parse, their
links into the repository resolve, and the backends page lists every URL
option exactly as the drivers declare it.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from flowbaton.backends import memory, sqlite
from flowbaton.backends.options import Option
from flowbaton.backends.redis.url import OPTIONS as REDIS_OPTIONS
from flowbaton.backends.redis.url import parse_url
from flowbaton.backends.zookeeper.settings import OPTIONS as ZOOKEEPER_OPTIONS
from flowbaton.backends.zookeeper.settings import Settings
from flowbaton.cli.main import build_parser
from flowbaton.cli.replica import REPLICA_ENV
from flowbaton.observability.health import ReplicaHealth
from flowbaton.observability.probes import DEFAULT_METRICS_PORT, ProbeServer
from flowbaton.observability.tracing import TRACING_ENV

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
REPO = DEPLOY.parent
DOCS = REPO / "docs"
GITHUB = "https://github.com/flowbaton/flowbaton/"
KNOWN_ENV = {*REPLICA_ENV.values(), "FLOWBATON_BACKEND", TRACING_ENV}
EXAMPLE_FACTORY = "example_service.flows:provision"
PORT = DEFAULT_METRICS_PORT


# ---------------------------------------------------------------- helpers


def deploy_files() -> list[Path]:
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def yaml_docs(path: Path) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc is not None]


def k8s(kind: str) -> dict[str, Any]:
    found = [d for p in (DEPLOY / "kubernetes").glob("*.yaml") for d in yaml_docs(p) if d.get("kind") == kind]
    assert len(found) == 1, f"expected one {kind}, found {len(found)}"
    return found[0]


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return doc


def replica_services() -> dict[str, dict[str, Any]]:
    return {name: svc for name, svc in compose()["services"].items()
            if str(svc.get("image", "")).partition(":")[0] == "flowbaton-replica"}


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction, args in dockerfile():
        if instruction == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def systemd_service() -> configparser.SectionProxy:
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.optionxform = str  # type: ignore[assignment,method-assign]
    unit.read_string((DEPLOY / "systemd" / "flowbaton-replica@.service").read_text())
    return unit["Service"]


def systemd_env() -> dict[str, str]:
    lines = (DEPLOY / "systemd" / "replica.env").read_text().splitlines()
    pairs = (line.partition("=") for line in lines if line.strip() and not line.startswith("#"))
    return {name: value for name, _, value in pairs}


def entrypoint() -> list[str]:
    [args] = [args for instruction, args in dockerfile() if instruction == "ENTRYPOINT"]
    command: list[str] = json.loads(args)  # exec form: signals reach tini, which forwards them
    return command


def flowbaton_args(tokens: list[str]) -> list[str] | None:
    """The arguments after the ``flowbaton`` program in a shell command, up
    to the first shell operator or redirection; None if it runs no flowbaton."""
    for i, token in enumerate(tokens):
        runs = i == 0 or tokens[i - 1] in {"sudo", "--", "time", "env"} or (i >= 2 and tokens[i - 2] == "exec")
        if runs and (token == "flowbaton" or token.endswith("/flowbaton")):
            rest = tokens[i + 1:]
            stop = next((j for j, t in enumerate(rest) if t in {"&", "&&", "|", ";", "||"} or
                         re.match(r"\d?[<>]", t)), len(rest))
            return rest[:stop]
    return None


def assert_parses(args: list[str], env: dict[str, str], monkeypatch: pytest.MonkeyPatch, where: str) -> Any:
    """``flowbaton ARGS`` parses under ``env`` (FLOWBATON_* of the test process cleared)."""
    with monkeypatch.context() as patch:
        for name in KNOWN_ENV:
            patch.delenv(name, raising=False)
        for name, value in env.items():
            patch.setenv(name, str(value))
        try:
            return build_parser().parse_args(args)
        except SystemExit as exit_:
            raise AssertionError(f"{where}: `flowbaton {shlex.join(args)}` does not parse") from exit_


def readme_commands(path: Path = DEPLOY / "README.md") -> Iterator[list[str]]:
    """Every shell line of a page's ```sh blocks, split into tokens."""
    text = path.read_text()
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in re.sub(r"\\\n\s*", " ", block).splitlines():
            if line.strip():
                yield shlex.split(line, comments=True)


def check_backend_url(url: str) -> None:
    if url.startswith("zookeeper://"):
        Settings.from_url(url, {})
    else:
        parse_url(url)


@pytest.fixture
def example_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(DEPLOY / "example"))
    for name in [m for m in sys.modules if m.startswith("example_service")]:
        monkeypatch.delitem(sys.modules, name)


# ------------------------------------------------------------------ syntax


def test_every_yaml_file_parses() -> None:
    paths = [p for p in deploy_files() if p.suffix in (".yml", ".yaml")]
    assert len(paths) >= 6
    for path in paths:
        assert yaml_docs(path), f"{path} is empty"


def test_kustomization_lists_existing_files() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kubernetes" / "kustomization.yaml").read_text())
    for resource in kustomization["resources"]:
        assert (DEPLOY / "kubernetes" / resource).is_file(), resource


def test_only_known_environment_names_are_used() -> None:
    for path in deploy_files():
        for name in set(re.findall(r"\bFLOWBATON_[A-Z_]+\b", path.read_text())):
            assert name in KNOWN_ENV, f"{path.relative_to(REPO)} uses {name}, which no code reads"


# ---------------------------------------------------------------- commands


def test_the_image_runs_the_replica_as_non_root_with_signals_forwarded(monkeypatch: pytest.MonkeyPatch) -> None:
    command = entrypoint()
    assert command[:2] == ["tini", "--"] and flowbaton_args(command) == ["replica"]
    env = dockerfile_env()
    args = assert_parses(["replica"], {**env, "FLOWBATON_BACKEND": "memory://"}, monkeypatch, "Dockerfile")
    assert args.allow == ["example_service."] and args.metrics_port == PORT and args.log_format == "json"
    users = [args for instruction, args in dockerfile() if instruction == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert ("STOPSIGNAL", "SIGTERM") in dockerfile()
    assert ("EXPOSE", str(PORT)) in dockerfile()
    for instruction, args in dockerfile():
        if instruction == "COPY":
            sources = [a for a in shlex.split(args) if not a.startswith("--")][:-1]
            assert all((REPO / s).exists() for s in sources), f"COPY {args}: missing source"


def test_compose_replicas_parse_and_point_at_their_backends(monkeypatch: pytest.MonkeyPatch) -> None:
    services = replica_services()
    assert set(services) == {"replica-zookeeper", "replica-redis"}
    for name, svc in services.items():
        env = {**dockerfile_env(), **svc["environment"]}
        command = [*entrypoint(), *svc.get("command", [])]
        args = assert_parses(flowbaton_args(command) or [], env, monkeypatch, f"compose {name}")
        assert args.metrics_port == PORT and args.allow == ["example_service."]
        check_backend_url(env["FLOWBATON_BACKEND"])
        assert svc["deploy"]["replicas"] == 3
        assert str(PORT) in [str(p) for p in svc["expose"]]
        assert f"127.0.0.1:{PORT}/readyz" in " ".join(svc["healthcheck"]["test"])
        assert _seconds(svc["stop_grace_period"]) > float(env["FLOWBATON_LEASE"])


def _seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m)", text)
    assert match, text
    return float(match[1]) * (60 if match[2] == "m" else 1)


def test_compose_profiles_hold_a_quorum_each() -> None:
    services = compose()["services"]

    def in_profile(profile: str, prefix: str) -> list[str]:
        return [n for n, s in services.items() if profile in s.get("profiles", []) and n.startswith(prefix)]

    assert len(in_profile("zookeeper", "zk")) == 3
    assert len(in_profile("redis", "sentinel")) == 3
    assert len(in_profile("redis", "redis-")) >= 3  # a primary and two replicas
    assert all(p in services["prometheus"]["profiles"] for p in ("zookeeper", "redis"))
    for name in in_profile("redis", "redis-"):
        command = services[name]["command"]
        for setting in ("--appendonly yes", "--maxmemory-policy noeviction"):
            assert setting in command, f"{name} lacks {setting}"
    servers = services["zk1"]["environment"]["ZOO_SERVERS"]
    assert all(f"server.{i}=zk{i}:" in servers for i in (1, 2, 3))


def test_prometheus_scrapes_the_compose_replicas() -> None:
    config = yaml.safe_load((DEPLOY / "prometheus.yml").read_text())
    [job] = config["scrape_configs"]
    assert job.get("metrics_path", "/metrics") == "/metrics"
    names = {n for sd in job["dns_sd_configs"] for n in sd["names"]}
    assert names == set(replica_services())
    assert {sd["port"] for sd in job["dns_sd_configs"]} == {PORT}
    mounts = compose()["services"]["prometheus"]["volumes"]
    assert any(m.startswith("./prometheus.yml:") for m in mounts)


def test_kubernetes_deployment_probes_config_and_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    deployment, config, secret = k8s("Deployment"), k8s("ConfigMap"), k8s("Secret")
    spec = deployment["spec"]
    pod = spec["template"]["spec"]
    [container] = pod["containers"]
    assert spec["replicas"] == 3
    env = {**config["data"], **secret["stringData"]}
    refs = {next(iter(r.values()))["name"] for r in container["envFrom"]}
    assert refs == {config["metadata"]["name"], secret["metadata"]["name"]}
    args = assert_parses(flowbaton_args([*entrypoint(), *container.get("args", [])]) or [], env, monkeypatch,
                         "kubernetes/deployment.yaml")
    check_backend_url(env["FLOWBATON_BACKEND"])
    [port] = container["ports"]
    assert port["containerPort"] == args.metrics_port == PORT
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port["name"]}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port["name"]}
    assert pod["terminationGracePeriodSeconds"] > 3 * args.lease
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert spec["template"]["metadata"]["annotations"]["prometheus.io/port"] == str(PORT)


def test_kubernetes_disruption_budget_matches_the_deployment() -> None:
    deployment, budget = k8s("Deployment"), k8s("PodDisruptionBudget")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert budget["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert 0 < budget["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_systemd_unit(monkeypatch: pytest.MonkeyPatch) -> None:
    service = systemd_service()
    assert service["KillSignal"] == "SIGTERM" and service["Restart"] == "on-failure"
    assert "EnvironmentFile" in service
    env = systemd_env()
    args = assert_parses(flowbaton_args(shlex.split(service["ExecStart"])) or [], env, monkeypatch, "systemd unit")
    assert args.command == "replica" and args.metrics_port == PORT
    check_backend_url(env["FLOWBATON_BACKEND"])
    assert float(service["TimeoutStopSec"]) > 3 * args.lease


def test_every_command_in_the_readme_parses(example_on_path: None, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = [args for tokens in readme_commands() if (args := flowbaton_args(tokens)) is not None]
    assert {args[0] for args in commands} >= {"replica", "submit", "claims"}
    ports = set()
    for args in commands:
        parsed = assert_parses(args, {}, monkeypatch, "deploy/README.md")
        if parsed.command == "replica":
            ports.add(parsed.metrics_port)
        if parsed.command == "submit":
            _check_submit(parsed.factory, parsed.kwargs)
    curled = {int(p) for tokens in readme_commands() if tokens[:1] == ["curl"]
              for p in re.findall(r"localhost:(\d+)/", " ".join(tokens))}
    assert curled and curled <= ports, "curl a port a replica of the README serves"


def _check_submit(factory: str, kwargs: str | None) -> None:
    from flowbaton.engine import new_flow_detail

    assert factory == EXAMPLE_FACTORY
    new_flow_detail(factory, kwargs=json.loads(kwargs or "{}"))  # the arguments fit the factory


def test_probe_paths_used_by_the_deploy_files_are_served() -> None:
    probes = ProbeServer(ReplicaHealth(), lambda: (b"", "text/plain"), port=0, host="127.0.0.1")
    try:
        for path in ("/metrics", "/healthz", "/readyz"):
            assert probes.answer(path)[0] != 404, path
    finally:
        probes.close()


# ---------------------------------------------------------- example service


def test_the_example_service_runs(example_on_path: None) -> None:
    import flowbaton

    report = flowbaton.run(EXAMPLE_FACTORY, kwargs={"name": "vm-1", "steps": 2, "pause": 0.0}, backend="memory://")
    assert report.state == "SUCCESS"
    assert report.results["mark-ready"] == {"name": "vm-1", "address": report.results["reserve-address"],
                                            "state": "ready"}


def test_the_compose_file_submits_fit_the_example_factory(example_on_path: None) -> None:
    compose_header = (DEPLOY / "docker-compose.yml").read_text()
    submits = re.findall(r"flowbaton submit (\S+) --kwargs '([^']*)'", compose_header)
    assert submits
    for factory, kwargs in submits:
        _check_submit(factory, kwargs)


def test_the_replica_image_is_tagged_with_the_version_everywhere() -> None:
    """A version tag, never ``latest``: with ``IfNotPresent`` a cluster uses
    an image loaded by hand (kind, minikube) instead of pulling a tag nobody
    publishes; the tag follows flowbaton's version."""
    import flowbaton

    tag = f"flowbaton-replica:{flowbaton.__version__}"
    [container] = k8s("Deployment")["spec"]["template"]["spec"]["containers"]
    assert (container["image"], container["imagePullPolicy"]) == (tag, "IfNotPresent")
    assert replica_services() and {svc["image"] for svc in replica_services().values()} == {tag}
    assert f"-t {tag} ." in (DEPLOY / "Dockerfile").read_text()


# ------------------------------------------------------- image and context


def _version() -> str:
    import flowbaton

    return flowbaton.__version__


def test_every_replica_image_reference_carries_the_version() -> None:
    """Every ``flowbaton-replica:TAG`` in deploy/, the pages and the README
    names the package's version, and no image is named without a tag (a
    bare ``FROM flowbaton-replica`` would mean ``latest``, which nothing
    builds)."""
    version = _version()
    pages = [*deploy_files(), DOCS / "deploy.md", REPO / "README.md"]
    tags = {}
    for path in pages:
        text = path.read_text()
        tags[path] = set(re.findall(r"flowbaton-replica:([\w.+-]+)", text))
        untagged = re.findall(r"(?:FROM|image:|-t|image load|docker-image)\s+flowbaton-replica(?![:\w@-])", text)
        assert not untagged, f"{path.relative_to(REPO)}: an image named without its tag: {untagged}"
    assert all(found <= {version} for found in tags.values()), {p.name: t for p, t in tags.items() if t}
    assert tags[DEPLOY / "Dockerfile"] == tags[DOCS / "deploy.md"] == {version}


def dockerignore() -> list[str]:
    lines = (REPO / ".dockerignore").read_text().splitlines()
    return [line.strip().rstrip("/") for line in lines if line.strip() and not line.startswith("#")]


def test_the_build_context_leaves_the_bulk_out_but_not_what_the_image_copies() -> None:
    import fnmatch

    patterns = dockerignore()
    for needed in (".git", ".tox", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis",
                   "**/__pycache__", "bench", "site", "tests"):
        assert needed in patterns, f".dockerignore lacks {needed}"
    copied = [s for instruction, args in dockerfile() if instruction == "COPY"
              for s in shlex.split(args)[:-1] if not s.startswith("--")]
    assert copied
    for source in copied:
        source = source.rstrip("/")
        prefixes = ["/".join(source.split("/")[:i]) for i in range(1, source.count("/") + 2)]
        hit = [p for p in patterns for prefix in prefixes if fnmatch.fnmatch(prefix, p)]
        assert not hit, f"COPY {source} is excluded from the build context by {hit}"


# ------------------------------------------------------ stop and restart


def _stop_timeout(env: dict[str, str], monkeypatch: pytest.MonkeyPatch, where: str) -> float:
    args = assert_parses(["replica"], {"FLOWBATON_BACKEND": "memory://", **env}, monkeypatch, where)
    return float(args.stop_timeout)


def test_each_grace_period_outlasts_the_stop_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Past FLOWBATON_STOP_TIMEOUT the replica exits on its own; the
    supervisor's SIGKILL must come later, with time for that exit."""
    margin = 5.0
    for name, svc in replica_services().items():
        env = {**dockerfile_env(), **svc["environment"]}
        stop = _stop_timeout(env, monkeypatch, f"compose {name}")
        assert _seconds(svc["stop_grace_period"]) >= stop + margin, name
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    env = {**dockerfile_env(), **k8s("ConfigMap")["data"]}
    assert pod["terminationGracePeriodSeconds"] >= _stop_timeout(env, monkeypatch, "kubernetes") + margin
    env = systemd_env()
    assert float(systemd_service()["TimeoutStopSec"]) >= _stop_timeout(env, monkeypatch, "systemd") + margin


def test_restart_in_place_is_set_up_where_a_supervisor_restarts_in_place() -> None:
    """docs/restart-in-place.md: a stable, unique replica id, and on
    Kubernetes a pid namespace that outlives the container."""
    pod = k8s("Deployment")["spec"]["template"]["spec"]
    assert pod.get("shareProcessNamespace") is True
    [container] = pod["containers"]
    env = {e["name"]: e for e in container.get("env", [])}
    assert env["FLOWBATON_REPLICA_ID"]["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert "FLOWBATON_REPLICA_ID" not in {**k8s("ConfigMap")["data"], **k8s("Secret")["stringData"]}
    assert "Environment=FLOWBATON_REPLICA_ID=%H-%i" in (DEPLOY / "systemd" / "flowbaton-replica@.service").read_text()
    assert "FLOWBATON_REPLICA_ID" not in systemd_env()  # would give every instance of a host one id


# ------------------------------------------------------------- the pages


def test_every_command_of_the_deploy_page_parses(monkeypatch: pytest.MonkeyPatch) -> None:
    commands = [args for tokens in readme_commands(DOCS / "deploy.md") if (args := flowbaton_args(tokens))]
    assert {args[0] for args in commands} >= {"submit", "claims", "check"}
    for args in commands:
        assert_parses(args, {}, monkeypatch, "docs/deploy.md")


def test_the_deploy_page_names_every_replica_setting() -> None:
    text = (DOCS / "deploy.md").read_text()
    missing = sorted(name for name in KNOWN_ENV - {TRACING_ENV} if f"`{name}`" not in text)
    assert not missing, f"docs/deploy.md does not describe {missing}"


@pytest.mark.parametrize("page", ["deploy.md", "backends.md", "comparison.md"])
def test_links_into_the_repository_name_existing_files(page: str) -> None:
    links = re.findall(re.escape(GITHUB) + r"(?:blob|tree)/main/([^)#\s]+)", (DOCS / page).read_text())
    for target in links:
        assert (REPO / target).exists(), f"docs/{page} links to {target}, which does not exist"


def option_row(name: str, option: Option) -> str:
    """The row of docs/backends.md's option tables for one driver option."""
    if option.choices:
        kind = " or ".join(f"`{choice}`" for choice in option.choices)
    else:
        kind = {float: "number", int: "integer", bool: "`true`/`false`", str: "text"}[option.kind]
    default = option.default
    if default is None or default == "":
        shown = "not set"
    elif isinstance(default, bool):
        shown = f"`{str(default).lower()}`"
    elif isinstance(default, float):
        shown = f"`{default:g}`"
    else:
        shown = f"`{default}`"
    return f"| `{name}` | {kind} | {shown} | {option.doc} |"


DRIVER_OPTIONS = {
    "memory": memory._OPTIONS,  # the drivers' own tables, read as they are
    "sqlite": sqlite._OPTIONS,
    "zookeeper": ZOOKEEPER_OPTIONS,
    "redis": REDIS_OPTIONS,
}


@pytest.mark.parametrize("driver", sorted(DRIVER_OPTIONS))
def test_the_backends_page_lists_every_url_option_as_the_driver_declares_it(driver: str) -> None:
    text = (DOCS / "backends.md").read_text()
    marker = f"<!-- options: {driver} -->\n"
    assert text.count(marker) == 1, f"docs/backends.md has no table marked {marker.strip()}"
    table = text.split(marker, 1)[1].split("\n\n", 1)[0].splitlines()
    assert table[:2] == ["| option | value | default | meaning |", "|---|---|---|---|"]
    expected = [option_row(name, option) for name, option in DRIVER_OPTIONS[driver].items()]
    assert table[2:] == expected, "regenerate the table from the driver's options (tests/test_deploy.py: option_row)"
