"""Workload "dbos": DBOS Transact as a second peer.

DBOS runs from its own virtualenv (``bench/.venvs/dbos``, pinned in
``bench/requirements-dbos.txt``, built here on first use); its drivers are
``peers/dbos_steps.py`` and ``peers/dbos_restart.py``. Figures, each as
pairs (flowbaton, then DBOS):

- no-op steps/s, one workflow / flow of ``--tasks`` no-op steps, on SQLite
  (a fresh file a run): each side's defaults (flowbaton WAL with
  ``synchronous=NORMAL``, which does not fsync every commit; DBOS leaves
  SQLite's own defaults, a rollback journal with ``synchronous=FULL``);
  matched durability, both fsync every commit (flowbaton
  ``?synchronous=FULL``; DBOS's default already is FULL, read back from
  its connections in every run); and both WAL + FULL (DBOS's file set to
  WAL before it opens it: the journal mode is stored in the file);
- with Debian's ``postgresql`` installed: DBOS on a private Postgres
  cluster (fsync on) against flowbaton on a private Redis with
  ``appendfsync always`` and on the run's ZooKeeper (which fsyncs its log
  before acknowledging);
- restart in place on SQLite (``restart.py``).

The peer's values sit in the table's second column, headed TaskFlow; every
row's label starts with "vs DBOS" and names the servers it needs.
"""

from __future__ import annotations

import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from flowbaton.testing.servers import ServerError
from flowbaton.testing.servers.redis import LocalRedis, redis_binary

from . import postgres, restart
from .context import Context
from .stats import Figure, Target
from .venv import dbos_version, ensure_dbos
from .workers import Worker, WorkerError, flowbaton_argv, taskflow_argv

__all__ = ["run"]

RESTART_LEASE = 4.0
# One Postgres database for every DBOS run, created by the warm-up: a CREATE
# DATABASE per run would write a whole template database to the WAL right
# before the timed workflow (Postgres 15's WAL_LOG strategy) and slow it.
DBOS_DATABASE = "dbos_bench"
# kind -> (flowbaton's SQLite URL suffix, label, target ratio)
SQLITE_ROWS: dict[str, tuple[str, str, float | None]] = {
    "defaults": ("", "each side's defaults (flowbaton WAL + synchronous=NORMAL; DBOS rollback journal + "
                     "synchronous=FULL)", None),
    "matched": ("?synchronous=FULL", "matched durability, both fsync every commit (flowbaton synchronous=FULL; "
                                     "DBOS its default, FULL)", 3.0),
    "wal": ("?synchronous=FULL", "both WAL + synchronous=FULL (DBOS's file set to WAL beforehand)", None),
}
SERVER_ROWS: dict[str, tuple[str, float | None]] = {
    "redis": ("flowbaton Redis appendfsync always vs DBOS Postgres fsync on [needs redis-server, postgresql]",
              4.0),
    "zookeeper": ("flowbaton ZooKeeper vs DBOS Postgres fsync on [needs zookeeper, postgresql]", None),
}


def _figures(has_postgres: bool) -> dict[str, Figure]:
    figures: dict[str, Figure] = {}
    for kind, (_, label, ratio) in SQLITE_ROWS.items():
        figures[kind] = Figure(f"dbos.sqlite.{kind}.steps_per_s", f"vs DBOS: no-op steps, SQLite, {label} "
                               "[no server]", "tasks/s", Target("ratio>=", ratio) if ratio else None, peer="DBOS")
    figures["sql"] = Figure("dbos.sqlite.defaults.sql_per_step", "vs DBOS: SQL statements per step, SQLite "
                            "defaults [no server]", "ops/task", peer="DBOS")
    if has_postgres:
        for kind, (label, ratio) in SERVER_ROWS.items():
            figures[kind] = Figure(f"dbos.postgres.{kind}.steps_per_s", f"vs DBOS: no-op steps, {label}",
                                   "tasks/s", Target("ratio>=", ratio) if ratio else None, peer="DBOS")
    figures["restart"] = Figure(
        "dbos.restart_in_place.seconds", f"vs DBOS: kill -9 → restarted process's first step, same identity "
        f"(flowbaton --replica-id, lease {RESTART_LEASE:g} s; DBOS executor id), SQLite [no server]", "s",
        peer="DBOS")
    return figures


