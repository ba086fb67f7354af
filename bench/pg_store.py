"""The PostgreSQL store at a size: ingest (one transaction per 256-chunk batch, as `RAG.add` saves),
dense search through pgvector's HNSW index (p50 / p95 latency, recall@10 against exact numpy search),
full-text search, and a scoped search over one document in twenty. A throwaway pgserver in a temp dir.

Vectors are random, normalised, 384-dimensional; queries are stored vectors with noise added (--noise). Texts are
20 words from a 2,000-word vocabulary, so the lexical half has real work to do.

    python bench/pg_store.py --chunks 10000
"""
from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from rag.store.postgres import PgStore
from rag.types import Chunk

DIM, BATCH, PER_DOC = 384, 256, 8


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--chunks", type=int, default=10_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--noise", type=float, default=0.02, help="per dimension; 0.02 gives cosine ~0.93 to the source")
    args = ap.parse_args()
    import pgserver

    rng, nrng = random.Random(0), np.random.default_rng(0)
    vocab = [f"w{i}" for i in range(2000)]
    vectors = nrng.standard_normal((args.chunks, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    texts = [" ".join(rng.choice(vocab) for _ in range(20)) for _ in range(args.chunks)]
    server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="rag-pg-bench-")), cleanup_mode="delete")
    try:
        store = PgStore.connect(server.get_uri(), "bench", DIM, 20, 0, Path(tempfile.mkdtemp()))
        batch_seconds = []
        for at in range(0, args.chunks, BATCH):
            t = time.perf_counter()
            with store.writing():
                for d in range(at, min(at + BATCH, args.chunks), PER_DOC):
                    n = min(PER_DOC, args.chunks - d)
                    first = store.reserve_ids(n)
                    chunks = [Chunk(id=first + k, doc_id=f"d{d}", source=f"/d{d}.txt", text=texts[d + k], start=0,
                                    end=len(texts[d + k])) for k in range(n)]
                    store.add(f"d{d}", f"/d{d}.txt", sum(len(c.text) for c in chunks), chunks, vectors[d:d + n])
                store.save()
            batch_seconds.append(time.perf_counter() - t)
        picks = nrng.choice(args.chunks, args.queries, replace=False)
        queries = vectors[picks] + args.noise * nrng.standard_normal((args.queries, DIM)).astype(np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        dense, recall = [], []
        for q in queries:
            t = time.perf_counter()
            found = [c.id for c, _ in store.search(q, 10)]
            dense.append(time.perf_counter() - t)
            exact = set(np.argsort(-(vectors @ q))[:10].tolist())
            recall.append(len(exact & set(found)) / 10)
        lexical, scoped = [], []
        docs = list(store.docs.values())
        for i, q in enumerate(queries):
            words = " ".join(rng.sample(vocab, 6))
            t = time.perf_counter()
            store.lexical_search(words, 15)
            lexical.append(time.perf_counter() - t)
            within = frozenset(c for d in docs[i % 20::20] for c in d.chunk_ids)
            t = time.perf_counter()
            store.search(q, 10, within)
            scoped.append(time.perf_counter() - t)
        ms = lambda xs, p: round(1000 * float(np.percentile(xs, p)), 2)  # noqa: E731
        print(json.dumps({
            "chunks": args.chunks, "batch_s_p50": round(float(np.median(batch_seconds)), 3),
            "ingest_chunks_per_s": round(args.chunks / sum(batch_seconds), 1),
            "dense_ms_p50": ms(dense, 50), "dense_ms_p95": ms(dense, 95), "recall_at_10": round(float(np.mean(recall)), 4),
            "lexical_ms_p50": ms(lexical, 50), "scoped_1_in_20_ms_p50": ms(scoped, 50)}))
        store.close()
    finally:
        server.cleanup()


if __name__ == "__main__":
    main()
