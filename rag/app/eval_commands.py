"""`rag eval run | compare | rescore | curve | calibrate`: the evaluation's command line."""
from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.config import Settings
from rag.errors import InputError
from rag.evaluation import calibration as C
from rag.evaluation.feedback import load_feedback_testset
from rag.evaluation.history import save_run
from rag.evaluation.report import compare_reports, fmt, load_report, metrics_table
from rag.evaluation.runner import default_output, evaluate, open_rag_for
from rag.evaluation.testsets import load_testset
from rag.types import IngestReport

if TYPE_CHECKING:  # pragma: no cover
    from llama_index.core.llms import LLM

    from rag.models.embedding import Embedder

EXIT_OK, EXIT_ERROR, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 3, 130


class _sigterm_as_interrupt:
    """While active (main thread only), SIGTERM raises KeyboardInterrupt, so `kill` also keeps a partial report."""

    def __enter__(self) -> None:
        self.installed = False
        try:
            self.previous = signal.signal(signal.SIGTERM, self._raise)
            self.installed = True
        except ValueError:  # not the main thread
            pass

    def __exit__(self, *exc: Any) -> None:
        if self.installed:
            signal.signal(signal.SIGTERM, self.previous)

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt


EVAL_HELP = "evaluate answers against a test set (run, compare, rescore, curve, calibrate)"
EVAL_DESCRIPTION = ("Evaluate answers against a test set. The first word after `rag eval` names the action; "
                    "anything else is a test set, so `rag eval TESTSET ...` runs it (`rag eval run TESTSET ...`).")
WithIndex = Callable[[argparse.ArgumentParser], argparse.ArgumentParser]


def _run_parser(with_index: WithIndex) -> argparse.ArgumentParser:
    r = with_index(argparse.ArgumentParser(prog="rag eval run", description="Ask every question of a test set and score the answers."))
    r.add_argument("testset", nargs="?", help="JSONL or SQuAD v2 JSON test set, or the name of a bundled one "
                                              "(nearmiss-seed, nearmiss-squad, nearmiss-covid); with --collection and "
                                              "no file: the collection's own test set, grown from the chat's marks")
    r.add_argument("--docs", type=Path, help="documents to index for a JSONL test set (a SQuAD .json file: its contexts)")
    r.add_argument("--limit", type=int, help="evaluate only the first N items")
    r.add_argument("--sample", type=int, help="evaluate a fixed seeded sample of N items (same items every run)")
    r.add_argument("--json", dest="json_out", type=Path, help="write the JSON report here")
    r.add_argument("--report", type=Path, help="write a Markdown report (with PNG plots beside it) here")
    r.add_argument("--model", help="bundled model name, path to a .gguf, or URL of an OpenAI-compatible server")
    r.add_argument("--top-k", type=int, help="passages per question for this run (default: the setting top_k)")
    return r


def _compare_parser(with_index: WithIndex) -> argparse.ArgumentParser:
    c = argparse.ArgumentParser(prog="rag eval compare", description="Compare two JSON reports side by side.")
    c.add_argument("compare", nargs=2, type=Path, metavar="REPORT.json", help="report A, then report B")
    c.add_argument("--report", type=Path, help="also write the comparison as Markdown here")
    return c


def _rescore_parser(with_index: WithIndex) -> argparse.ArgumentParser:
    s = argparse.ArgumentParser(prog="rag eval rescore",
                                description="A run's metrics again, at another min_score and/or over a subset of items.")
    s.add_argument("rescore", type=Path, metavar="REPORT.json")
    s.add_argument("--min-score", type=float, help="the retrieval gate to apply (at or above the run's own)")
    s.add_argument("--subset-of", type=Path, metavar="OTHER.json", help="only the item ids of this report")
    s.add_argument("--json", dest="json_out", type=Path, help="write the rescored metrics here")
    return s


def _curve_parser(with_index: WithIndex) -> argparse.ArgumentParser:
    k = argparse.ArgumentParser(prog="rag eval curve", description="The min_score trade-off from runs made with a "
                                                                   "low min_score (the threshold is chosen on the first).")
    k.add_argument("refusal_curve", nargs="+", type=Path, metavar="REPORT.json")
    k.add_argument("--report", type=Path, help="write the Markdown table and PNG plot here")
    return k


