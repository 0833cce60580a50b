"""Storage and claims behind one contract (``Backend``), chosen by URL.

``open_backend("sqlite:///flows.db")``; ``FLOWBATON_BACKEND`` gives the
default URL. Drivers are imported lazily so that a missing client library
only matters for the URL that needs it.
"""

from __future__ import annotations

import importlib
import os
from typing import Any
from urllib.parse import urlsplit

from .base import CONNECTED, LOST, SUSPENDED, Backend, Capability, StateListener
from .errors import BadBackendURL, FlowbatonError, MissingDriver
from .records import ClaimInfo, ClaimToken, Decline, FlowDetail, ReplicaInfo, TaskDetail
from .redact import redact_text, redact_url

__all__ = [
    "DEFAULT_PATH",
    "existing_default_url",
    "Backend",
    "Capability",
    "StateListener",
    "SUSPENDED",
    "LOST",
    "CONNECTED",
    "ClaimInfo",
    "ClaimToken",
    "Decline",
    "FlowDetail",
    "ReplicaInfo",
    "TaskDetail",
    "open_backend",
    "default_url",
    "DEFAULT_URL",
]

DEFAULT_URL = "sqlite:///./flowbaton.db"

# scheme -> (module, class name, pip extra that brings its client library)
_DRIVERS: dict[str, tuple[str, str, str | None]] = {
    "memory": ("memory", "MemoryBackend", None),
    "sqlite": ("sqlite", "SQLiteBackend", None),
    "zookeeper": ("zookeeper", "ZooKeeperBackend", "zookeeper"),
    "redis": ("redis", "RedisBackend", "redis"),
    "rediss": ("redis", "RedisBackend", "redis"),
    "redis+cluster": ("redis", "RedisBackend", "redis"),
    "rediss+cluster": ("redis", "RedisBackend", "redis"),
    "redis+sentinel": ("redis", "RedisBackend", "redis"),
}


def default_url() -> str:
    """``FLOWBATON_BACKEND`` if set, else a SQLite file in the working directory."""
    return os.environ.get("FLOWBATON_BACKEND") or DEFAULT_URL


#: the file ``DEFAULT_URL`` names, relative to the working directory
DEFAULT_PATH = DEFAULT_URL.removeprefix("sqlite:///")


def existing_default_url() -> str | None:
    """``default_url()`` for a caller that looks at flows already stored:
    None when ``FLOWBATON_BACKEND`` is unset and the default SQLite file
    does not exist here, since opening it would create an empty store and
    report on that ("no flows"), hiding that the caller looked in the wrong
    place."""
    if not os.environ.get("FLOWBATON_BACKEND") and not os.path.exists(DEFAULT_PATH):
        return None
    return default_url()


def open_backend(url: str | None = None, *, lease: float | None = None, **options: Any) -> Backend:
    """Open the backend a URL names; keyword options override URL options.

    ``lease`` is the replica's lease: drivers whose claims live as long as a
    client session ("session" capability) size the session with it; for the
    others a lease is per claim and this argument is not needed.
    """
    url = url or default_url()
    # No message here repeats a secret of the URL, and no chained cause
    # either (a traceback would print it): hence ``from None``.
    try:
        return _open(url, lease, options)
    except BadBackendURL as err:  # safety net for a driver quoting the raw URL
        message = redact_text(str(err), url)
        if message == str(err):
            raise
        raise type(err)(message) from None  # the same kind (InsecureBackend stays one)
    except FlowbatonError:
        raise
    except ValueError as err:  # urllib on e.g. 'redis://[::1/0' or a bad port, a driver's int()
        raise BadBackendURL(f"malformed backend URL {redact_url(url)!r}: {redact_text(str(err), url)}") from None


def _open(url: str, lease: float | None, options: dict[str, Any]) -> Backend:
    scheme = urlsplit(url).scheme
    if scheme not in _DRIVERS:
        raise BadBackendURL(
            f"unknown backend scheme {scheme!r} in {redact_url(url)!r}; use one of: {', '.join(_DRIVERS)}"
        )
    module_name, class_name, extra = _DRIVERS[scheme]
    try:
        module = importlib.import_module(f"{__name__}.{module_name}")
    except ImportError as err:
        if extra is None:
            raise
        raise MissingDriver(
            f"{scheme}:// needs its client library: pip install 'flowbaton[{extra}]' ({err})"
        ) from err
    driver: type[Backend] = getattr(module, class_name)
    if lease is not None and "session" in driver.capabilities:
        options["lease"] = lease
    return driver.from_url(url, **options)
