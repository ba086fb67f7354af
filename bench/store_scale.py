"""Both index stores at one size, from the same vectors, in one run: PostgreSQL + pgvector (`PgStore`,
HNSW) and FAISS (`IndexStore`, IVF above 30k vectors). For each: build time, dense search p50/p95
(one query at a time, top 10), recall@10 against exact search (numpy, every vector); for PostgreSQL
also full-text, hybrid (`HybridRetriever`: dense + full text, fused by rank) and scoped searches.

Vectors (--vectors real, the default): real passages embedded once with the packaged MiniLM
(SQuAD-small and COVID-QA contexts from the shared datasets, split into 60-word chunks; cached in
/tmp), then each of the N stored vectors is a uniformly sampled real vector plus Gaussian noise
(sigma --noise per dimension), renormalised: with 0.02 its cosine to its source is ~0.93, so the
store holds ~N/base near-paraphrases of each real passage, clustered as real embeddings are. A chunk's
text is its source passage's text. `--vectors random` is uniform on the sphere (HNSW's worst case).
`--vectors synthetic` needs neither the datasets nor MiniLM: random vectors, 20-word texts of a 2,000-word
vocabulary, queries = stored vectors plus noise (what bench/pg_store.py measured before it was merged here).
Queries: real questions from the same datasets, embedded; half of --queries are the questions, the
other half the same questions with the same noise added.

How each store is built (build time = everything below, measured on the wall clock):
    PostgreSQL, --pg-load copy (default): PgStore.connect creates its tables and indexes; the bench
        captures PgStore's own index definitions, drops them, loads documents and chunks with COPY
        (binary; the tsvector column is computed by the server), then runs those same CREATE INDEX
        statements (HNSW, GIN, doc id). This is the bench's bulk path, not PgStore's; PgStore's
        per-batch path (one transaction per 256 chunks, as `RAG.add`) is measured afterwards by
        adding --tail-batches batches to the loaded index.
    PostgreSQL, --pg-load batches: the whole corpus through PgStore.writing/reserve_ids/add/save,
        256 chunks a transaction (slow: ~100 chunks/s at 10k).
    FAISS: IndexStore.add for every document, then fit_index (IVF training and adding, as save()
        does) and save() (the files), timed apart; then --tail-batches 256-chunk batches, each
        saved (the whole-index save `RAG.add` pays per batch).

    nice -n 19 python bench/store_scale.py --chunks 100000 --json docs/baselines/store_scale-100k.json
    # PostgreSQL alone, through PgStore's own 256-chunk transactions, no datasets or model needed:
    python bench/store_scale.py --stores pg --pg-load batches --vectors synthetic --chunks 10000 --tail-batches 0
"""
from __future__ import annotations

import argparse
import json
import random
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, machine

from rag.answer.retrieval import HybridRetriever
from rag.evaluation.metrics import percentile
from rag.store import index_types
from rag.store.faiss_index import IndexStore
from rag.store.postgres import HNSW_EF_SEARCH, PgStore
from rag.types import Chunk

DIM, BATCH, PER_DOC, WORDS = 384, 256, 8, 60
MODEL = "all-MiniLM-L6-v2"
DATASETS = Path("/work/shared/datasets")
SOURCE = np.zeros(0, np.int64)  # the real passage behind each stored vector (corpus())


def passages_and_questions(n_passages: int, seed: int) -> tuple[list[str], list[str]]:
    """60-word chunks of the SQuAD-small and COVID-QA contexts (a sample of n_passages), and every question."""
    chunks, questions = [], []
    for path in (DATASETS / "squad-small/squad-v2-small.json", DATASETS / "covid-qa/covidqa-200423.json"):
        for article in json.loads(path.read_text(encoding="utf-8"))["data"]:
            for para in article["paragraphs"]:
                words = para["context"].split()
                chunks += [" ".join(words[i:i + WORDS]) for i in range(0, len(words), WORDS) if len(words[i:i + WORDS]) >= 20]
                questions += [q["question"].strip() for q in para["qas"]]
    rng = random.Random(seed)
    return rng.sample(chunks, min(n_passages, len(chunks))), sorted(set(questions))


