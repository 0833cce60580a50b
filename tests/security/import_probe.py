"""Imported by no test: ``plan`` without an allow-list must not import it
(a test checks ``sys.modules``)."""

from __future__ import annotations

from flowbaton.engine import Flow, Linear, task


@task(id="probe")
def probe() -> int:
    return 0


def build() -> Flow:
    return Linear("probe", probe)
