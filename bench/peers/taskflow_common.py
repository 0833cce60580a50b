"""Building TaskFlow's pieces from command-line options, with its public API:
ZooKeeper persistence, a ZooKeeper or Redis jobboard, and posting a job
(logbook + flow detail + factory details + job), as TaskFlow's docs show.
"""

from __future__ import annotations

import argparse
import contextlib
import signal
import threading
from pathlib import Path
from typing import Any

from oslo_utils import uuidutils
from taskflow import engines
from taskflow.conductors import backends as conductor_backends
from taskflow.jobs import backends as job_backends
from taskflow.persistence import backends as persistence_backends
from taskflow.persistence import models


def add_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--board", choices=("zookeeper", "redis"), required=True)
    parser.add_argument("--zk-hosts", required=True, help="persistence (and zookeeper board) hosts")
    parser.add_argument("--root", required=True, help="znode folder of this trial, e.g. /tf-abc")
    parser.add_argument("--redis", default="", help="host:port of the redis board")
    parser.add_argument("--timeout", type=float, default=10.0,
                        help="zookeeper board: session timeout; redis board: claim expiry (0 = none)")


def conduct(args: argparse.Namespace, kind: str, **options: Any) -> None:
    """Run a stock TaskFlow conductor of ``kind`` ("blocking",
    "nonblocking") on the jobboard until SIGTERM; ``args.ready`` is written
    once it is about to run, so the bench knows it is up."""
    backend = persistence(args)
    board = jobboard(args, args.name, backend)
    conductor = conductor_backends.fetch(kind, args.name, board, persistence=backend, engine="serial", **options)
    signal.signal(signal.SIGTERM, lambda _signum, _frame: conductor.stop())
    Path(args.ready).write_text("ready\n")
    try:
        conductor.run()
    finally:
        board.close()
        backend.close()


def persistence(args: argparse.Namespace) -> Any:
    backend = persistence_backends.fetch(
        {"connection": "zookeeper", "hosts": args.zk_hosts, "path": f"{args.root}/books"})
    with contextlib.closing(backend.get_connection()) as conn:
        conn.upgrade()
    return backend


def jobboard(args: argparse.Namespace, name: str, backend: Any) -> Any:
    """A connected board; on Redis with a claim expiry, claims expire unless
    kept alive (``ExpiringClaims``)."""
    if args.board == "zookeeper":
        conf = {"board": "zookeeper", "hosts": args.zk_hosts, "path": f"{args.root}/jobs",
                "timeout": args.timeout}
    else:
        host, port = args.redis.rsplit(":", 1)
        conf = {"board": "redis", "host": host, "port": int(port), "namespace": args.root.strip("/")}
    board = job_backends.fetch(name, conf, persistence=backend)
    board.connect()
    if args.board == "redis" and args.timeout > 0:
        return ExpiringClaims(board, args.timeout)
    return board


class ExpiringClaims:
    """A Redis jobboard whose claims carry an expiry, renewed every third of
    it while the job runs: without one, a claim of a dead conductor lives
    forever. Everything else goes straight to the board."""

    def __init__(self, board: Any, expiry: float) -> None:
        self._board = board
        self._expiry = expiry
        self._keepers: dict[str, threading.Event] = {}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._board, name)

    def claim(self, job: Any, who: str) -> None:
        self._board.claim(job, who, expiry=self._expiry)
        done = threading.Event()
        self._keepers[job.uuid] = done
        threading.Thread(target=self._keep, args=(job, done), daemon=True).start()

    def _keep(self, job: Any, done: threading.Event) -> None:
        while not done.wait(self._expiry / 3):
            if not job.extend_expiry(self._expiry):
                return

    def _settle(self, action: str, job: Any, who: str) -> None:
        done = self._keepers.pop(job.uuid, None)
        if done is not None:
            done.set()
        getattr(self._board, action)(job, who)

    def consume(self, job: Any, who: str) -> None:
        self._settle("consume", job, who)

    def abandon(self, job: Any, who: str) -> None:
        self._settle("abandon", job, who)

    def trash(self, job: Any, who: str) -> None:
        self._settle("trash", job, who)


def post(board: Any, backend: Any, factory: Any, kwargs: dict[str, Any], name: str) -> Any:
    """Submit one flow: its logbook and flow detail saved, the factory named
    in the detail (a conductor rebuilds the flow from it), then the job."""
    book = models.LogBook(name)
    detail = models.FlowDetail(name, uuidutils.generate_uuid())
    book.add(detail)
    with contextlib.closing(backend.get_connection()) as conn:
        conn.save_logbook(book)
    engines.save_factory_details(detail, factory, (), kwargs, backend=backend)
    return board.post(name, book=book)
