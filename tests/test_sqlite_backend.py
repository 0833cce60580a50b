"""SQLite driver specifics: WAL, busy timeout, options, schema, no full scans."""

from __future__ import annotations

import multiprocessing
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from flowbaton.backends import ClaimToken, open_backend
from flowbaton.backends.errors import (
    BackendUnavailable,
    BadBackendURL,
    ClaimHeld,
    ClaimLost,
    CorruptRecord,
)
from flowbaton.backends.records import Decline, FlowDetail
from flowbaton.backends.sqlite import SCHEMA_VERSION, SQLiteBackend
from flowbaton.backends.states import SUCCESS
from tests.contract.helpers import LEASE, make_flow, make_task

T = TypeVar("T")

# Holds a write transaction on the file until killed, like a process stopped
# in the middle of a write.
_LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("UPDATE flows SET state = state")
print("locked", flush=True)
time.sleep(120)
"""


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "flows.db"


@pytest.fixture
def backend(db: Path) -> Iterator[SQLiteBackend]:
    opened = open_backend(f"sqlite:///{db}?busy_timeout=0.5")
    assert isinstance(opened, SQLiteBackend)
    yield opened
    opened.close()


def _claimed(backend: SQLiteBackend, flow_id: str = "f") -> ClaimToken:
    backend.create_flow(make_flow(flow_id))
    return backend.claim(flow_id, "r1", LEASE)


def _pragma(db: Path, name: str) -> object:
    conn = sqlite3.connect(db)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


# ------------------------------------------------------------ file and schema


def test_file_is_in_wal_mode_with_schema_version(backend: SQLiteBackend, db: Path) -> None:
    assert _pragma(db, "journal_mode") == "wal"
    assert _pragma(db, "user_version") == SCHEMA_VERSION


def test_reopen_keeps_data(backend: SQLiteBackend, db: Path) -> None:
    token = _claimed(backend)
    backend.save_task(token, make_task("t"))
    with open_backend(f"sqlite:///{db}") as again:
        assert set(again.load_tasks("f")) == {"t"}
        assert again.claim("f", "r2", LEASE, force=True).epoch > token.epoch


def test_newer_schema_is_refused(db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(CorruptRecord, match="newer"):
        open_backend(f"sqlite:///{db}")


def test_file_that_is_not_sqlite_is_named(db: Path) -> None:
    db.write_bytes(b"this is not a database, just text " * 100)
    with pytest.raises(CorruptRecord, match=re.escape(str(db))):
        open_backend(f"sqlite:///{db}")


def test_unopenable_path_is_unavailable(tmp_path: Path) -> None:
    missing_dir = tmp_path / "no" / "such" / "dir" / "flows.db"
    with pytest.raises(BackendUnavailable, match=r"flows\.db"):
        open_backend(f"sqlite:///{missing_dir}")


# ------------------------------------------------------------------ options


def test_relative_path_is_relative_to_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with open_backend("sqlite:///relative.db") as opened:
        assert isinstance(opened, SQLiteBackend)
        assert opened.path == str(tmp_path / "relative.db")
    assert (tmp_path / "relative.db").exists()


@pytest.mark.parametrize(
    ("query", "named"),
    [("busy_timeout=soon", "busy_timeout"), ("synchronous=OFF", "synchronous"),
     ("journal=delete", "journal")],
)
def test_bad_option_is_named(db: Path, query: str, named: str) -> None:
    with pytest.raises(BadBackendURL, match=named):
        open_backend(f"sqlite:///{db}?{query}")


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:///:memory:", "sqlite://"])
def test_urls_without_a_shared_file_are_refused(url: str) -> None:
    with pytest.raises(BadBackendURL):
        open_backend(url)


def test_options_from_url_and_keywords(db: Path) -> None:
    with open_backend(f"sqlite:///{db}?synchronous=FULL&busy_timeout=2") as opened:
        assert isinstance(opened, SQLiteBackend)
        assert opened.pragma("synchronous") == 2  # FULL
        assert opened.pragma("busy_timeout") == 2000
    with open_backend(f"sqlite:///{db}?synchronous=FULL", synchronous="NORMAL") as opened:
        assert isinstance(opened, SQLiteBackend)
        assert opened.pragma("synchronous") == 1  # NORMAL


def test_synchronous_full_is_in_force_for_fenced_writes(db: Path) -> None:
    with open_backend(f"sqlite:///{db}?synchronous=FULL") as opened:
        assert isinstance(opened, SQLiteBackend)
        token = _claimed(opened)
        opened.save_task(token, make_task("t"))
        assert opened.pragma("synchronous") == 2  # FULL, still, on the connection that writes
    with open_backend(f"sqlite:///{db}") as opened:
        assert isinstance(opened, SQLiteBackend)
        assert opened.pragma("synchronous") == 1  # NORMAL by default, per connection, not per file


@pytest.mark.parametrize("value", ["full", "OFF", "EXTRA", ""])
def test_bad_synchronous_names_the_option_and_the_choices(db: Path, value: str) -> None:
    named = r"option 'synchronous': .* is not one of NORMAL, FULL"
    with pytest.raises(BadBackendURL, match=named):
        open_backend(f"sqlite:///{db}?synchronous={value}")
    with pytest.raises(BadBackendURL, match=named):
        open_backend(f"sqlite:///{db}", synchronous=value)


# ------------------------------------------------- another process holds the lock


@contextmanager
def _lock_held_elsewhere(db: Path, stopped: bool = False) -> Iterator[None]:
    """Another process inside BEGIN IMMEDIATE, asleep or SIGSTOPped."""
    with subprocess.Popen(
        [sys.executable, "-c", _LOCKER, str(db)], stdout=subprocess.PIPE, text=True
    ) as proc:
        try:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
            if stopped:
                proc.send_signal(signal.SIGSTOP)
            yield
        finally:
            proc.kill()
            proc.wait(timeout=30)


def _unavailable_within_busy_timeout(call: Callable[[], object], db: Path) -> None:
    start = time.monotonic()
    with pytest.raises(BackendUnavailable, match=re.escape(str(db))) as caught:
        call()
    elapsed = time.monotonic() - start
    assert 0.3 < elapsed < 3.0, elapsed
    assert isinstance(caught.value.__cause__, sqlite3.OperationalError)


@pytest.mark.slow
@pytest.mark.parametrize("stopped", [False, True], ids=["sleeping", "stopped"])
def test_writes_fail_fast_while_another_process_holds_the_lock(
    backend: SQLiteBackend, db: Path, stopped: bool
) -> None:
    token = _claimed(backend)
    backend.save_task(token, make_task("before"))
    with _lock_held_elsewhere(db, stopped):
        _all_writes_unavailable(backend, token, db)
        # WAL: readers go on while the writer is stuck.
        assert set(backend.load_tasks("f")) == {"before"}
        assert backend.current_claim("f") is not None
        assert backend.find_runnable(10) == []
    backend.save_task(token, make_task("after"))
    assert set(backend.load_tasks("f")) == {"before", "after"}


def _all_writes_unavailable(backend: SQLiteBackend, token: ClaimToken, db: Path) -> None:
    for call in (
        lambda: backend.save_task(token, make_task("t")),
        lambda: backend.renew(token, LEASE),
        lambda: backend.claim("f", "r2", LEASE, force=True),
        lambda: backend.create_flow(make_flow("g")),
        lambda: backend.record_decline("f", Decline("r2", "why", 1.0)),
    ):
        _unavailable_within_busy_timeout(call, db)


@pytest.mark.slow
def test_queued_threads_give_up_within_the_busy_timeout(backend: SQLiteBackend, db: Path) -> None:
    """Six threads behind a stuck writer: each waits at most about one
    busy_timeout in all, not one per thread ahead of it."""
    token = _claimed(backend)
    outcomes: list[BaseException | None] = []

    def write(n: int) -> None:
        try:
            backend.save_task(token, make_task(f"t{n}"))
            outcomes.append(None)
        except BaseException as err:
            outcomes.append(err)

    with _lock_held_elsewhere(db):
        threads = [threading.Thread(target=write, args=(n,)) for n in range(6)]
        start = time.monotonic()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)
        elapsed = time.monotonic() - start
    assert len(outcomes) == 6 and all(isinstance(o, BackendUnavailable) for o in outcomes)
    assert elapsed < 2.0, elapsed  # 6 x 0.5 s if every thread waited its own turn


@pytest.mark.slow
def test_a_replica_can_start_while_another_process_holds_the_lock(backend: SQLiteBackend, db: Path) -> None:
    token = _claimed(backend)
    with _lock_held_elsewhere(db), open_backend(f"sqlite:///{db}?busy_timeout=0.5") as late:
        assert late.load_flow("f").id == "f"  # opening needs no write lock
    backend.save_task(token, make_task("after"))
    assert set(backend.load_tasks("f")) == {"after"}


# ------------------------------------------------------------------ batches


def _traced(backend: SQLiteBackend, call: Callable[[], T]) -> tuple[T, list[str]]:
    """What ``call`` returned and every statement it ran."""
    statements: list[str] = []
    backend.trace_statements(statements.append)
    try:
        return call(), statements
    finally:
        backend.trace_statements(None)


def _one_transaction(statements: list[str]) -> list[str]:
    """The statements inside, checking there is exactly one BEGIN IMMEDIATE
    ... COMMIT around all of them."""
    assert statements[0] == "BEGIN IMMEDIATE" and statements[-1] == "COMMIT", statements
    inside = statements[1:-1]
    assert not [s for s in inside if s.split()[0] in ("BEGIN", "COMMIT", "ROLLBACK")], statements
    return [s.split()[0] for s in inside]


def test_renew_claims_is_one_transaction_whatever_the_number(backend: SQLiteBackend) -> None:
    tokens = [_claimed(backend, f"f{n}") for n in range(6)]
    gone = backend.claim("f2", "operator", LEASE, force=True)
    lost, few = _traced(backend, lambda: backend.renew_claims(tokens[:2], LEASE))
    assert lost == []
    lost, many = _traced(backend, lambda: backend.renew_claims(tokens, LEASE))
    assert lost == [tokens[2]]
    assert _one_transaction(few) == _one_transaction(many) == ["UPDATE", "SELECT"]
    info = backend.current_claim("f2")
    assert info is not None and info.claim_id == gone.claim_id


def test_renew_claims_compares_the_whole_token(backend: SQLiteBackend) -> None:
    token = _claimed(backend)
    other_epoch = ClaimToken(token.flow_id, token.claim_id, token.epoch + 1)
    other_id = ClaimToken(token.flow_id, "r1#000000000000", token.epoch)
    assert backend.renew_claims([other_epoch, token, other_id], LEASE) == [other_epoch, other_id]


def test_claim_many_is_one_transaction_whatever_the_number(backend: SQLiteBackend) -> None:
    for n in range(8):
        backend.create_flow(make_flow(f"f{n}"))
    two, few = _traced(backend, lambda: backend.claim_many(["f0", "f1"], "r1", LEASE))
    six, many = _traced(backend, lambda: backend.claim_many([f"f{n}" for n in range(2, 8)], "r1", LEASE))
    none, idle = _traced(backend, lambda: backend.claim_many(["f7", "f8"], "r1", LEASE))
    assert [t.flow_id for t in two + six] == [f"f{n}" for n in range(8)] and none == []
    assert _one_transaction(few) == _one_transaction(many) == ["SELECT", "UPDATE", "INSERT"]
    assert _one_transaction(idle) == ["SELECT"]  # f7 held, f8 missing: nothing to write
    assert backend.find_runnable(10) == []


def test_claim_many_keeps_epochs_and_the_runnable_index(backend: SQLiteBackend) -> None:
    for flow_id in ("a", "b", "c"):
        backend.create_flow(make_flow(flow_id))
    first = backend.claim_many(["a", "b", "a"], "r1", LEASE)  # asked twice, claimed once
    assert [t.flow_id for t in first] == ["a", "b"]
    assert backend.find_runnable(10) == ["c"]
    for token in first:
        backend.release(token)
    assert backend.find_runnable(10) == ["a", "b", "c"]
    again = backend.claim_many(["b", "a"], "r2", LEASE)
    assert [(t.flow_id, t.epoch) for t in again] == [("b", 2), ("a", 2)]
    assert backend.claim("c", "r3", LEASE).epoch == 1


def test_claim_many_with_an_unreadable_epoch_grants_nothing(backend: SQLiteBackend, db: Path) -> None:
    for flow_id in ("a", "b"):
        backend.create_flow(make_flow(flow_id))
    conn = sqlite3.connect(db)
    conn.execute("UPDATE flows SET last_epoch = 'x' WHERE id = 'b'")
    conn.commit()
    conn.close()
    with pytest.raises(CorruptRecord, match=r"table flows id='b'.*last_epoch"):
        backend.claim_many(["a", "b"], "r1", LEASE)
    assert backend.current_claim("a") is None  # rolled back with the rest
    assert [t.flow_id for t in backend.claim_many(["a"], "r1", LEASE)] == ["a"]


# ---------------------------------------------------------- clock and scans


def test_injected_clock_drives_expiry(db: Path) -> None:
    now = [1000.0]
    backend = SQLiteBackend(f"sqlite:///{db}", clock=lambda: now[0])
    with backend:
        old = _claimed(backend)  # type: ignore[arg-type]
        now[0] += LEASE - 0.001
        with pytest.raises(ClaimHeld):
            backend.claim("f", "r2", LEASE)
        now[0] += 0.002
        assert backend.find_runnable(10) == ["f"]
        new = backend.claim("f", "r2", LEASE)
        with pytest.raises(ClaimLost):
            backend.save_task(old, make_task("t"))
        backend.save_task(new, make_task("t"))


def test_find_runnable_decodes_no_record_and_uses_the_index(
    backend: SQLiteBackend, db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for n in range(300):
        backend.create_flow(make_flow(f"done-{n}", state=SUCCESS))
    backend.create_flow(make_flow("todo"))
    decoded: list[str] = []
    real = FlowDetail.from_json.__func__  # type: ignore[attr-defined]

    def counting(cls: type[FlowDetail], raw: str, where: str) -> FlowDetail:
        decoded.append(where)
        return real(cls, raw, where)  # type: ignore[no-any-return]

    monkeypatch.setattr(FlowDetail, "from_json", classmethod(counting))
    assert backend.find_runnable(10) == ["todo"]
    assert decoded == []
    plan = backend.find_runnable_plan()
    assert "flows_runnable" in plan, plan


def test_save_task_rate(backend: SQLiteBackend) -> None:
    """The engine needs >= 1,000 tasks/s with two writes per task."""
    token = _claimed(backend)
    task = make_task("t", result={"rows": list(range(20))})
    start = time.perf_counter()
    for n in range(2000):
        task.task_id = f"t{n % 500}"
        backend.save_task(token, task)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"2000 save_task took {elapsed:.2f}s"


# ------------------------------------------------------ lifecycle and processes


def test_close_wakes_waiters_and_stops_calls(backend: SQLiteBackend) -> None:
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(backend.wait_for_work(30)))
    waiter.start()
    time.sleep(0.05)  # let it start waiting; close must end the wait either way
    backend.close()
    waiter.join(timeout=5)
    assert result == [False]
    with pytest.raises(BackendUnavailable, match="closed"):
        backend.load_flow("f")
    backend.close()  # twice is fine


def _save_in_child(backend: SQLiteBackend, token: ClaimToken) -> None:
    backend.save_task(token, make_task("from-child"))


@pytest.mark.slow
def test_forked_child_opens_its_own_connections(backend: SQLiteBackend) -> None:
    token = _claimed(backend)
    backend.load_flow("f")  # the parent's connections are in use before the fork
    child = multiprocessing.get_context("fork").Process(
        target=_save_in_child, args=(backend, token)
    )
    child.start()
    child.join(timeout=30)
    assert child.exitcode == 0
    assert set(backend.load_tasks("f")) == {"from-child"}
    backend.save_task(token, make_task("from-parent"))


def _open_and_create(url: str, flow_id: str, barrier: Any, results: Any) -> None:
    try:
        barrier.wait(timeout=60)
        with open_backend(url) as backend:
            backend.create_flow(make_flow(flow_id))
        results.put("ok")
    except Exception as err:  # reported to the parent, which fails the test
        results.put(repr(err))


@pytest.mark.slow
def test_processes_opening_a_new_file_at_once(db: Path) -> None:
    """The first open switches the file to WAL and creates the schema; racing
    first opens must all succeed."""
    ctx = multiprocessing.get_context("spawn")
    barrier, results = ctx.Barrier(4), ctx.Queue()
    procs = [ctx.Process(target=_open_and_create, args=(f"sqlite:///{db}", f"f{n}", barrier, results))
             for n in range(4)]
    for proc in procs:
        proc.start()
    try:
        assert [results.get(timeout=60) for _ in procs] == ["ok"] * 4
    finally:
        for proc in procs:
            proc.join(timeout=30)
    with open_backend(f"sqlite:///{db}") as backend:
        assert sorted(f.id for f in backend.list_flows()) == ["f0", "f1", "f2", "f3"]
