"""The documented ops API example (docs/examples/cancel_stale_held.py) runs
and does what its docstring says, on a real SQLite store."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from flowbaton.backends import open_backend
from flowbaton.backends.states import CANCELLED, HELD

from .ops_helpers import store

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "examples" / "cancel_stale_held.py"


def test_the_example_cancels_stale_held_flows_of_one_factory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    old = time.time() - 2 * 86400
    with open_backend(url) as backend:
        stale = store(backend, HELD, factory="billing.flows:charge", updated_at=old)
        fresh = store(backend, HELD, factory="billing.flows:charge")
        other = store(backend, HELD, factory="mail.flows:send", updated_at=old)

    def run(*extra: str) -> dict[str, object]:
        done = subprocess.run([sys.executable, str(SCRIPT), url, "billing.flows:*", *extra], cwd=ROOT,
                              capture_output=True, text=True, timeout=60, check=True)
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    assert run("--dry-run")["selected"] == [stale]
    report = run()
    assert report["selected"] == [stale] and report["skipped"] == []
    with open_backend(url) as backend:
        assert [backend.load_flow(f).state for f in (stale, fresh, other)] == [CANCELLED, HELD, HELD]
