# mypy: disable-error-code="type-arg"
"""Client type aliases that type-check with redis-py's own annotations
(``Redis`` is not generic) and with the ``types-redis`` stubs (where it is
``Redis[bytes]``): the driver never decodes responses, so both mean bytes."""

from __future__ import annotations

from typing import TypeAlias

from redis import Redis
from redis.client import Pipeline

__all__ = ["Client", "Pipe"]

# With redis-py's own annotations the arguments are refused (and dropped) at
# these two lines only; that is what the file-level disable above is for.
Client: TypeAlias = "Redis[bytes]"
Pipe: TypeAlias = "Pipeline[bytes]"
