"""Search at scale: p50/p95 single-query latency, recall@10 against exact search, and memory per
vector for flat, HNSW and IVF (flat, SQ8, PQ) FAISS indexes at 10k, 100k and 1M vectors, plus the
real `rag.store.faiss_index.IndexStore` (automatic index type) built, saved and reopened at each size.

Vectors are synthetic, 384-dimensional and normalised like MiniLM's, drawn from a mixture of
anisotropic Gaussian clusters (uneven sizes; each cluster spread over its own 24-dimensional
subspace), so inverted lists and graphs meet the structure real embeddings have. Queries are
database vectors with noise added (cosine ~0.86 to their source). Query embedding is excluded from
the search latency and timed separately with the real MiniLM (`--no-embed` skips it).

Each index family is built in its own subprocess, so its peak RSS is its own.

    python bench/search.py                          # 10k, 100k, 1M; table
    python bench/search.py --sizes 10000 --json     # quick; one JSON object on stdout
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, load_average, log, machine, peak_rss_mb, percentiles_ms, table  # noqa: E402

DIM = 384
K = 10
FAMILIES = ("flat", "hnsw", "ivf", "ivf_sq8", "ivf_pq", "store")
HNSW_EF = (16, 32, 64, 128, 256)
IVF_NPROBE = (8, 16, 32, 64, 128)
PQ_M = 48  # 48 sub-quantizers x 8 bits = 48 bytes per vector (32x smaller than float32)


# -- data ---------------------------------------------------------------------------------------
def make_corpus(n: int, nq: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n clustered unit vectors and nq queries (perturbed database vectors)."""
    rng = np.random.default_rng(seed)
    clusters, sub = max(50, n // 1000), 24
    centres = rng.standard_normal((clusters, DIM)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    spread = rng.uniform(0.6, 1.4, clusters).astype(np.float32)
    label = rng.choice(clusters, n, p=rng.dirichlet(np.full(clusters, 0.5)))
    x = np.empty((n, DIM), dtype=np.float32)
    for c in range(clusters):
        rows = np.flatnonzero(label == c)
        if not len(rows):
            continue
        basis = rng.standard_normal((sub, DIM)).astype(np.float32) / np.sqrt(DIM)
        z = rng.standard_normal((len(rows), sub)).astype(np.float32)
        x[rows] = (centres[c] + (z @ basis) * (spread[c] / np.sqrt(sub))
                   + 0.02 * rng.standard_normal((len(rows), DIM)).astype(np.float32))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.choice(n, nq, replace=False)] + 0.03 * rng.standard_normal((nq, DIM)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return x, q


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f[f >= 0]) & set(t)) / K for f, t in zip(found, truth)]))


def serialized_bytes(index) -> int:
    import faiss

    total = [0]
    faiss.write_index(index, faiss.PyCallbackIOWriter(lambda b: total.__setitem__(0, total[0] + len(b)) or len(b)))
    return total[0]


# -- one family, in a subprocess ----------------------------------------------------------------
def timed_queries(search, queries: np.ndarray) -> tuple[float, float]:
    for q in queries[:20]:  # warm-up
        search(q)
    times = []
    for q in queries:
        t = time.perf_counter()
        search(q)
        times.append(time.perf_counter() - t)
    return percentiles_ms(times)


