"""What every workload gets: servers, the TaskFlow interpreter, folders,
the number of pairs and the command-line settings."""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from .servers import Servers

__all__ = ["Context"]


@dataclass
class Context:
    servers: Servers
    taskflow_python: Path
    args: argparse.Namespace
    started: float = field(default_factory=time.monotonic)
    notes: list[str] = field(default_factory=list)

    @property
    def pairs(self) -> int:
        return int(self.args.pairs)

    @property
    def logs(self) -> Path:
        path = Path(self.args.logs)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def say(self, message: str) -> None:
        """Progress on stderr, so stdout carries only the table."""
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)
