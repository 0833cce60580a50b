"""``flowbaton.aio``: the asyncio face of the API, on every backend. Its
calls run the backend off the loop (asserted by the thread each backend
call ran on, not by timing), and a replica started from a coroutine runs
sync and async tasks to the end."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest

import flowbaton
from flowbaton.backends.states import SUCCESS
from tests import async_flows as af

ALLOW = ["tests."]


def _record_threads(backend: Any, names: list[str], seen: list[int]) -> None:
    """Note the thread every call of ``names`` runs on."""
    for name in names:
        original: Callable[..., Any] = getattr(backend, name)

        def traced(*args: Any, _original: Callable[..., Any] = original, **kwargs: Any) -> Any:
            seen.append(threading.get_ident())
            return _original(*args, **kwargs)

        setattr(backend, name, traced)


def test_connect_start_submit_wait_never_touch_the_backend_on_the_loop(shared_backend_url: str) -> None:
    af.reset()
    seen: list[int] = []

    async def main() -> tuple[int, Any]:
        async with flowbaton.aio.connect(shared_backend_url, allow=ALLOW, lease=2.0) as coord:
            inner = await coord.coordinator()
            _record_threads(inner.backend, ["create_flow", "load_flow", "load_tasks", "register_replica"], seen)
            await coord.start(concurrency=2)
            flow_id = await coord.submit("tests.async_flows:mixed", kwargs={"start": 20})
            report = await coord.wait(flow_id, timeout=30)
            assert await coord.stop() is True
        return threading.get_ident(), report

    loop_thread, report = asyncio.run(main())
    assert report.state == SUCCESS and report.results["async-label"] == "v42"
    assert seen and loop_thread not in seen


def test_wait_times_out_on_the_loop(shared_backend_url: str) -> None:
    async def main() -> None:
        async with flowbaton.aio.connect(shared_backend_url, allow=ALLOW) as coord:
            flow_id = await coord.submit("tests.async_flows:mixed", kwargs={"start": 1})  # nobody runs it
            with pytest.raises(TimeoutError, match=flow_id):
                await coord.wait(flow_id, timeout=0.2)

    asyncio.run(main())


def test_run_runs_a_flow_of_async_tasks_to_its_end(tmp_path: Any) -> None:
    af.reset()
    report = asyncio.run(flowbaton.aio.run("tests.async_flows:mixed", kwargs={"start": 4},
                                           backend=f"sqlite:///{tmp_path}/aio.db"))
    assert report.state == SUCCESS and report.results == {"sync-first": 5, "async-double": 10,
                                                          "async-label": "v10"}
