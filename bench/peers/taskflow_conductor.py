"""A TaskFlow conductor process (failover and zombie workloads), or a poster.

    taskflow_conductor.py conduct --name c1 --ready FILE BOARD-OPTIONS
    taskflow_conductor.py post                   # line-protocol worker

``conduct`` runs a stock blocking conductor (serial engine) until SIGTERM,
which asks it to stop: the engine is suspended after its running task and
the job abandoned, so another conductor can take it (graceful handover).
The ready file is written once the board is connected and the conductor is
about to look for jobs. ``post`` serves many trials at once: ``{"op":
"open", BOARD-OPTIONS}`` connects to a trial's board ahead of time, and
``{"op": "post", BOARD-OPTIONS, "ledger": ..., "count": N, "delay": S}``
posts one ``steps`` job on it. BOARD-OPTIONS are those of ``add_options``
(``board``, ``zk_hosts``, ``root``, ``redis``, ``timeout``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import taskflow_flows
from common import serve_lines
from taskflow_common import add_options, jobboard, persistence, post
from taskflow_common import conduct as run_conductor


def conduct(args: argparse.Namespace) -> None:
    run_conductor(args, "blocking")


class Poster:
    """One connected board (and persistence) per trial root."""

    def __init__(self) -> None:
        self.opened: dict[str, tuple[Any, Any]] = {}

    def board(self, command: dict[str, Any]) -> tuple[Any, Any]:
        args = argparse.Namespace(**{key: command[key] for key in BOARD_KEYS})
        if args.root not in self.opened:
            backend = persistence(args)
            self.opened[args.root] = (jobboard(args, "poster", backend), backend)
        return self.opened[args.root]

    def handle(self, command: dict[str, Any]) -> dict[str, Any]:
        board, backend = self.board(command)
        if command["op"] == "open":
            return {}
        kwargs = {"count": command["count"], "delay": command["delay"], "ledger": command["ledger"]}
        job = post(board, backend, taskflow_flows.steps, kwargs, "steps")
        return {"job": job.uuid}

    def close(self) -> None:
        for board, backend in self.opened.values():
            board.close()
            backend.close()


BOARD_KEYS = ("board", "zk_hosts", "root", "redis", "timeout")


def poster() -> None:
    posting = Poster()
    try:
        serve_lines(posting.handle)
    finally:
        posting.close()


def main() -> None:
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    if sys.argv[1:] == ["post"]:
        poster()
        return
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=("conduct",))
    parser.add_argument("--name", default="conductor")
    parser.add_argument("--ready", required=True)
    add_options(parser)
    conduct(parser.parse_args())


if __name__ == "__main__":
    main()
