"""Ingestion: files -> `Document`s (loading) -> `Chunk`s with exact character spans (chunking).
Embedding them is a model's job (`rag.models.embedding`); storing them is `rag.store`'s."""
