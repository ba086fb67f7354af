"""Does `rag serve --api` stay responsive while `rag ingest` writes to the index it serves?

A copy of --index is served (`rag serve --api` in its own process). One question is asked over /v1
before the ingest (a warm-up that loads the model, then the timed one). Then `rag ingest` of --extra
PDFs runs in another process while GET /v1/models is polled every 0.5 s and the same question is asked
again over /v1. Reported: /v1/models latency p50/max during the ingest, the question's seconds before
and during, the ingest's seconds, the load average. Heavy: run under the CPU lock.

    flock /work/wt/_notes/heavy.lock python bench/serve_during_ingest.py --index /tmp/piles/index --extra 4
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, log  # noqa: E402
from pdf_corpus import COVID_QA, papers, write_pdf  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "What are inovirus-associated vectors?"


def get(url: str, timeout: float = 60) -> float:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as r:
        r.read()
    return time.perf_counter() - t


def ask(base: str, question: str) -> tuple[float, str]:
    body = json.dumps({"model": "default", "messages": [{"role": "user", "content": question}]}).encode()
    req = urllib.request.Request(f"{base}/v1/chat/completions", body, {"Content-Type": "application/json"})
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=600) as r:
        reply = json.loads(r.read())
    return time.perf_counter() - t, reply["choices"][0]["message"]["content"][:100]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, required=True, help="an index to copy and serve (bench/piles.py's)")
    ap.add_argument("--extra", type=int, default=4, help="papers ingested meanwhile (the next longest after --skip)")
    ap.add_argument("--skip", type=int, default=20, help="the longest N papers, already in --index")
    ap.add_argument("--port", type=int, default=8797)
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    cli = [sys.executable, "-m", "rag.app.cli"]
    base = f"http://127.0.0.1:{args.port}"
    with tempfile.TemporaryDirectory(prefix="serve-ingest-") as tmp:
        index, extra = Path(tmp) / "index", Path(tmp) / "extra"
        shutil.copytree(args.index, index)
        extra.mkdir()
        for doc_id, text in papers(COVID_QA, args.skip + args.extra)[args.skip:]:
            write_pdf(extra / f"covid-{doc_id}.pdf", text)
        server = subprocess.Popen(cli + ["serve", "--api", "--index", str(index), "--port", str(args.port)], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            for _ in range(240):
                try:
                    get(f"{base}/v1/models", 2)
                    break
                except OSError:
                    time.sleep(0.5)
            ask(base, QUESTION)  # loads the model
            before, text = ask(base, QUESTION)
            log(f"question before the ingest: {before:.1f} s ({text!r}); load {load_average()[0]:.2f}")
            lat: list[float] = []
            ingest = subprocess.Popen(cli + ["ingest", "--index", str(index), str(extra)], env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            t0 = time.perf_counter()
            during: list[tuple[float, str]] = []
            asker = threading.Thread(target=lambda: during.append(ask(base, QUESTION)))
            asker.start()
            while ingest.poll() is None:
                lat.append(get(f"{base}/v1/models"))
                time.sleep(0.5)
            ingest_s = time.perf_counter() - t0
            asker.join()
            lat.sort()
            result = {"ingest_s": round(ingest_s, 1), "ingest_rc": ingest.returncode, "polls": len(lat),
                      "models_p50_s": round(lat[len(lat) // 2], 3) if lat else None,
                      "models_max_s": round(lat[-1], 3) if lat else None, "question_before_s": round(before, 1),
                      "question_during_s": round(during[0][0], 1), "answer_during": during[0][1],
                      "load": load_average()}
            log(json.dumps(result))
            print(json.dumps(result))
        finally:
            server.terminate()
            server.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
