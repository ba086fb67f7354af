"""Where chunks and their vectors live: `IndexStore`, a FAISS index plus records on disk, stamped with the
embedding model and saved as atomic generations, or `PgStore` (PostgreSQL + pgvector); both meet
`rag.store.interface.Store`, the one type the rest of the package uses.

May import: the ground floor and rag.models. Not rag.ingest (beside it on its floor; a sync's
`FolderScan` is in rag.types), nor anything above (tests/test_layout.py)."""
from rag.store.faiss_index import IndexStore

__all__ = ["IndexStore"]