def _wal_file(path: Path) -> None:
    """An empty SQLite file already in WAL mode (the mode persists in the file)."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


class _Durable:
    """The servers of the Postgres rows: a private Postgres cluster and a
    private Redis with ``appendfsync always`` (the run's shared Redis keeps
    the fixtures' ``everysec``), or the reason there are none."""

    def __init__(self) -> None:
        self.postgres: postgres.PostgresCluster | None = None
        self.redis: LocalRedis | None = None
        self.skipped = ""

    @contextmanager
    def started(self, root: Path) -> Iterator[_Durable]:
        with ExitStack() as stack:
            bin_dir = postgres.binaries()
            if bin_dir is None:
                self.skipped = (f"no PostgreSQL server (install the Debian package {postgres.PACKAGE}: its "
                                "/usr/lib/postgresql/*/bin/initdb and pg_ctl)")
                yield self
                return
            try:
                self.postgres = stack.enter_context(postgres.PostgresCluster(bin_dir))
                self.redis = LocalRedis(redis_binary(), root / "redis-always", {"appendfsync": "always"})
                stack.callback(self.redis.close)
                self.redis.start()
            except (postgres.PostgresError, ServerError) as err:
                self.postgres = self.redis = None
                self.skipped = f"servers not started: {err}"
            yield self


class _Drivers:
    def __init__(self, ctx: Context, python: Path) -> None:
        self.ctx = ctx
        self.tasks = int(ctx.args.tasks)
        self.fb = Worker(flowbaton_argv("bench.fb_persistence"), ctx.logs / "dbos-flowbaton.log")
        self.dbos = Worker(taskflow_argv(python, "dbos_steps.py"), ctx.logs / "dbos-dbos.log")
        self.runs = 0

    def _fresh(self) -> Path:
        self.runs += 1
        return self.ctx.servers.scratch(f"dbos-{self.runs}")

    def flowbaton(self, url: str, tasks: int | None = None) -> dict[str, Any]:
        return self.fb.ask({"op": "run", "url": url, "tasks": tasks or self.tasks})

    def flowbaton_sqlite(self, suffix: str, tasks: int | None = None) -> dict[str, Any]:
        return self.flowbaton(f"sqlite:///{self._fresh() / 'fb.db'}{suffix}", tasks)

    def dbos_run(self, url: str, tasks: int | None = None) -> dict[str, Any]:
        return self.dbos.ask({"op": "run", "url": url, "tasks": tasks or self.tasks}, wait=900)

    def dbos_sqlite(self, wal: bool, tasks: int | None = None) -> dict[str, Any]:
        path = self._fresh() / "dbos.db"
        if wal:
            _wal_file(path)
        return self.dbos_run(f"sqlite:///{path}", tasks)

    def close(self) -> None:
        self.fb.close()
        self.dbos.close()


def _check_settings(figure: Figure, answer: dict[str, Any], wal: bool) -> None:
    """The DBOS side of the matched rows must have fsynced every commit."""
    settings = answer.get("settings", {})
    wanted = {"synchronous": "FULL", "journal_mode": "wal" if wal else "delete"}
    if any(settings.get(key) != value for key, value in wanted.items()):
        figure.errors.append(f"DBOS's SQLite connections had {settings}, not {wanted}")


def _sqlite_pair(figures: dict[str, Figure], drivers: _Drivers) -> None:
    tasks = drivers.tasks
    for kind, (suffix, _, _) in SQLITE_ROWS.items():
        fb = drivers.flowbaton_sqlite(suffix)
        dbos = drivers.dbos_sqlite(wal=kind == "wal")
        figures[kind].add(tasks / fb["seconds"], tasks / dbos["seconds"])
        if kind != "defaults":
            _check_settings(figures[kind], dbos, wal=kind == "wal")
        if kind == "defaults":
            figures["sql"].add(fb["wire"] / tasks, dbos["wire"] / tasks)


def _server_pair(figures: dict[str, Figure], drivers: _Drivers, durable: _Durable) -> None:
    assert durable.postgres is not None and durable.redis is not None
    drivers.runs += 1
    servers, tasks, n = drivers.ctx.servers, drivers.tasks, drivers.runs
    urls = {"redis": durable.redis.url(namespace=f"dbos{n}"), "zookeeper": servers.zk_url(f"dbos{n}")}
    for kind, url in urls.items():  # flowbaton: fresh namespaces; DBOS: a fresh launch, new workflow
        fb = drivers.flowbaton(url)
        dbos = drivers.dbos_run(durable.postgres.url(DBOS_DATABASE))
        figures[kind].add(tasks / fb["seconds"], tasks / dbos["seconds"])


def _restart_pair(figures: dict[str, Figure], ctx: Context, python: Path) -> None:
    values: list[float | None] = []
    for side in (restart.FlowbatonRestart(RESTART_LEASE), restart.DbosRestart(python)):
        try:
            values.append(restart.measure(side, ctx.servers.scratch(f"restart-{side.name}")))
        except (RuntimeError, OSError, subprocess.SubprocessError) as err:
            figures["restart"].errors.append(f"{side.name}: {err}")
            values.append(None)
    figures["restart"].add(*values)


def _warm_up(drivers: _Drivers, durable: _Durable) -> None:
    """Imports and first compiles, on every store the pairs use."""
    drivers.flowbaton_sqlite("", 10)
    drivers.dbos_sqlite(False, 10)
    if durable.postgres is not None and durable.redis is not None:
        drivers.flowbaton(durable.redis.url(namespace="dbos-warm"), 10)
        drivers.flowbaton(drivers.ctx.servers.zk_url("dbos-warm"), 10)
        drivers.dbos_run(durable.postgres.url(DBOS_DATABASE), 10)


def _pairs(ctx: Context, python: Path, durable: _Durable, figures: dict[str, Figure]) -> None:
    drivers = _Drivers(ctx, python)
    try:
        _warm_up(drivers, durable)
        for pair in range(ctx.pairs):
            ctx.say(f"dbos: pair {pair + 1}/{ctx.pairs}")
            _sqlite_pair(figures, drivers)
            if durable.postgres is not None:
                _server_pair(figures, drivers, durable)
            _restart_pair(figures, ctx, python)
    finally:
        drivers.close()


def _notes(ctx: Context, durable: _Durable, version: str) -> None:
    server = (f"PostgreSQL {durable.postgres.version()} (private cluster, fsync=on, synchronous_commit=on), "
              "Redis appendonly yes + appendfsync always (private server)" if durable.postgres is not None
              else f"Postgres rows skipped: {durable.skipped}")
    ctx.notes.append(
        f"dbos: DBOS Transact {version} (bench/.venvs/dbos); its values are in the TaskFlow column, the ratio is "
        f"flowbaton/DBOS. One workflow / flow of {ctx.args.tasks} no-op steps per run, timed around the call "
        "(DBOS launch and migrations excluded, as opening flowbaton's backend is). " + server + ". Restart in "
        "place: 20 steps of 0.1 s, SIGKILL after 5, the same process started again at once (interpreter start "
        "counted); DBOS resumes only its own executor id's workflows, at launch.")


def run(ctx: Context) -> list[Figure]:
    try:
        python = ensure_dbos()
        version = dbos_version()
    except subprocess.CalledProcessError as err:  # no PyPI, say: the other workloads still count
        ctx.notes.append(f"dbos: skipped, its virtualenv could not be built ({err})")
        return []
    durable = _Durable()
    with durable.started(ctx.servers.scratch("dbos-servers")):
        figures = _figures(durable.postgres is not None)
        try:
            _pairs(ctx, python, durable, figures)
        except WorkerError as err:
            ctx.notes.append(f"dbos: stopped early: {err}")
        _notes(ctx, durable, version)
    return list(figures.values())
