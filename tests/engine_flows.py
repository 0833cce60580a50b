"""Factories and tasks the engine tests run (importable by subprocesses)."""

from __future__ import annotations

import asyncio
import functools
import json
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from flowbaton.engine import Flow, Graph, Linear, Task, Unordered, current_task, register_codec, task
from flowbaton.engine.task import FunctionTask

#: "async" (in the environment, so a test's subprocesses see it too): every
#: factory below builds its tasks as ``async def`` twins of the plain ones,
#: and the engine suite runs again through the task loop (tests/engine/conftest.py).
TASK_KIND = "FLOWBATON_TEST_TASKS"


def kind(*tasks: Task) -> list[Task]:
    """``tasks`` as they are, or as async twins when the suite asks."""
    if os.environ.get(TASK_KIND) != "async":
        return list(tasks)
    return [_async_twin(t) for t in tasks]


def _async_twin(original: Task) -> Task:
    """The same task (id, version, settings, inputs) with ``async def``
    calls: each yields to the loop once, then runs the plain body."""
    if isinstance(original, FunctionTask):
        twin: Task = object.__new__(FunctionTask)
        twin.__dict__.update(original.__dict__)
        fn, revert_fn = original.fn, original.revert_fn
        twin.fn = _awaiting(lambda: fn)  # type: ignore[attr-defined]
        if revert_fn is not None:
            twin.revert_fn = _awaiting(lambda: revert_fn)  # type: ignore[attr-defined]
    else:
        twin = object.__new__(_twin_class(type(original)))
        twin.__dict__.update(original.__dict__)
    Task.__init__(twin, **original._settings())
    assert twin.execute_is_async
    return twin


def _awaiting(plain: Callable[[], Callable[..., Any]]) -> Callable[..., Any]:
    """An ``async def`` twin of the function ``plain()`` returns, looked up
    at each call (a test may patch a class after its twin was made): it
    yields to the loop once, then runs the plain body."""
    @functools.wraps(plain())  # the plain signature: the same inputs are bound
    async def twin(*args: Any, **kwargs: Any) -> Any:
        await asyncio.sleep(0)  # a real suspension: the body runs after a turn of the loop
        return plain()(*args, **kwargs)

    return twin


@functools.cache
def _twin_class(cls: type[Task]) -> type[Task]:
    if cls is Sleeper:
        return AsyncSleeper
    namespace: dict[str, Any] = {"__module__": cls.__module__, "__qualname__": cls.__qualname__,
                                 "execute": _awaiting(lambda: cls.execute)}
    if cls.revert is not Task.revert:
        namespace["revert"] = _awaiting(lambda: cls.revert)
    return type(cls.__name__, (cls,), namespace)


def _ledger(event: str, path: str | None) -> None:
    if not path:
        return
    ctx = current_task()
    line = json.dumps({"event": event, "task": ctx.task_id, "attempt": ctx.attempt,
                       "in_doubt": ctx.in_doubt, "epoch": ctx.epoch, "pid": os.getpid()})
    with open(path, "a") as fh:
        fh.write(line + "\n")


@task(id="reserve-ip", provides="ip")
def reserve_ip(network: str, ledger: str | None = None) -> str:
    _ledger("execute", ledger)
    return f"10.0.0.{len(network)}"


@reserve_ip.revert
def release_ip(ip: str, network: str, ledger: str | None = None) -> None:
    _ledger("revert", ledger)


class BootVM(Task):
    id = "boot-vm"
    version = "2.0"
    provides = "vm"

    def execute(self, ip: str, image: str, ledger: str | None = None) -> dict[str, Any]:
        _ledger("execute", ledger)
        return {"ip": ip, "image": image}

    def revert(self, result: Any, ip: str, image: str, ledger: str | None = None) -> None:
        _ledger("revert", ledger)


def provision(network: str) -> Flow:
    return Linear("provision", *kind(reserve_ip, BootVM()))


@task(id="explode")
def explode(vm: dict[str, Any], ledger: str | None = None) -> None:
    _ledger("execute", ledger)
    raise RuntimeError("boom")


def provision_then_fail(network: str) -> Flow:
    return Linear("provision", *kind(reserve_ip, BootVM(), explode))


def _step(n: int) -> Task:
    return Step(id=f"step-{n}")


class Step(Task):
    """A numbered step; with ``pause`` it sleeps (tests kill the process mid-step from outside)."""

    def execute(self, ledger: str | None = None, pause: float = 0.0) -> str:
        ctx = current_task()
        _ledger("execute", ledger)
        if pause:
            time.sleep(pause)
        return ctx.task_id


def steps(count: int) -> Flow:
    return Linear("steps", *kind(*[_step(n) for n in range(count)]))


#: weak references to the tasks ``watched_steps`` built
BUILT: list[weakref.ref[Task]] = []


def watched_steps(count: int) -> Flow:
    """``steps``, whose tasks a test can watch being freed."""
    tasks = kind(*[_step(n) for n in range(count)])
    BUILT.extend(weakref.ref(t) for t in tasks)
    return Linear("steps", *tasks)




