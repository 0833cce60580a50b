"""``flowbaton demo``, the README's first command: a replica killed with
SIGKILL mid-flow, the other finishing it, and the timeline that tells it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.states import SUCCESS
from flowbaton.engine.meta import FlowMeta

pytestmark = pytest.mark.slow


def test_the_demo_tells_a_takeover_and_keeps_its_store(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOWBATON_")}
    done = subprocess.run([sys.executable, "-m", "flowbaton", "demo", "--keep", str(tmp_path / "kept")],
                          capture_output=True, text=True, timeout=120, env={**env, "NO_COLOR": "1"})
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "Demo OK." in out and "Run again after the takeover (tasks are at-least-once): step-4." in out
    assert "takeover at +" in out and "\x1b[" not in out  # the timeline, not coloured off a terminal
    backend = open_backend(f"sqlite:///{tmp_path / 'kept' / 'demo.db'}")
    try:
        [flow] = backend.list_flows()
        assert flow.state == SUCCESS and flow.id in out
        claims = FlowMeta(flow.meta).claims
        assert [c["ended"] for c in claims] == ["expired", "finished"]
        step4 = backend.load_tasks(flow.id)["step-4"]
        [earlier] = step4.meta["history"]
        assert earlier["outcome"] == "in doubt" and earlier["owner"] == claims[0]["owner"] != step4.owner
    finally:
        backend.close()
