"""Ray ingestion against local ingestion, on the same corpus, in one run (so both see the same load).

Corpus: the 87 SQuAD-small paragraphs and the first N COVID-QA papers (../shared/datasets), one .txt per
context. Each path is `RAG.add` with the real MiniLM into a new index (load, chunk, embed, save):
  local   this process, `threads` torch threads (default: all cores), embedding ~256 chunks per call
  ray-W   a local Ray cluster (ray.init, --cpus CPUs), W actors of one torch thread each; the
          driver only writes. `cold` includes starting the actors (each loads MiniLM); `warm` reuses them (a second
          ingest of the same corpus into a new index, right after).
The paths alternate (local, ray, local, ray, ...) for --repeat rounds; medians are reported.

    python bench/ray_ingest.py --covid 9 --repeat 2          # ~10 min on 2 loaded cores
    python bench/ray_ingest.py --address 10.0.0.5:6379       # an existing cluster instead
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a throwaway local cluster: no ~/.ray/auth_token

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, load_average, log, machine, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATASETS = [ROOT.parent / "shared" / "datasets", Path("/work/shared/datasets")]


def datasets_dir() -> Path:
    for d in DATASETS:
        if (d / "squad-small").is_dir():
            return d
    raise SystemExit(f"no shared datasets in {[str(d) for d in DATASETS]}")


def write_corpus(directory: Path, covid: int) -> int:
    data = datasets_dir()
    contexts = []
    for name, limit in (("squad-small/squad-v2-small.json", None), ("covid-qa/covidqa-200423.json", covid)):
        articles = json.loads((data / name).read_text(encoding="utf-8"))["data"]
        texts = [p["context"] for a in articles for p in a["paragraphs"]]
        contexts += texts[:limit]
    for i, text in enumerate(dict.fromkeys(contexts)):
        (directory / f"ctx_{i:04d}.txt").write_text(text, encoding="utf-8")
    return len(contexts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--covid", type=int, default=9, help="COVID-QA papers added to the 87 SQuAD paragraphs")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--cpus", type=int, default=os.cpu_count(), help="CPUs of the local Ray cluster")
    ap.add_argument("--workers", type=int, nargs="+", default=None, help="actor counts to run (default: 1 and --cpus)")
    ap.add_argument("--address", help="an existing Ray cluster instead of a local one")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    load_before = load_average()

    import ray

    from rag.config import Settings
    from rag.ingest.distributed import RayExecutor
    from rag.ingest.executors import LocalExecutor
    from rag.models.embedding import SentenceTransformerEmbedder
    from rag.pipeline import RAG

    tmp = Path(tempfile.mkdtemp(prefix="ray-bench-"))
    corpus = tmp / "corpus"
    corpus.mkdir()
    files = write_corpus(corpus, args.covid)
    settings = Settings.load(index_dir=tmp / "idx")
    embedder = SentenceTransformerEmbedder(threads=settings.threads)
    if args.address:
        ray.init(address=args.address, log_to_driver=False, logging_level="ERROR")
    else:
        ray.init(num_cpus=args.cpus, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    workers = args.workers or sorted({1, int(ray.cluster_resources()["CPU"])})
    executors = {f"ray-{w}": RayExecutor(args.address or "auto", settings, workers=w, group_size=8) for w in workers}
    times: dict[str, list[float]] = {}
    chunks = 0
    run = 0

    def ingest(name: str, executor) -> float:
        nonlocal chunks, run
        run += 1
        rag = RAG.open(settings=settings.with_(index_dir=tmp / f"idx{run}"), embedder=embedder, seed=False)
        start = time.perf_counter()
        report = rag.add([corpus], executor=executor)
        seconds = time.perf_counter() - start
        chunks = sum(d.chunks for d in report.added)
        assert not report.failed, report.failed
        log(f"{name:<12} {seconds:7.1f} s  {chunks / seconds:6.1f} chunks/s  load {os.getloadavg()[0]:.1f}")
        return seconds

    for _ in range(args.repeat):
        times.setdefault("local", []).append(ingest("local", LocalExecutor()))
        for name, executor in executors.items():  # one set of actors at a time: each holds a CPU
            times.setdefault(f"{name} cold", []).append(ingest(f"{name} cold", executor))
            times.setdefault(f"{name} warm", []).append(ingest(f"{name} warm", executor))
            executor.close()
    from rag.evaluation.metrics import percentile

    local = percentile(times["local"], 50)
    rows, result = [], {"files": files, "chunks": chunks, "machine": machine(), "runs": times}
    for name, values in times.items():
        med = percentile(values, 50)
        rows.append([name, len(values), round(med, 1), round(chunks / med, 1), round(med / local, 2)])
    result["table"] = rows
    text = table(["path", "runs", "median s", "chunks/s", "time / local"], rows)
    emit(f"{files} files, {chunks} chunks\n{text}", result, args.json, load_before)
    ray.shutdown()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
