"""Test-side helpers over ``flowbaton.testing.servers``: a server that
cannot be started fails the test (never a skip: a CI run without ZooKeeper
or Redis must not look green), and the one condition wait the tests use."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import pytest

from flowbaton.testing.servers import ServerError, wait_until

__all__ = ["failing", "until"]

_T = TypeVar("_T")


@contextmanager
def failing() -> Iterator[None]:
    """A server that cannot be started fails the test, with the reason."""
    try:
        yield
    except ServerError as err:
        pytest.fail(str(err))


def until(check: Callable[[], _T], timeout: float = 5.0, what: str = "condition", interval: float = 0.02) -> _T:
    """Poll ``check`` until it returns something truthy (returned); the test
    fails naming ``what`` after ``timeout`` seconds."""
    with failing():
        return wait_until(check, timeout, what, interval)
