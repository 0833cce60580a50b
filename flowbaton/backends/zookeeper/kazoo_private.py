"""Every use of kazoo's private parts, in one place, each with a fallback.

kazoo has no public call for three things the driver needs:

- sending a request type kazoo does not know (``multiRead``, ZooKeeper 3.6+,
  see multiread.py): ``KazooClient._call`` queues any request object that
  has ``type``, ``serialize()`` and ``deserialize()``, and the encoders of
  ``kazoo.protocol.serialization`` build one;
- dropping the connection *without* ending the session, as a crash would
  (``Backend.close`` must not release claims): ``_stopped``,
  ``_connection._socket`` and ``_safe_close``;
- telling which server of an ensemble a client talks to (fault tests):
  ``_connection._socket``.

It also has no record of the session timeout a server granted (servers
clamp the one asked for to their ``minSessionTimeout``..``maxSessionTimeout``);
it only logs it when a session is created: ``granted_timeout`` reads it
from that log call, which every kazoo call passes through our logger
adapter.

Nothing else in flowbaton touches kazoo's internals. pyproject bounds kazoo
below 3; ``tests/test_zookeeper_kazoo_private.py`` fails when the installed
kazoo no longer has these parts in the shapes used here, and each function
below has a fallback should they vanish anyway (then its caller reads znodes
one by one, or ends the session on close).
"""

from __future__ import annotations

import contextlib
import socket
from typing import Any

from kazoo.protocol import serialization as _serialization

__all__ = [
    "abandon",
    "granted_timeout",
    "int_struct",
    "multiheader_struct",
    "peer",
    "read_buffer",
    "read_string",
    "send",
    "stat_struct",
    "write_string",
]

# Wire encoders of kazoo's protocol module (not part of its documented API).
int_struct = _serialization.int_struct  # '!i'
multiheader_struct = _serialization.multiheader_struct  # '!iBi': type, done, error
stat_struct = _serialization.stat_struct  # the 11 fields of a znode Stat
read_buffer = _serialization.read_buffer  # (bytes, offset) -> (data or None, offset)
read_string = _serialization.read_string  # (bytes, offset) -> (str or None, offset)
write_string = _serialization.write_string  # str -> length-prefixed UTF-8


def send(client: Any, request: Any, result: Any) -> bool:
    """Queue ``request`` on the client's connection; its answer (or error)
    completes ``result``, an async result of ``client.handler``. False,
    having sent nothing, if this kazoo has no ``_call``."""
    call = getattr(client, "_call", None)
    if call is None:
        return False
    call(request, result)
    return True


def granted_timeout(msg: object, args: tuple[Any, ...]) -> float | None:
    """The session timeout (seconds) a server granted, from kazoo's "Session
    created" log call (its third argument, in milliseconds); None for any
    other log call, or if kazoo's message changed shape."""
    if not (isinstance(msg, str) and msg.startswith("Session created") and len(args) >= 3):
        return None
    granted = args[2]
    return granted / 1000.0 if isinstance(granted, (int, float)) and granted > 0 else None


def abandon(client: Any) -> bool:
    """Stop ``client`` without ending its session: no closeSession is sent,
    so the server keeps the session's ephemeral znodes until it times out.
    The reconnect loop is stopped, the socket broken, kazoo's thread awaited
    and the client closed. False, having done nothing, when the client is
    not connected or this kazoo's internals differ."""
    sock = getattr(getattr(client, "_connection", None), "_socket", None)
    stopped = getattr(client, "_stopped", None)
    safe_close = getattr(client, "_safe_close", None)
    if sock is None or stopped is None or safe_close is None or stopped.is_set():
        return False
    stopped.set()  # no reconnect, and stop() will not send closeSession
    with contextlib.suppress(OSError):  # already broken: the loop ends anyway
        sock.shutdown(socket.SHUT_RDWR)
    try:
        safe_close()
    finally:
        client.close()
    return True


def peer(client: Any) -> tuple[str, int] | None:
    """(host, port) of the server the client is connected to now; None when
    it is not connected or this kazoo keeps its socket elsewhere."""
    sock = getattr(getattr(client, "_connection", None), "_socket", None)
    if sock is None:
        return None
    try:
        host, port = sock.getpeername()[:2]
    except OSError:
        return None
    return str(host), int(port)
