# mypy: disable-error-code="no-untyped-call"
# (redis-py leaves a few entry points unannotated; types-redis annotates them.)
"""One redis-py client, the retry policy, and error translation.

Every call into redis-py goes through ``Connection.run``: transient errors
(connection reset, timeout, LOADING, READONLY after a failover, NOSCRIPT)
are retried until ``retry_deadline`` (the drivers' shared loop,
``backends/retrying.py``); what is left becomes a flowbaton error with the
cause chained. No redis exception leaves here.

redis-py's own retries are switched off: an operation must know whether an
earlier attempt may have reached the server (``retried``) to resolve the
ambiguity by reading back, and that is only possible if we own the loop.
"""

from __future__ import annotations

import logging
import ssl
import threading
from collections.abc import Callable
from typing import Any, TypeVar, cast

import redis.exceptions as rex
from redis import Redis
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.retry import Retry
from redis.sentinel import Sentinel
from tenacity import RetryCallState, wait_exponential, wait_random

from ..errors import BackendUnavailable, CorruptRecord, FlowbatonError
from ..retrying import RetryPolicy
from ._types import Client, Pipe
from .scripts import load_all
from .url import Target

__all__ = ["REDIS_ERRORS", "Connection", "client_kwargs", "execute", "is_transient"]

log = logging.getLogger("flowbaton.backends.redis")

T = TypeVar("T")
Op = Callable[[Client, bool], T]

#: What redis-py raises: a cluster client's own errors (no node reachable,
#: a slot without a node) are no ``RedisError``.
REDIS_ERRORS = (rex.RedisError, rex.RedisClusterException)
# Connection errors that retrying cannot fix.
_PERMANENT = (rex.AuthenticationError, rex.AuthorizationError)
_TRANSIENT = (
    rex.ConnectionError,  # includes BusyLoadingError (LOADING) and MasterNotFoundError
    rex.TimeoutError,
    rex.ReadOnlyError,  # we talk to a demoted primary: reconnect and retry
    rex.NoScriptError,  # script cache empty after restart/failover: load and retry
    rex.TryAgainError,
    rex.MasterDownError,  # replica lost its primary (replica-serve-stale-data no)
    # A Redis Cluster mid-failover: a shard without a primary (CLUSTERDOWN),
    # a slot map that has no node for a slot yet, redirections that ran out;
    # the client refreshes its slot map and the next attempt finds the promoted replica.
    rex.ClusterError,
    rex.SlotNotCoveredError,
)


def is_transient(err: BaseException) -> bool:
    if isinstance(err, rex.RedisClusterException):
        # Making a cluster client reads the slot map: no node reachable is
        # an outage (unless a certificate was refused); anything else it
        # wraps (a password, a missing permission) stays refused.
        return isinstance(err, (rex.RedisClusterUnreachableError, rex.SlotNotCoveredError)) and not (
            _certificate_refused(err))
    if _certificate_refused(err):
        return False  # the same certificate is refused again: say so now
    if isinstance(err, rex.ResponseError) and str(err).startswith("NOREPLICAS"):
        # A primary enforcing min-replicas-to-write while its replicas catch
        # up (mid-failover): the write was refused whole; try again.
        return True
    return isinstance(err, _TRANSIENT) and not isinstance(err, _PERMANENT)


def _certificate_refused(err: BaseException) -> bool:
    """Our TLS check refused the server's certificate (untrusted CA, wrong
    host name). redis-py raises a ConnectionError with the ssl error as its
    context (older versions: only its text); a cluster client wraps that
    in its own error once more."""
    err = root_cause(err)
    causes = (err.__cause__, err.__context__)
    return any(isinstance(c, ssl.SSLCertVerificationError) for c in causes) or (
        isinstance(err, rex.ConnectionError) and "CERTIFICATE_VERIFY_FAILED" in str(err)
    )


def root_cause(err: BaseException) -> BaseException:
    """The Redis error a cluster client's own error wraps, if any: it says
    "Redis Cluster cannot be connected" (or, for a refused ``CLUSTER
    SLOTS``, "Cluster mode is not enabled") over a refused password or a
    missing permission, which is what a person needs to read."""
    seen: set[int] = set()
    while isinstance(err, rex.RedisClusterException) and id(err) not in seen:
        seen.add(id(err))
        inner = err.__cause__ or err.__context__
        if not isinstance(inner, (rex.RedisError, rex.RedisClusterException)):
            break
        err = inner
    return err


def execute(pipe: Pipe) -> list[Any]:
    """Run a pipeline; raise its first error only after reading every reply,
    so the connection stays in step and the caller's retry sees the cause."""
    replies: list[Any] = pipe.execute(raise_on_error=False)
    for reply in replies:
        if isinstance(reply, Exception):
            raise reply
    return replies


