"""Redis driver over TLS (``rediss://``), against redis-server's own TLS port."""

from __future__ import annotations

import pytest

from flowbaton.backends import open_backend
from flowbaton.backends.errors import BackendUnavailable
from tests.contract.helpers import DEADLINE, LEASE, make_flow, make_task, woken_by_a_submit
from tests.servers.redis import TLSServer

pytestmark = pytest.mark.redis


def test_rediss_with_a_private_ca(tls_redis: TLSServer) -> None:
    url = tls_redis("127.0.0.1")  # an IP address in the certificate, as the URL names it
    backend = open_backend(url)
    try:
        backend.create_flow(make_flow("f"))
        token = backend.claim("f", "r1", LEASE)
        backend.save_task(token, make_task("t"))
        assert list(backend.load_tasks("f")) == ["t"]
        assert backend.warnings() == []
    finally:
        backend.close()

    # Without the CA the server's certificate is refused, clearly.
    untrusted = open_backend(url.split("&")[0], retry_deadline=0.5)
    try:
        with pytest.raises(BackendUnavailable, match="certificate"):
            untrusted.load_flow("f")
    finally:
        untrusted.close()


def test_wait_for_work_over_tls(tls_redis: TLSServer) -> None:
    """The subscription is a connection of the driver's pool: TLS too."""
    url = tls_redis("127.0.0.1")
    woken, took = woken_by_a_submit(url)
    assert woken and took < DEADLINE
