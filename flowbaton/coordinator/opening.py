"""Opening a backend for a replica, with its lease where the lease is a session.

On ZooKeeper a claim lives exactly as long as the client session, so the
replica's ``lease`` must become the session timeout when the connection is
made (docs/design.md, "Vocabulary": the lease bounds takeover time on every
backend); ``open_backend`` passes it to drivers with the "session"
capability. An explicit ``session_timeout`` in the URL still wins (the
driver applies that rule).
"""

from __future__ import annotations

from collections.abc import Callable

from ..backends import default_url, open_backend
from ..backends.base import Backend

__all__ = ["WrapBackend", "open_with_lease"]

#: Applied to a backend as it is opened; returns the backend the replica uses.
WrapBackend = Callable[[Backend], Backend]


def open_with_lease(url: str | None, lease: float, wrap_backend: WrapBackend | None = None) -> Backend:
    """Open ``url`` (default: ``FLOWBATON_BACKEND``, else the SQLite file)
    with ``lease``, then hand it to ``wrap_backend`` if given: a caller that
    wants every call seen (the chaos harness records each claim and fenced
    write for its checker) passes the wrapper in; nothing here looks for it."""
    backend = open_backend(url or default_url(), lease=lease)
    return backend if wrap_backend is None else wrap_backend(backend)