class Connection:
    """A redis-py client for one ``Target`` with our retry loop around it."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.where = target.describe()
        self.deadline: float = target.options["retry_deadline"]
        self.policy = RetryPolicy(
            self.deadline, wait_exponential(multiplier=0.05, max=1.0) + wait_random(0, 0.05), is_transient
        )
        self._sentinel: Sentinel | None = None
        self._client: Client | None = None
        self._client_lock = threading.Lock()

    @property
    def redis(self) -> Client:
        """The client, made at first use: a cluster client reads the slot
        map as it is made, so that happens inside ``run``'s retried,
        translated attempts (a cluster still starting is waited for, a
        refused password is one ``BackendUnavailable`` line), not in the
        constructor where its errors would escape raw."""
        client = self._client
        if client is None:
            with self._client_lock:
                if self._client is None:
                    self._client = self._connect(self.target)
                client = self._client
        return client

    def _connect(self, target: Target) -> Client:
        kwargs = client_kwargs(target)
        if target.cluster:
            return _cluster_client(target, kwargs)
        if target.scheme != "redis+sentinel":
            host, port = target.hosts[0]
            client: Client = Redis(host=host, port=port, **kwargs)
            return client
        self._sentinel = Sentinel(
            list(target.hosts), sentinel_kwargs=_sentinel_kwargs(target), **kwargs
        )
        assert target.service is not None
        primary: Client = self._sentinel.master_for(target.service, **kwargs)
        return primary

    def run(self, what: str, op: Op[T]) -> T:
        """Call ``op(client, retried)`` until it succeeds or the deadline.

        ``retried`` is True on every attempt after a transient error: the
        earlier attempt may have been applied, the reply lost.
        """
        try:
            return self.policy.run(lambda retried: op(self.redis, retried),
                                   on_retry=lambda state: self._before_retry(what, state))
        except REDIS_ERRORS as err:
            raise self._translate(what, err) from err

    def _before_retry(self, what: str, state: RetryCallState) -> None:
        err = state.outcome.exception() if state.outcome else None
        log.warning("%s on %s: attempt %d failed (%s), retrying",
                    what, self.where, state.attempt_number, err)
        if isinstance(err, rex.ReadOnlyError) and not self.target.cluster:
            # The server we were connected to is now a replica (failover):
            # drop every pooled connection so the next one finds the primary.
            # (A cluster client follows MOVED and refreshes its slot map itself.)
            self.redis.connection_pool.disconnect()
        if isinstance(err, rex.NoScriptError):
            self.try_load_scripts()

    def try_load_scripts(self) -> bool:
        """Load the Lua scripts; False (and a retry later) if Redis is away."""
        try:
            load_all(self.redis)
        except REDIS_ERRORS as err:
            log.debug("loading scripts into %s failed: %s", self.where, err)
            return False
        return True

    def _translate(self, what: str, err: BaseException) -> FlowbatonError:
        if isinstance(err, rex.ResponseError) and str(err).startswith("WRONGTYPE"):
            return CorruptRecord(f"{self.where} ({what})", f"a key holds the wrong Redis type: {err}")
        if _certificate_refused(err):
            message = (
                f"{what}: Redis at {self.where}: TLS certificate refused: {root_cause(err)} (give the CA with "
                "ssl_ca_certs; ssl_check_hostname=false accepts a certificate for another host name)"
            )
        elif is_transient(err):
            message = f"{what}: Redis at {self.where} unavailable for {self.deadline:g}s: {err}"
        else:
            message = f"{what}: Redis at {self.where} refused: {root_cause(err)}"
        log.warning("%s", message)
        return BackendUnavailable(message)

    def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()  # a cluster client closes every node's pool
            if not self.target.cluster:
                client.connection_pool.disconnect()
        for sentinel in self._sentinel.sentinels if self._sentinel else []:
            sentinel.close()


def client_kwargs(target: Target) -> dict[str, Any]:
    """The keyword arguments redis-py's client gets for ``target``: timeouts,
    credentials, TLS (public so tests can check what a URL turns into)."""
    opts = target.options
    kwargs: dict[str, Any] = {
        "db": target.db,
        "username": target.username,
        "password": target.password,
        "socket_timeout": opts["socket_timeout"],
        "socket_connect_timeout": opts["socket_connect_timeout"],
        "retry": Retry(NoBackoff(), 0),  # our loop retries, see module doc
        "client_name": "flowbaton",
    }
    if target.tls:
        kwargs.update(
            ssl=True,
            ssl_cert_reqs=opts["ssl_cert_reqs"],
            # redis-py < 6 does not check host names unless asked; Python's
            # ssl refuses a host-name check without a certificate check.
            ssl_check_hostname=opts["ssl_check_hostname"] and opts["ssl_cert_reqs"] != "none",
            ssl_ca_certs=opts["ssl_ca_certs"] or None,
            ssl_certfile=opts["ssl_certfile"] or None,
            ssl_keyfile=opts["ssl_keyfile"] or None,
        )
    return kwargs


def _cluster_client(target: Target, kwargs: dict[str, Any]) -> Client:
    """redis-py's own cluster client (slot map, MOVED/ASK redirections,
    failover refresh), seeded with the URL's nodes. Its retries are off
    like the single client's: ``Connection.run`` owns the loop, and the
    client re-reads the slot map after a connection error, so the next
    attempt reaches the promoted replica. It offers the commands, scripts
    and pipelines the driver uses with the same signatures, so the driver
    holds it as a ``Client``."""
    cluster_kwargs = {key: value for key, value in kwargs.items() if key not in ("db", "retry")}
    cluster = RedisCluster(startup_nodes=[ClusterNode(host, port) for host, port in target.hosts],
                           retry=Retry(NoBackoff(), 0), **cluster_kwargs)
    return cast(Client, cluster)


def _sentinel_kwargs(target: Target) -> dict[str, Any]:
    opts = target.options
    return {
        "username": opts["sentinel_username"] or None,
        "password": opts["sentinel_password"] or None,
        "socket_timeout": opts["socket_timeout"],
        "socket_connect_timeout": opts["socket_connect_timeout"],
        "retry": Retry(NoBackoff(), 0),
    }
