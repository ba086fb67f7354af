"""The error hierarchy. Library code raises these; only the CLI and UI turn them into user text."""
from __future__ import annotations


SHOWN_CHARS = 64


def shorten(value: object, limit: int = SHOWN_CHARS) -> str:
    """`value` as text for an error message, cut to `limit` characters and "…" (a 100k-character name
    sent by a client is not echoed back whole)."""
    text = str(value)
    return text if len(text) <= limit else text[:limit] + "…"


def shown(value: object, limit: int = SHOWN_CHARS) -> str:
    """repr() of a value a client gave, cut short like `shorten`."""
    return shorten(repr(value), limit + 2)


class RagError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(RagError):
    """A setting has a bad value; the message names it and the valid choices."""


class InputError(RagError):
    """A question or path given at the boundary is unusable (empty, too long, missing)."""


class NotAllowed(RagError):
    """The user may not do this (an action for admins only); the message says who may."""


class LoadError(RagError):
    """One file could not be turned into a Document; ingestion reports it and goes on."""

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


class StoreError(RagError):
    """The persisted index is missing, corrupt, or was built with other settings."""


class IndexMismatchError(StoreError):
    """The index on disk was built with another embedding model or dimension."""


class ModelError(RagError):
    """A model could not be found, assembled, verified or loaded."""


class DocumentNotFound(RagError):
    """`delete` was given an id that is not in the index."""


class IndexChangedError(StoreError):
    """A store loaded before another process's save was asked to save: that would lose the other save."""
