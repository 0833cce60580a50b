"""Tasks: units of work with a stable id, a version, data needs and a policy.

A task's id is what ties it to its stored detail across restarts and
deploys, so it must not depend on anything but the code: the explicit
``id`` if given, else the callable's ``module.qualname``. It must be
storable everywhere, so it is checked at definition (``_check_id``).
"""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar, Union, cast, overload

from tenacity.stop import stop_base, stop_never
from tenacity.wait import wait_base, wait_none

from ..backends.errors import DefinitionError
from .timeouts import check_timeout

__all__ = ["Task", "FunctionTask", "task", "Retry", "VersionPolicy", "POLICIES", "major_of"]

VersionPolicy = Union[str, Callable[[Any], Any]]  # noqa: UP007 - runtime alias on 3.10
POLICIES = ("rerun", "reuse", "fail")
_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Retry:
    """When to try a failed task again: tenacity ``stop`` and ``wait`` values,
    and which exceptions count (others fail the task at once)."""

    stop: stop_base = stop_never
    wait: wait_base = wait_none()  # noqa: RUF009 - tenacity strategies are immutable values
    on: tuple[type[BaseException], ...] = (Exception,)


def _as_retry(value: Retry | stop_base | None) -> Retry | None:
    if value is None or isinstance(value, Retry):
        return value
    if isinstance(value, stop_base):
        return Retry(stop=value)
    raise DefinitionError(f"retry= takes flowbaton.Retry or a tenacity stop, not {value!r}")


def major_of(version: str) -> str:
    """``"2.1"`` -> ``"2"``; the part whose change triggers the version policy."""
    return version.split(".", 1)[0]


def _check_version(version: object, where: str) -> str:
    parts = str(version).split(".")
    if not isinstance(version, str) or len(parts) != 2 or not all(p.isdigit() for p in parts):
        raise DefinitionError(f"{where}: version must look like 'major.minor', got {version!r}")
    return version


#: The longest task id: every backend stores it in a key or path (escaped,
#: up to 12 bytes a character on ZooKeeper), and people read it in tables.
MAX_TASK_ID = 200
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _check_id(task_id: object, where: str) -> None:
    """A task id every backend can store and a terminal can show: a non-empty
    str of at most ``MAX_TASK_ID`` characters, valid UTF-8 (no lone
    surrogate), no control character."""
    if not isinstance(task_id, str) or not task_id:
        raise DefinitionError(f"{where}: task id must be a non-empty string, got {task_id!r}")
    if len(task_id) > MAX_TASK_ID:
        raise DefinitionError(f"{where}: task id {task_id[:40]!r}... has {len(task_id)} characters, "
                              f"at most {MAX_TASK_ID}")
    try:
        task_id.encode("utf-8")
    except UnicodeEncodeError:
        raise DefinitionError(f"{where}: task id {task_id!r} is not valid Unicode text (a lone surrogate)") from None
    if _CONTROL.search(task_id):
        raise DefinitionError(f"{where}: task id {task_id!r} holds a control character")


def _check_policy(policy: object, where: str) -> VersionPolicy:
    if callable(policy) and _is_async(policy):
        raise DefinitionError(f"{where}: on_version_change {policy!r} is async; a migration runs while the "
                              "flow is planned, before any task, and must be a plain function")
    if callable(policy) or policy in POLICIES:
        return cast(VersionPolicy, policy)
    raise DefinitionError(
        f"{where}: on_version_change must be one of {', '.join(POLICIES)} or a callable, not {policy!r}"
    )


def _is_async(fn: object) -> bool:
    return _kind_of(fn) == "async"


def _check_callable(fn: object, what: str, where: str) -> None:
    """A task's execute or revert: a plain or an ``async def`` function,
    never a generator (its body would never run)."""
    kind = _kind_of(fn)
    if kind in ("generator", "async generator"):
        raise DefinitionError(f"{where}: {what} is {'an' if kind[0] == 'a' else 'a'} {kind} function; a task "
                              "calls a function (plain or async def) and stores what it returns")


def _kind_of(fn: object) -> str:
    target = getattr(fn, "__func__", fn)  # a bound method: its function, one cache entry per class
    try:
        return _kind(target)
    except TypeError:  # an unhashable callable object
        return _kind.__wrapped__(target)


@functools.lru_cache(maxsize=4096)  # per function, not per task built: a takeover builds hundreds of flows
def _kind(fn: object) -> str:
    if inspect.isasyncgenfunction(fn):
        return "async generator"
    if inspect.isgeneratorfunction(fn):
        return "generator"
    return "async" if inspect.iscoroutinefunction(fn) else "plain"


