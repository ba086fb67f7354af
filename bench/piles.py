"""Answers over a pile of long PDFs: ingest once, then ask COVID-QA questions about those papers.

The corpus is bench/pdf_corpus.py's (the N longest COVID-QA papers rendered to multi-page PDFs). It is
ingested once into --index (kept between runs: a second run finds every file unchanged and skips the
ingest, reported as such), with the real MiniLM, timed by stage. Then --questions COVID-QA questions
whose paper is in the corpus (the first question of each paper, then the second, ...) are asked with the
default settings (`RAG.ask`, the bundled 1.5B model, claim check on). Per question: retrieval (context:
retrieval + sentence selection, `timings["retrieve"]`), prompt tokens (the chat template's prompt, the
model's tokenizer), tokens evaluated (the prompt minus the prefix it shares with the previous prompt,
which llama.cpp's KV cache keeps), first token (from the call, so retrieval included), whole answer, and
whether a gold answer string is in the answer. One warm-up question (model load) is not counted. Before
each question the raw prompt rate is measured again (128 tokens, a second instance of the model), as on a
shared machine it moves from minute to minute; the first-token check uses each question's own.

Every figure is printed with the machine's raw llama.cpp prompt rate (bench/_common.py, measured in this
process before and after the questions) and the load average. The check of issue 20: the pipeline's
first token (from the start of generation) within 1.2x of prompt tokens / raw rate.

--competitor starts one CPU-bound process (`while True: pass`) for the questions (and the raw rate
measured beside them), and stops it after. --threads sets llama.cpp's (and the embedder's) threads.

    flock /work/wt/_notes/heavy.lock python bench/piles.py --index /tmp/piles-index --questions 10 --json
    flock /work/wt/_notes/heavy.lock python bench/piles.py --index /tmp/piles-index --questions 10 --competitor
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import load_average, log, machine, raw_prompt_rate, table  # noqa: E402
from pdf_corpus import COVID_QA, make_corpus  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def covid_questions(source: Path, doc_ids: set[str], n: int) -> list[dict]:
    """Round robin over the corpus's papers: each paper's first question, then each one's second, ..."""
    data = json.loads(source.read_text(encoding="utf-8"))["data"]
    per_doc: dict[str, list[dict]] = {}
    for article in data:
        for p in article["paragraphs"]:
            doc = str(p["document_id"])
            if doc in doc_ids:
                per_doc.setdefault(doc, []).extend(
                    {"doc": doc, "question": qa["question"], "answers": [a["text"] for a in qa["answers"]]}
                    for qa in p["qas"])
    out: list[dict] = []
    depth = 0
    while len(out) < n and any(depth < len(v) for v in per_doc.values()):
        out += [qs[depth] for _, qs in sorted(per_doc.items()) if depth < len(qs)]
        depth += 1
    return out[:n]


def ingest(rag, corpus: Path) -> dict:
    from ingest import Stages, staged  # bench/ingest.py

    stages = Stages()
    with staged(rag, stages):
        t = time.perf_counter()
        report = rag.add([corpus])
        wall = time.perf_counter() - t
    result = {"wall_s": round(wall, 2), "stages_s": {k: round(v, 2) for k, v in stages.seconds.items()},
              "added": len(report.added), "unchanged": len(report.unchanged), "failed": len(report.failed),
              "chunks": sum(d.chunks for d in rag.documents()), "load_after": load_average()}
    split = ", ".join(f"{k} {v:.1f} s" for k, v in sorted(stages.seconds.items(), key=lambda kv: -kv[1]))
    log(f"ingest: {result['added']} added, {result['unchanged']} unchanged, {result['chunks']} chunks in "
        f"{wall:.1f} s ({split}); load {result['load_after'][0]:.2f}")
    return result


def prompt_tokens(rag, answer) -> tuple[int, list[int]]:
    """The answering prompt's tokens as the model saw them (passages in the prompt's order)."""
    from rag.answer.answerer import Answerer

    llm = rag.llm
    shown = answer.passages
    if rag.settings.passage_order == "document":
        shown = sorted(shown, key=lambda p: (p.chunk.source, p.start))
    elif rag.settings.passage_order == "best_last":
        shown = shown[::-1]
    messages = Answerer(llm, style=rag.settings.answer_style).messages(answer.question, shown)
    ids = llm._model.tokenize(llm.messages_to_prompt(messages).encode("utf-8"), special=True)
    return len(ids), ids


