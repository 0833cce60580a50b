"""Factories: the saved name of the code that rebuilds a flow.

A flow is stored as ``"package.module:qualname"`` plus JSON arguments, so
any replica running today's code can rebuild it. Names come back from shared
storage, which makes them untrusted input: whoever can write the store must
not be able to pick *which code* runs, only which of the service's factories.

The rule, applied wherever a stored or given name is resolved (replicas,
``plan``, ``submit``, ``retry``, ``flowbaton.run``):

1. the module is under an allowed prefix, or the whole name is listed
   exactly (an ``allow`` entry with a ``:``), checked *before* importing;
2. no part of the name starts with ``_`` (private helpers, dunders such as
   ``__init__`` or ``__globals__`` are never reachable);
3. the qualname is looked up without ``getattr`` chains through foreign
   objects: its first part in the module's own namespace, each further part
   only on a class *defined in that module*; never through another module or
   an instance;
4. what it reaches is a function, class or classmethod/staticmethod whose
   ``__module__`` and ``__qualname__`` are exactly the name (so a function
   imported from elsewhere, ``from os import system``, is refused), or a
   module-level callable object whose class is defined in that module;
5. a module that marks any factory with :func:`factory` is closed: only its
   marked factories resolve from it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import Any, TypeVar

from .codec import encode
from .errors import FactoryError, FactoryNotAllowed
from .patterns import Flow

__all__ = [
    "factory",
    "factory_name",
    "factory_module",
    "check_factory_syntax",
    "check_allowed",
    "load_factory",
    "build_flow",
    "check_arguments",
]

Factory = Callable[..., Flow]
F = TypeVar("F")

# module name -> qualnames marked with @factory in it (filled at import time)
_REGISTRY: dict[str, set[str]] = {}


def _split(name: str) -> tuple[str, str]:
    module, sep, qualname = name.partition(":")
    ok = sep and module and qualname and all(p.isidentifier() for p in module.split("."))
    if not ok or not all(p.isidentifier() for p in qualname.split(".")):
        raise FactoryError(f"factory name {name!r} must look like 'package.module:function'")
    private = [p for p in (*module.split("."), *qualname.split(".")) if p.startswith("_")]
    if private:
        # Private helpers and dunders (__init__, __globals__, __builtins__)
        # are how a name walks out of the service's chosen factories.
        raise FactoryError(f"factory name {name!r}: {private[0]!r} starts with '_'; "
                           "factories must be public names")
    return module, qualname


def check_factory_syntax(name: str) -> str:
    """``name`` if it is a saveable factory name by its form alone
    (``package.module:function``, public parts), without importing anything:
    a flow submitted by name is validated by the replicas that import it."""
    _split(name)
    return name


def factory_module(name: str) -> str:
    """The module of a saved factory name: ``"pkg.mod:fn"`` -> ``"pkg.mod"``
    (tolerant: stored names are untrusted and may be malformed)."""
    return name.partition(":")[0]


def factory(fn: F) -> F:
    """Mark ``fn`` as a factory replicas may rebuild flows with.

    A module that marks any factory becomes a closed list: only its marked
    functions (or classes, classmethods) resolve from it, so a helper that
    happens to return a flow is never reachable from a stored name."""
    target: Any = fn.__func__ if isinstance(fn, (classmethod, staticmethod)) else fn
    why = _why_unsaveable(target)
    if why:
        raise FactoryError(f"@flowbaton.factory on {fn!r}: {why}")
    module, qualname = _split(f"{target.__module__}:{target.__qualname__}")
    _REGISTRY.setdefault(module, set()).add(qualname)
    return fn


def _why_unsaveable(fn: Any) -> str | None:
    """A reason a callable cannot be found again by name, or None."""
    qualname = str(getattr(fn, "__qualname__", None) or getattr(type(fn), "__qualname__", ""))
    if getattr(fn, "__name__", "") == "<lambda>":
        return "it is a lambda; define a module-level function"
    if inspect.iscoroutinefunction(fn):
        return "it is async def; a factory builds its flow synchronously (its tasks may be async def)"
    if "<locals>" in qualname:
        return "it is defined inside a function; move it to module level"
    if getattr(fn, "__closure__", None):
        return "it is a closure (captures local variables); pass them as JSON arguments"
    if inspect.ismethod(fn) and not inspect.isclass(fn.__self__):
        return "it is a method bound to an object; use a module-level function or classmethod"
    return None


def factory_name(factory: str | Callable[..., Any]) -> str:
    """The saved name of ``factory`` (a callable or a name), after checking
    that the name imports back to the very same object by the rule every
    replica applies (so nothing is stored that no replica would run)."""
    if isinstance(factory, str):
        obj = _resolve(factory)
        name = factory
    else:
        why = _why_unsaveable(factory)
        if why:
            raise FactoryError(f"factory {factory!r} cannot be saved by name: {why}")
        name = f"{factory.__module__}:{factory.__qualname__}"
        obj = _resolve(name)
        if obj is not factory and obj != factory:
            raise FactoryError(
                f"factory {factory!r} is saved as {name!r}, but that name imports "
                f"{obj!r}, a different object"
            )
    why = _why_unsaveable(obj)
    if why:
        raise FactoryError(f"factory {name!r} cannot be saved by name: {why}")
    if not callable(obj):
        raise FactoryError(f"factory {name!r} is {type(obj).__name__}, not callable")
    return name


def _resolve(name: str) -> Any:
    """The object ``name`` names, by rules 2-5 of the module docstring.
    Imports the module (the caller checked the allow-list first) and calls
    nothing else: every lookup is static until the last part."""
    module_name, qualname = _split(name)
    try:
        module = importlib.import_module(module_name)
    except Exception as err:
        raise FactoryError(f"factory {name!r}: cannot import module {module_name!r}: {err}") from err
    obj = _walk(module, module_name, qualname, name)
    _check_defined_here(obj, module_name, qualname, name)
    _check_registered(module_name, qualname, name)
    return obj


def _walk(module: ModuleType, module_name: str, qualname: str, name: str) -> Any:
    """Follow ``qualname`` from the module's own namespace through classes
    defined in that module only."""
    parts = qualname.split(".")
    obj = _member(vars(module), parts[0], module_name, name)
    for depth, part in enumerate(parts[1:], start=1):
        owner = ".".join(parts[:depth])
        if not (inspect.isclass(obj) and _defined_as(obj, module_name, owner)):
            raise FactoryError(f"factory {name!r}: {module_name}.{owner} is {_kind(obj)}, not a class "
                               f"defined in {module_name}; a dotted factory name may only go through "
                               "such classes (Class.classmethod)")
        raw = _member(_class_namespace(obj), part, module_name, name)
        obj = _class_member(obj, raw, name)
    return obj


def _class_member(cls: type, raw: Any, name: str) -> Any:
    """A classmethod bound to its class, a staticmethod's function, or a
    nested class; a plain method is refused (its ``self`` would be the
    first stored argument)."""
    if isinstance(raw, (classmethod, staticmethod)):
        return raw.__get__(None, cls)
    if inspect.isclass(raw):
        return raw
    raise FactoryError(f"factory {name!r} is {_kind(raw)} in class {cls.__qualname__}, not a classmethod or "
                       "staticmethod; a dotted factory name may only end in one of those")


def _class_namespace(cls: type) -> dict[str, Any]:
    """A class's own attributes, without inherited ones (an inherited method
    is defined elsewhere) and without calling descriptors or metaclasses."""
    return dict(vars(cls))


def _member(namespace: dict[str, Any], part: str, module_name: str, name: str) -> Any:
    if part not in namespace:
        raise FactoryError(f"factory {name!r}: {module_name} has no {name.partition(':')[2]!r}")
    return namespace[part]


def _defined_as(obj: Any, module_name: str, qualname: str) -> bool:
    return getattr(obj, "__module__", None) == module_name and getattr(obj, "__qualname__", None) == qualname


def _check_defined_here(obj: Any, module_name: str, qualname: str, name: str) -> None:
    """Rule 4: a function or class that says it *is* ``module:qualname``, or
    a module-level callable object of a class defined in the module."""
    if (inspect.isfunction(obj) or inspect.isclass(obj) or _is_classmethod(obj)) \
            and _defined_as(obj, module_name, qualname):
        return
    if "." not in qualname and _is_local_callable_object(obj, module_name):
        return
    where = getattr(obj, "__module__", None)
    raise FactoryError(f"factory {name!r} is {_kind(obj)}"
                       + (f" defined in {where}" if where and where != module_name else "")
                       + f", not a function or class defined in {module_name}; "
                       "only those (and classmethods of its classes) can be factories")


def _is_classmethod(obj: Any) -> bool:
    return inspect.ismethod(obj) and inspect.isclass(obj.__self__)


def _is_local_callable_object(obj: Any, module_name: str) -> bool:
    """An instance with ``__call__`` whose class the module defines itself."""
    cls = type(obj)
    return (not inspect.isroutine(obj) and not isinstance(obj, ModuleType) and callable(obj)
            and cls.__module__ == module_name)


def _check_registered(module_name: str, qualname: str, name: str) -> None:
    """Rule 5: a module using ``@flowbaton.factory`` lists its factories."""
    marked = _REGISTRY.get(module_name)
    if marked is not None and qualname not in marked:
        raise FactoryNotAllowed(f"factory {name!r} is not marked @flowbaton.factory, and {module_name} "
                                f"marks its factories ({', '.join(sorted(marked))})")


def _kind(obj: Any) -> str:
    if isinstance(obj, ModuleType):
        return f"module {obj.__name__}"
    if inspect.isclass(obj):
        return f"class {obj.__module__}.{obj.__qualname__}"
    return type(obj).__name__


def check_allowed(name: str, allow: Sequence[str] | None) -> None:
    """Refuse ``name`` unless an ``allow`` entry admits it, before anything
    is imported. An entry with a ``:`` is one exact factory name (a closed
    list); else a module prefix: ``"svc."`` allows ``svc.flows``, ``"svc"``
    allows ``svc`` and ``svc.*``. ``None`` admits any module (trusted
    callers: a name given in code, not read from the store)."""
    module, _ = _split(name)
    if allow is None:
        return
    if any(_admits(entry, name, module) for entry in allow):
        return
    # "svc." admits the modules under svc; a top-level module needs its own name.
    hint = f"{module.split('.')[0]}." if "." in module else module
    raise FactoryNotAllowed(
        f"factory {name!r} is not under this replica's allowed prefixes "
        f"({', '.join(allow) or 'none'}); allow it with --allow {hint}"
    )


def _admits(entry: str, name: str, module: str) -> bool:
    if ":" in entry:
        return entry == name
    stem = entry.rstrip(".")
    return (module == stem and not entry.endswith(".")) or module.startswith(stem + ".")


def load_factory(name: str, allow: Sequence[str] | None) -> Factory:
    """Import a stored factory name by the module docstring's rule, checking
    ``allow`` before importing. Raises ``FactoryNotAllowed`` or
    ``FactoryError`` (a replica declines the flow) having called nothing."""
    check_allowed(name, allow)
    obj = _resolve(name)
    if not callable(obj):
        raise FactoryError(f"factory {name!r} is {type(obj).__name__}, not callable")
    return obj  # type: ignore[no-any-return]


def check_arguments(args: Sequence[Any], kwargs: dict[str, Any], name: str) -> tuple[list[Any], dict[str, Any]]:
    """Arguments must be plain JSON: they are stored and replayed elsewhere."""
    plain_args = encode(list(args), f"factory {name!r} args")
    plain_kwargs = encode(dict(kwargs), f"factory {name!r} kwargs")
    return plain_args, plain_kwargs


def build_flow(factory: Factory, name: str, args: Sequence[Any], kwargs: dict[str, Any]) -> Flow:
    """Call the factory; anything but a Flow back is an error naming it."""
    if inspect.iscoroutinefunction(factory):
        raise FactoryError(f"factory {name!r} is async def: a factory builds its flow synchronously "
                           "(the flow's tasks may be async def)")
    try:
        flow = factory(*args, **kwargs)
    except Exception as err:
        raise FactoryError(f"factory {name!r} raised {type(err).__name__}: {err}") from err
    if not isinstance(flow, Flow):
        raise FactoryError(
            f"factory {name!r} returned {type(flow).__name__}, not a flow (Linear, Unordered or Graph)"
        )
    return flow
