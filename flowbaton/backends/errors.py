"""One exception tree for the whole product, grouped by what the caller does next.

It lives in the lowest layer so that every layer (backends, engine,
coordinator) raises the same types without importing upwards.
"""

from __future__ import annotations

__all__ = [
    "FlowbatonError",
    "DefinitionError",
    "DuplicateTaskId",
    "CycleError",
    "MissingInputs",
    "FactoryError",
    "FactoryNotAllowed",
    "NotJSONError",
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
]


class FlowbatonError(Exception):
    """Root of every error flowbaton raises on purpose."""


# --- fix the input -------------------------------------------------------


class DefinitionError(FlowbatonError, ValueError):
    """A task, flow or factory is defined wrongly; fix the code."""


class DuplicateTaskId(DefinitionError):
    """Two tasks of one flow share an id; the message names both places."""


class CycleError(DefinitionError):
    """The flow's ordering (data and explicit edges) has a cycle."""


class MissingInputs(DefinitionError):
    """A task requires a value nothing provides (no task, no flow input)."""


class FactoryError(DefinitionError):
    """A factory reference or its arguments cannot be saved or loaded."""


class FactoryNotAllowed(FactoryError):
    """A stored factory name is outside this replica's allowed prefixes."""


class NotJSONError(DefinitionError, TypeError):
    """A value bound for storage is not plain JSON; names the task and path."""


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
