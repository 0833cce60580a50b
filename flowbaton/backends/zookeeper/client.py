"""One kazoo session: connection, ACLs, bounded requests, retries, and the
translation of every kazoo exception into the flowbaton error tree.

Everything above this module sees ``Op``/``Outcome``/``Node`` values and
flowbaton errors only. Requests use kazoo's async API and wait with a
timeout, because a request queued while the connection is down would
otherwise wait for a reconnect forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, TypeVar

from kazoo.client import KazooClient
from kazoo.exceptions import (
    BadVersionError,
    ConnectionClosedError,
    ConnectionLoss,
    KazooException,
    NoAuthError,
    NodeExistsError,
    NoNodeError,
    NotEmptyError,
    OperationTimeoutError,
    RequestTimeoutError,
    RolledBackError,
    RuntimeInconsistency,
    SessionExpiredError,
    SessionMovedError,
    ThrottledOpError,
    UnimplementedError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.protocol.serialization import Auth
from kazoo.protocol.states import Callback, KazooState
from kazoo.retry import KazooRetry
from kazoo.security import ACL
from tenacity import wait_exponential

from ..base import CONNECTED, LOST, SUSPENDED
from ..errors import BackendUnavailable
from ..retrying import RetryPolicy
from . import kazoo_private
from .acl import NOT_READABLE, Policy
from .multiread import BATCH, Raw, send_multi_read
from .settings import Settings

__all__ = ["Again", "Session", "Op", "Outcome", "Node", "Stat", "WatchReply", "Unanswered"]

T = TypeVar("T")

log = logging.getLogger(__name__)

# From two paths on, one multiRead beats separate gets (load_tasks, load_declines
# and every listing read several znodes at once).
_MULTI_READ_MIN = 2


class Unanswered(Exception):
    """A read sent in the background failed (``WatchReply.node``)."""


class Again(Exception):
    """Raised by a step that lost a race (a concurrent change between its read
    and its ``multi``): the retry loop runs the step again."""


# Errors after which the same request may simply be tried again. A
# SessionExpiredError on a read is transient too: kazoo opens a new session.
_TRANSIENT = (
    ConnectionLoss,
    OperationTimeoutError,
    SessionExpiredError,
    SessionMovedError,
    RequestTimeoutError,
    ThrottledOpError,
    KazooTimeoutError,
    Again,
)
_KAZOO_STATES = {KazooState.SUSPENDED: SUSPENDED, KazooState.LOST: LOST, KazooState.CONNECTED: CONNECTED}
_ERRORS = {
    NoNodeError: "no_node",
    NodeExistsError: "node_exists",
    BadVersionError: "bad_version",
    NotEmptyError: "not_empty",
}


def _transient(err: BaseException) -> bool:
    # ConnectionClosedError subclasses SessionExpiredError but means close():
    # retrying it would only burn the deadline.
    return isinstance(err, _TRANSIENT) and not isinstance(err, ConnectionClosedError)


class Stat(NamedTuple):
    version: int
    czxid: int
    ephemeral_owner: int
    children: int = 0  # how many children (known from exists/get, not from a multiRead)


class Node(NamedTuple):
    data: bytes
    stat: Stat


@dataclass(frozen=True)
class Op:
    """One operation of a ``multi``: create, set, delete or check."""

    kind: str
    path: str
    data: bytes = b""
    version: int = -1
    ephemeral: bool = False


@dataclass(frozen=True)
class Outcome:
    """A committed (``ok``) or rolled back ``multi``: which op failed and why
    (``no_node``, ``node_exists``, ``bad_version``, ``not_empty``)."""

    ok: bool
    failed: int = -1
    error: str = ""

    def failed_at(self, index: int, error: str) -> bool:
        return not self.ok and self.failed == index and self.error == error


class WatchReply:
    """The answer to a ``Session.watch`` read, arriving in the background;
    the caller looks at it later, never waits on it."""

    def __init__(self, result: Any) -> None:
        self._result = result

    @property
    def ready(self) -> bool:
        return bool(self._result.ready())

    def node(self) -> Node | None:
        """The znode read (None: there is none). ``Unanswered`` if the read
        failed or is still in flight: then no watch is known to stand."""
        if not self._result.ready():
            raise Unanswered("no answer yet")
        error = self._result.exception
        if isinstance(error, NoNodeError):
            return None
        if error is not None:
            raise Unanswered(repr(error))
        data, stat = self._result.get_nowait()
        return Node(data or b"", _stat(stat))


def _stat(raw: Any) -> Stat:
    return Stat(raw.version, raw.czxid, raw.ephemeralOwner, raw.numChildren)


def _raw_node(item: Raw | BaseException | None) -> Node | None:
    """One multiRead result as a ``Node``; a per-op error other than "no
    node" (e.g. NoAuth) is raised, as the single ``get`` would raise it."""
    if isinstance(item, BaseException):
        raise item
    if item is None:
        return None
    return Node(item.data, Stat(item.version, item.czxid, item.ephemeral_owner))


