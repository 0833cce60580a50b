"""Property-based fuzzing of the CLI's arguments (docs/security.md, "Limits").

Argument lists are drawn from a grammar of every command's real options,
filled with sensible values (stored flow ids, durations, JSON), hostile ones
(nan, inf, negatives, control characters, lone surrogates, deep JSON) and
arbitrary text, then run in-process against a store holding a few flows.
For every input: no exception escapes ``main`` (no traceback), the exit
status is 0, 1 or 2, and on 2 stderr is exactly one line and the store is
exactly as it was. ``replica`` would serve forever, so its arguments are only
parsed; ``submit --wait`` is never generated (nothing runs the flow).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowbaton.backends import open_backend
from flowbaton.backends.base import Backend
from flowbaton.backends.records import Decline
from flowbaton.backends.states import CANCELLED, FAILURE, HELD, REVERTED, RUNNING, SUCCESS
from flowbaton.cli.main import build_parser, main
from flowbaton.ops.times import MAX_DURATION
from tests.coordinator.ops_helpers import STEPS, present, store, task

pytestmark = pytest.mark.security

EXAMPLES = {"memory": 600, "sqlite": 150}
URL_EXAMPLES = 200
PARSE_EXAMPLES = 300
FAILED = {"type": "builtins.RuntimeError", "message": "boom\x1b[2J", "traceback": "..."}


@dataclass(frozen=True)
class FlowRef:
    """The id of the n-th stored flow, filled in when the store exists."""

    index: int


# ---------------------------------------------------------------- grammar

_hostile = st.sampled_from([
    "", " ", "-", "--", "nan", "NaN", "inf", "-inf", "Infinity", "-1", "0", "1e400", "1e-400", "9" * 5000,
    "\x1b[2J", "a\nb", "\r", "\x00", "\ud800", "\u202e", "%s", "{}", "[]", "null", "../../etc/passwd",
    "x" * 10_000, "0x10", "1_0", "१२", "--json", "-y",
])
# Arbitrary text, but never an abbreviation of --wait: argparse takes "--w"
# for --wait, and a submit that waits would wait forever.
_text = st.text(max_size=30).filter(lambda t: not t.startswith("--w"))
_junk = st.one_of(_hostile, _text)
_duration = st.one_of(st.sampled_from(["10m", "2h", "1d", "1d12h", "2w", "90", "0.5s", "3d", "1h",
                                       "2024-05-01T10:00", "2024-05-01T10:00Z", "0001-01-01", "9999-12-31"]),
                      st.floats(allow_nan=True, allow_infinity=True).map(repr), _junk)
_flow_id = st.one_of(st.integers(0, 5).map(FlowRef), _junk)
_state = st.one_of(st.sampled_from(["RUNNING", "success", "HELD", "FAILURE", "pending"]), _junk)


def _deep(depth: int) -> str:
    return '{"a":' * depth + "1" + "}" * depth


_json = st.one_of(
    st.sampled_from(['{"n": 2}', '{"ledger": "/nonexistent/ledger"}', "[]", "[1, 2]", "{}", '{"n": NaN}',
                     '{"n": Infinity}', "nul", '{"a": 1',
                     "[" * 900 + "]" * 900, _deep(900), "[" * 100_000 + "]" * 100_000, '"str"', "1e999",
                     '{"n": ' + "9" * 5000 + "}"]),
    st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                 lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
                 max_leaves=8).map(json.dumps),
    _junk,
)
_factory = st.one_of(st.sampled_from([STEPS, "tests.coord_flows:nosuch", "os:system", "nosuch.module:f", "x"]),
                     _junk)

# command -> (positional strategies, [(flag, value strategy or None)])
_GRAMMAR: dict[str, tuple[list[Any], list[tuple[str, Any]]]] = {
    "flows": ([], [("--state", _state), ("--owner", _junk), ("--stranded", None), ("--since", _duration),
                   ("--json", None), ("--factory", _junk), ("--name", _junk), ("--before", _duration),
                   ("--limit", _junk), ("--offset", _junk)]),
    "claims": ([], [("--owner", _junk), ("--stale", None), ("--json", None)]),
    "replicas": ([], [("--json", None)]),
    "show": ([_flow_id], [("--json", None), ("--timeline", None)]),
    "plan": ([_flow_id], [("--json", None), ("--allow", st.one_of(st.just("tests."), _junk))]),
    "release": ([_flow_id], [("--yes", None), ("--force", None), ("--json", None), ("--state", _state),
                             ("--dry-run", None)]),
    "cancel": ([_flow_id], [("--yes", None), ("--revert", None), ("--factory", _junk), ("--dry-run", None)]),
    "drain": ([_junk], [("--yes", None), ("--undo", None), ("--json", None)]),
    "retry": ([_flow_id], [("--yes", None), ("--task", st.one_of(st.sampled_from(["s0", "s1"]), _junk)),
                           ("--rerun", None), ("--reuse", None)]),
    "purge": ([], [("--finished-before", _duration), ("--dry-run", None), ("--yes", None),
                   ("--include-failed", None), ("--force", None)]),
    "check": ([], []),
    "submit": ([_factory], [("--args", _json), ("--kwargs", _json), ("--inputs", _json), ("--name", _junk),
                            ("--timeout", _duration)]),
    "nosuch": ([], []),
}


@st.composite
def _argv(draw: st.DrawFn, commands: list[str]) -> list[Any]:
    """One command line: maybe a global --backend, the command, its
    positionals (sometimes missing or doubled), options in any order with
    values (sometimes missing), and sometimes arbitrary extra tokens."""
    command = draw(st.sampled_from(commands))
    positionals, flags = _GRAMMAR[command]
    argv: list[Any] = []
    if draw(st.booleans()) and draw(st.booleans()):
        argv += ["--backend", draw(st.one_of(st.just("memory://"), _junk))]
    argv.append(command)
    argv += [draw(p) for p in positionals if draw(st.integers(0, 9)) > 0]
    if command == "submit" and draw(st.booleans()):  # often enough a flow that can be stored
        argv += ["--inputs", '{"ledger": "/nonexistent/ledger"}']
    chosen = draw(st.lists(st.sampled_from(flags), max_size=5)) if flags and draw(st.integers(0, 3)) else []
    for flag, value in chosen:
        argv.append(flag)
        if value is not None and draw(st.integers(0, 9)) > 0:
            argv.append(draw(value))
    argv += draw(st.lists(_junk, max_size=2)) if draw(st.integers(0, 4)) == 0 else []
    return argv


# ------------------------------------------------------------------ store


def _seed(backend: Backend) -> list[str]:
    """Flows in the states commands act on, a live claim, a decline and a replica."""
    long_ago = time.time() - 30 * 86400
    ids = [
        store(backend, RUNNING, tasks=[task("s0", SUCCESS)]),
        store(backend, SUCCESS, updated_at=long_ago, tasks=[task("s0", SUCCESS), task("s1", SUCCESS)]),
        store(backend, FAILURE, updated_at=long_ago, tasks=[task("s0", FAILURE, failure=FAILED)]),
        store(backend, REVERTED, tasks=[task("s0", REVERTED)]),
        store(backend, HELD),
        store(backend, CANCELLED, updated_at=long_ago),
    ]
    backend.claim(ids[0], "r1", 600.0)
    backend.record_decline(ids[4], Decline("r2", "cannot import \x1b[31m", time.time()))
    present(backend, "r1", ["tests."])
    return ids


def _snapshot(backend: Backend) -> list[Any]:
    """Everything a command could change: flows, tasks, claims, declines."""
    flows = sorted(backend.list_flows(), key=lambda f: f.id)
    return [(f.to_json(), sorted((t, d.to_json()) for t, d in backend.load_tasks(f.id).items()),
             backend.current_claim(f.id), backend.load_declines(f.id)) for f in flows]


def _run(argv: list[str], backend: Backend | None) -> tuple[int, str, str]:
    """``flowbaton ARGV`` in this process; any exception but SystemExit fails the test."""
    out, err = io.StringIO(), io.StringIO()
    stdin = sys.stdin
    sys.stdin = io.StringIO("")  # a script: actions are not asked about
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(argv, backend=backend)
            except SystemExit as stop:  # argparse: usage errors and --help
                code = stop.code if isinstance(stop.code, int) else 0 if stop.code is None else 2
    finally:
        sys.stdin = stdin
    return code, out.getvalue(), err.getvalue()


def _check(argv: list[str], code: int, stderr: str) -> None:
    assert code in (0, 1, 2), (argv, code, stderr)
    if code == 2:
        assert len(stderr.splitlines()) == 1 and stderr.endswith("\n"), (argv, stderr)


@contextlib.contextmanager
def _fresh(kind: str, folder: str) -> Any:
    url = "memory://" if kind == "memory" else f"sqlite:///{folder}/{time.monotonic_ns()}.db"
    backend = open_backend(url)
    try:
        yield backend
    finally:
        backend.close()
        if kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(url[len("sqlite:///"):] + suffix)


# ------------------------------------------------------------------ tests

_TRIED: dict[str, int] = {}


@pytest.mark.parametrize("kind", list(EXAMPLES))
def test_any_command_line_ends_cleanly_and_a_refusal_changes_nothing(kind: str) -> None:
    folder = tempfile.mkdtemp(prefix="flowbaton-fuzz-")
    commands = [c for c in _GRAMMAR]

    @settings(max_examples=EXAMPLES[kind], deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(_argv(commands))
    def one(drawn: list[Any]) -> None:
        _TRIED[kind] = _TRIED.get(kind, 0) + 1
        with _fresh(kind, folder) as backend:
            ids = _seed(backend)
            argv = [ids[a.index] if isinstance(a, FlowRef) else a for a in drawn]
            before = _snapshot(backend)
            code, _, stderr = _run(argv, backend)
            _check(argv, code, stderr)
            if code == 2:
                assert _snapshot(backend) == before, argv

    one()
    print(f"\n{kind}: {_TRIED[kind]} generated command lines")


_schemes = st.sampled_from(["memory", "sqlite", "nosuch", "", "redis", "rediss", "zookeeper", "redis+sentinel",
                            "MEMORY", "sqlite3"])


@st.composite
def _url(draw: st.DrawFn) -> str:
    """Backend URLs, mostly malformed. Redis and ZooKeeper URLs always carry
    an unclosed ``[`` (refused before any connection is tried), so no case
    waits on a server."""
    scheme = draw(_schemes)
    rest = draw(st.one_of(_text, st.sampled_from(["/x.db", "//", "[::1/0", ":pw@h:99999/0", "h:abc/0",
                                                  "/?busy_timeout=nan", "/?synchronous=x", "/?nosuch=1",
                                                  "/?busy_timeout=-1"])))
    if scheme.startswith(("redis", "rediss", "zookeeper")):
        rest = ":s3cret@[" + rest
    return f"{scheme}://{rest}" if draw(st.integers(0, 9)) else rest


def test_any_backend_url_ends_cleanly() -> None:
    folder = tempfile.mkdtemp(prefix="flowbaton-fuzz-url-")
    tried = 0

    @settings(max_examples=URL_EXAMPLES, deadline=None, database=None)
    @given(_url(), st.sampled_from([["flows"], ["claims", "--json"], ["show", "x"], ["purge",
                                    "--finished-before", "1d", "--dry-run"]]))
    def one(url: str, command: list[str]) -> None:
        nonlocal tried
        tried += 1
        here = os.getcwd()
        os.chdir(folder)  # sqlite:///relative files land here
        try:
            code, _, stderr = _run(["--backend", url, *command], None)
        finally:
            os.chdir(here)
        _check([url, *command], code, stderr)
        assert "s3cret" not in stderr, (url, stderr)

    one()
    print(f"\nbackend URLs: {tried} generated")


def test_replica_options_parse_or_refuse_in_one_line() -> None:
    tried = 0
    values = st.one_of(_junk, st.floats().map(repr), st.integers(-5, 70000).map(str))
    options = ["--allow", "--concurrency", "--replica-id", "--lease", "--metrics-port", "--metrics-host",
               "--log-format", "--log-level", "--task-timeout", "--build-timeout", "--stop-timeout"]

    @settings(max_examples=PARSE_EXAMPLES, deadline=None, database=None)
    @given(st.lists(st.tuples(st.sampled_from(options), values), max_size=6))
    def one(pairs: list[tuple[str, str]]) -> None:
        nonlocal tried
        tried += 1
        argv = ["replica", *[token for pair in pairs for token in pair]]
        err = io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            try:
                args = build_parser().parse_args(argv)
            except SystemExit as stop:
                assert stop.code == 2 and len(err.getvalue().splitlines()) == 1, (argv, err.getvalue())
                return
        for name in ("lease", "task_timeout", "build_timeout", "stop_timeout"):
            value = getattr(args, name, None)
            # a thread cannot wait longer than TIMEOUT_MAX (OverflowError)
            assert value is None or 0 < float(value) <= MAX_DURATION < threading.TIMEOUT_MAX, (argv, value)

    one()
    print(f"\nreplica options: {tried} generated")
