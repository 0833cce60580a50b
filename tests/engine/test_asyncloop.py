"""Who runs the task loop (engine/asyncloop.py): a runner borrowing it to
start a call, or the keeper thread while calls wait; one loop either way."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from flowbaton.engine import asyncloop
from flowbaton.engine.asyncloop import AsyncCall, TaskCancelled, call_on_task_loop, event_loop, start_call
from tests.servers import until

KEEPER = "flowbaton-async-tasks"


@pytest.fixture(autouse=True)
def own_task_loop(monkeypatch: pytest.MonkeyPatch) -> None:
    """A task loop of the test's own. Tasks that earlier tests left on the
    process's loop keep its keeper running it, and while it does every call
    is handed over: what these tests say about borrowing would not hold."""
    monkeypatch.setattr(asyncloop, "_task_loop", asyncloop._TaskLoop())


def outcome_of(call: AsyncCall, timeout: float = 10.0) -> Any:
    """The call's result, whether it ended inside ``start_call`` or later."""
    if call.outcome is None:
        return call.future.result(timeout)
    result, error = call.outcome
    if error is not None:
        raise error
    return result


def test_a_call_that_never_suspends_ends_on_the_calling_thread_inside_start_call() -> None:
    async def where() -> tuple[int, asyncio.AbstractEventLoop]:
        return threading.get_ident(), asyncio.get_running_loop()

    call = start_call(where, None, "inline")
    assert call.outcome is not None  # over before start_call returned: no thread switch
    assert outcome_of(call) == (threading.get_ident(), event_loop())


def test_a_call_that_waits_is_finished_by_the_keeper() -> None:
    async def sleepy() -> str:
        await asyncio.sleep(0.05)
        return threading.current_thread().name

    call = start_call(sleepy, None, "sleepy")
    assert call.outcome is None
    assert outcome_of(call) == KEEPER


def test_tasks_a_call_leaves_behind_still_run_after_it_ended() -> None:
    done = threading.Event()

    async def later() -> None:
        await asyncio.sleep(0.05)
        done.set()

    async def spawner() -> str:
        background.append(asyncio.create_task(later()))  # kept referenced, as asyncio asks
        return "spawned"

    background: list[asyncio.Task[None]] = []
    call = start_call(spawner, None, "spawner")
    assert call.outcome == ("spawned", None)
    assert done.wait(10), "the task the call left behind never ran"


def test_calls_from_many_threads_share_one_loop_and_what_is_bound_to_it() -> None:
    queue: asyncio.Queue[int] | None = None

    async def use_queue(n: int) -> int:
        nonlocal queue
        if queue is None:
            queue = asyncio.Queue()  # bound to the first loop that uses it
        await queue.put(n)
        if n % 2:
            await asyncio.sleep(0.01)  # some calls wait, so the keeper runs them
        return await queue.get()

    with ThreadPoolExecutor(8) as pool:
        calls = list(pool.map(lambda n: start_call(lambda: use_queue(n), None, f"q{n}"), range(64)))
    results = sorted(outcome_of(call) for call in calls)
    assert results == list(range(64))  # a Queue used from a second loop would raise


def test_a_thread_running_its_own_loop_hands_the_call_over() -> None:
    async def loop_of_call() -> asyncio.AbstractEventLoop:
        return asyncio.get_running_loop()

    async def host() -> asyncio.AbstractEventLoop:
        call = start_call(loop_of_call, None, "from-a-loop")  # may not run a loop inside this one
        assert call.outcome is None
        return await asyncio.wrap_future(call.future)

    assert asyncio.run(host()) is event_loop()


def test_a_call_cancelled_while_it_waits_unwinds_and_ends_cancelled() -> None:
    unwound = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            unwound.set()

    call = start_call(forever, None, "forever")
    call.cancel()
    with pytest.raises(TaskCancelled):
        outcome_of(call)
    assert unwound.is_set()  # the future ends only after the coroutine unwound


def test_a_call_cancelled_before_it_started_never_runs() -> None:
    ran = threading.Event()
    holding = threading.Event()
    hold = threading.Event()

    async def blocker() -> None:
        await asyncio.sleep(0.01)  # the keeper runs the rest
        holding.set()
        hold.wait(10)  # holds the loop (as blocking task code would) while the next call is cancelled

    async def victim() -> None:
        ran.set()

    first = start_call(blocker, None, "blocker")
    assert holding.wait(10)
    second = start_call(victim, None, "victim")  # the loop is busy: handed over, not started yet
    second.cancel()
    hold.set()
    with pytest.raises(TaskCancelled):
        outcome_of(second)
    outcome_of(first)
    assert not ran.is_set()


def test_a_callback_handed_to_the_idle_loop_runs() -> None:
    seen: list[str] = []
    call_on_task_loop(lambda: seen.append(threading.current_thread().name))
    until(lambda: seen == [KEEPER], timeout=10)
