"""URL query options parsed by a typed table.

A driver declares ``{name: Option(kind, default, doc)}``; ``parse_options``
turns the URL's query string into typed values and names the bad key, and
what is accepted, when something does not fit. Keyword arguments given to
``open_backend`` override the URL.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

from .errors import BadBackendURL

__all__ = ["Option", "parse_options"]

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


@dataclass(frozen=True)
class Option:
    kind: type  # str, int, float or bool
    default: Any
    doc: str = ""
    choices: tuple[str, ...] = ()


def _convert(key: str, raw: Any, option: Option) -> Any:
    if not isinstance(raw, str):
        return raw  # a keyword override, already typed
    try:
        if option.kind is bool:
            if raw.lower() in _TRUE | _FALSE:
                return raw.lower() in _TRUE
            raise ValueError(raw)
        value = option.kind(raw)
    except ValueError:
        raise BadBackendURL(
            f"option {key!r}: {raw!r} is not a valid {option.kind.__name__}"
        ) from None
    if option.choices and value not in option.choices:
        raise BadBackendURL(f"option {key!r}: {raw!r} is not one of {', '.join(option.choices)}")
    return value


def parse_options(
    query: str, table: Mapping[str, Option], overrides: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """Typed options from ``query`` then ``overrides``; unknown keys are errors."""
    given: dict[str, Any] = dict(parse_qsl(query, keep_blank_values=True))
    given.update(overrides or {})
    unknown = sorted(set(given) - set(table))
    if unknown:
        accepted = ", ".join(sorted(table)) or "none"
        raise BadBackendURL(f"unknown option {unknown[0]!r}; accepted: {accepted}")
    return {key: _convert(key, given.get(key, opt.default), opt) for key, opt in table.items()}
