"""Factories: the saved name of the code that rebuilds a flow.

A flow is stored as ``"package.module:qualname"`` plus JSON arguments, so
any replica running today's code can rebuild it. Names come back from shared
storage, which makes them untrusted input: only modules under the replica's
allowed prefixes are ever imported.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Sequence
from typing import Any

from ..backends.errors import FactoryError, FactoryNotAllowed
from .codec import encode
from .patterns import Flow

__all__ = ["factory_name", "factory_module", "check_allowed", "load_factory", "build_flow", "check_arguments"]

Factory = Callable[..., Flow]


def _split(name: str) -> tuple[str, str]:
    module, sep, qualname = name.partition(":")
    ok = sep and module and qualname and all(p.isidentifier() for p in module.split("."))
    if not ok or not all(p.isidentifier() for p in qualname.split(".")):
        raise FactoryError(f"factory name {name!r} must look like 'package.module:function'")
    return module, qualname


def factory_module(name: str) -> str:
    """The module of a saved factory name: ``"pkg.mod:fn"`` -> ``"pkg.mod"``
    (tolerant: stored names are untrusted and may be malformed)."""
    return name.partition(":")[0]


def _why_unsaveable(fn: Any) -> str | None:
    """A reason a callable cannot be found again by name, or None."""
    qualname = str(getattr(fn, "__qualname__", None) or getattr(type(fn), "__qualname__", ""))
    if getattr(fn, "__name__", "") == "<lambda>":
        return "it is a lambda; define a module-level function"
    if "<locals>" in qualname:
        return "it is defined inside a function; move it to module level"
    if getattr(fn, "__closure__", None):
        return "it is a closure (captures local variables); pass them as JSON arguments"
    if inspect.ismethod(fn) and not inspect.isclass(fn.__self__):
        return "it is a method bound to an object; use a module-level function or classmethod"
    return None


def factory_name(factory: str | Callable[..., Any]) -> str:
    """The saved name of ``factory`` (a callable or a name), after checking
    that the name imports back to the very same object."""
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
    module_name, qualname = _split(name)
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as err:
        raise FactoryError(f"factory {name!r}: cannot import module {module_name!r}: {err}") from err
    for part in qualname.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise FactoryError(f"factory {name!r}: {module_name} has no {qualname!r}") from None
    return obj


def check_allowed(name: str, allow: Sequence[str] | None) -> None:
    """Refuse ``name`` unless its module is under an allowed prefix.
    ``"svc."`` allows ``svc.flows``; ``"svc"`` allows ``svc`` and ``svc.*``."""
    module, _ = _split(name)
    if allow is None:
        return
    for prefix in allow:
        stem = prefix.rstrip(".")
        if (module == stem and not prefix.endswith(".")) or module.startswith(stem + "."):
            return
    raise FactoryNotAllowed(
        f"factory {name!r} is not under this replica's allowed prefixes "
        f"({', '.join(allow) or 'none'}); start the replica with --allow {module.split('.')[0]}."
    )


def load_factory(name: str, allow: Sequence[str] | None) -> Factory:
    """Import a stored factory name, checking ``allow`` before importing."""
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
    try:
        flow = factory(*args, **kwargs)
    except Exception as err:
        raise FactoryError(f"factory {name!r} raised {type(err).__name__}: {err}") from err
    if not isinstance(flow, Flow):
        raise FactoryError(
            f"factory {name!r} returned {type(flow).__name__}, not a flow (Linear, Unordered or Graph)"
        )
    return flow
