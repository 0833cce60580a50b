"""Test doubles for the coordinator's unit tests: an injectable clock and a
memory backend that can act like a session backend or a slow one."""

from __future__ import annotations

from collections.abc import Callable

from flowbaton.backends.base import Capability, StateListener
from flowbaton.backends.errors import BackendUnavailable
from flowbaton.backends.memory import MemoryBackend
from flowbaton.backends.records import ClaimToken


class FakeClock:
    """Monotonic and wall clock at once; moves only when told."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class StubBackend(MemoryBackend):
    """Memory backend whose renewals can be delayed or fail, and that can
    announce session events like ZooKeeper's driver does."""

    capabilities = frozenset({Capability.WATCH, Capability.SESSION})

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(clock=clock)
        self.fake_clock = clock
        self.listeners: list[StateListener] = []
        self.renew_delay = 0.0
        self.renew_error: Callable[[], Exception] | None = None
        self.renewals = 0

    def add_state_listener(self, listener: StateListener) -> None:
        self.listeners.append(listener)

    def emit(self, state: str) -> None:
        for listener in self.listeners:
            listener(state)

    def renew(self, token: ClaimToken, lease: float) -> None:
        self.renewals += 1
        self.fake_clock.advance(self.renew_delay)
        if self.renew_error is not None:
            raise self.renew_error()
        super().renew(token, lease)


def unavailable() -> Exception:
    return BackendUnavailable("stub: backend down")
