"""docs/security.md, "Secrets in output": no secret of a backend URL in any output.

Every URL form that carries a secret (a Redis password alone or with a user,
rediss://, Sentinel password options, ZooKeeper digest credentials and a TLS
key password) goes through the CLI: ``check``, the listings and their JSON,
and malformed variants (bad port, bad database, misspelled scheme, an
unbalanced IPv6 bracket). The secret must appear in no stdout, stderr or log
record, at any level. ``redact_url`` itself is fuzzed with hypothesis.
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flowbaton.backends.redact import MASK, redact_text, redact_url
from flowbaton.cli.main import main
from tests.servers.redis import LocalRedis, redis_binary

pytestmark = pytest.mark.security


# ------------------------------------------------------------------ redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:pw1@h:6379/0", "redis://:***@h:6379/0"),
        ("redis://alice:pw1@h/0", "redis://alice:***@h/0"),
        ("redis://alice@h/0", "redis://alice@h/0"),
        ("rediss://:pw1@h/0?ssl_keyfile=/k.pem&ssl_ca_certs=/ca.pem",
         "rediss://:***@h/0?ssl_keyfile=/k.pem&ssl_ca_certs=/ca.pem"),
        ("redis+sentinel://:pw1@a,b:26379/m/0?sentinel_username=s&sentinel_password=pw2",
         "redis+sentinel://:***@a,b:26379/m/0?sentinel_username=s&sentinel_password=***"),
        ("zookeeper://u:pw1@z1:2181,z2/ns?use_ssl=true&keyfile_password=pw2&keyfile=/k.pem",
         "zookeeper://u:***@z1:2181,z2/ns?use_ssl=true&keyfile_password=***&keyfile=/k.pem"),
        ("zookeeper://z/ns?digest=u:pw1&token=t&api_key=k&secret=s",
         "zookeeper://z/ns?digest=***&token=***&api_key=***&secret=***"),
        ("redis://:pw1@[::1/0", "redis://:***@[::1/0"),
        ("redis://:pw/1@h/0", "redis://:***@h/0"),  # unescaped "/" in the password
        ("redis://a/b:pw1@h/0", "redis://***@h/0"),  # not a plain user name: hide it all
        ("reddis://:pw1@h/0", "reddis://:***@h/0"),
        ("u:pw1@h", "u:***@h"),
        ("sqlite:///var/lib/a@b.db", "sqlite:///var/lib/a@b.db"),
        ("redis://h/0?password=", "redis://h/0?password="),
        ("", ""),
    ],
)
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_text_masks_raw_and_decoded_secrets() -> None:
    url = "redis://:p%40ss@h/0?sentinel_password=x%26y"
    message = f"bad {url}: 'p@ss' and 'x&y' and p%40ss"
    assert redact_text(message, url) == f"bad redis://:{MASK}@h/0?sentinel_password={MASK}: '***' and '***' and ***"


# Every other part is lower case: the secret's upper-case "Q" marks it as its own.
_LOWER = st.text("abcdefghijklmnopqrstuvwxyz0123456789-._", max_size=8)
_SCHEMES = st.sampled_from(["redis", "rediss", "redis+sentinel", "zookeeper", "reddis", "http", ""])
_ANY = st.text(st.characters(codec="utf-8", exclude_characters="Q"), max_size=12)
_HOSTS = st.lists(
    st.one_of(_LOWER, st.just("[::1]"), st.just("[::1"), _LOWER.map(lambda h: f"{h}:{h}")), max_size=3
).map(",".join)
_SECRET_KEYS = st.sampled_from(
    ["password", "sentinel_password", "keyfile_password", "ssl_password", "digest", "token", "api_key", "Secret"]
)


@st.composite
def _url_with_secret(draw: st.DrawFn) -> tuple[str, str]:
    secret = "Q" + draw(_ANY) + "Q"
    tail = f"{draw(_HOSTS)}/{draw(_LOWER)}/{draw(_LOWER)}"
    options = [f"{draw(_LOWER)}={draw(_LOWER)}" for _ in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()):  # in the user info, where anything goes
        head = f"{draw(_SCHEMES)}://{draw(_LOWER)}:{secret}@"
    else:  # as an option value: "&" and "#" end a value, so a secret has none
        secret = secret.replace("&", "").replace("#", "")
        head = f"{draw(_SCHEMES)}://{draw(_LOWER)}@" if draw(st.booleans()) else f"{draw(_SCHEMES)}://"
        options.insert(draw(st.integers(0, len(options))), f"{draw(_SECRET_KEYS)}={secret}")
    return head + tail + ("?" + "&".join(options) if options else ""), secret



def test_parsed_settings_keep_their_secrets_out_of_repr() -> None:
    """The objects a URL is parsed into show no secret in their repr (a
    traceback printed with its locals, an error tracker, a debugger)."""
    from flowbaton.backends.redis.url import parse_url
    from flowbaton.backends.zookeeper.acl import Policy
    from flowbaton.backends.zookeeper.settings import Settings

    target = parse_url("redis+sentinel://u:pw1@a:26379/m/0?sentinel_password=pw2")
    settings = Settings.from_url("zookeeper://u:pw3@z:2181/ns?use_ssl=true&keyfile_password=pw4", {})
    policy = Policy.from_settings(settings)
    assert policy.identity is not None
    shown = " ".join(map(repr, (target, settings, policy)))
    for secret in ("pw1", "pw2", "pw3", "pw4", policy.identity.id.partition(":")[2]):
        assert secret not in shown
    assert "z:2181" in shown and "'a', 26379" in shown  # still recognisable


@settings(max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_url_with_secret())
def test_redact_url_never_shows_the_secret(case: tuple[str, str]) -> None:
    url, secret = case
    shown = redact_url(url)
    assert secret not in shown
    assert secret not in redact_text(f"error about {url!r} and {secret}", url)


@settings(max_examples=3000, deadline=None)
@given(st.text(max_size=60))
def test_redact_url_never_raises(text: str) -> None:
    assert isinstance(redact_url(text), str)
    assert isinstance(redact_text(text, text), str)


# ------------------------------------------------------------------ the CLI


@pytest.fixture
def secret() -> str:
    return f"S3cr{uuid.uuid4().hex[:12]}"


class _Everything(logging.Handler):
    """Every log record, at every level, formatted with its traceback."""

    def __init__(self) -> None:
        super().__init__(1)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def logs() -> Iterator[_Everything]:
    """The CLI stops "flowbaton" records from propagating while it holds
    warnings back, so listen there as well as on the root (redis, kazoo)."""
    handler = _Everything()
    loggers = [logging.getLogger(), logging.getLogger("flowbaton")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(1)
    try:
        yield handler
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.removeHandler(handler)
            logger.setLevel(level)


Run = Callable[..., str]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], logs: _Everything, secret: str) -> Run:
    """``run(url, *command)``: the CLI's output and logs, asserted secret-free."""

    def run_cli(url: str, *command: str, codes: tuple[int, ...] = (0, 1, 2)) -> str:
        code = main(["--backend", url, *command])
        out, err = capsys.readouterr()
        everything = "\n".join([out, err, *logs.lines])
        logs.lines.clear()
        assert code in codes, everything
        assert secret not in everything, f"{command}: the secret leaked:\n{everything}"
        return out + err

    return run_cli


