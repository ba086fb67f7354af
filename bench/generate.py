"""Generation speed: each bundled model through the project's own path (`rag.models.llm.build_llm` ->
llama-index `LlamaCPP.stream_chat` with the model's chat template, exactly what `RAG.ask` calls)
against raw llama-cpp-python (`Llama.create_completion(stream=True)` on the same prompt string) with
the same GGUF file, context size, batch size and threads, in the same run.

The prompts are the real ones: each question of the seed test set is retrieved against the seed
article and rendered by `Answerer.messages` with the current settings (top-k, context mode).
Runs alternate project/raw per question (and swap which goes first) so both see the same machine.

Reported per model:
  tokens_per_s / raw_tokens_per_s   decode speed: (generated tokens - 1) / (last token - first token)
  ratio                             tokens_per_s / raw_tokens_per_s (goal >= 0.95)
  ttft_s / raw_ttft_s               median time from the call to the first token (prompt evaluation)
  prompt_tokens_p50                 median prompt size over ALL seed questions (tokenizer only)
  prefix_reused_tokens_p50          tokens shared with the previous question's prompt, which
                                    llama-cpp-python does not evaluate again (its prefix cache)
  ttft_cold_s                       the same questions with the KV cache cleared first

    python bench/generate.py                          # all installed bundled models, 8 timed questions
    python bench/generate.py --models qwen2.5-0.5b --questions 20 --json
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, load_average, log, machine, table  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rag.answer.answerer import Answerer  # noqa: E402
from rag.config import SEEDS_DIR, Settings  # noqa: E402
from rag.evaluation.testsets import load_testset  # noqa: E402
from rag.models.bundled import REGISTRY, describe_models, model_path  # noqa: E402
from rag.models.llama_state import shared_prefix  # noqa: E402
from rag.models.llm import LLAMA_N_BATCH, loading_llama  # noqa: E402
from rag.pipeline import RAG  # noqa: E402


def prompts_for(rag: RAG, questions: list[str]) -> list[list]:
    """The chat messages `RAG.stream` would send for each question (retrieval + optional selection)."""
    answerer = Answerer(rag.llm, min_score=rag.settings.min_score, style=rag.settings.answer_style)
    out = []
    for q in questions:
        passages = rag.retrieve(q)
        if rag.selector is not None and passages:
            passages = rag.selector.select(q, passages)
        out.append(answerer.messages(q, passages))
    return out


def timed(stream, text_of) -> tuple[float, float, str]:
    """(seconds to first non-empty piece, seconds to the end, whole text) of one streamed generation."""
    start = time.perf_counter()
    first = None
    parts = []
    for piece in stream:
        t = text_of(piece)
        if t and first is None:
            first = time.perf_counter() - start
        parts.append(t or "")
    end = time.perf_counter() - start
    return (first if first is not None else end), end, "".join(parts)


def raw_llama(path: Path, settings: Settings):
    """llama_cpp.Llama with the parameters build_llm gives LlamaCPP (incl. its AMX workaround)."""
    import llama_cpp

    with loading_llama():
        return llama_cpp.Llama(model_path=str(path), n_ctx=settings.context_window, n_threads=settings.threads,
                               n_batch=LLAMA_N_BATCH, verbose=False)


def bench_model(name: str, base: Settings, index_dir: Path, n_timed: int, questions: list[str]) -> dict:
    settings = base.with_(model=name, index_dir=index_dir)
    log(f"[{name}] loading (project path and raw)")
    rag = RAG.open(settings=settings, seed=True)
    llm = rag.llm
    raw = raw_llama(model_path(name, settings.cache_dir), settings)
    all_messages = prompts_for(rag, questions)
    prompts = [llm.messages_to_prompt(m) for m in all_messages]
    tok = lambda s, bos=True: raw.tokenize(s.encode("utf-8"), add_bos=bos, special=True)  # noqa: E731
    prompt_tokens = [len(tok(p)) for p in prompts]
    reused = [shared_prefix(tok(a), tok(b)) for a, b in zip(prompts, prompts[1:])]
    stop = list(llm.generate_kwargs.get("stop") or [])

    def run_project(i: int) -> tuple[float, float, str]:
        return timed(llm.stream_chat(all_messages[i]), lambda r: r.delta)

    def run_raw(i: int) -> tuple[float, float, str]:
        gen = raw.create_completion(prompts[i], max_tokens=settings.max_new_tokens, temperature=settings.temperature,
                                    stop=stop, stream=True)
        return timed(gen, lambda c: c["choices"][0]["text"])

    # warm-up: first use of each Llama pays for page faults and thread start-up
    run_project(0)
    run_raw(0)
    rows = {"project": [], "raw": []}
    for k, i in enumerate(range(1, 1 + n_timed)):
        order = ("project", "raw") if k % 2 == 0 else ("raw", "project")
        for side in order:
            first, end, text = run_project(i) if side == "project" else run_raw(i)
            n = len(tok(text, False))
            rows[side].append((first, end, n))
        log(f"[{name}] q{i}: prompt {prompt_tokens[i]} tok, project ttft {rows['project'][-1][0]:.2f}s "
            f"{rows['project'][-1][2]} tok, raw ttft {rows['raw'][-1][0]:.2f}s {rows['raw'][-1][2]} tok")
    cold = []
    for i in range(1, 1 + min(3, n_timed)):  # the same prompts with nothing cached
        llm._model.reset()
        cold.append(run_project(i)[0])

    def decode_rate(side: str) -> float:
        tokens = sum(n - 1 for _, _, n in rows[side] if n > 1)
        seconds = sum(end - first for first, end, n in rows[side] if n > 1)
        return tokens / seconds if seconds else float("nan")

    project_rate, raw_rate = decode_rate("project"), decode_rate("raw")
    result = {
        "model": name,
        "tokens_per_s": round(project_rate, 2),
        "raw_tokens_per_s": round(raw_rate, 2),
        "ratio": round(project_rate / raw_rate, 3),
        "ttft_s": round(statistics.median(r[0] for r in rows["project"]), 3),
        "raw_ttft_s": round(statistics.median(r[0] for r in rows["raw"]), 3),
        "ttft_cold_s": round(statistics.median(cold), 3),
        "prompt_tokens_p50": statistics.median(prompt_tokens),
        "prefix_reused_tokens_p50": statistics.median(reused) if reused else 0,
        "generated_tokens_p50": statistics.median(n for _, _, n in rows["project"]),
        "timed_questions": n_timed,
    }
    del raw
    return result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    installed = [m.name for m in describe_models(Settings().cache_dir) if m.installed]
    ap.add_argument("--models", default=",".join(installed), help=f"comma-separated, of {', '.join(REGISTRY)}")
    ap.add_argument("--questions", type=int, default=8, help="timed questions per model (each run on both paths)")
    ap.add_argument("--testset", type=Path, default=SEEDS_DIR / "testset.jsonl")
    ap.add_argument("--json", action="store_true", help="print one JSON object on stdout (table to stderr)")
    args = ap.parse_args()

    base = Settings.load()
    questions = [item.question for item in load_testset(args.testset).items]
    n_timed = min(args.questions, len(questions) - 1)
    before = load_average()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in [m for m in args.models.split(",") if m]:
            rows.append(bench_model(name, base, Path(tmp) / name, n_timed, questions))
    headers = ["model", "tokens/s", "raw tokens/s", "ratio", "ttft s", "raw ttft s", "ttft cold s",
               "prompt tokens p50", "prefix reused p50", "generated p50"]
    keys = ["model", "tokens_per_s", "raw_tokens_per_s", "ratio", "ttft_s", "raw_ttft_s", "ttft_cold_s",
            "prompt_tokens_p50", "prefix_reused_tokens_p50", "generated_tokens_p50"]
    text = table(headers, [[r[k] for k in keys] for r in rows])
    text += (f"\n\n{n_timed} timed questions per model from {args.testset.name}; context={base.context}, "
             f"top_k={base.top_k}, threads={base.threads}, n_ctx={base.context_window}; machine {machine()}")
    emit(text, {"rows": rows, "machine": machine(), "settings": {"context": base.context, "top_k": base.top_k}},
         args.json, before)
    return 0


if __name__ == "__main__":
    sys.exit(main())