def contains_gold(text: str, answers: list[str]) -> bool:
    """A gold answer in the answer, case and spacing aside (gold made ASCII as the PDFs' text is)."""
    import unicodedata

    plain = lambda t: " ".join(unicodedata.normalize("NFKD", t).encode("ascii", "ignore").decode().lower().split())  # noqa: E731
    low = plain(text)
    return any(plain(a) in low for a in answers if plain(a))


class RateProbe:
    """The raw prompt rate just before each question (a second llama.cpp instance of the same model,
    `tokens` tokens from an empty cache): on a shared machine the rate moves from minute to minute."""

    def __init__(self, threads: int, tokens: int = 128) -> None:
        from llama_cpp import Llama

        from rag.config import DEFAULT_MODEL, Settings
        from rag.models.llm import LLAMA_N_BATCH, loading_llama, model_path

        with loading_llama():
            self.llama = Llama(model_path=str(model_path(DEFAULT_MODEL, Settings.load().cache_dir)), n_ctx=512,
                               n_batch=LLAMA_N_BATCH, n_threads=threads, n_threads_batch=threads, verbose=False)
        text = "The committee met on Tuesday to review the budget, the schedule and the risks of the project. " * 16
        self.ids = self.llama.tokenize(text.encode("utf-8"))[:tokens]
        self.llama.eval(self.ids)  # page the weights in

    def rate(self) -> float:
        self.llama.reset()
        start = time.perf_counter()
        self.llama.eval(self.ids)
        return round(len(self.ids) / (time.perf_counter() - start), 1)


def ask_all(rag, questions: list[dict], probe: RateProbe | None = None) -> list[dict]:
    from rag.models.llama_state import shared_prefix

    rows, previous = [], []
    for i, q in enumerate(questions):
        raw = probe.rate() if probe is not None else None
        start = time.perf_counter()
        first = None
        answer = None
        for item in rag.stream(q["question"]):
            if isinstance(item, str):
                first = first if first is not None else time.perf_counter() - start
            else:
                answer = item
        total = time.perf_counter() - start
        t = answer.timings
        n, ids = prompt_tokens(rag, answer) if "first_token" in t else (0, [])
        evaluated = n - shared_prefix(previous, ids) if ids else 0
        previous = ids or previous
        row = {"question": q["question"], "doc": q["doc"], "retrieve_s": round(t.get("retrieve", 0.0), 3),
               "prompt_tokens": n, "evaluated_tokens": evaluated,
               # first_token is timed from the start of generation; from the call add retrieval
               "first_token_s": round(t["retrieve"] + t["first_token"], 3) if "first_token" in t else None,
               "generation_first_token_s": round(t["first_token"], 3) if "first_token" in t else None,
               "claim_check_s": round(t.get("claim_check", 0.0), 3),
               "first_text_s": round(first, 3) if first is not None else None,
               "total_s": round(total, 3), "abstained": answer.abstained, "retried": bool(answer.signals.retried),
               "gold_in_answer": contains_gold(answer.text, q["answers"]), "answer": answer.text[:160],
               "raw_rate": raw, "load": round(load_average()[0], 2)}
        rows.append(row)
        log(f"{i + 1}/{len(questions)} retrieve {row['retrieve_s']:.2f}s, {n} prompt tokens ({evaluated} "
            f"evaluated), first token {row['first_token_s']}, total {total:.1f}s, "
            f"{'refused' if answer.abstained else 'answered'}{' (gold)' if row['gold_in_answer'] else ''}; "
            f"raw rate {raw} tokens/s, load {row['load']}: {q['question'][:60]!r}")
    return rows


