"""``python -m flowbaton.testing.chaos.replica_entry ARGS``: ``python -m
flowbaton ARGS`` with every backend call recorded.

The harness starts its replicas with this module (``replicas.ReplicaSet``):
the same command line and the same CLI, plus the recorder wrapped around the
backend the replica opens (``recorder.wrap_from_env``: into
``$FLOWBATON_RECORD_WRITES`` when set). The wrapper is passed in here, at
the test harness's own entry point, so the library never imports test code.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from flowbaton.cli.main import main
from flowbaton.testing.recorder import wrap_from_env

__all__ = ["run"]


def run(argv: Sequence[str] | None = None) -> int:
    """The CLI on ``argv`` (default: this process's), replicas recorded."""
    return main(argv, wrap_backend=wrap_from_env)


if __name__ == "__main__":
    sys.exit(run())