def base_embeddings(n_passages: int, seed: int) -> dict:
    cache = Path(tempfile.gettempdir()) / f"rag-store-scale-base-{n_passages}-{seed}.npz"
    if cache.is_file():
        data = np.load(cache, allow_pickle=False)
        return {k: data[k] for k in data.files}
    from rag.models.embedding import SentenceTransformerEmbedder

    passages, questions = passages_and_questions(n_passages, seed)
    embedder = SentenceTransformerEmbedder(MODEL)
    t = time.perf_counter()
    data = {"passages": np.array(passages), "passage_vectors": embedder.embed(passages).astype(np.float32),
            "questions": np.array(questions), "question_vectors": embedder.embed(questions).astype(np.float32)}
    print(f"embedded {len(passages)} passages and {len(questions)} questions in {time.perf_counter() - t:.0f} s",
          file=sys.stderr)
    np.savez(cache, **data)
    return data


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def synthetic_corpus(args) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """--vectors synthetic: no datasets and no embedder. Random unit vectors; each text 20 words of a
    2,000-word vocabulary (so full-text search has real work); queries are stored vectors plus noise, and
    each query text 6 words of the vocabulary."""
    global SOURCE
    rng, words = np.random.default_rng(args.seed), random.Random(args.seed)
    vocab = [f"w{i}" for i in range(2000)]
    vectors = unit(rng.standard_normal((args.chunks, DIM), dtype=np.float32))
    texts = [" ".join(words.choice(vocab) for _ in range(20)) for _ in range(args.chunks)]
    picks = rng.choice(args.chunks, args.queries, replace=False)
    queries = unit(vectors[picks] + args.noise * rng.standard_normal((len(picks), DIM), dtype=np.float32))
    SOURCE = np.arange(args.chunks)
    return vectors, texts, queries, [" ".join(words.sample(vocab, 6)) for _ in picks]


def corpus(args) -> tuple[np.ndarray, list[str], np.ndarray, list[str]]:
    """(N stored vectors, their texts, queries, query texts)."""
    if args.vectors == "synthetic":
        return synthetic_corpus(args)
    rng = np.random.default_rng(args.seed)
    base = base_embeddings(args.base, args.seed)
    texts_of = [str(t) for t in base["passages"]]
    pick = rng.integers(0, len(texts_of), args.chunks)
    global SOURCE
    SOURCE = pick if args.vectors == "real" else np.arange(args.chunks)
    texts = [texts_of[i] for i in pick]
    if args.vectors == "random":
        vectors = unit(rng.standard_normal((args.chunks, DIM), dtype=np.float32))
    else:
        vectors = np.empty((args.chunks, DIM), np.float32)
        for at in range(0, args.chunks, 100_000):
            rows = pick[at:at + 100_000]
            noise = rng.standard_normal((len(rows), DIM), dtype=np.float32)
            vectors[at:at + len(rows)] = unit(base["passage_vectors"][rows] + args.noise * noise)
    half = args.queries // 2
    qi = rng.choice(len(base["questions"]), half, replace=False)
    qv = base["question_vectors"][qi]
    queries = np.concatenate([qv, unit(qv + args.noise * rng.standard_normal(qv.shape, dtype=np.float32))])
    qtexts = [str(base["questions"][i]) for i in qi] * 2
    return vectors, texts, queries, qtexts


def exact_top(vectors: np.ndarray, queries: np.ndarray, k: int = 10) -> list[set[int]]:
    out = []
    for at in range(0, len(queries), 20):
        scores = queries[at:at + 20] @ vectors.T
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        out += [set(row.tolist()) for row in top]
    return out