@pytest.fixture(scope="module")
def acl_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalRedis]:
    """A Redis with an ACL user; the default user stays open (the fixture's
    own PING needs it), so the password-only form still authenticates."""
    server = LocalRedis(redis_binary(), tmp_path_factory.mktemp("acl-redis"))
    try:
        server.start()
        yield server
    finally:
        server.close()


def _redis_urls(server: LocalRedis, secret: str) -> dict[str, str]:
    where = f"{server.host}:{server.port}"
    return {
        "password": f"redis://:{secret}@{where}/0?prefix=red1",
        "user and password": f"redis://alice:{secret}@{where}/0?prefix=red2",
        # No TLS there: the handshake waits for the socket timeout, so keep it short.
        "rediss": f"rediss://:{secret}@{where}/0?prefix=red3&retry_deadline=0.3&socket_timeout=0.3"
                  "&socket_connect_timeout=0.3",
        "sentinel": (f"redis+sentinel://:{secret}@{where}/mymaster/0?sentinel_password={secret}"
                     "&retry_deadline=0.3&socket_connect_timeout=0.3"),
    }


_LISTINGS = (["check"], ["replicas"], ["replicas", "--json"], ["flows", "--json"], ["claims", "--json"])


@pytest.mark.redis
@pytest.mark.parametrize("form", ["password", "user and password", "rediss", "sentinel"])
def test_redis_urls_never_print_the_secret(acl_redis: LocalRedis, secret: str, run: Run, form: str) -> None:
    acl_redis.client().execute_command("ACL", "SETUSER", "alice", "on", f">{secret}", "~*", "&*", "+@all")
    url = _redis_urls(acl_redis, secret)[form]
    outputs = [run(url, *command) for command in _LISTINGS]
    if form in ("password", "user and password"):
        assert f":{MASK}@" in outputs[0]  # check names the backend, redacted
        assert "check: OK" in outputs[0] or "problem" in outputs[0]