def _calibrate_parser(with_index: WithIndex) -> argparse.ArgumentParser:
    b = argparse.ArgumentParser(prog="rag eval calibrate",
                                description="Choose min_score, refusal_prob and retry_below on several test sets' runs "
                                            "(made with RAG_MIN_SCORE=0 RAG_REFUSAL_PROB=1 RAG_RETRY_BELOW=1 "
                                            "RAG_CLAIM_THRESHOLD=0), with held-out folds.")
    b.add_argument("calibrate", nargs="+", type=Path, metavar="REPORT.json")
    b.add_argument("--json", dest="json_out", type=Path, help="write the chosen gates and held-out metrics here")
    return b


EVAL_PARSERS: dict[str, Callable[[WithIndex], argparse.ArgumentParser]] = {
    "run": _run_parser, "compare": _compare_parser, "rescore": _rescore_parser, "curve": _curve_parser,
    "calibrate": _calibrate_parser}


def parse_eval(words: list[str], with_index: WithIndex) -> argparse.Namespace:
    """The words after `rag eval`: an action of EVAL_PARSERS and its own arguments, or a test set and
    the run's arguments (`rag eval TESTSET ...` is `rag eval run TESTSET ...`). Each action has its own
    --help; `rag eval` alone is a usage error naming the actions."""
    overview = argparse.ArgumentParser(prog="rag eval", description=EVAL_DESCRIPTION,
                                       usage="rag eval {" + ",".join(EVAL_PARSERS) + "} ... | rag eval TESTSET ...")
    if not words:
        overview.error("choose an action: " + ",".join(EVAL_PARSERS) + " (or give a test set to run)")
    if words[0] in ("-h", "--help"):
        overview.print_help()
        print("\nactions:\n" + "\n".join(f"  {name:<10} {make(with_index).description}"
                                           for name, make in EVAL_PARSERS.items()))
        overview.exit()
    command = words[0] if words[0] in EVAL_PARSERS else "run"
    args = EVAL_PARSERS[command](with_index).parse_args(words[1:] if command == words[0] else words)
    args.eval_command = command
    return args


def run_cli(args: Any, settings: Settings, *, embedder: "Embedder | None" = None, llm: "LLM | None" = None) -> int:
    """Run the `rag eval` subcommand in `args.eval_command`. `embedder`/`llm` are for tests (fakes)."""
    if args.eval_command == "run":
        return _run(args, settings, embedder=embedder, llm=llm)
    return EVAL_COMMANDS[args.eval_command](args)


def _compare(args: Any) -> int:
    path_a, path_b = (Path(p) for p in args.compare)
    a, b = load_report(path_a), load_report(path_b)
    print(compare_reports(a, b, names=("A", "B")), end="")
    print(f"A = {path_a}\nB = {path_b}")
    if getattr(args, "report", None):
        Path(args.report).parent.mkdir(parents=True, exist_ok=True)
        Path(args.report).write_text(compare_reports(a, b, names=(path_a.stem, path_b.stem), markdown=True),
                                     encoding="utf-8")
        print(f"comparison written to {args.report}")
    return EXIT_OK


def _rescore(args: Any) -> int:
    subset = getattr(args, "subset_of", None)
    ids = {i["id"] for i in load_report(subset)["items"]} if subset else None
    metrics = C.rescore(load_report(args.rescore), getattr(args, "min_score", None), ids)
    print(metrics_table(metrics))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({"metrics": metrics, "rescored_from": str(args.rescore),
                                                   "min_score": getattr(args, "min_score", None),
                                                   "subset_of": str(subset) if subset else None}, indent=1))
    return EXIT_OK


def _calibrate(args: Any) -> int:
    result = C.cross_validate_gates({Path(p).stem: load_report(p) for p in args.calibrate})
    print("held out (each item scored by gates chosen without it):")
    print("| run | refusal recall | false-refusal rate | contains | correct |\n| --- | --- | --- | --- | --- |")
    for name, m in result["held_out"].items():
        print(f"| {name} | {fmt(m['refusal_recall'])} | {fmt(m['false_refusal_rate'])} | "
              f"{fmt(m['contains'])} | {fmt(m['correct'])} |")
    print("gates chosen per fold:", ", ".join(
        f"({g['min_score']}, {g['refusal_prob']}, {g['retry_below']}, {g['claim_threshold']})"
        for g in result["fold_gates"]))
    c = result["chosen"]
    print("gates chosen on all items (min_score, refusal_prob, retry_below, claim_threshold):",
          f"({c['min_score']}, {c['refusal_prob']}, {c['retry_below']}, {c['claim_threshold']})")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=1), encoding="utf-8")
    return EXIT_OK