def ms(xs, p) -> float:
    return round(1000 * percentile(xs, p), 2)


def timed_search(search, queries, exact, vectors) -> dict:
    """Latency, recall@10, and how much cosine a miss costs: the mean over queries of (mean cosine of the
    exact top 10) - (mean cosine of the 10 found), so 0 when the misses are near-ties; and passage recall:
    the share of the real passages behind the exact top 10 that the found 10 also come from (a miss that is
    another noisy copy of the same passage is no loss for an answer)."""
    for q in queries[:10]:
        search(q)  # warm the caches
    lat, rec, gap, prec = [], [], [], []
    for q, truth in zip(queries, exact):
        t = time.perf_counter()
        found = search(q)
        lat.append(time.perf_counter() - t)
        rec.append(len(truth & set(found)) / 10)
        want = {int(SOURCE[i]) for i in truth}
        prec.append(len(want & {int(SOURCE[i]) for i in found if i < len(SOURCE)}) / len(want))
        gap.append(float(np.mean(vectors[sorted(truth)] @ q)) - float(np.mean(vectors[found] @ q)) if found else 1.0)
    half = len(rec) // 2
    return {"p50_ms": ms(lat, 50), "p95_ms": ms(lat, 95), "recall_at_10": round(float(np.mean(rec)), 4),
            "recall_questions": round(float(np.mean(rec[:half])), 4),
            "recall_noisy_questions": round(float(np.mean(rec[half:])), 4),
            "cosine_gap_top10": round(float(np.mean(gap)), 5),
            "passage_recall_at_10": round(float(np.mean(prec)), 4)}


def doc_rows(n: int):
    for d in range(0, n, PER_DOC):
        yield d, min(PER_DOC, n - d)


def chunk_of(i: int, doc: str, text: str) -> Chunk:
    return Chunk(id=i, doc_id=doc, source=f"/{doc}.txt", text=text, start=0, end=len(text))


class Lookup:
    """An embedder that returns the query vectors computed beforehand (HybridRetriever embeds its question;
    the bench measures the stores, not MiniLM)."""
    name, dim = MODEL, DIM

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self.table = dict(zip(texts, vectors))

    def embed(self, texts: list[str], progress: bool = False) -> np.ndarray:
        return np.stack([self.table[t] for t in texts])

    def embed_query(self, texts: list[str]) -> np.ndarray:
        return self.embed(texts)


def pg_bulk_load(store: PgStore, vectors: np.ndarray, texts: list[str], settings: dict, hnsw_with: str) -> dict:
    conn = store.conn
    timings = {}
    defs = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'rag_chunks' "
                                       "AND indexname <> 'rag_chunks_pkey' ORDER BY indexname").fetchall()]
    for name in ("rag_chunks_doc", "rag_chunks_embedding", "rag_chunks_tsv"):
        conn.execute(f"DROP INDEX {name}")
    t = time.perf_counter()
    n = len(vectors)
    with conn.transaction():
        with conn.cursor().copy("COPY rag_documents (id, source, chars, words) FROM STDIN") as copy:
            for d, k in doc_rows(n):
                copy.write_row((f"d{d}", f"/d{d}.txt", sum(len(texts[i]) for i in range(d, d + k)),
                                sum(len(texts[i].split()) for i in range(d, d + k))))
        with conn.cursor().copy("COPY rag_chunks (id, doc_id, source, text, start_char, end_char, page, embedding) "
                                "FROM STDIN WITH (FORMAT BINARY)") as copy:
            copy.set_types(["int8", "text", "text", "text", "int4", "int4", "int4", "vector"])
            for d, k in doc_rows(n):
                for i in range(d, d + k):
                    copy.write_row((i, f"d{d}", f"/d{d}.txt", texts[i], 0, len(texts[i]), None, vectors[i]))
        conn.execute("UPDATE rag_meta SET next_id = %s, words = %s, generation = generation + 1",
                     (n, sum(len(x.split()) for x in texts)))
    timings["copy_s"] = round(time.perf_counter() - t, 1)
    for key, value in settings.items():
        conn.execute(f"SET {key} = '{value}'")
    if hnsw_with:  # another HNSW build than PgStore's (a what-if; the product builds with pgvector's defaults)
        defs = [d + f" WITH ({hnsw_with})" if "USING hnsw" in d else d for d in defs]
    for ddl in defs:
        name = re.search(r"INDEX (\S+)", ddl).group(1)
        t = time.perf_counter()
        conn.execute(ddl)
        timings[f"index_{name}_s"] = round(time.perf_counter() - t, 1)
    t = time.perf_counter()
    conn.execute("VACUUM ANALYZE rag_chunks")
    conn.execute("VACUUM ANALYZE rag_documents")
    timings["vacuum_analyze_s"] = round(time.perf_counter() - t, 1)
    timings["index_definitions"] = defs
    return timings


