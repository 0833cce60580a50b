"""Opening a backend for a replica, with its lease where the lease is a session.

On ZooKeeper a claim lives exactly as long as the client session, so the
replica's ``lease`` must become the session timeout when the connection is
made (DESIGN.md: "lease means the same on every backend"). Drivers whose
leases are per claim take no such option and would refuse it, hence the
per-scheme choice. An explicit ``session_timeout`` in the URL still wins
(the driver applies that rule).
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..backends import default_url, open_backend
from ..backends.base import Backend

__all__ = ["open_with_lease"]

# URL schemes whose driver has the "session" capability and a ``lease`` option.
_SESSION_SCHEMES = frozenset({"zookeeper"})


def open_with_lease(url: str | None, lease: float) -> Backend:
    url = url or default_url()
    if urlsplit(url).scheme in _SESSION_SCHEMES:
        return open_backend(url, lease=lease)
    return open_backend(url)
