"""The claim loop's waiting between polls, by what the backend declares: no
thread, no server; ``_idle`` is called directly on a loop that never starts."""

from __future__ import annotations

import pytest

from flowbaton.backends.base import Capability
from flowbaton.backends.memory import MemoryBackend
from flowbaton.coordinator.claimloop import ClaimLoop, default_poll_interval
from flowbaton.coordinator.skiplist import SkipList


class Declaring(MemoryBackend):
    """A memory backend declaring the given capabilities; ``wait_for_work``
    returns at once and remembers each timeout it was asked to wait."""

    def __init__(self, *capabilities: Capability) -> None:
        super().__init__()
        self.capabilities = frozenset(capabilities)  # type: ignore[misc]
        self.waits: list[float] = []

    def wait_for_work(self, timeout: float) -> bool:
        self.waits.append(timeout)
        return True


def idle_loop(backend: Declaring, free: int = 1) -> ClaimLoop:
    return ClaimLoop(backend, "me", 2.0, skips=SkipList(), free_slots=lambda: free, running=set,
                     launch=lambda claim, prepared: True, poll_interval=0.1)


@pytest.mark.parametrize("capability", [Capability.WATCH, Capability.NOTIFY])
def test_a_backend_that_wakes_on_news_is_waited_on_between_polls(capability: Capability) -> None:
    backend = Declaring(capability)
    idle_loop(backend)._idle(5.0)
    assert backend.waits == [5.0]


def test_a_full_replica_or_a_silent_backend_waits_on_its_own_event() -> None:
    notifying, silent = Declaring(Capability.NOTIFY), Declaring(Capability.SHARED)
    idle_loop(notifying, free=0)._idle(0.01)  # no slot: news would not help
    idle_loop(silent)._idle(0.01)
    assert notifying.waits == [] and silent.waits == []


def test_a_wake_up_skips_the_wait() -> None:
    backend = Declaring(Capability.NOTIFY)
    loop = idle_loop(backend)
    loop.wake()
    loop._idle(5.0)
    assert backend.waits == []


@pytest.mark.parametrize(("capabilities", "interval", "short"), [
    ((Capability.WATCH,), 5.0, 0.2),  # every change is announced, a lease running out included
    ((Capability.NOTIFY,), 0.25, 0.1),  # a lease running out is not: polling must find it
    ((Capability.SHARED,), 0.25, 0.1),
])
def test_only_a_watching_backend_may_poll_rarely(capabilities: tuple[Capability, ...], interval: float,
                                                 short: float) -> None:
    assert default_poll_interval(10.0, Declaring(*capabilities)) == interval
    assert default_poll_interval(0.4, Declaring(*capabilities)) == short  # a short lease: a part of it
