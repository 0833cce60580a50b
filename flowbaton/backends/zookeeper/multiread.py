"""Many znode reads in one request: ZooKeeper's ``multiRead`` (3.6+).

Why: kazoo spends ~150 µs of Python per request (a queue hand-off, a wake-up
byte on a socket pair, one select turn to send and one to read), so listing
10,000 flows one ``get`` each takes ~2 s however well the requests are
pipelined. ``multiRead`` carries up to ``BATCH`` getData (or getChildren) ops in one
request and one reply, which makes the same listing ~40 times cheaper, and
lets a replica that just took hundreds of orphans over read their records
and task folders in a handful of requests.

kazoo has no public call for it, so this module builds the request the way
kazoo's own ``Transaction`` does (``type``, ``serialize``, ``deserialize``)
and queues it through ``kazoo_private.send`` (kazoo's internal entry point of
every operation). A server older than 3.6 answers ``UnimplementedError``, and
so does ``send_multi_read`` itself on a kazoo without that entry point; the
session then falls back to one ``get`` per path (``Session.get_many``).

Not a transaction: each op reads the latest committed data on its own, like
pipelined gets. A missing znode is reported per op (``None``), not an error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

from kazoo.exceptions import EXCEPTIONS, NoNodeError, UnimplementedError

from .kazoo_private import int_struct, multiheader_struct, read_buffer, read_string, send, stat_struct, write_string

__all__ = ["BATCH", "MultiRead", "send_multi_read"]

log = logging.getLogger(__name__)

# Paths per request. Bounds one reply (BATCH records) so that a listing of
# large records never needs one giant buffer, while keeping requests few.
BATCH = 256

_OP_MULTI_READ = 22  # ZooDefs.OpCode.multiRead
_OP_GET_DATA = 4  # ZooDefs.OpCode.getData
_OP_GET_CHILDREN = 8  # ZooDefs.OpCode.getChildren
_OP_ERROR = -1  # a per-op error result: an int error code follows
_NO_NODE = NoNodeError.code


class Raw(NamedTuple):
    """One getData result: data plus the stat fields the driver uses."""

    data: bytes
    version: int
    czxid: int
    ephemeral_owner: int


class MultiRead(NamedTuple):
    """A kazoo request object for ``multiRead`` of getData ops, or of
    getChildren ops when ``children`` (no watches)."""

    paths: Sequence[str]
    children: bool = False
    type: int = _OP_MULTI_READ

    def serialize(self) -> bytearray:
        out = bytearray()
        op = _OP_GET_CHILDREN if self.children else _OP_GET_DATA
        for path in self.paths:
            out += multiheader_struct.pack(op, False, -1)
            out += write_string(path)
            out.append(0)  # watch: no
        out += multiheader_struct.pack(-1, True, -1)  # the end marker
        return out

    @classmethod
    def deserialize(cls, buffer: bytes, offset: int) -> list[Raw | list[str] | BaseException | None]:
        """One entry per path: a ``Raw`` (getData) or the child names
        (getChildren), None (no such znode), or the kazoo exception of
        another per-op error (e.g. NoAuth)."""
        results: list[Raw | list[str] | BaseException | None] = []
        while True:
            kind, done, _ = multiheader_struct.unpack_from(buffer, offset)
            offset += multiheader_struct.size
            if done:
                return results
            if kind == _OP_ERROR:
                code = int_struct.unpack_from(buffer, offset)[0]
                offset += int_struct.size
                results.append(None if code == _NO_NODE else EXCEPTIONS[code]())
                continue
            if kind == _OP_GET_CHILDREN:
                count = int_struct.unpack_from(buffer, offset)[0]
                offset += int_struct.size
                names = []
                for _ in range(max(count, 0)):
                    name, offset = read_string(buffer, offset)
                    names.append(name)
                results.append(names)
                continue
            data, offset = read_buffer(buffer, offset)
            stat = stat_struct.unpack_from(buffer, offset)
            offset += stat_struct.size
            # stat layout: czxid mzxid ctime mtime version cversion aversion ephemeralOwner ...
            results.append(Raw(data or b"", stat[4], stat[0], stat[7]))


def send_multi_read(client: Any, paths: Sequence[str], *, children: bool = False) -> Any:
    """Queue one multiRead on ``client`` (of getChildren ops when
    ``children``); returns kazoo's async result."""
    result = client.handler.async_result()
    if not send(client, MultiRead(paths, children), result):
        log.warning("this kazoo cannot send a request it does not know: reading znodes one by one")
        result.set_exception(UnimplementedError())
    return result
