"""Answering a question: rewrite it (follow-ups, HyDE) -> retrieve passages -> choose the context the
model is shown -> generate -> check every sentence against its cited passage, or refuse.

May import: the ground floor (rag.types, rag.errors, rag.text, rag.config, rag.prompts, rag.model_names),
rag.models and rag.store (typed against `rag.store.interface.Store`, never a concrete store). Never
rag.ingest (the sentence splitter is the ground floor's, rag.text), nor anything above: pipeline,
collections, evaluation, app (tests/test_layout.py)."""
