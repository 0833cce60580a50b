"""``zookeeper://[user:pass@]h1:2181,h2:2181/chroot?options``: the ZooKeeper
driver (kazoo). See ``driver.py`` for fencing and ``layout.py`` for the tree."""

from __future__ import annotations

from .driver import ZooKeeperBackend

__all__ = ["ZooKeeperBackend"]