def _raw_children(item: list[str] | BaseException | None) -> list[str] | None:
    """One multiRead getChildren result, as ``_raw_node`` reads a getData one."""
    if isinstance(item, BaseException):
        raise item
    return item


class _KazooLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """kazoo's own logger, muted below ERROR once we close on purpose: an
    abandoned connection otherwise logs "Connection dropped" and "Failed
    connecting" warnings for what is an orderly shutdown."""

    muted = False
    granted: float | None = None  # the session timeout the server granted, seconds (kazoo_private)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        granted = kazoo_private.granted_timeout(msg, args)
        if granted is not None:
            self.granted = granted
        # kazoo logs every request at its BLATHER level: drop those before
        # any work, they would cost a mass takeover more than the requests.
        if self.isEnabledFor(level) and not (self.muted and level < logging.ERROR):
            # At DEBUG kazoo logs each request it sends, the digest
            # credentials of an Auth request included: never the password.
            args = tuple(a._replace(auth="***") if isinstance(a, Auth) else a for a in args)
            super().log(level, msg, *args, **kwargs)


class Session:
    """A started KazooClient plus retry and translation around it."""

    def __init__(self, settings: Settings, on_state: Callable[[str], None]) -> None:
        self.settings = settings
        self.policy = Policy.from_settings(settings)
        self.acl = self.policy.acl()  # passed on every create, in and out of a multi
        auth = [("digest", f"{settings.username}:{settings.password or ''}")] if settings.username else None
        self._log = _KazooLog(logging.getLogger("kazoo.client"), {})
        self.client = KazooClient(
            logger=self._log,
            hosts=settings.hosts,
            timeout=settings.session_timeout,
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=settings.reconnect_delay),
            auth_data=auth,
            default_acl=self.acl,
            **settings.tls,
        )
        self._on_state = on_state
        self._local = threading.local()
        self._multi_read = True  # until a server says it has no multiRead (< 3.6)
        self._requests: Counter[str] = Counter()
        self._requests_lock = threading.Lock()
        self._policy = RetryPolicy(settings.retry_deadline, wait_exponential(multiplier=0.02, max=0.5), _transient)
        self.client.add_listener(self._kazoo_state)

    def start(self) -> None:
        try:
            self.client.start(timeout=self.settings.connect_timeout)
        except (KazooTimeoutError, KazooException, OSError) as err:
            self.close()
            raise BackendUnavailable(
                f"no ZooKeeper session with {self.settings.hosts} within "
                f"{self.settings.connect_timeout:g}s: {err!r}"
            ) from err

    @property
    def granted_timeout(self) -> float | None:
        """The session timeout the server granted (it clamps the one asked
        for to its minSessionTimeout..maxSessionTimeout); None if unknown."""
        return self._log.granted

    def close(self) -> None:
        """End the session now: the server deletes our ephemerals at once."""
        self._log.muted = True
        try:
            self.client.stop()
        finally:
            self.client.close()

    def abandon(self) -> None:
        """Drop the connection *without* ending the session, as a crash
        would: the claims stay held until the session times out, so another
        replica cannot start a flow whose task may still be running here.

        kazoo has no public call for this (``kazoo_private.abandon``). Should
        its internals differ, fall back to ending the session (claims vanish
        at once: safe for fencing, only earlier takeover)."""
        self._log.muted = True
        if not kazoo_private.abandon(self.client):
            self.close()

    def _kazoo_state(self, state: str) -> None:
        # Runs on kazoo's connection thread: only hand the event on.
        self._on_state(_KAZOO_STATES.get(state, state))

    @property
    def session_id(self) -> int:
        session_id: int = self.client.client_id[0] if self.client.client_id else 0
        return session_id

    # ------------------------------------------------------------ retrying

    def run(self, what: str, step: Callable[[bool], T]) -> T:
        """Run ``step(again)`` until it returns, retrying transient errors
        until ``retry_deadline``; ``again`` is True from the second attempt
        on, so a step can first resolve what an ambiguous attempt did."""
        self._local.deadline = time.monotonic() + self.settings.retry_deadline
        try:
            return self._policy.run(step)
        except KazooException as err:
            raise self._translate(what, err) from err
        except KazooTimeoutError as err:
            raise self._translate(what, err) from err
        except Again as err:
            raise BackendUnavailable(f"ZooKeeper {what}: kept losing races ({err})") from err
        finally:
            self._local.deadline = None

    def _translate(self, what: str, err: BaseException) -> BackendUnavailable:
        hosts = self.settings.hosts
        if isinstance(err, ConnectionClosedError):
            return BackendUnavailable(f"ZooKeeper {what}: the backend is closed")
        if isinstance(err, NoAuthError):
            return BackendUnavailable(
                f"ZooKeeper {hosts} refused {what} (ACL): wrong or missing user:password in the URL?"
            )
        if _transient(err):
            return BackendUnavailable(
                f"ZooKeeper {hosts}: {what} failed for {self.settings.retry_deadline:g}s ({err!r})"
            )
        return BackendUnavailable(f"ZooKeeper {hosts}: {what} failed ({err!r})")

    @property
    def requests(self) -> Counter[str]:
        """How many requests of each kind were sent (a copy)."""
        with self._requests_lock:
            return Counter(self._requests)

    def _sending(self, kind: str) -> None:
        """Count a request, then refuse it if disconnected (``_ready``)."""
        with self._requests_lock:
            self._requests[kind] += 1
        self._ready()

    def _ready(self) -> None:
        """Refuse to queue a request while disconnected. kazoo fails what is
        queued when the connection drops, but keeps what is queued *after*
        that and sends it on reconnect: a write its caller has already given
        up on (BackendUnavailable) would then land late."""
        if not self.client.connected:
            raise ConnectionLoss("not connected to ZooKeeper")

    def _wait(self, result: Any) -> Any:
        """One request's answer, never waiting past the call's deadline."""
        return result.get(timeout=self._timeout())

    def _timeout(self) -> float:
        timeout = self.settings.operation_timeout
        deadline = getattr(self._local, "deadline", None)
        if deadline is not None:
            timeout = max(0.05, min(timeout, deadline - time.monotonic()))
        return timeout

    # ---------------------------------------------------------------- reads

    def get(self, path: str) -> Node | None:
        return self.get_many([path])[0]

    def get_many(self, paths: Sequence[str]) -> list[Node | None]:
        """Pipelined reads: all requests go out before the first answer is
        awaited. Many paths travel as multiRead batches (see multiread.py):
        listings of thousands of records would otherwise spend seconds in
        kazoo's per-request overhead."""
        self._sending("get_many")
        if len(paths) >= _MULTI_READ_MIN and self._multi_read:
            nodes = self._get_batched(paths)
            if nodes is not None:
                return nodes
        pending = [self.client.get_async(path) for path in paths]
        return [self._node(result) for result in pending]

    def _get_batched(self, paths: Sequence[str]) -> list[Node | None] | None:
        """``get_many`` by multiRead; None if the server lacks it (then the
        caller reads one by one, and so does every later call)."""
        items = self._multi_read_all(paths, children=False)
        return None if items is None else [_raw_node(item) for item in items]

    def _multi_read_all(self, paths: Sequence[str], *, children: bool) -> list[Any] | None:
        """Every path's multiRead result, ``BATCH`` paths a request, all
        sent before the first answer is awaited; None if the server has no
        multiRead (then this session reads one by one from now on)."""
        root = self.client.chroot or ""
        full = [root + path for path in paths]
        pending = [send_multi_read(self.client, full[i : i + BATCH], children=children)
                   for i in range(0, len(full), BATCH)]
        items: list[Any] = []
        try:
            for result in pending:
                items += self._wait(result)
        except UnimplementedError:
            log.info("ZooKeeper %s has no multiRead (< 3.6): reading znodes one by one", self.settings.hosts)
            self._multi_read = False
            return None
        return items

    def _node(self, result: Any) -> Node | None:
        try:
            data, stat = self._wait(result)
        except NoNodeError:
            return None
        return Node(data or b"", _stat(stat))

    def watch(self, path: str, on_change: Callable[[], None]) -> WatchReply:
        """Read ``path`` and leave a one-shot data watch on it, without
        waiting: ``on_change`` runs (on kazoo's callback thread) when the
        znode changes or is deleted, or when kazoo drops every watch as the
        connection is lost. One request; a missing znode gets no watch.
        Never raises: a read that cannot be sent is a failed reply."""
        try:
            self._sending("watch")
            result = self.client.get_async(path, watch=lambda event: on_change())
        except KazooException as err:  # not connected, or closed
            result = self.client.handler.async_result()
            result.set_exception(err)
        return WatchReply(result)

    def flush_callbacks(self) -> None:
        """Return once kazoo has run every watch callback queued so far.

        kazoo hands a watch event to its callback thread before it reads the
        next reply off the socket, but the caller waiting on that reply may
        wake first; ZooKeeper sends a watch's event before any later reply,
        so after this a fired watch has been heard. Through the handler's
        public ``dispatch_callback`` (the queue watch events use)."""
        done = self.client.handler.event_object()
        self.client.handler.dispatch_callback(Callback("watch", done.set, ()))
        if not done.wait(self._timeout()):
            raise OperationTimeoutError("kazoo's callback thread did not catch up in time")

    def exists_many(self, paths: Sequence[str]) -> list[Stat | None]:
        self._sending("exists_many")
        pending = [self.client.exists_async(path) for path in paths]
        stats = [self._wait(result) for result in pending]
        return [None if stat is None else _stat(stat) for stat in stats]

    def children_many(self, paths: Sequence[str]) -> list[list[str] | None]:
        """Each folder's child names (None: no such znode); many folders
        travel as multiRead batches, like ``get_many``."""
        self._sending("children_many")
        if len(paths) >= _MULTI_READ_MIN and self._multi_read:
            items = self._multi_read_all(paths, children=True)
            if items is not None:
                return [_raw_children(item) for item in items]
        pending = [self.client.get_children_async(path) for path in paths]
        return [self._children(result) for result in pending]

    def acls_many(self, paths: Sequence[str]) -> dict[str, Sequence[ACL] | None]:
        """Each path's ACL; None if there is no such znode, ``NOT_READABLE``
        if the server will not show it to us (since 3.4.7 getACL needs READ
        or ADMIN: the znode is someone else's)."""
        self._ready()
        pending = [self.client.get_acls_async(path) for path in paths]
        return {path: self._acl_of(result) for path, result in zip(paths, pending, strict=True)}

    def _acl_of(self, result: Any) -> Sequence[ACL] | None:
        try:
            acl: list[ACL] = self._wait(result)[0]
        except NoNodeError:
            return None
        except NoAuthError:
            return NOT_READABLE
        return acl

    def _children(self, result: Any) -> list[str] | None:
        try:
            names: list[str] = self._wait(result)
        except NoNodeError:
            return None
        return names

    # --------------------------------------------------------------- writes

    def commit(self, ops: Sequence[Op]) -> Outcome:
        """One ``multi``: all ops or none. The failing op is reported, not raised."""
        self._sending("commit")
        txn = self.client.transaction()
        for op in ops:
            if op.kind == "create":
                txn.create(op.path, op.data, acl=self.acl, ephemeral=op.ephemeral)
            elif op.kind == "set":
                txn.set_data(op.path, op.data, op.version)
            elif op.kind == "delete":
                txn.delete(op.path, op.version)
            else:
                txn.check(op.path, op.version)
        return self._outcome(self._wait(txn.commit_async()))

    @staticmethod
    def _outcome(results: list[Any]) -> Outcome:
        for index, result in enumerate(results):
            if isinstance(result, (RolledBackError, RuntimeInconsistency)):
                continue
            if isinstance(result, Exception):
                if type(result) not in _ERRORS:
                    raise result
                return Outcome(False, index, _ERRORS[type(result)])
        return Outcome(True)

    def ensure_paths(self, paths: Sequence[str]) -> None:
        for path in paths:
            self._ready()
            self._wait(self.client.ensure_path_async(path, acl=self.acl))

    def create(self, path: str, data: bytes, *, ephemeral: bool = False) -> bool:
        """Create one znode; False if it already exists."""
        self._sending("create")
        try:
            self._wait(self.client.create_async(path, data, acl=self.acl, ephemeral=ephemeral))
        except NodeExistsError:
            return False
        return True

    def set(self, path: str, data: bytes) -> bool:
        """Replace a znode's data; False if it does not exist."""
        self._sending("set")
        try:
            self._wait(self.client.set_async(path, data))
        except NoNodeError:
            return False
        return True

    def delete_if_empty(self, path: str) -> bool:
        """Delete a znode that has no children; False if it has some or is gone."""
        self._sending("delete")
        try:
            self._wait(self.client.delete_async(path))
        except (NoNodeError, NotEmptyError):
            return False
        return True

    def delete(self, path: str) -> bool:
        self._sending("delete")
        try:
            self._wait(self.client.delete_async(path))
        except NoNodeError:
            return False
        return True
