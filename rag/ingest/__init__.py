"""Ingestion: files -> `Document`s (loading) -> `Chunk`s with exact character spans (chunking).
Embedding them is a model's job (`rag.models.embedding`); storing them is `rag.store`'s.

May import: the ground floor (rag.types, rag.errors, rag.text, rag.config, rag.prompts, rag.model_names)
and rag.models (an executor's workers embed). Not rag.store (beside it on its floor), nor anything above
(tests/test_layout.py)."""