# --- a flow whose shape a test changes between runs, like a deploy would ---

DEPLOY: dict[str, Any] = {}
CALLS: list[str] = []


class Tracked(Task):
    """Records each call in CALLS; fails while its id is in DEPLOY['fail']."""

    def execute(self, **inputs: Any) -> str:
        ctx = current_task()
        CALLS.append(ctx.task_id)
        if ctx.task_id in DEPLOY.get("fail", ()):
            raise RuntimeError(f"{ctx.task_id} failed on purpose")
        return f"{ctx.task_id}@{self.task_version}"

    def revert(self, result: Any, **inputs: Any) -> None:
        CALLS.append(f"revert:{current_task().task_id}")
        if current_task().task_id in DEPLOY.get("revert_fail", ()):
            raise RuntimeError("revert failed on purpose")


def changing() -> Flow:
    """Tasks named in DEPLOY['ids'] (default a, b, c), versions from DEPLOY['versions'],
    policies from DEPLOY['policies']."""
    ids = DEPLOY.get("ids", ["a", "b", "c"])
    versions = DEPLOY.get("versions", {})
    policies = DEPLOY.get("policies", {})
    classes = DEPLOY.get("classes", {})
    return Linear("changing", *kind(*[
        classes.get(i, Tracked)(id=i, version=versions.get(i, "1.0"), on_version_change=policies.get(i, "fail"))
        for i in ids
    ]))


class RenamedTracked(Tracked):
    """What a refactor might turn a task class into; keeps its explicit id."""


def double(x: Any) -> Any:
    return f"migrated({x})"


# --- flows for run-loop tests ---


class Sleeper(Task):
    """Sleeps, and notes the peak number of Sleepers running at once."""

    active = 0
    peak = 0

    def execute(self, pause: float = 0.2) -> str:
        with _LOCK:
            Sleeper.active += 1
            Sleeper.peak = max(Sleeper.peak, Sleeper.active)
        time.sleep(pause)
        with _LOCK:
            Sleeper.active -= 1
        return current_task().task_id


_LOCK = threading.Lock()


class AsyncSleeper(Sleeper):
    """Sleeper's async twin: it sleeps on the loop, so twins overlap there."""

    async def execute(self, pause: float = 0.2) -> str:  # type: ignore[override]
        with _LOCK:
            Sleeper.active += 1
            Sleeper.peak = max(Sleeper.peak, Sleeper.active)
        await asyncio.sleep(pause)
        with _LOCK:
            Sleeper.active -= 1
        return current_task().task_id


def parallel(width: int) -> Flow:
    return Unordered("parallel", *kind(*[Sleeper(id=f"s{n}") for n in range(width)]))


class Flaky(Task):
    """Fails until its attempt number reaches DEPLOY['succeed_at'] (default 3)."""

    def execute(self) -> int:
        ctx = current_task()
        CALLS.append(f"{ctx.task_id}#{ctx.attempt}")
        if ctx.attempt < DEPLOY.get("succeed_at", 3):
            raise ConnectionError(f"attempt {ctx.attempt} fails")
        return ctx.attempt


def flaky(attempts: int) -> Flow:
    from tenacity import stop_after_attempt

    return Linear("flaky", *kind(Flaky(id="flaky", provides="value", retry=stop_after_attempt(attempts))))


def bad_result() -> Flow:
    return Linear("bad", *kind(BadResult(id="bad-result")))


class BadResult(Task):
    def execute(self) -> Any:
        import datetime

        return {"ok": [1, {"when": datetime.datetime(2026, 1, 1)}]}


def graph_flow() -> Flow:
    """a -> (b, c) -> d by data; e linked explicitly after d."""
    a = Tracked(id="a", provides="x")
    b = Join(id="b", requires=["x"], provides="y")
    c = Join(id="c", requires=["x"], provides="z")
    d = Join(id="d", requires=["y", "z"])
    e = Tracked(id="e")
    a, b, c, d, e = kind(a, b, c, d, e)
    return Graph("g", e, d, c, b, a).link(d, e)


class Join(Task):
    def execute(self, **inputs: Any) -> str:
        CALLS.append(current_task().task_id)
        return "+".join(f"{k}={inputs[k]}" for k in sorted(inputs))


class Stamp:
    """A type with a codec, for factory arguments."""

    def __init__(self, label: str) -> None:
        if label == "unreadable":
            raise ValueError("no stamp reads 'unreadable'")
        self.label = label


register_codec(Stamp, "test-stamp", lambda stamp: stamp.label, Stamp)


def unreadable_stamp() -> Stamp:
    """A stamp whose stored form its codec cannot read back."""
    stamp = Stamp("fine")
    stamp.label = "unreadable"
    return stamp


def stamped(stamp: Any, spec: Any) -> Flow:
    """Notes in CALLS what its arguments arrived as."""
    shape = sorted(spec) if isinstance(spec, dict) else type(spec).__name__
    CALLS.append(f"factory: {type(stamp).__name__} {getattr(stamp, 'label', stamp)!r} {shape}")
    return Linear("stamped", *kind(Tracked(id="a")))
