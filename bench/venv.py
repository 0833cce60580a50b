"""TaskFlow's own virtualenv: ``bench/.venvs/taskflow`` (gitignored).

Built once from the pinned ``bench/requirements-taskflow.txt`` with the
interpreter running the bench, and rebuilt when the pins or the interpreter
change (a stamp file records both). TaskFlow never enters the project's
environment; its drivers run as subprocesses of that venv's python.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["BENCH", "PEERS", "ensure_taskflow", "taskflow_version"]

BENCH = Path(__file__).resolve().parent
PEERS = BENCH / "peers"
REQUIREMENTS = BENCH / "requirements-taskflow.txt"
VENV = BENCH / ".venvs" / "taskflow"
STAMP = VENV / "bench-stamp.txt"


def _wanted_stamp() -> str:
    digest = hashlib.sha256(REQUIREMENTS.read_bytes()).hexdigest()
    return f"{digest} {sys.version.split()[0]} {sys.executable}\n"


def _python() -> Path:
    return VENV / "bin" / "python"


def ensure_taskflow(log: bool = True) -> Path:
    """The venv's python, building the venv first if it is missing or stale."""
    wanted = _wanted_stamp()
    if _python().exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return _python()
    started = time.monotonic()
    if log:
        print(f"bench: building {VENV.relative_to(BENCH.parent)} from {REQUIREMENTS.name} ...", flush=True)
    shutil.rmtree(VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(_python()), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, "-r", str(REQUIREMENTS)], check=True)
    STAMP.write_text(wanted)
    if log:
        print(f"bench: venv ready in {time.monotonic() - started:.0f}s", flush=True)
    return _python()


def taskflow_version() -> str:
    out = subprocess.run(
        [str(_python()), "-c", "import importlib.metadata as m; print(m.version('taskflow'))"],
        check=True, capture_output=True, text=True,
    )
    return out.stdout.strip()
