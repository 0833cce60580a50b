"""Short flow ids: an operator may type the first characters of an id.

Ids are 32 hex characters by default, too long to type and to read out. A
prefix of at least ``MIN_PREFIX`` characters names the one stored flow whose
id starts with it; an ambiguous prefix is refused, listing the matches, so
an action never lands on a flow the operator did not mean. A full id always
wins, even when it is also the prefix of a longer one.
"""

from __future__ import annotations

from ..backends.base import Backend
from ..backends.errors import CorruptRecord, FlowNotFound
from .actions import OpRefused

__all__ = ["MIN_PREFIX", "resolve_flow_id"]

#: The shortest prefix taken for an id: 16 million ids of random hex apart.
MIN_PREFIX = 6
_SHOWN = 10  # matches named in the refusal of an ambiguous prefix


def resolve_flow_id(backend: Backend, text: str) -> str:
    """The stored flow id ``text`` names: itself when stored, else the one id
    it is a prefix of. ``FlowNotFound`` when none, ``OpRefused`` when several."""
    try:
        backend.load_flow(text)
        return text
    except CorruptRecord:
        return text  # stored, just unreadable: the command says what to do with it
    except FlowNotFound:
        pass
    if len(text) < MIN_PREFIX:
        raise FlowNotFound(f"no flow {text!r} (a shortened id needs at least {MIN_PREFIX} characters)")
    found = sorted(backend.flow_ids(text, _SHOWN + 1))
    if not found:
        raise FlowNotFound(f"no flow {text!r}, and no flow id starts with it")
    if len(found) > 1:
        shown = ", ".join(found[:_SHOWN]) + (", ..." if len(found) > _SHOWN else "")
        raise OpRefused(f"flow id prefix {text!r} is ambiguous: it starts {shown}; type more of the id")
    return found[0]