def summarize(rows: list[dict], rate: float) -> dict:
    p50 = lambda xs: round(float(np.percentile(xs, 50)), 3) if xs else None  # noqa: E731
    gen = [r for r in rows if r["generation_first_token_s"] is not None]
    # first token from the start of generation vs what the raw rate predicts for the tokens evaluated
    # each question against the raw rate measured just before it (else the run's mean rate)
    ratio = [r["generation_first_token_s"] / (r["evaluated_tokens"] / (r["raw_rate"] or rate))
             for r in gen if r["evaluated_tokens"]]
    ratio_full = [r["generation_first_token_s"] / (r["prompt_tokens"] / (r["raw_rate"] or rate))
                  for r in gen if r["prompt_tokens"]]
    return {"questions": len(rows), "answered": sum(not r["abstained"] for r in rows),
            "gold_in_answer": sum(r["gold_in_answer"] for r in rows),
            "retrieve_p50_s": p50([r["retrieve_s"] for r in rows]),
            "prompt_tokens_p50": p50([r["prompt_tokens"] for r in gen]),
            "evaluated_tokens_p50": p50([r["evaluated_tokens"] for r in gen]),
            "first_token_p50_s": p50([r["first_token_s"] for r in gen]),
            "generation_first_token_p50_s": p50([r["generation_first_token_s"] for r in gen]),
            "first_token_over_raw_p50": p50(ratio), "first_token_over_raw_full_prompt_p50": p50(ratio_full),
            "claim_check_p50_s": p50([r["claim_check_s"] for r in gen]),
            "total_p50_s": p50([r["total_s"] for r in rows]), "total_p95_s":
                round(float(np.percentile([r["total_s"] for r in rows], 95)), 3) if rows else None,
            "raw_rate_p50": p50([r["raw_rate"] for r in rows if r["raw_rate"]]),
            "load_p50": p50([r["load"] for r in rows])}


def embed_sweep(rag, n: int = 256) -> dict:
    """Chunks embedded per second at several batch sizes (the same `n` chunks of the index each time)."""
    texts = [c.text for c in list(rag.store.chunks.values())[:n]]
    embedder = rag.embedder
    before = embedder.batch_size
    out = {}
    try:
        for batch in (16, 32, 64, 128):
            embedder.batch_size = batch
            t = time.perf_counter()
            embedder.embed(texts)
            seconds = time.perf_counter() - t
            out[batch] = {"seconds": round(seconds, 2), "chunks_per_s": round(len(texts) / seconds, 1),
                          "load": round(load_average()[0], 2)}
            log(f"embed {len(texts)} chunks, batch {batch}: {seconds:.2f} s ({len(texts) / seconds:.1f}/s), "
                f"load {out[batch]['load']}")
    finally:
        embedder.batch_size = before
    return out


def decode_rate(threads: int, tokens: int = 48) -> float:
    """llama.cpp's generation rate: tokens evaluated one at a time (as when writing an answer) after a
    64-token prompt, tokens/s, with the pipeline's n_batch."""
    from llama_cpp import Llama

    from rag.config import DEFAULT_MODEL, Settings
    from rag.models.llm import LLAMA_N_BATCH, loading_llama, model_path

    with loading_llama():
        llama = Llama(model_path=str(model_path(DEFAULT_MODEL, Settings.load().cache_dir)), n_ctx=512,
                      n_batch=LLAMA_N_BATCH, n_threads=threads, n_threads_batch=threads, verbose=False)
    ids = llama.tokenize(("The committee met on Tuesday to review the budget and the risks. " * 20).encode())
    llama.eval(ids[:64])
    start = time.perf_counter()
    for token in ids[64:64 + tokens]:
        llama.eval([token])
    return round(tokens / (time.perf_counter() - start), 1)


def thread_rates(repeat: int = 3) -> dict:
    """Raw prompt rate (tokens/s, median of `repeat`) at llama.cpp threads 1 and 2, idle and beside one
    CPU-bound process."""
    out: dict = {"machine": machine(), "rows": []}
    for competing in (False, True):
        competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if competing else None
        try:
            if competitor is not None:
                time.sleep(2)
            for threads in (1, 2):
                runs = [raw_prompt_rate(threads=threads)["tokens_per_s"] for _ in range(repeat)]
                decode = [decode_rate(threads) for _ in range(repeat)]
                row = {"competitor": competing, "threads": threads, "tokens_per_s": float(np.median(runs)),
                       "runs": runs, "decode_tokens_per_s": float(np.median(decode)), "decode_runs": decode,
                       "load": round(load_average()[0], 2)}
                out["rows"].append(row)
                log(f"competitor {competing}, threads {threads}: prompt {row['tokens_per_s']} tokens/s "
                    f"({runs}), decode {row['decode_tokens_per_s']} tokens/s ({decode}), load {row['load']}")
        finally:
            if competitor is not None:
                competitor.kill()
                competitor.wait()
    return out