@pytest.mark.zookeeper
def test_zookeeper_urls_never_print_the_secret(zookeeper_server: Any, secret: str, run: Run) -> None:
    ns = f"red{uuid.uuid4().hex[:8]}"
    url = f"zookeeper://flowbaton:{secret}@{zookeeper_server.hosts}/{ns}?keyfile_password={secret}"
    outputs = [run(url, *command) for command in _LISTINGS]
    assert f"flowbaton:{MASK}@" in outputs[0]
    assert f"keyfile_password={MASK}" in outputs[0]


def _malformed(secret: str) -> list[str]:
    return [
        f"redis://:{secret}@127.0.0.1:notaport/0",
        f"redis://alice:{secret}@127.0.0.1:6379/notadb",
        f"redis://:{secret}@127.0.0.1:6379/0/extra",
        f"rediss://:{secret}@127.0.0.1:6379/0?ssl_cert_reqs=maybe",
        f"reddis://:{secret}@127.0.0.1:6379/0",
        f"rediss+sentinel://:{secret}@127.0.0.1/m/0",
        f"redis://:{secret}@[::1/0",
        f"redis://:{secret}@127.0.0.1:6379/0?prefix=a&nosuch=1",
        f"redis://:{secret[:4]}/{secret[4:]}@127.0.0.1:6379/0",  # unescaped "/" in the password
        f"redis://:{secret[:4]}?{secret[4:]}@127.0.0.1:6379/0",  # unescaped "?"
        f"redis://:{secret[:4]}#{secret[4:]}@127.0.0.1:6379/0",  # unescaped "#"
        f"redis+sentinel://:{secret}@127.0.0.1:26379?sentinel_password={secret}",
        f"redis+sentinel://127.0.0.1:26379/m/x?sentinel_password={secret}",
        f"zookeeper://u:{secret}@/ns",
        f"zookeeper://u:{secret}@127.0.0.1:notaport/ns?keyfile_password={secret}",
        f"zookeeper://u:{secret}@127.0.0.1:2181/ns?connect_timeout=soon",
        f"zookeepr://u:{secret}@127.0.0.1:2181/ns?keyfile_password={secret}",
        f"sqlite://u:{secret}@host/flows.db",
        f":{secret}@127.0.0.1:6379",
    ]


@pytest.mark.parametrize("index", range(len(_malformed("x"))))
def test_malformed_urls_are_refused_without_the_secret(secret: str, run: Run, index: int) -> None:
    url = _malformed(secret)[index]
    for command in (["check"], ["flows"], ["replicas", "--json"]):
        shown = run(url, *command, codes=(2,))
        assert shown.count("\n") == 1 and shown.startswith("flowbaton: "), shown


def _replica(url: str, *, until: str | None) -> tuple[int, str]:
    """A real replica process at DEBUG in JSON; stopped with SIGTERM once
    ``until`` shows in its log (or left to exit by itself)."""
    cmd = [sys.executable, "-m", "flowbaton", "--backend", url, "replica", "--allow", "nothing.",
           "--log-level", "DEBUG", "--log-format", "json", "--lease", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if until is not None:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # ends when the process does
            seen.append(line)
            if until in line:
                proc.send_signal(signal.SIGTERM)
                break
        out, err = proc.communicate(timeout=60)
        return proc.returncode, out + "".join(seen) + err
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out + err


def test_a_replica_refuses_a_bad_url_without_the_secret(secret: str) -> None:
    code, output = _replica(f"redis://:{secret}@127.0.0.1:bad/0", until=None)
    assert code == 2 and secret not in output, output


@pytest.mark.redis
def test_a_replica_logs_nothing_secret_on_redis(acl_redis: LocalRedis, secret: str) -> None:
    acl_redis.client().execute_command("ACL", "SETUSER", "alice", "on", f">{secret}", "~*", "&*", "+@all")
    code, output = _replica(f"redis://alice:{secret}@{acl_redis.host}:{acl_redis.port}/0?prefix=rep", until="started")
    assert code == 0 and "started" in output and secret not in output, output


@pytest.mark.zookeeper
def test_a_replica_logs_nothing_secret_on_zookeeper(zookeeper_server: Any, secret: str) -> None:
    url = f"zookeeper://flowbaton:{secret}@{zookeeper_server.hosts}/rep{uuid.uuid4().hex[:8]}"
    code, output = _replica(url, until="started")
    assert code == 0 and "started" in output and secret not in output, output
