"""The creation index: a page of flows, oldest first, without listing them all.

``flows/`` has one child per stored flow; listing it costs a round trip
whose size grows with the store (100,000 flows: ~0.45 s and ~12 MB in
kazoo), and ZooKeeper keeps no order a listing could resume from. So each
flow also gets an empty znode in a tree by creation time::

    <chroot>/created/<YYYYMMDD>/<bucket>/<ms>-<flow>

``<bucket>`` is the epoch second its 10 s slice starts at (11 digits),
``<ms>`` the record's ``created_at`` in ms (13 digits), so names sort by
creation time (the submitter's clock: flows submitted in the same
millisecond sort by id). A page reads the day folders, one day's buckets,
and the buckets it needs: memory and time follow the page, a day's bucket
count (at most 8,640) and a bucket's flows, never the store. The entry is
made in the multi that creates the flow, and removed in the one that
deletes it; emptied folders are removed afterwards (a create that meets
its folder gone makes it again).

Flows stored before the index existed are indexed once, by the first
``page_flows`` that finds no ``created-indexed`` marker (idempotent: the
names are fixed by the records, so two processes doing it at once make
each entry once). Flows submitted later by an older flowbaton, which does
not write entries, are missing from pages (not from ``list_flows``).
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Sequence

from ..errors import BadCursor, CorruptRecord
from ..records import FlowDetail, load_json
from .client import Op, Session
from .layout import Layout, decode_name, encode_name

__all__ = ["CreationIndex", "BUCKET_SECONDS"]

log = logging.getLogger("flowbaton.backends.zookeeper")

BUCKET_SECONDS = 10
_CURSOR = re.compile(r"(\d{8})/(\d{11})/(\d{13}-[A-Za-z0-9%._~:@+=,-]+)")
_BACKFILL_BATCH = 500  # index entries per multi while backfilling
_BUCKETS_PER_READ = 32  # bucket listings per request while a page fills


def _created_ms(created_at: float) -> int:
    return max(0, min(int(created_at * 1000), 10**13 - 1))


class CreationIndex:
    """Where a flow's entry lives, and reading the index a page at a time."""

    def __init__(self, zk: Session, paths: Layout) -> None:
        self._zk = zk
        self._paths = paths
        self.root = f"{paths.root}/created"
        self.marker = f"{paths.root}/created-indexed"
        self._known: set[str] = set()  # folders made or seen by this process
        self._indexed = False
        self._lock = threading.Lock()

    # ------------------------------------------------------------ entries

    def folders(self, created_at: float) -> tuple[str, str]:
        ms = _created_ms(created_at)
        seconds = ms // 1000
        day = time.strftime("%Y%m%d", time.gmtime(seconds))
        bucket = f"{seconds // BUCKET_SECONDS * BUCKET_SECONDS:011d}"
        return f"{self.root}/{day}", f"{self.root}/{day}/{bucket}"

    def entry(self, flow_id: str, created_at: float) -> str:
        return f"{self.folders(created_at)[1]}/{_created_ms(created_at):013d}-{encode_name(flow_id)}"

    def create_op(self, flow: FlowDetail) -> Op:
        return Op("create", self.entry(flow.id, flow.created_at), b"")

    def ensure_folders(self, created_at: float, *, again: bool = False) -> None:
        """The day and bucket folders of a flow created at ``created_at``;
        ``again``: they may have been removed since we last saw them."""
        self._ensure_bucket(self.folders(created_at)[1], again)

    def _ensure_bucket(self, bucket: str, again: bool = False) -> None:
        """``bucket`` and its day folder, unless this process made or saw them."""
        with self._lock:
            known = bucket in self._known and not again
        if not known:
            day = bucket.rpartition("/")[0]
            self._zk.ensure_paths([self.root, day, bucket])
            with self._lock:
                self._known.update((day, bucket))

    def entry_of(self, raw: bytes, flow_id: str) -> str | None:
        """The entry of a stored record, or None when its ``created_at``
        cannot be read (a corrupt record: its entry, if any, stays behind
        and pages skip it as gone)."""
        try:
            data = load_json(raw, f"flow {flow_id!r}")
        except CorruptRecord:
            return None
        created = data.get("created_at") if isinstance(data, dict) else None
        if not isinstance(created, (int, float)) or isinstance(created, bool):
            return None
        return self.entry(flow_id, float(created))

    def drop_empty(self, entry: str) -> None:
        """Remove the bucket and day folders of ``entry`` if they are empty
        now (best effort: a folder with children stays)."""
        bucket = entry.rpartition("/")[0]
        day = bucket.rpartition("/")[0]
        for folder in (bucket, day):
            if not self._zk.delete_if_empty(folder):
                return
            with self._lock:
                self._known.discard(folder)

    # -------------------------------------------------------------- pages

    def page(self, after: str | None, count: int) -> tuple[list[tuple[str, str]], bool]:
        """Up to ``count`` (cursor, flow id) after the cursor ``after``,
        oldest first, and whether more follow."""
        start = _parse(after)
        found: list[tuple[str, str]] = []
        days = sorted(d for d in self._zk.children_many([self.root])[0] or [] if d >= start[0])
        for day in days:
            buckets = sorted(b for b in self._zk.children_many([f"{self.root}/{day}"])[0] or []
                             if (day, b) >= start[:2])
            for first in range(0, len(buckets), _BUCKETS_PER_READ):  # sparse buckets: many per request
                chunk = buckets[first : first + _BUCKETS_PER_READ]
                listings = self._zk.children_many([f"{self.root}/{day}/{bucket}" for bucket in chunk])
                for bucket, names in zip(chunk, listings, strict=True):
                    for name in sorted(n for n in names or [] if (day, bucket, n) > start):
                        if len(found) == count:
                            return found, True
                        found.append((f"{day}/{bucket}/{name}", decode_name(name.partition("-")[2])))
        return found, False

    # ----------------------------------------------------------- backfill

    def ensure_indexed(self) -> None:
        """Index the flows stored before the index existed, once per store."""
        if self._indexed:
            return
        if self._zk.exists_many([self.marker])[0] is None:
            self._backfill()
            self._zk.create(self.marker, b"")
        self._indexed = True

    def mark_new_store(self) -> None:
        """A store made by this version has every flow indexed from the start."""
        self._zk.ensure_paths([self.root])
        self._zk.create(self.marker, b"")

    def _indexed_ids(self) -> set[str]:
        """Flow ids the index holds already (made since the upgrade)."""
        days = [f"{self.root}/{d}" for d in self._zk.children_many([self.root])[0] or []]
        buckets = [f"{day}/{b}" for day, names in zip(days, self._zk.children_many(days), strict=True)
                   for b in names or []]
        return {decode_name(n.partition("-")[2]) for names in self._zk.children_many(buckets) for n in names or []}

    def _backfill(self) -> None:
        indexed = {encode_name(flow_id) for flow_id in self._indexed_ids()}
        names = [n for n in self._zk.children_many([self._paths.flows])[0] or [] if n not in indexed]
        log.warning("indexing %d stored flows by creation time for paged listings (once per store)", len(names))
        for start in range(0, len(names), _BACKFILL_BATCH):
            chunk = names[start : start + _BACKFILL_BATCH]
            nodes = self._zk.get_many([f"{self._paths.flows}/{name}" for name in chunk])
            entries = [e for name, node in zip(chunk, nodes, strict=True) if node is not None
                       for e in [self.entry_of(node.data, decode_name(name))] if e is not None]
            self._create_entries(entries)

    def _create_entries(self, entries: Sequence[str]) -> None:
        for entry in entries:
            self._ensure_bucket(entry.rpartition("/")[0])
        if entries and not self._zk.commit([Op("create", e, b"") for e in entries]).ok:
            for entry in entries:  # some exist (another process indexes too): one by one
                self._zk.create(entry, b"")


def _parse(after: str | None) -> tuple[str, str, str]:
    if after is None or after == "":
        return ("", "", "")
    match = _CURSOR.fullmatch(after)
    if match is None:
        raise BadCursor(f"not a page cursor: {after[:60]!r} (use the one the previous page ended with)")
    return match.group(1), match.group(2), match.group(3)
