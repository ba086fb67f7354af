"""Helpers shared by the benchmark scripts: machine facts, load, timing statistics, tables."""
from __future__ import annotations

import os
import platform
import resource
import sys
from collections.abc import Sequence



def machine() -> dict:
    cpu = "unknown"
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {"nproc": os.cpu_count(), "cpu": cpu, "ram_gib": round(mem, 1), "python": platform.python_version()}


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def peak_rss_mb() -> float:
    """Peak resident set of this process (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def percentiles_ms(seconds: Sequence[float]) -> tuple[float, float]:
    """p50 and p95 in milliseconds, by the project's one percentile (rag.evaluation.metrics.percentile)."""
    from rag.evaluation.metrics import percentile

    ms = [s * 1e3 for s in seconds]
    return percentile(ms, 50), percentile(ms, 95)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A Markdown table (pastes into docs/performance.md as is)."""
    cells = [[_fmt(v) for v in row] for row in rows]
    width = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = lambda vals: "| " + " | ".join(v.ljust(w) for v, w in zip(vals, width)) + " |"  # noqa: E731
    out = [line(headers), "| " + " | ".join("-" * w for w in width) + " |"]
    out += [line(r) for r in cells]
    return "\n".join(out)


def _fmt(v: object) -> str:
    if isinstance(v, float):
        if v >= 100:
            return f"{v:,.0f}"
        if v >= 10:
            return f"{v:.1f}"
        return f"{v:.3f}" if v < 1 else f"{v:.2f}"
    if isinstance(v, int) and not isinstance(v, bool):
        return f"{v:,}"
    return str(v)


def log(*args: object) -> None:
    print(*args, file=sys.stderr, flush=True)


def emit(text: str, result: dict, as_json: bool, load_before: tuple[float, float, float]) -> None:
    """Print the table (to stderr when --json, so stdout is one JSON object) with the load around the run."""
    import json

    text += f"\n\nload average before {load_before[0]:.2f}, after {load_average()[0]:.2f}"
    if as_json:
        log(text)
        print(json.dumps(result))
    else:
        print(text)


def raw_prompt_rate(model: str | None = None, tokens: int = 256, threads: int | None = None) -> dict:
    """The machine's raw llama.cpp prompt-evaluation rate for the bundled model (default: the default
    model), measured beside a benchmark so that its latencies can be read on any CPU: a fresh context
    evaluates `tokens` tokens of plain text once (warm-up) and again (timed), with the pipeline's
    n_batch and threads. {"model", "tokens", "seconds", "tokens_per_s", "cpu"}."""
    import time
    from pathlib import Path

    from llama_cpp import Llama

    from rag.config import DEFAULT_MODEL, Settings
    from rag.models.llm import LLAMA_N_BATCH, loading_llama, model_path

    settings = Settings.load()
    name = model or DEFAULT_MODEL
    path = model_path(name, settings.cache_dir)
    with loading_llama():
        llama = Llama(model_path=str(Path(path)), n_ctx=max(512, tokens + 16), n_batch=LLAMA_N_BATCH,
                      n_threads=threads or settings.threads, n_threads_batch=threads or settings.threads,
                      verbose=False)
    text = ("The committee met on Tuesday to review the budget, the schedule and the risks of the project. " * 64)
    ids = llama.tokenize(text.encode("utf-8"))[:tokens]
    llama.reset()
    llama.eval(ids)  # warm-up: page the weights in
    llama.reset()
    start = time.perf_counter()
    llama.eval(ids)
    seconds = time.perf_counter() - start
    return {"model": name, "tokens": len(ids), "seconds": round(seconds, 3),
            "tokens_per_s": round(len(ids) / seconds, 1), "cpu": machine()["cpu"]}


if __name__ == "__main__":  # python bench/_common.py: the raw prompt rate alone
    import json

    sys.path.insert(0, str(__import__("pathlib").Path(__file__).resolve().parent.parent))
    print(json.dumps({**raw_prompt_rate(), "load_average": load_average()[0]}))