def emit(result: dict, out: Path | None, as_json: bool) -> None:
    """The run's JSON: written to `out` if given, and on stdout with --json."""
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1), encoding="utf-8")
    if as_json:
        print(json.dumps(result))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--index", type=Path, help="index folder (kept; the corpus goes beside it); needed but for --rates")
    ap.add_argument("--papers", type=int, default=20)
    ap.add_argument("--questions", type=int, default=10)
    ap.add_argument("--threads", type=int, help="llama.cpp and embedder threads (default: the setting)")
    ap.add_argument("--competitor", action="store_true", help="one CPU-bound process beside the questions")
    ap.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a setting for the questions")
    ap.add_argument("--rates", action="store_true", help="only the raw prompt rate at threads 1 and 2, idle and "
                    "beside one CPU-bound process (llama.cpp's threads under competition)")
    ap.add_argument("--embed-sweep", action="store_true", help="after the ingest: seconds to embed 256 of the "
                    "corpus's chunks at batch sizes 16, 32, 64 and 128 (MiniLM, the setting's threads)")
    ap.add_argument("--json", action="store_true", help="one JSON object on stdout")
    ap.add_argument("--out", type=Path, help="also write the JSON here")
    args = ap.parse_args()

    from rag.config import Settings
    from rag.pipeline import RAG

    if args.rates:
        emit(thread_rates(), args.out, args.json)
        return 0
    if args.index is None:
        ap.error("--index is needed (but for --rates)")
    corpus = args.index.parent / f"{args.index.name}-corpus"
    if not corpus.is_dir():
        files = make_corpus(corpus, args.papers)
        log(f"{len(files)} PDFs, {sum(files.values())} pages in {corpus}")
    doc_ids = {p.stem.removeprefix("covid-") for p in corpus.glob("*.pdf")}
    overrides = dict(kv.split("=", 1) for kv in args.set)
    if args.threads:
        overrides["threads"] = args.threads
    settings = Settings.load(index_dir=args.index, **overrides)
    result: dict = {"machine": machine(), "load_before": load_average(), "settings": {
        "threads": settings.threads, "top_k": settings.top_k, "context": settings.context,
        "context_words": settings.context_words, "retrieval": settings.retrieval, "claim_check": settings.claim_check,
        **overrides}, "competitor": args.competitor}
    rag = RAG.open(settings=settings, seed=False)
    rag.embedder.embed(["warm up"])
    result["ingest"] = ingest(rag, corpus)

    if args.embed_sweep:
        result["embed_sweep"] = embed_sweep(rag)
    if args.questions == 0:
        emit(result, args.out, args.json)
        return 0
    questions = covid_questions(COVID_QA, doc_ids, args.questions + 1)
    competitor = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.competitor else None
    try:
        if competitor is not None:
            time.sleep(2)
        rag.llm  # load
        rate_before = raw_prompt_rate(threads=settings.threads)
        log(f"raw prompt rate {rate_before['tokens_per_s']} tokens/s, load {load_average()[0]:.2f}")
        probe = RateProbe(settings.threads)
        ask_all(rag, questions[:1], probe)  # warm-up
        rows = ask_all(rag, questions[1:], probe)
        del probe
        rate_after = raw_prompt_rate(threads=settings.threads)
    finally:
        if competitor is not None:
            competitor.kill()
            competitor.wait()
    rate = (rate_before["tokens_per_s"] + rate_after["tokens_per_s"]) / 2
    summary = summarize(rows, rate)
    result.update({"raw_prompt_rate": {"before": rate_before["tokens_per_s"], "after": rate_after["tokens_per_s"],
                                       "mean": rate}, "summary": summary, "rows": rows, "load_after": load_average()})
    keys = [k for k in summary]
    text = table(["figure", "value"], [[k, summary[k]] for k in keys])
    text += (f"\n\nraw prompt rate {rate_before['tokens_per_s']} / {rate_after['tokens_per_s']} tokens/s "
             f"(before / after), load average {result['load_before'][0]:.2f} before, "
             f"{result['load_after'][0]:.2f} after; competitor: {args.competitor}; threads {settings.threads}")
    log(text)
    emit(result, args.out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
