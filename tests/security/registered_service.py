"""A flows module with a closed list: it marks its factories with
``@flowbaton.factory``, so its other public functions never resolve."""

from __future__ import annotations

import flowbaton
from flowbaton.engine import Flow, Linear, task


@task(id="listed-step")
def listed_step() -> int:
    return 2


@flowbaton.factory
def listed() -> Flow:
    return Linear("listed", listed_step)


class Kinds:
    @flowbaton.factory
    @classmethod
    def create(cls) -> Flow:
        return listed()


def unlisted() -> Flow:
    """Public and returns a flow, but not marked: refused here."""
    return Linear("unlisted", listed_step)
