"""Where chunks and their vectors live: `IndexStore`, a FAISS index plus records on disk, stamped with the
embedding model and saved as atomic generations."""
from rag.store.faiss_index import IndexStore

__all__ = ["IndexStore"]
