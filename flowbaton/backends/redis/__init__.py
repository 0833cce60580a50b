"""Redis driver: ``redis://``, ``rediss://`` and ``redis+sentinel://`` (needs redis-py)."""

from __future__ import annotations

from .driver import RedisBackend

__all__ = ["RedisBackend"]