def pg_batches(store: PgStore, vectors: np.ndarray, texts: list[str], start: int, count: int, tag: str) -> list[float]:
    """`count` chunks through PgStore's own path: one transaction per 256 chunks, as RAG.add saves."""
    seconds = []
    for at in range(start, start + count, BATCH):
        t = time.perf_counter()
        with store.writing():
            for d in range(at, min(at + BATCH, start + count), PER_DOC):
                k = min(PER_DOC, start + count - d)
                first = store.reserve_ids(k)
                chunks = [chunk_of(first + j, f"{tag}{d}", texts[(d + j) % len(texts)]) for j in range(k)]
                store.add(f"{tag}{d}", f"/{tag}{d}.txt", sum(len(c.text) for c in chunks), chunks,
                          vectors[[(d + j) % len(vectors) for j in range(k)]])
            store.save()
        seconds.append(time.perf_counter() - t)
    return seconds


def run_pg(args, vectors, texts, queries, qtexts, exact) -> dict:
    import pgserver

    out: dict = {"load": args.pg_load}
    settings = {"maintenance_work_mem": args.maintenance_work_mem,
                "max_parallel_maintenance_workers": str(args.parallel_workers)}
    server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="rag-pg-scale-")), cleanup_mode="delete")
    try:
        uri = server.get_uri()
        store = PgStore.connect(uri, MODEL, DIM, WORDS, 0, Path(tempfile.mkdtemp()))
        out["server"] = {k: store.conn.execute(f"SHOW {k}").fetchone()[0] for k in
                         ("server_version", "shared_buffers", "max_worker_processes", "max_parallel_workers", "jit",
                          "jit_above_cost")}
        out["server"]["pgvector"] = store.conn.execute(
            "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
        t = time.perf_counter()
        if args.pg_load == "copy":
            out["bulk"] = pg_bulk_load(store, vectors, texts, settings, args.hnsw_with)
        else:
            for key, value in settings.items():
                store.conn.execute(f"SET {key} = '{value}'")
            secs = pg_batches(store, vectors, texts, 0, len(vectors), "d")
            out["batch_s_p50"] = round(percentile(secs, 50), 3)
            out["ingest_chunks_per_s"] = round(len(vectors) / sum(secs), 1)
        out["build_s"] = round(time.perf_counter() - t, 1)
        out["settings"] = {**settings, "hnsw_with": args.hnsw_with or "m = 16, ef_construction = 64",
                           "hnsw.ef_search": HNSW_EF_SEARCH,
                           "note": "m 16 and ef_construction 64 are pgvector's defaults: PgStore's CREATE INDEX sets none"}
        out["table_mb"] = round(store.conn.execute("SELECT pg_total_relation_size('rag_chunks')").fetchone()[0] / 2**20)
        out["hnsw_index_mb"] = round(store.conn.execute(
            "SELECT pg_relation_size('rag_chunks_embedding')").fetchone()[0] / 2**20)
        store.close()
        store = PgStore.connect(uri, MODEL, DIM, WORDS, 0, Path(tempfile.mkdtemp()))
        search = lambda q: [c.id for c, _ in store.search(q, 10)]
        out["dense"] = timed_search(search, queries, exact, vectors)
        plan = store.conn.execute("EXPLAIN (ANALYZE, COSTS) SELECT id FROM rag_chunks ORDER BY embedding <=> %s LIMIT 10",
                                  (queries[0],)).fetchall()
        out["dense_plan"] = [re.sub(r"'\[[^]]*\]'", "'<query>'", r[0]) for r in plan]
        store.conn.execute("SET jit = off")
        out["dense_jit_off"] = timed_search(search, queries, exact, vectors)
        store.conn.execute("RESET jit")
        sweep = {}
        for ef in args.ef_search:
            store.conn.execute(f"SET hnsw.ef_search = {ef}")
            sweep[str(ef)] = timed_search(search, queries, exact, vectors)
        store.conn.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")
        out["dense_by_ef_search"] = sweep
        lexical, hybrid, scoped = [], [], []
        retriever = HybridRetriever(store, Lookup(qtexts, queries))
        docs = list(store.docs.values())
        for i, (q, text) in enumerate(zip(queries[:args.text_queries], qtexts[:args.text_queries])):
            t = time.perf_counter()
            store.lexical_search(text, 30)
            lexical.append(time.perf_counter() - t)
            t = time.perf_counter()
            retriever.retrieve(text, 10)
            hybrid.append(time.perf_counter() - t)
            within = frozenset(c for d in docs[i % 20::20] for c in d.chunk_ids)
            t = time.perf_counter()
            store.search(q, 10, within)
            scoped.append(time.perf_counter() - t)
        out["full_text_top30"] = {"p50_ms": ms(lexical, 50), "p95_ms": ms(lexical, 95)}
        out["hybrid_top10"] = {"p50_ms": ms(hybrid, 50), "p95_ms": ms(hybrid, 95)}
        out["scoped_1_in_20"] = {"chunks": len(docs[0::20]) * PER_DOC, "p50_ms": ms(scoped, 50), "p95_ms": ms(scoped, 95)}
        if args.tail_batches:
            secs = pg_batches(store, vectors, texts, len(vectors), args.tail_batches * BATCH, "t")
            out["per_batch_at_size"] = {"batches": len(secs), "s_each": [round(s, 2) for s in secs],
                                        "chunks_per_s": round(len(secs) * BATCH / sum(secs), 1)}
        store.close()
    finally:
        server.cleanup()
    return out


def run_faiss(args, vectors, texts, queries, exact) -> dict:
    out: dict = {}
    directory = Path(tempfile.mkdtemp(prefix="rag-faiss-scale-"))
    store = IndexStore.create(directory, MODEL, DIM, WORDS, 0)
    t0 = time.perf_counter()
    with store.writing():
        for d, k in doc_rows(len(vectors)):
            chunks = [chunk_of(i, f"d{d}", texts[i]) for i in range(d, d + k)]
            store.add(f"d{d}", f"/d{d}.txt", sum(len(c.text) for c in chunks), chunks, vectors[d:d + k])
        store.manifest.next_id = len(vectors)
        t1 = time.perf_counter()
        store.fit_index()
        t2 = time.perf_counter()
        store.save()
        t3 = time.perf_counter()
    out.update(kind=store.kind, add_s=round(t1 - t0, 1), ivf_build_s=round(t2 - t1, 1), save_s=round(t3 - t2, 1),
               build_s=round(t3 - t0, 1))
    if store.kind == "ivf":
        out["settings"] = {"nlist": store.index.nlist, "nprobe": store.index.nprobe,
                           "train_sample": min(len(vectors), index_types.IVF_TRAIN_PER_LIST * store.index.nlist)}
    out["files_mb"] = round(sum(f.stat().st_size for f in directory.iterdir() if f.is_file()) / 2**20)
    search = lambda q: [c.id for c, _ in store.search(q, 10)]
    out["dense"] = timed_search(search, queries, exact, vectors)
    if store.kind == "ivf":
        product = store.index.nprobe
        sweep = {}
        for nprobe in sorted({product // 2, product, product * 2}):
            store.index.nprobe = nprobe
            sweep[str(nprobe)] = timed_search(search, queries, exact, vectors)
        store.index.nprobe = product
        out["dense_by_nprobe"] = sweep
    if args.tail_batches:
        secs = []
        for b in range(args.tail_batches):
            t = time.perf_counter()
            with store.writing():
                for d in range(0, BATCH, PER_DOC):
                    first = store.reserve_ids(PER_DOC)
                    chunks = [chunk_of(first + j, f"t{b}-{d}", texts[d + j]) for j in range(PER_DOC)]
                    store.add(f"t{b}-{d}", f"/t{b}-{d}.txt", 1, chunks, vectors[d:d + PER_DOC])
                store.save()
            secs.append(time.perf_counter() - t)
        out["per_batch_at_size"] = {"batches": len(secs), "s_each": [round(s, 2) for s in secs],
                                    "chunks_per_s": round(len(secs) * BATCH / sum(secs), 1)}
    shutil.rmtree(directory)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=100_000)
    ap.add_argument("--base", type=int, default=3000, help="real passages embedded (cached in /tmp)")
    ap.add_argument("--vectors", choices=["real", "random", "synthetic"], default="real")
    ap.add_argument("--noise", type=float, default=0.02, help="Gaussian sigma per dimension before renormalising")
    ap.add_argument("--queries", type=int, default=200, help="half real questions, half noisy copies")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--text-queries", type=int, default=200, help="queries for the full-text, hybrid and scoped timings")
    ap.add_argument("--pg-load", choices=["copy", "batches"], default="copy")
    ap.add_argument("--maintenance-work-mem", default="3GB")
    ap.add_argument("--hnsw-with", default="", help='build the HNSW index WITH these options instead of PgStore\'s '
                    'defaults, e.g. "m = 16, ef_construction = 128" (copy load only)')
    ap.add_argument("--parallel-workers", type=int, default=1, help="max_parallel_maintenance_workers (HNSW build)")
    ap.add_argument("--ef-search", type=int, nargs="*", default=[40, 200], help="extra hnsw.ef_search values to sweep")
    ap.add_argument("--tail-batches", type=int, default=3, help="256-chunk batches through each store's own path")
    ap.add_argument("--stores", nargs="+", choices=["pg", "faiss"], default=["pg", "faiss"])
    ap.add_argument("--json", type=Path, help="write the result here too")
    args = ap.parse_args()

    load_before = load_average()
    t = time.perf_counter()
    vectors, texts, queries, qtexts = corpus(args)
    exact = exact_top(vectors, queries)
    result = {"command": " ".join(sys.argv), "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
              "machine": machine(), "load_before": [round(x, 2) for x in load_before],
              "chunks": args.chunks, "vectors": args.vectors, "base_passages": args.base, "noise": args.noise,
              "queries": len(queries), "corpus_s": round(time.perf_counter() - t, 1)}
    src = np.argmax(queries[: len(queries) // 2] @ vectors.T, axis=1)
    result["query_best_cosine_p50"] = round(percentile(np.sum(queries[: len(queries) // 2] * vectors[src], 1).tolist(), 50), 3)
    if "faiss" in args.stores:
        result["faiss"] = run_faiss(args, vectors, texts, queries, exact)
        print(json.dumps(result["faiss"]), file=sys.stderr)
    if "pg" in args.stores:
        result["postgres"] = run_pg(args, vectors, texts, queries, qtexts, exact)
    result["load_after"] = [round(x, 2) for x in load_average()]
    result["total_s"] = round(time.perf_counter() - t, 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