def run_family(family: str, data: Path, latency_queries: int, threads: int) -> list[dict]:
    import faiss

    from rag.store import faiss_index as st

    faiss.omp_set_num_threads(threads)
    x = np.load(data / "x.npy")
    q = np.load(data / "q.npy")
    truth = np.load(data / "truth.npy")
    n = len(x)
    lat_q = q[:latency_queries]
    rows: list[dict] = []

    def measure(index, name: str, params: str, build_s: float, default: bool, nbytes: int, set_param=None) -> None:
        _, found = index.search(q, K)
        p50, p95 = timed_queries(lambda v: index.search(v[None], K), lat_q)
        rows.append({"n": n, "index": name, "params": params, "p50_ms": p50, "p95_ms": p95,
                     "recall_at_10": recall_at_k(found, truth), "bytes_per_vector": nbytes / n,
                     "build_s": build_s, "default": default})
        log(f"  {n:>9,} {name:<10} {params:<28} p50 {p50:7.3f} ms  p95 {p95:7.3f} ms  recall {rows[-1]['recall_at_10']:.4f}")

    def sample() -> np.ndarray:
        nlist = st.ivf_nlist(n)
        rows_ = np.sort(np.random.default_rng(0).choice(n, min(n, st.IVF_TRAIN_PER_LIST * nlist), replace=False))
        return x[rows_]

    def ivf_flat() -> tuple[faiss.IndexIVFFlat, float]:
        """The store's own IVF (rag.store.build_index: training sample, nlist, nprobe policy)."""
        t = time.perf_counter()
        index = st.build_index("ivf", DIM, np.arange(n, dtype=np.int64), x)
        build = time.perf_counter() - t
        np.save(data / f"centroids{index.nlist}.npy", index.quantizer.reconstruct_n(0, index.nlist))
        return index, build

    def quantizer() -> faiss.IndexFlatIP:
        """The coarse quantizer trained by "ivf" (run first), reused by SQ8 and PQ."""
        nlist = st.ivf_nlist(n)
        path = data / f"centroids{nlist}.npy"
        if not path.exists():
            ivf_flat()
        coarse = faiss.IndexFlatIP(DIM)
        coarse.add(np.load(path))
        return coarse

    if family == "flat":
        t = time.perf_counter()
        index = faiss.IndexFlatIP(DIM)
        index.add(x)
        build = time.perf_counter() - t
        lat_q = q[:max(100, min(latency_queries, int(2e7 // n)))]  # ~0.4 s a query at 1M
        measure(index, "flat", "exact", build, True, serialized_bytes(index))
    elif family == "hnsw":
        t = time.perf_counter()
        index = faiss.IndexHNSWFlat(DIM, st.HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = st.HNSW_EF_CONSTRUCTION
        index.add(x)
        build = time.perf_counter() - t
        nbytes = serialized_bytes(index)
        for ef in HNSW_EF:
            index.hnsw.efSearch = ef
            measure(index, "hnsw", f"M={st.HNSW_M} efC={st.HNSW_EF_CONSTRUCTION} ef={ef}", build,
                    ef == st.HNSW_EF_SEARCH, nbytes)
    elif family == "ivf":
        index, build = ivf_flat()
        nbytes = serialized_bytes(index)
        for nprobe in IVF_NPROBE:
            if nprobe <= index.nlist:
                index.nprobe = nprobe
                measure(index, "ivf_flat", f"nlist={index.nlist} nprobe={nprobe}", build,
                        nprobe == st.ivf_nprobe(index.nlist), nbytes)
    elif family in ("ivf_sq8", "ivf_pq"):
        coarse = quantizer()
        nlist = coarse.ntotal
        t = time.perf_counter()
        if family == "ivf_sq8":
            index = faiss.IndexIVFScalarQuantizer(coarse, DIM, nlist, faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
            label = "ivf_sq8"
        else:
            index = faiss.IndexIVFPQ(coarse, DIM, nlist, PQ_M, 8, faiss.METRIC_INNER_PRODUCT)
            label = f"ivf_pq{PQ_M}"
        index.train(sample())  # the coarse quantizer is full already: this trains the codec only
        for s in range(0, n, 65_536):
            index.add(x[s:s + 65_536])
        build = time.perf_counter() - t  # + the coarse training, shared with ivf_flat
        nbytes = serialized_bytes(index)
        for nprobe in IVF_NPROBE:
            if nprobe <= nlist:
                index.nprobe = nprobe
                measure(index, label, f"nlist={nlist} nprobe={nprobe}", build, False, nbytes)
    elif family == "store":
        rows.append(run_store(x, q, truth, lat_q, data))
    else:
        raise SystemExit(f"unknown family {family}")
    for r in rows:
        r["peak_rss_mb"] = peak_rss_mb()
    return rows


def run_store(x: np.ndarray, q: np.ndarray, truth: np.ndarray, lat_q: np.ndarray, data: Path) -> dict:
    """The real store: add as documents of 1,000 chunks, save (picks and builds the index), reopen."""
    from rag.store.faiss_index import IndexStore
    from rag.types import Chunk

    n = len(x)
    directory = data / "store"
    t = time.perf_counter()
    store = IndexStore.create(directory, "bench", DIM, 160, 1)
    for start in range(0, n, 1000):
        end = min(n, start + 1000)
        first = store.reserve_ids(end - start)
        doc = f"doc{start}"
        chunks = [Chunk(id=first + i, doc_id=doc, source=f"/{doc}.txt", text="", start=0, end=0)
                  for i in range(end - start)]
        store.add(doc, f"/{doc}.txt", 0, chunks, x[start:end])
    added = time.perf_counter() - t
    store.save()
    build = time.perf_counter() - t
    kind = store.kind
    params = ""
    if kind == "ivf":
        params = f"nlist={store.index.nlist} nprobe={store.index.nprobe}"
    elif kind == "hnsw":
        from rag.store.faiss_index import HNSW_EF_SEARCH, HNSW_M
        params = f"M={HNSW_M} ef={HNSW_EF_SEARCH}"
    del store
    t = time.perf_counter()
    store = IndexStore.open(directory, "bench", DIM)
    opened = time.perf_counter() - t
    found = np.array([[c.id for c, _ in store.search(v, K)] + [-1] * K for v in q])[:, :K]
    p50, p95 = timed_queries(lambda v: store.search(v, K), lat_q)
    size = sum(p.stat().st_size for p in directory.glob("vectors.*.faiss"))
    row = {"n": n, "index": f"store:{kind}", "params": (params + " " if params else "") + f"(add {added:.0f}s, save {build - added:.0f}s, open {opened:.1f}s)",
           "p50_ms": p50, "p95_ms": p95, "recall_at_10": recall_at_k(found, truth), "bytes_per_vector": size / n,
           "build_s": build, "default": True}
    log(f"  {n:>9,} store:{kind:<5} {row['params']}  p50 {p50:7.3f} ms  p95 {p95:7.3f} ms  recall {row['recall_at_10']:.4f}")
    return row


# -- query embedding ----------------------------------------------------------------------------
def query_embedding(count: int) -> dict:
    from rag.models.embedding import SentenceTransformerEmbedder

    embedder = SentenceTransformerEmbedder()
    topics = ["the withdrawal of troops", "the 2023 budget", "solar panel efficiency", "the treaty of Paris",
              "vaccine trials", "river flooding", "the central bank", "quantum computing", "the election result",
              "crop yields"]
    openers = ["What happened with", "When did", "Who decided on", "Why was there controversy about",
               "How much did", "What is known about"]
    questions = [f"{openers[i % len(openers)]} {topics[(i * 7) % len(topics)]} in section {i}?" for i in range(count)]
    embedder.embed_query(questions[:5])
    times = []
    for question in questions:
        t = time.perf_counter()
        embedder.embed_query([question])
        times.append(time.perf_counter() - t)
    p50, p95 = percentiles_ms(times)
    return {"queries": count, "p50_ms": p50, "p95_ms": p95}


# -- driver -------------------------------------------------------------------------------------
def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,100000,1000000", help="comma-separated corpus sizes")
    ap.add_argument("--indexes", default=",".join(FAMILIES), help=f"subset of {','.join(FAMILIES)}")
    ap.add_argument("--queries", type=int, default=1000, help="queries for recall@10 (batch search)")
    ap.add_argument("--latency-queries", type=int, default=500, help="of those, timed one at a time")
    ap.add_argument("--threads", type=int, default=2, help="faiss.omp_set_num_threads")
    ap.add_argument("--no-embed", action="store_true", help="skip timing MiniLM query embedding")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout (table to stderr)")
    ap.add_argument("--worker", nargs=2, metavar=("FAMILY", "DATA_DIR"), help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        family, data = args.worker
        print(json.dumps(run_family(family, Path(data), args.latency_queries, args.threads)))
        return

    import faiss

    faiss.omp_set_num_threads(args.threads)
    started = time.time()
    load_before = load_average()
    families = [f.strip() for f in args.indexes.split(",") if f.strip()]
    rows: list[dict] = []
    for n in (int(s) for s in args.sizes.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"bench-search-{n}-") as tmp:
            data = Path(tmp)
            t = time.perf_counter()
            x, q = make_corpus(n, args.queries)
            flat = faiss.IndexFlatIP(DIM)
            flat.add(x)
            _, truth = flat.search(q, K)
            np.save(data / "x.npy", x)
            np.save(data / "q.npy", q)
            np.save(data / "truth.npy", truth)
            del x, flat
            log(f"n={n:,}: data and exact top-{K} in {time.perf_counter() - t:.1f}s")
            for family in families:
                cmd = [sys.executable, __file__, "--worker", family, str(data), "--latency-queries",
                       str(args.latency_queries), "--threads", str(args.threads)]
                out = subprocess.run(cmd, check=True, stdout=subprocess.PIPE, text=True).stdout
                rows += json.loads(out.strip().splitlines()[-1])
    embed = None if args.no_embed else query_embedding(200)
    result = {
        "command": "python " + " ".join([f"bench/{Path(__file__).name}"] + sys.argv[1:]),
        "machine": machine(),
        "threads": args.threads,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_average()],
        "seconds": round(time.time() - started, 1),
        "rows": rows,
        "query_embedding": embed,
    }
    text = table(["n", "index", "params", "p50 ms", "p95 ms", "recall@10", "bytes/vector", "build s", "peak RSS MB"],
                 [[r["n"], r["index"] + (" *" if r["default"] else ""), r["params"], r["p50_ms"], r["p95_ms"],
                   r["recall_at_10"], r["bytes_per_vector"], r["build_s"], r["peak_rss_mb"]] for r in rows])
    if embed:
        text += f"\n\nquery embedding (MiniLM, one question): p50 {embed['p50_ms']:.1f} ms, p95 {embed['p95_ms']:.1f} ms"
    text += "\n\n* = the setting rag/store/faiss_index.py uses."
    emit(text, result, args.json, load_before)


if __name__ == "__main__":
    main()
