"""The error hierarchy. Library code raises these; only the CLI and UI turn them into user text."""
from __future__ import annotations


class RagError(Exception):
    """Base of every error this package raises on purpose."""


class ConfigError(RagError):
    """A setting has a bad value; the message names it and the valid choices."""


class InputError(RagError):
    """A question or path given at the boundary is unusable (empty, too long, missing)."""


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
