"""One exception tree for the whole product, grouped by what the caller does next.

It lives in the lowest layer so that every layer (backends, engine,
coordinator) raises the same types without importing upwards. The errors
only the engine raises (a flow or factory defined wrongly) are its own, in
``engine.errors``, under this module's ``DefinitionError``: a backend
raises one definition error too, ``limits.FlowTooLarge``.
"""

from __future__ import annotations

__all__ = [
    "FlowbatonError",
    "DefinitionError",
    "ResultTooLarge",
    "ClaimError",
    "ClaimLost",
    "ClaimHeld",
    "BackendUnavailable",
    "MissingDriver",
    "BadBackendURL",
    "InsecureBackend",
    "CorruptRecord",
    "FlowNotFound",
    "FlowExists",
    "MailboxFull",
    "BadCursor",
]


class FlowbatonError(Exception):
    """Root of every error flowbaton raises on purpose."""


# --- fix the input -------------------------------------------------------


class DefinitionError(FlowbatonError, ValueError):
    """A task, flow or factory is defined wrongly; fix the code."""


class ResultTooLarge(FlowbatonError, ValueError):
    """A record exceeds what the backend can store in one piece."""


class BadBackendURL(FlowbatonError, ValueError):
    """A backend URL or one of its options is malformed."""


class InsecureBackend(BadBackendURL):
    """The store's access control lets others change (or read) flowbaton's
    records, e.g. an open ZooKeeper ACL; the message names the paths and
    the URL option that accepts the risk."""


class MissingDriver(FlowbatonError, ImportError):
    """The client library a backend URL needs is not installed."""


class BadCursor(FlowbatonError, ValueError):
    """A page cursor that no listing handed out."""


class MailboxFull(FlowbatonError, ValueError):
    """A replica's mailbox already holds as many handover requests as it
    may (``backends.base.MAX_HANDOVERS``): wait for it to act on them."""


# --- stop now ------------------------------------------------------------


class ClaimError(FlowbatonError):
    """Base of claim problems."""


class ClaimLost(ClaimError):
    """Our claim token is no longer current: another owner (or an operator)
    took the flow. Stop starting tasks for it and never revert on our own."""


class ClaimHeld(ClaimError):
    """Someone else holds a live claim on the flow."""


# --- retry later ---------------------------------------------------------


class BackendUnavailable(FlowbatonError):
    """The backend did not answer within the retry budget."""


# --- look at the data ----------------------------------------------------


class CorruptRecord(FlowbatonError):
    """A stored record cannot be read; says which record, where, and what."""

    def __init__(self, where: str, what: str) -> None:
        super().__init__(f"corrupt record at {where}: {what}")
        self.where = where
        self.what = what
        #: The start of the stored bytes, where the reader had them: kept by
        #: whoever replaces the record, for a person to look at.
        self.raw: str | None = None


class FlowNotFound(FlowbatonError, LookupError):
    """No flow with that id is stored."""


class FlowExists(FlowbatonError):
    """A flow with that id is already stored."""
