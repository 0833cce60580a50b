"""Opening a backend for a replica, with its lease where the lease is a session.

On ZooKeeper a claim lives exactly as long as the client session, so the
replica's ``lease`` must become the session timeout when the connection is
made (docs/design.md, "Vocabulary": the lease bounds takeover time on every
backend); ``open_backend`` passes it to drivers with the "session"
capability. An explicit ``session_timeout`` in the URL still wins (the
driver applies that rule).
"""

from __future__ import annotations

import os

from ..backends import default_url, open_backend
from ..backends.base import Backend

__all__ = ["open_with_lease"]


def open_with_lease(url: str | None, lease: float) -> Backend:
    backend = open_backend(url or default_url(), lease=lease)
    # Fault-injection runs (flowbaton.testing.chaos) set FLOWBATON_RECORD_WRITES=DIR
    # to log every claim and fenced write this replica attempts, for the
    # checker. Unset (production) the backend is returned as it is.
    if os.environ.get("FLOWBATON_RECORD_WRITES"):
        from flowbaton.testing.recorder import wrap_from_env

        backend = wrap_from_env(backend)
    return backend