def _provides_tuple(provides: str | Sequence[str] | None) -> tuple[str, ...]:
    if provides is None:
        return ()
    if isinstance(provides, str):
        return (provides,)
    return tuple(provides)


def signature_needs(fn: Callable[..., Any], skip: int = 0) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(required, optional) parameter names of ``fn``; the first ``skip``
    positional parameters are not data (``self``, ``result``)."""
    if inspect.ismethod(fn):  # one cache entry per class, not per instance
        return _needs(fn.__func__, skip + 1)
    return _needs(fn, skip)


@functools.lru_cache(maxsize=4096)
def _needs(fn: Callable[..., Any], skip: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    params = list(inspect.signature(fn).parameters.values())[skip:]
    kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = [p for p in params if p.kind in kinds]
    required = tuple(p.name for p in named if p.default is inspect.Parameter.empty)
    optional = tuple(p.name for p in named if p.default is not inspect.Parameter.empty)
    return required, optional


class Task:
    """Subclass and define ``execute(**inputs)`` (and optionally
    ``revert(result, **inputs)``). Class attributes give the defaults;
    constructor keywords override them per instance."""

    id: ClassVar[str | None] = None
    version: ClassVar[str] = "1.0"
    provides: ClassVar[str | Sequence[str] | None] = None
    requires: ClassVar[Sequence[str] | None] = None
    retry: ClassVar[Retry | stop_base | None] = None
    on_version_change: ClassVar[VersionPolicy] = "fail"
    #: seconds one execute (or revert) call may take; None: the replica's
    #: ``task_timeout``; ``math.inf``: no bound. See ``FlowRun`` for what a
    #: timeout does to a thread Python cannot stop.
    timeout: ClassVar[float | None] = None

    def __init__(
        self,
        *,
        id: str | None = None,
        version: str | None = None,
        provides: str | Sequence[str] | None = None,
        requires: Sequence[str] | None = None,
        retry: Retry | stop_base | None = None,
        on_version_change: VersionPolicy | None = None,
        timeout: float | None = None,
    ) -> None:
        where = self._where()
        given_id = id if id is not None else type(self).id
        self.task_id: str = given_id if given_id is not None else self._default_id()
        _check_id(self.task_id, where)
        self.task_version = _check_version(version or type(self).version, where)
        self.task_provides = _provides_tuple(provides if provides is not None else type(self).provides)
        self.task_retry = _as_retry(retry if retry is not None else type(self).retry)
        self.task_policy = _check_policy(on_version_change or type(self).on_version_change, where)
        self.task_timeout = check_timeout(timeout if timeout is not None else type(self).timeout, where)
        self._requires_override = requires if requires is not None else type(self).requires
        self._init_needs()

    # -- what subclasses define ------------------------------------------

    def execute(self, **inputs: Any) -> Any:
        """Do the task's work; every subclass defines it, as a plain or an
        ``async def`` method. Its parameters are its inputs, bound by name
        from the flow's inputs and what earlier tasks provide; what it
        returns is stored as the task's result (plain JSON, or a type with a
        registered codec) and given to later tasks under the ``provides``
        names. It may run more than once (a retry, a takeover): the
        idempotency key of ``current_task()`` lets its side effects happen once."""
        raise NotImplementedError(f"{type(self).__qualname__}.execute")

    def revert(self, result: Any, **inputs: Any) -> None:
        """Undo ``execute``; the default has nothing to undo."""

    # -- what the engine uses --------------------------------------------

    def _init_needs(self) -> None:
        required, optional = signature_needs(self.execute)
        if self._requires_override is not None:
            required = tuple(self._requires_override)
        self.task_requires: tuple[str, ...] = required
        self.task_optional: tuple[str, ...] = optional
        # A class task's revert gets the result as its first argument, whatever its name.
        self.revert_needs: tuple[str, ...] = sum(signature_needs(self.revert, skip=1), ())
        where = self._where()
        _check_callable(self.execute, "execute", where)
        _check_callable(self.revert, "revert", where)
        #: ``async def`` calls run on the task loop (``asyncloop``), others on threads
        self.execute_is_async: bool = _is_async(self.execute)
        self.revert_is_async: bool = _is_async(self.revert)

    def _default_id(self) -> str:
        cls = type(self)
        return f"{cls.__module__}.{cls.__qualname__}"

    def _where(self) -> str:
        cls = type(self)
        return f"task class {cls.__module__}.{cls.__qualname__}"

    def location(self) -> str:
        """Where the task is defined, for error messages."""
        code = getattr(self.execute, "__code__", None)
        if code is None:
            return self._where()
        return f"{code.co_filename}:{code.co_firstlineno}"

    @property
    def has_revert(self) -> bool:
        """Whether the task defines an undo. A revert of the flow calls only
        those that do; a task without one is marked REVERTED as it is."""
        return type(self).revert is not Task.revert

    def run_execute(self, kwargs: dict[str, Any]) -> Any:
        """What the engine calls to run the task: ``execute`` with the bound
        inputs; its result, or the coroutine of an ``async def`` one."""
        return self.execute(**kwargs)

    def run_revert(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        """The revert's return: None, or the coroutine of an ``async def`` one."""
        return self.revert(*args, **kwargs)

    def clone(self, **overrides: Any) -> Task:
        """A copy with other settings, e.g. the same function twice in one
        flow under two ids: ``reserve_ip.clone(id="reserve-ip-2")``."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        Task.__init__(copy, **{**self._settings(), **overrides})
        return copy

    def _settings(self) -> dict[str, Any]:
        return {
            "id": self.task_id,
            "version": self.task_version,
            "provides": self.task_provides,
            "requires": self._requires_override,
            "retry": self.task_retry,
            "on_version_change": self.task_policy,
            "timeout": self.task_timeout,
        }

    def __repr__(self) -> str:
        return f"<task {self.task_id} v{self.task_version}>"


class FunctionTask(Task):
    """A task made from a function by ``@task``; still callable as the function."""

    def __init__(self, fn: Callable[..., Any], **settings: Any) -> None:
        self.fn = fn
        self.revert_fn: Callable[..., Any] | None = None
        super().__init__(**settings)

    def _default_id(self) -> str:
        return f"{self.fn.__module__}.{self.fn.__qualname__}"

    def _where(self) -> str:
        return f"task {self.fn.__module__}.{self.fn.__qualname__}"

    def _init_needs(self) -> None:
        required, optional = signature_needs(self.fn)
        if self._requires_override is not None:
            required = tuple(self._requires_override)
        self.task_requires = required
        self.task_optional = optional
        self.revert_needs = sum(signature_needs(self.revert_fn), ()) if self.revert_fn else ()
        _check_callable(self.fn, "the function", self._where())
        self.execute_is_async = _is_async(self.fn)
        self.revert_is_async = _is_async(self.revert_fn)

    def execute(self, **inputs: Any) -> Any:
        return self.fn(**inputs)

    def location(self) -> str:
        code = self.fn.__code__
        return f"{code.co_filename}:{code.co_firstlineno}"

    @property
    def has_revert(self) -> bool:
        return self.revert_fn is not None

    def run_revert(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        return self.revert_fn(*args, **kwargs) if self.revert_fn is not None else None

    def revert(self, fn: _F) -> _F:  # type: ignore[override]
        """Decorator: register ``fn`` as this task's undo. Its parameters are
        bound by name: ``result`` (or a ``provides`` name) gets the result,
        ``failure`` the failure when the task itself failed, others inputs."""
        _check_callable(fn, "revert", self._where())
        self.revert_fn = fn
        self.revert_needs = sum(signature_needs(fn), ())
        self.revert_is_async = _is_async(fn)
        return fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


@overload
def task(
    fn: Callable[..., Any],
    /,
    *,
    id: str | None = None,
    version: str = "1.0",
    provides: str | Sequence[str] | None = None,
    requires: Sequence[str] | None = None,
    retry: Retry | stop_base | None = None,
    on_version_change: VersionPolicy = "fail",
    timeout: float | None = None,
) -> FunctionTask: ...


@overload
def task(
    fn: None = None,
    /,
    *,
    id: str | None = None,
    version: str = "1.0",
    provides: str | Sequence[str] | None = None,
    requires: Sequence[str] | None = None,
    retry: Retry | stop_base | None = None,
    on_version_change: VersionPolicy = "fail",
    timeout: float | None = None,
) -> Callable[[Callable[..., Any]], FunctionTask]: ...


def task(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    id: str | None = None,
    version: str = "1.0",
    provides: str | Sequence[str] | None = None,
    requires: Sequence[str] | None = None,
    retry: Retry | stop_base | None = None,
    on_version_change: VersionPolicy = "fail",
    timeout: float | None = None,
) -> FunctionTask | Callable[[Callable[..., Any]], FunctionTask]:
    """Make a function a task: ``@task`` or ``@task(id=..., provides=...)``.
    ``timeout`` bounds each call in seconds (see ``Task.timeout``)."""
    settings = {
        "id": id,
        "version": version,
        "provides": provides,
        "requires": requires,
        "retry": retry,
        "on_version_change": on_version_change,
        "timeout": timeout,
    }

    def wrap(func: Callable[..., Any]) -> FunctionTask:
        if not callable(func):
            raise DefinitionError(f"@task decorates a function, not {func!r}")
        return FunctionTask(func, **settings)

    return wrap(fn) if fn is not None else wrap