def _curve(args: Any) -> int:
    return _refusal_curve_cli([Path(p) for p in args.refusal_curve], getattr(args, "report", None))


def _run(args: Any, settings: Settings, *, embedder: "Embedder | None", llm: "LLM | None") -> int:
    if args.limit is not None and args.limit < 1:
        raise InputError(f"--limit {args.limit} must be at least 1")
    collection = getattr(args, "collection", None)
    if args.testset is None:
        if collection is None:
            raise InputError("give a test set file (JSONL or SQuAD JSON), or --collection NAME to run that "
                             "collection's own test set")
        testset = load_feedback_testset(args.index)
    else:
        testset = load_testset(args.testset)
    for problem in testset.problems:
        print(f"skipped test item: {problem}", file=sys.stderr)
    if not testset.items:
        raise InputError(f"{args.testset or testset.path} has no usable items")
    rag = open_rag_for(testset, settings, docs=args.docs, index=args.index, embedder=embedder, llm=llm,
                       progress=True, on_ingest=_print_ingest)
    if args.json_out:
        json_out = Path(args.json_out)
    else:
        json_out = Path(args.report).with_suffix(".json") if args.report else default_output(settings, testset)
    md_out = args.report or Path(json_out).with_suffix(".md")
    # A long run writes its JSON every 25 items, and SIGTERM stops it like Ctrl-C (partial report kept).
    with _sigterm_as_interrupt():
        report = evaluate(rag, testset, limit=args.limit, sample=getattr(args, "sample", None), progress=True,
                          checkpoint=lambda r: r.write_json(json_out))
    print(report.table())
    report.write_json(json_out)
    written = report.write_markdown(md_out)
    print(f"JSON report: {json_out}")
    print(f"Markdown report: {written[0]} (plots: {', '.join(p.name for p in written[1:])})")
    if collection is not None and report.items:  # kept with the collection, for the web UI's history
        report.config["collection"] = collection
        print(f"kept as run {save_run(args.index, report)} of collection {collection}")
    if report.partial:
        print(f"interrupted: the report holds the {len(report.items)} item(s) done so far", file=sys.stderr)
        return EXIT_INTERRUPTED
    if report.metrics["n_errors"]:
        print(f"{report.metrics['n_errors']} question(s) failed; see 'error' in the JSON report", file=sys.stderr)
        return EXIT_PARTIAL
    return EXIT_PARTIAL if testset.problems else EXIT_OK


def _print_ingest(report: IngestReport) -> None:
    """What an eval's ingest did (its documents, before the questions), on stderr."""
    if report.added or report.replaced:
        n = len(report.added) + len(report.replaced)
        print(f"indexed {n} document(s) ({len(report.unchanged)} already there)", file=sys.stderr)
    for failure in report.failed:
        print(f"skipped document {failure.path}: {failure.reason}", file=sys.stderr)


def _refusal_curve_cli(paths: list[Path], report_md: Path | None) -> int:
    """`rag eval curve CALIBRATION.json [OTHER.json ...] [--report OUT.md]`: the min_score
    trade-off of each run; the threshold is chosen on the first run only and marked on all."""
    curves = {p.stem if p.name != "report.json" else p.parent.name: C.refusal_curve(load_report(p)) for p in paths}
    names = list(curves)
    chosen = C.choose_threshold(curves[names[0]])
    out = []
    for name in names:
        marked = next((q for q in curves[name] if q.threshold == chosen.threshold), None)
        out.append(f"## {name}\n\n" + C.curve_table(curves[name], marked))
    out.append(f"Chosen on {names[0]} (highest refusal recall with false-refusal rate <= 0.15, or else at "
               "the lowest false-refusal rate the run reaches): "
               f"min_score {chosen.threshold:.2f} (refusal recall {chosen.refusal_recall:.3f}, "
               f"false-refusal rate {chosen.false_refusal_rate:.3f}).\n")
    text = "\n".join(out)
    print(text, end="")
    target = Path(report_md) if report_md else paths[0].with_name(paths[0].stem + "-refusal-curve.md")
    png = C.plot_refusal_curve(curves, target.with_suffix(".png"), chosen)
    target.write_text(f"# Refusal trade-off\n\n![curve]({png.name})\n\n{text}", encoding="utf-8")
    print(f"written: {target}, {png}")
    return EXIT_OK


EVAL_COMMANDS: dict[str, Callable[..., int]] = {"run": _run, "compare": _compare, "rescore": _rescore,
                                               "curve": _curve, "calibrate": _calibrate}
