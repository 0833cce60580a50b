"""docs/security.md, "Locking the store down": ``rediss://`` checks the server's host name by default.

A real redis-server with TLS (Debian's is built with it) serves a
certificate that ``trustme`` issues from a throw-away CA: one for the host
the URL names, one for another host name. The wrong name is refused, quickly
and clearly; ``ssl_check_hostname=false`` accepts it (the CA still has to
sign it); the right name works.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import trustme

from flowbaton.backends import open_backend
from flowbaton.backends.errors import BackendUnavailable, BadBackendURL
from flowbaton.backends.redis.client import client_kwargs
from flowbaton.backends.redis.url import parse_url
from tests.contract.helpers import make_flow
from tests.servers.redis import TLSServer

pytestmark = [pytest.mark.security, pytest.mark.redis]

def test_host_names_are_checked_by_default() -> None:
    target = parse_url("rediss://h/0")
    assert target.options["ssl_check_hostname"] is True
    assert client_kwargs(target)["ssl_check_hostname"] is True
    unchecked = parse_url("rediss://h/0?ssl_check_hostname=false")
    assert client_kwargs(unchecked)["ssl_check_hostname"] is False
    # No certificate check means no host-name check (ssl refuses the pair).
    assert client_kwargs(parse_url("rediss://h/0?ssl_cert_reqs=none"))["ssl_check_hostname"] is False
    with pytest.raises(BadBackendURL, match="ssl_check_hostname"):
        parse_url("rediss://h/0?ssl_check_hostname=perhaps")


def test_a_certificate_for_another_host_is_refused_clearly(tls_redis: TLSServer) -> None:
    url = tls_redis("db.example.test")
    backend = open_backend(url)  # long retry deadline: a refusal must not be retried
    try:
        started = time.monotonic()
        with pytest.raises(BackendUnavailable) as caught:
            backend.create_flow(make_flow("f"))
        assert time.monotonic() - started < 5
    finally:
        backend.close()
    message = str(caught.value)
    assert "TLS certificate refused" in message
    assert "127.0.0.1" in message  # the host name it does not match
    assert "ssl_check_hostname=false" in message  # and how to accept it anyway


def test_ssl_check_hostname_false_accepts_it(tls_redis: TLSServer) -> None:
    backend = open_backend(tls_redis("db.example.test") + "&ssl_check_hostname=false")
    try:
        backend.create_flow(make_flow("f"))
        assert backend.load_flow("f").id == "f"
    finally:
        backend.close()


def test_the_right_host_name_works(tls_redis: TLSServer) -> None:
    backend = open_backend(tls_redis("127.0.0.1"))
    try:
        backend.create_flow(make_flow("f"))
        assert backend.load_flow("f").id == "f"
        assert backend.warnings() == []
    finally:
        backend.close()


def test_another_ca_is_still_refused_without_the_host_name_check(tls_redis: TLSServer, tmp_path: Path) -> None:
    url = tls_redis("127.0.0.1")
    stranger = tmp_path / "stranger.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    backend = open_backend(url.split("&ssl_ca_certs=")[0] + f"&ssl_ca_certs={stranger}&ssl_check_hostname=false")
    try:
        with pytest.raises(BackendUnavailable, match="TLS certificate refused"):
            backend.load_flow("f")
    finally:
        backend.close()
