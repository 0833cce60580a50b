"""The peers' own virtualenvs: ``bench/.venvs/<name>`` (gitignored).

Each is built once from its pinned ``bench/requirements-<name>.txt`` with
the interpreter running the bench, and rebuilt when the pins or the
interpreter change (a stamp file records both). No peer ever enters the
project's environment; its drivers run as subprocesses of that venv's
python. TaskFlow's venv is needed by every run; DBOS's only by the "dbos"
workload, which builds it when it starts.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["BENCH", "PEERS", "PeerVenv", "TASKFLOW", "DBOS", "ensure_taskflow", "taskflow_version",
           "ensure_dbos", "dbos_version"]

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"


@dataclass(frozen=True)
class PeerVenv:
    """One peer's venv: ``name`` names the folder and the requirements file;
    ``package`` is the distribution whose version the report shows."""

    name: str
    package: str

    @property
    def requirements(self) -> Path:
        return BENCH / f"requirements-{self.name}.txt"

    @property
    def path(self) -> Path:
        return BENCH / ".venvs" / self.name

    @property
    def python(self) -> Path:
        return self.path / "bin" / "python"

    def _stamp(self) -> Path:
        return self.path / "bench-stamp.txt"

    def _wanted_stamp(self) -> str:
        digest = hashlib.sha256(self.requirements.read_bytes()).hexdigest()
        return f"{digest} {sys.version.split()[0]} {sys.executable}\n"

    def ensure(self, log: bool = True) -> Path:
        """The venv's python, building the venv first if it is missing or stale."""
        wanted = self._wanted_stamp()
        if self.python.exists() and self._stamp().exists() and self._stamp().read_text() == wanted:
            return self.python
        started = time.monotonic()
        if log:
            print(f"bench: building {self.path.relative_to(BENCH.parent)} from {self.requirements.name} ...",
                  flush=True)
        shutil.rmtree(self.path, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(self.path)], check=True)
        pip = [str(self.python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
        subprocess.run([*pip, "-r", str(self.requirements)], check=True)
        self._stamp().write_text(wanted)
        if log:
            print(f"bench: venv ready in {time.monotonic() - started:.0f}s", flush=True)
        return self.python

    def version(self) -> str:
        out = subprocess.run(
            [str(self.python), "-c", f"import importlib.metadata as m; print(m.version({self.package!r}))"],
            check=True, capture_output=True, text=True,
        )
        return out.stdout.strip()


TASKFLOW = PeerVenv("taskflow", "taskflow")
DBOS = PeerVenv("dbos", "dbos")


def ensure_taskflow(log: bool = True) -> Path:
    return TASKFLOW.ensure(log)


def taskflow_version() -> str:
    return TASKFLOW.version()


def ensure_dbos(log: bool = True) -> Path:
    return DBOS.ensure(log)


def dbos_version() -> str:
    return DBOS.version()
