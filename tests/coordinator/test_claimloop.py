"""The claim loop's waiting between polls, by what the backend declares: no
thread, no server; ``_idle`` is called directly on a loop that never starts."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from flowbaton.backends.base import Capability
from flowbaton.backends.memory import MemoryBackend
from flowbaton.coordinator.claimloop import _IDLE_SLICE, ClaimLoop, default_poll_interval
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
    assert backend.waits == [_IDLE_SLICE]  # news at once: one slice was enough


class Quiet(Declaring):
    """Nothing ever happens: each wait returns False, having slept its
    timeout; ``on_wait`` runs after each one (to stop the loop from inside)."""

    def __init__(self, *capabilities: Capability) -> None:
        super().__init__(*capabilities)
        self.on_wait: Callable[[], None] = lambda: None

    def wait_for_work(self, timeout: float) -> bool:
        self.waits.append(timeout)
        time.sleep(timeout)
        self.on_wait()
        return False


def test_a_long_idle_wait_is_sliced_so_a_stop_ends_it_within_one_slice() -> None:
    """A backend's wait sees neither a stop nor a wake-up, so the loop never
    hands it more than one slice: stopping an idle replica whose next poll
    is seconds away takes at most a slice, not the rest of the interval."""
    backend = Quiet(Capability.WATCH)
    loop = idle_loop(backend)
    backend.on_wait = lambda: loop.stop(join=False) if len(backend.waits) == 2 else None
    loop._idle(1.2)  # ends after the second slice: the stop came during it
    assert backend.waits == [_IDLE_SLICE, _IDLE_SLICE]


def test_slices_add_up_to_the_wait_asked_for() -> None:
    backend = Quiet(Capability.NOTIFY)
    idle_loop(backend)._idle(0.06)
    assert all(wait <= _IDLE_SLICE for wait in backend.waits)
    assert sum(backend.waits) == pytest.approx(0.06, abs=0.02)


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
