"""Plain-JSON check and the explicit codec hook for richer types.

Results, arguments and inputs are stored as JSON and read back by other
processes, possibly running newer code. Silently turning a tuple into a list
or a datetime into a string would change what downstream tasks see after a
resume, so anything that is not plain JSON is refused, naming the path to the
offending value, unless the user registered a codec for its type.

Tagging. A codec value is stored as ``{TAG: name, "value": ...}``. So that a
plain dict can never be mistaken for one (a result shaped like a codec value
used to come back as that type after a resume), ``encode`` escapes every
plain dict that has the ``TAG`` key as ``{TAG: "dict", "value": {...}}``,
and ``decode`` unwraps it. A dict without ``TAG`` is stored as it is, so
records written before the escaping decode as they always did (the one
shape that now reads differently is an old plain dict exactly
``{TAG: "dict", "value": {...}}``; "dict" cannot be a codec name).
"""

from __future__ import annotations

import inspect
import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .errors import NotJSONError

__all__ = ["register_codec", "encode", "decode", "TAG"]

TAG = "__flowbaton_type__"
_ESCAPED = "dict"  # TAG's value for a plain dict that has the TAG key itself
_PLAIN = (str, int, bool, type(None))
# Deepest value stored: records are refused on read past 256 levels
# (backends.records.MAX_DEPTH), and a record wraps a value in a few levels of
# its own. Refusing here makes it the task's failure, not a held flow later.
MAX_DEPTH = 200
# Longest int stored: CPython refuses to write or read an int of more than
# 4300 digits as text (sys.int_max_str_digits), so json.dumps would raise a
# bare ValueError at the write, leaving the task RUNNING to run again on every
# claim. 14,000 bits is about 4,200 digits.
_INT_BITS = 14_000


@dataclass(frozen=True)
class _Codec:
    name: str
    kind: type
    to_json: Callable[[Any], Any]
    from_json: Callable[[Any], Any]


_by_type: dict[type, _Codec] = {}
_by_name: dict[str, _Codec] = {}
_lock = threading.Lock()


def register_codec(
    kind: type, name: str, to_json: Callable[[Any], Any], from_json: Callable[[Any], Any]
) -> None:
    """Store values of exactly ``kind`` as ``{TAG: name, "value": to_json(v)}``.

    ``name`` is what the record keeps, so it must stay stable across deploys.
    """
    if name == _ESCAPED:
        raise ValueError(f"codec name {name!r} is reserved")
    for what, fn in (("to_json", to_json), ("from_json", from_json)):
        if inspect.iscoroutinefunction(fn):
            raise ValueError(f"codec {name!r}: {what} is async def; values are encoded where they are "
                             "stored, synchronously")
    with _lock:
        if name in _by_name and _by_name[name].kind is not kind:
            raise ValueError(f"codec name {name!r} is already used for {_by_name[name].kind}")
        codec = _Codec(name, kind, to_json, from_json)
        _by_type[kind] = codec
        _by_name[name] = codec


def encode(value: Any, where: str) -> Any:
    """Return ``value`` as plain JSON, or raise ``NotJSONError`` naming
    ``where`` and the path inside the value."""
    try:
        return _encode(value, where)
    except RecursionError:
        raise NotJSONError(f"{where}: nested too deeply to store") from None


def _encode(value: Any, where: str, depth: int = 0) -> Any:
    kind = type(value)
    if kind in _PLAIN:
        if kind is int and value.bit_length() > _INT_BITS:
            raise NotJSONError(f"{where}: an int of {value.bit_length():,} bits is too long to store as JSON "
                               f"(at most {_INT_BITS:,} bits); store it as a str")
        return value
    if kind is float:
        if not math.isfinite(value):
            raise NotJSONError(f"{where}: {value!r} is not a finite number (JSON has no NaN/inf)")
        return value
    if depth >= MAX_DEPTH:
        raise NotJSONError(f"{where[:60]}...: nested deeper than {MAX_DEPTH} levels, too deep to store")
    if kind is list:
        return [_encode(item, f"{where}[{i}]", depth + 1) for i, item in enumerate(value)]
    if kind is dict:
        plain = _encode_dict(value, where, depth + 1)
        return {TAG: _ESCAPED, "value": plain} if TAG in plain else plain
    codec = _by_type.get(kind)
    if codec is not None:
        return {TAG: codec.name, "value": _encode(codec.to_json(value), f"{where}<{codec.name}>", depth + 1)}
    raise NotJSONError(
        f"{where}: {kind.__name__} is not plain JSON (use dict/list/str/int/float/bool/None, "
        f"or flowbaton.register_codec({kind.__name__}, ...))"
    )


def _encode_dict(value: dict[Any, Any], where: str, depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in value.items():
        if type(key) is not str:
            raise NotJSONError(f"{where}: key {key!r} is {type(key).__name__}, JSON keys are str")
        out[key] = _encode(item, f"{where}[{key!r}]", depth)
    return out


def decode(value: Any) -> Any:
    """Undo ``encode``: registered types come back as themselves, escaped
    plain dicts as plain dicts."""
    if type(value) in _PLAIN or type(value) is float:
        return value
    if type(value) is list:
        return [decode(item) for item in value]
    if type(value) is dict:
        return _decode_dict(value)
    return value


def _decode_dict(value: dict[str, Any]) -> Any:
    tagged = TAG in value and len(value) == 2 and "value" in value
    if tagged and value[TAG] == _ESCAPED and type(value["value"]) is dict:
        return {key: decode(item) for key, item in value["value"].items()}
    codec = _by_name.get(value[TAG]) if tagged and type(value[TAG]) is str else None
    if codec is not None:
        return codec.from_json(decode(value["value"]))
    return {key: decode(item) for key, item in value.items()}
